#include "master/notify.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/ev.h"
#include "common/fdpass.h"

/* The kernel passes at most 253 descriptors in one message (SCM_MAX_FD). */
#define NOTIFY_FDS_PER_MSG 253

static struct {
	int fd;
	struct sockaddr_un addr;
	socklen_t addrlen;
} nt = { .fd = -1 };

void
notify_init(void)
{
	const char *path = getenv("NOTIFY_SOCKET");
	size_t len;

	if (nt.fd != -1)
		close(nt.fd);
	nt.fd = -1;

	if (path == NULL || (path[0] != '/' && path[0] != '@') ||
	    (len = strlen(path)) >= sizeof(nt.addr.sun_path))
		return;
	nt.addr.sun_family = AF_UNIX;
	memcpy(nt.addr.sun_path, path, len);
	if (path[0] == '@')
		nt.addr.sun_path[0] = '\0';  /* an abstract socket */
	nt.addrlen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len);
	nt.fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (nt.fd == -1)
		log_warn("notify socket");
}

void
notify_send(const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	int n;

	if (nt.fd == -1)
		return;
	va_start(ap, fmt);
	n = vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(msg))
		return;
	if (sendto(nt.fd, msg, (size_t)n, MSG_NOSIGNAL, (struct sockaddr *)&nt.addr, nt.addrlen) == -1)
		log_debug("sd_notify: %m");
}

/* One datagram of MSG, with FDS (NFDS of them, may be 0) attached. */
static int
notify_sendmsg(const char *msg, const int *fds, size_t nfds)
{
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(sizeof(int) * NOTIFY_FDS_PER_MSG)];
	} ctl;
	struct iovec iov = { .iov_base = (void *)msg, .iov_len = strlen(msg) };
	struct msghdr mh = {
		.msg_name = &nt.addr, .msg_namelen = nt.addrlen, .msg_iov = &iov, .msg_iovlen = 1,
	};

	fdpass_attach(&mh, ctl.buf, fds, nfds);
	return sendmsg(nt.fd, &mh, MSG_NOSIGNAL) == -1 ? -1 : 0;
}

/*
 * Remove, then store: the sockets stay open in the master meanwhile, so the
 * instant the store is empty closes no port. One name for all: the next
 * master matches what it is given by socket type and address, not by name.
 */
int
notify_store_fds(const int *fds, size_t n)
{
	if (nt.fd == -1)
		return 0;
	if (notify_sendmsg("FDSTOREREMOVE=1\nFDNAME=" NOTIFY_FDNAME, NULL, 0) == -1)
		goto fail;
	for (size_t i = 0; i < n; i += NOTIFY_FDS_PER_MSG) {
		size_t k = n - i < NOTIFY_FDS_PER_MSG ? n - i : NOTIFY_FDS_PER_MSG;

		if (notify_sendmsg("FDSTORE=1\nFDNAME=" NOTIFY_FDNAME, fds + i, k) == -1)
			goto fail;
	}
	return 0;
fail:
	log_warn("sd_notify FDSTORE: the listeners may close on a restart");
	return -1;
}

unsigned long long
notify_monotonic_usec(void)
{
	return (unsigned long long)(ev_now_ns() / 1000);
}
