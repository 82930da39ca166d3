/*
 * echobench udp: each socket keeps one datagram in flight. A datagram starts
 * with its sequence number in 16 decimal digits (digits pass the upper-case
 * transform unchanged) followed by pattern bytes chosen by that number, so
 * every reply can be checked and a late reply told from a wrong one. A
 * datagram unanswered after the timeout counts as lost and the next is sent.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "eb.h"

#define EB_UDP_HDR	16
#define EB_UDP_EVENTS	256

struct eb_usock {
	int		fd;
	uint64_t	seq;		/* of the datagram in flight */
	uint64_t	t0;		/* when it was sent */
};

struct eb_uloop {
	struct eb_thread	*t;
	const struct eb_opts	*o;
	struct eb_usock		*s;
	int			 n;
	unsigned char		 buf[65536];
};

static size_t
udp_off(const struct eb_uloop *u, int i, uint64_t seq)
{
	return (size_t)((seq * 7919 + (uint64_t)(u->t->first + i) * 131) %
	    EB_PAT);
}

static void
udp_error(struct eb_uloop *u, const char *what)
{
	if (u->t->st.errors++ < 3)
		fprintf(stderr, "echobench: udp thread %d: %s: %s\n", u->t->id,
		    what, strerror(errno));
}

static void
udp_send(struct eb_uloop *u, int i)
{
	struct eb_usock *s = &u->s[i];
	char hdr[EB_UDP_HDR + 1];
	struct iovec iov[2];

	s->seq++;
	snprintf(hdr, sizeof(hdr), "%016llu", (unsigned long long)s->seq);
	iov[0] = (struct iovec){ hdr, EB_UDP_HDR };
	iov[1] = (struct iovec){ eb_pattern + udp_off(u, i, s->seq),
	    u->o->msglen - EB_UDP_HDR };
	s->t0 = eb_now();
	if (writev(s->fd, iov, 2) == -1)
		udp_error(u, "send");
	else if (eb_measuring == 1)
		u->t->st.sent++;
}

static int
udp_seq(const unsigned char *p, uint64_t *seq)
{
	*seq = 0;
	for (int k = 0; k < EB_UDP_HDR; k++) {
		if (p[k] < '0' || p[k] > '9')
			return -1;
		*seq = *seq * 10 + (uint64_t)(p[k] - '0');
	}
	return 0;
}

static void
udp_mismatch(struct eb_uloop *u, int i, const char *why)
{
	static int reported;

	u->t->st.mismatches++;
	if (__atomic_fetch_add(&reported, 1, __ATOMIC_RELAXED) < 5)
		fprintf(stderr, "echobench: MISMATCH on udp socket %d: %s\n",
		    u->t->first + i, why);
}

static void
udp_read(struct eb_uloop *u, int i)
{
	struct eb_usock *s = &u->s[i];
	size_t m = u->o->msglen;

	for (;;) {
		ssize_t n = recv(s->fd, u->buf, sizeof(u->buf), MSG_DONTWAIT);
		uint64_t seq;

		if (n < 0) {
			if (errno != EAGAIN && errno != EINTR)
				udp_error(u, "recv");
			return;
		}
		if ((size_t)n != m || udp_seq(u->buf, &seq) == -1 ||
		    seq > s->seq) {
			udp_mismatch(u, i, "bad length or sequence number");
			continue;
		}
		if (!eb_verify(u->buf + EB_UDP_HDR, m - EB_UDP_HDR,
		    udp_off(u, i, seq))) {
			udp_mismatch(u, i, "payload differs");
			continue;
		}
		if (seq < s->seq) {	/* answered after it was given up */
			u->t->st.late++;
			continue;
		}
		if (eb_measuring == 1) {
			u->t->st.ops++;
			u->t->st.bytes += m;
			eb_hist_add(&u->t->st.lat, eb_now() - s->t0);
		}
		udp_send(u, i);
	}
}

static void
udp_expire(struct eb_uloop *u, uint64_t now)
{
	uint64_t limit = (uint64_t)(u->o->udp_timeout * 1e9);

	for (int i = 0; i < u->n; i++) {
		if (u->s[i].fd != -1 && now - u->s[i].t0 > limit) {
			if (eb_measuring == 1)
				u->t->st.lost++;
			udp_send(u, i);
		}
	}
}

void *
eb_udp(void *arg)
{
	struct eb_thread *t = arg;
	struct eb_uloop *u = calloc(1, sizeof(*u));
	struct epoll_event ev[EB_UDP_EVENTS];
	uint64_t last = eb_now();
	int ep = epoll_create1(EPOLL_CLOEXEC);

	if (u == NULL || ep == -1 || t->o->msglen < EB_UDP_HDR ||
	    t->o->msglen > 65507 ||
	    (u->s = calloc((size_t)t->nconns + 1, sizeof(*u->s))) == NULL) {
		fprintf(stderr, "echobench: udp: set-up failed (message "
		    "length must be %d..65507)\n", EB_UDP_HDR);
		t->failed = 1;
		goto out;
	}
	u->t = t;
	u->o = t->o;
	u->n = t->nconns;
	for (int i = 0; i < u->n; i++) {
		struct epoll_event e = { .events = EPOLLIN, .data.u32 = (uint32_t)i };
		struct eb_usock *s = &u->s[i];

		s->fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
		if (s->fd == -1 || connect(s->fd,
		    (const struct sockaddr *)&t->o->server,
		    sizeof(t->o->server)) == -1 ||
		    epoll_ctl(ep, EPOLL_CTL_ADD, s->fd, &e) == -1) {
			udp_error(u, "socket");
			if (s->fd != -1)
				close(s->fd);
			s->fd = -1;
			continue;
		}
		udp_send(u, i);
	}
	while (eb_measuring < 2) {
		int n = epoll_wait(ep, ev, EB_UDP_EVENTS, 5);
		uint64_t now;

		for (int k = 0; k < n; k++)
			udp_read(u, (int)ev[k].data.u32);
		if ((now = eb_now()) - last >= 5000000) {
			udp_expire(u, now);
			last = now;
		}
	}
out:
	if (u != NULL && u->s != NULL) {
		for (int i = 0; i < u->n; i++)
			if (u->s[i].fd != -1)
				close(u->s[i].fd);
		free(u->s);
	}
	free(u);
	if (ep != -1)
		close(ep);
	return NULL;
}
