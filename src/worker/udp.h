/*
 * udp: datagram echo of a worker, batched with recvmmsg/sendmmsg.
 */
#ifndef EM_UDP_H
#define EM_UDP_H

#include "worker/worker.h"

/* The largest datagram payload over IPv4 is 65507 bytes; IPv6 allows 65527. */
#define UDP_MAX_DATAGRAM 65536
#define UDP_BATCH 16

struct udp_batch *udp_batch_new(void);
void udp_batch_free(struct udp_batch *b);

/* Echoes the datagrams waiting on a UDP listener, one batch. */
void udp_handle(struct worker *w, struct worker_listener *l);

/* True for source ports of services that answer anything (echo, daytime,
 * qotd, chargen, time) and for port 0: replying there starts loops. */
int udp_port_is_loop_prone(unsigned port);

#endif
