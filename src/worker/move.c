#include "worker/move.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/log.h"
#include "common/prefix.h"
#include "common/sock.h"
#include "worker/acl.h"
#include "worker/conn.h"
#include "worker/worker.h"

/* ---- pure parts ---- */

/* Connections a receiver whose score is S gets to reach LEVEL. */
static uint64_t
fill_to(uint64_t s, uint64_t level)
{
	return level > s ? level - s : 0;
}

static uint64_t
fill_sum(const uint64_t *score, size_t k, uint64_t level)
{
	uint64_t sum = 0;

	for (size_t i = 0; i < k; i++)
		sum += fill_to(score[i], level);
	return sum;
}

/*
 * Water-filling: the lowest level L that N connections fill, found by
 * bisection; everyone is raised to L - 1, and the rest, fewer than the
 * receivers at L - 1, go one each to the first of those, as the greedy
 * choice's ties would.
 */
void
move_spread(const uint64_t *score, size_t k, uint64_t n, uint64_t *share)
{
	uint64_t lo = UINT64_MAX, hi, rest;

	for (size_t i = 0; i < k; i++) {
		share[i] = 0;
		if (score[i] < lo)
			lo = score[i];
	}
	if (k == 0 || n == 0)
		return;
	hi = lo + n;  /* the lowest alone reaches it: the answer is in (lo, hi] */
	while (hi - lo > 1) {
		uint64_t mid = lo + (hi - lo) / 2;
		if (fill_sum(score, k, mid) >= n)
			hi = mid;
		else
			lo = mid;
	}
	rest = n - fill_sum(score, k, hi - 1);
	for (size_t i = 0; i < k; i++) {
		share[i] = fill_to(score[i], hi - 1);
		if (rest > 0 && score[i] <= hi - 1) {
			share[i]++;
			rest--;
		}
	}
}

static bool
addr_is_wildcard(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET)
		return ((const struct sockaddr_in *)sa)->sin_addr.s_addr == htonl(INADDR_ANY);
	return IN6_IS_ADDR_UNSPECIFIED(&((const struct sockaddr_in6 *)sa)->sin6_addr);
}

/* 1: same address, 0: the listener's is the wildcard, -1: no match. Families are equal. */
static int
addr_match(const struct sockaddr *listener, const struct sockaddr *local)
{
	const void *a, *b;
	size_t len;

	if (listener->sa_family == AF_INET) {
		a = &((const struct sockaddr_in *)listener)->sin_addr;
		b = &((const struct sockaddr_in *)local)->sin_addr;
		len = sizeof(struct in_addr);
	} else {
		a = &((const struct sockaddr_in6 *)listener)->sin6_addr;
		b = &((const struct sockaddr_in6 *)local)->sin6_addr;
		len = sizeof(struct in6_addr);
	}
	if (memcmp(a, b, len) == 0)
		return 1;
	return addr_is_wildcard(listener) ? 0 : -1;
}

static uint16_t
addr_port(const struct sockaddr *sa)
{
	return sa->sa_family == AF_INET ? ((const struct sockaddr_in *)sa)->sin_port :
	    ((const struct sockaddr_in6 *)sa)->sin6_port;
}

const struct cfg_listen *
move_listener_of(const struct cfg *cfg, const struct sockaddr *local)
{
	const struct cfg_listen *wild = NULL;

	if (local->sa_family != AF_INET && local->sa_family != AF_INET6)
		return NULL;
	for (size_t i = 0; i < cfg->nlisten; i++) {
		const struct cfg_listen *l = &cfg->listen[i];
		const struct sockaddr *la = (const struct sockaddr *)&l->addr;
		int m;

		if (l->proto != CFG_PROTO_TCP || la->sa_family != local->sa_family ||
		    addr_port(la) != addr_port(local))
			continue;
		if ((m = addr_match(la, local)) == 1)
			return l;
		if (m == 0 && wild == NULL)
			wild = l;
	}
	return wild;
}

/* ---- peers ---- */

static void
peer_close(struct worker *w, struct move_peer *p)
{
	if (p->fd == -1)
		return;
	if (ev_del(w->epfd, p->fd) == -1)
		log_warn("epoll_ctl del handover socket");
	close(p->fd);
	p->fd = -1;
}

static int
set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	return fl == -1 ? -1 : fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

static int
peer_add(struct worker *w, int fd, bool sending, unsigned entry)
{
	struct move *mv = &w->move;
	struct move_peer *p;

	if (mv->npeers == mv->cap) {
		size_t cap = mv->cap != 0 ? mv->cap * 2 : 8;
		struct move_peer **a = realloc(mv->peer, cap * sizeof(struct move_peer *));
		if (a == NULL)
			return -1;
		mv->peer = a;
		mv->cap = cap;
	}
	if ((p = calloc(1, sizeof(*p))) == NULL)
		return -1;
	p->ev.kind = EV_HANDOVER;
	p->fd = fd;
	p->sending = sending;
	p->entry = entry;
	if (set_nonblock(fd) == -1 || ev_add(w->epfd, fd, EPOLLIN, &p->ev) == -1) {
		free(p);
		return -1;
	}
	mv->peer[mv->npeers++] = p;
	return 0;
}

void
move_add_peers(struct worker *w, struct chan_msg *m, bool sending)
{
	for (uint32_t i = 0; i < m->nfds; i++) {
		unsigned entry = sending ? m->entry[i] : 0;

		if (sending && entry >= SB_ENTRIES && entry != CHAN_ENTRY_UNKNOWN) {
			log_warnx("handover: scoreboard entry %u out of range", entry);
			close(m->fds[i]);
		} else if (peer_add(w, m->fds[i], sending, entry) == -1) {
			log_warn("handover: cannot watch a handover socket; its peer keeps its connections");
			close(m->fds[i]);
		}
	}
	m->nfds = 0;
}

void
move_begin(struct worker *w)
{
	w->move.handing_over = true;
	log_debug("handing over %zu connections", conn_count(&w->conns));
}

/* Frees the peers closed since the last turn: no event of theirs can be pending now. */
static void
peers_reap(struct move *mv)
{
	size_t k = 0;

	for (size_t i = 0; i < mv->npeers; i++) {
		struct move_peer *p = mv->peer[i];
		if (p->fd != -1) {
			mv->peer[k++] = p;
			continue;
		}
		free(p->batch);
		free(p);
	}
	mv->npeers = k;
}

/* ---- sender ---- */

static void
sender_log(const struct move_peer *p, const char *why)
{
	if (p->refused == 0 && p->lost == 0 && why == NULL) {
		log_debug("handover to worker entry %u: %zu connections moved", p->entry, p->moved);
		return;
	}
	log_warnx("handover to worker entry %u%s%s: %zu connections moved, %zu refused, "
	    "%zu taken back unacknowledged; draining those here", p->entry, why != NULL ? ": " : "",
	    why != NULL ? why : "", p->moved, p->refused, p->lost);
}

/* Every connection of the outstanding batch comes back to our loop. */
static void
sender_take_back_all(struct worker *w, struct move_peer *p)
{
	for (unsigned i = 0; p->in_flight && i < p->batch->hdr.nrec; i++) {
		conn_take_back(w, p->conn[i]);
		w->me->moves_failed++;
		p->lost++;
	}
	p->in_flight = false;
	p->blocked = false;
	p->deadline_ms = 0;
}

/* Applies the ack of the outstanding batch; -1 when it answers another (nothing applied). */
static int
sender_apply_ack(struct worker *w, struct move_peer *p, const struct handover_ack *a)
{
	bool same_version;

	if (!p->in_flight || p->blocked || a->seq != p->batch->hdr.p.seq)
		return -1;
	same_version = a->version == p->batch->hdr.p.version;  /* handover.h's version rule */
	for (unsigned i = 0; i < p->batch->hdr.nrec; i++) {
		if (same_version && handover_ack_taken(a, i)) {
			conn_forget(w, p->conn[i]);
			w->me->moved_out++;
			p->moved++;
		} else {
			conn_take_back(w, p->conn[i]);
			w->me->moves_failed++;
			p->refused++;
			p->stopped = true;  /* it is full, or draining: it would refuse again */
		}
	}
	p->in_flight = false;
	p->deadline_ms = 0;
	return 0;
}

/*
 * Gives a receiver up. SHUT_RD first: from then on its ack cannot be
 * queued (its send fails with EPIPE and it closes what it took), so the
 * acks read below are all there will ever be, and whatever they do not
 * take is ours alone again.
 */
static void
sender_give_up(struct worker *w, struct move_peer *p, const char *why)
{
	struct handover_ack a;
	char err[128];

	if (p->fd == -1)
		return;
	shutdown(p->fd, SHUT_RD);
	while (p->in_flight && !p->blocked && handover_ack_recv(p->fd, &a, err, sizeof(err)) == 0)
		if (sender_apply_ack(w, p, &a) == -1)
			break;
	sender_take_back_all(w, p);
	sender_log(p, why);
	peer_close(w, p);
}

/* Done with a receiver: nothing outstanding, nothing more for it. */
static void
sender_finish(struct worker *w, struct move_peer *p)
{
	sender_log(p, NULL);
	peer_close(w, p);
}

static void
sender_send(struct worker *w, struct move_peer *p)
{
	uint32_t want = EPOLLIN;

	if (handover_batch_send(p->fd, p->batch) == 0)
		p->blocked = false;
	else if (errno == EAGAIN || errno == EINTR)
		p->blocked = true, want |= EPOLLOUT;
	else {
		sender_give_up(w, p, strerror(errno));
		return;
	}
	if (ev_mod(w->epfd, p->fd, want, &p->ev) == -1)
		sender_give_up(w, p, "epoll_ctl");
}

/* Reads the acks waiting on the socket; a broken or confused one is given up. */
static void
sender_read(struct worker *w, struct move_peer *p)
{
	struct handover_ack a;
	char err[128];

	while (p->fd != -1) {
		if (handover_ack_recv(p->fd, &a, err, sizeof(err)) == -1) {
			if (errno != EAGAIN && errno != EINTR)
				sender_give_up(w, p, errno == ECONNRESET ? "the channel closed" : err);
			return;
		}
		if (sender_apply_ack(w, p, &a) == -1) {
			sender_give_up(w, p, "an ack for no outstanding batch");
			return;
		}
	}
}

/* Detaches up to N connections into p's batch and sends it. */
static void
sender_fill(struct worker *w, struct move_peer *p, uint64_t n)
{
	struct handover_batch *b = p->batch;
	struct handover_rec rec;
	const void *pending;
	size_t len;
	struct conn *c;

	handover_batch_reset(b, p->seq++);
	while (b->hdr.nrec < n && b->hdr.nrec < MOVE_BATCH_MAX && (c = conn_next_movable(w)) != NULL) {
		int fd;

		if (conn_detach(w, c) == -1) {  /* kept attached: drained here */
			w->me->moves_failed++;
			continue;
		}
		fd = conn_describe(w, c, &rec, &pending, &len);
		p->conn[b->hdr.nrec] = c;
		if (handover_batch_add(b, fd, &rec, pending, len) == -1) {
			log_warn("handover: a connection kept here");
			conn_take_back(w, c);
			w->me->moves_failed++;
		}
	}
	if (b->hdr.nrec == 0)
		return;
	p->in_flight = true;
	p->deadline_ms = w->now_ms + MOVE_ACK_TIMEOUT_MS;
	sender_send(w, p);
}

/* The receivers still taking: open for a batch now, or with one outstanding. */
static size_t
senders_live(struct move *mv, struct move_peer **live)
{
	size_t k = 0;

	for (size_t i = 0; i < mv->npeers; i++) {
		struct move_peer *p = mv->peer[i];
		if (p->sending && p->fd != -1 && !p->stopped)
			live[k++] = p;
	}
	return k;
}

/*
 * A receiver's load: its connections in our scoreboard, or, when it is not
 * ours to read (CHAN_ENTRY_UNKNOWN: a new master's worker), what we have
 * sent it, so that our connections at least spread evenly by count.
 */
static uint64_t
peer_load(const struct worker *w, const struct move_peer *p)
{
	if (p->entry == CHAN_ENTRY_UNKNOWN)
		return p->moved;
	return w->sb->w[p->entry].active;
}

/*
 * S1 to S3: the movable connections spread over the live receivers, a
 * batch to each that has none. A batch carries a quarter of the
 * receiver's share (at least one): other senders' batches in flight to it
 * are not in the count we read, and spreading in quarters makes the last
 * decisions, which settle the balance, rest on counts that are nearly
 * complete. (Halves were measured to leave receivers that only one sender
 * reaches, with the master's windows of peers, 10% under their share.)
 */
static void
sender_spread(struct worker *w, struct move_peer **live, size_t k)
{
	uint64_t *score = calloc(k * 2, sizeof(*score)), *share;

	if (score == NULL)
		return;  /* next turn */
	share = score + k;
	for (size_t i = 0; i < k; i++)
		score[i] = peer_load(w, live[i]) + (live[i]->in_flight ? live[i]->batch->hdr.nrec : 0);
	move_spread(score, k, conn_movable_count(&w->conns), share);
	for (size_t i = 0; i < k; i++) {
		struct move_peer *p = live[i];
		if (p->in_flight || share[i] == 0 || p->fd == -1)
			continue;
		if (p->batch == NULL && (p->batch = calloc(1, sizeof(*p->batch))) == NULL)
			continue;
		sender_fill(w, p, (share[i] + 3) / 4);
	}
	free(score);
}

/*
 * Closes the receivers we are done with (idle, and nothing more for them);
 * once none has a batch outstanding and none is left to take what remains,
 * the handover is over and what remains is drained here.
 */
static void
sender_conclude(struct worker *w)
{
	struct move *mv = &w->move;
	size_t left = conn_movable_count(&w->conns), live = 0;
	bool more = left != 0 || conn_headers_due(&w->conns);  /* movable once their header is in */

	for (size_t i = 0; i < mv->npeers; i++) {
		struct move_peer *p = mv->peer[i];
		if (!p->sending || p->fd == -1)
			continue;
		if (p->in_flight)
			return;  /* its ack decides what remains */
		if (p->stopped || !more)
			sender_finish(w, p);
		else
			live++;
	}
	if (live != 0 && more)
		return;
	if (left != 0) {
		log_warnx("handover: no worker left to take %zu connections; draining them here", left);
		w->me->moves_failed += left;
	}
	mv->done = true;
}

static void
sender_run(struct worker *w)
{
	struct move *mv = &w->move;
	struct move_peer **live = calloc(mv->npeers + 1, sizeof(struct move_peer *));
	size_t k;

	if (live == NULL)
		return;
	for (size_t i = 0; i < mv->npeers; i++) {
		struct move_peer *p = mv->peer[i];
		if (p->sending && p->fd != -1 && p->in_flight && w->now_ms >= p->deadline_ms)
			sender_give_up(w, p, "no ack in time");
	}
	k = senders_live(mv, live);
	if (k != 0 && conn_movable_count(&w->conns) != 0)
		sender_spread(w, live, k);
	free(live);
	sender_conclude(w);
}

/* ---- receiver ---- */

enum admit { ADMIT, ADMIT_ACL_REFUSES, ADMIT_UNTRUSTED, ADMIT_CANNOT };

/* Whether the listener's (reloaded) proxy_trusted admits the balancer a connection came through. */
static bool
receiver_trusts(const struct cfg_listen *l, const struct sockaddr_storage *balancer)
{
	int family;
	const uint8_t *addr;

	if (l->proxy_protocol == CFG_PROXY_OFF || l->proxy_trusted.n == 0)
		return true;
	return prefix_addr_of((const struct sockaddr *)balancer, &family, &addr) == 0 &&
	    prefix_list_match(&l->proxy_trusted, family, addr);
}

/*
 * Our own lists, of the listener the connection arrived on: proxy_trusted
 * on the socket's peer (the balancer, on a PROXY listener), then allow/deny
 * on its client: the PROXY header's address the record carries, else the
 * socket's peer.
 */
static enum admit
receiver_admit(const struct worker *w, int fd, const struct handover_rec *rec,
    struct sockaddr_storage *peer)
{
	struct sockaddr_storage local = { 0 };
	socklen_t llen = sizeof(local), plen = sizeof(*peer);
	const struct cfg_listen *l;

	if (getsockname(fd, (struct sockaddr *)&local, &llen) == -1 ||
	    getpeername(fd, (struct sockaddr *)peer, &plen) == -1)
		return ADMIT_CANNOT;  /* reset meanwhile: its sender will see it */
	if ((l = move_listener_of(w->cfg, (const struct sockaddr *)&local)) == NULL)
		return ADMIT;  /* the reload removed its listener: no lists apply */
	if (!receiver_trusts(l, peer))
		return ADMIT_UNTRUSTED;
	if (rec->has_client)
		*peer = rec->client;
	return acl_admits(&l->allow, &l->deny, (const struct sockaddr *)peer) ? ADMIT :
	    ADMIT_ACL_REFUSES;
}

/* As conn.c logs a refusal at accept: debug only, with the client's (or balancer's) address. */
static void
receiver_log_refused(const struct sockaddr_storage *peer, const char *why)
{
	char addr[64];

	if (!log_enabled(LOG_DEBUG))
		return;
	sock_addr_format(peer, addr, sizeof(addr));
	log_debug("moved connection from %s refused: %s", addr, why);
}

/* What R1 made of a batch: the connections rebuilt and those the lists refused, all taken. */
struct taken {
	size_t nconn, nacl, nuntrusted;
	struct conn *conn[HANDOVER_MAX_FDS];
	int acl[HANDOVER_MAX_FDS];        /* refused by allow/deny */
	int untrusted[HANDOVER_MAX_FDS];  /* refused by proxy_trusted */
};

/* R1 for record i: refused (left in the inbox), or taken into t. */
static void
receiver_take(struct worker *w, struct handover_inbox *in, unsigned i, struct taken *t)
{
	const struct handover_item *it = &in->item[i];
	struct sockaddr_storage peer = { 0 };
	enum admit verdict;
	struct conn *c;

	if (it->fd == -1 || w->draining || conn_count(&w->conns) >= (size_t)w->cfg->max_connections ||
	    (it->rec.mode != CFG_MODE_UPPER && it->rec.mode != CFG_MODE_ECHO))
		return;
	if ((verdict = receiver_admit(w, it->fd, &it->rec, &peer)) == ADMIT_CANNOT)
		return;
	if (verdict == ADMIT_ACL_REFUSES) {
		receiver_log_refused(&peer, "access list");
		t->acl[t->nacl++] = handover_inbox_take(in, i);
		return;
	}
	if (verdict == ADMIT_UNTRUSTED) {
		receiver_log_refused(&peer, "not in proxy_trusted");
		t->untrusted[t->nuntrusted++] = handover_inbox_take(in, i);
		return;
	}
	c = conn_adopt(w, it->fd, &it->rec, it->pending, it->pending_len, &peer);
	if (c == NULL)
		return;
	handover_inbox_take(in, i);  /* cannot fail: a record with its fd, not taken yet */
	t->conn[t->nconn++] = c;
}

/* R2: the ack, and only once it is sent, service. */
static void
receiver_answer(struct worker *w, struct move_peer *p, struct handover_inbox *in, struct taken *t)
{
	struct handover_ack a;
	bool sent;

	handover_inbox_ack(in, &a);
#ifdef EM_TEST_HOOKS
	/* Test builds only: a receiver that answers after the sender gave up, while the named file exists. */
	if (getenv("EM_TEST_ACK_LATE") != NULL && access(getenv("EM_TEST_ACK_LATE"), F_OK) == 0)
		usleep((MOVE_ACK_TIMEOUT_MS + 1000) * 1000);
#endif
	sent = handover_ack_send(p->fd, &a) == 0;
	if (!sent)
		log_warn("handover: ack of batch %u not sent; closing the %zu connections it took",
		    (unsigned)a.seq, t->nconn + t->nacl + t->nuntrusted);
	handover_inbox_reset(in);
	for (size_t i = 0; i < t->nacl; i++) {
		close(t->acl[i]);
		w->me->refused_acl++;
	}
	for (size_t i = 0; i < t->nuntrusted; i++) {
		close(t->untrusted[i]);
		w->me->proxy_untrusted++;
	}
	for (size_t i = 0; i < t->nconn; i++) {
		if (sent)
			conn_serve(w, t->conn[i]);
		else
			conn_forget(w, t->conn[i]);
	}
	if (sent)
		w->me->moved_in += t->nconn + t->nacl + t->nuntrusted;
	else
		peer_close(w, p);
}

/* A batch that could not be read: a whole refusal when it can be answered, else the end. */
static void
receiver_reject(struct worker *w, struct move_peer *p, struct handover_inbox *in, const char *err)
{
	struct handover_ack a;
	int e = errno;

	if (e == ECONNRESET) {  /* the sender is done, or gone */
		peer_close(w, p);
		return;
	}
	log_warnx("handover: batch refused: %s", err);
	if (e == EPROTO && in->has_seq) {
		handover_inbox_ack(in, &a);
		if (handover_ack_send(p->fd, &a) == 0)
			return;
	}
	peer_close(w, p);
}

static void
receiver_read(struct worker *w, struct move_peer *p)
{
	struct move *mv = &w->move;
	struct taken t = { 0 };
	char err[256];

	if (mv->inbox == NULL && (mv->inbox = calloc(1, sizeof(*mv->inbox))) == NULL)
		return;  /* the sender times out and keeps its connections */
	if (handover_batch_recv(p->fd, mv->inbox, err, sizeof(err)) == -1) {
		if (errno != EAGAIN && errno != EINTR)
			receiver_reject(w, p, mv->inbox, err);
		return;
	}
	for (unsigned i = 0; i < mv->inbox->nrec; i++)
		receiver_take(w, mv->inbox, i, &t);
	receiver_answer(w, p, mv->inbox, &t);
}

/* ---- the loop's calls ---- */

void
move_event(struct worker *w, struct move_peer *p, uint32_t events)
{
	if (p->fd == -1)
		return;
	if (!p->sending) {
		receiver_read(w, p);
		return;
	}
	if ((events & EPOLLOUT) && p->blocked)
		sender_send(w, p);
	if (p->fd != -1 && (events & (EPOLLIN | EPOLLERR | EPOLLHUP)))
		sender_read(w, p);
}

void
move_run(struct worker *w)
{
	if (w->move.handing_over && !w->move.done)
		sender_run(w);
	peers_reap(&w->move);
}
