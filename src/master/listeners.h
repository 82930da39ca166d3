/*
 * listeners: the master's listening sockets. A set is parallel to a config's
 * listen list; a reload opens a new set from the old one, keeping the very
 * same socket for every listener whose protocol and address are unchanged,
 * so its accept queue and its port never close.
 *
 * At start-up a set can also adopt sockets the master inherited by
 * systemd's LISTEN_FDS protocol (sd_listen_fds(3)): from systemd's socket
 * activation or file descriptor store, or from the master that execs a new
 * binary (`-s upgrade`). A socket is adopted by the listener whose protocol
 * and bound address it has, instead of binding; the master works the same
 * without any.
 */
#ifndef EM_LISTENERS_H
#define EM_LISTENERS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "common/cfg.h"

/* LISTEN_FDS passes descriptors from 3 on (SD_LISTEN_FDS_START). */
#define LISTENERS_INHERIT_FIRST 3
/* More than this is taken for a malformed environment. */
#define LISTENERS_INHERIT_MAX 1024

struct listeners {
	size_t n;
	int *fds;  /* fds[i] serves cfg->listen[i] */
};

/* Sockets inherited at start-up, not yet adopted: fds[i] is -1 once one is. */
struct inherited {
	size_t n;
	int *fds;
	char **names;  /* LISTEN_FDNAMES, parallel to fds; NULL entries when unnamed */
};

/*
 * Opens the listeners of CFG. Where OLD (the set of OLD_CFG, may be NULL)
 * has the same listener, its socket is shared (a dup), not bound again.
 * Returns a new set the caller owns, or NULL with a message in err.
 */
struct listeners *listeners_open(const struct cfg *cfg, const struct cfg *old_cfg,
    const struct listeners *old, char *err, size_t errlen);

/*
 * The same at start-up: each listener of CFG adopts the inherited socket
 * of its protocol and address (taken out of INH), and only the others are
 * bound. INH may be empty.
 */
struct listeners *listeners_open_inherited(const struct cfg *cfg, struct inherited *inh,
    char *err, size_t errlen);

/* Closes this set's descriptors; a socket shared with another set stays open there. */
void listeners_close(struct listeners *ls);

/*
 * How many descriptors LISTEN_PID and LISTEN_FDS (their values, NULL when
 * unset) pass to process SELF: 0 when they are unset or meant for another
 * process, -1 when malformed.
 */
int listeners_env_count(const char *listen_pid, const char *listen_fds, pid_t self);

/* What the LISTEN_* variables said, taken out of the environment (main.c). */
struct listen_env {
	char *pid;    /* LISTEN_PID, malloc'd; NULL when unset */
	char *fds;    /* LISTEN_FDS */
	char *names;  /* LISTEN_FDNAMES */
};

/*
 * Takes the LISTEN_* variables out of the environment into LE, so that no
 * child mistakes them for its own. Done first thing in main, before
 * anything copies the environment. -1 when out of memory.
 */
int listeners_env_take(struct listen_env *le);

void listeners_env_free(struct listen_env *le);

/*
 * Takes the descriptors LE passes to us (made close-on-exec). -1 with a
 * message in err when the variables are malformed or out of memory (then
 * nothing was taken).
 */
int listeners_inherit(struct inherited *inh, const struct listen_env *le, char *err,
    size_t errlen);

/* True when FD is a socket of L's protocol bound to L's address. */
bool listeners_fd_matches(int fd, const struct cfg_listen *l);

/* Closes, with a log line each, the inherited sockets no listener adopted, and frees INH. */
void listeners_inherited_free(struct inherited *inh);

#endif
