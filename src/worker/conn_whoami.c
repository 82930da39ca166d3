/*
 * conn_whoami: mode "whoami": one line says who answered (worker/echo.h
 * formats it), then the connection waits for the client's EOF.
 */
#include "worker/conn_int.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "common/ev.h"
#include "worker/tlsconn.h"

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
	return conn_watch(w, c, want);
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

size_t
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
bool
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
bool
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
