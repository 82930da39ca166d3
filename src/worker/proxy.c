#include "worker/proxy.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

enum { ST_PARSING, ST_DONE, ST_ERROR };

/* proxy_parser.version while the first byte is unknown, and the v2 signature. */
static const uint8_t v2_sig[12] = {
	0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a,
};
static const char v1_sig[] = "PROXY ";
#define V1_SIG_LEN 6

/* v2 TLV types we read; the others are skipped, as the spec asks. */
#define PP2_TYPE_AUTHORITY 0x02
#define PP2_TYPE_CRC32C    0x03
#define PP2_TYPE_UNIQUE_ID 0x05

/* CRC32C, reflected polynomial 0x82f63b78, one table lookup a byte. */
static const uint32_t crc32c_table[256] = {
	0x00000000, 0xf26b8303, 0xe13b70f7, 0x1350f3f4, 0xc79a971f, 0x35f1141c,
	0x26a1e7e8, 0xd4ca64eb, 0x8ad958cf, 0x78b2dbcc, 0x6be22838, 0x9989ab3b,
	0x4d43cfd0, 0xbf284cd3, 0xac78bf27, 0x5e133c24, 0x105ec76f, 0xe235446c,
	0xf165b798, 0x030e349b, 0xd7c45070, 0x25afd373, 0x36ff2087, 0xc494a384,
	0x9a879fa0, 0x68ec1ca3, 0x7bbcef57, 0x89d76c54, 0x5d1d08bf, 0xaf768bbc,
	0xbc267848, 0x4e4dfb4b, 0x20bd8ede, 0xd2d60ddd, 0xc186fe29, 0x33ed7d2a,
	0xe72719c1, 0x154c9ac2, 0x061c6936, 0xf477ea35, 0xaa64d611, 0x580f5512,
	0x4b5fa6e6, 0xb93425e5, 0x6dfe410e, 0x9f95c20d, 0x8cc531f9, 0x7eaeb2fa,
	0x30e349b1, 0xc288cab2, 0xd1d83946, 0x23b3ba45, 0xf779deae, 0x05125dad,
	0x1642ae59, 0xe4292d5a, 0xba3a117e, 0x4851927d, 0x5b016189, 0xa96ae28a,
	0x7da08661, 0x8fcb0562, 0x9c9bf696, 0x6ef07595, 0x417b1dbc, 0xb3109ebf,
	0xa0406d4b, 0x522bee48, 0x86e18aa3, 0x748a09a0, 0x67dafa54, 0x95b17957,
	0xcba24573, 0x39c9c670, 0x2a993584, 0xd8f2b687, 0x0c38d26c, 0xfe53516f,
	0xed03a29b, 0x1f682198, 0x5125dad3, 0xa34e59d0, 0xb01eaa24, 0x42752927,
	0x96bf4dcc, 0x64d4cecf, 0x77843d3b, 0x85efbe38, 0xdbfc821c, 0x2997011f,
	0x3ac7f2eb, 0xc8ac71e8, 0x1c661503, 0xee0d9600, 0xfd5d65f4, 0x0f36e6f7,
	0x61c69362, 0x93ad1061, 0x80fde395, 0x72966096, 0xa65c047d, 0x5437877e,
	0x4767748a, 0xb50cf789, 0xeb1fcbad, 0x197448ae, 0x0a24bb5a, 0xf84f3859,
	0x2c855cb2, 0xdeeedfb1, 0xcdbe2c45, 0x3fd5af46, 0x7198540d, 0x83f3d70e,
	0x90a324fa, 0x62c8a7f9, 0xb602c312, 0x44694011, 0x5739b3e5, 0xa55230e6,
	0xfb410cc2, 0x092a8fc1, 0x1a7a7c35, 0xe811ff36, 0x3cdb9bdd, 0xceb018de,
	0xdde0eb2a, 0x2f8b6829, 0x82f63b78, 0x709db87b, 0x63cd4b8f, 0x91a6c88c,
	0x456cac67, 0xb7072f64, 0xa457dc90, 0x563c5f93, 0x082f63b7, 0xfa44e0b4,
	0xe9141340, 0x1b7f9043, 0xcfb5f4a8, 0x3dde77ab, 0x2e8e845f, 0xdce5075c,
	0x92a8fc17, 0x60c37f14, 0x73938ce0, 0x81f80fe3, 0x55326b08, 0xa759e80b,
	0xb4091bff, 0x466298fc, 0x1871a4d8, 0xea1a27db, 0xf94ad42f, 0x0b21572c,
	0xdfeb33c7, 0x2d80b0c4, 0x3ed04330, 0xccbbc033, 0xa24bb5a6, 0x502036a5,
	0x4370c551, 0xb11b4652, 0x65d122b9, 0x97baa1ba, 0x84ea524e, 0x7681d14d,
	0x2892ed69, 0xdaf96e6a, 0xc9a99d9e, 0x3bc21e9d, 0xef087a76, 0x1d63f975,
	0x0e330a81, 0xfc588982, 0xb21572c9, 0x407ef1ca, 0x532e023e, 0xa145813d,
	0x758fe5d6, 0x87e466d5, 0x94b49521, 0x66df1622, 0x38cc2a06, 0xcaa7a905,
	0xd9f75af1, 0x2b9cd9f2, 0xff56bd19, 0x0d3d3e1a, 0x1e6dcdee, 0xec064eed,
	0xc38d26c4, 0x31e6a5c7, 0x22b65633, 0xd0ddd530, 0x0417b1db, 0xf67c32d8,
	0xe52cc12c, 0x1747422f, 0x49547e0b, 0xbb3ffd08, 0xa86f0efc, 0x5a048dff,
	0x8ecee914, 0x7ca56a17, 0x6ff599e3, 0x9d9e1ae0, 0xd3d3e1ab, 0x21b862a8,
	0x32e8915c, 0xc083125f, 0x144976b4, 0xe622f5b7, 0xf5720643, 0x07198540,
	0x590ab964, 0xab613a67, 0xb831c993, 0x4a5a4a90, 0x9e902e7b, 0x6cfbad78,
	0x7fab5e8c, 0x8dc0dd8f, 0xe330a81a, 0x115b2b19, 0x020bd8ed, 0xf0605bee,
	0x24aa3f05, 0xd6c1bc06, 0xc5914ff2, 0x37faccf1, 0x69e9f0d5, 0x9b8273d6,
	0x88d28022, 0x7ab90321, 0xae7367ca, 0x5c18e4c9, 0x4f48173d, 0xbd23943e,
	0xf36e6f75, 0x0105ec76, 0x12551f82, 0xe03e9c81, 0x34f4f86a, 0xc69f7b69,
	0xd5cf889d, 0x27a40b9e, 0x79b737ba, 0x8bdcb4b9, 0x988c474d, 0x6ae7c44e,
	0xbe2da0a5, 0x4c4623a6, 0x5f16d052, 0xad7d5351,
};

uint32_t
proxy_crc32c(uint32_t crc, const void *data, size_t n)
{
	const uint8_t *b = data;

	crc = ~crc;
	while (n-- > 0)
		crc = crc32c_table[(crc ^ *b++) & 0xff] ^ (crc >> 8);
	return ~crc;
}

const char *
proxy_error_name(int error)
{
	switch (error) {
	case PROXY_ERR_BAD: return "bad";
	case PROXY_ERR_TOO_LONG: return "too long";
	case PROXY_ERR_CRC: return "crc";
	default: return "none";
	}
}

void
proxy_init(struct proxy_parser *p, enum proxy_accept accept)
{
	p->len = 0;
	p->accept = (uint8_t)accept;
	p->version = 0;
	p->error = PROXY_ERR_NONE;
	p->state = ST_PARSING;
}

static enum proxy_status
fail(struct proxy_parser *p, enum proxy_error why)
{
	p->error = (uint8_t)why;
	p->state = ST_ERROR;
	return PROXY_ERROR;
}

/* ---- v1 ---- */

/* A decimal number of 1..maxdigits digits, no leading zero, at most max. */
static int
v1_number(const char *s, size_t n, size_t maxdigits, unsigned max, unsigned *out)
{
	unsigned v = 0;

	if (n == 0 || n > maxdigits || (s[0] == '0' && n > 1))
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (unsigned)(s[i] - '0');
	}
	if (v > max)
		return -1;
	*out = v;
	return 0;
}

/* Dotted-quad IPv4, strictly: four octets, no leading zeros. */
static int
v1_ipv4(const char *s, size_t n, struct in_addr *out)
{
	uint8_t a[4];
	size_t start = 0;
	int k = 0;

	for (size_t i = 0; i <= n; i++) {
		unsigned v;

		if (i < n && s[i] != '.')
			continue;
		if (k == 4 || v1_number(s + start, i - start, 3, 255, &v) == -1)
			return -1;
		a[k++] = (uint8_t)v;
		start = i + 1;
	}
	if (k != 4)
		return -1;
	memcpy(&out->s_addr, a, 4);
	return 0;
}

static int
v1_ipv6(const char *s, size_t n, struct in6_addr *out)
{
	char text[INET6_ADDRSTRLEN];

	if (n == 0 || n >= sizeof(text))
		return -1;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f') ||
		    (s[i] >= 'A' && s[i] <= 'F') || s[i] == ':' || s[i] == '.'))
			return -1;
	memcpy(text, s, n);
	text[n] = '\0';
	return inet_pton(AF_INET6, text, out) == 1 ? 0 : -1;
}

/* One address of the family named, into ss with port 0 for now. */
static int
v1_addr(int family, const char *s, size_t n, struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof(*ss));
	ss->ss_family = (sa_family_t)family;
	if (family == AF_INET)
		return v1_ipv4(s, n, &((struct sockaddr_in *)ss)->sin_addr);
	return v1_ipv6(s, n, &((struct sockaddr_in6 *)ss)->sin6_addr);
}

static void
set_port(struct sockaddr_storage *ss, unsigned port)
{
	if (ss->ss_family == AF_INET)
		((struct sockaddr_in *)ss)->sin_port = htons((uint16_t)port);
	else
		((struct sockaddr_in6 *)ss)->sin6_port = htons((uint16_t)port);
}

/* Splits LINE (n bytes) at single spaces into at most max fields; -1 on an empty field. */
static int
v1_fields(const char *line, size_t n, const char *f[], size_t flen[], int max)
{
	size_t start = 0;
	int k = 0;

	for (size_t i = 0; i <= n; i++) {
		if (i < n && line[i] != ' ')
			continue;
		if (i == start || k == max)
			return -1;
		f[k] = line + start;
		flen[k++] = i - start;
		start = i + 1;
	}
	return k;
}

/* The whole line, CRLF excluded, "PROXY " included. */
static enum proxy_status
v1_parse(struct proxy_parser *p, size_t n, struct proxy_result *r)
{
	const char *line = (const char *)p->buf + V1_SIG_LEN, *f[5];
	size_t flen[5];
	unsigned sport, dport;
	int family;

	n -= V1_SIG_LEN;
	memset(r, 0, sizeof(*r));
	r->version = 1;
	r->command = PROXY_CMD_PROXY;
	/* UNKNOWN: the rest of the line is the sender's business, and ignored. */
	if (n >= 7 && memcmp(line, "UNKNOWN", 7) == 0 && (n == 7 || line[7] == ' '))
		return PROXY_DONE;
	if (v1_fields(line, n, f, flen, 5) != 5 || flen[0] != 4)
		return fail(p, PROXY_ERR_BAD);
	if (memcmp(f[0], "TCP4", 4) == 0)
		family = AF_INET;
	else if (memcmp(f[0], "TCP6", 4) == 0)
		family = AF_INET6;
	else
		return fail(p, PROXY_ERR_BAD);
	if (v1_addr(family, f[1], flen[1], &r->src) == -1 ||
	    v1_addr(family, f[2], flen[2], &r->dst) == -1 ||
	    v1_number(f[3], flen[3], 5, 65535, &sport) == -1 ||
	    v1_number(f[4], flen[4], 5, 65535, &dport) == -1)
		return fail(p, PROXY_ERR_BAD);
	set_port(&r->src, sport);
	set_port(&r->dst, dport);
	r->has_addr = true;
	return PROXY_DONE;
}

/*
 * Takes bytes up to and including the LF. The signature is checked as it
 * arrives, so that a client that is not a balancer is refused at its first
 * byte, not at the timeout.
 */
static enum proxy_status
v1_feed(struct proxy_parser *p, const uint8_t *d, size_t n, size_t *used,
    struct proxy_result *r)
{
	for (size_t i = 0; i < n; i++) {
		uint8_t c = d[i];

		if (p->len < V1_SIG_LEN && c != (uint8_t)v1_sig[p->len])
			return fail(p, PROXY_ERR_BAD);
		if (p->len > 0 && p->buf[p->len - 1] == '\r' && c != '\n')
			return fail(p, PROXY_ERR_BAD);  /* a CR alone */
		p->buf[p->len++] = c;
		if (c == '\n') {
			if (p->len < 2 || p->buf[p->len - 2] != '\r')
				return fail(p, PROXY_ERR_BAD);  /* an LF alone */
			*used = i + 1;
			if (v1_parse(p, p->len - 2, r) != PROXY_DONE)
				return PROXY_ERROR;
			p->state = ST_DONE;
			return PROXY_DONE;
		}
		if (p->len == PROXY_V1_MAX)
			return fail(p, PROXY_ERR_TOO_LONG);
	}
	*used = n;
	return PROXY_NEED_MORE;
}

/* ---- v2 ---- */

static unsigned
be16(const uint8_t *b)
{
	return (unsigned)b[0] << 8 | b[1];
}

/* The seven family/transport bytes the spec defines; the address block each carries. */
static int
v2_block_len(uint8_t fam)
{
	switch (fam) {
	case 0x00: return 0;                  /* UNSPEC */
	case 0x11: case 0x12: return 12;      /* INET, STREAM or DGRAM */
	case 0x21: case 0x22: return 36;      /* INET6 */
	case 0x31: case 0x32: return 216;     /* UNIX */
	default: return -1;
	}
}

/* The fixed 16 bytes, once they are all in. */
static enum proxy_status
v2_check_fixed(struct proxy_parser *p)
{
	uint8_t ver_cmd = p->buf[12];

	if (ver_cmd >> 4 != 2 || (ver_cmd & 0x0f) > PROXY_CMD_PROXY)
		return fail(p, PROXY_ERR_BAD);
	/* LOCAL: the family "is ignored", so it is not checked either. */
	if ((ver_cmd & 0x0f) == PROXY_CMD_PROXY && v2_block_len(p->buf[13]) < 0)
		return fail(p, PROXY_ERR_BAD);
	if (be16(p->buf + 14) > PROXY_V2_MAX_LEN)
		return fail(p, PROXY_ERR_TOO_LONG);
	return PROXY_NEED_MORE;
}

static void
v2_addresses(const uint8_t *b, uint8_t fam, struct proxy_result *r)
{
	if (fam >> 4 == 1) {
		struct sockaddr_in *s = (struct sockaddr_in *)&r->src, *d = (struct sockaddr_in *)&r->dst;
		s->sin_family = d->sin_family = AF_INET;
		memcpy(&s->sin_addr, b, 4);
		memcpy(&d->sin_addr, b + 4, 4);
		memcpy(&s->sin_port, b + 8, 2);
		memcpy(&d->sin_port, b + 10, 2);
		r->has_addr = true;
	} else if (fam >> 4 == 2) {
		struct sockaddr_in6 *s = (struct sockaddr_in6 *)&r->src, *d = (struct sockaddr_in6 *)&r->dst;
		s->sin6_family = d->sin6_family = AF_INET6;
		memcpy(&s->sin6_addr, b, 16);
		memcpy(&d->sin6_addr, b + 16, 16);
		memcpy(&s->sin6_port, b + 32, 2);
		memcpy(&d->sin6_port, b + 34, 2);
		r->has_addr = true;
	}
	/* UNSPEC and UNIX: no client address we could act on; the socket's are kept. */
}

/* One TLV of type T and value V (n bytes); -1 when it breaks the rules. */
static int
v2_tlv(uint8_t t, const uint8_t *v, unsigned n, struct proxy_result *r, const uint8_t **crc)
{
	switch (t) {
	case PP2_TYPE_AUTHORITY:
		r->authority_len = (uint16_t)(n > PROXY_AUTHORITY_MAX ? PROXY_AUTHORITY_MAX : n);
		memcpy(r->authority, v, r->authority_len);
		return 0;
	case PP2_TYPE_CRC32C:
		if (n != 4 || *crc != NULL)
			return -1;
		*crc = v;
		return 0;
	case PP2_TYPE_UNIQUE_ID:
		if (n > PROXY_UNIQUE_ID_MAX)
			return -1;
		r->unique_id_len = (uint8_t)n;
		memcpy(r->unique_id, v, n);
		return 0;
	default:
		return 0;
	}
}

/* The checksum is over the whole header with its own field zeroed. */
static bool
v2_crc_ok(struct proxy_parser *p, uint8_t *field)
{
	uint8_t saved[4];
	uint32_t want, got;

	memcpy(saved, field, 4);
	want = (uint32_t)saved[0] << 24 | (uint32_t)saved[1] << 16 | (uint32_t)saved[2] << 8 | saved[3];
	memset(field, 0, 4);
	got = proxy_crc32c(0, p->buf, p->len);
	memcpy(field, saved, 4);
	return got == want;
}

/* The whole header is in buf. */
static enum proxy_status
v2_parse(struct proxy_parser *p, struct proxy_result *r)
{
	uint8_t fam = p->buf[13];
	const uint8_t *crc = NULL;
	unsigned len = be16(p->buf + 14), at;
	int block;

	memset(r, 0, sizeof(*r));
	r->version = 2;
	r->command = p->buf[12] & 0x0f;
	if (r->command == PROXY_CMD_LOCAL)
		return PROXY_DONE;  /* its block is skipped whole */
	block = v2_block_len(fam);
	if ((unsigned)block > len)
		return fail(p, PROXY_ERR_BAD);
	v2_addresses(p->buf + PROXY_V2_HEADER, fam, r);
	for (at = PROXY_V2_HEADER + (unsigned)block; at < p->len;) {
		unsigned n;

		if (p->len - at < 3)
			return fail(p, PROXY_ERR_BAD);  /* a 1 or 2 byte tail */
		n = be16(p->buf + at + 1);
		if (n > p->len - at - 3 || v2_tlv(p->buf[at], p->buf + at + 3, n, r, &crc) == -1)
			return fail(p, PROXY_ERR_BAD);
		at += 3 + n;
	}
	if (crc != NULL && !v2_crc_ok(p, p->buf + (crc - p->buf)))
		return fail(p, PROXY_ERR_CRC);
	return PROXY_DONE;
}

static enum proxy_status
v2_feed(struct proxy_parser *p, const uint8_t *d, size_t n, size_t *used,
    struct proxy_result *r)
{
	size_t i = 0;

	while (p->len < PROXY_V2_HEADER && i < n) {
		if (p->len < sizeof(v2_sig) && d[i] != v2_sig[p->len])
			return fail(p, PROXY_ERR_BAD);
		p->buf[p->len++] = d[i++];
		if (p->len == PROXY_V2_HEADER && v2_check_fixed(p) == PROXY_ERROR)
			return PROXY_ERROR;
	}
	if (p->len >= PROXY_V2_HEADER) {
		size_t total = PROXY_V2_HEADER + be16(p->buf + 14), take = total - p->len;

		if (take > n - i)
			take = n - i;
		memcpy(p->buf + p->len, d + i, take);
		p->len = (uint16_t)(p->len + take);
		i += take;
		if (p->len == total) {
			*used = i;
			if (v2_parse(p, r) != PROXY_DONE)
				return PROXY_ERROR;
			p->state = ST_DONE;
			return PROXY_DONE;
		}
	}
	*used = n;
	return PROXY_NEED_MORE;
}

enum proxy_status
proxy_feed(struct proxy_parser *p, const void *data, size_t n, size_t *used,
    struct proxy_result *r)
{
	const uint8_t *d = data;

	*used = 0;
	if (p->state == ST_DONE)
		return PROXY_DONE;
	if (p->state == ST_ERROR)
		return PROXY_ERROR;
	if (n == 0)
		return PROXY_NEED_MORE;
	if (p->version == 0) {
		if (d[0] == (uint8_t)v1_sig[0] && (p->accept & PROXY_ACCEPT_V1))
			p->version = 1;
		else if (d[0] == v2_sig[0] && (p->accept & PROXY_ACCEPT_V2))
			p->version = 2;
		else
			return fail(p, PROXY_ERR_BAD);
	}
	return p->version == 1 ? v1_feed(p, d, n, used, r) : v2_feed(p, d, n, used, r);
}
