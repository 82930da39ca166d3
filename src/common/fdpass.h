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

/*
 * Attaches nfds descriptors (none: mh is left without control data) to mh,
 * in buf: the caller's, aligned as a struct cmsghdr and at least
 * CMSG_SPACE(sizeof(int) * nfds) bytes.
 */
void fdpass_attach(struct msghdr *mh, void *buf, const int *fds, size_t nfds);

/*
 * Takes the descriptors a received mh carries into fds, at most max of
 * them; any beyond are closed, so that none leaks. Returns how many it kept.
 */
uint32_t fdpass_take(struct msghdr *mh, int *fds, uint32_t max);

/* Closes the n descriptors in fds. */
void fdpass_close(const int *fds, uint32_t n);

#endif
