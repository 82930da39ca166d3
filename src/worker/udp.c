#include "worker/udp.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "common/log.h"
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

/* Keeps the datagrams worth answering, transformed, at the front of b->out. */
static unsigned
udp_prepare_replies(struct worker *w, struct udp_batch *b, int n, int mode)
{
	unsigned out = 0;

	for (int i = 0; i < n; i++) {
		struct msghdr *h = &b->in[i].msg_hdr;

		if ((h->msg_flags & MSG_TRUNC) || udp_port_is_loop_prone(source_port(&b->from[i]))) {
			w->me->dgrams_dropped++;
			continue;
		}
		b->iov[i].iov_len = b->in[i].msg_len;
		if (mode == CFG_MODE_UPPER)
			echo_upper(b->data[i], b->in[i].msg_len);
		b->out[out].msg_hdr = *h;
		b->out[out].msg_len = 0;
		out++;
	}
	return out;
}

void
udp_handle(struct worker *w, struct worker_listener *l)
{
	struct udp_batch *b = w->udp;
	unsigned count, sent = 0, delivered = 0;
	int n;

	udp_arm(b);
	n = recvmmsg(l->fd, b->in, UDP_BATCH, MSG_DONTWAIT, NULL);
	if (n <= 0) {
		if (n < 0 && errno != EAGAIN && errno != EINTR)
			log_warn("recvmmsg");
		return;
	}
	w->me->dgrams_in += (uint64_t)n;
	count = udp_prepare_replies(w, b, n, l->conf->mode);
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
}
