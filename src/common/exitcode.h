/*
 * exitcode: what echomaster's exit status means, so systemd, scripts and the
 * master can tell a mistake that a restart cannot fix from one it might.
 */
#ifndef EM_EXITCODE_H
#define EM_EXITCODE_H

#define EXIT_OK      0 /* success */
#define EXIT_CONFIG  1 /* bad usage or configuration: fix the input */
#define EXIT_RUNTIME 2 /* a system failure: cannot bind, fork, lock... */

#endif
