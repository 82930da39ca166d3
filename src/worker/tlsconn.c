#include "worker/tlsconn.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

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

/*
 * The prefix filter: a BIO in front of the socket's that hands out the
 * bytes read with a PROXY header before it reads the socket, then passes
 * everything through. Its data: what is left of those bytes, freed once
 * they are out (NULL then).
 */
struct tlsconn_prefix {
	size_t len;
	size_t off;
	unsigned char data[];
};

static int
prefix_read(BIO *b, char *out, size_t len, size_t *n)
{
	struct tlsconn_prefix *p = BIO_get_data(b);
	int ret;

	BIO_clear_retry_flags(b);
	if (p == NULL) {
		ret = BIO_read_ex(BIO_next(b), out, len, n);
		BIO_copy_next_retry(b);
		return ret;
	}
	*n = len < p->len - p->off ? len : p->len - p->off;
	memcpy(out, p->data + p->off, *n);
	if ((p->off += *n) == p->len) {
		free(p);
		BIO_set_data(b, NULL);
	}
	return 1;
}

static long
prefix_ctrl(BIO *b, int cmd, long num, void *ptr)
{
	struct tlsconn_prefix *p = BIO_get_data(b);
	BIO *next = BIO_next(b);
	long ret;

	if (next == NULL)
		return 0;
	if (p != NULL && cmd == BIO_CTRL_EOF)
		return 0;
	ret = BIO_ctrl(next, cmd, num, ptr);
	if (p != NULL && cmd == BIO_CTRL_PENDING)
		ret += (long)(p->len - p->off);
	return ret;
}

static int
prefix_create(BIO *b)
{
	BIO_set_init(b, 1);
	return 1;
}

static int
prefix_destroy(BIO *b)
{
	free(BIO_get_data(b));
	BIO_set_data(b, NULL);
	return 1;
}

/* The filter's method: made on first use and kept for the process's life, a constant in all but name. */
static BIO_METHOD *
prefix_method(void)
{
	static BIO_METHOD *m;
	int type;

	if (m != NULL || (type = BIO_get_new_index()) == -1)
		return m;
	if ((m = BIO_meth_new(type | BIO_TYPE_FILTER, "echomaster PROXY prefix")) == NULL)
		return NULL;
	if (BIO_meth_set_read_ex(m, prefix_read) != 1 || BIO_meth_set_ctrl(m, prefix_ctrl) != 1 ||
	    BIO_meth_set_create(m, prefix_create) != 1 || BIO_meth_set_destroy(m, prefix_destroy) != 1) {
		BIO_meth_free(m);
		m = NULL;
	}
	return m;
}

static BIO *
prefix_new(const void *bytes, size_t len)
{
	BIO_METHOD *m = prefix_method();
	struct tlsconn_prefix *p;
	BIO *b;

	if (m == NULL || (p = malloc(sizeof(*p) + len)) == NULL)
		return NULL;
	if ((b = BIO_new(m)) == NULL) {
		free(p);
		return NULL;
	}
	p->len = len;
	p->off = 0;
	memcpy(p->data, bytes, len);
	BIO_set_data(b, p);
	return b;
}

/*
 * The filter goes in front of the socket's BIO on the read side only; the
 * socket's BIO then has two owners, the write side and the filter's chain,
 * and SSL_free releases both (the pattern of SSL_set_bio(3)).
 */
struct tlsconn *
tlsconn_new_prefixed(SSL_CTX *ctx, int fd, const void *prefix, size_t len)
{
	struct tlsconn *t = tlsconn_new(ctx, fd);
	BIO *filter, *sock;

	if (t == NULL || len == 0)
		return t;
	if ((filter = prefix_new(prefix, len)) == NULL) {
		tlsconn_free(t);
		ERR_clear_error();
		return NULL;
	}
	sock = SSL_get_rbio(t->ssl);
	BIO_up_ref(sock);
	BIO_push(filter, sock);
	SSL_set0_rbio(t->ssl, filter);
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

/* What came through the read side: the socket's BIO, or the prefix filter in front of it. */
bool
tlsconn_received_nothing(const struct tlsconn *t)
{
	return BIO_number_read(SSL_get_rbio(t->ssl)) == 0;
}

bool
tlsconn_client_finished(const struct tlsconn *t)
{
	return SSL_get_state(t->ssl) == TLS_ST_SW_SESSION_TICKET;
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
