/*
 * master_priv: the master's context, shared by the files of the master
 * process only (master.c runs the loop and the lifecycle, admin.c answers
 * the control socket and /metrics). Nothing outside src/master sees it.
 */
#ifndef EM_MASTER_PRIV_H
#define EM_MASTER_PRIV_H

#include <stdbool.h>
#include <stdint.h>

#include "common/cfg.h"
#include "common/scoreboard.h"
#include "master/control.h"
#include "master/listeners.h"
#include "master/metrics.h"
#include "master/workers.h"

/* A worker slot of the serving generation. */
struct slot {
	struct wproc *proc;        /* NULL while waiting to be respawned, or parked */
	int backoff_ms;
	int64_t respawn_at_ms;
	bool parked;               /* the crash-loop breaker stopped forking it */
	int early_deaths;          /* deaths before ready, within the current window */
	int64_t window_start_ms;
	int suppressed;            /* crash lines not logged in this window */
};

/* A generation: one config, its listeners, its slots. */
struct generation {
	unsigned number;
	struct cfg *cfg;
	struct listeners *ls;
	struct slot *slots;
	int nslots;
	bool announced;            /* "ready" logged */
};

/* Signals seen since the loop last acted on them. */
struct pending_signals {
	bool chld, hup, quit, term, intr, usr1, ttin, ttou;
};

/* Figures the master keeps about itself, for status and metrics. */
struct master_counters {
	int64_t started_ms;
	uint64_t respawns;
	uint64_t respawns_throttled;
	uint64_t reloads_ok;
	uint64_t reloads_failed;
};

/* The one context of the master process. */
struct master {
	int sig_kind;                /* MEV_SIGNAL: the signalfd's epoll tag */
	int ctl_kind;                /* MEV_CONTROL */
	int metrics_kind;            /* MEV_METRICS */
	struct generation cur;       /* serving */
	struct generation next;      /* a reload in progress: next.cfg != NULL */
	int64_t next_deadline_ms;
	bool reload_again;           /* a HUP arrived during a reload */
	struct wproc *procs;         /* every live worker, any generation */
	struct scoreboard *sb;
	struct master_counters count;
	int epfd;
	int sigfd;
	int pid_fd;
	char *pid_path;
	int ctl_fd;                  /* -1 = no control socket */
	char *ctl_path;
	struct reqconn *ctl_clients;
	int metrics_fd;              /* -1 = no /metrics */
	struct reqconn *http_clients;
	int64_t admin_due_ms;        /* the next admin client deadline; 0 = none */
	bool stopping;
	bool graceful;
	struct pending_signals sig;
};

/* master.c, for admin.c */
int64_t master_now_ms(void);
void master_reload(struct master *m);
void master_respawn_parked(struct master *m);
void master_stop(struct master *m, bool graceful);
/* Old generations with workers still draining; skip_cut leaves out those
 * already told to stop at once. oldest (may be NULL) gets the oldest one. */
int master_draining_generations(const struct master *m, bool skip_cut, unsigned *oldest);

/* admin.c, for master.c */
void admin_open(struct master *m);
void admin_close(struct master *m);
void admin_event(struct master *m, void *tag, uint32_t events);
/* Answers every control client waiting for the reload's outcome. */
void admin_reload_done(struct master *m, bool ok, const char *message);
/* Drops clients that sent nothing usable in time; returns the next deadline or 0. */
int64_t admin_expire(struct master *m);

#endif
