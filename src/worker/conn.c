#include "worker/conn.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/ev.h"
#include "common/log.h"
#include "common/sock.h"
#include "common/tlsctx.h"
#include "worker/worker.h"
#include "worker/acl.h"
#include "worker/echo.h"
#include "worker/outbuf.h"
#include "worker/proxy.h"
#include "worker/tlsconn.h"

/* struct conn.handover */
#define CONN_H_DETACHED 0x01u  /* out of epoll and the idle list: in a batch, or adopted and not served yet */
#define CONN_H_KEPT     0x02u  /* not offered: taken back once, or special (PROXY header due, whoami) */
#define CONN_H_ADOPTED  0x04u  /* taken over: the sender may still hold a copy of its socket */

/*
 * A connection on a PROXY listener, until its header is in: the parser
 * and what the header's checks need. Allocated at accept on such
 * listeners only, and freed once the header is handled, so that a plain
 * connection carries one NULL pointer and nothing more.
 */
struct conn_proxy {
	struct proxy_parser parser;
	struct proxy_result res;
	struct sockaddr_storage balancer;        /* the TCP peer: the header's sender */
	const struct worker_listener *listener;  /* its allow/deny lists, checked on the header's address */
	struct deadline_node wait;               /* in conn_set's waiting list: the proxy_timeout clock */
};

/*
 * A connection on a TLS listener: its OpenSSL side, and while the
 * handshake runs, its place in conn_set's handshake list. Allocated at
 * accept on such listeners only: a plain connection carries one NULL
 * pointer more and nothing else.
 */
struct conn_tls {
	struct tlsconn *t;
	bool handshaking;
	bool want_write;          /* OpenSSL waits for the socket to become writable */
	struct deadline_node wait; /* in conn_set's handshake list: the handshake_timeout clock */
};

struct conn {
	struct ev_source ev;
	int fd;
	uint8_t mode;         /* enum cfg_mode */
	/*
	 * Waiting for a PROXY header (px set) or answering whoami: such a
	 * connection's c->events is never plain EPOLLIN (it holds EPOLLRDHUP
	 * or EPOLLOUT), so conn_handle's steady-state test fails for it and
	 * it never takes the echo path; conn_handle_slow sends it here.
	 */
	bool special;
	bool shut;            /* whoami: our side is shut down, the line is out */
	bool read_closed;     /* the client half-closed: finish writing, then close */
	bool paused;          /* output full: not reading until it drains */
	uint8_t handover;     /* CONN_H_*: where a reload's handover left it */
	uint32_t events;      /* what epoll watches now */
	int32_t addr_entry;   /* its count in sb->addr, -1 = not counted */
	int64_t last_active;  /* monotonic ms */
	uint64_t received;    /* bytes read since last_active, for limits.min_rate */
	struct conn *prev;    /* idle list, least recently active first */
	struct conn *next;
	/*
	 * NULL on a connection that never had a PROXY header, so that
	 * conn_destroy tests one pointer for both. While special, px: waiting
	 * for the header (NULL once it is in). Otherwise client: the header's
	 * client address, which a handover carries to the next worker (NULL
	 * for a LOCAL header and the address-less families: the socket's peer
	 * is the client then).
	 */
	union {
		struct conn_proxy *px;
		struct sockaddr_storage *client;
	};
	struct conn_tls *tls;  /* non-NULL on a TLS listener (special: never the plain echo path) */
	struct outbuf out;
};

/* What epoll watches on a special connection: never plain EPOLLIN (see struct conn). */
#define CONN_SPECIAL_EVENTS (EPOLLIN | EPOLLRDHUP)

static void
idle_unlink(struct conn_set *s, struct conn *c)
{
	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		s->idle_head = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	else
		s->idle_tail = c->prev;
	c->prev = c->next = NULL;
}

static void
idle_append(struct conn_set *s, struct conn *c)
{
	c->prev = s->idle_tail;
	c->next = NULL;
	if (s->idle_tail != NULL)
		s->idle_tail->next = c;
	else
		s->idle_head = c;
	s->idle_tail = c;
}

/*
 * Moves a connection to the newest end of the idle list. With
 * limits.min_rate set, activity counts only when the client has sent at
 * least min_rate bytes a second since it last counted: a client that
 * trickles a byte now and then (slowloris) ages like an idle one and is
 * closed after idle_timeout.
 */
static __attribute__((noinline)) void
conn_restamp(struct worker *w, struct conn *c)
{
	if (w->cfg->min_rate != 0) {
		uint64_t owed = (uint64_t)w->cfg->min_rate * (uint64_t)(w->now_ms - c->last_active) / 1000;
		if (c->received < owed)
			return;
		c->received = 0;
	}
	c->last_active = w->now_ms;
	idle_unlink(&w->conns, c);
	idle_append(&w->conns, c);
}

/*
 * Keeps the idle list sorted by last activity, lazily. Moving a connection
 * to the newest end touches two other connections' memory, a cache miss or
 * two per request once there are thousands of them; so a stamp is renewed
 * only once it is IDLE_STAMP_MS old. The true last activity is then at most
 * that much later than the stamp, and conn_expire_idle allows for it.
 */
#define IDLE_STAMP_MS 250

static inline void
conn_touch(struct worker *w, struct conn *c)
{
	if (w->now_ms - c->last_active >= IDLE_STAMP_MS)
		conn_restamp(w, c);
}

/* Takes a connection off the waiting list; its PROXY state is the caller's now. */
static struct conn_proxy *
waiting_unlink(struct conn_set *s, struct conn *c)
{
	struct conn_proxy *px = c->px;

	deadline_unlink(&s->waiting, &px->wait);
	c->px = NULL;
	return px;
}

static void
hs_unlink(struct conn_set *s, struct conn *c)
{
	deadline_unlink(&s->handshakes, &c->tls->wait);
	c->tls->handshaking = false;
}

/* Frees a connection's TLS side: our close_notify goes out first when the session is up. */
static void
conn_tls_free(struct conn_set *s, struct conn *c)
{
	if (c->tls->handshaking)
		hs_unlink(s, c);
	tlsconn_free(c->tls->t);
	free(c->tls);
	c->tls = NULL;
}

/* Closes our descriptor and forgets the connection; it is in neither epoll nor the idle list. */
static void
conn_destroy(struct worker *w, struct conn *c)
{
	if (c->px != NULL)
		free(c->special ? (void *)waiting_unlink(&w->conns, c) : (void *)c->client);
	if (c->tls != NULL)
		conn_tls_free(&w->conns, c);
	w->conns.detached -= (c->handover & CONN_H_DETACHED) != 0;
	w->conns.kept -= (c->handover & CONN_H_KEPT) != 0;
	close(c->fd);  /* close only: after a handover another worker may hold the socket too */
	if (c->addr_entry != -1)
		addrtab_conn_release(&w->sb->addr, c->addr_entry, w->sb_entry);
	outbuf_free(&c->out);
	free(c);
	w->me->active = --w->conns.n;
}

static void
conn_close(struct worker *w, struct conn *c)
{
	idle_unlink(&w->conns, c);
	/*
	 * close() alone removes a socket from epoll only once no process
	 * holds it; a sender that has not read our ack yet still does, and
	 * epoll would go on reporting the freed connection.
	 */
	if ((c->handover & CONN_H_ADOPTED) && ev_del(w->epfd, c->fd) == -1)
		log_warn("epoll_ctl del connection");
	conn_destroy(w, c);
}

/*
 * Takes ownership of fd, of the per-address count at addr_entry (-1:
 * none) and of px (NULL: not waiting for a PROXY header). A connection
 * that waits for a header or answers whoami is special (struct conn), and
 * is not offered to a reload's handover: the parser's bytes are not in
 * the handover record, nor is whoami's state (its one line, partly out).
 * It is kept, as a connection taken back is; one whose header comes in
 * becomes movable then (conn_proxy_movable). Returns the connection, or
 * NULL when it had to be dropped.
 */
static struct conn *
conn_open(struct worker *w, int fd, int mode, int addr_entry, struct conn_proxy *px,
    struct conn_tls *tls)
{
	struct conn *c = calloc(1, sizeof(*c));

	if (c == NULL) {
		log_warn("connection dropped");
		goto fail;
	}
	c->ev.kind = EV_CONN;
	c->fd = fd;
	c->addr_entry = addr_entry;
	c->mode = (uint8_t)mode;
	c->special = px != NULL || tls != NULL || mode == CFG_MODE_WHOAMI;
	c->events = c->special ? CONN_SPECIAL_EVENTS : EPOLLIN;
	c->last_active = w->now_ms;
	if (ev_add(w->epfd, fd, c->events, &c->ev) == -1) {
		log_warn("epoll_ctl add connection");
		free(c);
		goto fail;
	}
	idle_append(&w->conns, c);
	if (c->special) {
		c->handover |= CONN_H_KEPT;
		w->conns.kept++;
	}
	if ((c->px = px) != NULL)
		deadline_append(&w->conns.waiting, &px->wait, c, w->now_ms);
	if ((c->tls = tls) != NULL) {
		tls->handshaking = true;
		deadline_append(&w->conns.handshakes, &tls->wait, c, w->now_ms);
	}
	w->me->active = ++w->conns.n;
	w->me->accepted++;
	return c;
fail:
	if (tls != NULL)
		tlsconn_free(tls->t);
	free(tls);
	close(fd);
	free(px);
	if (addr_entry != -1)
		addrtab_conn_release(&w->sb->addr, addr_entry, w->sb_entry);
	return NULL;
}

static void
conn_log_refused(const struct sockaddr_storage *peer, const char *why)
{
	char addr[64];

	/* Debug only: a hostile client must not be able to fill the log. */
	if (!log_enabled(LOG_DEBUG))
		return;
	sock_addr_format(peer, addr, sizeof(addr));
	log_debug("connection from %s refused: %s", addr, why);
}

/* True when the listener's allow and deny lists refuse the client. */
static bool
conn_acl_refuses(struct worker *w, const struct worker_listener *l,
    const struct sockaddr_storage *peer)
{
	if (acl_admits(&l->conf->allow, &l->conf->deny, (const struct sockaddr *)peer))
		return false;
	w->me->refused_acl++;
	conn_log_refused(peer, "access list");
	return true;
}

/*
 * True when our configuration counts connections per address; then our
 * entry is marked as counting before its first count, so that the master
 * purges what it counted if we die.
 */
static bool
conn_counts_addresses(struct worker *w)
{
	if (w->cfg->max_per_address == 0)
		return false;
	if (!w->me->addr_counted)
		__atomic_store_n(&w->me->addr_counted, 1, __ATOMIC_SEQ_CST);
	return true;
}

/*
 * Counts the connection against max_connections_per_address, whole daemon.
 * Returns its entry in the shared table (-1 when there is no limit), or -2
 * when the address holds its limit already or cannot be counted.
 */
static int
conn_count_address(struct worker *w, const struct sockaddr_storage *peer)
{
	struct addrtab *t = &w->sb->addr;
	int entry;

	if (!conn_counts_addresses(w))
		return -1;
	entry = addrtab_conn_acquire(t, addrtab_hash(t, (const struct sockaddr *)peer),
	    w->sb_entry, (unsigned)w->cfg->max_per_address);
	if (entry >= 0)
		return entry;
	w->me->refused_per_address++;
	conn_log_refused(peer, entry == ADDRTAB_OVER ? "max_connections_per_address" :
	    "per-address table full");
	return -2;
}

static bool
accept_error_is_transient(int err)
{
	/* The client gave up or the network hiccuped: that connection only. */
	return err == EINTR || err == ECONNABORTED || err == EPROTO || err == EPERM ||
	    err == ENETDOWN || err == ENOPROTOOPT || err == EHOSTDOWN || err == ENONET ||
	    err == EHOSTUNREACH || err == EOPNOTSUPP || err == ENETUNREACH;
}

static int
conn_accept4(const struct worker_listener *l, struct sockaddr_storage *peer)
{
	socklen_t peerlen = sizeof(*peer);

	return l->screen ?
	    accept4(l->fd, (struct sockaddr *)peer, &peerlen, SOCK_NONBLOCK | SOCK_CLOEXEC) :
	    accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
}

static bool conn_whoami_start(struct worker *w, struct conn *c, const struct sockaddr_storage *client,
    const struct conn_proxy *px);

/* A TLS listener: the connection starts with the handshake (conn_tls_handle). */
static enum conn_accepted
conn_accept_tls(struct worker *w, const struct worker_listener *l, int fd, int entry)
{
	struct conn_tls *tls = calloc(1, sizeof(*tls));

	if (tls == NULL || (tls->t = tlsconn_new(tlsctx_ssl_ctx(l->conf->tls.ctx), fd)) == NULL) {
		log_warnx("TLS connection dropped: out of memory");
		free(tls);
		close(fd);
		if (entry != -1)
			addrtab_conn_release(&w->sb->addr, entry, w->sb_entry);
		return CONN_TURNED_AWAY;
	}
	return conn_open(w, fd, l->conf->mode, entry, NULL, tls) != NULL ? CONN_OPENED :
	    CONN_TURNED_AWAY;
}

/*
 * A PROXY listener: the TCP peer is the balancer. Only the trust check
 * can be made now; allow/deny and the per-address limit wait for the
 * header's address (conn_proxy_done).
 */
static enum conn_accepted
conn_accept_proxied(struct worker *w, const struct worker_listener *l, int fd,
    const struct sockaddr_storage *peer)
{
	const struct prefix_list *trusted = &l->conf->proxy_trusted;
	struct conn_proxy *px;
	int family;
	const uint8_t *addr;

	if (trusted->n != 0 && (prefix_addr_of((const struct sockaddr *)peer, &family, &addr) == -1 ||
	    !prefix_list_match(trusted, family, addr))) {
		close(fd);
		w->me->proxy_untrusted++;
		conn_log_refused(peer, "not in proxy_trusted");
		return CONN_TURNED_AWAY;
	}
	if (w->conns.n >= (size_t)w->cfg->max_connections) {
		close(fd);
		w->me->refused++;
		return CONN_TURNED_AWAY;
	}
	if ((px = malloc(sizeof(*px))) == NULL) {
		log_warn("connection dropped");
		close(fd);
		return CONN_TURNED_AWAY;
	}
	proxy_init(&px->parser, (enum proxy_accept)l->conf->proxy_protocol);
	px->balancer = *peer;
	px->listener = l;
	return conn_open(w, fd, l->conf->mode, -1, px, NULL) != NULL ? CONN_OPENED : CONN_TURNED_AWAY;
}

/*
 * A listener without access lists, a per-address limit or a PROXY header
 * (l->screen false) never asks for the peer's address: the plain path
 * costs nothing more. A refused client's connection is closed at once: it
 * sees EOF (or a reset if it had sent data), and each refusal is counted
 * in our scoreboard entry.
 */
enum conn_accepted
conn_accept(struct worker *w, struct worker_listener *l)
{
	struct conn *c;
	struct sockaddr_storage peer;
	int entry = -1;
	int fd = conn_accept4(l, &peer);

	if (fd == -1) {
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return CONN_NONE_QUEUED;
		if (accept_error_is_transient(errno))
			return CONN_TURNED_AWAY;
		/*
		 * EMFILE, ENFILE, ENOBUFS, ENOMEM: the connection stays
		 * queued and level-triggered epoll would wake us for it
		 * again at once, a busy loop: the worker must step back.
		 */
		log_warn("accept");
		return CONN_EXHAUSTED;
	}
	if (l->screen && l->conf->proxy_protocol != CFG_PROXY_OFF)
		return conn_accept_proxied(w, l, fd, &peer);
	if (l->screen && conn_acl_refuses(w, l, &peer)) {
		close(fd);
		return CONN_TURNED_AWAY;
	}
	if (w->conns.n >= (size_t)w->cfg->max_connections) {
		close(fd);  /* refused cleanly: the client sees EOF at once */
		w->me->refused++;
		return CONN_TURNED_AWAY;
	}
	if (l->screen && (entry = conn_count_address(w, &peer)) == -2) {
		close(fd);
		return CONN_TURNED_AWAY;
	}
	if (l->conf->tls.on)
		return conn_accept_tls(w, l, fd, entry);
	if ((c = conn_open(w, fd, l->conf->mode, entry, NULL, NULL)) == NULL)
		return CONN_TURNED_AWAY;
	if (c->mode == CFG_MODE_WHOAMI)
		conn_whoami_start(w, c, NULL, NULL);
	return CONN_OPENED;
}

/* What one read made of a connection. */
enum conn_progress {
	CONN_ECHOED,    /* read something and wrote all of it: nothing changed */
	CONN_CHANGED,   /* EOF, output queued, or nothing read: epoll's mask may need to change */
	CONN_FAILED,    /* the connection is broken: close it */
};

/*
 * A read that was not echoed whole: counts it and queues what the client
 * did not take. sent is what write() returned, or 0 when output was owed
 * and none was attempted. Out of line, so that the common path keeps only
 * what it needs in registers.
 */
static __attribute__((noinline)) enum conn_progress
conn_queue_rest(struct worker *w, struct conn *c, ssize_t n, ssize_t sent)
{
	w->conns.bytes_in += (uint64_t)n;
	if (sent < 0) {
		if (errno != EAGAIN && errno != EINTR)
			return CONN_FAILED;
		sent = 0;
	}
	w->conns.bytes_out += (uint64_t)sent;
	if (outbuf_append(&c->out, w->scratch + sent, (size_t)(n - sent)) == -1)
		return CONN_FAILED;
	return CONN_CHANGED;
}

/*
 * Reads a chunk and echoes it; what the client does not take is queued.
 * Output already queued (owed) goes first, so then the chunk is queued
 * behind it whole. Inlined into both callers, so that the common path,
 * which knows it owes nothing, pays for no branch it cannot take.
 */
static inline __attribute__((always_inline)) enum conn_progress
conn_read(struct worker *w, struct conn *c, bool owed)
{
	ssize_t n = read(c->fd, w->scratch, owed ? outbuf_room(&c->out) : WORKER_SCRATCH);
	ssize_t sent;

	if (n <= 0) {
		if (n == 0) {
			c->read_closed = true;
			return CONN_CHANGED;
		}
		return errno == EAGAIN || errno == EINTR ? CONN_CHANGED : CONN_FAILED;
	}
	c->received += (uint64_t)n;
	if (c->mode == CFG_MODE_UPPER)
		echo_upper(w->scratch, (size_t)n);
	if (owed)
		return conn_queue_rest(w, c, n, 0);
	sent = write(c->fd, w->scratch, (size_t)n);
	if (sent != n)
		return conn_queue_rest(w, c, n, sent);
	w->conns.echoed += (uint64_t)n;
	return CONN_ECHOED;
}

static int
conn_flush(struct worker *w, struct conn *c)
{
	ssize_t n = write(c->fd, c->out.data + c->out.off, c->out.len);

	if (n < 0)
		return errno == EAGAIN || errno == EINTR ? 0 : -1;
	w->conns.bytes_out += (uint64_t)n;
	outbuf_consume(&c->out, (size_t)n);
	return 0;
}

/* What epoll should watch for a connection: reading unless paused or half-closed, writing while owed. */
static inline uint32_t
conn_wanted(const struct conn *c)
{
	return (!c->paused && !c->read_closed ? EPOLLIN : 0) | (c->out.len != 0 ? EPOLLOUT : 0);
}

/*
 * Recomputes what epoll should watch. Reading pauses when the output is full
 * and resumes only once it has drained, so a client that does not read costs
 * at most OUTBUF_CAP bytes. Returns -1 when the connection is done.
 */
static int
conn_update_events(struct worker *w, struct conn *c)
{
	uint32_t want;

	if (c->out.len == 0)
		c->paused = false;
	else if (outbuf_room(&c->out) == 0)
		c->paused = true;
	if (c->read_closed && c->out.len == 0)
		return -1;
	want = conn_wanted(c);
	if (want != c->events) {
		if (ev_mod(w->epfd, c->fd, want, &c->ev) == -1)
			return -1;
		c->events = want;
	}
	return 0;
}

/* ---- PROXY header and whoami: special connections, off the echo path ---- */

/* What epoll should watch on a whoami connection: output owed, and the client's EOF. */
static int
conn_whoami_update(struct worker *w, struct conn *c)
{
	uint32_t want;

	if (c->out.len == 0 && !c->shut) {
		/* The line is out: our half-close tells the client it is whole. */
		if (shutdown(c->fd, SHUT_WR) == -1)
			return -1;
		c->shut = true;
	}
	if (c->read_closed && c->out.len == 0)
		return -1;
	/* Never plain EPOLLIN: read_closed here means output is owed. */
	want = (c->read_closed ? 0 : CONN_SPECIAL_EVENTS) | (c->out.len != 0 ? EPOLLOUT : 0);
	if (want != c->events) {
		if (ev_mod(w->epfd, c->fd, want, &c->ev) == -1)
			return -1;
		c->events = want;
	}
	return 0;
}

/* The local and (unless the caller knows it) the peer address of a connection. */
static int
conn_addresses(int fd, struct sockaddr_storage *local, struct sockaddr_storage *peer)
{
	socklen_t llen = sizeof(*local), plen = sizeof(*peer);

	memset(local, 0, sizeof(*local));
	if (getsockname(fd, (struct sockaddr *)local, &llen) == -1)
		return -1;
	if (peer == NULL)
		return 0;
	memset(peer, 0, sizeof(*peer));
	return getpeername(fd, (struct sockaddr *)peer, &plen);
}

/*
 * whoami: writes the one line, queues what the client does not take, and
 * from then on only waits for the client's EOF (what it sends is read and
 * dropped: closing with unread bytes would reset the connection and could
 * lose the line). CLIENT: the header's address, or NULL for the socket's
 * peer; PX: the header, or NULL. True when it had to close the connection.
 */
/* The whoami line of a connection into line; 0 when its addresses cannot be had. */
static size_t
conn_whoami_line(struct worker *w, struct conn *c, const struct sockaddr_storage *client,
    const struct conn_proxy *px, char line[ECHO_WHOAMI_MAX])
{
	struct sockaddr_storage local, peer;
	struct echo_whoami who = {
		.instance = w->cfg->instance, .host = w->cfg->hostname, .pid = (long)getpid(),
		.slot = w->me->slot, .generation = w->me->generation, .server = &local,
	};

	if (conn_addresses(c->fd, &local, client == NULL ? &peer : NULL) == -1)
		return 0;
	who.client = client != NULL ? client : &peer;
	if (px != NULL) {
		who.proxy_version = px->res.version;
		who.balancer = &px->balancer;
		who.authority = px->res.authority;
		who.authority_len = px->res.authority_len;
		who.unique_id = px->res.unique_id;
		who.unique_id_len = px->res.unique_id_len;
	}
	if (c->tls != NULL) {
		const unsigned char *alpn;
		unsigned alpn_len;

		tlsconn_alpn(c->tls->t, &alpn, &alpn_len);
		who.tls = tlsconn_version(c->tls->t);
		who.sni = tlsconn_sni(c->tls->t);
		who.alpn = alpn;
		who.alpn_len = alpn_len;
	}
	return echo_whoami(line, ECHO_WHOAMI_MAX, &who);
}

/*
 * whoami: writes the one line, queues what the client does not take, and
 * from then on only waits for the client's EOF (what it sends is read and
 * dropped: closing with unread bytes would reset the connection and could
 * lose the line). CLIENT: the header's address, or NULL for the socket's
 * peer; PX: the header, or NULL. True when it had to close the connection.
 */
static bool
conn_whoami_start(struct worker *w, struct conn *c, const struct sockaddr_storage *client,
    const struct conn_proxy *px)
{
	char line[ECHO_WHOAMI_MAX];
	size_t n = conn_whoami_line(w, c, client, px, line);
	ssize_t sent;

	if (n == 0)
		goto fail;
	sent = write(c->fd, line, n);
	if (sent < 0) {
		if (errno != EAGAIN && errno != EINTR)
			goto fail;
		sent = 0;
	}
	w->conns.bytes_out += (uint64_t)sent;
	if ((size_t)sent < n && outbuf_append(&c->out, line + sent, n - (size_t)sent) == -1)
		goto fail;
	if (conn_whoami_update(w, c) == -1)
		goto fail;
	return false;
fail:
	conn_close(w, c);
	return true;
}

/* A whoami connection's events: the rest of the line out, the client's bytes dropped. */
static bool
conn_whoami_handle(struct worker *w, struct conn *c, uint32_t events)
{
	if ((events & EPOLLERR) || ((events & EPOLLOUT) && conn_flush(w, c) == -1))
		goto close;
	if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP)) {
		ssize_t n = read(c->fd, w->scratch, WORKER_SCRATCH);
		if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
			c->read_closed = true;
		else if (n > 0)
			w->conns.bytes_in += (uint64_t)n;
	}
	if ((events & EPOLLHUP) || conn_whoami_update(w, c) == -1)
		goto close;
	conn_touch(w, c);
	return false;
close:
	conn_close(w, c);
	return true;
}

/*
 * Echoes what followed the header in its read (scratch[at, n)): the
 * client's first bytes. Queued behind nothing, since nothing was owed.
 */
static int
conn_echo_rest(struct worker *w, struct conn *c, size_t at, size_t n)
{
	unsigned char *d = w->scratch + at;
	ssize_t sent;

	if (at == n)
		return 0;
	if (c->mode == CFG_MODE_UPPER)
		echo_upper(d, n - at);
	sent = write(c->fd, d, n - at);
	if (sent < 0) {
		if (errno != EAGAIN && errno != EINTR)
			return -1;
		sent = 0;
	}
	w->conns.bytes_out += (uint64_t)sent;
	return outbuf_append(&c->out, d + sent, n - at - (size_t)sent);
}

/*
 * An echo connection past its header joins the connections a handover
 * moves, with the header's client address kept for the record (RES has
 * none: the socket's peer is the client, as on a plain listener). Out of
 * memory, it stays kept: served and drained here, never cut.
 */
static void
conn_proxy_movable(struct worker *w, struct conn *c, const struct proxy_result *res)
{
	if (res->has_addr) {
		if ((c->client = malloc(sizeof(*c->client))) == NULL) {
			log_warn("PROXY connection kept from handovers");
			return;
		}
		*c->client = res->src;
	}
	c->handover &= (uint8_t)~CONN_H_KEPT;
	w->conns.kept--;
}

/*
 * The header is in. Its address (PROXY command with an address; LOCAL
 * and address-less families keep the balancer's) becomes the client's:
 * allow/deny and the per-address limit are checked on it now. The bytes
 * after the header in the same read are the client's. True when the
 * connection was closed.
 */
static bool
conn_proxy_done(struct worker *w, struct conn *c, size_t used, size_t n)
{
	struct conn_proxy *px = c->px;
	const struct sockaddr_storage *client = px->res.has_addr ? &px->res.src : &px->balancer;
	bool closed;
	int entry = -1;

	w->me->proxy_headers++;
	if (conn_acl_refuses(w, px->listener, client) ||
	    (entry = conn_count_address(w, client)) == -2)
		goto close;
	c->addr_entry = entry;
	px = waiting_unlink(&w->conns, c);
	if (c->mode == CFG_MODE_WHOAMI) {
		closed = conn_whoami_start(w, c, client, px);  /* what followed the header is dropped */
		free(px);
		return closed;
	}
	c->special = false;
	conn_proxy_movable(w, c, &px->res);
	free(px);
	/*
	 * The steady state from now on, without an epoll_ctl: the kernel
	 * may still watch EPOLLRDHUP as well, which only sends a half-close
	 * down the slow path, where it is handled anyway.
	 */
	c->events = EPOLLIN;
	if (conn_echo_rest(w, c, used, n) == -1 || conn_update_events(w, c) == -1)
		goto close;
	conn_touch(w, c);
	return false;
close:
	conn_close(w, c);
	return true;
}

/* A connection waiting for its PROXY header: one read, fed to the parser. */
static bool
conn_proxy_handle(struct worker *w, struct conn *c, uint32_t events)
{
	struct conn_proxy *px = c->px;
	ssize_t n = read(c->fd, w->scratch, WORKER_SCRATCH);
	size_t used;

	if (n < 0 && (errno == EAGAIN || errno == EINTR) && !(events & (EPOLLERR | EPOLLHUP)))
		return false;
	if (n <= 0)
		goto close;  /* gone before its header: a balancer's bare connect check, say; not counted */
	w->conns.bytes_in += (uint64_t)n;
	c->received += (uint64_t)n;
	switch (proxy_feed(&px->parser, w->scratch, (size_t)n, &used, &px->res)) {
	case PROXY_NEED_MORE:
		conn_touch(w, c);
		return false;
	case PROXY_ERROR:
		w->me->proxy_bad++;
		conn_log_refused(&px->balancer, px->parser.error == PROXY_ERR_TOO_LONG ?
		    "PROXY header too long" : px->parser.error == PROXY_ERR_CRC ?
		    "PROXY header CRC32C mismatch" : "malformed PROXY header");
		goto close;
	case PROXY_DONE:
		break;
	}
	return conn_proxy_done(w, c, used, (size_t)n);
close:
	conn_close(w, c);
	return true;
}

/* A PROXY header that took longer than proxy_timeout: counted and logged. */
static void
conn_proxy_timed_out(struct worker *w, struct conn *c)
{
	w->me->proxy_timeout++;
	conn_log_refused(&c->px->balancer, "PROXY header not complete within proxy_timeout");
}

/* ---- TLS: special connections, their bytes through OpenSSL (worker/tlsconn.h) ---- */

/* A failed handshake, counted by class. */
static void
conn_tls_count_failure(struct worker *w, struct conn *c)
{
	switch (tlsconn_failure(c->tls->t)) {
	case TLSC_FAIL_PROTOCOL:
		w->me->tls_fail_protocol++;
		break;
	case TLSC_FAIL_CERT:
		w->me->tls_fail_cert++;
		break;
	case TLSC_FAIL_OTHER:
		w->me->tls_fail_other++;
		break;
	}
}

/* Sends what the connection owes through OpenSSL; -1 when it is broken. */
static int
conn_tls_flush(struct worker *w, struct conn *c)
{
	size_t n;

	while (c->out.len != 0) {
		switch (tlsconn_write(c->tls->t, c->out.data + c->out.off, c->out.len, &n)) {
		case TLSC_DONE:
			w->conns.bytes_out += n;
			outbuf_consume(&c->out, n);
			continue;
		case TLSC_WANT_WRITE:
		case TLSC_WANT_READ:
			c->tls->want_write = true;
			return 0;
		case TLSC_CLOSED:
		case TLSC_FAILED:
			return -1;
		}
	}
	c->tls->want_write = false;
	return 0;
}

/*
 * The decrypted bytes of one read: echoed (upper-cased in upper mode)
 * behind what is owed, the rest queued; whoami drops them. -1 when broken.
 */
static int
conn_tls_echo(struct worker *w, struct conn *c, size_t n)
{
	size_t sent = 0;

	w->conns.bytes_in += n;
	c->received += n;
	if (c->mode == CFG_MODE_WHOAMI)
		return 0;
	if (c->mode == CFG_MODE_UPPER)
		echo_upper(w->scratch, n);
	if (c->out.len == 0) {
		switch (tlsconn_write(c->tls->t, w->scratch, n, &sent)) {
		case TLSC_DONE:
			w->conns.bytes_out += sent;
			break;
		case TLSC_WANT_WRITE:
		case TLSC_WANT_READ:
			sent = 0;
			c->tls->want_write = true;
			break;
		case TLSC_CLOSED:
		case TLSC_FAILED:
			return -1;
		}
	}
	/* Only what the client did not take: an empty append would allocate the buffer. */
	return sent == n ? 0 : outbuf_append(&c->out, w->scratch + sent, n - sent);
}

/* Records read in one turn before the others get theirs, unless OpenSSL holds more. */
#define CONN_TLS_READS 8

/*
 * Reads until the socket has nothing more, the output is full, the client
 * is done, or (fairness) CONN_TLS_READS records are in; the 64 KiB bound
 * of outbuf applies to the decrypted replies. It never leaves bytes in
 * OpenSSL's buffer while it could read them: epoll would not say they are
 * there. -1 when broken.
 */
static int
conn_tls_read(struct worker *w, struct conn *c)
{
	size_t n;

	for (int reads = 0; !c->read_closed && !c->paused; reads++) {
		size_t room = c->out.len != 0 ? outbuf_room(&c->out) : WORKER_SCRATCH;

		if (reads >= CONN_TLS_READS && !tlsconn_pending(c->tls->t))
			return 0;  /* the rest is in the socket: level-triggered epoll calls again */
		switch (tlsconn_read(c->tls->t, w->scratch, room, &n)) {
		case TLSC_DONE:
			if (conn_tls_echo(w, c, n) == -1)
				return -1;
			if (outbuf_room(&c->out) == 0)
				c->paused = true;
			continue;
		case TLSC_WANT_READ:
			return 0;
		case TLSC_WANT_WRITE:
			c->tls->want_write = true;
			return 0;
		case TLSC_CLOSED:
			c->read_closed = true;  /* close_notify: the client's half-close */
			return 0;
		case TLSC_FAILED:
			return -1;
		}
	}
	return 0;
}

/*
 * What epoll watches on an established TLS connection: never plain
 * EPOLLIN (struct conn). Reading adds EPOLLRDHUP, so that a half-close
 * without close_notify is seen; paused, only EPOLLOUT, or a client's FIN
 * would wake us for ever. -1 when the connection is done: replies out,
 * then our close_notify (tlsconn_free).
 */
static int
conn_tls_update(struct worker *w, struct conn *c)
{
	bool reading;
	uint32_t want;

	if (c->out.len == 0)
		c->paused = false;
	if (c->mode == CFG_MODE_WHOAMI && c->out.len == 0 && !c->shut) {
		tlsconn_shutdown(c->tls->t);  /* the line is out: our close_notify says it is whole */
		c->shut = true;
	}
	if (c->read_closed && c->out.len == 0)
		return -1;
	reading = !c->read_closed && !c->paused;
	want = (reading ? CONN_SPECIAL_EVENTS : 0) |
	    (c->out.len != 0 || c->tls->want_write ? EPOLLOUT : 0);
	if (want != c->events) {
		if (ev_mod(w->epfd, c->fd, want, &c->ev) == -1)
			return -1;
		c->events = want;
	}
	return 0;
}

/* The handshake is complete: counted; whoami's line queued; the client's first bytes may be in already. */
static int
conn_tls_established(struct worker *w, struct conn *c)
{
	char line[ECHO_WHOAMI_MAX];
	size_t n;

	hs_unlink(&w->conns, c);
	w->me->tls_handshakes++;
	if (tlsconn_resumed(c->tls->t))
		w->me->tls_resumed++;
	if (c->mode != CFG_MODE_WHOAMI)
		return 0;
	if ((n = conn_whoami_line(w, c, NULL, NULL, line)) == 0)
		return -1;
	return outbuf_append(&c->out, line, n);
}

/* A handshake step; -1 when it failed (counted), 1 while it goes on, 0 once complete. */
static int
conn_tls_handshake(struct worker *w, struct conn *c)
{
	uint32_t want;

	switch (tlsconn_handshake(c->tls->t)) {
	case TLSC_DONE:
		return conn_tls_established(w, c);
	case TLSC_WANT_READ:
		want = CONN_SPECIAL_EVENTS;
		break;
	case TLSC_WANT_WRITE:
		want = EPOLLOUT;
		break;
	case TLSC_CLOSED:
	case TLSC_FAILED:
	default:
		conn_tls_count_failure(w, c);
		return -1;
	}
	if (want != c->events) {
		if (ev_mod(w->epfd, c->fd, want, &c->ev) == -1)
			return -1;
		c->events = want;
	}
	return 1;
}

/* Every event of a TLS connection: the handshake, then replies out and requests in. */
static bool
conn_tls_handle(struct worker *w, struct conn *c, uint32_t events)
{
	int hs;

	if (events & EPOLLERR) {
		if (c->tls->handshaking)
			w->me->tls_fail_other++;  /* a reset mid-handshake is a failed handshake too */
		goto close;
	}
	if (c->tls->handshaking) {
		if ((hs = conn_tls_handshake(w, c)) == -1)
			goto close;
		if (hs == 1) {
			conn_touch(w, c);
			return false;
		}
	}
	if (conn_tls_flush(w, c) == -1)
		goto close;
	if (c->out.len == 0)
		c->paused = false;  /* before the read: what OpenSSL holds of a paused read comes now */
	if (conn_tls_read(w, c) == -1 || conn_tls_flush(w, c) == -1 || (events & EPOLLHUP) ||
	    conn_tls_update(w, c) == -1)
		goto close;
	conn_touch(w, c);
	return false;
close:
	conn_close(w, c);
	return true;
}

/* A TLS handshake that took longer than handshake_timeout: counted. */
static void
conn_tls_timed_out(struct worker *w, struct conn *c)
{
	(void)c;  /* counted only, not logged */
	w->me->tls_fail_timeout++;
}

/*
 * Any event but plain readability (progress is then CONN_CHANGED), or
 * what remains after conn_handle's read changed something: events is 0
 * then, and progress says what the read did.
 */
static __attribute__((noinline)) bool
conn_handle_slow(struct worker *w, struct conn *c, uint32_t events, enum conn_progress progress)
{
	if (c->special)
		return c->tls != NULL ? conn_tls_handle(w, c, events) :
		    c->px != NULL ? conn_proxy_handle(w, c, events) : conn_whoami_handle(w, c, events);
	if (progress == CONN_FAILED ||
	    /* ERR or HUP: reset, or both directions shut; nothing can reach the client. */
	    (events & (EPOLLERR | EPOLLHUP)) ||
	    ((events & EPOLLOUT) && conn_flush(w, c) == -1) ||
	    ((events & EPOLLIN) && conn_read(w, c, c->out.len != 0) == CONN_FAILED) ||
	    conn_update_events(w, c) == -1) {
		conn_close(w, c);
		return true;
	}
	conn_touch(w, c);
	return false;
}

/*
 * One read and the echo of it. A function of its own, so that the common
 * path saves three registers, not the five that conn_handle_slow's
 * inlined paths would make every request save.
 */
static __attribute__((noinline)) bool
conn_echo(struct worker *w, struct conn *c)
{
	enum conn_progress r = conn_read(w, c, false);

	if (r != CONN_ECHOED)
		return conn_handle_slow(w, c, 0, r);
	conn_touch(w, c);
	return false;
}

/*
 * The steady state of a connection, by far the most common: epoll watches
 * only EPOLLIN (nothing owed, not paused, not half-closed) and reports only
 * that. Then one read and one write that takes it all leave the state as it
 * was, as in a bare echo server; everything else takes the slow path.
 */
bool
conn_handle(struct worker *w, struct conn *c, uint32_t events)
{
	if (events == EPOLLIN && c->events == EPOLLIN)
		return conn_echo(w, c);
	return conn_handle_slow(w, c, events, CONN_CHANGED);
}

void
conn_publish(struct worker *w)
{
	struct conn_set *s = &w->conns;

	w->me->bytes_in += s->echoed + s->bytes_in;
	w->me->bytes_out += s->echoed + s->bytes_out;
	s->echoed = s->bytes_in = s->bytes_out = 0;
}

/*
 * Closes the connections of list l that have waited limit_s seconds or more,
 * each told to timed_out first; returns how many.
 */
static size_t
conn_expire_list(struct worker *w, struct deadline_list *l, int limit_s,
    void (*timed_out)(struct worker *, struct conn *))
{
	int64_t limit = (int64_t)limit_s * 1000;
	size_t closed = 0;
	struct conn *c;

	/* conn_close takes each off the list: the next oldest is the head then. */
	while ((c = deadline_expired(l, w->now_ms, limit)) != NULL) {
		timed_out(w, c);
		conn_close(w, c);
		closed++;
	}
	return closed;
}

size_t
conn_expire_idle(struct worker *w)
{
	int64_t limit = (int64_t)w->cfg->idle_timeout * 1000;
	size_t closed = 0;

	if (deadline_pending(&w->conns.waiting))
		closed += conn_expire_list(w, &w->conns.waiting, w->cfg->proxy_timeout,
		    conn_proxy_timed_out);
	if (deadline_pending(&w->conns.handshakes))
		closed += conn_expire_list(w, &w->conns.handshakes, w->cfg->handshake_timeout,
		    conn_tls_timed_out);

	if (limit == 0)
		return closed;
	limit += IDLE_STAMP_MS;  /* never close early: the stamp may lag */
	for (struct conn *c = w->conns.idle_head, *next; c != NULL; c = next) {
		next = c->next;
		if (w->now_ms - c->last_active < limit)
			break;  /* the list is oldest first: the rest are newer */
		conn_close(w, c);
		closed++;
	}
	return closed;
}

size_t
conn_close_all(struct worker *w)
{
	size_t closed = 0;

	for (struct conn *c = w->conns.idle_head, *next; c != NULL; c = next) {
		next = c->next;
		conn_close(w, c);
		closed++;
	}
	return closed;
}

/* ---- handover (worker/move.c): the interface a reload's move needs ---- */

/* How far idle_insert looks from either end of the list for a connection's place. */
#define IDLE_INSERT_SCAN 64

/*
 * Puts a connection whose stamp may be old (taken back, or taken over) at
 * its place in the idle list, which is sorted oldest first. Active ones
 * belong near the tail and idle ones near the head, so it looks from both
 * ends, a bounded number of steps: a connection whose place is further in
 * goes as far back as the scan from the tail reached, where it may expire
 * up to idle_timeout late, never early.
 */
static void
idle_insert(struct conn_set *s, struct conn *c)
{
	struct conn *after = s->idle_tail, *before = s->idle_head;
	int k;

	for (k = 0; k < IDLE_INSERT_SCAN && after != NULL && after->last_active > c->last_active; k++)
		after = after->prev;
	if (after != NULL && after->last_active > c->last_active) {
		for (k = 0; k < IDLE_INSERT_SCAN && before != after && before->last_active <= c->last_active; k++)
			before = before->next;
		if (before->last_active > c->last_active)
			after = before->prev;
	}
	if (after == NULL) {  /* the oldest */
		c->prev = NULL;
		c->next = s->idle_head;
		if (s->idle_head != NULL)
			s->idle_head->prev = c;
		else
			s->idle_tail = c;
		s->idle_head = c;
		return;
	}
	c->prev = after;
	c->next = after->next;
	if (after->next != NULL)
		after->next->prev = c;
	else
		s->idle_tail = c;
	after->next = c;
}

struct conn *
conn_next_movable(const struct worker *w)
{
	for (struct conn *c = w->conns.idle_head; c != NULL; c = c->next)
		if (!(c->handover & CONN_H_KEPT))
			return c;
	return NULL;
}

int
conn_detach(struct worker *w, struct conn *c)
{
	if (ev_del(w->epfd, c->fd) == -1) {
		c->handover |= CONN_H_KEPT;
		w->conns.kept++;
		return -1;
	}
	idle_unlink(&w->conns, c);
	c->handover |= CONN_H_DETACHED;
	w->conns.detached++;
	return 0;
}

int
conn_describe(const struct worker *w, const struct conn *c, struct handover_rec *rec,
    const void **pending, size_t *pending_len)
{
	int64_t age = w->now_ms - c->last_active;

	*rec = (struct handover_rec){
		.received = c->received,
		.idle_age_ms = age < 0 ? 0 : age > UINT32_MAX ? UINT32_MAX : (uint32_t)age,
		.mode = c->mode, .half_closed = c->read_closed, .counted = c->addr_entry != -1,
		.has_client = c->client != NULL,  /* a movable connection is never special: client, not px */
	};
	if (c->client != NULL)
		rec->client = *c->client;
	*pending = c->out.len != 0 ? c->out.data + c->out.off : NULL;
	*pending_len = c->out.len;
	return c->fd;
}

void
conn_forget(struct worker *w, struct conn *c)
{
	conn_destroy(w, c);
}

bool
conn_take_back(struct worker *w, struct conn *c)
{
	if (ev_add(w->epfd, c->fd, c->events, &c->ev) == -1) {
		log_warn("epoll_ctl add connection taken back");
		conn_destroy(w, c);
		return false;
	}
	c->handover = (uint8_t)((c->handover & ~CONN_H_DETACHED) | CONN_H_KEPT);
	w->conns.detached--;
	w->conns.kept++;
	idle_insert(&w->conns, c);
	return true;
}

/*
 * Counts a connection handed to us for its address when our configuration
 * has a per-address limit: regardless of the limit, since it was admitted
 * before. A full window leaves it uncounted rather than cut it.
 */
static int
conn_count_moved_address(struct worker *w, const struct sockaddr_storage *peer)
{
	struct addrtab *t = &w->sb->addr;
	int entry;

	if (!conn_counts_addresses(w))
		return -1;
	entry = addrtab_conn_add(t, addrtab_hash(t, (const struct sockaddr *)peer), w->sb_entry);
	return entry >= 0 ? entry : -1;
}

struct conn *
conn_adopt(struct worker *w, int fd, const struct handover_rec *rec, const void *pending,
    size_t pending_len, const struct sockaddr_storage *peer)
{
	struct conn *c;

	if (pending_len > OUTBUF_CAP || (c = calloc(1, sizeof(*c))) == NULL)
		return NULL;
	if (rec->has_client && (c->client = malloc(sizeof(*c->client))) == NULL) {
		free(c);
		return NULL;
	}
	if (pending_len > 0 && outbuf_append(&c->out, pending, pending_len) == -1) {
		free(c->client);
		free(c);
		return NULL;
	}
	if (rec->has_client)
		*c->client = rec->client;
	c->ev.kind = EV_CONN;
	c->fd = fd;
	c->mode = rec->mode;
	c->read_closed = rec->half_closed;
	c->paused = pending_len > 0;  /* the reply we owe goes out before anything more is read */
	c->events = conn_wanted(c);
	c->last_active = w->now_ms - (int64_t)rec->idle_age_ms;
	c->received = rec->received;
	c->handover = CONN_H_DETACHED | CONN_H_ADOPTED;
	c->addr_entry = conn_count_moved_address(w, peer);
	w->conns.detached++;
	w->me->active = ++w->conns.n;
	return c;
}

bool
conn_serve(struct worker *w, struct conn *c)
{
	if (c->events == 0) {  /* half-closed and owing nothing: it is done */
		conn_destroy(w, c);
		return false;
	}
	if (ev_add(w->epfd, c->fd, c->events, &c->ev) == -1) {
		log_warn("epoll_ctl add connection taken over");
		conn_destroy(w, c);
		return false;
	}
	c->handover &= (uint8_t)~CONN_H_DETACHED;
	w->conns.detached--;
	idle_insert(&w->conns, c);
	return true;
}
