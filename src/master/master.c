#include "master/master.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/ev.h"
#include "common/exitcode.h"
#include "common/log.h"
#include "common/proctitle.h"
#include "common/scoreboard.h"
#include "master/admin.h"
#include "master/agent.h"
#include "master/confine.h"
#include "common/tlsctx.h"
#include "master/events.h"
#include "master/listeners.h"
#include "master/notify.h"
#include "master/peering.h"
#include "master/pidfile.h"
#include "master/quiesce.h"
#include "master/status.h"
#include "master/supervisor.h"
#include "master/upgrade.h"

/* How long a reload waits for every new worker to report ready. */
#define RELOAD_READY_TIMEOUT_MS 10000
/* A graceful stop waits at most this long for the accept queues to empty (quiesce.h). */
#define GRACEFUL_QUIESCE_TIMEOUT_MS 5000

/*
 * The daemon's lifecycle. Every event that can change it goes through
 * lifecycle[state][event] below; an empty cell means the event changes
 * nothing in that state.
 */
enum life_state {
	LS_SERVING,
	LS_RELOADING,   /* a next generation is starting beside the serving one */
	LS_UPGRADING,   /* a new binary is checked, then started as a new master */
	LS_UPGRADED,    /* the new master took over: our workers hand over or drain, then we exit */
	LS_QUITTING,      /* graceful stop: workers finish their clients */
	LS_TERMINATING,   /* fast stop: workers are terminated */
	LS_DRAIN_DELAY,   /* graceful stop, first drain_delay: the agent says drain, workers still accept */
	LS_QUIESCING,     /* graceful stop, then: no new handshakes, the queued ones are accepted */
	LS_COUNT
};

enum life_event {
	LE_RELOAD,      /* HUP, or `reload` on the control socket */
	LE_QUIT,        /* graceful stop */
	LE_TERMINATE,   /* fast stop */
	LE_NEXT_READY,  /* every worker of the next generation reported ready */
	LE_NEXT_FAILED, /* one of them died, or they were not ready in time */
	LE_DELAY_OVER,  /* drain_delay has passed */
	LE_QUIESCED,    /* every accept queue is empty (or the wait timed out) */
	LE_UPGRADE,     /* SIGUSR2, or `upgrade` on the control socket */
	LE_UPGRADE_READY,  /* the new master's first generation is ready */
	LE_UPGRADE_FAILED, /* the check or the new master failed, or took too long */
	LE_COUNT
};

/* The signals the master acts on; the loop reads them from a signalfd. */
static const int master_signals[] = {
	SIGCHLD, SIGHUP, SIGQUIT, SIGTERM, SIGINT, SIGUSR1, SIGUSR2, SIGTTIN, SIGTTOU,
};

/* Figures the master keeps about itself, for status and metrics. */
struct master_counters {
	int64_t started_ms;
	uint64_t reloads_ok;
	uint64_t reloads_failed;
	uint64_t upgrades_ok;
	uint64_t upgrades_failed;
};

/* The one context of the master process. */
struct master {
	enum life_state state;
	struct ev_source sig_ev;     /* MEV_SIGNAL */
	struct sup sup;              /* the generations and their workers */
	struct admin admin;          /* the control socket and /metrics */
	struct agent agent;          /* the HAProxy agent's listener */
	enum agent_admin agent_word; /* -s ready, drain, maint */
	int64_t delay_end_ms;        /* LS_DRAIN_DELAY: when the stop proper begins */
	struct quiesce quiesce;      /* LS_QUIESCING onwards: the filtered listeners */
	char name[256];              /* the instance name, in the agent's free text */
	struct scoreboard *sb;
	int64_t next_deadline_ms;    /* LS_RELOADING: abort when not ready by then */
	bool reload_again;           /* a reload was asked for during a reload */
	bool announced;              /* the serving generation's "ready" was logged */
	struct master_counters count;
	struct upgrade up;           /* a live upgrade, on either side */
	bool *handed;                /* LS_UPGRADED: slot i's whole hand-over was relayed */
	int nhanded;
	bool up_understood;          /* the other master read our state, or we read its */
	bool up_ready_sent;          /* a new master: READY went to the old one */
	pid_t up_successor;          /* LS_UPGRADED: the new master */
	int epfd;
	int sigfd;
	int pid_fd;
	char *pid_path;
	bool seen[NSIG];             /* signals seen since the loop last acted on them */
};

/* Signals become readable events; the handlers are the kernel's, and do nothing else. */
static void
master_setup_signals(struct master *m)
{
	sigset_t set;

	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&set);
	for (size_t i = 0; i < sizeof(master_signals) / sizeof(master_signals[0]); i++)
		sigaddset(&set, master_signals[i]);
	if (sigprocmask(SIG_BLOCK, &set, NULL) == -1)
		fatal("sigprocmask");
	if ((m->sigfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC)) == -1)
		fatal("signalfd");
	if ((m->epfd = epoll_create1(EPOLL_CLOEXEC)) == -1)
		fatal("epoll_create1");
	m->sig_ev.kind = MEV_SIGNAL;
	if (ev_add(m->epfd, m->sigfd, EPOLLIN, &m->sig_ev) == -1)
		fatal("epoll_ctl signalfd");
}

static void
master_read_signals(struct master *m)
{
	struct signalfd_siginfo si;

	while (read(m->sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si))
		if (si.ssi_signo < NSIG)
			m->seen[si.ssi_signo] = true;
}

/* The serving generation's config; the supervisor owns it. */
static const struct cfg *
serving_cfg(const struct master *m)
{
	return m->sup.cur.cfg;
}

/*
 * systemd keeps the serving TCP listeners across `systemctl restart` (the
 * unit's FileDescriptorStoreMax=): stored at each READY=1, after start-up and
 * after every reload commit, so a listener a reload closed goes from the
 * store too; a live upgrade's new master stores them once it is in its
 * predecessor's place (systemd ignores what it sends before it is the
 * unit's main process). Not the UDP ones: the master's is set aside (connected to
 * itself, listeners.c), so in the store it would receive nothing.
 */
static void
store_listeners(const struct master *m)
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

static void
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
	store_listeners(m);
	notify_send("READY=1\nSTATUS=serving: %d workers, generation %u", g->nslots, g->number);
}

/* Wall-clock milliseconds: ticket keys outlive a boot's monotonic clock (a live upgrade carries them). */
static int64_t
wall_ms(void)
{
	return (int64_t)time(NULL) * 1000;
}

/*
 * TLS session ticket keys, in the scoreboard every worker maps: made at
 * start, before any fork, so that a ticket from one worker resumes on
 * any other and after a reload; rotated daily, the previous key still
 * accepted for a day more (common/tlsctx.h).
 */
#define TICKET_ROTATE_MS (24 * 3600 * 1000LL)

static void
tickets_start(struct scoreboard *sb, const struct master_boot *boot)
{
	const struct upmsg_state *from = &boot->from.state;

	/* A live upgrade's new master carries on with the old one's keys, when it sent them. */
	if (boot->upgrade_fd != -1 && boot->from.understood && from->has_tickets) {
		sb->tls_keys = from->tickets;
		sb->tls_keys.seq = 0;
		log_info("upgrade: TLS session ticket keys taken over from the old master");
	} else if (tlsctx_rotate_ticket_keys(&sb->tls_keys, wall_ms()) == -1) {
		fatalx("cannot make TLS session ticket keys: no randomness");
	}
	tlsctx_use_ticket_keys(&sb->tls_keys);
}

static void
tickets_tick(struct scoreboard *sb)
{
	if (wall_ms() - sb->tls_keys.created_ms >= TICKET_ROTATE_MS &&
	    tlsctx_rotate_ticket_keys(&sb->tls_keys, wall_ms()) == -1)
		log_warnx("cannot rotate the TLS session ticket keys: no randomness; keeping them");
}

/* Says once whether the workers are sandboxed (sandbox, and a build or run that allows it). */
static void
sandbox_report(const struct cfg *cfg)
{
	const char *why = confine_unavailable();
	int abi = confine_landlock_abi();

	if (!cfg->sandbox)
		log_warnx("sandbox = false: workers run unconfined; one taken over could open files, "
		    "run programs and connect anywhere its user can");
	else if (why != NULL)
		log_notice("sandbox off: %s", why);
	else if (abi == 0)
		log_info("sandbox on: no_new_privs and seccomp; this kernel has no Landlock, so "
		    "file access is refused by seccomp alone");
	else
		log_info("sandbox on: no_new_privs, Landlock ABI %d and seccomp", abi);
}

/* The master's own share (master/confine.h); a failure at start is fatal, as for a worker. */
static void
master_confine(const struct cfg *cfg)
{
	char err[256];

	sandbox_report(cfg);
	if (cfg->sandbox && confine_unavailable() == NULL && confine_master(err, sizeof(err)) == -1)
		fatalx("cannot confine the master: %s (sandbox = false runs without)", err);
}

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
static void
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

static void
reload_queue(struct master *m, const char *why)
{
	(void)why;
	m->reload_again = true;
}

static void
reload_abort(struct master *m, const char *why)
{
	sup_abort_next(&m->sup, ev_now_ms());
	m->state = LS_SERVING;
	reload_failed(m, why);
}

/* Every new worker is ready: the old ones drain, the new config serves. */
static void master_name_init(struct master *m);

static void
reload_commit(struct master *m, const char *why)
{
	char msg[128], body[sizeof(msg) + 1];
	int64_t now = ev_now_ms();
	bool was_sandboxed = serving_cfg(m)->sandbox;

	(void)why;
	sup_commit_next(&m->sup, now);
	master_name_init(m);
	m->state = LS_SERVING;
	m->announced = false;
	log_configure(serving_cfg(m)->log_facility, serving_cfg(m)->log_level,
	    serving_cfg(m)->log_stderr);
	if (serving_cfg(m)->sandbox != was_sandboxed)
		sandbox_report(serving_cfg(m));
	snprintf(msg, sizeof(msg), "reload ok: generation %u, %d workers", m->sup.cur.number,
	    m->sup.cur.nslots);
	log_notice("%s", msg);
	m->count.reloads_ok++;
	announce_ready(m);
	sup_limit_draining(&m->sup, now);
	snprintf(body, sizeof(body), "%s\n", msg);
	admin_answer_deferred(&m->admin, true, body);
}

static void life_fire(struct master *m, enum life_event event, const char *why);

/* Reports a failed upgrade: log, counters, systemd, waiting control clients. */
static void
upgrade_failed(struct master *m, const char *why)
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

/* Checks the new binary first; upgrade_progress starts it once the check passed. */
static void
upgrade_begin(struct master *m, const char *why)
{
	(void)why;
	if (upgrade_check(&m->up, ev_now_ms()) == -1) {
		upgrade_failed(m, m->up.why);
		return;
	}
	notify_send("STATUS=upgrading to %s", m->up.exe);
	m->state = LS_UPGRADING;
}

/*
 * Before READY anything that goes wrong ends here: the new master (or the
 * check) is killed, its workers follow it (PDEATHSIG), and we serve on as
 * if nothing had happened: no listener, no control socket, no pid file of
 * ours was ever closed.
 */
static void
upgrade_abort(struct master *m, const char *why)
{
	char reason[sizeof(m->up.why)];

	snprintf(reason, sizeof(reason), "%s", why != NULL ? why : m->up.why);
	upgrade_kill(&m->up);
	m->state = LS_SERVING;
	upgrade_failed(m, reason);
}

/* Our state for the new master, and the descriptors that go with it. */
static void
upgrade_state(const struct master *m, struct upmsg_state *st, int pass[3])
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

/* The check passed: the new master starts, with our listeners and our state. */
static void
upgrade_start_new(struct master *m)
{
	struct upmsg_state st;
	int pass[3];

	upgrade_state(m, &st, pass);
	if (upgrade_spawn(&m->up, &st, pass, m->sup.cur.ls, ev_now_ms()) == -1)
		life_fire(m, LE_UPGRADE_FAILED, m->up.why);
}

/* The new master read our state: it takes our place and our connections. */
static void
upgrade_commit_handover(struct master *m)
{
	if ((m->handed = calloc((size_t)m->sup.cur.nslots + 1, sizeof(*m->handed))) == NULL)
		fatal("calloc");
	m->nhanded = m->sup.cur.nslots;
	admin_release(&m->admin);
	agent_close(&m->agent);  /* the new master binds it as it takes over */
	/* The lock is the open file's, and the new master holds it too: closing ours keeps it. */
	if (m->pid_fd != -1)
		close(m->pid_fd);
	m->pid_fd = -1;
	if (upgrade_take_over(&m->up, m->sup.cur.nslots) == -1)
		sup_retire_upgraded(&m->sup, m->handed, ev_now_ms());  /* all drain */
}

/*
 * The new master is ready. NotifyAccess=main is enough for systemd to take
 * MAINPID= and READY=1 from us: we are still the main process when we send
 * them, and from then on the new master is.
 */
static void
upgrade_commit(struct master *m, const char *why)
{
	const struct upmsg *r = &m->up.msg;
	char msg[160], body[sizeof(msg) + 1];

	(void)why;
	m->up_successor = r->pid;
	notify_send("MAINPID=%ld\nREADY=1\nSTATUS=upgraded: pid %ld, version %s, generation %u",
	    (long)r->pid, (long)r->pid, r->binary_version, r->generation);
	snprintf(msg, sizeof(msg), "upgrade ok: pid %ld, version %s, generation %u", (long)r->pid,
	    r->binary_version, r->generation);
	log_notice("%s", msg);
	m->count.upgrades_ok++;
	snprintf(body, sizeof(body), "%s\n", msg);
	admin_answer_deferred(&m->admin, true, body);
	m->state = LS_UPGRADED;
	sup_freeze(&m->sup);
	if (m->up.understood) {
		upgrade_commit_handover(m);
		return;
	}
	/* It could not read our state: our workers drain, and it binds what we leave behind. */
	log_notice("upgrade: pid %ld did not understand our state (format %u); our workers drain",
	    (long)r->pid, UPMSG_VERSION);
	sup_stop(&m->sup, true, ev_now_ms());
}

/* A stop during a reload first fails the reload, so that its waiting clients get an answer. */
static void
stop(struct master *m, bool graceful, const char *why)
{
	log_notice("shutting down (%s)", graceful ? "graceful" : "fast");
	if (m->state == LS_RELOADING)
		reload_abort(m, why);
	if (m->state == LS_UPGRADING)
		upgrade_abort(m, why);
	notify_send("STOPPING=1\nSTATUS=shutting down (%s)", graceful ? "graceful" : "fast");
	m->state = graceful ? LS_QUITTING : LS_TERMINATING;
	sup_stop(&m->sup, graceful, ev_now_ms());
}

/* Why EVENT does nothing now, for the operator who asked for it. */
static const char *
life_refusal(const struct master *m, enum life_event event)
{
	switch (m->state) {
	case LS_RELOADING:
		return "a reload is in progress";
	case LS_UPGRADING:
	case LS_UPGRADED:
		return event == LE_UPGRADE ? "an upgrade is already in progress" :
		    "an upgrade is in progress";
	default:
		return "shutting down";
	}
}

static void
quit(struct master *m, const char *why)
{
	stop(m, true, why);
}

static void
terminate(struct master *m, const char *why)
{
	stop(m, false, why);
}

/*
 * A graceful stop in three steps, so that it resets no connection: with
 * drain_delay, first report drain while still accepting (the balancer moves
 * new clients elsewhere); then quiesce (quiesce.h): no new handshakes, and
 * the workers accept what the kernel has queued; then quit as above.
 */
static void
quiesce_start(struct master *m, const char *why)
{
	const struct sup_gen *g = &m->sup.cur;
	int fds[g->ls->n > 0 ? g->ls->n : 1];
	size_t n = 0;

	for (size_t i = 0; i < g->ls->n; i++)
		if (g->cfg->listen[i].proto == CFG_PROTO_TCP)
			fds[n++] = g->ls->fds[i];
	if (quiesce_begin(&m->quiesce, fds, n, ev_now_ms(), GRACEFUL_QUIESCE_TIMEOUT_MS) == -1) {
		log_warnx("graceful stop: out of memory; queued connections may be reset");
		quit(m, why);
		return;
	}
	log_notice("graceful stop: no new connections; accepting the %zu TCP listeners' queues", n);
	notify_send("STOPPING=1\nSTATUS=stopping: accepting the queued connections");
	m->state = LS_QUIESCING;
}

static void
drain_delay_start(struct master *m, const char *why)
{
	int delay = serving_cfg(m)->drain_delay;

	if (m->state == LS_RELOADING)
		reload_abort(m, why);
	if (m->state == LS_UPGRADING)
		upgrade_abort(m, why);
	if (delay == 0) {
		quiesce_start(m, why);
		return;
	}
	m->delay_end_ms = ev_now_ms() + (int64_t)delay * 1000;
	m->state = LS_DRAIN_DELAY;
	log_notice("graceful stop: reporting drain for %d s (drain_delay) before stopping", delay);
	notify_send("STOPPING=1\nSTATUS=draining (stopping in %d s)", delay);
}

/* WHY says what caused the event, for the messages of a failure. */
typedef void life_action(struct master *m, const char *why);

static life_action *const lifecycle[LS_COUNT][LE_COUNT] = {
	[LS_SERVING] = {
		[LE_RELOAD] = reload_begin,
		[LE_UPGRADE] = upgrade_begin,
		[LE_QUIT] = drain_delay_start,
		[LE_TERMINATE] = terminate,
	},
	[LS_RELOADING] = {
		[LE_RELOAD] = reload_queue,
		[LE_QUIT] = drain_delay_start,
		[LE_TERMINATE] = terminate,
		[LE_NEXT_READY] = reload_commit,
		[LE_NEXT_FAILED] = reload_abort,
	},
	[LS_UPGRADING] = {
		[LE_QUIT] = drain_delay_start,
		[LE_TERMINATE] = terminate,
		[LE_UPGRADE_READY] = upgrade_commit,
		[LE_UPGRADE_FAILED] = upgrade_abort,
	},
	[LS_UPGRADED] = {
		[LE_TERMINATE] = terminate,
	},
	[LS_QUITTING] = {
		[LE_TERMINATE] = terminate,
	},
	[LS_TERMINATING] = { 0 },
	[LS_DRAIN_DELAY] = {
		[LE_TERMINATE] = terminate,
		[LE_DELAY_OVER] = quiesce_start,
	},
	[LS_QUIESCING] = {
		[LE_TERMINATE] = terminate,
		[LE_QUIESCED] = quit,
	},
};

/* Acts on EVENT in the current state. */
static void
life_fire(struct master *m, enum life_event event, const char *why)
{
	life_action *act = lifecycle[m->state][event];

	if (act != NULL)
		act(m, why);
}

/* True when EVENT does something in the current state. */
static bool
life_takes(const struct master *m, enum life_event event)
{
	return lifecycle[m->state][event] != NULL;
}

/* A signal's event: when the state refuses it, the log says why. */
static void
life_fire_asked(struct master *m, enum life_event event, const char *what)
{
	if (!life_takes(m, event)) {
		log_warnx("%s refused: %s", what, life_refusal(m, event));
		return;
	}
	life_fire(m, event, NULL);
}

/* The old master: one old slot's hand-over, relayed by the new master, goes to its worker. */
static void
upgrade_forward(struct master *m)
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
upgrade_retire(struct master *m)
{
	if (m->handed == NULL)
		return;
	sup_retire_upgraded(&m->sup, m->handed, ev_now_ms());
	free(m->handed);
	m->handed = NULL;
}

/* The new master: wires each old slot's hand-over to our workers, through the old master. */
static void
upgrade_receive(struct master *m, int nold)
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

/* The new master: the pid file, then the operators' sockets, are ours from now on. */
static void
upgrade_take_place(struct master *m)
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
	store_listeners(m);
	notify_send("STATUS=serving: %d workers, generation %u", m->sup.cur.nslots,
	    m->sup.cur.number);
}

/* The new master: the old one's channel closed. */
static void
upgrade_peer_gone(struct master *m)
{
	if (m->up.phase == UP_ADOPTING) {
		/* Not understood: it drained and exited. Or it died: someone must serve. */
		if (m->up_understood)
			log_warnx("upgrade: the old master %ld went away before handing over",
			    (long)m->up.peer_pid);
		upgrade_take_place(m);
	}
	log_info("upgrade: the old master %ld has exited", (long)m->up.peer_pid);
}

/* What an upgrade's process or channel said, on either side. */
static void
upgrade_progress(struct master *m, enum upgrade_event ev)
{
	switch (ev) {
	case UPE_NONE:
		return;
	case UPE_CHECKED:
		upgrade_start_new(m);
		return;
	case UPE_FAILED:
		life_fire(m, LE_UPGRADE_FAILED, m->up.why);
		return;
	case UPE_ANSWERED:
		m->up_understood = m->up.understood;
		return;
	case UPE_READY:
		life_fire(m, LE_UPGRADE_READY, NULL);
		return;
	case UPE_HAND_OVER:
		upgrade_forward(m);
		return;
	case UPE_HANDED:
		upgrade_retire(m);
		return;
	case UPE_TAKE_OVER:
		upgrade_take_place(m);
		upgrade_receive(m, m->up.msg.slot);
		return;
	case UPE_PEER_GONE:
		if (m->state == LS_UPGRADED)
			upgrade_retire(m);  /* what it had relayed moves, the rest drains */
		else
			upgrade_peer_gone(m);
		return;
	}
}

/* Past the point of no return: the loop ends once no worker is left. */
static bool
stopping(const struct master *m)
{
	return m->state == LS_QUITTING || m->state == LS_TERMINATING || m->state == LS_UPGRADED;
}

/* What the HAProxy agent reports, from the lifecycle, the operator and the workers. */
static void
agent_view_fill(const struct master *m, const struct status_view *v, struct agent_view *av)
{
	memset(av, 0, sizeof(*av));
	av->admin = m->agent_word;
	av->stopping = m->state == LS_QUIESCING || stopping(m);
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

/* The supervisor's view now; false when out of memory. v->w is malloc'd. */
static bool
master_view(const struct master *m, struct status_view *v)
{
	memset(v, 0, sizeof(*v));
	if (sup_view(&m->sup, v) == -1)
		return false;
	v->now_ms = ev_now_ms();
	return true;
}

/* The agent's line and its description of the state now; false when out of memory. */
static bool
agent_now(const struct master *m, char *line, size_t linelen, char *what, size_t whatlen)
{
	struct status_view v;
	struct agent_view av;

	if (!master_view(m, &v))
		return false;
	agent_view_fill(m, &v, &av);
	free(v.w);
	agent_reply(&av, line, linelen);
	if (what != NULL)
		agent_describe(&av, what, whatlen);
	return true;
}

/* HAProxy's agent asks: every waiting client gets the line. */
static void
agent_event(struct master *m)
{
	char line[512];

	if (!agent_now(m, line, sizeof(line), NULL, 0))
		snprintf(line, sizeof(line), "down #%s out of memory\n", m->name);
	agent_serve(&m->agent, line);
}

/*
 * The instance name in the agent's free text: the serving config's `name`
 * (the host name when ""), taken again at each reload. Kept to characters
 * that need no quoting in a status line, JSON or an agent reply.
 */
static void
master_name_init(struct master *m)
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
static void
set_agent_word(struct master *m, const struct admin_request *r)
{
	static const char *const names[] = {
		[AGENT_READY] = "ready", [AGENT_DRAIN] = "drain", [AGENT_MAINT] = "maint",
	};
	char line[512], what[128], body[160];

	m->agent_word = r->what == ADMIN_DRAIN ? AGENT_DRAIN :
	    r->what == ADMIN_MAINT ? AGENT_MAINT : AGENT_READY;
	if (!agent_now(m, line, sizeof(line), what, sizeof(what)))
		snprintf(what, sizeof(what), "%s", names[m->agent_word]);
	log_notice("operator: %s; the agent reports %s", names[m->agent_word], what);
	notify_send("STATUS=%s", what);
	snprintf(body, sizeof(body), "%s\n", what);
	admin_answer(&m->admin, r->client, true, body);
}

static void
log_handed_over(const struct sup_move *mv)
{
	log_notice("generation %u handed over %" PRIu64 " connections in %" PRId64 " ms "
	    "(%d workers; %" PRIu64 " could not move and were drained)", mv->generation, mv->moved,
	    ev_now_ms() - mv->started_ms, mv->workers, mv->kept);
}

static void
reap_children(struct master *m)
{
	unsigned what;
	int status;
	pid_t pid;

	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		enum upgrade_event ev;
		if (upgrade_reaped(&m->up, pid, status, &ev)) {
			upgrade_progress(m, ev);
			continue;
		}
		what = sup_exited(&m->sup, pid, status, ev_now_ms());
		if (what & SUP_NEXT_DIED)
			life_fire(m, LE_NEXT_FAILED, "a new worker died before it was ready");
		if (what & SUP_HANDED_OVER)
			log_handed_over(&m->sup.done);
	}
	if (pid == -1 && errno != ECHILD)
		log_warn("waitpid");
}

static void
reopen_logs(void)
{
	log_reopen();
	log_notice("reopened logs");
}

/* Takes one signal off the pending set: true when it had arrived. */
static bool
took(struct master *m, int signo)
{
	bool seen = m->seen[signo];

	m->seen[signo] = false;
	return seen;
}

static void
act_on_signals(struct master *m)
{
	if (took(m, SIGCHLD))
		reap_children(m);
	if (took(m, SIGTERM))
		life_fire(m, serving_cfg(m)->stop_graceful ? LE_QUIT : LE_TERMINATE, "shutting down");
	if (took(m, SIGINT))
		life_fire(m, LE_TERMINATE, "shutting down");
	if (took(m, SIGQUIT))
		life_fire(m, LE_QUIT, "shutting down");
	if (took(m, SIGHUP))
		life_fire_asked(m, LE_RELOAD, "reload");
	if (took(m, SIGUSR2))
		life_fire_asked(m, LE_UPGRADE, "upgrade");
	if (took(m, SIGUSR1))
		reopen_logs();
	if (took(m, SIGTTIN))
		sup_scale(&m->sup, +1, ev_now_ms());
	if (took(m, SIGTTOU))
		sup_scale(&m->sup, -1, ev_now_ms());
}

/* The supervisor's view and the master's own figures, in one rendering; NULL when out of memory. */
static char *
master_status(const struct master *m, enum status_format format)
{
	struct status_view v;
	struct agent_view av;
	char line[512], what[128];
	char *text;

	if (!master_view(m, &v))
		return NULL;
	agent_view_fill(m, &v, &av);
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

static void
answer_status(struct master *m, const struct admin_request *r)
{
	char *text = master_status(m, r->what == ADMIN_STATUS ? STATUS_TEXT :
	    r->what == ADMIN_STATUS_JSON ? STATUS_JSON : STATUS_PROMETHEUS);

	admin_answer(&m->admin, r->client, text != NULL, text != NULL ? text : "out of memory\n");
	free(text);
}

/* A reload or an upgrade: answered with its outcome, or at once with why not. */
static void
act_deferred(struct master *m, const struct admin_request *r, enum life_event event)
{
	char body[128];

	if (!life_takes(m, event)) {
		snprintf(body, sizeof(body), "%s refused: %s\n", event == LE_RELOAD ? "reload" :
		    "upgrade", life_refusal(m, event));
		admin_answer(&m->admin, r->client, false, body);
		return;
	}
	admin_defer(&m->admin, r->client);
	life_fire(m, event, NULL);
}

/* One operator's request, taken from admin's queue: act, then answer. */
static void
act_on_request(struct master *m, const struct admin_request *r)
{
	switch (r->what) {
	case ADMIN_STATUS:
	case ADMIN_STATUS_JSON:
	case ADMIN_METRICS:
		answer_status(m, r);
		return;
	case ADMIN_RELOAD:
	case ADMIN_UPGRADE:
		act_deferred(m, r, r->what == ADMIN_RELOAD ? LE_RELOAD : LE_UPGRADE);
		return;
	case ADMIN_RESPAWN:
		sup_unpark(&m->sup, ev_now_ms());
		admin_answer(&m->admin, r->client, true, "parked worker slots released\n");
		return;
	case ADMIN_STOP:
	case ADMIN_QUIT:
		admin_answer(&m->admin, r->client, true,
		    r->what == ADMIN_STOP ? "stopping\n" : "stopping gracefully\n");
		life_fire(m, r->what == ADMIN_QUIT ? LE_QUIT : LE_TERMINATE, "shutting down");
		return;
	case ADMIN_REOPEN:
		reopen_logs();
		admin_answer(&m->admin, r->client, true, "logs reopened\n");
		return;
	case ADMIN_DRAIN:
	case ADMIN_READY:
	case ADMIN_MAINT:
		set_agent_word(m, r);
		return;
	}
}

static void
act_on_requests(struct master *m)
{
	struct admin_request r;

	while (admin_take(&m->admin, &r))
		act_on_request(m, &r);
}

static void
reload_progress(struct master *m)
{
	if (m->state != LS_RELOADING)
		return;
	if (sup_gen_ready(&m->sup.next))
		life_fire(m, LE_NEXT_READY, NULL);
	else if (ev_now_ms() >= m->next_deadline_ms)
		life_fire(m, LE_NEXT_FAILED, "the new workers did not report ready in time");
}

/* drain_delay's end, and the quiesce's looks at the accept queues. */
static void
graceful_progress(struct master *m)
{
	int64_t now = ev_now_ms();

	if (m->state == LS_DRAIN_DELAY && now >= m->delay_end_ms)
		life_fire(m, LE_DELAY_OVER, "shutting down");
	if (m->state != LS_QUIESCING)
		return;
	switch (quiesce_poll(&m->quiesce, now)) {
	case QUIESCE_WAITING:
		return;
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
	life_fire(m, LE_QUIESCED, "shutting down");
}

/* A reload asked for during another one runs once that one has ended. */
static void
reload_queued(struct master *m)
{
	if (!m->reload_again || m->state != LS_SERVING)
		return;
	m->reload_again = false;
	life_fire(m, LE_RELOAD, NULL);
}

/* Milliseconds until the next timed duty, or -1 when only an event can wake us. */
static int
loop_timeout(const struct master *m, int64_t admin_due)
{
	int64_t now = ev_now_ms(), due = sup_next_due(&m->sup, now);

	if (m->state == LS_RELOADING)
		due = ev_sooner(due, m->next_deadline_ms);
	if (m->state == LS_DRAIN_DELAY)
		due = ev_sooner(due, m->delay_end_ms);
	if (m->state == LS_QUIESCING)
		due = ev_sooner(due, quiesce_due(&m->quiesce));
	due = ev_sooner(due, upgrade_due(&m->up));
	due = ev_sooner(due, admin_due);
	if (due == 0)
		return -1;
	return due <= now ? 0 : (int)(due - now);
}

static void
dispatch(struct master *m, struct ev_source *src)
{
	switch (src->kind) {
	case MEV_SIGNAL:
		master_read_signals(m);
		break;
	case MEV_WORKER:
		sup_channel_event(&m->sup, (struct sup_proc *)src);
		break;
	case MEV_AGENT:
		agent_event(m);
		break;
	case MEV_UPGRADE:
		upgrade_progress(m, upgrade_read(&m->up));
		break;
	default:
		admin_event(&m->admin, src, ev_now_ms());
		break;
	}
}

/* Each turn: take in what happened, then do every duty in order. */
static void
master_loop(struct master *m)
{
	struct epoll_event events[64];
	int64_t admin_due = 0;

	while (!(stopping(m) && sup_empty(&m->sup))) {
		int n = epoll_wait(m->epfd, events, 64, loop_timeout(m, admin_due));

		if (n == -1 && errno != EINTR)
			fatal("epoll_wait");
		for (int i = 0; i < n; i++)
			dispatch(m, events[i].data.ptr);
		/* Requests before signals: a `stop` wins over a HUP of the same turn. */
		act_on_requests(m);
		act_on_signals(m);
		reload_progress(m);
		reload_queued(m);
		graceful_progress(m);
		if (m->state == LS_UPGRADING && upgrade_overdue(&m->up, ev_now_ms()))
			life_fire(m, LE_UPGRADE_FAILED, m->up.why);
		announce_ready(m);
		tickets_tick(m->sb);
		sup_tick(&m->sup, ev_now_ms());
		admin_due = admin_expire(&m->admin, ev_now_ms());
	}
}

/* Generation 1, or after a live upgrade the one after the old master's. */
static unsigned
first_generation(const struct master_boot *boot)
{
	return boot->upgrade_fd != -1 && boot->from.generation != 0 ? boot->from.generation + 1 : 1;
}

/*
 * A live upgrade's new master: the old master's figures carry on, and its
 * control socket and /metrics become ours without being watched yet (it
 * answers operators until it tells us to take over).
 */
static void
master_adopt(struct master *m, const struct master_boot *boot)
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

static void
master_start(struct master *m, const struct master_boot *boot)
{
	struct cfg *cfg = boot->cfg;
	char err[CFG_ERR_LEN];

	memset(m, 0, sizeof(*m));
	m->count.started_ms = ev_now_ms();
	m->pid_fd = boot->pid_fd;
	m->pid_path = boot->pid_path;
	proctitle_set("echomaster: master process %s", proctitle_cmdline());
	master_setup_signals(m);
	notify_init();
	if ((m->sb = scoreboard_create()) == NULL)
		fatal("cannot map the scoreboard");
	tickets_start(m->sb, boot);
	upgrade_init(&m->up, m->epfd, MEV_UPGRADE, boot->exe, cfg->path);
	if (boot->upgrade_fd != -1)
		master_adopt(m, boot);
	else if (admin_open(&m->admin, m->epfd, cfg, err, sizeof(err)) == -1)
		fatalx("%s", err);
	/*
	 * A live upgrade's new master binds the agent when it takes over
	 * (upgrade_take_place): until then the old master answers HAProxy, and
	 * holds the port.
	 */
	m->agent.fd = -1;
	if (boot->upgrade_fd == -1 &&
	    agent_open(&m->agent, m->epfd, cfg, -1, MEV_AGENT, err, sizeof(err)) == -1)
		fatalx("%s", err);
	log_notice("echomaster %s starting: config %s, %d workers%s", EM_VERSION, cfg->path,
	    cfg->workers, cfg->workers_auto ? " (auto)" : "");
	master_confine(cfg);
	sup_init(&m->sup, m->epfd, m->sb, MEV_WORKER, &sup_real_ops);
	if (sup_start_numbered(&m->sup, first_generation(boot), cfg, boot->ls, ev_now_ms()) == -1)
		fatal("starting workers");
	master_name_init(m);
}

int
master_run(const struct master_boot *boot)
{
	struct master m;

	master_start(&m, boot);
	free(boot->exe);  /* upgrade_init keeps its own copy */
	master_loop(&m);
	admin_close(&m.admin);
	agent_close(&m.agent);
	/* Before the listeners close: a socket kept by systemd must not keep the filter. */
	quiesce_release(&m.quiesce);
	sup_free(&m.sup);
	pidfile_release(m.pid_fd, m.pid_path);  /* after an upgrade: none, it is the new master's */
	free(m.pid_path);
	free(m.handed);
	upgrade_close(&m.up);
	if (m.state == LS_UPGRADED)
		log_notice("upgrade: handed over to pid %ld", (long)m.up_successor);
	log_notice("exiting");
	return EXIT_OK;
}
