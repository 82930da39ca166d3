#include "common/chan.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>

#include "common/fdpass.h"

#define CHAN_MAGIC 0x45434831u  /* "ECH1": also the version */

/* What travels as the message's bytes; the descriptors go beside it. */
struct chan_wire {
	uint32_t magic;
	uint32_t kind;
	uint32_t nfds;
	uint32_t more;
	uint32_t entry[CHAN_MAX_FDS];
};

_Static_assert(CHAN_MAX_FDS <= FDPASS_MAX_FDS, "fdpass carries a whole chan message");

int
chan_send(int fd, const struct chan_msg *m)
{
	struct chan_wire w = { .magic = CHAN_MAGIC, .kind = m->kind, .nfds = m->nfds,
	    .more = m->more };
	struct iovec iov = { .iov_base = &w, .iov_len = sizeof(w) };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
	union fdpass_buf cm;

	if (m->nfds > CHAN_MAX_FDS) {
		errno = EINVAL;
		return -1;
	}
	memcpy(w.entry, m->entry, sizeof(w.entry[0]) * m->nfds);
	fdpass_attach(&mh, cm.buf, m->fds, m->nfds);
	return sendmsg(fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT) == (ssize_t)sizeof(w) ? 0 : -1;
}

void
chan_close_fds(struct chan_msg *m)
{
	fdpass_close(m->fds, m->nfds);
	m->nfds = 0;
}

static bool
chan_wire_ok(const struct chan_wire *w, ssize_t len, uint32_t nfds, int flags)
{
	return len == (ssize_t)sizeof(*w) && !(flags & (MSG_TRUNC | MSG_CTRUNC)) &&
	    w->magic == CHAN_MAGIC && w->kind >= CHAN_READY && w->kind <= CHAN_TAKE_OVER &&
	    w->nfds == nfds && (w->kind != CHAN_TAKE_OVER || nfds == 1);
}

int
chan_recv(int fd, struct chan_msg *m)
{
	struct chan_wire w;
	int flags;
	ssize_t n;

	memset(m, 0, sizeof(*m));
	n = fdpass_recv(fd, &w, sizeof(w), m->fds, CHAN_MAX_FDS, &m->nfds, &flags);
	if (n <= 0)
		return n == 0 ? 0 : -1;
	if (!chan_wire_ok(&w, n, m->nfds, flags)) {
		chan_close_fds(m);
		errno = EPROTO;
		return -1;
	}
	m->kind = w.kind;
	m->more = w.more != 0;
	memcpy(m->entry, w.entry, sizeof(m->entry));
	return 1;
}
