/*
 * reqconn: a client of the master's small request/answer sockets (the
 * control socket, /metrics). Its request is read without blocking the
 * master's loop; the answer, a few kilobytes at most, is written with a
 * short send timeout, then the connection is closed. What a request means
 * is the caller's business (control.c, metrics.c).
 */
#ifndef EM_REQCONN_H
#define EM_REQCONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/ev.h"

struct reqconn {
	struct ev_source ev;  /* of the kind its owner gave it */
	int fd;
	char buf[2048];       /* the request, NUL-terminated */
	size_t len;
	int64_t deadline_ms;  /* dropped if the request is not complete by then */
	bool queued;          /* read whole: its owner has yet to act on it */
	bool waiting;         /* answered later (a reload's outcome) */
	struct reqconn *next;
};

/* Accepts one client, non-blocking; NULL when none is pending (or out of memory). */
struct reqconn *reqconn_accept(int lfd, uint8_t ev_kind, int64_t deadline_ms);

/* Reads what arrived: 1 new bytes, 0 nothing yet, -1 EOF, error or a full buffer. */
int reqconn_read(struct reqconn *c);

/* Writes head then body (either may be NULL), closes and frees the client. */
void reqconn_finish(struct reqconn *c, const char *head, const char *body);

#endif
