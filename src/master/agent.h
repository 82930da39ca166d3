/*
 * agent: the HAProxy agent-check responder (HAProxy's configuration.txt,
 * "agent-check"). A TCP listener in the master: every client gets one
 * line ending in "\n" and is closed at once, so a client that never reads
 * holds nothing (the line is far smaller than any socket buffer, and is
 * written without waiting). The words say what HAProxy should do with this
 * host: "up ready NN%" while serving (NN the free share of the capacity),
 * "drain" while draining, "maint" in maintenance, "down" when no worker
 * serves; then " #" and free text naming the instance and its state.
 *
 * The master decides the state; agent_reply is a pure function of the
 * view it fills in, and the listener code only accepts and writes.
 */
#ifndef EM_AGENT_H
#define EM_AGENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/cfg.h"
#include "common/ev.h"

/* What an operator asked for with -s ready, -s drain, -s maint. */
enum agent_admin { AGENT_READY, AGENT_DRAIN, AGENT_MAINT };

/* The master's snapshot for one reply. */
struct agent_view {
	enum agent_admin admin;   /* the operator's word */
	bool stopping;            /* a stop has begun: no new client is accepted */
	bool delaying;            /* in drain_delay: still accepting, stopping soon */
	int64_t delay_left_ms;    /* while delaying */
	int serving;              /* workers of the serving generation that serve */
	int max_connections;      /* limits.max_connections, per worker */
	uint64_t active;          /* TCP connections the serving workers hold */
	const char *name;         /* the instance name, for the free text */
};

/* The single word the agent answers with, ahead of any weight. */
enum agent_word { AGENT_UP, AGENT_DRAINING, AGENT_MAINTENANCE, AGENT_DOWN };

/* Which word V calls for: down, then maint, then drain, then up. */
enum agent_word agent_word_of(const struct agent_view *v);

/* The free share of the capacity, 1..100: HAProxy's weight while up. */
int agent_weight(const struct agent_view *v);

/*
 * What the state is, for people: "serving", "draining (operator)",
 * "draining (stopping in 4 s)", "maintenance (operator)", "stopping",
 * "down (no worker serves)". -s status and sd_notify show the same words.
 */
void agent_describe(const struct agent_view *v, char *buf, size_t len);

/* The whole reply line, "up ready 73% #NAME serving\n" and the like; always ends in "\n". */
void agent_reply(const struct agent_view *v, char *buf, size_t len);

struct agent {
	struct ev_source ev;      /* the listener, of the kind given to agent_open */
	int epfd;
	int fd;                   /* -1 = off */
};

/*
 * Opens the listener that cfg->agent_address/agent_port name, or, when
 * INHERITED is not -1, takes that already bound and listening socket
 * instead (a live upgrade passes its predecessor's); off when the address
 * is "" and nothing is inherited. Watched in epfd with EV_KIND. -1 with a
 * message in err.
 */
int agent_open(struct agent *a, int epfd, const struct cfg *cfg, int inherited,
    uint8_t ev_kind, char *err, size_t errlen);

/* Accepts every pending client and gives each LINE, then closes it. */
void agent_serve(struct agent *a, const char *line);

void agent_close(struct agent *a);

#endif
