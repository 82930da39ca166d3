/*
 * listeners: the master's listening sockets. A set is parallel to a config's
 * listen list; a reload opens a new set from the old one, keeping the very
 * same socket for every listener whose protocol and address are unchanged,
 * so its accept queue and its port never close.
 */
#ifndef EM_LISTENERS_H
#define EM_LISTENERS_H

#include <stddef.h>

#include "common/cfg.h"

struct listeners {
	size_t n;
	int *fds;  /* fds[i] serves cfg->listen[i] */
};

/*
 * Opens the listeners of CFG. Where OLD (the set of OLD_CFG, may be NULL)
 * has the same listener, its socket is shared (a dup), not bound again.
 * Returns a new set the caller owns, or NULL with a message in err.
 */
struct listeners *listeners_open(const struct cfg *cfg, const struct cfg *old_cfg,
    const struct listeners *old, char *err, size_t errlen);

/* Closes this set's descriptors; a socket shared with another set stays open there. */
void listeners_close(struct listeners *ls);

#endif
