/*
 * test_agent.c: the HAProxy agent as HAProxy sees it (one line, then the
 * connection closes) in each state: serving with a weight that follows the
 * load, drain and ready again through -s drain / -s ready, maint, drain
 * during drain_delay while clients are still served, down while stopping
 * and when no worker serves; -s status says the same. Also: a fast stop
 * during drain_delay stops at once, TERM with stop_signal_graceful has the
 * delay too, and systemd's STATUS= follows the agent.
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

/* workers 2 x max_connections 10: 5 clients take a quarter of the capacity. */
static void
agent_conf(struct env *e, int port, int agent_port, int workers, const char *extra)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);

	fprintf(f, "workers = %d;\ncontrol_socket = \"%s\";\nshutdown_timeout = 20;\n"
	    "log = { level = \"info\"; stderr = true; };\n"
	    "limits = { max_connections = 10; };\n"
	    "agent = { address = \"127.0.0.1\"; port = %d; };\n%s\n"
	    "listen = ( { proto = \"tcp\"; address = \"127.0.0.1\"; port = %d; } );\n",
	    workers, env_control_socket(e), agent_port, extra, port);
	fclose(f);
	env_write_conf_text(e, text);
	free(text);
}

/* What the agent says: the whole answer up to its close (malloc'd); fails the test. */
static char *
agent_ask(int agent_port)
{
	char buf[512];
	int fd = tcp_connect(agent_port, EM_DEADLINE_MS);
	ssize_t n;

	if (fd == -1)
		fail_msg("agent on port %d: connect: %s", agent_port, strerror(errno));
	n = tcp_read_exact(fd, buf, sizeof(buf) - 1, EM_DEADLINE_MS);
	close(fd);
	if (n <= 0)
		fail_msg("agent on port %d: no answer", agent_port);
	buf[n] = '\0';
	/* One line, closed after it. */
	assert_non_null(strchr(buf, '\n'));
	assert_int_equal(strchr(buf, '\n') - buf, n - 1);
	return strdup(buf);
}

/* Polls the agent until its answer starts with PREFIX (and holds PART, unless NULL). */
static char *
agent_wait(struct env *e, int agent_port, const char *prefix, const char *part)
{
	int64_t deadline = now_ms() + EM_DEADLINE_MS;
	char *got = NULL;

	for (;;) {
		free(got);
		got = agent_ask(agent_port);
		if (strncmp(got, prefix, strlen(prefix)) == 0 && (part == NULL || strstr(got, part)))
			return got;
		if (now_ms() > deadline) {
			env_dump_log(e);
			fail_msg("the agent says \"%s\", not \"%s...\"", got, prefix);
		}
		nap_ms(EM_POLL_NAP_MS);
	}
}

static void
agent_expect(struct env *e, int agent_port, const char *prefix, const char *part)
{
	char *got = agent_wait(e, agent_port, prefix, part);

	print_message("agent: %s", got);
	free(got);
}

static void
ctl_expect(struct env *e, const char *cmd, const char *opt, const char *part)
{
	char *out = NULL;

	assert_int_equal(env_ctl(e, cmd, opt, &out), 0);
	if (strstr(out, part) == NULL)
		fail_msg("-s %s %s says \"%s\", not \"%s\"", cmd, opt ? opt : "", out, part);
	free(out);
}

static void
replies_follow_the_load_and_the_operator(void **state)
{
	struct env *e = *state;
	int ports[2], fds[5];

	ports_pick(ports, 2);
	agent_conf(e, ports[0], ports[1], 2, "");
	env_start_ready(e, 2, ports[0]);
	agent_expect(e, ports[1], "up ready 100% #", " serving, 0 active");
	for (int i = 0; i < 5; i++)
		fds[i] = tcp_open_echoed(ports[0], "load", 4, "LOAD");
	agent_expect(e, ports[1], "up ready 75% #", " serving, 5 active");
	ctl_expect(e, "status", NULL, "state: serving; agent: up ready 75%");
	/* drain: no weight, and the workers still serve the clients they have. */
	ctl_expect(e, "drain", NULL, "draining (operator)");
	agent_expect(e, ports[1], "drain #", "draining (operator)");
	ctl_expect(e, "status", NULL, "state: draining (operator); agent: drain #");
	ctl_expect(e, "status", "--json", "\"agent_state\":\"draining (operator)\"");
	tcp_roundtrip(ports[0], "still", 5, "STILL");
	ctl_expect(e, "maint", NULL, "maintenance (operator)");
	agent_expect(e, ports[1], "maint #", "maintenance (operator)");
	ctl_expect(e, "ready", NULL, "serving");
	for (int i = 0; i < 5; i++)
		close(fds[i]);
	agent_expect(e, ports[1], "up ready 100% #", NULL);
	assert_true(env_log_has(e, "operator: drain; the agent reports draining (operator)"));
}

/*
 * Clients that never read hold nothing: 300 of them, then the agent and
 * the control socket still answer at once. A client that sends first (as
 * HAProxy's agent-send does) still gets the whole line, then EOF.
 */
static void
clients_that_never_read_hold_nothing(void **state)
{
	struct env *e = *state;
	int ports[2], fds[300], fd;
	char buf[256];
	ssize_t n;

	ports_pick(ports, 2);
	agent_conf(e, ports[0], ports[1], 1, "");
	env_start_ready(e, 1, ports[0]);
	for (size_t i = 0; i < sizeof(fds) / sizeof(fds[0]); i++)
		assert_true((fds[i] = tcp_connect(ports[1], EM_DEADLINE_MS)) >= 0);
	agent_expect(e, ports[1], "up ready 100% #", NULL);
	ctl_expect(e, "status", NULL, "state: serving;");
	for (size_t i = 0; i < sizeof(fds) / sizeof(fds[0]); i++)
		close(fds[i]);
	assert_true((fd = tcp_connect(ports[1], EM_DEADLINE_MS)) >= 0);
	assert_int_equal(tcp_send_all(fd, "be_echo/host1\n", 14, EM_DEADLINE_MS), 0);
	n = tcp_read_exact(fd, buf, sizeof(buf) - 1, EM_DEADLINE_MS);
	assert_true(n > 0);
	buf[n] = '\0';
	assert_true(strncmp(buf, "up ready 100% #", 15) == 0);
	assert_int_equal(buf[n - 1], '\n');
	close(fd);
}

/* -s drain and friends need the control socket, and say so. */
static void
drain_needs_the_control_socket(void **state)
{
	struct env *e = *state;
	struct em_conf c;
	char *err = NULL;
	const char *args[] = { "-c", e->conf_path, "-s", "drain", NULL };

	conf_init(&c, 1);
	conf_listen(&c, "tcp", port_pick(), "upper");
	env_write_conf(e, &c);
	assert_int_equal(run_daemon_cmd(e, args, EM_DEADLINE_MS, NULL, &err), 1);
	assert_non_null(strstr(err, "-s drain needs control_socket"));
	free(err);
}

/*
 * drain_delay = 3: at QUIT the agent says drain (and status, with the time
 * left) while new clients are still served, until it says "stopping in
 * 1 s"; then the listener closes and the master exits.
 */
static void
drain_delay_keeps_serving_while_it_reports_drain(void **state)
{
	struct env *e = *state;
	int ports[2];
	int64_t t0;

	ports_pick(ports, 2);
	agent_conf(e, ports[0], ports[1], 2, "drain_delay = 3;");
	env_start_ready(e, 2, ports[0]);
	agent_expect(e, ports[1], "up ready 100%", NULL);
	t0 = now_ms();
	env_signal(e, SIGQUIT);
	agent_expect(e, ports[1], "drain #", "draining (stopping in ");
	ctl_expect(e, "status", NULL, "state: draining (stopping in ");
	tcp_roundtrip(ports[0], "during the delay", 16, "DURING THE DELAY");
	agent_expect(e, ports[1], "drain #", "draining (stopping in 1 s)");
	tcp_roundtrip(ports[0], "still served", 12, "STILL SERVED");
	assert_int_equal(env_wait_exit(e, EM_DEADLINE_MS), 0);
	print_message("QUIT to exit: %lld ms\n", (long long)(now_ms() - t0));
	assert_true(now_ms() - t0 >= 2000);
	assert_true(env_log_has(e, "reporting drain for 3 s (drain_delay) before stopping"));
	assert_true(env_log_has(e, "graceful stop: accept queues empty"));
	tcp_wait_refused(ports[0], EM_DEADLINE_MS);
}

/* TERM (a fast stop) during drain_delay does not wait for the delay. */
static void
fast_stop_during_drain_delay_is_at_once(void **state)
{
	struct env *e = *state;
	int ports[2];
	int64_t t0;

	ports_pick(ports, 2);
	agent_conf(e, ports[0], ports[1], 2, "drain_delay = 600;");
	env_start_ready(e, 2, ports[0]);
	env_signal(e, SIGQUIT);
	agent_expect(e, ports[1], "drain #", "draining (stopping in 600 s)");
	t0 = now_ms();
	env_signal(e, SIGTERM);
	assert_int_equal(env_wait_exit(e, EM_DEADLINE_MS), 0);
	print_message("TERM to exit: %lld ms\n", (long long)(now_ms() - t0));
	assert_true(now_ms() - t0 < 10000);
}

/* With stop_signal_graceful, TERM (docker stop, the kubelet) has the delay as QUIT does. */
static void
graceful_term_has_the_delay(void **state)
{
	struct env *e = *state;
	int ports[2];

	ports_pick(ports, 2);
	agent_conf(e, ports[0], ports[1], 1, "drain_delay = 2;\nstop_signal_graceful = true;");
	env_start_ready(e, 1, ports[0]);
	env_signal(e, SIGTERM);
	agent_expect(e, ports[1], "drain #", "draining (stopping in ");
	tcp_roundtrip(ports[0], "after term", 10, "AFTER TERM");
	assert_int_equal(env_wait_exit(e, EM_DEADLINE_MS), 0);
	assert_true(env_log_has(e, "reporting drain for 2 s (drain_delay) before stopping"));
}

/* Stopping: once the queues are taken, "down", while a client still holds a worker. */
static void
down_while_stopping(void **state)
{
	struct env *e = *state;
	int ports[2], fd;

	ports_pick(ports, 2);
	agent_conf(e, ports[0], ports[1], 1, "");
	env_start_ready(e, 1, ports[0]);
	fd = tcp_open_echoed(ports[0], "hold", 4, "HOLD");
	env_signal(e, SIGQUIT);
	agent_expect(e, ports[1], "down #", " stopping, 1 active");
	ctl_expect(e, "status", NULL, "state: stopping; agent: down #");
	/* The held client is still served, then the master exits once it leaves. */
	assert_int_equal(tcp_send_all(fd, "bye", 3, EM_DEADLINE_MS), 0);
	{
		char buf[3];
		assert_int_equal(tcp_read_exact(fd, buf, 3, EM_DEADLINE_MS), 3);
		assert_memory_equal(buf, "BYE", 3);
	}
	close(fd);
	assert_int_equal(env_wait_exit(e, EM_DEADLINE_MS), 0);
}

/* Every slot parked by the crash-loop breaker: "down"; -s respawn brings "up" back. */
static void
down_when_no_worker_serves(void **state)
{
	struct env *e = *state;
	const char *hooks = getenv("ECHOMASTER_TESTHOOKS");
	const char *saved = getenv("ECHOMASTER");
	char *saved_copy = saved ? strdup(saved) : NULL, *out = NULL;
	const char *crash = env_file(e, "crash-on-start");
	int ports[2];

	if (hooks == NULL || access(hooks, X_OK) != 0)
		fail_msg("ECHOMASTER_TESTHOOKS must name the test-hooks build (make check sets it)");
	ports_pick(ports, 2);
	file_write(crash, "");
	agent_conf(e, ports[0], ports[1], 1, "crash_loop = { deaths = 2; window = 60; };");
	setenv("ECHOMASTER", hooks, 1);
	setenv("EM_TEST_CRASH_ON_START", crash, 1);
	env_start(e);
	unsetenv("EM_TEST_CRASH_ON_START");
	if (saved_copy != NULL)
		setenv("ECHOMASTER", saved_copy, 1);
	else
		unsetenv("ECHOMASTER");
	free(saved_copy);
	e->crashes_expected = true;
	env_wait_log(e, "worker slot 0 parked", EM_DEADLINE_MS);
	agent_expect(e, ports[1], "down #", "down (no worker serves)");
	unlink(crash);
	assert_int_equal(env_ctl(e, "respawn", NULL, &out), 0);
	free(out);
	agent_expect(e, ports[1], "up ready 100% #", NULL);
}

/* systemd's STATUS= says what the agent says: drain, ready, drain_delay, the stop. */
static void
sd_notify_status_follows_the_agent(void **state)
{
	struct env *e = *state;
	char path[PATH_MAX], *out = NULL;
	int ports[2], fd;

	ports_pick(ports, 2);
	agent_conf(e, ports[0], ports[1], 1, "drain_delay = 1;");
	fd = env_notify_open(e, path, sizeof(path));
	setenv("NOTIFY_SOCKET", path, 1);
	env_start(e);
	unsetenv("NOTIFY_SOCKET");
	env_notify_wait(fd, "READY=1");
	assert_int_equal(env_ctl(e, "drain", NULL, &out), 0);
	free(out);
	env_notify_wait(fd, "STATUS=draining (operator)");
	assert_int_equal(env_ctl(e, "ready", NULL, &out), 0);
	free(out);
	env_notify_wait(fd, "STATUS=serving");
	env_signal(e, SIGQUIT);
	env_notify_wait(fd, "STOPPING=1\nSTATUS=draining (stopping in 1 s)");
	env_notify_wait(fd, "STATUS=stopping: accepting the queued connections");
	assert_int_equal(env_wait_exit(e, EM_DEADLINE_MS), 0);
	close(fd);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(replies_follow_the_load_and_the_operator,
		    env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(drain_needs_the_control_socket, env_setup,
		    env_teardown),
		cmocka_unit_test_setup_teardown(clients_that_never_read_hold_nothing, env_setup,
		    env_teardown),
		cmocka_unit_test_setup_teardown(drain_delay_keeps_serving_while_it_reports_drain,
		    env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(fast_stop_during_drain_delay_is_at_once, env_setup,
		    env_teardown),
		cmocka_unit_test_setup_teardown(graceful_term_has_the_delay, env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(down_while_stopping, env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(down_when_no_worker_serves, env_setup,
		    env_teardown),
		cmocka_unit_test_setup_teardown(sd_notify_status_follows_the_agent, env_setup,
		    env_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
