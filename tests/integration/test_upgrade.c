/*
 * test_upgrade.c: the live binary upgrade (`echomaster -s upgrade`,
 * SIGUSR2) as clients and operators see it. The daemon runs from a copy of
 * the binary in the test's directory; the test replaces that file with
 * another build (or a script, or nothing) and asks for the upgrade.
 *
 * Under load (streams that verify every byte, and a connect-echo-close
 * churn) a good upgrade refuses and breaks nothing, and leaves exactly one
 * master, named by the pid file, running the new file, with all the
 * workers its children. A bad new binary (missing, exiting at once,
 * crashing as it starts, never ready) fails the command with its reason
 * while the old master serves on, every connection intact.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "harness.h"

#include <linux/filter.h>
#include <sys/socket.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* The old workers must be gone this soon after the command's answer. */
#define OLD_GONE_MS	2000
#define MANY_STREAMS	500
#define FEW_STREAMS	50
#define STREAM_LEN	(48 * 1024)
/* Each load step lets every stream send this much more. */
#define STREAM_STEP	256

/* ---- the binary the daemon runs --------------------------------------- */

static char orig_bin[PATH_MAX];

static const char *
hooks_bin(void)
{
	const char *hooks = getenv("ECHOMASTER_TESTHOOKS");

	if (hooks == NULL || access(hooks, X_OK) != 0)
		fail_msg("ECHOMASTER_TESTHOOKS must name the test-hooks build (make check sets it)");
	return hooks;
}

/* The path of the daemon's own copy of the binary. */
static const char *
copy_path(struct env *e)
{
	static char path[PATH_MAX + 16];

	snprintf(path, sizeof(path), "%s/echomaster", e->dir);
	return path;
}

/* Puts FROM's bytes at PATH by rename, as a package manager does: the old file lives on. */
static void
install_file(struct env *e, const char *from, const char *path)
{
	char tmp[PATH_MAX + 32];
	size_t len;
	char *bytes = file_read(from, &len);
	int fd;

	(void)e;
	if (bytes == NULL)
		fail_msg("cannot read %s", from);
	snprintf(tmp, sizeof(tmp), "%s.new", path);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0755);
	assert_true(fd >= 0);
	assert_true(write(fd, bytes, len) == (ssize_t)len);
	assert_int_equal(close(fd), 0);
	assert_int_equal(rename(tmp, path), 0);
	free(bytes);
}

static void
install_script(const char *path, const char *text)
{
	char tmp[PATH_MAX + 32];

	snprintf(tmp, sizeof(tmp), "%s.new", path);
	file_write(tmp, text);
	assert_int_equal(chmod(tmp, 0755), 0);
	assert_int_equal(rename(tmp, path), 0);
}

/* Starts the daemon from its copy of the binary and waits until it serves. */
static void
start_from_copy(struct env *e, const char *binary, int workers, int port)
{
	const char *env = getenv("ECHOMASTER");

	snprintf(orig_bin, sizeof(orig_bin), "%s", env != NULL && *env ? env : em_binary());
	install_file(e, binary != NULL ? binary : orig_bin, copy_path(e));
	setenv("ECHOMASTER", copy_path(e), 1);
	env_start(e);
	setenv("ECHOMASTER", orig_bin, 1);
	if (e->ctl_path[0] != '\0') {
		env_wait_serving(e, 1, workers, EM_DEADLINE_MS);
	} else {
		char ready[64];
		snprintf(ready, sizeof(ready), "ready: %d workers, generation 1", workers);
		env_wait_log(e, ready, EM_DEADLINE_MS);
	}
	tcp_wait_listening(port, EM_DEADLINE_MS);
}

static void
conf_upgrade(struct env *e, struct em_conf *c, char *extra, size_t len, int workers, int port,
    bool control)
{
	conf_init(c, workers);
	conf_listen(c, "tcp", port, "upper");
	if (control)
		snprintf(extra, len, "control_socket = \"%s\";\nreload_handover = true;\n",
		    env_control_socket(e));
	else
		snprintf(extra, len, "reload_handover = true;\n");
	c->extra = extra;
}

/* ---- processes ---------------------------------------------------------- */

static pid_t
pid_file_pid(struct env *e)
{
	char *text = file_read(e->pid_path, NULL);
	long pid = text != NULL ? strtol(text, NULL, 10) : 0;

	free(text);
	return (pid_t)pid;
}

/* Masters (by title) in the daemon's process group. */
static size_t
masters_in_group(pid_t pgrp, pid_t *pids, size_t max)
{
	DIR *d = opendir("/proc");
	struct dirent *de;
	size_t n = 0;

	assert_non_null(d);
	while ((de = readdir(d)) != NULL) {
		pid_t pid = (pid_t)atoi(de->d_name);
		struct proc_info pi;
		char title[256];
		if (pid <= 0 || proc_info(pid, &pi) == -1 || pi.pgrp != pgrp || pi.state == 'Z')
			continue;
		if (proc_title(pid, title, sizeof(title)) == 0 &&
		    strncmp(title, EM_TITLE_MASTER, strlen(EM_TITLE_MASTER)) == 0) {
			if (n < max)
				pids[n] = pid;
			n++;
		}
	}
	closedir(d);
	return n;
}

static void
exe_expect(pid_t pid, const char *path)
{
	char link[64], target[PATH_MAX];
	ssize_t n;

	snprintf(link, sizeof(link), "/proc/%d/exe", (int)pid);
	n = readlink(link, target, sizeof(target) - 1);
	assert_true(n > 0);
	target[n] = '\0';
	if (strcmp(target, path) != 0)
		fail_msg("master %d runs %s, want %s", (int)pid, target, path);
}

/* `echomaster -c CONF -s CMD` in the background, its stdout and stderr in OUT. */
static pid_t
cmd_start(struct env *e, const char *cmd, const char *out)
{
	pid_t pid;

	fflush(NULL);
	if ((pid = fork()) == -1)
		fail_msg("fork: %s", strerror(errno));
	if (pid == 0) {
		int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		if (fd == -1)
			_exit(126);
		dup2(fd, STDOUT_FILENO);
		dup2(fd, STDERR_FILENO);
		execl(orig_bin, orig_bin, "-c", e->conf_path, "-s", cmd, (char *)NULL);
		_exit(127);
	}
	return pid;
}

/* True once the command exited; *rc its exit status (-1: killed). */
static bool
cmd_done(pid_t pid, int *rc)
{
	int status;

	if (waitpid(pid, &status, WNOHANG) != pid)
		return false;
	*rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
	return true;
}

/* `echomaster -s CMD`, waited for: its exit status, its output in *out. */
static int
cmd_run(struct env *e, const char *cmd, char **out)
{
	const char *args[] = { "-c", e->conf_path, "-s", cmd, NULL };

	return run_daemon_cmd(e, args, EM_DEADLINE_MS, out, out == NULL ? NULL : out + 1);
}

/* ---- load: streams that check every byte, and a churn ------------------- */

struct load {
	struct em_stream *s;
	size_t n;
	size_t limit;
	int port;
	uint64_t churned;
	uint64_t refused;
	uint64_t broken;
};

static void
load_open(struct load *l, int port, size_t n)
{
	memset(l, 0, sizeof(*l));
	l->port = port;
	l->n = n;
	l->s = calloc(n, sizeof(*l->s));
	assert_non_null(l->s);
	for (size_t i = 0; i < n; i++)
		stream_open(&l->s[i], port, STREAM_LEN, 0x5000 + (uint32_t)i);
	l->limit = STREAM_STEP;
	if (streams_pump(l->s, n, l->limit, false, EM_DEADLINE_MS) == -1)
		fail_msg("streams before the upgrade: %s", strerror(errno));
}

/* One connect, one echo, one close: a refusal or a wrong answer is counted. */
static void
load_churn(struct load *l)
{
	static const char msg[] = "churn me\n";
	char got[sizeof(msg)];
	int fd = tcp_connect(l->port, 2000);

	l->churned++;
	if (fd == -1) {
		if (errno == ECONNREFUSED)
			l->refused++;
		else
			l->broken++;
		return;
	}
	if (tcp_send_all(fd, msg, sizeof(msg) - 1, 2000) == -1 ||
	    tcp_read_exact(fd, got, sizeof(msg) - 1, 2000) != (ssize_t)sizeof(msg) - 1 ||
	    memcmp(got, "CHURN ME\n", sizeof(msg) - 1) != 0)
		l->broken++;
	close(fd);
}

/* The streams move on a little (never to their end), and two churns. */
static void
load_step(struct load *l)
{
	if (l->limit + STREAM_STEP < STREAM_LEN)
		l->limit += STREAM_STEP;
	if (streams_step(l->s, l->n, l->limit, false, 2) == -1) {
		l->broken++;
		fail_msg("a stream broke: %s", strerror(errno));
	}
	load_churn(l);
	load_churn(l);
}

/* Every stream to its end and EOF, every byte checked, then closed. */
static void
load_finish(struct load *l)
{
	char what[64];

	if (streams_pump(l->s, l->n, STREAM_LEN, true, EM_DEADLINE_MS) == -1)
		fail_msg("streams after the upgrade: %s", strerror(errno));
	for (size_t i = 0; i < l->n; i++) {
		snprintf(what, sizeof(what), "stream %zu", i);
		assert_int_equal(l->s[i].rcvd, STREAM_LEN);
		bytes_expect_upper(l->s[i].in, l->s[i].out, STREAM_LEN, what);
		stream_close(&l->s[i]);
	}
	free(l->s);
	print_message("load: %zu streams of %d bytes intact; %llu churned, %llu refused, "
	    "%llu broken\n", l->n, STREAM_LEN, (unsigned long long)l->churned,
	    (unsigned long long)l->refused, (unsigned long long)l->broken);
	assert_int_equal(l->refused, 0);
	assert_int_equal(l->broken, 0);
}

/* Runs `-s upgrade` while the load goes on; returns its exit status, its output in *out. */
static int
upgrade_under_load(struct env *e, struct load *l, char **out)
{
	char path[PATH_MAX + 16];
	int64_t deadline = now_ms() + EM_DEADLINE_MS;
	pid_t cmd;
	int rc;

	snprintf(path, sizeof(path), "%s/upgrade.out", e->dir);
	cmd = cmd_start(e, "upgrade", path);
	while (!cmd_done(cmd, &rc)) {
		if (now_ms() >= deadline) {
			kill(cmd, SIGKILL);
			env_dump_log(e);
			fail_msg("echomaster -s upgrade still running after %d ms", EM_DEADLINE_MS);
		}
		load_step(l);
	}
	*out = file_read(path, NULL);
	assert_non_null(*out);
	return rc;
}

/* The new master from "upgrade ok: pid N, version V, generation G". */
static pid_t
upgrade_ok_pid(const char *out, unsigned generation)
{
	char want[64];
	long pid;

	if (sscanf(out, "upgrade ok: pid %ld, version ", &pid) != 1)
		fail_msg("not an upgrade ok: %s", out);
	snprintf(want, sizeof(want), "version %s, generation %u\n", EM_VERSION, generation);
	if (strstr(out, want) == NULL)
		fail_msg("\"%s\" lacks \"%s\"", out, want);
	return (pid_t)pid;
}

/* Waits, the load going on, until none of the old workers is alive. */
static void
old_gone_under_load(struct env *e, struct load *l, const pid_t *old, const unsigned long long *start,
    size_t n, int within_ms)
{
	int64_t t0 = now_ms();

	for (;;) {
		size_t alive = 0;
		for (size_t i = 0; i < n; i++)
			alive += proc_alive(old[i], start[i]);
		if (alive == 0)
			break;
		if (now_ms() - t0 > within_ms) {
			env_dump_log(e);
			fail_msg("%zu old workers still alive %d ms after the upgrade's answer", alive,
			    within_ms);
		}
		if (l != NULL)
			load_step(l);
		else
			nap_ms(EM_POLL_NAP_MS);
	}
	print_message("old workers gone %lld ms after the upgrade's answer\n",
	    (long long)(now_ms() - t0));
}

/* After a good upgrade: one master, NEW, named by the pid file, running the copy; its workers. */
static void
expect_one_master(struct env *e, pid_t pgrp, pid_t new_master, int workers)
{
	pid_t masters[8], kids[EM_MAX_WORKERS];
	int64_t deadline = now_ms() + EM_DEADLINE_MS;
	size_t n;

	while ((n = masters_in_group(pgrp, masters, 8)) != 1 && now_ms() < deadline)
		nap_ms(EM_POLL_NAP_MS);
	assert_int_equal(n, 1);
	assert_int_equal(masters[0], new_master);
	assert_int_equal(pid_file_pid(e), new_master);
	exe_expect(new_master, copy_path(e));
	n = proc_children(new_master, EM_TITLE_WORKER, kids, EM_MAX_WORKERS);
	assert_int_equal(n, (size_t)workers);
	assert_int_equal(proc_children(new_master, NULL, NULL, 0), (size_t)workers);
}

/* The old master, our child, exits once it has handed over. */
static void
old_master_exits(struct env *e, pid_t new_master)
{
	int status = env_wait_exit(e, EM_DEADLINE_MS);
	char line[64];

	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	snprintf(line, sizeof(line), "upgrade: handed over to pid %d", (int)new_master);
	assert_true(env_log_has(e, line));
	/* Not our child: teardown kills it by pid, and the group. */
	env_adopt_detached(e, new_master);
}

/*
 * Waits for NEEDLE in the log once the first master, our child, has
 * exited (env_wait_log would take that exit for a failure): a line the
 * new master writes may come after it.
 */
static void
log_wait_after_first(struct env *e, const char *needle)
{
	for (int64_t deadline = now_ms() + EM_DEADLINE_MS; !env_log_has(e, needle);) {
		if (now_ms() >= deadline) {
			env_dump_log(e);
			fail_msg("no \"%s\" in the log", needle);
		}
		nap_ms(EM_POLL_NAP_MS);
	}
}

static void
record_workers(struct env *e, size_t n, pid_t *pids, unsigned long long *start)
{
	env_wait_workers(e, n, pids, EM_DEADLINE_MS);
	for (size_t i = 0; i < n; i++)
		start[i] = proc_start_time(pids[i]);
}

/*
 * The old workers could not read the new ones' load (another master's
 * scoreboard): they spread by count. Every new worker took a fair part
 * of the TOTAL streams (and of any churn connection open at the time).
 */
static void
expect_spread(struct env *e, unsigned gen, int workers, uint64_t total)
{
	struct em_status st;
	uint64_t sum = 0;

	assert_int_equal(env_status(e, &st, EM_DEADLINE_MS), 0);
	for (size_t i = 0; i < st.n; i++) {
		if (st.w[i].generation != gen)
			continue;
		print_message("worker %d took %llu connections\n", (int)st.w[i].pid,
		    (unsigned long long)st.w[i].moved_in);
		assert_true(st.w[i].moved_in >= total / (uint64_t)workers / 2);
		sum += st.w[i].moved_in;
	}
	assert_true(sum >= total);
}

/*
 * The old master's "generation G handed over N connections in T ms (W
 * workers; K could not move and were drained)": at least the streams
 * (a churn connection open at that moment moves too), none kept.
 */
static void
expect_handed_over(struct env *e, unsigned gen, unsigned long streams)
{
	char needle[64], *line;
	unsigned long moved, kept;
	long ms;
	int workers;

	snprintf(needle, sizeof(needle), "generation %u handed over ", gen);
	if ((line = env_log_line(e, needle)) == NULL)
		fail_msg("no \"%s\" in the log", needle);
	print_message("%s\n", strstr(line, needle));
	assert_int_equal(sscanf(strstr(line, needle) + strlen(needle),
	    "%lu connections in %ld ms (%d workers; %lu could not", &moved, &ms, &workers, &kept), 4);
	assert_true(moved >= streams);
	assert_int_equal(kept, 0);
	free(line);
}

/* The fixture: every upgrade's masters share the first one's process group. */
static int
up_setup(void **state)
{
	return env_setup(state);
}

static int
up_teardown(void **state)
{
	struct env *e = *state;

	if (e != NULL && e->master > 0)
		kill(-e->master, SIGKILL);
	return env_teardown(state);
}

/* ---- the tests -------------------------------------------------------- */

static void
test_upgrade_under_load(void **state)
{
	struct env *e = *state;
	struct em_conf c;
	char extra[512], *out;
	pid_t old[4], new_master, pgrp;
	unsigned long long start[4];
	struct load l;
	int port = port_pick();

	conf_upgrade(e, &c, extra, sizeof(extra), 3, port, true);
	env_write_conf(e, &c);
	start_from_copy(e, NULL, 3, port);
	pgrp = e->master;
	record_workers(e, 3, old, start);
	load_open(&l, port, MANY_STREAMS);
	install_file(e, hooks_bin(), copy_path(e));   /* another build */
	assert_int_equal(upgrade_under_load(e, &l, &out), 0);
	new_master = upgrade_ok_pid(out, 2);
	free(out);
	old_gone_under_load(e, &l, old, start, 3, OLD_GONE_MS);
	for (int i = 0; i < 20; i++)
		load_step(&l);
	load_finish(&l);
	old_master_exits(e, new_master);
	expect_one_master(e, pgrp, new_master, 3);
	expect_handed_over(e, 1, MANY_STREAMS);
	expect_spread(e, 2, 3, MANY_STREAMS);
}

/* A failed upgrade: the command says why, and the old master serves on untouched. */
static void
failure_case(void **state, const char *binary, const char *script, const char *hook,
    const char *reason)
{
	struct env *e = *state;
	struct em_conf c;
	struct em_status st;
	char extra[512], *out, *outs[2], hook_file[PATH_MAX + 16];
	pid_t before[2], after[2], pid_before;
	unsigned long long start[2];
	struct load l;
	int port = port_pick();

	conf_upgrade(e, &c, extra, sizeof(extra), 2, port, true);
	env_write_conf(e, &c);
	start_from_copy(e, NULL, 2, port);
	pid_before = pid_file_pid(e);
	assert_int_equal(pid_before, e->master);
	record_workers(e, 2, before, start);
	load_open(&l, port, FEW_STREAMS);
	if (hook != NULL) {
		snprintf(hook_file, sizeof(hook_file), "%s/%s", e->dir, hook);
		file_write(hook_file, "on\n");
	}
	if (binary != NULL)
		install_file(e, binary, copy_path(e));
	else if (script != NULL) {
		char *text = text_replace(script, "BIN", orig_bin);
		install_script(copy_path(e), text);
		free(text);
	} else
		assert_int_equal(unlink(copy_path(e)), 0);
	assert_int_equal(upgrade_under_load(e, &l, &out), 1);
	print_message("-s upgrade: %s", out);
	if (strncmp(out, "upgrade failed: ", 16) != 0 || strstr(out, reason) == NULL)
		fail_msg("\"%s\" is not a failure saying \"%s\"", out, reason);
	free(out);
	/* Served on, untouched: the same master, workers, pid file, generation. */
	for (int i = 0; i < 20; i++)
		load_step(&l);
	assert_false(env_exited(e));
	assert_int_equal(pid_file_pid(e), pid_before);
	env_wait_workers(e, 2, after, EM_DEADLINE_MS);
	assert_memory_equal(before, after, sizeof(before));
	assert_int_equal(env_status(e, &st, EM_DEADLINE_MS), 0);
	assert_int_equal(st.generation, 1);
	assert_int_equal(masters_in_group(e->master, NULL, 0), 1);
	load_finish(&l);
	tcp_roundtrip(port, "after\n", 6, "AFTER\n");
	/* And the next upgrade, with a good binary, works. */
	if (hook != NULL)
		unlink(hook_file);
	install_file(e, orig_bin, copy_path(e));
	assert_int_equal(cmd_run(e, "upgrade", outs), 0);
	pid_before = upgrade_ok_pid(outs[0], 2);
	free(outs[0]);
	free(outs[1]);
	old_master_exits(e, pid_before);
	tcp_roundtrip(port, "later\n", 6, "LATER\n");
	assert_int_equal(env_control(e, "status", &out, EM_DEADLINE_MS), 0);
	if (strstr(out, "upgrades 1 ok / 1 failed") == NULL)
		fail_msg("status: %s", out);
	free(out);
}

static void
test_upgrade_binary_missing(void **state)
{
	failure_case(state, NULL, NULL, NULL, "exec failed: No such file or directory");
}

static void
test_upgrade_binary_exits_at_once(void **state)
{
	/* It passes the check, then exits 1 as the new master. */
	failure_case(state, NULL, "#!/bin/sh\ncase \" $* \" in *\" -t \"*) exec BIN \"$@\";; esac\n"
	    "exit 1\n", NULL, "exited with status 1 before it was ready");
}

static void
test_upgrade_binary_crashes(void **state)
{
	struct env *e = *state;
	char path[PATH_MAX + 16];

	e->crashes_expected = true;  /* the new master's SIGSEGV is in the log on purpose */
	snprintf(path, sizeof(path), "%s/crash", e->dir);
	setenv("EM_TEST_UPGRADE_CRASH", path, 1);
	failure_case(state, hooks_bin(), NULL, "crash", "killed by signal 11 (SIGSEGV)");
	unsetenv("EM_TEST_UPGRADE_CRASH");
}

/* Never ready: refused meanwhile, a second upgrade and a reload alike; then failed in time. */
static void
test_upgrade_never_ready(void **state)
{
	struct env *e = *state;
	char path[PATH_MAX + 16], first[PATH_MAX + 16], *out[2];
	struct em_conf c;
	struct load l;
	char extra[512];
	int port = port_pick(), rc;
	pid_t cmd;
	int64_t t0;

	snprintf(path, sizeof(path), "%s/never", e->dir);
	setenv("EM_TEST_NEVER_READY", path, 1);
	conf_upgrade(e, &c, extra, sizeof(extra), 2, port, true);
	env_write_conf(e, &c);
	start_from_copy(e, NULL, 2, port);
	load_open(&l, port, FEW_STREAMS);
	file_write(path, "on\n");
	install_file(e, hooks_bin(), copy_path(e));
	snprintf(first, sizeof(first), "%s/first.out", e->dir);
	t0 = now_ms();
	cmd = cmd_start(e, "upgrade", first);
	env_wait_log(e, "upgrade: started the new master", EM_DEADLINE_MS);
	assert_int_equal(cmd_run(e, "upgrade", out), 1);
	assert_non_null(strstr(out[0], "upgrade refused: an upgrade is already in progress"));
	free(out[0]);
	free(out[1]);
	assert_int_equal(cmd_run(e, "reload", out), 1);
	assert_non_null(strstr(out[0], "reload refused: an upgrade is in progress"));
	free(out[0]);
	free(out[1]);
	tcp_roundtrip(port, "meanwhile\n", 10, "MEANWHILE\n");
	while (!cmd_done(cmd, &rc)) {
		if (now_ms() - t0 > EM_DEADLINE_MS)
			fail_msg("the first upgrade did not end");
		load_step(&l);
		nap_ms(EM_POLL_NAP_MS);
	}
	assert_int_equal(rc, 1);
	out[0] = file_read(first, NULL);
	print_message("-s upgrade: %s", out[0]);
	assert_non_null(strstr(out[0], "upgrade failed: the new master"));
	assert_non_null(strstr(out[0], "was not ready within 10 s"));
	free(out[0]);
	unsetenv("EM_TEST_NEVER_READY");
	assert_false(env_exited(e));
	assert_int_equal(masters_in_group(e->master, NULL, 0), 1);
	env_wait_serving(e, 1, 2, EM_DEADLINE_MS);
	load_finish(&l);
	tcp_roundtrip(port, "after\n", 6, "AFTER\n");
}

/* Three in a row, then a reload and a worker kill: all still supervised. */
static void
test_upgrade_three_then_reload_and_kill(void **state)
{
	struct env *e = *state;
	struct em_conf c;
	char extra[512], *out[2];
	pid_t pgrp, master, workers[2];
	struct em_status st;
	int port = port_pick();

	conf_upgrade(e, &c, extra, sizeof(extra), 2, port, true);
	env_write_conf(e, &c);
	start_from_copy(e, NULL, 2, port);
	pgrp = master = e->master;
	for (unsigned k = 1; k <= 3; k++) {
		install_file(e, k % 2 ? hooks_bin() : orig_bin, copy_path(e));
		assert_int_equal(cmd_run(e, "upgrade", out), 0);
		master = upgrade_ok_pid(out[0], k + 1);
		free(out[0]);
		free(out[1]);
		if (k == 1)
			old_master_exits(e, master);
		env_adopt_detached(e, master);
		env_wait_serving(e, k + 1, 2, EM_DEADLINE_MS);
		tcp_roundtrip(port, "hello\n", 6, "HELLO\n");
	}
	expect_one_master(e, pgrp, master, 2);
	assert_int_equal(cmd_run(e, "reload", out), 0);
	assert_non_null(strstr(out[0], "reload ok: generation 5"));
	free(out[0]);
	free(out[1]);
	env_wait_serving(e, 5, 2, EM_DEADLINE_MS);
	assert_int_equal(env_status(e, &st, EM_DEADLINE_MS), 0);
	/* Generation 4's workers are titled so until they read their hand-over: wait them out. */
	env_wait_workers_of(e, master, 2, workers, EM_DEADLINE_MS);
	assert_int_equal(kill(workers[0], SIGKILL), 0);
	/* Respawned by the third new master. */
	for (int64_t deadline = now_ms() + EM_DEADLINE_MS;;) {
		pid_t now[2];
		if (proc_children(master, EM_TITLE_WORKER, now, 2) == 2 && !pids_contain(now, 2,
		    workers[0]))
			break;
		if (now_ms() >= deadline)
			fail_msg("the killed worker was not respawned");
		nap_ms(EM_POLL_NAP_MS);
	}
	env_wait_serving(e, 5, 2, EM_DEADLINE_MS);
	tcp_roundtrip(port, "hello\n", 6, "HELLO\n");
	assert_int_equal(env_status(e, &st, EM_DEADLINE_MS), 0);
	assert_true(env_log_has(e, "upgrade: took over from pid"));
	assert_int_equal(pid_file_pid(e), master);
	/* The figures carried from master to master. */
	assert_int_equal(env_control(e, "status", out, EM_DEADLINE_MS), 0);
	if (strstr(out[0], "reloads 1 ok / 0 failed, upgrades 3 ok / 0 failed") == NULL)
		fail_msg("status: %s", out[0]);
	free(out[0]);
}

/* Without a control socket: SIGUSR2 through the pid file, and the log tells. */
static void
test_upgrade_by_signal(void **state)
{
	struct env *e = *state;
	struct em_conf c;
	char extra[512], *out[2], line[96];
	pid_t pgrp, master;
	int64_t deadline = now_ms() + EM_DEADLINE_MS;
	int port = port_pick();

	conf_upgrade(e, &c, extra, sizeof(extra), 2, port, false);
	env_write_conf(e, &c);
	start_from_copy(e, NULL, 2, port);
	pgrp = e->master;
	install_file(e, hooks_bin(), copy_path(e));
	assert_int_equal(cmd_run(e, "upgrade", out), 0);
	assert_non_null(strstr(out[1], "sent SIGUSR2"));
	assert_non_null(strstr(out[1], "outcome cannot be reported"));
	free(out[0]);
	free(out[1]);
	env_wait_log(e, "upgrade ok: pid ", EM_DEADLINE_MS);
	while ((master = pid_file_pid(e)) == pgrp && now_ms() < deadline)
		nap_ms(EM_POLL_NAP_MS);
	snprintf(line, sizeof(line), "upgrade ok: pid %d, version %s, generation 2", (int)master,
	    EM_VERSION);
	assert_true(env_log_has(e, line));
	old_master_exits(e, master);
	expect_one_master(e, pgrp, master, 2);
	tcp_roundtrip(port, "hello\n", 6, "HELLO\n");
}

/*
 * The old master writes a state format the new binary does not know (a
 * test build told to): the new one says so, and the old workers drain,
 * cutting nothing; once the old master is gone the new one takes the pid
 * file and the control socket.
 */
static void
test_upgrade_unknown_state_drains(void **state)
{
	struct env *e = *state;
	struct em_conf c;
	char extra[512], *out;
	pid_t pgrp, master;
	struct em_status st;
	struct load l;
	int port = port_pick();

	setenv("EM_TEST_UPGRADE_STATE_VERSION", "99", 1);
	conf_upgrade(e, &c, extra, sizeof(extra), 2, port, true);
	env_write_conf(e, &c);
	start_from_copy(e, hooks_bin(), 2, port);
	unsetenv("EM_TEST_UPGRADE_STATE_VERSION");
	pgrp = e->master;
	load_open(&l, port, FEW_STREAMS);
	install_file(e, orig_bin, copy_path(e));
	assert_int_equal(upgrade_under_load(e, &l, &out), 0);
	master = upgrade_ok_pid(out, 2);
	free(out);
	env_wait_log(e, "did not understand our state", EM_DEADLINE_MS);
	/* The old workers drain: every stream ends whole, then the old master goes. */
	for (int i = 0; i < 20; i++)
		load_step(&l);
	load_finish(&l);
	old_master_exits(e, master);
	/* It takes the place once it sees the old master's channel close: maybe after our reaping. */
	log_wait_after_first(e, "upgrade: took over from pid");
	expect_one_master(e, pgrp, master, 2);
	assert_int_equal(env_status(e, &st, EM_DEADLINE_MS), 0);
	assert_int_equal(st.generation, 2);
	assert_false(env_log_has(e, "generation 1 handed over"));
	tcp_roundtrip(port, "hello\n", 6, "HELLO\n");
}

/* The graceful stop's filter (src/master/quiesce.c), written again: SYN without ACK dropped. */
static void
attach_syn_filter(int fd)
{
	struct sock_filter code[] = {
		BPF_STMT(BPF_LD | BPF_B | BPF_ABS, 13),
		BPF_STMT(BPF_ALU | BPF_AND | BPF_K, 0x12),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0x02, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, 0),
		BPF_STMT(BPF_RET | BPF_K, 0xffffffff),
	};
	struct sock_fprog prog = { .len = sizeof(code) / sizeof(code[0]), .filter = code };

	assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof(prog)), 0);
}

/*
 * A second upgrade while the previous master still drains (reload_handover
 * false, a client held) is refused, naming it: both would be our peers on
 * the one upgrade channel. Once it has exited (its EOF seen once, not in a
 * loop), the next upgrade goes ahead.
 */
static void
test_upgrade_refused_while_previous_drains(void **state)
{
	struct env *e = *state;
	struct em_conf c;
	char extra[512], *out[2], want[128];
	pid_t first = 0, second;
	int port = port_pick(), hold;

	conf_init(&c, 1);
	conf_listen(&c, "tcp", port, "upper");
	c.shutdown_timeout = 120;
	snprintf(extra, sizeof(extra), "control_socket = \"%s\";\nreload_handover = false;\n",
	    env_control_socket(e));
	c.extra = extra;
	env_write_conf(e, &c);
	start_from_copy(e, NULL, 1, port);
	hold = tcp_open_echoed(port, "hold\n", 5, "HOLD\n");
	install_file(e, hooks_bin(), copy_path(e));
	assert_int_equal(cmd_run(e, "upgrade", out), 0);
	first = upgrade_ok_pid(out[0], 2);
	free(out[0]);
	free(out[1]);
	env_adopt_detached(e, first);
	env_wait_log(e, "upgrade: took over from pid", EM_DEADLINE_MS);
	env_wait_serving(e, 2, 1, EM_DEADLINE_MS);
	/* The old master drains the held client: it is still there. */
	install_file(e, orig_bin, copy_path(e));
	assert_int_equal(cmd_run(e, "upgrade", out), 1);
	snprintf(want, sizeof(want), "upgrade refused: the previous master %d is still draining",
	    (int)e->master);
	if (strstr(out[0], want) == NULL)
		fail_msg("\"%s\" lacks \"%s\"", out[0], want);
	free(out[0]);
	free(out[1]);
	assert_false(env_exited(e));
	tcp_roundtrip(port, "meanwhile\n", 10, "MEANWHILE\n");
	/* The client goes, the old master exits: seen once, and the next upgrade works. */
	assert_int_equal(tcp_send_all(hold, "bye\n", 4, EM_DEADLINE_MS), 0);
	close(hold);
	old_master_exits(e, first);
	snprintf(want, sizeof(want), "upgrade: the old master %d has exited", (int)e->master);
	log_wait_after_first(e, want);
	assert_int_equal(cmd_run(e, "upgrade", out), 0);
	second = upgrade_ok_pid(out[0], 3);
	free(out[0]);
	free(out[1]);
	env_adopt_detached(e, second);
	env_wait_serving(e, 3, 1, EM_DEADLINE_MS);
	snprintf(want, sizeof(want), "upgrade: the old master %d has exited", (int)first);
	log_wait_after_first(e, want);
	tcp_roundtrip(port, "hello\n", 6, "HELLO\n");
	snprintf(want, sizeof(want), "upgrade: the old master %d has exited", (int)e->master);
	assert_int_equal(env_log_count(e, want), 1);
	snprintf(want, sizeof(want), "upgrade: the old master %d has exited", (int)first);
	assert_int_equal(env_log_count(e, want), 1);
}

/* The pid in the log just after OFFSET's "upgrade: started the new master ". */
static pid_t
new_master_started(struct env *e, size_t *offset)
{
	static const char needle[] = "upgrade: started the new master ";
	char *log;
	long pid;

	*offset = env_wait_log_from(e, *offset, needle, EM_DEADLINE_MS);
	log = env_log(e);
	assert_non_null(log);
	pid = strtol(log + *offset, NULL, 10);
	free(log);
	assert_true(pid > 0);
	return (pid_t)pid;
}

/*
 * One upgrade whose new master (never ready) gets SIG before it took over:
 * the upgrade fails, and the old master's pid file, control socket and
 * listeners are as they were: the new master left them alone at its exit
 * (and put no graceful stop's filter on the shared listeners).
 */
static void
stop_new_master_round(struct env *e, int sig, int port)
{
	char path[PATH_MAX + 16], want[96], *out, *status;
	size_t off = env_log_size(e);
	pid_t cmd, new_master;
	int64_t t0 = now_ms();
	int rc;

	snprintf(path, sizeof(path), "%s/stop.out", e->dir);
	cmd = cmd_start(e, "upgrade", path);
	new_master = new_master_started(e, &off);
	/* Its signals are the signalfd's from here on, and its workers start. */
	env_wait_log_from(e, off, "upgrade: started by the old master", EM_DEADLINE_MS);
	env_wait_log_from(e, off, "started (slot 1, generation 2)", EM_DEADLINE_MS);
	assert_int_equal(kill(new_master, sig), 0);
	while (!cmd_done(cmd, &rc)) {
		if (now_ms() - t0 > EM_DEADLINE_MS)
			fail_msg("the upgrade did not end after the new master's SIG%s",
			    sigabbrev_np(sig));
		nap_ms(EM_POLL_NAP_MS);
	}
	out = file_read(path, NULL);
	assert_non_null(out);
	print_message("SIG%s to the new master: %s", sigabbrev_np(sig), out);
	assert_int_equal(rc, 1);
	snprintf(want, sizeof(want), "upgrade failed: the new master %d ", (int)new_master);
	if (strstr(out, want) == NULL || strstr(out, "before it was ready") == NULL)
		fail_msg("\"%s\" is not a failure of %d before it was ready", out, (int)new_master);
	free(out);
	assert_false(env_exited(e));
	assert_int_equal(pid_file_pid(e), e->master);
	assert_int_equal(access(e->ctl_path, F_OK), 0);
	assert_int_equal(env_control(e, "status", &status, EM_DEADLINE_MS), 0);
	free(status);
	assert_int_equal(cmd_run(e, "status", NULL), 0);
	assert_int_equal(env_log_find(e, off, "graceful stop:"), 0);
	assert_int_equal(masters_in_group(e->master, NULL, 0), 1);
	tcp_roundtrip(port, "after\n", 6, "AFTER\n");
}

/* A new master stopped (TERM, QUIT) before it took over owns nothing of the old one's. */
static void
test_upgrade_new_master_stopped_early(void **state)
{
	struct env *e = *state;
	char never[PATH_MAX + 16], extra[512];
	struct em_conf c;
	int port = port_pick();

	snprintf(never, sizeof(never), "%s/never", e->dir);
	setenv("EM_TEST_NEVER_READY", never, 1);
	conf_upgrade(e, &c, extra, sizeof(extra), 2, port, true);
	env_write_conf(e, &c);
	start_from_copy(e, NULL, 2, port);
	unsetenv("EM_TEST_NEVER_READY");
	file_write(never, "on\n");
	install_file(e, hooks_bin(), copy_path(e));
	stop_new_master_round(e, SIGTERM, port);
	stop_new_master_round(e, SIGQUIT, port);
	env_wait_serving(e, 1, 2, EM_DEADLINE_MS);
}

/* The agent's whole answer (malloc'd), or NULL when nothing answers on PORT. */
static char *
agent_answer(int port)
{
	char buf[256];
	int fd = tcp_connect(port, EM_DEADLINE_MS);
	ssize_t n;

	if (fd == -1)
		return NULL;
	n = tcp_read_exact(fd, buf, sizeof(buf) - 1, EM_DEADLINE_MS);
	close(fd);
	if (n <= 0)
		return NULL;
	buf[n] = '\0';
	return strdup(buf);
}

/*
 * The new master dies after READY, as it is asked to take over (a test
 * build told to; dying the instant READY is sent races the old master's
 * reading of it against its reaping). The old master keeps its place
 * until the new one confirms, so it reports the failure and serves on
 * with everything it had: workers (never frozen), pid file, control
 * socket, agent.
 */
static void
test_upgrade_new_master_dies_after_ready(void **state)
{
	struct env *e = *state;
	struct em_conf c;
	struct em_status st;
	char extra[768], die[PATH_MAX + 16], *out[2], *agent;
	pid_t before[2], after[2], master;
	struct load l;
	int ports[2], port;

	ports_pick(ports, 2);
	port = ports[0];
	snprintf(die, sizeof(die), "%s/die", e->dir);
	setenv("EM_TEST_UPGRADE_DIE_AT_TAKE_OVER", die, 1);
	conf_init(&c, 2);
	conf_listen(&c, "tcp", port, "upper");
	snprintf(extra, sizeof(extra), "control_socket = \"%s\";\nreload_handover = true;\n"
	    "agent = { address = \"127.0.0.1\"; port = %d; };\n", env_control_socket(e), ports[1]);
	c.extra = extra;
	env_write_conf(e, &c);
	start_from_copy(e, NULL, 2, port);
	unsetenv("EM_TEST_UPGRADE_DIE_AT_TAKE_OVER");
	env_wait_workers(e, 2, before, EM_DEADLINE_MS);
	/* Streams held, no churn: what the dying new workers accepted would die with them. */
	load_open(&l, port, FEW_STREAMS);
	file_write(die, "on\n");
	install_file(e, hooks_bin(), copy_path(e));
	assert_int_equal(cmd_run(e, "upgrade", out), 1);
	print_message("-s upgrade: %s", out[0]);
	if (strstr(out[0], "upgrade failed: the new master ") == NULL ||
	    strstr(out[0], "killed by signal 9 (SIGKILL) before it took over") == NULL)
		fail_msg("\"%s\" is not a failure before the take-over", out[0]);
	free(out[0]);
	free(out[1]);
	assert_true(env_log_has(e, "is ready; asking it to take over"));
	for (int i = 0; i < 20; i++)
		load_step(&l);
	assert_false(env_exited(e));
	assert_int_equal(pid_file_pid(e), e->master);
	env_wait_workers(e, 2, after, EM_DEADLINE_MS);
	assert_memory_equal(before, after, sizeof(before));
	assert_int_equal(env_status(e, &st, EM_DEADLINE_MS), 0);
	assert_int_equal(st.generation, 1);
	assert_int_equal(masters_in_group(e->master, NULL, 0), 1);
	if ((agent = agent_answer(ports[1])) == NULL)
		fail_msg("the old master's agent does not answer after the failed take-over");
	else
		print_message("agent: %s", agent);
	assert_true(agent != NULL && strncmp(agent, "up", 2) == 0);
	free(agent);
	load_finish(&l);
	tcp_roundtrip(port, "after\n", 6, "AFTER\n");
	/* Supervised as ever: a killed worker is respawned. */
	assert_int_equal(kill(after[0], SIGKILL), 0);
	env_wait_serving(e, 1, 2, EM_DEADLINE_MS);
	/* And the next upgrade works. */
	unlink(die);
	install_file(e, orig_bin, copy_path(e));
	assert_int_equal(cmd_run(e, "upgrade", out), 0);
	master = upgrade_ok_pid(out[0], 2);
	free(out[0]);
	free(out[1]);
	old_master_exits(e, master);
	env_wait_serving(e, 2, 2, EM_DEADLINE_MS);
	assert_int_equal(pid_file_pid(e), master);
	assert_int_equal(env_control(e, "status", out, EM_DEADLINE_MS), 0);
	if (strstr(out[0], "upgrades 1 ok / 1 failed") == NULL)
		fail_msg("status: %s", out[0]);
	free(out[0]);
	tcp_roundtrip(port, "later\n", 6, "LATER\n");
}

/*
 * Without a control socket `-s upgrade` is SIGUSR2 through the pid file: a
 * master that neither blocks nor catches it (1.0; here a stand-in that
 * holds the pid file's lock for a process with default signals) would die
 * of it, so the command refuses, and nothing is sent.
 */
static void
test_upgrade_by_signal_to_old_master(void **state)
{
	struct env *e = *state;
	struct em_conf c;
	char extra[512], pid[32], *out[2];
	pid_t stand_in;
	unsigned long long start;
	int fd, port = port_pick();

	conf_upgrade(e, &c, extra, sizeof(extra), 1, port, false);
	env_write_conf(e, &c);
	stand_in = env_spawn_helper(e);
	start = proc_start_time(stand_in);
	fd = open(e->pid_path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(flock(fd, LOCK_EX | LOCK_NB), 0);
	snprintf(pid, sizeof(pid), "%d\n", (int)stand_in);
	assert_int_equal(write(fd, pid, strlen(pid)), (ssize_t)strlen(pid));
	assert_int_equal(cmd_run(e, "upgrade", out), 2);
	print_message("-s upgrade: %s", out[1]);
	snprintf(pid, sizeof(pid), "(pid %d)", (int)stand_in);
	assert_non_null(strstr(out[1], "does not support upgrade by signal; use control_socket or "
	    "restart"));
	assert_non_null(strstr(out[1], pid));
	free(out[0]);
	free(out[1]);
	assert_true(proc_alive(stand_in, start));
	assert_false(proc_signal_pending(stand_in, SIGUSR2));
	close(fd);
}

/*
 * systemd's LISTEN_FDS, as socket activation or the file descriptor store
 * pass them: the daemon adopts the inherited socket of its listener (it
 * could not bind the port, which the test's socket holds, without
 * SO_REUSEPORT), serves the connection that was already queued on it,
 * and closes a stray inherited socket with a log line. The socket comes
 * with the SYN-dropping filter of a master that died in a graceful stop:
 * the daemon removes it, or no new client could connect.
 */
static void
test_listen_fds_adopted(void **state)
{
	struct env *e = *state;
	struct em_conf c;
	char extra[512], got[16];
	int ports[2], port, stray_port, lfd, stray, early;
	const char *argv[] = { em_binary(), "-F", "-c", e->conf_path, NULL };
	pid_t pid;

	ports_pick(ports, 2);
	port = ports[0];
	stray_port = ports[1];
	lfd = port_occupy(port);
	stray = port_occupy(stray_port);
	conf_upgrade(e, &c, extra, sizeof(extra), 2, port, true);
	env_write_conf(e, &c);
	/* Queued before any master runs: the accept queue is the inherited socket's. */
	assert_true((early = tcp_connect(port, EM_DEADLINE_MS)) >= 0);
	assert_int_equal(tcp_send_all(early, "early\n", 6, EM_DEADLINE_MS), 0);
	/* What a master that died in a graceful stop leaves: a filter dropping new SYNs. */
	attach_syn_filter(lfd);
	fflush(NULL);
	assert_true((pid = fork()) >= 0);
	if (pid == 0) {
		char num[32];
		int log = open(e->log_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
		setpgid(0, 0);
		/* Above 4 first, so that neither dup2 below is onto itself (that keeps close-on-exec). */
		lfd = fcntl(lfd, F_DUPFD, 5);
		stray = fcntl(stray, F_DUPFD, 5);
		if (log == -1 || lfd == -1 || stray == -1 || dup2(log, STDERR_FILENO) == -1 ||
		    dup2(lfd, 3) != 3 || dup2(stray, 4) != 4)
			_exit(126);
		close_range(5, ~0U, 0);
		snprintf(num, sizeof(num), "%ld", (long)getpid());
		setenv("LISTEN_PID", num, 1);
		setenv("LISTEN_FDS", "2", 1);
		setenv("LISTEN_FDNAMES", "echo:stray", 1);
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	setpgid(pid, pid);
	e->master = pid;
	e->reaped = false;
	close(lfd);
	close(stray);
	env_wait_serving(e, 1, 2, EM_DEADLINE_MS);
	assert_int_equal(tcp_read_exact(early, got, 6, EM_DEADLINE_MS), 6);
	assert_memory_equal(got, "EARLY\n", 6);
	close(early);
	tcp_roundtrip(port, "hello\n", 6, "HELLO\n");
	assert_true(env_log_has(e, "(upper), inherited"));
	assert_true(env_log_has(e, "matches no listener; closing it"));
	assert_true(env_log_has(e, "named stray"));
	tcp_wait_refused(stray_port, EM_DEADLINE_MS);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_upgrade_under_load, up_setup, up_teardown),
		cmocka_unit_test_setup_teardown(test_upgrade_binary_missing, up_setup, up_teardown),
		cmocka_unit_test_setup_teardown(test_upgrade_binary_exits_at_once, up_setup,
		    up_teardown),
		cmocka_unit_test_setup_teardown(test_upgrade_binary_crashes, up_setup, up_teardown),
		cmocka_unit_test_setup_teardown(test_upgrade_never_ready, up_setup, up_teardown),
		cmocka_unit_test_setup_teardown(test_upgrade_three_then_reload_and_kill, up_setup,
		    up_teardown),
		cmocka_unit_test_setup_teardown(test_upgrade_by_signal, up_setup, up_teardown),
		cmocka_unit_test_setup_teardown(test_upgrade_unknown_state_drains, up_setup,
		    up_teardown),
		cmocka_unit_test_setup_teardown(test_upgrade_refused_while_previous_drains, up_setup,
		    up_teardown),
		cmocka_unit_test_setup_teardown(test_upgrade_new_master_stopped_early, up_setup,
		    up_teardown),
		cmocka_unit_test_setup_teardown(test_upgrade_by_signal_to_old_master, up_setup,
		    up_teardown),
		cmocka_unit_test_setup_teardown(test_upgrade_new_master_dies_after_ready, up_setup,
		    up_teardown),
		cmocka_unit_test_setup_teardown(test_listen_fds_adopted, up_setup, up_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
