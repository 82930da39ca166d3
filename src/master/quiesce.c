#include "master/quiesce.h"

#include <errno.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/log.h"

/* A TCP socket filter sees the segment from its TCP header: the flags are byte 13. */
#define TCP_FLAGS_OFFSET 13
#define TCP_FLAG_SYN 0x02
#define TCP_FLAG_ACK 0x10

void
quiesce_program(struct sock_filter prog[QUIESCE_PROG_LEN])
{
	const struct sock_filter p[QUIESCE_PROG_LEN] = {
		BPF_STMT(BPF_LD | BPF_B | BPF_ABS, TCP_FLAGS_OFFSET),
		BPF_STMT(BPF_ALU | BPF_AND | BPF_K, TCP_FLAG_SYN | TCP_FLAG_ACK),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, TCP_FLAG_SYN, 0, 1),
		/* A bare SYN would open a handshake: dropped (and so are its retransmits). */
		BPF_STMT(BPF_RET | BPF_K, 0),
		/* Everything else, the ACK that completes a handshake in progress included. */
		BPF_STMT(BPF_RET | BPF_K, 0xffffffff),
	};

	memcpy(prog, p, sizeof(p));
}

int
quiesce_attach(int fd)
{
	struct sock_filter prog[QUIESCE_PROG_LEN];
	struct sock_fprog fp = { .len = QUIESCE_PROG_LEN, .filter = prog };

	quiesce_program(prog);
	return setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &fp, sizeof(fp));
}

int
quiesce_detach(int fd)
{
	int unused = 0;

	return setsockopt(fd, SOL_SOCKET, SO_DETACH_FILTER, &unused, sizeof(unused));
}

int
quiesce_queue_len(int fd)
{
	struct tcp_info ti;
	socklen_t len = sizeof(ti);

	memset(&ti, 0, sizeof(ti));
	if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) == -1)
		return -1;
	if (ti.tcpi_state != TCP_LISTEN) {
		errno = EINVAL;
		return -1;
	}
	/* For a listener the kernel reports the accept queue's length here. */
	return (int)ti.tcpi_unacked;
}

/* The family and port (network order) FD is bound to; -1 on failure. */
static int
local_port(int fd, int *family, uint16_t *port)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);

	memset(&ss, 0, sizeof(ss));
	if (getsockname(fd, (struct sockaddr *)&ss, &len) == -1)
		return -1;
	*family = ss.ss_family;
	if (ss.ss_family == AF_INET)
		*port = ((struct sockaddr_in *)&ss)->sin_port;
	else if (ss.ss_family == AF_INET6)
		*port = ((struct sockaddr_in6 *)&ss)->sin6_port;
	else {
		errno = EAFNOSUPPORT;
		return -1;
	}
	return 0;
}

/* Asks sock_diag for the TCP sockets of FAMILY in SYN_RECV on local PORT. */
static int
diag_request(int nl, int family, uint16_t port)
{
	struct {
		struct nlmsghdr nh;
		struct inet_diag_req_v2 req;
	} msg;
	struct sockaddr_nl kernel = { .nl_family = AF_NETLINK };

	memset(&msg, 0, sizeof(msg));
	msg.nh.nlmsg_len = sizeof(msg);
	msg.nh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
	msg.nh.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
	msg.req.sdiag_family = (uint8_t)family;
	msg.req.sdiag_protocol = IPPROTO_TCP;
	/* Request sockets (NEW_SYN_RECV inside the kernel) are dumped under SYN_RECV. */
	msg.req.idiag_states = 1u << TCP_SYN_RECV;
	msg.req.id.idiag_sport = port;
	return sendto(nl, &msg, sizeof(msg), 0, (struct sockaddr *)&kernel,
	    sizeof(kernel)) == (ssize_t)sizeof(msg) ? 0 : -1;
}

/* Counts the answer's sockets on PORT until NLMSG_DONE; -1 on error. */
static int
diag_count(int nl, uint16_t port)
{
	char buf[16384] __attribute__((aligned(NLMSG_ALIGNTO)));
	int count = 0;

	for (;;) {
		ssize_t n = recv(nl, buf, sizeof(buf), 0);
		struct nlmsghdr *nh = (struct nlmsghdr *)buf;

		if (n <= 0)
			return -1;
		for (size_t left = (size_t)n; NLMSG_OK(nh, left); nh = NLMSG_NEXT(nh, left)) {
			if (nh->nlmsg_type == NLMSG_DONE)
				return count;
			if (nh->nlmsg_type == NLMSG_ERROR) {
				errno = EPROTO;
				return -1;
			}
			const struct inet_diag_msg *d = NLMSG_DATA(nh);
			if (d->idiag_state == TCP_SYN_RECV && d->id.idiag_sport == port)
				count++;
		}
	}
}

int
quiesce_handshakes(int fd)
{
	int family, nl, count = -1;
	uint16_t port;

	if (local_port(fd, &family, &port) == -1)
		return -1;
	/*
	 * Blocking is safe here: the kernel builds a dump while it is read, from
	 * its own tables, and never waits on the network.
	 */
	if ((nl = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG)) == -1)
		return -1;
	if (diag_request(nl, family, port) == 0)
		count = diag_count(nl, port);
	close(nl);
	return count;
}

int
quiesce_begin(struct quiesce *q, const int *fds, size_t n, int64_t now, int timeout_ms)
{
	memset(q, 0, sizeof(*q));
	if (n > 0 && (q->s = calloc(n, sizeof(*q->s))) == NULL)
		return -1;
	q->n = n;
	q->started_ms = now;
	q->settle_ms = now + QUIESCE_SETTLE_MS;
	q->deadline_ms = now + timeout_ms;
	q->next_ms = now;
	for (size_t i = 0; i < n; i++) {
		q->s[i].fd = fds[i];
		if (quiesce_attach(fds[i]) == 0)
			q->s[i].attached = true;
		else
			log_warn("graceful stop: cannot filter a listener's new handshakes");
	}
	return 0;
}

/* One look at every listener: the counts, and whether all are known. */
static bool
quiesce_look(struct quiesce *q)
{
	bool known = true;

	q->queued = 0;
	q->handshakes = 0;
	for (size_t i = 0; i < q->n; i++) {
		/*
		 * Handshakes first: with new SYNs dropped, a connection only moves
		 * from handshake to queue, so one that completes between the two
		 * looks is seen in the queue. The other order could miss it.
		 */
		int hs = quiesce_handshakes(q->s[i].fd);
		int queued = quiesce_queue_len(q->s[i].fd);

		if (queued == -1 || hs == -1)
			known = false;
		q->queued += queued > 0 ? queued : 0;
		q->handshakes += hs > 0 ? hs : 0;
	}
	return known;
}

enum quiesce_result
quiesce_poll(struct quiesce *q, int64_t now)
{
	bool known;

	if (now < q->next_ms)
		return QUIESCE_WAITING;
	q->next_ms = now + QUIESCE_POLL_MS;
	known = quiesce_look(q);
	if (known && q->queued == 0 && q->handshakes == 0 && now >= q->settle_ms)
		return QUIESCE_DONE;
	return now >= q->deadline_ms ? QUIESCE_TIMED_OUT : QUIESCE_WAITING;
}

int64_t
quiesce_due(const struct quiesce *q)
{
	return q->next_ms;
}

void
quiesce_release(struct quiesce *q)
{
	for (size_t i = 0; i < q->n; i++)
		if (q->s[i].attached && quiesce_detach(q->s[i].fd) == -1)
			log_warn("cannot detach a listener's socket filter");
	free(q->s);
	memset(q, 0, sizeof(*q));
}
