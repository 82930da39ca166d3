/*
 * reload: a reload's steps, as the lifecycle table calls them (master.c):
 * load the file again and open what its listeners need, start the next
 * generation beside the serving one, then commit or abort; each outcome
 * is logged, counted, told to systemd and to the control clients waiting
 * for it. The supervisor does the work on the workers.
 */
#include <stdbool.h>
#include <stdio.h>

#include "common/cfg.h"
#include "common/ev.h"
#include "common/log.h"
#include "master/admin.h"
#include "master/listeners.h"
#include "master/master_int.h"
#include "master/notify.h"
#include "master/supervisor.h"

/* How long a reload waits for every new worker to report ready. */
#define RELOAD_READY_TIMEOUT_MS 10000

/* Reports a failed reload: log, counters, systemd, waiting control clients. */
static void
reload_failed(struct master *m, const char *why)
{
	char msg[CFG_ERR_LEN + 96];
	char body[sizeof(msg) + 1];

	snprintf(msg, sizeof(msg), "reload failed: %s; keeping the old configuration (generation %u)",
	    why, m->sup.cur.number);
	log_errorx("%s", msg);
	m->count.reloads_failed++;
	notify_send("READY=1\nSTATUS=%s", msg);
	snprintf(body, sizeof(body), "%s\n", msg);
	admin_answer_deferred(&m->admin, false, body);
}

/* The table in cfg.c says which settings only a restart changes; each is logged. */
static void
reload_warn_fixed(const struct cfg *cur, const struct cfg *next)
{
	struct cfg_change ch[CFG_RESTART_ONLY_MAX];
	size_t n = cfg_restart_only_changes(cur, next, ch, CFG_RESTART_ONLY_MAX);

	for (size_t i = 0; i < n && i < CFG_RESTART_ONLY_MAX; i++)
		log_warnx("changing %s needs a restart; still using %s", ch[i].name, ch[i].kept);
}

/* Builds the next generation beside the serving one; it takes over once ready. */
void
reload_begin(struct master *m, const char *why)
{
	const struct cfg *old = serving_cfg(m);
	char err[CFG_ERR_LEN];
	struct cfg *cfg;
	struct listeners *ls;

	(void)why;
	log_notice("reloading configuration %s", old->path);
	notify_send("RELOADING=1\nMONOTONIC_USEC=%llu\nSTATUS=reloading %s",
	    notify_monotonic_usec(), old->path);
	if ((cfg = cfg_load(old->path, err)) == NULL) {
		reload_failed(m, err);
		return;
	}
	if ((ls = listeners_open(cfg, old, m->sup.cur.ls, err, sizeof(err))) == NULL) {
		cfg_free(cfg);
		reload_failed(m, err);
		return;
	}
	reload_warn_fixed(old, cfg);
	cfg_log_warnings(cfg);
	m->next_deadline_ms = ev_now_ms() + RELOAD_READY_TIMEOUT_MS;
	if (sup_start_next(&m->sup, cfg, ls, ev_now_ms()) == -1) {
		reload_failed(m, "out of memory");
		return;
	}
	m->state = LS_RELOADING;
}

void
reload_queue(struct master *m, const char *why)
{
	(void)why;
	m->reload_again = true;
}

void
reload_abort(struct master *m, const char *why)
{
	sup_abort_next(&m->sup, ev_now_ms());
	m->state = LS_SERVING;
	reload_failed(m, why);
}

/* Every new worker is ready: the old ones drain, the new config serves. */
void
reload_commit(struct master *m, const char *why)
{
	char msg[128], body[sizeof(msg) + 1];
	int64_t now = ev_now_ms();
	bool was_sandboxed = serving_cfg(m)->sandbox;

	(void)why;
	sup_commit_next(&m->sup, now);
	report_name_init(m);
	m->state = LS_SERVING;
	m->announced = false;
	log_configure(serving_cfg(m)->log_facility, serving_cfg(m)->log_level,
	    serving_cfg(m)->log_stderr);
	if (serving_cfg(m)->sandbox != was_sandboxed)
		announce_sandbox(serving_cfg(m));
	snprintf(msg, sizeof(msg), "reload ok: generation %u, %d workers", m->sup.cur.number,
	    m->sup.cur.nslots);
	log_notice("%s", msg);
	m->count.reloads_ok++;
	announce_ready(m);
	sup_limit_draining(&m->sup, now);
	snprintf(body, sizeof(body), "%s\n", msg);
	admin_answer_deferred(&m->admin, true, body);
}

/* The next generation's wait: all ready, or out of time. */
enum life_event
reload_progress(const struct master *m, const char **why)
{
	*why = NULL;
	if (m->state != LS_RELOADING)
		return LE_NONE;
	if (sup_gen_ready(&m->sup.next))
		return LE_NEXT_READY;
	if (ev_now_ms() >= m->next_deadline_ms) {
		*why = "the new workers did not report ready in time";
		return LE_NEXT_FAILED;
	}
	return LE_NONE;
}

/* A reload asked for during another one runs once that one has ended. */
bool
reload_queued(struct master *m)
{
	if (!m->reload_again || m->state != LS_SERVING)
		return false;
	m->reload_again = false;
	return true;
}
