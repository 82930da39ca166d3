/*
 * test_master_kill.c: the master dies by SIGKILL while clients are
 * connected. Every worker must be gone within 2 s (the connected clients see
 * their connections end, nothing hangs), and a new master started at once
 * binds the very same TCP and UDP port and serves.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "fault.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define WORKERS		3
#define HELD		16
#define ORPHAN_MS	2000
/* A restart is a fresh process: exec, config, bind, fork, ready. */
#define RESTART_MS	3000

static const char MSG[] = "who is still there?\n";
static const char MSG_UP[] = "WHO IS STILL THERE?\n";

static void
test_master_sigkill_then_restart(void **state)
{
	struct env *e = *state;
	unsigned long long start[WORKERS];
	pid_t pids[WORKERS];
	int held[HELD], port = port_pick(), i;
	int64_t t0, worst = 0, t_restart, t_served;
	char ready[64], reply[64];
	struct em_conf c;
	size_t off;

	conf_init(&c, WORKERS);
	conf_listen_pair(&c, port, "upper");
	env_write_conf(e, &c);
	env_start_ready(e, WORKERS, port);
	env_wait_workers(e, WORKERS, pids, EM_DEADLINE_MS);
	for (i = 0; i < WORKERS; i++)
		start[i] = proc_start_time(pids[i]);
	for (i = 0; i < HELD; i++) {
		char got[sizeof(MSG)];

		held[i] = tcp_connect(port, EM_DEADLINE_MS);
		assert_true(held[i] >= 0);
		assert_int_equal(tcp_send_all(held[i], MSG, strlen(MSG),
		    EM_DEADLINE_MS), 0);
		assert_int_equal(tcp_read_exact(held[i], got, strlen(MSG),
		    EM_DEADLINE_MS), strlen(MSG));
	}
	t0 = now_ms();
	env_signal(e, SIGKILL);
	env_wait_exit(e, EM_DEADLINE_MS);
	for (i = 0; i < WORKERS; i++) {
		while (proc_alive(pids[i], start[i])) {
			if (now_ms() - t0 > ORPHAN_MS)
				fail_msg("worker %d alive %d ms after its master "
				    "was killed", (int)pids[i], ORPHAN_MS);
			nap_ms(5);
		}
		if (now_ms() - t0 > worst)
			worst = now_ms() - t0;
	}
	print_message("last worker gone %lld ms after the master's SIGKILL\n",
	    (long long)worst);
	/* Their clients learn it: EOF (or a reset), not silence. */
	for (i = 0; i < HELD; i++) {
		char b;
		int left = (int)(ORPHAN_MS - (now_ms() - t0));
		ssize_t n = tcp_read_exact(held[i], &b, 1, left > 0 ? left : 1);

		if (n != 0 && !(n == -1 && errno == ECONNRESET))
			fail_msg("held client %d: read gave %zd (%s), want EOF",
			    i, n, n == -1 ? strerror(errno) : "data");
		close(held[i]);
	}
	/* At once: no waiting for anything to time out. */
	off = env_log_size(e);
	t_restart = now_ms();
	env_start(e);
	snprintf(ready, sizeof(ready), "ready: %d workers, generation 1",
	    WORKERS);
	env_wait_log_from(e, off, ready, RESTART_MS);
	tcp_roundtrip(port, MSG, strlen(MSG), MSG_UP);
	assert_int_equal(udp_exchange(port, MSG, strlen(MSG), reply,
	    sizeof(reply), EM_DEADLINE_MS), strlen(MSG));
	assert_memory_equal(reply, MSG_UP, strlen(MSG));
	t_served = now_ms() - t_restart;
	print_message("restart served TCP and UDP on port %d after %lld ms\n",
	    port, (long long)t_served);
	assert_true(t_served <= RESTART_MS);
	assert_int_equal(env_log_find(e, off, "bind"), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_master_sigkill_then_restart,
		    env_setup, env_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
