/*
 * master: the master process. Binds, forks the workers, and then only
 * supervises: signals arrive through a signalfd, the loop turns them into
 * flags and acts on each in turn. No connection is ever handled here.
 */
#ifndef EM_MASTER_H
#define EM_MASTER_H

#include <stdbool.h>

#include "common/cfg.h"

/*
 * Runs the daemon with CFG (takes ownership): pid file, listeners, detach
 * unless foreground, workers, then the loop until a stop signal. Returns the
 * process exit status.
 */
int master_run(struct cfg *cfg, bool foreground);

#endif
