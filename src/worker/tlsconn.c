#include "worker/tlsconn.h"

#include <errno.h>
#include <stdlib.h>

#include <openssl/err.h>

struct tlsconn {
	SSL *ssl;
	bool up;       /* the handshake completed */
	bool broken;   /* a fatal error: no close_notify may follow */
	bool shut;     /* our close_notify is sent */
};

struct tlsconn *
tlsconn_new(SSL_CTX *ctx, int fd)
{
	struct tlsconn *t = calloc(1, sizeof(*t));

	if (t == NULL)
		return NULL;
	if ((t->ssl = SSL_new(ctx)) == NULL || SSL_set_fd(t->ssl, fd) != 1) {
		SSL_free(t->ssl);
		free(t);
		ERR_clear_error();
		return NULL;
	}
	SSL_set_accept_state(t->ssl);
	return t;
}

void
tlsconn_shutdown(struct tlsconn *t)
{
	if (!t->up || t->broken || t->shut)
		return;
	t->shut = true;
	/* Non-blocking: the alert is a few bytes and goes out now or, with a full socket, not at all. */
	if (SSL_shutdown(t->ssl) < 0)
		ERR_clear_error();
}

void
tlsconn_free(struct tlsconn *t)
{
	if (t == NULL)
		return;
	tlsconn_shutdown(t);
	SSL_free(t->ssl);
	free(t);
}

/* SSL_get_error's answer as ours; a fatal one marks the connection broken. */
static enum tlsconn_rc
tlsconn_error(struct tlsconn *t, int ret)
{
	switch (SSL_get_error(t->ssl, ret)) {
	case SSL_ERROR_WANT_READ:
		return TLSC_WANT_READ;
	case SSL_ERROR_WANT_WRITE:
		return TLSC_WANT_WRITE;
	case SSL_ERROR_ZERO_RETURN:
		return TLSC_CLOSED;
	case SSL_ERROR_SYSCALL:
		if (ERR_peek_error() == 0 && (errno == EAGAIN || errno == EINTR))
			return TLSC_WANT_READ;
		/* fall through */
	default:
		t->broken = true;
		/*
		 * The error queue is the worker's, not the connection's: left
		 * full, it turns the next connection's WANT_READ into a fatal
		 * error. A failed handshake's reasons are read (and cleared) by
		 * tlsconn_failure; after the handshake nobody reads them.
		 */
		if (t->up)
			ERR_clear_error();
		return TLSC_FAILED;
	}
}

enum tlsconn_rc
tlsconn_handshake(struct tlsconn *t)
{
	int ret = SSL_do_handshake(t->ssl);

	enum tlsconn_rc rc;

	if (ret == 1) {
		t->up = true;
		return TLSC_DONE;
	}
	if ((rc = tlsconn_error(t, ret)) == TLSC_CLOSED) {
		t->broken = true;  /* gone before the session was up: nothing to close */
		rc = TLSC_FAILED;
	}
	return rc;
}

enum tlsconn_failure
tlsconn_failure(struct tlsconn *t)
{
	unsigned long e = ERR_peek_error();
	int reason = ERR_GET_REASON(e);
	enum tlsconn_failure f = TLSC_FAIL_OTHER;

	if (SSL_get_verify_result(t->ssl) != X509_V_OK)
		f = TLSC_FAIL_CERT;
	else if (e != 0 && ERR_GET_LIB(e) == ERR_LIB_SSL) {
		switch (reason) {
		case SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE:
		case SSL_R_CERTIFICATE_VERIFY_FAILED:
		case SSL_R_NO_CERTIFICATES_RETURNED:
		case SSL_R_SSLV3_ALERT_BAD_CERTIFICATE:
		case SSL_R_TLSV1_ALERT_UNKNOWN_CA:
			f = TLSC_FAIL_CERT;
			break;
		case SSL_R_UNSUPPORTED_PROTOCOL:
		case SSL_R_WRONG_VERSION_NUMBER:
		case SSL_R_VERSION_TOO_LOW:
		case SSL_R_VERSION_TOO_HIGH:
		case SSL_R_NO_SHARED_CIPHER:
		case SSL_R_NO_PROTOCOLS_AVAILABLE:
		case SSL_R_NO_APPLICATION_PROTOCOL:
		case SSL_R_HTTP_REQUEST:
		case SSL_R_HTTPS_PROXY_REQUEST:
		case SSL_R_PACKET_LENGTH_TOO_LONG:
		case SSL_R_RECORD_LENGTH_MISMATCH:
		case SSL_R_UNKNOWN_PROTOCOL:
		case SSL_R_TLSV1_ALERT_PROTOCOL_VERSION:
		case SSL_R_UNEXPECTED_MESSAGE:
		case SSL_R_UNEXPECTED_RECORD:
			f = TLSC_FAIL_PROTOCOL;
			break;
		default:
			break;
		}
	}
	ERR_clear_error();
	return f;
}

enum tlsconn_rc
tlsconn_read(struct tlsconn *t, void *buf, size_t len, size_t *n)
{
	int ret = SSL_read_ex(t->ssl, buf, len, n);

	return ret == 1 ? TLSC_DONE : tlsconn_error(t, ret);
}

enum tlsconn_rc
tlsconn_write(struct tlsconn *t, const void *buf, size_t len, size_t *n)
{
	int ret = SSL_write_ex(t->ssl, buf, len, n);

	return ret == 1 ? TLSC_DONE : tlsconn_error(t, ret);
}

bool
tlsconn_pending(const struct tlsconn *t)
{
	return SSL_has_pending(t->ssl) == 1;
}

bool
tlsconn_resumed(const struct tlsconn *t)
{
	return SSL_session_reused(t->ssl) == 1;
}

const char *
tlsconn_version(const struct tlsconn *t)
{
	return SSL_get_version(t->ssl);
}

void
tlsconn_alpn(const struct tlsconn *t, const unsigned char **p, unsigned *len)
{
	SSL_get0_alpn_selected(t->ssl, p, len);
}

const char *
tlsconn_sni(const struct tlsconn *t)
{
	return SSL_get_servername(t->ssl, TLSEXT_NAMETYPE_host_name);
}
