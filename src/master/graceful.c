/*
 * graceful: the steps of a graceful stop before the stop proper, so that
 * it resets no connection: with drain_delay, first report drain while
 * still accepting (the balancer moves new clients elsewhere); then
 * quiesce (quiesce.h): no new handshakes, and the workers accept what the
 * kernel has queued; then master.c quits. It reports when each wait is
 * over and master.c fires the lifecycle's event.
 */
#include <inttypes.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/cfg.h"
#include "common/ev.h"
#include "common/log.h"
#include "master/master_int.h"
#include "master/notify.h"
#include "master/quiesce.h"

/* A graceful stop waits at most this long for the accept queues to empty (quiesce.h). */
#define GRACEFUL_QUIESCE_TIMEOUT_MS 5000

int
graceful_quiesce(struct master *m)
{
	const struct sup_gen *g = &m->sup.cur;
	int fds[g->ls->n > 0 ? g->ls->n : 1];
	size_t n = 0;

	for (size_t i = 0; i < g->ls->n; i++)
		if (g->cfg->listen[i].proto == CFG_PROTO_TCP)
			fds[n++] = g->ls->fds[i];
	if (quiesce_begin(&m->quiesce, fds, n, ev_now_ms(), GRACEFUL_QUIESCE_TIMEOUT_MS) == -1) {
		log_warnx("graceful stop: out of memory; queued connections may be reset");
		return -1;
	}
	log_notice("graceful stop: no new connections; accepting the %zu TCP listeners' queues", n);
	notify_send("STOPPING=1\nSTATUS=stopping: accepting the queued connections");
	m->state = LS_QUIESCING;
	return 0;
}

int
graceful_begin(struct master *m, const char *why)
{
	int delay = serving_cfg(m)->drain_delay;

	if (m->state == LS_RELOADING)
		reload_abort(m, why);
	if (m->state == LS_UPGRADING)
		upgrading_abort(m, why);
	if (delay == 0)
		return graceful_quiesce(m);
	m->delay_end_ms = ev_now_ms() + (int64_t)delay * 1000;
	m->state = LS_DRAIN_DELAY;
	log_notice("graceful stop: reporting drain for %d s (drain_delay) before stopping", delay);
	notify_send("STOPPING=1\nSTATUS=draining (stopping in %d s)", delay);
	return 0;
}

bool
graceful_delay_over(const struct master *m, int64_t now)
{
	return m->state == LS_DRAIN_DELAY && now >= m->delay_end_ms;
}

/* The quiesce's looks at the accept queues. */
bool
graceful_quiesced(struct master *m, int64_t now)
{
	if (m->state != LS_QUIESCING)
		return false;
	switch (quiesce_poll(&m->quiesce, now)) {
	case QUIESCE_WAITING:
		return false;
	case QUIESCE_DONE:
		log_info("graceful stop: accept queues empty after %" PRId64 " ms",
		    now - m->quiesce.started_ms);
		break;
	case QUIESCE_TIMED_OUT:
		log_warnx("graceful stop: after %" PRId64 " ms still %d queued connections and %d "
		    "handshakes in progress; stopping anyway", now - m->quiesce.started_ms,
		    m->quiesce.queued, m->quiesce.handshakes);
		break;
	}
	return true;
}
