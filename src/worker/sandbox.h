/*
 * sandbox: what a worker gives up once it is set up (sandbox = true). A
 * worker that is taken over can then do nothing but its job: read, write,
 * accept on the sockets it already holds, pass connections over the
 * handover sockets, manage its memory and signals. Three layers, each
 * enough on its own for the main threat:
 *
 *   no_new_privs  no exec can ever gain privileges (and Landlock needs it);
 *   Landlock      no file system access at all, no TCP bind or connect
 *                 (where the kernel has the ABI for it), no signal or
 *                 abstract socket outside the worker;
 *   seccomp       an allow-list of system calls (libseccomp); anything
 *                 else traps: the SIGSYS handler records the call in the
 *                 worker's scoreboard entry, for the master to name, and
 *                 the worker dies of that SIGSYS.
 *
 * socket() of the Unix family and connect() fail with EPERM instead of
 * trapping: glibc's syslog() reconnects that way when the log daemon went
 * away, and a lost log line must not kill a worker.
 */
#ifndef EM_SANDBOX_H
#define EM_SANDBOX_H

#include <stddef.h>

#include "common/scoreboard.h"

/*
 * Applies the three layers to the calling worker; ME is its scoreboard
 * entry (sandboxed and violation are written there). 0, or -1 with a
 * message in err: the caller must then not serve.
 */
int sandbox_apply(struct sb_worker *me, char *err, size_t errlen);

#endif
