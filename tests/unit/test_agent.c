/*
 * The HAProxy agent's reply (agent_reply, a pure function of the master's
 * view) in each state, its weight, and the graceful stop's socket filter
 * (quiesce_program): run here by a tiny classic-BPF interpreter over TCP
 * headers, then attached to a real loopback listener to show what the
 * kernel does with it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "master/agent.h"
#include "master/quiesce.h"

static struct agent_view
view(int serving, int maxconn, uint64_t active)
{
	return (struct agent_view){ .admin = AGENT_READY, .serving = serving,
	    .max_connections = maxconn, .active = active, .name = "host1" };
}

static const struct {
	const char *what;
	struct agent_view v;
	const char *line;
} replies[] = {
	{ "idle", { .serving = 2, .max_connections = 100, .name = "h" },
	  "up ready 100% #h serving, 0 active\n" },
	{ "a quarter used", { .serving = 2, .max_connections = 100, .active = 50, .name = "h" },
	  "up ready 75% #h serving, 50 active\n" },
	{ "full: 1%, never 0", { .serving = 2, .max_connections = 100, .active = 200, .name = "h" },
	  "up ready 1% #h serving, 200 active\n" },
	{ "over full", { .serving = 1, .max_connections = 10, .active = 15, .name = "h" },
	  "up ready 1% #h serving, 15 active\n" },
	{ "operator drain", { .admin = AGENT_DRAIN, .serving = 2, .max_connections = 100,
	  .name = "h" }, "drain #h draining (operator), 0 active\n" },
	{ "drain_delay", { .delaying = true, .delay_left_ms = 4200, .serving = 2,
	  .max_connections = 100, .active = 3, .name = "h" },
	  "drain #h draining (stopping in 5 s), 3 active\n" },
	{ "maint", { .admin = AGENT_MAINT, .serving = 2, .max_connections = 100, .name = "h" },
	  "maint #h maintenance (operator), 0 active\n" },
	{ "maint beats drain_delay", { .admin = AGENT_MAINT, .delaying = true, .serving = 2,
	  .max_connections = 100, .name = "h" }, "maint #h maintenance (operator), 0 active\n" },
	{ "no worker", { .serving = 0, .max_connections = 100, .name = "h" },
	  "down #h down (no worker serves), 0 active\n" },
	{ "no worker beats maint", { .admin = AGENT_MAINT, .max_connections = 100, .name = "h" },
	  "down #h down (no worker serves), 0 active\n" },
	{ "stopping", { .stopping = true, .serving = 2, .max_connections = 100, .active = 7,
	  .name = "h" }, "down #h stopping, 7 active\n" },
};

static void
reply_in_each_state(void **state)
{
	char line[256];

	(void)state;
	for (size_t i = 0; i < sizeof(replies) / sizeof(replies[0]); i++) {
		agent_reply(&replies[i].v, line, sizeof(line));
		print_message("%-24s %s", replies[i].what, line);
		assert_string_equal(line, replies[i].line);
	}
}

static void
weight_is_the_free_share(void **state)
{
	struct agent_view v = view(4, 250, 0);

	(void)state;
	assert_int_equal(agent_weight(&v), 100);
	v.active = 1;     /* 999/1000: rounded down */
	assert_int_equal(agent_weight(&v), 99);
	v.active = 500;
	assert_int_equal(agent_weight(&v), 50);
	v.active = 999;
	assert_int_equal(agent_weight(&v), 1);
	v.active = 1000;
	assert_int_equal(agent_weight(&v), 1);
	v.serving = 0;
	assert_int_equal(agent_weight(&v), 1);
	assert_int_equal(agent_word_of(&v), AGENT_DOWN);
}

static void
reply_is_one_line_even_when_cut(void **state)
{
	struct agent_view v = view(1, 10, 0);
	char line[16];

	(void)state;
	agent_reply(&v, line, sizeof(line));
	assert_int_equal(strlen(line), sizeof(line) - 1);
	assert_string_equal(line, "up ready 100% \n");
}

/* Runs the few classic BPF instructions quiesce_program uses over PKT. */
static uint32_t
bpf_run(const struct sock_filter *p, size_t n, const uint8_t *pkt, size_t len)
{
	uint32_t a = 0;

	for (size_t pc = 0; pc < n; pc++) {
		const struct sock_filter *i = &p[pc];
		switch (i->code) {
		case BPF_LD | BPF_B | BPF_ABS:
			if (i->k >= len)
				return 0;
			a = pkt[i->k];
			break;
		case BPF_ALU | BPF_AND | BPF_K:
			a &= i->k;
			break;
		case BPF_JMP | BPF_JEQ | BPF_K:
			pc += a == i->k ? i->jt : i->jf;
			break;
		case BPF_RET | BPF_K:
			return i->k;
		default:
			fail_msg("instruction %#x not expected", i->code);
		}
	}
	fail_msg("the program ran off its end");
	return 0;
}

static void
filter_drops_bare_syn_only(void **state)
{
	static const struct { const char *what; uint8_t flags; bool pass; } cases[] = {
		{ "SYN", 0x02, false }, { "SYN+ECE+CWR", 0xc2, false },
		{ "SYN+ACK", 0x12, true }, { "ACK (completes a handshake)", 0x10, true },
		{ "PSH+ACK", 0x18, true }, { "FIN+ACK", 0x11, true }, { "RST", 0x04, true },
		{ "RST+ACK", 0x14, true },
	};
	struct sock_filter prog[QUIESCE_PROG_LEN];
	uint8_t tcp[20];

	(void)state;
	quiesce_program(prog);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		memset(tcp, 0, sizeof(tcp));
		tcp[12] = 5 << 4;  /* data offset: 20 bytes */
		tcp[13] = cases[i].flags;
		print_message("%-28s %s\n", cases[i].what, cases[i].pass ? "passes" : "dropped");
		assert_int_equal(bpf_run(prog, QUIESCE_PROG_LEN, tcp, sizeof(tcp)) != 0, cases[i].pass);
	}
}

static int64_t
mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int
loopback_listener(struct sockaddr_in *a)
{
	socklen_t len = sizeof(*a);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);

	memset(a, 0, sizeof(*a));
	a->sin_family = AF_INET;
	a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)a, sizeof(*a)), 0);
	assert_int_equal(listen(fd, 16), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)a, &len), 0);
	return fd;
}

static int
connect_nb(const struct sockaddr_in *a)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);

	assert_true(fd >= 0);
	assert_true(connect(fd, (const struct sockaddr *)a, sizeof(*a)) == 0 ||
	    errno == EINPROGRESS);
	return fd;
}

/* 1 once the connect succeeded, 0 while it is pending after wait_ms. */
static int
connected_within(int fd, int wait_ms)
{
	struct pollfd p = { .fd = fd, .events = POLLOUT };
	int err = -1;
	socklen_t len = sizeof(err);

	if (poll(&p, 1, wait_ms) != 1)
		return 0;
	assert_int_equal(getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len), 0);
	assert_int_equal(err, 0);
	return 1;
}

/*
 * On the real kernel: the accept queue length and handshakes are what
 * quiesce says; with the filter on, a new client's connect does not
 * complete (its SYN is dropped) and the queue does not grow; detached,
 * its retransmitted SYN gets through. Waits are bounded polls.
 */
static void
filter_on_a_real_listener(void **state)
{
	struct sockaddr_in a;
	int l = loopback_listener(&a), c1, c2, c3;
	int64_t deadline;

	(void)state;
	c1 = connect_nb(&a);
	c2 = connect_nb(&a);
	assert_int_equal(connected_within(c1, 5000), 1);
	assert_int_equal(connected_within(c2, 5000), 1);
	assert_int_equal(quiesce_queue_len(l), 2);
	assert_int_equal(quiesce_handshakes(l), 0);
	assert_int_equal(quiesce_attach(l), 0);
	c3 = connect_nb(&a);
	assert_int_equal(connected_within(c3, 300), 0);
	assert_int_equal(quiesce_queue_len(l), 2);
	assert_int_equal(quiesce_handshakes(l), 0);
	/* The queued ones are still there to accept. */
	for (int i = 0; i < 2; i++) {
		int fd = accept(l, NULL, NULL);
		assert_true(fd >= 0);
		close(fd);
	}
	assert_int_equal(quiesce_queue_len(l), 0);
	assert_int_equal(quiesce_detach(l), 0);
	/* The SYN is retransmitted after about a second; give it a few. */
	deadline = mono_ms() + 10000;
	while (!connected_within(c3, 100) && mono_ms() < deadline)
		;
	assert_int_equal(connected_within(c3, 0), 1);
	assert_int_equal(quiesce_queue_len(l), 1);
	close(c1);
	close(c2);
	close(c3);
	close(l);
}

/*
 * A handshake in progress is seen: a filter that drops the client's final
 * ACK (everything but a bare SYN) leaves the request socket in SYN_RECV,
 * while the client already believes it is connected. This is also the
 * proof that a listener's filter sees that ACK, which quiesce's lets pass.
 */
static void
handshakes_in_progress_are_counted(void **state)
{
	const struct sock_filter only_syn[] = {
		BPF_STMT(BPF_LD | BPF_B | BPF_ABS, 13),
		BPF_STMT(BPF_ALU | BPF_AND | BPF_K, 0x12),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0x02, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, 0xffffffff),
		BPF_STMT(BPF_RET | BPF_K, 0),
	};
	struct sock_fprog fp = { .len = 5, .filter = (struct sock_filter *)only_syn };
	struct sockaddr_in a;
	int l = loopback_listener(&a), c;
	int64_t deadline;

	(void)state;
	assert_int_equal(setsockopt(l, SOL_SOCKET, SO_ATTACH_FILTER, &fp, sizeof(fp)), 0);
	c = connect_nb(&a);
	assert_int_equal(connected_within(c, 5000), 1);
	assert_int_equal(quiesce_handshakes(l), 1);
	assert_int_equal(quiesce_queue_len(l), 0);
	/*
	 * With quiesce's filter instead, that handshake completes: the server
	 * retransmits its SYN-ACK (after about a second), the client's ACK
	 * passes, and the connection lands in the accept queue.
	 */
	assert_int_equal(quiesce_detach(l), 0);
	assert_int_equal(quiesce_attach(l), 0);
	deadline = mono_ms() + 10000;
	while (quiesce_queue_len(l) == 0 && mono_ms() < deadline)
		poll(NULL, 0, 20);
	assert_int_equal(quiesce_queue_len(l), 1);
	assert_int_equal(quiesce_handshakes(l), 0);
	close(c);
	close(l);
}

/* The same count over IPv6 (a listener's own family is asked): ::1, the final ACK dropped. */
static void
handshakes_are_counted_on_ipv6(void **state)
{
	const struct sock_filter only_syn[] = {
		BPF_STMT(BPF_LD | BPF_B | BPF_ABS, 13),
		BPF_STMT(BPF_ALU | BPF_AND | BPF_K, 0x12),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0x02, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, 0xffffffff),
		BPF_STMT(BPF_RET | BPF_K, 0),
	};
	struct sock_fprog fp = { .len = 5, .filter = (struct sock_filter *)only_syn };
	struct sockaddr_in6 a = { .sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT };
	socklen_t len = sizeof(a);
	struct pollfd p = { .events = POLLOUT };
	int l = socket(AF_INET6, SOCK_STREAM | SOCK_NONBLOCK, 0), c;

	(void)state;
	assert_true(l >= 0);
	if (bind(l, (struct sockaddr *)&a, sizeof(a)) == -1) {
		close(l);
		skip();  /* no IPv6 loopback here */
	}
	assert_int_equal(listen(l, 16), 0);
	assert_int_equal(getsockname(l, (struct sockaddr *)&a, &len), 0);
	assert_int_equal(setsockopt(l, SOL_SOCKET, SO_ATTACH_FILTER, &fp, sizeof(fp)), 0);
	assert_true((c = socket(AF_INET6, SOCK_STREAM | SOCK_NONBLOCK, 0)) >= 0);
	assert_true(connect(c, (struct sockaddr *)&a, sizeof(a)) == 0 || errno == EINPROGRESS);
	p.fd = c;
	assert_int_equal(poll(&p, 1, 5000), 1);
	assert_int_equal(quiesce_handshakes(l), 1);
	assert_int_equal(quiesce_queue_len(l), 0);
	close(c);
	close(l);
}

/* quiesce_poll: done only once the queue is empty, and never before the settle time. */
static void
quiesce_waits_for_the_queue(void **state)
{
	struct sockaddr_in a;
	struct quiesce q;
	int l = loopback_listener(&a), c = connect_nb(&a), fd;
	int64_t t0 = mono_ms();

	(void)state;
	assert_int_equal(connected_within(c, 5000), 1);
	assert_int_equal(quiesce_begin(&q, &l, 1, t0, 1000), 0);
	assert_int_equal(quiesce_poll(&q, t0 + QUIESCE_SETTLE_MS), QUIESCE_WAITING);
	assert_int_equal(q.queued, 1);
	assert_true((fd = accept(l, NULL, NULL)) >= 0);
	assert_int_equal(quiesce_poll(&q, t0 + QUIESCE_SETTLE_MS + QUIESCE_POLL_MS),
	    QUIESCE_DONE);
	quiesce_release(&q);
	close(fd);
	close(c);
	/* And it gives up at its deadline. */
	c = connect_nb(&a);
	assert_int_equal(connected_within(c, 5000), 1);
	assert_int_equal(quiesce_begin(&q, &l, 1, t0, 1000), 0);
	assert_int_equal(quiesce_poll(&q, t0 + 1000), QUIESCE_TIMED_OUT);
	assert_int_equal(q.queued, 1);
	quiesce_release(&q);
	assert_int_equal(q.n, 0);
	close(c);
	close(l);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(reply_in_each_state),
		cmocka_unit_test(weight_is_the_free_share),
		cmocka_unit_test(reply_is_one_line_even_when_cut),
		cmocka_unit_test(filter_drops_bare_syn_only),
		cmocka_unit_test(filter_on_a_real_listener),
		cmocka_unit_test(handshakes_in_progress_are_counted),
		cmocka_unit_test(handshakes_are_counted_on_ipv6),
		cmocka_unit_test(quiesce_waits_for_the_queue),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
