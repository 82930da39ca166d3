/*
 * test_protocol.c: what a client sees. One daemon per test with two ports:
 * ports[0] serves mode "upper" and ports[1] mode "echo", each on TCP and
 * UDP, so every test also exercises several listeners at once.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "harness.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define PROTO_WORKERS	2
#define MANY_CLIENTS	200
#define LOTS_CLIENTS	1000
#define ONE_MIB		(1024 * 1024)
#define UDP_MAX		65507
/* Far more than the kernel can hold in the socket buffers of one loopback
 * connection (a few tens of MiB here), so a server that buffers without
 * bound is caught accepting all of it. */
#define FLOOD_BYTES	(128u * 1024 * 1024)
#define STALL_MS	1500

static const char MIXED[] =
    "Hello, World! abc-xyz_ABC 0123456789 {}[]~\t\r\n"
    "the quick brown fox jumps over the lazy dog\n";

struct proto {
	struct env	*env;
	int		 upper;		/* port serving mode "upper" */
	int		 echo;		/* port serving mode "echo" */
};

static struct proto
proto_start(void **state)
{
	struct proto p = { .env = *state };
	struct em_conf c;
	int ports[2];

	ports_pick(ports, 2);
	p.upper = ports[0];
	p.echo = ports[1];
	conf_init(&c, PROTO_WORKERS);
	conf_listen_pair(&c, p.upper, "upper");
	conf_listen_pair(&c, p.echo, "echo");
	env_write_conf(p.env, &c);
	env_start_ready(p.env, PROTO_WORKERS, p.upper);
	tcp_wait_listening(p.echo, EM_DEADLINE_MS);
	return p;
}

static void
upper_of(const char *s, uint8_t *out)
{
	ref_upper((const uint8_t *)s, out, strlen(s));
}

/* The 256 byte values in order, then in reverse, so each value is seen next
 * to different neighbours. */
static void
all_bytes(uint8_t buf[512])
{
	int i;

	for (i = 0; i < 256; i++) {
		buf[i] = (uint8_t)i;
		buf[511 - i] = (uint8_t)i;
	}
}

/*
 * The harness's reference transform against bytes written out by hand, so
 * that the tests which compare the daemon's replies with it do not share a
 * mistake with it: the edges of both letter ranges, the bytes next to them,
 * and bytes with the high bit set.
 */
static void
test_reference_upper(void **state)
{
	static const uint8_t in[] = "@AZ[`az{ 09~\x7f\x80\xc1\xe1\xfa\xff\x00mIxEd";
	static const uint8_t want[] = "@AZ[`AZ{ 09~\x7f\x80\xc1\xe1\xfa\xff\x00MIXED";
	uint8_t got[sizeof(in)];

	(void)state;
	ref_upper(in, got, sizeof(in));
	bytes_expect(got, want, sizeof(in), "ref_upper");
}

static void
test_tcp_upper(void **state)
{
	struct proto p = proto_start(state);
	uint8_t want[sizeof(MIXED)];

	upper_of(MIXED, want);
	tcp_roundtrip(p.upper, MIXED, strlen(MIXED), want);
}

/* Not line based: bytes without a newline come back at once, and the
 * connection stays open for the next exchange. */
static void
test_tcp_upper_no_newline_same_connection(void **state)
{
	struct proto p = proto_start(state);
	const char *parts[] = { "abc", "x", "Mixed Case 42", "z" };
	uint8_t want[64], got[64];
	size_t i, len;
	int fd;

	fd = tcp_connect(p.upper, EM_DEADLINE_MS);
	assert_true(fd >= 0);
	for (i = 0; i < sizeof(parts) / sizeof(*parts); i++) {
		len = strlen(parts[i]);
		upper_of(parts[i], want);
		assert_int_equal(tcp_send_all(fd, parts[i], len,
		    EM_DEADLINE_MS), 0);
		assert_int_equal(tcp_read_exact(fd, got, len, EM_DEADLINE_MS),
		    len);
		bytes_expect(got, want, len, parts[i]);
	}
	close(fd);
}

static void
test_tcp_echo(void **state)
{
	struct proto p = proto_start(state);

	tcp_roundtrip(p.echo, MIXED, strlen(MIXED), MIXED);
}

static void
udp_expect(int port, const void *msg, size_t len, const uint8_t *want)
{
	uint8_t *reply = malloc(UDP_MAX + 1);
	ssize_t n;

	assert_non_null(reply);
	n = udp_exchange(port, msg, len, reply, UDP_MAX + 1, EM_DEADLINE_MS);
	if (n != (ssize_t)len) {
		free(reply);
		fail_msg("UDP port %d: sent %zu bytes, reply %zd (%s)", port,
		    len, n, n == -1 ? strerror(errno) : "wrong length");
	}
	bytes_expect(reply, want, len, "UDP reply");
	free(reply);
}

static void
test_udp_upper(void **state)
{
	struct proto p = proto_start(state);
	uint8_t want[sizeof(MIXED)];

	upper_of(MIXED, want);
	udp_expect(p.upper, MIXED, strlen(MIXED), want);
}

static void
test_udp_echo(void **state)
{
	struct proto p = proto_start(state);

	udp_expect(p.echo, MIXED, strlen(MIXED), (const uint8_t *)MIXED);
}

/* The largest IPv4 UDP payload comes back whole, not truncated. */
static void
test_udp_largest_datagram(void **state)
{
	struct proto p = proto_start(state);
	uint8_t *msg = malloc(UDP_MAX), *want = malloc(UDP_MAX);

	assert_non_null(msg);
	assert_non_null(want);
	pattern_fill(msg, UDP_MAX, 7);
	ref_upper(msg, want, UDP_MAX);
	udp_expect(p.upper, msg, UDP_MAX, want);
	free(msg);
	free(want);
}

static void
test_binary_bytes_tcp(void **state)
{
	struct proto p = proto_start(state);
	uint8_t msg[512], want[512];

	all_bytes(msg);
	ref_upper(msg, want, sizeof(msg));
	tcp_roundtrip(p.upper, msg, sizeof(msg), want);
	tcp_roundtrip(p.echo, msg, sizeof(msg), msg);
}

static void
test_binary_bytes_udp(void **state)
{
	struct proto p = proto_start(state);
	uint8_t msg[512], want[512];

	all_bytes(msg);
	ref_upper(msg, want, sizeof(msg));
	udp_expect(p.upper, msg, sizeof(msg), want);
	udp_expect(p.echo, msg, sizeof(msg), msg);
}

static size_t
client_message(size_t i, char *buf, size_t len)
{
	/* Lower case, digits and the index spelt out: each client's reply
	 * is distinct, so a reply sent to the wrong client is caught. */
	return (size_t)snprintf(buf, len,
	    "client %03zu of many: hello echomaster, token %08zx-%zu\n", i,
	    (i * 2654435761u) & 0xffffffffu, i * i);
}

/* All connections are open before the first byte is sent, so the daemon
 * holds n connections at once. */
static void
clients_at_once(int port, size_t n_clients)
{
	int *fds = calloc(n_clients, sizeof(*fds));
	char msg[128];
	uint8_t want[128], got[128];
	size_t i, len;
	ssize_t n;

	assert_non_null(fds);
	for (i = 0; i < n_clients; i++) {
		fds[i] = tcp_connect(port, EM_DEADLINE_MS);
		if (fds[i] == -1)
			fail_msg("client %zu: connect: %s", i, strerror(errno));
	}
	for (i = 0; i < n_clients; i++) {
		len = client_message(i, msg, sizeof(msg));
		assert_int_equal(tcp_send_all(fds[i], msg, len,
		    EM_DEADLINE_MS), 0);
	}
	for (i = 0; i < n_clients; i++) {
		len = client_message(i, msg, sizeof(msg));
		upper_of(msg, want);
		n = tcp_read_exact(fds[i], got, len, EM_DEADLINE_MS);
		if (n != (ssize_t)len)
			fail_msg("client %zu: got %zd of %zu bytes", i, n, len);
		bytes_expect(got, want, len, msg);
	}
	for (i = 0; i < n_clients; i++)
		close(fds[i]);
	free(fds);
}

static void
test_many_clients_at_once(void **state)
{
	struct proto p = proto_start(state);

	clients_at_once(p.upper, MANY_CLIENTS);
}

static void
test_thousand_clients_at_once(void **state)
{
	struct proto p = proto_start(state);

	clients_at_once(p.upper, LOTS_CLIENTS);
}

/* Sending and receiving interleave (the stream pump polls both), or the
 * client would deadlock against the server's backpressure. */
static void
test_one_mib_intact(void **state)
{
	struct proto p = proto_start(state);
	struct em_stream s[2];

	stream_open(&s[0], p.upper, ONE_MIB, 1);
	stream_open(&s[1], p.echo, ONE_MIB, 2);
	if (streams_pump(s, 2, ONE_MIB, false, EM_DEADLINE_MS * 2) == -1)
		fail_msg("1 MiB transfer: %s", strerror(errno));
	bytes_expect_upper(s[0].in, s[0].out, ONE_MIB, "1 MiB upper");
	bytes_expect(s[1].in, s[1].out, ONE_MIB, "1 MiB echo");
	stream_close(&s[0]);
	stream_close(&s[1]);
}

static void
test_half_close_small(void **state)
{
	struct proto p = proto_start(state);
	const char *msg = "half-closed, but still answered";
	uint8_t want[64], got[64];
	size_t len = strlen(msg);
	int fd;

	fd = tcp_connect(p.upper, EM_DEADLINE_MS);
	assert_true(fd >= 0);
	assert_int_equal(tcp_send_all(fd, msg, len, EM_DEADLINE_MS), 0);
	assert_int_equal(shutdown(fd, SHUT_WR), 0);
	upper_of(msg, want);
	assert_int_equal(tcp_read_exact(fd, got, len, EM_DEADLINE_MS), len);
	bytes_expect(got, want, len, "reply after SHUT_WR");
	if (tcp_wait_eof(fd, EM_DEADLINE_MS) == -1)
		fail_msg("no EOF after the reply to a half-closed connection: "
		    "%s", strerror(errno));
	close(fd);
}

/* Large enough that most of the reply is still in flight when the client
 * shuts down its side: the server must deliver it all before closing. */
static void
test_half_close_large(void **state)
{
	struct proto p = proto_start(state);
	size_t len = 4 * ONE_MIB;
	struct em_stream s;

	stream_open(&s, p.upper, len, 3);
	if (streams_pump(&s, 1, len, true, EM_DEADLINE_MS * 2) == -1)
		fail_msg("half-closed 4 MiB transfer: %s", strerror(errno));
	assert_true(s.eof);
	bytes_expect_upper(s.in, s.out, len, "4 MiB half-closed");
	stream_close(&s);
}

/* Writes until the socket accepts nothing for STALL_MS; returns the bytes
 * the server let in. */
static size_t
flood_until_stall(int fd, const uint8_t *buf, size_t len)
{
	int64_t deadline = now_ms() + EM_DEADLINE_MS * 3;
	struct pollfd pfd = { .fd = fd, .events = POLLOUT };
	size_t sent = 0;
	ssize_t n;

	while (sent < len && now_ms() < deadline) {
		n = send(fd, buf + sent, len - sent, MSG_NOSIGNAL);
		if (n > 0) {
			sent += (size_t)n;
			continue;
		}
		if (n == -1 && errno != EAGAIN && errno != EINTR)
			fail_msg("flood send: %s", strerror(errno));
		if (poll(&pfd, 1, STALL_MS) == 0)
			break;
	}
	return sent;
}

/* A client that never reads must not make the server buffer without
 * bound; once it does read, every byte still arrives. */
static void
test_never_reading_client_is_bounded(void **state)
{
	struct proto p = proto_start(state);
	uint8_t *out = malloc(FLOOD_BYTES), *in = malloc(FLOOD_BYTES);
	size_t sent;
	ssize_t got;
	int fd;

	assert_non_null(out);
	assert_non_null(in);
	pattern_fill(out, FLOOD_BYTES, 4);
	fd = tcp_connect(p.upper, EM_DEADLINE_MS);
	assert_true(fd >= 0);
	sent = flood_until_stall(fd, out, FLOOD_BYTES);
	print_message("never-reading client: server took %zu bytes before "
	    "pushing back\n", sent);
	if (sent == FLOOD_BYTES)
		fail_msg("the server took all %u bytes from a client that "
		    "never read: its buffering is not bounded", FLOOD_BYTES);
	got = tcp_read_exact(fd, in, sent, EM_DEADLINE_MS * 3);
	if (got != (ssize_t)sent)
		fail_msg("after reading resumed: got %zd of %zu bytes", got,
		    sent);
	bytes_expect_upper(in, out, sent, "flood reply");
	close(fd);
	free(out);
	free(in);
}

/* "*" and "::" on one port at once: possible only because the IPv6
 * socket is IPV6_V6ONLY, and each family is served. */
static void
test_any_ipv4_and_any_ipv6_same_port(void **state)
{
	struct env *e = *state;
	const char *msg = "dual stack";
	char reply[32];
	struct em_conf c;
	size_t i;
	int fd, port = port_pick();

	conf_init(&c, PROTO_WORKERS);
	conf_listen_pair(&c, port, "upper");
	conf_listen_pair(&c, port, "upper");
	c.listen[0].address = c.listen[1].address = "*";
	c.listen[2].address = c.listen[3].address = "::";
	env_write_conf(e, &c);
	env_start_ready(e, PROTO_WORKERS, port);
	tcp_roundtrip(port, msg, strlen(msg), "DUAL STACK");
	fd = tcp_connect_to("::1", port, EM_DEADLINE_MS);
	if (fd == -1)
		fail_msg("connect [::1]:%d: %s", port, strerror(errno));
	assert_int_equal(tcp_send_all(fd, msg, strlen(msg), EM_DEADLINE_MS),
	    0);
	assert_int_equal(tcp_read_exact(fd, reply, strlen(msg),
	    EM_DEADLINE_MS), strlen(msg));
	assert_memory_equal(reply, "DUAL STACK", strlen(msg));
	close(fd);
	for (i = 0; i < 2; i++) {
		const char *ip = i == 0 ? "127.0.0.1" : "::1";

		if (udp_exchange_to(ip, port, msg, strlen(msg), reply,
		    sizeof(reply), EM_DEADLINE_MS) != (ssize_t)strlen(msg))
			fail_msg("UDP %s port %d: %s", ip, port,
			    strerror(errno));
		assert_memory_equal(reply, "DUAL STACK", strlen(msg));
	}
}

/* "::" alone does not take IPv4 traffic (IPV6_V6ONLY). */
static void
test_any_ipv6_is_v6_only(void **state)
{
	struct env *e = *state;
	struct em_conf c;
	int fd, port = port_pick();

	conf_init(&c, PROTO_WORKERS);
	conf_listen(&c, "tcp", port, "upper");
	c.listen[0].address = "::";
	env_write_conf(e, &c);
	env_start(e);
	env_wait_log(e, "ready: 2 workers, generation 1", EM_DEADLINE_MS);
	fd = tcp_connect_to("::1", port, EM_DEADLINE_MS);
	if (fd == -1)
		fail_msg("connect [::1]:%d: %s", port, strerror(errno));
	close(fd);
	fd = tcp_connect(port, EM_DEADLINE_MS);
	if (fd != -1) {
		close(fd);
		fail_msg("127.0.0.1:%d accepted, but only \"::\" is "
		    "configured", port);
	}
	assert_int_equal(errno, ECONNREFUSED);
}

/* Talks for longer than idle_timeout, in gaps shorter than it, and is
 * never cut; then goes quiet and is closed by the server, not before
 * idle_timeout has passed. `quiet` is taken before the last byte is sent,
 * so the server's own idea of the last activity can only be later. */
static void
test_idle_timeout(void **state)
{
	struct env *e = *state;
	struct em_conf c;
	int64_t until, quiet = 0, idle;
	char got[2];
	int fd, port = port_pick();

	conf_init(&c, PROTO_WORKERS);
	c.idle_timeout = 2;
	conf_listen_pair(&c, port, "upper");
	env_write_conf(e, &c);
	env_start_ready(e, PROTO_WORKERS, port);
	fd = tcp_connect(port, EM_DEADLINE_MS);
	assert_true(fd >= 0);
	for (until = now_ms() + 4500; now_ms() < until; nap_ms(250)) {
		quiet = now_ms();
		assert_int_equal(tcp_send_all(fd, "k", 1, EM_DEADLINE_MS), 0);
		if (tcp_read_exact(fd, got, 1, EM_DEADLINE_MS) != 1)
			fail_msg("an active connection was closed: %s",
			    strerror(errno));
		assert_int_equal(got[0], 'K');
	}
	if (tcp_wait_eof(fd, EM_DEADLINE_MS) == -1)
		fail_msg("idle connection not closed (idle_timeout = 2): %s",
		    strerror(errno));
	idle = now_ms() - quiet;
	print_message("idle connection closed %lld ms after its last byte\n",
	    (long long)idle);
	if (idle < 1950)
		fail_msg("closed after %lld ms of quiet, idle_timeout = 2 s",
		    (long long)idle);
	close(fd);
}

/* idle_timeout = 1 is in range (0..86400): a connection quiet for a tenth
 * of a second is not idle for a second and must not be closed. Two
 * connections take turns every 50 ms, so whenever the worker wakes up for
 * one, the other has been quiet for about 50 ms. */
static void
test_idle_timeout_one_second_spares_busy_connections(void **state)
{
	struct env *e = *state;
	struct em_conf c;
	int64_t until;
	char got[2];
	int fd[2], port = port_pick(), turn = 0;

	conf_init(&c, 1);
	c.idle_timeout = 1;
	conf_listen_pair(&c, port, "upper");
	env_write_conf(e, &c);
	env_start_ready(e, 1, port);
	fd[0] = tcp_connect(port, EM_DEADLINE_MS);
	fd[1] = tcp_connect(port, EM_DEADLINE_MS);
	assert_true(fd[0] >= 0 && fd[1] >= 0);
	for (until = now_ms() + 5000; now_ms() < until; nap_ms(50), turn++) {
		int *f = &fd[turn % 2];

		if (tcp_send_all(*f, "k", 1, EM_DEADLINE_MS) == -1 ||
		    tcp_read_exact(*f, got, 1, EM_DEADLINE_MS) != 1)
			fail_msg("connection %d closed at turn %d though it "
			    "talks every 100 ms (idle_timeout = 1)", turn % 2,
			    turn);
	}
	close(fd[0]);
	close(fd[1]);
}

/* Sends len bytes it never reads back, then resets the connection. */
static void
client_abort(int port, size_t len)
{
	struct linger lg = { .l_onoff = 1, .l_linger = 0 };
	uint8_t *buf = malloc(len);
	int fd;

	assert_non_null(buf);
	pattern_fill(buf, len, (uint32_t)len);
	fd = tcp_connect(port, EM_DEADLINE_MS);
	assert_true(fd >= 0);
	/* Backpressure may stop us early; what matters is unsent output
	 * on the server's side when the RST comes. */
	tcp_send_all(fd, buf, len, 200);
	assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg,
	    sizeof(lg)), 0);
	close(fd);
	free(buf);
}

/* Clients that vanish with a RST, mid-transfer, cost the daemon nothing:
 * the same workers (none crashed) go on serving everyone else. */
static void
test_reset_clients_do_not_hurt(void **state)
{
	struct proto p = proto_start(state);
	pid_t before[PROTO_WORKERS], after[PROTO_WORKERS];
	uint8_t want[sizeof(MIXED)];
	int i;

	env_wait_workers(p.env, PROTO_WORKERS, before, EM_DEADLINE_MS);
	for (i = 0; i < 40; i++)
		client_abort(i % 2 ? p.upper : p.echo, (size_t)(i + 1) * 16384);
	upper_of(MIXED, want);
	for (i = 0; i < 20; i++)
		tcp_roundtrip(p.upper, MIXED, strlen(MIXED), want);
	env_wait_workers(p.env, PROTO_WORKERS, after, EM_DEADLINE_MS);
	assert_memory_equal(before, after, sizeof(before));
}

/* An empty datagram is a datagram: RFC 862 echoes it, empty. */
static void
test_udp_empty_datagram(void **state)
{
	struct proto p = proto_start(state);
	char reply[16];
	ssize_t n;

	n = udp_exchange(p.upper, "", 0, reply, sizeof(reply), EM_DEADLINE_MS);
	if (n != 0)
		fail_msg("empty datagram: reply %zd (%s)", n,
		    n == -1 ? strerror(errno) : "not empty");
}

#define T(f) cmocka_unit_test_setup_teardown(f, env_setup, env_teardown)

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_reference_upper),
		T(test_tcp_upper),
		T(test_tcp_upper_no_newline_same_connection),
		T(test_tcp_echo),
		T(test_udp_upper),
		T(test_udp_echo),
		T(test_udp_largest_datagram),
		T(test_udp_empty_datagram),
		T(test_binary_bytes_tcp),
		T(test_binary_bytes_udp),
		T(test_many_clients_at_once),
		T(test_thousand_clients_at_once),
		T(test_one_mib_intact),
		T(test_half_close_small),
		T(test_half_close_large),
		T(test_never_reading_client_is_bounded),
		T(test_reset_clients_do_not_hurt),
		T(test_any_ipv4_and_any_ipv6_same_port),
		T(test_any_ipv6_is_v6_only),
		T(test_idle_timeout),
		T(test_idle_timeout_one_second_spares_busy_connections),
	};

	return cmocka_run_group_tests_name("protocol", tests, NULL, NULL);
}
