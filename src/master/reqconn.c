#include "master/reqconn.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "common/sock.h"

/* How long writing one answer may take before the client is given up. */
#define REQCONN_SEND_TIMEOUT_S 2

struct reqconn *
reqconn_accept(int lfd, uint8_t ev_kind, int64_t deadline_ms)
{
	struct reqconn *c;
	int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

	if (fd == -1)
		return NULL;
	if ((c = calloc(1, sizeof(*c))) == NULL) {
		close(fd);
		return NULL;
	}
	c->ev.kind = ev_kind;
	c->fd = fd;
	c->deadline_ms = deadline_ms;
	return c;
}

int
reqconn_read(struct reqconn *c)
{
	ssize_t n;

	if (c->len == sizeof(c->buf) - 1)
		return -1;
	n = read(c->fd, c->buf + c->len, sizeof(c->buf) - 1 - c->len);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return 0;
	if (n <= 0)
		return -1;
	c->len += (size_t)n;
	c->buf[c->len] = '\0';
	return 1;
}

void
reqconn_finish(struct reqconn *c, const char *head, const char *body)
{
	struct timeval tv = { .tv_sec = REQCONN_SEND_TIMEOUT_S };
	int flags = fcntl(c->fd, F_GETFL);

	/* Blocking, bounded by the timeout: answers are small and clients local. */
	if (flags != -1)
		fcntl(c->fd, F_SETFL, flags & ~O_NONBLOCK);
	setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	/* A failure is the client's loss only: it vanished or stopped reading. */
	if (head != NULL)
		(void)sock_send_all(c->fd, head, strlen(head));
	if (body != NULL)
		(void)sock_send_all(c->fd, body, strlen(body));
	close(c->fd);  /* the owner took it out of its epoll set first */
	free(c);
}
