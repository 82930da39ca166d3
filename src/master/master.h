/*
 * master: the master process's loop, once main.c has bound and detached.
 * It only decides: signals arrive through a signalfd and operators'
 * requests through admin's queue, both as pending work the loop acts on
 * in turn; the lifecycle (serving, reloading, quitting, terminating) is a
 * state-by-event table; the supervisor (supervisor.h) does what it is
 * told to the workers and reports what happened. No connection is ever
 * handled here.
 */
#ifndef EM_MASTER_H
#define EM_MASTER_H

#include <stdbool.h>

#include "common/cfg.h"
#include "master/listeners.h"

/* What start-up (main.c) has made ready before the master takes over. */
struct master_boot {
	struct cfg *cfg;           /* its path absolute when detached */
	struct listeners *ls;      /* bound */
	int pid_fd;                /* the pid file, locked and written; -1 = none */
	char *pid_path;            /* malloc'd; NULL = none */
};

/*
 * Runs the daemon from BOOT (takes ownership of all it holds): signals,
 * the scoreboard, the control socket and /metrics, the workers, then the
 * loop until a stop signal. Returns the process exit status.
 */
int master_run(const struct master_boot *boot);

#endif
