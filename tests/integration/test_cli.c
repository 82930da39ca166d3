/*
 * test_cli.c: the command line. -t on good and bad files (each bad one
 * named by FILE:LINE), -T, -v, -h, usage errors, and -s against a running
 * master found through the pid file, also when the config is broken.
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

/* A bound, not a wait: -t on an unresolvable name may sit in DNS time-outs
 * where the resolver is unreachable. */
#define CMD_MS		(3 * EM_DEADLINE_MS)
#define MAX_EDITS	4

/*
 * The file every -t case starts from; cases replace whole lines so the
 * numbers below stay right. "PORT" becomes a free port (-t should not bind,
 * but if it did it must not collide).
 */
static const char *const BASE[] = {
	/* 1 */ "# echomaster -t case",
	/* 2 */ "workers = 2;",
	/* 3 */ "daemon = false;",
	/* 4 */ "pid_file = \"\";",
	/* 5 */ "shutdown_timeout = 10;",
	/* 6 */ "log = { facility = \"daemon\"; level = \"info\"; stderr = true; };",
	/* 7 */ "limits = { max_connections = 100; idle_timeout = 30; };",
	/* 8 */ "listen = (",
	/* 9 */ "  { proto = \"tcp\"; address = \"127.0.0.1\"; port = PORT; mode = \"upper\"; },",
	/* 10 */ "  { proto = \"udp\"; address = \"127.0.0.1\"; port = PORT; mode = \"upper\"; }",
	/* 11 */ ");",
};
#define BASE_LINES (sizeof(BASE) / sizeof(*BASE))

struct edit {
	int		 line;		/* 1-based line of BASE to replace */
	const char	*text;
};

struct conf_case {
	const char	*name;
	int		 line;		/* expected in "FILE:LINE:"; 0 = valid */
	struct edit	 edits[MAX_EDITS];
};

#define TCP_AT(rest) "  { proto = \"tcp\"; address = \"127.0.0.1\"; " rest " },"
#define UDP_AT(rest) "  { proto = \"udp\"; address = \"127.0.0.1\"; " rest " }"

/* Each must exit 1 with "FILE:LINE:" on stderr. */
static const struct conf_case BAD[] = {
	{ "unknown key", 3, { { 3, "colour = \"blue\";" } } },
	{ "unknown key in log", 6, { { 6, "log = { level = \"info\"; "
	    "colour = 1; };" } } },
	{ "unknown key in listener", 10, { { 10, UDP_AT("port = PORT; "
	    "mode = \"upper\"; colour = 1;") } } },
	{ "wrong type workers bool", 2, { { 2, "workers = true;" } } },
	{ "wrong type shutdown_timeout string", 5, { { 5,
	    "shutdown_timeout = \"ten\";" } } },
	{ "wrong type daemon string", 3, { { 3, "daemon = \"yes\";" } } },
	{ "wrong type port string", 9, { { 9, TCP_AT("port = \"PORT\"; "
	    "mode = \"upper\";") } } },
	{ "port 0", 9, { { 9, TCP_AT("port = 0; mode = \"upper\";") } } },
	{ "port 70000", 10, { { 10, UDP_AT("port = 70000; "
	    "mode = \"upper\";") } } },
	{ "workers 0", 2, { { 2, "workers = 0;" } } },
	{ "workers 1025", 2, { { 2, "workers = 1025;" } } },
	{ "workers unknown word", 2, { { 2, "workers = \"many\";" } } },
	{ "shutdown_timeout 3601", 5, { { 5, "shutdown_timeout = 3601;" } } },
	{ "max_connections 0", 7, { { 7, "limits = { max_connections = 0; "
	    "idle_timeout = 30; };" } } },
	{ "idle_timeout -1", 7, { { 7, "limits = { max_connections = 100; "
	    "idle_timeout = -1; };" } } },
	{ "unknown level", 6, { { 6, "log = { level = \"loud\"; };" } } },
	{ "unknown facility", 6, { { 6, "log = { facility = \"nosuch\"; };" } } },
	{ "unknown mode", 10, { { 10, UDP_AT("port = PORT; "
	    "mode = \"shout\";") } } },
	{ "unknown proto", 9, { { 9, "  { proto = \"sctp\"; address = "
	    "\"127.0.0.1\"; port = PORT; mode = \"upper\"; }," } } },
	{ "duplicate listener", 10, { { 10, "  { proto = \"tcp\"; address = "
	    "\"127.0.0.1\"; port = PORT; mode = \"upper\"; }" } } },
	{ "empty listen list", 8, { { 8, "listen = ( );" }, { 9, "" },
	    { 10, "" }, { 11, "" } } },
	{ "unresolvable address", 10, { { 10, "  { proto = \"udp\"; address = "
	    "\"no-such-host.invalid\"; port = PORT; mode = \"upper\"; }" } } },
	{ "syntax error", 3, { { 3, "daemon = = false;" } } },
};

/* Accepted forms that must not be mistaken for errors. */
static const struct conf_case GOOD[] = {
	{ "base file", 0, { { 0, NULL } } },
	{ "workers auto", 0, { { 2, "workers = \"auto\";" } } },
	{ "workers 1024", 0, { { 2, "workers = 1024;" } } },
	{ "port 65535 and 1", 0, { { 9, TCP_AT("port = 65535; "
	    "mode = \"echo\";") }, { 10, UDP_AT("port = 1;") } } },
	{ "mode defaults", 0, { { 10, UDP_AT("port = PORT;") } } },
	{ "any IPv4, any IPv6", 0, { { 9, "  { proto = \"tcp\"; address = "
	    "\"*\"; port = PORT; }," }, { 10, "  { proto = \"tcp\"; address = "
	    "\"::\"; port = PORT; }" } } },
	{ "resolvable name", 0, { { 10, "  { proto = \"udp\"; address = "
	    "\"localhost\"; port = PORT; mode = \"upper\"; }" } } },
	{ "only listen", 0, { { 2, "" }, { 3, "" }, { 4, "" }, { 5, "" } } },
};

/* BASE with the case's edits, PORT filled in; malloc'd. */
static char *
case_text(const struct conf_case *cc, int port)
{
	char *text, *out;
	size_t i, j, len = 0;
	const char *line;

	for (i = 0; i < BASE_LINES; i++)
		len += strlen(BASE[i]) + 256;
	text = malloc(len);
	assert_non_null(text);
	text[0] = '\0';
	for (i = 0; i < BASE_LINES; i++) {
		line = BASE[i];
		for (j = 0; j < MAX_EDITS; j++)
			if (cc->edits[j].line == (int)i + 1)
				line = cc->edits[j].text;
		strcat(text, line);
		strcat(text, "\n");
	}
	out = text_with_port(text, port);
	free(text);
	return out;
}

static int
run_test_flag(struct env *e, const char *flag, char **out, char **err)
{
	const char *args[] = { flag, "-c", e->conf_path, NULL };

	return run_daemon_cmd(e, args, CMD_MS, out, err);
}

static void
test_bad_config(void **state)
{
	struct env *e = *state;
	const struct conf_case *cc = e->arg;
	char where[PATH_MAX + 32], *text, *err = NULL;
	int rc;

	text = case_text(cc, port_pick());
	env_write_conf_text(e, text);
	rc = run_test_flag(e, "-t", NULL, &err);
	snprintf(where, sizeof(where), "%s:%d:", e->conf_path, cc->line);
	if (rc != 1 || err == NULL || strstr(err, where) == NULL)
		fail_msg("case \"%s\": want exit 1 and \"%s\" on stderr; got "
		    "exit %d, stderr:\n%s\nconfig:\n%s", cc->name, where, rc,
		    err != NULL ? err : "(none)", text);
	free(text);
	free(err);
}

static void
test_good_config(void **state)
{
	struct env *e = *state;
	const struct conf_case *cc = e->arg;
	char *text, *err = NULL;
	int rc;

	text = case_text(cc, port_pick());
	env_write_conf_text(e, text);
	rc = run_test_flag(e, "-t", NULL, &err);
	if (rc != 0 || err == NULL || strstr(err, "syntax is ok") == NULL ||
	    strstr(err, "test is successful") == NULL ||
	    strstr(err, e->conf_path) == NULL)
		fail_msg("case \"%s\": want exit 0, \"syntax is ok\" and \"test "
		    "is successful\" for %s; got exit %d, stderr:\n%s\n"
		    "config:\n%s", cc->name, e->conf_path, rc,
		    err != NULL ? err : "(none)", text);
	free(text);
	free(err);
}

static void
test_missing_config_file(void **state)
{
	struct env *e = *state;
	char *err = NULL;

	assert_int_equal(run_test_flag(e, "-t", NULL, &err), 1);
	assert_non_null(err);
	assert_non_null(strstr(err, e->conf_path));
	free(err);
}

/* -T prints the effective config with the defaults filled in, and what it
 * prints is itself a valid config. */
static void
test_dump_roundtrips(void **state)
{
	static const struct conf_case only_listen = { "only listen", 0, {
		{ 2, "" }, { 3, "" }, { 4, "" }, { 5, "" }, } };
	static const char *const keys[] = { "workers", "daemon", "pid_file",
	    "shutdown_timeout", "facility", "level", "stderr",
	    "max_connections", "idle_timeout", "listen", "proto", "address",
	    "port", "mode" };
	struct env *e = *state;
	char *text, *out = NULL, *err = NULL;
	size_t i;

	text = case_text(&only_listen, port_pick());
	env_write_conf_text(e, text);
	free(text);
	assert_int_equal(run_test_flag(e, "-T", &out, &err), 0);
	assert_non_null(out);
	for (i = 0; i < sizeof(keys) / sizeof(*keys); i++)
		if (strstr(out, keys[i]) == NULL)
			fail_msg("-T output lacks \"%s\":\n%s", keys[i], out);
	env_write_conf_text(e, out);
	free(out);
	free(err);
	err = NULL;
	if (run_test_flag(e, "-t", NULL, &err) != 0)
		fail_msg("-t refuses what -T printed: %s", err);
	free(err);
}

static void
test_version(void **state)
{
	struct env *e = *state;
	const char *args[] = { "-v", NULL };
	const char *longs[] = { "--version", NULL };
	const char *want = "echomaster " EM_VERSION "\n";
	char *out = NULL, *err = NULL;

	assert_int_equal(run_daemon_cmd(e, args, CMD_MS, &out, &err), 0);
	if (strcmp(out, want) != 0 && strcmp(err, want) != 0)
		fail_msg("-v printed stdout \"%s\" and stderr \"%s\", want "
		    "\"%s\"", out, err, want);
	free(out);
	free(err);
	assert_int_equal(run_daemon_cmd(e, longs, CMD_MS, &out, &err), 0);
	assert_true(strcmp(out, want) == 0 || strcmp(err, want) == 0);
	free(out);
	free(err);
}

static void
test_help_and_usage_errors(void **state)
{
	struct env *e = *state;
	const char *help[] = { "-h", NULL };
	const char *bogus[] = { "--no-such-option", NULL };
	const char *extra[] = { "-c", e->conf_path, "stray", NULL };
	char *out = NULL, *err = NULL;

	assert_int_equal(run_daemon_cmd(e, help, CMD_MS, &out, &err), 0);
	assert_true(strstr(out, "--config") != NULL ||
	    strstr(err, "--config") != NULL);
	assert_true(strstr(out, "--signal") != NULL ||
	    strstr(err, "--signal") != NULL);
	free(out);
	free(err);
	assert_int_equal(run_daemon_cmd(e, bogus, CMD_MS, NULL, NULL), 1);
	assert_int_equal(run_daemon_cmd(e, extra, CMD_MS, NULL, NULL), 1);
}

/* Starts the daemon on a port the test holds; returns its exit status. */
static int
start_on_taken_port(struct env *e)
{
	const char *args[] = { "-F", "-c", e->conf_path, NULL };
	struct em_conf c;
	char *err = NULL;
	int rc, port = port_pick(), held = port_occupy(port);

	conf_init(&c, 2);
	conf_listen_pair(&c, port, "upper");
	env_write_conf(e, &c);
	rc = run_daemon_cmd(e, args, CMD_MS, NULL, &err);
	print_message("start on a taken port: exit %d, stderr: %s", rc,
	    err != NULL ? err : "(none)\n");
	free(err);
	close(held);
	return rc;
}

/* Cannot bind: a runtime failure, exit 2. */
static void
test_start_port_in_use_exits_2(void **state)
{
	assert_int_equal(start_on_taken_port(*state), 2);
}

/* The pid file is "removed on exit": that holds for a start that failed
 * too, or every failed start leaves a stale (empty) file behind. */
static void
test_failed_start_leaves_no_pid_file(void **state)
{
	struct env *e = *state;

	assert_int_equal(start_on_taken_port(e), 2);
	if (access(e->pid_path, F_OK) == 0)
		fail_msg("a start that failed to bind left %s behind",
		    e->pid_path);
}

/* ---- -s ------------------------------------------------------------------ */

static const char MSG[] = "signal me\n";
static const char MSG_UP[] = "SIGNAL ME\n";

static int
run_signal(struct env *e, const char *sig, char **err)
{
	const char *args[] = { "-c", e->conf_path, "-s", sig, NULL };

	return run_daemon_cmd(e, args, CMD_MS, NULL, err);
}

static void
expect_signal_rc(struct env *e, const char *sig, int want)
{
	char *err = NULL;
	int rc = run_signal(e, sig, &err);

	if (rc != want)
		fail_msg("-s %s: exit %d, want %d; stderr:\n%s", sig, rc, want,
		    err != NULL ? err : "(none)");
	free(err);
}

static void
wait_pid_file(struct env *e)
{
	int64_t deadline = now_ms() + EM_DEADLINE_MS;
	char *text;
	long pid = 0;

	while (pid != e->master) {
		if (now_ms() >= deadline)
			fail_msg("pid file %s never held master %d",
			    e->pid_path, (int)e->master);
		nap_ms(20);
		text = file_read(e->pid_path, NULL);
		pid = text != NULL ? strtol(text, NULL, 10) : 0;
		free(text);
	}
}

static int
start_daemon(struct env *e, int workers)
{
	struct em_conf c;
	int port = port_pick();

	conf_init(&c, workers);
	conf_listen_pair(&c, port, "upper");
	env_write_conf(e, &c);
	env_start_ready(e, workers, port);
	wait_pid_file(e);
	return port;
}

static void
expect_clean_exit(struct env *e)
{
	int status = env_wait_exit(e, EM_DEADLINE_MS);

	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		env_dump_log(e);
		fail_msg("master: wait status %#x, want exit 0", status);
	}
	assert_int_equal(access(e->pid_path, F_OK), -1);
}

static void
test_signal_stop(void **state)
{
	struct env *e = *state;

	start_daemon(e, 2);
	expect_signal_rc(e, "stop", 0);
	expect_clean_exit(e);
	/* Now nobody runs: -s says so with 2. */
	expect_signal_rc(e, "stop", 2);
}

static void
test_signal_quit(void **state)
{
	struct env *e = *state;

	start_daemon(e, 2);
	expect_signal_rc(e, "quit", 0);
	expect_clean_exit(e);
	assert_true(env_log_has(e, "shutting down (graceful)"));
}

static void
test_signal_reload(void **state)
{
	struct env *e = *state;
	struct em_conf c;
	int port = start_daemon(e, 2);

	conf_init(&c, 3);
	conf_listen_pair(&c, port, "echo");
	env_write_conf(e, &c);
	expect_signal_rc(e, "reload", 0);
	env_wait_log(e, "reload ok: generation 2, 3 workers", EM_DEADLINE_MS);
	env_wait_workers(e, 3, NULL, EM_DEADLINE_MS);
	tcp_roundtrip(port, MSG, strlen(MSG), MSG);
}

/* USR1 is caught, not fatal: once the master has taken the signal it is
 * still the same process, serving. */
static void
test_signal_reopen(void **state)
{
	struct env *e = *state;
	int64_t deadline = now_ms() + EM_DEADLINE_MS;
	int port = start_daemon(e, 2);

	expect_signal_rc(e, "reopen", 0);
	while (proc_signal_pending(e->master, SIGUSR1)) {
		if (now_ms() >= deadline)
			fail_msg("SIGUSR1 never taken by the master");
		nap_ms(20);
	}
	tcp_roundtrip(port, MSG, strlen(MSG), MSG_UP);
	assert_false(env_exited(e));
}

/* The operator's case: the config was edited into an error, and the
 * running master must still be stoppable with -s. */
static void
signal_stop_with(struct env *e, const char *from, const char *to)
{
	struct em_conf c;
	char *good, *bad;
	int port = start_daemon(e, 2);

	conf_init(&c, 2);
	conf_listen_pair(&c, port, "upper");
	good = env_conf_text(e, &c);
	bad = text_replace(good, from, to);
	env_write_conf_text(e, bad);
	free(good);
	free(bad);
	expect_signal_rc(e, "stop", 0);
	expect_clean_exit(e);
}

static void
test_signal_stop_config_invalid_setting(void **state)
{
	signal_stop_with(*state, "workers = 2;", "workers = 0; colour = 1;");
}

static void
test_signal_stop_config_syntax_error(void **state)
{
	signal_stop_with(*state, "daemon = false;", "daemon = = false");
}

static void
test_signal_no_pid_file(void **state)
{
	struct env *e = *state;
	struct em_conf c;

	conf_init(&c, 2);
	c.no_pid_file = true;
	conf_listen_pair(&c, port_pick(), "upper");
	env_write_conf(e, &c);
	expect_signal_rc(e, "stop", 1);
}

static void
test_signal_unknown_name(void **state)
{
	struct env *e = *state;
	struct em_conf c;

	conf_init(&c, 2);
	conf_listen_pair(&c, port_pick(), "upper");
	env_write_conf(e, &c);
	expect_signal_rc(e, "explode", 1);
}

/* A pid file left behind that names an unrelated live process: nothing
 * holds its lock, so no master runs (exit 2) and that process is spared. */
static void
test_signal_stale_pid_file_spares_other_process(void **state)
{
	struct env *e = *state;
	pid_t other = env_spawn_helper(e);
	unsigned long long start = proc_start_time(other);
	struct em_conf c;
	char text[32];

	conf_init(&c, 2);
	conf_listen_pair(&c, port_pick(), "upper");
	env_write_conf(e, &c);
	snprintf(text, sizeof(text), "%d\n", (int)other);
	file_write(e->pid_path, text);
	expect_signal_rc(e, "stop", 2);
	assert_true(proc_alive(other, start));
}

#define T(f) cmocka_unit_test_setup_teardown(f, env_setup, env_teardown)
#define NBAD (sizeof(BAD) / sizeof(*BAD))
#define NGOOD (sizeof(GOOD) / sizeof(*GOOD))

static const struct CMUnitTest FIXED[] = {
	T(test_missing_config_file),
	T(test_dump_roundtrips),
	T(test_version),
	T(test_help_and_usage_errors),
	T(test_start_port_in_use_exits_2),
	T(test_failed_start_leaves_no_pid_file),
	T(test_signal_stop),
	T(test_signal_quit),
	T(test_signal_reload),
	T(test_signal_reopen),
	T(test_signal_stop_config_invalid_setting),
	T(test_signal_stop_config_syntax_error),
	T(test_signal_no_pid_file),
	T(test_signal_unknown_name),
	T(test_signal_stale_pid_file_spares_other_process),
};
#define NFIXED (sizeof(FIXED) / sizeof(*FIXED))

/* One cmocka test per table case, named after it, so a report lists each
 * failing case by name. */
static size_t
add_cases(struct CMUnitTest *t, char names[][96], const char *prefix,
    const struct conf_case *cases, size_t n, CMUnitTestFunction f)
{
	size_t i;

	for (i = 0; i < n; i++) {
		snprintf(names[i], sizeof(names[i]), "%s: %s", prefix,
		    cases[i].name);
		t[i] = (struct CMUnitTest){ names[i], f, env_setup,
		    env_teardown, (void *)&cases[i] };
	}
	return n;
}

int
main(void)
{
	static struct CMUnitTest tests[NBAD + NGOOD + NFIXED];
	static char names[NBAD + NGOOD][96];
	size_t n = 0;

	n += add_cases(tests + n, names, "-t refuses", BAD, NBAD,
	    test_bad_config);
	n += add_cases(tests + n, names + NBAD, "-t accepts", GOOD, NGOOD,
	    test_good_config);
	memcpy(tests + n, FIXED, sizeof(FIXED));
	n += NFIXED;
	return _cmocka_run_group_tests("cli", tests, n, NULL, NULL);
}
