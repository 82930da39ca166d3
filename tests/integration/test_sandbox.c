/*
 * test_sandbox.c: sandbox = true (the default) confines every worker, as
 * the kernel reports it in /proc/PID/status and the status command shows
 * it; sandbox = false does not, and says so. A worker of the test-hooks
 * build that tries what a taken-over worker would (open a file, execute a
 * program, make a socket to connect elsewhere) is killed, the log names the
 * sandbox and the call, its slot is respawned sandboxed, and the other
 * worker's clients carry on.
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
#include <unistd.h>

#define STREAMS      24
#define STREAM_BYTES (64u * 1024)

static void
write_conf(struct env *e, int workers, int port, const char *extra)
{
	char *text;

	if (asprintf(&text,
	    "workers = %d;\ncontrol_socket = \"%s\";\npid_file = \"\";\n%s\n"
	    "log = { level = \"info\"; stderr = true; };\n"
	    "listen = ( { proto = \"tcp\"; address = \"127.0.0.1\"; port = %d; mode = \"upper\"; },\n"
	    "           { proto = \"udp\"; address = \"127.0.0.1\"; port = %d; mode = \"upper\"; } );\n",
	    workers, env_control_socket(e), extra, port, port) == -1)
		fail_msg("asprintf");
	env_write_conf_text(e, text);
	free(text);
}

/* The value of FIELD ("Seccomp", "NoNewPrivs") in /proc/PID/status; fails the test. */
static int
proc_status_field(pid_t pid, const char *field)
{
	char path[64], *text, *p;
	size_t flen = strlen(field);
	int v = -1;

	snprintf(path, sizeof(path), "/proc/%ld/status", (long)pid);
	if ((text = file_read(path, NULL)) == NULL)
		fail_msg("%s: %s", path, strerror(errno));
	for (p = text; p != NULL; p = strchr(p, '\n') != NULL ? strchr(p, '\n') + 1 : NULL)
		if (strncmp(p, field, flen) == 0 && p[flen] == ':')
			break;
	if (p == NULL || sscanf(p + flen + 1, "%d", &v) != 1)
		fail_msg("no %s in %s", field, path);
	free(text);
	return v;
}

/* Both protocols still answer, upper-cased. */
static void
expect_echo(int port)
{
	char reply[16];
	ssize_t n;

	tcp_roundtrip(port, "sandboxed\n", 10, "SANDBOXED\n");
	n = udp_exchange(port, "dgram", 5, reply, sizeof(reply), EM_DEADLINE_MS);
	assert_int_equal(n, 5);
	assert_memory_equal(reply, "DGRAM", 5);
}

/*
 * Whether this build confines at all: a sanitizer build (make check
 * SANITIZE=1) leaves the sandbox off by design, and says so at start.
 */
static bool
build_confines(struct env *e)
{
	return !env_log_has(e, "sandbox off: this build has the address and undefined-behaviour "
	    "sanitizers");
}

/* Every serving worker has (or has not) its sandbox, by the kernel and by the status. */
static void
expect_workers_confined(struct env *e, int workers, bool confined)
{
	struct em_status st;

	env_status(e, &st, EM_DEADLINE_MS);
	assert_int_equal(status_count_gen(&st, st.generation), workers);
	for (size_t i = 0; i < st.n; i++) {
		/* A draining worker of the previous generation may be gone by now. */
		if (st.w[i].generation != st.generation)
			continue;
		assert_int_equal(proc_status_field(st.w[i].pid, "Seccomp"), confined ? 2 : 0);
		assert_int_equal(proc_status_field(st.w[i].pid, "NoNewPrivs"), confined ? 1 : 0);
		assert_int_equal(st.w[i].sandboxed, confined);
	}
}

static void
test_workers_are_sandboxed_by_default(void **state)
{
	struct env *e = *state;
	int port = port_pick();

	bool on;

	write_conf(e, 2, port, "");
	env_start_ready(e, 2, port);
	env_wait_serving(e, 1, 2, EM_DEADLINE_MS);
	on = build_confines(e);
	expect_workers_confined(e, 2, on);
	assert_int_equal(proc_status_field(e->master, "NoNewPrivs"), on ? 1 : 0);
	assert_true(env_log_has(e, on ? "sandbox on: no_new_privs" : "sandbox off: this build"));
	expect_echo(port);
	/* A reload's new workers are confined too, and still serve. */
	env_signal(e, SIGHUP);
	env_wait_serving(e, 2, 2, EM_DEADLINE_MS);
	expect_workers_confined(e, 2, on);
	expect_echo(port);
}

static void
test_sandbox_false_is_unconfined_and_says_so(void **state)
{
	struct env *e = *state;
	int port = port_pick();

	write_conf(e, 2, port, "sandbox = false;");
	env_start_ready(e, 2, port);
	env_wait_serving(e, 1, 2, EM_DEADLINE_MS);
	expect_workers_confined(e, 2, false);
	assert_true(env_log_has(e, "sandbox = false: workers run unconfined"));
	expect_echo(port);
}

/*
 * A sandboxed worker's first log line must not kill it: at level warning
 * the master logs nothing before the fork, and syslog's first time stamp
 * loads the time zone. Out of descriptors, the worker warns ("accept: Too
 * many open files") and must live on.
 */
static void
test_a_worker_that_logs_first_lives(void **state)
{
	struct env *e = *state;
	int port = port_pick(), fds[48];
	pid_t before[1], after[1];
	char *text;

	if (asprintf(&text,
	    "workers = 1;\ncontrol_socket = \"%s\";\npid_file = \"\";\n"
	    "log = { level = \"warning\"; stderr = true; };\n"
	    "listen = ( { proto = \"tcp\"; address = \"127.0.0.1\"; port = %d; mode = \"upper\"; } );\n",
	    env_control_socket(e), port) == -1)
		fail_msg("asprintf");
	env_write_conf_text(e, text);
	free(text);
	e->nofile = 32;
	env_start_ready(e, 1, port);
	env_wait_workers(e, 1, before, EM_DEADLINE_MS);
	for (size_t i = 0; i < 48; i++)
		fds[i] = tcp_connect(port, EM_DEADLINE_MS);
	env_wait_log(e, "accept: Too many open files", EM_DEADLINE_MS);
	for (size_t i = 0; i < 48; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	tcp_roundtrip(port, "still here\n", 11, "STILL HERE\n");
	env_wait_workers(e, 1, after, EM_DEADLINE_MS);
	assert_int_equal(after[0], before[0]);
	assert_false(env_log_has(e, "killed by its sandbox"));
}

struct violation {
	const char *call;     /* EM_TEST_SANDBOX_CALL */
	const char *logged;   /* the system call the master names */
};

static const struct violation open_file = { "open", "openat" };
static const struct violation run_program = { "execve", "execve" };
static const struct violation connect_out = { "socket", "socket" };

/* Starts the test-hooks build, whose workers attempt v->call on SIGUSR2. */
static void
start_hooks_build(struct env *e, int port, const struct violation *v)
{
	const char *hooks = getenv("ECHOMASTER_TESTHOOKS");
	char *saved = getenv("ECHOMASTER") != NULL ? strdup(getenv("ECHOMASTER")) : NULL;

	if (hooks == NULL || access(hooks, X_OK) != 0)
		fail_msg("ECHOMASTER_TESTHOOKS must name the test-hooks build (make check sets it)");
	write_conf(e, 2, port, "");
	setenv("ECHOMASTER", hooks, 1);
	setenv("EM_TEST_SANDBOX_CALL", v->call, 1);
	env_start_ready(e, 2, port);
	unsetenv("EM_TEST_SANDBOX_CALL");
	if (saved != NULL)
		setenv("ECHOMASTER", saved, 1);
	else
		unsetenv("ECHOMASTER");
	free(saved);
}

/*
 * Pumps one stream to its end: true when every byte came back before the
 * server's EOF, false when it was cut (an early EOF or an error).
 */
static bool
stream_finish(struct em_stream *s)
{
	int64_t deadline = now_ms() + EM_DEADLINE_MS;

	while (!s->eof) {
		if (now_ms() > deadline)
			fail_msg("a stream neither finished nor was cut in %d ms", EM_DEADLINE_MS);
		if (streams_step(s, 1, s->len, true, 100) == -1)
			return false;
	}
	return s->rcvd == s->len;
}

/* The serving worker holding the most connections, and how many both hold. */
static const struct em_status_worker *
busiest(const struct em_status *st, uint64_t *total)
{
	const struct em_status_worker *w = NULL;

	*total = 0;
	for (size_t i = 0; i < st->n; i++) {
		*total += st->w[i].active;
		if (w == NULL || st->w[i].active > w->active)
			w = &st->w[i];
	}
	return w;
}

static void
test_a_forbidden_call_kills_only_that_worker(void **state)
{
	struct env *e = *state;
	const struct violation *v = e->arg;
	struct em_stream s[STREAMS];
	struct em_status st;
	const struct em_status_worker *victim = NULL;
	uint64_t total = 0, victim_held;
	pid_t victim_pid;
	size_t done = 0, cut = 0;
	char needle[160];
	int port = port_pick();
	int64_t deadline = now_ms() + EM_DEADLINE_MS;

	start_hooks_build(e, port, v);
	env_wait_serving(e, 1, 2, EM_DEADLINE_MS);
	e->crashes_expected = true;
	for (size_t i = 0; i < STREAMS; i++)
		stream_open(&s[i], port, STREAM_BYTES, (uint32_t)i + 7);
	if (streams_pump(s, STREAMS, STREAM_BYTES / 4, false, EM_DEADLINE_MS) == -1)
		fail_msg("streams before the violation: %s", strerror(errno));
	for (;;) {  /* until every stream is counted by a worker */
		env_status(e, &st, EM_DEADLINE_MS);
		victim = busiest(&st, &total);
		if (total == STREAMS || now_ms() > deadline)
			break;
		nap_ms(EM_POLL_NAP_MS);
	}
	assert_int_equal(total, STREAMS);
	assert_non_null(victim);
	victim_pid = victim->pid;
	victim_held = victim->active;
	assert_int_equal(kill(victim_pid, SIGUSR2), 0);
	if (!build_confines(e)) {
		/* Unconfined by design: the call goes through, the worker says so and serves on. */
		env_wait_log(e, "was not stopped by the sandbox", EM_DEADLINE_MS);
		for (size_t i = 0; i < STREAMS; i++) {
			assert_true(stream_finish(&s[i]));
			stream_close(&s[i]);
		}
		assert_int_equal(kill(victim_pid, 0), 0);
		return;
	}
	snprintf(needle, sizeof(needle), "worker %ld was killed by its sandbox: a forbidden system "
	    "call, %s (", (long)victim_pid, v->logged);
	env_wait_log(e, needle, EM_DEADLINE_MS);
	assert_false(env_log_has(e, "was not stopped by the sandbox"));
	/* The slot comes back, sandboxed; the other worker never stopped. */
	env_wait_serving(e, 1, 2, EM_DEADLINE_MS);
	env_status(e, &st, EM_DEADLINE_MS);
	assert_null(status_worker(&st, victim_pid));
	expect_workers_confined(e, 2, true);
	for (size_t i = 0; i < STREAMS; i++) {
		if (stream_finish(&s[i])) {
			bytes_expect_upper(s[i].in, s[i].out, STREAM_BYTES, "a surviving stream");
			done++;
		} else {
			cut++;
		}
		stream_close(&s[i]);
	}
	printf("%s: worker %ld held %llu of %d streams; %zu finished, %zu cut\n", v->call,
	    (long)victim_pid, (unsigned long long)victim_held, STREAMS, done, cut);
	assert_int_equal(cut, victim_held);
	assert_int_equal(done, STREAMS - victim_held);
	expect_echo(port);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_workers_are_sandboxed_by_default, env_setup,
		    env_teardown),
		cmocka_unit_test_setup_teardown(test_sandbox_false_is_unconfined_and_says_so,
		    env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(test_a_worker_that_logs_first_lives, env_setup,
		    env_teardown),
		cmocka_unit_test_prestate_setup_teardown(test_a_forbidden_call_kills_only_that_worker,
		    env_setup, env_teardown, (void *)&open_file),
		cmocka_unit_test_prestate_setup_teardown(test_a_forbidden_call_kills_only_that_worker,
		    env_setup, env_teardown, (void *)&run_program),
		cmocka_unit_test_prestate_setup_teardown(test_a_forbidden_call_kills_only_that_worker,
		    env_setup, env_teardown, (void *)&connect_out),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
