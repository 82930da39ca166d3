#include "master/supervisor.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/chan.h"
#include "common/log.h"
#include "master/peering.h"

/* The real fork: a socketpair for the channel, then worker_main in the child. */
static pid_t
sup_fork_worker(void *arg, struct worker_spec *spec, int *chan_fd)
{
	int sv[2];
	pid_t pid;

	(void)arg;
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == -1) {
		log_warn("socketpair");
		return -1;
	}
	spec->chan_fd = sv[1];
	if ((pid = fork()) == -1) {
		log_warn("fork");
		close(sv[0]);
		close(sv[1]);
		return -1;
	}
	if (pid == 0)
		worker_main(spec);
	close(sv[1]);
	*chan_fd = sv[0];
	return pid;
}

static int
sup_kill(void *arg, pid_t pid, int sig)
{
	(void)arg;
	return kill(pid, sig);
}

const struct sup_ops sup_real_ops = { .spawn = sup_fork_worker, .signal = sup_kill };

void
sup_init(struct sup *s, int epfd, struct scoreboard *sb, uint8_t chan_kind,
    const struct sup_ops *ops)
{
	memset(s, 0, sizeof(*s));
	s->epfd = epfd;
	s->sb = sb;
	s->chan_kind = chan_kind;
	s->ops = *ops;
}

static void
proc_signal(struct sup *s, struct sup_proc *p, int sig)
{
	if (s->ops.signal(s->ops.arg, p->pid, sig) == -1 && errno != ESRCH)
		log_warn("kill worker %ld", (long)p->pid);
}

static void
proc_unlink(struct sup *s, struct sup_proc *p)
{
	for (struct sup_proc **pp = &s->procs; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == p) {
			*pp = p->next;
			return;
		}
	}
}

static struct sup_proc *
proc_find(const struct sup *s, pid_t pid)
{
	for (struct sup_proc *p = s->procs; p != NULL; p = p->next)
		if (p->pid == pid)
			return p;
	return NULL;
}

static void
proc_close_channel(struct sup *s, struct sup_proc *p)
{
	if (p->chan_fd == -1)
		return;
	ev_del(s->epfd, p->chan_fd);
	close(p->chan_fd);
	p->chan_fd = -1;
}

/* Stops watching and closes the channel, frees its scoreboard entry and the struct. */
static void
proc_free(struct sup *s, struct sup_proc *p)
{
	scoreboard_release(s->sb, p->sb_entry);
	proc_close_channel(s, p);
	free(p);
}

/* Takes a scoreboard entry for a worker about to start; NULL when none is free. */
static struct sb_worker *
proc_entry(struct sup *s, struct sup_proc *p, const struct sup_gen *g, int slot, int64_t now)
{
	struct sb_worker *me;

	if (scoreboard_alloc(s->sb, &p->sb_entry) == -1) {
		log_warnx("scoreboard full: too many worker processes alive");
		return NULL;
	}
	me = &s->sb->w[p->sb_entry];
	me->generation = g->number;
	me->slot = slot;
	me->started_ms = now;
	me->heartbeat_ms = now;
	me->pid = -1;  /* taken; the real pid follows the fork */
	return me;
}

/* Forks a worker for SLOT of G and watches its channel. NULL on failure. */
static struct sup_proc *
proc_spawn(struct sup *s, const struct sup_gen *g, int slot, int64_t now)
{
	struct sup_proc *p = calloc(1, sizeof(*p));
	struct worker_spec spec = { .cfg = g->cfg, .listen_fds = g->ls->fds, .chan_fd = -1,
	    .master_pid = getpid(), .slot = slot, .generation = g->number, .sb = s->sb };

	if (p == NULL)
		return NULL;
	if ((spec.me = proc_entry(s, p, g, slot, now)) == NULL) {
		free(p);
		return NULL;
	}
	if ((p->pid = s->ops.spawn(s->ops.arg, &spec, &p->chan_fd)) == -1) {
		scoreboard_release(s->sb, p->sb_entry);
		free(p);
		return NULL;
	}
	spec.me->pid = p->pid;
	p->ev.kind = s->chan_kind;
	p->slot = slot;
	p->generation = g->number;
	p->state = SUP_STARTING;
	p->started_ms = now;
	if (fcntl(p->chan_fd, F_SETFL, O_NONBLOCK) == -1 ||
	    ev_add(s->epfd, p->chan_fd, EPOLLIN, &p->ev) == -1)
		log_warn("worker %ld channel", (long)p->pid);
	log_info("worker %ld started (slot %d, generation %u)", (long)p->pid, slot, g->number);
	return p;
}

/* Forks the worker of one slot; on failure the slot retries after its backoff. */
static void
slot_spawn(struct sup *s, struct sup_gen *g, int i, int64_t now)
{
	struct sup_slot *slot = &g->slots[i];
	struct sup_proc *p = proc_spawn(s, g, i, now);

	if (p == NULL) {
		slot->backoff_ms = sup_backoff_next(slot->backoff_ms, 0);
		slot->respawn_at_ms = now + slot->backoff_ms;
		log_errorx("cannot start worker slot %d; retrying in %d ms", i, slot->backoff_ms);
		return;
	}
	p->next = s->procs;
	s->procs = p;
	slot->proc = p;
	slot->respawn_at_ms = 0;
}

/* Releases what a generation owns; its workers must already be detached from it. */
static void
gen_free(struct sup_gen *g)
{
	if (g->ls != NULL)
		listeners_close(g->ls);
	cfg_free(g->cfg);
	free(g->slots);
	memset(g, 0, sizeof(*g));
}

static int
gen_start(struct sup *s, struct sup_gen *g, unsigned number, struct cfg *cfg,
    struct listeners *ls, int64_t now)
{
	g->number = number;
	g->cfg = cfg;
	g->ls = ls;
	g->nslots = cfg->workers;
	if ((g->slots = calloc((size_t)g->nslots, sizeof(*g->slots))) == NULL) {
		gen_free(g);
		return -1;
	}
	for (int i = 0; i < g->nslots; i++)
		slot_spawn(s, g, i, now);
	return 0;
}

int
sup_start(struct sup *s, struct cfg *cfg, struct listeners *ls, int64_t now)
{
	return gen_start(s, &s->cur, 1, cfg, ls, now);
}

int
sup_start_numbered(struct sup *s, unsigned number, struct cfg *cfg, struct listeners *ls,
    int64_t now)
{
	return gen_start(s, &s->cur, number, cfg, ls, now);
}

int
sup_start_next(struct sup *s, struct cfg *cfg, struct listeners *ls, int64_t now)
{
	return gen_start(s, &s->next, s->cur.number + 1, cfg, ls, now);
}

bool
sup_gen_ready(const struct sup_gen *g)
{
	if (g->number == 0)
		return false;
	for (int i = 0; i < g->nslots; i++)
		if (g->slots[i].proc == NULL || g->slots[i].proc->state != SUP_READY)
			return false;
	return true;
}

static void
proc_retire(struct sup *s, struct sup_proc *p, enum sup_state state, int64_t kill_at)
{
	s->sb->w[p->sb_entry].serving = 0;
	p->state = state;
	p->kill_at_ms = kill_at;
}

static int64_t
drain_deadline(const struct cfg *cfg, int64_t now)
{
	return now + (int64_t)cfg->shutdown_timeout * 1000 + SUP_DRAIN_GRACE_MS;
}

/*
 * Detaches every worker of G and sends it SIG: QUIT drains within
 * shutdown_timeout, TERM or KILL at once, 0 only detaches.
 */
static void
gen_stop(struct sup *s, struct sup_gen *g, int sig, enum sup_state state, int64_t now)
{
	int64_t kill_at = sig == SIGQUIT ? drain_deadline(g->cfg, now) : now + SUP_FAST_STOP_GRACE_MS;

	for (int i = 0; i < g->nslots; i++) {
		struct sup_proc *p = g->slots[i].proc;
		if (p == NULL)
			continue;
		if (sig != 0)
			proc_signal(s, p, sig);
		proc_retire(s, p, state, kill_at);
		g->slots[i].proc = NULL;
	}
}

int
sup_draining_generations(const struct sup *s, bool skip_cut, unsigned *oldest)
{
	unsigned seen[64];
	int n = 0;

	if (oldest != NULL)
		*oldest = 0;
	for (const struct sup_proc *p = s->procs; p != NULL; p = p->next) {
		bool known = false;
		if ((p->state != SUP_DRAINING && p->state != SUP_MOVING) || (skip_cut && p->cut))
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

void
sup_limit_draining(struct sup *s, int64_t now)
{
	int max = s->cur.cfg->max_draining;
	unsigned oldest;
	int n;

	while ((n = sup_draining_generations(s, true, &oldest)) > max) {
		log_warnx("%d generations draining, more than max_draining_generations = %d: "
		    "stopping generation %u now", n, max, oldest);
		for (struct sup_proc *p = s->procs; p != NULL; p = p->next) {
			if ((p->state == SUP_DRAINING || p->state == SUP_MOVING) &&
			    p->generation == oldest) {
				proc_signal(s, p, SIGTERM);
				p->cut = true;
				p->kill_at_ms = now + SUP_FAST_STOP_GRACE_MS;
			}
		}
	}
}

/*
 * Tells P to move its connections to the ready workers in COUNT slots of TO
 * from FIRST on (wrapping). -1 when P could not be told, or none of them
 * can receive: P must then drain.
 */
static int
proc_hand_over(const struct sup_proc *p, const struct sup_gen *to, int first, int count)
{
	struct peering pr;

	peering_begin(&pr, p->chan_fd, p->pid);
	for (int j = 0; j < count; j++) {
		const struct sup_proc *r = to->slots[(first + j) % to->nslots].proc;
		if (r != NULL && r != p && r->state == SUP_READY)
			peering_add(&pr, r->chan_fd, r->pid, r->sb_entry);
	}
	return peering_end(&pr);
}

/* Starts accounting for one handover of GENERATION's workers; -1 when the table is full. */
static int
move_open(struct sup *s, unsigned generation, int64_t now)
{
	for (int i = 0; i < SUP_MOVES; i++) {
		if (s->moves[i].generation != 0)
			continue;
		s->moves[i] = (struct sup_move){ .generation = generation, .started_ms = now };
		return i;
	}
	log_warnx("%d handovers at once: generation %u's is not counted", SUP_MOVES, generation);
	return -1;
}

/*
 * Retires P, detached from its slot: it hands its connections over to the
 * workers of TO when reload_handover says so and it can, else it drains.
 * Either way it may take until DEADLINE, when it is killed.
 */
static void
proc_retire_to(struct sup *s, struct sup_proc *p, const struct sup_gen *to, int first, int count,
    int move, int64_t deadline)
{
	if (to->cfg->reload_handover && p->state == SUP_READY &&
	    proc_hand_over(p, to, first, count) == 0) {
		proc_retire(s, p, SUP_MOVING, deadline);
		p->move = move;
		if (move != -1) {
			s->moves[move].workers++;
			s->moves[move].left++;
		}
		return;
	}
	proc_signal(s, p, SIGQUIT);
	proc_retire(s, p, SUP_DRAINING, deadline);
}

/* Frees a move entry that no worker joined. */
static void
move_close_if_empty(struct sup *s, int move)
{
	if (move != -1 && s->moves[move].workers == 0)
		s->moves[move].generation = 0;
}

void
sup_commit_next(struct sup *s, int64_t now)
{
	struct sup_gen old = s->cur;
	int64_t deadline = drain_deadline(old.cfg, now);
	int move, first, count;

	for (int i = 0; i < old.nslots; i++)
		if (old.slots[i].proc != NULL)
			s->sb->w[old.slots[i].proc->sb_entry].serving = 0;
	for (int i = 0; i < s->next.nslots; i++)
		s->sb->w[s->next.slots[i].proc->sb_entry].serving = 1;
	s->cur = s->next;
	memset(&s->next, 0, sizeof(s->next));
	move = move_open(s, old.number, now);
	for (int i = 0; i < old.nslots; i++) {
		struct sup_proc *p = old.slots[i].proc;
		if (p == NULL)
			continue;
		old.slots[i].proc = NULL;
		peering_window(i, old.nslots, s->cur.nslots, &first, &count);
		proc_retire_to(s, p, &s->cur, first, count, move, deadline);
	}
	move_close_if_empty(s, move);
	gen_free(&old);
}

void
sup_add_receivers(const struct sup *s, struct peering *pr, int i, int nold)
{
	const struct sup_gen *g = &s->cur;
	int first, count;

	if (g->nslots == 0)
		return;
	peering_window(i, nold, g->nslots, &first, &count);
	for (int j = 0; j < count; j++) {
		const struct sup_proc *r = g->slots[(first + j) % g->nslots].proc;
		if (r != NULL && r->state == SUP_READY)
			peering_add(pr, r->chan_fd, r->pid, CHAN_ENTRY_UNKNOWN);
	}
}

int
sup_forward(struct sup *s, int slot, const struct chan_msg *m)
{
	const struct sup_proc *p;

	if (slot < 0 || slot >= s->cur.nslots || (p = s->cur.slots[slot].proc) == NULL ||
	    p->state != SUP_READY || p->chan_fd == -1) {
		errno = ESRCH;
		return -1;
	}
	return chan_send(p->chan_fd, m);
}

void
sup_freeze(struct sup *s)
{
	s->stopping = true;
}

void
sup_retire_upgraded(struct sup *s, const bool *moving, int64_t now)
{
	struct sup_gen *g = &s->cur;
	int64_t deadline = drain_deadline(g->cfg, now);
	int move = move_open(s, g->number, now);

	s->stopping = true;
	for (int i = 0; i < g->nslots; i++) {
		struct sup_proc *p = g->slots[i].proc;
		if (p == NULL)
			continue;
		g->slots[i].proc = NULL;
		if (moving[i] && p->state == SUP_READY) {
			proc_retire(s, p, SUP_MOVING, deadline);
			p->move = move;
			if (move != -1) {
				s->moves[move].workers++;
				s->moves[move].left++;
			}
			continue;
		}
		proc_signal(s, p, SIGQUIT);
		proc_retire(s, p, SUP_DRAINING, deadline);
	}
	move_close_if_empty(s, move);
}

void
sup_abort_next(struct sup *s, int64_t now)
{
	if (s->next.number == 0)
		return;
	gen_stop(s, &s->next, SIGKILL, SUP_ABORTED, now);
	gen_free(&s->next);
}

void
sup_stop(struct sup *s, bool graceful, int64_t now)
{
	s->stopping = true;
	sup_abort_next(s, now);
	if (graceful) {
		gen_stop(s, &s->cur, SIGQUIT, SUP_DRAINING, now);
		return;
	}
	/* Fast: every worker, draining ones of older generations included. */
	gen_stop(s, &s->cur, 0, SUP_DRAINING, now);
	for (struct sup_proc *p = s->procs; p != NULL; p = p->next) {
		proc_signal(s, p, SIGTERM);
		p->kill_at_ms = now + SUP_FAST_STOP_GRACE_MS;
	}
}

static struct sup_slot *
slot_of(struct sup_gen *g, const struct sup_proc *p)
{
	if (g->number == 0 || p->generation != g->number || p->slot >= g->nslots ||
	    g->slots[p->slot].proc != p)
		return NULL;
	return &g->slots[p->slot];
}

void
sup_channel_event(struct sup *s, struct sup_proc *p)
{
	struct chan_msg msg;
	int n = chan_recv(p->chan_fd, &msg);

	if (n > 0)
		chan_close_fds(&msg);  /* a worker sends none; never keep what arrives */
	if (n > 0 && msg.kind == CHAN_READY && p->state == SUP_STARTING) {
		struct sup_slot *slot = slot_of(&s->cur, p);
		p->state = SUP_READY;
		if (slot != NULL && !s->stopping) {
			slot->early_deaths = 0;
			s->sb->w[p->sb_entry].serving = 1;
		}
		log_debug("worker %ld ready", (long)p->pid);
	} else if (n == 0 || (n < 0 && errno != EAGAIN && errno != EPROTO)) {
		ev_del(s->epfd, p->chan_fd);
	}
}

/*
 * Deaths before ready: a start-up failure (bad user, missing library,
 * exhausted resources) that no respawn can fix. Past crash_loop.deaths of
 * them within crash_loop.window the slot is parked instead of forking
 * forever, with one line that sums up the crashes not logged one by one.
 * Returns true when the slot is now parked.
 */
static bool
slot_count_early_death(const struct cfg *cfg, struct sup_slot *slot, const struct sup_proc *p,
    const char *how, int64_t now)
{
	if (slot->early_deaths == 0 ||
	    now - slot->window_start_ms > (int64_t)cfg->crash_loop_window * 1000) {
		slot->early_deaths = 0;
		slot->suppressed = 0;
		slot->window_start_ms = now;
	}
	if (++slot->early_deaths == 1) {
		log_warnx("worker %ld %s before it was ready", (long)p->pid, how);
	} else {
		slot->suppressed++;
		log_debug("worker %ld %s before it was ready", (long)p->pid, how);
	}
	if (slot->early_deaths < cfg->crash_loop_deaths)
		return false;
	slot->parked = true;
	log_errorx("worker slot %d parked: its workers died %d times within %d s before becoming "
	    "ready (last %s; %d such lines not logged); fix the cause, then reload or run "
	    "echomaster -s respawn", p->slot, slot->early_deaths, cfg->crash_loop_window, how,
	    slot->suppressed);
	return true;
}

/*
 * A serving worker died: respawn it, at once after a long life, later after
 * a short one. One that had reported ready is always respawned: an operator
 * or the OOM killer killing workers must not shrink capacity for good.
 */
static unsigned
slot_died(struct sup *s, struct sup_slot *slot, const struct sup_proc *p, int status, int64_t now)
{
	bool early = p->state == SUP_STARTING;
	char how[96];

	sup_describe_exit(status, how, sizeof(how));
	slot->proc = NULL;
	if (s->stopping || !early)
		log_warnx("worker %ld %s", (long)p->pid, how);
	if (s->stopping)
		return SUP_NOTHING;
	if (!early)
		slot->early_deaths = 0;
	else if (slot_count_early_death(s->cur.cfg, slot, p, how, now))
		return SUP_PARKED;
	s->count.respawns++;
	slot->backoff_ms = sup_backoff_next(slot->backoff_ms, now - p->started_ms);
	slot->respawn_at_ms = now + slot->backoff_ms;
	if (slot->backoff_ms == 0)
		return SUP_NOTHING;
	s->count.respawns_throttled++;
	if (!early || slot->early_deaths == 1)
		log_warnx("respawning worker slot %d in %d ms (it died after %lld ms)",
		    p->slot, slot->backoff_ms, (long long)(now - p->started_ms));
	return SUP_NOTHING;
}

/* A worker of a handover exited: what it moved counts; the last one ends the handover. */
static unsigned
move_account(struct sup *s, const struct sup_proc *p)
{
	const struct sb_worker *sb = &s->sb->w[p->sb_entry];
	struct sup_move *m;

	if (p->state != SUP_MOVING || p->move == -1)
		return SUP_NOTHING;
	m = &s->moves[p->move];
	m->moved += __atomic_load_n(&sb->moved_out, __ATOMIC_RELAXED);
	m->kept += __atomic_load_n(&sb->moves_failed, __ATOMIC_RELAXED);
	if (--m->left > 0)
		return SUP_NOTHING;
	s->done = *m;
	m->generation = 0;
	return SUP_HANDED_OVER;
}

/* A worker that belongs to no slot any more: draining, moving, aborted, or cut. */
static void
detached_died(const struct sup_proc *p, int status)
{
	char how[96];

	if ((p->state == SUP_DRAINING || p->state == SUP_MOVING) && sup_exit_is_clean(status)) {
		log_info("worker %ld of generation %u finished", (long)p->pid, p->generation);
	} else if (p->state != SUP_ABORTED) {
		sup_describe_exit(status, how, sizeof(how));
		log_warnx("worker %ld of generation %u %s", (long)p->pid, p->generation, how);
	}
}

unsigned
sup_exited(struct sup *s, pid_t pid, int status, int64_t now)
{
	struct sup_proc *p = proc_find(s, pid);
	struct sup_slot *slot;
	unsigned what = SUP_NOTHING;
	char how[96];

	if (p == NULL) {
		log_debug("reaped process %ld, not a worker", (long)pid);
		return SUP_NOTHING;
	}
	proc_unlink(s, p);
	if ((slot = slot_of(&s->cur, p)) != NULL) {
		what = slot_died(s, slot, p, status, now);
	} else if ((slot = slot_of(&s->next, p)) != NULL) {
		slot->proc = NULL;
		sup_describe_exit(status, how, sizeof(how));
		log_warnx("new worker %ld %s", (long)p->pid, how);
		what = SUP_NEXT_DIED;
	} else {
		detached_died(p, status);
		what |= move_account(s, p);
	}
	proc_free(s, p);
	return what;
}

static void
respawn_due(struct sup *s, int64_t now)
{
	for (int i = 0; i < s->cur.nslots; i++) {
		struct sup_slot *slot = &s->cur.slots[i];
		if (slot->proc == NULL && !slot->parked && now >= slot->respawn_at_ms)
			slot_spawn(s, &s->cur, i, now);
	}
}

static void
kill_overdue(struct sup *s, int64_t now)
{
	for (struct sup_proc *p = s->procs; p != NULL; p = p->next) {
		if (p->kill_at_ms == 0 || now < p->kill_at_ms)
			continue;
		log_warnx("worker %ld did not stop in time; killing it", (long)p->pid);
		proc_signal(s, p, SIGKILL);
		p->kill_at_ms = 0;
	}
}

/*
 * A serving worker whose loop has stopped turning (an endless loop, a
 * deadlock, SIGSTOP) still holds its connections and its place in the
 * accept queue. Its heartbeat says so: kill it, and the reaper respawns it.
 */
static void
kill_hung(struct sup *s, int64_t now)
{
	int64_t limit = (int64_t)s->cur.cfg->worker_timeout * 1000;

	if (limit == 0)
		return;
	for (struct sup_proc *p = s->procs; p != NULL; p = p->next) {
		int64_t silent = now - s->sb->w[p->sb_entry].heartbeat_ms;
		if (p->state != SUP_READY || p->hung || silent <= limit)
			continue;
		log_errorx("worker %ld (slot %d) sent no heartbeat for %lld ms; killing it",
		    (long)p->pid, p->slot, (long long)silent);
		p->hung = true;
		proc_signal(s, p, SIGKILL);
	}
}

void
sup_tick(struct sup *s, int64_t now)
{
	if (!s->stopping)
		respawn_due(s, now);
	kill_overdue(s, now);
	if (!s->stopping)
		kill_hung(s, now);
}

int64_t
sup_next_due(const struct sup *s, int64_t now)
{
	int64_t due = 0;

	for (int i = 0; i < s->cur.nslots && !s->stopping; i++) {
		const struct sup_slot *slot = &s->cur.slots[i];
		if (slot->proc == NULL && !slot->parked)
			due = ev_sooner(due, slot->respawn_at_ms ? slot->respawn_at_ms : now);
	}
	for (const struct sup_proc *p = s->procs; p != NULL; p = p->next)
		if (p->kill_at_ms != 0)
			due = ev_sooner(due, p->kill_at_ms);
	if (s->cur.cfg->worker_timeout != 0 && !s->stopping)
		due = ev_sooner(due, now + 1000);  /* heartbeats are checked every second */
	return due;
}

static void
scale_up(struct sup *s, int64_t now)
{
	struct sup_gen *g = &s->cur;
	struct sup_slot *slots = realloc(g->slots, (size_t)(g->nslots + 1) * sizeof(*slots));

	if (slots == NULL) {
		log_warn("SIGTTIN");
		return;
	}
	g->slots = slots;
	memset(&g->slots[g->nslots], 0, sizeof(*slots));
	slot_spawn(s, g, g->nslots++, now);
}

static void
scale_down(struct sup *s, int64_t now)
{
	struct sup_gen *g = &s->cur;
	struct sup_proc *p = g->slots[--g->nslots].proc;
	int move;

	g->slots[g->nslots].proc = NULL;
	if (p == NULL)
		return;
	move = move_open(s, g->number, now);
	proc_retire_to(s, p, g, 0, g->nslots, move, drain_deadline(g->cfg, now));
	move_close_if_empty(s, move);
}

void
sup_scale(struct sup *s, int delta, int64_t now)
{
	struct sup_gen *g = &s->cur;
	const char *sig = delta > 0 ? "SIGTTIN" : "SIGTTOU";

	if (s->stopping)
		return;
	if (delta > 0 && g->nslots < CFG_WORKERS_MAX) {
		scale_up(s, now);
	} else if (delta < 0 && g->nslots > 1) {
		scale_down(s, now);
	} else {
		log_notice("%s ignored: %d workers", sig, g->nslots);
		return;
	}
	log_notice("workers: %d (%s; a reload restores the configured %d)", g->nslots, sig,
	    g->cfg->workers);
}

void
sup_unpark(struct sup *s, int64_t now)
{
	for (int i = 0; i < s->cur.nslots; i++) {
		struct sup_slot *slot = &s->cur.slots[i];
		if (!slot->parked)
			continue;
		log_notice("worker slot %d unparked", i);
		slot->parked = false;
		slot->early_deaths = 0;
		slot->backoff_ms = 0;
		slot->respawn_at_ms = now;
	}
}

bool
sup_reloading(const struct sup *s)
{
	return s->next.number != 0;
}

bool
sup_empty(const struct sup *s)
{
	return s->procs == NULL;
}

int
sup_parked_slots(const struct sup *s)
{
	int n = 0;

	for (int i = 0; i < s->cur.nslots; i++)
		n += s->cur.slots[i].parked;
	return n;
}

static int
view_order(const void *a, const void *b)
{
	const struct status_worker *x = a, *y = b;

	if (x->generation != y->generation)
		return x->generation < y->generation ? -1 : 1;
	return x->slot - y->slot;
}

int
sup_view(const struct sup *s, struct status_view *v)
{
	size_t n = 0;

	for (const struct sup_proc *p = s->procs; p != NULL; p = p->next)
		n++;
	if ((v->w = calloc(n + 1, sizeof(*v->w))) == NULL)
		return -1;
	v->name = s->cur.cfg != NULL ? s->cur.cfg->instance : NULL;
	v->generation = s->cur.number;
	v->workers = s->cur.nslots;
	v->respawns = s->count.respawns;
	v->respawns_throttled = s->count.respawns_throttled;
	v->draining_generations = sup_draining_generations(s, false, NULL);
	v->parked_slots = sup_parked_slots(s);
	v->nworkers = 0;
	for (const struct sup_proc *p = s->procs; p != NULL; p = p->next)
		v->w[v->nworkers++] = (struct status_worker){ .pid = p->pid,
		    .generation = p->generation, .slot = p->slot, .state = sup_state_name(p->state),
		    .sb = &s->sb->w[p->sb_entry] };
	/* Oldest generation and lowest slot first: the list reads like the history. */
	qsort(v->w, v->nworkers, sizeof(*v->w), view_order);
	return 0;
}

void
sup_free(struct sup *s)
{
	gen_free(&s->next);
	gen_free(&s->cur);
}

const char *
sup_state_name(enum sup_state state)
{
	switch (state) {
	case SUP_STARTING: return "starting";
	case SUP_READY: return "serving";
	case SUP_DRAINING: return "draining";
	case SUP_ABORTED: return "aborted";
	case SUP_MOVING: return "moving";
	}
	return "?";
}

void
sup_describe_exit(int status, char *buf, size_t len)
{
	if (WIFEXITED(status))
		snprintf(buf, len, "exited with status %d", WEXITSTATUS(status));
	else if (WIFSIGNALED(status))
		snprintf(buf, len, "killed by signal %d (SIG%s)%s", WTERMSIG(status),
		    sigabbrev_np(WTERMSIG(status)) ? sigabbrev_np(WTERMSIG(status)) : "?",
		    WCOREDUMP(status) ? ", core dumped" : "");
	else
		snprintf(buf, len, "ended with wait status %#x", status);
}

bool
sup_exit_is_clean(int status)
{
	return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

int
sup_backoff_next(int prev_delay_ms, int64_t uptime_ms)
{
	if (uptime_ms >= SUP_STABLE_MS)
		return 0;
	if (prev_delay_ms < SUP_BACKOFF_MIN_MS)
		return SUP_BACKOFF_MIN_MS;
	if (prev_delay_ms >= SUP_BACKOFF_MAX_MS / 2)
		return SUP_BACKOFF_MAX_MS;
	return prev_delay_ms * 2;
}
