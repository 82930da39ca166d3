/*
 * confine: what the master gives up (sandbox = true), and the names of the
 * system calls a worker's sandbox (worker/sandbox.h) caught.
 *
 * The master must keep fork, exec (a live upgrade runs the new binary),
 * signals, its sockets and reading the configuration, so it gets no
 * allow-list: it sets no_new_privs (no exec can gain privileges, setuid
 * binaries included) and a deny-list of what it never does (tracing other
 * processes, mounting, loading kernel modules or BPF programs, rebooting,
 * changing the clock, entering namespaces, keyrings...), refused with
 * EPERM rather than killing: the master dying would stop the service.
 * Filters are inherited by its children and across exec, so a master
 * started by an upgrade finds its predecessor's in place (the environment
 * says so: ECHOMASTER_CONFINED) and adds nothing; under a service
 * manager's own filter (systemd's SystemCallFilter) it adds its list.
 *
 * Both the master's and the workers' confinement are off in builds and
 * runs whose tools need more system calls: the sanitizers (LeakSanitizer
 * traces the process) and valgrind.
 */
#ifndef EM_CONFINE_H
#define EM_CONFINE_H

#include <stddef.h>

/* Why this process cannot be confined, or NULL when it can. */
const char *confine_unavailable(void);

/* Applies no_new_privs and the deny-list to the master: 0, or -1 with a message in err. */
int confine_master(char *err, size_t errlen);

/* The kernel's Landlock ABI version; 0 when it has none (the workers go without). */
int confine_landlock_abi(void);

/* The name of system call NR of this architecture ("openat"), or "#NR". */
void confine_syscall_name(int nr, char *buf, size_t len);

#endif
