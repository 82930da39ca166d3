/*
 * test_handover.c: reload_handover as clients see it. At a reload the old
 * workers pass their established TCP connections to the new ones, with
 * the reply bytes they still held and the connection's half-closed state,
 * and exit; a connection the new lists refuse is closed; TTOU moves the
 * retiring worker's connections, and a connection whose listener the
 * reload removed moves too; when the new worker runs out of
 * descriptors the old one keeps the rest and drains them; and with
 * reload_handover = false a connection stays with its old worker.
 *
 * A connection was moved, not drained, when the old generation is gone
 * while the connection still works: no old worker is left to serve it.
 * Where the server holds reply bytes, the test first shows that it does,
 * from the kernel's queues (/proc/net/tcp), so it cannot pass by never
 * reaching the case it names.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

/* The old generation of a handover reload must be gone this soon. */
#define HANDOVER_EXIT_MS	1500
/* A small receive buffer makes the client a slow reader (the kernel
 * doubles it and keeps a floor of a few KiB). */
#define SMALL_RCVBUF		4096
/* The reply bytes a connection may hold unsent, and move with it. */
#define PENDING_MAX		(64 * 1024)
#define MANY_CONNS		700
#define FD_NOFILE		200
#define FD_CONNS		300

/* A config with a control socket (status-json), reload_handover as asked
 * and `more` settings; the extra text lives with the config. */
struct ho_conf {
	struct em_conf	 c;
	char		 extra[1024];
};

static void
ho_conf(struct env *e, struct ho_conf *h, int workers, int port,
    const char *handover, const char *more)
{
	int n;

	conf_init(&h->c, workers);
	/* Far past every wait here: a drain cut short by shutdown_timeout
	 * must never look like a connection the handover closed. */
	h->c.shutdown_timeout = 60;
	conf_listen_pair(&h->c, port, "upper");
	n = snprintf(h->extra, sizeof(h->extra),
	    "control_socket = \"%s\";\n%s%s%s%s", env_control_socket(e),
	    handover != NULL ? "reload_handover = " : "",
	    handover != NULL ? handover : "", handover != NULL ? ";\n" : "",
	    more != NULL ? more : "");
	assert_true(n > 0 && (size_t)n < sizeof(h->extra));
	h->c.extra = h->extra;
}

static void
status_get(struct env *e, struct em_status *st)
{
	if (env_status(e, st, EM_DEADLINE_MS) == -1) {
		env_dump_log(e);
		fail_msg("status-json: %s", strerror(errno));
	}
}

/* Sum of one counter over the workers of generation gen; "refused" adds
 * both kinds of refusal (limits and lists). */
static uint64_t
gen_sum(const struct em_status *st, unsigned gen, const char *what)
{
#define SUM(field) status_gen_sum(st, gen, offsetof(struct em_status_worker, field))
	if (strcmp(what, "moved_in") == 0)
		return SUM(moved_in);
	if (strcmp(what, "moved_out") == 0)
		return SUM(moved_out);
	if (strcmp(what, "moves_failed") == 0)
		return SUM(moves_failed);
	if (strcmp(what, "active") == 0)
		return SUM(active);
	if (strcmp(what, "refused") == 0)
		return SUM(refused) + SUM(refused_acl);
#undef SUM
	fail_msg("gen_sum: no counter %s", what);
	return 0;
}

/* Polls status-json until the counter of generation gen reaches want
 * (counts reach the scoreboard once a loop turn). Fails the test. */
static void
wait_gen_sum(struct env *e, unsigned gen, const char *what, uint64_t want)
{
	int64_t deadline = now_ms() + EM_DEADLINE_MS;
	struct em_status st;
	uint64_t got;

	for (;;) {
		status_get(e, &st);
		if ((got = gen_sum(&st, gen, what)) == want)
			return;
		if (now_ms() >= deadline) {
			env_dump_log(e);
			fail_msg("generation %u: %s is %llu, want %llu", gen, what,
			    (unsigned long long)got, (unsigned long long)want);
		}
		nap_ms(EM_POLL_NAP_MS);
	}
}

/* Writes h, sends HUP, waits until generation gen serves; returns the
 * time of the HUP. */
static int64_t
reload_to(struct env *e, struct ho_conf *h, unsigned gen)
{
	int64_t t0;

	env_write_conf(e, &h->c);
	t0 = now_ms();
	env_signal(e, SIGHUP);
	env_wait_serving(e, gen, h->c.workers, EM_DEADLINE_MS);
	return t0;
}

/*
 * The master's line for generation gen's handover (src/master/master.c):
 * "generation G handed over N connections in T ms (W workers; K could not
 * move and were drained)". Waits for it; returns N and K. Fails the test.
 */
static void
wait_handed_over(struct env *e, unsigned gen, unsigned long *moved,
    unsigned long *kept)
{
	char needle[64], *line, *at;
	long ms;
	int workers;

	snprintf(needle, sizeof(needle), "generation %u handed over ", gen);
	env_wait_log(e, needle, EM_DEADLINE_MS);
	line = env_log_line(e, needle);
	assert_non_null(line);
	at = strstr(line, needle) + strlen(needle);
	if (sscanf(at, "%lu connections in %ld ms (%d workers; %lu could not",
	    moved, &ms, &workers, kept) != 4)
		fail_msg("handover line not understood: %s", line);
	print_message("master: %s\n", at - strlen(needle));
	free(line);
}

/* ---- clients ------------------------------------------------------------- */

/* A connection whose receive buffer is small: the client reads slowly. */
static int
tcp_connect_small(int port)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	struct pollfd p = { .events = POLLOUT };
	int fd, rcvbuf = SMALL_RCVBUF, err = 0;
	socklen_t elen = sizeof(err);

	fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	/* Before connect: the window scale is chosen at the handshake. */
	assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf,
	    sizeof(rcvbuf)), 0);
	sin.sin_port = htons((uint16_t)port);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(fd, (struct sockaddr *)&sin, sizeof(sin)) == -1 &&
	    errno != EINPROGRESS)
		fail_msg("connect to %d: %s", port, strerror(errno));
	p.fd = fd;
	if (poll(&p, 1, EM_DEADLINE_MS) != 1 ||
	    getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) == -1 || err != 0)
		fail_msg("connect to %d: %s", port, err ? strerror(err) : "timeout");
	return fd;
}

static void
stream_small(struct em_stream *s, int port, size_t len, uint32_t seed)
{
	stream_attach(s, tcp_connect_small(port), len, seed);
}

static int
local_port(int fd)
{
	struct sockaddr_in sin;
	socklen_t len = sizeof(sin);

	assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
	return ntohs(sin.sin_port);
}

/*
 * Sends what the kernel takes. Blocked for 20 ms: with read_some it reads
 * up to 16 KiB (a slow reader) and goes on until everything is sent;
 * without, it stops there (a reader that never reads). Returns how much
 * was sent.
 */
static size_t
send_slowly(struct em_stream *s, bool read_some)
{
	int64_t deadline = now_ms() + EM_DEADLINE_MS * 2;
	struct pollfd p = { .fd = s->fd, .events = POLLOUT };
	ssize_t n;

	while (s->sent < s->len) {
		if (now_ms() >= deadline)
			fail_msg("sent %zu of %zu bytes before the deadline",
			    s->sent, s->len);
		if (poll(&p, 1, read_some ? 20 : 100) == 1) {
			n = send(s->fd, s->out + s->sent, s->len - s->sent,
			    MSG_NOSIGNAL);
			if (n == -1 && errno != EAGAIN && errno != EINTR)
				fail_msg("send: %s", strerror(errno));
			if (n > 0)
				s->sent += (size_t)n;
			continue;
		}
		if (!read_some)
			break;
		n = recv(s->fd, s->in + s->rcvd, s->len - s->rcvd < 16384 ?
		    s->len - s->rcvd : 16384, MSG_DONTWAIT);
		if (n == 0 || (n == -1 && errno != EAGAIN && errno != EINTR))
			fail_msg("recv while sending: %s",
			    n == 0 ? "EOF" : strerror(errno));
		if (n > 0)
			s->rcvd += (size_t)n;
	}
	return s->sent;
}

/* The kernel's queues of the server's socket for the client on cport:
 * from /proc/net/tcp, whose tx_queue and rx_queue are hex. */
static int
server_queues(int port, int cport, unsigned long *txq, unsigned long *rxq)
{
	char line[512];
	unsigned lp, rp, st;
	int rc = -1;
	FILE *f = fopen("/proc/net/tcp", "re");

	if (f == NULL)
		return -1;
	while (fgets(line, sizeof(line), f) != NULL) {
		if (sscanf(line, " %*u: %*x:%x %*x:%x %x %lx:%lx", &lp, &rp, &st,
		    txq, rxq) != 5)
			continue;
		if ((int)lp == port && (int)rp == cport && st != 0x06) {
			rc = 0;
			break;
		}
	}
	fclose(f);
	return rc;
}

/* What the kernel says of one client connection, both ends. */
struct queues {
	unsigned long	 srv_txq;	/* server: sent, not acknowledged */
	unsigned long	 srv_rxq;	/* server: received, not read; +1 for
					 * a FIN the server has not read */
	int		 cli_inq;
	int		 cli_outq;
	long		 held;		/* in the server's own memory */
};

/*
 * Bytes the server holds in its own memory: sent by the client, not in
 * any kernel queue on either side, not yet read by the client. In-flight
 * bytes counted twice, and an unread FIN, only make the figure smaller.
 */
static int
queues_read(const struct em_stream *s, int port, struct queues *q)
{
	if (server_queues(port, local_port(s->fd), &q->srv_txq, &q->srv_rxq) == -1)
		return -1;
	assert_int_equal(ioctl(s->fd, SIOCINQ, &q->cli_inq), 0);
	assert_int_equal(ioctl(s->fd, SIOCOUTQ, &q->cli_outq), 0);
	q->held = (long)s->sent - (long)s->rcvd - q->cli_inq - q->cli_outq -
	    (long)q->srv_txq - (long)q->srv_rxq;
	return 0;
}

/* Waits until nothing moves between the two ends (the same figures over
 * 50 ms: the worker is blocked on the client, or idle). */
static void
queues_settle(const struct em_stream *s, int port, struct queues *q)
{
	int64_t deadline = now_ms() + EM_DEADLINE_MS;
	struct queues before;

	memset(&before, 0xff, sizeof(before));
	for (;;) {
		if (queues_read(s, port, q) == -1)
			fail_msg("no server socket for the client in /proc/net/tcp");
		if (memcmp(q, &before, sizeof(*q)) == 0)
			return;
		if (now_ms() >= deadline)
			fail_msg("the connection's queues never settled");
		before = *q;
		nap_ms(50);
	}
}

/* Opens n connections, each echoed once. */
static void
conns_open(int port, int *fds, size_t n)
{
	char msg[64], want[64];

	for (size_t i = 0; i < n; i++) {
		int len = snprintf(msg, sizeof(msg), "conn %zu opened\n", i);

		ref_upper((const uint8_t *)msg, (uint8_t *)want, (size_t)len);
		fds[i] = tcp_open_echoed(port, msg, (size_t)len, want);
	}
}

/* Every connection still echoes, correctly; round is in the message. */
static void
conns_expect_echo(const int *fds, size_t n, int round)
{
	char msg[64], want[64], got[64];

	for (size_t i = 0; i < n; i++) {
		int len = snprintf(msg, sizeof(msg), "conn %zu round %d\n", i,
		    round);

		ref_upper((const uint8_t *)msg, (uint8_t *)want, (size_t)len);
		if (tcp_send_all(fds[i], msg, (size_t)len, EM_DEADLINE_MS) == -1)
			fail_msg("connection %zu, round %d: send: %s", i, round,
			    strerror(errno));
		if (tcp_read_exact(fds[i], got, (size_t)len, EM_DEADLINE_MS) !=
		    len)
			fail_msg("connection %zu, round %d: no echo", i, round);
		bytes_expect((uint8_t *)got, (uint8_t *)want, (size_t)len, msg);
	}
}

static void
conns_close(int *fds, size_t n)
{
	for (size_t i = 0; i < n; i++)
		close(fds[i]);
}

/* ---- the tests ----------------------------------------------------------- */

/*
 * A client that sent everything and shut down its write side, while the
 * server still holds part of the reply because the client reads slowly:
 * moved by a reload, it gets every byte of the reply, then EOF.
 *
 * Two cases. HALF_EOF_READ: the client sends 32 KiB at a time until the
 * server's kernel send buffer is full and the server starts holding reply
 * bytes itself; less than its 64 KiB, so it has read everything, and then
 * the EOF: the connection moves half-closed, with pending output.
 * HALF_EOF_QUEUED: 4 MiB, so the server stops reading with input and the
 * FIN still queued in the kernel.
 */
enum half { HALF_EOF_READ, HALF_EOF_QUEUED };

#define HALF_CHUNK	(32 * 1024)
#define HALF_MAX	(16u * 1024 * 1024)

static void
test_half_closed_slow_reader_is_moved(void **state)
{
	struct env *e = *state;
	enum half how = *(const enum half *)e->arg;
	struct em_stream s;
	struct queues q;
	struct ho_conf h;
	int64_t t0, gone;
	size_t len;
	int port = port_pick();

	ho_conf(e, &h, 1, port, "true", NULL);
	env_write_conf(e, &h.c);
	env_start_ready(e, 1, port);
	stream_small(&s, port, how == HALF_EOF_READ ? HALF_MAX : 4u << 20, 7);
	if (how == HALF_EOF_QUEUED) {
		send_slowly(&s, true);
	} else {
		/* Grow by a chunk until the server holds reply bytes. */
		do {
			size_t full = s.len;
			s.len = s.sent + HALF_CHUNK;
			send_slowly(&s, true);
			s.len = full;
			queues_settle(&s, port, &q);
		} while (q.held <= 0 && s.sent + HALF_CHUNK <= s.len);
	}
	len = s.len = s.sent;
	assert_int_equal(shutdown(s.fd, SHUT_WR), 0);
	s.shut_wr = true;
	queues_settle(&s, port, &q);
	print_message("%zu bytes sent, half-closed; %zu read; the server holds "
	    "%ld reply bytes, has %lu unread (FIN included), %lu unacknowledged\n",
	    len, s.rcvd, q.held, q.srv_rxq, q.srv_txq);
	if (q.held <= 0)
		fail_msg("the server holds no reply bytes: the case is not reached");
	if (how == HALF_EOF_READ && q.srv_rxq != 0)
		fail_msg("the server has not read the EOF (%lu unread)", q.srv_rxq);
	if (how == HALF_EOF_QUEUED && q.srv_rxq <= 1)
		fail_msg("the server has read all input (%lu unread)", q.srv_rxq);
	ho_conf(e, &h, 2, port, "true", NULL);
	t0 = reload_to(e, &h, 2);
	gone = env_wait_old_gone(e, t0, EM_DEADLINE_MS);
	print_message("old generation gone %lld ms after the HUP\n",
	    (long long)gone);
	wait_gen_sum(e, 2, "moved_in", 1);
	if (streams_pump(&s, 1, len, true, EM_DEADLINE_MS * 2) == -1)
		fail_msg("after the move: %s", strerror(errno));
	assert_int_equal(s.rcvd, len);
	assert_true(s.eof);
	bytes_expect_upper(s.in, s.out, len, "half-closed, moved");
	stream_close(&s);
}

/*
 * A client that never reads, with the server's pending output full: the
 * connection moves with those bytes; then the client reads (and sends the
 * rest), and all of it is right.
 */
static void
test_never_reading_client_keeps_pending_output(void **state)
{
	struct env *e = *state;
	const size_t len = 4u * 1024 * 1024;
	struct em_stream s;
	struct queues q;
	struct ho_conf h;
	int64_t t0;
	int port = port_pick();

	ho_conf(e, &h, 2, port, "true", NULL);
	env_write_conf(e, &h.c);
	env_start_ready(e, 2, port);
	stream_small(&s, port, len, 11);
	send_slowly(&s, false);
	assert_int_equal(s.rcvd, 0);
	queues_settle(&s, port, &q);
	print_message("sent %zu of %zu without reading; the server holds %ld "
	    "reply bytes\n", s.sent, len, q.held);
	/* Full: as much as a connection may hold pending (64 KiB). */
	if (q.held < PENDING_MAX)
		fail_msg("the server holds %ld reply bytes, not a full %d",
		    q.held, PENDING_MAX);
	ho_conf(e, &h, 3, port, "true", NULL);
	t0 = reload_to(e, &h, 2);
	print_message("old generation gone %lld ms after the HUP\n",
	    (long long)env_wait_old_gone(e, t0, EM_DEADLINE_MS));
	wait_gen_sum(e, 2, "moved_in", 1);
	if (streams_pump(&s, 1, len, true, EM_DEADLINE_MS * 3) == -1)
		fail_msg("after the move: %s", strerror(errno));
	assert_int_equal(s.rcvd, len);
	bytes_expect_upper(s.in, s.out, len, "never-reading, moved");
	stream_close(&s);
}

/*
 * More connections per worker than one message carries (252): all of them
 * move, echo afterwards, and the new generation counts every one moved in.
 * An old worker's moved_out is checked while it can be seen: it exits as
 * soon as its connections are moved.
 */
static void
test_many_connections_move(void **state)
{
	struct env *e = *state;
	int *fds = calloc(MANY_CONNS, sizeof(*fds)), port = port_pick();
	uint64_t seen_out = 0;
	unsigned long moved, kept;
	struct em_status st;
	struct ho_conf h;
	int64_t t0, gone;

	assert_non_null(fds);
	ho_conf(e, &h, 2, port, "true", NULL);
	env_write_conf(e, &h.c);
	env_start_ready(e, 2, port);
	conns_open(port, fds, MANY_CONNS);
	wait_gen_sum(e, 1, "active", MANY_CONNS);
	env_write_conf(e, &h.c);
	t0 = now_ms();
	env_signal(e, SIGHUP);
	/* As fast as status answers: the old workers' last counts. */
	do {
		status_get(e, &st);
		if (gen_sum(&st, 1, "moved_out") > seen_out)
			seen_out = gen_sum(&st, 1, "moved_out");
		if (now_ms() - t0 > EM_DEADLINE_MS)
			fail_msg("generation 1 still there after %d ms",
			    EM_DEADLINE_MS);
	} while (status_count_gen(&st, 1) > 0);
	gone = now_ms() - t0;
	env_wait_serving(e, 2, 2, EM_DEADLINE_MS);
	wait_gen_sum(e, 2, "moved_in", MANY_CONNS);
	wait_gen_sum(e, 2, "active", MANY_CONNS);
	status_get(e, &st);
	assert_int_equal(gen_sum(&st, 2, "moves_failed"), 0);
	print_message("%d connections moved; generation 1 gone %lld ms after "
	    "the HUP; its moved_out last seen at %llu\n", MANY_CONNS,
	    (long long)gone, (unsigned long long)seen_out);
	assert_true(seen_out <= MANY_CONNS);
	assert_true(gone <= HANDOVER_EXIT_MS);
	wait_handed_over(e, 1, &moved, &kept);
	assert_int_equal(moved, MANY_CONNS);
	assert_int_equal(kept, 0);
	conns_expect_echo(fds, MANY_CONNS, 1);
	conns_close(fds, MANY_CONNS);
	free(fds);
}

/*
 * The receiving side out of descriptors: two old workers hold more
 * connections than one new worker (same RLIMIT_NOFILE) can open. Nothing
 * is closed: what did not fit stays with the old generation, draining;
 * every client still echoes; the old workers that kept some count them as
 * moves_failed, and what was moved the new one counts moved in. An old
 * worker that moved all of its connections has exited, its counts with it:
 * the sums are over what is there, and the master's line adds up all.
 */
static void
test_receiver_out_of_descriptors(void **state)
{
	struct env *e = *state;
	int fds[FD_CONNS], port = port_pick();
	uint64_t failed, in, kept;
	unsigned long lmoved, lkept;
	struct em_status st;
	struct ho_conf h;

	ho_conf(e, &h, 2, port, "true", NULL);
	env_write_conf(e, &h.c);
	e->nofile = FD_NOFILE;
	env_start_ready(e, 2, port);
	conns_open(port, fds, FD_CONNS);
	wait_gen_sum(e, 1, "active", FD_CONNS);
	ho_conf(e, &h, 1, port, "true", NULL);
	reload_to(e, &h, 2);
	/* Over once every connection is either moved in or kept as failed. */
	for (int64_t deadline = now_ms() + EM_DEADLINE_MS;; nap_ms(50)) {
		status_get(e, &st);
		failed = gen_sum(&st, 1, "moves_failed");
		kept = gen_sum(&st, 1, "active");
		in = gen_sum(&st, 2, "moved_in");
		if (in + kept == FD_CONNS && kept == failed && failed > 0)
			break;
		if (now_ms() >= deadline) {
			env_dump_log(e);
			fail_msg("moved_in %llu, kept %llu, moves_failed %llu, of "
			    "%d connections", (unsigned long long)in,
			    (unsigned long long)kept, (unsigned long long)failed,
			    FD_CONNS);
		}
	}
	print_message("RLIMIT_NOFILE %d, %d connections: %llu moved in, %llu "
	    "kept by the old generation as moves_failed\n", FD_NOFILE,
	    FD_CONNS, (unsigned long long)in, (unsigned long long)kept);
	assert_true(in > 0);
	assert_true(status_count_gen(&st, 1) > 0);
	assert_int_equal(gen_sum(&st, 2, "active"), in);
	conns_expect_echo(fds, FD_CONNS, 1);
	status_get(e, &st);
	assert_int_equal(gen_sum(&st, 1, "active"), kept);
	assert_int_equal(gen_sum(&st, 2, "active"), in);
	/* Logged once, with counts, by each worker that kept some. */
	assert_int_equal(env_log_count(e, "draining those here"),
	    status_count_gen(&st, 1));
	/* Once the clients leave, the old generation has nothing to drain. */
	conns_close(fds, FD_CONNS);
	env_wait_old_gone(e, now_ms(), EM_DEADLINE_MS);
	wait_handed_over(e, 1, &lmoved, &lkept);
	assert_int_equal(lmoved, in);
	assert_int_equal(lkept, failed);
}

static int
tcp_from(const char *src, int port)
{
	struct sockaddr_in from = { .sin_family = AF_INET }, to = from;
	struct pollfd p = { .events = POLLOUT };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int err = 0;
	socklen_t elen = sizeof(err);

	assert_true(fd >= 0);
	assert_int_equal(inet_pton(AF_INET, src, &from.sin_addr), 1);
	to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	to.sin_port = htons((uint16_t)port);
	if (bind(fd, (struct sockaddr *)&from, sizeof(from)) == -1)
		fail_msg("bind %s: %s", src, strerror(errno));
	if (connect(fd, (struct sockaddr *)&to, sizeof(to)) == -1 &&
	    errno != EINPROGRESS)
		fail_msg("connect from %s: %s", src, strerror(errno));
	p.fd = fd;
	if (poll(&p, 1, EM_DEADLINE_MS) != 1 ||
	    getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) == -1 || err != 0)
		fail_msg("connect from %s: %s", src, err ? strerror(err) : "timeout");
	return fd;
}

static void
expect_echo(int fd, const char *msg, const char *want)
{
	char got[64];
	size_t len = strlen(msg);

	assert_int_equal(tcp_send_all(fd, msg, len, EM_DEADLINE_MS), 0);
	assert_int_equal(tcp_read_exact(fd, got, len, EM_DEADLINE_MS), len);
	assert_memory_equal(got, want, len);
}

/*
 * The reloaded lists apply to moved connections: a reload that adds deny
 * 127.0.0.3 closes that client's open connection (EOF, nothing else) and
 * counts it as refused, while the one from 127.0.0.2 goes on.
 */
static void
test_reload_deny_closes_moved_connection(void **state)
{
	struct env *e = *state;
	struct em_status st;
	struct ho_conf h;
	char listener[128], denied[192], *text, *with;
	int port = port_pick(), two, three;

	ho_conf(e, &h, 2, port, "true", NULL);
	env_write_conf(e, &h.c);
	env_start_ready(e, 2, port);
	two = tcp_from("127.0.0.2", port);
	three = tcp_from("127.0.0.3", port);
	expect_echo(two, "from two\n", "FROM TWO\n");
	expect_echo(three, "from three\n", "FROM THREE\n");
	snprintf(listener, sizeof(listener), "proto = \"tcp\"; address = "
	    "\"127.0.0.1\"; port = %d; mode = \"upper\";", port);
	snprintf(denied, sizeof(denied), "%s deny = [ \"127.0.0.3/32\" ];",
	    listener);
	text = env_conf_text(e, &h.c);
	with = text_replace(text, listener, denied);
	env_write_conf_text(e, with);
	free(with);
	free(text);
	env_signal(e, SIGHUP);
	env_wait_serving(e, 2, 2, EM_DEADLINE_MS);
	if (tcp_wait_eof(three, EM_DEADLINE_MS) == -1)
		fail_msg("the denied client's connection was not closed: %s",
		    strerror(errno));
	expect_echo(two, "still two\n", "STILL TWO\n");
	env_wait_old_gone(e, now_ms(), EM_DEADLINE_MS);
	expect_echo(two, "two, after\n", "TWO, AFTER\n");
	/* Counted by the worker whose lists refused it: the new one. */
	wait_gen_sum(e, 2, "refused", 1);
	status_get(e, &st);
	assert_true(gen_sum(&st, 2, "moved_in") >= 1);
	assert_int_equal(gen_sum(&st, 2, "active"), 1);
	close(two);
	close(three);
}

/*
 * TTOU retires one worker: its connections move to the others and keep
 * echoing, and it exits within about a second.
 */
#define TTOU_CONNS 60

static void
test_ttou_moves_retiring_workers_connections(void **state)
{
	struct env *e = *state;
	int fds[TTOU_CONNS], port = port_pick();
	pid_t before[3], after[2], retired = 0;
	struct em_status st;
	struct ho_conf h;
	int64_t t0, gone;
	uint64_t held = 0;

	ho_conf(e, &h, 3, port, "true", NULL);
	env_write_conf(e, &h.c);
	env_start_ready(e, 3, port);
	env_wait_workers(e, 3, before, EM_DEADLINE_MS);
	conns_open(port, fds, TTOU_CONNS);
	wait_gen_sum(e, 1, "active", TTOU_CONNS);
	status_get(e, &st);
	t0 = now_ms();
	env_signal(e, SIGTTOU);
	env_wait_workers(e, 2, after, EM_DEADLINE_MS);
	gone = now_ms() - t0;
	for (size_t i = 0; i < 3; i++)
		if (!pids_contain(after, 2, before[i]))
			retired = before[i];
	assert_true(retired > 0);
	assert_non_null(status_worker(&st, retired));
	held = status_worker(&st, retired)->active;
	print_message("TTOU: worker %d held %llu connections, gone %lld ms "
	    "later\n", (int)retired, (unsigned long long)held, (long long)gone);
	assert_true(held > 0);
	conns_expect_echo(fds, TTOU_CONNS, 1);
	wait_gen_sum(e, 1, "active", TTOU_CONNS);
	wait_gen_sum(e, 1, "moved_in", held);
	assert_true(gone <= HANDOVER_EXIT_MS);
	conns_close(fds, TTOU_CONNS);
}

/*
 * reload_handover = false keeps the drain: a connection open at the
 * reload stays with its old worker (same pid, draining) and is served
 * there until the client leaves; nothing is counted moved.
 */
static void
test_handover_off_keeps_connection_on_old_worker(void **state)
{
	struct env *e = *state;
	const struct em_status_worker *w;
	struct em_status st;
	struct ho_conf h;
	pid_t old;
	int fd, port = port_pick();

	ho_conf(e, &h, 1, port, "false", NULL);
	env_write_conf(e, &h.c);
	env_start_ready(e, 1, port);
	env_wait_workers(e, 1, &old, EM_DEADLINE_MS);
	fd = tcp_open_echoed(port, "stay\n", 5, "STAY\n");
	wait_gen_sum(e, 1, "active", 1);
	reload_to(e, &h, 2);
	expect_echo(fd, "still here\n", "STILL HERE\n");
	status_get(e, &st);
	w = status_worker(&st, old);
	if (w == NULL)
		fail_msg("the old worker %d left while its client stayed",
		    (int)old);
	assert_string_equal(w->state, "draining");
	assert_int_equal(w->active, 1);
	assert_int_equal(w->moved_out, 0);
	assert_int_equal(gen_sum(&st, 2, "moved_in"), 0);
	assert_int_equal(gen_sum(&st, 2, "active"), 0);
	/* Its own process still holds the connection, well past a second. */
	nap_ms(HANDOVER_EXIT_MS);
	status_get(e, &st);
	assert_non_null(status_worker(&st, old));
	expect_echo(fd, "and now\n", "AND NOW\n");
	close(fd);
	env_wait_old_gone(e, now_ms(), EM_DEADLINE_MS);
	assert_false(env_log_has(e, "handed over"));
}

/* GET /metrics on port: the whole answer, malloc'd. */
static char *
metrics_get(int port)
{
	static const char req[] = "GET /metrics HTTP/1.0\r\n\r\n";
	size_t len = 0, cap = 1 << 20;
	char *buf = malloc(cap);
	ssize_t got;
	int fd = tcp_connect(port, EM_DEADLINE_MS);

	assert_non_null(buf);
	assert_true(fd >= 0);
	assert_int_equal(tcp_send_all(fd, req, strlen(req), EM_DEADLINE_MS), 0);
	while (len < cap - 1 &&
	    (got = tcp_read_exact(fd, buf + len, cap - 1 - len, 2000)) > 0)
		len += (size_t)got;
	close(fd);
	buf[len] = '\0';
	return buf;
}

/* The same with reload_handover unset (the default, true): the connection
 * is served by the new worker and the old one is gone; status (table and
 * JSON) and /metrics count it. */
static void
test_handover_on_moves_single_connection(void **state)
{
	struct env *e = *state;
	const char *args[] = { "-c", NULL, "-s", "status", NULL };
	char more[128], metric[160], *text = NULL;
	unsigned long moved, kept;
	struct em_status st;
	struct ho_conf h;
	pid_t old, new;
	int64_t t0, gone;
	int fd, port, ports[2];

	ports_pick(ports, 2);
	port = ports[0];
	snprintf(more, sizeof(more), "metrics = { address = \"127.0.0.1\"; "
	    "port = %d; };\n", ports[1]);
	ho_conf(e, &h, 1, port, NULL, more);
	env_write_conf(e, &h.c);
	env_start_ready(e, 1, port);
	env_wait_workers(e, 1, &old, EM_DEADLINE_MS);
	fd = tcp_open_echoed(port, "move\n", 5, "MOVE\n");
	wait_gen_sum(e, 1, "active", 1);
	t0 = reload_to(e, &h, 2);
	gone = env_wait_old_gone(e, t0, EM_DEADLINE_MS);
	env_wait_workers(e, 1, &new, EM_DEADLINE_MS);
	assert_true(new != old);
	expect_echo(fd, "moved\n", "MOVED\n");
	status_get(e, &st);
	assert_int_equal(status_worker(&st, new) != NULL ?
	    status_worker(&st, new)->moved_in : 0, 1);
	assert_int_equal(status_worker(&st, new)->active, 1);
	print_message("old worker gone %lld ms after the HUP\n", (long long)gone);
	assert_true(gone <= HANDOVER_EXIT_MS);
	wait_handed_over(e, 1, &moved, &kept);
	assert_int_equal(moved, 1);
	assert_int_equal(kept, 0);
	args[1] = e->conf_path;
	assert_int_equal(run_daemon_cmd(e, args, EM_DEADLINE_MS, &text, NULL), 0);
	assert_non_null(text);
	if (strstr(text, " moved_out ") == NULL || strstr(text, " moved_in ") ==
	    NULL || strstr(text, " moves_failed") == NULL)
		fail_msg("status table without the move counts:\n%s", text);
	free(text);
	text = metrics_get(ports[1]);
	snprintf(metric, sizeof(metric), "echomaster_connections_moved_in_total"
	    "{worker=\"0\",generation=\"2\",pid=\"%d\"} 1\n", (int)new);
	if (strstr(text, metric) == NULL ||
	    strstr(text, "# TYPE echomaster_connections_moved_out_total counter") == NULL ||
	    strstr(text, "# TYPE echomaster_connections_move_failed_total counter") == NULL)
		fail_msg("/metrics lacks %s or the moved_out/move_failed "
		    "counters:\n%s", metric, text);
	free(text);
	close(fd);
}

/*
 * A connection whose listener the reload removed is moved too, and keeps
 * the mode it was accepted with (echo here, the remaining listener upper).
 */
static void
test_removed_listeners_connection_is_moved(void **state)
{
	struct env *e = *state;
	struct em_status st;
	struct ho_conf h;
	int ports[2], fd, refused;

	ports_pick(ports, 2);
	ho_conf(e, &h, 1, ports[0], NULL, NULL);
	conf_listen(&h.c, "tcp", ports[1], "echo");
	env_write_conf(e, &h.c);
	env_start_ready(e, 1, ports[0]);
	fd = tcp_open_echoed(ports[1], "kept\n", 5, "kept\n");
	wait_gen_sum(e, 1, "active", 1);
	ho_conf(e, &h, 1, ports[0], NULL, NULL);  /* the same, without ports[1] */
	reload_to(e, &h, 2);
	env_wait_old_gone(e, now_ms(), EM_DEADLINE_MS);
	refused = tcp_connect(ports[1], EM_DEADLINE_MS);
	assert_int_equal(refused, -1);  /* the listener is gone */
	assert_int_equal(errno, ECONNREFUSED);
	expect_echo(fd, "still echo\n", "still echo\n");
	status_get(e, &st);
	assert_int_equal(gen_sum(&st, 2, "moved_in"), 1);
	assert_int_equal(gen_sum(&st, 2, "active"), 1);
	close(fd);
}

static const enum half HALF_READ = HALF_EOF_READ, HALF_QUEUED = HALF_EOF_QUEUED;

#define T(f) cmocka_unit_test_setup_teardown(f, env_setup, env_teardown)
#define TP(f, p) cmocka_unit_test_prestate_setup_teardown(f, env_setup, \
	env_teardown, (void *)(p))

int
main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_handover_on_moves_single_connection),
		T(test_handover_off_keeps_connection_on_old_worker),
		TP(test_half_closed_slow_reader_is_moved, &HALF_READ),
		TP(test_half_closed_slow_reader_is_moved, &HALF_QUEUED),
		T(test_never_reading_client_keeps_pending_output),
		T(test_many_connections_move),
		T(test_receiver_out_of_descriptors),
		T(test_reload_deny_closes_moved_connection),
		T(test_ttou_moves_retiring_workers_connections),
		T(test_removed_listeners_connection_is_moved),
	};

	return cmocka_run_group_tests_name("handover", tests, NULL, NULL);
}
