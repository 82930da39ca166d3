/*
 * notify: the sd_notify(3) datagram protocol, written against its
 * documentation rather than linked from libsystemd: when systemd (or any
 * supervisor) sets NOTIFY_SOCKET, the master reports READY=1, RELOADING=1,
 * STOPPING=1 and STATUS= lines there. Without NOTIFY_SOCKET it does nothing.
 */
#ifndef EM_NOTIFY_H
#define EM_NOTIFY_H

#include "common/log.h"

/*
 * Reads NOTIFY_SOCKET. It stays in the environment: workers never exec, and
 * only the master (which opened the socket) ever sends.
 */
void notify_init(void);

/* Sends one message, e.g. "READY=1\nSTATUS=..."; failures are logged at debug only. */
void notify_send(const char *fmt, ...) EM_PRINTF(1, 2);

/* CLOCK_MONOTONIC in microseconds, as RELOADING=1's MONOTONIC_USEC= wants it. */
unsigned long long notify_monotonic_usec(void);

#endif
