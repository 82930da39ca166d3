/*
 * notify: the sd_notify(3) datagram protocol, written against its
 * documentation rather than linked from libsystemd: when systemd (or any
 * supervisor) sets NOTIFY_SOCKET, the master reports READY=1, RELOADING=1,
 * STOPPING=1 and STATUS= lines there, and stores its listening sockets
 * with systemd (FDSTORE=1). Without NOTIFY_SOCKET it does nothing.
 */
#ifndef EM_NOTIFY_H
#define EM_NOTIFY_H

#include <stddef.h>

#include "common/log.h"

/*
 * Reads NOTIFY_SOCKET. It stays in the environment: workers never exec, and
 * only the master (which opened the socket) ever sends.
 */
void notify_init(void);

/* Sends one message, e.g. "READY=1\nSTATUS=..."; failures are logged at debug only. */
void notify_send(const char *fmt, ...) EM_PRINTF(1, 2);

/*
 * The name every listening socket is stored under in systemd's file
 * descriptor store; LISTEN_FDNAMES repeats it once per socket.
 */
#define NOTIFY_FDNAME "listener"

/*
 * Hands FDS (N listening sockets) to systemd's file descriptor store, in
 * place of whatever this service stored before: FDSTOREREMOVE=1 of every
 * NOTIFY_FDNAME descriptor, then FDSTORE=1 with these (SCM_RIGHTS). systemd
 * keeps them while the service is restarted (`systemctl restart`, or after
 * a crash) and passes them to the next master in LISTEN_FDS, so the ports
 * never close. The master keeps its own copies. A unit without
 * FileDescriptorStoreMax= makes systemd drop them; without NOTIFY_SOCKET
 * nothing is sent. Returns 0, or -1 if a message could not be sent.
 */
int notify_store_fds(const int *fds, size_t n);

/* CLOCK_MONOTONIC in microseconds, as RELOADING=1's MONOTONIC_USEC= wants it. */
unsigned long long notify_monotonic_usec(void);

#endif
