/*
 * test_process.c: how the daemon runs as a process: daemon = true detaches
 * and -F keeps it in the foreground; workers drop privileges when started
 * as root; the log level filters, and no connection is logged at info.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "harness.h"

#include <errno.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define CMD_MS		(3 * EM_DEADLINE_MS)
#define CONNECTIONS	100

static const char MSG[] = "process me\n";
static const char MSG_UP[] = "PROCESS ME\n";

static int
write_conf(struct env *e, int workers, bool daemonize)
{
	struct em_conf c;
	int port = port_pick();

	conf_init(&c, workers);
	c.daemonize = daemonize;
	conf_listen_pair(&c, port, "upper");
	env_write_conf(e, &c);
	return port;
}

static pid_t
wait_pid_file(struct env *e)
{
	int64_t deadline = now_ms() + EM_DEADLINE_MS;
	char *text;
	long pid = 0;

	while (pid <= 0) {
		if (now_ms() >= deadline)
			fail_msg("no pid in %s", e->pid_path);
		nap_ms(EM_POLL_NAP_MS);
		text = file_read(e->pid_path, NULL);
		pid = text != NULL ? strtol(text, NULL, 10) : 0;
		free(text);
	}
	return (pid_t)pid;
}

static void
wait_titled_children(pid_t parent, const char *title, size_t n)
{
	int64_t deadline = now_ms() + EM_DEADLINE_MS;
	pid_t pids[EM_MAX_WORKERS];
	size_t got;

	while ((got = proc_children(parent, title, pids, EM_MAX_WORKERS)) !=
	    n) {
		if (now_ms() >= deadline)
			fail_msg("%d has %zu children titled \"%s\", want %zu",
			    (int)parent, got, title, n);
		nap_ms(EM_POLL_NAP_MS);
	}
}

static void
expect_fd_devnull(pid_t pid, int fd)
{
	char path[64], target[PATH_MAX];
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/%d/fd/%d", (int)pid, fd);
	n = readlink(path, target, sizeof(target) - 1);
	assert_true(n > 0);
	target[n] = '\0';
	if (strcmp(target, "/dev/null") != 0)
		fail_msg("detached master's fd %d is %s, want /dev/null", fd,
		    target);
}

/* daemon = true without -F: the command returns 0, the master lives on in
 * its own session with stdio on /dev/null, serves, and -s stop ends it. */
static void
test_daemon_true_detaches(void **state)
{
	struct env *e = *state;
	const char *args[] = { "-c", e->conf_path, NULL };
	const char *stop[] = { "-c", e->conf_path, "-s", "stop", NULL };
	int64_t deadline;
	unsigned long long start;
	int port = write_conf(e, 2, true);
	char *err = NULL;
	pid_t master;
	int rc;

	rc = run_daemon_cmd(e, args, CMD_MS, NULL, &err);
	if (rc != 0)
		fail_msg("daemon = true: exit %d, stderr:\n%s", rc,
		    err != NULL ? err : "(none)");
	free(err);
	master = wait_pid_file(e);
	env_adopt_detached(e, master);
	start = e->detached_start;
	assert_true(proc_alive(master, start));
	assert_true(getsid(master) != getsid(0));
	expect_fd_devnull(master, 0);
	expect_fd_devnull(master, 1);
	expect_fd_devnull(master, 2);
	wait_titled_children(master, EM_TITLE_WORKER, 2);
	tcp_wait_listening(port, EM_DEADLINE_MS);
	tcp_roundtrip(port, MSG, strlen(MSG), MSG_UP);
	assert_int_equal(run_daemon_cmd(e, stop, CMD_MS, NULL, NULL), 0);
	for (deadline = now_ms() + EM_DEADLINE_MS; proc_alive(master, start);
	    nap_ms(EM_POLL_NAP_MS))
		if (now_ms() >= deadline)
			fail_msg("detached master %d survived -s stop",
			    (int)master);
	assert_int_equal(access(e->pid_path, F_OK), -1);
	tcp_wait_refused(port, EM_DEADLINE_MS);
}

/* -F wins over daemon = true: the master stays our child, logging to the
 * stderr we gave it. */
static void
test_foreground_flag_overrides_daemon(void **state)
{
	struct env *e = *state;
	int port = write_conf(e, 2, true);

	env_start_ready(e, 2, port);
	env_wait_workers(e, 2, NULL, EM_DEADLINE_MS);
	tcp_roundtrip(port, MSG, strlen(MSG), MSG_UP);
	assert_false(env_exited(e));
	assert_int_equal(getsid(e->master), getsid(0));
}

/* "Uid:\tR\tE\tS\tFS" (or Gid:) of /proc/PID/status all equal to id. */
static bool
status_ids_are(const char *status, const char *key, unsigned id)
{
	const char *line = strstr(status, key);
	unsigned ids[4];

	if (line == NULL || sscanf(line + strlen(key), "%u %u %u %u", &ids[0],
	    &ids[1], &ids[2], &ids[3]) != 4)
		return false;
	return ids[0] == id && ids[1] == id && ids[2] == id && ids[3] == id;
}

/* Supplementary groups: none, or only gid itself. */
static bool
status_groups_only(const char *status, unsigned gid)
{
	const char *line = strstr(status, "\nGroups:");
	char *end;
	unsigned long g;

	if (line == NULL)
		return false;
	for (line += strlen("\nGroups:"); *line != '\n' && *line != '\0';) {
		g = strtoul(line, &end, 10);
		if (end == line)
			break;
		if (g != gid)
			return false;
		line = end;
	}
	return true;
}

static char *
proc_status(pid_t pid)
{
	char path[64], *status;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	status = file_read(path, NULL);
	if (status == NULL)
		fail_msg("cannot read %s", path);
	return status;
}

/* Started as root with user/group: the master keeps root (it must bind on
 * reload), every worker runs as the user with only the group. */
static void
test_workers_drop_privileges(void **state)
{
	struct env *e = *state;
	struct passwd *pw = getpwnam("nobody");
	struct group *gr = getgrnam("nogroup");
	pid_t pids[2];
	struct em_conf c;
	char *status;
	size_t i;
	int port = port_pick();

	if (geteuid() != 0 || pw == NULL || gr == NULL) {
		print_message("skipped: needs root, user nobody, group "
		    "nogroup\n");
		skip();
	}
	conf_init(&c, 2);
	c.user = "nobody";
	c.group = "nogroup";
	conf_listen_pair(&c, port, "upper");
	env_write_conf(e, &c);
	env_start_ready(e, 2, port);
	env_wait_workers(e, 2, pids, EM_DEADLINE_MS);
	for (i = 0; i < 2; i++) {
		status = proc_status(pids[i]);
		if (!status_ids_are(status, "\nUid:", pw->pw_uid) ||
		    !status_ids_are(status, "\nGid:", gr->gr_gid) ||
		    !status_groups_only(status, gr->gr_gid))
			fail_msg("worker %d is not nobody:nogroup:\n%s",
			    (int)pids[i], status);
		free(status);
	}
	status = proc_status(e->master);
	assert_true(status_ids_are(status, "\nUid:", 0));
	free(status);
	tcp_roundtrip(port, MSG, strlen(MSG), MSG_UP);
}

/* A user that does not exist: the daemon refuses to start rather than run
 * its workers as root. */
static void
test_unknown_user_refused(void **state)
{
	struct env *e = *state;
	const char *args[] = { "-F", "-c", e->conf_path, NULL };
	struct em_conf c;
	char *err = NULL;
	int rc;

	if (geteuid() != 0) {
		print_message("skipped: needs root\n");
		skip();
	}
	conf_init(&c, 2);
	c.user = "no-such-user-echomaster";
	conf_listen_pair(&c, port_pick(), "upper");
	env_write_conf(e, &c);
	rc = run_daemon_cmd(e, args, CMD_MS, NULL, &err);
	print_message("unknown user: exit %d, stderr: %s", rc,
	    err != NULL ? err : "(none)\n");
	free(err);
	assert_true(rc == 1 || rc == 2);
}

static size_t
count_lines(const char *text, size_t from)
{
	size_t n = 0;

	for (text += from; *text != '\0'; text++)
		n += *text == '\n';
	return n;
}

/* level = "warning": nothing below it is written, through start, reload
 * and shutdown. */
static void
test_log_level_filters(void **state)
{
	struct env *e = *state;
	static const char *const below[] = { ": debug: ", ": info: ",
	    ": notice: " };
	struct em_conf c;
	char *log;
	size_t i;
	int port = port_pick();

	conf_init(&c, 2);
	c.level = "warning";
	conf_listen_pair(&c, port, "upper");
	env_write_conf(e, &c);
	env_start(e);
	tcp_wait_listening(port, EM_DEADLINE_MS);
	env_wait_workers(e, 2, NULL, EM_DEADLINE_MS);
	tcp_roundtrip(port, MSG, strlen(MSG), MSG_UP);
	env_signal(e, SIGTERM);
	assert_int_equal(env_wait_exit(e, EM_DEADLINE_MS), 0);
	log = env_log(e);
	for (i = 0; i < sizeof(below) / sizeof(*below); i++)
		if (strstr(log, below[i]) != NULL)
			fail_msg("level = \"warning\" but the log has "
			    "\"%s\" lines:\n%s", below[i], log);
	free(log);
}

/* "nothing is logged per connection at info or above": a hundred TCP
 * connections and UDP exchanges add (next to) nothing to the log. */
static void
test_no_log_per_connection(void **state)
{
	struct env *e = *state;
	char reply[64], *log;
	size_t off, lines;
	int i, port = write_conf(e, 2, false);

	env_start_ready(e, 2, port);
	off = env_log_size(e);
	for (i = 0; i < CONNECTIONS; i++) {
		tcp_roundtrip(port, MSG, strlen(MSG), MSG_UP);
		assert_int_equal(udp_exchange(port, MSG, strlen(MSG), reply,
		    sizeof(reply), EM_DEADLINE_MS), strlen(MSG));
	}
	log = env_log(e);
	lines = count_lines(log, off);
	if (lines >= CONNECTIONS / 10)
		fail_msg("%d connections added %zu log lines:\n%s",
		    CONNECTIONS, lines, log + off);
	free(log);
}

#define T(f) cmocka_unit_test_setup_teardown(f, env_setup, env_teardown)

int
main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_daemon_true_detaches),
		T(test_foreground_flag_overrides_daemon),
		T(test_workers_drop_privileges),
		T(test_unknown_user_refused),
		T(test_log_level_filters),
		T(test_no_log_per_connection),
	};

	return cmocka_run_group_tests_name("process", tests, NULL, NULL);
}
