#include "worker/handover.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

/*
 * The kernel's SCM_MAX_FD. Receiving has room for one descriptor more than
 * a batch may carry, so that a sender that overdoes it is caught, not taken
 * for a truncation.
 */
#define SCM_FDS_MAX  253

#define SEALS        (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE)
#define REC_FLAGS_V1 (HANDOVER_R_HALF_CLOSED | HANDOVER_R_COUNTED | HANDOVER_R_MEMFD)
#define REC_FLAGS_V2 (REC_FLAGS_V1 | HANDOVER_R_CLIENT)

_Static_assert(sizeof(struct handover_wire_prefix) == 12, "wire prefix layout");
_Static_assert(sizeof(struct handover_wire_batch) == 24, "wire batch layout");
_Static_assert(sizeof(struct handover_wire_rec) == 24, "wire record layout");
_Static_assert(sizeof(struct handover_wire_client) == 24, "wire client layout");
_Static_assert(sizeof(struct handover_wire_ack) == 48, "wire ack layout");
_Static_assert(HANDOVER_MAX_FDS < SCM_FDS_MAX + 1, "SCM_RIGHTS carries at most 253 descriptors");

union cmsg_fds {
	struct cmsghdr h;
	char buf[CMSG_SPACE(sizeof(int) * SCM_FDS_MAX)];
};

/* What one recvmsg brought. */
struct rx {
	size_t len;
	int flags;              /* msg_flags: MSG_TRUNC, MSG_CTRUNC */
	unsigned nfds;
	int fds[SCM_FDS_MAX];
};

static int fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Fills the caller's error buffer and returns -1; errno is kept. */
static int
fail(char *err, size_t errlen, const char *fmt, ...)
{
	int saved = errno;
	va_list ap;

	if (errlen > 0) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	errno = saved;
	return -1;
}

static bool
bit_test(const uint8_t *map, unsigned i)
{
	return (map[i / 8] & (1u << (i % 8))) != 0;
}

static void
bit_set(uint8_t *map, unsigned i)
{
	map[i / 8] |= (uint8_t)(1u << (i % 8));
}

static void
close_fds(const int *fds, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		close(fds[i]);
}

static struct handover_wire_prefix
prefix(uint16_t version, uint16_t kind, uint32_t seq)
{
	return (struct handover_wire_prefix){
		.magic = HANDOVER_MAGIC, .version = version, .kind = kind, .seq = seq,
	};
}

static bool
version_known(uint16_t v)
{
	return v >= HANDOVER_VERSION_MIN && v <= HANDOVER_VERSION;
}

#ifdef EM_TEST_HOOKS
/*
 * Test builds only: a receiver that reads no batch past version
 * EM_TEST_HANDOVER_READS and refuses in that version, as an older
 * release does (a downgrade).
 */
static uint16_t
version_read_max(void)
{
	const char *v = getenv("EM_TEST_HANDOVER_READS");
	long n = v != NULL ? strtol(v, NULL, 10) : 0;

	return n >= HANDOVER_VERSION_MIN && n < HANDOVER_VERSION ? (uint16_t)n : HANDOVER_VERSION;
}
#else
#define version_read_max() HANDOVER_VERSION
#endif

/* Bytes a record takes before the inline area, in version V. */
static size_t
rec_bytes(uint16_t v)
{
	return sizeof(struct handover_wire_rec) +
	    (v >= HANDOVER_VERSION_CLIENT ? sizeof(struct handover_wire_client) : 0);
}

/* ---- client entries (version 2) ---- */

static int
client_encode(const struct sockaddr_storage *ss, struct handover_wire_client *c)
{
	memset(c, 0, sizeof(*c));
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)ss;
		c->port = in->sin_port;
		memcpy(c->addr, &in->sin_addr, sizeof(in->sin_addr));
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;
		c->port = in6->sin6_port;
		memcpy(c->addr, &in6->sin6_addr, sizeof(in6->sin6_addr));
	} else
		return -1;
	c->family = ss->ss_family;
	return 0;
}

/* A present entry is IPv4 (its tail zero) or IPv6; an absent one is all zero. */
static bool
client_valid(const struct handover_wire_client *c, bool present)
{
	static const uint8_t zeros[sizeof(struct handover_wire_client)];

	if (!present)
		return memcmp(c, zeros, sizeof(*c)) == 0;
	if (c->zero != 0)
		return false;
	if (c->family == AF_INET)
		return memcmp(c->addr + 4, zeros, sizeof(c->addr) - 4) == 0;
	return c->family == AF_INET6;
}

static void
client_decode(const struct handover_wire_client *c, struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof(*ss));
	if (c->family == AF_INET) {
		struct sockaddr_in *in = (struct sockaddr_in *)ss;
		in->sin_family = AF_INET;
		in->sin_port = c->port;
		memcpy(&in->sin_addr, c->addr, sizeof(in->sin_addr));
	} else {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
		in6->sin6_family = AF_INET6;
		in6->sin6_port = c->port;
		memcpy(&in6->sin6_addr, c->addr, sizeof(in6->sin6_addr));
	}
}

/* ---- sender ---- */

static bool
batch_uses_memfd(const struct handover_batch *b)
{
	return (b->hdr.flags & HANDOVER_F_MEMFD) != 0;
}

void
handover_batch_reset(struct handover_batch *b, uint32_t seq)
{
	if (b->has_memfd)
		close(b->memfd);
	memset(&b->hdr, 0, sizeof(b->hdr));
	b->hdr.p = prefix(HANDOVER_VERSION_MIN, HANDOVER_KIND_BATCH, seq);
	b->memfd = -1;
	b->has_memfd = false;
	b->sent = false;
}

/* Room for one more connection, and for the memfd if it would be the first to need it. */
static bool
batch_fits(const struct handover_batch *b, bool to_memfd)
{
	unsigned used = b->hdr.nrec + (batch_uses_memfd(b) ? 1u : 0u);
	unsigned need = 1u + (to_memfd && !batch_uses_memfd(b) ? 1u : 0u);

	return used + need <= HANDOVER_MAX_FDS;
}

static bool
batch_goes_inline(const struct handover_batch *b, size_t len)
{
	return len <= HANDOVER_INLINE_REC_MAX && b->hdr.inline_len + len <= HANDOVER_INLINE_MAX;
}

/* Appends to the memfd, created at the first need; the length grows only on success. */
static int
batch_store_memfd(struct handover_batch *b, const void *pending, size_t len, uint32_t *off)
{
	ssize_t n;

	if (!b->has_memfd) {
		b->memfd = memfd_create("echomaster-handover", MFD_CLOEXEC | MFD_ALLOW_SEALING);
		if (b->memfd == -1)
			return -1;
		b->has_memfd = true;
	}
	if ((n = pwrite(b->memfd, pending, len, b->hdr.memfd_len)) == -1)
		return -1;
	if ((size_t)n != len) {  /* tmpfs writes all or fails; short means out of memory */
		errno = ENOSPC;
		return -1;
	}
	*off = b->hdr.memfd_len;
	b->hdr.memfd_len += (uint32_t)len;
	b->hdr.flags |= HANDOVER_F_MEMFD;
	return 0;
}

static void
batch_store_inline(struct handover_batch *b, const void *pending, size_t len, uint32_t *off)
{
	*off = b->hdr.inline_len;
	if (len > 0)
		memcpy(b->inl + b->hdr.inline_len, pending, len);
	b->hdr.inline_len += (uint32_t)len;
}

int
handover_batch_add(struct handover_batch *b, int fd, const struct handover_rec *rec,
    const void *pending, size_t pending_len)
{
	struct handover_wire_client client = { 0 };
	bool to_memfd;
	uint32_t off = 0;

	if (b->sent || fd < 0 || pending_len > HANDOVER_PENDING_MAX ||
	    (pending_len > 0 && pending == NULL) ||
	    (rec->has_client && client_encode(&rec->client, &client) == -1)) {
		errno = EINVAL;
		return -1;
	}
	to_memfd = !batch_goes_inline(b, pending_len);
	if (!batch_fits(b, to_memfd)) {
		errno = ENOBUFS;
		return -1;
	}
	if (to_memfd) {
		if (batch_store_memfd(b, pending, pending_len, &off) == -1)
			return -1;
	} else
		batch_store_inline(b, pending, pending_len, &off);
	b->rec[b->hdr.nrec] = (struct handover_wire_rec){
		.received = rec->received, .idle_age_ms = rec->idle_age_ms,
		.pending_off = off, .pending_len = (uint32_t)pending_len, .mode = rec->mode,
		.flags = (uint8_t)((rec->half_closed ? HANDOVER_R_HALF_CLOSED : 0) |
		    (rec->counted ? HANDOVER_R_COUNTED : 0) | (to_memfd ? HANDOVER_R_MEMFD : 0) |
		    (rec->has_client ? HANDOVER_R_CLIENT : 0)),
	};
	b->client[b->hdr.nrec] = client;
	if (rec->has_client)
		b->hdr.p.version = HANDOVER_VERSION_CLIENT;  /* the lowest that carries it */
	b->fd[b->hdr.nrec++] = fd;
	return 0;
}

/* The descriptors in wire order: the memfd first, so that truncation spares it. */
static void
batch_control(const struct handover_batch *b, union cmsg_fds *ctl, struct msghdr *msg)
{
	unsigned nfds = b->hdr.nrec + (batch_uses_memfd(b) ? 1u : 0u);
	int *out;

	memset(ctl, 0, sizeof(*ctl));
	msg->msg_control = ctl->buf;
	msg->msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
	ctl->h.cmsg_level = SOL_SOCKET;
	ctl->h.cmsg_type = SCM_RIGHTS;
	ctl->h.cmsg_len = CMSG_LEN(sizeof(int) * nfds);
	out = (int *)(void *)CMSG_DATA(&ctl->h);
	if (batch_uses_memfd(b))
		*out++ = b->memfd;
	memcpy(out, b->fd, sizeof(int) * b->hdr.nrec);
}

int
handover_batch_send(int sock, struct handover_batch *b)
{
	bool clients = b->hdr.p.version >= HANDOVER_VERSION_CLIENT;
	struct iovec iov[4] = {
		{ &b->hdr, sizeof(b->hdr) },
		{ b->rec, sizeof(b->rec[0]) * b->hdr.nrec },
		{ b->client, clients ? sizeof(b->client[0]) * b->hdr.nrec : 0 },
		{ b->inl, b->hdr.inline_len },
	};
	struct msghdr msg = { .msg_iov = iov, .msg_iovlen = 4 };
	union cmsg_fds ctl;
	ssize_t n;

	if (b->sent || b->hdr.nrec == 0) {
		errno = EINVAL;
		return -1;
	}
	/* No F_SEAL_SEAL: adding the same seals again on a retry is then harmless. */
	if (batch_uses_memfd(b) && fcntl(b->memfd, F_ADD_SEALS, SEALS) == -1)
		return -1;
	batch_control(b, &ctl, &msg);
	if ((n = sendmsg(sock, &msg, MSG_NOSIGNAL)) == -1)
		return -1;
	if ((size_t)n != iov[0].iov_len + iov[1].iov_len + iov[2].iov_len + iov[3].iov_len) {
		errno = EMSGSIZE;  /* not a SEQPACKET socket: a record boundary was lost */
		return -1;
	}
	b->sent = true;
	if (b->has_memfd) {  /* the message holds its own reference now */
		close(b->memfd);
		b->memfd = -1;
		b->has_memfd = false;
	}
	return 0;
}

/* ---- receiving, both directions ---- */

/* Collects every SCM_RIGHTS descriptor, whatever else the control data holds. */
static void
rx_collect(struct rx *r, struct msghdr *msg)
{
	for (struct cmsghdr *c = CMSG_FIRSTHDR(msg); c != NULL; c = CMSG_NXTHDR(msg, c)) {
		size_t n;

		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS ||
		    c->cmsg_len < CMSG_LEN(0))
			continue;
		n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		if (n > SCM_FDS_MAX - r->nfds)
			n = SCM_FDS_MAX - r->nfds;  /* cannot happen: the buffer holds no more */
		memcpy(r->fds + r->nfds, CMSG_DATA(c), n * sizeof(int));
		r->nfds += (unsigned)n;
	}
}

/* One recvmsg; descriptors come close-on-exec. EOF is ECONNRESET. */
static int
rx_read(int sock, void *buf, size_t len, struct rx *r, char *err, size_t errlen)
{
	struct iovec iov = { buf, len };
	union cmsg_fds ctl;
	struct msghdr msg = {
		.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf, .msg_controllen = sizeof(ctl.buf),
	};
	ssize_t n;

	r->len = 0;
	r->flags = 0;
	r->nfds = 0;
	if ((n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC)) == -1)
		return fail(err, errlen, "recvmsg: %s", strerror(errno));
	rx_collect(r, &msg);
	r->len = (size_t)n;
	r->flags = msg.msg_flags;
	if (n == 0 && r->nfds == 0) {
		errno = ECONNRESET;
		return fail(err, errlen, "the peer closed the channel");
	}
	return 0;
}

static int
check_prefix(const struct handover_wire_prefix *p, size_t len, uint16_t kind, char *err,
    size_t errlen)
{
	if (len < sizeof(*p))
		return fail(err, errlen, "short message: %zu bytes", len);
	if (p->magic != HANDOVER_MAGIC)
		return fail(err, errlen, "bad magic 0x%08x", (unsigned)p->magic);
	if (p->kind != kind)
		return fail(err, errlen, "message kind %u where %u was expected", p->kind, kind);
	return 0;
}

/* ---- receiver ---- */

static unsigned
hdr_base(const struct handover_wire_batch *h)
{
	return (h->flags & HANDOVER_F_MEMFD) ? 1u : 0u;
}

static int
check_batch_hdr(const struct handover_wire_batch *h, size_t len, char *err, size_t errlen)
{
	bool memfd = (h->flags & HANDOVER_F_MEMFD) != 0;
	size_t want;

	if (len < sizeof(*h))
		return fail(err, errlen, "short batch header: %zu bytes", len);
	if (h->nrec == 0 || h->nrec + hdr_base(h) > HANDOVER_MAX_FDS)
		return fail(err, errlen, "%u records%s", h->nrec, memfd ? " and a memfd" : "");
	if ((h->flags & ~HANDOVER_F_MEMFD) != 0)
		return fail(err, errlen, "unknown batch flags 0x%x", h->flags);
	if (h->inline_len > HANDOVER_INLINE_MAX)
		return fail(err, errlen, "inline area of %u bytes", (unsigned)h->inline_len);
	if (memfd != (h->memfd_len > 0))
		return fail(err, errlen, "memfd flag and memfd length %u disagree", (unsigned)h->memfd_len);
	want = sizeof(*h) + h->nrec * rec_bytes(h->p.version) + h->inline_len;
	if (len != want)
		return fail(err, errlen, "payload of %zu bytes, %zu expected", len, want);
	return 0;
}

/* Exactly one descriptor a record (and the memfd), unless the kernel said it dropped some. */
static int
check_fd_count(const struct handover_wire_batch *h, const struct rx *r, char *err, size_t errlen)
{
	unsigned want = h->nrec + hdr_base(h);
	bool ctrunc = (r->flags & MSG_CTRUNC) != 0;

	if (r->nfds == want || (ctrunc && r->nfds < want))
		return 0;
	return fail(err, errlen, "%u descriptors for %u records%s%s", r->nfds, h->nrec,
	    hdr_base(h) ? " and a memfd" : "", ctrunc ? " (truncated)" : "");
}

static const struct handover_wire_rec *
inbox_rec(const struct handover_inbox *in, unsigned i, struct handover_wire_rec *w)
{
	memcpy(w, in->buf.bytes + sizeof(in->buf.hdr) + i * sizeof(*w), sizeof(*w));
	return w;
}

/* Version 2's client entry of record i; all zero in version 1, which has none. */
static const struct handover_wire_client *
inbox_client(const struct handover_inbox *in, unsigned i, struct handover_wire_client *c)
{
	const struct handover_wire_batch *h = &in->buf.hdr;

	if (h->p.version < HANDOVER_VERSION_CLIENT) {
		memset(c, 0, sizeof(*c));
		return c;
	}
	memcpy(c, in->buf.bytes + sizeof(*h) + h->nrec * sizeof(struct handover_wire_rec) +
	    i * sizeof(*c), sizeof(*c));
	return c;
}

static int
check_recs(const struct handover_inbox *in, char *err, size_t errlen)
{
	const struct handover_wire_batch *h = &in->buf.hdr;
	unsigned known = h->p.version >= HANDOVER_VERSION_CLIENT ? REC_FLAGS_V2 : REC_FLAGS_V1;
	struct handover_wire_rec w;
	struct handover_wire_client c;

	for (unsigned i = 0; i < h->nrec; i++) {
		uint64_t end;
		bool memfd;

		inbox_rec(in, i, &w);
		memfd = (w.flags & HANDOVER_R_MEMFD) != 0;
		end = (uint64_t)w.pending_off + w.pending_len;
		if ((w.flags & ~known) != 0 || w.zero != 0)
			return fail(err, errlen, "record %u: unknown flags 0x%x", i, w.flags);
		if (!client_valid(inbox_client(in, i, &c), (w.flags & HANDOVER_R_CLIENT) != 0))
			return fail(err, errlen, "record %u: bad client entry (family %u)", i, c.family);
		if (w.pending_len > HANDOVER_PENDING_MAX)
			return fail(err, errlen, "record %u: %u pending bytes", i, (unsigned)w.pending_len);
		if (end > (memfd ? h->memfd_len : h->inline_len))
			return fail(err, errlen, "record %u: pending bytes %u+%u beyond the %s", i,
			    (unsigned)w.pending_off, (unsigned)w.pending_len, memfd ? "memfd" : "inline area");
	}
	return 0;
}

static int
check_sockets(const int *fds, unsigned n, char *err, size_t errlen)
{
	struct stat st;

	for (unsigned i = 0; i < n; i++) {
		if (fstat(fds[i], &st) == -1)
			return fail(err, errlen, "record %u: fstat: %s", i, strerror(errno));
		if (!S_ISSOCK(st.st_mode))
			return fail(err, errlen, "record %u: the descriptor is not a socket", i);
	}
	return 0;
}

/* Sealed against change and at least as long as the header says, then mapped read-only. */
static int
inbox_map(struct handover_inbox *in, int memfd, char *err, size_t errlen)
{
	size_t len = in->buf.hdr.memfd_len;
	struct stat st;
	int seals;
	void *p;

	if ((seals = fcntl(memfd, F_GET_SEALS)) == -1)
		return fail(err, errlen, "the first descriptor is not a memfd: %s", strerror(errno));
	if ((seals & (F_SEAL_SHRINK | F_SEAL_WRITE)) != (F_SEAL_SHRINK | F_SEAL_WRITE))
		return fail(err, errlen, "the memfd is not sealed (seals 0x%x)", (unsigned)seals);
	if (fstat(memfd, &st) == -1)
		return fail(err, errlen, "memfd fstat: %s", strerror(errno));
	if ((uint64_t)st.st_size < len)
		return fail(err, errlen, "memfd of %lld bytes, %zu expected", (long long)st.st_size, len);
	if ((p = mmap(NULL, len, PROT_READ, MAP_PRIVATE, memfd, 0)) == MAP_FAILED)
		return fail(err, errlen, "mmap of the memfd: %s", strerror(errno));
	in->map = p;
	in->map_len = len;
	return 0;
}

static void
inbox_unmap(struct handover_inbox *in)
{
	if (in->map != NULL)
		munmap(in->map, in->map_len);
	in->map = NULL;
	in->map_len = 0;
}

/* Record i's descriptor is the (base + i)th: those past what arrived are lost. */
static void
inbox_fill(struct handover_inbox *in, const struct rx *r)
{
	const struct handover_wire_batch *h = &in->buf.hdr;
	const unsigned char *inl = in->buf.bytes + sizeof(*h) + h->nrec * rec_bytes(h->p.version);
	unsigned base = hdr_base(h);
	struct handover_wire_rec w;
	struct handover_wire_client c;

	memset(in->taken, 0, sizeof(in->taken));
	in->nrec = h->nrec;
	in->lost = 0;
	in->truncated = (r->flags & MSG_CTRUNC) != 0;
	for (unsigned i = 0; i < h->nrec; i++) {
		struct handover_item *it = &in->item[i];
		const unsigned char *from;

		inbox_rec(in, i, &w);
		from = (w.flags & HANDOVER_R_MEMFD) ? in->map : inl;
		it->fd = base + i < r->nfds ? r->fds[base + i] : -1;
		in->lost += it->fd == -1;
		it->rec = (struct handover_rec){
			.received = w.received, .idle_age_ms = w.idle_age_ms, .mode = w.mode,
			.half_closed = (w.flags & HANDOVER_R_HALF_CLOSED) != 0,
			.counted = (w.flags & HANDOVER_R_COUNTED) != 0,
			.has_client = (w.flags & HANDOVER_R_CLIENT) != 0,
		};
		if (it->rec.has_client)
			client_decode(inbox_client(in, i, &c), &it->rec.client);
		it->pending = from != NULL ? from + w.pending_off : NULL;
		it->pending_len = w.pending_len;
	}
	in->version = h->p.version;
	in->loaded = true;
}

/* Parse, then validate everything, then map and fill: a failure owns nothing. */
static int
inbox_load(struct handover_inbox *in, const struct rx *r, char *err, size_t errlen)
{
	const struct handover_wire_batch *h = &in->buf.hdr;
	unsigned base;

	if (check_prefix(&h->p, r->len, HANDOVER_KIND_BATCH, err, errlen) == -1)
		return -1;
	in->seq = h->p.seq;
	in->has_seq = true;
	if (!version_known(h->p.version) || h->p.version > version_read_max())
		return fail(err, errlen, "batch %u: version %u unknown", (unsigned)h->p.seq, h->p.version);
	if (r->flags & MSG_TRUNC)
		return fail(err, errlen, "batch %u: longer than %zu bytes", (unsigned)h->p.seq, sizeof(in->buf));
	if (check_batch_hdr(h, r->len, err, errlen) == -1 || check_fd_count(h, r, err, errlen) == -1 ||
	    check_recs(in, err, errlen) == -1)
		return -1;
	base = hdr_base(h);
	if (r->nfds > base && check_sockets(r->fds + base, r->nfds - base, err, errlen) == -1)
		return -1;
	if (base == 1 && r->nfds > 0) {
		if (inbox_map(in, r->fds[0], err, errlen) == -1)
			return -1;
		close(r->fds[0]);
	}
	inbox_fill(in, r);
	return 0;
}

int
handover_batch_recv(int sock, struct handover_inbox *in, char *err, size_t errlen)
{
	struct rx r;

	if (in->loaded) {
		errno = EBUSY;
		return fail(err, errlen, "the inbox still holds batch %u", (unsigned)in->seq);
	}
	in->has_seq = false;
	in->nrec = 0;
	if (rx_read(sock, in->buf.bytes, sizeof(in->buf.bytes), &r, err, errlen) == -1)
		return -1;
	if (inbox_load(in, &r, err, errlen) == -1) {
		close_fds(r.fds, r.nfds);
		errno = EPROTO;
		return -1;
	}
	return 0;
}

int
handover_inbox_take(struct handover_inbox *in, unsigned i)
{
	if (!in->loaded || i >= in->nrec || bit_test(in->taken, i)) {
		errno = EINVAL;
		return -1;
	}
	if (in->item[i].fd == -1) {
		errno = ENOENT;
		return -1;
	}
	bit_set(in->taken, i);
	return in->item[i].fd;
}

void
handover_inbox_ack(const struct handover_inbox *in, struct handover_ack *a)
{
	memset(a, 0, sizeof(*a));
	a->seq = in->seq;
	a->version = version_read_max();
	if (!in->loaded)
		return;  /* rejected: nrec 0 refuses the whole batch */
	a->version = in->version;  /* the version rule: only then can it take anything */
	a->nrec = in->nrec;
	memcpy(a->taken, in->taken, sizeof(a->taken));
}

void
handover_inbox_reset(struct handover_inbox *in)
{
	if (in->loaded) {
		for (unsigned i = 0; i < in->nrec; i++)
			if (in->item[i].fd != -1 && !bit_test(in->taken, i))
				close(in->item[i].fd);
	}
	inbox_unmap(in);
	memset(in->taken, 0, sizeof(in->taken));
	in->loaded = false;
	in->has_seq = false;
	in->version = 0;
	in->truncated = false;
	in->nrec = 0;
	in->lost = 0;
}

/* ---- acks ---- */

int
handover_ack_send(int sock, const struct handover_ack *a)
{
	uint16_t version = a->version != 0 ? a->version : HANDOVER_VERSION;
	struct handover_wire_ack w = { .p = prefix(version, HANDOVER_KIND_ACK, a->seq), .nrec = a->nrec };
	ssize_t n;

	if (a->nrec > HANDOVER_MAX_FDS || !version_known(version)) {
		errno = EINVAL;
		return -1;
	}
	for (unsigned i = 0; i < a->nrec; i++)  /* only the bits of real records */
		if (bit_test(a->taken, i))
			bit_set(w.taken, i);
	if ((n = send(sock, &w, sizeof(w), MSG_NOSIGNAL)) == -1)
		return -1;
	if ((size_t)n != sizeof(w)) {
		errno = EMSGSIZE;
		return -1;
	}
	return 0;
}

static int
ack_load(struct handover_ack *a, const struct handover_wire_ack *w, const struct rx *r, char *err,
    size_t errlen)
{
	memset(a, 0, sizeof(*a));
	if (check_prefix(&w->p, r->len, HANDOVER_KIND_ACK, err, errlen) == -1)
		return -1;
	a->seq = w->p.seq;
	a->version = w->p.version;
	if (!version_known(w->p.version))
		return 0;  /* the version rule: a whole refusal (every known version has this layout) */
	if ((r->flags & MSG_TRUNC) || r->len != sizeof(*w))
		return fail(err, errlen, "ack %u: %zu bytes%s", (unsigned)w->p.seq, r->len,
		    (r->flags & MSG_TRUNC) ? " or more" : "");
	if (w->nrec > HANDOVER_MAX_FDS || w->zero != 0)
		return fail(err, errlen, "ack %u: %u records", (unsigned)w->p.seq, w->nrec);
	for (unsigned i = w->nrec; i < HANDOVER_ACK_BYTES * 8; i++)
		if (bit_test(w->taken, i))
			return fail(err, errlen, "ack %u: record %u taken of %u", (unsigned)w->p.seq, i, w->nrec);
	a->nrec = w->nrec;
	memcpy(a->taken, w->taken, sizeof(a->taken));
	return 0;
}

int
handover_ack_recv(int sock, struct handover_ack *a, char *err, size_t errlen)
{
	struct handover_wire_ack w = { 0 };
	struct rx r;

	if (rx_read(sock, &w, sizeof(w), &r, err, errlen) == -1)
		return -1;
	if (r.nfds > 0) {
		close_fds(r.fds, r.nfds);
		memset(a, 0, sizeof(*a));
		errno = EPROTO;
		return fail(err, errlen, "an ack with %u descriptors", r.nfds);
	}
	if (ack_load(a, &w, &r, err, errlen) == -1) {
		memset(a, 0, sizeof(*a));
		errno = EPROTO;
		return -1;
	}
	return 0;
}

bool
handover_ack_taken(const struct handover_ack *a, unsigned i)
{
	return i < a->nrec && i < HANDOVER_MAX_FDS && bit_test(a->taken, i);
}
