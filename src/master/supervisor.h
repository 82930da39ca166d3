/*
 * supervisor: the master's worker processes. It owns the generations (a
 * config, its listeners, its slots), every live worker process, and the
 * policy of keeping them alive: spawn, reap, respawn with back-off, the
 * crash-loop breaker that parks a slot, the kills of hung and overdue
 * workers, TTIN/TTOU scaling, and the workers' channels.
 *
 * It never decides the daemon's lifecycle. Each call returns what happened
 * (a worker of the next generation died, a slot was parked) and the getters
 * say whether a generation is ready; master.c decides what follows (abort
 * or commit a reload, announce, notify systemd). Time is always passed in,
 * and forking and signalling go through struct sup_ops, so unit tests drive
 * it with fake children and a fake clock.
 */
#ifndef EM_SUPERVISOR_H
#define EM_SUPERVISOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/cfg.h"
#include "common/chan.h"
#include "common/ev.h"
#include "common/scoreboard.h"
#include "master/listeners.h"
#include "master/status.h"
#include "worker/worker.h"

/* Respawn delays: the first quick death waits BACKOFF_MIN, each next one doubles. */
#define SUP_BACKOFF_MIN_MS 100
#define SUP_BACKOFF_MAX_MS 10000
/* A worker that stayed up this long had a real life: its death resets the backoff. */
#define SUP_STABLE_MS      10000
/* Fast shutdown: how long workers get for SIGTERM before SIGKILL. */
#define SUP_FAST_STOP_GRACE_MS 800
/* Past shutdown_timeout, how long a draining worker may still take before SIGKILL. */
#define SUP_DRAIN_GRACE_MS     2000

enum sup_state {
	SUP_STARTING,  /* forked, not yet reported ready */
	SUP_READY,     /* serving */
	SUP_DRAINING,  /* told to stop gracefully (old generation, or shutdown) */
	SUP_ABORTED,   /* of a reload that failed: killed, waiting to be reaped */
	SUP_MOVING,    /* told to hand its connections over (reload_handover), then exit */
};

/* One live worker process, of any generation. */
struct sup_proc {
	struct ev_source ev;  /* its channel, of the kind the master gave in sup_init */
	pid_t pid;
	int chan_fd;          /* master's end of the channel; -1 once closed */
	int slot;
	unsigned generation;
	enum sup_state state;
	int64_t started_ms;
	int64_t kill_at_ms;   /* SIGKILL when still alive at this time; 0 = none */
	unsigned sb_entry;    /* its scoreboard entry */
	bool hung;            /* killed for a missing heartbeat */
	bool cut;             /* DRAINING, but told to stop at once (too many generations) */
	int move;             /* MOVING: its entry in sup.moves */
	struct sup_proc *next;
};

/* A place for one worker in a generation; a respawn refills it. */
struct sup_slot {
	struct sup_proc *proc;     /* NULL while waiting to be respawned, or parked */
	int backoff_ms;
	int64_t respawn_at_ms;
	bool parked;               /* the crash-loop breaker stopped forking it */
	int early_deaths;          /* deaths before ready, within the current window */
	int64_t window_start_ms;
	int suppressed;            /* crash lines not logged in this window */
};

/* A generation: one config, its listeners, its slots. It owns all three. */
struct sup_gen {
	unsigned number;           /* 0 = none */
	struct cfg *cfg;
	struct listeners *ls;
	struct sup_slot *slots;
	int nslots;
};

/*
 * How a worker process is made and told things. The real ones fork and run
 * worker_main, and kill(2); tests put fakes here.
 */
struct sup_ops {
	/* Starts a worker for SPEC (chan_fd not yet set): its pid and the master's end of its channel, or -1. */
	pid_t (*spawn)(void *arg, struct worker_spec *spec, int *chan_fd);
	/* Sends SIG to PID; 0, or -1 and errno. */
	int (*signal)(void *arg, pid_t pid, int sig);
	void *arg;
};

extern const struct sup_ops sup_real_ops;

/*
 * One handover: the workers told to move their connections at one commit
 * (or one TTOU), until the last of them has exited.
 */
struct sup_move {
	unsigned generation;       /* of the workers handing over; 0 = entry free */
	int64_t started_ms;
	int workers;               /* told to hand over */
	int left;                  /* not yet exited */
	uint64_t moved;            /* connections the receivers took */
	uint64_t kept;             /* connections that could not move and were drained */
};

/* Handovers counted at once: every draining generation's, and TTOUs'. */
#define SUP_MOVES 128

/* Figures the supervisor keeps, for status and metrics. */
struct sup_counters {
	uint64_t respawns;
	uint64_t respawns_throttled;
};

struct sup {
	struct sup_gen cur;        /* serving */
	struct sup_gen next;       /* a reload in progress: next.number != 0 */
	struct sup_proc *procs;    /* every live worker, any generation */
	struct scoreboard *sb;
	int epfd;
	uint8_t chan_kind;         /* the ev kind of the workers' channels */
	bool stopping;             /* no respawn, no scaling, no hung-worker kills */
	struct sup_ops ops;
	struct sup_counters count;
	struct sup_move moves[SUP_MOVES];
	struct sup_move done;      /* the handover that SUP_HANDED_OVER reported */
};

/* What a call saw happen, for the master to act on. */
enum sup_event {
	SUP_NOTHING = 0,
	SUP_NEXT_DIED = 1 << 0,   /* a worker of the next generation died: the reload cannot finish */
	SUP_PARKED = 1 << 1,      /* the crash-loop breaker parked a slot (logged) */
	SUP_HANDED_OVER = 1 << 2, /* the last worker of a handover exited: see sup.done */
};

/* Sets up an empty supervisor; workers' channels are watched in epfd with CHAN_KIND. */
void sup_init(struct sup *s, int epfd, struct scoreboard *sb, uint8_t chan_kind,
    const struct sup_ops *ops);

/* Starts generation 1 as the serving one; takes ownership of cfg and ls. -1 when out of memory. */
int sup_start(struct sup *s, struct cfg *cfg, struct listeners *ls, int64_t now);

/* The same, numbered NUMBER: a live upgrade's new master carries the count on. */
int sup_start_numbered(struct sup *s, unsigned number, struct cfg *cfg, struct listeners *ls,
    int64_t now);

/*
 * A live upgrade, in the new master: wires the serving generation's ready
 * workers in old slot I's window (peering_window over NOLD old slots) as
 * receivers of PR, a relayed sender. Their scoreboard entries are ours, not
 * the sender's: they go as CHAN_ENTRY_UNKNOWN.
 */
struct peering;
void sup_add_receivers(const struct sup *s, struct peering *pr, int i, int nold);

/*
 * A live upgrade, in the old master: sends M to the ready worker of serving
 * SLOT (the fds stay the caller's). 0, or -1 and errno (ESRCH: none there).
 */
int sup_forward(struct sup *s, int slot, const struct chan_msg *m);

/* No more respawns, scaling or hung-worker kills: the workers are about to be handed over. */
void sup_freeze(struct sup *s);

/*
 * The end of a live upgrade, in the old master: every serving worker whose
 * slot I has MOVING[I] (it was sent its whole hand-over) moves its
 * connections and exits; the others drain. Nothing is respawned after.
 */
void sup_retire_upgraded(struct sup *s, const bool *moving, int64_t now);

/*
 * Starts the next generation beside the serving one; takes ownership of cfg
 * and ls. -1 when out of memory (then nothing is started and both are freed).
 */
int sup_start_next(struct sup *s, struct cfg *cfg, struct listeners *ls, int64_t now);

/*
 * The next generation serves, and the old one is freed. Its workers drain
 * within its shutdown_timeout, or, with the new config's reload_handover,
 * hand their connections over to the new workers and exit (a worker whose
 * channel cannot take the hand-over drains).
 */
void sup_commit_next(struct sup *s, int64_t now);

/*
 * A reload storm must not pile up old workers: past the serving config's
 * max_draining_generations the oldest draining generations are cut short
 * (SIGTERM), each with a warning. The master calls it after a commit.
 */
void sup_limit_draining(struct sup *s, int64_t now);

/* Kills the next generation's workers and frees it; the serving one is untouched. */
void sup_abort_next(struct sup *s, int64_t now);

/*
 * Stops every worker: graceful drains the serving generation (older ones
 * keep draining), fast terminates all. Nothing is respawned afterwards.
 */
void sup_stop(struct sup *s, bool graceful, int64_t now);

/* A worker's channel is readable: its byte says it is ready, EOF that it is going away. */
void sup_channel_event(struct sup *s, struct sup_proc *p);

/* Accounts for a child that exited with wait(2) STATUS; returns enum sup_event bits. */
unsigned sup_exited(struct sup *s, pid_t pid, int status, int64_t now);

/* Timed duties: respawns that are due, overdue and hung workers killed. */
void sup_tick(struct sup *s, int64_t now);

/* When sup_tick next has something to do (0 = nothing timed). */
int64_t sup_next_due(const struct sup *s, int64_t now);

/*
 * TTIN (+1) adds a slot to the serving generation, TTOU (-1) retires the
 * last one (never below 1): its worker hands its connections over to the
 * others with reload_handover, else drains.
 */
void sup_scale(struct sup *s, int delta, int64_t now);

/* Releases every parked slot of the serving generation for a respawn now. */
void sup_unpark(struct sup *s, int64_t now);

/* True when every slot of the generation has a worker that reported ready. */
bool sup_gen_ready(const struct sup_gen *g);

/* True while a reload's generation exists. */
bool sup_reloading(const struct sup *s);

/* True when no worker process is alive. */
bool sup_empty(const struct sup *s);

/*
 * Old generations with workers still draining; skip_cut leaves out those
 * already told to stop at once. oldest (may be NULL) gets the oldest one.
 */
int sup_draining_generations(const struct sup *s, bool skip_cut, unsigned *oldest);

/* Slots of the serving generation that the crash-loop breaker parked. */
int sup_parked_slots(const struct sup *s);

/*
 * Fills the supervisor's part of a status view: the generation and its
 * slot count, respawns, draining generations, parked slots, and every live
 * worker, oldest generation and lowest slot first (v->w is malloc'd: free
 * it). -1 when out of memory.
 */
int sup_view(const struct sup *s, struct status_view *v);

/* Frees the serving generation at exit; every worker must be gone. */
void sup_free(struct sup *s);

/* "starting", "serving", "draining", "aborted", "moving". */
const char *sup_state_name(enum sup_state state);

/* "exited with status 1", "killed by signal 9 (SIGKILL)". */
void sup_describe_exit(int status, char *buf, size_t len);

/* True when a wait(2) status means the worker ended as asked, not by a fault. */
bool sup_exit_is_clean(int status);

/*
 * The delay before respawning a slot whose worker died after UPTIME_MS, given
 * the slot's previous delay: 0 after a long life, else doubling from
 * SUP_BACKOFF_MIN_MS up to SUP_BACKOFF_MAX_MS.
 */
int sup_backoff_next(int prev_delay_ms, int64_t uptime_ms);

#endif
