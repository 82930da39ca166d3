#include "master/metrics.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/log.h"
#include "common/sock.h"
#include "master/events.h"

int
metrics_listen(const struct cfg *cfg, char *err, size_t errlen)
{
	struct sockaddr_storage ss;
	socklen_t len;
	char where[128];
	int fd;

	if (sock_resolve(cfg->metrics_address, cfg->metrics_port, SOCK_STREAM, &ss, &len,
	    err, errlen) == -1)
		return -1;
	if ((fd = sock_listen(&ss, len, SOCK_STREAM, err, errlen)) != -1) {
		sock_addr_format(&ss, where, sizeof(where));
		log_info("metrics on http://%s/metrics", where);
	}
	return fd;
}

struct http_client *
metrics_accept(int lfd, int64_t deadline_ms)
{
	struct http_client *c;
	int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

	if (fd == -1)
		return NULL;
	if ((c = calloc(1, sizeof(*c))) == NULL) {
		close(fd);
		return NULL;
	}
	c->ev_kind = MEV_HTTP_CLIENT;
	c->fd = fd;
	c->deadline_ms = deadline_ms;
	return c;
}

enum http_req
metrics_read(struct http_client *c)
{
	ssize_t n = read(c->fd, c->req + c->len, sizeof(c->req) - 1 - c->len);

	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return HTTP_MORE;
	if (n <= 0)
		return HTTP_BAD;
	c->len += (size_t)n;
	c->req[c->len] = '\0';
	if (strstr(c->req, "\r\n\r\n") == NULL && strstr(c->req, "\n\n") == NULL)
		return c->len == sizeof(c->req) - 1 ? HTTP_BAD : HTTP_MORE;
	if (strncmp(c->req, "GET ", 4) != 0)
		return HTTP_BAD;
	if (strncmp(c->req + 4, "/metrics ", 9) == 0 || strncmp(c->req + 4, "/metrics\r", 9) == 0 ||
	    strncmp(c->req + 4, "/metrics?", 9) == 0)
		return HTTP_METRICS;
	return HTTP_NOT_FOUND;
}

static void
send_all(int fd, const char *s, size_t len)
{
	while (len > 0) {
		ssize_t n = send(fd, s, len, MSG_NOSIGNAL);
		if (n <= 0)
			return;
		s += n;
		len -= (size_t)n;
	}
}

void
metrics_reply(struct http_client *c, enum http_req req, const char *body)
{
	struct timeval tv = { .tv_sec = 1 };
	const char *status = req == HTTP_METRICS ? "200 OK" :
	    req == HTTP_NOT_FOUND ? "404 Not Found" : "400 Bad Request";
	char head[256];
	int flags = fcntl(c->fd, F_GETFL), n;

	if (body == NULL)
		body = req == HTTP_METRICS ? "" : "only GET /metrics is served here\n";
	if (flags != -1)
		fcntl(c->fd, F_SETFL, flags & ~O_NONBLOCK);
	setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	n = snprintf(head, sizeof(head), "HTTP/1.0 %s\r\n"
	    "Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"
	    "Content-Length: %zu\r\nConnection: close\r\n\r\n", status, strlen(body));
	send_all(c->fd, head, (size_t)n);
	send_all(c->fd, body, strlen(body));
	close(c->fd);
	free(c);
}
