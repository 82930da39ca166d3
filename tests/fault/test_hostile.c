/*
 * test_hostile.c: bad and hostile input. Random binary streams and random
 * datagram sizes from 0 to 65507 bytes echo exactly; idle, silent,
 * non-reading and half-closed clients are dropped after idle_timeout while
 * a slow but live one is not; limits.max_connections refuses the excess of
 * one worker cleanly without touching its connected clients. Hostile TLS
 * clients (garbage for a ClientHello, a handshake stalled or reset midway,
 * truncated and forged records, a flood of abandoned handshakes) harm only
 * themselves: a good TLS client and a plain one on the same worker are
 * served throughout, the worker lives on, and the status counters say what
 * each failed handshake was.
 *
 * udp_rate = 0 where datagrams are counted: this file checks the echo, and
 * the per-source limiter would otherwise decide how many come back.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "fault.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/ssl.h>

#define STREAMS		8
#define STREAM_MAX	(2u * 1024 * 1024)
#define DGRAMS		300
#define DGRAM_MAX	65507
#define IDLE_S		1
#define MAXCONN		5
#define EXCESS		5
#define HANDSHAKE_S	2
#define FLOOD		100

static int
start_with(struct env *e, int workers, const char *extra)
{
	struct em_conf c;
	int port = port_pick();

	conf_init(&c, workers);
	conf_listen_pair(&c, port, "upper");
	fault_write_conf(e, &c, extra);
	env_start_ready(e, workers, port);
	return port;
}

static void
random_fill(uint8_t *buf, size_t len, uint32_t *rng)
{
	for (size_t i = 0; i < len; i++)
		buf[i] = (uint8_t)fault_rand(rng);
}

static void
test_random_binary_streams(void **state)
{
	struct env *e = *state;
	struct em_stream s[STREAMS];
	uint32_t rng = 0xb1a5u ^ (uint32_t)getpid();
	size_t i, total = 0;
	int port = start_with(e, 2, "");

	for (i = 0; i < STREAMS; i++) {
		size_t len = 1 + fault_rand(&rng) % STREAM_MAX;

		stream_open(&s[i], port, len, (uint32_t)i);
		random_fill(s[i].out, len, &rng);
		total += len;
	}
	if (streams_pump(s, STREAMS, SIZE_MAX, true, EM_DEADLINE_MS * 2) == -1)
		fail_msg("random streams: %s", strerror(errno));
	for (i = 0; i < STREAMS; i++) {
		bytes_expect_upper(s[i].in, s[i].out, s[i].len, "random stream");
		stream_close(&s[i]);
	}
	print_message("%d random binary streams, %zu bytes, echoed exactly\n",
	    STREAMS, total);
}

static void
dgram_check(int fd, const uint8_t *msg, size_t len, uint8_t *reply)
{
	ssize_t n = udp_roundtrip_fd(fd, msg, len, reply, DGRAM_MAX + 1,
	    EM_DEADLINE_MS);

	if (n != (ssize_t)len)
		fail_msg("datagram of %zu bytes: reply %zd (%s)", len, n,
		    n == -1 ? strerror(errno) : "wrong length");
	bytes_expect_upper(reply, msg, len, "datagram");
}

static void
test_random_datagram_sizes(void **state)
{
	struct env *e = *state;
	static const size_t edges[] = { 0, 1, 2, 1472, 1473, 8192, 65506,
	    DGRAM_MAX };
	uint8_t *msg = malloc(DGRAM_MAX), *reply = malloc(DGRAM_MAX + 1);
	uint32_t rng = 0xda7au ^ (uint32_t)getpid();
	size_t i, zero = 0, bytes = 0;
	int fd, port = start_with(e, 2, "limits = { udp_rate = 0; };\n");

	assert_non_null(msg);
	assert_non_null(reply);
	fd = udp_client(port);
	for (i = 0; i < sizeof(edges) / sizeof(*edges); i++) {
		random_fill(msg, edges[i], &rng);
		dgram_check(fd, msg, edges[i], reply);
	}
	for (i = 0; i < DGRAMS; i++) {
		size_t len = fault_rand(&rng) % (DGRAM_MAX + 1);

		/* One in ten empty: zero-length datagrams are answered too. */
		if (fault_rand(&rng) % 10 == 0)
			len = 0;
		random_fill(msg, len, &rng);
		dgram_check(fd, msg, len, reply);
		zero += len == 0;
		bytes += len;
	}
	print_message("%zu datagrams of random size (%zu empty, %zu bytes) "
	    "plus the edges 0..65507 echoed exactly\n", (size_t)DGRAMS, zero,
	    bytes);
	close(fd);
	free(msg);
	free(reply);
}

/* Whether the worker still holds the connection from local port lport. */
static bool
held_by(pid_t worker, int port, int lport)
{
	int held[256];
	size_t n = fault_held_client_ports(worker, port, held, 256);

	for (size_t i = 0; i < n && i < 256; i++)
		if (held[i] == lport)
			return true;
	return false;
}

static int
local_port(int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);

	assert_int_equal(getsockname(fd, (struct sockaddr *)&ss, &len), 0);
	return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

/* Fills the path to a client that does not read until the daemon has
 * output it cannot send; returns how much it sent. */
static size_t
stuff(int fd)
{
	static uint8_t junk[65536];
	int64_t last = now_ms();
	size_t sent = 0;

	memset(junk, 'q', sizeof(junk));
	while (now_ms() - last < 300) {
		ssize_t n = send(fd, junk, sizeof(junk),
		    MSG_DONTWAIT | MSG_NOSIGNAL);

		if (n > 0) {
			sent += (size_t)n;
			last = now_ms();
		} else {
			nap_ms(10);
		}
	}
	return sent;
}

enum { IDLE_SILENT, IDLE_AFTER_ECHO, IDLE_NOT_READING, IDLE_HALF_CLOSED,
    IDLE_KINDS };
static const char *const idle_names[IDLE_KINDS] = { "connected, silent",
    "silent after one echo", "not reading, output stuck",
    "half-closed, not reading" };

static void
test_idle_clients_closed_after_timeout(void **state)
{
	struct env *e = *state;
	int fd[IDLE_KINDS], lport[IDLE_KINDS], slow, k, port;
	int64_t t0, gone[IDLE_KINDS] = { 0 }, deadline;
	char got[32];
	pid_t worker;
	bool open_left;

	port = start_with(e, 1, "limits = { idle_timeout = 1; };\n");
	fault_wait_children(e, 1, &worker, EM_DEADLINE_MS);
	for (k = 0; k < IDLE_KINDS; k++) {
		fd[k] = tcp_connect(port, EM_DEADLINE_MS);
		assert_true(fd[k] >= 0);
		lport[k] = local_port(fd[k]);
	}
	t0 = now_ms();
	assert_int_equal(tcp_send_all(fd[IDLE_AFTER_ECHO], "hi", 2,
	    EM_DEADLINE_MS), 0);
	assert_int_equal(tcp_read_exact(fd[IDLE_AFTER_ECHO], got, 2,
	    EM_DEADLINE_MS), 2);
	stuff(fd[IDLE_NOT_READING]);
	stuff(fd[IDLE_HALF_CLOSED]);
	shutdown(fd[IDLE_HALF_CLOSED], SHUT_WR);
	/* Meanwhile a slow client, one byte every 300 ms, is live, not idle.
	 * It connects only now: the stuffing above can take over a second. */
	slow = tcp_connect(port, EM_DEADLINE_MS);
	assert_true(slow >= 0);
	deadline = t0 + IDLE_S * 1000 + 5000;
	for (int i = 0; now_ms() < deadline; i++) {
		assert_int_equal(tcp_send_all(slow, "s", 1, EM_DEADLINE_MS), 0);
		if (tcp_read_exact(slow, got, 1, EM_DEADLINE_MS) != 1)
			fail_msg("slow client: no echo at round %d, %lld ms after t0", i, (long long)(now_ms() - t0));
		assert_int_equal(got[0], 'S');
		open_left = false;
		for (k = 0; k < IDLE_KINDS; k++) {
			if (gone[k] == 0 && !held_by(worker, port, lport[k]))
				gone[k] = now_ms();
			open_left = open_left || gone[k] == 0;
		}
		if (!open_left && i > 10)
			break;
		nap_ms(300);
	}
	for (k = 0; k < IDLE_KINDS; k++) {
		print_message("%s: closed by the daemon after %lld ms "
		    "(idle_timeout %d s)\n", idle_names[k],
		    gone[k] != 0 ? (long long)(gone[k] - t0) : -1LL, IDLE_S);
		if (gone[k] == 0)
			fail_msg("%s client still held after %d ms", idle_names[k],
			    IDLE_S * 1000 + 5000);
		/* Not before the timeout: the stuffing took up to a second. */
		assert_true(gone[k] - t0 >= IDLE_S * 1000 - 100);
		close(fd[k]);
	}
	assert_true(held_by(worker, port, local_port(slow)));
	tcp_roundtrip(port, "after\n", 6, "AFTER\n");
	close(slow);
}

static void
test_max_connections_refuses_excess_cleanly(void **state)
{
	struct env *e = *state;
	int in[MAXCONN], out[EXCESS], i, fresh, port, eof = 0, reset = 0;
	char extra[64], got[16];

	snprintf(extra, sizeof(extra),
	    "limits = { max_connections = %d; };\n", MAXCONN);
	port = start_with(e, 1, extra);
	for (i = 0; i < MAXCONN; i++) {
		in[i] = tcp_connect(port, EM_DEADLINE_MS);
		assert_true(in[i] >= 0);
		assert_int_equal(tcp_send_all(in[i], "in", 2, EM_DEADLINE_MS), 0);
		assert_int_equal(tcp_read_exact(in[i], got, 2, EM_DEADLINE_MS), 2);
	}
	/* The excess: accepted by the kernel, then closed, never served. The
	 * close is a FIN, or a reset when "out" was already there unread. */
	for (i = 0; i < EXCESS; i++) {
		ssize_t n;

		out[i] = tcp_connect(port, EM_DEADLINE_MS);
		assert_true(out[i] >= 0);
		tcp_send_all(out[i], "out", 3, EM_DEADLINE_MS);
		n = tcp_read_exact(out[i], got, sizeof(got), EM_DEADLINE_MS);
		if (n == 0 && tcp_wait_eof(out[i], 0) == 0)
			eof++;
		else if (n == -1 && errno == ECONNRESET)
			reset++;
		else
			fail_msg("connection %d over max_connections = %d: read "
			    "gave %zd (%s), want EOF or a reset", MAXCONN + i + 1,
			    MAXCONN, n, n == -1 ? strerror(errno) : n > 0 ?
			    "served" : "nothing: still open");
		close(out[i]);
	}
	/* The connected ones did not notice. */
	for (i = 0; i < MAXCONN; i++) {
		assert_int_equal(tcp_send_all(in[i], "still", 5, EM_DEADLINE_MS),
		    0);
		assert_int_equal(tcp_read_exact(in[i], got, 5, EM_DEADLINE_MS),
		    5);
		assert_memory_equal(got, "STILL", 5);
	}
	/* A freed place is taken by the next client. */
	close(in[0]);
	for (int64_t deadline = now_ms() + EM_DEADLINE_MS;;) {
		fresh = tcp_connect(port, EM_DEADLINE_MS);
		assert_true(fresh >= 0);
		assert_int_equal(tcp_send_all(fresh, "new", 3, EM_DEADLINE_MS), 0);
		if (tcp_read_exact(fresh, got, 3, 2000) == 3)
			break;
		close(fresh);  /* the close of in[0] not yet seen: again */
		if (now_ms() >= deadline)
			fail_msg("no place freed by a closed connection");
	}
	assert_memory_equal(got, "NEW", 3);
	close(fresh);
	for (i = 1; i < MAXCONN; i++)
		close(in[i]);
	print_message("max_connections = %d: %d served; %d excess closed at "
	    "once, never served (%d EOF, %d reset); the %d kept working\n",
	    MAXCONN, MAXCONN, EXCESS, eof, reset, MAXCONN);
}

/* ---- hostile TLS clients ------------------------------------------------ */

/* Both well-behaved clients still get their echo. */
static void
others_served(struct tls_client *good, int plain, const char *after)
{
	char got[64];
	size_t len = strlen(after);

	tls_roundtrip(good, "still here\n", "STILL HERE\n");
	assert_int_equal(tcp_send_all(plain, "still here\n", 11, EM_DEADLINE_MS), 0);
	if (tcp_read_exact(plain, got, 11, EM_DEADLINE_MS) != 11 ||
	    memcmp(got, "STILL HERE\n", 11) != 0)
		fail_msg("the plain client was not served after %.*s", (int)len, after);
}

/* The server ends the connection: at most a TLS alert comes first, never an echo. */
static void
expect_closed(int fd, const char *what)
{
	int64_t deadline = now_ms() + EM_DEADLINE_MS;
	uint8_t buf[512];
	ssize_t n;

	while (now_ms() < deadline) {
		struct pollfd p = { .fd = fd, .events = POLLIN };

		if (poll(&p, 1, 100) != 1)
			continue;
		if ((n = recv(fd, buf, sizeof(buf), 0)) == 0 ||
		    (n == -1 && errno == ECONNRESET))
			return;
		if (n > 0 && buf[0] != 0x15)
			fail_msg("%s: %zd bytes back that are not a TLS alert", what, n);
	}
	fail_msg("%s: still open after %d ms", what, EM_DEADLINE_MS);
}

/* The same after a handshake, where alerts are encrypted: read through the session, no echo. */
static void
expect_tls_closed(struct tls_client *cl, const char *what)
{
	int64_t t0 = now_ms();
	char buf[512];
	ssize_t n = tls_read_exact(cl, buf, sizeof(buf), EM_DEADLINE_MS);

	if (n != 0)
		fail_msg("%s: %zd bytes of echo back", what, n);
	if (now_ms() - t0 >= EM_DEADLINE_MS)
		fail_msg("%s: still open after %d ms", what, EM_DEADLINE_MS);
}

static int
raw_send(int fd, const void *buf, size_t len)
{
	return tcp_send_all(fd, buf, len, EM_DEADLINE_MS);
}

/*
 * A real ClientHello (OpenSSL's, into memory: nothing of the server's is
 * ever read by it) sent on fd, and the server's first flight arrived: the
 * handshake is under way, the server has done its part of the work.
 */
static void
hello_answered(SSL_CTX *ctx, int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	SSL *ssl = SSL_new(ctx);
	BIO *rbio = BIO_new(BIO_s_mem()), *wbio = BIO_new(BIO_s_mem());
	char *hello;
	long len;

	assert_true(ssl != NULL && rbio != NULL && wbio != NULL);
	SSL_set_bio(ssl, rbio, wbio);
	assert_int_equal(SSL_get_error(ssl, SSL_connect(ssl)), SSL_ERROR_WANT_READ);
	len = BIO_get_mem_data(wbio, &hello);
	assert_true(len > 0 && hello[0] == 0x16);
	assert_int_equal(raw_send(fd, hello, (size_t)len), 0);
	SSL_free(ssl);
	if (poll(&p, 1, EM_DEADLINE_MS) != 1)
		fail_msg("no ServerHello within %d ms", EM_DEADLINE_MS);
}

/* A reset, not a FIN: SO_LINGER with a zero timeout. */
static void
close_with_reset(int fd)
{
	struct linger lg = { .l_onoff = 1, .l_linger = 0 };

	setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	close(fd);
}

static int
start_tls_hostile(struct env *e, int *tport)
{
	struct em_conf c;
	char extra[PATH_MAX + 128];
	int ports[2];

	ports_pick(ports, 2);
	snprintf(extra, sizeof(extra), "control_socket = \"%s\";\n"
	    "limits = { handshake_timeout = %d; };\n", env_control_socket(e), HANDSHAKE_S);
	conf_init(&c, 1);
	conf_listen(&c, "tcp", ports[0], "upper");
	conf_listen(&c, "tcp", ports[1], "upper");
	fault_write_conf_tls(e, &c, extra, ports[1]);
	env_start_ready(e, 1, ports[0]);
	*tport = ports[1];
	return ports[0];
}

/* Garbage where a ClientHello belongs: a handshake record of random bytes, and no record at all. */
static void
hostile_garbage(int tport, uint32_t *rng, size_t *n)
{
	uint8_t junk[1 + 2 + 2 + 200];
	int fd;

	junk[0] = 0x16;
	junk[1] = 0x03;
	junk[2] = 0x01;
	junk[3] = 0x00;
	junk[4] = 200;
	random_fill(junk + 5, 200, rng);
	assert_true((fd = tcp_connect(tport, EM_DEADLINE_MS)) >= 0);
	assert_int_equal(raw_send(fd, junk, sizeof(junk)), 0);
	expect_closed(fd, "a handshake record of garbage");
	close(fd);
	random_fill(junk, sizeof(junk), rng);
	junk[0] = 0x80 | junk[0];  /* no TLS record type */
	assert_true((fd = tcp_connect(tport, EM_DEADLINE_MS)) >= 0);
	assert_int_equal(raw_send(fd, junk, sizeof(junk)), 0);
	expect_closed(fd, "random bytes");
	close(fd);
	*n += 2;
}

/* A ClientHello's first bytes, then nothing: closed at handshake_timeout, not before. */
static int
hostile_stall_begin(int tport, int64_t *t0)
{
	static const uint8_t partial[] = { 0x16, 0x03, 0x01, 0x02, 0x00, 0x01 };
	int fd = tcp_connect(tport, EM_DEADLINE_MS);

	assert_true(fd >= 0);
	*t0 = now_ms();
	assert_int_equal(raw_send(fd, partial, sizeof(partial)), 0);
	return fd;
}

static void
hostile_reset_mid_handshake(SSL_CTX *ctx, int tport)
{
	int fd = tcp_connect(tport, EM_DEADLINE_MS);

	assert_true(fd >= 0);
	hello_answered(ctx, fd);
	close_with_reset(fd);
}

/* After a handshake: half a record then EOF, and a whole record that is not the session's. */
static void
hostile_records(int tport, uint32_t *rng)
{
	static const uint8_t half[] = { 0x17, 0x03, 0x03, 0x40, 0x00, 'h', 'a', 'l', 'f' };
	uint8_t forged[5 + 100] = { 0x17, 0x03, 0x03, 0x00, 100 };
	struct tls_opts o = { 0 };
	struct tls_client cl;

	assert_int_equal(tls_connect(&cl, tport, &o, EM_DEADLINE_MS), 1);
	tls_roundtrip(&cl, "then\n", "THEN\n");
	assert_int_equal(raw_send(cl.fd, half, sizeof(half)), 0);
	shutdown(cl.fd, SHUT_WR);
	expect_tls_closed(&cl, "a truncated record");
	tls_close(&cl);
	assert_int_equal(tls_connect(&cl, tport, &o, EM_DEADLINE_MS), 1);
	tls_roundtrip(&cl, "then\n", "THEN\n");
	random_fill(forged + 5, 100, rng);
	assert_int_equal(raw_send(cl.fd, forged, sizeof(forged)), 0);
	expect_tls_closed(&cl, "a forged record");
	tls_close(&cl);
}

/* Reads what the server sent until it closes. */
static void
drain_to_close(int fd, const char *what)
{
	int64_t deadline = now_ms() + EM_DEADLINE_MS;
	uint8_t buf[4096];
	ssize_t n;

	while (now_ms() < deadline) {
		struct pollfd p = { .fd = fd, .events = POLLIN };

		if (poll(&p, 1, 100) != 1)
			continue;
		if ((n = recv(fd, buf, sizeof(buf), 0)) == 0 || (n == -1 && errno == ECONNRESET))
			return;
	}
	fail_msg("%s: still open after %d ms", what, EM_DEADLINE_MS);
}

/*
 * FLOOD handshakes at once: each ClientHello answered, then walked away
 * from (a FIN), all of them before the first is closed.
 */
static void
hostile_flood(SSL_CTX *ctx, int tport)
{
	static int fds[FLOOD];

	for (int i = 0; i < FLOOD; i++) {
		assert_true((fds[i] = tcp_connect(tport, EM_DEADLINE_MS)) >= 0);
		hello_answered(ctx, fds[i]);
	}
	for (int i = 0; i < FLOOD; i++)
		shutdown(fds[i], SHUT_WR);
	for (int i = 0; i < FLOOD; i++) {
		drain_to_close(fds[i], "an abandoned handshake");
		close(fds[i]);
	}
}

static void
test_hostile_tls_clients_harm_only_themselves(void **state)
{
	struct env *e = *state;
	struct tls_opts o = { 0 };
	struct tls_client good, fresh;
	uint32_t rng = 0x7157u ^ (uint32_t)getpid();
	SSL_CTX *ctx = tls_client_ctx(0);
	size_t garbage = 0;
	int64_t t0, waited;
	int tport, port = start_tls_hostile(e, &tport), plain, stalled;
	pid_t worker, now;

	fault_wait_children(e, 1, &worker, EM_DEADLINE_MS);
	assert_int_equal(tls_connect(&good, tport, &o, EM_DEADLINE_MS), 1);
	plain = tcp_connect(port, EM_DEADLINE_MS);
	assert_true(plain >= 0);
	others_served(&good, plain, "nothing");
	stalled = hostile_stall_begin(tport, &t0);
	hostile_garbage(tport, &rng, &garbage);
	others_served(&good, plain, "garbage");
	hostile_reset_mid_handshake(ctx, tport);
	others_served(&good, plain, "a reset mid-handshake");
	hostile_records(tport, &rng);
	others_served(&good, plain, "bad records");
	hostile_flood(ctx, tport);
	others_served(&good, plain, "a flood of abandoned handshakes");
	expect_closed(stalled, "a stalled handshake");
	waited = now_ms() - t0;
	close(stalled);
	others_served(&good, plain, "a stalled handshake");
	if (waited < HANDSHAKE_S * 1000 - 100)
		fail_msg("the stalled handshake was closed after %lld ms, before handshake_timeout",
		    (long long)waited);
	/* A new client is served as well; the worker is the same one. */
	assert_int_equal(tls_connect(&fresh, tport, &o, EM_DEADLINE_MS), 1);
	tls_roundtrip(&fresh, "fresh\n", "FRESH\n");
	tls_close(&fresh);
	fault_wait_children(e, 1, &now, EM_DEADLINE_MS);
	assert_int_equal(now, worker);
	print_message("hostile TLS: garbage %zu, a stall closed after %lld ms (handshake_timeout %d s), "
	    "a reset, 2 bad records, %d abandoned handshakes; counted: handshakes %llu, failed on the "
	    "protocol %llu, on timeout %llu, otherwise %llu; worker %d served both good clients "
	    "throughout\n", garbage, (long long)waited, HANDSHAKE_S, FLOOD,
	    (unsigned long long)env_total(e, "tls_handshakes"),
	    (unsigned long long)env_total(e, "tls_fail_protocol"),
	    (unsigned long long)env_total(e, "tls_fail_timeout"),
	    (unsigned long long)env_total(e, "tls_fail_other"), (int)worker);
	/* The good client, the two that sent bad records, the fresh one. */
	assert_int_equal(env_total(e, "tls_handshakes"), 4);
	assert_int_equal(env_total(e, "tls_fail_protocol"), garbage);
	assert_int_equal(env_total(e, "tls_fail_timeout"), 1);
	assert_int_equal(env_total(e, "tls_fail_other"), 1 + FLOOD);
	assert_int_equal(env_total(e, "tls_fail_cert"), 0);
	tls_close(&good);
	close(plain);
	SSL_CTX_free(ctx);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_random_binary_streams,
		    env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(test_random_datagram_sizes,
		    env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(
		    test_idle_clients_closed_after_timeout, env_setup,
		    env_teardown),
		cmocka_unit_test_setup_teardown(
		    test_max_connections_refuses_excess_cleanly, env_setup,
		    env_teardown),
		cmocka_unit_test_setup_teardown(
		    test_hostile_tls_clients_harm_only_themselves, env_setup,
		    env_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
