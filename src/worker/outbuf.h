/*
 * outbuf: the bytes a connection owes its client and could not write yet.
 *
 * Empty costs nothing: the memory is allocated only when a write falls short
 * and freed as soon as the client has taken everything. It holds at most
 * OUTBUF_CAP bytes; a full buffer is the connection's signal to stop reading
 * from a client that does not read (backpressure).
 */
#ifndef EM_OUTBUF_H
#define EM_OUTBUF_H

#include <stddef.h>
#include <stdint.h>

#define OUTBUF_CAP (64 * 1024)

struct outbuf {
	unsigned char *data;  /* NULL while empty */
	uint32_t off;         /* first unsent byte */
	uint32_t len;         /* unsent bytes */
};

/* How many more bytes fit. */
static inline size_t
outbuf_room(const struct outbuf *b)
{
	return OUTBUF_CAP - b->len;
}

/* Appends n bytes (n <= outbuf_room). Returns 0, or -1 with errno ENOMEM/ENOBUFS. */
int outbuf_append(struct outbuf *b, const void *src, size_t n);

/* Drops the first n unsent bytes (n <= len); frees the memory once empty. */
void outbuf_consume(struct outbuf *b, size_t n);

/* Frees whatever is held. */
void outbuf_free(struct outbuf *b);

#endif
