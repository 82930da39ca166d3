/*
 * test_pidfile.c: the pid file names the running master, keeps a second
 * instance out, and a stale one left by a killed master does not.
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

static const char MSG[] = "who holds the pid file?\n";
static const char MSG_UP[] = "WHO HOLDS THE PID FILE?\n";

static long
pid_file_pid(struct env *e)
{
	char *text = file_read(e->pid_path, NULL);
	long pid = text != NULL ? strtol(text, NULL, 10) : 0;

	free(text);
	return pid;
}

static void
wait_pid_file(struct env *e)
{
	int64_t deadline = now_ms() + EM_DEADLINE_MS;

	while (pid_file_pid(e) != e->master) {
		if (now_ms() >= deadline)
			fail_msg("pid file %s holds %ld, want master %d",
			    e->pid_path, pid_file_pid(e), (int)e->master);
		nap_ms(20);
	}
}

static void
start_on(struct env *e, int port)
{
	struct em_conf c;

	conf_init(&c, 2);
	conf_listen_pair(&c, port, "upper");
	env_write_conf(e, &c);
	env_start_ready(e, 2, port);
	wait_pid_file(e);
}

/* The second instance listens elsewhere, so the pid file is the only thing
 * the two share: its refusal can only come from the lock. */
static void
test_second_instance_refused(void **state)
{
	struct env *e = *state;
	const char *second = env_file(e, "second.conf");
	const char *args[] = { "-F", "-c", second, NULL };
	struct em_conf c;
	char *err = NULL;
	int ports[2], rc, fd;

	ports_pick(ports, 2);
	start_on(e, ports[0]);
	conf_init(&c, 2);
	conf_listen_pair(&c, ports[1], "upper");
	env_write_conf_at(e, second, &c);
	rc = run_daemon_cmd(e, args, EM_DEADLINE_MS, NULL, &err);
	print_message("second instance: exit %d, stderr: %s", rc,
	    err != NULL ? err : "(none)\n");
	assert_int_equal(rc, 2);
	assert_non_null(err);
	assert_true(strlen(err) > 0);
	free(err);
	/* The first one is untouched. */
	assert_false(env_exited(e));
	assert_int_equal(pid_file_pid(e), e->master);
	tcp_roundtrip(ports[0], MSG, strlen(MSG), MSG_UP);
	if ((fd = tcp_connect(ports[1], EM_DEADLINE_MS)) != -1) {
		close(fd);
		fail_msg("the refused instance left port %d listening",
		    ports[1]);
	}
}

/* A master killed with SIGKILL leaves its pid file behind; the next start
 * must see that nobody holds it and take it over. */
static void
test_stale_pid_file_replaced(void **state)
{
	struct env *e = *state;
	pid_t first;
	int port = port_pick();

	start_on(e, port);
	first = e->master;
	env_signal(e, SIGKILL);
	env_wait_exit(e, EM_DEADLINE_MS);
	assert_int_equal(pid_file_pid(e), first);
	/* The orphaned workers must let go of the port first. */
	tcp_wait_refused(port, EM_DEADLINE_MS);
	env_start_ready(e, 2, port);
	wait_pid_file(e);
	assert_true(e->master != first);
	tcp_roundtrip(port, MSG, strlen(MSG), MSG_UP);
}

/* A pid file whose pid is some other live process is just as stale: the
 * daemon starts and rewrites it (and does not signal that process). */
static void
test_pid_file_of_other_process_replaced(void **state)
{
	struct env *e = *state;
	pid_t other = env_spawn_helper(e);
	unsigned long long start = proc_start_time(other);
	char text[32];
	int port = port_pick();

	snprintf(text, sizeof(text), "%d\n", (int)other);
	file_write(e->pid_path, text);
	start_on(e, port);
	tcp_roundtrip(port, MSG, strlen(MSG), MSG_UP);
	assert_true(proc_alive(other, start));
}

#define T(f) cmocka_unit_test_setup_teardown(f, env_setup, env_teardown)

int
main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_second_instance_refused),
		T(test_stale_pid_file_replaced),
		T(test_pid_file_of_other_process_replaced),
	};

	return cmocka_run_group_tests_name("pidfile", tests, NULL, NULL);
}
