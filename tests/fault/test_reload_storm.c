/*
 * test_reload_storm.c: 50 SIGHUPs in 10 s, alternating between a 2-worker
 * and a 3-worker config, under connect-echo-close load and streams that
 * each live STREAM_MS, plain and over TLS (a TLS connection is never
 * handed over: it drains in its worker). Nothing a client sees may go
 * wrong: no refused connect, no failed handshake, no broken connection, no
 * wrong or missing byte, no TLS stream without its close_notify. Afterwards the
 * master has the last config's worker count, no zombie child and the same
 * number of descriptors as before, and every old worker was gone within
 * shutdown_timeout of starting to drain.
 *
 * max_draining_generations is raised for this test: a HUP every 200 ms
 * with 1.5 s streams keeps about 8 generations draining at once, and past
 * the bound the daemon cuts the oldest drains short on purpose (its own
 * documented promise, not this one).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "fault.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HUPS		50
#define STORM_MS	10000
#define SHUTDOWN_S	5
#define STREAM_MS	1500
#define SHORT_CLIENTS	16
#define STREAMS		4
#define TLS_SHORT	4
#define TLS_STREAMS	4
#define SCAN_EVERY_MS	100
#define MAX_TRACKED	1024
#define SETTLE_MS	(EM_DEADLINE_MS + SHUTDOWN_S * 1000)

/* Old workers: when each was first seen draining, when it was gone. */
struct drains {
	pid_t		 pid[MAX_TRACKED];
	unsigned long long start[MAX_TRACKED];
	int64_t		 seen[MAX_TRACKED];
	int64_t		 gone[MAX_TRACKED];
	size_t		 n;
};

static void
drains_scan(struct drains *d, pid_t master)
{
	pid_t now_draining[EM_MAX_WORKERS * 4];
	size_t n, i, j;
	int64_t now = now_ms();

	n = proc_children(master, EM_TITLE_DRAINING, now_draining,
	    EM_MAX_WORKERS * 4);
	for (i = 0; i < n && i < EM_MAX_WORKERS * 4; i++) {
		for (j = 0; j < d->n && d->pid[j] != now_draining[i]; j++)
			;
		if (j < d->n || d->n == MAX_TRACKED)
			continue;
		d->pid[d->n] = now_draining[i];
		d->start[d->n] = proc_start_time(now_draining[i]);
		d->seen[d->n] = now;
		d->gone[d->n++] = 0;
	}
	for (j = 0; j < d->n; j++)
		if (d->gone[j] == 0 && !proc_alive(d->pid[j], d->start[j]))
			d->gone[j] = now;
}

static bool
drains_over(const struct drains *d)
{
	for (size_t j = 0; j < d->n; j++)
		if (d->gone[j] == 0)
			return false;
	return true;
}

static int64_t
drains_longest(const struct drains *d)
{
	int64_t longest = 0;

	for (size_t j = 0; j < d->n; j++)
		if (d->gone[j] - d->seen[j] > longest)
			longest = d->gone[j] - d->seen[j];
	return longest;
}

/* Drains are this test's subject: reload_handover = false keeps them (the
 * handover under a storm is test_handover_storm.c's). */
static const char EXTRA[] = "max_draining_generations = 16;\n"
    "reload_handover = false;\n";

static void
settle(struct env *e, struct drains *d, size_t workers)
{
	int64_t deadline = now_ms() + SETTLE_MS;
	size_t begun, done;

	for (;;) {
		drains_scan(d, e->master);
		begun = env_log_count(e, "reloading configuration");
		done = env_log_count(e, "reload ok") +
		    env_log_count(e, "reload failed");
		if (begun == done && drains_over(d) &&
		    fault_children(e->master, NULL, 0) == workers &&
		    fault_zombies(e->master) == 0)
			return;
		if (now_ms() >= deadline) {
			env_dump_log(e);
			fail_msg("no settling after the storm: %zu reloads begun, "
			    "%zu done, %zu children, %zu zombies", begun, done,
			    fault_children(e->master, NULL, 0),
			    fault_zombies(e->master));
		}
		nap_ms(SCAN_EVERY_MS);
	}
}

/* Both loads, a plain and a TLS one, for ms. */
static void
loads_run_for(struct load *l, struct load *tl, int ms)
{
	int64_t end = now_ms() + ms;

	while (now_ms() < end) {
		load_step(l, 5);
		load_step(tl, 5);
	}
}

static void
tls_after(int port)
{
	struct tls_opts o = { 0 };
	struct tls_client cl;

	assert_int_equal(tls_connect(&cl, port, &o, EM_DEADLINE_MS), 1);
	tls_roundtrip(&cl, "after the storm\n", "AFTER THE STORM\n");
	tls_close(&cl);
}

static void
test_reload_storm_under_load(void **state)
{
	struct env *e = *state;
	struct em_conf a, b;
	struct drains *d = calloc(1, sizeof(*d));
	struct load l, tl;
	int64_t t0, next_hup, next_scan;
	int fds_before, fds_after, hups = 0, ports[2], port, tport;
	size_t started, finished;

	assert_non_null(d);
	ports_pick(ports, 2);
	port = ports[0];
	tport = ports[1];
	conf_init(&a, 2);
	conf_init(&b, 3);
	a.shutdown_timeout = b.shutdown_timeout = SHUTDOWN_S;
	conf_listen_pair(&a, port, "upper");
	conf_listen_pair(&b, port, "upper");
	conf_listen(&a, "tcp", tport, "upper");
	conf_listen(&b, "tcp", tport, "upper");
	fault_write_conf_tls(e, &a, EXTRA, tport);
	env_start_ready(e, 2, port);
	env_wait_workers(e, 2, NULL, EM_DEADLINE_MS);
	fds_before = fault_fd_count(e->master);
	load_start(&l, port, SHORT_CLIENTS, STREAMS, STREAM_MS, 0x5eed);
	load_start_tls(&tl, tport, TLS_SHORT, TLS_STREAMS, STREAM_MS, 0x7157);
	loads_run_for(&l, &tl, 500);
	t0 = now_ms();
	next_hup = next_scan = t0;
	while (hups < HUPS) {
		load_step(&l, 5);
		load_step(&tl, 0);
		if (now_ms() >= next_scan) {
			drains_scan(d, e->master);
			next_scan += SCAN_EVERY_MS;
		}
		if (now_ms() < next_hup)
			continue;
		/* Odd HUPs ask for 3 workers, even ones for 2: the last is 2. */
		fault_write_conf_tls(e, hups % 2 == 0 ? &b : &a, EXTRA, tport);
		env_signal(e, SIGHUP);
		hups++;
		next_hup = t0 + (int64_t)hups * STORM_MS / HUPS;
	}
	print_message("%d HUPs in %lld ms\n", hups, (long long)(now_ms() - t0));
	/* Keep the load up while the last reloads and drains finish. */
	loads_run_for(&l, &tl, STREAM_MS);
	load_finish(&l, EM_DEADLINE_MS);
	load_finish(&tl, EM_DEADLINE_MS);
	load_print(&l, "reload storm");
	load_print(&tl, "reload storm");
	settle(e, d, 2);
	env_wait_workers(e, 2, NULL, EM_DEADLINE_MS);
	fds_after = fault_fd_count(e->master);
	started = env_log_count(e, " started (slot ");
	finished = env_log_count(e, " finished");
	print_message("reloads begun %zu, ok %zu, failed %zu; workers started "
	    "%zu, old ones that finished their drain %zu; drains long enough "
	    "to be seen %zu, longest %lld ms (shutdown_timeout %d s); master "
	    "fds before %d, after %d\n",
	    env_log_count(e, "reloading configuration"),
	    env_log_count(e, "reload ok"),
	    env_log_count(e, "reload failed"), started, finished, d->n,
	    (long long)drains_longest(d), SHUTDOWN_S, fds_before, fds_after);
	load_expect_clean(&l);
	load_expect_clean(&tl);
	/* The TLS streams went on through the storm, each to its close_notify. */
	assert_true(tl.st.streams_done >= TLS_STREAMS);
	assert_true(tl.st.served > 0);
	assert_int_equal(env_log_count(e, "reload failed"), 0);
	assert_true(env_log_count(e, "reload ok") > 0);
	/* Every old worker ended its drain by itself, none was killed. */
	assert_int_equal(finished, started - 2);
	assert_false(env_log_has(e, "did not stop in time"));
	assert_false(env_log_has(e, "generations draining"));
	assert_true(d->n > 0);
	/* The scan runs every 100 ms: a drain is seen up to that late. */
	assert_true(drains_longest(d) <= SHUTDOWN_S * 1000 + SCAN_EVERY_MS * 3);
	assert_int_equal(fds_after, fds_before);
	assert_int_equal(fault_zombies(e->master), 0);
	tcp_roundtrip(port, "after the storm\n", 16, "AFTER THE STORM\n");
	tls_after(tport);
	free(d);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_reload_storm_under_load,
		    env_setup, env_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
