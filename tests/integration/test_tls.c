/*
 * test_tls.c: TLS listeners with real clients: OpenSSL's s_client, and a
 * small OpenSSL client here. The certificates are made at test time with
 * openssl(1) in the test's directory: an ECDSA P-256 one for a.test, an
 * RSA one for b.test, a CA and a client certificate it signed, and a
 * foreign client certificate. What is checked is what a client sees.
 */
#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

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
make_certs(struct env *e)
{
	sh(e, "openssl ecparam -name prime256v1 -genkey -noout -out a.key && "
	    "openssl req -new -x509 -key a.key -out a.crt -days 30 -subj /CN=a.test "
	    "-addext subjectAltName=DNS:a.test");
	sh(e, "openssl req -x509 -newkey rsa:2048 -nodes -keyout b.key -out b.crt -days 30 "
	    "-subj /CN=b.test -addext subjectAltName=DNS:b.test");
	sh(e, "openssl ecparam -name prime256v1 -genkey -noout -out ca.key && "
	    "openssl req -new -x509 -key ca.key -out ca.crt -days 30 -subj /CN=test-ca");
	sh(e, "openssl ecparam -name prime256v1 -genkey -noout -out client.key && "
	    "openssl req -new -key client.key -out client.csr -subj /CN=client && "
	    "openssl x509 -req -in client.csr -CA ca.crt -CAkey ca.key -CAcreateserial "
	    "-out client.crt -days 30");
	sh(e, "openssl ecparam -name prime256v1 -genkey -noout -out foreign.key && "
	    "openssl req -new -x509 -key foreign.key -out foreign.crt -days 30 -subj /CN=client");
}

/* A config: one TLS listener per entry of MODES on ports[i], all with TLS_EXTRA in their tls group. */
static void
write_conf(struct env *e, int workers, const int *ports, const char *const *modes, size_t n,
    const char *tls_extra, const char *limits)
{
	char text[8192];
	int at;

	at = snprintf(text, sizeof(text),
	    "workers = %d;\npid_file = \"%s\";\nshutdown_timeout = 5;\ncontrol_socket = \"%s\";\n"
	    "log = { level = \"info\"; stderr = true; };\nlimits = { %s };\nlisten = (\n",
	    workers, e->pid_path, env_control_socket(e), limits ? limits : "");
	for (size_t i = 0; i < n; i++)
		at += snprintf(text + at, sizeof(text) - (size_t)at,
		    "  { proto = \"tcp\"; address = \"127.0.0.1\"; port = %d; mode = \"%s\";\n"
		    "    tls = { certificate = \"%s/a.crt\"; key = \"%s/a.key\"; %s }; }%s\n",
		    ports[i], modes[i], e->dir, e->dir, tls_extra ? tls_extra : "",
		    i + 1 < n ? "," : "");
	snprintf(text + at, sizeof(text) - (size_t)at, ");\n");
	env_write_conf_text(e, text);
}

/* ---- the client ---- */

struct client {
	SSL_CTX *ctx;
	SSL *ssl;
	int fd;
};

struct client_opts {
	int version;              /* TLS1_2_VERSION, TLS1_3_VERSION, 0 = either */
	const char *sni;
	const char *alpn;         /* one protocol, or NULL */
	const char *cert, *key;   /* file names in the test's directory, or NULL */
	SSL_SESSION *session;     /* to resume, or NULL */
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

/* The first session a connection got (its ticket), as OpenSSL's new-session callback gave it. */
static SSL_SESSION *new_session;

static int
on_new_session(SSL *ssl, SSL_SESSION *sess)
{
	/* TLS 1.3 tickets come after the handshake, each a session of its own. */
	if (new_session != NULL || SSL_version(ssl) != TLS1_3_VERSION)
		return 0;
	new_session = sess;
	return 1;
}

/* Connects and handshakes; 1 on success, 0 when the handshake failed (cl is then freed). */
static int
client_open(struct env *e, struct client *cl, int port, const struct client_opts *o)
{
	char path[PATH_MAX + 32], kpath[PATH_MAX + 32];

	memset(cl, 0, sizeof(*cl));
	SSL_SESSION_free(new_session);  /* only this connection's tickets count */
	new_session = NULL;
	assert_non_null(cl->ctx = SSL_CTX_new(TLS_client_method()));
	if (o->version != 0) {
		SSL_CTX_set_min_proto_version(cl->ctx, o->version);
		SSL_CTX_set_max_proto_version(cl->ctx, o->version);
	}
	if (o->cert != NULL) {
		snprintf(path, sizeof(path), "%s/%s", e->dir, o->cert);
		snprintf(kpath, sizeof(kpath), "%s/%s", e->dir, o->key);
		assert_int_equal(SSL_CTX_use_certificate_file(cl->ctx, path, SSL_FILETYPE_PEM), 1);
		assert_int_equal(SSL_CTX_use_PrivateKey_file(cl->ctx, kpath, SSL_FILETYPE_PEM), 1);
	}
	SSL_CTX_set_session_cache_mode(cl->ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
	SSL_CTX_sess_set_new_cb(cl->ctx, on_new_session);
	cl->fd = tcp_connect(port, EM_DEADLINE_MS);
	assert_true(cl->fd >= 0);
	set_timeouts(cl->fd);
	assert_non_null(cl->ssl = SSL_new(cl->ctx));
	SSL_set_fd(cl->ssl, cl->fd);
	if (o->sni != NULL)
		SSL_set_tlsext_host_name(cl->ssl, o->sni);
	if (o->alpn != NULL) {
		unsigned char wire[64];
		size_t n = strlen(o->alpn);
		wire[0] = (unsigned char)n;
		memcpy(wire + 1, o->alpn, n);
		SSL_set_alpn_protos(cl->ssl, wire, (unsigned)n + 1);
	}
	if (o->session != NULL) {
		/* A copy each time: the client's OpenSSL marks the session a connection used as it ends. */
		SSL_SESSION *copy = SSL_SESSION_dup(o->session);
		SSL_set_session(cl->ssl, copy);
		SSL_SESSION_free(copy);
	}
	if (SSL_connect(cl->ssl) != 1) {
		ERR_clear_error();
		SSL_free(cl->ssl);
		close(cl->fd);
		SSL_CTX_free(cl->ctx);
		memset(cl, 0, sizeof(*cl));
		return 0;
	}
	return 1;
}

static void
client_close(struct client *cl)
{
	if (cl->ssl == NULL)
		return;
	SSL_shutdown(cl->ssl);
	SSL_free(cl->ssl);
	close(cl->fd);
	SSL_CTX_free(cl->ctx);
	memset(cl, 0, sizeof(*cl));
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

/* A whoami line over TLS: the whole line, up to the server's close_notify. */
static void
whoami(struct env *e, int port, const struct client_opts *o, char *line, size_t cap,
    SSL_SESSION **session, bool *resumed)
{
	struct client cl;
	size_t got = 0, n;

	assert_int_equal(client_open(e, &cl, port, o), 1);
	/* TLS 1.2: the session of the handshake, copied now, before its end marks it not resumable. */
	if (SSL_version(cl.ssl) != TLS1_3_VERSION) {
		SSL_SESSION_free(new_session);
		new_session = SSL_SESSION_dup(SSL_get0_session(cl.ssl));
	}
	while (got + 1 < cap && SSL_read_ex(cl.ssl, line + got, cap - 1 - got, &n) == 1)
		got += n;
	line[got] = '\0';
	if (resumed != NULL)
		*resumed = SSL_session_reused(cl.ssl) == 1;
	client_close(&cl);
	if (session != NULL) {
		*session = new_session;  /* the first ticket the server sent */
		new_session = NULL;
	}
	SSL_SESSION_free(new_session);
	new_session = NULL;
	if (strchr(line, '\n') == NULL)
		fail_msg("no whoami line: \"%s\"", line);
}

static const char *
field(const char *line, const char *key, char *out, size_t cap)
{
	char pat[64];
	const char *p;
	size_t n;

	snprintf(pat, sizeof(pat), " %s=", key);
	if ((p = strstr(line, pat)) == NULL)
		return NULL;
	p += strlen(pat);
	n = strcspn(p, " \n");
	snprintf(out, cap, "%.*s", (int)n, p);
	return out;
}

/* ---- tests ---- */

static void
upper_and_echo_over_tls12_and_tls13(void **state)
{
	struct env *e = *state;
	int ports[2];
	const char *modes[] = { "upper", "echo" };
	static const int versions[] = { TLS1_2_VERSION, TLS1_3_VERSION };

	ports_pick(ports, 2);
	make_certs(e);
	write_conf(e, 2, ports, modes, 2, NULL, NULL);
	env_start_ready(e, 2, ports[0]);
	for (size_t v = 0; v < 2; v++) {
		struct client_opts o = { .version = versions[v] };
		struct client up, echo;

		assert_int_equal(client_open(e, &up, ports[0], &o), 1);
		assert_int_equal(SSL_version(up.ssl), versions[v]);
		roundtrip(&up, "hello, tls\n", "HELLO, TLS\n");
		assert_int_equal(client_open(e, &echo, ports[1], &o), 1);
		roundtrip(&echo, "Hello, TLS\n", "Hello, TLS\n");
		client_close(&up);
		client_close(&echo);
	}
}

/* s_client, as a user would: the whoami line names the version, the SNI name and the ALPN protocol. */
static void
s_client_whoami_reports_alpn_and_sni(void **state)
{
	struct env *e = *state;
	int port = port_pick();
	const char *modes[] = { "whoami" };
	char cmd[1024], out[4096], v[64];
	FILE *p;
	size_t n;

	make_certs(e);
	write_conf(e, 1, &port, modes, 1, "alpn = [ \"h2\", \"echo\" ];", NULL);
	env_start_ready(e, 1, port);
	snprintf(cmd, sizeof(cmd), "openssl s_client -quiet -connect 127.0.0.1:%d -servername a.test "
	    "-alpn echo </dev/null 2>/dev/null", port);
	assert_non_null(p = popen(cmd, "r"));
	n = fread(out, 1, sizeof(out) - 1, p);
	out[n] = '\0';
	pclose(p);
	assert_non_null(field(out, "tls", v, sizeof(v)));
	assert_string_equal(v, "TLSv1.3");
	assert_non_null(field(out, "alpn", v, sizeof(v)));
	assert_string_equal(v, "echo");
	assert_non_null(field(out, "sni", v, sizeof(v)));
	assert_string_equal(v, "a.test");
	/* A protocol we do not accept: no_application_protocol, no line. */
	snprintf(cmd, sizeof(cmd), "openssl s_client -quiet -connect 127.0.0.1:%d -alpn h3 "
	    "</dev/null 2>&1", port);
	assert_non_null(p = popen(cmd, "r"));
	n = fread(out, 1, sizeof(out) - 1, p);
	out[n] = '\0';
	pclose(p);
	assert_null(strstr(out, "instance="));
	assert_non_null(strstr(out, "no application protocol"));
}

#define MIB (1024 * 1024)

/* 1 MiB each way, in 16 KiB pieces, every reply byte checked. */
static void
one_mib_each_way(void **state)
{
	struct env *e = *state;
	int port = port_pick();
	const char *modes[] = { "upper" };
	struct client_opts o = { 0 };
	struct client cl;
	static char out[16384], in[16384], want[16384];

	make_certs(e);
	write_conf(e, 1, &port, modes, 1, NULL, NULL);
	env_start_ready(e, 1, port);
	assert_int_equal(client_open(e, &cl, port, &o), 1);
	for (size_t done = 0; done < MIB; done += sizeof(out)) {
		for (size_t i = 0; i < sizeof(out); i++) {
			out[i] = (char)('a' + (done + i) % 26);
			want[i] = (char)('A' + (done + i) % 26);
		}
		client_write(&cl, out, sizeof(out));
		assert_int_equal(client_read(&cl, in, sizeof(in)), sizeof(in));
		assert_memory_equal(in, want, sizeof(in));
	}
	client_close(&cl);
}

/* The client's close_notify with replies pending: every reply, then our close_notify. */
static void
close_notify_is_a_half_close(void **state)
{
	struct env *e = *state;
	int port = port_pick();
	const char *modes[] = { "upper" };
	struct client_opts o = { .version = TLS1_3_VERSION };
	struct client cl;
	enum { LEN = 96 * 1024 };
	static char out[LEN], in[LEN];

	make_certs(e);
	write_conf(e, 1, &port, modes, 1, NULL, NULL);
	env_start_ready(e, 1, port);
	assert_int_equal(client_open(e, &cl, port, &o), 1);
	memset(out, 'q', sizeof(out));
	client_write(&cl, out, sizeof(out));
	assert_int_equal(SSL_shutdown(cl.ssl), 0);  /* ours sent; the server's not seen yet */
	assert_int_equal(client_read(&cl, in, sizeof(in)), sizeof(in));
	for (size_t i = 0; i < sizeof(in); i++)
		if (in[i] != 'Q')
			fail_msg("byte %zu is %d", i, in[i]);
	assert_int_equal(SSL_shutdown(cl.ssl), 1);  /* the server's close_notify came */
	SSL_free(cl.ssl);
	close(cl.fd);
	SSL_CTX_free(cl.ctx);
}

/*
 * A client that reads slowly, with a small receive buffer: the server's
 * replies back up, it stops reading (the 64 KiB bound on decrypted
 * replies), and once the client reads again everything arrives, in order
 * and whole, including what OpenSSL had read but not handed over yet.
 */
static void
a_slow_reader_gets_every_byte(void **state)
{
	struct env *e = *state;
	int port = port_pick();
	const char *modes[] = { "upper" };
	struct client_opts o = { 0 };
	struct client cl;
	enum { TOTAL = 4 * MIB };
	static char out[16384], in[65536];
	size_t sent = 0, got = 0, n;
	int small = 64 * 1024;  /* small, but room for a whole record (16 KiB and its overhead) */
	int64_t deadline;

	make_certs(e);
	write_conf(e, 1, &port, modes, 1, NULL, NULL);
	env_start_ready(e, 1, port);
	assert_int_equal(client_open(e, &cl, port, &o), 1);
	setsockopt(cl.fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
	SSL_set_mode(cl.ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	fcntl(cl.fd, F_SETFL, fcntl(cl.fd, F_GETFL) | O_NONBLOCK);
	deadline = now_ms() + 3 * EM_DEADLINE_MS;
	while (got < TOTAL && now_ms() < deadline) {
		struct pollfd p = { .fd = cl.fd, .events = POLLIN | (sent < TOTAL ? POLLOUT : 0) };
		bool progress = false;

		/* Writes first, as long as the server takes them: reading only when it stops. */
		while (sent < TOTAL) {
			size_t len = TOTAL - sent < sizeof(out) ? TOTAL - sent : sizeof(out);
			for (size_t i = 0; i < len; i++)
				out[i] = (char)('a' + (sent + i) % 26);
			if (SSL_write_ex(cl.ssl, out, len, &n) != 1)
				break;
			sent += n;
			progress = true;
		}
		ERR_clear_error();
		while (SSL_read_ex(cl.ssl, in, sizeof(in), &n) == 1) {
			for (size_t i = 0; i < n; i++)
				if (in[i] != (char)('A' + (got + i) % 26))
					fail_msg("byte %zu is %d", got + i, in[i]);
			got += n;
			progress = true;
		}
		if (SSL_get_error(cl.ssl, 0) == SSL_ERROR_SSL || SSL_get_error(cl.ssl, 0) == SSL_ERROR_ZERO_RETURN)
			fail_msg("connection broken after %zu sent, %zu back: %s", sent, got,
			    ERR_error_string(ERR_get_error(), NULL));
		ERR_clear_error();
		if (!progress)
			poll(&p, 1, 100);
	}

	assert_int_equal(sent, TOTAL);
	assert_int_equal(got, TOTAL);
	fcntl(cl.fd, F_SETFL, fcntl(cl.fd, F_GETFL) & ~O_NONBLOCK);
	client_close(&cl);
}

/* What a memory BIO holds, written to fd at once (one segment): the flight the client queued. */
static void
flight_send(BIO *queued, int fd)
{
	char *p;
	long len = BIO_get_mem_data(queued, &p);

	for (long off = 0; off < len;) {
		ssize_t n = write(fd, p + off, (size_t)(len - off));
		if (n == -1 && errno == EAGAIN) {
			struct pollfd w = { .fd = fd, .events = POLLOUT };
			poll(&w, 1, EM_DEADLINE_MS);
			continue;
		}
		assert_true(n > 0);
		off += n;
	}
	assert_int_equal(BIO_reset(queued), 1);
}

/*
 * The client's Finished and 40 requests in one segment: the server reads
 * them all at once (read-ahead), and epoll will not say again that bytes
 * are there once OpenSSL holds them. Every request must still be answered.
 */
#define BATCH 40

static void
records_that_came_at_once_are_all_answered(void **state)
{
	struct env *e = *state;
	int port = port_pick();
	const char *modes[] = { "upper" };
	char msg[32], want[BATCH * 16 + 1] = "", in[sizeof(want)];
	size_t got = 0, n;
	SSL_CTX *ctx;
	SSL *ssl;
	BIO *queued;
	int fd, r;
	int64_t deadline;

	make_certs(e);
	write_conf(e, 1, &port, modes, 1, NULL, NULL);
	env_start_ready(e, 1, port);
	assert_non_null(ctx = SSL_CTX_new(TLS_client_method()));
	SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
	assert_true((fd = tcp_connect(port, EM_DEADLINE_MS)) >= 0);
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	assert_non_null(ssl = SSL_new(ctx));
	assert_non_null(queued = BIO_new(BIO_s_mem()));
	SSL_set_bio(ssl, BIO_new_socket(fd, BIO_NOCLOSE), queued);  /* reads the socket, writes to memory */
	SSL_set_connect_state(ssl);
	deadline = now_ms() + EM_DEADLINE_MS;
	while ((r = SSL_do_handshake(ssl)) != 1 && now_ms() < deadline) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		assert_int_equal(SSL_get_error(ssl, r), SSL_ERROR_WANT_READ);
		flight_send(queued, fd);
		poll(&p, 1, 100);
	}
	assert_int_equal(r, 1);  /* our Finished is queued, not sent */
	for (int i = 0; i < BATCH; i++) {
		snprintf(msg, sizeof(msg), "request %02d\n", i);
		assert_int_equal(SSL_write_ex(ssl, msg, strlen(msg), &n), 1);
		snprintf(want + strlen(want), sizeof(want) - strlen(want), "REQUEST %02d\n", i);
	}
	flight_send(queued, fd);
	while (got < strlen(want) && now_ms() < deadline) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		if (SSL_read_ex(ssl, in + got, sizeof(in) - 1 - got, &n) == 1) {
			got += n;
			continue;
		}
		assert_int_equal(SSL_get_error(ssl, 0), SSL_ERROR_WANT_READ);
		poll(&p, 1, 100);
	}
	in[got] = '\0';
	assert_string_equal(in, want);
	SSL_free(ssl);
	close(fd);
	SSL_CTX_free(ctx);
}

#define CLIENTS 200

static void
two_hundred_concurrent_clients(void **state)
{
	struct env *e = *state;
	int port = port_pick();
	const char *modes[] = { "upper" };
	struct client_opts o = { 0 };
	static struct client cl[CLIENTS];
	char msg[32], up[32];

	make_certs(e);
	write_conf(e, 2, &port, modes, 1, NULL, NULL);
	env_start_ready(e, 2, port);
	for (int i = 0; i < CLIENTS; i++)
		assert_int_equal(client_open(e, &cl[i], port, &o), 1);
	for (int i = 0; i < CLIENTS; i++) {
		snprintf(msg, sizeof(msg), "client %d\n", i);
		snprintf(up, sizeof(up), "CLIENT %d\n", i);
		roundtrip(&cl[i], msg, up);
	}
	for (int i = 0; i < CLIENTS; i++)
		client_close(&cl[i]);
	env_total_wait(e, "tls_handshakes", CLIENTS);
}

/* A client that stops mid-handshake is closed at handshake_timeout; others are served meanwhile. */
static void
a_stalled_handshake_is_closed_at_handshake_timeout(void **state)
{
	struct env *e = *state;
	int port = port_pick();
	const char *modes[] = { "upper" };
	struct client_opts o = { 0 };
	struct client good;
	static const char partial[] = { 0x16, 0x03, 0x01, 0x02, 0x00, 0x01 };  /* a ClientHello's start */
	int fd;
	int64_t t0, waited;

	make_certs(e);
	write_conf(e, 1, &port, modes, 1, NULL, "handshake_timeout = 2;");
	env_start_ready(e, 1, port);
	fd = tcp_connect(port, EM_DEADLINE_MS);
	assert_true(fd >= 0);
	t0 = now_ms();
	assert_int_equal(tcp_send_all(fd, partial, sizeof(partial), EM_DEADLINE_MS), 0);
	assert_int_equal(client_open(e, &good, port, &o), 1);
	roundtrip(&good, "meanwhile\n", "MEANWHILE\n");
	assert_int_equal(tcp_wait_eof(fd, EM_DEADLINE_MS), 0);
	waited = now_ms() - t0;
	if (waited < 1900)
		fail_msg("closed after %lld ms, before handshake_timeout (2 s)", (long long)waited);
	close(fd);
	roundtrip(&good, "still\n", "STILL\n");
	client_close(&good);
	env_total_wait(e, "tls_fail_timeout", 1);
	assert_int_equal(env_total(e, "tls_handshakes"), 1);
}

/* Plain text, and garbage in place of a ClientHello: closed, and nobody else harmed. */
static void
plaintext_and_garbage_are_closed(void **state)
{
	struct env *e = *state;
	int port = port_pick();
	const char *modes[] = { "upper" };
	struct client_opts o = { 0 };
	struct client good;
	static const char *const junk[] = { "hello, plain text\r\n", "GET / HTTP/1.1\r\nHost: x\r\n\r\n",
	    "\x16\x03\x01\xff\xff garbage that is not a handshake" };

	make_certs(e);
	write_conf(e, 1, &port, modes, 1, NULL, NULL);
	env_start_ready(e, 1, port);
	assert_int_equal(client_open(e, &good, port, &o), 1);
	for (size_t i = 0; i < sizeof(junk) / sizeof(junk[0]); i++) {
		int fd = tcp_connect(port, EM_DEADLINE_MS);
		char buf[256];
		ssize_t n;

		assert_true(fd >= 0);
		assert_int_equal(tcp_send_all(fd, junk[i], strlen(junk[i]), EM_DEADLINE_MS), 0);
		/* At most an alert comes back, never the echo; then the close. */
		set_timeouts(fd);
		while ((n = read(fd, buf, sizeof(buf))) > 0)
			assert_true(n < 16 && buf[0] == 0x15);
		assert_true(n == 0 || errno == ECONNRESET);
		close(fd);
		roundtrip(&good, "unharmed\n", "UNHARMED\n");
	}
	client_close(&good);
	env_total_wait(e, "tls_fail_protocol", 3);
}

static void
mutual_tls_takes_a_signed_client_only(void **state)
{
	struct env *e = *state;
	int port = port_pick();
	const char *modes[] = { "upper" };
	char extra[PATH_MAX + 64];
	struct client cl;
	struct client_opts signed_ = { .cert = "client.crt", .key = "client.key" };
	struct client_opts foreign = { .cert = "foreign.crt", .key = "foreign.key" };
	struct client_opts none = { 0 };
	const struct client_opts *bad[] = { &foreign, &none };

	make_certs(e);
	snprintf(extra, sizeof(extra), "client_ca = \"%s/ca.crt\";", e->dir);
	write_conf(e, 1, &port, modes, 1, extra, NULL);
	env_start_ready(e, 1, port);
	assert_int_equal(client_open(e, &cl, port, &signed_), 1);
	roundtrip(&cl, "signed\n", "SIGNED\n");
	client_close(&cl);
	for (size_t i = 0; i < 2; i++) {
		char buf[8];
		/* TLS 1.3 reports the refusal after the client's Finished: on its first read. */
		if (client_open(e, &cl, port, bad[i]) == 1) {
			SSL_write(cl.ssl, "x\n", 2);
			assert_int_equal(client_read(&cl, buf, 2), 0);
			client_close(&cl);
		}
	}
	env_total_wait(e, "tls_fail_cert", 2);
	assert_int_equal(env_total(e, "tls_handshakes"), 1);
}

static void
sni_picks_the_certificate(void **state)
{
	struct env *e = *state;
	int port = port_pick();
	const char *modes[] = { "upper" };
	char extra[2 * PATH_MAX + 128];
	static const struct { const char *sni, *cn; } cases[] = {
		{ "b.test", "b.test" }, { "a.test", "a.test" }, { NULL, "a.test" }, { "c.test", "a.test" },
	};

	make_certs(e);
	snprintf(extra, sizeof(extra), "certificates = ( { certificate = \"%s/b.crt\"; key = \"%s/b.key\"; } );",
	    e->dir, e->dir);
	write_conf(e, 1, &port, modes, 1, extra, NULL);
	env_start_ready(e, 1, port);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct client_opts o = { .sni = cases[i].sni };
		struct client cl;
		X509 *peer;
		char cn[64] = "";

		assert_int_equal(client_open(e, &cl, port, &o), 1);
		assert_non_null(peer = SSL_get1_peer_certificate(cl.ssl));
		X509_NAME_get_text_by_NID(X509_get_subject_name(peer), NID_commonName, cn, sizeof(cn));
		X509_free(peer);
		assert_string_equal(cn, cases[i].cn);
		roundtrip(&cl, "sni\n", "SNI\n");
		client_close(&cl);
	}
}

/* A ticket from one worker resumes on another, and after a reload. */
static void
resumption_on_another_worker_and_after_a_reload(void **state)
{
	struct env *e = *state;
	int port = port_pick();
	const char *modes[] = { "whoami" };
	char line[2048], first[32], pid[32];
	SSL_SESSION *s = NULL;
	bool resumed = false, other = false;
	size_t off;

	make_certs(e);
	write_conf(e, 2, &port, modes, 1, NULL, NULL);
	env_start_ready(e, 2, port);
	for (int v = 0; v < 2; v++) {
		struct client_opts o = { .version = v ? TLS1_3_VERSION : TLS1_2_VERSION };

		whoami(e, port, &o, line, sizeof(line), &s, &resumed);
		assert_false(resumed);
		assert_non_null(s);
		assert_non_null(field(line, "pid", first, sizeof(first)));
		/*
		 * The worker that issued the ticket is stopped, so the other one
		 * must take the next connection: a stopped process waits in no
		 * epoll_wait, and EPOLLEXCLUSIVE wakes only a waiting one.
		 */
		assert_int_equal(kill((pid_t)atol(first), SIGSTOP), 0);
		o.session = s;
		whoami(e, port, &o, line, sizeof(line), NULL, &resumed);
		assert_int_equal(kill((pid_t)atol(first), SIGCONT), 0);
		field(line, "pid", pid, sizeof(pid));
		other = strcmp(pid, first) != 0;
		if (!other)
			fail_msg("the stopped worker %s answered", first);
		if (!resumed)
			fail_msg("not resumed on worker %s: %s", pid, line);
		SSL_SESSION_free(s);
	}
	/* The first of each version was a full handshake, every other one resumed. */
	if (env_total(e, "tls_resumed") + 2 != env_total(e, "tls_handshakes"))
		fail_msg("resumed %llu of %llu handshakes", (unsigned long long)env_total(e, "tls_resumed"),
		    (unsigned long long)env_total(e, "tls_handshakes"));
	/* After a reload: new workers, the same keys. */
	{
		struct client_opts o = { 0 };

		whoami(e, port, &o, line, sizeof(line), &s, &resumed);
		off = env_log_size(e);
		env_signal(e, SIGHUP);
		env_wait_log_from(e, off, "reload ok: generation 2", EM_DEADLINE_MS);
		o.session = s;
		whoami(e, port, &o, line, sizeof(line), NULL, &resumed);
		assert_true(resumed);
		assert_non_null(strstr(line, " generation=2 "));
		SSL_SESSION_free(s);
	}
	/* The new generation's counters, once the old workers are reaped: its one handshake, resumed. */
	env_wait_old_gone(e, now_ms(), EM_DEADLINE_MS);
	env_total_wait(e, "tls_resumed", 1);
	assert_int_equal(env_total(e, "tls_handshakes"), 1);
}

static void
peer_cn(struct client *cl, char *cn, size_t cap)
{
	X509 *peer = SSL_get1_peer_certificate(cl->ssl);

	assert_non_null(peer);
	cn[0] = '\0';
	X509_NAME_get_text_by_NID(X509_get_subject_name(peer), NID_commonName, cn, (int)cap);
	X509_free(peer);
}

/* A reload with a new certificate serves it to new clients while old ones go on; a broken one changes nothing. */
static void
reload_new_certificate_and_broken_one(void **state)
{
	struct env *e = *state;
	int port = port_pick();
	const char *modes[] = { "upper" };
	struct client_opts o = { 0 };
	struct client old, young, later;
	char cn[64];
	size_t off;

	make_certs(e);
	write_conf(e, 1, &port, modes, 1, NULL, NULL);
	env_start_ready(e, 1, port);
	assert_int_equal(client_open(e, &old, port, &o), 1);
	roundtrip(&old, "before\n", "BEFORE\n");
	/* a.crt becomes a certificate for renewed.test, with its key. */
	sh(e, "openssl ecparam -name prime256v1 -genkey -noout -out a.key && "
	    "openssl req -new -x509 -key a.key -out a.crt -days 30 -subj /CN=renewed.test");
	off = env_log_size(e);
	env_signal(e, SIGHUP);
	env_wait_log_from(e, off, "reload ok: generation 2", EM_DEADLINE_MS);
	assert_int_equal(client_open(e, &young, port, &o), 1);
	peer_cn(&young, cn, sizeof(cn));
	assert_string_equal(cn, "renewed.test");
	roundtrip(&old, "during\n", "DURING\n");
	peer_cn(&old, cn, sizeof(cn));
	assert_string_equal(cn, "a.test");
	/* A key that is not the certificate's: the reload fails, naming the file and line. */
	sh(e, "cp b.key a.key");
	off = env_log_size(e);
	env_signal(e, SIGHUP);
	env_wait_log_from(e, off, "reload failed: ", EM_DEADLINE_MS);
	{
		char *line = env_log_line(e, "reload failed: ");
		assert_non_null(strstr(line, "key does not match its certificate"));
		free(line);
	}
	assert_int_equal(client_open(e, &later, port, &o), 1);
	peer_cn(&later, cn, sizeof(cn));
	assert_string_equal(cn, "renewed.test");
	roundtrip(&later, "after\n", "AFTER\n");
	roundtrip(&young, "young\n", "YOUNG\n");
	roundtrip(&old, "old\n", "OLD\n");
	client_close(&later);
	client_close(&young);
	client_close(&old);
}

static pid_t
pid_file_pid(struct env *e)
{
	char *text = file_read(e->pid_path, NULL);
	long pid = text != NULL ? strtol(text, NULL, 10) : 0;

	free(text);
	return (pid_t)pid;
}

/*
 * A live upgrade: a ticket from the old master's workers resumes on the
 * new one's (the keys travel in the upgrade state); an established TLS
 * connection is not handed over but drains in its old worker, and the old
 * master stays until it has.
 */
static void
an_upgrade_keeps_tickets_and_drains_tls(void **state)
{
	struct env *e = *state;
	int ports[2];
	const char *modes[] = { "whoami", "upper" };
	struct client_opts o = { .version = TLS1_3_VERSION };
	struct client old;
	char line[2048];
	SSL_SESSION *s = NULL;
	bool resumed = false;
	pid_t first = 0, next = 0;
	int64_t deadline;
	int status;
	size_t off;

	ports_pick(ports, 2);
	make_certs(e);
	write_conf(e, 2, ports, modes, 2, NULL, NULL);
	env_start_ready(e, 2, ports[0]);
	whoami(e, ports[0], &o, line, sizeof(line), &s, NULL);
	assert_non_null(s);
	assert_int_equal(client_open(e, &old, ports[1], &o), 1);
	roundtrip(&old, "before\n", "BEFORE\n");
	first = e->master;
	off = env_log_size(e);
	env_signal(e, SIGUSR2);
	env_wait_log_from(e, off, "upgrade ok: pid ", EM_DEADLINE_MS);
	deadline = now_ms() + EM_DEADLINE_MS;
	while ((next = pid_file_pid(e)) == first && now_ms() < deadline)
		nap_ms(EM_POLL_NAP_MS);
	assert_true(next != first && next > 0);
	o.session = s;
	whoami(e, ports[0], &o, line, sizeof(line), NULL, &resumed);
	assert_non_null(strstr(line, " generation=2 "));
	if (!resumed)
		fail_msg("not resumed after the upgrade: %s", line);
	SSL_SESSION_free(s);
	/* The old connection: still served, by its old worker; its master waits for it. */
	roundtrip(&old, "after\n", "AFTER\n");
	assert_false(env_exited(e));
	client_close(&old);
	status = env_wait_exit(e, EM_DEADLINE_MS);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	env_adopt_detached(e, next);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(upper_and_echo_over_tls12_and_tls13, env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(s_client_whoami_reports_alpn_and_sni, env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(one_mib_each_way, env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(close_notify_is_a_half_close, env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(a_slow_reader_gets_every_byte, env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(records_that_came_at_once_are_all_answered, env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(two_hundred_concurrent_clients, env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(a_stalled_handshake_is_closed_at_handshake_timeout, env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(plaintext_and_garbage_are_closed, env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(mutual_tls_takes_a_signed_client_only, env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(sni_picks_the_certificate, env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(resumption_on_another_worker_and_after_a_reload, env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(reload_new_certificate_and_broken_one, env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(an_upgrade_keeps_tickets_and_drains_tls, env_setup, env_teardown),
	};

	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests_name("tls", tests, NULL, NULL);
}
