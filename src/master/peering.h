/*
 * peering: the sockets a handover runs on (reload_handover, TTOU). For one
 * sending worker the master makes a SOCK_SEQPACKET pair per receiving
 * worker, gives the receiver its end at once (CHAN_TAKE_OVER) and the
 * sender all the other ends (CHAN_HAND_OVER, CHAN_MAX_FDS a message, `more`
 * on all but the last). The master keeps no copy of any of them. Which
 * workers take part is the supervisor's business; this only wires them.
 */
#ifndef EM_PEERING_H
#define EM_PEERING_H

#include <stdbool.h>
#include <sys/types.h>

#include "common/chan.h"

/*
 * How the sender's messages travel when the sender is not the master's own
 * worker: a live upgrade's new master relays them to the old master, which
 * forwards them to its worker (upgrade.c). 0, or -1 and errno.
 */
typedef int peering_send_fn(void *arg, const struct chan_msg *m);

/* One sender's hand-over being wired: peering_begin, peering_add for each receiver, peering_end. */
struct peering {
	int sender_chan;          /* -1 with a relay */
	pid_t sender_pid;         /* for messages; with a relay, the old master */
	peering_send_fn *relay;   /* NULL: chan_send on sender_chan */
	void *relay_arg;
	int peers;                /* receivers wired so far */
	bool failed;              /* the sender's channel refused a message */
	struct chan_msg pending;  /* sender ends not yet sent */
};

void peering_begin(struct peering *pr, int sender_chan, pid_t sender_pid);

/* The same for a sender that RELAY reaches (with ARG); WHO_PID names it in messages. */
void peering_begin_relay(struct peering *pr, peering_send_fn *relay, void *arg, pid_t who_pid);

/*
 * Wires one receiver (its channel, pid for messages, scoreboard entry for
 * the sender's spreading). A receiver whose channel fails is left out.
 */
void peering_add(struct peering *pr, int receiver_chan, pid_t receiver_pid,
    unsigned receiver_entry);

/* Sends the last message: 0, or -1 when the sender was not told, or has no receiver. */
int peering_end(struct peering *pr);

/*
 * The receivers of old slot I of NOLD when NNEW workers take over: COUNT
 * new slots from FIRST on (wrapping). The windows of all old slots cover
 * every new one at least twice over (or all of them), so that wiring costs
 * O(workers), not O(old x new), and each new worker hears from enough
 * senders for them to even out what it gets.
 */
void peering_window(int i, int nold, int nnew, int *first, int *count);

#endif
