/*
 * workers: the master's worker processes: fork one, describe how one ended,
 * and the respawn backoff. The master's loop decides when; this does how.
 */
#ifndef EM_WORKERS_H
#define EM_WORKERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/cfg.h"
#include "common/scoreboard.h"
#include "master/listeners.h"

/* Respawn delays: the first quick death waits BACKOFF_MIN, each next one doubles. */
#define WORKERS_BACKOFF_MIN_MS 100
#define WORKERS_BACKOFF_MAX_MS 10000
/* A worker that stayed up this long had a real life: its death resets the backoff. */
#define WORKERS_STABLE_MS      10000

enum wproc_state {
	WP_STARTING,  /* forked, not yet reported ready */
	WP_READY,     /* serving */
	WP_DRAINING,  /* told to stop gracefully (old generation, or shutdown) */
	WP_ABORTED,   /* of a reload that failed: killed, waiting to be reaped */
};

/* One live worker process. */
struct wproc {
	int ev_kind;          /* MEV_WORKER: its channel's epoll tag */
	pid_t pid;
	int chan_fd;          /* master's end of the socketpair */
	int slot;
	unsigned generation;
	enum wproc_state state;
	int64_t started_ms;
	int64_t kill_at_ms;   /* DRAINING: SIGKILL when still alive at this time; 0 = none */
	unsigned sb_entry;    /* its scoreboard entry */
	bool hung;            /* killed for a missing heartbeat */
	bool cut;             /* DRAINING, but told to stop at once (too many generations) */
	struct wproc *next;
};

/*
 * Forks a worker for SLOT of GENERATION serving CFG on LS, and watches its
 * channel in epfd. Returns the new process (the caller links it), or NULL.
 */
struct wproc *wproc_spawn(int epfd, struct scoreboard *sb, const struct cfg *cfg,
    const struct listeners *ls, int slot, unsigned generation, int64_t now_ms);

/* Stops watching and closes the channel, frees its scoreboard slot and the struct. */
void wproc_free(int epfd, struct scoreboard *sb, struct wproc *p);

/* "exited with status 1", "killed by signal 9 (SIGKILL)". */
void wproc_describe_exit(int status, char *buf, size_t len);

/* True when a wait(2) status means the worker ended as asked, not by a fault. */
bool wproc_exit_is_clean(int status);

/*
 * The delay before respawning a slot whose worker died after UPTIME_MS, given
 * the slot's previous delay: 0 after a long life, else doubling from
 * WORKERS_BACKOFF_MIN_MS up to WORKERS_BACKOFF_MAX_MS.
 */
int workers_backoff_next(int prev_delay_ms, int64_t uptime_ms);

#endif
