/*
 * master_int: the master's private context, shared by the files that
 * carry out its lifecycle (master.c, reload.c, upgrading.c, graceful.c,
 * report.c, announce.c); no other module includes it.
 *
 * The contract: master.c owns the loop, the signals and the lifecycle
 * table; it alone decides which state follows which event. The other
 * files do one job each on the one struct master they are passed: they
 * may set m->state only inside a lifecycle action the table calls (the
 * *_begin, *_commit, *_abort and *_queue functions below), and they never
 * call life_fire: a function that finds something the lifecycle must act
 * on reports it (an enum life_event, a bool, or -1) and master.c fires
 * it. Calls go from master.c down to these files, and between them only
 * to announce.c, report.c and the aborts a stop needs, never back up.
 */
#ifndef EM_MASTER_INT_H
#define EM_MASTER_INT_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/cfg.h"
#include "common/ev.h"
#include "common/scoreboard.h"
#include "master/admin.h"
#include "master/agent.h"
#include "master/master.h"
#include "master/quiesce.h"
#include "master/supervisor.h"
#include "master/upgrade.h"

/*
 * The daemon's lifecycle. Every event that can change it goes through
 * lifecycle[state][event] in master.c; an empty cell means the event changes
 * nothing in that state.
 */
enum life_state {
	LS_SERVING,
	LS_RELOADING,   /* a next generation is starting beside the serving one */
	LS_UPGRADING,   /* a new binary is checked, started as a new master, asked to take over */
	LS_UPGRADED,    /* the new master took over: our workers hand over or drain, then we exit */
	LS_QUITTING,      /* graceful stop: workers finish their clients */
	LS_TERMINATING,   /* fast stop: workers are terminated */
	LS_DRAIN_DELAY,   /* graceful stop, first drain_delay: the agent says drain, workers still accept */
	LS_QUIESCING,     /* graceful stop, then: no new handshakes, the queued ones are accepted */
	LS_COUNT
};

enum life_event {
	LE_NONE = -1,   /* nothing for the lifecycle: a report's "no event" */
	LE_RELOAD,      /* HUP, or `reload` on the control socket */
	LE_QUIT,        /* graceful stop */
	LE_TERMINATE,   /* fast stop */
	LE_NEXT_READY,  /* every worker of the next generation reported ready */
	LE_NEXT_FAILED, /* one of them died, or they were not ready in time */
	LE_DELAY_OVER,  /* drain_delay has passed */
	LE_QUIESCED,    /* every accept queue is empty (or the wait timed out) */
	LE_UPGRADE,     /* SIGUSR2, or `upgrade` on the control socket */
	LE_UPGRADE_READY,  /* the new master's first generation is ready */
	LE_UPGRADE_TAKEN,  /* the new master confirmed it has taken our place */
	LE_UPGRADE_FAILED, /* the check or the new master failed, or took too long */
	LE_COUNT
};

/* Figures the master keeps about itself, for status and metrics. */
struct master_counters {
	int64_t started_ms;
	uint64_t reloads_ok;
	uint64_t reloads_failed;
	uint64_t upgrades_ok;
	uint64_t upgrades_failed;
};

/* The one context of the master process. */
struct master {
	enum life_state state;
	struct ev_source sig_ev;     /* MEV_SIGNAL */
	struct sup sup;              /* the generations and their workers */
	struct admin admin;          /* the control socket and /metrics */
	struct agent agent;          /* the HAProxy agent's listener */
	enum agent_admin agent_word; /* -s ready, drain, maint */
	int64_t delay_end_ms;        /* LS_DRAIN_DELAY: when the stop proper begins */
	struct quiesce quiesce;      /* LS_QUIESCING onwards: the filtered listeners */
	char name[256];              /* the instance name, in the agent's free text */
	struct scoreboard *sb;
	int64_t next_deadline_ms;    /* LS_RELOADING: abort when not ready by then */
	bool reload_again;           /* a reload was asked for during a reload */
	bool announced;              /* the serving generation's "ready" was logged */
	struct master_counters count;
	struct upgrade up;           /* a live upgrade, on either side */
	bool *handed;                /* LS_UPGRADED: slot i's whole hand-over was relayed */
	int nhanded;
	bool up_understood;          /* the other master read our state, or we read its */
	bool up_ready_sent;          /* a new master: READY went to the old one */
	bool up_main;                /* a new master: systemd knows it as the main process */
	bool up_spoke;               /* a new master: its first STATUS and FDSTORE are sent */
	pid_t up_successor;          /* UP_CONFIRMING on: the new master */
	char up_version[32];         /* its version, */
	unsigned up_generation;      /* and its serving generation, from its READY */
	int epfd;
	int sigfd;
	int pid_fd;
	char *pid_path;
	bool seen[NSIG];             /* signals seen since the loop last acted on them */
};

/* The serving generation's config; the supervisor owns it. */
static inline const struct cfg *
serving_cfg(const struct master *m)
{
	return m->sup.cur.cfg;
}

/* Past the point of no return: the loop ends once no worker is left. */
static inline bool
life_stopping(const struct master *m)
{
	return m->state == LS_QUITTING || m->state == LS_TERMINATING || m->state == LS_UPGRADED;
}

/* A lifecycle action; WHY says what caused the event, for the messages of a failure. */
typedef void life_action(struct master *m, const char *why);

/*
 * reload.c: a reload, from the new config's load to its commit or abort.
 * The four actions are the table's (LE_RELOAD, LE_NEXT_READY, LE_NEXT_FAILED).
 */
void reload_begin(struct master *m, const char *why);
void reload_queue(struct master *m, const char *why);
void reload_commit(struct master *m, const char *why);
void reload_abort(struct master *m, const char *why);
/* LS_RELOADING: LE_NEXT_READY or LE_NEXT_FAILED (why in *why) once the wait is over; else LE_NONE. */
enum life_event reload_progress(const struct master *m, const char **why);
/* True once, in LS_SERVING, when a reload was asked for during another one. */
bool reload_queued(struct master *m);

/*
 * upgrading.c: the master's side of a live upgrade, as the old master and
 * as the new one; upgrade.c does the work, this decides each step.
 */
void upgrading_begin(struct master *m, const char *why);
void upgrading_confirm(struct master *m, const char *why);
void upgrading_commit(struct master *m, const char *why);
void upgrading_abort(struct master *m, const char *why);
/* A new master at start-up: the old master's figures, control socket and /metrics. */
void upgrading_adopt(struct master *m, const struct master_boot *boot);
/* Acts on what an upgrade's process or channel said; returns the lifecycle's event, or LE_NONE. */
enum life_event upgrading_progress(struct master *m, enum upgrade_event ev, const char **why);

/* graceful.c: a graceful stop's first steps, drain_delay then the quiesce (quiesce.h). */
/* LE_QUIT: ends a reload or upgrade, then drain_delay or the quiesce; -1: stop at once. */
int graceful_begin(struct master *m, const char *why);
/* LE_DELAY_OVER: no new handshakes, the queues are accepted; -1 (logged): stop at once. */
int graceful_quiesce(struct master *m);
/* True when drain_delay has passed. */
bool graceful_delay_over(const struct master *m, int64_t now);
/* True (and logged) when the quiesce is over: the queues are empty, or it timed out. */
bool graceful_quiesced(struct master *m, int64_t now);

/* report.c: what the master says of itself when asked: status, /metrics, the agent. */
/* Answers `status`, `status json` and /metrics. */
void report_status(struct master *m, const struct admin_request *r);
/* -s ready, -s drain, -s maint: what the agent says from now on, and the answer. */
void report_agent_word(struct master *m, const struct admin_request *r);
/* HAProxy's agent asks: every waiting client gets the line. */
void report_agent(struct master *m);
/* Takes the instance name from the serving config: at start and at each reload. */
void report_name_init(struct master *m);

/* announce.c: what the master tells the log and systemd unasked. */
/* Once the serving generation is ready: the log, then systemd (or the old master). */
void announce_ready(struct master *m);
/* The serving TCP listeners, into systemd's fd store. */
void announce_listeners(const struct master *m);
/* Says whether the workers are sandboxed. */
void announce_sandbox(const struct cfg *cfg);

#endif
