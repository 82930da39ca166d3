/*
 * test_control.c: what operators use: the control socket (-s status, its
 * JSON, a synchronous reload, respawn), Prometheus /metrics, sd_notify
 * messages, the crash-loop breaker, TTIN/TTOU, a graceful TERM and the
 * bound on draining generations.
 */
#include "harness.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

/* A config with a control socket in the env dir; extra is spliced in at the top. */
static void
write_ops_conf(struct env *e, int port, int workers, const char *extra)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);

	fprintf(f, "workers = %d;\ncontrol_socket = \"%s\";\nshutdown_timeout = 20;\n"
	    "log = { level = \"info\"; stderr = true; };\n%s\n"
	    "listen = ( { proto = \"tcp\"; address = \"127.0.0.1\"; port = %d; },\n"
	    "           { proto = \"udp\"; address = \"127.0.0.1\"; port = %d; } );\n",
	    workers, env_control_socket(e), extra, port, port);
	fclose(f);
	env_write_conf_text(e, text);
	free(text);
}

static int
count_substr(const char *hay, const char *needle)
{
	int n = 0;

	for (const char *p = hay; (p = strstr(p, needle)) != NULL; p += strlen(needle))
		n++;
	return n;
}

static void
status_shows_the_workers_and_their_traffic(void **state)
{
	struct env *e = *state;
	int port = port_pick();
	char *out = NULL;

	write_ops_conf(e, port, 2, "");
	env_start_ready(e, 2, port);
	for (int i = 0; i < 5; i++)
		tcp_roundtrip(port, "hello", 5, "HELLO");
	assert_int_equal(env_ctl(e, "status", NULL, &out), 0);
	print_message("%s", out);
	assert_non_null(strstr(out, "generation 1, 2 workers"));
	assert_int_equal(count_substr(out, " serving "), 2);
	assert_non_null(strstr(out, "accepted"));
	free(out);
	/* Bytes are published at the end of a worker's turn, which may follow our read of the echo. */
	env_total_wait(e, "bytes_in", 25);
	assert_int_equal(env_ctl(e, "status", "--json", &out), 0);
	assert_non_null(strstr(out, "\"generation\":1,\"workers\":2"));
	assert_int_equal(count_substr(out, "\"state\":\"serving\""), 2);
	/* The readiness probe and five clients: at least 5 accepted in all, 10 bytes each way. */
	assert_non_null(strstr(out, "\"totals\":{\"active\":"));
	{
		const char *t = strstr(out, "\"totals\":");
		unsigned long long accepted = 0, bytes_in = 0;
		assert_non_null(t);
		assert_non_null(strstr(t, "\"accepted\":"));
		sscanf(strstr(t, "\"accepted\":"), "\"accepted\":%llu", &accepted);
		sscanf(strstr(t, "\"bytes_in\":"), "\"bytes_in\":%llu", &bytes_in);
		assert_true(accepted >= 5);
		assert_true(bytes_in >= 25);
	}
	free(out);
}

static void
reload_through_the_socket_waits_for_its_outcome(void **state)
{
	struct env *e = *state;
	int port = port_pick();
	char *out = NULL;

	write_ops_conf(e, port, 1, "");
	env_start_ready(e, 1, port);
	write_ops_conf(e, port, 2, "");
	assert_int_equal(env_ctl(e, "reload", NULL, &out), 0);
	assert_string_equal(out, "reload ok: generation 2, 2 workers\n");
	free(out);
	/* Synchronous: the new workers already serve when the command returns. */
	env_wait_workers(e, 2, NULL, EM_DEADLINE_MS);
	/* A duplicate setting on line 5; control_socket (line 2) still finds the master. */
	write_ops_conf(e, port, 2, "workers = 3;");
	assert_int_equal(env_ctl(e, "reload", NULL, &out), 1);
	print_message("%s", out);
	assert_non_null(strstr(out, "reload failed: "));
	assert_non_null(strstr(out, ":5: "));
	free(out);
	tcp_roundtrip(port, "still", 5, "STILL");
}

static void
metrics_are_served_as_prometheus_text(void **state)
{
	struct env *e = *state;
	int ports[2];
	char extra[128], req[] = "GET /metrics HTTP/1.0\r\n\r\n", buf[65536];
	ssize_t n = 0, got;
	int fd;

	ports_pick(ports, 2);
	snprintf(extra, sizeof(extra), "metrics = { address = \"127.0.0.1\"; port = %d; };", ports[1]);
	write_ops_conf(e, ports[0], 2, extra);
	env_start_ready(e, 2, ports[0]);
	tcp_roundtrip(ports[0], "abc", 3, "ABC");
	fd = tcp_connect(ports[1], EM_DEADLINE_MS);
	assert_true(fd >= 0);
	assert_int_equal(tcp_send_all(fd, req, strlen(req), EM_DEADLINE_MS), 0);
	while ((size_t)n < sizeof(buf) - 1 &&
	    (got = tcp_read_exact(fd, buf + n, sizeof(buf) - 1 - (size_t)n, 2000)) > 0)
		n += got;
	close(fd);
	buf[n] = '\0';
	assert_non_null(strstr(buf, "HTTP/1.0 200 OK"));
	assert_non_null(strstr(buf, "# TYPE echomaster_connections_accepted_total counter"));
	assert_non_null(strstr(buf, "echomaster_connections_accepted_total{worker=\"0\""));
	assert_non_null(strstr(buf, "echomaster_connections_accepted_total{worker=\"1\""));
	assert_non_null(strstr(buf, "echomaster_reloads_total{result=\"ok\"} 0"));
	/* Every sample line is NAME{LABELS} VALUE or NAME VALUE with a numeric value. */
	for (char *line = strstr(buf, "\r\n\r\n") + 4, *end; *line != '\0'; line = end + 1) {
		char name[128];
		double value;
		if ((end = strchr(line, '\n')) == NULL)
			break;
		*end = '\0';
		if (line[0] == '#')
			continue;
		if (sscanf(line, "%127[a-z_]%*[^ ] %lf", name, &value) != 2 &&
		    sscanf(line, "%127[a-z_] %lf", name, &value) != 2)
			fail_msg("not a metric line: %s", line);
		assert_true(strncmp(name, "echomaster_", 11) == 0);
	}
}

static void
sd_notify_follows_the_lifecycle(void **state)
{
	struct env *e = *state;
	int port = port_pick(), fd;
	char path[PATH_MAX];
	const char *msg;

	write_ops_conf(e, port, 2, "");
	fd = env_notify_open(e, path, sizeof(path));
	setenv("NOTIFY_SOCKET", path, 1);
	env_start(e);
	unsetenv("NOTIFY_SOCKET");
	msg = env_notify_wait(fd, "READY=1");
	assert_non_null(strstr(msg, "STATUS=serving: 2 workers, generation 1"));
	env_signal(e, SIGHUP);
	msg = env_notify_wait(fd, "RELOADING=1");
	assert_non_null(strstr(msg, "MONOTONIC_USEC="));
	msg = env_notify_wait(fd, "READY=1");
	assert_non_null(strstr(msg, "generation 2"));
	env_write_conf_text(e, "workers = oops;\n");
	env_signal(e, SIGHUP);
	env_notify_wait(fd, "RELOADING=1");
	msg = env_notify_wait(fd, "READY=1");
	assert_non_null(strstr(msg, "STATUS=reload failed: "));
	env_signal(e, SIGTERM);
	env_notify_wait(fd, "STOPPING=1");
	assert_int_equal(env_wait_exit(e, EM_DEADLINE_MS), 0);
	close(fd);
}

/*
 * Workers that die before they are ready park their slot after
 * crash_loop.deaths tries; once the cause is gone, -s respawn starts it.
 * Needs the daemon built with the test hooks.
 */
static void
crash_loop_parks_and_respawn_clears(void **state)
{
	struct env *e = *state;
	const char *hooks = getenv("ECHOMASTER_TESTHOOKS");
	const char *saved = getenv("ECHOMASTER");
	char *out = NULL, *saved_copy = saved ? strdup(saved) : NULL;
	const char *crash = env_file(e, "crash-on-start");
	int port = port_pick();

	if (hooks == NULL || access(hooks, X_OK) != 0)
		fail_msg("ECHOMASTER_TESTHOOKS must name the test-hooks build (make check sets it)");
	file_write(crash, "");
	write_ops_conf(e, port, 1, "crash_loop = { deaths = 3; window = 60; };");
	setenv("ECHOMASTER", hooks, 1);
	setenv("EM_TEST_CRASH_ON_START", crash, 1);
	env_start(e);
	unsetenv("EM_TEST_CRASH_ON_START");
	if (saved_copy != NULL)
		setenv("ECHOMASTER", saved_copy, 1);
	else
		unsetenv("ECHOMASTER");
	free(saved_copy);
	env_wait_log(e, "worker slot 0 parked", EM_DEADLINE_MS);
	assert_true(env_log_has(e, "2 such lines not logged"));
	assert_int_equal(env_ctl(e, "status", NULL, &out), 0);
	assert_non_null(strstr(out, "parked slots 1"));
	free(out);
	unlink(crash);
	assert_int_equal(env_ctl(e, "respawn", NULL, &out), 0);
	free(out);
	env_wait_serving(e, 1, 1, EM_DEADLINE_MS);
	tcp_roundtrip(port, "back", 4, "BACK");
}

/* A serving worker killed again and again is always respawned, never parked. */
static void
serving_workers_are_never_parked(void **state)
{
	struct env *e = *state;
	int port = port_pick();
	pid_t w;

	write_ops_conf(e, port, 1, "crash_loop = { deaths = 2; window = 60; };");
	env_start_ready(e, 1, port);
	for (int i = 0; i < 4; i++) {
		unsigned long long start;
		env_wait_workers(e, 1, &w, EM_DEADLINE_MS);
		start = proc_start_time(w);
		tcp_roundtrip(port, "x", 1, "X");  /* it serves: it was ready */
		assert_int_equal(kill(w, SIGKILL), 0);
		for (int64_t d = now_ms() + EM_DEADLINE_MS; proc_alive(w, start); nap_ms(20))
			assert_true(now_ms() < d);
	}
	env_wait_workers(e, 1, &w, EM_DEADLINE_MS);
	tcp_roundtrip(port, "y", 1, "Y");
	assert_false(env_log_has(e, "parked"));
}

static void
ttin_and_ttou_change_the_worker_count(void **state)
{
	struct env *e = *state;
	int port = port_pick();

	write_ops_conf(e, port, 2, "");
	env_start_ready(e, 2, port);
	env_signal(e, SIGTTIN);
	env_wait_workers(e, 3, NULL, EM_DEADLINE_MS);
	env_wait_log(e, "workers: 3 (SIGTTIN", EM_DEADLINE_MS);
	env_signal(e, SIGTTOU);
	env_wait_log(e, "workers: 2 (SIGTTOU", EM_DEADLINE_MS);
	env_signal(e, SIGTTOU);
	env_wait_log(e, "workers: 1 (SIGTTOU", EM_DEADLINE_MS);
	env_wait_workers(e, 1, NULL, EM_DEADLINE_MS);
	env_signal(e, SIGTTOU);
	env_wait_log(e, "SIGTTOU ignored: 1 workers", EM_DEADLINE_MS);
	tcp_roundtrip(port, "one", 3, "ONE");
}

/* stop_signal_graceful: TERM drains like QUIT, so a connected client still gets its reply. */
static void
graceful_term_drains(void **state)
{
	struct env *e = *state;
	int port = port_pick(), fd;
	char got[8];

	write_ops_conf(e, port, 1, "stop_signal_graceful = true;");
	env_start_ready(e, 1, port);
	fd = tcp_open_echoed(port, "a", 1, "A");  /* connected and served before the TERM */
	env_signal(e, SIGTERM);
	env_wait_log(e, "shutting down (graceful)", EM_DEADLINE_MS);
	assert_int_equal(tcp_send_all(fd, "late", 4, EM_DEADLINE_MS), 0);
	assert_int_equal(tcp_read_exact(fd, got, 4, EM_DEADLINE_MS), 4);
	assert_memory_equal(got, "LATE", 4);
	close(fd);
	assert_int_equal(env_wait_exit(e, EM_DEADLINE_MS), 0);
}

/* With max_draining_generations = 1, a second reload cuts the oldest drain short. */
static void
draining_generations_are_bounded(void **state)
{
	struct env *e = *state;
	int port = port_pick(), fd1, fd2;

	/* Drains are the premise: with a handover nothing would be left to drain. */
	write_ops_conf(e, port, 1, "max_draining_generations = 1;\nreload_handover = false;");
	env_start_ready(e, 1, port);
	fd1 = tcp_open_echoed(port, "g1", 2, "G1");    /* holds generation 1 in its drain */
	env_signal(e, SIGHUP);
	env_wait_serving(e, 2, 1, EM_DEADLINE_MS);
	fd2 = tcp_open_echoed(port, "g2", 2, "G2");    /* holds generation 2 */
	env_signal(e, SIGHUP);
	env_wait_serving(e, 3, 1, EM_DEADLINE_MS);
	env_wait_log(e, "more than max_draining_generations = 1: stopping generation 1 now",
	    EM_DEADLINE_MS);
	assert_int_equal(tcp_wait_eof(fd1, EM_DEADLINE_MS), 0);  /* generation 1 is gone */
	close(fd1);
	close(fd2);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(status_shows_the_workers_and_their_traffic, env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(reload_through_the_socket_waits_for_its_outcome, env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(metrics_are_served_as_prometheus_text, env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(sd_notify_follows_the_lifecycle, env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(crash_loop_parks_and_respawn_clears, env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(serving_workers_are_never_parked, env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(ttin_and_ttou_change_the_worker_count, env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(graceful_term_drains, env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(draining_generations_are_bounded, env_setup, env_teardown),
	};
	return cmocka_run_group_tests_name("control", tests, NULL, NULL);
}
