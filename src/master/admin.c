/*
 * admin: the master's answers to operators: the control socket (status,
 * reload, respawn, stop) and the Prometheus /metrics page. Requests are
 * read without blocking the loop; a reload's answer waits for its outcome.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "common/ev.h"
#include "common/log.h"
#include "master/events.h"
#include "master/master_priv.h"
#include "master/status.h"

/* A client that has not sent its request by then is dropped. */
#define ADMIN_REQUEST_TIMEOUT_MS 5000
/* At most this many /metrics clients at once; more are closed at once. */
#define ADMIN_HTTP_MAX 32

static void
admin_watch(struct master *m, int fd, void *tag)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = tag };

	if (epoll_ctl(m->epfd, EPOLL_CTL_ADD, fd, &ev) == -1)
		log_warn("epoll_ctl admin");
}

static void
admin_unwatch(struct master *m, int fd)
{
	epoll_ctl(m->epfd, EPOLL_CTL_DEL, fd, NULL);
}

void
admin_open(struct master *m)
{
	const struct cfg *cfg = m->cur.cfg;
	char err[256];

	if (cfg->control_socket[0] != '\0') {
		if ((m->ctl_fd = control_listen(cfg->control_socket, err, sizeof(err))) == -1)
			fatalx("%s", err);
		if ((m->ctl_path = strdup(cfg->control_socket)) == NULL)
			fatal("strdup");
		admin_watch(m, m->ctl_fd, &m->ctl_kind);
	}
	if (cfg->metrics_address[0] != '\0') {
		if ((m->metrics_fd = metrics_listen(cfg, err, sizeof(err))) == -1)
			fatalx("metrics: %s", err);
		admin_watch(m, m->metrics_fd, &m->metrics_kind);
	}
}

static const char *
state_name(enum wproc_state state)
{
	switch (state) {
	case WP_STARTING: return "starting";
	case WP_READY: return "serving";
	case WP_DRAINING: return "draining";
	case WP_ABORTED: return "aborted";
	}
	return "?";
}

static int
worker_order(const void *a, const void *b)
{
	const struct status_worker *x = a, *y = b;

	if (x->generation != y->generation)
		return x->generation < y->generation ? -1 : 1;
	return x->slot - y->slot;
}

/* Fills a view of the master right now; v->w is malloc'd (free it). */
static int
admin_view(struct master *m, struct status_view *v)
{
	size_t n = 0;

	memset(v, 0, sizeof(*v));
	for (const struct wproc *p = m->procs; p != NULL; p = p->next)
		n++;
	if ((v->w = calloc(n + 1, sizeof(*v->w))) == NULL)
		return -1;
	v->master_pid = getpid();
	v->generation = m->cur.number;
	v->workers = m->cur.nslots;
	v->now_ms = master_now_ms();
	v->uptime_ms = v->now_ms - m->count.started_ms;
	v->respawns = m->count.respawns;
	v->respawns_throttled = m->count.respawns_throttled;
	v->reloads_ok = m->count.reloads_ok;
	v->reloads_failed = m->count.reloads_failed;
	v->draining_generations = master_draining_generations(m, false, NULL);
	for (int i = 0; i < m->cur.nslots; i++)
		v->parked_slots += m->cur.slots[i].parked;
	for (const struct wproc *p = m->procs; p != NULL; p = p->next)
		v->w[v->nworkers++] = (struct status_worker){ .pid = p->pid,
		    .generation = p->generation, .slot = p->slot, .state = state_name(p->state),
		    .sb = &m->sb->w[p->sb_entry] };
	/* Oldest generation and lowest slot first: the list reads like the history. */
	qsort(v->w, v->nworkers, sizeof(*v->w), worker_order);
	return 0;
}

enum admin_format { AF_TEXT, AF_JSON, AF_PROMETHEUS };

/* The status in one format, malloc'd; NULL when out of memory. */
static char *
admin_render(struct master *m, enum admin_format format)
{
	struct status_view v;
	char *text = NULL;

	if (admin_view(m, &v) == -1)
		return NULL;
	switch (format) {
	case AF_TEXT: text = status_text(&v); break;
	case AF_JSON: text = status_json(&v); break;
	case AF_PROMETHEUS: text = status_prometheus(&v); break;
	}
	free(v.w);
	return text;
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

static void
ctl_answer(struct master *m, struct reqconn *c, bool ok, const char *body)
{
	list_unlink(&m->ctl_clients, c);
	control_reply(c, ok, body);  /* closing the fd also removes it from epoll */
}

static void
ctl_answer_text(struct master *m, struct reqconn *c, char *text)
{
	ctl_answer(m, c, text != NULL, text != NULL ? text : "out of memory\n");
	free(text);
}

/* Acts on one command; the client is answered here, or later for a reload. */
static void
ctl_execute(struct master *m, struct reqconn *c, enum ctl_cmd cmd)
{
	switch (cmd) {
	case CTL_NONE:
		return;
	case CTL_STATUS:
		ctl_answer_text(m, c, admin_render(m, AF_TEXT));
		return;
	case CTL_STATUS_JSON:
		ctl_answer_text(m, c, admin_render(m, AF_JSON));
		return;
	case CTL_RELOAD:
		if (m->stopping) {
			ctl_answer(m, c, false, "shutting down\n");
			return;
		}
		/* Answered by admin_reload_done, maybe before master_reload returns. */
		c->waiting = true;
		admin_unwatch(m, c->fd);
		master_reload(m);
		return;
	case CTL_RESPAWN:
		master_respawn_parked(m);
		ctl_answer(m, c, true, "parked worker slots released\n");
		return;
	case CTL_STOP:
	case CTL_QUIT:
		ctl_answer(m, c, true, cmd == CTL_STOP ? "stopping\n" : "stopping gracefully\n");
		master_stop(m, cmd == CTL_QUIT);
		return;
	case CTL_REOPEN:
		log_reopen();
		log_notice("reopened logs");
		ctl_answer(m, c, true, "logs reopened\n");
		return;
	case CTL_BAD:
		ctl_answer(m, c, false, "unknown command (status, status-json, reload, respawn, "
		    "stop, quit, reopen)\n");
		return;
	}
}

void
admin_reload_done(struct master *m, bool ok, const char *message)
{
	struct reqconn *c = m->ctl_clients, *next;
	char body[CFG_ERR_LEN + 128];

	snprintf(body, sizeof(body), "%s\n", message);
	for (; c != NULL; c = next) {
		next = c->next;
		if (c->waiting)
			ctl_answer(m, c, ok, body);
	}
}

static void
http_event(struct master *m, struct reqconn *c)
{
	enum http_req req = metrics_read(c);
	char *body = NULL;

	if (req == HTTP_MORE)
		return;
	list_unlink(&m->http_clients, c);
	if (req == HTTP_METRICS && (body = admin_render(m, AF_PROMETHEUS)) == NULL)
		req = HTTP_BAD;
	metrics_reply(c, req, body);
	free(body);
}

static void
accept_control(struct master *m)
{
	struct reqconn *c = reqconn_accept(m->ctl_fd, MEV_CTL_CLIENT,
	    master_now_ms() + ADMIN_REQUEST_TIMEOUT_MS);

	if (c == NULL)
		return;
	c->next = m->ctl_clients;
	m->ctl_clients = c;
	admin_watch(m, c->fd, c);
}

static void
accept_http(struct master *m)
{
	struct reqconn *c = reqconn_accept(m->metrics_fd, MEV_HTTP_CLIENT,
	    master_now_ms() + ADMIN_REQUEST_TIMEOUT_MS);
	int n = 0;

	if (c == NULL)
		return;
	for (const struct reqconn *o = m->http_clients; o != NULL; o = o->next)
		n++;
	if (n >= ADMIN_HTTP_MAX) {
		metrics_reply(c, HTTP_BAD, "too many clients\n");
		return;
	}
	c->next = m->http_clients;
	m->http_clients = c;
	admin_watch(m, c->fd, c);
}

void
admin_event(struct master *m, void *tag, uint32_t events)
{
	(void)events;
	switch (*(int *)tag) {
	case MEV_CONTROL:
		accept_control(m);
		break;
	case MEV_CTL_CLIENT: {
		struct reqconn *c = tag;
		ctl_execute(m, c, control_read(c));
		break;
	}
	case MEV_METRICS:
		accept_http(m);
		break;
	case MEV_HTTP_CLIENT:
		http_event(m, tag);
		break;
	default:
		log_warnx("unknown event source %d", *(int *)tag);
		break;
	}
}

int64_t
admin_expire(struct master *m)
{
	int64_t now = master_now_ms(), next = 0;
	struct reqconn *c, *cn;
	struct reqconn *h, *hn;

	for (c = m->ctl_clients; c != NULL; c = cn) {
		cn = c->next;
		if (c->waiting)
			continue;
		if (now >= c->deadline_ms)
			ctl_answer(m, c, false, "no command received in time\n");
		else if (next == 0 || c->deadline_ms < next)
			next = c->deadline_ms;
	}
	for (h = m->http_clients; h != NULL; h = hn) {
		hn = h->next;
		if (now >= h->deadline_ms) {
			list_unlink(&m->http_clients, h);
			metrics_reply(h, HTTP_BAD, "request timeout\n");
		} else if (next == 0 || h->deadline_ms < next) {
			next = h->deadline_ms;
		}
	}
	return next;
}

void
admin_close(struct master *m)
{
	while (m->ctl_clients != NULL)
		ctl_answer(m, m->ctl_clients, false, "the master is exiting\n");
	while (m->http_clients != NULL) {
		struct reqconn *h = m->http_clients;
		list_unlink(&m->http_clients, h);
		metrics_reply(h, HTTP_BAD, "the master is exiting\n");
	}
	if (m->ctl_fd != -1) {
		close(m->ctl_fd);
		unlink(m->ctl_path);
	}
	free(m->ctl_path);
	if (m->metrics_fd != -1)
		close(m->metrics_fd);
}
