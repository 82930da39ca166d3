/*
 * The master's context, signal intake, lifecycle table and loop (master.h);
 * what each step of the lifecycle does lives beside it (master_int.h).
 */
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
#include <time.h>
#include <unistd.h>

#include "common/ev.h"
#include "common/exitcode.h"
#include "common/log.h"
#include "common/proctitle.h"
#include "common/scoreboard.h"
#include "common/tlsctx.h"
#include "master/admin.h"
#include "master/agent.h"
#include "master/confine.h"
#include "master/events.h"
#include "master/listeners.h"
#include "master/master_int.h"
#include "master/notify.h"
#include "master/pidfile.h"
#include "master/quiesce.h"
#include "master/supervisor.h"
#include "master/tickets.h"
#include "master/upgrade.h"

/* The signals the master acts on; the loop reads them from a signalfd. */
static const int master_signals[] = {
	SIGCHLD, SIGHUP, SIGQUIT, SIGTERM, SIGINT, SIGUSR1, SIGUSR2, SIGTTIN, SIGTTOU,
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

/* The master's own share (master/confine.h); a failure at start is fatal, as for a worker. */
static void
master_confine(const struct cfg *cfg)
{
	char err[256];

	announce_sandbox(cfg);
	if (cfg->sandbox && confine_unavailable() == NULL && confine_master(err, sizeof(err)) == -1)
		fatalx("cannot confine the master: %s (sandbox = false runs without)", err);
}

/* A stop during a reload first fails the reload, so that its waiting clients get an answer. */
static void
stop(struct master *m, bool graceful, const char *why)
{
	log_notice("shutting down (%s)", graceful ? "graceful" : "fast");
	if (m->state == LS_RELOADING)
		reload_abort(m, why);
	if (m->state == LS_UPGRADING)
		upgrading_abort(m, why);
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
 * LE_QUIT: a graceful stop (graceful.c), or a plain one when its quiesce
 * cannot begin. A live upgrade's new master that has not taken over yet
 * shares the listeners with the old master, serving on: no drain_delay,
 * no filter on them; its workers finish and it exits.
 */
static void
drain_delay_start(struct master *m, const char *why)
{
	if (!upgrade_owns_place(&m->up) || graceful_begin(m, why) == -1)
		quit(m, why);
}

/* LE_DELAY_OVER: the quiesce, or as above. */
static void
quiesce_start(struct master *m, const char *why)
{
	if (graceful_quiesce(m) == -1)
		quit(m, why);
}

/* The lifecycle (master_int.h): each state's action for each event; empty = none. */
static life_action *const lifecycle[LS_COUNT][LE_COUNT] = {
	[LS_SERVING] = {
		[LE_RELOAD] = reload_begin,
		[LE_UPGRADE] = upgrading_begin,
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
		[LE_UPGRADE_READY] = upgrading_confirm,
		[LE_UPGRADE_TAKEN] = upgrading_commit,
		[LE_UPGRADE_FAILED] = upgrading_abort,
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
	life_action *act = event != LE_NONE ? lifecycle[m->state][event] : NULL;

	if (act != NULL)
		act(m, why);
}

/* True when EVENT does something in the current state. */
static bool
life_takes(const struct master *m, enum life_event event)
{
	return lifecycle[m->state][event] != NULL;
}

/*
 * Why an operator's EVENT is refused now (in BUF when it names a pid), or
 * NULL when it goes ahead. An upgrade also waits for the previous master
 * of the last one to exit: it is our peer on the one upgrade channel.
 */
static const char *
life_refused(const struct master *m, enum life_event event, char *buf, size_t len)
{
	pid_t prev = upgrade_predecessor(&m->up);

	if (!life_takes(m, event))
		return life_refusal(m, event);
	if (event == LE_UPGRADE && prev > 0) {
		snprintf(buf, len, "the previous master %ld is still draining", (long)prev);
		return buf;
	}
	return NULL;
}

/* A signal's event: when the state refuses it, the log says why. */
static void
life_fire_asked(struct master *m, enum life_event event, const char *what)
{
	char buf[96];
	const char *no = life_refused(m, event, buf, sizeof(buf));

	if (no != NULL) {
		log_warnx("%s refused: %s", what, no);
		return;
	}
	life_fire(m, event, NULL);
}

/* What an upgrade's process or channel said: upgrading.c acts, and names the event, if any. */
static void
act_on_upgrade(struct master *m, enum upgrade_event ev)
{
	const char *why;
	enum life_event event = upgrading_progress(m, ev, &why);

	life_fire(m, event, why);
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
			act_on_upgrade(m, ev);
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

/* A reload or an upgrade: answered with its outcome, or at once with why not. */
static void
act_deferred(struct master *m, const struct admin_request *r, enum life_event event)
{
	char body[160], buf[96];
	const char *no = life_refused(m, event, buf, sizeof(buf));

	if (no != NULL) {
		snprintf(body, sizeof(body), "%s refused: %s\n", event == LE_RELOAD ? "reload" :
		    "upgrade", no);
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
		report_status(m, r);
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
		report_agent_word(m, r);
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

/* The next generation's wait, then a reload asked for during the last one. */
static void
reload_duties(struct master *m)
{
	const char *why;
	enum life_event event = reload_progress(m, &why);

	life_fire(m, event, why);
	if (reload_queued(m))
		life_fire(m, LE_RELOAD, NULL);
}

/* drain_delay's end, and the quiesce's looks at the accept queues. */
static void
graceful_progress(struct master *m)
{
	int64_t now = ev_now_ms();

	if (graceful_delay_over(m, now))
		life_fire(m, LE_DELAY_OVER, "shutting down");
	if (graceful_quiesced(m, now))
		life_fire(m, LE_QUIESCED, "shutting down");
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
	due = ev_sooner(due, tickets_due(&m->sb->tls_keys, now));
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
		report_agent(m);
		break;
	case MEV_UPGRADE:
		act_on_upgrade(m, upgrade_read(&m->up));
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

	while (!(life_stopping(m) && sup_empty(&m->sup))) {
		int n = epoll_wait(m->epfd, events, 64, loop_timeout(m, admin_due));

		if (n == -1 && errno != EINTR)
			fatal("epoll_wait");
		for (int i = 0; i < n; i++)
			dispatch(m, events[i].data.ptr);
		/* Requests before signals: a `stop` wins over a HUP of the same turn. */
		act_on_requests(m);
		act_on_signals(m);
		reload_duties(m);
		graceful_progress(m);
		if (m->state == LS_UPGRADING && upgrade_overdue(&m->up, ev_now_ms()))
			life_fire(m, LE_UPGRADE_FAILED, m->up.why);
		announce_ready(m);
		tickets_tick(&m->sb->tls_keys);
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
	/* A live upgrade's new master carries on with the old one's keys, when it sent them. */
	tickets_start(&m->sb->tls_keys, boot->upgrade_fd != -1 && boot->from.understood &&
	    boot->from.state.has_tickets ? &boot->from.state.tickets : NULL);
	upgrade_init(&m->up, m->epfd, MEV_UPGRADE, boot->exe, cfg->path);
	if (boot->upgrade_fd != -1)
		upgrading_adopt(m, boot);
	else if (admin_open(&m->admin, m->epfd, cfg, err, sizeof(err)) == -1)
		fatalx("%s", err);
	/*
	 * A live upgrade's new master binds the agent when it takes over
	 * (upgrading_take_place): until then the old master answers HAProxy, and
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
	report_name_init(m);
}

int
master_run(const struct master_boot *boot)
{
	struct master m;

	master_start(&m, boot);
	free(boot->exe);  /* upgrade_init keeps its own copy */
	master_loop(&m);
	if (!upgrade_owns_place(&m.up)) {
		/* Stopped before taking over: the old master's paths are its own, serving on. */
		admin_release(&m.admin);
		if (m.pid_fd != -1)
			close(m.pid_fd);
		m.pid_fd = -1;
	}
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
