/*
 * test_fdlimit.c: descriptor exhaustion. The daemon runs with
 * RLIMIT_NOFILE = NOFILE (soft and hard, so it cannot raise it) and one
 * worker; CLIENTS clients connect, far more than it has descriptors for.
 * The kernel completes their handshakes into the listener's queue, so none
 * is refused; the worker serves what it can hold and must then neither spin
 * on the accept error (its CPU time over a window stays low) nor lose its
 * listener: UDP keeps answering, and once the served clients leave, every
 * queued one is served too.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "fault.h"

#include <errno.h>
#include <poll.h>
#include <sys/socket.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define NOFILE		64
#define CLIENTS		200
#define WINDOW_MS	3000
/* 10% of one core over the window, in clock ticks (usually 100 a second). */
#define MAX_TICKS(hz)	((hz) * WINDOW_MS / 1000 / 10)
#define MSG_LEN		32

struct client {
	int	 fd;
	char	 msg[MSG_LEN];
	size_t	 got;
	bool	 served;
};

/* Reads whatever has arrived; true when a client has its whole echo. */
static size_t
clients_collect(struct client *cl, size_t n, int wait_ms)
{
	struct pollfd pfd[CLIENTS];
	size_t i, served = 0;
	char buf[MSG_LEN];

	for (i = 0; i < n; i++) {
		pfd[i].fd = cl[i].served || cl[i].fd == -1 ? -1 : cl[i].fd;
		pfd[i].events = POLLIN;
	}
	poll(pfd, n, wait_ms);
	for (i = 0; i < n; i++) {
		ssize_t r;

		if (pfd[i].fd != -1 && (pfd[i].revents & POLLIN)) {
			r = recv(cl[i].fd, buf, MSG_LEN - cl[i].got, 0);
			if (r <= 0)
				fail_msg("client %zu: %s", i, r == 0 ? "EOF" :
				    strerror(errno));
			for (ssize_t k = 0; k < r; k++)
				if (buf[k] != cl[i].msg[cl[i].got + (size_t)k] - 'a' + 'A')
					fail_msg("client %zu: wrong byte", i);
			cl[i].got += (size_t)r;
			cl[i].served = cl[i].got == MSG_LEN;
		}
		served += cl[i].served;
	}
	return served;
}

/* Served clients close at once, making room for the queued ones. */
static size_t
clients_wait_served(struct client *cl, size_t n, size_t want, int timeout_ms)
{
	int64_t deadline = now_ms() + timeout_ms;
	size_t served, i;

	for (;;) {
		served = clients_collect(cl, n, 20);
		for (i = 0; i < n; i++) {
			if (cl[i].served && cl[i].fd != -1) {
				close(cl[i].fd);
				cl[i].fd = -1;
			}
		}
		if (served >= want || now_ms() >= deadline)
			return served;
	}
}

/* Waits until the count of served clients has not grown for quiet_ms. */
static size_t
clients_wait_plateau(struct client *cl, size_t n, int quiet_ms)
{
	int64_t deadline = now_ms() + EM_DEADLINE_MS, last = now_ms();
	size_t served = 0, now_served;

	while (now_ms() - last < quiet_ms && now_ms() < deadline) {
		now_served = clients_collect(cl, n, 20);
		if (now_served != served)
			last = now_ms();
		served = now_served;
	}
	return served;
}

static void
test_accept_emfile_no_spin_no_loss(void **state)
{
	struct env *e = *state;
	static struct client cl[CLIENTS];
	long hz = sysconf(_SC_CLK_TCK);
	long long t0, t1, m0, m1;
	size_t i, first, all;
	char ready[64], reply[64];
	struct em_conf c;
	pid_t worker;
	int port = port_pick();

	conf_init(&c, 1);
	conf_listen_pair(&c, port, "upper");
	env_write_conf(e, &c);
	fault_start_nofile(e, NOFILE);
	snprintf(ready, sizeof(ready), "ready: 1 workers, generation 1");
	env_wait_log(e, ready, EM_DEADLINE_MS);
	fault_wait_children(e, 1, &worker, EM_DEADLINE_MS);
	for (i = 0; i < CLIENTS; i++) {
		for (size_t k = 0; k < MSG_LEN; k++)
			cl[i].msg[k] = (char)('a' + (i + k) % 26);
		cl[i].fd = tcp_connect(port, EM_DEADLINE_MS);
		if (cl[i].fd == -1)
			fail_msg("client %zu: connect: %s (none may be refused)",
			    i, strerror(errno));
		assert_int_equal(tcp_send_all(cl[i].fd, cl[i].msg, MSG_LEN,
		    EM_DEADLINE_MS), 0);
	}
	first = clients_wait_plateau(cl, CLIENTS, 1500);
	print_message("RLIMIT_NOFILE %d: %zu of %d clients served, the rest "
	    "queued\n", NOFILE, first, CLIENTS);
	assert_true(first > 0 && first < CLIENTS);
	env_wait_log(e, "Too many open files", EM_DEADLINE_MS);
	/* Exhausted: the worker must wait, not spin. */
	t0 = fault_cpu_ticks(worker);
	m0 = fault_cpu_ticks(e->master);
	nap_ms(WINDOW_MS);
	t1 = fault_cpu_ticks(worker);
	m1 = fault_cpu_ticks(e->master);
	print_message("over %d ms exhausted: worker used %lld ticks, master "
	    "%lld (limit %ld, %ld ticks a second); accept warnings logged: "
	    "%zu\n", WINDOW_MS, t1 - t0, m1 - m0, MAX_TICKS(hz), hz,
	    env_log_count(e, "Too many open files"));
	assert_true(t1 - t0 <= MAX_TICKS(hz));
	assert_true(m1 - m0 <= MAX_TICKS(hz));
	/* UDP needs no new descriptor and keeps working meanwhile. */
	assert_int_equal(udp_exchange(port, "udp?", 4, reply, sizeof(reply),
	    EM_DEADLINE_MS), 4);
	assert_memory_equal(reply, "UDP?", 4);
	/* The served clients leave; the queued ones get their turn. */
	all = clients_wait_served(cl, CLIENTS, CLIENTS, EM_DEADLINE_MS);
	print_message("after %zu clients left: %zu of %d served\n", first, all,
	    CLIENTS);
	assert_int_equal(all, CLIENTS);
	for (i = 0; i < CLIENTS; i++)
		if (cl[i].fd != -1)
			close(cl[i].fd);
	tcp_roundtrip(port, "fresh\n", 6, "FRESH\n");
	assert_int_equal(fault_children(e->master, NULL, 0), 1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_accept_emfile_no_spin_no_loss,
		    env_setup, env_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
