#include "worker/echo.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "common/sock.h"

#define ONES 0x0101010101010101ULL

/*
 * Eight bytes at a time in one 64-bit word (SWAR): gcc 12 at -O2 leaves the
 * byte loop scalar, and the transform is most of a request's instructions.
 * Each byte's low seven bits plus a bias sets bit 7 when the byte is >= 'a'
 * (or > 'z'); no sum can carry into the next byte. Bytes >= 0x80 are masked
 * out; bit 7 shifted down by two is 0x20, the case bit.
 */
static inline uint64_t
upper8(uint64_t x)
{
	uint64_t low7 = x & (0x7f * ONES);
	uint64_t ge_a = low7 + (0x80 - 'a') * ONES;
	uint64_t gt_z = low7 + (0x80 - 'z' - 1) * ONES;
	uint64_t is_lower = ge_a & ~gt_z & ~x & (0x80 * ONES);

	return x ^ (is_lower >> 2);
}

static inline unsigned char
upper1(unsigned char c)
{
	return c ^ (unsigned char)(((unsigned char)(c - 'a') < 26) << 5);
}

/*
 * Whole 32-byte blocks first: an inner loop of constant trip count is one
 * gcc vectorises even at -O2 (SSE2 on x86-64, two 16-byte steps a block),
 * which a loop of unknown length is not. Then words, then bytes.
 */
void
echo_upper(unsigned char *buf, size_t len)
{
	size_t i = 0;

	for (; i + 32 <= len; i += 32)
		for (size_t j = 0; j < 32; j++)
			buf[i + j] = upper1(buf[i + j]);
	for (; i + 8 <= len; i += 8) {
		uint64_t word;
		memcpy(&word, buf + i, 8);  /* any alignment; compiles to one load */
		word = upper8(word);
		memcpy(buf + i, &word, 8);
	}
	for (; i < len; i++)
		buf[i] = upper1(buf[i]);
}

/* Appends " KEY=VALUE", VALUE percent-escaped so that the line stays one line of printable words. */
static size_t
whoami_bytes(char *buf, size_t at, size_t len, const char *key, const void *v, size_t n)
{
	static const char hex[] = "0123456789ABCDEF";
	const unsigned char *b = v;
	int k = snprintf(buf + at, len - at, " %s=", key);

	if (k < 0 || (size_t)k >= len - at)
		return at;
	at += (size_t)k;
	for (size_t i = 0; i < n && at + 4 < len; i++) {
		if (b[i] > 0x20 && b[i] < 0x7f && b[i] != '%') {
			buf[at++] = (char)b[i];
			continue;
		}
		buf[at++] = '%';
		buf[at++] = hex[b[i] >> 4];
		buf[at++] = hex[b[i] & 0x0f];
	}
	buf[at] = '\0';
	return at;
}

static size_t
whoami_addr(char *buf, size_t at, size_t len, const char *key, const struct sockaddr_storage *ss)
{
	char text[64];

	sock_addr_format(ss, text, sizeof(text));
	return whoami_bytes(buf, at, len, key, text, strlen(text));
}

size_t
echo_whoami(char *buf, size_t len, const struct echo_whoami *who)
{
	size_t at = 0;
	char num[64];

	at = whoami_bytes(buf, at, len, "instance", who->instance, strlen(who->instance));
	at = whoami_bytes(buf, at, len, "host", who->host, strlen(who->host));
	snprintf(num, sizeof(num), "%ld", who->pid);
	at = whoami_bytes(buf, at, len, "pid", num, strlen(num));
	snprintf(num, sizeof(num), "%d", who->slot);
	at = whoami_bytes(buf, at, len, "worker", num, strlen(num));
	snprintf(num, sizeof(num), "%u", who->generation);
	at = whoami_bytes(buf, at, len, "generation", num, strlen(num));
	at = whoami_addr(buf, at, len, "client", who->client);
	at = whoami_addr(buf, at, len, "server", who->server);
	if (who->proxy_version != 0) {
		at = whoami_bytes(buf, at, len, "proxy", who->proxy_version == 1 ? "v1" : "v2", 2);
		if (who->balancer != NULL)
			at = whoami_addr(buf, at, len, "balancer", who->balancer);
		if (who->authority_len != 0)
			at = whoami_bytes(buf, at, len, "authority", who->authority, who->authority_len);
		if (who->unique_id_len != 0)
			at = whoami_bytes(buf, at, len, "unique_id", who->unique_id, who->unique_id_len);
	}
	if (who->tls != NULL) {
		at = whoami_bytes(buf, at, len, "tls", who->tls, strlen(who->tls));
		if (who->sni != NULL)
			at = whoami_bytes(buf, at, len, "sni", who->sni, strlen(who->sni));
		if (who->alpn_len != 0)
			at = whoami_bytes(buf, at, len, "alpn", who->alpn, who->alpn_len);
	}
	/* The first key's leading space goes; the newline ends the line. */
	memmove(buf, buf + 1, at);
	at--;
	buf[at++] = '\n';
	buf[at] = '\0';
	return at;
}
