/*
 * conn: TCP connections of a worker: accept, echo, backpressure, idle
 * timeout. Level-triggered epoll, one read per readiness event, so that a
 * busy client cannot starve the others.
 *
 * The seam with worker.c: conn.c owns the connections and the set that
 * holds them (struct conn_set: the worker embeds it, but only conn.c
 * changes it, so the count and the idle list cannot disagree); worker.c
 * owns whether the worker accepts. conn.c never turns accepting on or off:
 * each call reports what happened (a connection opened or closed, the
 * descriptors ran out) and worker.c decides what follows (its share of
 * connections, a pause).
 */
#ifndef EM_CONN_H
#define EM_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct conn;
struct worker;
struct worker_listener;

/* The TCP connections a worker holds. Written by conn.c alone; read with conn_count. */
struct conn_set {
	struct conn *idle_head;  /* least recently active first */
	struct conn *idle_tail;
	size_t n;
	/*
	 * Bytes not yet in the scoreboard entry: a request then writes to the
	 * worker's own memory, not to the page the master and the other
	 * workers read. conn_publish moves them.
	 */
	uint64_t echoed;         /* read and written back whole: in and out both */
	uint64_t bytes_in;       /* the rest of what was read */
	uint64_t bytes_out;      /* the rest of what was written */
};

/* How many connections the set holds. */
static inline size_t
conn_count(const struct conn_set *s)
{
	return s->n;
}

/* What one conn_accept did. */
enum conn_accepted {
	CONN_OPENED,       /* a connection joined the set */
	CONN_TURNED_AWAY,  /* refused by a limit or list, or lost at once: the set is unchanged */
	CONN_NONE_QUEUED,  /* the accept queue is empty */
	CONN_EXHAUSTED,    /* out of descriptors or memory: the connection is still queued */
};

/* Takes one pending connection off a listener: opens it, or turns it away. */
enum conn_accepted conn_accept(struct worker *w, struct worker_listener *l);

/* Handles epoll events for a connection; true when they closed it. */
bool conn_handle(struct worker *w, struct conn *c, uint32_t events);

/*
 * Adds the bytes counted since the last call to the scoreboard entry.
 * Called once per loop turn, so that status readers are never more than
 * a loop turn behind.
 */
void conn_publish(struct worker *w);

/* Closes connections idle for idle_timeout seconds or more; returns how many. */
size_t conn_expire_idle(struct worker *w);

/* Closes every connection (end of a drain); returns how many. */
size_t conn_close_all(struct worker *w);

#endif
