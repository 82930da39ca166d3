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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* A non-blocking TCP socket bound to SRC (IPv4) and connected to 127.0.0.1:PORT. Fails the test. */
static int
tcp_from(const char *src, int port)
{
	struct sockaddr_in from = { .sin_family = AF_INET }, to = { .sin_family = AF_INET };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	struct pollfd p = { .fd = fd, .events = POLLOUT };
	int err = 0;
	socklen_t errlen = sizeof(err);

	assert_true(fd != -1);
	assert_int_equal(inet_pton(AF_INET, src, &from.sin_addr), 1);
	assert_int_equal(inet_pton(AF_INET, "127.0.0.1", &to.sin_addr), 1);
	to.sin_port = htons((uint16_t)port);
	if (bind(fd, (struct sockaddr *)&from, sizeof(from)) == -1)
		fail_msg("bind %s: %s", src, strerror(errno));
	if (connect(fd, (struct sockaddr *)&to, sizeof(to)) == 0)
		return fd;
	if (errno != EINPROGRESS)
		fail_msg("connect from %s: %s", src, strerror(errno));
	if (poll(&p, 1, EM_DEADLINE_MS) != 1 ||
	    getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &errlen) == -1 || err != 0)
		fail_msg("connect from %s: %s", src, err ? strerror(err) : "timeout");
	return fd;
}

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
	int fd = tcp_from(src, port);
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
	int fd = tcp_from(src, port);
	bool served;

	memcpy(buf + n, "ping", 4);
	served = send_served(fd, buf, n + 4, "PING");
	close(fd);
	return served;
}

/* The "totals" counter NAME from status-json. */
static uint64_t
total(struct env *e, const char *name)
{
	char *body = NULL, key[64], *at;
	uint64_t v;

	if (env_control(e, "status-json", &body, EM_DEADLINE_MS) != 0 || body == NULL)
		fail_msg("status-json failed");
	snprintf(key, sizeof(key), "\"%s\":", name);
	at = strstr(body, "\"totals\":");
	if (at == NULL || (at = strstr(at, key)) == NULL)
		fail_msg("no %s in the totals: %s", name, body);
	v = strtoull(at + strlen(key), NULL, 10);
	free(body);
	return v;
}

/* Polls the totals until NAME reaches WANT (counters are published within a loop turn). */
static void
total_wait(struct env *e, const char *name, uint64_t want)
{
	int64_t deadline = now_ms() + EM_DEADLINE_MS;
	uint64_t v;

	while ((v = total(e, name)) < want && now_ms() < deadline)
		nap_ms(EM_POLL_NAP_MS);
	if (v != want)
		fail_msg("%s is %llu, want %llu", name, (unsigned long long)v, (unsigned long long)want);
}

static void
start(struct env *e, const char *listen_extra, const char *extra, int port)
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
	total_wait(e, "proxy_untrusted", 2);
	total_wait(e, "proxy_headers", 2);
	assert_int_equal(total(e, "proxy_bad"), 0);
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
	fd = tcp_from("127.0.0.2", port);
	assert_false(send_served(fd, "ping\r\n", 6, "PING"));  /* no header at all */
	close(fd);
	fd = tcp_from("127.0.0.2", port);
	assert_false(send_served(fd, "PROXY TCP4 192.0.2.01 198.51.100.1 1 2\r\nping", 44, "PING"));
	close(fd);
	assert_false(v2_try("127.0.0.2", port, "192.0.2.1"));
	total_wait(e, "proxy_bad", 3);

	/*
	 * In three writes. The naps only make separate reads likely; the
	 * parser's unit test splits at every offset.
	 */
	fd = tcp_from("127.0.0.2", port);
	assert_int_equal(tcp_send_all(fd, "PROXY TCP4 192.0.", 17, EM_DEADLINE_MS), 0);
	nap_ms(50);
	assert_int_equal(tcp_send_all(fd, "2.1 198.51.100.1 1 2\r", 21, EM_DEADLINE_MS), 0);
	nap_ms(50);
	assert_true(send_served(fd, "\nhello", 6, "HELLO"));
	close(fd);

	/* Two headers: the second is the client's first bytes, echoed. */
	n = v1_header(buf, sizeof(buf), "192.0.2.1", 1);
	n += v1_header(buf + n, sizeof(buf) - n, "192.0.2.2", 2);
	fd = tcp_from("127.0.0.2", port);
	assert_true(send_served(fd, buf, n, "PROXY TCP4 192.0.2.2 198.51.100.1 2 7\r\n"));
	close(fd);
	total_wait(e, "proxy_headers", 2);
	assert_int_equal(total(e, "proxy_bad"), 3);
}

/* A header not complete within limits.proxy_timeout: closed then, not before, and counted. */
static void
slow_header_is_closed_at_proxy_timeout(void **state)
{
	struct env *e = *state;
	int port = port_pick(), fd;
	int64_t t0, waited;

	start(e, "proxy_protocol = \"v2\";", "limits = { proxy_timeout = 1; idle_timeout = 300; };", port);
	fd = tcp_from("127.0.0.2", port);
	t0 = now_ms();
	assert_int_equal(tcp_send_all(fd, "\r\n\r\n\0\r\n", 7, EM_DEADLINE_MS), 0);
	assert_int_equal(tcp_wait_eof(fd, EM_DEADLINE_MS), 0);
	waited = now_ms() - t0;
	close(fd);
	if (waited < 900 || waited > 5000)
		fail_msg("closed after %lld ms, want about 1 s (proxy_timeout = 1)", (long long)waited);
	total_wait(e, "proxy_timeout", 1);
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
	fd = tcp_from("127.0.0.2", port);
	assert_false(send_served(fd, buf, n + 4, "PING"));
	close(fd);
	fd = tcp_from("127.0.0.3", port);  /* LOCAL from an allowed balancer */
	assert_true(send_served(fd, buf, n + 4, "PING"));
	close(fd);
	total_wait(e, "refused_acl", 3);
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
	a = tcp_from("127.0.0.2", port);
	assert_true(send_served(a, buf, n + 4, "PING"));
	assert_false(v1_try("127.0.0.2", port, "192.0.2.1"));
	n = v1_header(buf, sizeof(buf) - 8, "192.0.2.2", 1);
	memcpy(buf + n, "ping", 4);
	b = tcp_from("127.0.0.2", port);
	assert_true(send_served(b, buf, n + 4, "PING"));
	total_wait(e, "refused_per_address", 1);
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

/*
 * A reload with reload_handover: PROXY connections are not handed over
 * (the header's address is not in the handover record), so they stay
 * with their old worker and drain there. One past its header goes on
 * echoing; one in the middle of its header completes it and is served.
 * Neither counts as a failed move: it was never offered.
 */
static void
connections_stay_with_their_worker_across_a_reload(void **state)
{
	struct env *e = *state;
	int port = port_pick(), done, half;
	char buf[128];
	size_t n;

	start(e, "proxy_protocol = \"v1\";", "shutdown_timeout = 20;\nreload_handover = true;", port);
	n = v1_header(buf, sizeof(buf) - 8, "192.0.2.1", 1);
	memcpy(buf + n, "ping", 4);
	done = tcp_from("127.0.0.2", port);
	assert_true(send_served(done, buf, n + 4, "PING"));
	half = tcp_from("127.0.0.2", port);
	assert_int_equal(tcp_send_all(half, buf, 10, EM_DEADLINE_MS), 0);
	assert_int_equal(env_control(e, "reload", NULL, EM_DEADLINE_MS), 0);
	env_wait_serving(e, 2, 2, EM_DEADLINE_MS);
	assert_true(send_served(done, "again", 5, "AGAIN"));
	assert_true(send_served(half, buf + 10, n + 4 - 10, "PING"));
	assert_true(v1_try("127.0.0.2", port, "192.0.2.3"));  /* the new generation serves */
	assert_int_equal(total(e, "moves_failed"), 0);
	close(done);
	close(half);
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
	assert_int_equal(total(e, "proxy_headers"), 0);
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
		cmocka_unit_test_setup_teardown(connections_stay_with_their_worker_across_a_reload, env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(a_plain_listener_echoes_a_header, env_setup, env_teardown),
	};
	return cmocka_run_group_tests_name("proxy", tests, NULL, NULL);
}
