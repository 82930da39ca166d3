/*
 * The handover wire module over real sockets: batches of TCP connections on
 * 127.0.0.1 passed through SOCK_SEQPACKET socketpairs, a receiver out of
 * descriptors in a forked child, hand-made malformed messages, a full
 * channel, and acks. Every test counts the open descriptors before and after.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "worker/handover.h"

/* A connection as a worker holds it (conn, the accepted end) and its client (peer). */
struct tcp {
	int conn;
	int peer;
};

/* 29 and 70 KiB: kept off the stack, reset by each test. */
static struct handover_batch batch;
static struct handover_inbox inbox;
static unsigned char scratch[HANDOVER_PENDING_MAX];
static unsigned char expect[HANDOVER_PENDING_MAX];
static char err[256];
/* rec_for gives records PROXY client addresses (two in three: IPv4, none, IPv6). */
static bool clients;

static int
count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int n = 0;

	assert_non_null(d);
	while ((e = readdir(d)) != NULL)
		n += e->d_name[0] != '.';
	closedir(d);
	return n - 1;  /* the directory's own descriptor */
}

static void
tcp_open(struct tcp *t, unsigned n)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t alen = sizeof(a);
	int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	assert_true(l >= 0);
	assert_int_equal(bind(l, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(l, 16), 0);
	assert_int_equal(getsockname(l, (struct sockaddr *)&a, &alen), 0);
	for (unsigned i = 0; i < n; i++) {
		t[i].peer = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		assert_true(t[i].peer >= 0);
		assert_int_equal(connect(t[i].peer, (struct sockaddr *)&a, sizeof(a)), 0);
		t[i].conn = accept4(l, NULL, NULL, SOCK_CLOEXEC);
		assert_true(t[i].conn >= 0);
	}
	close(l);
}

static void
tcp_close(struct tcp *t, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		close(t[i].conn);
		close(t[i].peer);
	}
}

static void
seqpair(int sv[2])
{
	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
}

static void
pattern(unsigned char *p, size_t len, unsigned seed)
{
	for (size_t j = 0; j < len; j++)
		p[j] = (unsigned char)(seed * 31 + j * 7 + j / 251);
}

/* Record i's client address as a PROXY header named it: 192.0.2.X or 2001:db8::X. */
static struct sockaddr_storage
client_for(unsigned i)
{
	struct sockaddr_storage ss = { 0 };
	struct sockaddr_in *in = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;

	if (i % 3 == 0) {
		in->sin_family = AF_INET;
		in->sin_port = htons((uint16_t)(40000 + i));
		in->sin_addr.s_addr = htonl(0xc0000200u + i % 250 + 1);
	} else {
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons((uint16_t)(1 + i));
		assert_int_equal(inet_pton(AF_INET6, "2001:db8::", &in6->sin6_addr), 1);
		in6->sin6_addr.s6_addr[14] = (uint8_t)(i >> 8);
		in6->sin6_addr.s6_addr[15] = (uint8_t)i;
	}
	return ss;
}

static struct handover_rec
rec_for(unsigned i)
{
	struct handover_rec r = {
		.received = (1ull << 40) + i * 1000003ull, .idle_age_ms = i * 7 + 1,
		.mode = (uint8_t)(i % 3), .half_closed = i % 2 == 1, .counted = i % 3 == 0,
	};

	if (clients && i % 3 != 1) {
		r.has_client = true;
		r.client = client_for(i);
	}
	return r;
}

/* The version a batch of n records from rec_for is written in: 2 when one has a client (record 0 does). */
static uint16_t
version_for(unsigned n)
{
	return clients && n > 0 ? HANDOVER_VERSION_CLIENT : HANDOVER_VERSION_MIN;
}

/* Record i's descriptor is the very socket sent: same inode, and bytes written through it reach the client. */
static void
assert_same_socket(int got, const struct tcp *t, unsigned i)
{
	struct stat a, b;
	uint32_t tag = 0xabc00000u + i, back = 0;

	assert_int_equal(fstat(got, &a), 0);
	assert_int_equal(fstat(t->conn, &b), 0);
	assert_true(a.st_ino == b.st_ino && a.st_dev == b.st_dev);
	assert_int_equal(write(got, &tag, sizeof(tag)), sizeof(tag));
	assert_int_equal(recv(t->peer, &back, sizeof(back), MSG_WAITALL), sizeof(back));
	assert_int_equal(back, tag);
}

static void
assert_item(const struct handover_item *it, unsigned i, size_t len)
{
	struct handover_rec want = rec_for(i);

	assert_true(it->rec.received == want.received);
	assert_int_equal(it->rec.idle_age_ms, want.idle_age_ms);
	assert_int_equal(it->rec.mode, want.mode);
	assert_int_equal(it->rec.half_closed, want.half_closed);
	assert_int_equal(it->rec.counted, want.counted);
	assert_int_equal(it->rec.has_client, want.has_client);
	if (want.has_client)  /* decoded whole: no stray byte in the rest of the storage */
		assert_memory_equal(&it->rec.client, &want.client, sizeof(want.client));
	assert_int_equal(it->pending_len, len);
	pattern(expect, len, i);
	if (len > 0)
		assert_memory_equal(it->pending, expect, len);
}

static void
batch_fill(struct tcp *t, unsigned n, size_t (*len_of)(unsigned), uint32_t seq)
{
	handover_batch_reset(&batch, seq);
	for (unsigned i = 0; i < n; i++) {
		struct handover_rec r = rec_for(i);

		pattern(scratch, len_of(i), i);
		assert_int_equal(handover_batch_add(&batch, t[i].conn, &r, scratch, len_of(i)), 0);
	}
	assert_int_equal(batch.hdr.nrec, n);
}

/* The batch is full: one more connection, even one without pending bytes, is refused as it is. */
static void
assert_batch_full(const struct tcp *t)
{
	struct handover_rec r = rec_for(0);
	uint16_t nrec = batch.hdr.nrec;

	assert_int_equal(handover_batch_add(&batch, t->conn, &r, NULL, 0), -1);
	assert_int_equal(errno, ENOBUFS);
	assert_int_equal(batch.hdr.nrec, nrec);
}

/* Sends the filled batch, checks every record at the receiver, takes all, and acks. */
static void
deliver_and_take(int sv[2], struct tcp *t, unsigned n, size_t (*len_of)(unsigned))
{
	struct handover_ack ack;

	assert_int_equal(batch.hdr.p.version, version_for(n));
	assert_int_equal(handover_batch_send(sv[0], &batch), 0);
	assert_false(batch.has_memfd);  /* gone with the message */
	assert_int_equal(handover_batch_recv(sv[1], &inbox, err, sizeof(err)), 0);
	assert_int_equal(inbox.version, version_for(n));
	assert_int_equal(inbox.nrec, n);
	assert_int_equal(inbox.lost, 0);
	assert_false(inbox.truncated);
	assert_int_equal(inbox.seq, batch.hdr.p.seq);
	for (unsigned i = 0; i < n; i++) {
		assert_item(&inbox.item[i], i, len_of(i));
		assert_int_equal(handover_inbox_take(&inbox, i), inbox.item[i].fd);
		assert_same_socket(inbox.item[i].fd, &t[i], i);
	}
	handover_inbox_ack(&inbox, &ack);
	assert_int_equal(handover_ack_send(sv[1], &ack), 0);
	assert_int_equal(handover_ack_recv(sv[0], &ack, err, sizeof(err)), 0);
	assert_int_equal(ack.seq, batch.hdr.p.seq);
	assert_int_equal(ack.version, version_for(n));  /* the batch's, as the version rule says */
	assert_int_equal(ack.nrec, n);
	for (unsigned i = 0; i < n; i++) {
		assert_true(handover_ack_taken(&ack, i));
		close(inbox.item[i].fd);  /* the caller's now */
	}
	assert_false(handover_ack_taken(&ack, n));
}

static void
round_trip(unsigned n, size_t (*len_of)(unsigned), bool full, bool memfd)
{
	struct tcp t[HANDOVER_MAX_FDS];
	int sv[2], before;

	tcp_open(t, n);
	before = count_fds();
	seqpair(sv);
	batch_fill(t, n, len_of, 1000 + n);
	if (full)
		assert_batch_full(&t[0]);
	assert_int_equal((batch.hdr.flags & HANDOVER_F_MEMFD) != 0, memfd);
	deliver_and_take(sv, t, n, len_of);
	assert_int_equal(inbox.map != NULL, memfd);
	handover_inbox_reset(&inbox);
	close(sv[0]);
	close(sv[1]);
	assert_int_equal(count_fds(), before);
	tcp_close(t, n);  /* the batch stays as sent, for a test to inspect */
}

/* ---- round trips ---- */

static size_t
len_hello(unsigned i)
{
	(void)i;
	return 5;
}

static size_t
len_small(unsigned i)
{
	return i % 60;  /* 252 of them fit the inline area */
}

/* Every path: empty, inline, the inline bound, just over it, and a full 64 KiB. */
static size_t
len_mixed(unsigned i)
{
	static const size_t lens[] = { HANDOVER_PENDING_MAX, 0, 100, HANDOVER_INLINE_REC_MAX,
		HANDOVER_INLINE_REC_MAX + 1, 3 };

	return i == 0 || i == 250 ? HANDOVER_PENDING_MAX : lens[i % 6];
}

static size_t
len_1k(unsigned i)
{
	(void)i;
	return HANDOVER_INLINE_REC_MAX;
}

static void
one_connection(void **state)
{
	(void)state;
	round_trip(1, len_hello, false, false);
}

static void
full_batch_of_252_inline(void **state)
{
	(void)state;
	round_trip(HANDOVER_MAX_FDS, len_small, true, false);
}

static void
full_batch_of_251_with_memfd(void **state)
{
	(void)state;
	round_trip(HANDOVER_MAX_FDS - 1, len_mixed, true, true);
}

/*
 * Version 2: client addresses (IPv4, none, IPv6 in turn) with every
 * pending-bytes path, the inline area now after the client entries; the
 * batch stays as full as version 1's.
 */
static void
full_batches_with_client_addresses(void **state)
{
	(void)state;
	clients = true;
	round_trip(HANDOVER_MAX_FDS, len_small, true, false);
	round_trip(HANDOVER_MAX_FDS - 1, len_mixed, true, true);
	round_trip(17, len_1k, false, true);
	clients = false;
}

/* A batch whose one record has no client address is version 1, byte for byte: the old receiver takes it. */
static void
no_client_address_is_version_1(void **state)
{
	struct handover_rec r;
	struct tcp t[2];
	int sv[2];

	(void)state;
	clients = true;
	tcp_open(t, 2);
	seqpair(sv);
	handover_batch_reset(&batch, 5);
	r = rec_for(1);  /* i % 3 == 1: none */
	assert_false(r.has_client);
	assert_int_equal(handover_batch_add(&batch, t[0].conn, &r, "hello", 5), 0);
	assert_int_equal(batch.hdr.p.version, 1);
	assert_int_equal(handover_batch_send(sv[0], &batch), 0);
	assert_int_equal(recv(sv[1], scratch, sizeof(scratch), MSG_PEEK | MSG_TRUNC),
	    (ssize_t)(sizeof(struct handover_wire_batch) + sizeof(struct handover_wire_rec) + 5));
	assert_int_equal(handover_batch_recv(sv[1], &inbox, err, sizeof(err)), 0);
	assert_int_equal(inbox.version, 1);
	assert_false(inbox.item[0].rec.has_client);
	handover_inbox_reset(&inbox);
	/* One record with an address makes the whole batch version 2, whatever came first. */
	handover_batch_reset(&batch, 6);
	assert_int_equal(handover_batch_add(&batch, t[0].conn, &r, NULL, 0), 0);
	r = rec_for(0);
	assert_int_equal(handover_batch_add(&batch, t[1].conn, &r, "hi", 2), 0);
	assert_int_equal(batch.hdr.p.version, 2);
	assert_int_equal(handover_batch_send(sv[0], &batch), 0);
	assert_int_equal(recv(sv[1], scratch, sizeof(scratch), MSG_PEEK | MSG_TRUNC),
	    (ssize_t)(sizeof(struct handover_wire_batch) + 2 * (sizeof(struct handover_wire_rec) +
	    sizeof(struct handover_wire_client)) + 2));
	assert_int_equal(handover_batch_recv(sv[1], &inbox, err, sizeof(err)), 0);
	assert_false(inbox.item[0].rec.has_client);
	assert_true(inbox.item[1].rec.has_client);
	assert_int_equal(inbox.item[1].pending_len, 2);
	assert_memory_equal(inbox.item[1].pending, "hi", 2);
	handover_inbox_reset(&inbox);
	handover_batch_reset(&batch, 0);
	close(sv[0]);
	close(sv[1]);
	tcp_close(t, 2);
	clients = false;
}

/* The 17th 1 KiB buffer no longer fits the 16 KiB inline area and goes to the memfd. */
static void
inline_area_spills_to_memfd(void **state)
{
	(void)state;
	round_trip(17, len_1k, false, true);
	assert_int_equal(batch.hdr.inline_len, HANDOVER_INLINE_MAX);
	assert_int_equal(batch.hdr.memfd_len, HANDOVER_INLINE_REC_MAX);
	for (unsigned i = 0; i < 17; i++)
		assert_int_equal((batch.rec[i].flags & HANDOVER_R_MEMFD) != 0, i == 16);
}

/* 251 connections without a memfd: a 252nd fits only if it needs none. */
static void
the_memfd_takes_a_descriptor_slot(void **state)
{
	struct tcp t[HANDOVER_MAX_FDS];
	struct handover_rec r = rec_for(0);

	(void)state;
	tcp_open(t, HANDOVER_MAX_FDS);
	batch_fill(t, HANDOVER_MAX_FDS - 1, len_small, 5);
	assert_int_equal(handover_batch_add(&batch, t[251].conn, &r, scratch, HANDOVER_PENDING_MAX), -1);
	assert_int_equal(errno, ENOBUFS);
	assert_int_equal(batch.hdr.nrec, HANDOVER_MAX_FDS - 1);
	assert_false(batch.has_memfd);
	assert_int_equal(batch.hdr.flags, 0);
	assert_int_equal(handover_batch_add(&batch, t[251].conn, &r, scratch, 10), 0);
	assert_batch_full(&t[0]);
	handover_batch_reset(&batch, 0);
	tcp_close(t, HANDOVER_MAX_FDS);
}

static void
misuse_is_einval(void **state)
{
	struct handover_rec r = rec_for(0);
	struct tcp t[1];
	int sv[2];

	(void)state;
	tcp_open(t, 1);
	seqpair(sv);
	handover_batch_reset(&batch, 9);
	assert_int_equal(handover_batch_send(sv[0], &batch), -1);  /* empty */
	assert_int_equal(errno, EINVAL);
	assert_int_equal(handover_batch_add(&batch, -1, &r, NULL, 0), -1);
	assert_int_equal(errno, EINVAL);
	assert_int_equal(handover_batch_add(&batch, t[0].conn, &r, scratch, HANDOVER_PENDING_MAX + 1), -1);
	assert_int_equal(errno, EINVAL);
	assert_int_equal(handover_batch_add(&batch, t[0].conn, &r, NULL, 1), -1);
	assert_int_equal(errno, EINVAL);
	r.has_client = true;  /* a client that is neither IPv4 nor IPv6: the batch unchanged */
	r.client.ss_family = AF_UNIX;
	assert_int_equal(handover_batch_add(&batch, t[0].conn, &r, NULL, 0), -1);
	assert_int_equal(errno, EINVAL);
	assert_int_equal(batch.hdr.nrec, 0);
	assert_int_equal(batch.hdr.p.version, HANDOVER_VERSION_MIN);
	r.has_client = false;
	assert_int_equal(handover_batch_add(&batch, t[0].conn, &r, NULL, 0), 0);
	assert_int_equal(handover_batch_send(sv[0], &batch), 0);
	assert_int_equal(handover_batch_send(sv[0], &batch), -1);  /* sent already */
	assert_int_equal(errno, EINVAL);
	assert_int_equal(handover_batch_add(&batch, t[0].conn, &r, NULL, 0), -1);
	assert_int_equal(errno, EINVAL);
	assert_int_equal(handover_batch_recv(sv[1], &inbox, err, sizeof(err)), 0);
	assert_int_equal(handover_inbox_take(&inbox, 1), -1);  /* no such record */
	assert_int_equal(errno, EINVAL);
	assert_true(handover_inbox_take(&inbox, 0) >= 0);
	assert_int_equal(handover_inbox_take(&inbox, 0), -1);  /* taken already */
	assert_int_equal(errno, EINVAL);
	close(inbox.item[0].fd);
	handover_inbox_reset(&inbox);
	handover_batch_reset(&batch, 0);
	close(sv[0]);
	close(sv[1]);
	tcp_close(t, 1);
}

/* A held batch is not overwritten: the next one waits in the socket until the reset. */
static void
a_held_inbox_is_ebusy(void **state)
{
	struct tcp t[2];
	int sv[2];

	(void)state;
	tcp_open(t, 2);
	seqpair(sv);
	batch_fill(t, 1, len_hello, 1);
	assert_int_equal(handover_batch_send(sv[0], &batch), 0);
	batch_fill(t + 1, 1, len_hello, 2);
	assert_int_equal(handover_batch_send(sv[0], &batch), 0);
	assert_int_equal(handover_batch_recv(sv[1], &inbox, err, sizeof(err)), 0);
	assert_int_equal(handover_batch_recv(sv[1], &inbox, err, sizeof(err)), -1);
	assert_int_equal(errno, EBUSY);
	assert_int_equal(inbox.seq, 1);
	handover_inbox_reset(&inbox);  /* closes the untaken copy */
	assert_int_equal(handover_batch_recv(sv[1], &inbox, err, sizeof(err)), 0);
	assert_int_equal(inbox.seq, 2);
	handover_inbox_reset(&inbox);
	handover_batch_reset(&batch, 0);
	close(sv[0]);
	close(sv[1]);
	tcp_close(t, 2);
}

/* ---- a receiver out of descriptors ---- */

#define TRUNC_NREC 20

static size_t
len_trunc(unsigned i)
{
	return i == 0 ? HANDOVER_PENDING_MAX : i * 13;  /* record 0's go in the memfd */
}

/*
 * Open descriptors below 4096, counted without opening anything: the child
 * may have no descriptor left to open /proc/self/fd with.
 */
static int
census(void)
{
	int n = 0;

	for (int fd = 0; fd < 4096; fd++)
		n += fcntl(fd, F_GETFD) != -1;
	return n;
}

/* The descriptor limit that leaves exactly `room` free numbers below it. */
static int
limit_leaving(unsigned room)
{
	unsigned seen = 0;

	for (int fd = 0;; fd++) {
		if (fcntl(fd, F_GETFD) != -1 || errno != EBADF)
			continue;
		if (seen++ == room)
			return fd;
	}
}

/* The memfd comes first, so `room` descriptors carry room - 1 records. */
static int
child_check(unsigned room)
{
	unsigned with_fd = room > 0 ? room - 1 : 0;

	if (!inbox.truncated || inbox.nrec != TRUNC_NREC || inbox.lost != TRUNC_NREC - with_fd)
		return 11;
	for (unsigned i = 0; i < TRUNC_NREC; i++) {
		const struct handover_item *it = &inbox.item[i];

		if ((it->fd != -1) != (i < with_fd))
			return 12;
		pattern(expect, len_trunc(i), i);
		if (it->fd != -1 && memcmp(it->pending, expect, len_trunc(i)) != 0)
			return 13;
		if (it->fd != -1 ? handover_inbox_take(&inbox, i) != it->fd :
		    handover_inbox_take(&inbox, i) != -1 || errno != ENOENT)
			return 14;
	}
	return 0;
}

/* The receiving side, in the child: exit code 0, or which check failed. */
static int
child_receive(int sock, int sync, unsigned room)
{
	struct handover_ack ack;
	int before = census(), limit = limit_leaving(room), rc;

	if (write(sync, &limit, sizeof(limit)) != sizeof(limit))
		return 10;
	if (handover_batch_recv(sock, &inbox, err, sizeof(err)) == -1)
		return 15;
	if ((rc = child_check(room)) != 0)
		return rc;
	handover_inbox_ack(&inbox, &ack);
	if (handover_ack_send(sock, &ack) == -1)
		return 16;
	for (unsigned i = 0; i < inbox.nrec; i++)
		if (inbox.item[i].fd != -1)
			close(inbox.item[i].fd);  /* taken: the child's own */
	handover_inbox_reset(&inbox);
	return census() == before ? 0 : 17;
}

static pid_t
spawn_receiver(int sock, int sync, int other, unsigned room)
{
	pid_t pid = fork();

	assert_true(pid >= 0);
	if (pid == 0) {
		int rc;

		close(other);
		rc = child_receive(sock, sync, room);
		for (int fd = 3; fd < 4096; fd++)  /* a clean --track-fds report */
			close(fd);
		_exit(rc);
	}
	return pid;
}

/*
 * The parent lowers the child's limit (prlimit on another process: valgrind
 * emulates a process's own RLIMIT_NOFILE without telling the kernel).
 */
static void
limit_child(pid_t pid, int sync)
{
	struct rlimit rl;
	int limit;

	assert_int_equal(read(sync, &limit, sizeof(limit)), sizeof(limit));
	assert_int_equal(prlimit(pid, RLIMIT_NOFILE, NULL, &rl), 0);
	rl.rlim_cur = (rlim_t)limit;
	assert_int_equal(prlimit(pid, RLIMIT_NOFILE, &rl, NULL), 0);
}

/* The ack refuses exactly the records that lost their descriptor; those are still ours. */
static void
take_back_refused(int sock, struct tcp *t, unsigned room)
{
	unsigned with_fd = room > 0 ? room - 1 : 0;
	struct handover_ack ack;

	assert_int_equal(handover_ack_recv(sock, &ack, err, sizeof(err)), 0);
	assert_int_equal(ack.seq, 77);
	assert_int_equal(ack.nrec, TRUNC_NREC);
	for (unsigned i = 0; i < TRUNC_NREC; i++) {
		assert_int_equal(handover_ack_taken(&ack, i), i < with_fd);
		if (!handover_ack_taken(&ack, i))
			assert_same_socket(batch.fd[i], &t[i], i);
	}
}

static void
receiver_out_of_descriptors(void **state)
{
	unsigned room = *(const unsigned *)*state;
	struct tcp t[TRUNC_NREC];
	int sv[2], sync[2], before, status;
	pid_t pid;

	tcp_open(t, TRUNC_NREC);
	before = count_fds();
	seqpair(sv);
	assert_int_equal(pipe2(sync, O_CLOEXEC), 0);
	pid = spawn_receiver(sv[1], sync[1], sv[0], room);
	close(sv[1]);
	close(sync[1]);
	limit_child(pid, sync[0]);
	batch_fill(t, TRUNC_NREC, len_trunc, 77);
	assert_int_equal(handover_batch_send(sv[0], &batch), 0);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	take_back_refused(sv[0], t, room);
	close(sv[0]);
	close(sync[0]);
	handover_batch_reset(&batch, 0);
	assert_int_equal(count_fds(), before);
	tcp_close(t, TRUNC_NREC);
}

static const unsigned room_none = 0, room_memfd_only = 1, room_five = 5;

/* ---- rejected messages ---- */

/* A hand-made message. */
struct raw {
	union {
		struct handover_wire_batch h;
		uint64_t align;
		unsigned char b[sizeof(inbox.buf) + 8];
	} u;
	size_t len;
};

static struct handover_wire_rec *
raw_rec(struct raw *m, unsigned i)
{
	return (struct handover_wire_rec *)(void *)(m->u.b + sizeof(m->u.h) +
	    i * sizeof(struct handover_wire_rec));
}

/* A well-formed v1 batch of nrec records with no pending bytes. */
static void
raw_batch(struct raw *m, unsigned nrec)
{
	memset(m, 0, sizeof(*m));
	m->u.h.p = (struct handover_wire_prefix){ HANDOVER_MAGIC, HANDOVER_VERSION_MIN,
		HANDOVER_KIND_BATCH, 31 };
	m->u.h.nrec = (uint16_t)nrec;
	m->len = sizeof(m->u.h) + nrec * sizeof(struct handover_wire_rec);
}

/* A well-formed version 2 batch of nrec records, without client addresses yet. */
static void
raw_batch_v2(struct raw *m, unsigned nrec)
{
	raw_batch(m, nrec);
	m->u.h.p.version = HANDOVER_VERSION_CLIENT;
	m->len += nrec * sizeof(struct handover_wire_client);
}

static struct handover_wire_client *
raw_client(struct raw *m, unsigned i)
{
	return (struct handover_wire_client *)(void *)(m->u.b + sizeof(m->u.h) +
	    m->u.h.nrec * sizeof(struct handover_wire_rec) + i * sizeof(struct handover_wire_client));
}

/* Record i of m names 192.0.2.9:4242. */
static void
raw_client_ipv4(struct raw *m, unsigned i)
{
	struct handover_wire_client *c = raw_client(m, i);

	raw_rec(m, i)->flags |= HANDOVER_R_CLIENT;
	c->family = AF_INET;
	c->port = htons(4242);
	assert_int_equal(inet_pton(AF_INET, "192.0.2.9", c->addr), 1);
}

static void
raw_send(int sock, const void *buf, size_t len, const int *fds, unsigned nfds)
{
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(int) * 8)];
	} ctl = { 0 };
	struct iovec iov = { (void *)buf, len };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };

	if (nfds > 0) {
		msg.msg_control = ctl.buf;
		msg.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
		ctl.h.cmsg_level = SOL_SOCKET;
		ctl.h.cmsg_type = SCM_RIGHTS;
		ctl.h.cmsg_len = CMSG_LEN(sizeof(int) * nfds);
		memcpy(CMSG_DATA(&ctl.h), fds, sizeof(int) * nfds);
	}
	assert_int_equal(sendmsg(sock, &msg, MSG_NOSIGNAL), (ssize_t)len);
}

/* Rejected whole, with the reason; every descriptor it brought closed; nothing left queued. */
static void
expect_rejected(const struct raw *m, const int *fds, unsigned nfds, bool has_seq, const char *why)
{
	int sv[2], before;
	char byte;

	seqpair(sv);
	before = count_fds();
	raw_send(sv[0], m->u.b, m->len, fds, nfds);
	assert_int_equal(handover_batch_recv(sv[1], &inbox, err, sizeof(err)), -1);
	assert_int_equal(errno, EPROTO);
	if (strstr(err, why) == NULL)
		fail_msg("\"%s\" does not say \"%s\"", err, why);
	assert_int_equal(inbox.has_seq, has_seq);
	assert_false(inbox.loaded);
	assert_null(inbox.map);
	assert_int_equal(count_fds(), before);
	assert_int_equal(recv(sv[1], &byte, 1, MSG_DONTWAIT), -1);
	assert_int_equal(errno, EAGAIN);
	handover_inbox_reset(&inbox);
	close(sv[0]);
	close(sv[1]);
}

static void
rejects_short_messages(void **state)
{
	struct tcp t[1];
	struct raw m;

	(void)state;
	tcp_open(t, 1);
	raw_batch(&m, 1);
	m.len = 8;
	expect_rejected(&m, &t[0].conn, 1, false, "short message: 8 bytes");
	m.len = 0;  /* descriptors with no payload */
	expect_rejected(&m, &t[0].conn, 1, false, "short message: 0 bytes");
	m.len = sizeof(struct handover_wire_prefix);
	expect_rejected(&m, &t[0].conn, 1, true, "short batch header");
	raw_batch(&m, 2);
	m.len -= 1;  /* the last record cut */
	expect_rejected(&m, &t[0].conn, 1, true, "payload of");
	m.len = sizeof(m.u.b);  /* more than any batch can be */
	expect_rejected(&m, &t[0].conn, 1, true, "batch 31: longer than 28504 bytes");
	tcp_close(t, 1);
}

static void
rejects_foreign_messages(void **state)
{
	struct tcp t[1];
	struct raw m;

	(void)state;
	tcp_open(t, 1);
	raw_batch(&m, 1);
	m.u.h.p.magic ^= 1;
	expect_rejected(&m, &t[0].conn, 1, false, "bad magic");
	raw_batch(&m, 1);
	m.u.h.p.kind = HANDOVER_KIND_ACK;
	expect_rejected(&m, &t[0].conn, 1, false, "kind 2");
	tcp_close(t, 1);
}

/* An unknown version is refused whole, and the refusal reaches the sender as one. */
static void
rejects_an_unknown_version(void **state)
{
	struct handover_ack ack;
	struct tcp t[2];
	struct raw m;
	int sv[2], fds[2];

	(void)state;
	tcp_open(t, 2);
	fds[0] = t[0].conn;
	fds[1] = t[1].conn;
	raw_batch(&m, 2);
	m.u.h.p.version = HANDOVER_VERSION + 1;
	m.u.h.nrec = 9;  /* a later layout: nothing past the prefix is read */
	expect_rejected(&m, fds, 2, true, "version 3 unknown");
	assert_int_equal(inbox.seq, 31);
	handover_inbox_ack(&inbox, &ack);
	assert_int_equal(ack.seq, 31);
	assert_int_equal(ack.nrec, 0);
	seqpair(sv);
	assert_int_equal(handover_ack_send(sv[1], &ack), 0);
	assert_int_equal(handover_ack_recv(sv[0], &ack, err, sizeof(err)), 0);
	assert_int_equal(ack.seq, 31);
	assert_int_equal(ack.nrec, 0);
	assert_false(handover_ack_taken(&ack, 0));
	assert_false(handover_ack_taken(&ack, 1));
	assert_same_socket(t[0].conn, &t[0], 0);  /* the sender's copies still work */
	close(sv[0]);
	close(sv[1]);
	tcp_close(t, 2);
}

static void
rejects_a_descriptor_count_mismatch(void **state)
{
	struct tcp t[3];
	struct raw m;
	int fds[3];

	(void)state;
	tcp_open(t, 3);
	for (unsigned i = 0; i < 3; i++)
		fds[i] = t[i].conn;
	raw_batch(&m, 2);
	expect_rejected(&m, fds, 3, true, "3 descriptors for 2 records");
	expect_rejected(&m, fds, 1, true, "1 descriptors for 2 records");
	expect_rejected(&m, fds, 0, true, "0 descriptors for 2 records");
	m.u.h.flags = HANDOVER_F_MEMFD;  /* says a memfd comes too */
	m.u.h.memfd_len = 1;
	expect_rejected(&m, fds, 2, true, "2 descriptors for 2 records and a memfd");
	tcp_close(t, 3);
}

static void
rejects_bad_header_fields(void **state)
{
	struct tcp t[1];
	struct raw m;

	(void)state;
	tcp_open(t, 1);
	raw_batch(&m, 0);
	expect_rejected(&m, NULL, 0, true, "0 records");
	raw_batch(&m, 1);
	m.u.h.nrec = HANDOVER_MAX_FDS + 1;
	expect_rejected(&m, &t[0].conn, 1, true, "253 records");
	raw_batch(&m, 1);
	m.u.h.flags = 0x8000;
	expect_rejected(&m, &t[0].conn, 1, true, "unknown batch flags");
	raw_batch(&m, 1);
	m.u.h.memfd_len = 10;  /* without the flag */
	expect_rejected(&m, &t[0].conn, 1, true, "disagree");
	raw_batch(&m, 1);
	m.u.h.inline_len = 4;  /* says 4 inline bytes, sends none */
	expect_rejected(&m, &t[0].conn, 1, true, "payload of 48 bytes, 52 expected");
	tcp_close(t, 1);
}

static void
rejects_bad_records(void **state)
{
	struct tcp t[1];
	struct raw m;

	(void)state;
	tcp_open(t, 1);
	raw_batch(&m, 1);
	raw_rec(&m, 0)->flags = 0x80;
	expect_rejected(&m, &t[0].conn, 1, true, "record 0: unknown flags");
	raw_batch(&m, 1);
	raw_rec(&m, 0)->zero = 1;
	expect_rejected(&m, &t[0].conn, 1, true, "record 0: unknown flags");
	raw_batch(&m, 1);
	m.u.h.inline_len = 4;
	m.len += 4;
	raw_rec(&m, 0)->pending_off = 2;
	raw_rec(&m, 0)->pending_len = 3;
	expect_rejected(&m, &t[0].conn, 1, true, "record 0: pending bytes 2+3 beyond the inline area");
	raw_batch(&m, 1);
	raw_rec(&m, 0)->pending_len = HANDOVER_PENDING_MAX + 1;
	expect_rejected(&m, &t[0].conn, 1, true, "record 0: 65537 pending bytes");
	tcp_close(t, 1);
}

/* Client entries: only in version 2, only IPv4 or IPv6, every unused byte zero. */
static void
rejects_bad_client_entries(void **state)
{
	struct tcp t[1];
	struct raw m;

	(void)state;
	tcp_open(t, 1);
	raw_batch(&m, 1);  /* version 1 knows no client flag */
	raw_rec(&m, 0)->flags = HANDOVER_R_CLIENT;
	expect_rejected(&m, &t[0].conn, 1, true, "record 0: unknown flags 0x8");
	raw_batch_v2(&m, 1);
	m.len -= sizeof(struct handover_wire_client);  /* laid out as version 1 */
	expect_rejected(&m, &t[0].conn, 1, true, "payload of 48 bytes, 72 expected");
	raw_batch_v2(&m, 1);
	raw_client_ipv4(&m, 0);
	raw_client(&m, 0)->family = AF_UNIX;
	expect_rejected(&m, &t[0].conn, 1, true, "record 0: bad client entry (family 1)");
	raw_batch_v2(&m, 1);
	raw_client_ipv4(&m, 0);
	raw_client(&m, 0)->addr[4] = 1;  /* past an IPv4 address */
	expect_rejected(&m, &t[0].conn, 1, true, "record 0: bad client entry");
	raw_batch_v2(&m, 1);
	raw_client_ipv4(&m, 0);
	raw_client(&m, 0)->zero = 1;
	expect_rejected(&m, &t[0].conn, 1, true, "record 0: bad client entry");
	raw_batch_v2(&m, 1);
	raw_client_ipv4(&m, 0);
	raw_rec(&m, 0)->flags &= (uint8_t)~HANDOVER_R_CLIENT;  /* an entry the flags do not claim */
	expect_rejected(&m, &t[0].conn, 1, true, "record 0: bad client entry (family 2)");
	raw_batch_v2(&m, 1);
	m.u.h.p.version = 0;
	expect_rejected(&m, &t[0].conn, 1, true, "batch 31: version 0 unknown");
	tcp_close(t, 1);
}

/* A hand-made version 2 batch, not our encoder's: the entry decodes to the address it names. */
static void
accepts_a_hand_made_client_entry(void **state)
{
	const struct sockaddr_in *in;
	struct handover_ack ack;
	struct tcp t[2];
	struct raw m;
	int sv[2], fds[2], before;

	(void)state;
	tcp_open(t, 2);
	fds[0] = t[0].conn;
	fds[1] = t[1].conn;
	before = count_fds();
	seqpair(sv);
	raw_batch_v2(&m, 2);
	raw_client_ipv4(&m, 1);
	raw_send(sv[0], m.u.b, m.len, fds, 2);
	assert_int_equal(handover_batch_recv(sv[1], &inbox, err, sizeof(err)), 0);
	assert_int_equal(inbox.version, 2);
	assert_false(inbox.item[0].rec.has_client);
	assert_true(inbox.item[1].rec.has_client);
	in = (const struct sockaddr_in *)&inbox.item[1].rec.client;
	assert_int_equal(in->sin_family, AF_INET);
	assert_int_equal(ntohs(in->sin_port), 4242);
	assert_int_equal(ntohl(in->sin_addr.s_addr), 0xc0000209u);
	handover_inbox_ack(&inbox, &ack);  /* nothing taken: every copy closed at the reset */
	assert_int_equal(ack.version, 2);
	handover_inbox_reset(&inbox);
	close(sv[0]);
	close(sv[1]);
	assert_int_equal(count_fds(), before);
	tcp_close(t, 2);
}

static int
memfd_with(size_t len, bool sealed)
{
	int fd = memfd_create("test", MFD_CLOEXEC | MFD_ALLOW_SEALING);

	assert_true(fd >= 0);
	pattern(scratch, len, 0);
	assert_int_equal(write(fd, scratch, len), (ssize_t)len);
	if (sealed)
		assert_int_equal(fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE), 0);
	return fd;
}

/* One record whose 10 pending bytes are in the memfd. */
static void
raw_memfd_batch(struct raw *m)
{
	raw_batch(m, 1);
	m->u.h.flags = HANDOVER_F_MEMFD;
	m->u.h.memfd_len = 10;
	raw_rec(m, 0)->flags = HANDOVER_R_MEMFD;
	raw_rec(m, 0)->pending_len = 10;
}

static void
rejects_bad_descriptors(void **state)
{
	struct tcp t[1];
	struct raw m;
	int p[2], fds[2];

	(void)state;
	tcp_open(t, 1);
	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	raw_batch(&m, 1);
	expect_rejected(&m, &p[0], 1, true, "record 0: the descriptor is not a socket");
	raw_memfd_batch(&m);
	fds[0] = memfd_with(10, false);
	fds[1] = t[0].conn;
	expect_rejected(&m, fds, 2, true, "the memfd is not sealed");
	close(fds[0]);
	fds[0] = memfd_with(9, true);
	expect_rejected(&m, fds, 2, true, "memfd of 9 bytes, 10 expected");
	close(fds[0]);
	fds[0] = p[1];
	expect_rejected(&m, fds, 2, true, "the first descriptor is not a memfd");
	raw_rec(&m, 0)->pending_off = 1;
	expect_rejected(&m, fds, 2, true, "beyond the memfd");
	close(p[0]);
	close(p[1]);
	tcp_close(t, 1);
}

/* A hand-made memfd batch that is right is taken: the checks above are not too strict. */
static void
accepts_a_hand_made_memfd_batch(void **state)
{
	struct tcp t[1];
	struct raw m;
	int sv[2], fds[2];

	(void)state;
	tcp_open(t, 1);
	seqpair(sv);
	raw_memfd_batch(&m);
	fds[0] = memfd_with(10, true);
	fds[1] = t[0].conn;
	raw_send(sv[0], m.u.b, m.len, fds, 2);
	close(fds[0]);
	assert_int_equal(handover_batch_recv(sv[1], &inbox, err, sizeof(err)), 0);
	pattern(expect, 10, 0);
	assert_int_equal(inbox.item[0].pending_len, 10);
	assert_memory_equal(inbox.item[0].pending, expect, 10);
	assert_same_socket(inbox.item[0].fd, &t[0], 0);
	handover_inbox_reset(&inbox);
	close(sv[0]);
	close(sv[1]);
	tcp_close(t, 1);
}

/* ---- a full channel ---- */

/* Fills sock's send buffer with 4 KiB messages; returns how many went. */
static unsigned
fill_channel(int sock)
{
	unsigned n = 0;

	memset(scratch, 'F', 4096);
	while (send(sock, scratch, 4096, MSG_NOSIGNAL | MSG_DONTWAIT) == 4096)
		n++;
	assert_int_equal(errno, EAGAIN);
	assert_true(n > 0);
	return n;
}

/* Exactly the n filler messages are queued, then nothing. */
static void
drain_channel(int sock, unsigned n)
{
	static unsigned char buf[8192];

	for (unsigned i = 0; i < n; i++) {
		assert_int_equal(recv(sock, buf, sizeof(buf), MSG_DONTWAIT), 4096);
		assert_int_equal(buf[0], 'F');
	}
	assert_int_equal(recv(sock, buf, sizeof(buf), MSG_DONTWAIT), -1);
	assert_int_equal(errno, EAGAIN);
}

static void
a_full_channel_is_eagain(void **state)
{
	struct handover_ack ack = { .seq = 1, .nrec = 1, .taken = { 1 } };
	struct tcp t[3];
	int sv[2], before;
	unsigned n;

	(void)state;
	tcp_open(t, 3);
	seqpair(sv);
	assert_int_equal(fcntl(sv[0], F_SETFL, O_NONBLOCK), 0);
	assert_int_equal(fcntl(sv[1], F_SETFL, O_NONBLOCK), 0);
	batch_fill(t, 3, len_trunc, 3);  /* with a memfd */
	before = count_fds();
	n = fill_channel(sv[0]);
	assert_int_equal(handover_batch_send(sv[0], &batch), -1);
	assert_int_equal(errno, EAGAIN);
	assert_true(batch.has_memfd && !batch.sent);  /* kept for the retry */
	assert_int_equal(count_fds(), before);
	drain_channel(sv[1], n);
	assert_int_equal(handover_batch_send(sv[0], &batch), 0);
	assert_int_equal(handover_batch_recv(sv[1], &inbox, err, sizeof(err)), 0);
	assert_int_equal(handover_batch_recv(sv[1], &inbox, err, sizeof(err)), -1);
	assert_int_equal(errno, EBUSY);
	for (unsigned i = 0; i < 3; i++)
		assert_item(&inbox.item[i], i, len_trunc(i));
	handover_inbox_reset(&inbox);
	assert_int_equal(handover_batch_recv(sv[1], &inbox, err, sizeof(err)), -1);
	assert_int_equal(errno, EAGAIN);
	n = fill_channel(sv[1]);
	assert_int_equal(handover_ack_send(sv[1], &ack), -1);
	assert_int_equal(errno, EAGAIN);
	drain_channel(sv[0], n);
	handover_batch_reset(&batch, 0);
	close(sv[0]);
	close(sv[1]);
	tcp_close(t, 3);
}

/* ---- acks ---- */

/* The receiver takes records 0, 2 and 4 of 5; the sender takes 1 and 3 back, still working. */
static void
ack_round_trip_with_refusals(void **state)
{
	struct handover_ack ack;
	struct tcp t[5];
	int sv[2], before;

	(void)state;
	tcp_open(t, 5);
	before = count_fds();
	seqpair(sv);
	batch_fill(t, 5, len_small, 0xfffffffeu);
	assert_int_equal(handover_batch_send(sv[0], &batch), 0);
	assert_int_equal(handover_batch_recv(sv[1], &inbox, err, sizeof(err)), 0);
	for (unsigned i = 0; i < 5; i += 2)
		assert_true(handover_inbox_take(&inbox, i) >= 0);
	handover_inbox_ack(&inbox, &ack);
	assert_int_equal(handover_ack_send(sv[1], &ack), 0);
	for (unsigned i = 0; i < 5; i += 2)
		close(inbox.item[i].fd);
	handover_inbox_reset(&inbox);  /* closes the copies of 1 and 3 */
	assert_int_equal(handover_ack_recv(sv[0], &ack, err, sizeof(err)), 0);
	assert_int_equal(ack.seq, 0xfffffffeu);
	assert_int_equal(ack.version, HANDOVER_VERSION_MIN);  /* the batch's: no client addresses */
	assert_int_equal(ack.nrec, 5);
	for (unsigned i = 0; i < 5; i++) {
		assert_int_equal(handover_ack_taken(&ack, i), i % 2 == 0);
		if (!handover_ack_taken(&ack, i))
			assert_same_socket(batch.fd[i], &t[i], i);
	}
	assert_false(handover_ack_taken(&ack, 5));
	assert_false(handover_ack_taken(&ack, 1000));
	close(sv[0]);
	close(sv[1]);
	assert_int_equal(count_fds(), before);
	handover_batch_reset(&batch, 0);
	tcp_close(t, 5);
}

static void
expect_bad_ack(const struct handover_wire_ack *w, size_t len, const int *fds, unsigned nfds,
    const char *why)
{
	struct handover_ack ack;
	int sv[2], before;

	seqpair(sv);
	before = count_fds();
	raw_send(sv[1], w, len, fds, nfds);
	assert_int_equal(handover_ack_recv(sv[0], &ack, err, sizeof(err)), -1);
	assert_int_equal(errno, EPROTO);
	if (strstr(err, why) == NULL)
		fail_msg("\"%s\" does not say \"%s\"", err, why);
	assert_int_equal(ack.nrec, 0);
	assert_int_equal(count_fds(), before);
	close(sv[0]);
	close(sv[1]);
}

static struct handover_wire_ack
wire_ack(unsigned nrec)
{
	return (struct handover_wire_ack){
		.p = { HANDOVER_MAGIC, HANDOVER_VERSION, HANDOVER_KIND_ACK, 12 },
		.nrec = (uint16_t)nrec, .taken = { 0x05 },
	};
}

static void
rejects_malformed_acks(void **state)
{
	struct handover_wire_ack w = wire_ack(3);
	struct tcp t[1];

	(void)state;
	tcp_open(t, 1);
	expect_bad_ack(&w, 10, NULL, 0, "short message: 10 bytes");
	expect_bad_ack(&w, sizeof(w) - 1, NULL, 0, "ack 12: 47 bytes");
	expect_bad_ack(&w, sizeof(w), &t[0].conn, 1, "an ack with 1 descriptors");
	w = wire_ack(2);  /* bit 2 set, of 2 records */
	expect_bad_ack(&w, sizeof(w), NULL, 0, "record 2 taken of 2");
	w = wire_ack(HANDOVER_MAX_FDS + 1);
	expect_bad_ack(&w, sizeof(w), NULL, 0, "253 records");
	w = wire_ack(3);
	w.p.kind = HANDOVER_KIND_BATCH;
	expect_bad_ack(&w, sizeof(w), NULL, 0, "kind 1");
	w = wire_ack(3);
	w.p.magic = 0;
	expect_bad_ack(&w, sizeof(w), NULL, 0, "bad magic");
	assert_same_socket(t[0].conn, &t[0], 0);
	tcp_close(t, 1);
}

/* The version rule from the sender's side: an ack it cannot read refuses the whole batch. */
static void
an_ack_of_an_unknown_version_refuses_all(void **state)
{
	struct handover_wire_ack w = wire_ack(3);
	struct handover_ack ack;
	int sv[2];

	(void)state;
	seqpair(sv);
	w.p.version = 7;
	raw_send(sv[1], &w, sizeof(w.p), NULL, 0);  /* a later layout, whatever its length */
	assert_int_equal(handover_ack_recv(sv[0], &ack, err, sizeof(err)), 0);
	assert_int_equal(ack.seq, 12);
	assert_int_equal(ack.version, 7);
	assert_int_equal(ack.nrec, 0);
	for (unsigned i = 0; i < 3; i++)
		assert_false(handover_ack_taken(&ack, i));
	close(sv[0]);
	close(sv[1]);
}

/* Reading says ECONNRESET; writing says EPIPE, without a SIGPIPE (it would end this test). */
static void
a_closed_channel(void **state)
{
	struct handover_ack ack = { .seq = 1 };
	struct tcp t[1];
	int sv[2];

	(void)state;
	tcp_open(t, 1);
	seqpair(sv);
	close(sv[1]);
	assert_int_equal(handover_ack_recv(sv[0], &ack, err, sizeof(err)), -1);
	assert_int_equal(errno, ECONNRESET);
	assert_int_equal(handover_batch_recv(sv[0], &inbox, err, sizeof(err)), -1);
	assert_int_equal(errno, ECONNRESET);
	assert_false(inbox.has_seq);
	batch_fill(t, 1, len_trunc, 4);
	assert_int_equal(handover_batch_send(sv[0], &batch), -1);
	assert_int_equal(errno, EPIPE);
	assert_int_equal(handover_ack_send(sv[0], &ack), -1);
	assert_int_equal(errno, EPIPE);
	handover_batch_reset(&batch, 0);
	close(sv[0]);
	tcp_close(t, 1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(one_connection),
		cmocka_unit_test(full_batch_of_252_inline),
		cmocka_unit_test(full_batch_of_251_with_memfd),
		cmocka_unit_test(inline_area_spills_to_memfd),
		cmocka_unit_test(full_batches_with_client_addresses),
		cmocka_unit_test(no_client_address_is_version_1),
		cmocka_unit_test(the_memfd_takes_a_descriptor_slot),
		cmocka_unit_test(misuse_is_einval),
		cmocka_unit_test(a_held_inbox_is_ebusy),
		cmocka_unit_test_prestate(receiver_out_of_descriptors, (void *)&room_none),
		cmocka_unit_test_prestate(receiver_out_of_descriptors, (void *)&room_memfd_only),
		cmocka_unit_test_prestate(receiver_out_of_descriptors, (void *)&room_five),
		cmocka_unit_test(rejects_short_messages),
		cmocka_unit_test(rejects_foreign_messages),
		cmocka_unit_test(rejects_an_unknown_version),
		cmocka_unit_test(rejects_a_descriptor_count_mismatch),
		cmocka_unit_test(rejects_bad_header_fields),
		cmocka_unit_test(rejects_bad_records),
		cmocka_unit_test(rejects_bad_client_entries),
		cmocka_unit_test(accepts_a_hand_made_client_entry),
		cmocka_unit_test(rejects_bad_descriptors),
		cmocka_unit_test(accepts_a_hand_made_memfd_batch),
		cmocka_unit_test(a_full_channel_is_eagain),
		cmocka_unit_test(ack_round_trip_with_refusals),
		cmocka_unit_test(rejects_malformed_acks),
		cmocka_unit_test(an_ack_of_an_unknown_version_refuses_all),
		cmocka_unit_test(a_closed_channel),
	};
	return cmocka_run_group_tests_name("handover", tests, NULL, NULL);
}
