#include "worker/echo.h"

#include <stdint.h>
#include <string.h>

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
