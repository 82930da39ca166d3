/*
 * conn_proxy: a connection on a PROXY listener until its header is in
 * (worker/proxy.h parses it). Then it becomes a plain echo connection,
 * movable by a handover, or a whoami one; on a TLS listener, a TLS one
 * (conn_tls.c), whose handshake follows the header on the wire.
 */
#include "worker/conn_int.h"

#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#include "common/log.h"
#include "common/prefix.h"

struct conn_proxy *
conn_proxy_unlink(struct conn_set *s, struct conn *c)
{
	struct conn_proxy *px = c->px;

	deadline_unlink(&s->waiting, &px->wait);
	c->px = NULL;
	return px;
}

/*
 * A PROXY listener: the TCP peer is the balancer. Only the trust check
 * can be made now; allow/deny and the per-address limit wait for the
 * header's address (conn_proxy_done).
 */
enum conn_accepted
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

const struct sockaddr_storage *
conn_proxy_client(const struct conn_proxy *px)
{
	return px->res.has_addr ? &px->res.src : &px->balancer;
}

/*
 * The header is in. Its address (PROXY command with an address; LOCAL
 * and address-less families keep the balancer's) becomes the client's:
 * allow/deny and the per-address limit are checked on it now. The bytes
 * after the header in the same read are the client's: its data, or on a
 * TLS listener the start of its ClientHello, which OpenSSL gets. True
 * when the connection was closed.
 */
static bool
conn_proxy_done(struct worker *w, struct conn *c, size_t used, size_t n)
{
	struct conn_proxy *px = c->px;
	const struct sockaddr_storage *client = conn_proxy_client(px);
	bool closed;
	int entry = -1;

	w->me->proxy_headers++;
	if (conn_acl_refuses(w, px->listener, client) ||
	    (entry = conn_count_address(w, client)) == -2)
		goto close;
	c->addr_entry = entry;
	px = conn_proxy_unlink(&w->conns, c);
	if (px->listener->conf->tls.on) {
		w->conns.bytes_in -= n - used;  /* TLS records: a TLS listener counts decrypted bytes */
		return conn_tls_start(w, c, px, w->scratch + used, n - used);
	}
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
bool
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
void
conn_proxy_timed_out(struct worker *w, struct conn *c)
{
	w->me->proxy_timeout++;
	conn_log_refused(&c->px->balancer, "PROXY header not complete within proxy_timeout");
}
