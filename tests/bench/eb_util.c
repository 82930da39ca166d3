/*
 * echobench helpers: clock, latency histogram, test pattern, sockets,
 * descriptor limit, and the server's memory read from /proc.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "eb.h"

unsigned char	*eb_pattern;
unsigned char	*eb_expect;
size_t		 eb_patlen;

uint64_t
eb_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static size_t
eb_hist_index(uint64_t v)
{
	int e, shift;

	if (v < 2 * EB_HIST_SUB)
		return (size_t)v;
	e = 63 - __builtin_clzll(v);
	shift = e - 5;		/* log2(EB_HIST_SUB) */
	return (size_t)(shift + 1) * EB_HIST_SUB +
	    ((v >> shift) & (EB_HIST_SUB - 1));
}

static uint64_t
eb_hist_value(size_t i)
{
	uint64_t shift, m;

	if (i < 2 * EB_HIST_SUB)
		return i;
	shift = i / EB_HIST_SUB - 1;
	m = EB_HIST_SUB + i % EB_HIST_SUB;
	return (m << shift) + (((uint64_t)1 << shift) >> 1);
}

void
eb_hist_add(struct eb_hist *h, uint64_t ns)
{
	size_t i = eb_hist_index(ns);

	if (i >= EB_HIST_N)
		i = EB_HIST_N - 1;
	h->bucket[i]++;
	h->count++;
}

void
eb_hist_merge(struct eb_hist *dst, const struct eb_hist *src)
{
	for (size_t i = 0; i < EB_HIST_N; i++)
		dst->bucket[i] += src->bucket[i];
	dst->count += src->count;
}

/* The value below which a fraction p of the samples lie (0 if none). */
uint64_t
eb_hist_pct(const struct eb_hist *h, double p)
{
	uint64_t want, seen = 0;

	if (h->count == 0)
		return 0;
	want = (uint64_t)(p * (double)h->count);
	if (want >= h->count)
		want = h->count - 1;
	for (size_t i = 0; i < EB_HIST_N; i++) {
		seen += h->bucket[i];
		if (seen > want)
			return eb_hist_value(i);
	}
	return 0;
}

void
eb_stats_merge(struct eb_stats *dst, const struct eb_stats *src)
{
	dst->ops += src->ops;
	dst->bytes += src->bytes;
	dst->mismatches += src->mismatches;
	dst->errors += src->errors;
	dst->sent += src->sent;
	dst->lost += src->lost;
	dst->late += src->late;
	dst->opened += src->opened;
	dst->echoed1 += src->echoed1;
	dst->resumed += src->resumed;
	eb_hist_merge(&dst->lat, &src->lat);
}

/*
 * The bytes sent are a fixed pseudo-random mix of lower-case letters and all
 * 256 byte values (so NUL, CR, LF and 0x80-0xff must come back unchanged);
 * eb_expect holds what a correct server returns. Any slice of up to `slack`
 * bytes starting below EB_PAT is contiguous in both.
 */
void
eb_pattern_init(size_t slack, int upper)
{
	uint64_t x = 0x9e3779b97f4a7c15u;

	if (slack < EB_RBUF)
		slack = EB_RBUF;
	eb_patlen = EB_PAT + slack;
	eb_pattern = malloc(eb_patlen);
	eb_expect = malloc(eb_patlen);
	if (eb_pattern == NULL || eb_expect == NULL) {
		perror("echobench: malloc");
		exit(2);
	}
	for (size_t i = 0; i < EB_PAT; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		eb_pattern[i] = (x & 0x100) ? (unsigned char)('a' + x % 26) :
		    (unsigned char)(x >> 24);
	}
	for (size_t i = EB_PAT; i < eb_patlen; i++)
		eb_pattern[i] = eb_pattern[i % EB_PAT];
	for (size_t i = 0; i < eb_patlen; i++) {
		unsigned char c = eb_pattern[i];

		eb_expect[i] = upper && c >= 'a' && c <= 'z' ? c - 32 : c;
	}
}

/* 1 if the n reply bytes at buf are what stream position pos must return. */
int
eb_verify(const unsigned char *buf, size_t n, size_t pos)
{
	return memcmp(buf, eb_expect + pos, n) == 0;
}

/* Raises RLIMIT_NOFILE to at least want descriptors (root may lift the hard limit). */
int
eb_nofile(size_t want)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == -1)
		return -1;
	if (rl.rlim_cur >= want)
		return 0;
	if (rl.rlim_max < want) {
		struct rlimit up = { want, want };

		if (setrlimit(RLIMIT_NOFILE, &up) == 0)
			return 0;
	}
	rl.rlim_cur = rl.rlim_max < want ? rl.rlim_max : want;
	if (setrlimit(RLIMIT_NOFILE, &rl) == -1)
		return -1;
	return rl.rlim_cur >= want ? 0 : -1;
}

static long
eb_proc_field(pid_t pid, const char *file, const char *key)
{
	char path[64], line[256];
	size_t klen = strlen(key);
	long v = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, file);
	if ((f = fopen(path, "r")) == NULL)
		return -1;
	while (fgets(line, sizeof(line), f) != NULL) {
		if (strncmp(line, key, klen) == 0) {
			v = strtol(line + klen, NULL, 10);
			break;
		}
	}
	fclose(f);
	return v;
}

/* Sum of VmRSS in KiB over pid and all its descendants, -1 if pid is gone. */
long
eb_server_rss_kib(pid_t pid)
{
	pid_t set[4096];
	size_t nset = 1, grown;
	long sum = 0;

	set[0] = pid;
	do {			/* add children of members until none is new */
		DIR *d = opendir("/proc");
		struct dirent *de;

		if (d == NULL)
			return -1;
		grown = 0;
		while ((de = readdir(d)) != NULL && nset < 4096) {
			pid_t p = (pid_t)atoi(de->d_name), pp;
			int known = 0;

			if (p <= 0)
				continue;
			pp = (pid_t)eb_proc_field(p, "status", "PPid:");
			for (size_t i = 0; i < nset; i++) {
				known |= set[i] == p;
				if (known)
					break;
			}
			for (size_t i = 0; i < nset && !known; i++) {
				if (set[i] == pp) {
					set[nset++] = p;
					grown = 1;
					break;
				}
			}
		}
		closedir(d);
	} while (grown);
	for (size_t i = 0; i < nset; i++) {
		long kib = eb_proc_field(set[i], "status", "VmRSS:");

		if (kib < 0 && i == 0)
			return -1;
		if (kib > 0)
			sum += kib;
	}
	return sum;
}

/* The RSS of the -P servers (one or two trees) in KiB, -1 if one is gone. */
long
eb_servers_rss_kib(const struct eb_opts *o)
{
	long a = eb_server_rss_kib(o->server_pid), b = 0;

	if (o->server_pid2)
		b = eb_server_rss_kib(o->server_pid2);
	return a < 0 || b < 0 ? -1 : a + b;
}

/* Source address number i of n: 127.0.0.1, 127.0.0.2, ... */
int
eb_src_addr(int i, int n, struct sockaddr_in *sin)
{
	memset(sin, 0, sizeof(*sin));
	sin->sin_family = AF_INET;
	sin->sin_addr.s_addr = htonl(0x7f000001u + (uint32_t)(i % n));
	return 0;
}

/*
 * A non-blocking TCP socket connecting to the server (connect may still be in
 * progress). With several source addresses, connection i binds to address
 * i mod n first, leaving the port to connect() so that the 4-tuple, not the
 * source port alone, must be unique: each address gets its own port range.
 */
int
eb_tcp_socket(const struct eb_opts *o, int i)
{
	int fd, on = 1;

	fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1)
		return -1;
	if (o->nsrc > 1) {
		struct sockaddr_in src;

		eb_src_addr(i, o->nsrc, &src);
		if (setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &on,
		    sizeof(on)) == -1 ||
		    bind(fd, (struct sockaddr *)&src, sizeof(src)) == -1)
			goto fail;
	}
	if (connect(fd, (const struct sockaddr *)&o->server,
	    sizeof(o->server)) == -1 && errno != EINPROGRESS)
		goto fail;
	return fd;
fail:
	close(fd);
	return -1;
}

/*
 * The header a balancer (HAProxy send-proxy-v2) writes first: v2, PROXY,
 * TCP over IPv4, naming client number k as 198.18.x.y:port (RFC 2544's
 * benchmarking range) and 198.19.0.1:7 as the address it connected to.
 */
void
eb_proxy_v2(unsigned char *b, uint64_t k)
{
	static const unsigned char sig[12] = { 0x0d, 0x0a, 0x0d, 0x0a, 0x00,
	    0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a };

	memcpy(b, sig, 12);
	b[12] = 0x21, b[13] = 0x11, b[14] = 0, b[15] = 12;
	b[16] = 198, b[17] = 18, b[18] = (unsigned char)(k >> 8), b[19] = (unsigned char)k;
	b[20] = 198, b[21] = 19, b[22] = 0, b[23] = 1;
	b[24] = (unsigned char)((1024 + k % 60000) >> 8), b[25] = (unsigned char)(1024 + k % 60000);
	b[26] = 0, b[27] = 7;
}

static int
eb_probe(const struct eb_opts *o, int type)
{
	static const char msg[] = "ready?";
	char buf[sizeof(msg)];
	struct pollfd pfd;
	size_t got = 0;
	int ok = 0;

	if ((pfd.fd = socket(AF_INET, type | SOCK_CLOEXEC, 0)) == -1)
		return 0;
	if (connect(pfd.fd, (const struct sockaddr *)&o->server,
	    sizeof(o->server)) == -1)
		goto out;
	if (type == SOCK_STREAM && o->proxy_v2) {
		unsigned char h[EB_PROXY_V2_LEN];

		eb_proxy_v2(h, 0);
		if (send(pfd.fd, h, sizeof(h), MSG_NOSIGNAL) != sizeof(h))
			goto out;
	}
	if (send(pfd.fd, msg, sizeof(msg), MSG_NOSIGNAL) != sizeof(msg))
		goto out;
	pfd.events = POLLIN;
	while (got < sizeof(msg) && poll(&pfd, 1, 200) == 1) {
		ssize_t n = recv(pfd.fd, buf + got, sizeof(buf) - got,
		    MSG_DONTWAIT);

		if (n <= 0)
			goto out;
		got += (size_t)n;
	}
	ok = got == sizeof(msg) && memcmp(buf, o->upper ? "READY?" : msg,
	    sizeof(msg)) == 0;
out:
	close(pfd.fd);
	return ok;
}

/* Waits until the server echoes over TCP and UDP; -1 after timeout seconds. */
int
eb_wait_ready(const struct eb_opts *o, double timeout)
{
	uint64_t end = eb_now() + (uint64_t)(timeout * 1e9);

	while (eb_now() < end) {
		if (eb_probe(o, SOCK_STREAM) && eb_probe(o, SOCK_DGRAM))
			return 0;
		usleep(20000);
	}
	return -1;
}

/*
 * A port free for both TCP and UDP on 127.0.0.1, or -1. It is taken below the
 * usual ephemeral range (32768-60999) so that no client connection of the
 * benchmark can be holding it.
 */
int
eb_free_port(void)
{
	srandom((unsigned)(getpid() ^ eb_now()));
	for (int tries = 0; tries < 200; tries++) {
		struct sockaddr_in sin = { .sin_family = AF_INET };
		int t, u, on = 1, port = 10000 + (int)(random() % 22000);
		int ok;

		sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		sin.sin_port = htons((uint16_t)port);
		t = socket(AF_INET, SOCK_STREAM, 0);
		u = socket(AF_INET, SOCK_DGRAM, 0);
		ok = t != -1 && u != -1 &&
		    setsockopt(t, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)) == 0 &&
		    bind(t, (struct sockaddr *)&sin, sizeof(sin)) == 0 &&
		    bind(u, (struct sockaddr *)&sin, sizeof(sin)) == 0;
		if (t != -1)
			close(t);
		if (u != -1)
			close(u);
		if (ok)
			return port;
	}
	return -1;
}
