#include "worker/worker.h"

#include <errno.h>
#include <grp.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "common/exitcode.h"
#include "common/log.h"
#include "common/proctitle.h"
#include "worker/conn.h"
#include "worker/udp.h"

#define WORKER_EVENTS 256

static int
cmp_int(const void *a, const void *b)
{
	return *(const int *)a - *(const int *)b;
}

/*
 * A worker inherits every descriptor of the master: the pid file (whose lock
 * must die with the master), the other workers' channels, listeners that a
 * reload is retiring. Keep only ours.
 */
static void
worker_close_inherited(const struct worker_spec *spec)
{
	size_t n = spec->cfg->nlisten + 1, k = 0;
	int *keep = calloc(n, sizeof(*keep));
	int lo = 3;

	if (keep == NULL)
		fatal("worker: calloc");
	keep[k++] = spec->chan_fd;
	for (size_t i = 0; i < spec->cfg->nlisten; i++)
		keep[k++] = spec->listen_fds[i];
	qsort(keep, k, sizeof(*keep), cmp_int);
	for (size_t i = 0; i < k; i++) {
		if (keep[i] > lo)
			close_range((unsigned)lo, (unsigned)keep[i] - 1, 0);
		lo = keep[i] + 1;
	}
	close_range((unsigned)lo, ~0U, 0);
	free(keep);
}

/* Signals: the master's mask is inherited; take what a worker acts on through a signalfd. */
static int
worker_setup_signals(struct worker *w)
{
	sigset_t set;

	signal(SIGPIPE, SIG_IGN);   /* a vanished client is an EPIPE, not a death */
	signal(SIGHUP, SIG_IGN);    /* reload and reopen are the master's business */
	signal(SIGUSR1, SIG_IGN);
	signal(SIGUSR2, SIG_IGN);
	signal(SIGCHLD, SIG_DFL);
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGQUIT);
	if (sigprocmask(SIG_SETMASK, &set, NULL) == -1)
		return -1;
	w->sigfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
	return w->sigfd == -1 ? -1 : 0;
}

static void
worker_drop_privileges(const struct cfg *cfg)
{
	if (geteuid() != 0 || cfg->user[0] == '\0')
		return;
	if (setgroups(1, &cfg->gid) == -1 || setgid(cfg->gid) == -1 || setuid(cfg->uid) == -1)
		fatal("worker: cannot switch to user %s", cfg->user);
	/* Proof, not trust: if root could come back, refuse to serve at all. */
	if (cfg->uid != 0 && setuid(0) != -1)
		fatalx("worker: still able to regain root after dropping privileges");
}

/*
 * Dies with the master. The parent-death signal is cleared by a change of
 * credentials, so it is set after dropping privileges; and the master may
 * already have died before it was set, hence the getppid() check.
 */
static void
worker_bind_to_master(const struct worker_spec *spec)
{
	if (prctl(PR_SET_PDEATHSIG, SIGTERM) == -1)
		fatal("worker: prctl(PR_SET_PDEATHSIG)");
	if (getppid() != spec->master_pid)
		exit(EXIT_OK);
}

static int
worker_watch(struct worker *w, int fd, uint32_t events, void *ptr)
{
	struct epoll_event ev = { .events = events, .data.ptr = ptr };

	return epoll_ctl(w->epfd, EPOLL_CTL_ADD, fd, &ev);
}

/*
 * Every worker waits on the same listening sockets, inherited from the
 * master. EPOLLEXCLUSIVE wakes one waiter per new connection instead of all
 * of them (no thundering herd), and because the sockets belong to the
 * master, their accept queues outlive any worker: a crash or a reload drops
 * nothing that was queued. SO_REUSEPORT per worker would spread the load
 * by hash but lose a dead worker's queue.
 */
static void
listener_watch(struct worker *w, struct worker_listener *l)
{
	if (l->registered)
		return;
	if (worker_watch(w, l->fd, EPOLLIN | EPOLLEXCLUSIVE, l) == -1)
		fatal("worker: epoll_ctl add listener");
	l->registered = true;
}

/*
 * The socket is shared with the master and the other workers, so close()
 * alone would not remove it from our epoll set: delete it first.
 */
static void
listener_unwatch(struct worker *w, struct worker_listener *l)
{
	if (!l->registered)
		return;
	if (epoll_ctl(w->epfd, EPOLL_CTL_DEL, l->fd, NULL) == -1)
		log_warn("epoll_ctl del listener");
	l->registered = false;
}

void
worker_pause_accept(struct worker *w, int seconds)
{
	for (size_t i = 0; i < w->nlisteners; i++)
		if (w->listeners[i].ev.kind == EV_TCP_LISTENER)
			listener_unwatch(w, &w->listeners[i]);
	w->accept_paused_until = w->now + seconds;
}

static void
worker_resume_accept(struct worker *w)
{
	w->accept_paused_until = 0;
	for (size_t i = 0; i < w->nlisteners; i++)
		if (w->listeners[i].ev.kind == EV_TCP_LISTENER)
			listener_watch(w, &w->listeners[i]);
}

static void
worker_init(struct worker *w, const struct worker_spec *spec)
{
	memset(w, 0, sizeof(*w));
	w->cfg = spec->cfg;
	w->chan_fd = spec->chan_fd;
	w->sig_ev.kind = EV_SIGNAL;
	w->master_ev.kind = EV_MASTER;
	w->nlisteners = spec->cfg->nlisten;
	w->listeners = calloc(w->nlisteners, sizeof(*w->listeners));
	w->scratch = malloc(WORKER_SCRATCH);
	w->udp = udp_batch_new();
	if (w->listeners == NULL || w->scratch == NULL || w->udp == NULL)
		fatal("worker: out of memory");
	if (worker_setup_signals(w) == -1)
		fatal("worker: signals");
	if ((w->epfd = epoll_create1(EPOLL_CLOEXEC)) == -1)
		fatal("worker: epoll_create1");
	if (worker_watch(w, w->sigfd, EPOLLIN, &w->sig_ev) == -1 ||
	    worker_watch(w, w->chan_fd, EPOLLIN, &w->master_ev) == -1)
		fatal("worker: epoll_ctl");
	for (size_t i = 0; i < w->nlisteners; i++) {
		struct worker_listener *l = &w->listeners[i];
		l->conf = &spec->cfg->listen[i];
		l->fd = spec->listen_fds[i];
		l->ev.kind = l->conf->proto == CFG_PROTO_TCP ? EV_TCP_LISTENER : EV_UDP;
		listener_watch(w, l);
	}
}

static time_t
monotonic_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return ts.tv_sec;
}

/* Graceful stop: no new work; finish what we hold within shutdown_timeout. */
static void
worker_start_drain(struct worker *w)
{
	if (w->draining)
		return;
	w->draining = true;
	w->drain_deadline = w->now + w->cfg->shutdown_timeout;
	proctitle_set("echomaster: worker process is shutting down");
	for (size_t i = 0; i < w->nlisteners; i++) {
		listener_unwatch(w, &w->listeners[i]);
		close(w->listeners[i].fd);
	}
	w->nlisteners = 0;
	log_debug("draining %zu connections", w->nconns);
}

static void
worker_read_signals(struct worker *w)
{
	struct signalfd_siginfo si;

	while (read(w->sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
		if (si.ssi_signo == SIGQUIT)
			worker_start_drain(w);
		else
			exit(EXIT_OK);  /* TERM, INT: fast stop; the kernel closes everything */
	}
}

static void
worker_dispatch(struct worker *w, struct epoll_event *ev)
{
	struct ev_source *src = ev->data.ptr;

	switch (src->kind) {
	case EV_CONN:
		conn_handle(w, (struct conn *)src, ev->events);
		break;
	case EV_TCP_LISTENER:
		/* Registration checked: a pause or drain earlier in this batch may have closed it. */
		if (((struct worker_listener *)src)->registered)
			conn_accept(w, (struct worker_listener *)src);
		break;
	case EV_UDP:
		if (((struct worker_listener *)src)->registered)
			udp_handle(w, (struct worker_listener *)src);
		break;
	case EV_SIGNAL:
		worker_read_signals(w);
		break;
	case EV_MASTER:
		exit(EXIT_OK);  /* EOF: the master is gone; never serve an orphaned config */
	}
}

/* Once-a-second duties; only run when a timer could be due. */
static void
worker_tick(struct worker *w)
{
	conn_expire_idle(w);
	if (w->accept_paused_until != 0 && w->now >= w->accept_paused_until && !w->draining)
		worker_resume_accept(w);
	if (w->draining && w->now >= w->drain_deadline) {
		if (w->nconns != 0)
			log_info("shutdown_timeout reached: closing %zu connections", w->nconns);
		conn_close_all(w);
	}
}

static int
worker_timeout_ms(const struct worker *w)
{
	if (w->cfg->idle_timeout != 0 || w->draining || w->accept_paused_until != 0)
		return 1000;
	return -1;
}

static void
worker_loop(struct worker *w)
{
	struct epoll_event events[WORKER_EVENTS];
	time_t last_tick = w->now;

	while (!(w->draining && w->nconns == 0)) {
		int n = epoll_wait(w->epfd, events, WORKER_EVENTS, worker_timeout_ms(w));

		if (n == -1 && errno != EINTR)
			fatal("worker: epoll_wait");
		w->now = monotonic_seconds();
		for (int i = 0; i < n; i++)
			worker_dispatch(w, &events[i]);
		if (w->now != last_tick) {
			last_tick = w->now;
			worker_tick(w);
		}
	}
}

void
worker_main(const struct worker_spec *spec)
{
	struct worker w;
	char ready = 'R';

	proctitle_set("echomaster: worker process");
	worker_close_inherited(spec);
	log_reopen();  /* the inherited syslog socket was just closed with the rest */
	worker_drop_privileges(spec->cfg);
	worker_bind_to_master(spec);
	worker_init(&w, spec);
	w.now = monotonic_seconds();
	if (write(w.chan_fd, &ready, 1) != 1)
		exit(EXIT_OK);  /* the master is gone already */
	worker_loop(&w);
	exit(EXIT_OK);
}
