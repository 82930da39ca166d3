/*
 * tlsctx: the OpenSSL contexts of one TLS listener, built from its tls
 * group (struct cfg_tls) by cfg_load in the master, at start, -t and each
 * reload, before any privilege is dropped: the key file may be readable
 * by root alone. The workers inherit the contexts through fork and never
 * open a file; they only make an SSL object per connection from
 * tlsctx_ssl_ctx's context (worker/tlsconn.h).
 *
 * One SSL_CTX per certificate/key pair, configured alike (protocols,
 * ciphers, client CA, ALPN, tickets); the first is the default, and the
 * client's server name (SNI) switches a handshake to the first other pair
 * whose certificate matches it (its DNS names or, failing those, its
 * common name, wildcards included: X509_check_host).
 */
#ifndef EM_TLSCTX_H
#define EM_TLSCTX_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>

#include "common/cfg.h"

/* Which setting a build failure is about, for the caller's FILE:LINE. */
enum tlsctx_setting {
	TLSCTX_SET_CERTIFICATE, TLSCTX_SET_KEY, TLSCTX_SET_CIPHERS, TLSCTX_SET_CIPHERSUITES,
	TLSCTX_SET_CLIENT_CA, TLSCTX_SET_ALPN, TLSCTX_SET_OTHER,
};

#define TLSCTX_MSG_LEN 320

/* What went wrong, or what deserves a warning; pair indexes the pairs as tlsctx_pairs orders them. */
struct tlsctx_report {
	enum tlsctx_setting setting;
	size_t pair;
	char msg[TLSCTX_MSG_LEN];
};

/* Called once per warning (an expired certificate); the build goes on. */
typedef void tlsctx_warn_fn(void *arg, const struct tlsctx_report *warning);

/*
 * The pairs of T in context order: certificate/key first when set, then
 * certificates. Fills at most max; returns how many there are.
 */
size_t tlsctx_pairs(const struct cfg_tls *t, const struct cfg_tls_cert **out, size_t max);

/*
 * Builds the contexts of T. NULL on failure, with *err filled in (the
 * message carries OpenSSL's reason). warn may be NULL.
 */
struct tlsctx *tlsctx_build(const struct cfg_tls *t, struct tlsctx_report *err,
    tlsctx_warn_fn *warn, void *warn_arg);

void tlsctx_free(struct tlsctx *x);

/* The default context: the one each connection's SSL object starts from. */
SSL_CTX *tlsctx_ssl_ctx(const struct tlsctx *x);

/*
 * Session tickets. Every context encrypts its tickets with the keys at
 * *keys once tlsctx_use_ticket_keys has been called (the master calls it
 * with memory it shares with every worker, before any fork); until then,
 * with the keys OpenSSL made for the context. The first key issues, the
 * rest are still accepted; a key with name all zero is unused.
 */
#define TLSCTX_TICKET_KEYS 2

struct tlsctx_ticket_key {
	unsigned char name[16];
	unsigned char aes[32];    /* AES-256-CBC */
	unsigned char hmac[32];   /* HMAC-SHA256 */
};

struct tlsctx_ticket_keys {
	uint32_t seq;             /* odd while the master rewrites the keys: readers try again */
	int64_t created_ms;       /* wall clock of keys[0], for the rotation */
	struct tlsctx_ticket_key k[TLSCTX_TICKET_KEYS];
};

/* Points every context built from now on (and every one built before) at KEYS; NULL = OpenSSL's own. */
void tlsctx_use_ticket_keys(struct tlsctx_ticket_keys *keys);

/* Fills KEYS with a fresh key first and the previous first key second. 0, or -1 when no randomness. */
int tlsctx_rotate_ticket_keys(struct tlsctx_ticket_keys *keys, int64_t now_ms);

#endif
