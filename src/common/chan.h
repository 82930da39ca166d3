/*
 * chan: the messages on a worker's channel to the master, a SOCK_SEQPACKET
 * socketpair the master makes at spawn, one message per record so that a
 * message and its descriptors arrive together or not at all.
 *
 *   worker -> master  CHAN_READY      once, when set up and about to serve
 *   master -> worker  CHAN_HAND_OVER  stop accepting and move every TCP
 *                                     connection to the workers at the other
 *                                     end of fds[] (handover sockets; entry[i]
 *                                     is that worker's scoreboard entry, for
 *                                     spreading, or CHAN_ENTRY_UNKNOWN);
 *                                     `more` says another
 *                                     CHAN_HAND_OVER with more peers follows
 *   master -> worker  CHAN_TAKE_OVER  fds[0] is a handover socket from a worker
 *                                     that is moving its connections here
 *
 * EOF either way means the other process is gone. Received descriptors are
 * close-on-exec and belong to the receiver; a malformed message's are closed.
 */
#ifndef EM_CHAN_H
#define EM_CHAN_H

#include <stdbool.h>
#include <stdint.h>

enum chan_kind { CHAN_READY = 1, CHAN_HAND_OVER, CHAN_TAKE_OVER };

/* Descriptors in one message; a hand-over to more workers takes several. */
#define CHAN_MAX_FDS 64

/*
 * CHAN_HAND_OVER's entry[i] when the receiver's scoreboard is not the
 * sender's (a live upgrade: the new master maps its own): its load cannot
 * be read, and the sender spreads by the count it has sent each receiver.
 */
#define CHAN_ENTRY_UNKNOWN UINT32_MAX

struct chan_msg {
	uint32_t kind;                  /* enum chan_kind */
	uint32_t nfds;
	bool more;                      /* CHAN_HAND_OVER: more peers follow */
	uint32_t entry[CHAN_MAX_FDS];   /* CHAN_HAND_OVER: scoreboard entry behind fds[i] */
	int fds[CHAN_MAX_FDS];          /* travel as SCM_RIGHTS */
};

/* Sends one message (MSG_NOSIGNAL, MSG_DONTWAIT); 0, or -1 and errno. The fds stay the caller's. */
int chan_send(int fd, const struct chan_msg *m);

/*
 * Receives one message: 1, 0 at EOF, or -1 and errno (EAGAIN: nothing
 * waiting; EPROTO: malformed, or descriptors lost to truncation; whatever
 * arrived was closed).
 */
int chan_recv(int fd, struct chan_msg *m);

/* Closes the descriptors a received message brought. */
void chan_close_fds(struct chan_msg *m);

#endif
