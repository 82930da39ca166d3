/*
 * reqconn_pair.h: a struct reqconn (master/reqconn.h) over a socketpair, for
 * the unit tests of the master's request sockets (control, /metrics). The
 * test writes what a client would on one end, the code under test reads the
 * other; after a reply, the test reads what the client would get, up to EOF.
 * Include it after cmocka.h: it fails the test through cmocka's asserts.
 */
#ifndef EM_TESTS_REQCONN_PAIR_H
#define EM_TESTS_REQCONN_PAIR_H

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "master/reqconn.h"

/* The master's end of a fresh connection; the client's end in *peer. */
static inline struct reqconn *
conn_open(int *peer)
{
	struct reqconn *c = calloc(1, sizeof(*c));
	struct timeval tv = { .tv_sec = 5 };
	int sv[2];

	assert_non_null(c);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	/* Non-blocking on the master's side, as reqconn_accept makes it. */
	assert_int_equal(fcntl(sv[0], F_SETFL, O_NONBLOCK), 0);
	/* Bounds every read of the answer below. */
	assert_int_equal(setsockopt(sv[1], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
	c->fd = sv[0];
	*peer = sv[1];
	return c;
}

/* Closes both ends of a connection that got no reply (a reply frees c). */
static inline void
conn_free(struct reqconn *c, int peer)
{
	close(c->fd);
	free(c);
	close(peer);
}

static inline void
client_send(int peer, const char *s)
{
	assert_int_equal(write(peer, s, strlen(s)), (ssize_t)strlen(s));
}

/* Everything the client receives up to EOF, malloc'd and NUL-terminated. */
static inline char *
client_receive(int peer)
{
	size_t len = 0, cap = 65536;
	char *buf = malloc(cap);
	ssize_t n;

	assert_non_null(buf);
	while ((n = read(peer, buf + len, cap - 1 - len)) > 0) {
		len += (size_t)n;
		assert_true(len < cap - 1);
	}
	assert_int_equal(n, 0);  /* EOF, not the receive timeout */
	buf[len] = '\0';
	return buf;
}

#endif
