#include "master/agent.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/log.h"
#include "common/sock.h"

/* At most this many clients are answered per readiness event; the rest wait a turn. */
#define AGENT_BATCH 64

enum agent_word
agent_word_of(const struct agent_view *v)
{
	if (v->stopping || v->serving <= 0)
		return AGENT_DOWN;
	if (v->admin == AGENT_MAINT)
		return AGENT_MAINTENANCE;
	if (v->admin == AGENT_DRAIN || v->delaying)
		return AGENT_DRAINING;
	return AGENT_UP;
}

int
agent_weight(const struct agent_view *v)
{
	uint64_t cap = (uint64_t)(v->serving > 0 ? v->serving : 0) *
	    (uint64_t)(v->max_connections > 0 ? v->max_connections : 0);
	uint64_t pct;

	if (cap == 0 || v->active >= cap)
		return 1;
	pct = (cap - v->active) * 100 / cap;
	/* 0% would take the host out: HAProxy is told "full", not "gone". */
	return pct < 1 ? 1 : (int)pct;
}

void
agent_describe(const struct agent_view *v, char *buf, size_t len)
{
	switch (agent_word_of(v)) {
	case AGENT_DOWN:
		snprintf(buf, len, "%s", v->stopping ? "stopping" : "down (no worker serves)");
		return;
	case AGENT_MAINTENANCE:
		snprintf(buf, len, "maintenance (operator)");
		return;
	case AGENT_DRAINING:
		if (v->admin == AGENT_DRAIN)
			snprintf(buf, len, "draining (operator)");
		else
			snprintf(buf, len, "draining (stopping in %" PRId64 " s)",
			    (v->delay_left_ms + 999) / 1000);
		return;
	case AGENT_UP:
		snprintf(buf, len, "serving");
		return;
	}
}

void
agent_reply(const struct agent_view *v, char *buf, size_t len)
{
	static const char *const words[] = {
		[AGENT_UP] = "up ready", [AGENT_DRAINING] = "drain",
		[AGENT_MAINTENANCE] = "maint", [AGENT_DOWN] = "down",
	};
	enum agent_word w = agent_word_of(v);
	char what[64], weight[8] = "";

	agent_describe(v, what, sizeof(what));
	if (w == AGENT_UP)
		snprintf(weight, sizeof(weight), " %d%%", agent_weight(v));
	/* HAProxy takes everything after "#" as the server's check description. */
	int n = snprintf(buf, len, "%s%s #%s %s, %" PRIu64 " active\n", words[w], weight,
	    v->name, what, v->active);

	/* Cut short, it still ends the line: HAProxy reads up to the "\n". */
	if (n >= 0 && (size_t)n >= len && len >= 2)
		buf[len - 2] = '\n';
}

int
agent_open(struct agent *a, int epfd, const struct cfg *cfg, int inherited,
    uint8_t ev_kind, char *err, size_t errlen)
{
	struct sockaddr_storage ss;
	socklen_t sslen;
	char where[128];

	memset(a, 0, sizeof(*a));
	a->epfd = epfd;
	a->ev.kind = ev_kind;
	a->fd = inherited;
	if (a->fd == -1 && cfg->agent_address[0] == '\0')
		return 0;
	if (a->fd == -1) {
		if (sock_resolve(cfg->agent_address, cfg->agent_port, SOCK_STREAM, &ss, &sslen,
		    err, errlen) == -1 ||
		    (a->fd = sock_listen(&ss, sslen, SOCK_STREAM, err, errlen)) == -1) {
			char why[256];
			snprintf(why, sizeof(why), "%s", err);
			snprintf(err, errlen, "agent: %s", why);
			return -1;
		}
		sock_addr_format(&ss, where, sizeof(where));
		log_info("HAProxy agent on %s", where);
	}
	if (ev_add(epfd, a->fd, EPOLLIN, &a->ev) == -1) {
		snprintf(err, errlen, "agent: epoll_ctl: %s", strerror(errno));
		close(a->fd);
		a->fd = -1;
		return -1;
	}
	return 0;
}

/*
 * One client: the line, then a close that sends FIN, not RST: whatever the
 * client sent (HAProxy's agent-send) is read first, since closing with
 * unread data resets the connection and could destroy the line in flight.
 */
static void
agent_answer(int fd, const char *line)
{
	char sink[512];

	while (recv(fd, sink, sizeof(sink), MSG_DONTWAIT) > 0)
		;
	/* A fresh socket's send buffer holds a line this short: this never waits. */
	(void)send(fd, line, strlen(line), MSG_DONTWAIT | MSG_NOSIGNAL);
	shutdown(fd, SHUT_WR);
	close(fd);
}

void
agent_serve(struct agent *a, const char *line)
{
	for (int i = 0; i < AGENT_BATCH; i++) {
		int fd = accept4(a->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd == -1) {
			if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
				log_warn("agent: accept");
			return;
		}
		agent_answer(fd, line);
	}
}

void
agent_close(struct agent *a)
{
	if (a->fd == -1)
		return;
	ev_del(a->epfd, a->fd);
	close(a->fd);
	a->fd = -1;
}
