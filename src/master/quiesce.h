/*
 * quiesce: the first step of a graceful stop, which makes it reset no
 * connection the kernel has accepted. A listener's accept queue holds
 * connections whose clients were told "connected"; when the last socket of
 * a listener closes, the kernel resets them. So before the workers stop
 * accepting, each TCP listener gets a socket filter that drops segments
 * with SYN set and ACK clear: no new handshake starts, while the ones in
 * progress finish (their ACK passes) and land in the queue. The workers keep
 * accepting until every queue is empty (TCP_INFO: tcpi_unacked is a
 * listener's accept queue length) and no handshake is in progress
 * (sock_diag: request sockets in SYN_RECV on the listener's port). Only
 * then are the workers told to stop. Clients that connect after the filter
 * went on see their SYN unanswered, retransmit, and get ECONNREFUSED once
 * the listener is closed: refused, never reset after "connected".
 *
 * One gap the kernel leaves open: a handshake answered with a SYN cookie
 * (the SYN queue had overflowed) has no request socket to wait for; its
 * ACK, one round trip later, still completes. quiesce therefore waits at
 * least QUIESCE_SETTLE_MS after the filter went on, which covers a round
 * trip on a LAN, not across the world.
 *
 * UDP listeners have no queue of accepted clients: nothing to do for them.
 * The filter must not outlive the master (systemd can keep a listening
 * socket across a restart): quiesce_release detaches it.
 */
#ifndef EM_QUIESCE_H
#define EM_QUIESCE_H

#include <linux/filter.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The shortest wait after the filter went on (SYN cookies, above). */
#define QUIESCE_SETTLE_MS 100
/* How often the queues are looked at while waiting. */
#define QUIESCE_POLL_MS 10

/* The classic BPF program: drop SYN without ACK, pass every other segment. */
#define QUIESCE_PROG_LEN 5
void quiesce_program(struct sock_filter prog[QUIESCE_PROG_LEN]);

/* Attaches and detaches the program on one TCP listener; 0 or -1 and errno. */
int quiesce_attach(int fd);
int quiesce_detach(int fd);

/* The listener's accept queue length now; -1 and errno on failure. */
int quiesce_queue_len(int fd);

/*
 * Handshakes in progress (request sockets in SYN_RECV) on the local port of
 * the listener FD, of its address family; -1 and errno on failure.
 */
int quiesce_handshakes(int fd);

struct quiesce_sock {
	int fd;            /* not owned */
	bool attached;
};

/* One graceful stop's wait over a set of TCP listeners. */
struct quiesce {
	struct quiesce_sock *s;
	size_t n;
	int64_t started_ms;
	int64_t settle_ms;   /* not done before this */
	int64_t deadline_ms; /* given up at this time */
	int64_t next_ms;     /* the next look */
	int queued;          /* at the last look: accepted, not yet taken by a worker */
	int handshakes;      /* at the last look: in progress */
};

enum quiesce_result { QUIESCE_WAITING, QUIESCE_DONE, QUIESCE_TIMED_OUT };

/*
 * Filters each of FDS[0..n) (TCP listeners; the caller keeps them open
 * until quiesce_release) and starts the wait, which gives up after
 * timeout_ms. A listener the filter cannot go on is logged and only waited
 * for. -1 when out of memory.
 */
int quiesce_begin(struct quiesce *q, const int *fds, size_t n, int64_t now, int timeout_ms);

/* Looks when due: done once every queue is empty and no handshake is in progress. */
enum quiesce_result quiesce_poll(struct quiesce *q, int64_t now);

/* When quiesce_poll next wants to look. */
int64_t quiesce_due(const struct quiesce *q);

/* Detaches every filter it attached and forgets the set; safe to call twice. */
void quiesce_release(struct quiesce *q);

#endif
