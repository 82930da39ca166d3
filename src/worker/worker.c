#include "worker/worker.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <time.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "common/chan.h"
#include "common/exitcode.h"
#include "common/log.h"
#include "common/proctitle.h"
#include "common/sock.h"
#include "worker/conn.h"
#include "worker/sandbox.h"
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
#ifdef EM_TEST_HOOKS
	sigaddset(&set, SIGUSR2);  /* test builds: a sandbox violation on demand */
#endif
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
	if (ev_add(w->epfd, l->fd, EPOLLIN | EPOLLEXCLUSIVE, &l->ev) == -1)
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
	if (ev_del(w->epfd, l->fd) == -1)
		log_warn("epoll_ctl del listener");
	l->registered = false;
}

static bool
worker_should_accept(const struct worker *w)
{
	return !w->draining && w->accept_paused_until == 0 && !w->over_share;
}

/* Registers the TCP listeners when this worker should accept, removes them when not. */
static void
worker_sync_accepting(struct worker *w)
{
	bool on = worker_should_accept(w);

	for (size_t i = 0; i < w->nlisteners; i++) {
		struct worker_listener *l = &w->listeners[i];
		if (l->ev.kind != EV_TCP_LISTENER)
			continue;
		if (on)
			listener_watch(w, l);
		else
			listener_unwatch(w, l);
	}
}

/* Stops accepting TCP connections for a while (descriptor exhaustion). */
static void
worker_pause_accept(struct worker *w, int seconds)
{
	w->accept_paused_until = w->now + seconds;
	worker_sync_accepting(w);
}

/*
 * EPOLLEXCLUSIVE wakes the first idle waiter in the socket's queue, so at
 * moderate load the same worker takes nearly every connection (nginx's
 * well-known imbalance). A worker clearly above the average steps out of
 * the queue; the others, still in it, get the next connections. The
 * margin keeps a worker from flapping in and out around the average.
 *
 * Whether a worker is over its share also changes when the others accept,
 * which it cannot see from its own events: a worker out of the queue
 * re-checks on every loop turn (worker_loop wakes it at least every
 * WORKER_REBALANCE_MS). The least busy worker is never above the average,
 * so it is always back in the queue within that time: the queue can be
 * left without a server for a few milliseconds, never longer.
 *
 * No worker stays in the queue just because the others are out of it. On
 * a burst of connections (a load generator opening a thousand at once)
 * the worker that the scheduler happens to run would otherwise take all
 * of them while the others wait for a CPU; those connections would then
 * stay unevenly spread for as long as they live. Stepping out leaves them
 * queued, in the kernel, for the worker that is below its share.
 *
 * Called after each accepted connection, after connections close while
 * stepped out, and on every loop turn while stepped out.
 */
static void
worker_balance_accept(struct worker *w)
{
	uint64_t avg = scoreboard_average_active(w->sb);
	size_t n = conn_count(&w->conns);
	bool over = w->over_share ? n > avg : n > avg + avg / 16 + 2;

	if (over != w->over_share) {
		w->over_share = over;
		worker_sync_accepting(w);
	}
}

/*
 * conn.c reports closed connections: a worker that stepped out of
 * accepting comes back as soon as its share allows.
 */
static void
worker_conns_closed(struct worker *w)
{
	if (w->over_share)
		worker_balance_accept(w);
}

/*
 * How many connections one wake-up accepts. Small enough that a worker
 * woken for a burst leaves some of it to the others, large enough that a
 * churn of short connections does not cost a wake-up each.
 */
#define ACCEPT_BATCH 16

static void
worker_accept(struct worker *w, struct worker_listener *l)
{
	for (int i = 0; i < ACCEPT_BATCH && !w->over_share; i++) {
		switch (conn_accept(w, l)) {
		case CONN_OPENED:
			worker_balance_accept(w);  /* a burst stops at our share: the rest is for the others */
			break;
		case CONN_TURNED_AWAY:
			break;
		case CONN_NONE_QUEUED:
			return;
		case CONN_EXHAUSTED:
			/*
			 * Level-triggered epoll would wake us for the queued
			 * connection again at once. Step back for a second and
			 * let the other workers, or freed descriptors, take it.
			 */
			worker_pause_accept(w, 1);
			return;
		}
	}
}

/*
 * UDP: the workers sharing the master's socket would contend for its one
 * receive queue (measured: about 10% more CPU per datagram; BENCHMARKS.md).
 * So each worker binds a socket of its own on every UDP listener's address
 * (SO_REUSEPORT), before it drops privileges so that low ports work too;
 * the kernel spreads the senders over the workers' sockets by a hash of
 * their address, and the master's is set aside (listeners.c). A worker's
 * socket closes when it stops or dies, and its senders move to the other
 * workers; the datagrams still queued in it are lost, as UDP allows.
 * own[i] is -1 for TCP listeners, and where binding failed: that worker
 * then serves the listener through the master's socket alone.
 */
static int *
worker_bind_own_udp(const struct worker_spec *spec)
{
	int *own = calloc(spec->cfg->nlisten + 1, sizeof(*own));

	if (own == NULL)
		fatal("worker: calloc");
	for (size_t i = 0; i < spec->cfg->nlisten; i++) {
		const struct cfg_listen *l = &spec->cfg->listen[i];
		char err[256];

		own[i] = -1;
		if (l->proto != CFG_PROTO_UDP)
			continue;
		own[i] = sock_listen(&l->addr, l->addrlen, SOCK_DGRAM, err, sizeof(err));
		if (own[i] == -1)
			log_warnx("worker: %s; serving it through the master's socket", err);
	}
	return own;
}

static void
worker_add_listener(struct worker *w, const struct cfg_listen *conf, int fd, bool screen)
{
	struct worker_listener *l = &w->listeners[w->nlisteners++];

	l->conf = conf;
	l->fd = fd;
	l->ev.kind = conf->proto == CFG_PROTO_TCP ? EV_TCP_LISTENER : EV_UDP;
	l->screen = screen;
	listener_watch(w, l);
}

static void
worker_init(struct worker *w, const struct worker_spec *spec, const int *own_udp)
{
	memset(w, 0, sizeof(*w));
	w->cfg = spec->cfg;
	w->chan_fd = spec->chan_fd;
	w->sb = spec->sb;
	w->me = spec->me;
	w->sb_entry = (unsigned)(spec->me - spec->sb->w);
	w->sig_ev.kind = EV_SIGNAL;
	w->master_ev.kind = EV_MASTER;
	w->listeners = calloc(spec->cfg->nlisten * 2, sizeof(*w->listeners));
	w->scratch = malloc(WORKER_SCRATCH);
	w->udp = udp_batch_new();
	if (w->listeners == NULL || w->scratch == NULL || w->udp == NULL)
		fatal("worker: out of memory");
	if (worker_setup_signals(w) == -1)
		fatal("worker: signals");
	if ((w->epfd = epoll_create1(EPOLL_CLOEXEC)) == -1)
		fatal("worker: epoll_create1");
	if (ev_add(w->epfd, w->sigfd, EPOLLIN, &w->sig_ev) == -1 ||
	    ev_add(w->epfd, w->chan_fd, EPOLLIN, &w->master_ev) == -1)
		fatal("worker: epoll_ctl");
	for (size_t i = 0; i < spec->cfg->nlisten; i++) {
		const struct cfg_listen *conf = &spec->cfg->listen[i];
		bool screen = conf->allow.n != 0 || conf->deny.n != 0 ||
		    (conf->proto == CFG_PROTO_TCP && spec->cfg->max_per_address != 0) ||
		    conf->proxy_protocol != CFG_PROXY_OFF;

		worker_add_listener(w, conf, spec->listen_fds[i], screen);
		if (own_udp[i] != -1)
			worker_add_listener(w, conf, own_udp[i], screen);
	}
}

/*
 * Reads the clock once per loop turn: whole seconds for the timers, and the
 * heartbeat by which the master knows this loop still turns. The coarse
 * clock costs no system call and is precise enough for both.
 */
static void
worker_stamp(struct worker *w)
{
	w->now_ms = ev_now_coarse_ms();
	w->now = (time_t)(w->now_ms / 1000);
	w->me->heartbeat_ms = w->now_ms;
}

/* Graceful stop: no new work; finish what we hold within shutdown_timeout. */
static void
worker_start_drain(struct worker *w)
{
	if (w->draining)
		return;
	w->draining = true;
	w->drain_deadline_ms = w->now_ms + (int64_t)w->cfg->shutdown_timeout * 1000;
	for (size_t i = 0; i < w->nlisteners; i++) {
		listener_unwatch(w, &w->listeners[i]);
		close(w->listeners[i].fd);
	}
	w->nlisteners = 0;
	/* Only now: a worker titled so takes no new client, TCP or UDP. */
	proctitle_set("echomaster: worker process is shutting down");
	log_debug("draining %zu connections", conn_count(&w->conns));
}

/*
 * One message from the master. CHAN_HAND_OVER: the last one (more false)
 * ends our accepting as a drain does, and move.c moves what we hold; once
 * we hold nothing, worker_loop ends as a drained worker's does.
 */
static void
worker_read_master(struct worker *w)
{
	struct chan_msg m;
	int r = chan_recv(w->chan_fd, &m);

	if (r == 0 || (r == -1 && errno != EAGAIN && errno != EINTR && errno != EPROTO))
		exit(EXIT_OK);  /* EOF: the master is gone; never serve an orphaned config */
	if (r == -1) {
		if (errno == EPROTO)
			log_warnx("worker: a malformed message from the master ignored");
		return;
	}
	switch (m.kind) {
	case CHAN_HAND_OVER:
		move_add_peers(w, &m, true);
		if (!m.more) {
			worker_start_drain(w);
			move_begin(w);
		}
		break;
	case CHAN_TAKE_OVER:
		move_add_peers(w, &m, false);
		break;
	default:
		log_warnx("worker: message %u from the master ignored", (unsigned)m.kind);
		chan_close_fds(&m);
	}
}

#ifdef EM_TEST_HOOKS
/*
 * Test builds only: on SIGUSR2, what a taken-over worker would try, as
 * EM_TEST_SANDBOX_CALL says: open a file, execute a program, or make a
 * socket to connect elsewhere. The sandbox must kill the worker first.
 */
static void
worker_test_violation(void)
{
	const char *call = getenv("EM_TEST_SANDBOX_CALL");
	char *const argv[] = { "true", NULL };
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons(9) };
	int fd;

	if (call == NULL)
		return;
	if (strcmp(call, "open") == 0) {
		if ((fd = open("/etc/hostname", O_RDONLY | O_CLOEXEC)) != -1)
			close(fd);
	} else if (strcmp(call, "execve") == 0) {
		/* A path that does not exist: unconfined (sanitizer builds), the call fails and we go on. */
		execve("/nonexistent/echomaster-test-hook", argv, NULL);
	} else if (strcmp(call, "socket") == 0) {
		sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		if ((fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) != -1) {
			(void)connect(fd, (struct sockaddr *)&sin, sizeof(sin));
			close(fd);
		}
	}
	log_warnx("test hook: %s was not stopped by the sandbox", call);
}
#endif

static void
worker_read_signals(struct worker *w)
{
	struct signalfd_siginfo si;

	while (read(w->sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
		if (si.ssi_signo == SIGQUIT)
			worker_start_drain(w);
#ifdef EM_TEST_HOOKS
		else if (si.ssi_signo == SIGUSR2)
			worker_test_violation();
#endif
		else
			exit(EXIT_OK);  /* TERM, INT: fast stop; the kernel closes everything */
	}
}

/* Everything but a connection's events, which worker_loop handles itself. */
static void
worker_dispatch(struct worker *w, struct ev_source *src, uint32_t events)
{
	switch (src->kind) {
	case EV_CONN:  /* never here: worker_loop calls conn_handle itself */
		break;
	case EV_TCP_LISTENER:
		/* Registration checked: a pause or drain earlier in this batch may have closed it. */
		if (((struct worker_listener *)src)->registered)
			worker_accept(w, (struct worker_listener *)src);
		break;
	case EV_UDP:
		if (((struct worker_listener *)src)->registered)
			udp_handle(w, (struct worker_listener *)src);
		break;
	case EV_SIGNAL:
		worker_read_signals(w);
		break;
	case EV_MASTER:
		worker_read_master(w);
		break;
	case EV_HANDOVER:
		move_event(w, (struct move_peer *)src, events);
		break;
	}
}

/* Once-a-second duties; only run when a timer could be due. */
static void
worker_tick(struct worker *w)
{
	if (conn_expire_idle(w) != 0)
		worker_conns_closed(w);
	if (w->accept_paused_until != 0 && w->now >= w->accept_paused_until) {
		w->accept_paused_until = 0;
		worker_sync_accepting(w);
	}
	if (!w->draining)
		worker_balance_accept(w);
}

/* Checked every turn of a draining loop (at least twice a second), not only on ticks. */
static void
worker_drain_check(struct worker *w)
{
	if (w->now_ms < w->drain_deadline_ms)
		return;
	if (conn_count(&w->conns) != 0)
		log_info("shutdown_timeout reached: closing %zu connections", conn_count(&w->conns));
	if (conn_close_all(w) != 0)
		worker_conns_closed(w);
}

/*
 * The loop turns at least this often, even idle: second timers, rebalancing
 * and the heartbeat need the turn. Twice a second, so that the smallest
 * worker_timeout (1 s) still spans two heartbeats.
 */
#define WORKER_TICK_MS 500

/* How soon a worker out of the accept queue looks again at its share. */
#define WORKER_REBALANCE_MS 10

static void
worker_loop(struct worker *w)
{
	struct epoll_event events[WORKER_EVENTS];
	time_t last_tick = w->now;

	while (!(w->draining && conn_count(&w->conns) == 0)) {
		int n = epoll_wait(w->epfd, events, WORKER_EVENTS,
		    w->over_share ? WORKER_REBALANCE_MS : WORKER_TICK_MS);

		if (n == -1 && errno != EINTR)
			fatal("worker: epoll_wait");
		worker_stamp(w);
		for (int i = 0; i < n; i++) {
			struct ev_source *src = events[i].data.ptr;

			if (src->kind != EV_CONN)
				worker_dispatch(w, src, events[i].events);
			else if (conn_handle(w, (struct conn *)src, events[i].events))
				worker_conns_closed(w);
		}
		conn_publish(w);
		if (move_active(&w->move))
			move_run(w);  /* after the events: it may detach connections they name */
		if (w->over_share && !w->draining)
			worker_balance_accept(w);
		if (w->now != last_tick) {
			last_tick = w->now;
			worker_tick(w);
		}
		if (w->draining)
			worker_drain_check(w);
	}
}

/*
 * Last step of the set-up, when every descriptor the worker will ever
 * need is open: from here on it can only serve (worker/sandbox.h). The
 * master decided whether (sandbox, and a build that can), and said so.
 */
static void
worker_confine(struct worker *w, const struct worker_spec *spec)
{
	char err[256];

	if (!spec->sandbox)
		return;
	/*
	 * syslog() stamps local time: the first call loads the time zone, an
	 * openat of /etc/localtime the sandbox would kill us for. At log
	 * level warning the master may have logged nothing before the fork.
	 */
	tzset();
	if (sandbox_apply(w->me, err, sizeof(err)) == -1)
		fatalx("worker: cannot apply the sandbox: %s", err);
}

void
worker_main(const struct worker_spec *spec)
{
	struct worker w;
	struct chan_msg ready = { .kind = CHAN_READY };
	int *own_udp;

	proctitle_set("echomaster: worker process");
	worker_close_inherited(spec);
	log_reopen();  /* the inherited syslog socket was just closed with the rest */
	own_udp = worker_bind_own_udp(spec);
	worker_drop_privileges(spec->cfg);
	worker_bind_to_master(spec);
	worker_init(&w, spec, own_udp);
	free(own_udp);
	worker_stamp(&w);
#ifdef EM_TEST_HOOKS
	/* Test builds only: a start-up failure, for as long as the named file exists. */
	if (getenv("EM_TEST_CRASH_ON_START") != NULL && access(getenv("EM_TEST_CRASH_ON_START"), F_OK) == 0)
		exit(3);
	/*
	 * A worker that never reports ready, and so never accepts (a live
	 * upgrade's new master that is never ready): it waits, its signals
	 * unblocked so that its master's death (PDEATHSIG) still ends it.
	 */
	if (getenv("EM_TEST_NEVER_READY") != NULL && access(getenv("EM_TEST_NEVER_READY"), F_OK) == 0) {
		sigset_t none;
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		for (;;)
			pause();
	}
#endif
	worker_confine(&w, spec);
	if (chan_send(w.chan_fd, &ready) == -1)
		exit(EXIT_OK);  /* the master is gone already */
	worker_loop(&w);
	exit(EXIT_OK);
}
