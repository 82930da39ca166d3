/*
 * test_handover_storm.c: reload_handover under load, and broken mid-way.
 *
 * The storm: 1,000 long-lived streams, each sending and verifying every
 * byte of the upper-cased echo, through 10 reloads one second apart that
 * alternate between 2 and 3 workers. No stream may break, stall or see a
 * wrong or missing byte; after each reload the old generation is gone
 * within 1.5 s of its HUP; never more than one generation drains; every
 * new generation counts all 1,000 connections moved in, and no move fails.
 *
 * The kills: a worker of the new generation (receiving), or of the old one
 * (sending), is killed in the middle of a handover (held there with
 * SIGSTOP, see kill_mid_move); its client ports are read from its
 * descriptor table while it is stopped. Only those connections may break;
 * every other stream goes on to its last byte.
 *
 * TLS: a handover moves the plain streams and leaves the TLS ones (their
 * state is OpenSSL's) in the old workers, which go on serving them, every
 * byte checked, and are gone as soon as the last of them has ended.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "fault.h"

#include <errno.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STORM_STREAMS	1000
#define STORM_RELOADS	10
#define STORM_EVERY_MS	1000
#define EXIT_BOUND_MS	1500
#define STATUS_EVERY_MS	50
#define KILL_STREAMS	600
#define MAX_GEN		(STORM_RELOADS + 2)
#define MIXED_PLAIN	200
#define MIXED_TLS	20
#define MIXED_AFTER_MS	1500

static void
conf_handover(struct env *e, struct em_conf *c, char *extra, size_t len,
    int workers, int port)
{
	int n = snprintf(extra, len, "control_socket = \"%s\";\n"
	    "reload_handover = true;", env_control_socket(e));

	assert_true(n > 0 && (size_t)n < len);
	conf_init(c, workers);
	conf_listen_pair(c, port, "upper");
	c->extra = extra;
}

static uint64_t
gen_moved_in(const struct em_status *st, unsigned gen)
{
	return status_gen_sum(st, gen, offsetof(struct em_status_worker, moved_in));
}

static uint64_t
gen_active(const struct em_status *st, unsigned gen)
{
	return status_gen_sum(st, gen, offsetof(struct em_status_worker, active));
}

static uint64_t
all_moves_failed(const struct em_status *st)
{
	return status_gen_sum(st, 0, offsetof(struct em_status_worker, moves_failed));
}

/* Oldest generation any listed worker belongs to. */
static unsigned
oldest_gen(const struct em_status *st)
{
	unsigned g = st->generation;

	for (size_t i = 0; i < st->n; i++)
		if (st->w[i].generation < g)
			g = st->w[i].generation;
	return g;
}

static void
status_or_fail(struct env *e, struct em_status *st)
{
	if (env_status(e, st, EM_DEADLINE_MS) == -1) {
		env_dump_log(e);
		fail_msg("status-json: %s", strerror(errno));
	}
}

/* Keeps the load going until generation 1 counts `want` connections. */
static void
load_until_active(struct env *e, struct load *l, uint64_t want)
{
	int64_t deadline = now_ms() + EM_DEADLINE_MS * 2;
	struct em_status st;

	for (;;) {
		load_run_for(l, 100);
		status_or_fail(e, &st);
		if (gen_active(&st, 1) == want)
			return;
		if (now_ms() >= deadline) {
			load_print(l, "opening");
			fail_msg("generation 1 holds %llu connections, want %llu",
			    (unsigned long long)gen_active(&st, 1),
			    (unsigned long long)want);
		}
	}
}

/* What the storm saw, per generation: its HUP, when the generation before
 * it was gone, the most connections it counted moved in. */
struct storm {
	int64_t		 hup[MAX_GEN];
	int64_t		 gone[MAX_GEN];
	uint64_t	 moved_in[MAX_GEN];
	uint64_t	 moves_failed;
	int		 max_draining;	/* status-json's draining_generations */
	int		 max_old;	/* generations older than the serving one */
	unsigned	 polls;
	unsigned	 polls_old;	/* polls that saw an old generation */
};

/* How many distinct generations older than the serving one are listed. */
static int
old_generations(const struct em_status *st)
{
	unsigned seen[EM_MAX_WORKERS * 2];
	int n = 0;

	for (size_t i = 0; i < st->n; i++) {
		int j;

		if (st->w[i].generation >= st->generation)
			continue;
		for (j = 0; j < n && seen[j] != st->w[i].generation; j++)
			;
		if (j == n)
			seen[n++] = st->w[i].generation;
	}
	return n;
}

static void
storm_observe(struct env *e, struct storm *s)
{
	struct em_status st;
	unsigned oldest, g;

	status_or_fail(e, &st);
	s->polls++;
	if (st.draining_generations > s->max_draining)
		s->max_draining = st.draining_generations;
	if (old_generations(&st) > s->max_old)
		s->max_old = old_generations(&st);
	if (old_generations(&st) > 0)
		s->polls_old++;
	if (all_moves_failed(&st) > s->moves_failed)
		s->moves_failed = all_moves_failed(&st);
	oldest = oldest_gen(&st);
	for (g = 2; g <= st.generation && g < MAX_GEN; g++) {
		if (gen_moved_in(&st, g) > s->moved_in[g])
			s->moved_in[g] = gen_moved_in(&st, g);
		/* Generation g-1 is gone once nothing older than g is left. */
		if (s->gone[g] == 0 && s->hup[g] != 0 && oldest >= g)
			s->gone[g] = now_ms();
	}
}

/*
 * The master's "generation G handed over N connections in T ms (W
 * workers; K could not move and were drained)" for each generation that
 * was replaced: counts the ones that moved all STORM_STREAMS and kept
 * none, and prints each duration.
 */
static int
handed_over_clean(struct env *e, unsigned generations)
{
	char needle[64], *line;
	unsigned long moved, kept;
	long ms;
	int workers, clean = 0;

	for (unsigned g = 1; g <= generations; g++) {
		snprintf(needle, sizeof(needle), "generation %u handed over ", g);
		if ((line = env_log_line(e, needle)) == NULL) {
			print_message("generation %u: no handover line\n", g);
			continue;
		}
		if (sscanf(strstr(line, needle) + strlen(needle),
		    "%lu connections in %ld ms (%d workers; %lu could not",
		    &moved, &ms, &workers, &kept) == 4 &&
		    moved == STORM_STREAMS && kept == 0)
			clean++;
		print_message("%s\n", strstr(line, needle));
		free(line);
	}
	return clean;
}

static void
test_handover_storm_1000_streams(void **state)
{
	struct env *e = *state;
	struct em_conf two, three;
	char x2[512], x3[512];
	struct storm *s = calloc(1, sizeof(*s));
	struct load l;
	int64_t t0, next_status, worst = 0;
	int port = port_pick(), failures = 0;
	unsigned g;

	assert_non_null(s);
	conf_handover(e, &two, x2, sizeof(x2), 2, port);
	conf_handover(e, &three, x3, sizeof(x3), 3, port);
	env_write_conf(e, &two);
	env_start_ready(e, 2, port);
	load_start(&l, port, 0, STORM_STREAMS, 0, 0x1000);
	load_until_active(e, &l, STORM_STREAMS);
	load_run_for(&l, 500);
	t0 = now_ms();
	next_status = t0;
	for (int k = 1; k <= STORM_RELOADS; k++) {
		/* Generation k+1: odd reloads ask for 3 workers, even for 2. */
		while (now_ms() < t0 + (int64_t)(k - 1) * STORM_EVERY_MS) {
			load_step(&l, 5);
			if (now_ms() >= next_status) {
				storm_observe(e, s);
				next_status = now_ms() + STATUS_EVERY_MS;
			}
		}
		env_write_conf(e, k % 2 == 1 ? &three : &two);
		s->hup[k + 1] = now_ms();
		env_signal(e, SIGHUP);
	}
	/* The last reload's handover, then a second of load on the result. */
	for (int64_t end = now_ms() + STORM_EVERY_MS + EXIT_BOUND_MS;
	    now_ms() < end || s->gone[STORM_RELOADS + 1] == 0;) {
		load_step(&l, 5);
		if (now_ms() >= next_status) {
			storm_observe(e, s);
			next_status = now_ms() + STATUS_EVERY_MS;
		}
		if (now_ms() > end + EM_DEADLINE_MS)
			break;
	}
	load_finish(&l, EM_DEADLINE_MS);
	load_print(&l, "handover storm");
	for (g = 2; g <= STORM_RELOADS + 1; g++) {
		int64_t took = s->gone[g] != 0 ? s->gone[g] - s->hup[g] : -1;

		print_message("reload to generation %u: old generation gone "
		    "after %lld ms, %llu connections moved in\n", g,
		    (long long)took, (unsigned long long)s->moved_in[g]);
		if (took < 0 || took > EXIT_BOUND_MS ||
		    s->moved_in[g] != STORM_STREAMS)
			failures++;
		if (took > worst)
			worst = took;
	}
	print_message("%u status polls (%u saw an old generation); most "
	    "generations draining at once %d, old at once %d; moves failed "
	    "%llu; slowest handover %lld ms; reloads ok %zu, failed %zu\n",
	    s->polls, s->polls_old, s->max_draining, s->max_old,
	    (unsigned long long)s->moves_failed, (long long)worst,
	    env_log_count(e, "reload ok"), env_log_count(e, "reload failed"));
	load_expect_clean(&l);
	assert_int_equal(l.st.streams_done, STORM_STREAMS);
	assert_int_equal(failures, 0);
	assert_true(s->max_draining <= 1);
	assert_true(s->max_old <= 1);
	assert_int_equal(s->moves_failed, 0);
	assert_int_equal(env_log_count(e, "reload ok"), STORM_RELOADS);
	assert_int_equal(env_log_count(e, "reload failed"), 0);
	assert_false(env_log_has(e, "did not stop in time"));
	assert_false(env_log_has(e, "shutdown_timeout reached"));
	assert_int_equal(handed_over_clean(e, STORM_RELOADS), STORM_RELOADS);
	free(s);
}

/*
 * A handover caught in the middle, by construction rather than by luck (a
 * move of 600 connections takes a few milliseconds). Before the HUP one
 * old worker, the late sender, is stopped; the other moves all it has.
 * Then one receiver (kill_receiver) or both (kill_sender) are stopped, and
 * the late sender is let go: its batches to a stopped receiver stay
 * unacknowledged. Receiver case: the stopped receiver, holding the
 * connections it took and acknowledged, is killed. Sender case: the late
 * sender, its batches sent and unacknowledged, is stopped and killed, and
 * the receivers are let go. The victim's descriptor table, read while it
 * is stopped, is the exact set of connections that may break.
 */
#define LATE_SEND_MS	100

static void
sig_or_fail(pid_t pid, int sig)
{
	if (kill(pid, sig) == -1)
		fail_msg("kill(%d, %d): %s", (int)pid, sig, strerror(errno));
}

/* Steps the load until generation 2 counts `want` moved in. */
static void
load_until_moved_in(struct env *e, struct load *l, uint64_t want,
    struct em_status *st)
{
	int64_t deadline = now_ms() + EM_DEADLINE_MS;

	for (;;) {
		load_step(l, 5);
		status_or_fail(e, st);
		if (st->generation == 2 && gen_moved_in(st, 2) >= want)
			return;
		if (now_ms() >= deadline) {
			env_dump_log(e);
			fail_msg("generation 2 moved in %llu, want %llu",
			    (unsigned long long)gen_moved_in(st, 2),
			    (unsigned long long)want);
		}
	}
}

static void
kill_mid_move(struct env *e, bool receiver)
{
	static int ports[KILL_STREAMS * 2];
	pid_t late = 0, recv[2] = { 0, 0 }, victim;
	uint64_t early_held = 0, late_held = 0;
	struct em_conf c;
	char extra[512];
	struct em_status st;
	struct load l;
	size_t held, doomed, nrecv = 0;
	int port = port_pick();

	conf_handover(e, &c, extra, sizeof(extra), 2, port);
	env_write_conf(e, &c);
	env_start_ready(e, 2, port);
	load_start(&l, port, 0, KILL_STREAMS, 0, receiver ? 0xdead : 0xbeef);
	load_until_active(e, &l, KILL_STREAMS);
	load_run_for(&l, 300);
	status_or_fail(e, &st);
	assert_int_equal(st.n, 2);
	late = st.w[0].pid;
	late_held = st.w[0].active;
	early_held = st.w[1].active;
	assert_true(late_held > 0 && early_held > 0);
	sig_or_fail(late, SIGSTOP);
	env_signal(e, SIGHUP);
	/* The early sender's connections are all moved and acknowledged. */
	load_until_moved_in(e, &l, early_held, &st);
	for (size_t i = 0; i < st.n; i++)
		if (st.w[i].generation == 2 && nrecv < 2 &&
		    (receiver ? st.w[i].moved_in > 0 : true))
			recv[nrecv++] = st.w[i].pid;
	assert_true(nrecv > 0);
	victim = receiver ? recv[0] : late;
	if (receiver) {
		sig_or_fail(recv[0], SIGSTOP);
	} else {
		for (size_t i = 0; i < nrecv; i++)
			sig_or_fail(recv[i], SIGSTOP);
	}
	sig_or_fail(late, SIGCONT);
	/* The late sender sends its batches; the stopped cannot answer. */
	load_run_for(&l, LATE_SEND_MS);
	if (!receiver)
		sig_or_fail(late, SIGSTOP);
	/* A stopped victim's table is final: read it, then kill. */
	held = fault_held_client_ports(victim, port, ports,
	    sizeof(ports) / sizeof(*ports));
	doomed = load_doom_ports(&l, ports, held);
	sig_or_fail(victim, SIGKILL);
	if (!receiver)
		for (size_t i = 0; i < nrecv; i++)
			sig_or_fail(recv[i], SIGCONT);
	print_message("%s %d killed mid-move holding %zu connections (%zu "
	    "doomed streams); the early sender had moved %llu, the late one "
	    "held %llu\n", receiver ? "receiver" : "late sender", (int)victim,
	    held, doomed, (unsigned long long)early_held,
	    (unsigned long long)late_held);
	/* Mid-move: the victim held some, and not all. */
	assert_true(held > 0);
	assert_true(held < KILL_STREAMS);
	assert_true(doomed <= held);
	/* The others go on, then end to their last byte (long before a
	 * drain of what was taken back could reach shutdown_timeout). */
	load_run_for(&l, 2000);
	env_wait_serving(e, 2, 2, EM_DEADLINE_MS);
	load_run_for(&l, 1000);
	load_finish(&l, EM_DEADLINE_MS);
	load_print(&l, receiver ? "receiver killed" : "sender killed");
	{
		char *line = env_log_line(e, "handover to worker");

		if (line != NULL)
			print_message("%s\n", line);
		free(line);
	}
	load_expect_clean(&l);
	assert_true(l.st.doomed_lost <= held);
	/* A stream that broke is replaced by a new one, which ends too. */
	assert_true(l.st.streams_done + l.st.doomed_lost >= KILL_STREAMS);
	assert_true(l.st.streams_done >= KILL_STREAMS - held);
	tcp_roundtrip(port, "after\n", 6, "AFTER\n");
}

/* Steps both loads until the status shows what cond asks for; fails after the deadline. */
static void
mixed_until(struct env *e, struct load *l, struct load *tl, struct em_status *st,
    bool (*cond)(const struct em_status *), const char *what)
{
	int64_t deadline = now_ms() + EM_DEADLINE_MS;

	for (;;) {
		load_step(l, 5);
		load_step(tl, 5);
		status_or_fail(e, st);
		if (cond(st))
			return;
		if (now_ms() >= deadline) {
			env_dump_log(e);
			fail_msg("%s: not within %d ms", what, EM_DEADLINE_MS);
		}
	}
}

static bool
all_open(const struct em_status *st)
{
	return gen_active(st, 1) == MIXED_PLAIN + MIXED_TLS;
}

static bool
plain_moved(const struct em_status *st)
{
	return st->generation == 2 && gen_moved_in(st, 2) == MIXED_PLAIN;
}

static bool
old_gone(const struct em_status *st)
{
	return oldest_gen(st) == 2;
}

static void
test_tls_streams_stay_while_plain_ones_move(void **state)
{
	struct env *e = *state;
	struct em_conf c;
	struct em_status st;
	struct load l, tl;
	char extra[512];
	uint64_t tls_bytes;
	int64_t t_end;
	int ports[2];

	ports_pick(ports, 2);
	conf_handover(e, &c, extra, sizeof(extra), 2, ports[0]);
	conf_listen(&c, "tcp", ports[1], "upper");
	fault_write_conf_tls(e, &c, "", ports[1]);
	env_start_ready(e, 2, ports[0]);
	load_start(&l, ports[0], 0, MIXED_PLAIN, 0, 0x9a1a);
	load_start_tls(&tl, ports[1], 0, MIXED_TLS, 0, 0x7157);
	mixed_until(e, &l, &tl, &st, all_open, "every stream open");
	env_signal(e, SIGHUP);
	mixed_until(e, &l, &tl, &st, plain_moved, "the plain streams moved");
	/* The TLS streams stay behind, served on by generation 1. */
	tls_bytes = tl.st.stream_bytes;
	for (int64_t end = now_ms() + MIXED_AFTER_MS; now_ms() < end;) {
		load_step(&l, 5);
		load_step(&tl, 5);
	}
	status_or_fail(e, &st);
	print_message("after the handover: generation 1 holds %llu connections, generation 2 "
	    "%llu (%llu moved in); %llu TLS stream bytes verified meanwhile\n",
	    (unsigned long long)gen_active(&st, 1), (unsigned long long)gen_active(&st, 2),
	    (unsigned long long)gen_moved_in(&st, 2),
	    (unsigned long long)(tl.st.stream_bytes - tls_bytes));
	assert_int_equal(gen_active(&st, 1), MIXED_TLS);
	assert_true(tl.st.stream_bytes > tls_bytes);
	assert_int_equal(all_moves_failed(&st), 0);
	/* The TLS streams end (close_notify both ways); their workers go with the last. */
	load_finish(&tl, EM_DEADLINE_MS);
	t_end = now_ms();
	mixed_until(e, &l, &tl, &st, old_gone, "generation 1 gone");
	print_message("generation 1 gone %lld ms after its last TLS stream ended\n",
	    (long long)(now_ms() - t_end));
	load_finish(&l, EM_DEADLINE_MS);
	load_print(&l, "plain, handed over");
	load_print(&tl, "TLS, drained in place");
	load_expect_clean(&l);
	load_expect_clean(&tl);
	assert_int_equal(l.st.streams_done, MIXED_PLAIN);
	assert_int_equal(tl.st.streams_done, MIXED_TLS);
	assert_false(env_log_has(e, "shutdown_timeout reached"));
	assert_false(env_log_has(e, "did not stop in time"));
	{
		char *line = env_log_line(e, "generation 1 handed over ");

		assert_non_null(line);
		print_message("%s\n", strstr(line, "generation 1 handed over "));
		free(line);
	}
}

static void
test_kill_receiver_mid_move(void **state)
{
	kill_mid_move(*state, true);
}

static void
test_kill_sender_mid_move(void **state)
{
	kill_mid_move(*state, false);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_handover_storm_1000_streams,
		    env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(test_kill_receiver_mid_move,
		    env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(test_kill_sender_mid_move,
		    env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(
		    test_tls_streams_stay_while_plain_ones_move, env_setup,
		    env_teardown),
	};

	return cmocka_run_group_tests_name("handover storm", tests, NULL, NULL);
}
