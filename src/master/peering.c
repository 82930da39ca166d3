#include "master/peering.h"

#include <sys/socket.h>
#include <unistd.h>

#include "common/log.h"

void
peering_begin(struct peering *pr, int sender_chan, pid_t sender_pid)
{
	*pr = (struct peering){ .sender_chan = sender_chan, .sender_pid = sender_pid,
	    .pending = { .kind = CHAN_HAND_OVER } };
}

void
peering_begin_relay(struct peering *pr, peering_send_fn *relay, void *arg, pid_t who_pid)
{
	peering_begin(pr, -1, who_pid);
	pr->relay = relay;
	pr->relay_arg = arg;
}

/* Gives a receiver its end of a new pair; returns the other end, or -1. */
static int
peering_pair(int receiver_chan, pid_t receiver_pid)
{
	struct chan_msg m = { .kind = CHAN_TAKE_OVER, .nfds = 1 };
	int sv[2];

	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == -1) {
		log_warn("handover socketpair");
		return -1;
	}
	m.fds[0] = sv[1];
	if (chan_send(receiver_chan, &m) == -1) {
		log_warn("worker %ld channel: handover", (long)receiver_pid);
		close(sv[0]);
		close(sv[1]);
		return -1;
	}
	close(sv[1]);
	return sv[0];
}

/* Sends the sender ends gathered so far and closes our copies. */
static void
peering_flush(struct peering *pr, bool more)
{
	pr->pending.more = more;
	if ((pr->relay != NULL ? pr->relay(pr->relay_arg, &pr->pending) :
	    chan_send(pr->sender_chan, &pr->pending)) == -1) {
		log_warn("worker %ld channel: handover", (long)pr->sender_pid);
		pr->failed = true;
	}
	chan_close_fds(&pr->pending);
}

void
peering_add(struct peering *pr, int receiver_chan, pid_t receiver_pid, unsigned receiver_entry)
{
	struct chan_msg *m = &pr->pending;
	int fd;

	if (pr->failed || (fd = peering_pair(receiver_chan, receiver_pid)) == -1)
		return;
	m->fds[m->nfds] = fd;
	m->entry[m->nfds++] = receiver_entry;
	pr->peers++;
	if (m->nfds == CHAN_MAX_FDS)
		peering_flush(pr, true);
}

int
peering_end(struct peering *pr)
{
	if (pr->failed || pr->peers == 0) {
		chan_close_fds(&pr->pending);
		return -1;
	}
	peering_flush(pr, false);
	return pr->failed ? -1 : 0;
}

void
peering_window(int i, int nold, int nnew, int *first, int *count)
{
	int k = 2 * ((nnew + nold - 1) / nold);

	*first = (int)((long)i * nnew / nold);
	*count = k < 8 ? 8 : k;
	if (*count > nnew)
		*count = nnew;
}
