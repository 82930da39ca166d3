/*
 * harness_net.c: the client side. Free ports, TCP and UDP clients bounded
 * by deadlines, the reference transform and the poll-driven stream pump.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define PORT_TRIES	200
#define IO_CHUNK	65536

static int
ms_left(int64_t deadline)
{
	int64_t left = deadline - now_ms();

	if (left < 0)
		return 0;
	return left > INT_MAX ? INT_MAX : (int)left;
}

/* ---- ports --------------------------------------------------------------- */

static int
sock_bind_loopback(int type, int port)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	int fd = socket(AF_INET, type | SOCK_CLOEXEC, 0);

	if (fd == -1)
		return -1;
	sin.sin_port = htons((uint16_t)port);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(fd, (struct sockaddr *)&sin, sizeof(sin)) == -1) {
		close(fd);
		return -1;
	}
	return fd;
}

static int
sock_port(int fd)
{
	struct sockaddr_in sin;
	socklen_t len = sizeof(sin);

	if (getsockname(fd, (struct sockaddr *)&sin, &len) == -1)
		return -1;
	return ntohs(sin.sin_port);
}

/* Holds a TCP and a UDP socket on one free port; both stay open until
 * ports_release so that picking several ports never yields the same one. */
static int
port_hold(int fds[2])
{
	int i, port;

	for (i = 0; i < PORT_TRIES; i++) {
		fds[0] = sock_bind_loopback(SOCK_STREAM, 0);
		if (fds[0] == -1)
			continue;
		port = sock_port(fds[0]);
		fds[1] = sock_bind_loopback(SOCK_DGRAM, port);
		if (port > 0 && fds[1] != -1)
			return port;
		close(fds[0]);
	}
	return -1;
}

void
ports_pick(int *ports, size_t n)
{
	int fds[EM_MAX_LISTENERS][2];
	size_t i;

	assert_true(n <= EM_MAX_LISTENERS);
	for (i = 0; i < n; i++) {
		ports[i] = port_hold(fds[i]);
		if (ports[i] == -1)
			fail_msg("no free TCP+UDP port on 127.0.0.1 after %d tries",
			    PORT_TRIES);
	}
	for (i = 0; i < n; i++) {
		close(fds[i][0]);
		close(fds[i][1]);
	}
}

int
port_occupy(int port)
{
	int fd = sock_bind_loopback(SOCK_STREAM, port);

	if (fd == -1 || listen(fd, 1) == -1)
		fail_msg("cannot occupy 127.0.0.1:%d: %s", port,
		    strerror(errno));
	return fd;
}

int
port_pick(void)
{
	int port;

	ports_pick(&port, 1);
	return port;
}

/* ---- TCP clients --------------------------------------------------------- */

/* poll() on one fd for events, bounded by deadline; 1 ready, 0 timed out. */
static int
fd_wait(int fd, short events, int64_t deadline)
{
	struct pollfd pfd = { .fd = fd, .events = events };
	int r;

	do {
		r = poll(&pfd, 1, ms_left(deadline));
	} while (r == -1 && errno == EINTR);
	return r;
}

/* A numeric IPv4 or IPv6 address and port into ss; its length, or 0. */
static socklen_t
sockaddr_fill(struct sockaddr_storage *ss, const char *ip, int port)
{
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
	struct sockaddr_in *sin = (struct sockaddr_in *)ss;

	memset(ss, 0, sizeof(*ss));
	if (inet_pton(AF_INET, ip, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		sin->sin_port = htons((uint16_t)port);
		return sizeof(*sin);
	}
	if (inet_pton(AF_INET6, ip, &sin6->sin6_addr) == 1) {
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((uint16_t)port);
		return sizeof(*sin6);
	}
	return 0;
}

int
tcp_connect_to(const char *ip, int port, int timeout_ms)
{
	int64_t deadline = now_ms() + timeout_ms;
	struct sockaddr_storage ss;
	socklen_t sslen = sockaddr_fill(&ss, ip, port);
	socklen_t len = sizeof(int);
	int fd, err = 0;

	if (sslen == 0)
		fail_msg("not a numeric address: %s", ip);
	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
	    0);
	if (fd == -1)
		return -1;
	if (connect(fd, (struct sockaddr *)&ss, sslen) == 0)
		return fd;
	if (errno != EINPROGRESS)
		goto fail;
	if (fd_wait(fd, POLLOUT, deadline) != 1) {
		errno = ETIMEDOUT;
		goto fail;
	}
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1)
		goto fail;
	if (err == 0)
		return fd;
	errno = err;
fail:
	err = errno;
	close(fd);
	errno = err;
	return -1;
}

int
tcp_connect(int port, int timeout_ms)
{
	return tcp_connect_to("127.0.0.1", port, timeout_ms);
}

void
tcp_wait_listening(int port, int timeout_ms)
{
	int64_t deadline = now_ms() + timeout_ms;
	int fd;

	for (;;) {
		fd = tcp_connect(port, 1000);
		if (fd != -1) {
			close(fd);
			return;
		}
		if (now_ms() >= deadline)
			fail_msg("connect to 127.0.0.1:%d never succeeded "
			    "within %d ms (last: %s)", port, timeout_ms,
			    strerror(errno));
		nap_ms(EM_POLL_NAP_MS);
	}
}

void
tcp_wait_refused(int port, int timeout_ms)
{
	int64_t deadline = now_ms() + timeout_ms;
	int fd;

	for (;;) {
		fd = tcp_connect(port, 1000);
		if (fd == -1 && errno == ECONNREFUSED)
			return;
		if (fd != -1)
			close(fd);
		if (now_ms() >= deadline)
			fail_msg("127.0.0.1:%d still accepts connections after "
			    "%d ms", port, timeout_ms);
		nap_ms(EM_POLL_NAP_MS);
	}
}

int
tcp_send_all(int fd, const void *buf, size_t len, int timeout_ms)
{
	int64_t deadline = now_ms() + timeout_ms;
	const uint8_t *p = buf;
	ssize_t n;

	while (len > 0) {
		n = send(fd, p, len, MSG_NOSIGNAL);
		if (n > 0) {
			p += n;
			len -= (size_t)n;
			continue;
		}
		if (n == -1 && errno != EAGAIN && errno != EINTR)
			return -1;
		if (fd_wait(fd, POLLOUT, deadline) == 0) {
			errno = ETIMEDOUT;
			return -1;
		}
	}
	return 0;
}

ssize_t
tcp_read_exact(int fd, void *buf, size_t len, int timeout_ms)
{
	int64_t deadline = now_ms() + timeout_ms;
	uint8_t *p = buf;
	size_t got = 0;
	ssize_t n;

	while (got < len) {
		n = recv(fd, p + got, len - got, 0);
		if (n > 0) {
			got += (size_t)n;
			continue;
		}
		if (n == 0)
			break;
		if (errno != EAGAIN && errno != EINTR)
			return -1;
		if (fd_wait(fd, POLLIN, deadline) == 0) {
			errno = ETIMEDOUT;
			break;
		}
	}
	return (ssize_t)got;
}

int
tcp_wait_eof(int fd, int timeout_ms)
{
	int64_t deadline = now_ms() + timeout_ms;
	char c;
	ssize_t n;

	for (;;) {
		n = recv(fd, &c, 1, 0);
		if (n == 0)
			return 0;
		if (n > 0) {
			errno = EPROTO;
			return -1;
		}
		if (errno != EAGAIN && errno != EINTR)
			return -1;
		if (fd_wait(fd, POLLIN, deadline) == 0) {
			errno = ETIMEDOUT;
			return -1;
		}
	}
}

int
tcp_open_echoed(int port, const void *msg, size_t len, const void *expect)
{
	uint8_t *got;
	ssize_t n;
	int fd;

	fd = tcp_connect(port, EM_DEADLINE_MS);
	if (fd == -1)
		fail_msg("connect to 127.0.0.1:%d: %s", port, strerror(errno));
	if (tcp_send_all(fd, msg, len, EM_DEADLINE_MS) == -1)
		fail_msg("send %zu bytes to port %d: %s", len, port,
		    strerror(errno));
	got = malloc(len + 1);
	assert_non_null(got);
	n = tcp_read_exact(fd, got, len, EM_DEADLINE_MS);
	if (n != (ssize_t)len) {
		free(got);
		close(fd);
		fail_msg("port %d: sent %zu bytes, got %zd back (%s)", port,
		    len, n, n == -1 ? strerror(errno) : "EOF or timeout");
	}
	if (expect != NULL)
		bytes_expect(got, expect, len, "TCP reply");
	free(got);
	return fd;
}

void
tcp_roundtrip(int port, const void *msg, size_t len, const void *expect)
{
	close(tcp_open_echoed(port, msg, len, expect));
}

/* ---- UDP ----------------------------------------------------------------- */

ssize_t
udp_exchange_to(const char *ip, int port, const void *msg, size_t len,
    void *reply, size_t cap, int timeout_ms)
{
	int64_t deadline = now_ms() + timeout_ms, attempt_end;
	struct sockaddr_storage ss;
	socklen_t sslen = sockaddr_fill(&ss, ip, port);
	ssize_t n = -1;
	int fd;

	if (sslen == 0)
		fail_msg("not a numeric address: %s", ip);
	fd = socket(ss.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1)
		return -1;
	/* Connected: only the server's replies arrive, and a closed port
	 * reports ECONNREFUSED instead of a silent timeout. */
	if (connect(fd, (struct sockaddr *)&ss, sslen) == -1)
		goto out;
	while (now_ms() < deadline) {
		if (send(fd, msg, len, 0) != (ssize_t)len)
			goto out;
		attempt_end = now_ms() + 2000;
		if (attempt_end > deadline)
			attempt_end = deadline;
		if (fd_wait(fd, POLLIN, attempt_end) == 1) {
			/* MSG_TRUNC: the real length even if cap is short. */
			n = recv(fd, reply, cap, MSG_TRUNC);
			goto out;
		}
	}
	errno = ETIMEDOUT;
out:
	if (n == -1) {
		int err = errno;

		close(fd);
		errno = err;
		return -1;
	}
	close(fd);
	return n;
}

ssize_t
udp_exchange(int port, const void *msg, size_t len, void *reply, size_t cap,
    int timeout_ms)
{
	return udp_exchange_to("127.0.0.1", port, msg, len, reply, cap,
	    timeout_ms);
}

void
udp_wait_refused(int port, int timeout_ms)
{
	int64_t deadline = now_ms() + timeout_ms;
	char reply[64];

	for (;;) {
		if (udp_exchange(port, "x", 1, reply, sizeof(reply), 1000) ==
		    -1 && errno == ECONNREFUSED)
			return;
		if (now_ms() >= deadline)
			fail_msg("UDP 127.0.0.1:%d still answers or is silent "
			    "after %d ms", port, timeout_ms);
		nap_ms(EM_POLL_NAP_MS);
	}
}

/* ---- data ---------------------------------------------------------------- */

uint8_t
ref_upper_byte(uint8_t b)
{
	return b >= 'a' && b <= 'z' ? (uint8_t)(b - 'a' + 'A') : b;
}

void
ref_upper(const uint8_t *in, uint8_t *out, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++)
		out[i] = ref_upper_byte(in[i]);
}

void
pattern_fill(uint8_t *buf, size_t len, uint32_t seed)
{
	uint32_t x = seed * 2654435761u + 1;
	size_t i;

	for (i = 0; i < len; i++) {
		/* xorshift32: cheap, and every byte value turns up. */
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		buf[i] = (uint8_t)(x >> 11);
	}
}

void
bytes_expect(const uint8_t *got, const uint8_t *want, size_t len,
    const char *what)
{
	size_t i;

	for (i = 0; i < len; i++)
		if (got[i] != want[i])
			fail_msg("%s: first difference at byte %zu of %zu: got "
			    "0x%02x, want 0x%02x", what, i, len, got[i],
			    want[i]);
}

void
bytes_expect_upper(const uint8_t *got, const uint8_t *sent, size_t len,
    const char *what)
{
	uint8_t want[IO_CHUNK];
	size_t off, n, i;

	for (off = 0; off < len; off += n) {
		n = len - off < sizeof(want) ? len - off : sizeof(want);
		ref_upper(sent + off, want, n);
		for (i = 0; i < n; i++)
			if (got[off + i] != want[i])
				fail_msg("%s: first difference at byte %zu of "
				    "%zu: got 0x%02x, want 0x%02x", what,
				    off + i, len, got[off + i], want[i]);
	}
}

/* ---- streams ------------------------------------------------------------- */

void
stream_attach(struct em_stream *s, int fd, size_t len, uint32_t seed)
{
	memset(s, 0, sizeof(*s));
	s->fd = fd;
	s->len = len;
	s->out = malloc(len);
	s->in = malloc(len);
	assert_non_null(s->out);
	assert_non_null(s->in);
	pattern_fill(s->out, len, seed);
}

void
stream_open(struct em_stream *s, int port, size_t len, uint32_t seed)
{
	int fd = tcp_connect(port, EM_DEADLINE_MS);

	if (fd == -1)
		fail_msg("connect to 127.0.0.1:%d: %s", port, strerror(errno));
	stream_attach(s, fd, len, seed);
}

void
stream_close(struct em_stream *s)
{
	if (s->fd > 0)
		close(s->fd);
	free(s->out);
	free(s->in);
	memset(s, 0, sizeof(*s));
}

static size_t
stream_target(const struct em_stream *s, size_t limit)
{
	return limit < s->len ? limit : s->len;
}

static bool
stream_done(const struct em_stream *s, size_t limit, bool half_close)
{
	size_t t = stream_target(s, limit);

	if (s->sent < t || s->rcvd < t)
		return false;
	return !half_close || t < s->len || s->eof;
}

/* Reads what is there; anything past len is a protocol error (EPROTO). */
static int
stream_read(struct em_stream *s)
{
	uint8_t extra[1];
	ssize_t n;

	if (s->rcvd < s->len)
		n = recv(s->fd, s->in + s->rcvd, s->len - s->rcvd, 0);
	else
		n = recv(s->fd, extra, sizeof(extra), 0);
	if (n == 0) {
		s->eof = true;
		return 0;
	}
	if (n == -1)
		return errno == EAGAIN || errno == EINTR ? 0 : -1;
	if (s->rcvd == s->len) {
		errno = EPROTO;
		return -1;
	}
	s->rcvd += (size_t)n;
	return 0;
}

static int
stream_write(struct em_stream *s, size_t target)
{
	size_t chunk = target - s->sent;
	ssize_t n;

	if (chunk > IO_CHUNK)
		chunk = IO_CHUNK;
	n = send(s->fd, s->out + s->sent, chunk, MSG_NOSIGNAL);
	if (n == -1)
		return errno == EAGAIN || errno == EINTR ? 0 : -1;
	s->sent += (size_t)n;
	return 0;
}

static short
stream_events(struct em_stream *s, size_t limit, bool half_close)
{
	short ev = 0;

	if (half_close && s->sent == s->len && !s->shut_wr) {
		shutdown(s->fd, SHUT_WR);
		s->shut_wr = true;
	}
	if (s->sent < stream_target(s, limit))
		ev |= POLLOUT;
	if (!s->eof)
		ev |= POLLIN;
	return ev;
}

int
streams_step(struct em_stream *s, size_t n, size_t limit, bool half_close,
    int wait_ms)
{
	struct pollfd *pfd;
	size_t i;
	int r, rc = 0;

	pfd = calloc(n, sizeof(*pfd));
	assert_non_null(pfd);
	for (i = 0; i < n; i++) {
		pfd[i].fd = s[i].fd;
		pfd[i].events = stream_events(&s[i], limit, half_close);
	}
	r = poll(pfd, n, wait_ms);
	for (i = 0; r > 0 && i < n && rc == 0; i++) {
		if (pfd[i].revents & (POLLIN | POLLHUP | POLLERR))
			rc = stream_read(&s[i]);
		if (rc == 0 && (pfd[i].revents & POLLOUT))
			rc = stream_write(&s[i], stream_target(&s[i], limit));
		if (rc == -1)
			print_error("stream %zu: %s\n", i, strerror(errno));
	}
	free(pfd);
	return r == -1 && errno != EINTR ? -1 : rc;
}

static void
streams_print(const struct em_stream *s, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		print_error("stream %zu: len %zu sent %zu received %zu%s%s\n",
		    i, s[i].len, s[i].sent, s[i].rcvd,
		    s[i].shut_wr ? " shut_wr" : "", s[i].eof ? " eof" : "");
}

int
streams_pump(struct em_stream *s, size_t n, size_t limit, bool half_close,
    int timeout_ms)
{
	int64_t deadline = now_ms() + timeout_ms;
	size_t i;

	for (;;) {
		for (i = 0; i < n && stream_done(&s[i], limit, half_close); i++)
			;
		if (i == n)
			return 0;
		if (now_ms() >= deadline) {
			streams_print(s, n);
			errno = ETIMEDOUT;
			return -1;
		}
		if (streams_step(s, n, limit, half_close, 100) == -1) {
			streams_print(s, n);
			return -1;
		}
	}
}

int
tcp_connect_from(const char *src, int port)
{
	struct sockaddr_in from = { .sin_family = AF_INET }, to = { .sin_family = AF_INET };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	struct pollfd p = { .fd = fd, .events = POLLOUT };
	int err = 0;
	socklen_t errlen = sizeof(err);

	assert_true(fd != -1);
	assert_int_equal(inet_pton(AF_INET, src, &from.sin_addr), 1);
	assert_int_equal(inet_pton(AF_INET, "127.0.0.1", &to.sin_addr), 1);
	to.sin_port = htons((uint16_t)port);
	if (bind(fd, (struct sockaddr *)&from, sizeof(from)) == -1)
		fail_msg("bind %s: %s", src, strerror(errno));
	if (connect(fd, (struct sockaddr *)&to, sizeof(to)) == 0)
		return fd;
	if (errno != EINPROGRESS)
		fail_msg("connect from %s: %s", src, strerror(errno));
	if (poll(&p, 1, EM_DEADLINE_MS) != 1 ||
	    getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &errlen) == -1 || err != 0)
		fail_msg("connect from %s: %s", src, err ? strerror(err) : "timeout");
	return fd;
}
