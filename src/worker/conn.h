/*
 * conn: TCP connections of a worker: accept, echo, backpressure, idle
 * timeout. Level-triggered epoll, one read per readiness event, so that a
 * busy client cannot starve the others.
 */
#ifndef EM_CONN_H
#define EM_CONN_H

#include <stdint.h>

#include "worker/worker.h"

/* Accepts a bounded batch of pending connections on a listener. */
void conn_accept(struct worker *w, struct worker_listener *l);

/* Handles epoll events for a connection; may close it. */
void conn_handle(struct worker *w, struct conn *c, uint32_t events);

/* Closes connections idle for idle_timeout seconds or more. */
void conn_expire_idle(struct worker *w);

/* Closes every connection (end of a drain). */
void conn_close_all(struct worker *w);

#endif
