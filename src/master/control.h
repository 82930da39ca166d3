/*
 * control: the master's control socket, a Unix stream socket of mode 0600.
 * A client sends one line ("status", "status-json", "reload", "upgrade",
 * "respawn", "stop", "quit", "reopen", "drain", "ready", "maint") and gets back "ok" or "error" on the first line,
 * then a text body, then EOF. The master decides what to answer and when: a
 * reload answers only once the new workers are ready or the reload failed,
 * an upgrade once the new master is ready or has failed.
 */
#ifndef EM_CONTROL_H
#define EM_CONTROL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "master/reqconn.h"

enum ctl_cmd {
	CTL_NONE,         /* the line is not complete yet */
	CTL_STATUS,
	CTL_STATUS_JSON,
	CTL_RELOAD,
	CTL_RESPAWN,
	CTL_STOP,
	CTL_QUIT,
	CTL_REOPEN,
	CTL_DRAIN,        /* the HAProxy agent: drain, ready, maint */
	CTL_READY,
	CTL_MAINT,
	CTL_UPGRADE,
	CTL_BAD,          /* unknown command, EOF or error: answer and close */
};


/*
 * Binds PATH with mode 0600. A socket file left by a dead master is
 * replaced; one that a live master answers on is not. Returns the fd, or
 * -1 with a message in err.
 */
int control_listen(const char *path, char *err, size_t errlen);

/* Reads and parses a client's request; CTL_NONE until a whole line is in. */
enum ctl_cmd control_read(struct reqconn *c);

/* Sends the answer ("ok" or "error", then body), closes and frees the client. */
void control_reply(struct reqconn *c, bool ok, const char *body);

/*
 * The client side, for `echomaster -s`: sends CMD to PATH and copies the
 * answer's body to out. Returns 0 for "ok", 1 for "error", -1 when the
 * master cannot be reached (message in err).
 */
int control_request(const char *path, const char *cmd, FILE *out, char *err, size_t errlen);

#endif
