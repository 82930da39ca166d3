#include "common/tlsctx.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include "common/log.h"

/* Room for the pairs of one listener: certificate/key and certificates. */
#define TLSCTX_PAIRS_MAX 64

struct tlsctx {
	SSL_CTX *ctx[TLSCTX_PAIRS_MAX];  /* [0] the default; all alike but for the pair */
	X509 *leaf[TLSCTX_PAIRS_MAX];    /* each context's certificate, for SNI (owned by ctx) */
	size_t n;
	unsigned char alpn[1024];        /* wire format: length-prefixed names */
	size_t alpn_len;
};

/* Shared with every worker (tlsctx_use_ticket_keys); NULL until the master says. */
static struct tlsctx_ticket_keys *ticket_keys;

/*
 * The tickets' cipher, fetched once by the first tlsctx_build (in the
 * master, before any fork) and kept for the process's life: named at each
 * handshake, as EVP_aes_256_cbc() is, OpenSSL 3 would look it up each time.
 */
static EVP_CIPHER *ticket_cipher;

static void EM_PRINTF(2, 3)
report(struct tlsctx_report *r, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(r->msg, sizeof(r->msg), fmt, ap);
	va_end(ap);
}

/* OpenSSL's reason for the oldest error queued, as "LIBRARY: reason"; clears the queue. */
static const char *
ssl_reason(char *buf, size_t len)
{
	unsigned long e = ERR_get_error();
	const char *lib = e ? ERR_lib_error_string(e) : NULL;
	const char *why = e ? ERR_reason_error_string(e) : NULL;

	if (e == 0)
		snprintf(buf, len, "no reason given");
	else if (why == NULL)
		snprintf(buf, len, "error %lx", e);
	else
		snprintf(buf, len, "%s%s%s", lib ? lib : "", lib ? ": " : "", why);
	ERR_clear_error();
	return buf;
}

static int
fail(struct tlsctx_report *r, enum tlsctx_setting s, size_t pair, const char *what,
    const char *path)
{
	char why[200];

	r->setting = s;
	r->pair = pair;
	if (path != NULL)
		report(r, "%s \"%s\": %s", what, path, ssl_reason(why, sizeof(why)));
	else
		report(r, "%s: %s", what, ssl_reason(why, sizeof(why)));
	return -1;
}

/* Whether we can read PATH at all: a clear errno message beats OpenSSL's "system library". */
static int
check_readable(struct tlsctx_report *r, enum tlsctx_setting s, size_t pair, const char *what,
    const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd == -1) {
		r->setting = s;
		r->pair = pair;
		report(r, "cannot read %s \"%s\": %s", what, path, strerror(errno));
		return -1;
	}
	close(fd);
	return 0;
}

size_t
tlsctx_pairs(const struct cfg_tls *t, const struct cfg_tls_cert **out, size_t max)
{
	size_t n = 0;

	if (t->certificate != NULL && t->certificate[0] != '\0') {
		if (n < max)
			out[n] = NULL;  /* the caller's marker for t->certificate/t->key */
		n++;
	}
	for (size_t i = 0; i < t->ncerts; i++, n++)
		if (n < max)
			out[n] = &t->certs[i];
	return n;
}

/* Certificate validity: outside it, a warning, never a refusal (a test bed may want just that). */
static void
check_dates(X509 *leaf, const char *path, size_t pair, tlsctx_warn_fn *warn, void *arg)
{
	struct tlsctx_report w = { .setting = TLSCTX_SET_CERTIFICATE, .pair = pair };

	if (warn == NULL)
		return;
	if (X509_cmp_current_time(X509_get0_notAfter(leaf)) < 0) {
		report(&w, "certificate \"%s\" has expired: clients that check dates will refuse it", path);
		warn(arg, &w);
	} else if (X509_cmp_current_time(X509_get0_notBefore(leaf)) > 0) {
		report(&w, "certificate \"%s\" is not valid yet: clients that check dates will refuse it", path);
		warn(arg, &w);
	}
}

/* The key, checked against the certificate before OpenSSL files it by type (a mismatched type would just go unused). */
static int
load_key(SSL_CTX *ctx, const char *path, size_t pair, struct tlsctx_report *r)
{
	BIO *in = BIO_new_file(path, "r");
	EVP_PKEY *key = in != NULL ? PEM_read_bio_PrivateKey(in, NULL, NULL, NULL) : NULL;
	int rc = 0;

	BIO_free(in);
	if (key == NULL)
		return fail(r, TLSCTX_SET_KEY, pair, "cannot load key", path);
	if (X509_check_private_key(SSL_CTX_get0_certificate(ctx), key) != 1)
		rc = fail(r, TLSCTX_SET_KEY, pair, "key does not match its certificate", path);
	else if (SSL_CTX_use_PrivateKey(ctx, key) != 1)
		rc = fail(r, TLSCTX_SET_KEY, pair, "cannot use key", path);
	EVP_PKEY_free(key);
	return rc;
}

static int
load_pair(SSL_CTX *ctx, const char *cert, const char *key, size_t pair, struct tlsctx_report *r)
{
	if (check_readable(r, TLSCTX_SET_CERTIFICATE, pair, "certificate", cert) == -1)
		return -1;
	if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1)
		return fail(r, TLSCTX_SET_CERTIFICATE, pair, "cannot load certificate", cert);
	if (check_readable(r, TLSCTX_SET_KEY, pair, "key", key) == -1)
		return -1;
	return load_key(ctx, key, pair, r);
}

static int
set_protocols(SSL_CTX *ctx, int protocols)
{
	int min = (protocols & CFG_TLS_V12) ? TLS1_2_VERSION : TLS1_3_VERSION;
	int max = (protocols & CFG_TLS_V13) ? TLS1_3_VERSION : TLS1_2_VERSION;

	return SSL_CTX_set_min_proto_version(ctx, min) == 1 &&
	    SSL_CTX_set_max_proto_version(ctx, max) == 1 ? 0 : -1;
}

static int
set_client_ca(SSL_CTX *ctx, const char *path, struct tlsctx_report *r)
{
	STACK_OF(X509_NAME) *names;

	if (check_readable(r, TLSCTX_SET_CLIENT_CA, 0, "client_ca", path) == -1)
		return -1;
	/* A file only, never a directory: a directory is read lazily, by the worker, which may not. */
	if (SSL_CTX_load_verify_locations(ctx, path, NULL) != 1)
		return fail(r, TLSCTX_SET_CLIENT_CA, 0, "cannot load client_ca", path);
	if ((names = SSL_load_client_CA_file(path)) == NULL)
		return fail(r, TLSCTX_SET_CLIENT_CA, 0, "no certificate in client_ca", path);
	SSL_CTX_set_client_CA_list(ctx, names);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
	return 0;
}

/* ALPN: our list first to last is our preference; no protocol in common ends the handshake (RFC 7301). */
static int
alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen, const unsigned char *in,
    unsigned inlen, void *arg)
{
	const struct tlsctx *x = arg;
	unsigned char *chosen;

	(void)ssl;
	if (SSL_select_next_proto(&chosen, outlen, x->alpn, (unsigned)x->alpn_len, in, inlen) !=
	    OPENSSL_NPN_NEGOTIATED)
		return SSL_TLSEXT_ERR_ALERT_FATAL;
	*out = chosen;
	return SSL_TLSEXT_ERR_OK;
}

/* SNI: the first other pair whose certificate is for the name; the default otherwise. */
static int
sni_select(SSL *ssl, int *alert, void *arg)
{
	const struct tlsctx *x = arg;
	const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);

	(void)alert;
	if (name == NULL)
		return SSL_TLSEXT_ERR_NOACK;
	for (size_t i = 1; i < x->n; i++) {
		if (X509_check_host(x->leaf[i], name, 0, 0, NULL) == 1) {
			SSL_set_SSL_CTX(ssl, x->ctx[i]);
			return SSL_TLSEXT_ERR_OK;
		}
	}
	return SSL_TLSEXT_ERR_OK;
}

/* A consistent copy of the shared keys: the master may be rotating them (seq odd). */
static int
ticket_keys_copy(struct tlsctx_ticket_keys *copy)
{
	const struct tlsctx_ticket_keys *k = __atomic_load_n(&ticket_keys, __ATOMIC_ACQUIRE);

	if (k == NULL)
		return -1;
	for (int tries = 0; tries < 100; tries++) {
		uint32_t seq = __atomic_load_n(&k->seq, __ATOMIC_ACQUIRE);
		if (seq & 1)
			continue;
		memcpy(copy, k, sizeof(*copy));
		__atomic_thread_fence(__ATOMIC_ACQUIRE);
		if (__atomic_load_n(&k->seq, __ATOMIC_RELAXED) == seq)
			return 0;
	}
	return -1;
}

static int
ticket_key_set(const struct tlsctx_ticket_key *key, unsigned char *iv, EVP_CIPHER_CTX *cctx,
    EVP_MAC_CTX *hctx, int enc)
{
	OSSL_PARAM params[2] = {
		OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
		OSSL_PARAM_construct_end(),
	};

	/* The digest by name, once: EVP_MAC_init sets the parameters it is given. */
	if (EVP_MAC_init(hctx, key->hmac, sizeof(key->hmac), params) != 1)
		return -1;
	if (EVP_CipherInit_ex(cctx, ticket_cipher, NULL, key->aes, iv, enc) != 1)
		return -1;
	return 0;
}

/*
 * OpenSSL's ticket key callback (SSL_CTX_set_tlsext_ticket_key_evp_cb):
 * encrypt with the first shared key; decrypt with whichever key the
 * ticket names, asking for a fresh ticket when it is not the first, and
 * always under TLS 1.3: its clients should use a ticket once (RFC 8446,
 * C.4), and a resumption with nothing of ours to send would leave a
 * client that keeps Nagle on waiting for a delayed ACK (40 ms) before
 * its first request goes out.
 */
static int
ticket_key_cb(SSL *ssl, unsigned char *name, unsigned char *iv, EVP_CIPHER_CTX *cctx,
    EVP_MAC_CTX *hctx, int enc)
{
	static const unsigned char unused[16];
	struct tlsctx_ticket_keys keys;

	if (ticket_keys_copy(&keys) == -1)
		return 0;  /* no ticket issued, or none accepted: a full handshake */
	if (enc) {
		if (RAND_bytes(iv, EVP_CIPHER_get_iv_length(ticket_cipher)) != 1)
			return -1;
		memcpy(name, keys.k[0].name, sizeof(keys.k[0].name));
		return ticket_key_set(&keys.k[0], iv, cctx, hctx, 1) == -1 ? -1 : 1;
	}
	for (int i = 0; i < TLSCTX_TICKET_KEYS; i++) {
		if (memcmp(keys.k[i].name, unused, sizeof(unused)) == 0 ||
		    memcmp(keys.k[i].name, name, sizeof(keys.k[i].name)) != 0)
			continue;
		if (ticket_key_set(&keys.k[i], iv, cctx, hctx, 0) == -1)
			return -1;
		return i == 0 && SSL_version(ssl) < TLS1_3_VERSION ? 1 : 2;
	}
	return 0;  /* unknown key: a full handshake */
}

void
tlsctx_use_ticket_keys(struct tlsctx_ticket_keys *keys)
{
	__atomic_store_n(&ticket_keys, keys, __ATOMIC_RELEASE);
}

int
tlsctx_rotate_ticket_keys(struct tlsctx_ticket_keys *keys, int64_t now_ms)
{
	struct tlsctx_ticket_key fresh;

	if (RAND_bytes((unsigned char *)&fresh, sizeof(fresh)) != 1)
		return -1;
	fresh.name[0] |= 1;  /* never the all-zero name that marks an unused key */
	__atomic_add_fetch(&keys->seq, 1, __ATOMIC_ACQ_REL);
	for (int i = TLSCTX_TICKET_KEYS - 1; i > 0; i--)
		keys->k[i] = keys->k[i - 1];
	keys->k[0] = fresh;
	keys->created_ms = now_ms;
	__atomic_add_fetch(&keys->seq, 1, __ATOMIC_ACQ_REL);
	OPENSSL_cleanse(&fresh, sizeof(fresh));
	return 0;
}

/* Everything but the pair: the same on every context of the listener. */
static int
ctx_configure(struct tlsctx *x, SSL_CTX *ctx, const struct cfg_tls *t, struct tlsctx_report *r)
{
	static const unsigned char sid_ctx[] = "echomaster";

	/* Renegotiation buys a client nothing here and costs us CPU; an EOF without close_notify is a half-close. */
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_IGNORE_UNEXPECTED_EOF |
	    SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_COMPRESSION);
	/* An idle connection holds no record buffers; outbuf's moving, partial writes are fine. */
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE |
	    SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	/*
	 * A record in one read(2), not a header read and a body read. Bytes
	 * read ahead then wait in OpenSSL where epoll cannot see them:
	 * conn_tls_read reads on while tlsconn_pending says so.
	 */
	SSL_CTX_set_read_ahead(ctx, 1);
	/* Resumption by tickets only: a per-worker cache would depend on which worker answers. */
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_session_id_context(ctx, sid_ctx, sizeof(sid_ctx) - 1);
	SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, ticket_key_cb);
	SSL_CTX_set_dh_auto(ctx, 1);
	if (set_protocols(ctx, t->protocols) == -1)
		return fail(r, TLSCTX_SET_OTHER, 0, "cannot set the protocol versions", NULL);
	if (t->ciphers[0] != '\0' && SSL_CTX_set_cipher_list(ctx, t->ciphers) != 1)
		return fail(r, TLSCTX_SET_CIPHERS, 0, "bad 'ciphers'", t->ciphers);
	if (t->ciphersuites[0] != '\0' && SSL_CTX_set_ciphersuites(ctx, t->ciphersuites) != 1)
		return fail(r, TLSCTX_SET_CIPHERSUITES, 0, "bad 'ciphersuites'", t->ciphersuites);
	if (t->client_ca[0] != '\0' && set_client_ca(ctx, t->client_ca, r) == -1)
		return -1;
	if (x->alpn_len != 0)
		SSL_CTX_set_alpn_select_cb(ctx, alpn_select, x);
	SSL_CTX_set_tlsext_servername_callback(ctx, sni_select);
	SSL_CTX_set_tlsext_servername_arg(ctx, x);
	return 0;
}

static int
alpn_encode(struct tlsctx *x, const struct cfg_strings *alpn, struct tlsctx_report *r)
{
	for (size_t i = 0; i < alpn->n; i++) {
		size_t len = strlen(alpn->v[i]);

		r->setting = TLSCTX_SET_ALPN;
		if (len == 0 || len > 255) {
			report(r, "alpn \"%s\": a protocol name is 1 to 255 bytes", alpn->v[i]);
			return -1;
		}
		if (x->alpn_len + 1 + len > sizeof(x->alpn)) {
			report(r, "alpn: more than %zu bytes of protocol names", sizeof(x->alpn));
			return -1;
		}
		x->alpn[x->alpn_len++] = (unsigned char)len;
		memcpy(x->alpn + x->alpn_len, alpn->v[i], len);
		x->alpn_len += len;
	}
	return 0;
}

static int
ctx_add(struct tlsctx *x, const struct cfg_tls *t, const char *cert, const char *key,
    struct tlsctx_report *r, tlsctx_warn_fn *warn, void *warn_arg)
{
	size_t i = x->n;
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());

	if (ctx == NULL)
		return fail(r, TLSCTX_SET_OTHER, i, "cannot make an SSL context", NULL);
	x->ctx[x->n++] = ctx;
	if (ctx_configure(x, ctx, t, r) == -1 || load_pair(ctx, cert, key, i, r) == -1)
		return -1;
	x->leaf[i] = SSL_CTX_get0_certificate(ctx);
	check_dates(x->leaf[i], cert, i, warn, warn_arg);
	return 0;
}

struct tlsctx *
tlsctx_build(const struct cfg_tls *t, struct tlsctx_report *r, tlsctx_warn_fn *warn,
    void *warn_arg)
{
	const struct cfg_tls_cert *pairs[TLSCTX_PAIRS_MAX];
	size_t n = tlsctx_pairs(t, pairs, TLSCTX_PAIRS_MAX);
	struct tlsctx *x;

	memset(r, 0, sizeof(*r));
	/* Once, in the master: the configuration file and the providers are read here, never in a worker. */
	OPENSSL_init_ssl(OPENSSL_INIT_LOAD_CONFIG, NULL);
	if (n > TLSCTX_PAIRS_MAX) {
		report(r, "more than %d certificates on one listener", TLSCTX_PAIRS_MAX);
		return NULL;
	}
	if (ticket_cipher == NULL &&
	    (ticket_cipher = EVP_CIPHER_fetch(NULL, "AES-256-CBC", NULL)) == NULL) {
		fail(r, TLSCTX_SET_OTHER, 0, "cannot fetch AES-256-CBC for the session tickets", NULL);
		return NULL;
	}
	if ((x = calloc(1, sizeof(*x))) == NULL) {
		report(r, "out of memory");
		return NULL;
	}
	if (alpn_encode(x, &t->alpn, r) == -1)
		goto fail;
	for (size_t i = 0; i < n; i++) {
		const char *cert = pairs[i] ? pairs[i]->certificate : t->certificate;
		const char *key = pairs[i] ? pairs[i]->key : t->key;
		if (ctx_add(x, t, cert, key, r, warn, warn_arg) == -1)
			goto fail;
	}
	return x;
fail:
	tlsctx_free(x);
	return NULL;
}

void
tlsctx_free(struct tlsctx *x)
{
	if (x == NULL)
		return;
	for (size_t i = 0; i < x->n; i++)
		SSL_CTX_free(x->ctx[i]);
	free(x);
}

SSL_CTX *
tlsctx_ssl_ctx(const struct tlsctx *x)
{
	return x->ctx[0];
}
