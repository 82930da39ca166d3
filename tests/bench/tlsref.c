/*
 * tlsref: the reference that echomaster's TLS listeners are measured against.
 *
 * refserver (tests/bench/refserver.c) over TLS: one process per core, each
 * with its own SO_REUSEPORT TCP listener, one level-triggered epoll loop,
 * non-blocking OpenSSL (SSL_do_handshake, SSL_read, SSL_write and their
 * WANT_READ / WANT_WRITE), no configuration, no logging, no supervision. It
 * is the fastest honest TLS upper-case echo server, so:
 *   - the SSL_CTX is made once, before fork, with SSL_MODE_RELEASE_BUFFERS
 *     (an idle connection holds no record buffers) and read-ahead (a record
 *     is one read(2), not a header read and a body read);
 *   - resumption is by session ticket only (no server session cache): one
 *     ticket key, drawn at start-up before fork, so every process accepts
 *     the tickets every other one issued;
 *   - an echo is one SSL_read and one SSL_write of the decrypted bytes; a
 *     write OpenSSL could not finish is kept and retried with the same bytes,
 *     and the connection is not read from until it is done;
 *   - the client's close_notify is answered with ours, then the close.
 * Semantics match refserver and the daemon: bytes a-z become A-Z (mode upper)
 * or pass unchanged (mode echo).
 *
 * tlsref -c CERT -k KEY [-a ADDR] [-p PORT] [-n PROCS] [-m upper|echo] [-P]
 *   -n processes (default: online CPUs), -P pins process i to CPU i.
 * SIGTERM or SIGINT stops it (the children die with the parent).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>

#define TR_RBUF		(16 * 1024)	/* one TLS record of plaintext */
#define TR_EVENTS	256
#define TR_BACKLOG	4096
#define TR_TICKET_KEYS	80	/* name 16, HMAC 32, AES 32 (SSL_CTX_set_tlsext_ticket_keys) */

enum tr_kind { TR_LISTEN = 1, TR_CONN };

struct tr_conn {
	SSL		*ssl;
	uint32_t	 events;	/* registered with epoll */
	int		 handshaking;
	size_t		 plen;		/* a write to finish: pend[0..plen) */
	unsigned char	*pend;
};

struct tr_ctx {
	int		 ep;
	int		 upper;
	SSL_CTX		*ssl_ctx;
	struct tr_conn	**conn;		/* indexed by fd */
	size_t		 nconn;
	unsigned char	 rbuf[TR_RBUF];
};

static struct tr_ctx tr;

/* a-z to A-Z; refserver's rs_upper, the same fixed-width vectorisable loop. */
static void
tr_upper(unsigned char *p, size_t n)
{
	size_t i = 0;

	for (; i + 32 <= n; i += 32)
		for (size_t j = 0; j < 32; j++)
			p[i + j] ^= (unsigned char)
			    (((unsigned char)(p[i + j] - 'a') < 26) << 5);
	for (; i < n; i++)
		p[i] ^= (unsigned char)(((unsigned char)(p[i] - 'a') < 26) << 5);
}

static void __attribute__((noreturn))
tr_die(const char *what)
{
	fprintf(stderr, "tlsref[%d]: %s: %s\n", getpid(), what,
	    errno ? strerror(errno) : "failed");
	ERR_print_errors_fp(stderr);
	exit(1);
}

static void
tr_watch(int op, int fd, enum tr_kind kind, uint32_t events)
{
	struct epoll_event ev = { .events = events };

	ev.data.u64 = (uint64_t)kind << 32 | (uint32_t)fd;
	if (epoll_ctl(tr.ep, op, fd, &ev) == -1)
		tr_die("epoll_ctl");
}

static void
tr_conn_watch(int fd, struct tr_conn *c, uint32_t events)
{
	if (c->events == events)
		return;
	c->events = events;
	tr_watch(EPOLL_CTL_MOD, fd, TR_CONN, events);
}

static void
tr_conn_close(int fd, int notify)
{
	struct tr_conn *c = tr.conn[fd];

	if (notify)
		SSL_shutdown(c->ssl);	/* our close_notify, not waited for */
	SSL_free(c->ssl);
	free(c->pend);
	free(c);
	tr.conn[fd] = NULL;
	close(fd);
}

/* After an SSL call returned r <= 0: 0 to wait for an event, -1 to close. */
static int
tr_conn_wait(int fd, struct tr_conn *c, int r)
{
	switch (SSL_get_error(c->ssl, r)) {
	case SSL_ERROR_WANT_READ:
		tr_conn_watch(fd, c, EPOLLIN);
		return 0;
	case SSL_ERROR_WANT_WRITE:
		tr_conn_watch(fd, c, EPOLLOUT);
		return 0;
	case SSL_ERROR_ZERO_RETURN:		/* the client's close_notify */
		tr_conn_close(fd, c->plen == 0);
		return -1;
	default:
		ERR_clear_error();
		tr_conn_close(fd, 0);
		return -1;
	}
}

/* Writes n bytes of rbuf or keeps them for later; -1 if fd was closed. */
static int
tr_conn_send(int fd, struct tr_conn *c, const unsigned char *p, size_t n)
{
	int w = SSL_write(c->ssl, p, (int)n);

	if (w > 0)
		return 0;
	if (p != c->pend) {	/* retried later with the same bytes */
		if ((c->pend = malloc(n)) == NULL) {
			tr_conn_close(fd, 0);
			return -1;
		}
		memcpy(c->pend, p, n);
		c->plen = n;
	}
	return tr_conn_wait(fd, c, w) == 0 ? 1 : -1;
}

/* Echoes until OpenSSL wants more input or a write is left pending. */
static void
tr_conn_read(int fd, struct tr_conn *c)
{
	for (;;) {
		int n = SSL_read(c->ssl, tr.rbuf, sizeof(tr.rbuf));

		if (n <= 0) {
			tr_conn_wait(fd, c, n);
			return;
		}
		if (tr.upper)
			tr_upper(tr.rbuf, (size_t)n);
		if (tr_conn_send(fd, c, tr.rbuf, (size_t)n) != 0)
			return;
	}
}

static void
tr_conn_event(int fd)
{
	struct tr_conn *c = tr.conn[fd];
	int r;

	if (c->handshaking) {
		if ((r = SSL_do_handshake(c->ssl)) != 1) {
			tr_conn_wait(fd, c, r);
			return;
		}
		c->handshaking = 0;
	}
	if (c->plen) {
		if (tr_conn_send(fd, c, c->pend, c->plen) != 0)
			return;
		free(c->pend);
		c->pend = NULL;
		c->plen = 0;
	}
	/* Bytes OpenSSL already holds raise no event: read on at once. */
	tr_conn_read(fd, c);
}

static int
tr_conn_new(int fd)
{
	struct tr_conn *c;

	if ((size_t)fd >= tr.nconn) {
		size_t n = tr.nconn ? tr.nconn : 1024;
		struct tr_conn **nc;

		while (n <= (size_t)fd)
			n *= 2;
		if ((nc = realloc(tr.conn, n * sizeof(*nc))) == NULL)
			return -1;
		memset(nc + tr.nconn, 0, (n - tr.nconn) * sizeof(*nc));
		tr.conn = nc;
		tr.nconn = n;
	}
	if ((c = calloc(1, sizeof(*c))) == NULL)
		return -1;
	if ((c->ssl = SSL_new(tr.ssl_ctx)) == NULL || SSL_set_fd(c->ssl, fd) != 1) {
		SSL_free(c->ssl);
		free(c);
		ERR_clear_error();
		return -1;
	}
	SSL_set_accept_state(c->ssl);
	c->handshaking = 1;
	c->events = EPOLLIN;
	tr.conn[fd] = c;
	tr_watch(EPOLL_CTL_ADD, fd, TR_CONN, EPOLLIN);
	return 0;
}

static void
tr_accept(int lfd)
{
	for (;;) {
		int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK);

		if (fd == -1) {
			if (errno == EMFILE || errno == ENFILE)
				fprintf(stderr, "tlsref: accept: %s\n",
				    strerror(errno));
			return;
		}
		/* The ClientHello is usually there: no wait for an event. */
		if (tr_conn_new(fd) == -1)
			close(fd);
		else
			tr_conn_event(fd);
	}
}

static int
tr_listen(const struct sockaddr_in *sin)
{
	int fd, on = 1;

	if ((fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0)) == -1)
		tr_die("socket");
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)) == -1 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof(on)) == -1 ||
	    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on)) == -1)
		tr_die("setsockopt");
	if (bind(fd, (const struct sockaddr *)sin, sizeof(*sin)) == -1)
		tr_die("bind");
	if (listen(fd, TR_BACKLOG) == -1)
		tr_die("listen");
	return fd;
}

static void __attribute__((noreturn))
tr_serve(const struct sockaddr_in *sin, int cpu)
{
	struct epoll_event ev[TR_EVENTS];
	int lfd;

	signal(SIGTERM, SIG_DFL);	/* the parent's handler is only for it */
	signal(SIGINT, SIG_DFL);
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() == 1)
		exit(0);
	if (cpu >= 0) {
		cpu_set_t set;

		CPU_ZERO(&set);
		CPU_SET(cpu, &set);
		sched_setaffinity(0, sizeof(set), &set);
	}
	if ((tr.ep = epoll_create1(EPOLL_CLOEXEC)) == -1)
		tr_die("epoll_create1");
	lfd = tr_listen(sin);
	tr_watch(EPOLL_CTL_ADD, lfd, TR_LISTEN, EPOLLIN);
	for (;;) {
		int n = epoll_wait(tr.ep, ev, TR_EVENTS, -1);

		for (int i = 0; i < n; i++) {
			int fd = (int)(uint32_t)ev[i].data.u64;

			if (ev[i].data.u64 >> 32 == TR_LISTEN)
				tr_accept(fd);
			else if ((size_t)fd < tr.nconn && tr.conn[fd] != NULL)
				tr_conn_event(fd);
		}
	}
}

/* The one context every process serves with, and its ticket key. */
static SSL_CTX *
tr_ssl_ctx(const char *cert, const char *key)
{
	unsigned char keys[TR_TICKET_KEYS];
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());

	if (ctx == NULL)
		tr_die("SSL_CTX_new");
	if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1)
		tr_die(cert);
	if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_check_private_key(ctx) != 1)
		tr_die(key);
	if (RAND_bytes(keys, sizeof(keys)) != 1 ||
	    SSL_CTX_set_tlsext_ticket_keys(ctx, keys, sizeof(keys)) != 1)
		tr_die("ticket keys");
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS |
	    SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	SSL_CTX_set_read_ahead(ctx, 1);
	return ctx;
}

static void
tr_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

static volatile sig_atomic_t tr_stop;

static void
tr_onsignal(int sig)
{
	tr_stop = sig;
}

static void __attribute__((noreturn))
tr_usage(void)
{
	fprintf(stderr, "usage: tlsref -c cert -k key [-a addr] [-p port] "
	    "[-n procs] [-m upper|echo] [-P]\n");
	exit(1);
}

int
main(int argc, char *argv[])
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	struct sigaction sa = { .sa_handler = tr_onsignal };
	long nproc = sysconf(_SC_NPROCESSORS_ONLN);
	const char *addr = "127.0.0.1", *cert = NULL, *key = NULL;
	int port = 8443, pin = 0, c, status;
	pid_t *kids;

	tr.upper = 1;
	while ((c = getopt(argc, argv, "a:c:k:p:n:m:P")) != -1) {
		switch (c) {
		case 'a': addr = optarg; break;
		case 'c': cert = optarg; break;
		case 'k': key = optarg; break;
		case 'p': port = atoi(optarg); break;
		case 'n': nproc = atol(optarg); break;
		case 'P': pin = 1; break;
		case 'm':
			if (strcmp(optarg, "upper") != 0 &&
			    strcmp(optarg, "echo") != 0)
				tr_usage();
			tr.upper = strcmp(optarg, "upper") == 0;
			break;
		default: tr_usage();
		}
	}
	if (cert == NULL || key == NULL || port < 1 || port > 65535 ||
	    nproc < 1 || nproc > 1024 || inet_pton(AF_INET, addr, &sin.sin_addr) != 1)
		tr_usage();
	sin.sin_port = htons((uint16_t)port);
	signal(SIGPIPE, SIG_IGN);
	tr_nofile();
	tr.ssl_ctx = tr_ssl_ctx(cert, key);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	if ((kids = calloc((size_t)nproc, sizeof(*kids))) == NULL)
		tr_die("calloc");
	for (long i = 0; i < nproc; i++) {
		if ((kids[i] = fork()) == -1)
			tr_die("fork");
		if (kids[i] == 0)
			tr_serve(&sin, pin ? (int)i : -1);
	}
	/* Any child's death, or a signal, ends the whole server. */
	if (wait(&status) == -1 && errno != EINTR)
		tr_die("wait");
	for (long i = 0; i < nproc; i++)
		kill(kids[i], SIGTERM);
	while (wait(NULL) > 0)
		;
	return tr_stop ? 0 : 1;
}
