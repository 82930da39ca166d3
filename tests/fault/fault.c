/*
 * fault.c: see fault.h. Test-side code only: it drives the real daemon
 * from outside and links none of its objects.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "fault.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#define POLL_NAP_MS	20
#define SHORT_MAX	4096
#define STREAM_WINDOW	(64 * 1024)
#define STREAM_CHUNK	(16 * 1024)
#define MAX_INODES	8192

uint32_t
fault_rand(uint32_t *s)
{
	uint32_t x = *s != 0 ? *s : 0x9e3779b9u;

	x ^= x << 13;
	x ^= x >> 17;
	x ^= x << 5;
	*s = x;
	return x;
}

/* ---- /proc --------------------------------------------------------------- */

size_t
fault_children(pid_t ppid, pid_t *pids, size_t max)
{
	return proc_children(ppid, NULL, pids, max);
}

size_t
fault_zombies(pid_t ppid)
{
	DIR *d = opendir("/proc");
	struct dirent *de;
	size_t n = 0;

	if (d == NULL)
		fail_msg("opendir /proc: %s", strerror(errno));
	while ((de = readdir(d)) != NULL) {
		struct proc_info pi;

		if (isdigit((unsigned char)de->d_name[0]) &&
		    proc_info((pid_t)atoi(de->d_name), &pi) == 0 && pi.ppid == ppid &&
		    pi.state == 'Z')
			n++;
	}
	closedir(d);
	return n;
}

char
fault_state(pid_t pid)
{
	struct proc_info pi;

	return proc_info(pid, &pi) == 0 ? pi.state : '?';
}

long long
fault_cpu_ticks(pid_t pid)
{
	struct proc_info pi;

	return proc_info(pid, &pi) == 0 ? (long long)(pi.utime + pi.stime) : -1;
}

int
fault_fd_count(pid_t pid)
{
	char path[64];
	struct dirent *de;
	int n = 0;
	DIR *d;

	snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
	if ((d = opendir(path)) == NULL)
		return -1;
	while ((de = readdir(d)) != NULL)
		if (de->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

/* The first number on the line of /proc/PID/status that starts with key. */
static int
status_field(pid_t pid, const char *key, long *a, long *b)
{
	char path[64], line[256];
	size_t klen = strlen(key);
	int rc = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	if ((f = fopen(path, "re")) == NULL)
		return -1;
	while (fgets(line, sizeof(line), f) != NULL) {
		if (strncmp(line, key, klen) != 0)
			continue;
		*b = -1;
		if (sscanf(line + klen, "%ld %ld", a, b) >= 1)
			rc = 0;
		break;
	}
	fclose(f);
	return rc;
}

long
fault_rss_kb(pid_t pid)
{
	long kb, unused;

	return status_field(pid, "VmRSS:", &kb, &unused) == 0 ? kb : -1;
}

long
fault_server_rss_kb(pid_t master)
{
	pid_t kids[EM_MAX_WORKERS * 4];
	size_t n, i;
	long total = fault_rss_kb(master), kb;

	n = fault_children(master, kids, sizeof(kids) / sizeof(*kids));
	for (i = 0; i < n && i < sizeof(kids) / sizeof(*kids); i++)
		if ((kb = fault_rss_kb(kids[i])) > 0)
			total += kb;
	return total;
}

int
fault_uids(pid_t pid, uid_t *ruid, uid_t *euid)
{
	long r, e;

	if (status_field(pid, "Uid:", &r, &e) == -1 || e < 0)
		return -1;
	*ruid = (uid_t)r;
	*euid = (uid_t)e;
	return 0;
}

void
fault_wait_children(struct env *e, size_t n, pid_t *pids, int timeout_ms)
{
	int64_t deadline = now_ms() + timeout_ms;
	pid_t got[EM_MAX_WORKERS * 4];
	size_t have;

	for (;;) {
		have = fault_children(e->master, got,
		    sizeof(got) / sizeof(*got));
		if (have == n)
			break;
		if (now_ms() >= deadline) {
			env_dump_log(e);
			fail_msg("master %d has %zu children after %d ms, want %zu",
			    (int)e->master, have, timeout_ms, n);
		}
		nap_ms(POLL_NAP_MS);
	}
	if (pids != NULL)
		memcpy(pids, got, n * sizeof(*pids));
}

/* ---- starting ------------------------------------------------------------ */

/* The harness's start, with the limit applied in the child before exec. */
pid_t
fault_start_nofile(struct env *e, rlim_t nofile)
{
	e->nofile = nofile;
	return env_start(e);
}

static char *
conf_text_extra(struct env *e, const struct em_conf *c, const char *extra)
{
	char *text = env_conf_text(e, c), *with, *before;

	assert_true(asprintf(&before, "%slisten = (\n", extra) > 0);
	with = text_replace(text, "listen = (\n", before);
	free(before);
	free(text);
	return with;
}

void
fault_write_conf(struct env *e, const struct em_conf *c, const char *extra)
{
	char *text = conf_text_extra(e, c, extra);

	env_write_conf_text(e, text);
	free(text);
}

void
fault_write_conf_tls(struct env *e, const struct em_conf *c, const char *extra,
    int tls_port)
{
	char *text = conf_text_extra(e, c, extra), *with;

	if (access(env_file(e, FAULT_CERT ".crt"), F_OK) != 0)
		tls_make_cert(e, FAULT_CERT);
	with = tls_listener_text(e, text, tls_port, FAULT_CERT, NULL);
	env_write_conf_text(e, with);
	free(with);
	free(text);
}

/* ---- UDP ----------------------------------------------------------------- */

int
udp_client(int port)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	sin.sin_port = htons((uint16_t)port);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd == -1 || connect(fd, (struct sockaddr *)&sin, sizeof(sin)) == -1)
		fail_msg("udp client to port %d: %s", port, strerror(errno));
	return fd;
}

ssize_t
udp_roundtrip_fd(int fd, const void *msg, size_t len, void *reply, size_t cap,
    int timeout_ms)
{
	int64_t deadline = now_ms() + timeout_ms;
	struct pollfd pfd = { .fd = fd, .events = POLLIN };
	ssize_t n;

	/* Drop late replies to an earlier try. */
	while (recv(fd, reply, cap, MSG_DONTWAIT) >= 0)
		;
	while (now_ms() < deadline) {
		int64_t try_end = now_ms() + 500;

		if (send(fd, msg, len, 0) != (ssize_t)len)
			return -1;
		while (now_ms() < try_end && now_ms() < deadline) {
			if (poll(&pfd, 1, 50) != 1)
				continue;
			n = recv(fd, reply, cap, MSG_TRUNC | MSG_DONTWAIT);
			if (n < 0)
				return -1;
			/* Only the reply to this datagram counts. */
			if ((size_t)n == len)
				return n;
		}
	}
	errno = ETIMEDOUT;
	return -1;
}

/* ---- which client connections a worker holds ----------------------------- */

static size_t
fd_inodes(pid_t pid, unsigned long *inodes, size_t max)
{
	char path[64], link[PATH_MAX], target[64];
	struct dirent *de;
	size_t n = 0;
	DIR *d;

	snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
	if ((d = opendir(path)) == NULL)
		return 0;
	while ((de = readdir(d)) != NULL && n < max) {
		ssize_t len;

		if (de->d_name[0] == '.')
			continue;
		snprintf(link, sizeof(link), "%s/%s", path, de->d_name);
		len = readlink(link, target, sizeof(target) - 1);
		if (len <= 0)
			continue;
		target[len] = '\0';
		if (sscanf(target, "socket:[%lu]", &inodes[n]) == 1)
			n++;
	}
	closedir(d);
	return n;
}

static bool
inode_in(const unsigned long *v, size_t n, unsigned long x)
{
	for (size_t i = 0; i < n; i++)
		if (v[i] == x)
			return true;
	return false;
}

/*
 * Established-side TCP sockets on the server's port, through sock_diag
 * netlink: /proc/net/tcp also lists every TIME_WAIT socket (100,000 and
 * more after a churn test), and reading it takes long enough to make an
 * idle timeout fire under the test's feet. The state mask leaves out
 * TIME_WAIT and LISTEN.
 */
size_t
fault_held_client_ports(pid_t pid, int port, int *ports, size_t max)
{
	static unsigned long inodes[MAX_INODES];
	static char buf[65536];
	size_t ninodes = fd_inodes(pid, inodes, MAX_INODES), n = 0;
	struct {
		struct nlmsghdr nlh;
		struct inet_diag_req_v2 req;
	} q = {
		.nlh = { .nlmsg_len = sizeof(q), .nlmsg_type = SOCK_DIAG_BY_FAMILY,
		    .nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP },
		.req = { .sdiag_family = AF_INET, .sdiag_protocol = IPPROTO_TCP,
		    .idiag_states = ~((1u << TCP_TIME_WAIT) | (1u << TCP_LISTEN) |
		    (1u << TCP_CLOSE)) },
	};
	bool done = false;
	int fd;

	fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
	if (fd == -1)
		fail_msg("sock_diag socket: %s", strerror(errno));
	if (send(fd, &q, sizeof(q), 0) != (ssize_t)sizeof(q))
		fail_msg("sock_diag send: %s", strerror(errno));
	while (!done) {
		ssize_t len = recv(fd, buf, sizeof(buf), 0);
		struct nlmsghdr *h = (struct nlmsghdr *)buf;

		if (len <= 0)
			fail_msg("sock_diag recv: %s", strerror(errno));
		for (; NLMSG_OK(h, (size_t)len); h = NLMSG_NEXT(h, len)) {
			const struct inet_diag_msg *m = NLMSG_DATA(h);

			if (h->nlmsg_type == NLMSG_DONE || h->nlmsg_type == NLMSG_ERROR) {
				done = true;
				break;
			}
			if (ntohs(m->id.idiag_sport) != port ||
			    !inode_in(inodes, ninodes, m->idiag_inode))
				continue;
			if (n < max)
				ports[n] = ntohs(m->id.idiag_dport);
			n++;
		}
	}
	close(fd);
	return n;
}

/* ---- load ---------------------------------------------------------------- */

enum { LC_IDLE, LC_CONNECTING, LC_HANDSHAKE, LC_ACTIVE, LC_WAIT_EOF };

struct load_conn {
	int		 fd;
	SSL		*ssl;		/* a TLS load's connection, once connected */
	bool		 want_write;	/* OpenSSL waits for the socket to be writable */
	int		 phase;
	bool		 stream;
	bool		 doomed;
	int		 lport;
	int64_t		 t_start;
	int64_t		 t_progress;
	/* connect-echo-close */
	uint8_t		 msg[SHORT_MAX];
	size_t		 len, sent, rcvd;
	/* stream */
	uint32_t	 seed;
	uint64_t	 s_sent, s_rcvd;
};

static uint8_t
stream_byte(uint32_t seed, uint64_t i)
{
	uint32_t x = (uint32_t)i * 2654435761u ^ seed ^ (uint32_t)(i >> 32);

	x ^= x >> 15;
	x *= 0x2c1b3c6du;
	x ^= x >> 12;
	return (uint8_t)x;
}

static void
load_note(struct load *l, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
load_note(struct load *l, const char *fmt, ...)
{
	va_list ap;

	if (l->first_error[0] != '\0')
		return;
	va_start(ap, fmt);
	vsnprintf(l->first_error, sizeof(l->first_error), fmt, ap);
	va_end(ap);
}

static void
lc_close(struct load_conn *c)
{
	ERR_clear_error();
	SSL_free(c->ssl);
	c->ssl = NULL;
	c->want_write = false;
	if (c->fd != -1)
		close(c->fd);
	c->fd = -1;
	c->phase = LC_IDLE;
	c->doomed = false;
}

/* A connect-echo-close that is complete: a TLS one says so with its close_notify first. */
static void
lc_close_done(struct load_conn *c)
{
	if (c->ssl != NULL)
		SSL_shutdown(c->ssl);
	lc_close(c);
}

/* What an OpenSSL call that did not succeed means, as recv/send would say it. */
static ssize_t
lc_tls_error(struct load_conn *c, int ret)
{
	int err = SSL_get_error(c->ssl, ret);

	c->want_write = err == SSL_ERROR_WANT_WRITE;
	switch (err) {
	case SSL_ERROR_WANT_READ:
	case SSL_ERROR_WANT_WRITE:
		errno = EAGAIN;
		return -1;
	case SSL_ERROR_ZERO_RETURN:
		return 0;  /* the server's close_notify: its end of the stream */
	case SSL_ERROR_SYSCALL:
		if (errno == 0 || errno == EAGAIN)
			errno = EPIPE;
		break;
	default:
		errno = EPROTO;  /* a TLS error, an EOF without close_notify among them */
		break;
	}
	ERR_clear_error();
	return -1;
}

/* One read or write: through OpenSSL on a TLS connection, else the socket's own. */
static ssize_t
lc_io(struct load_conn *c, void *buf, size_t len, bool write)
{
	size_t n;
	int ret;

	if (c->ssl == NULL)
		return write ? send(c->fd, buf, len, MSG_NOSIGNAL) : recv(c->fd, buf, len, 0);
	ret = write ? SSL_write_ex(c->ssl, buf, len, &n) : SSL_read_ex(c->ssl, buf, len, &n);
	return ret == 1 ? (ssize_t)n : lc_tls_error(c, ret);
}

/* A connection that broke: expected when doomed, counted otherwise. */
static void
lc_broken(struct load *l, struct load_conn *c, const char *how, int err)
{
	if (c->doomed) {
		l->st.doomed_lost++;
	} else {
		l->st.broken++;
		load_note(l, "%s connection from port %d broke after %lld ms: "
		    "%s (%s)", c->stream ? "stream" : "short", c->lport,
		    (long long)(now_ms() - c->t_start), how,
		    err != 0 ? strerror(err) : "-");
	}
	lc_close(c);
}

static void
lc_connect(struct load *l, struct load_conn *c)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	socklen_t slen = sizeof(sin);

	c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd == -1) {
		l->st.connect_failed++;
		load_note(l, "socket: %s", strerror(errno));
		return;
	}
	sin.sin_port = htons((uint16_t)l->port);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	c->t_start = c->t_progress = now_ms();
	c->doomed = false;
	if (connect(c->fd, (struct sockaddr *)&sin, sizeof(sin)) == -1 &&
	    errno != EINPROGRESS) {
		if (errno == ECONNREFUSED)
			l->st.refused++;
		else
			l->st.connect_failed++;
		load_note(l, "connect: %s", strerror(errno));
		lc_close(c);
		return;
	}
	if (getsockname(c->fd, (struct sockaddr *)&sin, &slen) == 0)
		c->lport = ntohs(sin.sin_port);
	c->phase = LC_CONNECTING;
	if (c->stream) {
		c->seed = fault_rand(&l->rng);
		c->s_sent = c->s_rcvd = 0;
	} else {
		c->len = 1 + fault_rand(&l->rng) % SHORT_MAX;
		for (size_t i = 0; i < c->len; i++)
			c->msg[i] = (uint8_t)fault_rand(&l->rng);
		c->sent = c->rcvd = 0;
	}
}

/* One step of the TLS handshake; the connection is active once it is done. */
static void
lc_handshake(struct load *l, struct load_conn *c)
{
	int ret = SSL_connect(c->ssl);

	if (ret == 1) {
		c->phase = LC_ACTIVE;
		c->want_write = false;
		c->t_progress = now_ms();
		l->st.handshakes++;
	} else if (lc_tls_error(c, ret) == 0) {
		lc_broken(l, c, "TLS handshake: closed", 0);
	} else if (errno != EAGAIN) {
		lc_broken(l, c, "TLS handshake", errno);
	}
}

static void
lc_tls_begin(struct load *l, struct load_conn *c)
{
	if ((c->ssl = SSL_new(l->tls_ctx)) == NULL || SSL_set_fd(c->ssl, c->fd) != 1)
		fail_msg("SSL_new: out of memory");
	c->phase = LC_HANDSHAKE;
	lc_handshake(l, c);
}

static void
lc_connected(struct load *l, struct load_conn *c)
{
	int err = 0;
	socklen_t len = sizeof(err);

	getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
	if (err == 0) {
		c->phase = LC_ACTIVE;
		c->t_progress = now_ms();
		if (l->tls_ctx != NULL)
			lc_tls_begin(l, c);
		return;
	}
	if (err == ECONNREFUSED)
		l->st.refused++;
	else
		l->st.connect_failed++;
	load_note(l, "connect from port %d: %s", c->lport, strerror(err));
	lc_close(c);
}

/* Compares what arrived with what the echo must be; false on a mismatch. */
static bool
lc_check(struct load *l, struct load_conn *c, const uint8_t *buf, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		uint8_t want = c->stream ?
		    ref_upper_byte(stream_byte(c->seed, c->s_rcvd + i)) :
		    ref_upper_byte(c->msg[c->rcvd + i]);

		if (buf[i] == want)
			continue;
		l->st.wrong++;
		load_note(l, "%s from port %d: byte %llu is %#x, want %#x",
		    c->stream ? "stream" : "short", c->lport,
		    (unsigned long long)((c->stream ? c->s_rcvd : c->rcvd) + i),
		    buf[i], want);
		lc_close(c);
		return false;
	}
	return true;
}

static void
lc_send(struct load *l, struct load_conn *c)
{
	uint8_t chunk[STREAM_CHUNK];
	size_t want;
	ssize_t n;

	/* A retried TLS write offers the same bytes again, and never fewer. */
	if (!c->stream) {
		n = lc_io(c, c->msg + c->sent, c->len - c->sent, true);
	} else {
		want = STREAM_WINDOW - (size_t)(c->s_sent - c->s_rcvd);
		if (want > sizeof(chunk))
			want = sizeof(chunk);
		for (size_t i = 0; i < want; i++)
			chunk[i] = stream_byte(c->seed, c->s_sent + i);
		n = lc_io(c, chunk, want, true);
	}
	if (n < 0) {
		if (errno != EAGAIN && errno != EINTR)
			lc_broken(l, c, "send", errno);
		return;
	}
	if (c->stream)
		c->s_sent += (uint64_t)n;
	else
		c->sent += (size_t)n;
}

static void
lc_recv(struct load *l, struct load_conn *c)
{
	static uint8_t buf[STREAM_WINDOW];
	size_t room = c->stream ? sizeof(buf) : c->len - c->rcvd;
	ssize_t n;

	if (room == 0)
		room = 1;  /* only EOF or surplus can arrive now */
	n = lc_io(c, buf, room, false);
	if (n < 0) {
		if (errno != EAGAIN && errno != EINTR)
			lc_broken(l, c, "recv", errno);
		return;
	}
	if (n == 0) {
		if (c->phase == LC_WAIT_EOF) {
			l->st.streams_done++;
			lc_close(c);
		} else {
			lc_broken(l, c, "early EOF", 0);
		}
		return;
	}
	c->t_progress = now_ms();
	if (c->phase == LC_WAIT_EOF || (!c->stream && c->rcvd == c->len)) {
		l->st.wrong++;
		load_note(l, "port %d: %zd bytes past the end", c->lport, n);
		lc_close(c);
		return;
	}
	if (!lc_check(l, c, buf, (size_t)n))
		return;
	if (c->stream) {
		c->s_rcvd += (uint64_t)n;
		l->st.stream_bytes += (uint64_t)n;
		return;
	}
	c->rcvd += (size_t)n;
	if (c->rcvd == c->len) {
		l->st.served++;
		lc_close_done(c);
	}
}

/* OpenSSL may hold decrypted bytes of a record read in part: poll would not tell. */
static void
lc_recv_all(struct load *l, struct load_conn *c)
{
	do
		lc_recv(l, c);
	while (c->phase != LC_IDLE && c->ssl != NULL && SSL_pending(c->ssl) > 0);
}

/* Half-closes the stream: a TLS one with its close_notify (again later if the socket is full). */
static int
lc_half_close(struct load_conn *c)
{
	int ret;

	if (c->ssl == NULL)
		return shutdown(c->fd, SHUT_WR);
	if ((ret = SSL_shutdown(c->ssl)) >= 0)
		return 0;
	return lc_tls_error(c, ret) == -1 && errno == EAGAIN ? 1 : -1;
}

/* A stream whose time is up stops sending, and half-closes once all of its
 * bytes are back. */
static void
lc_stream_end(struct load *l, struct load_conn *c)
{
	bool done = l->stopping ||
	    (l->stream_ms > 0 && now_ms() - c->t_start >= l->stream_ms);
	int rc;

	if (c->phase != LC_ACTIVE || !done || c->s_rcvd != c->s_sent)
		return;
	if ((rc = lc_half_close(c)) == -1) {
		lc_broken(l, c, "shutdown", errno);
		return;
	}
	if (rc == 0)
		c->phase = LC_WAIT_EOF;
}

static bool
lc_may_send(const struct load *l, const struct load_conn *c)
{
	bool ending = l->stopping ||
	    (l->stream_ms > 0 && now_ms() - c->t_start >= l->stream_ms);

	if (c->phase != LC_ACTIVE)
		return false;
	if (!c->stream)
		return c->sent < c->len;
	return !ending && c->s_sent - c->s_rcvd < STREAM_WINDOW;
}

void
load_start(struct load *l, int port, size_t nshort, size_t nstream,
    int stream_ms, uint32_t seed)
{
	size_t i;

	memset(l, 0, sizeof(*l));
	l->port = port;
	l->nshort = nshort;
	l->nstream = nstream;
	l->stream_ms = stream_ms;
	l->stall_ms = EM_DEADLINE_MS;
	l->rng = seed != 0 ? seed : 1;
	l->conns = calloc(nshort + nstream, sizeof(*l->conns));
	assert_non_null(l->conns);
	for (i = 0; i < nshort + nstream; i++) {
		l->conns[i].fd = -1;
		l->conns[i].stream = i >= nshort;
	}
}

void
load_start_tls(struct load *l, int port, size_t nshort, size_t nstream,
    int stream_ms, uint32_t seed)
{
	load_start(l, port, nshort, nstream, stream_ms, seed);
	l->tls_ctx = tls_client_ctx(0);
}

static void
load_poll_set(struct load *l, struct pollfd *pfd, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		struct load_conn *c = &l->conns[i];

		pfd[i].fd = c->fd;
		pfd[i].revents = 0;
		if (c->phase == LC_CONNECTING)
			pfd[i].events = POLLOUT;
		else if (c->phase == LC_HANDSHAKE)
			pfd[i].events = c->want_write ? POLLOUT : POLLIN;
		else if (c->phase != LC_IDLE)
			pfd[i].events = (short)(POLLIN | (lc_may_send(l, c) ||
			    c->want_write ? POLLOUT : 0));
		else
			pfd[i].fd = -1;
	}
}

void
load_step(struct load *l, int wait_ms)
{
	size_t i, n = l->nshort + l->nstream;
	struct pollfd *pfd;
	int64_t now;

	if (l->conns == NULL)
		return;  /* finished */
	assert_non_null(pfd = calloc(n, sizeof(*pfd)));
	for (i = 0; i < n; i++)
		if (l->conns[i].phase == LC_IDLE && !l->stopping)
			lc_connect(l, &l->conns[i]);
	load_poll_set(l, pfd, n);
	if (poll(pfd, n, wait_ms) == -1 && errno != EINTR)
		fail_msg("poll: %s", strerror(errno));
	now = now_ms();
	for (i = 0; i < n; i++) {
		struct load_conn *c = &l->conns[i];

		if (pfd[i].fd == -1 || c->phase == LC_IDLE)
			continue;
		if (c->phase == LC_CONNECTING) {
			if (pfd[i].revents != 0)
				lc_connected(l, c);
		} else if (c->phase == LC_HANDSHAKE) {
			if (pfd[i].revents != 0)
				lc_handshake(l, c);
		} else {
			if (pfd[i].revents & (POLLIN | POLLHUP | POLLERR))
				lc_recv_all(l, c);
			if (c->phase != LC_IDLE && (pfd[i].revents & POLLOUT))
				lc_send(l, c);
		}
		if (c->stream && c->phase != LC_IDLE)
			lc_stream_end(l, c);
		if (c->phase != LC_IDLE && now - c->t_progress > l->stall_ms) {
			if (c->doomed) {
				l->st.doomed_lost++;
			} else {
				l->st.stalled++;
				load_note(l, "port %d: no progress for %d ms",
				    c->lport, l->stall_ms);
			}
			lc_close(c);
		}
	}
	free(pfd);
}

void
load_run_for(struct load *l, int ms)
{
	int64_t end = now_ms() + ms;

	while (now_ms() < end)
		load_step(l, 10);
}

static bool
load_idle(const struct load *l)
{
	for (size_t i = 0; i < l->nshort + l->nstream; i++)
		if (l->conns[i].phase != LC_IDLE)
			return false;
	return true;
}

void
load_finish(struct load *l, int timeout_ms)
{
	int64_t deadline = now_ms() + timeout_ms;
	size_t i;

	l->stopping = true;
	while (!load_idle(l) && now_ms() < deadline)
		load_step(l, 10);
	for (i = 0; i < l->nshort + l->nstream; i++) {
		if (l->conns[i].phase == LC_IDLE)
			continue;
		l->st.stalled++;
		load_note(l, "port %d still open at the end", l->conns[i].lport);
		lc_close(&l->conns[i]);
	}
	free(l->conns);
	l->conns = NULL;
	SSL_CTX_free(l->tls_ctx);
	l->tls_ctx = NULL;
}

size_t
load_doom_ports(struct load *l, const int *ports, size_t n)
{
	size_t doomed = 0;

	for (size_t i = 0; i < l->nshort + l->nstream; i++) {
		struct load_conn *c = &l->conns[i];

		if (c->phase == LC_IDLE || c->phase == LC_CONNECTING)
			continue;
		for (size_t j = 0; j < n; j++) {
			if (ports[j] != c->lport)
				continue;
			c->doomed = true;
			doomed++;
			break;
		}
	}
	return doomed;
}

void
load_print(const struct load *l, const char *what)
{
	const struct load_stats *s = &l->st;
	char tls[64] = "";

	if (l->tls_ctx != NULL || s->handshakes > 0)
		snprintf(tls, sizeof(tls), "over TLS (%llu handshakes), ",
		    (unsigned long long)s->handshakes);

	print_message("%s: %sserved %llu connect-echo-close, %llu streams "
	    "(%llu stream bytes verified); refused %llu, wrong %llu, broken "
	    "%llu, stalled %llu, other connect errors %llu; lost with a "
	    "killed worker %llu\n", what, tls,
	    (unsigned long long)s->served, (unsigned long long)s->streams_done,
	    (unsigned long long)s->stream_bytes,
	    (unsigned long long)s->refused, (unsigned long long)s->wrong,
	    (unsigned long long)s->broken, (unsigned long long)s->stalled,
	    (unsigned long long)s->connect_failed,
	    (unsigned long long)s->doomed_lost);
	if (l->first_error[0] != '\0')
		print_message("%s: first problem: %s\n", what, l->first_error);
}

void
load_expect_clean(const struct load *l)
{
	const struct load_stats *s = &l->st;

	if (s->refused || s->wrong || s->broken || s->stalled ||
	    s->connect_failed)
		fail_msg("the load saw failures: %s", l->first_error);
}
