#include "master/metrics.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/log.h"
#include "common/sock.h"

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

enum http_req
metrics_read(struct reqconn *c)
{
	const char *path = c->buf + 4;

	if (reqconn_read(c) == -1)
		return HTTP_BAD;
	if (strstr(c->buf, "\r\n\r\n") == NULL && strstr(c->buf, "\n\n") == NULL)
		return HTTP_MORE;
	if (strncmp(c->buf, "GET ", 4) != 0)
		return HTTP_BAD;
	if (strncmp(path, "/metrics", 8) == 0 && strchr(" ?\r", path[8]) != NULL)
		return HTTP_METRICS;
	return HTTP_NOT_FOUND;
}

void
metrics_reply(struct reqconn *c, enum http_req req, const char *body)
{
	const char *status = req == HTTP_METRICS ? "200 OK" :
	    req == HTTP_NOT_FOUND ? "404 Not Found" : "400 Bad Request";
	char head[256];

	if (body == NULL)
		body = req == HTTP_METRICS ? "" : "only GET /metrics is served here\n";
	snprintf(head, sizeof(head), "HTTP/1.0 %s\r\n"
	    "Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"
	    "Content-Length: %zu\r\nConnection: close\r\n\r\n", status, strlen(body));
	reqconn_finish(c, head, body);
}
