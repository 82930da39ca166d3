/*
 * echobench TLS workloads (built into tlsbench: echobench.c with EB_TLS).
 * Each function is the body of one thread, as in eb_tcp.c: an epoll loop
 * over its slice of the connections, each a non-blocking OpenSSL client
 * driven by WANT_READ / WANT_WRITE, every reply byte checked.
 *
 * The client fixes what every server negotiates, so that all are measured
 * on the same terms: TLS 1.3 only, TLS_AES_128_GCM_SHA256 only, the default
 * key-share groups (X25519 first). The certificate is not verified (the
 * bench's is self-signed); --wait checks it is an ECDSA P-256 one.
 *
 *   tls-handshake  connect, full handshake, one message and its reply,
 *                  close_notify, close; ops = handshakes
 *   tls-resume     the same, offering the session ticket the slot's previous
 *                  connection got; ops = resumed handshakes, and a handshake
 *                  that did not resume is an error (SSL_session_reused)
 *   tls-pingpong   request and reply over connections opened first
 *   tls-stream     continuous writes and reads, a bounded window in flight
 * With -n, tls-pingpong stops after N requests, tls-handshake after N
 * handshakes, tls-resume after N resumed ones and tls-stream once N writes
 * (of -m bytes) are echoed: fixed work, for callgrind.sh and syscalls.sh.
 *   tls-idle       connections held after a handshake and an echo
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "eb.h"

#define TL_EVENTS	256
#define TL_IDLE_INFLIGHT 128	/* handshakes in progress per thread (idle) */
#define TL_PHASE_NS	(60 * 1000000000ull)
#define TL_SUITE	"TLS_AES_128_GCM_SHA256"

enum tl_phase { TL_CONNECT, TL_HANDSHAKE, TL_SEND, TL_RECV, TL_OPEN, TL_IDLE };

struct tl_conn {
	int		 fd;
	SSL		*ssl;
	uint32_t	 events;
	enum tl_phase	 phase;
	int		 counted;	/* tls-resume: a ticket was offered */
	size_t		 off;		/* pattern offset of the message */
	uint64_t	 sent, rcvd, t0;
	size_t		 wlen;		/* stream: a write to repeat, 0 none */
};

struct tl_loop {
	struct eb_thread	*t;
	const struct eb_opts	*o;
	int			 ep;
	struct tl_conn		*c;
	SSL_SESSION		**sess;		/* tls-resume: per slot */
	int			 n, live, resume;
	uint64_t		 nextsrc;
	uint64_t		 issued, done, quota;	/* -n: counted exchanges */
	unsigned char		 buf[EB_RBUF];
};

static SSL_CTX *tl_ctx;
static int tl_reported;

/* The client context all threads share; 0, or -1 with OpenSSL's reason. */
int
eb_tls_init(void)
{
	if ((tl_ctx = SSL_CTX_new(TLS_client_method())) == NULL ||
	    SSL_CTX_set_min_proto_version(tl_ctx, TLS1_3_VERSION) != 1 ||
	    SSL_CTX_set_max_proto_version(tl_ctx, TLS1_3_VERSION) != 1 ||
	    SSL_CTX_set_ciphersuites(tl_ctx, TL_SUITE) != 1) {
		ERR_print_errors_fp(stderr);
		return -1;
	}
	SSL_CTX_set_verify(tl_ctx, SSL_VERIFY_NONE, NULL);
	SSL_CTX_set_session_cache_mode(tl_ctx, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_mode(tl_ctx, SSL_MODE_RELEASE_BUFFERS |
	    SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	return 0;
}

static void
tl_error(struct tl_loop *l, const char *what)
{
	unsigned long e = ERR_peek_last_error();
	char ebuf[256] = "";

	if (e)
		ERR_error_string_n(e, ebuf, sizeof(ebuf));
	ERR_clear_error();
	if (l->t->st.errors++ < 3)
		fprintf(stderr, "echobench: thread %d: %s: %s\n", l->t->id,
		    what, *ebuf ? ebuf : errno ? strerror(errno) : "unexpected");
}

static void
tl_watch(struct tl_loop *l, int i, uint32_t events)
{
	struct tl_conn *c = &l->c[i];
	struct epoll_event ev = { .events = events, .data.u32 = (uint32_t)i };

	if (c->events == events)
		return;
	if (epoll_ctl(l->ep, c->events ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, c->fd,
	    &ev) == -1)
		tl_error(l, "epoll_ctl");
	c->events = events;
}

static void
tl_close(struct tl_loop *l, int i, int notify)
{
	struct tl_conn *c = &l->c[i];

	if (c->fd == -1)
		return;
	if (notify)
		SSL_shutdown(c->ssl);	/* our close_notify, not waited for */
	SSL_free(c->ssl);
	ERR_clear_error();
	if (l->o->linger0) {
		struct linger lg = { 1, 0 };

		setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	}
	close(c->fd);
	c->fd = -1;
	c->ssl = NULL;
	c->events = 0;
	l->live--;
}

static int
tl_loop_init(struct tl_loop *l, struct eb_thread *t, int resume)
{
	memset(l, 0, sizeof(*l));
	l->t = t;
	l->o = t->o;
	l->n = t->nconns;
	l->resume = resume;
	l->ep = epoll_create1(EPOLL_CLOEXEC);
	l->c = calloc((size_t)(l->n ? l->n : 1), sizeof(*l->c));
	l->sess = calloc((size_t)(l->n ? l->n : 1), sizeof(*l->sess));
	if (l->ep == -1 || l->c == NULL || l->sess == NULL) {
		perror("echobench: epoll_create1/calloc");
		t->failed = 1;
		return -1;
	}
	for (int i = 0; i < l->n; i++)
		l->c[i].fd = -1;
	if (l->o->count)	/* -n, split over the threads as eb_tcp.c does */
		l->quota = l->o->count / (uint64_t)l->o->threads +
		    (t->id == 0 ? l->o->count % (uint64_t)l->o->threads : 0);
	return 0;
}

/* -n: whether this thread's quota is done (or cannot be: an error). */
static int
tl_quota_done(const struct tl_loop *l)
{
	return l->quota && (l->done >= l->quota || l->t->st.errors);
}

static void
tl_loop_free(struct tl_loop *l)
{
	for (int i = 0; i < l->n; i++) {
		tl_close(l, i, 0);
		SSL_SESSION_free(l->sess[i]);
	}
	free(l->sess);
	free(l->c);
	close(l->ep);
}

/* Opens slot i (connection number k of this thread), its ticket offered. */
static int
tl_open(struct tl_loop *l, int i, uint64_t k)
{
	struct tl_conn *c = &l->c[i];

	int on = 1;

	c->fd = eb_tcp_socket(l->o, (int)((uint64_t)l->t->first + k));
	if (c->fd == -1) {
		tl_error(l, "connect");
		return -1;
	}
	l->live++;
	/*
	 * Our Finished and the first request are two writes: with Nagle's
	 * algorithm the request would wait for the ACK of the Finished, which
	 * a server with nothing to send then (no new ticket on a resumption)
	 * delays by 40 ms. Clients that care about latency set this, as every
	 * server in the table does.
	 */
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
	c->ssl = SSL_new(tl_ctx);
	if (c->ssl == NULL || SSL_set_fd(c->ssl, c->fd) != 1 ||
	    (l->sess[i] && SSL_set_session(c->ssl, l->sess[i]) != 1)) {
		tl_error(l, "SSL_new");
		tl_close(l, i, 0);
		return -1;
	}
	SSL_set_connect_state(c->ssl);
	c->counted = !l->resume || l->sess[i] != NULL;
	c->events = 0;
	c->phase = TL_CONNECT;
	c->sent = c->rcvd = 0;
	c->wlen = 0;
	c->t0 = eb_now();
	tl_watch(l, i, EPOLLOUT);
	return 0;
}

/* After an SSL call returned r <= 0: 0 to wait for an event, -1 if closed. */
static int
tl_want(struct tl_loop *l, int i, int r, const char *what)
{
	switch (SSL_get_error(l->c[i].ssl, r)) {
	case SSL_ERROR_WANT_READ:
		tl_watch(l, i, EPOLLIN);
		return 0;
	case SSL_ERROR_WANT_WRITE:
		tl_watch(l, i, EPOLLIN | EPOLLOUT);
		return 0;
	case SSL_ERROR_ZERO_RETURN:
		errno = 0;
		tl_error(l, "server sent close_notify");
		break;
	default:
		tl_error(l, what);
	}
	tl_close(l, i, 0);
	return -1;
}

/* TCP connect, then the handshake: 1 once done, 0 to wait, -1 if closed. */
static int
tl_handshake(struct tl_loop *l, int i)
{
	struct tl_conn *c = &l->c[i];
	int r;

	if (c->phase == TL_CONNECT) {
		int err = 0;
		socklen_t len = sizeof(err);

		if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1 ||
		    err != 0) {
			errno = err;
			tl_error(l, "connect");
			tl_close(l, i, 0);
			return -1;
		}
		c->phase = TL_HANDSHAKE;
	}
	if ((r = SSL_do_handshake(c->ssl)) != 1)
		return tl_want(l, i, r, "handshake");
	if (l->resume && c->counted) {
		if (!SSL_session_reused(c->ssl)) {
			errno = 0;
			tl_error(l, "the server did not resume the session");
			tl_close(l, i, 0);
			return -1;
		}
		if (eb_measuring == 1)
			l->t->st.resumed++;
	}
	return 1;
}

/* Writes the rest of the message at c->off: 1 when all is sent. */
static int
tl_send(struct tl_loop *l, int i, size_t msglen)
{
	struct tl_conn *c = &l->c[i];

	while (c->sent < msglen) {
		int n = SSL_write(c->ssl, eb_pattern + c->off + c->sent,
		    (int)(msglen - c->sent));

		if (n <= 0)
			return tl_want(l, i, n, "write");
		c->sent += (uint64_t)n;
	}
	return 1;
}

/* Reads and checks the reply: 1 when all msglen bytes are in. */
static int
tl_recv(struct tl_loop *l, int i, size_t msglen)
{
	struct tl_conn *c = &l->c[i];

	for (;;) {
		int n = SSL_read(c->ssl, l->buf, sizeof(l->buf));

		if (n <= 0)
			return tl_want(l, i, n, "read");
		if (c->rcvd + (size_t)n > msglen ||
		    !eb_verify(l->buf, (size_t)n, c->off + c->rcvd)) {
			l->t->st.mismatches++;
			if (__atomic_fetch_add(&tl_reported, 1,
			    __ATOMIC_RELAXED) < 5)
				fprintf(stderr, "echobench: MISMATCH on "
				    "connection %d at byte %llu\n",
				    l->t->first + i,
				    (unsigned long long)(c->off + c->rcvd));
			tl_close(l, i, 0);
			return -1;
		}
		c->rcvd += (uint64_t)n;
		if (c->rcvd == msglen)
			return 1;
	}
}

/*
 * Drives slot i from connect to a complete reply of the message at c->off:
 * 1 when the reply is in (phase TL_RECV), 0 to wait, -1 if closed.
 */
static int
tl_exchange(struct tl_loop *l, int i)
{
	struct tl_conn *c = &l->c[i];
	size_t m = l->o->msglen;
	int r;

	switch (c->phase) {
	case TL_CONNECT:
	case TL_HANDSHAKE:
		if ((r = tl_handshake(l, i)) != 1)
			return r;
		c->phase = TL_SEND;
		c->sent = c->rcvd = 0;
		/* FALLTHROUGH */
	case TL_SEND:
		if ((r = tl_send(l, i, m)) != 1)
			return r;
		c->phase = TL_RECV;
		/* FALLTHROUGH */
	case TL_RECV:
		return tl_recv(l, i, m);
	default:
		return 0;
	}
}

static void
tl_count(struct tl_loop *l, struct tl_conn *c)
{
	if (eb_measuring != 1 || !c->counted)
		return;
	l->done++;
	l->t->st.ops++;
	l->t->st.bytes += l->o->msglen;
	eb_hist_add(&l->t->st.lat, eb_now() - c->t0);
}

static int
tl_wait(struct tl_loop *l, struct epoll_event *ev)
{
	return epoll_wait(l->ep, ev, TL_EVENTS, 10);
}

/* ---- tls-handshake and tls-resume: a connection per exchange ---- */

/* Opens slot i for its next exchange; with -n, none past the quota. */
static void
hs_start(struct tl_loop *l, int i)
{
	int counted = !l->resume || l->sess[i] != NULL;
	uint64_t k;

	if (l->quota && counted && l->issued >= l->quota)
		return;
	k = l->nextsrc++;
	if (tl_open(l, i, k) == 0) {
		l->c[i].off = (size_t)(k * 7919 % EB_PAT);
		l->issued += (uint64_t)counted;
	}
}

static void
hs_event(struct tl_loop *l, int i)
{
	struct tl_conn *c = &l->c[i];

	if (tl_exchange(l, i) != 1)
		return;
	tl_count(l, c);
	if (l->resume) {	/* keep the newest ticket for the next one */
		SSL_SESSION *s = SSL_get1_session(c->ssl);

		if (s != NULL && SSL_SESSION_is_resumable(s)) {
			SSL_SESSION_free(l->sess[i]);
			l->sess[i] = s;
		} else {
			SSL_SESSION_free(s);
		}
	}
	tl_close(l, i, 1);
	hs_start(l, i);
}

static void *
hs_run(struct eb_thread *t, int resume)
{
	struct tl_loop *l = malloc(sizeof(*l));
	struct epoll_event ev[TL_EVENTS];

	if (l == NULL || tl_loop_init(l, t, resume) == -1) {
		free(l);
		return NULL;
	}
	l->nextsrc = (uint64_t)t->id * 1000003u;
	for (int i = 0; i < l->n; i++)
		hs_start(l, i);
	while (eb_measuring < 2 && !tl_quota_done(l)) {
		int n = tl_wait(l, ev);

		for (int k = 0; k < n; k++) {
			int i = (int)ev[k].data.u32;

			if (l->c[i].fd != -1)
				hs_event(l, i);
		}
		for (int i = 0; l->live < l->n && i < l->n; i++)
			if (l->c[i].fd == -1)
				hs_start(l, i);
	}
	tl_loop_free(l);
	free(l);
	return NULL;
}

void *
eb_tls_handshake(void *arg)
{
	return hs_run(arg, 0);
}

void *
eb_tls_resume(void *arg)
{
	return hs_run(arg, 1);
}

/* ---- tls-pingpong ---- */

/* The connection's next request; with -n, none past the quota (it rests). */
static void
tp_next(struct tl_loop *l, int i)
{
	struct tl_conn *c = &l->c[i];

	if (l->quota && l->issued >= l->quota) {
		c->phase = TL_IDLE;
		return;
	}
	l->issued++;
	if (l->o->pause > 0) {	/* -i: the server finds nothing more to read, every time */
		struct timespec ts = { (time_t)l->o->pause,
		    (long)((l->o->pause - (double)(time_t)l->o->pause) * 1e9) };

		while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
			;
	}
	c->off = (c->off + 7919) % EB_PAT;
	c->phase = TL_SEND;
	c->sent = c->rcvd = 0;
	c->t0 = eb_now();
}

void *
eb_tls_pingpong(void *arg)
{
	struct eb_thread *t = arg;
	struct tl_loop *l = malloc(sizeof(*l));
	struct epoll_event ev[TL_EVENTS];

	if (l == NULL || tl_loop_init(l, t, 0) == -1) {
		free(l);
		return NULL;
	}
	for (int i = 0; i < l->n; i++)
		if (tl_open(l, i, (uint64_t)i) == 0)
			l->issued++;	/* its first request follows the handshake */
	while (eb_measuring < 2 && l->live > 0 && !tl_quota_done(l)) {
		int n = tl_wait(l, ev);

		for (int k = 0; k < n; k++) {
			int i = (int)ev[k].data.u32;

			/* Replies in a row while OpenSSL has them. */
			while (l->c[i].fd != -1 && tl_exchange(l, i) == 1) {
				tl_count(l, &l->c[i]);
				tp_next(l, i);
			}
		}
	}
	tl_loop_free(l);
	free(l);
	return NULL;
}

/* ---- tls-stream ---- */

/* With -n, the bytes this thread may still send (all of them without). */
static uint64_t
ts_budget(const struct tl_loop *l)
{
	return l->quota ? l->quota - l->issued : UINT64_MAX;
}

static int
ts_pump(struct tl_loop *l, int i, uint64_t window)
{
	struct tl_conn *c = &l->c[i];

	while (c->wlen || (c->sent - c->rcvd < window && ts_budget(l) > 0)) {
		size_t len = c->wlen;
		int n;

		if (len == 0) {
			len = l->o->msglen;
			if (len > window - (c->sent - c->rcvd))
				len = (size_t)(window - (c->sent - c->rcvd));
			if (len > ts_budget(l))
				len = (size_t)ts_budget(l);
		}
		n = SSL_write(c->ssl, eb_pattern + c->sent % EB_PAT, (int)len);
		if (n <= 0) {
			c->wlen = len;	/* repeated with the same length */
			return SSL_get_error(c->ssl, n) == SSL_ERROR_WANT_WRITE ?
			    1 : tl_want(l, i, n, "write");
		}
		c->wlen = 0;
		c->sent += (uint64_t)n;
		l->issued += (uint64_t)n;
	}
	return 0;
}

static int
ts_read(struct tl_loop *l, int i)
{
	struct tl_conn *c = &l->c[i];

	for (;;) {
		int n = SSL_read(c->ssl, l->buf, sizeof(l->buf));

		if (n <= 0) {
			if (SSL_get_error(c->ssl, n) == SSL_ERROR_WANT_READ)
				return 0;
			return tl_want(l, i, n, "read");
		}
		if (c->rcvd + (uint64_t)n > c->sent ||
		    !eb_verify(l->buf, (size_t)n, c->rcvd % EB_PAT)) {
			l->t->st.mismatches++;
			fprintf(stderr, "echobench: MISMATCH on connection %d "
			    "at byte %llu\n", l->t->first + i,
			    (unsigned long long)c->rcvd);
			tl_close(l, i, 0);
			return -1;
		}
		c->rcvd += (uint64_t)n;
		l->done += (uint64_t)n;
		if (eb_measuring == 1)
			l->t->st.bytes += (uint64_t)n;
	}
}

static void
ts_event(struct tl_loop *l, int i, uint64_t window)
{
	struct tl_conn *c = &l->c[i];
	int blocked;

	if (c->phase != TL_OPEN) {
		if (tl_handshake(l, i) != 1)
			return;
		c->phase = TL_OPEN;
	}
	if (ts_read(l, i) == -1 || (blocked = ts_pump(l, i, window)) == -1)
		return;
	tl_watch(l, i, blocked || (c->sent - c->rcvd < window && ts_budget(l) > 0) ?
	    EPOLLIN | EPOLLOUT : EPOLLIN);
}

void *
eb_tls_stream(void *arg)
{
	struct eb_thread *t = arg;
	struct tl_loop *l = malloc(sizeof(*l));
	struct epoll_event ev[TL_EVENTS];
	uint64_t window;

	if (l == NULL || tl_loop_init(l, t, 0) == -1) {
		free(l);
		return NULL;
	}
	window = 4 * (uint64_t)t->o->msglen;
	if (window < 256 * 1024)
		window = 256 * 1024;
	l->quota *= t->o->msglen;	/* -n counts writes: in bytes here */
	for (int i = 0; i < l->n; i++)
		tl_open(l, i, (uint64_t)i);
	while (eb_measuring < 2 && l->live > 0 && !tl_quota_done(l)) {
		int n = tl_wait(l, ev);

		for (int k = 0; k < n; k++) {
			int i = (int)ev[k].data.u32;

			if (l->c[i].fd != -1)
				ts_event(l, i, window);
		}
	}
	if (l->quota)
		t->st.ops = l->done / t->o->msglen;
	tl_loop_free(l);
	free(l);
	return NULL;
}

/* ---- tls-idle: held after a handshake, proven to echo before and after ---- */

/* Runs every open slot to a complete reply; returns how many echoed. */
static uint64_t
ti_round(struct tl_loop *l, int open_first)
{
	struct epoll_event ev[TL_EVENTS];
	uint64_t end = eb_now() + TL_PHASE_NS, echoed = 0;
	int next = open_first ? 0 : l->n, busy = 0;

	for (int i = 0; !open_first && i < l->n; i++) {
		struct tl_conn *c = &l->c[i];
		int r;

		if (c->fd == -1)
			continue;
		c->off = (size_t)(l->t->first + i) * 131 % EB_PAT;
		c->phase = TL_SEND;
		c->sent = c->rcvd = 0;
		if ((r = tl_exchange(l, i)) == 0)
			busy++;
		else if (r == 1)
			echoed++, c->phase = TL_IDLE;
	}
	while ((busy > 0 || next < l->n) && eb_now() < end) {
		while (busy < TL_IDLE_INFLIGHT && next < l->n) {
			l->c[next].off = (size_t)(l->t->first + next) * 131 % EB_PAT;
			if (tl_open(l, next, (uint64_t)next) == 0) {
				busy++;
				l->t->st.opened++;
			}
			next++;
		}
		int n = tl_wait(l, ev);

		for (int k = 0; k < n; k++) {
			int i = (int)ev[k].data.u32, r;
			struct tl_conn *c = &l->c[i];

			if (c->fd == -1)
				continue;
			if (c->phase == TL_IDLE) {	/* nothing may come now */
				if (SSL_read(c->ssl, l->buf, 1) > 0) {
					errno = 0;
					tl_error(l, "bytes on an idle connection");
					tl_close(l, i, 0);
				} else {
					ERR_clear_error();
				}
				continue;
			}
			r = tl_exchange(l, i);
			if (r != 0)
				busy--;
			if (r == 1) {
				echoed++;
				c->phase = TL_IDLE;
				tl_watch(l, i, EPOLLIN);
			}
		}
	}
	if (busy > 0 || next < l->n) {
		errno = ETIMEDOUT;
		tl_error(l, "waiting for idle replies");
	}
	return echoed;
}

void *
eb_tls_idle(void *arg)
{
	struct eb_thread *t = arg;
	struct tl_loop *l = malloc(sizeof(*l));
	int ok = l != NULL && tl_loop_init(l, t, 0) == 0;

	/* Every thread passes all three barriers, whatever happens. */
	if (ok)
		t->st.echoed1 = ti_round(l, 1);
	pthread_barrier_wait(&eb_barrier);	/* main: hold, measure memory */
	pthread_barrier_wait(&eb_barrier);
	if (ok)
		t->st.ops = ti_round(l, 0);
	pthread_barrier_wait(&eb_barrier);
	if (ok)
		tl_loop_free(l);
	free(l);
	return NULL;
}

/* ---- --wait: a TLS probe, and the certificate checked ---- */

static int
tl_probe(const struct eb_opts *o, int quiet)
{
	static const char msg[] = "ready?";
	/*
	 * Generous: a server under valgrind takes seconds over its first
	 * handshake, and a probe given up on halfway would leave it a varying
	 * amount of work (callgrind.sh subtracts one run from another).
	 */
	struct timeval tv = { 5, 0 };
	char buf[sizeof(msg)];
	SSL *ssl = NULL;
	EVP_PKEY *pk = NULL;
	X509 *x;
	int fd, ok = 0, got = 0;

	if ((fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1)
		return 0;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (connect(fd, (const struct sockaddr *)&o->server,
	    sizeof(o->server)) == -1 || (ssl = SSL_new(tl_ctx)) == NULL ||
	    SSL_set_fd(ssl, fd) != 1 || SSL_connect(ssl) != 1)
		goto out;
	if ((x = SSL_get1_peer_certificate(ssl)) != NULL) {
		pk = X509_get_pubkey(x);
		X509_free(x);
	}
	if (pk == NULL || EVP_PKEY_get_base_id(pk) != EVP_PKEY_EC ||
	    EVP_PKEY_get_bits(pk) != 256) {
		if (!quiet)
			fprintf(stderr, "echobench: the server's certificate "
			    "is not ECDSA P-256\n");
		goto out;
	}
	if (SSL_write(ssl, msg, sizeof(msg)) != (int)sizeof(msg))
		goto out;
	while (got < (int)sizeof(msg)) {
		int n = SSL_read(ssl, buf + got, (int)sizeof(msg) - got);

		if (n <= 0)
			goto out;
		got += n;
	}
	ok = memcmp(buf, o->upper ? "READY?" : msg, sizeof(msg)) == 0;
	if (ok)
		SSL_shutdown(ssl);
out:
	EVP_PKEY_free(pk);
	SSL_free(ssl);
	ERR_clear_error();
	close(fd);
	return ok;
}

/*
 * tls-idle, before the server's memory is first read: n handshakes and
 * echoes, one after another, so that every server process has done its
 * one-off set-up (OpenSSL's lazily fetched algorithms and tables, the
 * malloc arenas) and the figure per connection counts only connections.
 * With n well above the processes, every one of them is reached.
 */
void
eb_tls_warm(const struct eb_opts *o, int n)
{
	if (tl_ctx == NULL && eb_tls_init() == -1)
		return;
	for (int i = 0; i < n; i++)
		tl_probe(o, 1);
}

/* Waits until the server echoes over TLS; -1 after timeout seconds. */
int
eb_tls_wait_ready(const struct eb_opts *o, double timeout)
{
	uint64_t end = eb_now() + (uint64_t)(timeout * 1e9);

	if (tl_ctx == NULL && eb_tls_init() == -1)
		return -1;
	while (eb_now() < end) {
		if (tl_probe(o, 1))
			return 0;
		usleep(20000);
	}
	tl_probe(o, 0);		/* says why, if it can */
	return -1;
}
