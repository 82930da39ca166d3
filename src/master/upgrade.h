/*
 * upgrade: the mechanics of a live binary upgrade (`-s upgrade`, SIGUSR2),
 * on both sides; upgrading.c decides when each step happens.
 *
 * The old master: upgrade_check runs `EXE -t -c CONF` in a child, its
 * stderr through a pipe; upgrade_spawn forks and execs `EXE -F -c CONF`
 * with the listening sockets as LISTEN_FDS and a SOCK_SEQPACKET channel as
 * ECHOMASTER_UPGRADE_FD, then sends the state (upmsg.h) with the pid
 * file's locked descriptor and the control and /metrics listeners. The
 * new master stays its child until it exits. upgrade_read turns the
 * channel's messages into events; upgrade_kill ends a failed attempt.
 *
 * The new master: upgrade_boot reads the state at start-up (main.c) and
 * answers; upgrade_adopt watches the channel; upgrade_send_ready,
 * upgrade_relay (a peering sender: each old slot's hand-over, tagged with
 * the slot) and upgrade_send_end talk back.
 *
 * The module reports; nothing here touches the supervisor or the admin
 * sockets.
 */
#ifndef EM_UPGRADE_H
#define EM_UPGRADE_H

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/chan.h"
#include "common/ev.h"
#include "master/listeners.h"
#include "master/upmsg.h"

/* How long the check of the new binary may take. */
#define UPGRADE_CHECK_TIMEOUT_MS 10000
/* How long the new master may take from fork to READY (as a reload's workers), and to confirm its take-over. */
#define UPGRADE_READY_TIMEOUT_MS 10000
/* The environment variable naming the new master's end of the channel. */
#define UPGRADE_FD_ENV "ECHOMASTER_UPGRADE_FD"

enum upgrade_phase {
	UP_IDLE,
	UP_CHECKING,    /* old: the check child runs */
	UP_STARTING,    /* old: the new master runs, not ready yet */
	UP_CONFIRMING,  /* old: told the new master to take over; it has not confirmed yet */
	UP_COMMITTED,   /* old: the new master has taken over */
	UP_ADOPTING,    /* new: started by an old master, not taken over yet */
	UP_ADOPTED,     /* new: took over; the channel may still bring the old master's EOF */
};

enum upgrade_event {
	UPE_NONE,
	UPE_CHECKED,     /* the check passed */
	UPE_FAILED,      /* before READY; why says why */
	UPE_ANSWERED,    /* the new master read the state, or said it could not (understood) */
	UPE_READY,       /* the new master is ready: msg.pid, msg.binary_version, msg.generation */
	UPE_HAND_OVER,   /* old: a relayed hand-over for msg.slot in msg.hand (the caller closes) */
	UPE_HANDED,      /* old: every hand-over has been relayed */
	UPE_TAKEN,       /* old: the new master has taken our place */
	UPE_TAKE_OVER,   /* new: msg.slot old slots */
	UPE_PEER_GONE,   /* the other master closed its end */
	UPE_MAIN,        /* new: systemd knows us as its main process now (UPM_MAIN) */
};

struct upgrade {
	struct ev_source ev;      /* the channel, of the kind upgrade_init was given */
	int epfd;
	char exe[PATH_MAX];
	char conf[PATH_MAX];
	enum upgrade_phase phase;
	pid_t check_pid;          /* 0 = none */
	int check_fd;             /* its stderr; -1 = none */
	pid_t new_pid;            /* old: the new master, 0 = none */
	pid_t peer_pid;           /* the other master */
	int chan;                 /* -1 = none */
	bool understood;          /* old: the new master read our state */
	int64_t deadline_ms;      /* UP_CHECKING, UP_STARTING, UP_CONFIRMING */
	char why[PATH_MAX + 512]; /* UPE_FAILED */
	struct upmsg msg;         /* the last message upgrade_read returned */
};

/* Sets up an idle upgrade; EXE and CONF are absolute, resolved at start-up. */
void upgrade_init(struct upgrade *u, int epfd, uint8_t kind, const char *exe, const char *conf);

/* Starts the check of the new binary; -1 with why. */
int upgrade_check(struct upgrade *u, int64_t now);

/*
 * Starts the new master: LS's sockets become its LISTEN_FDS, and the state
 * ST goes over the channel with the descriptors PASS[0..2] (pid file,
 * control socket, /metrics; -1 for those we lack). -1 with why.
 */
int upgrade_spawn(struct upgrade *u, const struct upmsg_state *st, const int pass[3],
    const struct listeners *ls, int64_t now);

/*
 * A child was reaped: true when it was the check or the new master, with
 * what that means in *ev (UPE_CHECKED, UPE_FAILED before the new master
 * confirmed its take-over, or UPE_NONE after, logged).
 */
bool upgrade_reaped(struct upgrade *u, pid_t pid, int status, enum upgrade_event *ev);

/* The channel is readable: one message's meaning. */
enum upgrade_event upgrade_read(struct upgrade *u);

/* Past the deadline of the current phase (then why says so). */
bool upgrade_overdue(struct upgrade *u, int64_t now);

/* When the current phase's deadline falls; 0 = none. */
int64_t upgrade_due(const struct upgrade *u);

/* Kills (SIGKILL) and reaps the check or the new master, closes the channel: idle again. */
void upgrade_kill(struct upgrade *u);

/*
 * Old: tells the new master to take over, NOLD the old slots; it has until
 * now + UPGRADE_READY_TIMEOUT_MS to confirm (UPE_TAKEN). 0, or -1 with why.
 */
int upgrade_take_over(struct upgrade *u, int nold, int64_t now);

/* Stops watching the channel and closes it (the peer sees EOF); once, whatever calls it again. */
void upgrade_close(struct upgrade *u);

/*
 * New: the old master that started us, while it is still there (its
 * channel open: it drains until its workers finish); 0 once it has exited,
 * or when no upgrade started us.
 */
pid_t upgrade_predecessor(const struct upgrade *u);

/*
 * New: whether the old master's place (pid file, control socket, /metrics,
 * agent) is ours. Until we took over it is the old master's, serving on: we
 * must not unlink its paths at our exit, nor filter the shared listeners.
 */
bool upgrade_owns_place(const struct upgrade *u);

/*
 * New, at start-up: reads the old master's state from FD (bounded wait)
 * and answers whether it was understood. Returns 0 with *m (its
 * descriptors the caller's), -1 with a message in err.
 */
int upgrade_boot(int fd, struct upmsg *m, char *err, size_t errlen);

/* New: watches FD, the channel to the old master OLD_PID. */
void upgrade_adopt(struct upgrade *u, int fd, pid_t old_pid);

/* New: READY for GENERATION. 0, or -1 (logged). */
int upgrade_send_ready(struct upgrade *u, unsigned generation);

/* A peering sender (peering.h) that relays to the old worker of one old slot. */
struct upgrade_relay {
	struct upgrade *u;
	int slot;
};
int upgrade_relay(void *arg, const struct chan_msg *m);

/* Old: systemd has been told the new master's pid (UPM_MAIN). 0, or -1 (logged). */
int upgrade_send_main(struct upgrade *u);

/* New: we have the old master's place (UPM_TAKEN). 0, or -1 (logged). */
int upgrade_send_taken(struct upgrade *u);

/* New: every slot's hand-over has been relayed. 0, or -1 (logged). */
int upgrade_send_end(struct upgrade *u);

#endif
