/*
 * test_supervision.c: the master keeps its workers alive, takes them down
 * with it, and shuts down as the signals say (TERM/INT fast, QUIT graceful).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "harness.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* The promise for a killed master: no worker outlives it by more. */
#define ORPHAN_GRACE_MS	2000
/* "exit 0 within a second"; the slack is for a loaded machine. */
#define FAST_EXIT_MS	3000
#define RESPAWN_KILLS	5

static const char MSG[] = "still serving? yes\n";
static const char MSG_UP[] = "STILL SERVING? YES\n";

/* workers 0 means "auto", which should be the online CPUs. */
static int
start_workers(struct env *e, int workers, int shutdown_timeout)
{
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	struct em_conf c;
	int port = port_pick();

	conf_init(&c, workers);
	if (shutdown_timeout > 0)
		c.shutdown_timeout = shutdown_timeout;
	conf_listen_pair(&c, port, "upper");
	env_write_conf(e, &c);
	env_start_ready(e, workers > 0 ? workers : (int)cpus, port);
	return port;
}

static void
expect_serving(int port)
{
	char reply[64];
	ssize_t n;

	tcp_roundtrip(port, MSG, strlen(MSG), MSG_UP);
	n = udp_exchange(port, MSG, strlen(MSG), reply, sizeof(reply),
	    EM_DEADLINE_MS);
	assert_int_equal(n, strlen(MSG));
	assert_memory_equal(reply, MSG_UP, strlen(MSG));
}

static void
wait_dead(pid_t pid, unsigned long long start, int timeout_ms)
{
	int64_t deadline = now_ms() + timeout_ms;

	while (proc_alive(pid, start)) {
		if (now_ms() >= deadline)
			fail_msg("process %d still alive after %d ms", (int)pid,
			    timeout_ms);
		nap_ms(10);
	}
}

static void
expect_exit_zero(struct env *e, int status)
{
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		env_dump_log(e);
		fail_msg("master ended with wait status %#x, want exit 0",
		    status);
	}
}

/* Kills pids[victim] and waits until the master has n workers again;
 * returns the new worker's pid. */
static pid_t
kill_and_await_respawn(struct env *e, pid_t *pids, size_t n, size_t victim)
{
	unsigned long long start = proc_start_time(pids[victim]);
	pid_t after[EM_MAX_WORKERS], dead = pids[victim];
	size_t i;

	assert_int_equal(kill(dead, SIGKILL), 0);
	wait_dead(dead, start, EM_DEADLINE_MS);
	env_wait_workers(e, n, after, EM_DEADLINE_MS);
	assert_false(pids_contain(after, n, dead));
	for (i = 0; i < n; i++)
		if (!pids_contain(pids, n, after[i]))
			break;
	assert_true(i < n);
	memcpy(pids, after, n * sizeof(*pids));
	return after[i];
}

static void
test_worker_sigkill_respawned(void **state)
{
	struct env *e = *state;
	pid_t before[3], pids[3];
	char line[96];
	int port = start_workers(e, 3, 0);

	env_wait_workers(e, 3, before, EM_DEADLINE_MS);
	memcpy(pids, before, sizeof(pids));
	kill_and_await_respawn(e, pids, 3, 1);
	/* Only the victim was replaced. */
	assert_true(pids_contain(pids, 3, before[0]));
	assert_true(pids_contain(pids, 3, before[2]));
	snprintf(line, sizeof(line), "worker %d killed by signal 9",
	    (int)before[1]);
	env_wait_log(e, line, EM_DEADLINE_MS);
	expect_serving(port);
	/* Every worker answers: more connections than workers, spread by
	 * the kernel. */
	for (int i = 0; i < 12; i++)
		tcp_roundtrip(port, MSG, strlen(MSG), MSG_UP);
}

/* A worker that keeps dying is respawned with a delay, logged, and the
 * master still restores the full count. */
static void
test_worker_crash_loop_throttled(void **state)
{
	struct env *e = *state;
	pid_t pids[2];
	int i, port = start_workers(e, 2, 0);

	env_wait_workers(e, 2, pids, EM_DEADLINE_MS);
	for (i = 0; i < RESPAWN_KILLS; i++)
		kill_and_await_respawn(e, pids, 2, 0);
	env_wait_log(e, "respawning worker slot", EM_DEADLINE_MS);
	env_wait_workers(e, 2, pids, EM_DEADLINE_MS);
	expect_serving(port);
}

static void
test_master_sigkill_leaves_no_worker(void **state)
{
	struct env *e = *state;
	unsigned long long start[3];
	pid_t pids[3];
	int64_t t0;
	size_t i;
	int port = start_workers(e, 3, 0);

	env_wait_workers(e, 3, pids, EM_DEADLINE_MS);
	for (i = 0; i < 3; i++)
		start[i] = proc_start_time(pids[i]);
	t0 = now_ms();
	env_signal(e, SIGKILL);
	env_wait_exit(e, EM_DEADLINE_MS);
	for (i = 0; i < 3; i++) {
		int left = (int)(ORPHAN_GRACE_MS - (now_ms() - t0));

		wait_dead(pids[i], start[i], left > 0 ? left : 0);
	}
	/* Nobody holds the listening socket any more. */
	tcp_wait_refused(port, EM_DEADLINE_MS);
}

static void
wait_pid_file(struct env *e)
{
	int64_t deadline = now_ms() + EM_DEADLINE_MS;
	char *text;
	long pid;

	for (;;) {
		text = file_read(e->pid_path, NULL);
		pid = text != NULL ? strtol(text, NULL, 10) : 0;
		free(text);
		if (pid == e->master)
			return;
		if (now_ms() >= deadline)
			fail_msg("pid file %s holds %ld, want master %d",
			    e->pid_path, pid, (int)e->master);
		nap_ms(20);
	}
}

static void
fast_shutdown(struct env *e, int sig)
{
	unsigned long long start[2];
	pid_t pids[2];
	int64_t t0;
	int status;

	start_workers(e, 2, 60);
	env_wait_workers(e, 2, pids, EM_DEADLINE_MS);
	start[0] = proc_start_time(pids[0]);
	start[1] = proc_start_time(pids[1]);
	wait_pid_file(e);
	t0 = now_ms();
	env_signal(e, sig);
	status = env_wait_exit(e, EM_DEADLINE_MS);
	print_message("signal %d: master exited after %lld ms\n", sig,
	    (long long)(now_ms() - t0));
	expect_exit_zero(e, status);
	if (now_ms() - t0 > FAST_EXIT_MS)
		fail_msg("fast shutdown took %lld ms (shutdown_timeout is 60)",
		    (long long)(now_ms() - t0));
	if (access(e->pid_path, F_OK) == 0)
		fail_msg("pid file %s still exists after exit", e->pid_path);
	wait_dead(pids[0], start[0], ORPHAN_GRACE_MS);
	wait_dead(pids[1], start[1], ORPHAN_GRACE_MS);
	assert_true(env_log_has(e, "shutting down (fast)"));
}

static void
test_term_exits_zero_removes_pid_file(void **state)
{
	fast_shutdown(*state, SIGTERM);
}

static void
test_int_exits_zero_removes_pid_file(void **state)
{
	fast_shutdown(*state, SIGINT);
}

/* QUIT while a client is connected: the client keeps being served after
 * the signal, and the master exits 0 once that client leaves, long before
 * shutdown_timeout would force it. */
static void
test_quit_drains_connected_client(void **state)
{
	struct env *e = *state;
	const char *after = "asked after quit";
	char got[64];
	int fd, status, port = start_workers(e, 2, 60);
	int64_t t0;

	fd = tcp_open_echoed(port, MSG, strlen(MSG), NULL);
	env_signal(e, SIGQUIT);
	env_wait_log(e, "shutting down (graceful)", EM_DEADLINE_MS);
	assert_false(env_exited(e));
	assert_int_equal(tcp_send_all(fd, after, strlen(after),
	    EM_DEADLINE_MS), 0);
	assert_int_equal(tcp_read_exact(fd, got, strlen(after),
	    EM_DEADLINE_MS), strlen(after));
	assert_memory_equal(got, "ASKED AFTER QUIT", strlen(after));
	assert_false(env_exited(e));
	t0 = now_ms();
	close(fd);
	status = env_wait_exit(e, EM_DEADLINE_MS);
	print_message("QUIT: master exited %lld ms after the last client "
	    "closed\n", (long long)(now_ms() - t0));
	expect_exit_zero(e, status);
	assert_int_equal(access(e->pid_path, F_OK), -1);
}

/* QUIT with a client that never leaves: the drain lasts shutdown_timeout,
 * not less (the client is promised that long) and not much more; then the
 * client sees EOF and the master still exits 0. t0 is taken before the
 * signal is sent, so load can only make the measured time longer. */
#define DRAIN_S 2

static void
test_quit_drain_bounded_by_shutdown_timeout(void **state)
{
	struct env *e = *state;
	int fd, status, port = start_workers(e, 2, DRAIN_S);
	int64_t t0, closed;

	fd = tcp_open_echoed(port, MSG, strlen(MSG), NULL);
	/* Late in a second: a deadline rounded to whole seconds would end
	 * the drain up to a second early, and always does from here. */
	clock_align_ms(700);
	t0 = now_ms();
	env_signal(e, SIGQUIT);
	if (tcp_wait_eof(fd, EM_DEADLINE_MS) == -1)
		fail_msg("client not closed at shutdown_timeout: %s",
		    strerror(errno));
	closed = now_ms() - t0;
	status = env_wait_exit(e, EM_DEADLINE_MS);
	print_message("QUIT with a client that stays: closed after %lld ms, "
	    "exit after %lld ms (shutdown_timeout = %d)\n", (long long)closed,
	    (long long)(now_ms() - t0), DRAIN_S);
	expect_exit_zero(e, status);
	close(fd);
	if (closed < DRAIN_S * 1000 - 50)
		fail_msg("the draining client was cut after %lld ms, before "
		    "shutdown_timeout = %d s", (long long)closed, DRAIN_S);
}

static void
test_process_titles(void **state)
{
	struct env *e = *state;
	char title[2 * PATH_MAX + 64], want[2 * PATH_MAX + 64];

	start_workers(e, 2, 0);
	env_wait_workers(e, 2, NULL, EM_DEADLINE_MS);
	snprintf(want, sizeof(want), "%s%s -F -c %s", EM_TITLE_MASTER,
	    em_binary(), e->conf_path);
	assert_int_equal(proc_title(e->master, title, sizeof(title)), 0);
	assert_string_equal(title, want);
}

static void
test_workers_auto_is_online_cpus(void **state)
{
	struct env *e = *state;
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	pid_t pids[EM_MAX_WORKERS];

	assert_true(cpus >= 1 && cpus <= EM_MAX_WORKERS);
	start_workers(e, 0, 0);
	env_wait_workers(e, (size_t)cpus, pids, EM_DEADLINE_MS);
}

#define T(f) cmocka_unit_test_setup_teardown(f, env_setup, env_teardown)

int
main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_worker_sigkill_respawned),
		T(test_worker_crash_loop_throttled),
		T(test_master_sigkill_leaves_no_worker),
		T(test_term_exits_zero_removes_pid_file),
		T(test_int_exits_zero_removes_pid_file),
		T(test_quit_drains_connected_client),
		T(test_quit_drain_bounded_by_shutdown_timeout),
		T(test_process_titles),
		T(test_workers_auto_is_online_cpus),
	};

	return cmocka_run_group_tests_name("supervision", tests, NULL, NULL);
}
