/*
 * metrics: a minimal HTTP/1.0 responder for GET /metrics on the master's
 * own listener. Requests are read without blocking the master; the answer
 * (a few kilobytes) is written with a short send timeout, and the
 * connection closed. Anything but GET /metrics gets 404 or 400.
 */
#ifndef EM_METRICS_H
#define EM_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "common/cfg.h"

struct http_client {
	int ev_kind;      /* MEV_HTTP_CLIENT */
	int fd;
	char req[2048];
	size_t len;
	int64_t deadline_ms;
	struct http_client *next;
};

enum http_req { HTTP_MORE, HTTP_METRICS, HTTP_NOT_FOUND, HTTP_BAD };

/* Opens the listener named by cfg->metrics_address/port; -1 with err on failure. */
int metrics_listen(const struct cfg *cfg, char *err, size_t errlen);

struct http_client *metrics_accept(int lfd, int64_t deadline_ms);

/* Reads what arrived; HTTP_MORE until the request head is complete. */
enum http_req metrics_read(struct http_client *c);

/* Answers with the status and body (NULL for none), closes and frees. */
void metrics_reply(struct http_client *c, enum http_req req, const char *body);

#endif
