/*
 * move: a worker's side of the reload handover, which moves established
 * TCP connections from an old worker (the sender) to the new ones (the
 * receivers) so that a reload cuts none and loses no byte. The wire format
 * is handover.h's; the connections are conn.c's (conn.h's handover
 * interface); worker.c dispatches this module's events and decides about
 * accepting and exiting. The master sets it up (common/chan.h):
 *
 *   receiver  gets CHAN_TAKE_OVER, one per sender: fds[0] is its end of a
 *             SOCK_SEQPACKET socketpair (a "handover socket");
 *   sender    gets CHAN_HAND_OVER, one or more (more = true on all but the
 *             last): fds[i] its ends, entry[i] the receivers' scoreboard
 *             entries. On the last, worker.c stops accepting exactly as a
 *             drain does, and calls move_begin: every connection it holds is
 *             moved, and once it holds none it exits as a drained worker.
 *
 * The protocol, per handover socket (both ends non-blocking, watched in the
 * worker's epoll as EV_HANDOVER):
 *
 *   S1  The sender picks the receiver: connections are spread by
 *       move_spread so that each receiver's published `active` plus what
 *       its count does not show yet (our batch in flight to it) ends as
 *       even as whole connections allow, and a batch carries a quarter
 *       of a receiver's share (at least one): with several senders at
 *       once, each reading counts that lack the others' batches in
 *       flight, the small steps make the last choices rest on nearly
 *       complete counts, so that every receiver ends within the balancing
 *       margin of its share (average/16 + 2), as far as the peers the
 *       master gave each sender allow.
 *   S2  For each connection: conn_detach (out of epoll: we read it no more)
 *       BEFORE it goes into the batch, then conn_describe (mode, half-close,
 *       idle age, min_rate progress, whether it is counted per address, the
 *       client address of its PROXY header if it had one, the reply bytes
 *       it owes, at most 64 KiB) into handover_batch_add. At
 *       most 251 connections a batch; one batch outstanding per receiver.
 *       Connections not in a batch are served as before meanwhile.
 *   S3  handover_batch_send. EAGAIN: wait for EPOLLOUT on that socket.
 *   R1  The receiver reads the batch. For each record it refuses it while
 *       draining itself (stopping, or handing over), at max_connections, or
 *       when it cannot be rebuilt; it applies its own allow/deny lists of
 *       the listener the connection arrived on (move_listener_of), on the
 *       record's PROXY client address or else the socket's peer: one they
 *       refuse is taken, then closed and counted in refused_acl; the rest
 *       are rebuilt (conn_adopt: counted per address whatever the limit,
 *       joined to the set but not served) and taken.
 *   R2  It sends the ack. Sent: the rebuilt ones are served (conn_serve) and
 *       counted in moved_in (those closed by the lists too). Not sent: it
 *       closes everything it took (close only) and its per-address counts.
 *   S4  The sender reads the ack: a taken connection is closed (close only,
 *       never shutdown(), which would cut the receiver's copy too) with its
 *       per-address count, and counted in moved_out; a refused one is taken
 *       back (conn_take_back: into epoll as it was, drained here, never
 *       offered again) and counted in moves_failed. A receiver that refused
 *       any gets no more batches.
 *   S5  While connections wait for their PROXY header (never offered: the
 *       parser's bytes are not in the record) the sender keeps its live
 *       receivers: each becomes movable when its header is in, and is
 *       moved then; limits.proxy_timeout bounds the wait.
 *
 * Failure: when the socket breaks (EOF, ECONNRESET, EPIPE), an ack is
 * malformed or unexpected, or no ack came within MOVE_ACK_TIMEOUT_MS, the
 * sender gives that receiver up: shutdown(SHUT_RD) first, then it reads the
 * acks already queued (non-blocking) and applies them, then takes back
 * every connection still unacknowledged, logs once for that receiver with
 * its counts, and closes the socket. Connections nobody is left to take are
 * drained here too, and counted in moves_failed.
 *
 * Why that is safe against a late ack (both workers serving one socket):
 * on AF_UNIX SOCK_SEQPACKET, shutdown(SHUT_RD) sets RCV_SHUTDOWN under the
 * socket's lock, and the peer's send checks it under the same lock before
 * it queues a message: an ack is either queued before the shutdown, and
 * read after it, or fails with EPIPE, and then the receiver closes what it
 * took (R2). The shutdown is the linearization point; tests/unit/test_move.c
 * checks the kernel does this.
 *
 * Who owns each connection's descriptor when:
 *   attached on the sender     the sender's alone
 *   in a batch, before the ack the sender's copy (detached, kept until the
 *                              ack or the give-up), plus the kernel's
 *                              in-flight reference, then the receiver's
 *                              inbox (handover.h's steps 2 to 5)
 *   taken, ack not yet sent    the receiver's copy, not served; the
 *                              sender's copy too
 *   ack sent                   the receiver serves it; the sender closes its
 *                              copy when it reads the ack. Until then, the
 *                              receiver's close removes it from epoll first
 *                              (conn.c: close() would not, with the sender's
 *                              copy still open).
 *   ack not sent, or given up  the sender's alone again; the receiver closed
 *                              its copy
 * A SIGKILLed receiver thus loses only what it had acknowledged; a
 * SIGKILLed sender only what it still held.
 *
 * Events are handled in two places, because epoll_wait's array may still
 * hold events of connections this module would detach: move_event (from
 * the dispatch) reads batches and acks, takes back and forgets connections
 * (all of them out of epoll already) and retries a blocked send; move_run
 * (after the turn's events) detaches and sends new batches, checks the ack
 * timeouts and frees closed peers.
 */
#ifndef EM_MOVE_H
#define EM_MOVE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "common/cfg.h"
#include "common/chan.h"
#include "common/ev.h"
#include "worker/handover.h"

struct conn;
struct worker;

/* How long a sender waits for a batch's ack (checked from the loop, which turns twice a second). */
#define MOVE_ACK_TIMEOUT_MS 2000

/* Connections a batch carries: one fewer than a batch without a memfd could, so none is ever full. */
#define MOVE_BATCH_MAX (HANDOVER_MAX_FDS - 1)

/* One handover socket: to a receiver (we send) or from a sender (we receive). */
struct move_peer {
	struct ev_source ev;       /* EV_HANDOVER */
	int fd;                    /* -1 once closed */
	bool sending;              /* we hand over through it */
	bool stopped;              /* sending: no more batches (it refused some) */
	bool blocked;              /* sending: the batch waits for EPOLLOUT */
	bool in_flight;            /* sending: batch holds connections awaiting an ack */
	unsigned entry;            /* sending: the receiver's scoreboard entry */
	uint32_t seq;              /* sending: the next batch's number */
	int64_t deadline_ms;       /* sending: the ack is due by then */
	size_t moved, refused, lost;  /* sending: for the one line in the log */
	struct handover_batch *batch;           /* sending: allocated at the first batch */
	struct conn *conn[HANDOVER_MAX_FDS];    /* sending: record i's connection */
};

/* A worker's handover state; zeroed is idle. */
struct move {
	struct move_peer **peer;
	size_t npeers;
	size_t cap;
	bool handing_over;         /* move_begin was called: moving everything out */
	bool done;                 /* nothing more will be offered */
	struct handover_inbox *inbox;  /* receiving: allocated at the first batch */
};

/*
 * Takes ownership of the handover sockets a CHAN_HAND_OVER (sending) or
 * CHAN_TAKE_OVER brought: non-blocking, watched in our epoll. On failure
 * (out of memory, epoll) a socket is closed, which its other end reads as
 * EOF: nothing is lost.
 */
void move_add_peers(struct worker *w, struct chan_msg *m, bool sending);

/* The last CHAN_HAND_OVER came (and worker.c stopped accepting): move everything. */
void move_begin(struct worker *w);

/* Whether move_run has work this loop turn. */
static inline bool
move_active(const struct move *mv)
{
	return mv->npeers != 0 || (mv->handing_over && !mv->done);
}

/* A handover socket's epoll events (worker_dispatch). */
void move_event(struct worker *w, struct move_peer *p, uint32_t events);

/* After a loop turn's events: new batches, ack timeouts, closed peers freed. */
void move_run(struct worker *w);

/* ---- pure parts, exported for the unit tests ---- */

/*
 * Spreads N connections over K receivers whose current counts are
 * score[0..K): share[i] is how many receiver i gets, exactly as giving
 * each connection in turn to the receiver with the lowest score plus what
 * it was given so far (ties to the lowest index) would.
 */
void move_spread(const uint64_t *score, size_t k, uint64_t n, uint64_t *share);

/*
 * The TCP listener of CFG a connection whose local address is LOCAL
 * arrived on: same port and family, the listener's address equal or the
 * family's wildcard (an exact one preferred). NULL when the configuration
 * has none (a reload removed it).
 */
const struct cfg_listen *move_listener_of(const struct cfg *cfg, const struct sockaddr *local);

#endif
