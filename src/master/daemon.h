/*
 * daemon: what start-up does to become a daemon (daemon = true, without -F):
 * leave the terminal and the working directory for good.
 */
#ifndef EM_DAEMON_H
#define EM_DAEMON_H

#include "common/cfg.h"

/*
 * A reload reads the file again from /, so a relative config path is made
 * absolute first; CFG is changed before anything else sees it.
 */
void daemon_absolute_path(struct cfg *cfg);

/* Double fork and setsid, so no terminal can ever be reacquired; stdio goes to /dev/null. */
void daemon_detach(void);

#endif
