/*
 * report: what the master says of itself when asked. One view, from the
 * supervisor's (status.h) and the lifecycle's: rendered for `status`,
 * `status json` and /metrics, or turned into the HAProxy agent's line
 * (agent.h), which the operator's -s ready, drain and maint also set.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/ev.h"
#include "common/log.h"
#include "master/admin.h"
#include "master/agent.h"
#include "master/master_int.h"
#include "master/notify.h"
#include "master/status.h"
#include "master/supervisor.h"

/* The supervisor's view now; false when out of memory. v->w is malloc'd. */
static bool
report_view(const struct master *m, struct status_view *v)
{
	memset(v, 0, sizeof(*v));
	if (sup_view(&m->sup, v) == -1)
		return false;
	v->now_ms = ev_now_ms();
	return true;
}

/* What the HAProxy agent reports, from the lifecycle, the operator and the workers. */
static void
report_agent_fill(const struct master *m, const struct status_view *v, struct agent_view *av)
{
	memset(av, 0, sizeof(*av));
	av->admin = m->agent_word;
	av->stopping = m->state == LS_QUIESCING || life_stopping(m);
	av->delaying = m->state == LS_DRAIN_DELAY;
	av->delay_left_ms = av->delaying ? m->delay_end_ms - v->now_ms : 0;
	av->max_connections = serving_cfg(m)->max_connections;
	av->name = m->name;
	for (size_t i = 0; i < v->nworkers; i++) {
		const struct status_worker *w = &v->w[i];
		if (w->generation != v->generation || strcmp(w->state, "serving") != 0)
			continue;
		av->serving++;
		av->active += __atomic_load_n(&w->sb->active, __ATOMIC_RELAXED);
	}
}

/* The agent's line and its description of the state now; false when out of memory. */
static bool
report_agent_now(const struct master *m, char *line, size_t linelen, char *what, size_t whatlen)
{
	struct status_view v;
	struct agent_view av;

	if (!report_view(m, &v))
		return false;
	report_agent_fill(m, &v, &av);
	free(v.w);
	agent_reply(&av, line, linelen);
	if (what != NULL)
		agent_describe(&av, what, whatlen);
	return true;
}

/* The supervisor's view and the master's own figures, in one rendering; NULL when out of memory. */
static char *
report_render(const struct master *m, enum status_format format)
{
	struct status_view v;
	struct agent_view av;
	char line[512], what[128];
	char *text;

	if (!report_view(m, &v))
		return NULL;
	report_agent_fill(m, &v, &av);
	agent_reply(&av, line, sizeof(line));
	line[strcspn(line, "\n")] = '\0';
	agent_describe(&av, what, sizeof(what));
	v.state = what;
	v.agent = line;
	v.master_pid = getpid();
	v.uptime_ms = v.now_ms - m->count.started_ms;
	v.reloads_ok = m->count.reloads_ok;
	v.reloads_failed = m->count.reloads_failed;
	v.upgrades_ok = m->count.upgrades_ok;
	v.upgrades_failed = m->count.upgrades_failed;
	text = status_render(&v, format);
	free(v.w);
	return text;
}

/* `status`, `status json`, /metrics: one rendering of the view now. */
void
report_status(struct master *m, const struct admin_request *r)
{
	char *text = report_render(m, r->what == ADMIN_STATUS ? STATUS_TEXT :
	    r->what == ADMIN_STATUS_JSON ? STATUS_JSON : STATUS_PROMETHEUS);

	admin_answer(&m->admin, r->client, text != NULL, text != NULL ? text : "out of memory\n");
	free(text);
}

/* HAProxy's agent asks: every waiting client gets the line. */
void
report_agent(struct master *m)
{
	char line[512];

	if (!report_agent_now(m, line, sizeof(line), NULL, 0))
		snprintf(line, sizeof(line), "down #%s out of memory\n", m->name);
	agent_serve(&m->agent, line);
}

/*
 * The instance name in the agent's free text: the serving config's `name`
 * (the host name when ""), taken again at each reload. Kept to characters
 * that need no quoting in a status line, JSON or an agent reply.
 */
void
report_name_init(struct master *m)
{
	snprintf(m->name, sizeof(m->name), "%s", serving_cfg(m)->instance);
	if (m->name[0] == '\0')
		snprintf(m->name, sizeof(m->name), "echomaster");
	for (char *p = m->name; *p != '\0'; p++)
		if (!(*p >= 'a' && *p <= 'z') && !(*p >= 'A' && *p <= 'Z') &&
		    !(*p >= '0' && *p <= '9') && *p != '.' && *p != '-' && *p != '_')
			*p = '_';
}

/* -s ready, -s drain, -s maint: what the agent says from now on. */
void
report_agent_word(struct master *m, const struct admin_request *r)
{
	static const char *const names[] = {
		[AGENT_READY] = "ready", [AGENT_DRAIN] = "drain", [AGENT_MAINT] = "maint",
	};
	char line[512], what[128], body[160];

	m->agent_word = r->what == ADMIN_DRAIN ? AGENT_DRAIN :
	    r->what == ADMIN_MAINT ? AGENT_MAINT : AGENT_READY;
	if (!report_agent_now(m, line, sizeof(line), what, sizeof(what)))
		snprintf(what, sizeof(what), "%s", names[m->agent_word]);
	log_notice("operator: %s; the agent reports %s", names[m->agent_word], what);
	notify_send("STATUS=%s", what);
	snprintf(body, sizeof(body), "%s\n", what);
	admin_answer(&m->admin, r->client, true, body);
}

