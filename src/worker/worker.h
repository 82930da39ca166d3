/*
 * worker: one worker process. Set-up (descriptors, privileges, parent-death
 * signal), the epoll loop, and the graceful drain. The connection and
 * datagram logic live in conn.c and udp.c; this file dispatches to them.
 *
 * Whether to accept is decided here alone (a pause when descriptors run
 * out, the step out of the accept queue while over our share, the drain,
 * a reload's handover, which move.c carries out once we stopped accepting),
 * so that one file holds every reason our listeners come and go. conn.c
 * owns the connections (struct conn_set, embedded below, which this file
 * only reads) and reports in its return values what changed; worker.c
 * acts on that. Our scoreboard entry has this process as its only writer:
 * conn.c the TCP counters (the per-request bytes once per loop turn, when
 * worker_loop calls conn_publish), udp.c the datagram ones, worker.c the
 * heartbeat.
 */
#ifndef EM_WORKER_H
#define EM_WORKER_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "common/cfg.h"
#include "common/ev.h"
#include "common/scoreboard.h"
#include "worker/conn.h"
#include "worker/move.h"

/* What the master hands a worker it has just forked. */
struct worker_spec {
	const struct cfg *cfg;
	const int *listen_fds;  /* listen_fds[i] serves cfg->listen[i] */
	int chan_fd;            /* the channel to the master (common/chan.h): "ready" out; hand-over messages and EOF in */
	pid_t master_pid;
	int slot;
	unsigned generation;
	struct scoreboard *sb;
	struct sb_worker *me;   /* our entry in sb, which only we write */
};

/* The worker's kinds of struct ev_source (common/ev.h), which worker_loop dispatches on. */
enum ev_kind { EV_SIGNAL, EV_MASTER, EV_TCP_LISTENER, EV_UDP, EV_CONN, EV_HANDOVER };

struct worker_listener {
	struct ev_source ev;
	int fd;
	bool registered;
	bool screen;      /* has allow/deny lists, or (TCP) a per-address limit or a PROXY header: needs the peer address */
	const struct cfg_listen *conf;
};

struct udp_batch;

/* The one context of a worker process. */
struct worker {
	const struct cfg *cfg;
	int epfd;
	struct ev_source sig_ev, master_ev;
	int sigfd;
	int chan_fd;
	struct worker_listener *listeners;
	size_t nlisteners;
	unsigned char *scratch;          /* one read's worth, shared by all connections */
	struct udp_batch *udp;
	struct conn_set conns;           /* conn.c's; read with conn_count() */
	struct move move;                /* move.c's: a reload's handover, either way */
	time_t now;                      /* monotonic seconds, read once per loop turn */
	int64_t now_ms;                  /* the same instant in milliseconds */
	time_t accept_paused_until;      /* out of descriptors: not before then; 0 = no pause */
	bool over_share;                 /* holds more than its share of connections */
	bool draining;
	int64_t drain_deadline_ms;       /* monotonic ms: connections still open then are closed */
	struct scoreboard *sb;
	struct sb_worker *me;            /* our scoreboard entry: counters and heartbeat */
	unsigned sb_entry;               /* its index: our owner id in sb->addr */
};

#define WORKER_SCRATCH (64 * 1024)

/* Runs a worker process to its end; never returns. */
__attribute__((noreturn)) void worker_main(const struct worker_spec *spec);

#endif
