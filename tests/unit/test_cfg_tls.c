/*
 * A listener's tls group: every setting read, every mistake refused with
 * FILE:LINE and OpenSSL's reason, an expired certificate only warned of,
 * and -T showing paths, never key material. The certificates are made
 * here, with OpenSSL's API, in a temporary directory.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "common/cfg.h"
#include "common/tlsctx.h"
#include "cfg_load.h"

static char dir[] = "/tmp/em-cfg-tls-XXXXXX";

static char *
path_of(const char *name)
{
	static char buf[4][256];
	static int next;
	char *p = buf[next++ % 4];

	snprintf(p, sizeof(buf[0]), "%s/%s", dir, name);
	return p;
}

/* Writes NAME.key and NAME.crt: a P-256 key and a self-signed certificate valid from..to days from now. */
static void
make_cert(const char *name, long from_days, long to_days)
{
	EVP_PKEY *key = EVP_EC_gen("P-256");
	X509 *x = X509_new();
	char file[256];
	FILE *f;

	assert_non_null(key);
	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
	X509_gmtime_adj(X509_getm_notBefore(x), from_days * 86400);
	X509_gmtime_adj(X509_getm_notAfter(x), to_days * 86400);
	X509_set_pubkey(x, key);
	X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
	    (const unsigned char *)name, -1, -1, 0);
	X509_set_issuer_name(x, X509_get_subject_name(x));
	assert_true(X509_sign(x, key, EVP_sha256()) > 0);
	snprintf(file, sizeof(file), "%s/%s.crt", dir, name);
	assert_non_null(f = fopen(file, "w"));
	PEM_write_X509(f, x);
	fclose(f);
	snprintf(file, sizeof(file), "%s/%s.key", dir, name);
	assert_non_null(f = fopen(file, "w"));
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
	make_cert("a", -1, 30);
	make_cert("b", -1, 30);
	make_cert("old", -400, -10);
	return 0;
}

static int
teardown(void **state)
{
	const char *names[] = { "a.crt", "a.key", "b.crt", "b.key", "old.crt", "old.key", "garbage" };

	(void)state;
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		unlink(path_of(names[i]));
	rmdir(dir);
	return 0;
}

/* A config whose line 2 is the tls group, made of EXTRA (the settings after the default pair). */
static char *
conf(const char *cert, const char *key, const char *extra)
{
	static char text[4096];

	snprintf(text, sizeof(text),
	    "listen = ( { proto = \"tcp\"; address = \"127.0.0.1\"; port = 8443;\n"
	    "  tls = { certificate = \"%s\"; key = \"%s\"; %s };\n"
	    "} );\n", cert, key, extra);
	return text;
}

static void
defaults_and_contexts(void **state)
{
	struct cfg *cfg = load_ok(conf(path_of("a.crt"), path_of("a.key"), ""));
	const struct cfg_tls *t = &cfg->listen[0].tls;

	(void)state;
	assert_true(t->on);
	assert_int_equal(t->protocols, CFG_TLS_V12 | CFG_TLS_V13);
	assert_string_equal(t->ciphers, "");
	assert_string_equal(t->client_ca, "");
	assert_int_equal(t->alpn.n, 0);
	assert_non_null(t->ctx);
	assert_int_equal(SSL_CTX_get_min_proto_version(tlsctx_ssl_ctx(t->ctx)), TLS1_2_VERSION);
	assert_int_equal(SSL_CTX_get_max_proto_version(tlsctx_ssl_ctx(t->ctx)), TLS1_3_VERSION);
	assert_int_equal(SSL_CTX_get_session_cache_mode(tlsctx_ssl_ctx(t->ctx)), SSL_SESS_CACHE_OFF);
	assert_int_equal(cfg->handshake_timeout, 10);
	assert_null(cfg->warnings);
	assert_false(cfg->listen[0].tls.on && cfg->listen[0].proto != CFG_PROTO_TCP);
	cfg_free(cfg);
}

static void
every_setting_is_read(void **state)
{
	char extra[1024];
	struct cfg *cfg;
	const struct cfg_tls *t;

	(void)state;
	snprintf(extra, sizeof(extra),
	    "protocols = [ \"TLSv1.3\" ]; ciphers = \"ECDHE+AESGCM\"; "
	    "ciphersuites = \"TLS_AES_128_GCM_SHA256\"; client_ca = \"%s\"; alpn = [ \"h2\", \"echo\" ]; "
	    "certificates = ( { certificate = \"%s\"; key = \"%s\"; } );",
	    path_of("b.crt"), path_of("b.crt"), path_of("b.key"));
	cfg = load_ok(conf(path_of("a.crt"), path_of("a.key"), extra));
	t = &cfg->listen[0].tls;
	assert_int_equal(t->protocols, CFG_TLS_V13);
	assert_string_equal(t->ciphers, "ECDHE+AESGCM");
	assert_string_equal(t->ciphersuites, "TLS_AES_128_GCM_SHA256");
	assert_string_equal(t->client_ca, path_of("b.crt"));
	assert_int_equal(t->alpn.n, 2);
	assert_string_equal(t->alpn.v[1], "echo");
	assert_int_equal(t->ncerts, 1);
	assert_string_equal(t->certs[0].key, path_of("b.key"));
	assert_int_equal(SSL_CTX_get_min_proto_version(tlsctx_ssl_ctx(t->ctx)), TLS1_3_VERSION);
	assert_int_equal(SSL_CTX_get_verify_mode(tlsctx_ssl_ctx(t->ctx)),
	    SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT);
	cfg_free(cfg);
	/* certificates alone: its first entry is the default. */
	snprintf(extra, sizeof(extra), "certificates = ( { certificate = \"%s\"; key = \"%s\"; } );",
	    path_of("b.crt"), path_of("b.key"));
	cfg = load_ok(conf("", "", extra));
	assert_non_null(cfg->listen[0].tls.ctx);
	cfg_free(cfg);
}

static void
file_mistakes_name_the_setting_and_the_reason(void **state)
{
	char extra[512];
	FILE *f;

	(void)state;
	assert_non_null(f = fopen(path_of("garbage"), "w"));
	fputs("not a certificate\n", f);
	fclose(f);
	expect_error(conf(path_of("nothere.crt"), path_of("a.key"), ""), 2,
	    "cannot read certificate \"");
	expect_error(conf(path_of("nothere.crt"), path_of("a.key"), ""), 2, "No such file or directory");
	expect_error(conf(path_of("a.crt"), path_of("nothere.key"), ""), 2, "cannot read key");
	expect_error(conf(path_of("garbage"), path_of("a.key"), ""), 2, "no start line");
	expect_error(conf(path_of("a.crt"), path_of("garbage"), ""), 2, "cannot load key");
	expect_error(conf(path_of("a.crt"), path_of("b.key"), ""), 2,
	    "key does not match its certificate");
	expect_error(conf(path_of("a.crt"), path_of("b.key"), ""), 2, "values mismatch");
	snprintf(extra, sizeof(extra), "client_ca = \"%s\";", path_of("nothere.pem"));
	expect_error(conf(path_of("a.crt"), path_of("a.key"), extra), 2, "cannot read client_ca");
	snprintf(extra, sizeof(extra), "client_ca = \"%s\";", path_of("garbage"));
	expect_error(conf(path_of("a.crt"), path_of("a.key"), extra), 2, "client_ca");
	/* An entry of certificates: its own line. */
	snprintf(extra, sizeof(extra), "certificates = (\n { certificate = \"%s\"; key = \"%s\"; } );",
	    path_of("b.crt"), path_of("a.key"));
	expect_error(conf(path_of("a.crt"), path_of("a.key"), extra), 3,
	    "key does not match its certificate");
}

static void
setting_mistakes_are_refused(void **state)
{
	const char *a = path_of("a.crt"), *k = path_of("a.key");

	(void)state;
	expect_error(conf(a, k, "protocols = [ \"TLSv1.1\" ];"), 2, "unknown protocol \"TLSv1.1\"");
	expect_error(conf(a, k, "protocols = [ ];"), 2, "'protocols' is empty");
	expect_error(conf(a, k, "protocols = \"TLSv1.3\";"), 2, "'protocols' must be an array");
	expect_error(conf(a, k, "ciphers = \"NOSUCHCIPHER\";"), 2, "no cipher match");
	expect_error(conf(a, k, "ciphersuites = \"NOSUCH\";"), 2, "bad 'ciphersuites'");
	expect_error(conf(a, k, "alpn = [ \"\" ];"), 2, "1 to 255 bytes");
	expect_error(conf(a, k, "alpn = [ 1 ];"), 2, "'alpn' entries must be strings");
	expect_error(conf(a, k, "sni = true;"), 2, "unknown setting 'tls.sni'");
	expect_error(conf(a, "", ""), 2, "needs both 'certificate' and 'key'");
	expect_error(conf("", "", ""), 2, "'tls' needs 'certificate' and 'key'");
	expect_error(conf(a, k, "certificates = ( { certificate = \"x\"; } );"), 2,
	    "missing required setting 'tls.certificates.key'");
	expect_error("listen = ( { proto = \"udp\"; address = \"127.0.0.1\"; port = 8443;\n"
	    "  tls = { certificate = \"x\"; key = \"y\"; }; } );\n", 2, "'tls' is for tcp listeners only");
	expect_error("limits = { handshake_timeout = 0; };\n"
	    "listen = ( { proto = \"tcp\"; address = \"127.0.0.1\"; port = 8443; } );\n", 1,
	    "'handshake_timeout' is 0, out of range 1..3600");
}

static void
an_expired_certificate_is_a_warning(void **state)
{
	struct cfg *cfg = load_ok(conf(path_of("old.crt"), path_of("old.key"), ""));

	(void)state;
	assert_non_null(cfg->warnings);
	assert_non_null(strstr(cfg->warnings, "test.conf:2: warning: certificate \""));
	assert_non_null(strstr(cfg->warnings, "has expired"));
	cfg_free(cfg);
}

static void
the_dump_shows_paths_not_keys(void **state)
{
	struct cfg *cfg = load_ok(conf(path_of("a.crt"), path_of("a.key"), "alpn = [ \"h2\" ];"));
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	char err[CFG_ERR_LEN];
	struct cfg *again;

	(void)state;
	cfg_dump(cfg, f);
	fclose(f);
	assert_non_null(strstr(buf, "tls = { certificate = \""));
	assert_non_null(strstr(buf, "protocols = [ \"TLSv1.2\", \"TLSv1.3\" ]; ciphers = \"\";"));
	assert_non_null(strstr(buf, "alpn = [ \"h2\" ];"));
	assert_null(strstr(buf, "PRIVATE KEY"));
	assert_non_null(strstr(buf, "handshake_timeout = 10;"));
	/* What -T writes loads again, the same. */
	again = cfg_load_string("dump.conf", buf, err);
	if (again == NULL)
		fail_msg("the dump does not load: %s", err);
	assert_int_equal(again->listen[0].tls.alpn.n, 1);
	cfg_free(again);
	free(buf);
	cfg_free(cfg);
}

/* A PROXY header in front of the handshake: both settings taken, and -T shows both, loading again. */
static void
tls_behind_a_proxy_header(void **state)
{
	char text[1024];
	struct cfg *cfg, *again;
	char *buf = NULL;
	size_t len = 0;
	FILE *f;
	char err[CFG_ERR_LEN];

	(void)state;
	snprintf(text, sizeof(text),
	    "listen = ( { proto = \"tcp\"; address = \"127.0.0.1\"; port = 8443; proxy_protocol = \"v2\";\n"
	    "  proxy_trusted = [ \"127.0.0.0/8\" ];\n"
	    "  tls = { certificate = \"%s\"; key = \"%s\"; }; } );\n", path_of("a.crt"), path_of("a.key"));
	cfg = load_ok(text);
	assert_true(cfg->listen[0].tls.on);
	assert_non_null(cfg->listen[0].tls.ctx);
	assert_int_equal(cfg->listen[0].proxy_protocol, CFG_PROXY_V2);
	assert_non_null(f = open_memstream(&buf, &len));
	cfg_dump(cfg, f);
	fclose(f);
	assert_non_null(strstr(buf, "proxy_protocol = \"v2\"; proxy_trusted = [ \"127.0.0.0/8\" ];"));
	assert_non_null(strstr(buf, "tls = { certificate = \""));
	if ((again = cfg_load_string("dump.conf", buf, err)) == NULL)
		fail_msg("the dump does not load: %s", err);
	assert_true(again->listen[0].tls.on);
	assert_int_equal(again->listen[0].proxy_protocol, CFG_PROXY_V2);
	cfg_free(again);
	free(buf);
	cfg_free(cfg);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(defaults_and_contexts),
		cmocka_unit_test(every_setting_is_read),
		cmocka_unit_test(file_mistakes_name_the_setting_and_the_reason),
		cmocka_unit_test(setting_mistakes_are_refused),
		cmocka_unit_test(an_expired_certificate_is_a_warning),
		cmocka_unit_test(the_dump_shows_paths_not_keys),
		cmocka_unit_test(tls_behind_a_proxy_header),
	};
	return cmocka_run_group_tests_name("cfg_tls", tests, setup, teardown);
}
