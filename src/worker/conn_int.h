/*
 * conn_int: what the connection modules share, and nothing else includes.
 * conn.c holds the set, accept and the plain echo path; the special
 * connections, which never take that path, have a file each:
 * conn_proxy.c (waiting for a PROXY header), conn_whoami.c (the one line)
 * and conn_tls.c (bytes through OpenSSL).
 */
#ifndef EM_CONN_INT_H
#define EM_CONN_INT_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include "common/ev.h"
#include "worker/conn.h"
#include "worker/echo.h"
#include "worker/outbuf.h"
#include "worker/proxy.h"
#include "worker/worker.h"

struct tlsconn;

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
 * accept on such listeners only (behind a PROXY header: once the header
 * is in, conn_tls_start): a plain connection carries one NULL pointer
 * more and nothing else.
 */
struct conn_tls {
	struct tlsconn *t;
	bool handshaking;
	bool want_write;          /* OpenSSL waits for the socket to become writable */
	bool read_more;           /* bytes left in OpenSSL (fairness, a full output): EPOLLOUT brings us back */
	struct deadline_node wait; /* in conn_set's handshake list: the handshake_timeout clock */
	struct conn_proxy *px;    /* whoami behind a PROXY header: the header, for the line; else NULL */
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
	/* Non-NULL on a TLS listener, from accept (behind a PROXY header: once it is in); special then. */
	struct conn_tls *tls;
	struct outbuf out;
};

/* What epoll watches on a special connection: never plain EPOLLIN (see struct conn). */
#define CONN_SPECIAL_EVENTS (EPOLLIN | EPOLLRDHUP)

/* ---- conn.c ---- */

/* Has epoll watch want for the connection, with a system call only when that changes; -1 when it fails. */
static inline int
conn_watch(struct worker *w, struct conn *c, uint32_t want)
{
	if (want == c->events)
		return 0;
	if (ev_mod(w->epfd, c->fd, want, &c->ev) == -1)
		return -1;
	c->events = want;
	return 0;
}

/* Moves a connection to the newest end of the idle list (limits.min_rate permitting). */
void conn_restamp(struct worker *w, struct conn *c);

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


/*
 * Takes ownership of fd, of the per-address count at addr_entry (-1:
 * none), of px (NULL: not waiting for a PROXY header) and of tls (NULL:
 * not a TLS listener). Returns the connection, or NULL when it had to be
 * dropped (then all of them are released).
 */
struct conn *conn_open(struct worker *w, int fd, int mode, int addr_entry, struct conn_proxy *px,
    struct conn_tls *tls);
/* Takes it out of the idle list (and epoll), closes and frees it. */
void conn_close(struct worker *w, struct conn *c);
/* A refusal, at debug level only: a hostile client must not be able to fill the log. */
void conn_log_refused(const struct sockaddr_storage *peer, const char *why);
/* True when the listener's allow and deny lists refuse the client (counted). */
bool conn_acl_refuses(struct worker *w, const struct worker_listener *l,
    const struct sockaddr_storage *peer);
/* Its entry for max_connections_per_address, -1 without a limit, -2 refused (counted). */
int conn_count_address(struct worker *w, const struct sockaddr_storage *peer);
/* Writes what is owed, plain; -1 when the connection is broken. */
int conn_flush(struct worker *w, struct conn *c);
/* Recomputes a plain connection's epoll mask; -1 when it is done. */
int conn_update_events(struct worker *w, struct conn *c);

/* ---- conn_proxy.c ---- */

/* A connection accepted on a PROXY listener: trusted-source check, then the header is awaited. */
enum conn_accepted conn_accept_proxied(struct worker *w, const struct worker_listener *l, int fd,
    const struct sockaddr_storage *peer);
/* Takes a connection off the waiting list; its PROXY state is the caller's now. */
struct conn_proxy *conn_proxy_unlink(struct conn_set *s, struct conn *c);
/* Every event while the header is due; true when the connection was closed. */
bool conn_proxy_handle(struct worker *w, struct conn *c, uint32_t events);
/* A header that took longer than proxy_timeout: counted and logged. */
void conn_proxy_timed_out(struct worker *w, struct conn *c);
/* The client a header names: its source, or the balancer for LOCAL and the address-less families. */
const struct sockaddr_storage *conn_proxy_client(const struct conn_proxy *px);

/* ---- conn_whoami.c ---- */

/* The whoami line of a connection into line; 0 when its addresses cannot be had. */
size_t conn_whoami_line(struct worker *w, struct conn *c, const struct sockaddr_storage *client,
    const struct conn_proxy *px, char line[ECHO_WHOAMI_MAX]);
/* Writes the line and from then on waits for the client's EOF; true when it closed the connection. */
bool conn_whoami_start(struct worker *w, struct conn *c, const struct sockaddr_storage *client,
    const struct conn_proxy *px);
/* Every event of a whoami connection; true when it was closed. */
bool conn_whoami_handle(struct worker *w, struct conn *c, uint32_t events);

/* ---- conn_tls.c ---- */

/* A connection accepted on a TLS listener: its handshake begins. */
enum conn_accepted conn_accept_tls(struct worker *w, const struct worker_listener *l, int fd,
    int entry);
/*
 * A connection on a TLS listener with proxy_protocol, its header in and
 * admitted: its handshake begins, OpenSSL reading REST (the LEN bytes that
 * followed the header in its read) before the socket. Takes ownership of
 * px (kept for a whoami line, else freed). True when it was closed.
 */
bool conn_tls_start(struct worker *w, struct conn *c, struct conn_proxy *px, const void *rest,
    size_t len);
/* Gives the connection its TLS side: the handshake begins, handshake_timeout counting from now. */
void conn_tls_begin(struct worker *w, struct conn *c, struct conn_tls *tls);
/* Frees a TLS side that belongs to no connection (yet). */
void conn_tls_release(struct conn_tls *tls);
/* Frees a connection's TLS side: our close_notify goes out first when the session is up. */
void conn_tls_free(struct conn_set *s, struct conn *c);
/* Every event of a TLS connection; true when it was closed. */
bool conn_tls_handle(struct worker *w, struct conn *c, uint32_t events);
/* A handshake that took longer than handshake_timeout: counted. */
void conn_tls_timed_out(struct worker *w, struct conn *c);

#endif
