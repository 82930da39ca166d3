#include "worker/echo.h"

/*
 * Branch-free so the compiler vectorises it: a byte in 'a'..'z' loses bit
 * 0x20, and the unsigned compare keeps every other byte, 0x80-0xff included,
 * out of the range.
 */
void
echo_upper(unsigned char *buf, size_t len)
{
	for (size_t i = 0; i < len; i++)
		buf[i] ^= (unsigned char)(((unsigned char)(buf[i] - 'a') < 26) << 5);
}
