/*
 * The PROXY protocol parser (worker/proxy.c), table-driven. Every input is
 * fed whole, split in two at every byte offset, and one byte at a time:
 * the verdict, the reason class, the header's length and its fields must
 * not depend on how the bytes arrived.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#include "common/sock.h"
#include "worker/proxy.h"

#define BUF 1024

struct input {
	uint8_t b[BUF];
	size_t n;
};

/* What a case must come to. */
struct want {
	enum proxy_status status;
	enum proxy_error error;   /* PROXY_ERROR */
	size_t used;              /* PROXY_DONE: the header's length */
	int version, command;
	const char *src, *dst;    /* sock_addr_format's text; NULL: no address */
	const char *authority;
	const char *unique_id;
};

/* Feeds in pieces cut at the offsets in cuts (ascending, ncuts of them); fills *total_used. */
static enum proxy_status
feed_cut(const struct input *in, enum proxy_accept acc, const size_t *cuts, size_t ncuts,
    struct proxy_parser *p, struct proxy_result *r, size_t *total_used)
{
	enum proxy_status st = PROXY_NEED_MORE;
	size_t at = 0;

	proxy_init(p, acc);
	*total_used = 0;
	for (size_t k = 0; k <= ncuts && st == PROXY_NEED_MORE; k++) {
		size_t end = k < ncuts ? cuts[k] : in->n, used = 0;

		st = proxy_feed(p, in->b + at, end - at, &used, r);
		assert_true(used <= end - at);
		if (st == PROXY_NEED_MORE)
			assert_int_equal(used, end - at);  /* all taken while it needs more */
		*total_used += used;
		at = end;
	}
	return st;
}

static void
expect(const struct input *in, enum proxy_accept acc, const struct want *w, const char *how)
{
	struct proxy_parser p;
	struct proxy_result r;
	size_t used, cuts[BUF];
	char text[80];
	enum proxy_status st;

	for (int mode = 0; mode < 3; mode++) {
		size_t ncut_max = mode == 0 ? 1 : mode == 1 ? in->n + 1 : 1;

		for (size_t cut = 0; cut < ncut_max; cut++) {
			size_t ncuts = 0;

			if (mode == 1)
				cuts[ncuts++] = cut;
			else if (mode == 2)
				for (size_t i = 1; i < in->n; i++)
					cuts[ncuts++] = i;
			st = feed_cut(in, acc, cuts, ncuts, &p, &r, &used);
			if (st != w->status)
				fail_msg("%s (mode %d cut %zu): status %d, want %d (error %s)", how, mode,
				    cut, st, w->status, proxy_error_name(p.error));
			if (st == PROXY_ERROR) {
				if (p.error != w->error)
					fail_msg("%s (mode %d cut %zu): error %s, want %s", how, mode, cut,
					    proxy_error_name(p.error), proxy_error_name(w->error));
				continue;
			}
			if (st != PROXY_DONE)
				continue;
			if (used != w->used)
				fail_msg("%s (mode %d cut %zu): used %zu, want %zu", how, mode, cut, used,
				    w->used);
			assert_int_equal(r.version, w->version);
			assert_int_equal(r.command, w->command);
			assert_int_equal(r.has_addr, w->src != NULL);
			if (w->src != NULL) {
				sock_addr_format(&r.src, text, sizeof(text));
				assert_string_equal(text, w->src);
				sock_addr_format(&r.dst, text, sizeof(text));
				assert_string_equal(text, w->dst);
			}
			assert_int_equal(r.authority_len, w->authority ? strlen(w->authority) : 0);
			if (w->authority != NULL)
				assert_memory_equal(r.authority, w->authority, strlen(w->authority));
			assert_int_equal(r.unique_id_len, w->unique_id ? strlen(w->unique_id) : 0);
			if (w->unique_id != NULL)
				assert_memory_equal(r.unique_id, w->unique_id, strlen(w->unique_id));
			/* Done is done: feeding more takes nothing. */
			assert_int_equal(proxy_feed(&p, "x", 1, &used, &r), PROXY_DONE);
			assert_int_equal(used, 0);
		}
	}
}

static struct input
text(const char *s)
{
	struct input in = { .n = strlen(s) };

	memcpy(in.b, s, in.n);
	return in;
}

/* ---- v1 ---- */

static const struct v1_case {
	const char *in;
	enum proxy_status status;
	enum proxy_error error;
	size_t used;              /* 0: the whole input */
	const char *src, *dst;
} v1_cases[] = {
#define BAD(s) { s, PROXY_ERROR, PROXY_ERR_BAD, 0, NULL, NULL }
	{ "PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n", PROXY_DONE, 0, 0,
	  "192.0.2.1:56324", "198.51.100.2:443" },
	{ "PROXY TCP4 0.0.0.0 255.255.255.255 0 65535\r\n", PROXY_DONE, 0, 0,
	  "0.0.0.0:0", "255.255.255.255:65535" },
	{ "PROXY TCP6 2001:db8::1 2001:db8::2 1 2\r\n", PROXY_DONE, 0, 0,
	  "[2001:db8::1]:1", "[2001:db8::2]:2" },
	{ "PROXY TCP6 ::ffff:192.0.2.1 ::1 1 2\r\n", PROXY_DONE, 0, 0,
	  "[::ffff:192.0.2.1]:1", "[::1]:2" },
	{ "PROXY UNKNOWN\r\n", PROXY_DONE, 0, 0, NULL, NULL },
	{ "PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n", PROXY_DONE, 0, 0, NULL, NULL },
	/* two headers back to back: the second is the client's data */
	{ "PROXY TCP4 192.0.2.1 192.0.2.2 1 2\r\nPROXY TCP4 192.0.2.9 192.0.2.9 9 9\r\n",
	  PROXY_DONE, 0, 36, "192.0.2.1:1", "192.0.2.2:2" },
	{ "PROXY TCP4 192.0.2.1 192.0.2.2 1 2\r\nhello", PROXY_DONE, 0, 36,
	  "192.0.2.1:1", "192.0.2.2:2" },
	/* the bad ones */
	BAD("PROXY TCP4 192.0.2.1 192.0.2.2 1 2\n"),    /* LF alone */
	BAD("PROXY TCP4 192.0.2.1 192.0.2.2 1 2\r\r\n"), /* CR alone */
	BAD("PROXY TCP4 192.0.2.1\r192.0.2.2 1 2\r\n"),
	BAD("PROXY TCP4 01.0.2.1 192.0.2.2 1 2\r\n"),   /* leading zeros */
	BAD("PROXY TCP4 192.0.2.1 192.0.2.2 01 2\r\n"),
	BAD("PROXY TCP4 192.0.2.1 192.0.2.2 1 0443\r\n"),
	BAD("PROXY TCP4 256.0.2.1 192.0.2.2 1 2\r\n"),  /* octet > 255 */
	BAD("PROXY TCP4 192.0.2.1 192.0.2.2 65536 2\r\n"), /* port */
	BAD("PROXY TCP4 192.0.2.1 192.0.2.2 1 99999\r\n"),
	BAD("PROXY TCP4 2001:db8::1 192.0.2.2 1 2\r\n"), /* family */
	BAD("PROXY TCP6 192.0.2.1 2001:db8::2 1 2\r\n"),
	BAD("PROXY TCP4 ::ffff:192.0.2.1 192.0.2.2 1 2\r\n"), /* v4-mapped */
	BAD("PROXY TCP4  192.0.2.1 192.0.2.2 1 2\r\n"), /* double space */
	BAD("PROXY TCP4 192.0.2.1 192.0.2.2  1 2\r\n"),
	BAD("PROXY  TCP4 192.0.2.1 192.0.2.2 1 2\r\n"),
	BAD("PROXY TCP4 192.0.2.1 192.0.2.2 1 2 \r\n"),
	BAD("PROXY TCP4 192.0.2.1 192.0.2.2 1\r\n"),   /* missing fields */
	BAD("PROXY TCP4\r\n"),
	BAD("PROXY \r\n"),
	BAD("PROXY TCP4 192.0.2 192.0.2.2 1 2\r\n"),
	BAD("PROXY TCP4 192.0.2.1.5 192.0.2.2 1 2\r\n"),
	BAD("PROXY TCP4 192.0.2.1 192.0.2.2 -1 2\r\n"),
	BAD("proxy TCP4 192.0.2.1 192.0.2.2 1 2\r\n"),  /* lowercase */
	BAD("PROXY tcp4 192.0.2.1 192.0.2.2 1 2\r\n"),
	BAD("PROXY UNKNOWNX\r\n"),
	BAD("PROXY UDP4 192.0.2.1 192.0.2.2 1 2\r\n"),
	BAD("PROXYTCP4 192.0.2.1 192.0.2.2 1 2\r\n"),
	BAD("GET / HTTP/1.0\r\n"),
	BAD("hello\n"),
};

static void
v1_table(void **state)
{
	char how[160];

	(void)state;
	for (size_t i = 0; i < sizeof(v1_cases) / sizeof(v1_cases[0]); i++) {
		const struct v1_case *c = &v1_cases[i];
		struct input in = text(c->in);
		struct want w = { .status = c->status, .error = c->error,
		    .used = c->used ? c->used : in.n, .version = 1, .command = PROXY_CMD_PROXY,
		    .src = c->src, .dst = c->dst };

		snprintf(how, sizeof(how), "v1 case %zu \"%.*s\"", i, (int)strcspn(c->in, "\r\n"), c->in);
		expect(&in, PROXY_ACCEPT_V1, &w, how);
		expect(&in, PROXY_ACCEPT_ANY, &w, how);
	}
}

/* "PROXY UNKNOWN " padded to n bytes with the CRLF. */
static struct input
v1_of_length(size_t n)
{
	struct input in = text("PROXY UNKNOWN ");

	memset(in.b + in.n, 'x', n - 2 - in.n);
	memcpy(in.b + n - 2, "\r\n", 2);
	in.n = n;
	return in;
}

static void
v1_107_against_108(void **state)
{
	struct input ok = v1_of_length(PROXY_V1_MAX), tool = v1_of_length(PROXY_V1_MAX + 1);
	struct want done = { .status = PROXY_DONE, .used = PROXY_V1_MAX, .version = 1,
	    .command = PROXY_CMD_PROXY };
	struct want refused = { .status = PROXY_ERROR, .error = PROXY_ERR_TOO_LONG };
	/* The longest TCP6 line there can be fits too. */
	struct input tcp6 = text("PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
	    "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n");
	struct want tcp6w = { .status = PROXY_DONE, .used = tcp6.n, .version = 1,
	    .command = PROXY_CMD_PROXY, .src = "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535",
	    .dst = "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535" };

	(void)state;
	expect(&ok, PROXY_ACCEPT_V1, &done, "107 bytes");
	expect(&tool, PROXY_ACCEPT_V1, &refused, "108 bytes");
	assert_int_equal(tcp6.n, 104);
	expect(&tcp6, PROXY_ACCEPT_ANY, &tcp6w, "longest TCP6");
}

/* ---- v2 ---- */

static const uint8_t sig[12] = { 0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a };

/* A v2 header with the given ver_cmd, fam, body; len is the body's unless forced (>= 0). */
static struct input
v2(uint8_t ver_cmd, uint8_t fam, const void *body, size_t n, int len)
{
	struct input in;
	unsigned l = len >= 0 ? (unsigned)len : (unsigned)n;

	memcpy(in.b, sig, 12);
	in.b[12] = ver_cmd;
	in.b[13] = fam;
	in.b[14] = (uint8_t)(l >> 8);
	in.b[15] = (uint8_t)l;
	memcpy(in.b + 16, body, n);
	in.n = 16 + n;
	return in;
}

/* The address block of 192.0.2.1:4242 -> 198.51.100.2:443. */
static size_t
inet_block(uint8_t *b)
{
	inet_pton(AF_INET, "192.0.2.1", b);
	inet_pton(AF_INET, "198.51.100.2", b + 4);
	b[8] = 4242 >> 8, b[9] = 4242 & 0xff;
	b[10] = 443 >> 8, b[11] = 443 & 0xff;
	return 12;
}

static size_t
inet6_block(uint8_t *b)
{
	inet_pton(AF_INET6, "2001:db8::1", b);
	inet_pton(AF_INET6, "2001:db8::2", b + 16);
	b[32] = 0, b[33] = 1;
	b[34] = 0, b[35] = 2;
	return 36;
}

static size_t
tlv(uint8_t *b, uint8_t type, const void *v, size_t n)
{
	b[0] = type;
	b[1] = (uint8_t)(n >> 8);
	b[2] = (uint8_t)n;
	memcpy(b + 3, v, n);
	return 3 + n;
}

/* Computes and stores the CRC32C of a header whose CRC TLV value starts at off. */
static void
crc_fix(struct input *in, size_t off)
{
	uint32_t c;

	memset(in->b + off, 0, 4);
	c = proxy_crc32c(0, in->b, in->n);
	in->b[off] = (uint8_t)(c >> 24), in->b[off + 1] = (uint8_t)(c >> 16);
	in->b[off + 2] = (uint8_t)(c >> 8), in->b[off + 3] = (uint8_t)c;
}

static const struct want v2_inet = { .status = PROXY_DONE, .version = 2, .command = PROXY_CMD_PROXY,
    .src = "192.0.2.1:4242", .dst = "198.51.100.2:443" };

static void
crc32c_known_answer(void **state)
{
	(void)state;
	/* The check value of CRC-32C (RFC 3720's polynomial). */
	assert_int_equal(proxy_crc32c(0, "123456789", 9), 0xe3069283u);
	assert_int_equal(proxy_crc32c(proxy_crc32c(0, "1234", 4), "56789", 5), 0xe3069283u);
	assert_int_equal(proxy_crc32c(0, "", 0), 0);
}

static void
v2_valid(void **state)
{
	uint8_t body[600], pad[PROXY_V2_MAX_LEN] = { 0 };
	size_t n;
	struct input in;
	struct want w = v2_inet;

	(void)state;
	n = inet_block(body);
	in = v2(0x21, 0x11, body, n, -1);
	w.used = in.n;
	expect(&in, PROXY_ACCEPT_V2, &w, "v2 TCP4");
	expect(&in, PROXY_ACCEPT_ANY, &w, "v2 TCP4, any");

	/* with data after it in the same bytes */
	memcpy(in.b + in.n, "hello", 5);
	in.n += 5;
	expect(&in, PROXY_ACCEPT_V2, &w, "v2 TCP4 then data");

	/* TCP6 */
	n = inet6_block(body);
	in = v2(0x21, 0x21, body, n, -1);
	w = (struct want){ .status = PROXY_DONE, .used = in.n, .version = 2,
	    .command = PROXY_CMD_PROXY, .src = "[2001:db8::1]:1", .dst = "[2001:db8::2]:2" };
	expect(&in, PROXY_ACCEPT_V2, &w, "v2 TCP6");

	/* TLVs: NOOP, AUTHORITY, UNIQUE_ID, an unknown type, and a good CRC32C */
	n = inet_block(body);
	n += tlv(body + n, 0x04, "\0\0", 2);
	n += tlv(body + n, 0x02, "example.com", 11);
	n += tlv(body + n, 0x05, "req-42", 6);
	n += tlv(body + n, 0xe0, "x", 1);
	n += tlv(body + n, 0x03, "\0\0\0\0", 4);
	in = v2(0x21, 0x11, body, n, -1);
	crc_fix(&in, in.n - 4);
	w = v2_inet;
	w.used = in.n;
	w.authority = "example.com";
	w.unique_id = "req-42";
	expect(&in, PROXY_ACCEPT_V2, &w, "v2 with TLVs and CRC32C");

	/* a UNIQUE_ID of the most the spec allows, 128 bytes */
	n = inet_block(body);
	memset(pad, 'u', 128);
	n += tlv(body + n, 0x05, pad, 128);
	in = v2(0x21, 0x11, body, n, -1);
	{
		char uid[129];
		memset(uid, 'u', 128);
		uid[128] = '\0';
		w = v2_inet;
		w.used = in.n;
		w.unique_id = uid;
		expect(&in, PROXY_ACCEPT_V2, &w, "v2 UNIQUE_ID 128");
	}

	/* the longest header we accept */
	n = inet_block(body);
	memset(pad, 0, sizeof(pad));
	n += tlv(body + n, 0x04, pad, PROXY_V2_MAX_LEN - 12 - 3);
	in = v2(0x21, 0x11, body, n, -1);
	w = v2_inet;
	w.used = in.n;
	assert_int_equal(in.n, PROXY_BUF_MAX);
	expect(&in, PROXY_ACCEPT_V2, &w, "v2 at our bound");
}

static void
v2_local_unspec_unix(void **state)
{
	uint8_t body[300] = { 0 };
	struct input in;
	struct want w = { .status = PROXY_DONE, .version = 2, .command = PROXY_CMD_LOCAL };

	(void)state;
	/* LOCAL, empty: a balancer's health check */
	in = v2(0x20, 0x00, body, 0, -1);
	w.used = in.n;
	expect(&in, PROXY_ACCEPT_V2, &w, "v2 LOCAL");
	/* LOCAL still skips its length, whatever the block holds */
	in = v2(0x20, 0x11, body, 12, -1);
	w.used = in.n;
	expect(&in, PROXY_ACCEPT_V2, &w, "v2 LOCAL with a block");
	/* PROXY UNSPEC and UNIX: no address to act on */
	in = v2(0x21, 0x00, body, 0, -1);
	w = (struct want){ .status = PROXY_DONE, .used = in.n, .version = 2, .command = PROXY_CMD_PROXY };
	expect(&in, PROXY_ACCEPT_V2, &w, "v2 UNSPEC");
	in = v2(0x21, 0x31, body, 216, -1);
	w.used = in.n;
	expect(&in, PROXY_ACCEPT_V2, &w, "v2 UNIX");
}

static void
v2_bad(void **state)
{
	uint8_t body[700] = { 0 };
	size_t n;
	struct input in;
	const struct want bad = { .status = PROXY_ERROR, .error = PROXY_ERR_BAD };
	const struct want toolong = { .status = PROXY_ERROR, .error = PROXY_ERR_TOO_LONG };
	const struct want crc = { .status = PROXY_ERROR, .error = PROXY_ERR_CRC };
	char how[64];

	(void)state;
	n = inet_block(body);
	/* truncated or wrong signature */
	for (size_t i = 1; i < 12; i++) {
		in = v2(0x21, 0x11, body, n, -1);
		in.b[i] ^= 0x40;
		snprintf(how, sizeof(how), "signature byte %zu", i);
		expect(&in, PROXY_ACCEPT_V2, &bad, how);
	}
	in = v2(0x21, 0x11, body, n, -1);
	memcpy(in.b + 5, "hello", 5);  /* the signature stops short: other bytes follow */
	expect(&in, PROXY_ACCEPT_V2, &bad, "truncated signature");
	/* version != 2 */
	in = v2(0x11, 0x11, body, n, -1);
	expect(&in, PROXY_ACCEPT_V2, &bad, "version 1");
	in = v2(0x31, 0x11, body, n, -1);
	expect(&in, PROXY_ACCEPT_V2, &bad, "version 3");
	/* command 2..15 */
	for (unsigned cmd = 2; cmd < 16; cmd++) {
		in = v2((uint8_t)(0x20 | cmd), 0x11, body, n, -1);
		snprintf(how, sizeof(how), "command %u", cmd);
		expect(&in, PROXY_ACCEPT_V2, &bad, how);
	}
	/* family or transport out of range */
	{
		const uint8_t fams[] = { 0x01, 0x02, 0x10, 0x13, 0x20, 0x23, 0x30, 0x33, 0x41, 0xf1, 0x1f };
		for (size_t i = 0; i < sizeof(fams); i++) {
			in = v2(0x21, fams[i], body, 216, -1);
			snprintf(how, sizeof(how), "family 0x%02x", fams[i]);
			expect(&in, PROXY_ACCEPT_V2, &bad, how);
		}
	}
	/* length shorter than the address block */
	in = v2(0x21, 0x11, body, 11, -1);
	expect(&in, PROXY_ACCEPT_V2, &bad, "INET len 11");
	in = v2(0x21, 0x21, body, 35, -1);
	expect(&in, PROXY_ACCEPT_V2, &bad, "INET6 len 35");
	in = v2(0x21, 0x31, body, 215, -1);
	expect(&in, PROXY_ACCEPT_V2, &bad, "UNIX len 215");
	/* a TLV past the end */
	n = inet_block(body);
	n += tlv(body + n, 0x02, "example.com", 11);
	in = v2(0x21, 0x11, body, n - 1, -1);
	expect(&in, PROXY_ACCEPT_V2, &bad, "TLV past the end");
	/* a trailing 1 or 2 byte tail */
	n = inet_block(body);
	body[n] = 0x04;
	body[n + 1] = 0;
	in = v2(0x21, 0x11, body, n + 1, -1);
	expect(&in, PROXY_ACCEPT_V2, &bad, "1-byte tail");
	in = v2(0x21, 0x11, body, n + 2, -1);
	expect(&in, PROXY_ACCEPT_V2, &bad, "2-byte tail");
	/* bad CRC32C, and a CRC TLV of the wrong length, and two of them */
	n = inet_block(body);
	n += tlv(body + n, 0x03, "\0\0\0\0", 4);
	in = v2(0x21, 0x11, body, n, -1);
	crc_fix(&in, in.n - 4);
	in.b[in.n - 1] ^= 1;
	expect(&in, PROXY_ACCEPT_V2, &crc, "bad CRC32C");
	in.b[in.n - 1] ^= 1;
	in.b[20] ^= 1;  /* the value right, an address byte changed */
	expect(&in, PROXY_ACCEPT_V2, &crc, "changed after CRC32C");
	for (size_t len = 0; len < 8; len++) {
		if (len == 4)
			continue;
		n = inet_block(body);
		n += tlv(body + n, 0x03, "\0\0\0\0\0\0\0\0", len);
		in = v2(0x21, 0x11, body, n, -1);
		snprintf(how, sizeof(how), "CRC TLV of %zu bytes", len);
		expect(&in, PROXY_ACCEPT_V2, &bad, how);
	}
	n = inet_block(body);
	n += tlv(body + n, 0x03, "\0\0\0\0", 4);
	n += tlv(body + n, 0x03, "\0\0\0\0", 4);
	in = v2(0x21, 0x11, body, n, -1);
	expect(&in, PROXY_ACCEPT_V2, &bad, "two CRC TLVs");
	/* UNIQUE_ID over 128 bytes */
	n = inet_block(body);
	n += tlv(body + n, 0x05, body + 400, 129);
	in = v2(0x21, 0x11, body, n, -1);
	expect(&in, PROXY_ACCEPT_V2, &bad, "UNIQUE_ID 129");
	/* longer than our bound, and the most a length can say */
	in = v2(0x21, 0x11, body, 0, PROXY_V2_MAX_LEN + 1);
	expect(&in, PROXY_ACCEPT_V2, &toolong, "len past our bound");
	in = v2(0x21, 0x11, body, 0, 0xffff);
	expect(&in, PROXY_ACCEPT_V2, &toolong, "len 65535");
}

static void
two_v2_headers_back_to_back(void **state)
{
	uint8_t body[64];
	size_t n = inet_block(body);
	struct input one = v2(0x21, 0x11, body, n, -1), in = one;
	struct want w = v2_inet;

	(void)state;
	memcpy(in.b + in.n, one.b, one.n);
	in.n += one.n;
	w.used = one.n;
	expect(&in, PROXY_ACCEPT_V2, &w, "v2 twice");
}

static void
version_not_accepted(void **state)
{
	uint8_t body[64];
	struct input v2in = v2(0x21, 0x11, body, inet_block(body), -1);
	struct input v1in = text("PROXY TCP4 192.0.2.1 192.0.2.2 1 2\r\n");
	const struct want bad = { .status = PROXY_ERROR, .error = PROXY_ERR_BAD };

	(void)state;
	expect(&v2in, PROXY_ACCEPT_V1, &bad, "v2 on a v1 listener");
	expect(&v1in, PROXY_ACCEPT_V2, &bad, "v1 on a v2 listener");
}

static void
refused_stays_refused(void **state)
{
	struct proxy_parser p;
	struct proxy_result r;
	size_t used;

	(void)state;
	proxy_init(&p, PROXY_ACCEPT_ANY);
	assert_int_equal(proxy_feed(&p, "X", 1, &used, &r), PROXY_ERROR);
	assert_int_equal(proxy_feed(&p, "PROXY UNKNOWN\r\n", 15, &used, &r), PROXY_ERROR);
	assert_int_equal(used, 0);
	assert_string_equal(proxy_error_name(p.error), "bad");
	proxy_init(&p, PROXY_ACCEPT_ANY);
	assert_int_equal(proxy_feed(&p, "", 0, &used, &r), PROXY_NEED_MORE);
	assert_int_equal(proxy_feed(&p, "PROXY UNKNOWN\r\n", 15, &used, &r), PROXY_DONE);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(v1_table),
		cmocka_unit_test(v1_107_against_108),
		cmocka_unit_test(crc32c_known_answer),
		cmocka_unit_test(v2_valid),
		cmocka_unit_test(v2_local_unspec_unix),
		cmocka_unit_test(v2_bad),
		cmocka_unit_test(two_v2_headers_back_to_back),
		cmocka_unit_test(version_not_accepted),
		cmocka_unit_test(refused_stays_refused),
	};
	return cmocka_run_group_tests_name("proxy", tests, NULL, NULL);
}
