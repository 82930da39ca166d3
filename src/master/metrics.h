/*
 * metrics: a minimal HTTP/1.0 responder for GET /metrics on the master's
 * own listener. Anything but GET /metrics gets 404 or 400.
 */
#ifndef EM_METRICS_H
#define EM_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "common/cfg.h"
#include "master/reqconn.h"

enum http_req { HTTP_MORE, HTTP_METRICS, HTTP_NOT_FOUND, HTTP_BAD };

/* Opens the listener named by cfg->metrics_address/port; -1 with err on failure. */
int metrics_listen(const struct cfg *cfg, char *err, size_t errlen);

/* Reads and parses a request; HTTP_MORE until its head is complete. */
enum http_req metrics_read(struct reqconn *c);

/* Answers with the status and body (NULL for a default), closes and frees. */
void metrics_reply(struct reqconn *c, enum http_req req, const char *body);

#endif
