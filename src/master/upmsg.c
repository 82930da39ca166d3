#include "master/upmsg.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>

#include "common/fdpass.h"

#define UPMSG_MAGIC 0x50554d45u  /* "EMUP" */

/*
 * The envelope every message starts with, the same in every version: with
 * it, UPM_ANSWER (arg: understood) and UPM_READY read alike whatever the
 * two binaries' state formats are.
 */
struct upwire_head {
	uint32_t magic;
	uint32_t version;
	uint32_t kind;
	uint32_t arg;              /* UPM_ANSWER: understood */
	int32_t pid;               /* UPM_STATE: the old master; UPM_READY: the new one */
	uint32_t generation;       /* UPM_STATE, UPM_READY: the sender's serving one */
	char binary_version[32];   /* UPM_READY */
};

/* Format 1 of everything after the envelope. */
struct upwire_v1 {
	struct upwire_head h;
	int32_t nslots;
	uint32_t fds;
	uint64_t reloads_ok;
	uint64_t reloads_failed;
	uint64_t upgrades_ok;
	uint64_t upgrades_failed;
	int64_t started_ms;
	int32_t slot;
	uint32_t more;
	uint32_t nfds;
	uint32_t entry[CHAN_MAX_FDS];
};

/* Format 2: format 1, then the TLS session ticket keys (UPM_STATE only). */
struct upwire_v2 {
	struct upwire_v1 v1;
	uint32_t has_tickets;
	uint32_t pad;
	int64_t tickets_created_ms;
	struct tlsctx_ticket_key tickets[TLSCTX_TICKET_KEYS];
};

_Static_assert(CHAN_MAX_FDS <= FDPASS_MAX_FDS, "fdpass carries a hand-over's descriptors");

/* Format 2's addition: the keys, in a state message only. */
static void
wire_fill_v2(struct upwire_v2 *w2, const struct upmsg *m)
{
	if (m->kind != UPM_STATE || !m->state.has_tickets)
		return;
	w2->has_tickets = 1;
	w2->tickets_created_ms = m->state.tickets.created_ms;
	memcpy(w2->tickets, m->state.tickets.k, sizeof(w2->tickets));
}

static void
wire_fill(struct upwire_v2 *w2, const struct upmsg *m, uint32_t version)
{
	const struct upmsg_state *st = &m->state;
	struct upwire_v1 *w = &w2->v1;

	memset(w2, 0, sizeof(*w2));
	wire_fill_v2(w2, m);
	w->h = (struct upwire_head){ .magic = UPMSG_MAGIC, .version = version, .kind = m->kind,
	    .arg = m->understood, .pid = m->kind == UPM_STATE ? st->pid : m->pid,
	    .generation = m->kind == UPM_STATE ? st->generation : m->generation };
	memcpy(w->h.binary_version, m->binary_version, sizeof(w->h.binary_version) - 1);
	w->nslots = st->nslots;
	w->fds = st->fds;
	w->reloads_ok = st->reloads_ok;
	w->reloads_failed = st->reloads_failed;
	w->upgrades_ok = st->upgrades_ok;
	w->upgrades_failed = st->upgrades_failed;
	w->started_ms = st->started_ms;
	w->slot = m->slot;
	if (m->kind == UPM_HAND_OVER) {
		w->more = m->hand.more;
		w->nfds = m->hand.nfds;
		memcpy(w->entry, m->hand.entry, sizeof(w->entry));
	}
}

int
upmsg_send(int fd, const struct upmsg *m, uint32_t version, const int *fds, uint32_t nfds)
{
	struct upwire_v2 w;
	/* Format 1 is what an older binary reads whole; any other is the larger one. */
	size_t len = version == 1 ? sizeof(struct upwire_v1) : sizeof(w);
	struct iovec iov = { .iov_base = &w, .iov_len = len };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
	union fdpass_buf cm;
	ssize_t sent;

	if (m->kind == UPM_HAND_OVER) {
		fds = m->hand.fds;
		nfds = m->hand.nfds;
	}
	if (nfds > CHAN_MAX_FDS) {
		errno = EINVAL;
		return -1;
	}
	wire_fill(&w, m, version);
	fdpass_attach(&mh, cm.buf, fds, nfds);
	sent = sendmsg(fd, &mh, MSG_NOSIGNAL);
	explicit_bzero(&w, sizeof(w));  /* the ticket keys */
	return sent == (ssize_t)len ? 0 : -1;
}

/* The envelope into M: all that a message of another version says. */
static void
head_read(const struct upwire_head *h, struct upmsg *m)
{
	m->kind = h->kind;
	m->version = h->version;
	m->understood = h->arg != 0;
	m->pid = h->pid;
	m->generation = h->generation;
	memcpy(m->binary_version, h->binary_version, sizeof(m->binary_version) - 1);
}

/* The body (format 2's is format 1's, with UPM_TAKEN) into M; -1 when it does not hold together. */
static int
wire_read(const struct upwire_v1 *w, struct upmsg *m)
{
	m->slot = w->slot;
	switch (w->h.kind) {
	case UPM_STATE:
		m->understood = true;
		m->state = (struct upmsg_state){ .pid = w->h.pid, .generation = w->h.generation,
		    .nslots = w->nslots, .fds = w->fds, .reloads_ok = w->reloads_ok,
		    .reloads_failed = w->reloads_failed, .upgrades_ok = w->upgrades_ok,
		    .upgrades_failed = w->upgrades_failed, .started_ms = w->started_ms };
		return (uint32_t)__builtin_popcount(w->fds & 7) == m->nfds && w->h.pid > 0 &&
		    w->nslots > 0 ? 0 : -1;
	case UPM_HAND_OVER:
		if (w->nfds != m->nfds || w->slot < 0)
			return -1;
		m->hand = (struct chan_msg){ .kind = CHAN_HAND_OVER, .more = w->more != 0,
		    .nfds = m->nfds };
		memcpy(m->hand.entry, w->entry, sizeof(m->hand.entry));
		memcpy(m->hand.fds, m->fds, sizeof(int) * m->nfds);
		m->nfds = 0;  /* they belong to hand now */
		return 0;
	case UPM_ANSWER:
	case UPM_READY:
	case UPM_TAKE_OVER:
	case UPM_HAND_OVER_END:
	case UPM_TAKEN:
	case UPM_MAIN:
		return m->nfds == 0 ? 0 : -1;
	}
	return -1;
}

/* Format 2's addition into M's state. */
static void
wire_read_v2(const struct upwire_v2 *w2, struct upmsg *m)
{
	if (m->kind != UPM_STATE || !w2->has_tickets)
		return;
	m->state.has_tickets = true;
	m->state.tickets.created_ms = w2->tickets_created_ms;
	memcpy(m->state.tickets.k, w2->tickets, sizeof(m->state.tickets.k));
}

/* The size a message of a format we read has: 0 for the others. */
static size_t
wire_size(uint32_t version)
{
	return version == 1 ? sizeof(struct upwire_v1) : version == 2 ? sizeof(struct upwire_v2) : 0;
}

int
upmsg_recv(int fd, struct upmsg *m)
{
	union { struct upwire_v2 w2; struct upwire_v1 w; char bigger[sizeof(struct upwire_v2) * 4]; } buf;
	int rc = 1, flags;
	ssize_t n;

	memset(m, 0, sizeof(*m));
	n = fdpass_recv(fd, &buf, sizeof(buf), m->fds, CHAN_MAX_FDS, &m->nfds, &flags);
	if (n <= 0)
		return n == 0 ? 0 : -1;
	if ((size_t)n < sizeof(struct upwire_head) || buf.w.h.magic != UPMSG_MAGIC ||
	    (flags & (MSG_TRUNC | MSG_CTRUNC)))
		goto malformed;
	if ((size_t)n < sizeof(struct upwire_head))
		goto malformed;
	head_read(&buf.w.h, m);
	if (wire_size(m->version) == 0) {
		/* Another format: only the envelope is ours to read (see upmsg.h). */
		fdpass_close(m->fds, m->nfds);
		m->nfds = 0;
		if (m->kind == UPM_STATE)
			m->understood = false;
		goto out;
	}
	if ((size_t)n != wire_size(m->version) || wire_read(&buf.w, m) == -1)
		goto malformed;
	if (m->version >= 2)
		wire_read_v2(&buf.w2, m);
	goto out;
malformed:
	fdpass_close(m->fds, m->nfds);
	memset(m, 0, sizeof(*m));
	errno = EPROTO;
	rc = -1;
out:
	explicit_bzero(&buf, sizeof(buf));  /* the ticket keys */
	return rc;
}

void
upmsg_close_fds(struct upmsg *m)
{
	fdpass_close(m->fds, m->nfds);
	m->nfds = 0;
	if (m->kind == UPM_HAND_OVER)
		chan_close_fds(&m->hand);
}
