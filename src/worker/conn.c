#include "worker/conn_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/ev.h"
#include "common/log.h"
#include "common/sock.h"
#include "worker/acl.h"

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
__attribute__((noinline)) void
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


/* Closes our descriptor and forgets the connection; it is in neither epoll nor the idle list. */
static void
conn_destroy(struct worker *w, struct conn *c)
{
	if (c->px != NULL)
		free(c->special ? (void *)conn_proxy_unlink(&w->conns, c) : (void *)c->client);
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

void
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
struct conn *
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
	if (tls != NULL)
		conn_tls_begin(w, c, tls);
	w->me->active = ++w->conns.n;
	w->me->accepted++;
	return c;
fail:
	if (tls != NULL)
		conn_tls_release(tls);
	close(fd);
	free(px);
	if (addr_entry != -1)
		addrtab_conn_release(&w->sb->addr, addr_entry, w->sb_entry);
	return NULL;
}

void
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
bool
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
int
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

int
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
int
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
	return conn_watch(w, c, want);
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
