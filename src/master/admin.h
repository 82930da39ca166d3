/*
 * admin: the master's sockets for operators, the control socket and the
 * Prometheus /metrics page. It accepts, reads and parses requests without
 * blocking the loop, and never acts on one: a complete request waits in a
 * queue until the master's loop takes it (admin_take), acts, and answers
 * (admin_answer), the way OpenBSD httpd's control process forwards to its
 * parent. A client belongs to admin from accept to answer; the master only
 * holds it between admin_take and its answer or admin_defer.
 */
#ifndef EM_ADMIN_H
#define EM_ADMIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/cfg.h"
#include "common/ev.h"
#include "master/reqconn.h"

/* What an operator asked for; every one is the master's to act on. */
enum admin_req {
	ADMIN_STATUS,
	ADMIN_STATUS_JSON,
	ADMIN_METRICS,     /* GET /metrics: answered with status_prometheus */
	ADMIN_RELOAD,
	ADMIN_RESPAWN,
	ADMIN_STOP,
	ADMIN_QUIT,
	ADMIN_REOPEN,
	ADMIN_DRAIN,       /* what the HAProxy agent answers: drain, ready, maint */
	ADMIN_READY,
	ADMIN_MAINT,
	ADMIN_UPGRADE,
};

struct admin_request {
	enum admin_req what;
	struct reqconn *client;
};

/* At most this many requests wait for the loop; one epoll batch is fewer. */
#define ADMIN_QUEUE 64

struct admin {
	int epfd;
	struct ev_source ctl_ev;       /* the control socket's listener */
	struct ev_source metrics_ev;   /* the /metrics listener */
	int ctl_fd;                    /* -1 = no control socket */
	char *ctl_path;
	int metrics_fd;                /* -1 = no /metrics */
	struct reqconn *ctl_clients;
	struct reqconn *http_clients;
	struct admin_request queue[ADMIN_QUEUE];
	size_t nqueued;
};

/*
 * Opens the control socket and the /metrics listener that CFG names (either
 * may be off) and watches them in epfd, with the MEV_ kinds of events.h.
 * -1 with a message in err.
 */
int admin_open(struct admin *a, int epfd, const struct cfg *cfg, char *err, size_t errlen);

/*
 * A live upgrade's new master: the old master's control socket and
 * /metrics listeners (-1: it had none) become ours, but are not watched
 * until admin_take_over; the old master answers until then.
 */
void admin_adopt(struct admin *a, int epfd, const struct cfg *cfg, int ctl_fd, int metrics_fd);

/* Binds what CFG names and was not adopted, and watches them all; -1 with err. */
int admin_take_over(struct admin *a, const struct cfg *cfg, char *err, size_t errlen);

/*
 * A live upgrade's old master while the new one takes over: stops
 * accepting on the listeners, keeping them (connects queue for whichever
 * master answers next); admin_resume watches them again when the new
 * master failed to take over. Clients already accepted are still answered.
 */
void admin_pause(struct admin *a);
void admin_resume(struct admin *a);

/*
 * A live upgrade's old master, once the new one has taken over: stops watching and
 * closes its copies of the listeners, without unlinking the control socket
 * (the new master has the very same socket). Clients already accepted are
 * still answered.
 */
void admin_release(struct admin *a);

/* Answers every client that still waits ("the master is exiting") and closes. */
void admin_close(struct admin *a);

/* An event on one of admin's sources (MEV_CONTROL...MEV_HTTP_CLIENT): accept, read, queue what is complete. */
void admin_event(struct admin *a, struct ev_source *src, int64_t now);

/* Takes the oldest queued request; false when there is none. */
bool admin_take(struct admin *a, struct admin_request *req);

/*
 * Answers a taken request's client and frees it: for the control socket
 * "ok" or "error" then BODY, for /metrics 200 with BODY (or 400 when !ok).
 */
void admin_answer(struct admin *a, struct reqconn *client, bool ok, const char *body);

/* The answer comes later, for every deferred client at once (a reload's outcome). */
void admin_defer(struct admin *a, struct reqconn *client);
void admin_answer_deferred(struct admin *a, bool ok, const char *body);

/* Drops clients that sent nothing usable in time; returns the next deadline, or 0. */
int64_t admin_expire(struct admin *a, int64_t now);

#endif
