/*
 * status: what `echomaster -s status`, its --json form and the Prometheus
 * /metrics page say. One view of the master and its workers, three
 * renderings driven by one table of counters, so they never disagree.
 */
#ifndef EM_STATUS_H
#define EM_STATUS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/scoreboard.h"

struct status_worker {
	pid_t pid;
	unsigned generation;
	int slot;
	const char *state;            /* "starting", "serving", "draining" */
	const struct sb_worker *sb;   /* its counters and heartbeat */
};

/* A snapshot the master fills in for one rendering. */
struct status_view {
	const char *name;             /* the instance (cfg's name, resolved); NULL: not shown */
	pid_t master_pid;
	unsigned generation;          /* serving */
	int workers;                  /* slots of the serving generation */
	int64_t now_ms;
	int64_t uptime_ms;
	uint64_t respawns;
	uint64_t respawns_throttled;
	uint64_t reloads_ok;
	uint64_t reloads_failed;
	uint64_t upgrades_ok;
	uint64_t upgrades_failed;
	int draining_generations;
	int parked_slots;
	const char *state;            /* what the HAProxy agent reports, for people; NULL = not shown */
	const char *agent;            /* the agent's reply line, without its "\n" */
	size_t nworkers;
	struct status_worker *w;
};

/* Each returns a malloc'd NUL-terminated text, or NULL when out of memory. */
char *status_text(const struct status_view *v);
char *status_json(const struct status_view *v);
char *status_prometheus(const struct status_view *v);

enum status_format { STATUS_TEXT, STATUS_JSON, STATUS_PROMETHEUS };

/* The rendering FORMAT names: status_text, status_json or status_prometheus. */
char *status_render(const struct status_view *v, enum status_format format);

#endif
