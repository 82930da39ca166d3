/*
 * fdpass: descriptors beside a message's bytes (SCM_RIGHTS), for the
 * master-worker channel (chan), the master-to-master upgrade messages
 * (upmsg) and systemd's descriptor store (notify). It fills and reads the
 * control data only: each caller keeps its own buffer, wire format, flags
 * and error handling.
 */
#ifndef EM_FDPASS_H
#define EM_FDPASS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

/* The most descriptors fdpass_recv takes, and fdpass_buf holds, in one message. */
#define FDPASS_MAX_FDS 64

/* Room for the control data of FDPASS_MAX_FDS descriptors, aligned. */
union fdpass_buf {
	char buf[CMSG_SPACE(sizeof(int) * FDPASS_MAX_FDS)];
	struct cmsghdr align;
};

/*
 * Attaches nfds descriptors (none: mh is left without control data) to mh,
 * in buf: the caller's, aligned as a struct cmsghdr and at least
 * CMSG_SPACE(sizeof(int) * nfds) bytes.
 */
void fdpass_attach(struct msghdr *mh, void *buf, const int *fds, size_t nfds);

/*
 * One datagram in, without waiting (MSG_DONTWAIT): its bytes into buf (len
 * of them at most), and at most max descriptors, close-on-exec
 * (MSG_CMSG_CLOEXEC), into fds, their number in *nfds; any beyond are
 * closed, so that none leaks. *flags gets the message's flags (MSG_TRUNC,
 * MSG_CTRUNC: for the caller to refuse). Returns recvmsg's result; when it
 * is 0 or -1 (errno set), *nfds and *flags are 0.
 */
ssize_t fdpass_recv(int fd, void *buf, size_t len, int *fds, uint32_t max,
    uint32_t *nfds, int *flags);

/* Closes the n descriptors in fds. */
void fdpass_close(const int *fds, uint32_t n);

#endif
