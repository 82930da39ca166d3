#include "worker/outbuf.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int
outbuf_append(struct outbuf *b, const void *src, size_t n)
{
	if (n > outbuf_room(b)) {
		errno = ENOBUFS;
		return -1;
	}
	if (b->data == NULL) {
		if ((b->data = malloc(OUTBUF_CAP)) == NULL)
			return -1;
		b->off = 0;
	}
	/* Slide the unsent bytes to the front only when the tail has no room. */
	if (b->off + b->len + n > OUTBUF_CAP) {
		memmove(b->data, b->data + b->off, b->len);
		b->off = 0;
	}
	memcpy(b->data + b->off + b->len, src, n);
	b->len += (uint32_t)n;
	return 0;
}

void
outbuf_consume(struct outbuf *b, size_t n)
{
	b->off += (uint32_t)n;
	b->len -= (uint32_t)n;
	if (b->len == 0)
		outbuf_free(b);
}

void
outbuf_free(struct outbuf *b)
{
	free(b->data);
	b->data = NULL;
	b->off = 0;
	b->len = 0;
}
