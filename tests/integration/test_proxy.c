/*
 * test_proxy.c: PROXY protocol listeners on loopback, the way a load
 * balancer uses them. The test is the balancer: it connects from 127.0.0.2
 * or 127.0.0.3 (loopback answers for all of 127/8) and writes a v1 or v2
 * header naming a client in 192.0.2.0/24, then the client's bytes. What is
 * checked is what a user sees: the echo or the close, and the counters in
 * -s status.
 */
#include "harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* "PROXY TCP4 SRC 198.51.100.1 SPORT 7\r\n" */
static size_t
v1_header(char *buf, size_t cap, const char *src, int sport)
{
	int n = snprintf(buf, cap, "PROXY TCP4 %s 198.51.100.1 %d 7\r\n", src, sport);

	assert_true(n > 0 && (size_t)n < cap);
	return (size_t)n;
}

/* A v2 PROXY TCP4 header for SRC:SPORT, or a LOCAL one when src is NULL. */
static size_t
v2_header(uint8_t *b, const char *src, int sport)
{
	static const uint8_t sig[12] = { 0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49,
	    0x54, 0x0a };

	memcpy(b, sig, 12);
	if (src == NULL) {
		b[12] = 0x20, b[13] = 0x00, b[14] = 0, b[15] = 0;
		return 16;
	}
	b[12] = 0x21, b[13] = 0x11, b[14] = 0, b[15] = 12;
	assert_int_equal(inet_pton(AF_INET, src, b + 16), 1);
	assert_int_equal(inet_pton(AF_INET, "198.51.100.1", b + 20), 1);
	b[24] = (uint8_t)(sport >> 8), b[25] = (uint8_t)sport;
	b[26] = 0, b[27] = 7;
	return 28;
}

/*
 * Sends bytes (a header and data, in one segment) and says whether the
 * daemon echoes `expect` (true) or closes without a reply (false). Fails
 * the test on anything else.
 */
static bool
send_served(int fd, const void *bytes, size_t n, const char *expect)
{
	char buf[256];
	size_t want = strlen(expect);
	ssize_t got;

	if (tcp_send_all(fd, bytes, n, EM_DEADLINE_MS) == -1)
		return false;  /* refused and reset already */
	got = tcp_read_exact(fd, buf, want, EM_DEADLINE_MS);
	if (got == (ssize_t)want) {
		assert_memory_equal(buf, expect, want);
		return true;
	}
	if (got == 0 || (got == -1 && (errno == ECONNRESET || errno == EPIPE)))
		return false;
	fail_msg("neither the echo \"%s\" nor a close: read %zd (%s)", expect, got, strerror(errno));
	return false;
}

/* From SRC, a v1 header naming CLIENT then "ping" in the same segment: echoed? */
static bool
v1_try(const char *src, int port, const char *client)
{
	char buf[128];
	size_t n = v1_header(buf, sizeof(buf) - 8, client, 40000);
	int fd = tcp_connect_from(src, port);
	bool served;

	memcpy(buf + n, "ping", 4);
	served = send_served(fd, buf, n + 4, "PING");
	close(fd);
	return served;
}

static bool
v2_try(const char *src, int port, const char *client)
{
	uint8_t buf[64];
	size_t n = v2_header(buf, client, 40000);
	int fd = tcp_connect_from(src, port);
	bool served;

	memcpy(buf + n, "ping", 4);
	served = send_served(fd, buf, n + 4, "PING");
	close(fd);
	return served;
}

/* Writes the config: two workers, one TCP listener on PORT with LISTEN_EXTRA, EXTRA at the top. */
static void
conf_write(struct env *e, const char *listen_extra, const char *extra, int port)
{
	char *text = malloc(4096);

	assert_non_null(text);
	snprintf(text, 4096,
	    "workers = 2;\n"
	    "control_socket = \"%s\";\n"
	    "log = { level = \"debug\"; stderr = true; };\n"
	    "%s\n"
	    "listen = (\n"
	    "  { proto = \"tcp\"; address = \"127.0.0.1\"; port = %d; %s }\n"
	    ");\n", env_control_socket(e), extra, port, listen_extra);
	env_write_conf_text(e, text);
	free(text);
}

static void
start(struct env *e, const char *listen_extra, const char *extra, int port)
{
	conf_write(e, listen_extra, extra, port);
	env_start_ready(e, 2, 0);
}

/*
 * proxy_trusted = 127.0.0.2: its headers are taken, v1 and v2, with the
 * client's bytes in the header's own segment echoed; 127.0.0.3 is refused
 * at once, header or not, and counted.
 */
static void
trusted_and_untrusted_sources(void **state)
{
	struct env *e = *state;
	int port = port_pick();

	start(e, "proxy_protocol = \"any\"; proxy_trusted = [ \"127.0.0.2/32\" ];", "", port);
	assert_true(v1_try("127.0.0.2", port, "192.0.2.1"));
	assert_true(v2_try("127.0.0.2", port, "192.0.2.1"));
	assert_false(v1_try("127.0.0.3", port, "192.0.2.1"));
	assert_false(v2_try("127.0.0.3", port, "192.0.2.1"));
	env_total_wait(e, "proxy_untrusted", 2);
	env_total_wait(e, "proxy_headers", 2);
	assert_int_equal(env_total(e, "proxy_bad"), 0);
}

/*
 * Malformed headers close the connection and are counted; a header in
 * pieces is assembled; of two headers back to back the second is data;
 * proxy_protocol = "v1" refuses a v2 header.
 */
static void
malformed_split_and_doubled_headers(void **state)
{
	struct env *e = *state;
	int port = port_pick(), fd;
	char buf[160];
	size_t n;

	start(e, "proxy_protocol = \"v1\";", "", port);
	fd = tcp_connect_from("127.0.0.2", port);
	assert_false(send_served(fd, "ping\r\n", 6, "PING"));  /* no header at all */
	close(fd);
	fd = tcp_connect_from("127.0.0.2", port);
	assert_false(send_served(fd, "PROXY TCP4 192.0.2.01 198.51.100.1 1 2\r\nping", 44, "PING"));
	close(fd);
	assert_false(v2_try("127.0.0.2", port, "192.0.2.1"));
	env_total_wait(e, "proxy_bad", 3);

	/*
	 * In three writes. The naps only make separate reads likely; the
	 * parser's unit test splits at every offset.
	 */
	fd = tcp_connect_from("127.0.0.2", port);
	assert_int_equal(tcp_send_all(fd, "PROXY TCP4 192.0.", 17, EM_DEADLINE_MS), 0);
	nap_ms(50);
	assert_int_equal(tcp_send_all(fd, "2.1 198.51.100.1 1 2\r", 21, EM_DEADLINE_MS), 0);
	nap_ms(50);
	assert_true(send_served(fd, "\nhello", 6, "HELLO"));
	close(fd);

	/* Two headers: the second is the client's first bytes, echoed. */
	n = v1_header(buf, sizeof(buf), "192.0.2.1", 1);
	n += v1_header(buf + n, sizeof(buf) - n, "192.0.2.2", 2);
	fd = tcp_connect_from("127.0.0.2", port);
	assert_true(send_served(fd, buf, n, "PROXY TCP4 192.0.2.2 198.51.100.1 2 7\r\n"));
	close(fd);
	env_total_wait(e, "proxy_headers", 2);
	assert_int_equal(env_total(e, "proxy_bad"), 3);
}

/* A header not complete within limits.proxy_timeout: closed then, not before, and counted. */
static void
slow_header_is_closed_at_proxy_timeout(void **state)
{
	struct env *e = *state;
	int port = port_pick(), fd;
	int64_t t0, waited;

	start(e, "proxy_protocol = \"v2\";", "limits = { proxy_timeout = 1; idle_timeout = 300; };", port);
	fd = tcp_connect_from("127.0.0.2", port);
	t0 = now_ms();
	assert_int_equal(tcp_send_all(fd, "\r\n\r\n\0\r\n", 7, EM_DEADLINE_MS), 0);
	assert_int_equal(tcp_wait_eof(fd, EM_DEADLINE_MS), 0);
	waited = now_ms() - t0;
	close(fd);
	if (waited < 900 || waited > 5000)
		fail_msg("closed after %lld ms, want about 1 s (proxy_timeout = 1)", (long long)waited);
	env_total_wait(e, "proxy_timeout", 1);
	/* and one in time is served */
	assert_true(v2_try("127.0.0.2", port, "192.0.2.1"));
}

/*
 * allow/deny act on the header's address, not the balancer's: 127.0.0.2
 * itself is denied, yet its clients from 192.0.2.1 are served; a client
 * denied by name is closed. A LOCAL header (a balancer's health check)
 * keeps the real address, so here it is denied.
 */
static void
access_lists_act_on_the_header_address(void **state)
{
	struct env *e = *state;
	int port = port_pick(), fd;
	uint8_t buf[64];
	size_t n;

	start(e, "proxy_protocol = \"any\"; deny = [ \"192.0.2.66\", \"127.0.0.2\" ];", "", port);
	assert_true(v1_try("127.0.0.2", port, "192.0.2.1"));
	assert_true(v2_try("127.0.0.2", port, "192.0.2.1"));
	assert_false(v1_try("127.0.0.2", port, "192.0.2.66"));
	assert_false(v2_try("127.0.0.2", port, "192.0.2.66"));
	n = v2_header(buf, NULL, 0);
	memcpy(buf + n, "ping", 4);
	fd = tcp_connect_from("127.0.0.2", port);
	assert_false(send_served(fd, buf, n + 4, "PING"));
	close(fd);
	fd = tcp_connect_from("127.0.0.3", port);  /* LOCAL from an allowed balancer */
	assert_true(send_served(fd, buf, n + 4, "PING"));
	close(fd);
	env_total_wait(e, "refused_acl", 3);
	assert_true(env_log_has(e, "connection from 192.0.2.66:40000 refused: access list"));
}

/*
 * max_connections_per_address counts the header's address: one
 * connection each for 192.0.2.1 and 192.0.2.2 through the same balancer,
 * and a second for 192.0.2.1 is refused until the first one closes.
 */
static void
per_address_limit_acts_on_the_header_address(void **state)
{
	struct env *e = *state;
	int port = port_pick(), a, b;
	char buf[128];
	size_t n;
	int64_t deadline;
	bool served = false;

	start(e, "proxy_protocol = \"v1\";", "limits = { max_connections_per_address = 1; };", port);
	n = v1_header(buf, sizeof(buf) - 8, "192.0.2.1", 1);
	memcpy(buf + n, "ping", 4);
	a = tcp_connect_from("127.0.0.2", port);
	assert_true(send_served(a, buf, n + 4, "PING"));
	assert_false(v1_try("127.0.0.2", port, "192.0.2.1"));
	n = v1_header(buf, sizeof(buf) - 8, "192.0.2.2", 1);
	memcpy(buf + n, "ping", 4);
	b = tcp_connect_from("127.0.0.2", port);
	assert_true(send_served(b, buf, n + 4, "PING"));
	env_total_wait(e, "refused_per_address", 1);
	close(a);
	deadline = now_ms() + EM_DEADLINE_MS;
	while (!served && now_ms() < deadline) {
		served = v1_try("127.0.0.2", port, "192.0.2.1");
		if (!served)
			nap_ms(EM_POLL_NAP_MS);  /* the close reaches the worker within a loop turn */
	}
	assert_true(served);
	close(b);
}

/* ---- reload handover ---- */

/* The sum of one per-worker counter (offsetof(struct em_status_worker, X)) over generation GEN. */
static uint64_t
gen_sum(struct env *e, unsigned gen, size_t counter)
{
	struct em_status st;

	if (env_status(e, &st, EM_DEADLINE_MS) == -1)
		fail_msg("status-json: %s", strerror(errno));
	return status_gen_sum(&st, gen, counter);
}

/* Polls until generation GEN's counter is WANT. Fails the test. */
static void
gen_wait(struct env *e, unsigned gen, size_t counter, const char *name, uint64_t want)
{
	int64_t deadline = now_ms() + EM_DEADLINE_MS;
	uint64_t v;

	while ((v = gen_sum(e, gen, counter)) != want && now_ms() < deadline)
		nap_ms(EM_POLL_NAP_MS);
	if (v != want) {
		env_dump_log(e);
		fail_msg("generation %u: %s is %llu, want %llu", gen, name, (unsigned long long)v,
		    (unsigned long long)want);
	}
}

#define GEN_WAIT(e, gen, field, want) \
	gen_wait((e), (gen), offsetof(struct em_status_worker, field), #field, (want))

/*
 * Waits until no worker of an old generation is left; returns how long
 * after T0. A handover moves everything within a second or so: far less
 * than the shutdown_timeout (20 s) a drain would take to cut them.
 */
static int64_t
old_gone_within(struct env *e, int64_t t0, int64_t limit_ms)
{
	int64_t took = env_wait_old_gone(e, t0, EM_DEADLINE_MS);

	if (took > limit_ms)
		fail_msg("the old generation left %lld ms after the reload, want under %lld",
		    (long long)took, (long long)limit_ms);
	return took;
}

/*
 * The master's line once generation GEN's handover is over (its workers'
 * counts die with them): "generation G handed over N connections in T ms
 * (W workers; K could not move and were drained)". Fails the test unless
 * N is MOVED and K is 0.
 */
static void
handed_over(struct env *e, unsigned gen, unsigned long moved)
{
	char needle[64], *line, *at;
	unsigned long n, kept;
	long ms;
	int workers;

	snprintf(needle, sizeof(needle), "generation %u handed over ", gen);
	env_wait_log(e, needle, EM_DEADLINE_MS);
	line = env_log_line(e, needle);
	assert_non_null(line);
	at = strstr(line, needle) + strlen(needle);
	if (sscanf(at, "%lu connections in %ld ms (%d workers; %lu could not", &n, &ms, &workers,
	    &kept) != 4)
		fail_msg("handover line not understood: %s", line);
	if (n != moved || kept != 0)
		fail_msg("%s: want %lu moved, none kept", line, moved);
	free(line);
}

/* A connection through the balancer at SRC: HEADER and "ping" in one segment, echoed. */
static int
proxied_open(const char *src, int port, const void *header, size_t n)
{
	uint8_t buf[160];
	int fd = tcp_connect_from(src, port);

	assert_true(n + 4 <= sizeof(buf));
	memcpy(buf, header, n);
	memcpy(buf + n, "ping", 4);
	assert_true(send_served(fd, buf, n + 4, "PING"));
	return fd;
}

/* Pattern byte i of a stream (lower case, so that its echo differs), and its echo. */
static char
pat(size_t i)
{
	return (char)('a' + (i * 7 + i / 91) % 26);
}

#define STREAM_LEN (64 * 1024)

/* Sends the pattern's first STREAM_LEN bytes and reads nothing yet: the echo waits in the buffers. */
static void
stream_send(int fd)
{
	static char buf[STREAM_LEN];

	for (size_t i = 0; i < STREAM_LEN; i++)
		buf[i] = pat(i);
	assert_int_equal(tcp_send_all(fd, buf, STREAM_LEN, EM_DEADLINE_MS), 0);
}

/* Reads the whole echo back: every byte upper-cased, none lost, none repeated. */
static void
stream_check(int fd)
{
	static char buf[STREAM_LEN];

	assert_int_equal(tcp_read_exact(fd, buf, STREAM_LEN, EM_DEADLINE_MS), STREAM_LEN);
	for (size_t i = 0; i < STREAM_LEN; i++)
		if (buf[i] != pat(i) - 'a' + 'A')
			fail_msg("byte %zu of the echo is 0x%02x, want '%c'", i, (unsigned char)buf[i],
			    pat(i) - 'a' + 'A');
}

/*
 * A reload with reload_handover moves PROXY connections past their
 * header like any other: a v1 one with 64 KiB of echo still owed, a v2
 * one and a LOCAL one (real addresses). The new generation takes all
 * three (moved_in), the old one exits at once, every byte comes back, and
 * the per-address limit of 1 holds on the header's addresses in the new
 * workers: the moved connections are counted there, not on the balancer.
 */
static void
connections_past_their_header_move_across_a_reload(void **state)
{
	struct env *e = *state;
	int port = port_pick(), a, b, l;
	char v1[128];
	uint8_t v2[64], local[16];
	size_t n1, n2, nl;
	int64_t t0, deadline;
	bool served = false;

	start(e, "proxy_protocol = \"any\";", "shutdown_timeout = 20;\nreload_handover = true;\n"
	    "limits = { max_connections_per_address = 1; };", port);
	n1 = v1_header(v1, sizeof(v1), "192.0.2.1", 1);
	n2 = v2_header(v2, "192.0.2.2", 2);
	nl = v2_header(local, NULL, 0);
	a = proxied_open("127.0.0.2", port, v1, n1);
	b = proxied_open("127.0.0.2", port, v2, n2);
	l = proxied_open("127.0.0.3", port, local, nl);
	stream_send(a);

	t0 = now_ms();
	assert_int_equal(env_control(e, "reload", NULL, EM_DEADLINE_MS), 0);
	env_wait_serving(e, 2, 2, EM_DEADLINE_MS);
	GEN_WAIT(e, 2, moved_in, 3);
	print_message("old generation gone %lld ms after the reload\n",
	    (long long)old_gone_within(e, t0, 10000));
	stream_check(a);
	assert_true(send_served(a, "again", 5, "AGAIN"));
	assert_true(send_served(b, "again", 5, "AGAIN"));
	assert_true(send_served(l, "again", 5, "AGAIN"));
	handed_over(e, 1, 3);

	/* Counted on their real addresses by the new workers: 192.0.2.1 and .2, 127.0.0.3. */
	assert_false(v1_try("127.0.0.2", port, "192.0.2.1"));
	assert_false(v2_try("127.0.0.2", port, "192.0.2.2"));
	assert_false(v2_try("127.0.0.3", port, NULL));  /* LOCAL: counted on 127.0.0.3 itself */
	assert_true(v1_try("127.0.0.2", port, "192.0.2.3"));
	env_total_wait(e, "refused_per_address", 3);

	/* and released there when the moved connection closes */
	close(a);
	deadline = now_ms() + EM_DEADLINE_MS;
	while (!served && now_ms() < deadline) {
		served = v1_try("127.0.0.2", port, "192.0.2.1");
		if (!served)
			nap_ms(EM_POLL_NAP_MS);  /* the close reaches the worker within a loop turn */
	}
	assert_true(served);
	close(b);
	close(l);
}

/*
 * The reloaded allow/deny lists act on a moved connection's real client:
 * a reload that denies 192.0.2.66 and the balancer 127.0.0.2 itself
 * closes the moved connection of 192.0.2.66 (EOF, counted as refused_acl
 * by the new worker, logged with the client's address) and keeps that of
 * 192.0.2.1, which came through the same, now denied, balancer.
 */
static void
a_reload_that_denies_a_header_address_closes_its_moved_connection(void **state)
{
	struct env *e = *state;
	int port = port_pick(), ok, denied;
	const char *extra = "shutdown_timeout = 20;\nreload_handover = true;";
	char h1[128], h2[128];
	size_t n1, n2;
	int64_t t0;

	start(e, "proxy_protocol = \"v1\";", extra, port);
	n1 = v1_header(h1, sizeof(h1), "192.0.2.1", 1);
	n2 = v1_header(h2, sizeof(h2), "192.0.2.66", 2);
	ok = proxied_open("127.0.0.2", port, h1, n1);
	denied = proxied_open("127.0.0.2", port, h2, n2);
	conf_write(e, "proxy_protocol = \"v1\"; deny = [ \"192.0.2.66\", \"127.0.0.2\" ];", extra, port);
	t0 = now_ms();
	assert_int_equal(env_control(e, "reload", NULL, EM_DEADLINE_MS), 0);
	env_wait_serving(e, 2, 2, EM_DEADLINE_MS);
	if (tcp_wait_eof(denied, EM_DEADLINE_MS) == -1)
		fail_msg("the denied client's moved connection was not closed: %s", strerror(errno));
	GEN_WAIT(e, 2, moved_in, 2);
	GEN_WAIT(e, 2, refused_acl, 1);
	old_gone_within(e, t0, 10000);
	assert_true(send_served(ok, "still", 5, "STILL"));
	assert_true(env_log_has(e, "moved connection from 192.0.2.66:2 refused: access list"));
	handed_over(e, 1, 2);
	close(ok);
	close(denied);
}

/*
 * The reloaded proxy_trusted acts on a moved connection's balancer: a
 * reload that trusts only 127.0.0.2 closes the connection that came
 * through 127.0.0.3 (EOF, counted as proxy_untrusted by the new worker,
 * logged with the balancer's address) and moves the one through
 * 127.0.0.2, which goes on being served.
 */
static void
a_reload_that_distrusts_a_balancer_closes_its_moved_connection(void **state)
{
	struct env *e = *state;
	int port = port_pick(), ok, cut;
	const char *extra = "shutdown_timeout = 20;\nreload_handover = true;";
	char h1[128], h2[128];
	size_t n1, n2;
	int64_t t0;

	start(e, "proxy_protocol = \"v1\"; proxy_trusted = [ \"127.0.0.0/8\" ];", extra, port);
	n1 = v1_header(h1, sizeof(h1), "192.0.2.1", 1);
	n2 = v1_header(h2, sizeof(h2), "192.0.2.2", 2);
	ok = proxied_open("127.0.0.2", port, h1, n1);
	cut = proxied_open("127.0.0.3", port, h2, n2);
	assert_true(send_served(ok, "first", 5, "FIRST"));
	assert_true(send_served(cut, "first", 5, "FIRST"));
	conf_write(e, "proxy_protocol = \"v1\"; proxy_trusted = [ \"127.0.0.2/32\" ];", extra, port);
	t0 = now_ms();
	assert_int_equal(env_control(e, "reload", NULL, EM_DEADLINE_MS), 0);
	env_wait_serving(e, 2, 2, EM_DEADLINE_MS);
	if (tcp_wait_eof(cut, EM_DEADLINE_MS) == -1)
		fail_msg("the distrusted balancer's moved connection was not closed: %s", strerror(errno));
	GEN_WAIT(e, 2, moved_in, 2);
	env_total_wait(e, "proxy_untrusted", 1);
	old_gone_within(e, t0, 10000);
	assert_true(send_served(ok, "still", 5, "STILL"));
	assert_true(env_log_has(e, "moved connection from 127.0.0.3:"));
	assert_true(env_log_has(e, "refused: not in proxy_trusted"));
	handed_over(e, 1, 2);
	close(ok);
	close(cut);
}

/*
 * A connection in the middle of its header when the reload comes is not
 * moved then (the parser's bytes are not in the record): its old worker
 * keeps it, and its handover open, until the header is in; then it is
 * served and moved like the others, and the old worker exits. One past
 * its header moves at once.
 */
static void
a_connection_mid_header_moves_once_its_header_is_in(void **state)
{
	struct env *e = *state;
	int port = port_pick(), done, half;
	char buf[128];
	size_t n;
	int64_t t0;

	start(e, "proxy_protocol = \"v1\";", "shutdown_timeout = 20;\nreload_handover = true;\n"
	    "limits = { proxy_timeout = 20; };", port);
	n = v1_header(buf, sizeof(buf) - 8, "192.0.2.1", 1);
	memcpy(buf + n, "ping", 4);
	done = tcp_connect_from("127.0.0.2", port);
	assert_true(send_served(done, buf, n + 4, "PING"));
	half = tcp_connect_from("127.0.0.2", port);
	assert_int_equal(tcp_send_all(half, buf, 10, EM_DEADLINE_MS), 0);
	t0 = now_ms();
	assert_int_equal(env_control(e, "reload", NULL, EM_DEADLINE_MS), 0);
	env_wait_serving(e, 2, 2, EM_DEADLINE_MS);
	GEN_WAIT(e, 2, moved_in, 1);  /* the one past its header */
	assert_true(send_served(done, "again", 5, "AGAIN"));
	assert_true(send_served(half, buf + 10, n + 4 - 10, "PING"));
	GEN_WAIT(e, 2, moved_in, 2);
	old_gone_within(e, t0, 10000);
	assert_true(send_served(half, "again", 5, "AGAIN"));
	assert_true(v1_try("127.0.0.2", port, "192.0.2.3"));  /* the new generation serves */
	handed_over(e, 1, 2);
	close(done);
	close(half);
}

/*
 * The version rule against an older receiver (the test hooks'
 * EM_TEST_HANDOVER_READS = 1: new workers that read handover version 1
 * only, as the previous release, during a downgrade): the batch that
 * carries the PROXY connection's client address is refused whole, and
 * the old worker keeps that connection and drains it, serving it to the
 * end; nothing is cut.
 */
static void
an_older_receiver_leaves_proxy_connections_to_drain(void **state)
{
	struct env *e = *state;
	const char *hooks = getenv("ECHOMASTER_TESTHOOKS");
	char *saved = getenv("ECHOMASTER") != NULL ? strdup(getenv("ECHOMASTER")) : NULL;
	int port = port_pick(), fd;
	char h[128];
	size_t n;
	struct em_status st;
	int64_t deadline;

	if (hooks == NULL || access(hooks, X_OK) != 0)
		fail_msg("ECHOMASTER_TESTHOOKS must name the test-hooks build (make check sets it)");
	setenv("ECHOMASTER", hooks, 1);
	setenv("EM_TEST_HANDOVER_READS", "1", 1);
	start(e, "proxy_protocol = \"v1\";", "shutdown_timeout = 20;\nreload_handover = true;", port);
	unsetenv("EM_TEST_HANDOVER_READS");
	if (saved != NULL)
		setenv("ECHOMASTER", saved, 1);
	else
		unsetenv("ECHOMASTER");
	free(saved);
	n = v1_header(h, sizeof(h), "192.0.2.1", 1);
	fd = proxied_open("127.0.0.2", port, h, n);
	assert_int_equal(env_control(e, "reload", NULL, EM_DEADLINE_MS), 0);
	env_wait_serving(e, 2, 2, EM_DEADLINE_MS);
	env_wait_log(e, "version 2 unknown", EM_DEADLINE_MS);
	env_wait_log(e, "0 connections moved, 1 refused", EM_DEADLINE_MS);
	assert_true(send_served(fd, "still", 5, "STILL"));
	/* The other old worker, which held nothing, exits; the one draining it stays. */
	deadline = now_ms() + EM_DEADLINE_MS;
	do {
		if (env_status(e, &st, EM_DEADLINE_MS) == -1)
			fail_msg("status-json: %s", strerror(errno));
		if (status_count_gen(&st, 0) == 1)
			break;
		nap_ms(EM_POLL_NAP_MS);
	} while (now_ms() < deadline);
	assert_int_equal(status_count_gen(&st, 0), 1);
	assert_int_equal(status_gen_sum(&st, 2, offsetof(struct em_status_worker, moved_in)), 0);
	assert_true(send_served(fd, "again", 5, "AGAIN"));
	close(fd);
	env_wait_log(e, "1 could not move and were drained", EM_DEADLINE_MS);
}

/* A listener without proxy_protocol takes a header for data: it pays for nothing. */
static void
a_plain_listener_echoes_a_header(void **state)
{
	struct env *e = *state;
	int port = port_pick();
	const char *h = "PROXY TCP4 192.0.2.1 198.51.100.1 1 2\r\n";

	start(e, "", "", port);
	tcp_roundtrip(port, "proxy tcp4 192.0.2.1 198.51.100.1 1 2\r\n", strlen(h), h);
	assert_int_equal(env_total(e, "proxy_headers"), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(trusted_and_untrusted_sources, env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(malformed_split_and_doubled_headers, env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(slow_header_is_closed_at_proxy_timeout, env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(access_lists_act_on_the_header_address, env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(per_address_limit_acts_on_the_header_address, env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(connections_past_their_header_move_across_a_reload, env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(a_reload_that_denies_a_header_address_closes_its_moved_connection,
		    env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(a_reload_that_distrusts_a_balancer_closes_its_moved_connection,
		    env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(a_connection_mid_header_moves_once_its_header_is_in, env_setup,
		    env_teardown),
		cmocka_unit_test_setup_teardown(an_older_receiver_leaves_proxy_connections_to_drain, env_setup,
		    env_teardown),
		cmocka_unit_test_setup_teardown(a_plain_listener_echoes_a_header, env_setup, env_teardown),
	};
	return cmocka_run_group_tests_name("proxy", tests, NULL, NULL);
}
