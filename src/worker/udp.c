#include "worker/udp.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/ev.h"
#include "common/log.h"
#include "common/sock.h"
#include "worker/acl.h"
#include "worker/echo.h"

/* Buffers for one recvmmsg/sendmmsg round trip; one per worker, reused. */
struct udp_batch {
	struct mmsghdr in[UDP_BATCH];
	struct mmsghdr out[UDP_BATCH];
	struct iovec iov[UDP_BATCH];
	struct sockaddr_storage from[UDP_BATCH];
	unsigned char data[UDP_BATCH][UDP_MAX_DATAGRAM];
};

struct udp_batch *
udp_batch_new(void)
{
	/* malloc, not calloc: untouched datagram pages never become resident. */
	struct udp_batch *b = malloc(sizeof(*b));

	if (b == NULL)
		return NULL;
	memset(b, 0, offsetof(struct udp_batch, data));
	return b;
}

void
udp_batch_free(struct udp_batch *b)
{
	free(b);
}

int
udp_port_is_loop_prone(unsigned port)
{
	switch (port) {
	case 0:   /* no real sender uses it: spoofed */
	case 7:   /* echo */
	case 13:  /* daytime */
	case 17:  /* qotd */
	case 19:  /* chargen */
	case 37:  /* time */
		return 1;
	default:
		return 0;
	}
}

static unsigned
source_port(const struct sockaddr_storage *ss)
{
	if (ss->ss_family == AF_INET)
		return ntohs(((const struct sockaddr_in *)ss)->sin_port);
	if (ss->ss_family == AF_INET6)
		return ntohs(((const struct sockaddr_in6 *)ss)->sin6_port);
	return 0;
}

static void
udp_arm(struct udp_batch *b)
{
	for (int i = 0; i < UDP_BATCH; i++) {
		b->iov[i].iov_base = b->data[i];
		b->iov[i].iov_len = UDP_MAX_DATAGRAM;
		b->in[i].msg_hdr.msg_iov = &b->iov[i];
		b->in[i].msg_hdr.msg_iovlen = 1;
		b->in[i].msg_hdr.msg_name = &b->from[i];
		b->in[i].msg_hdr.msg_namelen = sizeof(b->from[i]);
		b->in[i].msg_hdr.msg_flags = 0;
	}
}

static void
udp_log_refused(const struct sockaddr_storage *from, const char *why)
{
	char addr[64];

	/* Debug only: a flood must not become a flood of log lines. */
	if (!log_enabled(LOG_DEBUG))
		return;
	sock_addr_format(from, addr, sizeof(addr));
	log_debug("datagram from %s dropped: %s", addr, why);
}

/*
 * Whether a datagram from FROM may be answered: the listener's access
 * lists, then the source's token bucket, shared by all workers. Counts
 * what it refuses.
 */
static bool
udp_admits(struct worker *w, const struct worker_listener *l,
    const struct sockaddr_storage *from, uint64_t now_ns)
{
	const struct sockaddr *sa = (const struct sockaddr *)from;
	struct addrtab *t = &w->sb->addr;

	if (l->screen && !acl_admits(&l->conf->allow, &l->conf->deny, sa)) {
		w->me->dgrams_denied++;
		udp_log_refused(from, "access list");
		return false;
	}
	if (w->cfg->udp_rate != 0 && !addrtab_rate_admit(t, addrtab_hash(t, sa), now_ns,
	    (uint32_t)w->cfg->udp_rate, (uint32_t)w->cfg->udp_burst)) {
		w->me->dgrams_ratelimited++;
		udp_log_refused(from, "udp_rate");
		return false;
	}
	return true;
}

/*
 * whoami: the reply is the line, cut to the datagram's own length, so that
 * an answer is never larger than its question (no amplification from a
 * spoofed source). server= is the listener's address as configured: a
 * wildcard listener does not learn which local address a datagram hit.
 */
static void
udp_whoami(struct worker *w, const struct worker_listener *l, struct udp_batch *b, int i)
{
	char line[ECHO_WHOAMI_MAX];
	struct echo_whoami who = {
		.instance = w->cfg->instance, .host = w->cfg->hostname, .pid = (long)getpid(),
		.slot = w->me->slot, .generation = w->me->generation, .client = &b->from[i],
		.server = &l->conf->addr,
	};
	size_t n = echo_whoami(line, sizeof(line), &who);

	if (n > b->in[i].msg_len)
		n = b->in[i].msg_len;
	memcpy(b->data[i], line, n);
	b->iov[i].iov_len = n;
}

/* Keeps the datagrams worth answering, transformed, at the front of b->out. */
static unsigned
udp_prepare_replies(struct worker *w, const struct worker_listener *l, struct udp_batch *b, int n)
{
	/* The token buckets' clock, read once per batch. */
	uint64_t now_ns = w->cfg->udp_rate != 0 ? ev_now_ns() : 0;
	int mode = l->conf->mode;
	unsigned out = 0;

	for (int i = 0; i < n; i++) {
		struct msghdr *h = &b->in[i].msg_hdr;

		if ((h->msg_flags & MSG_TRUNC) || udp_port_is_loop_prone(source_port(&b->from[i]))) {
			w->me->dgrams_dropped++;
			continue;
		}
		if ((l->screen || w->cfg->udp_rate != 0) && !udp_admits(w, l, &b->from[i], now_ns))
			continue;
		b->iov[i].iov_len = b->in[i].msg_len;
		if (mode == CFG_MODE_UPPER)
			echo_upper(b->data[i], b->in[i].msg_len);
		else if (mode == CFG_MODE_WHOAMI)
			udp_whoami(w, l, b, i);
		b->out[out].msg_hdr = *h;
		b->out[out].msg_len = 0;
		out++;
	}
	return out;
}

/*
 * One recvmmsg batch in, its replies out. Returns how many datagrams came
 * in: a full batch means more are likely waiting.
 */
static int
udp_round(struct worker *w, struct worker_listener *l)
{
	struct udp_batch *b = w->udp;
	unsigned count, sent = 0, delivered = 0;
	int n;

	udp_arm(b);
	n = recvmmsg(l->fd, b->in, UDP_BATCH, MSG_DONTWAIT, NULL);
	if (n <= 0) {
		if (n < 0 && errno != EAGAIN && errno != EINTR)
			log_warn("recvmmsg");
		return 0;
	}
	w->me->dgrams_in += (uint64_t)n;
	count = udp_prepare_replies(w, l, b, n);
	while (sent < count) {
		int k = sendmmsg(l->fd, b->out + sent, count - sent, MSG_DONTWAIT);
		if (k > 0) {
			sent += (unsigned)k;
			delivered += (unsigned)k;
			continue;
		}
		/*
		 * The socket's send buffer is full or the destination refuses:
		 * UDP promises no delivery, and waiting here would stall every
		 * other client, so the rest of the batch is dropped and counted.
		 * Only an error in the first datagram is reported by the kernel,
		 * so skip that one and go on with the others.
		 */
		if (k < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != ENOBUFS) {
			w->me->dgrams_dropped++;
			sent++;
			continue;
		}
		w->me->dgrams_dropped += count - sent;
		break;
	}
	w->me->dgrams_out += delivered;
	return n;
}

/*
 * While batches come back full, the queue holds more: take them now rather
 * than after another epoll_wait. Bounded, so that a UDP flood cannot
 * starve this worker's TCP connections: at most 256 datagrams, well under a
 * millisecond, before they get their turn.
 */
#define UDP_ROUNDS 16

void
udp_handle(struct worker *w, struct worker_listener *l)
{
	for (int i = 0; i < UDP_ROUNDS; i++)
		if (udp_round(w, l) < UDP_BATCH)
			break;
}
