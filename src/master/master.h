/*
 * master: the master process's loop, once main.c has bound and detached.
 * It only decides: signals arrive through a signalfd and operators'
 * requests through admin's queue, both as pending work the loop acts on
 * in turn; the lifecycle (serving, reloading, upgrading, quitting,
 * terminating) is a state-by-event table; the supervisor (supervisor.h) does what it is
 * told to the workers and reports what happened. No connection is ever
 * handled here.
 */
#ifndef EM_MASTER_H
#define EM_MASTER_H

#include <stdbool.h>

#include "common/cfg.h"
#include "master/listeners.h"
#include "master/upmsg.h"

/* What start-up (main.c) has made ready before the master takes over. */
struct master_boot {
	struct cfg *cfg;           /* its path absolute */
	struct listeners *ls;      /* bound, or adopted (LISTEN_FDS) */
	int pid_fd;                /* the pid file, locked and written; -1 = none */
	char *pid_path;            /* malloc'd; NULL = none */
	char *exe;                 /* malloc'd: this binary's path, resolved at start-up */
	/* A live upgrade's new master (upgrade.h); upgrade_fd -1 otherwise. */
	int upgrade_fd;            /* the channel to the old master */
	struct upmsg from;         /* the old master's state (from.understood: we read it) */
	int ctl_fd;                /* the old master's control socket, not yet ours; -1 = none */
	int metrics_fd;            /* the same for /metrics */
};

/*
 * Runs the daemon from BOOT (takes ownership of all it holds): signals,
 * the scoreboard, the control socket and /metrics, the workers, then the
 * loop until a stop signal. Returns the process exit status.
 */
int master_run(const struct master_boot *boot);

#endif
