#include "master/master.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/exitcode.h"
#include "common/ev.h"
#include "common/log.h"
#include "common/proctitle.h"
#include "common/scoreboard.h"
#include "master/events.h"
#include "master/listeners.h"
#include "master/master_priv.h"
#include "master/notify.h"
#include "master/pidfile.h"
#include "master/workers.h"

/* How long a reload waits for every new worker to report ready. */
#define RELOAD_READY_TIMEOUT_MS 10000
/* Fast shutdown: how long workers get for SIGTERM before SIGKILL. */
#define FAST_STOP_GRACE_MS      800
/* Past shutdown_timeout, how long a draining worker may still take before SIGKILL. */
#define DRAIN_GRACE_MS          2000

static int64_t
now_ms(void)
{
	return ev_now_ms();
}

int64_t
master_now_ms(void)
{
	return now_ms();
}

static void
master_signal_set(sigset_t *set)
{
	sigemptyset(set);
	sigaddset(set, SIGCHLD);
	sigaddset(set, SIGHUP);
	sigaddset(set, SIGQUIT);
	sigaddset(set, SIGTERM);
	sigaddset(set, SIGINT);
	sigaddset(set, SIGUSR1);
	sigaddset(set, SIGTTIN);
	sigaddset(set, SIGTTOU);
}

/* Signals become readable events; the handlers are the kernel's, and do nothing else. */
static void
master_setup_signals(struct master *m)
{
	sigset_t set;
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &m->sig_kind };

	signal(SIGPIPE, SIG_IGN);
	master_signal_set(&set);
	if (sigprocmask(SIG_BLOCK, &set, NULL) == -1)
		fatal("sigprocmask");
	if ((m->sigfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC)) == -1)
		fatal("signalfd");
	if ((m->epfd = epoll_create1(EPOLL_CLOEXEC)) == -1)
		fatal("epoll_create1");
	if (epoll_ctl(m->epfd, EPOLL_CTL_ADD, m->sigfd, &ev) == -1)
		fatal("epoll_ctl signalfd");
}

static void
master_read_signals(struct master *m)
{
	struct signalfd_siginfo si;

	while (read(m->sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
		switch (si.ssi_signo) {
		case SIGCHLD: m->sig.chld = true; break;
		case SIGHUP:  m->sig.hup = true; break;
		case SIGQUIT: m->sig.quit = true; break;
		case SIGTERM: m->sig.term = true; break;
		case SIGINT:  m->sig.intr = true; break;
		case SIGUSR1: m->sig.usr1 = true; break;
		case SIGTTIN: m->sig.ttin = true; break;
		case SIGTTOU: m->sig.ttou = true; break;
		default: break;
		}
	}
}

static void
proc_link(struct master *m, struct wproc *p)
{
	p->next = m->procs;
	m->procs = p;
}

static void
proc_unlink(struct master *m, struct wproc *p)
{
	for (struct wproc **pp = &m->procs; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == p) {
			*pp = p->next;
			return;
		}
	}
}

static struct wproc *
proc_find(struct master *m, pid_t pid)
{
	for (struct wproc *p = m->procs; p != NULL; p = p->next)
		if (p->pid == pid)
			return p;
	return NULL;
}

static void
proc_signal(struct wproc *p, int sig)
{
	if (kill(p->pid, sig) == -1 && errno != ESRCH)
		log_warn("kill worker %ld", (long)p->pid);
}

/* Forks the worker of one slot; on failure the slot retries after its backoff. */
static void
slot_spawn(struct master *m, struct generation *g, int i)
{
	struct slot *s = &g->slots[i];
	struct wproc *p = wproc_spawn(m->epfd, m->sb, g->cfg, g->ls, i, g->number, now_ms());

	if (p == NULL) {
		s->backoff_ms = workers_backoff_next(s->backoff_ms, 0);
		s->respawn_at_ms = now_ms() + s->backoff_ms;
		log_errorx("cannot start worker slot %d; retrying in %d ms", i, s->backoff_ms);
		return;
	}
	proc_link(m, p);
	s->proc = p;
	s->respawn_at_ms = 0;
}

static int
generation_start(struct master *m, struct generation *g)
{
	g->nslots = g->cfg->workers;
	g->announced = false;
	if ((g->slots = calloc((size_t)g->nslots, sizeof(*g->slots))) == NULL)
		return -1;
	for (int i = 0; i < g->nslots; i++)
		slot_spawn(m, g, i);
	return 0;
}

static bool
generation_ready(const struct generation *g)
{
	for (int i = 0; i < g->nslots; i++)
		if (g->slots[i].proc == NULL || g->slots[i].proc->state != WP_READY)
			return false;
	return true;
}

/* Releases what a generation owns; its workers must already be detached from it. */
static void
generation_free(struct generation *g)
{
	listeners_close(g->ls);
	cfg_free(g->cfg);
	free(g->slots);
	memset(g, 0, sizeof(*g));
}

/*
 * Detaches every worker of G and sends it SIG: QUIT drains within
 * shutdown_timeout, TERM or KILL at once, 0 only detaches.
 */
static void
generation_stop(struct master *m, struct generation *g, int sig, enum wproc_state state)
{
	int64_t kill_at = now_ms() + (sig == SIGQUIT ?
	    (int64_t)g->cfg->shutdown_timeout * 1000 + DRAIN_GRACE_MS : FAST_STOP_GRACE_MS);

	for (int i = 0; i < g->nslots; i++) {
		struct wproc *p = g->slots[i].proc;
		if (p == NULL)
			continue;
		if (sig != 0)
			proc_signal(p, sig);
		m->sb->w[p->sb_entry].serving = 0;
		p->state = state;
		p->kill_at_ms = kill_at;
		g->slots[i].proc = NULL;
	}
}

static void
master_apply_log(const struct cfg *cfg)
{
	log_configure(cfg->log_facility, cfg->log_level, cfg->log_stderr);
}

/* Reports a reload's outcome: log, counters, systemd, waiting control clients. */
static void
reload_failed(struct master *m, const char *why)
{
	char msg[CFG_ERR_LEN + 96];

	snprintf(msg, sizeof(msg), "reload failed: %s; keeping the old configuration (generation %u)",
	    why, m->cur.number);
	log_errorx("%s", msg);
	m->count.reloads_failed++;
	notify_send("READY=1\nSTATUS=%s", msg);
	admin_reload_done(m, false, msg);
}

static void
reload_abort(struct master *m, const char *why)
{
	generation_stop(m, &m->next, SIGKILL, WP_ABORTED);
	generation_free(&m->next);
	reload_failed(m, why);
}

static void
reload_warn_fixed(const struct cfg *old, const struct cfg *new)
{
	if (strcmp(old->pid_file, new->pid_file) != 0)
		log_warnx("changing pid_file needs a restart; still using \"%s\"", old->pid_file);
	if (strcmp(old->control_socket, new->control_socket) != 0)
		log_warnx("changing control_socket needs a restart; still using \"%s\"",
		    old->control_socket);
	if (strcmp(old->metrics_address, new->metrics_address) != 0 ||
	    old->metrics_port != new->metrics_port)
		log_warnx("changing metrics needs a restart");
	if (old->daemon != new->daemon)
		log_warnx("changing daemon needs a restart");
}

/* HUP: build the next generation beside the serving one; it takes over once ready. */
static void
reload_begin(struct master *m)
{
	char err[CFG_ERR_LEN];
	struct cfg *cfg;
	struct listeners *ls;

	if (m->next.cfg != NULL) {
		m->reload_again = true;
		return;
	}
	log_notice("reloading configuration %s", m->cur.cfg->path);
	notify_send("RELOADING=1\nMONOTONIC_USEC=%llu\nSTATUS=reloading %s",
	    notify_monotonic_usec(), m->cur.cfg->path);
	if ((cfg = cfg_load(m->cur.cfg->path, err)) == NULL) {
		reload_failed(m, err);
		return;
	}
	if ((ls = listeners_open(cfg, m->cur.cfg, m->cur.ls, err, sizeof(err))) == NULL) {
		cfg_free(cfg);
		reload_failed(m, err);
		return;
	}
	reload_warn_fixed(m->cur.cfg, cfg);
	m->next.number = m->cur.number + 1;
	m->next.cfg = cfg;
	m->next.ls = ls;
	m->next_deadline_ms = now_ms() + RELOAD_READY_TIMEOUT_MS;
	if (generation_start(m, &m->next) == -1)
		reload_abort(m, "out of memory");
}

void
master_reload(struct master *m)
{
	if (!m->stopping)
		reload_begin(m);
}

static void announce_ready(struct master *m);

/*
 * A reload storm must not pile up old workers: past max_draining_generations
 * the oldest draining generations are cut short (SIGTERM) and it is logged.
 */
int
master_draining_generations(const struct master *m, bool skip_cut, unsigned *oldest)
{
	unsigned seen[64];
	int n = 0;

	if (oldest != NULL)
		*oldest = 0;
	for (const struct wproc *p = m->procs; p != NULL; p = p->next) {
		bool known = false;
		if (p->state != WP_DRAINING || (skip_cut && p->cut))
			continue;
		for (int i = 0; i < n; i++)
			known = known || seen[i] == p->generation;
		if (!known && n < 64)
			seen[n++] = p->generation;
		if (oldest != NULL && (*oldest == 0 || p->generation < *oldest))
			*oldest = p->generation;
	}
	return n;
}

static void
drains_bound(struct master *m)
{
	unsigned oldest;
	int n;

	while ((n = master_draining_generations(m, true, &oldest)) > m->cur.cfg->max_draining) {
		log_warnx("%d generations draining, more than max_draining_generations = %d: "
		    "stopping generation %u now", n, m->cur.cfg->max_draining, oldest);
		for (struct wproc *p = m->procs; p != NULL; p = p->next) {
			if (p->state == WP_DRAINING && p->generation == oldest) {
				proc_signal(p, SIGTERM);
				p->cut = true;
				p->kill_at_ms = now_ms() + FAST_STOP_GRACE_MS;
			}
		}
	}
}

/* Every new worker is ready: the old ones drain, the new config serves. */
static void
reload_commit(struct master *m)
{
	char msg[128];

	generation_stop(m, &m->cur, SIGQUIT, WP_DRAINING);
	generation_free(&m->cur);
	for (int i = 0; i < m->next.nslots; i++)
		m->sb->w[m->next.slots[i].proc->sb_entry].serving = 1;
	m->cur = m->next;
	memset(&m->next, 0, sizeof(m->next));
	master_apply_log(m->cur.cfg);
	snprintf(msg, sizeof(msg), "reload ok: generation %u, %d workers", m->cur.number,
	    m->cur.nslots);
	log_notice("%s", msg);
	m->count.reloads_ok++;
	announce_ready(m);
	drains_bound(m);
	admin_reload_done(m, true, msg);
}

static void
reload_progress(struct master *m)
{
	if (m->next.cfg == NULL)
		return;
	if (generation_ready(&m->next))
		reload_commit(m);
	else if (now_ms() >= m->next_deadline_ms)
		reload_abort(m, "the new workers did not report ready in time");
}

static struct slot *
slot_of(struct generation *g, struct wproc *p)
{
	if (p->generation != g->number || p->slot >= g->nslots || g->slots[p->slot].proc != p)
		return NULL;
	return &g->slots[p->slot];
}

/*
 * Deaths before ready: a start-up failure (bad user, missing library,
 * exhausted resources) that no respawn can fix. Past crash_loop.deaths of
 * them within crash_loop.window the slot is parked instead of forking
 * forever, with one line that sums up the crashes not logged one by one.
 * Returns true when the slot is now parked.
 */
static bool
slot_count_early_death(struct master *m, struct slot *s, struct wproc *p, const char *how,
    int64_t now)
{
	const struct cfg *cfg = m->cur.cfg;

	if (s->early_deaths == 0 || now - s->window_start_ms > (int64_t)cfg->crash_loop_window * 1000) {
		s->early_deaths = 0;
		s->suppressed = 0;
		s->window_start_ms = now;
	}
	if (++s->early_deaths == 1) {
		log_warnx("worker %ld %s before it was ready", (long)p->pid, how);
	} else {
		s->suppressed++;
		log_debug("worker %ld %s before it was ready", (long)p->pid, how);
	}
	if (s->early_deaths < cfg->crash_loop_deaths)
		return false;
	s->parked = true;
	log_errorx("worker slot %d parked: its workers died %d times within %d s before becoming "
	    "ready (last %s; %d such lines not logged); fix the cause, then reload or run "
	    "echomaster -s respawn", p->slot, s->early_deaths, cfg->crash_loop_window, how,
	    s->suppressed);
	return true;
}

/*
 * A serving worker died: respawn it, at once after a long life, later after
 * a short one. One that had reported ready is always respawned: an operator
 * or the OOM killer killing workers must not shrink capacity for good.
 */
static void
slot_died(struct master *m, struct slot *s, struct wproc *p, int status)
{
	char how[96];
	int64_t now = now_ms();
	bool early = p->state == WP_STARTING;

	wproc_describe_exit(status, how, sizeof(how));
	s->proc = NULL;
	if (m->stopping || !early)
		log_warnx("worker %ld %s", (long)p->pid, how);
	if (m->stopping)
		return;
	if (!early)
		s->early_deaths = 0;
	else if (slot_count_early_death(m, s, p, how, now))
		return;
	m->count.respawns++;
	s->backoff_ms = workers_backoff_next(s->backoff_ms, now - p->started_ms);
	s->respawn_at_ms = now + s->backoff_ms;
	if (s->backoff_ms == 0)
		return;
	m->count.respawns_throttled++;
	if (!early || s->early_deaths == 1)
		log_warnx("respawning worker slot %d in %d ms (it died after %lld ms)",
		    p->slot, s->backoff_ms, (long long)(now - p->started_ms));
}

void
master_respawn_parked(struct master *m)
{
	for (int i = 0; i < m->cur.nslots; i++) {
		struct slot *s = &m->cur.slots[i];
		if (!s->parked)
			continue;
		log_notice("worker slot %d unparked", i);
		s->parked = false;
		s->early_deaths = 0;
		s->backoff_ms = 0;
		s->respawn_at_ms = now_ms();
	}
}

/* TTIN adds a worker to the serving generation, TTOU drains the last one (never below 1). */
static void
workers_scale(struct master *m, int delta)
{
	struct generation *g = &m->cur;
	struct slot *slots;

	if (delta > 0 && g->nslots < CFG_WORKERS_MAX) {
		if ((slots = realloc(g->slots, (size_t)(g->nslots + 1) * sizeof(*slots))) == NULL) {
			log_warn("SIGTTIN");
			return;
		}
		g->slots = slots;
		memset(&g->slots[g->nslots], 0, sizeof(*slots));
		slot_spawn(m, g, g->nslots++);
	} else if (delta < 0 && g->nslots > 1) {
		struct wproc *p = g->slots[g->nslots - 1].proc;
		if (p != NULL) {
			proc_signal(p, SIGQUIT);
			p->state = WP_DRAINING;
			p->kill_at_ms = now_ms() + (int64_t)g->cfg->shutdown_timeout * 1000 + DRAIN_GRACE_MS;
			m->sb->w[p->sb_entry].serving = 0;
		}
		g->nslots--;
	} else {
		log_notice("%s ignored: %d workers", delta > 0 ? "SIGTTIN" : "SIGTTOU", g->nslots);
		return;
	}
	log_notice("workers: %d (%s; a reload restores the configured %d)", g->nslots,
	    delta > 0 ? "SIGTTIN" : "SIGTTOU", g->cfg->workers);
}

static void
reap_one(struct master *m, pid_t pid, int status)
{
	struct wproc *p = proc_find(m, pid);
	struct slot *s;
	char how[96];

	if (p == NULL) {
		log_debug("reaped process %ld, not a worker", (long)pid);
		return;
	}
	proc_unlink(m, p);
	if ((s = slot_of(&m->cur, p)) != NULL) {
		slot_died(m, s, p, status);
	} else if ((s = slot_of(&m->next, p)) != NULL) {
		s->proc = NULL;
		wproc_describe_exit(status, how, sizeof(how));
		log_warnx("new worker %ld %s", (long)p->pid, how);
		reload_abort(m, "a new worker died before it was ready");
	} else if (p->state == WP_DRAINING && wproc_exit_is_clean(status)) {
		log_info("worker %ld of generation %u finished", (long)p->pid, p->generation);
	} else if (p->state != WP_ABORTED) {
		wproc_describe_exit(status, how, sizeof(how));
		log_warnx("worker %ld of generation %u %s", (long)p->pid, p->generation, how);
	}
	wproc_free(m->epfd, m->sb, p);
}

static void
reap_children(struct master *m)
{
	int status;
	pid_t pid;

	while ((pid = waitpid(-1, &status, WNOHANG)) > 0)
		reap_one(m, pid, status);
	if (pid == -1 && errno != ECHILD)
		log_warn("waitpid");
}

static void
respawn_due(struct master *m)
{
	int64_t now = now_ms();

	if (m->stopping)
		return;
	for (int i = 0; i < m->cur.nslots; i++) {
		struct slot *s = &m->cur.slots[i];
		if (s->proc == NULL && !s->parked && now >= s->respawn_at_ms)
			slot_spawn(m, &m->cur, i);
	}
}

static void
kill_overdue(struct master *m)
{
	int64_t now = now_ms();

	for (struct wproc *p = m->procs; p != NULL; p = p->next) {
		if (p->kill_at_ms == 0 || now < p->kill_at_ms)
			continue;
		log_warnx("worker %ld did not stop in time; killing it", (long)p->pid);
		proc_signal(p, SIGKILL);
		p->kill_at_ms = 0;
	}
}

/*
 * A serving worker whose loop has stopped turning (an endless loop, a
 * deadlock, SIGSTOP) still holds its connections and its place in the
 * accept queue. Its heartbeat says so: kill it, and the reaper respawns it.
 */
static void
kill_hung(struct master *m)
{
	int64_t limit = (int64_t)m->cur.cfg->worker_timeout * 1000, now = now_ms();

	if (limit == 0 || m->stopping)
		return;
	for (struct wproc *p = m->procs; p != NULL; p = p->next) {
		int64_t silent = now - m->sb->w[p->sb_entry].heartbeat_ms;
		if (p->state != WP_READY || p->hung || silent <= limit)
			continue;
		log_errorx("worker %ld (slot %d) sent no heartbeat for %lld ms; killing it",
		    (long)p->pid, p->slot, (long long)silent);
		p->hung = true;
		proc_signal(p, SIGKILL);
	}
}

/* A worker's byte on its channel says it is ready; EOF says it is going away. */
static void
channel_read(struct master *m, struct wproc *p)
{
	char buf[16];
	ssize_t n = read(p->chan_fd, buf, sizeof(buf));

	if (n > 0 && p->state == WP_STARTING) {
		struct slot *s = slot_of(&m->cur, p);
		p->state = WP_READY;
		if (s != NULL && !m->stopping) {
			s->early_deaths = 0;
			m->sb->w[p->sb_entry].serving = 1;
		}
		log_debug("worker %ld ready", (long)p->pid);
	} else if (n == 0 || (n < 0 && errno != EAGAIN)) {
		epoll_ctl(m->epfd, EPOLL_CTL_DEL, p->chan_fd, NULL);
	}
}

static void
announce_ready(struct master *m)
{
	if (m->cur.announced || !generation_ready(&m->cur))
		return;
	m->cur.announced = true;
	log_notice("ready: %d workers, generation %u", m->cur.nslots, m->cur.number);
	notify_send("READY=1\nSTATUS=serving: %d workers, generation %u", m->cur.nslots,
	    m->cur.number);
}

void
master_stop(struct master *m, bool graceful)
{
	if (m->stopping && (!m->graceful || graceful))
		return;  /* already stopping at least this fast */
	log_notice("shutting down (%s)", graceful ? "graceful" : "fast");
	if (m->next.cfg != NULL)
		reload_abort(m, "shutting down");
	notify_send("STOPPING=1\nSTATUS=shutting down (%s)", graceful ? "graceful" : "fast");
	m->stopping = true;
	m->graceful = graceful;
	if (graceful) {
		generation_stop(m, &m->cur, SIGQUIT, WP_DRAINING);
		return;
	}
	/* Fast: every worker, draining ones of older generations included. */
	generation_stop(m, &m->cur, 0, WP_DRAINING);
	for (struct wproc *p = m->procs; p != NULL; p = p->next) {
		proc_signal(p, SIGTERM);
		p->kill_at_ms = now_ms() + FAST_STOP_GRACE_MS;
	}
}

static void
act_on_signals(struct master *m)
{
	struct pending_signals sig = m->sig;

	memset(&m->sig, 0, sizeof(m->sig));
	if (sig.chld)
		reap_children(m);
	if (sig.term)
		master_stop(m, m->cur.cfg->stop_graceful);
	if (sig.intr)
		master_stop(m, false);
	if (sig.quit)
		master_stop(m, true);
	if (sig.hup)
		master_reload(m);
	if (sig.usr1) {
		log_reopen();
		log_notice("reopened logs");
	}
	if (sig.ttin && !m->stopping)
		workers_scale(m, +1);
	if (sig.ttou && !m->stopping)
		workers_scale(m, -1);
}


static int64_t
earliest(int64_t a, int64_t b)
{
	return a == 0 || (b != 0 && b < a) ? b : a;
}

/* Milliseconds until the next timed duty, or -1 when only an event can wake us. */
static int
loop_timeout(const struct master *m)
{
	int64_t due = 0, now = now_ms();

	for (int i = 0; i < m->cur.nslots && !m->stopping; i++)
		if (m->cur.slots[i].proc == NULL && !m->cur.slots[i].parked)
			due = earliest(due, m->cur.slots[i].respawn_at_ms ? m->cur.slots[i].respawn_at_ms : now);
	if (m->next.cfg != NULL)
		due = earliest(due, m->next_deadline_ms);
	for (const struct wproc *p = m->procs; p != NULL; p = p->next)
		if (p->kill_at_ms != 0)
			due = earliest(due, p->kill_at_ms);
	if (m->cur.cfg->worker_timeout != 0 && !m->stopping)
		due = earliest(due, now + 1000);  /* heartbeats are checked every second */
	due = earliest(due, m->admin_due_ms);
	if (due == 0)
		return -1;
	return due <= now ? 0 : (int)(due - now);
}

static void
master_loop(struct master *m)
{
	struct epoll_event events[64];

	while (!(m->stopping && m->procs == NULL)) {
		int n = epoll_wait(m->epfd, events, 64, loop_timeout(m));

		if (n == -1 && errno != EINTR)
			fatal("epoll_wait");
		for (int i = 0; i < n; i++) {
			switch (*(int *)events[i].data.ptr) {
			case MEV_SIGNAL:
				master_read_signals(m);
				break;
			case MEV_WORKER:
				channel_read(m, events[i].data.ptr);
				break;
			default:
				admin_event(m, events[i].data.ptr, events[i].events);
				break;
			}
		}
		act_on_signals(m);
		reload_progress(m);
		if (m->reload_again && m->next.cfg == NULL && !m->stopping) {
			m->reload_again = false;
			reload_begin(m);
		}
		announce_ready(m);
		respawn_due(m);
		kill_overdue(m);
		kill_hung(m);
		m->admin_due_ms = admin_expire(m);
	}
}

/* Detaches from the terminal: double fork so we can never reacquire one. */
static void
daemonize(void)
{
	int fd;

	switch (fork()) {
	case -1: fatal("fork");
	case 0: break;
	default: _exit(EXIT_OK);
	}
	if (setsid() == -1)
		fatal("setsid");
	switch (fork()) {
	case -1: fatal("fork");
	case 0: break;
	default: _exit(EXIT_OK);
	}
	if (chdir("/") == -1)
		fatal("chdir /");
	if ((fd = open("/dev/null", O_RDWR)) == -1)
		fatal("/dev/null");
	dup2(fd, STDIN_FILENO);
	dup2(fd, STDOUT_FILENO);
	dup2(fd, STDERR_FILENO);
	if (fd > STDERR_FILENO)
		close(fd);
}

/* Reload reads the file again from /, so a relative path is made absolute first. */
static struct cfg *
cfg_with_absolute_path(struct cfg *cfg)
{
	char *abs;

	if (cfg->path[0] == '/' || (abs = realpath(cfg->path, NULL)) == NULL)
		return cfg;
	free(cfg->path);
	cfg->path = abs;
	return cfg;
}

static void
master_start(struct master *m, struct cfg *cfg, bool foreground)
{
	char err[CFG_ERR_LEN];
	bool detach = cfg->daemon && !foreground;

	memset(m, 0, sizeof(*m));
	m->pid_fd = -1;
	m->ctl_fd = -1;
	m->metrics_fd = -1;
	m->sig_kind = MEV_SIGNAL;
	m->ctl_kind = MEV_CONTROL;
	m->metrics_kind = MEV_METRICS;
	m->count.started_ms = now_ms();
	if (detach)
		cfg = cfg_with_absolute_path(cfg);
	master_apply_log(cfg);
	if (cfg->pid_file[0] != '\0') {
		if ((m->pid_path = strdup(cfg->pid_file)) == NULL)
			fatal("strdup");
		if ((m->pid_fd = pidfile_acquire(m->pid_path, err, sizeof(err))) == -1)
			fatalx("%s", err);
	}
	if ((m->cur.ls = listeners_open(cfg, NULL, NULL, err, sizeof(err))) == NULL) {
		pidfile_release(m->pid_fd, m->pid_path);  /* we never ran: leave no pid file */
		fatalx("%s", err);
	}
	m->cur.cfg = cfg;
	m->cur.number = 1;
	if (detach)
		daemonize();
	if (m->pid_fd != -1 && pidfile_write(m->pid_fd) == -1)
		fatal("cannot write pid file %s", m->pid_path);
	proctitle_set("echomaster: master process %s", proctitle_cmdline());
	master_setup_signals(m);
	notify_init();
	if ((m->sb = scoreboard_create()) == NULL)
		fatal("cannot map the scoreboard");
	admin_open(m);
	log_notice("echomaster %s starting: config %s, %d workers%s", EM_VERSION, cfg->path,
	    cfg->workers, cfg->workers_auto ? " (auto)" : "");
	if (generation_start(m, &m->cur) == -1)
		fatal("starting workers");
}

int
master_run(struct cfg *cfg, bool foreground)
{
	struct master m;

	master_start(&m, cfg, foreground);
	master_loop(&m);
	admin_close(&m);
	generation_free(&m.cur);
	pidfile_release(m.pid_fd, m.pid_path);
	free(m.pid_path);
	log_notice("exiting");
	return EXIT_OK;
}
