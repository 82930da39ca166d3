/*
 * upmsg: the messages between an old master and the new master it started
 * for a live upgrade (`-s upgrade`), over a SOCK_SEQPACKET socketpair the
 * new master inherits (ECHOMASTER_UPGRADE_FD). One message per record, its
 * descriptors (SCM_RIGHTS) beside it.
 *
 *   old -> new  UPM_STATE          the old master's state, in format
 *                                  `version` (below); fds: its pid file's
 *                                  locked descriptor, control socket and
 *                                  /metrics listeners, those it has
 *   new -> old  UPM_ANSWER         `understood`: the new master read the state
 *   new -> old  UPM_READY          every worker of its first generation is ready
 *   old -> new  UPM_TAKE_OVER      the old master stopped answering operators:
 *                                  take its place, and its connections
 *   new -> old  UPM_TAKEN          the new master has the place (pid file,
 *                                  control socket, agent); until then the
 *                                  old master keeps them, and resumes
 *                                  serving if the new one dies first
 *   new -> old  UPM_HAND_OVER      for the old worker of `slot`: a worker
 *                                  channel's CHAN_HAND_OVER, relayed as is
 *   new -> old  UPM_HAND_OVER_END  every slot's hand-over has been sent
 *   old -> new  UPM_MAIN           systemd has been told the new master is
 *                                  the main process: it may notify now
 *
 * What never changes between versions is the envelope: magic, version,
 * kind, and the fields UPM_ANSWER and UPM_READY need (understood, pid,
 * generation, the binary's version), so that those two read alike
 * whatever each binary's state format is. A new binary that reads a state
 * version it does not know answers "not understood" (the envelope still
 * gives it the old master's pid and generation), and the upgrade falls
 * back to draining the old workers (see upgrading.c). The rest of UPM_STATE
 * belongs to its version; the other messages are only exchanged once the
 * state was understood.
 */
#ifndef EM_UPMSG_H
#define EM_UPMSG_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/chan.h"
#include "common/tlsctx.h"

/*
 * The state format this binary writes and reads. 2: the TLS session ticket
 * keys, and the new master confirms its take-over (UPM_TAKEN); a format-1
 * binary, which does neither, reads a format-2 state as not understood,
 * and the upgrade drains. Format 1 is still read (no ticket keys).
 */
#define UPMSG_VERSION 2

enum upmsg_kind {
	UPM_STATE = 1,
	UPM_ANSWER,
	UPM_READY,
	UPM_TAKE_OVER,
	UPM_HAND_OVER,
	UPM_HAND_OVER_END,
	UPM_TAKEN,
	UPM_MAIN,
};

/* Which descriptors a UPM_STATE carries, in this order. */
#define UPMSG_PID_FD      (1u << 0)
#define UPMSG_CTL_FD      (1u << 1)
#define UPMSG_METRICS_FD  (1u << 2)

/* UPM_STATE, format 1: what the new master carries on. */
struct upmsg_state {
	pid_t pid;                 /* the old master */
	unsigned generation;       /* its serving generation: the new one's first is the next */
	int nslots;                /* its serving generation's slots */
	uint64_t reloads_ok;
	uint64_t reloads_failed;
	uint64_t upgrades_ok;
	uint64_t upgrades_failed;
	int64_t started_ms;        /* CLOCK_MONOTONIC, shared by every process of the boot */
	uint32_t fds;              /* UPMSG_*_FD */
	bool has_tickets;          /* format 2: tickets holds the old master's keys */
	struct tlsctx_ticket_keys tickets; /* so that its clients' tickets resume on our workers */
};

struct upmsg {
	uint32_t kind;             /* enum upmsg_kind */
	uint32_t version;          /* of the sender's state format */
	bool understood;           /* UPM_STATE: version is ours; UPM_ANSWER: the peer read ours */
	struct upmsg_state state;  /* UPM_STATE, when understood */
	pid_t pid;                 /* UPM_READY: the new master */
	unsigned generation;       /* UPM_READY: its serving generation */
	char binary_version[32];   /* UPM_READY: its EM_VERSION */
	int slot;                  /* UPM_HAND_OVER: the old slot; UPM_TAKE_OVER: old slots */
	struct chan_msg hand;      /* UPM_HAND_OVER: the CHAN_HAND_OVER to relay */
	uint32_t nfds;
	int fds[CHAN_MAX_FDS];     /* what arrived (UPM_STATE), close-on-exec and the receiver's */
};

/*
 * Sends one message; for UPM_STATE the descriptors are FDS (NFDS of them,
 * in UPMSG_*_FD order), for UPM_HAND_OVER those of m->hand. VERSION is the
 * state format to write (UPMSG_VERSION; a test may ask for another). The
 * descriptors stay the caller's. 0, or -1 and errno.
 */
int upmsg_send(int fd, const struct upmsg *m, uint32_t version, const int *fds, uint32_t nfds);

/*
 * Receives one message: 1, 0 at EOF, -1 and errno (EAGAIN, or EPROTO for
 * a malformed one, whose descriptors were closed). A UPM_STATE of a version
 * not ours is returned with understood false and its descriptors closed.
 */
int upmsg_recv(int fd, struct upmsg *m);

/* Closes the descriptors a received message brought (fds, and hand's). */
void upmsg_close_fds(struct upmsg *m);

#endif
