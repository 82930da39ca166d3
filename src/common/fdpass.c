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

uint32_t
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

void
fdpass_close(const int *fds, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++)
		close(fds[i]);
}
