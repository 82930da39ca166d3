/*
 * upgrading: the master's side of a live upgrade, step by step. As the old
 * master: check the new binary, start it with our state and listeners,
 * then once it is ready hand it our place and relay each worker's
 * connections, or drain. As the new master: take each old slot's
 * connections, then the old master's place. upgrade.c owns the processes
 * and the channel between the masters and reports what they did; the
 * lifecycle table (master.c) calls the begin, commit and abort here.
 */
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/ev.h"
#include "common/log.h"
#include "master/admin.h"
#include "master/agent.h"
#include "master/events.h"
#include "master/master.h"
#include "master/master_int.h"
#include "master/notify.h"
#include "master/peering.h"
#include "master/pidfile.h"
#include "master/supervisor.h"
#include "master/upgrade.h"
#include "master/upmsg.h"

/* Reports a failed upgrade: log, counters, systemd, waiting control clients. */
static void
upgrading_failed(struct master *m, const char *why)
{
	char msg[sizeof(m->up.why) + 96];
	char body[sizeof(msg) + 1];

	snprintf(msg, sizeof(msg), "upgrade failed: %s", why);
	log_errorx("%s; still serving (generation %u)", msg, m->sup.cur.number);
	m->count.upgrades_failed++;
	notify_send("STATUS=%s; still serving", msg);
	snprintf(body, sizeof(body), "%s\n", msg);
	admin_answer_deferred(&m->admin, false, body);
}

/* Checks the new binary first; upgrading_progress starts it once the check passed. */
void
upgrading_begin(struct master *m, const char *why)
{
	(void)why;
	if (upgrade_check(&m->up, ev_now_ms()) == -1) {
		upgrading_failed(m, m->up.why);
		return;
	}
	notify_send("STATUS=upgrading to %s", m->up.exe);
	m->state = LS_UPGRADING;
}

/*
 * The new master was asked to take over but is gone (or never confirmed):
 * our place is ours again. The pid file may name it, the operators'
 * sockets were only paused, the agent's port was left for it.
 */
static void
upgrading_resume(struct master *m)
{
	char err[CFG_ERR_LEN];

	if (m->pid_fd != -1 && pidfile_write(m->pid_fd) == -1)
		log_warn("upgrade: cannot write pid file %s", m->pid_path);
	admin_resume(&m->admin);
	if (m->agent.fd == -1 &&
	    agent_open(&m->agent, m->epfd, serving_cfg(m), -1, MEV_AGENT, err, sizeof(err)) == -1)
		log_errorx("upgrade: %s", err);
}

/*
 * Before the new master confirmed its take-over anything that goes wrong
 * ends here: the new master (or the check) is killed, its workers follow
 * it (PDEATHSIG), and we serve on: no listener, no control socket, no pid
 * file of ours was ever closed, and our workers were never frozen.
 */
void
upgrading_abort(struct master *m, const char *why)
{
	char reason[sizeof(m->up.why)];
	bool asked = m->up.phase == UP_CONFIRMING;

	snprintf(reason, sizeof(reason), "%s", why != NULL ? why : m->up.why);
	upgrade_kill(&m->up);
	if (asked)
		upgrading_resume(m);
	m->state = LS_SERVING;
	upgrading_failed(m, reason);
}

/* Our state for the new master, and the descriptors that go with it. */
static void
upgrading_state(const struct master *m, struct upmsg_state *st, int pass[3])
{
	*st = (struct upmsg_state){ .pid = getpid(), .generation = m->sup.cur.number,
	    .nslots = m->sup.cur.nslots, .reloads_ok = m->count.reloads_ok,
	    .reloads_failed = m->count.reloads_failed, .upgrades_ok = m->count.upgrades_ok,
	    .upgrades_failed = m->count.upgrades_failed, .started_ms = m->count.started_ms,
	    .has_tickets = true, .tickets = m->sb->tls_keys };
	pass[0] = m->pid_fd;
	pass[1] = m->admin.ctl_fd;
	pass[2] = m->admin.metrics_fd;
}

/* The check passed: the new master starts, with our listeners and our state; -1 when it cannot. */
static int
upgrading_start_new(struct master *m)
{
	struct upmsg_state st;
	int pass[3];

	upgrading_state(m, &st, pass);
	return upgrade_spawn(&m->up, &st, pass, m->sup.cur.ls, ev_now_ms());
}

/* The new master has taken our place: our copies of it go, our connections follow. */
static void
upgrading_handover(struct master *m)
{
	if ((m->handed = calloc((size_t)m->sup.cur.nslots + 1, sizeof(*m->handed))) == NULL)
		fatal("calloc");
	m->nhanded = m->sup.cur.nslots;
	admin_release(&m->admin);
	/* The lock is the open file's, and the new master holds it too: closing ours keeps it. */
	if (m->pid_fd != -1)
		close(m->pid_fd);
	m->pid_fd = -1;
}

/*
 * The new master is ready. When it read our state it is asked to take our
 * place: we stop accepting operators (the sockets stay ours, and queue),
 * leave the agent's port for it to bind, and serve on, supervising as
 * ever, until it confirms (upgrading_commit) or fails (upgrading_abort).
 * When it could not read our state there is nothing to take over now: it
 * binds what we leave behind once we have drained (upgrading_commit).
 */
void
upgrading_confirm(struct master *m, const char *why)
{
	const struct upmsg *r = &m->up.msg;

	m->up_successor = r->pid;
	snprintf(m->up_version, sizeof(m->up_version), "%s", r->binary_version);
	m->up_generation = r->generation;
	if (!m->up.understood) {
		upgrading_commit(m, why);
		return;
	}
	admin_pause(&m->admin);
	agent_close(&m->agent);  /* the new master binds it as it takes over */
	log_notice("upgrade: pid %ld is ready; asking it to take over", (long)r->pid);
	if (upgrade_take_over(&m->up, m->sup.cur.nslots, ev_now_ms()) == -1)
		upgrading_abort(m, m->up.why);
}

/*
 * The new master has taken over (or, not understanding our state, is
 * ready). NotifyAccess=main is enough for systemd to take MAINPID= and
 * READY=1 from us: we are still the main process when we send them, and
 * from then on the new master is.
 */
void
upgrading_commit(struct master *m, const char *why)
{
	long pid = (long)m->up_successor;
	char msg[160], body[sizeof(msg) + 1];

	(void)why;
	notify_send("MAINPID=%ld\nREADY=1\nSTATUS=upgraded: pid %ld, version %s, generation %u",
	    pid, pid, m->up_version, m->up_generation);
	upgrade_send_main(&m->up);  /* from now on systemd listens to it, not to us */
	snprintf(msg, sizeof(msg), "upgrade ok: pid %ld, version %s, generation %u", pid,
	    m->up_version, m->up_generation);
	log_notice("%s", msg);
	m->count.upgrades_ok++;
	snprintf(body, sizeof(body), "%s\n", msg);
	admin_answer_deferred(&m->admin, true, body);
	m->state = LS_UPGRADED;
	m->up.phase = UP_COMMITTED;  /* no deadline left: the new master serves */
	sup_freeze(&m->sup);
	if (m->up.understood) {
		upgrading_handover(m);
		return;
	}
	/* It could not read our state: our workers drain, and it binds what we leave behind. */
	log_notice("upgrade: pid %ld did not understand our state (format %u); our workers drain",
	    pid, UPMSG_VERSION);
	sup_stop(&m->sup, true, ev_now_ms());
}

/* The old master: one old slot's hand-over, relayed by the new master, goes to its worker. */
static void
upgrading_forward(struct master *m)
{
	struct upmsg *msg = &m->up.msg;
	int slot = msg->slot;

	if (sup_forward(&m->sup, slot, &msg->hand) == -1)
		log_warnx("upgrade: cannot hand slot %d's connections over: %s; it drains", slot,
		    strerror(errno));
	else if (!msg->hand.more && slot < m->nhanded)
		m->handed[slot] = true;
	upmsg_close_fds(msg);
}

/* The old master: the hand-overs are all relayed (or the new master is gone): retire the workers. */
static void
upgrading_retire(struct master *m)
{
	if (m->handed == NULL)
		return;
	sup_retire_upgraded(&m->sup, m->handed, ev_now_ms());
	free(m->handed);
	m->handed = NULL;
}

/* The new master: wires each old slot's hand-over to our workers, through the old master. */
static void
upgrading_receive(struct master *m, int nold)
{
	for (int i = 0; i < nold && serving_cfg(m)->reload_handover; i++) {
		struct upgrade_relay relay = { .u = &m->up, .slot = i };
		struct peering pr;
		peering_begin_relay(&pr, upgrade_relay, &relay, m->up.peer_pid);
		sup_add_receivers(&m->sup, &pr, i, nold);
		peering_end(&pr);
	}
	upgrade_send_end(&m->up);
}

/*
 * The new master's first words to systemd, once it has our predecessor's
 * place and systemd has been told it is the main process (UPM_MAIN, or
 * the old master gone): before that systemd would ignore them, and the
 * old master's "upgraded" status would stay.
 */
static void
upgrading_notify(struct master *m)
{
	if (m->up.phase != UP_ADOPTED || !m->up_main || m->up_spoke)
		return;
	m->up_spoke = true;
	announce_listeners(m);
	notify_send("STATUS=serving: %d workers, generation %u", m->sup.cur.nslots,
	    m->sup.cur.number);
}

/* The new master: the pid file, then the operators' sockets, are ours from now on. */
static void
upgrading_take_place(struct master *m)
{
	char err[CFG_ERR_LEN];

	if (m->pid_fd == -1 && m->pid_path != NULL &&
	    (m->pid_fd = pidfile_acquire(m->pid_path, err, sizeof(err))) == -1)
		log_errorx("upgrade: %s", err);
	if (m->pid_fd != -1 && pidfile_write(m->pid_fd) == -1)
		log_warn("upgrade: cannot write pid file %s", m->pid_path);
	if (admin_take_over(&m->admin, serving_cfg(m), err, sizeof(err)) == -1)
		log_errorx("upgrade: %s", err);
	/* A refused agent check is no failure to HAProxy: the port's moment unbound costs nothing. */
	if (agent_open(&m->agent, m->epfd, serving_cfg(m), -1, MEV_AGENT, err, sizeof(err)) == -1)
		log_errorx("upgrade: %s", err);
	m->up.phase = UP_ADOPTED;
	m->count.upgrades_ok++;
	log_notice("upgrade: took over from pid %ld, generation %u serving", (long)m->up.peer_pid,
	    m->sup.cur.number);
	upgrading_notify(m);
}

/* The new master: the old one's channel closed. */
static void
upgrading_peer_gone(struct master *m)
{
	m->up_main = true;  /* it told systemd before it went, or it died: either way we speak */
	upgrading_notify(m);
	if (m->up.phase == UP_ADOPTING) {
		/* Not understood: it drained and exited. Or it died: someone must serve. */
		if (m->up_understood)
			log_warnx("upgrade: the old master %ld went away before handing over",
			    (long)m->up.peer_pid);
		upgrading_take_place(m);
	}
	log_info("upgrade: the old master %ld has exited", (long)m->up.peer_pid);
}

/*
 * A live upgrade's new master: the old master's figures carry on, and its
 * control socket and /metrics become ours without being watched yet (it
 * answers operators until it tells us to take over).
 */
void
upgrading_adopt(struct master *m, const struct master_boot *boot)
{
	const struct upmsg_state *st = &boot->from.state;

	m->up_understood = boot->from.understood;
	if (m->up_understood) {
		m->count = (struct master_counters){ .started_ms = st->started_ms,
		    .reloads_ok = st->reloads_ok, .reloads_failed = st->reloads_failed,
		    .upgrades_ok = st->upgrades_ok, .upgrades_failed = st->upgrades_failed };
	}
	admin_adopt(&m->admin, m->epfd, boot->cfg, boot->ctl_fd, boot->metrics_fd);
	upgrade_adopt(&m->up, boot->upgrade_fd, boot->from.pid);
	log_notice("upgrade: started by the old master %ld (state format %u, %s)",
	    (long)boot->from.pid, boot->from.version, m->up_understood ? "understood" :
	    "not understood: its workers drain");
}

/*
 * What an upgrade's process or channel said, on either side: acted on
 * here, or returned as the lifecycle's event (why in *why); LE_NONE when
 * the lifecycle has nothing to do.
 */
enum life_event
upgrading_progress(struct master *m, enum upgrade_event ev, const char **why)
{
	*why = NULL;
	switch (ev) {
	case UPE_NONE:
		return LE_NONE;
	case UPE_CHECKED:
		if (upgrading_start_new(m) != -1)
			return LE_NONE;
		*why = m->up.why;
		return LE_UPGRADE_FAILED;
	case UPE_FAILED:
		*why = m->up.why;
		return LE_UPGRADE_FAILED;
	case UPE_ANSWERED:
		m->up_understood = m->up.understood;
		return LE_NONE;
	case UPE_READY:
		return LE_UPGRADE_READY;
	case UPE_TAKEN:
		return LE_UPGRADE_TAKEN;
	case UPE_HAND_OVER:
		upgrading_forward(m);
		return LE_NONE;
	case UPE_HANDED:
		upgrading_retire(m);
		return LE_NONE;
	case UPE_TAKE_OVER:
#ifdef EM_TEST_HOOKS
		/* Test builds only: a new master that dies after READY, as it is asked to take over. */
		if (getenv("EM_TEST_UPGRADE_DIE_AT_TAKE_OVER") != NULL &&
		    access(getenv("EM_TEST_UPGRADE_DIE_AT_TAKE_OVER"), F_OK) == 0)
			raise(SIGKILL);
#endif
		upgrading_take_place(m);
		upgrade_send_taken(&m->up);  /* before the hand-overs: the old master commits first */
		upgrading_receive(m, m->up.msg.slot);
		return LE_NONE;
	case UPE_MAIN:
		m->up_main = true;
		upgrading_notify(m);
		return LE_NONE;
	case UPE_PEER_GONE:
		if (m->state == LS_UPGRADED)
			upgrading_retire(m);  /* what it had relayed moves, the rest drains */
		else
			upgrading_peer_gone(m);
		return LE_NONE;
	}
	return LE_NONE;
}
