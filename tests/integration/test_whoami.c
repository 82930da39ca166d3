/*
 * test_whoami.c: mode = "whoami", the answer to "who answered me?". Over
 * TCP one line of key=value pairs, then the server's half-close; behind a
 * PROXY header the line names the real client and the balancer. Over UDP
 * the same line per datagram, never longer than the datagram it answers.
 */
#include "harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* The value of KEY in a whoami line, copied into out; fails the test when absent. */
static void
field(const char *line, const char *key, char *out, size_t cap)
{
	char k[64];
	const char *at = line;
	size_t n;

	snprintf(k, sizeof(k), "%s=", key);
	while ((at = strstr(at, k)) != NULL && at != line && at[-1] != ' ')
		at++;
	if (at == NULL)
		fail_msg("no %s in \"%s\"", key, line);
	at += strlen(k);
	n = strcspn(at, " \n");
	assert_true(n < cap);
	memcpy(out, at, n);
	out[n] = '\0';
}

static bool
has_key(const char *line, const char *key)
{
	char k[64];

	snprintf(k, sizeof(k), " %s=", key);
	return strstr(line, k) != NULL;
}

/* One line of printable ASCII words, ending in "\n", nothing after it. */
static void
line_expect_shape(const char *line, size_t n)
{
	assert_true(n > 0);
	assert_int_equal(line[n - 1], '\n');
	for (size_t i = 0; i + 1 < n; i++)
		if (line[i] < 0x20 || line[i] > 0x7e)
			fail_msg("byte 0x%02x at %zu in \"%s\"", (unsigned char)line[i], i, line);
	assert_int_equal(strncmp(line, "instance=", 9), 0);
}

/* Whoami on tcp and udp at ports[0], and behind PROXY headers on tcp at ports[1]. */
static void
start(struct env *e, const int *ports, const char *name_line)
{
	char *text = malloc(4096);

	assert_non_null(text);
	snprintf(text, 4096,
	    "workers = 2;\n"
	    "%s\n"
	    "log = { level = \"info\"; stderr = true; };\n"
	    "listen = (\n"
	    "  { proto = \"tcp\"; address = \"127.0.0.1\"; port = %d; mode = \"whoami\"; },\n"
	    "  { proto = \"udp\"; address = \"127.0.0.1\"; port = %d; mode = \"whoami\"; },\n"
	    "  { proto = \"tcp\"; address = \"127.0.0.1\"; port = %d; mode = \"whoami\";\n"
	    "    proxy_protocol = \"any\"; proxy_trusted = [ \"127.0.0.0/8\" ]; }\n"
	    ");\n", name_line, ports[0], ports[0], ports[1]);
	env_write_conf_text(e, text);
	free(text);
	env_start_ready(e, 2, 0);
}

/* Connects (to 127.0.0.1:port), sends what it is given, reads to the server's EOF. */
static size_t
tcp_whoami(int port, const void *send, size_t len, char *line, size_t cap, int *local_port)
{
	struct sockaddr_in me;
	socklen_t melen = sizeof(me);
	int fd = tcp_connect(port, EM_DEADLINE_MS);
	ssize_t n;

	assert_true(fd != -1);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&me, &melen), 0);
	if (local_port != NULL)
		*local_port = ntohs(me.sin_port);
	if (len != 0)
		assert_int_equal(tcp_send_all(fd, send, len, EM_DEADLINE_MS), 0);
	n = tcp_read_exact(fd, line, cap - 1, EM_DEADLINE_MS);
	if (n <= 0)
		fail_msg("no whoami line: %zd (%s)", n, strerror(errno));
	line[n] = '\0';
	assert_true((size_t)n < cap - 1);  /* stopped at EOF: the server half-closed after the line */
	close(fd);
	return (size_t)n;
}

static void
tcp_line_names_instance_worker_and_addresses(void **state)
{
	struct env *e = *state;
	int ports[2], me;
	int port;
	pid_t workers[2];
	char line[2048], v[256], want[64], host[256] = "";
	size_t n;

	ports_pick(ports, 2);
	port = ports[0];
	start(e, ports, "name = \"edge-7\";");
	env_wait_workers(e, 2, workers, EM_DEADLINE_MS);
	n = tcp_whoami(port, NULL, 0, line, sizeof(line), &me);
	line_expect_shape(line, n);
	field(line, "instance", v, sizeof(v));
	assert_string_equal(v, "edge-7");
	field(line, "host", v, sizeof(v));
	gethostname(host, sizeof(host) - 1);
	assert_string_equal(v, host);
	field(line, "pid", v, sizeof(v));
	assert_true(pids_contain(workers, 2, (pid_t)atol(v)));
	field(line, "worker", v, sizeof(v));
	assert_true(strcmp(v, "0") == 0 || strcmp(v, "1") == 0);
	field(line, "generation", v, sizeof(v));
	assert_string_equal(v, "1");
	field(line, "client", v, sizeof(v));
	snprintf(want, sizeof(want), "127.0.0.1:%d", me);
	assert_string_equal(v, want);
	field(line, "server", v, sizeof(v));
	snprintf(want, sizeof(want), "127.0.0.1:%d", port);
	assert_string_equal(v, want);
	assert_false(has_key(line, "proxy"));
	assert_false(has_key(line, "balancer"));
	/* What the client sends is not echoed: the line is the whole answer. */
	n = tcp_whoami(port, "hello\n", 6, line, sizeof(line), NULL);
	line_expect_shape(line, n);
	assert_null(strstr(line, "hello"));
	assert_null(strstr(line, "HELLO"));
}

/* Behind a PROXY header: the real client, the balancer, AUTHORITY and UNIQUE_ID, escaped. */
static void
tcp_line_behind_a_proxy_header(void **state)
{
	struct env *e = *state;
	int ports[2], me;
	static const uint8_t sig[12] = { 0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49,
	    0x54, 0x0a };
	uint8_t h[128];
	char line[2048], v[256], want[64];
	size_t n = 0, len;

	ports_pick(ports, 2);
	start(e, ports, "");
	memcpy(h, sig, 12);
	h[12] = 0x21, h[13] = 0x11;
	n = 16;
	assert_int_equal(inet_pton(AF_INET, "192.0.2.1", h + n), 1);
	assert_int_equal(inet_pton(AF_INET, "198.51.100.1", h + n + 4), 1);
	h[n + 8] = 4242 >> 8, h[n + 9] = 4242 & 0xff, h[n + 10] = 0, h[n + 11] = 80;
	n += 12;
	h[n++] = 0x02, h[n++] = 0, h[n++] = 11;
	memcpy(h + n, "example.com", 11), n += 11;
	h[n++] = 0x05, h[n++] = 0, h[n++] = 5;
	memcpy(h + n, "id 7\n", 5), n += 5;
	h[14] = (uint8_t)((n - 16) >> 8), h[15] = (uint8_t)(n - 16);
	len = tcp_whoami(ports[1], h, n, line, sizeof(line), &me);
	line_expect_shape(line, len);
	field(line, "client", v, sizeof(v));
	assert_string_equal(v, "192.0.2.1:4242");
	field(line, "proxy", v, sizeof(v));
	assert_string_equal(v, "v2");
	field(line, "balancer", v, sizeof(v));
	snprintf(want, sizeof(want), "127.0.0.1:%d", me);
	assert_string_equal(v, want);
	field(line, "server", v, sizeof(v));
	snprintf(want, sizeof(want), "127.0.0.1:%d", ports[1]);
	assert_string_equal(v, want);
	field(line, "authority", v, sizeof(v));
	assert_string_equal(v, "example.com");
	field(line, "unique_id", v, sizeof(v));
	assert_string_equal(v, "id%207%0A");
	/* v1: no TLVs, so neither authority nor unique_id */
	len = tcp_whoami(ports[1], "PROXY TCP4 192.0.2.9 198.51.100.1 5555 80\r\n", 43, line,
	    sizeof(line), NULL);
	line_expect_shape(line, len);
	field(line, "client", v, sizeof(v));
	assert_string_equal(v, "192.0.2.9:5555");
	field(line, "proxy", v, sizeof(v));
	assert_string_equal(v, "v1");
	assert_false(has_key(line, "authority"));
	assert_false(has_key(line, "unique_id"));
	/* "" names the instance after the host */
	{
		char host[256] = "";
		gethostname(host, sizeof(host) - 1);
		field(line, "instance", v, sizeof(v));
		assert_string_equal(v, host);
	}
}

/* UDP: the whole line to a large datagram, and a reply cut to a small one's length. */
static void
udp_reply_is_never_longer_than_the_request(void **state)
{
	struct env *e = *state;
	int ports[2];
	int port;
	char req[1024], reply[2048], full[2048];
	ssize_t n, whole;

	ports_pick(ports, 2);
	port = ports[0];
	start(e, ports, "name = \"edge-7\";");
	memset(req, 'x', sizeof(req));
	whole = udp_exchange(port, req, sizeof(req), full, sizeof(full) - 1, EM_DEADLINE_MS);
	if (whole <= 0)
		fail_msg("no reply to a %zu-byte datagram", sizeof(req));
	assert_true(whole < (ssize_t)sizeof(req));
	full[whole] = '\0';
	line_expect_shape(full, (size_t)whole);
	{
		char v[64], want[64];
		field(full, "server", v, sizeof(v));
		snprintf(want, sizeof(want), "127.0.0.1:%d", port);
		assert_string_equal(v, want);
		field(full, "client", v, sizeof(v));
		assert_int_equal(strncmp(v, "127.0.0.1:", 10), 0);
	}
	for (size_t len = 1; len <= 64; len *= 2) {
		n = udp_exchange(port, req, len, reply, sizeof(reply), EM_DEADLINE_MS);
		if (n != (ssize_t)len)
			fail_msg("a %zu-byte datagram drew %zd bytes", len, n);
		assert_memory_equal(reply, "instance=edge-7 host=", len < 21 ? len : 21);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(tcp_line_names_instance_worker_and_addresses, env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(tcp_line_behind_a_proxy_header, env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(udp_reply_is_never_longer_than_the_request, env_setup, env_teardown),
	};
	return cmocka_run_group_tests_name("whoami", tests, NULL, NULL);
}
