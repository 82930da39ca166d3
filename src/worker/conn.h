/*
 * conn: TCP connections of a worker: accept, echo, backpressure, idle
 * timeout. Level-triggered epoll, one read per readiness event, so that a
 * busy client cannot starve the others. conn.c holds the set, accept and
 * the plain echo path; the special connections have a file each
 * (conn_proxy.c, conn_whoami.c, conn_tls.c: worker/conn_int.h).
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
#include <sys/socket.h>

#include "worker/deadline.h"
#include "worker/handover.h"

struct conn;
struct worker;
struct worker_listener;

/* The TCP connections a worker holds. Written by conn.c alone; read with conn_count. */
struct conn_set {
	struct conn *idle_head;  /* least recently active first */
	struct conn *idle_tail;
	struct deadline_list waiting;    /* waiting for a PROXY header (also in the idle list) */
	struct deadline_list handshakes; /* TLS handshakes under way (also in the idle list) */
	size_t n;
	size_t detached;         /* of n: out of epoll (conn_detach, conn_adopt) */
	size_t kept;             /* of n: never offered (taken back from a handover, or special) */
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

/* How many connections conn_next_movable can still offer. */
static inline size_t
conn_movable_count(const struct conn_set *s)
{
	return s->n - s->detached - s->kept;
}

/*
 * Whether connections wait for their PROXY header: each that gets it (and
 * is not whoami) becomes movable then, within limits.proxy_timeout.
 */
static inline bool
conn_headers_due(const struct conn_set *s)
{
	return deadline_pending(&s->waiting);
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

/*
 * Closes connections idle for idle_timeout seconds or more, those whose
 * PROXY header is not in after limits.proxy_timeout, and those whose TLS
 * handshake is not complete after limits.handshake_timeout; returns how many.
 */
size_t conn_expire_idle(struct worker *w);

/* Closes every connection (end of a drain); returns how many. */
size_t conn_close_all(struct worker *w);

/*
 * The handover's interface (worker/move.h). A connection is attached (in
 * epoll and the idle list, served) or detached (in neither: in a batch on
 * its way to another worker, or taken over and not served yet). A
 * detached connection still counts in conn_count, so that a worker does
 * not end while it holds one; conn_expire_idle and conn_close_all leave it
 * alone. conn_handle's steady state knows nothing of any of this.
 *
 * Sender: conn_next_movable, conn_detach, conn_describe; then, on the
 * receiver's ack, conn_forget (taken) or conn_take_back (refused, or no
 * ack at all).
 *
 * Never offered: whoami connections, and those still waiting for their
 * PROXY header (their parser's bytes are not in the record). One past
 * its header is offered like any other, its record carrying the header's
 * client address, which the receiver keeps for its own handovers.
 */

/* The oldest attached connection never offered before; NULL when none is left. */
struct conn *conn_next_movable(const struct worker *w);

/*
 * Takes a connection out of epoll and the idle list: we read and write it
 * no more. 0, or -1 when epoll refused (it stays attached, and is never
 * offered again).
 */
int conn_detach(struct worker *w, struct conn *c);

/*
 * A detached connection's state for its record: returns its fd (still
 * ours), fills rec, and points *pending at the reply bytes it owes (valid
 * until the connection changes or goes).
 */
int conn_describe(const struct worker *w, const struct conn *c, struct handover_rec *rec,
    const void **pending, size_t *pending_len);

/*
 * Closes our copy of a detached connection and forgets it, with its
 * per-address count: the receiver took it (or, receiving, our ack was not
 * sent). close() only: shutdown() would cut the other worker's copy too.
 */
void conn_forget(struct worker *w, struct conn *c);

/*
 * Attaches a detached connection again, as it was, to be drained here: it
 * is never offered again. false when epoll refused and it was closed.
 */
bool conn_take_back(struct worker *w, struct conn *c);

/*
 * Receiver: builds a connection from a handed-over record: its mode,
 * half-close, idle stamp and min_rate progress, its PROXY client address,
 * the owed reply queued and reading paused until it is written; counts it
 * for the client address PEER (the record's client when it has one, else
 * the socket's peer: the caller's choice) when our configuration limits
 * per address (whatever the limit). It
 * joins the set detached: serve it with conn_serve only once the ack is
 * sent, or conn_forget it. Returns NULL when it could not be built (out of
 * memory); fd is then not ours, nor anything else.
 */
struct conn *conn_adopt(struct worker *w, int fd, const struct handover_rec *rec,
    const void *pending, size_t pending_len, const struct sockaddr_storage *peer);

/* Attaches an adopted connection: served from now on. false when it was closed instead. */
bool conn_serve(struct worker *w, struct conn *c);

#endif
