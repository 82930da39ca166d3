/*
 * refserver: the reference that echomaster is measured against.
 *
 * A minimal, feature-free upper-case echo server: one process per core, each
 * with its own SO_REUSEPORT TCP and UDP socket (the kernel spreads flows over
 * them), one level-triggered epoll loop, no configuration, no logging, no
 * supervision. It is meant to be the fastest honest server of the same
 * protocol, so nothing here is slowed down on purpose:
 *   - a connection costs no user memory until a write comes up short; the
 *     read buffer is one static block per process;
 *   - an echo is one read and one write (a read shorter than the buffer means
 *     the socket is drained: no extra read to collect EAGAIN);
 *   - TCP_NODELAY is set on the listener and inherited by accepted sockets;
 *   - UDP is batched with recvmmsg/sendmmsg.
 * Semantics match the daemon: bytes a-z become A-Z (mode upper) or pass
 * unchanged (mode echo); a half-closed client still gets every echoed byte;
 * a client that does not read is not read from until its output drains.
 *
 * refserver [-a ADDR] [-p PORT] [-n PROCS] [-m upper|echo] [-P]
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
#include <stdbool.h>
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

#define RS_RBUF		(64 * 1024)	/* one read, at most */
#define RS_READS	8		/* reads per readable event, at most */
#define RS_EVENTS	256
#define RS_UDP_BATCH	32
#define RS_UDP_MAX	65536
#define RS_BACKLOG	4096

enum rs_kind { RS_TCP_LISTEN = 1, RS_UDP, RS_CONN };

struct rs_pending {		/* output the kernel did not take yet */
	size_t	 off, len;
	char	 data[];
};

struct rs_ctx {
	int			  ep;
	int			  upper;
	struct rs_pending	**pend;		/* indexed by fd */
	size_t			  npend;
	unsigned char		  rbuf[RS_RBUF];
};

static struct rs_ctx rs;

/*
 * a-z to A-Z, every other byte unchanged. The fixed 32-byte inner loop is
 * vectorised even at -O2 (gcc's cheap cost model leaves a loop of unknown
 * length scalar: 9 instructions a byte); the tail goes 8 bytes at a time,
 * SWAR: a byte gets 0x20 flipped when its low 7 bits are in 'a'..'z' and its
 * high bit is clear. No sum carries into the next byte.
 */
static void
rs_upper(unsigned char *p, size_t n)
{
	const uint64_t ones = 0x0101010101010101u, high = 0x8080808080808080u;
	size_t i = 0;

	for (; i + 32 <= n; i += 32)
		for (size_t j = 0; j < 32; j++)
			p[i + j] ^= (unsigned char)
			    (((unsigned char)(p[i + j] - 'a') < 26) << 5);
	for (; i + 8 <= n; i += 8) {
		uint64_t x, low, lower;

		memcpy(&x, p + i, 8);
		low = x & ~high;
		lower = (low + (0x80 - 'a') * ones) & ~(low + (0x80 - 'z' - 1) *
		    ones) & ~x & high;
		x ^= lower >> 2;
		memcpy(p + i, &x, 8);
	}
	for (; i < n; i++)
		p[i] ^= (unsigned char)(((unsigned char)(p[i] - 'a') < 26) << 5);
}

static void
rs_die(const char *what)
{
	fprintf(stderr, "refserver[%d]: %s: %s\n", getpid(), what,
	    strerror(errno));
	exit(1);
}

static uint64_t
rs_tag(enum rs_kind kind, int fd)
{
	return (uint64_t)kind << 32 | (uint32_t)fd;
}

static void
rs_watch(int op, int fd, enum rs_kind kind, uint32_t events)
{
	struct epoll_event ev = { .events = events };

	ev.data.u64 = rs_tag(kind, fd);
	if (epoll_ctl(rs.ep, op, fd, &ev) == -1)
		rs_die("epoll_ctl");
}

static void
rs_conn_close(int fd)
{
	if ((size_t)fd < rs.npend && rs.pend[fd] != NULL) {
		free(rs.pend[fd]);
		rs.pend[fd] = NULL;
	}
	close(fd);
}

/* Keeps what write() did not take and stops reading until it drains. */
static int
rs_conn_defer(int fd, const unsigned char *p, size_t len)
{
	struct rs_pending *pd;

	if ((size_t)fd >= rs.npend) {
		size_t n = rs.npend ? rs.npend : 1024;
		struct rs_pending **np;

		while (n <= (size_t)fd)
			n *= 2;
		if ((np = realloc(rs.pend, n * sizeof(*np))) == NULL)
			return -1;
		memset(np + rs.npend, 0, (n - rs.npend) * sizeof(*np));
		rs.pend = np;
		rs.npend = n;
	}
	if ((pd = malloc(sizeof(*pd) + len)) == NULL)
		return -1;
	memcpy(pd->data, p, len);
	pd->off = 0;
	pd->len = len;
	rs.pend[fd] = pd;
	rs_watch(EPOLL_CTL_MOD, fd, RS_CONN, EPOLLOUT);
	return 0;
}

static void
rs_conn_read(int fd)
{
	for (int i = 0; i < RS_READS; i++) {
		ssize_t n = read(fd, rs.rbuf, sizeof(rs.rbuf));
		ssize_t w;

		if (n <= 0) {
			if (n == 0 || (errno != EAGAIN && errno != EINTR))
				rs_conn_close(fd);
			return;
		}
		if (rs.upper)
			rs_upper(rs.rbuf, (size_t)n);
		w = write(fd, rs.rbuf, (size_t)n);
		if (w < 0) {
			if (errno != EAGAIN && errno != EINTR) {
				rs_conn_close(fd);
				return;
			}
			w = 0;
		}
		if (w < n) {
			if (rs_conn_defer(fd, rs.rbuf + w, (size_t)(n - w)) == -1)
				rs_conn_close(fd);
			return;
		}
		if ((size_t)n < sizeof(rs.rbuf))
			return;
	}
}

static void
rs_conn_write(int fd)
{
	struct rs_pending *pd = rs.pend[fd];
	ssize_t w;

	w = write(fd, pd->data + pd->off, pd->len - pd->off);
	if (w < 0) {
		if (errno != EAGAIN && errno != EINTR)
			rs_conn_close(fd);
		return;
	}
	pd->off += (size_t)w;
	if (pd->off < pd->len)
		return;
	free(pd);
	rs.pend[fd] = NULL;
	rs_watch(EPOLL_CTL_MOD, fd, RS_CONN, EPOLLIN);
}

static void
rs_accept(int lfd)
{
	for (;;) {
		int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK);

		if (fd == -1) {
			if (errno == EMFILE || errno == ENFILE)
				fprintf(stderr, "refserver: accept: %s\n",
				    strerror(errno));
			return;
		}
		rs_watch(EPOLL_CTL_ADD, fd, RS_CONN, EPOLLIN);
	}
}

static void
rs_udp(int fd)
{
	static unsigned char buf[RS_UDP_BATCH][RS_UDP_MAX];
	static struct sockaddr_storage from[RS_UDP_BATCH];
	static struct iovec iov[RS_UDP_BATCH];
	static struct mmsghdr msg[RS_UDP_BATCH];
	int n;

	do {
		for (int i = 0; i < RS_UDP_BATCH; i++) {
			iov[i].iov_base = buf[i];
			iov[i].iov_len = RS_UDP_MAX;
			msg[i].msg_hdr = (struct msghdr){
				.msg_name = &from[i],
				.msg_namelen = sizeof(from[i]),
				.msg_iov = &iov[i],
				.msg_iovlen = 1,
			};
		}
		n = recvmmsg(fd, msg, RS_UDP_BATCH, MSG_DONTWAIT, NULL);
		if (n <= 0)
			return;
		for (int i = 0; i < n; i++) {
			iov[i].iov_len = msg[i].msg_len;
			if (rs.upper)
				rs_upper(buf[i], msg[i].msg_len);
		}
		/* A datagram the kernel refuses is lost, as UDP allows. */
		for (int done = 0; done < n;) {
			int s = sendmmsg(fd, msg + done, (unsigned)(n - done),
			    MSG_DONTWAIT);

			done += s > 0 ? s : 1;
		}
	} while (n == RS_UDP_BATCH);
}

static int
rs_socket(int type, const struct sockaddr_in *sin)
{
	int fd, on = 1;

	if ((fd = socket(AF_INET, type | SOCK_NONBLOCK, 0)) == -1)
		rs_die("socket");
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)) == -1 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof(on)) == -1)
		rs_die("setsockopt");
	if (type == SOCK_STREAM &&
	    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on)) == -1)
		rs_die("setsockopt TCP_NODELAY");
	if (bind(fd, (const struct sockaddr *)sin, sizeof(*sin)) == -1)
		rs_die("bind");
	if (type == SOCK_STREAM && listen(fd, RS_BACKLOG) == -1)
		rs_die("listen");
	return fd;
}

static void __attribute__((noreturn))
rs_serve(const struct sockaddr_in *sin, int cpu)
{
	struct epoll_event ev[RS_EVENTS];
	int tfd, ufd;

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
	if ((rs.ep = epoll_create1(EPOLL_CLOEXEC)) == -1)
		rs_die("epoll_create1");
	tfd = rs_socket(SOCK_STREAM, sin);
	ufd = rs_socket(SOCK_DGRAM, sin);
	rs_watch(EPOLL_CTL_ADD, tfd, RS_TCP_LISTEN, EPOLLIN);
	rs_watch(EPOLL_CTL_ADD, ufd, RS_UDP, EPOLLIN);
	for (;;) {
		int n = epoll_wait(rs.ep, ev, RS_EVENTS, -1);

		for (int i = 0; i < n; i++) {
			int fd = (int)(uint32_t)ev[i].data.u64;

			switch (ev[i].data.u64 >> 32) {
			case RS_CONN:
				if ((size_t)fd < rs.npend && rs.pend[fd])
					rs_conn_write(fd);
				else
					rs_conn_read(fd);
				break;
			case RS_TCP_LISTEN:
				rs_accept(fd);
				break;
			case RS_UDP:
				rs_udp(fd);
				break;
			}
		}
	}
}

static void
rs_nofile(void)
{
	struct rlimit rl;
	FILE *f;
	long max = 0;

	if ((f = fopen("/proc/sys/fs/nr_open", "r")) != NULL) {
		if (fscanf(f, "%ld", &max) != 1)
			max = 0;
		fclose(f);
	}
	if (getrlimit(RLIMIT_NOFILE, &rl) == -1)
		return;
	if (max > 0 && (rlim_t)max > rl.rlim_max) {
		struct rlimit up = { (rlim_t)max, (rlim_t)max };

		if (setrlimit(RLIMIT_NOFILE, &up) == 0)
			return;
	}
	rl.rlim_cur = rl.rlim_max;
	setrlimit(RLIMIT_NOFILE, &rl);
}

static volatile sig_atomic_t rs_stop;

static void
rs_onsignal(int sig)
{
	rs_stop = sig;
}

static void
rs_usage(void)
{
	fprintf(stderr, "usage: refserver [-a addr] [-p port] [-n procs] "
	    "[-m upper|echo] [-P]\n");
	exit(1);
}

int
main(int argc, char *argv[])
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	struct sigaction sa = { .sa_handler = rs_onsignal };
	long nproc = sysconf(_SC_NPROCESSORS_ONLN);
	const char *addr = "127.0.0.1";
	int port = 8087, pin = 0, c, status;
	pid_t *kids;

	rs.upper = 1;
	while ((c = getopt(argc, argv, "a:p:n:m:P")) != -1) {
		switch (c) {
		case 'a': addr = optarg; break;
		case 'p': port = atoi(optarg); break;
		case 'n': nproc = atol(optarg); break;
		case 'P': pin = 1; break;
		case 'm':
			if (strcmp(optarg, "upper") != 0 &&
			    strcmp(optarg, "echo") != 0)
				rs_usage();
			rs.upper = strcmp(optarg, "upper") == 0;
			break;
		default: rs_usage();
		}
	}
	if (port < 1 || port > 65535 || nproc < 1 || nproc > 1024 ||
	    inet_pton(AF_INET, addr, &sin.sin_addr) != 1)
		rs_usage();
	sin.sin_port = htons((uint16_t)port);
	signal(SIGPIPE, SIG_IGN);
	rs_nofile();
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	if ((kids = calloc((size_t)nproc, sizeof(*kids))) == NULL)
		rs_die("calloc");
	for (long i = 0; i < nproc; i++) {
		if ((kids[i] = fork()) == -1)
			rs_die("fork");
		if (kids[i] == 0)
			rs_serve(&sin, pin ? (int)i : -1);
	}
	/* Any child's death, or a signal, ends the whole server. */
	if (wait(&status) == -1 && errno != EINTR)
		rs_die("wait");
	/* TERM, not KILL: a child under valgrind still writes its profile. */
	for (long i = 0; i < nproc; i++)
		kill(kids[i], SIGTERM);
	while (wait(NULL) > 0)
		;
	return rs_stop ? 0 : 1;
}
