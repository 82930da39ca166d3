/*
 * echobench TCP workloads. Each function is the body of one thread: it owns
 * an epoll instance and a slice of the connections, and counts into its own
 * struct eb_stats. Connections are indexed in epoll by their slot number.
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

#define EB_EVENTS	256
#define EB_IDLE_INFLIGHT 512	/* connects in progress per thread (idle) */
#define EB_PHASE_NS	(60 * 1000000000ull)	/* idle: limit per phase */

struct eb_conn {
	int		fd;
	uint32_t	events;		/* registered with epoll, 0 = none */
	int		connecting;
	size_t		off;		/* pattern offset of the message */
	uint64_t	sent, rcvd;	/* of the message, or stream positions */
	uint64_t	t0;
};

struct eb_loop {
	struct eb_thread	*t;
	const struct eb_opts	*o;
	int			 ep;
	struct eb_conn		*c;
	int			 n;
	int			 live;
	uint64_t		 issued, done, quota;	/* pingpong -n */
	uint64_t		 nextsrc;		/* churn: connection number */
	unsigned char		 buf[EB_RBUF];
};

static int eb_reported;		/* mismatches printed so far, all threads */

static void
eb_mismatch(struct eb_loop *l, int i, uint64_t pos, const unsigned char *got,
    size_t n)
{
	l->t->st.mismatches++;
	if (__atomic_fetch_add(&eb_reported, 1, __ATOMIC_RELAXED) >= 5)
		return;
	fprintf(stderr, "echobench: MISMATCH on connection %d at byte %llu "
	    "(%zu bytes read, first %02x expected %02x)\n",
	    l->t->first + i, (unsigned long long)pos, n, n ? got[0] : 0,
	    eb_expect[pos % EB_PAT]);
}

static void
eb_error(struct eb_loop *l, const char *what)
{
	if (l->t->st.errors++ < 3)
		fprintf(stderr, "echobench: thread %d: %s: %s\n", l->t->id,
		    what, errno ? strerror(errno) : "unexpected");
}

static int
eb_loop_init(struct eb_loop *l, struct eb_thread *t)
{
	memset(l, 0, sizeof(*l));
	l->t = t;
	l->o = t->o;
	l->n = t->nconns;
	l->ep = epoll_create1(EPOLL_CLOEXEC);
	l->c = calloc((size_t)(l->n ? l->n : 1), sizeof(*l->c));
	if (l->ep == -1 || l->c == NULL) {
		perror("echobench: epoll_create1/calloc");
		t->failed = 1;
		return -1;
	}
	for (int i = 0; i < l->n; i++)
		l->c[i].fd = -1;
	return 0;
}

static void
eb_loop_free(struct eb_loop *l)
{
	for (int i = 0; i < l->n; i++)
		if (l->c[i].fd != -1)
			close(l->c[i].fd);
	free(l->c);
	close(l->ep);
}

static void
eb_watch(struct eb_loop *l, int i, uint32_t events)
{
	struct eb_conn *c = &l->c[i];
	struct epoll_event ev = { .events = events, .data.u32 = (uint32_t)i };

	if (c->events == events)
		return;
	if (epoll_ctl(l->ep, c->events ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, c->fd,
	    &ev) == -1)
		eb_error(l, "epoll_ctl");
	c->events = events;
}

static void
eb_close(struct eb_loop *l, int i)
{
	struct eb_conn *c = &l->c[i];

	if (c->fd == -1)
		return;
	if (l->o->linger0) {
		struct linger lg = { 1, 0 };

		setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	}
	close(c->fd);
	c->fd = -1;
	c->events = 0;
	l->live--;
}

/* Opens connection slot i (connection number k of this thread). */
static int
eb_open(struct eb_loop *l, int i, uint64_t k, uint32_t events)
{
	struct eb_conn *c = &l->c[i];

	c->fd = eb_tcp_socket(l->o, (int)((uint64_t)l->t->first + k));
	if (c->fd == -1) {
		eb_error(l, "connect");
		return -1;
	}
	c->events = 0;
	c->connecting = 1;
	c->sent = c->rcvd = 0;
	c->t0 = eb_now();
	l->live++;
	eb_watch(l, i, events);
	return 0;
}

/* 0 once connect() completed, -1 (slot closed) if it failed. */
static int
eb_connected(struct eb_loop *l, int i)
{
	int err = 0;
	socklen_t len = sizeof(err);

	if (getsockopt(l->c[i].fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1 ||
	    err != 0) {
		errno = err;
		eb_error(l, "connect");
		eb_close(l, i);
		return -1;
	}
	l->c[i].connecting = 0;
	return 0;
}

/*
 * Reads what is there for message slot i, checking it; returns 1 when the
 * whole reply of msglen bytes is in, 0 if more is to come, -1 if the slot
 * was closed (error, mismatch, or the server closed).
 */
static int
eb_read_reply(struct eb_loop *l, int i, size_t msglen)
{
	struct eb_conn *c = &l->c[i];

	for (;;) {
		ssize_t n = read(c->fd, l->buf, sizeof(l->buf));

		if (n <= 0) {
			if (n < 0 && (errno == EAGAIN || errno == EINTR))
				return 0;
			if (n == 0)
				errno = 0;
			eb_error(l, n == 0 ? "server closed" : "read");
			eb_close(l, i);
			return -1;
		}
		if (c->rcvd + (size_t)n > msglen ||
		    !eb_verify(l->buf, (size_t)n, c->off + c->rcvd)) {
			eb_mismatch(l, i, c->off + c->rcvd, l->buf, (size_t)n);
			eb_close(l, i);
			return -1;
		}
		c->rcvd += (uint64_t)n;
		if (c->rcvd == msglen)
			return 1;
		if ((size_t)n < sizeof(l->buf))
			return 0;
	}
}

/* Writes the rest of the message; -1 if the slot was closed. */
static int
eb_write_msg(struct eb_loop *l, int i, size_t msglen)
{
	struct eb_conn *c = &l->c[i];
	ssize_t n;

	n = write(c->fd, eb_pattern + c->off + c->sent, msglen - c->sent);
	if (n < 0) {
		if (errno != EAGAIN && errno != EINTR) {
			eb_error(l, "write");
			eb_close(l, i);
			return -1;
		}
		n = 0;
	}
	c->sent += (uint64_t)n;
	return 0;
}

/* ---- pingpong ---- */

static void
pp_send(struct eb_loop *l, int i)
{
	struct eb_conn *c = &l->c[i];

	if (l->quota && l->issued >= l->quota) {
		eb_watch(l, i, EPOLLIN);
		return;
	}
	l->issued++;
	c->off = (c->off + 7919) % EB_PAT;
	c->sent = c->rcvd = 0;
	c->t0 = eb_now();
	if (eb_write_msg(l, i, l->o->msglen) == 0)
		eb_watch(l, i, c->sent < l->o->msglen ? EPOLLIN | EPOLLOUT :
		    EPOLLIN);
}

static void
pp_event(struct eb_loop *l, int i, uint32_t ev)
{
	struct eb_conn *c = &l->c[i];
	size_t m = l->o->msglen;

	if (c->connecting) {
		if (eb_connected(l, i) == 0)
			pp_send(l, i);
		return;
	}
	if ((ev & EPOLLOUT) && c->sent < m) {
		if (eb_write_msg(l, i, m) == -1)
			return;
		if (c->sent == m)
			eb_watch(l, i, EPOLLIN);
	}
	if (!(ev & (EPOLLIN | EPOLLHUP | EPOLLERR)))
		return;
	if (eb_read_reply(l, i, m) != 1)
		return;
	l->done++;
	if (eb_measuring == 1) {
		l->t->st.ops++;
		l->t->st.bytes += m;
		eb_hist_add(&l->t->st.lat, eb_now() - c->t0);
	}
	pp_send(l, i);
}

void *
eb_pingpong(void *arg)
{
	struct eb_thread *t = arg;
	struct eb_loop *l = malloc(sizeof(*l));
	struct epoll_event ev[EB_EVENTS];

	if (l == NULL || eb_loop_init(l, t) == -1) {
		free(l);
		return NULL;
	}
	if (t->o->count)
		l->quota = t->o->count / (uint64_t)t->o->threads +
		    (t->id == 0 ? t->o->count % (uint64_t)t->o->threads : 0);
	for (int i = 0; i < l->n; i++)
		eb_open(l, i, (uint64_t)i, EPOLLOUT);
	while (eb_measuring < 2 && l->live > 0 &&
	    !(l->quota && l->done >= l->quota)) {
		int n = epoll_wait(l->ep, ev, EB_EVENTS, 10);

		for (int k = 0; k < n; k++) {
			int i = (int)ev[k].data.u32;

			if (l->c[i].fd != -1)
				pp_event(l, i, ev[k].events);
		}
	}
	if (l->quota && l->done < l->quota)
		fprintf(stderr, "echobench: thread %d: %llu of %llu requests\n",
		    t->id, (unsigned long long)l->done,
		    (unsigned long long)l->quota);
	eb_loop_free(l);
	free(l);
	return NULL;
}

/* ---- churn: connect, one message, reply, close ---- */

/*
 * With --proxy-v2, a PROXY header goes before the message, in one writev
 * as a balancer that has the client's first bytes writes them: c->sent
 * then counts the header's bytes too.
 */
static int
churn_write(struct eb_loop *l, int i)
{
	struct eb_conn *c = &l->c[i];
	unsigned char h[EB_PROXY_V2_LEN];
	size_t hl = l->o->proxy_v2 ? EB_PROXY_V2_LEN : 0, m = l->o->msglen;
	struct iovec iov[2];
	int k = 0;
	ssize_t n;

	if (hl == 0)
		return eb_write_msg(l, i, m);
	if (c->sent < hl) {
		eb_proxy_v2(h, c->off);  /* the same bytes at every call for this connection */
		iov[k].iov_base = h + c->sent;
		iov[k++].iov_len = hl - c->sent;
	}
	iov[k].iov_base = eb_pattern + c->off + (c->sent > hl ? c->sent - hl : 0);
	iov[k++].iov_len = m - (c->sent > hl ? c->sent - hl : 0);
	n = writev(c->fd, iov, k);
	if (n < 0) {
		if (errno != EAGAIN && errno != EINTR) {
			eb_error(l, "write");
			eb_close(l, i);
			return -1;
		}
		n = 0;
	}
	c->sent += (uint64_t)n;
	return 0;
}

static void
churn_start(struct eb_loop *l, int i)
{
	struct eb_conn *c;

	if (eb_open(l, i, l->nextsrc++, 0) == -1)
		return;
	c = &l->c[i];
	c->off = (size_t)(l->nextsrc * 7919 % EB_PAT);
	/* On loopback the handshake is usually done when connect() returns. */
	if (churn_write(l, i) == -1)
		return;
	c->connecting = c->sent < l->o->msglen + (l->o->proxy_v2 ? EB_PROXY_V2_LEN : 0);
	eb_watch(l, i, c->connecting ? EPOLLOUT : EPOLLIN);
}

static void
churn_event(struct eb_loop *l, int i)
{
	struct eb_conn *c = &l->c[i];
	size_t m = l->o->msglen;

	if (c->connecting) {
		if (churn_write(l, i) == -1)
			return;
		if (c->sent < m + (l->o->proxy_v2 ? EB_PROXY_V2_LEN : 0))
			return;
		c->connecting = 0;
		eb_watch(l, i, EPOLLIN);
		return;
	}
	if (eb_read_reply(l, i, m) != 1)
		return;
	if (eb_measuring == 1) {
		l->t->st.ops++;
		l->t->st.bytes += m;
		eb_hist_add(&l->t->st.lat, eb_now() - c->t0);
	}
	eb_close(l, i);
	churn_start(l, i);
}

void *
eb_churn(void *arg)
{
	struct eb_thread *t = arg;
	struct eb_loop *l = malloc(sizeof(*l));
	struct epoll_event ev[EB_EVENTS];

	if (l == NULL || eb_loop_init(l, t) == -1) {
		free(l);
		return NULL;
	}
	/* Spread over the source addresses the way the threads are. */
	l->nextsrc = (uint64_t)t->id * 1000003u;
	for (int i = 0; i < l->n; i++)
		churn_start(l, i);
	while (eb_measuring < 2) {
		int n = epoll_wait(l->ep, ev, EB_EVENTS, 10);

		for (int k = 0; k < n; k++) {
			int i = (int)ev[k].data.u32;

			if (l->c[i].fd != -1)
				churn_event(l, i);
		}
		/* Slots whose connect failed are retried here, at most
		 * every 10 ms while all fail. */
		for (int i = 0; l->live < l->n && i < l->n; i++)
			if (l->c[i].fd == -1)
				churn_start(l, i);
	}
	eb_loop_free(l);
	free(l);
	return NULL;
}

/* ---- stream: continuous write and read, a bounded window in flight ---- */

static void
stream_pump(struct eb_loop *l, int i, uint64_t window)
{
	struct eb_conn *c = &l->c[i];

	while (c->sent - c->rcvd < window) {
		size_t len = l->o->msglen;
		ssize_t n;

		if (len > window - (c->sent - c->rcvd))
			len = (size_t)(window - (c->sent - c->rcvd));
		n = write(c->fd, eb_pattern + c->sent % EB_PAT, len);
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				break;
			eb_error(l, "write");
			eb_close(l, i);
			return;
		}
		c->sent += (uint64_t)n;
		if ((size_t)n < len)
			break;
	}
	eb_watch(l, i, c->sent - c->rcvd < window ? EPOLLIN | EPOLLOUT :
	    EPOLLIN);
}

static void
stream_read(struct eb_loop *l, int i)
{
	struct eb_conn *c = &l->c[i];

	for (;;) {
		ssize_t n = read(c->fd, l->buf, sizeof(l->buf));

		if (n <= 0) {
			if (n < 0 && (errno == EAGAIN || errno == EINTR))
				return;
			if (n == 0)
				errno = 0;
			eb_error(l, n == 0 ? "server closed" : "read");
			eb_close(l, i);
			return;
		}
		if (c->rcvd + (uint64_t)n > c->sent ||
		    !eb_verify(l->buf, (size_t)n, c->rcvd % EB_PAT)) {
			eb_mismatch(l, i, c->rcvd, l->buf, (size_t)n);
			eb_close(l, i);
			return;
		}
		c->rcvd += (uint64_t)n;
		if (eb_measuring == 1)
			l->t->st.bytes += (uint64_t)n;
		if ((size_t)n < sizeof(l->buf))
			return;
	}
}

void *
eb_stream(void *arg)
{
	struct eb_thread *t = arg;
	struct eb_loop *l = malloc(sizeof(*l));
	struct epoll_event ev[EB_EVENTS];
	uint64_t window;

	if (l == NULL || eb_loop_init(l, t) == -1) {
		free(l);
		return NULL;
	}
	window = 4 * (uint64_t)t->o->msglen;
	if (window < 256 * 1024)
		window = 256 * 1024;
	for (int i = 0; i < l->n; i++)
		eb_open(l, i, (uint64_t)i, EPOLLOUT);
	while (eb_measuring < 2 && l->live > 0) {
		int n = epoll_wait(l->ep, ev, EB_EVENTS, 10);

		for (int k = 0; k < n; k++) {
			int i = (int)ev[k].data.u32;
			struct eb_conn *c = &l->c[i];

			if (c->fd == -1)
				continue;
			if (c->connecting && eb_connected(l, i) == -1)
				continue;
			if (ev[k].events & (EPOLLIN | EPOLLHUP | EPOLLERR))
				stream_read(l, i);
			if (c->fd != -1)
				stream_pump(l, i, window);
		}
	}
	eb_loop_free(l);
	free(l);
	return NULL;
}

/* ---- idle: many connections held, each proven to echo before and after ---- */

static void
idle_open_all(struct eb_loop *l)
{
	struct epoll_event ev[EB_EVENTS];
	uint64_t end = eb_now() + EB_PHASE_NS;
	int next = 0, inflight = 0, settled = 0;

	while (settled < l->n && eb_now() < end) {
		while (inflight < EB_IDLE_INFLIGHT && next < l->n) {
			if (eb_open(l, next, (uint64_t)next, EPOLLOUT) == 0)
				inflight++;
			else
				settled++;
			next++;
		}
		int n = epoll_wait(l->ep, ev, EB_EVENTS, 10);

		for (int k = 0; k < n; k++) {
			int i = (int)ev[k].data.u32;

			if (l->c[i].fd == -1)
				continue;
			if (!l->c[i].connecting) {
				errno = 0;
				eb_error(l, "event on an idle connection");
				eb_close(l, i);
				continue;
			}
			inflight--;
			settled++;
			if (eb_connected(l, i) == 0) {
				l->t->st.opened++;
				eb_watch(l, i, EPOLLIN);
			}
		}
	}
	if (settled < l->n) {
		errno = ETIMEDOUT;
		eb_error(l, "opening connections");
	}
}

/* Sends one message on every open connection and waits for every reply. */
static uint64_t
idle_round(struct eb_loop *l)
{
	struct epoll_event ev[EB_EVENTS];
	uint64_t end = eb_now() + EB_PHASE_NS, echoed = 0;
	size_t m = l->o->msglen;
	int waiting = 0;

	for (int i = 0; i < l->n; i++) {
		struct eb_conn *c = &l->c[i];

		if (c->fd == -1)
			continue;
		c->off = (size_t)(l->t->first + i) * 131 % EB_PAT;
		c->sent = c->rcvd = 0;
		if (eb_write_msg(l, i, m) == -1)
			continue;
		if (c->sent < m) {
			errno = 0;
			eb_error(l, "short write of a small message");
			eb_close(l, i);
			continue;
		}
		waiting++;
	}
	while (waiting > 0 && eb_now() < end) {
		int n = epoll_wait(l->ep, ev, EB_EVENTS, 10);

		for (int k = 0; k < n; k++) {
			int i = (int)ev[k].data.u32;
			struct eb_conn *c = &l->c[i];
			int r;

			if (c->fd == -1)
				continue;
			/* Bytes after a complete reply are a mismatch too. */
			if (c->rcvd == m) {
				eb_read_reply(l, i, m);
				continue;
			}
			r = eb_read_reply(l, i, m);
			if (r != 0)
				waiting--;
			if (r == 1)
				echoed++;
		}
	}
	if (waiting > 0) {
		errno = ETIMEDOUT;
		eb_error(l, "waiting for idle replies");
		l->t->st.errors += (uint64_t)waiting - 1;
	}
	return echoed;
}

void *
eb_idle(void *arg)
{
	struct eb_thread *t = arg;
	struct eb_loop *l = malloc(sizeof(*l));
	int ok = l != NULL && eb_loop_init(l, t) == 0;

	/* Every thread passes all three barriers, whatever happens. */
	if (ok) {
		idle_open_all(l);
		t->st.echoed1 = idle_round(l);
	}
	pthread_barrier_wait(&eb_barrier);	/* main: hold, measure memory */
	pthread_barrier_wait(&eb_barrier);
	if (ok)
		t->st.ops = idle_round(l);
	pthread_barrier_wait(&eb_barrier);
	if (ok)
		eb_loop_free(l);
	free(l);
	return NULL;
}
