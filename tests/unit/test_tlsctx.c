/*
 * tlsctx's session tickets, through whole handshakes in memory (a BIO
 * pair, no socket): the shared keys issue and accept tickets; after a
 * rotation a ticket of the previous key still resumes and is renewed
 * under the new one; a ticket of a key rotated out means a full
 * handshake. TLS 1.3 and TLS 1.2 alike.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "common/tlsctx.h"

static char dir[] = "/tmp/em-tlsctx-XXXXXX";
static char crt_path[64], key_path[64];

/* The sessions the client was given (its tickets), newest last. */
#define GIVEN_MAX 8
static SSL_SESSION *given[GIVEN_MAX];
static int ngiven;

static int
on_new_session(SSL *ssl, SSL_SESSION *sess)
{
	(void)ssl;
	if (ngiven == GIVEN_MAX)
		return 0;
	given[ngiven++] = sess;
	return 1;  /* ours now */
}

static void
given_clear(void)
{
	for (int i = 0; i < ngiven; i++)
		SSL_SESSION_free(given[i]);
	ngiven = 0;
}

/* A P-256 key and a self-signed certificate for it, in dir. */
static void
make_cert(void)
{
	EVP_PKEY *key = EVP_EC_gen("P-256");
	X509 *x = X509_new();
	FILE *f;

	assert_non_null(key);
	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
	X509_gmtime_adj(X509_getm_notBefore(x), -86400);
	X509_gmtime_adj(X509_getm_notAfter(x), 30 * 86400);
	X509_set_pubkey(x, key);
	X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
	    (const unsigned char *)"a.test", -1, -1, 0);
	X509_set_issuer_name(x, X509_get_subject_name(x));
	assert_true(X509_sign(x, key, EVP_sha256()) > 0);
	assert_non_null(f = fopen(crt_path, "w"));
	PEM_write_X509(f, x);
	fclose(f);
	assert_non_null(f = fopen(key_path, "w"));
	PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL);
	fclose(f);
	X509_free(x);
	EVP_PKEY_free(key);
}

static int
setup(void **state)
{
	(void)state;
	if (mkdtemp(dir) == NULL)
		return -1;
	snprintf(crt_path, sizeof(crt_path), "%s/a.crt", dir);
	snprintf(key_path, sizeof(key_path), "%s/a.key", dir);
	make_cert();
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	unlink(crt_path);
	unlink(key_path);
	rmdir(dir);
	return 0;
}

static struct tlsctx *
server_build(void)
{
	struct cfg_tls t = {
		.on = true, .certificate = crt_path, .key = key_path,
		.protocols = CFG_TLS_V12 | CFG_TLS_V13,
		.ciphers = (char *)"", .ciphersuites = (char *)"", .client_ca = (char *)"",
	};
	struct tlsctx_report r;
	struct tlsctx *x = tlsctx_build(&t, &r, NULL, NULL);

	if (x == NULL)
		fail_msg("tlsctx_build: %s", r.msg);
	return x;
}

/* TLS 1.2 gives a renewed ticket to no callback on a resumption: it is in the connection's session. */
static void
tls12_renewal(SSL *c, SSL_SESSION *offered)
{
	const unsigned char *was, *now;
	size_t was_len, now_len;

	SSL_SESSION_get0_ticket(offered, &was, &was_len);
	SSL_SESSION_get0_ticket(SSL_get0_session(c), &now, &now_len);
	if ((was_len != now_len || memcmp(was, now, now_len) != 0) && ngiven < GIVEN_MAX)
		given[ngiven++] = SSL_get1_session(c);
}

/*
 * One connection, client and server in memory, to the client's reading of
 * what follows the handshake (TLS 1.3 tickets). Offers SESS when not NULL;
 * returns whether the session was resumed.
 */
static bool
connect_once(struct tlsctx *x, int version, SSL_SESSION *sess)
{
	SSL_CTX *cctx = SSL_CTX_new(TLS_client_method());
	SSL *c, *s;
	BIO *cb, *sb;
	char byte;
	bool resumed;

	assert_non_null(cctx);
	SSL_CTX_set_min_proto_version(cctx, version);
	SSL_CTX_set_max_proto_version(cctx, version);
	SSL_CTX_set_session_cache_mode(cctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
	SSL_CTX_sess_set_new_cb(cctx, on_new_session);
	assert_non_null(c = SSL_new(cctx));
	assert_non_null(s = SSL_new(tlsctx_ssl_ctx(x)));
	assert_int_equal(BIO_new_bio_pair(&cb, 0, &sb, 0), 1);
	SSL_set_bio(c, cb, cb);
	SSL_set_bio(s, sb, sb);
	SSL_set_connect_state(c);
	SSL_set_accept_state(s);
	if (sess != NULL) {
		/* A copy: the client's OpenSSL spoils the session a connection used, for later ones. */
		SSL_SESSION *copy = SSL_SESSION_dup(sess);

		assert_int_equal(SSL_set_session(c, copy), 1);
		SSL_SESSION_free(copy);
	}
	for (int turn = 0; turn < 20 && !(SSL_is_init_finished(c) && SSL_is_init_finished(s)); turn++) {
		SSL_do_handshake(c);
		SSL_do_handshake(s);
	}
	assert_true(SSL_is_init_finished(c) && SSL_is_init_finished(s));
	assert_int_equal(SSL_read(c, &byte, 1), -1);  /* takes in the tickets; no data */
	assert_int_equal(SSL_get_error(c, -1), SSL_ERROR_WANT_READ);
	resumed = SSL_session_reused(c) == 1;
	if (resumed && version == TLS1_2_VERSION)
		tls12_renewal(c, sess);
	assert_int_equal(SSL_session_reused(s), resumed);
	SSL_shutdown(c);  /* a clean end: OpenSSL spoils the sessions of one without */
	SSL_shutdown(s);
	SSL_free(c);
	SSL_free(s);
	SSL_CTX_free(cctx);
	return resumed;
}

/* The newest ticket given, ours to keep; the others are dropped. */
static SSL_SESSION *
newest_ticket(void)
{
	SSL_SESSION *t;

	assert_true(ngiven > 0);
	t = given[--ngiven];
	given_clear();
	return t;
}

static void
rotation_keeps_the_previous_key_and_renews(int version)
{
	struct tlsctx_ticket_keys keys;
	struct tlsctx *x;
	SSL_SESSION *first, *renewed;

	memset(&keys, 0, sizeof(keys));
	assert_int_equal(tlsctx_rotate_ticket_keys(&keys, 1000), 0);
	tlsctx_use_ticket_keys(&keys);
	x = server_build();

	assert_false(connect_once(x, version, NULL));
	first = newest_ticket();
	assert_true(connect_once(x, version, first));
	/* A ticket of the current key: TLS 1.2 keeps it; TLS 1.3 is given a new one (one use each). */
	assert_int_equal(ngiven, version == TLS1_3_VERSION ? 1 : 0);
	given_clear();

	assert_int_equal(tlsctx_rotate_ticket_keys(&keys, 2000), 0);
	assert_true(connect_once(x, version, first));  /* the previous key still resumes */
	renewed = newest_ticket();                      /* and the ticket is renewed */
	assert_true(connect_once(x, version, renewed));
	given_clear();

	assert_int_equal(tlsctx_rotate_ticket_keys(&keys, 3000), 0);
	assert_false(connect_once(x, version, first));  /* its key is gone: a full handshake */
	given_clear();
	assert_true(connect_once(x, version, renewed)); /* issued under the key now second */
	given_clear();

	SSL_SESSION_free(first);
	SSL_SESSION_free(renewed);
	tlsctx_free(x);
	tlsctx_use_ticket_keys(NULL);
}

static void
tls13_rotation(void **state)
{
	(void)state;
	rotation_keeps_the_previous_key_and_renews(TLS1_3_VERSION);
}

static void
tls12_rotation(void **state)
{
	(void)state;
	rotation_keeps_the_previous_key_and_renews(TLS1_2_VERSION);
}

/* Tickets of one build resume on another made from the same shared keys: a reload, another worker. */
static void
another_context_with_the_same_keys_resumes(void **state)
{
	struct tlsctx_ticket_keys keys;
	struct tlsctx *a, *b;
	SSL_SESSION *t;

	(void)state;
	memset(&keys, 0, sizeof(keys));
	assert_int_equal(tlsctx_rotate_ticket_keys(&keys, 1000), 0);
	tlsctx_use_ticket_keys(&keys);
	a = server_build();
	b = server_build();
	assert_false(connect_once(a, TLS1_3_VERSION, NULL));
	t = newest_ticket();
	assert_true(connect_once(b, TLS1_3_VERSION, t));
	given_clear();
	SSL_SESSION_free(t);
	tlsctx_free(a);
	tlsctx_free(b);
	tlsctx_use_ticket_keys(NULL);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(tls13_rotation),
		cmocka_unit_test(tls12_rotation),
		cmocka_unit_test(another_context_with_the_same_keys_resumes),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
