/*
 * The supervisor with fake children: its fork and kill are struct sup_ops
 * that record what was asked, and the clock is whatever the test passes.
 * Each fake child has a real socketpair for a channel, so "ready" is the
 * message a worker would send.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/chan.h"
#include "common/log.h"
#include "master/peering.h"
#include "master/supervisor.h"

#define FAKE_PID0 4000000
#define MAX_CHILDREN 128
#define MAX_SIGNALS 64

struct sent {
	pid_t pid;
	int sig;
};

struct fake {
	struct sup sup;
	struct scoreboard *sb;
	int epfd;
	int nspawned;
	int child_end[MAX_CHILDREN];      /* the worker's end of each channel, by spawn order */
	unsigned generation[MAX_CHILDREN];
	int slot[MAX_CHILDREN];
	bool fail_spawns;
	struct sent sent[MAX_SIGNALS];
	int nsent;
};

static pid_t
fake_spawn(void *arg, struct worker_spec *spec, int *chan_fd)
{
	struct fake *f = arg;
	int sv[2];

	if (f->fail_spawns || f->nspawned == MAX_CHILDREN)
		return -1;
	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
	f->child_end[f->nspawned] = sv[1];
	f->generation[f->nspawned] = spec->generation;
	f->slot[f->nspawned] = spec->slot;
	*chan_fd = sv[0];
	return FAKE_PID0 + f->nspawned++;
}

static int
fake_signal(void *arg, pid_t pid, int sig)
{
	struct fake *f = arg;

	assert_true(f->nsent < MAX_SIGNALS);
	f->sent[f->nsent++] = (struct sent){ pid, sig };
	return 0;
}

/* How many times SIG was sent to PID. */
static int
sent_count(const struct fake *f, pid_t pid, int sig)
{
	int n = 0;

	for (int i = 0; i < f->nsent; i++)
		n += f->sent[i].pid == pid && f->sent[i].sig == sig;
	return n;
}

static struct cfg *
config(int workers, const char *extra)
{
	char text[1024], err[CFG_ERR_LEN];
	struct cfg *cfg;

	snprintf(text, sizeof(text), "workers = %d;\n%s\n"
	    "listen = ({ proto = \"tcp\"; address = \"127.0.0.1\"; port = 7; });\n", workers, extra);
	cfg = cfg_load_string("test.conf", text, err);
	if (cfg == NULL)
		fail_msg("%s", err);
	return cfg;
}

/* An empty set of listening sockets: the fake children never use them. */
static struct listeners *
no_listeners(void)
{
	struct listeners *ls = calloc(1, sizeof(*ls));

	assert_non_null(ls);
	assert_non_null(ls->fds = calloc(1, sizeof(*ls->fds)));
	return ls;
}

static int
setup(void **state)
{
	struct fake *f = calloc(1, sizeof(*f));
	struct sup_ops ops = { .spawn = fake_spawn, .signal = fake_signal };

	assert_non_null(f);
	log_configure(LOG_DAEMON, LOG_EMERG, false);  /* the scenarios' log lines are not the point */
	assert_true((f->epfd = epoll_create1(EPOLL_CLOEXEC)) != -1);
	assert_non_null(f->sb = scoreboard_create());
	ops.arg = f;
	sup_init(&f->sup, f->epfd, f->sb, 1, &ops);
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fake *f = *state;

	while (f->sup.procs != NULL)
		sup_exited(&f->sup, f->sup.procs->pid, W_EXITCODE(0, 0), 0);
	sup_free(&f->sup);
	for (int i = 0; i < f->nspawned; i++)
		if (f->child_end[i] != -1)
			close(f->child_end[i]);
	close(f->epfd);
	munmap(f->sb, sizeof(*f->sb));
	free(f);
	return 0;
}

static pid_t
pid_of(int spawn_index)
{
	return FAKE_PID0 + spawn_index;
}

static struct sup_proc *
proc_of(struct fake *f, int spawn_index)
{
	for (struct sup_proc *p = f->sup.procs; p != NULL; p = p->next)
		if (p->pid == pid_of(spawn_index))
			return p;
	return NULL;
}

/* The fake child sends "ready", as worker_main does, and the master reads it. */
static void
child_ready(struct fake *f, int spawn_index)
{
	struct chan_msg ready = { .kind = CHAN_READY };

	assert_int_equal(chan_send(f->child_end[spawn_index], &ready), 0);
	sup_channel_event(&f->sup, proc_of(f, spawn_index));
}

static void
start(struct fake *f, int workers, const char *extra)
{
	assert_int_equal(sup_start(&f->sup, config(workers, extra), no_listeners(), 0), 0);
}

static void
start_ready(struct fake *f, int workers, const char *extra)
{
	start(f, workers, extra);
	for (int i = 0; i < workers; i++)
		child_ready(f, i);
}

static void
quick_deaths_double_the_delay_up_to_the_cap(void **state)
{
	int d = 0;
	const int want[] = { 100, 200, 400, 800, 1600, 3200, 6400, 10000, 10000 };

	(void)state;
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		d = sup_backoff_next(d, 50);
		assert_int_equal(d, want[i]);
	}
}

static void
a_long_life_resets_the_backoff(void **state)
{
	(void)state;
	assert_int_equal(sup_backoff_next(10000, SUP_STABLE_MS), 0);
	assert_int_equal(sup_backoff_next(0, SUP_STABLE_MS - 1), SUP_BACKOFF_MIN_MS);
	assert_int_equal(sup_backoff_next(0, 0), SUP_BACKOFF_MIN_MS);
}

static void
exit_descriptions(void **state)
{
	char buf[96];

	(void)state;
	sup_describe_exit(W_EXITCODE(3, 0), buf, sizeof(buf));
	assert_string_equal(buf, "exited with status 3");
	sup_describe_exit(W_EXITCODE(0, 9), buf, sizeof(buf));
	assert_string_equal(buf, "killed by signal 9 (SIGKILL)");
	sup_describe_exit(W_EXITCODE(0, 11) | 0x80, buf, sizeof(buf));
	assert_string_equal(buf, "killed by signal 11 (SIGSEGV), core dumped");
	assert_true(sup_exit_is_clean(W_EXITCODE(0, 0)));
	assert_false(sup_exit_is_clean(W_EXITCODE(1, 0)));
	assert_false(sup_exit_is_clean(W_EXITCODE(0, 15)));
}

static void
a_generation_is_ready_once_every_worker_says_so(void **state)
{
	struct fake *f = *state;

	start(f, 3, "");
	assert_int_equal(f->nspawned, 3);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(f->slot[i], i);
		assert_int_equal(f->generation[i], 1);
	}
	child_ready(f, 0);
	child_ready(f, 2);
	assert_false(sup_gen_ready(&f->sup.cur));
	assert_int_equal(f->sb->w[proc_of(f, 1)->sb_entry].serving, 0);
	child_ready(f, 1);
	assert_true(sup_gen_ready(&f->sup.cur));
	assert_int_equal(f->sb->w[proc_of(f, 1)->sb_entry].serving, 1);
}

/* A serving worker that dies young is respawned after a delay that doubles; a long life resets it. */
static void
respawn_backoff_doubles_and_resets(void **state)
{
	struct fake *f = *state;
	int64_t t = 1000;

	start_ready(f, 1, "");
	assert_int_equal(sup_exited(&f->sup, pid_of(0), W_EXITCODE(0, SIGKILL), t), SUP_NOTHING);
	assert_int_equal(sup_next_due(&f->sup, t), t + 100);
	sup_tick(&f->sup, t + 99);
	assert_int_equal(f->nspawned, 1);
	sup_tick(&f->sup, t + 100);
	assert_int_equal(f->nspawned, 2);
	child_ready(f, 1);

	t += 150;  /* the second one lived 50 ms: twice the delay */
	sup_exited(&f->sup, pid_of(1), W_EXITCODE(0, SIGKILL), t);
	sup_tick(&f->sup, t + 199);
	assert_int_equal(f->nspawned, 2);
	sup_tick(&f->sup, t + 200);
	assert_int_equal(f->nspawned, 3);
	child_ready(f, 2);

	t += 200 + SUP_STABLE_MS;  /* a real life: respawned at once */
	sup_exited(&f->sup, pid_of(2), W_EXITCODE(0, SIGKILL), t);
	sup_tick(&f->sup, t);
	assert_int_equal(f->nspawned, 4);
	assert_int_equal(f->sup.count.respawns, 3);
	assert_int_equal(f->sup.count.respawns_throttled, 2);
}

/* A slot whose workers keep dying before ready is parked, then released by sup_unpark. */
static void
a_crash_loop_parks_the_slot(void **state)
{
	struct fake *f = *state;
	int64_t t = 0;

	start(f, 2, "crash_loop = { deaths = 3; window = 60; }; worker_timeout = 0;");
	child_ready(f, 1);
	for (int death = 1; death <= 3; death++) {
		int last = f->nspawned - 1;
		pid_t pid = death == 1 ? pid_of(0) : pid_of(last);
		unsigned what = sup_exited(&f->sup, pid, W_EXITCODE(3, 0), t);
		assert_int_equal(what, death < 3 ? SUP_NOTHING : SUP_PARKED);
		t += 10000;
		sup_tick(&f->sup, t);
	}
	assert_int_equal(sup_parked_slots(&f->sup), 1);
	assert_int_equal(f->nspawned, 4);  /* 2 + the 2 respawns before parking */
	sup_tick(&f->sup, t + 60000);
	assert_int_equal(f->nspawned, 4);
	assert_false(sup_gen_ready(&f->sup.cur));

	sup_unpark(&f->sup, t);
	assert_int_equal(sup_parked_slots(&f->sup), 0);
	sup_tick(&f->sup, t);
	assert_int_equal(f->nspawned, 5);
	assert_int_equal(f->slot[4], 0);
	child_ready(f, 4);
	assert_true(sup_gen_ready(&f->sup.cur));
}

/* Early deaths further apart than crash_loop.window never add up to a park. */
static void
early_deaths_outside_the_window_do_not_park(void **state)
{
	struct fake *f = *state;
	int64_t t = 0;

	start(f, 1, "crash_loop = { deaths = 2; window = 5; };");
	for (int death = 0; death < 4; death++) {
		assert_int_equal(sup_exited(&f->sup, pid_of(f->nspawned - 1), W_EXITCODE(3, 0), t),
		    SUP_NOTHING);
		t += 6000;
		sup_tick(&f->sup, t);
	}
	assert_int_equal(sup_parked_slots(&f->sup), 0);
	assert_int_equal(f->nspawned, 5);
}

/* Without reload_handover, TTOU drains the last slot's worker. */
static void
scaling_adds_and_drains_the_last_slot_never_below_one(void **state)
{
	struct fake *f = *state;

	start_ready(f, 1, "shutdown_timeout = 3; reload_handover = false;");
	sup_scale(&f->sup, +1, 0);
	assert_int_equal(f->sup.cur.nslots, 2);
	assert_int_equal(f->nspawned, 2);
	assert_int_equal(f->slot[1], 1);
	child_ready(f, 1);
	assert_true(sup_gen_ready(&f->sup.cur));

	sup_scale(&f->sup, -1, 0);
	assert_int_equal(f->sup.cur.nslots, 1);
	assert_int_equal(sent_count(f, pid_of(1), SIGQUIT), 1);
	assert_int_equal(proc_of(f, 1)->state, SUP_DRAINING);
	assert_int_equal(proc_of(f, 1)->kill_at_ms, 3000 + SUP_DRAIN_GRACE_MS);
	assert_int_equal(f->sb->w[proc_of(f, 1)->sb_entry].serving, 0);

	sup_scale(&f->sup, -1, 0);
	assert_int_equal(f->sup.cur.nslots, 1);
	assert_int_equal(sent_count(f, pid_of(0), SIGQUIT), 0);

	/* The drained worker's exit is not a death of the serving generation. */
	assert_int_equal(sup_exited(&f->sup, pid_of(1), W_EXITCODE(0, 0), 10), SUP_NOTHING);
	sup_tick(&f->sup, 10000);
	assert_int_equal(f->nspawned, 2);
}

/* A worker of a reload's generation that dies is reported; the abort kills the rest. */
static void
a_dead_next_worker_is_reported_and_the_serving_generation_kept(void **state)
{
	struct fake *f = *state;

	start_ready(f, 2, "worker_timeout = 0;");
	assert_int_equal(sup_start_next(&f->sup, config(2, "worker_timeout = 0;"), no_listeners(), 100), 0);
	assert_true(sup_reloading(&f->sup));
	assert_int_equal(f->generation[2], 2);
	child_ready(f, 2);
	assert_int_equal(sup_exited(&f->sup, pid_of(3), W_EXITCODE(0, SIGSEGV), 200),
	    SUP_NEXT_DIED);

	sup_abort_next(&f->sup, 200);
	assert_false(sup_reloading(&f->sup));
	assert_int_equal(sent_count(f, pid_of(2), SIGKILL), 1);
	assert_int_equal(proc_of(f, 2)->state, SUP_ABORTED);
	assert_int_equal(sup_exited(&f->sup, pid_of(2), W_EXITCODE(0, SIGKILL), 210), SUP_NOTHING);
	/* The serving generation never noticed, and nothing is respawned for generation 2. */
	assert_int_equal(f->sup.cur.number, 1);
	assert_true(sup_gen_ready(&f->sup.cur));
	assert_int_equal(sent_count(f, pid_of(0), SIGKILL) + sent_count(f, pid_of(1), SIGKILL), 0);
	sup_tick(&f->sup, 100000);
	assert_int_equal(f->nspawned, 4);
}

static void
reload(struct fake *f, int workers, const char *extra, int64_t now)
{
	int first = f->nspawned;

	assert_int_equal(sup_start_next(&f->sup, config(workers, extra), no_listeners(), now), 0);
	for (int i = first; i < f->nspawned; i++)
		child_ready(f, i);
	assert_true(sup_gen_ready(&f->sup.next));
	sup_commit_next(&f->sup, now);
	sup_limit_draining(&f->sup, now);
}

/* A commit drains the old generation; past max_draining_generations the oldest is cut. */
static void
commits_drain_the_old_and_bound_the_pile_up(void **state)
{
	struct fake *f = *state;

	start_ready(f, 1, "max_draining_generations = 1; reload_handover = false;");
	reload(f, 1, "max_draining_generations = 1; reload_handover = false;", 10);
	assert_int_equal(f->sup.cur.number, 2);
	assert_int_equal(sent_count(f, pid_of(0), SIGQUIT), 1);
	assert_int_equal(proc_of(f, 0)->state, SUP_DRAINING);
	assert_int_equal(sup_draining_generations(&f->sup, false, NULL), 1);
	assert_int_equal(f->sb->w[proc_of(f, 1)->sb_entry].serving, 1);

	reload(f, 1, "max_draining_generations = 1; reload_handover = false;", 20);
	assert_int_equal(f->sup.cur.number, 3);
	assert_int_equal(sent_count(f, pid_of(0), SIGTERM), 1);  /* generation 1, the oldest */
	assert_true(proc_of(f, 0)->cut);
	assert_int_equal(proc_of(f, 0)->kill_at_ms, 20 + SUP_FAST_STOP_GRACE_MS);
	assert_int_equal(sent_count(f, pid_of(1), SIGTERM), 0);
	assert_int_equal(sup_draining_generations(&f->sup, true, NULL), 1);
	assert_int_equal(sup_draining_generations(&f->sup, false, NULL), 2);
}

/* A serving worker whose heartbeat stops is killed once; the death is then respawned. */
static void
a_hung_worker_is_killed_once(void **state)
{
	struct fake *f = *state;
	struct sup_proc *p;

	start_ready(f, 1, "worker_timeout = 1;");
	p = proc_of(f, 0);
	f->sb->w[p->sb_entry].heartbeat_ms = 5000;
	sup_tick(&f->sup, 6000);
	assert_int_equal(sent_count(f, pid_of(0), SIGKILL), 0);
	sup_tick(&f->sup, 6001);
	sup_tick(&f->sup, 7000);
	assert_int_equal(sent_count(f, pid_of(0), SIGKILL), 1);
	sup_exited(&f->sup, pid_of(0), W_EXITCODE(0, SIGKILL), 7000);
	sup_tick(&f->sup, 7000 + SUP_BACKOFF_MAX_MS);
	assert_int_equal(f->nspawned, 2);
}

/* A graceful stop drains within shutdown_timeout, then kills; nothing is respawned. */
static void
a_stop_kills_the_overdue_and_respawns_nothing(void **state)
{
	struct fake *f = *state;
	int64_t deadline = 1000 + 2000 + SUP_DRAIN_GRACE_MS;

	start_ready(f, 2, "shutdown_timeout = 2;");
	sup_stop(&f->sup, true, 1000);
	assert_int_equal(sent_count(f, pid_of(0), SIGQUIT), 1);
	assert_int_equal(sent_count(f, pid_of(1), SIGQUIT), 1);
	assert_int_equal(sup_next_due(&f->sup, 1000), deadline);
	sup_exited(&f->sup, pid_of(0), W_EXITCODE(0, 0), 1500);
	sup_tick(&f->sup, deadline - 1);
	assert_int_equal(sent_count(f, pid_of(1), SIGKILL), 0);
	sup_tick(&f->sup, deadline);
	assert_int_equal(sent_count(f, pid_of(1), SIGKILL), 1);
	sup_exited(&f->sup, pid_of(1), W_EXITCODE(0, SIGKILL), deadline);
	assert_true(sup_empty(&f->sup));
	sup_tick(&f->sup, deadline + 60000);
	assert_int_equal(f->nspawned, 2);
}

/* A fork that fails is retried after the backoff, like a death. */
static void
a_failed_spawn_is_retried_after_the_backoff(void **state)
{
	struct fake *f = *state;

	f->fail_spawns = true;
	start(f, 1, "");
	assert_int_equal(f->nspawned, 0);
	assert_int_equal(sup_next_due(&f->sup, 0), SUP_BACKOFF_MIN_MS);
	f->fail_spawns = false;
	sup_tick(&f->sup, SUP_BACKOFF_MIN_MS - 1);
	assert_int_equal(f->nspawned, 0);
	sup_tick(&f->sup, SUP_BACKOFF_MIN_MS);
	assert_int_equal(f->nspawned, 1);
}

/* What the fake child at SPAWN_INDEX finds on its channel: 1 and the message, or 0 when nothing waits. */
static int
child_message(struct fake *f, int spawn_index, struct chan_msg *m)
{
	int n = chan_recv(f->child_end[spawn_index], m);

	if (n == -1 && errno == EAGAIN)
		return 0;
	assert_int_equal(n, 1);
	return 1;
}

/* A and B are the two ends of one socket pair: a byte written on one is read on the other. */
static void
paired(int a, int b)
{
	char c = 0;

	assert_int_equal(write(a, "x", 1), 1);
	assert_int_equal(recv(b, &c, 1, MSG_DONTWAIT), 1);
	assert_int_equal(c, 'x');
}

/* At a commit with reload_handover, every old worker is told to move to every new one. */
static void
a_commit_hands_the_old_workers_connections_over(void **state)
{
	struct fake *f = *state;
	struct chan_msg old[2], take[3][2], none;

	start_ready(f, 2, "");
	reload(f, 3, "", 10);
	for (int k = 0; k < 2; k++) {
		assert_int_equal(child_message(f, k, &old[k]), 1);
		assert_int_equal(old[k].kind, CHAN_HAND_OVER);
		assert_false(old[k].more);
		assert_int_equal(old[k].nfds, 3);
		for (int j = 0; j < 3; j++)  /* old slot k's window starts at new slot k * 3 / 2 */
			assert_int_equal(old[k].entry[j], proc_of(f, 2 + (k * 3 / 2 + j) % 3)->sb_entry);
		assert_int_equal(sent_count(f, pid_of(k), SIGQUIT), 0);
		assert_int_equal(proc_of(f, k)->state, SUP_MOVING);
		assert_int_equal(f->sb->w[proc_of(f, k)->sb_entry].serving, 0);
	}
	for (int n = 0; n < 3; n++) {
		for (int k = 0; k < 2; k++) {
			int j = (n - k * 3 / 2 + 3) % 3;
			assert_int_equal(child_message(f, 2 + n, &take[n][k]), 1);
			assert_int_equal(take[n][k].kind, CHAN_TAKE_OVER);
			paired(old[k].fds[j], take[n][k].fds[0]);
		}
		assert_int_equal(child_message(f, 2 + n, &none), 0);
	}
	assert_int_equal(sup_draining_generations(&f->sup, false, NULL), 1);

	/* The last old worker to exit ends the handover, with what they moved. */
	f->sb->w[proc_of(f, 0)->sb_entry].moved_out = 5;
	f->sb->w[proc_of(f, 1)->sb_entry].moved_out = 7;
	f->sb->w[proc_of(f, 1)->sb_entry].moves_failed = 1;
	assert_int_equal(sup_exited(&f->sup, pid_of(0), W_EXITCODE(0, 0), 20), SUP_NOTHING);
	assert_int_equal(sup_exited(&f->sup, pid_of(1), W_EXITCODE(0, 0), 30), SUP_HANDED_OVER);
	assert_int_equal(f->sup.done.generation, 1);
	assert_int_equal(f->sup.done.workers, 2);
	assert_int_equal(f->sup.done.moved, 12);
	assert_int_equal(f->sup.done.kept, 1);
	assert_int_equal(f->sup.done.started_ms, 10);
	for (int k = 0; k < 2; k++)
		chan_close_fds(&old[k]);
	for (int j = 0; j < 3; j++)
		for (int k = 0; k < 2; k++)
			chan_close_fds(&take[j][k]);
}

/* reload_handover = false, a worker not yet ready, a channel that breaks: those drain. */
static void
without_handover_the_old_workers_drain(void **state)
{
	struct fake *f = *state;
	struct chan_msg m;

	start(f, 3, "reload_handover = false;");
	child_ready(f, 0);
	child_ready(f, 1);
	reload(f, 1, "reload_handover = false;", 10);
	for (int k = 0; k < 3; k++) {
		assert_int_equal(sent_count(f, pid_of(k), SIGQUIT), 1);
		assert_int_equal(proc_of(f, k)->state, SUP_DRAINING);
		assert_int_equal(child_message(f, k, &m), 0);
	}
	assert_int_equal(child_message(f, 3, &m), 0);

	close(f->child_end[3]);  /* the new worker's channel is gone: nobody can receive */
	f->child_end[3] = -1;
	reload(f, 1, "", 20);
	assert_int_equal(sent_count(f, pid_of(3), SIGQUIT), 1);
	assert_int_equal(proc_of(f, 3)->state, SUP_DRAINING);
}

static void
a_starting_worker_drains_and_a_ready_one_moves(void **state)
{
	struct fake *f = *state;
	struct chan_msg m;

	start(f, 2, "");
	child_ready(f, 0);
	reload(f, 1, "", 10);
	assert_int_equal(child_message(f, 0, &m), 1);
	assert_int_equal(m.kind, CHAN_HAND_OVER);
	chan_close_fds(&m);
	assert_int_equal(sent_count(f, pid_of(1), SIGQUIT), 1);
	assert_int_equal(child_message(f, 1, &m), 0);
}

/* TTOU: the retiring worker moves to the others, which each get its socket. */
static void
ttou_hands_the_last_slot_over_to_the_others(void **state)
{
	struct fake *f = *state;
	struct chan_msg m, t;

	start_ready(f, 3, "");
	sup_scale(&f->sup, -1, 0);
	assert_int_equal(child_message(f, 2, &m), 1);
	assert_int_equal(m.kind, CHAN_HAND_OVER);
	assert_int_equal(m.nfds, 2);
	assert_int_equal(m.entry[0], proc_of(f, 0)->sb_entry);
	assert_int_equal(m.entry[1], proc_of(f, 1)->sb_entry);
	assert_int_equal(sent_count(f, pid_of(2), SIGQUIT), 0);
	assert_int_equal(proc_of(f, 2)->state, SUP_MOVING);
	for (int k = 0; k < 2; k++) {
		assert_int_equal(child_message(f, k, &t), 1);
		assert_int_equal(t.kind, CHAN_TAKE_OVER);
		paired(m.fds[k], t.fds[0]);
		chan_close_fds(&t);
	}
	chan_close_fds(&m);
	assert_int_equal(sup_exited(&f->sup, pid_of(2), W_EXITCODE(0, 0), 5), SUP_HANDED_OVER);
	assert_int_equal(f->sup.done.generation, 1);
}

/*
 * Many workers: each old one gets a window of a few new ones, so the set-up
 * stays linear, and every new one hears from at least one old one.
 */
static void
set_up_is_linear_and_reaches_every_new_worker(void **state)
{
	struct fake *f = *state;
	struct chan_msg m;
	int heard[MAX_CHILDREN] = { 0 };

	start_ready(f, 30, "");
	reload(f, 20, "", 10);
	for (int k = 0; k < 30; k++) {
		assert_int_equal(child_message(f, k, &m), 1);
		assert_int_equal(m.nfds, 8);
		for (unsigned j = 0; j < m.nfds; j++)
			for (int n = 30; n < 50; n++)
				heard[n] += proc_of(f, n)->sb_entry == m.entry[j];
		chan_close_fds(&m);
	}
	for (int n = 30; n < 50; n++) {
		assert_true(heard[n] >= 2);
		while (child_message(f, n, &m) == 1)
			chan_close_fds(&m);
	}
}

/* More peers than one message holds: all but the last message say more follow. */
static void
a_hand_over_to_many_workers_takes_several_messages(void **state)
{
	struct fake *f = *state;
	struct chan_msg m;
	unsigned total = 0;

	start_ready(f, 1, "");
	reload(f, CHAN_MAX_FDS + 6, "", 10);  /* one old worker: its window is every new one */
	assert_int_equal(child_message(f, 0, &m), 1);
	assert_true(m.more);
	assert_int_equal(m.nfds, CHAN_MAX_FDS);
	total += m.nfds;
	chan_close_fds(&m);
	assert_int_equal(child_message(f, 0, &m), 1);
	assert_false(m.more);
	total += m.nfds;
	chan_close_fds(&m);
	assert_int_equal(total, CHAN_MAX_FDS + 6);
}

static void
the_view_lists_workers_oldest_generation_first(void **state)
{
	struct fake *f = *state;
	struct status_view v = { 0 };

	start_ready(f, 2, "");
	reload(f, 1, "reload_handover = false;", 10);
	assert_int_equal(sup_view(&f->sup, &v), 0);
	assert_int_equal(v.generation, 2);
	assert_int_equal(v.workers, 1);
	assert_int_equal(v.draining_generations, 1);
	assert_int_equal(v.nworkers, 3);
	assert_int_equal(v.w[0].generation, 1);
	assert_int_equal(v.w[0].slot, 0);
	assert_string_equal(v.w[0].state, "draining");
	assert_int_equal(v.w[1].generation, 1);
	assert_int_equal(v.w[1].slot, 1);
	assert_int_equal(v.w[2].generation, 2);
	assert_string_equal(v.w[2].state, "serving");
	assert_int_equal(v.w[2].pid, pid_of(2));
	free(v.w);
}

/*
 * A live upgrade, the old master's side: a relayed hand-over reaches the
 * ready worker of its slot (and no other); at the end the workers whose
 * whole hand-over went move, the others drain, and nothing is respawned.
 */
static void
upgrade_old_side_forwards_then_retires(void **state)
{
	struct fake *f = *state;
	struct chan_msg m = { .kind = CHAN_HAND_OVER, .nfds = 1, .entry = { CHAN_ENTRY_UNKNOWN } }, got;
	bool moving[3] = { true, false, false };
	int p[2];

	start_ready(f, 3, "shutdown_timeout = 3;");
	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	m.fds[0] = p[0];
	assert_int_equal(sup_forward(&f->sup, 0, &m), 0);
	assert_int_equal(chan_recv(f->child_end[0], &got), 1);
	assert_int_equal(got.kind, CHAN_HAND_OVER);
	assert_int_equal(got.nfds, 1);
	assert_true(got.entry[0] == CHAN_ENTRY_UNKNOWN);
	chan_close_fds(&got);
	assert_int_equal(chan_recv(f->child_end[1], &got), -1);  /* nothing for slot 1 */
	assert_int_equal(sup_forward(&f->sup, 7, &m), -1);
	assert_int_equal(errno, ESRCH);
	close(p[0]);
	close(p[1]);
	sup_freeze(&f->sup);
	sup_retire_upgraded(&f->sup, moving, 100);
	assert_int_equal(proc_of(f, 0)->state, SUP_MOVING);
	assert_int_equal(sent_count(f, pid_of(0), SIGQUIT), 0);
	assert_int_equal(sent_count(f, pid_of(1), SIGQUIT), 1);
	assert_int_equal(sent_count(f, pid_of(2), SIGQUIT), 1);
	assert_int_equal(sup_exited(&f->sup, pid_of(1), W_EXITCODE(0, 0), 200), SUP_NOTHING);
	sup_tick(&f->sup, 10000);
	assert_int_equal(f->nspawned, 3);  /* no respawn */
	assert_int_equal(sup_exited(&f->sup, pid_of(0), W_EXITCODE(0, 0), 300), SUP_HANDED_OVER);
	assert_int_equal(f->sup.done.workers, 1);
}

static struct chan_msg relayed[4];
static int nrelayed;

static int
record_relay(void *arg, const struct chan_msg *m)
{
	(void)arg;
	assert_true(nrelayed < 4);
	relayed[nrelayed++] = *m;
	return 0;
}

/*
 * A live upgrade, the new master's side: its ready workers in the old
 * slot's window get their ends (CHAN_TAKE_OVER), and the relay gets the
 * sender's, with entries no other scoreboard could read.
 */
static void
upgrade_new_side_wires_its_workers_to_a_relay(void **state)
{
	struct fake *f = *state;
	struct peering pr;
	struct chan_msg got;

	start_ready(f, 2, "");
	nrelayed = 0;
	peering_begin_relay(&pr, record_relay, NULL, 4242);
	sup_add_receivers(&f->sup, &pr, 0, 1);
	assert_int_equal(peering_end(&pr), 0);
	assert_int_equal(nrelayed, 1);
	assert_int_equal(relayed[0].kind, CHAN_HAND_OVER);
	assert_false(relayed[0].more);
	assert_int_equal(relayed[0].nfds, 2);
	assert_true(relayed[0].entry[0] == CHAN_ENTRY_UNKNOWN && relayed[0].entry[1] == CHAN_ENTRY_UNKNOWN);
	for (int k = 0; k < 2; k++) {
		assert_int_equal(chan_recv(f->child_end[k], &got), 1);
		assert_int_equal(got.kind, CHAN_TAKE_OVER);
		chan_close_fds(&got);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(quick_deaths_double_the_delay_up_to_the_cap),
		cmocka_unit_test(a_long_life_resets_the_backoff),
		cmocka_unit_test(exit_descriptions),
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
		T(a_generation_is_ready_once_every_worker_says_so),
		T(respawn_backoff_doubles_and_resets),
		T(a_crash_loop_parks_the_slot),
		T(early_deaths_outside_the_window_do_not_park),
		T(scaling_adds_and_drains_the_last_slot_never_below_one),
		T(a_dead_next_worker_is_reported_and_the_serving_generation_kept),
		T(commits_drain_the_old_and_bound_the_pile_up),
		T(a_hung_worker_is_killed_once),
		T(a_stop_kills_the_overdue_and_respawns_nothing),
		T(a_failed_spawn_is_retried_after_the_backoff),
		T(a_commit_hands_the_old_workers_connections_over),
		T(without_handover_the_old_workers_drain),
		T(upgrade_old_side_forwards_then_retires),
		T(upgrade_new_side_wires_its_workers_to_a_relay),
		T(a_starting_worker_drains_and_a_ready_one_moves),
		T(ttou_hands_the_last_slot_over_to_the_others),
		T(set_up_is_linear_and_reaches_every_new_worker),
		T(a_hand_over_to_many_workers_takes_several_messages),
		T(the_view_lists_workers_oldest_generation_first),
#undef T
	};
	return cmocka_run_group_tests_name("supervisor", tests, NULL, NULL);
}
