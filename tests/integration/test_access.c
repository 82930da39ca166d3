/*
 * test_access.c: hostile and unwanted clients. Per-listener allow/deny
 * lists for TCP and UDP, max_connections_per_address across workers (and
 * not leaked by a worker killed with SIGKILL), and the per-source UDP rate
 * limit. Clients bind 127.0.0.2, 127.0.0.3 or ::1 before they connect, so
 * the daemon sees different client addresses on loopback.
 */
#include "harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* How long a test waits to be sure that something does not arrive. */
#define QUIET_MS 300

static socklen_t
addr_fill(struct sockaddr_storage *ss, const char *ip, int port)
{
	memset(ss, 0, sizeof(*ss));
	if (strchr(ip, ':') != NULL) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons((uint16_t)port);
		assert_int_equal(inet_pton(AF_INET6, ip, &s6->sin6_addr), 1);
		return sizeof(*s6);
	}
	struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
	s4->sin_family = AF_INET;
	s4->sin_port = htons((uint16_t)port);
	assert_int_equal(inet_pton(AF_INET, ip, &s4->sin_addr), 1);
	return sizeof(*s4);
}

/* A non-blocking socket of TYPE bound to SRC and connected to DST:PORT. Fails the test. */
static int
sock_from(int type, const char *src, const char *dst, int port)
{
	struct sockaddr_storage from, to;
	socklen_t fromlen = addr_fill(&from, src, 0), tolen = addr_fill(&to, dst, port);
	int fd = socket(to.ss_family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	struct pollfd p = { .fd = fd, .events = POLLOUT };
	int err = 0;
	socklen_t errlen = sizeof(err);

	assert_true(fd != -1);
	if (bind(fd, (struct sockaddr *)&from, fromlen) == -1)
		fail_msg("bind %s: %s", src, strerror(errno));
	if (connect(fd, (struct sockaddr *)&to, tolen) == 0)
		return fd;
	if (errno != EINPROGRESS)
		fail_msg("connect %s -> %s:%d: %s", src, dst, port, strerror(errno));
	if (poll(&p, 1, EM_DEADLINE_MS) != 1 ||
	    getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &errlen) == -1 || err != 0)
		fail_msg("connect %s -> %s:%d: %s", src, dst, port, err ? strerror(err) : "timeout");
	return fd;
}

static int
tcp_from(const char *src, const char *dst, int port)
{
	return sock_from(SOCK_STREAM, src, dst, port);
}

/*
 * Sends a line on an established connection and says whether the daemon
 * echoes it (true) or closes the connection without a reply (false).
 * Fails the test on anything else, or when neither happens in time.
 */
static bool
tcp_served(int fd)
{
	char buf[16];
	ssize_t n;

	/* A refused connection may already be reset: then even the send fails. */
	if (tcp_send_all(fd, "ping", 4, EM_DEADLINE_MS) == -1)
		return false;
	n = tcp_read_exact(fd, buf, 4, EM_DEADLINE_MS);
	if (n == 4) {
		assert_memory_equal(buf, "PING", 4);
		return true;
	}
	if (n == 0 || (n == -1 && (errno == ECONNRESET || errno == EPIPE)))
		return false;
	fail_msg("neither an echo nor a close: read %zd (%s)", n, strerror(errno));
	return false;
}

/* One connection from SRC: served or closed at once? */
static bool
tcp_try(const char *src, const char *dst, int port)
{
	int fd = tcp_from(src, dst, port);
	bool served = tcp_served(fd);

	close(fd);
	return served;
}

static void
start(struct env *e, const char *conf, int port, int workers)
{
	char *text = text_with_port(conf, port);

	env_write_conf_text(e, text);
	free(text);
	env_start_ready(e, workers, 0);
}

static void
tcp_allow_and_deny_lists(void **state)
{
	struct env *e = *state;
	int ports[3];

	ports_pick(ports, 3);
	char *conf = malloc(2048);
	assert_non_null(conf);
	snprintf(conf, 2048,
	    "workers = 2;\n"
	    "log = { level = \"info\"; stderr = true; };\n"
	    "listen = (\n"
	    "  { proto = \"tcp\"; address = \"127.0.0.1\"; port = %d;\n"
	    "    allow = [ \"127.0.0.2/32\", \"::1/128\" ]; deny = [ \"0.0.0.0/0\" ]; },\n"
	    "  { proto = \"tcp\"; address = \"::1\"; port = %d;\n"
	    "    allow = [ \"127.0.0.2/32\", \"::1/128\" ]; deny = [ \"0.0.0.0/0\" ]; },\n"
	    "  { proto = \"tcp\"; address = \"::1\"; port = %d; deny = [ \"::1\" ]; },\n"
	    "  { proto = \"tcp\"; address = \"127.0.0.1\"; port = %d;\n"
	    "    allow = [ \"127.0.0.0/8\" ]; deny = [ \"127.0.0.3/32\" ]; }\n"
	    ");\n", ports[0], ports[0], ports[1], ports[2]);
	start(e, conf, 0, 2);
	free(conf);

	assert_true(tcp_try("127.0.0.2", "127.0.0.1", ports[0]));
	assert_false(tcp_try("127.0.0.3", "127.0.0.1", ports[0]));
	assert_false(tcp_try("127.0.0.1", "127.0.0.1", ports[0]));
	assert_true(tcp_try("::1", "::1", ports[0]));
	assert_false(tcp_try("::1", "::1", ports[1]));
	/* allow is checked first: a narrower deny after it changes nothing. */
	assert_true(tcp_try("127.0.0.3", "127.0.0.1", ports[2]));
	/* The refused are not logged at info. */
	assert_false(env_log_has(e, "127.0.0.3"));
	/* A long-lived allowed connection is not disturbed by refusals around it. */
	int keep = tcp_from("127.0.0.2", "127.0.0.1", ports[0]);
	for (int i = 0; i < 20; i++)
		assert_false(tcp_try("127.0.0.3", "127.0.0.1", ports[0]));
	assert_true(tcp_served(keep));
	close(keep);
}

/* Receives every datagram now queued on fd; returns how many. */
static int
udp_drain_now(int fd)
{
	char buf[64];
	int n = 0;

	while (recv(fd, buf, sizeof(buf), MSG_DONTWAIT) >= 0)
		n++;
	return n;
}

/* Waits for one datagram on fd; returns its length, -1 on timeout. */
static ssize_t
udp_wait_reply(int fd, void *buf, size_t cap, int timeout_ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };

	if (poll(&p, 1, timeout_ms) != 1)
		return -1;
	return recv(fd, buf, cap, MSG_DONTWAIT);
}

static void
udp_allow_and_deny_lists(void **state)
{
	struct env *e = *state;
	int port = port_pick();
	char buf[64];
	int denied, allowed, six;

	/* One worker: the socket's datagrams are handled in the order they came. */
	start(e,
	    "workers = 1;\n"
	    "log = { level = \"info\"; stderr = true; };\n"
	    "listen = (\n"
	    "  { proto = \"udp\"; address = \"127.0.0.1\"; port = PORT;\n"
	    "    allow = [ \"127.0.0.2/32\" ]; deny = [ \"0.0.0.0/0\" ]; },\n"
	    "  { proto = \"udp\"; address = \"::1\"; port = PORT; deny = [ \"::1/128\" ]; }\n"
	    ");\n", port, 1);
	denied = sock_from(SOCK_DGRAM, "127.0.0.3", "127.0.0.1", port);
	allowed = sock_from(SOCK_DGRAM, "127.0.0.2", "127.0.0.1", port);
	six = sock_from(SOCK_DGRAM, "::1", "::1", port);
	assert_int_equal(send(denied, "nope", 4, 0), 4);
	assert_int_equal(send(six, "nope", 4, 0), 4);
	assert_int_equal(send(allowed, "yes", 3, 0), 3);
	assert_int_equal(udp_wait_reply(allowed, buf, sizeof(buf), EM_DEADLINE_MS), 3);
	assert_memory_equal(buf, "YES", 3);
	/* Handled before the allowed one, so any reply would be here already; and a bit later. */
	assert_int_equal(udp_drain_now(denied), 0);
	assert_int_equal(udp_wait_reply(denied, buf, sizeof(buf), QUIET_MS), -1);
	/* The ::1 listener is another socket, read in its own event: a bounded wait. */
	assert_int_equal(udp_wait_reply(six, buf, sizeof(buf), QUIET_MS), -1);
	/* The allowed source is still answered afterwards. */
	assert_int_equal(send(allowed, "again", 5, 0), 5);
	assert_int_equal(udp_wait_reply(allowed, buf, sizeof(buf), EM_DEADLINE_MS), 5);
	assert_false(env_log_has(e, "127.0.0.3"));
	close(denied);
	close(allowed);
	close(six);
}

#define LIMIT 3

static void
per_address_limit_across_workers(void **state)
{
	struct env *e = *state;
	int port = port_pick();
	pid_t w[2];
	int held[LIMIT];
	int64_t deadline;

	start(e,
	    "workers = 2;\n"
	    "worker_timeout = 0;\n"
	    "log = { level = \"info\"; stderr = true; };\n"
	    "limits = { max_connections_per_address = 3; };\n"
	    "listen = ( { proto = \"tcp\"; address = \"127.0.0.1\"; port = PORT; } );\n",
	    port, 2);
	env_wait_workers(e, 2, w, EM_DEADLINE_MS);
	/* Worker 0 stopped: worker 1 takes the first two connections. */
	assert_int_equal(kill(w[0], SIGSTOP), 0);
	for (int i = 0; i < 2; i++) {
		held[i] = tcp_from("127.0.0.2", "127.0.0.1", port);
		assert_true(tcp_served(held[i]));
	}
	/* Then the other way round: worker 0 takes the third, and refuses the fourth. */
	assert_int_equal(kill(w[0], SIGCONT), 0);
	assert_int_equal(kill(w[1], SIGSTOP), 0);
	held[2] = tcp_from("127.0.0.2", "127.0.0.1", port);
	assert_true(tcp_served(held[2]));
	assert_false(tcp_try("127.0.0.2", "127.0.0.1", port));
	assert_int_equal(kill(w[1], SIGCONT), 0);
	assert_false(tcp_try("127.0.0.2", "127.0.0.1", port));
	/* Another address is served meanwhile. */
	assert_true(tcp_try("127.0.0.3", "127.0.0.1", port));
	/* One closes: once the daemon has seen it go, the next is accepted again. */
	close(held[0]);
	for (deadline = now_ms() + EM_DEADLINE_MS; ; nap_ms(EM_POLL_NAP_MS)) {
		held[0] = tcp_from("127.0.0.2", "127.0.0.1", port);
		if (tcp_served(held[0]))
			break;
		close(held[0]);
		if (now_ms() > deadline)
			fail_msg("a closed connection still counts against its address");
	}
	assert_false(tcp_try("127.0.0.2", "127.0.0.1", port));
	for (int i = 0; i < LIMIT; i++)
		assert_true(tcp_served(held[i]));  /* the held ones never noticed */
	for (int i = 0; i < LIMIT; i++)
		close(held[i]);
}

static void
a_killed_worker_leaves_no_counts_behind(void **state)
{
	struct env *e = *state;
	int port = port_pick();
	pid_t before[1], after[1];
	int held[LIMIT];

	start(e,
	    "workers = 1;\n"
	    "log = { level = \"info\"; stderr = true; };\n"
	    "limits = { max_connections_per_address = 3; };\n"
	    "listen = ( { proto = \"tcp\"; address = \"127.0.0.1\"; port = PORT; } );\n",
	    port, 1);
	env_wait_workers(e, 1, before, EM_DEADLINE_MS);
	for (int i = 0; i < LIMIT; i++) {
		held[i] = tcp_from("127.0.0.2", "127.0.0.1", port);
		assert_true(tcp_served(held[i]));
	}
	assert_false(tcp_try("127.0.0.2", "127.0.0.1", port));
	assert_int_equal(kill(before[0], SIGKILL), 0);
	for (int i = 0; i < LIMIT; i++)
		close(held[i]);
	env_wait_log(e, "killed by signal 9 (SIGKILL)", EM_DEADLINE_MS);
	env_wait_workers(e, 1, after, EM_DEADLINE_MS);
	assert_true(after[0] != before[0]);
	/* The new worker was forked after the reap, so the purge is done: no polling needed. */
	for (int i = 0; i < LIMIT; i++) {
		held[i] = tcp_from("127.0.0.2", "127.0.0.1", port);
		assert_true(tcp_served(held[i]));
	}
	assert_false(tcp_try("127.0.0.2", "127.0.0.1", port));
	for (int i = 0; i < LIMIT; i++)
		close(held[i]);
}

/*
 * Sends `count` datagrams from SRC and counts the replies, waiting until
 * none has come for QUIET_MS. Returns the replies; *elapsed_ms how long it took.
 */
static int
udp_flood(int fd, int count, int64_t *elapsed_ms)
{
	int64_t start_ms = now_ms(), deadline = start_ms + EM_DEADLINE_MS;
	char buf[64];
	int replies = 0;

	for (int i = 0; i < count; i++) {
		char msg[16];
		int len = snprintf(msg, sizeof(msg), "d%d", i);
		assert_int_equal(send(fd, msg, (size_t)len, 0), len);
	}
	while (now_ms() < deadline && udp_wait_reply(fd, buf, sizeof(buf), QUIET_MS) > 0)
		replies++;
	*elapsed_ms = now_ms() - start_ms;
	return replies;
}

static void
udp_rate_limit_per_source(void **state)
{
	struct env *e = *state;
	int port = port_pick();
	int flood, other, replies;
	int64_t elapsed;
	char buf[64];

	start(e,
	    "workers = 2;\n"
	    "log = { level = \"info\"; stderr = true; };\n"
	    "limits = { udp_rate = 1; udp_burst = 5; };\n"
	    "listen = ( { proto = \"udp\"; address = \"127.0.0.1\"; port = PORT; } );\n",
	    port, 2);
	flood = sock_from(SOCK_DGRAM, "127.0.0.2", "127.0.0.1", port);
	other = sock_from(SOCK_DGRAM, "127.0.0.3", "127.0.0.1", port);
	replies = udp_flood(flood, 40, &elapsed);
	/* The burst, plus one token a second while the test ran; across both workers. */
	if (replies < 5 || replies > 5 + 1 + (int)(elapsed / 1000))
		fail_msg("%d replies to 40 datagrams in %lld ms (burst 5, rate 1)", replies,
		    (long long)elapsed);
	/* Another source has its own bucket. */
	assert_int_equal(send(other, "hello", 5, 0), 5);
	assert_int_equal(udp_wait_reply(other, buf, sizeof(buf), EM_DEADLINE_MS), 5);
	assert_memory_equal(buf, "HELLO", 5);
	assert_false(env_log_has(e, "127.0.0.2"));
	close(flood);
	close(other);
}

static void
udp_rate_zero_is_no_limit(void **state)
{
	struct env *e = *state;
	int port = port_pick();
	int64_t elapsed;
	int fd;

	start(e,
	    "workers = 1;\n"
	    "log = { level = \"info\"; stderr = true; };\n"
	    "limits = { udp_rate = 0; udp_burst = 5; };\n"
	    "listen = ( { proto = \"udp\"; address = \"127.0.0.1\"; port = PORT; } );\n",
	    port, 1);
	fd = sock_from(SOCK_DGRAM, "127.0.0.2", "127.0.0.1", port);
	assert_int_equal(udp_flood(fd, 40, &elapsed), 40);
	close(fd);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(tcp_allow_and_deny_lists, env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(udp_allow_and_deny_lists, env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(per_address_limit_across_workers, env_setup,
		    env_teardown),
		cmocka_unit_test_setup_teardown(a_killed_worker_leaves_no_counts_behind, env_setup,
		    env_teardown),
		cmocka_unit_test_setup_teardown(udp_rate_limit_per_source, env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(udp_rate_zero_is_no_limit, env_setup, env_teardown),
	};
	return cmocka_run_group_tests_name("access", tests, NULL, NULL);
}
