/*
 * handover: the wire format a reload uses to pass established TCP
 * connections from an old worker (the sender) to a new one (the receiver)
 * over a connected AF_UNIX SOCK_SEQPACKET socket. This module only encodes,
 * sends, receives and checks messages; deciding what to hand over, and
 * rebuilding a connection from a record, are the caller's.
 *
 * Every call does one sendmsg or recvmsg on the socket it is given, in
 * whatever blocking mode the caller set; EAGAIN (and EINTR) come back as
 * -1 with that errno, never retried here. A SEQPACKET message is atomic: a
 * send that fails has sent nothing, not even descriptors. Nothing is
 * allocated per connection: a batch and an inbox are fixed-size structs the
 * caller owns (about 29 and 70 KiB; keep them off small stacks).
 *
 * Wire format (versions 1 and 2; native byte order and layout, since both
 * ends run on one host; the structs below, whose sizes are asserted in
 * handover.c):
 *
 *   batch, sender to receiver:
 *     struct handover_wire_batch                 24 bytes
 *     struct handover_wire_rec      x nrec       24 bytes each
 *     struct handover_wire_client   x nrec       24 bytes each, version 2 only
 *     inline pending bytes          inline_len   at most HANDOVER_INLINE_MAX
 *     SCM_RIGHTS: [memfd,] fd of record 0, fd of record 1, ...
 *   ack, receiver to sender:
 *     struct handover_wire_ack                   48 bytes, no descriptors
 *
 * Version 2 adds one thing: a client entry per record, the real client
 * address a PROXY protocol header named (the socket's peer is then the
 * load balancer), flagged by HANDOVER_R_CLIENT; a record without the flag
 * has an all-zero entry and its client is the socket's peer. A sender
 * writes the lowest version that carries its batch: version 1 unless a
 * record has a client address, so that a batch of plain connections is
 * byte for byte what the previous release wrote and read, and a receiver
 * of either release takes it (a live upgrade runs old and new binaries
 * side by side). A receiver reads both.
 *
 * Pending bytes (the reply a connection owes its client, at most
 * HANDOVER_PENDING_MAX) travel inline when a record's are at most
 * HANDOVER_INLINE_REC_MAX and the batch's inline area still has room;
 * otherwise in the batch's one memfd, at the record's offset. Inline data
 * is capped at 16 KiB so that a whole message stays near 22 KiB, far under
 * the default send buffer (~208 KiB). The memfd is sealed (no write, shrink
 * or grow) before it is sent; the receiver checks the seals and the size and
 * maps it read-only, so the bytes cannot change or vanish under it. When it
 * is present it is the FIRST descriptor: the kernel installs descriptors in
 * order and drops the tail when the receiver runs out of them, so the memfd
 * arrives whenever any record's descriptor does. A batch with a memfd thus
 * carries at most HANDOVER_MAX_FDS - 1 = 251 connections, one without 252.
 *
 * Truncation: a receiver out of descriptors gets MSG_CTRUNC and only the
 * first k. Records whose descriptor did not arrive are reported with
 * fd -1; the receiver cannot take them and its ack refuses them.
 *
 * Rejection: a message that is short, has a bad magic, an unknown version,
 * inconsistent lengths, bad record fields, a record count that disagrees
 * with its descriptors (beyond a reported truncation), a record descriptor
 * that is not a socket, or an unsealed memfd, is rejected whole: every
 * descriptor it brought is closed before handover_batch_recv returns.
 *
 * Version rule: the first 12 bytes of every message (struct
 * handover_wire_prefix) keep their layout in every version. A receiver that
 * does not know a batch's version refuses the whole batch, answering with
 * an ack whose nrec is 0, written in its own version; one that knows it
 * answers in the batch's version. An ack may take connections only when
 * written in the version of the batch it answers; so a sender that reads an
 * ack of a version it does not know reads it as a whole refusal of the
 * batch its prefix names, and one whose version is not its batch's takes
 * nothing either (the caller compares a->version with the batch's): either
 * way the sender keeps them all, and drains them. (A version-1 receiver
 * thus refuses a batch that carries a client address whole, and the plain
 * connections in it with it.)
 *
 * Ownership of descriptors, step by step:
 *   1. handover_batch_add borrows the connection's fd: the caller keeps it,
 *      and must neither close nor reuse it while the batch is outstanding.
 *      The batch owns its memfd (created at the first add that needs it).
 *   2. handover_batch_send: in flight, the kernel holds its own references.
 *      On success the batch closes its memfd copy; on failure it keeps it
 *      for a retry. The connection fds are still the caller's.
 *   3. handover_batch_recv: the inbox owns every received record fd; the
 *      memfd is mapped and closed at once. On rejection every received
 *      descriptor is closed and nothing is owned.
 *   4. handover_inbox_take moves one record's fd to the caller and marks it
 *      taken in the ack. Take a connection only once its rebuilding cannot
 *      fail (in->item[i] shows its fd and record before that); a
 *      taken connection closed later is lost to its client.
 *   5. handover_inbox_reset closes every record fd not taken.
 *   6. The sender, on the ack, closes its copy of each connection the ack
 *      says was taken and resumes serving every other one. A batch whose ack
 *      never comes (the channel closed or broke) is taken back whole.
 *   Because of 6, the receiver serves a taken connection only once its ack
 *   has been sent; if the ack cannot be sent it closes what it took.
 */
#ifndef EM_HANDOVER_H
#define EM_HANDOVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define HANDOVER_VERSION        2   /* the newest we read and write */
#define HANDOVER_VERSION_MIN    1   /* the oldest we read; written when it carries the batch */
#define HANDOVER_VERSION_CLIENT 2   /* the first with client entries */
#define HANDOVER_MAGIC          0x4f484d45u  /* "EMHO" in memory on little-endian */
#define HANDOVER_KIND_BATCH     1
#define HANDOVER_KIND_ACK       2

/* Descriptors a message (the kernel's SCM_MAX_FD is 253); one may be the memfd. */
#define HANDOVER_MAX_FDS        252
#define HANDOVER_PENDING_MAX    (64 * 1024)  /* a connection's unsent bytes: OUTBUF_CAP */
#define HANDOVER_INLINE_REC_MAX 1024         /* a record's bytes beyond this go in the memfd */
#define HANDOVER_INLINE_MAX     (16 * 1024)  /* a batch's inline area */
#define HANDOVER_ACK_BYTES      ((HANDOVER_MAX_FDS + 7) / 8)

/* handover_wire_batch.flags */
#define HANDOVER_F_MEMFD        0x0001u  /* the first descriptor is the memfd */
/* handover_wire_rec.flags */
#define HANDOVER_R_HALF_CLOSED  0x01u
#define HANDOVER_R_COUNTED      0x02u
#define HANDOVER_R_MEMFD        0x04u    /* pending bytes are in the memfd, else inline */
#define HANDOVER_R_CLIENT       0x08u    /* version 2: the client entry holds the real client */

/* The same in every version. */
struct handover_wire_prefix {
	uint32_t magic;        /* HANDOVER_MAGIC */
	uint16_t version;      /* HANDOVER_VERSION of the writer */
	uint16_t kind;         /* HANDOVER_KIND_* */
	uint32_t seq;          /* the batch's sequence number; an ack repeats it */
};

struct handover_wire_batch {
	struct handover_wire_prefix p;
	uint16_t nrec;         /* 1 .. HANDOVER_MAX_FDS (- 1 with a memfd) */
	uint16_t flags;        /* HANDOVER_F_* */
	uint32_t inline_len;   /* bytes after the records */
	uint32_t memfd_len;    /* bytes of the memfd in use; 0 without one */
};

struct handover_wire_rec {
	uint64_t received;     /* bytes read since the idle stamp (limits.min_rate) */
	uint32_t idle_age_ms;  /* how old the idle stamp was when sent */
	uint32_t pending_off;  /* in the inline area, or in the memfd */
	uint32_t pending_len;  /* at most HANDOVER_PENDING_MAX */
	uint8_t mode;          /* the connection's enum cfg_mode */
	uint8_t flags;         /* HANDOVER_R_* */
	uint16_t zero;         /* must be 0 */
};

/* Version 2: record i's real client address; all zero without HANDOVER_R_CLIENT. */
struct handover_wire_client {
	uint16_t family;       /* AF_INET or AF_INET6 */
	uint16_t port;         /* network byte order, as in a sockaddr */
	uint32_t zero;         /* must be 0 */
	uint8_t addr[16];      /* AF_INET: the first 4 bytes, the rest 0 */
};

struct handover_wire_ack {
	struct handover_wire_prefix p;
	uint16_t nrec;         /* the batch's count, or 0: the whole batch refused */
	uint16_t zero;         /* must be 0 */
	uint8_t taken[HANDOVER_ACK_BYTES];  /* bit i (taken[i / 8] & 1 << i % 8): record i taken */
};

/*
 * A connection's state as handed over. The sender sends the idle stamp's
 * age (now - last_active, clamped to UINT32_MAX), the receiver rebuilds the
 * stamp from its own clock: last_active = now - idle_age_ms. mode is not
 * checked here: the receiver validates it against its enum. has_client:
 * client is the real client's address (AF_INET or AF_INET6, port
 * included), from the PROXY header the connection began with; without it
 * the client is the socket's peer.
 */
struct handover_rec {
	uint64_t received;
	uint32_t idle_age_ms;
	uint8_t mode;
	bool half_closed;      /* the client shut its write side */
	bool counted;          /* the sender counted it in the per-address table */
	bool has_client;
	struct sockaddr_storage client;
};

/* Sender side: one message being built. Fields are read-only for the caller. */
struct handover_batch {
	struct handover_wire_batch hdr;   /* hdr.nrec: connections added; hdr.p.seq */
	struct handover_wire_rec rec[HANDOVER_MAX_FDS];
	struct handover_wire_client client[HANDOVER_MAX_FDS];  /* sent in version 2 only */
	int fd[HANDOVER_MAX_FDS];         /* borrowed: record i's connection */
	int memfd;
	bool has_memfd;                   /* memfd is open and owned */
	bool sent;
	unsigned char inl[HANDOVER_INLINE_MAX];
};

/* The receiver's answer, and what the sender reads back. */
struct handover_ack {
	uint32_t seq;
	uint16_t nrec;                    /* 0: the whole batch refused */
	uint16_t version;                 /* as read; not ours means a whole refusal */
	uint8_t taken[HANDOVER_ACK_BYTES];
};

struct handover_item {
	int fd;                           /* -1: lost to truncation, refuse it */
	struct handover_rec rec;
	const unsigned char *pending;     /* valid until handover_inbox_reset */
	uint32_t pending_len;
};

/* Receiver side: one received batch. A zeroed inbox is empty. */
struct handover_inbox {
	uint32_t seq;
	uint16_t version;      /* the batch's, once loaded: its ack is written in it */
	bool has_seq;          /* seq was read: the batch can be answered, even rejected */
	bool loaded;           /* a batch was accepted and is held */
	bool truncated;        /* MSG_CTRUNC: some descriptors did not arrive */
	uint16_t nrec;
	uint16_t lost;         /* items whose fd is -1 */
	uint8_t taken[HANDOVER_ACK_BYTES];
	struct handover_item item[HANDOVER_MAX_FDS];
	void *map;             /* the memfd, mapped read-only */
	size_t map_len;
	union {
		struct handover_wire_batch hdr;
		uint64_t align;
		unsigned char bytes[sizeof(struct handover_wire_batch) + HANDOVER_MAX_FDS *
		    (sizeof(struct handover_wire_rec) + sizeof(struct handover_wire_client)) +
		    HANDOVER_INLINE_MAX];
	} buf;
};

/*
 * Empties the batch and starts it as batch seq; closes its memfd if it has
 * one. Call before the first use (a zeroed batch is safe to reset).
 */
void handover_batch_reset(struct handover_batch *b, uint32_t seq);

/*
 * Adds a connection: its fd (borrowed), its state, and its unsent bytes
 * (copied: pending may be reused at once). A record with a client address
 * makes the batch version 2. Returns 0, or -1 with errno ENOBUFS (the
 * batch is full: send it and add to the next one), EINVAL (a bad argument,
 * a client address neither IPv4 nor IPv6, or the batch was sent), or
 * memfd_create's or pwrite's. A failed add leaves the batch as it was.
 */
int handover_batch_add(struct handover_batch *b, int fd, const struct handover_rec *rec,
    const void *pending, size_t pending_len);

/*
 * Writes the batch as one message on sock, with MSG_NOSIGNAL. Returns 0, or
 * -1 and errno (EAGAIN: nothing was sent, retry when writable; EINVAL: empty
 * or already sent). Keep the batch until its ack: b->fd[i] is record i.
 */
int handover_batch_send(int sock, struct handover_batch *b);

/*
 * Reads one batch into an empty inbox. Returns 0: in->item[0 .. nrec) hold
 * the records, some with fd -1 when in->truncated. Or -1 with errno: EAGAIN
 * or recvmsg's; EBUSY if the inbox still holds a batch; ECONNRESET if the
 * peer closed the channel; EPROTO for a rejected message, every descriptor
 * it brought closed. err (always filled on -1) says why, for the log. After
 * EPROTO with in->has_seq, answer with handover_inbox_ack's whole refusal;
 * without it the channel is broken: close it.
 */
int handover_batch_recv(int sock, struct handover_inbox *in, char *err, size_t errlen);

/*
 * Takes record i's fd: the caller owns it from now on and the ack says
 * taken. Returns the fd, or -1 with errno EINVAL (no such record, or taken
 * already) or ENOENT (its descriptor was lost to truncation).
 */
int handover_inbox_take(struct handover_inbox *in, unsigned i);

/* The ack for what the inbox received: what was taken, or a whole refusal. */
void handover_inbox_ack(const struct handover_inbox *in, struct handover_ack *a);

/* Closes every record fd not taken, unmaps the memfd, empties the inbox. */
void handover_inbox_reset(struct handover_inbox *in);

/*
 * Writes an ack in a->version (0: ours), with MSG_NOSIGNAL. Returns 0, or
 * -1 and errno (EAGAIN: nothing sent; EINVAL: a version we do not write).
 */
int handover_ack_send(int sock, const struct handover_ack *a);

/*
 * Reads one ack. Returns 0, or -1 with errno EAGAIN, recvmsg's, ECONNRESET
 * (peer closed), or EPROTO (malformed; any descriptor it brought closed),
 * err filled. An ack of a version we do not know reads as a whole refusal
 * (nrec 0, a->version telling which). Matching a->seq to the outstanding
 * batch, and a->version to its version, is the caller's.
 */
int handover_ack_recv(int sock, struct handover_ack *a, char *err, size_t errlen);

/* Whether the ack says record i was taken; false for i >= a->nrec. */
bool handover_ack_taken(const struct handover_ack *a, unsigned i);

#endif
