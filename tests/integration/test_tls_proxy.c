/*
 * test_tls_proxy.c: TLS listeners behind a PROXY header, as HAProxy sends
 * it with `send-proxy-v2 ssl` (re-encryption), and as a TCP balancer (AWS
 * NLB, HAProxy in mode tcp) sends it with `send-proxy-v2` in front of a
 * TLS backend (passthrough): the header in clear, then the ClientHello.
 *
 * First the test is the balancer: it connects from 127.0.0.2 (127.0.0.3
 * is not trusted), writes a v1 or v2 header naming a client in
 * 192.0.2.0/24, and then OpenSSL, as the client, does its handshake on
 * the same socket. Its first flight goes through memory, so that the test
 * decides how the header and the ClientHello meet the wire: in one write,
 * in two, or cut anywhere; from there OpenSSL works on the socket itself.
 * Then the real peer: HAProxy from Debian's package, in front.
 *
 * What is checked is what a user sees: the echo or the close, the whoami
 * line, the counters of -s status, and HAProxy's view of its server.
 */
#include "harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

/* Runs a shell command in the test's directory; fails the test when it fails. */
static void __attribute__((format(printf, 2, 3)))
sh(struct env *e, const char *fmt, ...)
{
	char cmd[4096], full[4096 + PATH_MAX + 64];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	snprintf(full, sizeof(full), "cd '%s' && (%s) >/dev/null 2>&1", e->dir, cmd);
	if (system(full) != 0)
		fail_msg("failed: %s", cmd);
}

static void
make_cert(struct env *e)
{
	sh(e, "openssl ecparam -name prime256v1 -genkey -noout -out a.key && "
	    "openssl req -new -x509 -key a.key -out a.crt -days 30 -subj /CN=a.test "
	    "-addext subjectAltName=DNS:a.test");
}

/*
 * Two TLS listeners behind PROXY headers: ports[0] upper, ports[1] whoami,
 * trusting 127.0.0.1 (HAProxy) and 127.0.0.2 (the test as a balancer).
 * LISTEN_EXTRA goes into both, LIMITS into the limits group.
 */
static void
write_conf(struct env *e, int workers, const int ports[2], const char *proxy,
    const char *listen_extra, const char *limits, const char *extra)
{
	static const char *const modes[] = { "upper", "whoami" };
	char text[8192];
	int at;

	at = snprintf(text, sizeof(text),
	    "workers = %d;\npid_file = \"%s\";\nshutdown_timeout = 20;\ncontrol_socket = \"%s\";\n"
	    "log = { level = \"debug\"; stderr = true; };\nlimits = { %s };\n%s\nlisten = (\n",
	    workers, e->pid_path, env_control_socket(e), limits ? limits : "", extra ? extra : "");
	for (size_t i = 0; i < 2; i++)
		at += snprintf(text + at, sizeof(text) - (size_t)at,
		    "  { proto = \"tcp\"; address = \"127.0.0.1\"; port = %d; mode = \"%s\";\n"
		    "    proxy_protocol = \"%s\"; proxy_trusted = [ \"127.0.0.1/32\", \"127.0.0.2/32\" ]; %s\n"
		    "    tls = { certificate = \"%s/a.crt\"; key = \"%s/a.key\"; alpn = [ \"echo\", \"h2\" ]; }; }%s\n",
		    ports[i], modes[i], proxy, listen_extra ? listen_extra : "", e->dir, e->dir,
		    i == 0 ? "," : "");
	snprintf(text + at, sizeof(text) - (size_t)at, ");\n");
	env_write_conf_text(e, text);
}

/* The local port of a socket: the balancer's port a whoami line names. */
static int
local_port(int fd)
{
	struct sockaddr_in sin;
	socklen_t len = sizeof(sin);

	assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
	return ntohs(sin.sin_port);
}

/* ---- PROXY headers ---- */

static size_t
v1_header(uint8_t *buf, size_t cap, const char *client, int sport)
{
	int n = snprintf((char *)buf, cap, "PROXY TCP4 %s 198.51.100.1 %d 443\r\n", client, sport);

	assert_true(n > 0 && (size_t)n < cap);
	return (size_t)n;
}

/* CRC32C (Castagnoli, reflected), bit by bit: the test's own, not the daemon's. */
static uint32_t
crc32c(const uint8_t *p, size_t n)
{
	uint32_t crc = 0xffffffffu;

	for (size_t i = 0; i < n; i++) {
		crc ^= p[i];
		for (int k = 0; k < 8; k++)
			crc = (crc >> 1) ^ (0x82f63b78u & (0u - (crc & 1u)));
	}
	return ~crc;
}

static size_t
tlv_put(uint8_t *b, size_t at, uint8_t type, const void *v, size_t len)
{
	b[at] = type;
	b[at + 1] = (uint8_t)(len >> 8);
	b[at + 2] = (uint8_t)len;
	memcpy(b + at + 3, v, len);
	return at + 3 + len;
}

/*
 * A v2 PROXY TCP4 header for CLIENT:SPORT, or a LOCAL one (a balancer's
 * health check) when client is NULL. With TLVs: AUTHORITY, UNIQUE_ID, a
 * NOOP and a CRC32C over the whole header, as HAProxy's proxy-v2-options
 * send them.
 */
static size_t
v2_header(uint8_t *b, const char *client, int sport, bool tlvs)
{
	static const uint8_t sig[12] = { 0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49,
	    0x54, 0x0a };
	static const uint8_t zero[4];
	size_t at = 28, crc_at;
	uint32_t crc;

	memcpy(b, sig, 12);
	if (client == NULL) {
		b[12] = 0x20, b[13] = 0x00, b[14] = 0, b[15] = 0;
		return 16;
	}
	b[12] = 0x21, b[13] = 0x11;
	assert_int_equal(inet_pton(AF_INET, client, b + 16), 1);
	assert_int_equal(inet_pton(AF_INET, "198.51.100.1", b + 20), 1);
	b[24] = (uint8_t)(sport >> 8), b[25] = (uint8_t)sport;
	b[26] = 0x01, b[27] = 0xbb;
	if (tlvs) {
		at = tlv_put(b, at, 0x02, "a.test", 6);           /* AUTHORITY */
		at = tlv_put(b, at, 0x05, "req-42", 6);           /* UNIQUE_ID */
		at = tlv_put(b, at, 0x04, "\0\0\0", 3);           /* NOOP */
		crc_at = at + 3;
		at = tlv_put(b, at, 0x03, zero, 4);               /* CRC32C, computed below */
	}
	b[14] = (uint8_t)((at - 16) >> 8), b[15] = (uint8_t)(at - 16);
	if (tlvs) {
		crc = crc32c(b, at);
		b[crc_at] = (uint8_t)(crc >> 24), b[crc_at + 1] = (uint8_t)(crc >> 16);
		b[crc_at + 2] = (uint8_t)(crc >> 8), b[crc_at + 3] = (uint8_t)crc;
	}
	return at;
}

/* ---- the client ---- */

struct client {
	SSL_CTX *ctx;
	SSL *ssl;
	int fd;
	uint8_t hello[4096];  /* its first flight: the ClientHello */
	size_t hello_len;
};

struct client_opts {
	int version;        /* TLS1_2_VERSION, TLS1_3_VERSION, 0 = either */
	const char *sni;
	const char *alpn;   /* one protocol, or NULL */
};

/* Blocking, but never for longer than a deadline. */
static void
set_timeouts(int fd)
{
	struct timeval tv = { .tv_sec = EM_DEADLINE_MS / 1000 };

	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

/*
 * A client on FD (taken) whose ClientHello is made, in cl->hello, and not
 * sent: the caller writes it, with a header or after one. The first
 * flight goes to memory BIOs; client_finish puts the socket under them.
 */
static void
client_begin(struct client *cl, int fd, const struct client_opts *o)
{
	BIO *rbio, *wbio;
	int n;

	memset(cl, 0, sizeof(*cl));
	cl->fd = fd;
	assert_non_null(cl->ctx = SSL_CTX_new(TLS_client_method()));
	if (o->version != 0) {
		SSL_CTX_set_min_proto_version(cl->ctx, o->version);
		SSL_CTX_set_max_proto_version(cl->ctx, o->version);
	}
	assert_non_null(cl->ssl = SSL_new(cl->ctx));
	assert_non_null(rbio = BIO_new(BIO_s_mem()));
	assert_non_null(wbio = BIO_new(BIO_s_mem()));
	SSL_set_bio(cl->ssl, rbio, wbio);
	SSL_set_connect_state(cl->ssl);
	if (o->sni != NULL)
		SSL_set_tlsext_host_name(cl->ssl, o->sni);
	if (o->alpn != NULL) {
		unsigned char wire[64];
		size_t len = strlen(o->alpn);
		wire[0] = (unsigned char)len;
		memcpy(wire + 1, o->alpn, len);
		SSL_set_alpn_protos(cl->ssl, wire, (unsigned)len + 1);
	}
	assert_int_equal(SSL_do_handshake(cl->ssl), -1);
	assert_int_equal(SSL_get_error(cl->ssl, -1), SSL_ERROR_WANT_READ);
	n = BIO_read(wbio, cl->hello, sizeof(cl->hello));
	assert_true(n > 0 && BIO_ctrl_pending(wbio) == 0);
	cl->hello_len = (size_t)n;
}

/* The handshake, now on the socket; 1 when complete, 0 when the server refused it. */
static int
client_finish(struct client *cl)
{
	set_timeouts(cl->fd);
	SSL_set_fd(cl->ssl, cl->fd);  /* frees the memory BIOs: nothing is left in them */
	if (SSL_connect(cl->ssl) == 1)
		return 1;
	ERR_clear_error();
	return 0;
}

static void
client_free(struct client *cl)
{
	if (cl->ssl == NULL)
		return;
	SSL_free(cl->ssl);
	close(cl->fd);
	SSL_CTX_free(cl->ctx);
	memset(cl, 0, sizeof(*cl));
}

static void
client_close(struct client *cl)
{
	if (cl->ssl != NULL)
		SSL_shutdown(cl->ssl);
	client_free(cl);
}

/*
 * A client from 127.0.0.2 whose connection the worker has accepted: what
 * the worker read before is in its counters then, since it publishes them
 * each loop turn and this accept came in a later turn than the last reply
 * the test saw. Returns the byte count then.
 */
static uint64_t
client_begin_settled(struct env *e, struct client *cl, int port, const struct client_opts *o)
{
	uint64_t accepted = env_total(e, "accepted");

	client_begin(cl, tcp_connect_from("127.0.0.2", port), o);
	env_total_wait(e, "accepted", accepted + 1);
	return env_total(e, "bytes_in");
}

/* Writes BYTES then the ClientHello in one write: one segment on loopback. */
static void
send_with_hello(struct client *cl, const void *bytes, size_t n)
{
	uint8_t buf[8192];

	assert_true(n + cl->hello_len <= sizeof(buf));
	memcpy(buf, bytes, n);
	memcpy(buf + n, cl->hello, cl->hello_len);
	assert_int_equal(tcp_send_all(cl->fd, buf, n + cl->hello_len, EM_DEADLINE_MS), 0);
}

/* From SRC, HEADER and the ClientHello in one write, then the handshake; 1 when complete. */
static int
client_open(struct client *cl, const char *src, int port, const void *header, size_t n,
    const struct client_opts *o)
{
	client_begin(cl, tcp_connect_from(src, port), o);
	send_with_hello(cl, header, n);
	return client_finish(cl);
}

static void
client_write(struct client *cl, const void *buf, size_t len)
{
	size_t n;

	if (SSL_write_ex(cl->ssl, buf, len, &n) != 1 || n != len)
		fail_msg("TLS write failed");
}

/* Reads exactly len bytes; returns how many came before EOF or an error. */
static size_t
client_read(struct client *cl, void *buf, size_t len)
{
	size_t got = 0, n;

	while (got < len && SSL_read_ex(cl->ssl, (char *)buf + got, len - got, &n) == 1)
		got += n;
	ERR_clear_error();
	return got;
}

static void
roundtrip(struct client *cl, const char *msg, const char *expect)
{
	char buf[256];
	size_t len = strlen(expect);

	client_write(cl, msg, strlen(msg));
	assert_int_equal(client_read(cl, buf, len), len);
	assert_memory_equal(buf, expect, len);
}

#define CHUNK 16384

/* 256 KiB in 16 KiB pieces, every reply byte checked: the data path past the header. */
static void
stream_checked(struct client *cl)
{
	static char out[CHUNK], in[CHUNK], want[CHUNK];

	for (size_t done = 0; done < 16 * CHUNK; done += CHUNK) {
		for (size_t i = 0; i < CHUNK; i++) {
			out[i] = (char)('a' + (done + i) % 26);
			want[i] = (char)('A' + (done + i) % 26);
		}
		client_write(cl, out, CHUNK);
		assert_int_equal(client_read(cl, in, CHUNK), CHUNK);
		assert_memory_equal(in, want, CHUNK);
	}
}

/* The whoami line over an open TLS client, up to the server's close_notify. */
static void
client_line(struct client *cl, char *line, size_t cap)
{
	size_t got = 0, n;

	while (got + 1 < cap && SSL_read_ex(cl->ssl, line + got, cap - 1 - got, &n) == 1)
		got += n;
	ERR_clear_error();
	line[got] = '\0';
	if (strchr(line, '\n') == NULL)
		fail_msg("no whoami line: \"%s\"", line);
}

/* The value of KEY in a whoami line, "" when it is absent. */
static const char *
field(const char *line, const char *key, char *out, size_t cap)
{
	char pat[64];
	const char *p;
	size_t n;

	snprintf(pat, sizeof(pat), " %s=", key);
	out[0] = '\0';
	if ((p = strstr(line, pat)) == NULL)
		return out;
	p += strlen(pat);
	n = strcspn(p, " \n");
	snprintf(out, cap, "%.*s", (int)n, p);
	return out;
}

static void
field_is(const char *line, const char *key, const char *want)
{
	char v[128];

	if (strcmp(field(line, key, v, sizeof(v)), want) != 0)
		fail_msg("%s=\"%s\", want \"%s\", in: %s", key, v, want, line);
}

/* Reads a plain socket to EOF (at most a short alert before it): never an echo. Fails the test. */
static void
closed_without_echo(int fd)
{
	char buf[256];
	ssize_t n;

	set_timeouts(fd);
	while ((n = read(fd, buf, sizeof(buf))) > 0)
		if (n >= 16 || buf[0] != 0x15)
			fail_msg("%zd bytes back, not a TLS alert: the connection was served", n);
	if (n == -1 && errno != ECONNRESET)
		fail_msg("no close: %s", strerror(errno));
}

/* Polls a total that may go down as well as up (a gauge: active) until it is WANT. Fails the test. */
static void
total_becomes(struct env *e, const char *name, uint64_t want)
{
	int64_t deadline = now_ms() + EM_DEADLINE_MS;
	uint64_t v;

	while ((v = env_total(e, name)) != want && now_ms() < deadline)
		nap_ms(EM_POLL_NAP_MS);
	if (v != want)
		fail_msg("%s is %llu, want %llu", name, (unsigned long long)v, (unsigned long long)want);
}

static const char *
version_name(int v)
{
	return v == TLS1_3_VERSION ? "TLSv1.3" : "TLSv1.2";
}

/* ---- tests ---- */

/*
 * A v1 header and a v2 header with TLVs, each before a TLS 1.2 and a TLS
 * 1.3 handshake: the echo is right, 256 KiB of it checked byte by byte;
 * whoami names the header's client, the balancer, the header's
 * authority and unique_id, and the TLS version, SNI name and ALPN.
 */
static void
v1_and_v2_headers_before_tls12_and_tls13(void **state)
{
	struct env *e = *state;
	int ports[2], k = 0;
	static const int versions[] = { TLS1_2_VERSION, TLS1_3_VERSION };

	ports_pick(ports, 2);
	make_cert(e);
	write_conf(e, 2, ports, "any", NULL, NULL, NULL);
	env_start_ready(e, 2, 0);
	for (int v2 = 0; v2 < 2; v2++) {
		for (size_t v = 0; v < 2; v++, k++) {
			struct client_opts o = { .version = versions[v], .sni = "a.test", .alpn = "echo" };
			struct client cl;
			uint8_t h[256];
			char client[32], want[64], line[2048];
			size_t n;

			snprintf(client, sizeof(client), "192.0.2.%d", 10 + k);
			n = v2 ? v2_header(h, client, 40000 + k, true) : v1_header(h, sizeof(h), client, 40000 + k);
			assert_int_equal(client_open(&cl, "127.0.0.2", ports[0], h, n, &o), 1);
			assert_int_equal(SSL_version(cl.ssl), versions[v]);
			roundtrip(&cl, "hello, tls behind a header\n", "HELLO, TLS BEHIND A HEADER\n");
			stream_checked(&cl);
			client_close(&cl);

			assert_int_equal(client_open(&cl, "127.0.0.2", ports[1], h, n, &o), 1);
			client_line(&cl, line, sizeof(line));
			snprintf(want, sizeof(want), "%s:%d", client, 40000 + k);
			field_is(line, "client", want);
			snprintf(want, sizeof(want), "127.0.0.2:%d", local_port(cl.fd));
			field_is(line, "balancer", want);
			field_is(line, "proxy", v2 ? "v2" : "v1");
			field_is(line, "authority", v2 ? "a.test" : "");
			field_is(line, "unique_id", v2 ? "req-42" : "");
			field_is(line, "tls", version_name(versions[v]));
			field_is(line, "sni", "a.test");
			field_is(line, "alpn", "echo");
			client_close(&cl);
		}
	}
	env_total_wait(e, "tls_handshakes", 8);
	assert_int_equal(env_total(e, "proxy_headers"), 8);
	assert_int_equal(env_total(e, "proxy_bad") + env_total(e, "tls_fail_protocol") +
	    env_total(e, "tls_fail_other") + env_total(e, "tls_fail_timeout"), 0);
}

/*
 * How the header and the ClientHello meet the worker: in one read; in two
 * (the header taken alone before the ClientHello is sent: the counter
 * says it was); the header cut in two reads (the daemon's byte count says
 * it read the first piece), its rest and the ClientHello together; and
 * the ClientHello cut, its first bytes in the header's read and the rest
 * in the next, one TLS record across the two. One worker, so that its
 * counters tell which read it has made.
 */
static void
header_and_hello_in_one_read_or_many(void **state)
{
	struct env *e = *state;
	int ports[2];
	struct client_opts o = { .version = TLS1_3_VERSION };
	struct client cl;
	uint8_t v1[128], v2[256];
	size_t n1, n2;
	uint64_t in;

	ports_pick(ports, 2);
	make_cert(e);
	write_conf(e, 1, ports, "any", NULL, NULL, NULL);
	env_start_ready(e, 1, 0);
	n1 = v1_header(v1, sizeof(v1), "192.0.2.1", 1);
	n2 = v2_header(v2, "192.0.2.2", 2, true);

	/* One write, one read. */
	assert_int_equal(client_open(&cl, "127.0.0.2", ports[0], v2, n2, &o), 1);
	roundtrip(&cl, "one\n", "ONE\n");
	client_close(&cl);

	/* Two writes, two reads. */
	for (int v = 0; v < 2; v++) {
		uint64_t headers = env_total(e, "proxy_headers");

		client_begin(&cl, tcp_connect_from("127.0.0.2", ports[0]), &o);
		assert_int_equal(tcp_send_all(cl.fd, v ? v2 : v1, v ? n2 : n1, EM_DEADLINE_MS), 0);
		env_total_wait(e, "proxy_headers", headers + 1);
		assert_int_equal(tcp_send_all(cl.fd, cl.hello, cl.hello_len, EM_DEADLINE_MS), 0);
		assert_int_equal(client_finish(&cl), 1);
		roundtrip(&cl, "two\n", "TWO\n");
		client_close(&cl);
	}

	/* The header across two reads; its rest and the ClientHello in the second. */
	for (int v = 0; v < 2; v++) {
		const uint8_t *h = v ? v2 : v1;
		size_t n = v ? n2 : n1, cut = v ? 20 : 11;

		in = client_begin_settled(e, &cl, ports[0], &o);
		assert_int_equal(tcp_send_all(cl.fd, h, cut, EM_DEADLINE_MS), 0);
		env_total_wait(e, "bytes_in", in + cut);
		send_with_hello(&cl, h + cut, n - cut);
		assert_int_equal(client_finish(&cl), 1);
		roundtrip(&cl, "split header\n", "SPLIT HEADER\n");
		client_close(&cl);
	}

	/* The ClientHello across two reads: 9 bytes of it with the header, the rest later. */
	client_begin(&cl, tcp_connect_from("127.0.0.2", ports[0]), &o);
	{
		uint8_t buf[512];

		memcpy(buf, v2, n2);
		memcpy(buf + n2, cl.hello, 9);
		assert_int_equal(tcp_send_all(cl.fd, buf, n2 + 9, EM_DEADLINE_MS), 0);
		env_total_wait(e, "proxy_headers", 6);  /* the header is in: the ClientHello's 9 bytes with it */
		assert_int_equal(tcp_send_all(cl.fd, cl.hello + 9, cl.hello_len - 9, EM_DEADLINE_MS), 0);
	}
	assert_int_equal(client_finish(&cl), 1);
	roundtrip(&cl, "split hello\n", "SPLIT HELLO\n");
	client_close(&cl);

	env_total_wait(e, "tls_handshakes", 6);
	assert_int_equal(env_total(e, "proxy_headers"), 6);
	assert_int_equal(env_total(e, "tls_fail_protocol") + env_total(e, "tls_fail_other"), 0);
}

/*
 * What must be closed is closed and counted, each while a client already
 * served goes on: a malformed header (proxy_bad); a source outside
 * proxy_trusted (proxy_untrusted); a header and then nothing, closed at
 * handshake_timeout (2 s) counted from the header, not at proxy_timeout
 * (1 s) (tls_fail_timeout); plain text after the header, never echoed
 * (tls_fail_protocol). A balancer's health check, a LOCAL header and a
 * close, is none of these: not counted as a failure.
 */
static void
bad_untrusted_stalled_and_plaintext_are_closed_and_counted(void **state)
{
	struct env *e = *state;
	int ports[2], fd;
	struct client_opts o = { 0 };
	struct client good, bad;
	uint8_t h[256];
	size_t n;
	int64_t t0, waited;
	static const char bad_v1[] = "PROXY TCP4 192.0.2.01 198.51.100.1 1 443\r\n";
	static const char plain[] = "hello, plain text\r\n";

	ports_pick(ports, 2);
	make_cert(e);
	write_conf(e, 1, ports, "any", NULL, "proxy_timeout = 1; handshake_timeout = 2;", NULL);
	env_start_ready(e, 1, 0);
	n = v2_header(h, "192.0.2.1", 1, false);
	assert_int_equal(client_open(&good, "127.0.0.2", ports[0], h, n, &o), 1);
	roundtrip(&good, "first\n", "FIRST\n");

	client_begin(&bad, tcp_connect_from("127.0.0.2", ports[0]), &o);
	send_with_hello(&bad, bad_v1, strlen(bad_v1));
	closed_without_echo(bad.fd);
	client_free(&bad);
	env_total_wait(e, "proxy_bad", 1);
	roundtrip(&good, "after a bad header\n", "AFTER A BAD HEADER\n");

	client_begin(&bad, tcp_connect_from("127.0.0.3", ports[0]), &o);
	send_with_hello(&bad, h, n);
	closed_without_echo(bad.fd);
	client_free(&bad);
	env_total_wait(e, "proxy_untrusted", 1);
	roundtrip(&good, "after an untrusted one\n", "AFTER AN UNTRUSTED ONE\n");

	fd = tcp_connect_from("127.0.0.2", ports[0]);
	assert_int_equal(tcp_send_all(fd, h, n, EM_DEADLINE_MS), 0);
	env_total_wait(e, "proxy_headers", 2);
	t0 = now_ms();
	roundtrip(&good, "during a stall\n", "DURING A STALL\n");
	assert_int_equal(tcp_wait_eof(fd, EM_DEADLINE_MS), 0);
	waited = now_ms() - t0;
	close(fd);
	if (waited < 1900)
		fail_msg("closed %lld ms after its header, before handshake_timeout (2 s)", (long long)waited);
	env_total_wait(e, "tls_fail_timeout", 1);
	assert_int_equal(env_total(e, "proxy_timeout"), 0);

	fd = tcp_connect_from("127.0.0.2", ports[0]);
	memcpy(h + n, plain, strlen(plain));
	assert_int_equal(tcp_send_all(fd, h, n + strlen(plain), EM_DEADLINE_MS), 0);
	closed_without_echo(fd);
	close(fd);
	env_total_wait(e, "tls_fail_protocol", 1);
	roundtrip(&good, "after plain text\n", "AFTER PLAIN TEXT\n");

	/* A health check: LOCAL, then the balancer closes. Seen, closed, no failure. */
	fd = tcp_connect_from("127.0.0.2", ports[0]);
	n = v2_header(h, NULL, 0, false);
	assert_int_equal(tcp_send_all(fd, h, n, EM_DEADLINE_MS), 0);
	env_total_wait(e, "proxy_headers", 4);
	close(fd);
	total_becomes(e, "active", 1);
	roundtrip(&good, "last\n", "LAST\n");
	client_close(&good);

	total_becomes(e, "active", 0);
	assert_int_equal(env_total(e, "tls_handshakes"), 1);
	assert_int_equal(env_total(e, "tls_fail_timeout"), 1);
	assert_int_equal(env_total(e, "tls_fail_protocol"), 1);
	assert_int_equal(env_total(e, "tls_fail_other"), 0);
	assert_int_equal(env_total(e, "proxy_bad"), 1);
	assert_int_equal(env_total(e, "proxy_untrusted"), 1);
}

/*
 * allow and max_connections_per_address act on the header's client, not
 * on the balancer: 127.0.0.2 is outside allow, yet its clients from
 * 192.0.2.0/25 get their handshake; 192.0.2.200 is closed before it; one
 * connection per client address, released when it closes.
 */
static void
allow_deny_and_the_address_limit_act_on_the_header_address(void **state)
{
	struct env *e = *state;
	int ports[2];
	struct client_opts o = { 0 };
	struct client a, b, c;
	uint8_t h[256];
	size_t n;
	int64_t deadline;
	int served = 0;

	ports_pick(ports, 2);
	make_cert(e);
	write_conf(e, 2, ports, "v2", "deny = [ \"0.0.0.0/0\" ]; allow = [ \"192.0.2.0/25\" ];", "max_connections_per_address = 1;",
	    NULL);
	env_start_ready(e, 2, 0);

	n = v2_header(h, "192.0.2.200", 1, false);
	assert_int_equal(client_open(&c, "127.0.0.2", ports[0], h, n, &o), 0);
	client_free(&c);
	env_total_wait(e, "refused_acl", 1);
	assert_true(env_log_has(e, "connection from 192.0.2.200:1 refused: access list"));

	n = v2_header(h, "192.0.2.1", 1, false);
	assert_int_equal(client_open(&a, "127.0.0.2", ports[0], h, n, &o), 1);
	roundtrip(&a, "allowed\n", "ALLOWED\n");
	assert_int_equal(client_open(&c, "127.0.0.2", ports[0], h, n, &o), 0);
	client_free(&c);
	env_total_wait(e, "refused_per_address", 1);
	n = v2_header(h, "192.0.2.2", 2, false);
	assert_int_equal(client_open(&b, "127.0.0.2", ports[0], h, n, &o), 1);
	roundtrip(&b, "another\n", "ANOTHER\n");

	client_close(&a);
	n = v2_header(h, "192.0.2.1", 3, false);
	deadline = now_ms() + EM_DEADLINE_MS;
	while (!served && now_ms() < deadline) {
		served = client_open(&c, "127.0.0.2", ports[0], h, n, &o);
		if (!served) {
			client_free(&c);
			nap_ms(EM_POLL_NAP_MS);  /* the close reaches the worker within a loop turn */
		}
	}
	assert_true(served);
	roundtrip(&c, "again\n", "AGAIN\n");
	client_close(&c);
	client_close(&b);
	assert_int_equal(env_total(e, "refused_acl"), 1);
}

/*
 * A reload never moves a TLS connection, behind a header or not: its
 * state is in OpenSSL. One established and one in the middle of its
 * header when the reload comes both stay with their old worker, which
 * serves them (whoami says generation 1 after the reload) while the new
 * generation serves new clients; the old one exits once they are done.
 */
static void
a_reload_leaves_them_to_drain(void **state)
{
	struct env *e = *state;
	int ports[2];
	struct client_opts o = { 0 };
	struct client up, who, fresh;
	uint8_t h[256];
	char line[2048];
	size_t n;
	struct em_status st;
	int64_t deadline;

	ports_pick(ports, 2);
	make_cert(e);
	write_conf(e, 1, ports, "v1", NULL, "proxy_timeout = 20;", "reload_handover = true;");
	env_start_ready(e, 1, 0);
	n = v1_header(h, sizeof(h), "192.0.2.1", 1);
	/* The first connection: the daemon has read nothing else, so its byte count says it read this. */
	client_begin(&who, tcp_connect_from("127.0.0.2", ports[1]), &o);
	assert_int_equal(tcp_send_all(who.fd, h, 10, EM_DEADLINE_MS), 0);
	env_total_wait(e, "bytes_in", 10);
	assert_int_equal(client_open(&up, "127.0.0.2", ports[0], h, n, &o), 1);
	roundtrip(&up, "before\n", "BEFORE\n");

	assert_int_equal(env_control(e, "reload", NULL, EM_DEADLINE_MS), 0);
	env_wait_serving(e, 2, 1, EM_DEADLINE_MS);
	send_with_hello(&who, h + 10, n - 10);
	assert_int_equal(client_finish(&who), 1);
	client_line(&who, line, sizeof(line));
	field_is(line, "generation", "1");
	field_is(line, "client", "192.0.2.1:1");
	client_close(&who);
	roundtrip(&up, "after\n", "AFTER\n");
	assert_int_equal(client_open(&fresh, "127.0.0.2", ports[1], h, n, &o), 1);
	client_line(&fresh, line, sizeof(line));
	field_is(line, "generation", "2");
	client_close(&fresh);

	assert_int_equal(env_status(e, &st, EM_DEADLINE_MS), 0);
	assert_int_equal(status_count_gen(&st, 0), 1);  /* the old worker, draining */
	assert_int_equal(status_gen_sum(&st, 0, offsetof(struct em_status_worker, moved_out)), 0);
	roundtrip(&up, "still\n", "STILL\n");
	client_close(&up);
	deadline = now_ms() + EM_DEADLINE_MS;
	do {
		assert_int_equal(env_status(e, &st, EM_DEADLINE_MS), 0);
		if (status_count_gen(&st, 0) == 0)
			break;
		nap_ms(EM_POLL_NAP_MS);
	} while (now_ms() < deadline);
	assert_int_equal(status_count_gen(&st, 0), 0);
	assert_int_equal(status_gen_sum(&st, 2, offsetof(struct em_status_worker, moved_in)), 0);
}

/* ---- HAProxy in front ---- */

/* "show stat" on HAProxy's stats socket: the CSV, malloc'd; NULL when it does not answer. */
static char *
haproxy_stat(struct env *e)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	const char *path = env_file(e, "haproxy.sock");
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	char *out = NULL;
	ssize_t n;
	size_t len = 0;

	assert_true(fd != -1 && strlen(path) < sizeof(sun.sun_path));
	memcpy(sun.sun_path, path, strlen(path) + 1);
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == -1) {
		close(fd);
		return NULL;
	}
	set_timeouts(fd);
	assert_int_equal(tcp_send_all(fd, "show stat\n", 10, EM_DEADLINE_MS), 0);
	for (;;) {
		char *grown = realloc(out, len + 4097);
		assert_non_null(grown);
		out = grown;
		if ((n = read(fd, out + len, 4096)) <= 0)
			break;
		len += (size_t)n;
	}
	out[len] = '\0';
	close(fd);
	return out;
}

/* Column NAME of the row of server SV in backend BE, in a "show stat" CSV; "" when absent. */
static const char *
stat_field(const char *csv, const char *be, const char *sv, const char *name, char *out, size_t cap)
{
	char row[128];
	const char *hdr = csv, *line, *p;
	int col = 0, want = -1;

	out[0] = '\0';
	if (strncmp(hdr, "# ", 2) != 0)
		return out;
	for (p = hdr + 2; *p != '\n' && *p != '\0'; col++) {
		size_t len = strcspn(p, ",\n");
		if (len == strlen(name) && strncmp(p, name, len) == 0)
			want = col;
		p += len + (p[len] == ',');
	}
	snprintf(row, sizeof(row), "\n%s,%s,", be, sv);
	if (want == -1 || (line = strstr(csv, row)) == NULL)
		return out;
	for (p = line + 1, col = 0; col < want; col++) {
		p += strcspn(p, ",\n");
		if (*p != ',')
			return out;
		p++;
	}
	snprintf(out, cap, "%.*s", (int)strcspn(p, ",\n"), p);
	return out;
}

static const char *const backends[] = { "reenc", "reenc_who", "pass", "pass_who" };
#define NBACKENDS (sizeof(backends) / sizeof(backends[0]))

/* Whether HAProxy's check has each server UP, with no failed check. */
static bool
haproxy_all_up(struct env *e, bool report)
{
	char *csv = haproxy_stat(e), status[32], chkfail[32], check[64];
	bool up = csv != NULL;

	for (size_t i = 0; csv != NULL && i < NBACKENDS; i++) {
		stat_field(csv, backends[i], "s1", "status", status, sizeof(status));
		stat_field(csv, backends[i], "s1", "chkfail", chkfail, sizeof(chkfail));
		stat_field(csv, backends[i], "s1", "check_status", check, sizeof(check));
		if (strcmp(status, "UP") != 0 || strcmp(chkfail, "0") != 0) {
			up = false;
			if (report)
				print_error("HAProxy: %s/s1 is \"%s\", chkfail \"%s\", check \"%s\"\n",
				    backends[i], status, chkfail, check);
		}
	}
	free(csv);
	return up;
}

/*
 * HAProxy in front, four ways, each with its health checks (every second,
 * with the PROXY header, so LOCAL): re-encrypting (`send-proxy-v2 ssl
 * verify none`, a plain check and `option tcp-check`), and passing TLS
 * through in mode tcp (`send-proxy-v2`, a plain check, which only
 * connects, and `option tcp-check`). Ports: FE[i] its frontends, EM the
 * echomaster listeners (upper, whoami). HAProxy bounds a check's connect,
 * and with `ssl` its handshake, by the smaller of `timeout connect` and
 * `inter`, its read by `timeout check`: a second and ten, so that a loaded
 * machine (or a sanitizer build) fails no check.
 */
static void
haproxy_start(struct env *e, const int fe[NBACKENDS], const int em[2])
{
	char cfg[4096];
	const char *path = env_file(e, "haproxy.cfg");
	pid_t pid;
	int64_t deadline;

	snprintf(cfg, sizeof(cfg),
	    "global\n"
	    "    stats socket %s mode 600 level admin\n"
	    "    log stderr format short local0 info\n"
	    "defaults\n"
	    "    log global\n"
	    "    option log-health-checks\n"
	    "    mode tcp\n"
	    "    timeout connect 5s\n"
	    "    timeout client 30s\n"
	    "    timeout server 30s\n"
	    "    timeout check 10s\n"
	    "listen reenc\n"
	    "    bind 127.0.0.1:%d\n"
	    "    server s1 127.0.0.1:%d send-proxy-v2 ssl verify none check inter 1s\n"
	    "listen reenc_who\n"
	    "    bind 127.0.0.1:%d\n"
	    "    option tcp-check\n"
	    "    server s1 127.0.0.1:%d send-proxy-v2 ssl verify none sni str(a.test) check inter 1s\n"
	    "listen pass\n"
	    "    bind 127.0.0.1:%d\n"
	    "    server s1 127.0.0.1:%d send-proxy-v2 check inter 1s\n"
	    "listen pass_who\n"
	    "    bind 127.0.0.1:%d\n"
	    "    option tcp-check\n"
	    "    server s1 127.0.0.1:%d send-proxy-v2 check inter 1s\n",
	    env_file(e, "haproxy.sock"), fe[0], em[0], fe[1], em[1], fe[2], em[0], fe[3], em[1]);
	file_write(path, cfg);
	sh(e, "haproxy -c -q -f haproxy.cfg");
	if ((pid = fork()) == 0) {
		int out = open(env_file(e, "haproxy.log"), O_WRONLY | O_CREAT | O_TRUNC, 0644);

		dup2(out, 1);
		dup2(out, 2);
		execlp("haproxy", "haproxy", "-db", "-f", path, (char *)NULL);
		_exit(127);
	}
	assert_true(pid > 0);
	e->helper = pid;  /* teardown kills and reaps it */
	for (size_t i = 0; i < NBACKENDS; i++)
		tcp_wait_listening(fe[i], EM_DEADLINE_MS);
	deadline = now_ms() + EM_DEADLINE_MS;
	while (!haproxy_all_up(e, false) && now_ms() < deadline)
		nap_ms(EM_POLL_NAP_MS);
	if (!haproxy_all_up(e, true))
		fail_msg("HAProxy does not see echomaster UP");
}

/* A plain client from 127.0.0.5 to HAProxy's frontend at PORT. */
static int
plain_from_client(int port)
{
	int fd = tcp_connect_from("127.0.0.5", port);

	set_timeouts(fd);
	return fd;
}

/* Reads a plain socket to EOF into line. */
static void
plain_line(int fd, char *line, size_t cap)
{
	size_t got = 0;
	ssize_t n;

	while (got + 1 < cap && (n = read(fd, line + got, cap - 1 - got)) > 0)
		got += (size_t)n;
	line[got] = '\0';
	if (strchr(line, '\n') == NULL)
		fail_msg("no whoami line: \"%s\"", line);
}

/*
 * The real balancer: HAProxy re-encrypting to echomaster and passing a
 * client's TLS through, with send-proxy-v2. A client from 127.0.0.5 gets
 * its echo either way, and whoami names it (not HAProxy, which is the
 * balancer, from 127.0.0.1); HAProxy's own health checks, every second,
 * pass and cost echomaster no failure of any kind.
 */
static void
haproxy_in_front_reencrypting_and_passing_through(void **state)
{
	struct env *e = *state;
	int ports[2 + NBACKENDS], *em = ports, *fe = ports + 2, fd;
	char line[2048], want[64], buf[64];
	struct client_opts o = { .sni = "a.test", .alpn = "echo" };
	struct client cl;
	uint64_t headers;

	ports_pick(ports, 2 + NBACKENDS);
	make_cert(e);
	write_conf(e, 1, em, "v2", NULL, NULL, NULL);
	env_start_ready(e, 1, 0);
	/* A worker's first handshake sets OpenSSL up, slowly under a sanitizer: not on HAProxy's clock. */
	{
		uint8_t h[64];
		size_t n = v2_header(h, "192.0.2.1", 1, false);

		assert_int_equal(client_open(&cl, "127.0.0.2", em[0], h, n, &o), 1);
		roundtrip(&cl, "warm\n", "WARM\n");
		client_close(&cl);
	}
	haproxy_start(e, fe, em);

	/* Re-encryption: the client speaks plain TCP to HAProxy. */
	fd = plain_from_client(fe[0]);
	assert_int_equal(tcp_send_all(fd, "through haproxy\n", 16, EM_DEADLINE_MS), 0);
	assert_int_equal(tcp_read_exact(fd, buf, 16, EM_DEADLINE_MS), 16);
	assert_memory_equal(buf, "THROUGH HAPROXY\n", 16);
	close(fd);
	fd = plain_from_client(fe[1]);
	plain_line(fd, line, sizeof(line));
	snprintf(want, sizeof(want), "127.0.0.5:%d", local_port(fd));
	close(fd);
	field_is(line, "client", want);
	field_is(line, "proxy", "v2");
	if (strncmp(field(line, "balancer", buf, sizeof(buf)), "127.0.0.1:", 10) != 0)
		fail_msg("balancer=%s, want HAProxy's 127.0.0.1, in: %s", buf, line);
	field_is(line, "tls", "TLSv1.3");
	field_is(line, "sni", "a.test");

	/* Passthrough: the client's own TLS, through HAProxy in mode tcp. */
	client_begin(&cl, tcp_connect_from("127.0.0.5", fe[2]), &o);
	assert_int_equal(tcp_send_all(cl.fd, cl.hello, cl.hello_len, EM_DEADLINE_MS), 0);
	assert_int_equal(client_finish(&cl), 1);
	roundtrip(&cl, "passed through\n", "PASSED THROUGH\n");
	stream_checked(&cl);
	client_close(&cl);
	client_begin(&cl, tcp_connect_from("127.0.0.5", fe[3]), &o);
	assert_int_equal(tcp_send_all(cl.fd, cl.hello, cl.hello_len, EM_DEADLINE_MS), 0);
	assert_int_equal(client_finish(&cl), 1);
	client_line(&cl, line, sizeof(line));
	snprintf(want, sizeof(want), "127.0.0.5:%d", local_port(cl.fd));
	client_close(&cl);
	field_is(line, "client", want);
	field_is(line, "proxy", "v2");
	field_is(line, "tls", "TLSv1.3");
	field_is(line, "sni", "a.test");
	field_is(line, "alpn", "echo");

	/* Twelve more health checks (three seconds' worth), each with its header: no failure on either side. */
	headers = env_total(e, "proxy_headers");
	{
		int64_t deadline = now_ms() + EM_DEADLINE_MS;
		while (env_total(e, "proxy_headers") < headers + 12 && now_ms() < deadline)
			nap_ms(EM_POLL_NAP_MS);
	}
	if (env_total(e, "proxy_headers") < headers + 12)
		fail_msg("HAProxy's checks do not come");
	assert_true(haproxy_all_up(e, true));
	assert_int_equal(env_total(e, "proxy_bad"), 0);
	assert_int_equal(env_total(e, "proxy_untrusted"), 0);
	assert_int_equal(env_total(e, "proxy_timeout"), 0);
	assert_int_equal(env_total(e, "tls_fail_protocol"), 0);
	assert_int_equal(env_total(e, "tls_fail_cert"), 0);
	assert_int_equal(env_total(e, "tls_fail_timeout"), 0);
	assert_int_equal(env_total(e, "tls_fail_other"), 0);
	assert_int_equal(env_total(e, "refused"), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(v1_and_v2_headers_before_tls12_and_tls13, env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(header_and_hello_in_one_read_or_many, env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(bad_untrusted_stalled_and_plaintext_are_closed_and_counted,
		    env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(allow_deny_and_the_address_limit_act_on_the_header_address,
		    env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(a_reload_leaves_them_to_drain, env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(haproxy_in_front_reencrypting_and_passing_through, env_setup,
		    env_teardown),
	};

	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests_name("tls_proxy", tests, NULL, NULL);
}
