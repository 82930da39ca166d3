#include "master/admin.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/log.h"
#include "master/control.h"
#include "master/events.h"
#include "master/metrics.h"

/* A client that has not sent its request by then is dropped. */
#define ADMIN_REQUEST_TIMEOUT_MS 5000
/* At most this many /metrics clients at once; more are closed at once. */
#define ADMIN_HTTP_MAX 32

static void
admin_watch(struct admin *a, int fd, struct ev_source *src)
{
	if (ev_add(a->epfd, fd, EPOLLIN, src) == -1)
		log_warn("epoll_ctl admin");
}

static void
admin_init(struct admin *a, int epfd)
{
	memset(a, 0, sizeof(*a));
	a->epfd = epfd;
	a->ctl_fd = -1;
	a->metrics_fd = -1;
	a->ctl_ev.kind = MEV_CONTROL;
	a->metrics_ev.kind = MEV_METRICS;
}

/* Binds whichever of CFG's operator sockets is not open yet; -1 with err. */
static int
admin_open_missing(struct admin *a, const struct cfg *cfg, char *err, size_t errlen)
{
	if (cfg->control_socket[0] != '\0' && a->ctl_fd == -1) {
		if ((a->ctl_fd = control_listen(cfg->control_socket, err, errlen)) == -1)
			return -1;
		if ((a->ctl_path = strdup(cfg->control_socket)) == NULL)
			fatal("strdup");
	}
	if (cfg->metrics_address[0] != '\0' && a->metrics_fd == -1) {
		char why[256];
		if ((a->metrics_fd = metrics_listen(cfg, why, sizeof(why))) == -1) {
			snprintf(err, errlen, "metrics: %s", why);
			return -1;
		}
	}
	return 0;
}

static void
admin_watch_listeners(struct admin *a)
{
	if (a->ctl_fd != -1)
		admin_watch(a, a->ctl_fd, &a->ctl_ev);
	if (a->metrics_fd != -1)
		admin_watch(a, a->metrics_fd, &a->metrics_ev);
}

void
admin_pause(struct admin *a)
{
	if (a->ctl_fd != -1)
		ev_del(a->epfd, a->ctl_fd);
	if (a->metrics_fd != -1)
		ev_del(a->epfd, a->metrics_fd);
}

void
admin_resume(struct admin *a)
{
	admin_watch_listeners(a);
}

int
admin_open(struct admin *a, int epfd, const struct cfg *cfg, char *err, size_t errlen)
{
	admin_init(a, epfd);
	if (admin_open_missing(a, cfg, err, errlen) == -1)
		return -1;
	admin_watch_listeners(a);
	return 0;
}

/* The path a listening Unix socket is bound to, malloc'd; NULL when it has none. */
static char *
bound_path(int fd)
{
	struct sockaddr_un sun;
	socklen_t len = sizeof(sun);

	memset(&sun, 0, sizeof(sun));
	if (getsockname(fd, (struct sockaddr *)&sun, &len) == -1 || sun.sun_family != AF_UNIX ||
	    sun.sun_path[0] == '\0')
		return NULL;
	return strndup(sun.sun_path, sizeof(sun.sun_path));
}

void
admin_adopt(struct admin *a, int epfd, const struct cfg *cfg, int ctl_fd, int metrics_fd)
{
	admin_init(a, epfd);
	a->metrics_fd = metrics_fd;
	if (ctl_fd == -1)
		return;
	a->ctl_fd = ctl_fd;
	if ((a->ctl_path = bound_path(ctl_fd)) == NULL && (a->ctl_path = strdup(cfg->control_socket)) == NULL)
		fatal("strdup");
	if (strcmp(a->ctl_path, cfg->control_socket) != 0)
		log_warnx("changing control_socket needs a restart; still using %s", a->ctl_path);
}

int
admin_take_over(struct admin *a, const struct cfg *cfg, char *err, size_t errlen)
{
	int rc = admin_open_missing(a, cfg, err, errlen);

	admin_watch_listeners(a);
	return rc;
}

void
admin_release(struct admin *a)
{
	if (a->ctl_fd != -1) {
		ev_del(a->epfd, a->ctl_fd);
		close(a->ctl_fd);
		a->ctl_fd = -1;
	}
	free(a->ctl_path);
	a->ctl_path = NULL;
	if (a->metrics_fd != -1) {
		ev_del(a->epfd, a->metrics_fd);
		close(a->metrics_fd);
		a->metrics_fd = -1;
	}
}

static void
list_unlink(struct reqconn **list, struct reqconn *c)
{
	for (struct reqconn **pp = list; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == c) {
			*pp = c->next;
			return;
		}
	}
}

static bool
is_http(const struct reqconn *c)
{
	return c->ev.kind == MEV_HTTP_CLIENT;
}

/*
 * Out of epoll before the answer closes it: a worker just forked may still
 * hold a copy of the fd, and epoll forgets an fd only when every copy is
 * closed. (A queued client is out already; ENOENT then is harmless.)
 */
static void
client_forget(struct admin *a, struct reqconn *c)
{
	ev_del(a->epfd, c->fd);
	list_unlink(is_http(c) ? &a->http_clients : &a->ctl_clients, c);
}

void
admin_answer(struct admin *a, struct reqconn *c, bool ok, const char *body)
{
	client_forget(a, c);
	if (is_http(c))
		metrics_reply(c, ok ? HTTP_METRICS : HTTP_BAD, body);
	else
		control_reply(c, ok, body);
}

/* Hands a complete request to the loop; the client is not read any more. */
static void
admin_queue(struct admin *a, struct reqconn *c, enum admin_req what)
{
	if (a->nqueued == ADMIN_QUEUE) {
		admin_answer(a, c, false, "busy: too many requests at once\n");
		return;
	}
	ev_del(a->epfd, c->fd);
	c->queued = true;
	a->queue[a->nqueued++] = (struct admin_request){ .what = what, .client = c };
}

bool
admin_take(struct admin *a, struct admin_request *req)
{
	if (a->nqueued == 0)
		return false;
	*req = a->queue[0];
	memmove(&a->queue[0], &a->queue[1], --a->nqueued * sizeof(a->queue[0]));
	req->client->queued = false;
	return true;
}

void
admin_defer(struct admin *a, struct reqconn *c)
{
	(void)a;
	c->waiting = true;
}

void
admin_answer_deferred(struct admin *a, bool ok, const char *body)
{
	for (struct reqconn *c = a->ctl_clients, *next; c != NULL; c = next) {
		next = c->next;
		if (c->waiting)
			admin_answer(a, c, ok, body);
	}
}

static void
ctl_event(struct admin *a, struct reqconn *c)
{
	static const enum admin_req of_cmd[] = {
		[CTL_STATUS] = ADMIN_STATUS, [CTL_STATUS_JSON] = ADMIN_STATUS_JSON,
		[CTL_RELOAD] = ADMIN_RELOAD, [CTL_RESPAWN] = ADMIN_RESPAWN, [CTL_STOP] = ADMIN_STOP,
		[CTL_QUIT] = ADMIN_QUIT, [CTL_REOPEN] = ADMIN_REOPEN, [CTL_UPGRADE] = ADMIN_UPGRADE,
		[CTL_DRAIN] = ADMIN_DRAIN, [CTL_READY] = ADMIN_READY, [CTL_MAINT] = ADMIN_MAINT,
	};
	enum ctl_cmd cmd = control_read(c);

	if (cmd == CTL_NONE)
		return;
	if (cmd == CTL_BAD)
		admin_answer(a, c, false, "unknown command (status, status-json, reload, upgrade, "
		    "respawn, stop, quit, reopen, drain, ready, maint)\n");
	else
		admin_queue(a, c, of_cmd[cmd]);
}

static void
http_event(struct admin *a, struct reqconn *c)
{
	enum http_req req = metrics_read(c);

	if (req == HTTP_MORE)
		return;
	if (req == HTTP_METRICS) {
		admin_queue(a, c, ADMIN_METRICS);
		return;
	}
	client_forget(a, c);
	metrics_reply(c, req, NULL);
}

static void
accept_control(struct admin *a, int64_t now)
{
	struct reqconn *c = reqconn_accept(a->ctl_fd, MEV_CTL_CLIENT, now + ADMIN_REQUEST_TIMEOUT_MS);

	if (c == NULL)
		return;
	c->next = a->ctl_clients;
	a->ctl_clients = c;
	admin_watch(a, c->fd, &c->ev);
}

static void
accept_http(struct admin *a, int64_t now)
{
	struct reqconn *c = reqconn_accept(a->metrics_fd, MEV_HTTP_CLIENT,
	    now + ADMIN_REQUEST_TIMEOUT_MS);
	int n = 0;

	if (c == NULL)
		return;
	for (const struct reqconn *o = a->http_clients; o != NULL; o = o->next)
		n++;
	if (n >= ADMIN_HTTP_MAX) {
		metrics_reply(c, HTTP_BAD, "too many clients\n");
		return;
	}
	c->next = a->http_clients;
	a->http_clients = c;
	admin_watch(a, c->fd, &c->ev);
}

void
admin_event(struct admin *a, struct ev_source *src, int64_t now)
{
	switch (src->kind) {
	case MEV_CONTROL:
		accept_control(a, now);
		break;
	case MEV_CTL_CLIENT:
		ctl_event(a, (struct reqconn *)src);
		break;
	case MEV_METRICS:
		accept_http(a, now);
		break;
	case MEV_HTTP_CLIENT:
		http_event(a, (struct reqconn *)src);
		break;
	default:
		log_warnx("unknown event source %d", src->kind);
		break;
	}
}

/* Drops LIST's clients past their deadline; returns the earliest deadline left, or NEXT. */
static int64_t
expire_list(struct admin *a, struct reqconn *list, int64_t now, int64_t next)
{
	for (struct reqconn *c = list, *cn; c != NULL; c = cn) {
		cn = c->next;
		if (c->waiting || c->queued)
			continue;
		if (now >= c->deadline_ms)
			admin_answer(a, c, false, is_http(c) ? "request timeout\n" :
			    "no command received in time\n");
		else
			next = ev_sooner(next, c->deadline_ms);
	}
	return next;
}

int64_t
admin_expire(struct admin *a, int64_t now)
{
	return expire_list(a, a->http_clients, now, expire_list(a, a->ctl_clients, now, 0));
}

void
admin_close(struct admin *a)
{
	while (a->ctl_clients != NULL)
		admin_answer(a, a->ctl_clients, false, "the master is exiting\n");
	while (a->http_clients != NULL)
		admin_answer(a, a->http_clients, false, "the master is exiting\n");
	a->nqueued = 0;
	if (a->ctl_fd != -1) {
		close(a->ctl_fd);
		unlink(a->ctl_path);
	}
	free(a->ctl_path);
	if (a->metrics_fd != -1)
		close(a->metrics_fd);
}
