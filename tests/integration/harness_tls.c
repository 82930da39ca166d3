/*
 * harness_tls.c: the TLS side of the black-box tests (harness.h, "TLS"):
 * certificates made with openssl(1), a listener of a rendered config made
 * a TLS one, and a small OpenSSL client whose every wait is bounded.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "harness.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

/* ---- certificates and configs -------------------------------------------- */

void
tls_make_cert(struct env *e, const char *name)
{
	char cmd[2 * PATH_MAX + 512];

	snprintf(cmd, sizeof(cmd), "cd '%s' && (openssl ecparam -name prime256v1 -genkey "
	    "-noout -out %s.key && openssl req -new -x509 -key %s.key -out %s.crt -days 30 "
	    "-subj /CN=%s -addext subjectAltName=DNS:%s) >/dev/null 2>&1", e->dir, name, name,
	    name, name, name);
	if (system(cmd) != 0)
		fail_msg("cannot make the certificate %s: %s", name, cmd);
}

char *
tls_listener_text(struct env *e, const char *text, int port, const char *name,
    const char *tls_extra)
{
	char from[64], *to, *out;

	/* conf_render's TCP listener line, up to the mode's value. */
	snprintf(from, sizeof(from), "proto = \"tcp\"; address = \"127.0.0.1\"; port = %d; ", port);
	assert_true(asprintf(&to, "%stls = { certificate = \"%s/%s.crt\"; key = \"%s/%s.key\"; "
	    "%s }; ", from, e->dir, name, e->dir, name, tls_extra != NULL ? tls_extra : "") > 0);
	out = text_replace(text, from, to);
	free(to);
	return out;
}

void
env_write_conf_tls(struct env *e, const struct em_conf *c, int port, const char *name)
{
	char *text = env_conf_text(e, c), *with = tls_listener_text(e, text, port, name, NULL);

	env_write_conf_text(e, with);
	free(with);
	free(text);
}

/* ---- the client ---------------------------------------------------------- */

/* TLS 1.3 tickets come after the handshake, each a session of its own: the first is kept. */
static int
on_new_session(SSL *ssl, SSL_SESSION *sess)
{
	struct tls_client *cl = SSL_get_app_data(ssl);

	if (cl == NULL || cl->ticket != NULL || SSL_version(ssl) != TLS1_3_VERSION)
		return 0;
	cl->ticket = sess;
	return 1;  /* ours now */
}

SSL_CTX *
tls_client_ctx(int version)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

	/* OpenSSL writes with write(2): a server gone must be an error, not SIGPIPE. */
	signal(SIGPIPE, SIG_IGN);
	assert_non_null(ctx);
	if (version != 0) {
		SSL_CTX_set_min_proto_version(ctx, version);
		SSL_CTX_set_max_proto_version(ctx, version);
	}
	/* Moving, partial writes: the load generator retries from a buffer it rebuilds. */
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
	SSL_CTX_sess_set_new_cb(ctx, on_new_session);
	return ctx;
}

/* Whether to go on after ret: polls for what OpenSSL waits for, until the deadline. */
static bool
tls_wait(struct tls_client *cl, int ret, int64_t deadline)
{
	struct pollfd p = { .fd = cl->fd };
	int64_t left = deadline - now_ms();

	switch (SSL_get_error(cl->ssl, ret)) {
	case SSL_ERROR_WANT_READ:
		p.events = POLLIN;
		break;
	case SSL_ERROR_WANT_WRITE:
		p.events = POLLOUT;
		break;
	default:
		return false;
	}
	if (left <= 0)
		return false;
	return poll(&p, 1, left > INT_MAX ? INT_MAX : (int)left) == 1;
}

static void
tls_client_free(struct tls_client *cl)
{
	SSL_free(cl->ssl);
	if (cl->fd != -1)
		close(cl->fd);
	SSL_CTX_free(cl->ctx);
	SSL_SESSION_free(cl->ticket);
	memset(cl, 0, sizeof(*cl));
	cl->fd = -1;
}

int
tls_connect(struct tls_client *cl, int port, const struct tls_opts *o, int timeout_ms)
{
	int64_t deadline = now_ms() + timeout_ms;
	int ret;

	memset(cl, 0, sizeof(*cl));
	cl->ctx = tls_client_ctx(o->version);
	if ((cl->fd = tcp_connect(port, timeout_ms)) == -1)
		fail_msg("TLS client: connect to port %d: %s", port, strerror(errno));
	assert_non_null(cl->ssl = SSL_new(cl->ctx));
	SSL_set_app_data(cl->ssl, cl);
	SSL_set_fd(cl->ssl, cl->fd);
	if (o->session != NULL) {
		/* A copy: OpenSSL marks the session a connection used as it ends. */
		SSL_SESSION *copy = SSL_SESSION_dup(o->session);

		SSL_set_session(cl->ssl, copy);
		SSL_SESSION_free(copy);
	}
	while ((ret = SSL_connect(cl->ssl)) != 1)
		if (!tls_wait(cl, ret, deadline)) {
			ERR_clear_error();
			tls_client_free(cl);
			return 0;
		}
	/* TLS 1.2: the ticket is the handshake's session, copied before its end marks it spent. */
	if (SSL_version(cl->ssl) != TLS1_3_VERSION && SSL_SESSION_has_ticket(SSL_get0_session(cl->ssl)))
		cl->ticket = SSL_SESSION_dup(SSL_get0_session(cl->ssl));
	return 1;
}

void
tls_close(struct tls_client *cl)
{
	if (cl->ssl == NULL)
		return;
	SSL_shutdown(cl->ssl);  /* our close_notify, if the socket takes it now */
	ERR_clear_error();
	tls_client_free(cl);
}

int
tls_send_all(struct tls_client *cl, const void *buf, size_t len, int timeout_ms)
{
	int64_t deadline = now_ms() + timeout_ms;
	size_t done = 0, n;
	int ret;

	while (done < len) {
		if ((ret = SSL_write_ex(cl->ssl, (const char *)buf + done, len - done, &n)) == 1)
			done += n;
		else if (!tls_wait(cl, ret, deadline)) {
			ERR_clear_error();
			return -1;
		}
	}
	return 0;
}

ssize_t
tls_read_exact(struct tls_client *cl, void *buf, size_t len, int timeout_ms)
{
	int64_t deadline = now_ms() + timeout_ms;
	size_t got = 0, n;
	int ret;

	while (got < len) {
		if ((ret = SSL_read_ex(cl->ssl, (char *)buf + got, len - got, &n)) == 1)
			got += n;
		else if (!tls_wait(cl, ret, deadline))
			break;
	}
	ERR_clear_error();
	return (ssize_t)got;
}

void
tls_roundtrip(struct tls_client *cl, const char *msg, const char *expect)
{
	size_t len = strlen(expect);
	char *got = calloc(1, len + 1);
	ssize_t n;

	assert_non_null(got);
	if (tls_send_all(cl, msg, strlen(msg), EM_DEADLINE_MS) == -1)
		fail_msg("TLS client: cannot send \"%s\"", msg);
	if ((n = tls_read_exact(cl, got, len, EM_DEADLINE_MS)) != (ssize_t)len)
		fail_msg("TLS client: sent \"%s\", got %zd of %zu bytes back: \"%s\"", msg, n,
		    len, got);
	if (memcmp(got, expect, len) != 0)
		fail_msg("TLS client: sent \"%s\", got \"%s\", want \"%s\"", msg, got, expect);
	free(got);
}

bool
tls_resumed(const struct tls_client *cl)
{
	return SSL_session_reused(cl->ssl) == 1;
}

SSL_SESSION *
tls_take_ticket(struct tls_client *cl, int timeout_ms)
{
	int64_t deadline = now_ms() + timeout_ms;
	SSL_SESSION *t;
	char byte;
	size_t n;
	int ret;

	/* A peek reads the records that carry tickets and leaves the echo where it is. */
	while (cl->ticket == NULL && (ret = SSL_peek_ex(cl->ssl, &byte, 1, &n)) != 1)
		if (!tls_wait(cl, ret, deadline))
			break;
	ERR_clear_error();
	t = cl->ticket;
	cl->ticket = NULL;
	return t;
}

void
tls_ticket_key_name(const SSL_SESSION *s, char *hex, size_t cap)
{
	const unsigned char *tick;
	size_t len, i;

	SSL_SESSION_get0_ticket(s, &tick, &len);
	/* OpenSSL's tickets, and RFC 5077's layout, begin with the 16-byte name of their key. */
	assert_true(len >= 16 && cap >= 33);
	for (i = 0; i < 16; i++)
		snprintf(hex + 2 * i, cap - 2 * i, "%02x", tick[i]);
}
