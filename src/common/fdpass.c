/* fdpass: SCM_RIGHTS control data in and out (see fdpass.h). */
#include "common/fdpass.h"

#include <string.h>
#include <unistd.h>

void
fdpass_attach(struct msghdr *mh, void *buf, const int *fds, size_t nfds)
{
	struct cmsghdr *c;

	if (nfds == 0)
		return;
	memset(buf, 0, CMSG_SPACE(sizeof(int) * nfds));
	mh->msg_control = buf;
	mh->msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
	c = CMSG_FIRSTHDR(mh);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
	memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
}

/* The descriptors a received mh carries into fds, at most max; those beyond are closed. */
static uint32_t
fdpass_take(struct msghdr *mh, int *fds, uint32_t max)
{
	uint32_t n = 0;

	for (struct cmsghdr *c = CMSG_FIRSTHDR(mh); c != NULL; c = CMSG_NXTHDR(mh, c)) {
		size_t k;

		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < k; i++) {
			int fd;

			/* memcpy: CMSG_DATA need not be aligned for an int */
			memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
			if (n < max)
				fds[n++] = fd;
			else
				close(fd);
		}
	}
	return n;
}

ssize_t
fdpass_recv(int fd, void *buf, size_t len, int *fds, uint32_t max, uint32_t *nfds, int *flags)
{
	union fdpass_buf cm;
	struct iovec iov = { .iov_base = buf, .iov_len = len };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cm.buf,
	    .msg_controllen = CMSG_SPACE(sizeof(int) * (max < FDPASS_MAX_FDS ? max : FDPASS_MAX_FDS)) };
	ssize_t n = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);

	*nfds = 0;
	*flags = 0;
	if (n <= 0)
		return n;
	*nfds = fdpass_take(&mh, fds, max);
	*flags = mh.msg_flags;
	return n;
}

void
fdpass_close(const int *fds, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++)
		close(fds[i]);
}
