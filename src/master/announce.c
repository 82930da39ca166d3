/*
 * announce: what the master tells the log and systemd unasked: that the
 * serving generation is ready (or, for a live upgrade's new master not yet
 * in its predecessor's place, tells the old master instead), the serving
 * TCP listeners for systemd's fd store, and whether the workers are
 * sandboxed.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>

#include "common/cfg.h"
#include "common/log.h"
#include "master/confine.h"
#include "master/master_int.h"
#include "master/notify.h"
#include "master/supervisor.h"
#include "master/upgrade.h"

/*
 * systemd keeps the serving TCP listeners across `systemctl restart` (the
 * unit's FileDescriptorStoreMax=): stored at each READY=1, after start-up and
 * after every reload commit, so a listener a reload closed goes from the
 * store too; a live upgrade's new master stores them once it is in its
 * predecessor's place (systemd ignores what it sends before it is the
 * unit's main process). Not the UDP ones: the master's is set aside (connected to
 * itself, listeners.c), so in the store it would receive nothing.
 */
void
announce_listeners(const struct master *m)
{
	const struct sup_gen *g = &m->sup.cur;
	int *fds = calloc(g->ls->n + 1, sizeof(*fds));
	size_t n = 0;

	if (fds == NULL)
		return;
	for (size_t i = 0; i < g->ls->n; i++)
		if (g->cfg->listen[i].proto == CFG_PROTO_TCP)
			fds[n++] = g->ls->fds[i];
	notify_store_fds(fds, n);
	free(fds);
}

void
announce_ready(struct master *m)
{
	const struct sup_gen *g = &m->sup.cur;

	if (m->announced || !sup_gen_ready(g))
		return;
	m->announced = true;
	log_notice("ready: %d workers, generation %u", g->nslots, g->number);
	/* A new master is not systemd's main process yet: the old one speaks for it. */
	if (m->up.phase == UP_ADOPTING && !m->up_ready_sent) {
		m->up_ready_sent = true;
		upgrade_send_ready(&m->up, g->number);
		return;
	}
	announce_listeners(m);
	notify_send("READY=1\nSTATUS=serving: %d workers, generation %u", g->nslots, g->number);
}

/* Says once whether the workers are sandboxed (sandbox, and a build or run that allows it). */
void
announce_sandbox(const struct cfg *cfg)
{
	const char *why = confine_unavailable();
	int abi = confine_landlock_abi();

	if (!cfg->sandbox)
		log_warnx("sandbox = false: workers run unconfined; one taken over could open files, "
		    "run programs and connect anywhere its user can");
	else if (why != NULL)
		log_notice("sandbox off: %s", why);
	else if (abi == 0)
		log_info("sandbox on: no_new_privs and seccomp; Landlock is unavailable (not in "
		    "this kernel, or refused by a service manager's filter), so file access is "
		    "refused by seccomp alone");
	else
		log_info("sandbox on: no_new_privs, Landlock ABI %d and seccomp", abi);
}

