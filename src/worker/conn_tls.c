/*
 * conn_tls: a connection on a TLS listener. Its bytes go through OpenSSL
 * (worker/tlsconn.h); it is special from accept to close, so the plain
 * echo path never sees it, and it is never handed over (its state lives
 * in OpenSSL): it drains. With proxy_protocol, the PROXY header comes
 * first, in clear (conn_proxy.c), and the handshake after it.
 */
#include "worker/conn_int.h"

#include <stdlib.h>
#include <unistd.h>

#include "common/ev.h"
#include "common/log.h"
#include "common/tlsctx.h"
#include "worker/tlsconn.h"

static void
hs_unlink(struct conn_set *s, struct conn *c)
{
	deadline_unlink(&s->handshakes, &c->tls->wait);
	c->tls->handshaking = false;
}

void
conn_tls_release(struct conn_tls *tls)
{
	tlsconn_free(tls->t);
	free(tls->px);
	free(tls);
}

void
conn_tls_free(struct conn_set *s, struct conn *c)
{
	if (c->tls->handshaking)
		hs_unlink(s, c);
	conn_tls_release(c->tls);
	c->tls = NULL;
}

void
conn_tls_begin(struct worker *w, struct conn *c, struct conn_tls *tls)
{
	c->tls = tls;
	tls->handshaking = true;
	deadline_append(&w->conns.handshakes, &tls->wait, c, w->now_ms);
}

/* A TLS listener: the connection starts with the handshake (conn_tls_handle). */
enum conn_accepted
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
 * Behind a PROXY header, the TLS side is made once the header is in, and
 * a handshake step runs at once: what followed the header in its read may
 * be the whole ClientHello, and epoll will not report those bytes again.
 * From then on it is a connection of a plain TLS listener, with
 * handshake_timeout counting from now.
 */
bool
conn_tls_start(struct worker *w, struct conn *c, struct conn_proxy *px, const void *rest,
    size_t len)
{
	SSL_CTX *ctx = tlsctx_ssl_ctx(px->listener->conf->tls.ctx);
	struct conn_tls *tls = calloc(1, sizeof(*tls));

	if (tls == NULL || (tls->t = tlsconn_new_prefixed(ctx, c->fd, rest, len)) == NULL) {
		log_warnx("TLS connection dropped: out of memory");
		free(tls);
		free(px);
		conn_close(w, c);
		return true;
	}
	if (c->mode == CFG_MODE_WHOAMI)
		tls->px = px;  /* the line is made once the handshake is complete */
	else
		free(px);
	conn_tls_begin(w, c, tls);
	return conn_tls_handle(w, c, 0);
}

/*
 * A failed handshake, counted by class; not a connection that closed
 * before its first byte of TLS: a balancer's bare connect check (HAProxy's
 * plain check, behind a PROXY header or not) is no failure; nor one that
 * went away once its own side was through (HAProxy's ssl check).
 */
static void
conn_tls_count_failure(struct worker *w, struct conn *c)
{
	enum tlsconn_failure f = tlsconn_failure(c->tls->t);  /* clears OpenSSL's errors in any case */

	if (tlsconn_received_nothing(c->tls->t) || tlsconn_client_finished(c->tls->t))
		return;
	switch (f) {
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

/* Records read in one turn before the others get theirs. */
#define CONN_TLS_READS 8

/*
 * Reads until OpenSSL holds nothing more (read-ahead: a read(2) may bring
 * several records, or part of one), the output is full, the client is
 * done, or (fairness) CONN_TLS_READS records are in; the 64 KiB bound of
 * outbuf applies to the decrypted replies. Bytes still in the socket are
 * left to level-triggered epoll, which saves a read(2) that would say
 * EAGAIN. Bytes OpenSSL holds, epoll cannot see: when the output or
 * fairness stops us with some there, read_more has conn_tls_update watch
 * EPOLLOUT too, which a socket with room reports at once. -1 when broken.
 */
static int
conn_tls_read(struct worker *w, struct conn *c)
{
	size_t n;

	c->tls->read_more = false;
	for (int reads = 0; !c->read_closed; reads++) {
		size_t room = c->out.len != 0 ? outbuf_room(&c->out) : WORKER_SCRATCH;

		if (reads > 0 && !tlsconn_pending(c->tls->t))
			return 0;
		if (c->paused || reads == CONN_TLS_READS) {
			c->tls->read_more = tlsconn_pending(c->tls->t);
			return 0;
		}
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
	    (c->out.len != 0 || c->tls->want_write || (reading && c->tls->read_more) ? EPOLLOUT : 0);
	return conn_watch(w, c, want);
}

/* The handshake is complete: counted; whoami's line queued; the client's first bytes may be in already. */
static int
conn_tls_established(struct worker *w, struct conn *c)
{
	char line[ECHO_WHOAMI_MAX];
	const struct conn_proxy *px;
	size_t n;

	hs_unlink(&w->conns, c);
	w->me->tls_handshakes++;
	if (tlsconn_resumed(c->tls->t))
		w->me->tls_resumed++;
	if (c->mode != CFG_MODE_WHOAMI)
		return 0;
	px = c->tls->px;
	if ((n = conn_whoami_line(w, c, px != NULL ? conn_proxy_client(px) : NULL, px, line)) == 0)
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
	return conn_watch(w, c, want) == -1 ? -1 : 1;
}

/* Every event of a TLS connection: the handshake, then replies out and requests in. */
bool
conn_tls_handle(struct worker *w, struct conn *c, uint32_t events)
{
	int hs;

	if (events & EPOLLERR) {
		/*
		 * A reset mid-handshake is a failed handshake, unless the client's
		 * last flight came before it (a balancer's TLS check resets once
		 * it is through): the kernel still gives those bytes.
		 */
		if (c->tls->handshaking && conn_tls_handshake(w, c) == 1)
			conn_tls_count_failure(w, c);
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
void
conn_tls_timed_out(struct worker *w, struct conn *c)
{
	(void)c;  /* counted only, not logged */
	w->me->tls_fail_timeout++;
}
