/*
 * harness.c: see harness.h. The env fixture, config files, starting and
 * stopping the daemon, its log, and running it as a command. The sockets
 * are in harness_net.c, /proc in harness_proc.c. Everything here is
 * test-side code: it drives the real daemon through its command line,
 * signals, log and sockets, and never links any of the daemon's objects.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define LOG_TAIL_BYTES	4096

/* ---- time ---------------------------------------------------------------- */

int64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void
nap_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
		;
}

void
clock_align_ms(int frac_ms)
{
	int now = (int)(now_ms() % 1000);

	nap_ms((frac_ms - now + 1000) % 1000);
}

/* ---- fixtures ------------------------------------------------------------ */

const char *
em_binary(void)
{
	static char path[PATH_MAX];
	const char *env = getenv("ECHOMASTER");

	if (env != NULL && *env != '\0')
		return env;
	if (path[0] == '\0' && realpath("build/echomaster", path) == NULL)
		snprintf(path, sizeof(path), "build/echomaster");
	return path;
}

/* Done once per test program: a write to a socket the daemon closed must
 * fail with EPIPE, not kill the test; 200+ clients need their descriptors. */
static void
harness_init_process(void)
{
	static bool done;
	struct rlimit rl;

	if (done)
		return;
	done = true;
	signal(SIGPIPE, SIG_IGN);
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

static void
path_join(char *restrict dst, const char *restrict dir, const char *name)
{
	int n = snprintf(dst, PATH_MAX, "%s/%s", dir, name);

	assert_true(n > 0 && n < PATH_MAX);
}

int
env_setup(void **state)
{
	const char *tmp = getenv("TMPDIR");
	struct env *e;

	harness_init_process();
	e = calloc(1, sizeof(*e));
	if (e == NULL)
		return -1;
	snprintf(e->dir, sizeof(e->dir), "%s/echomaster-test.XXXXXX",
	    tmp != NULL && *tmp != '\0' ? tmp : "/tmp");
	if (mkdtemp(e->dir) == NULL) {
		print_error("mkdtemp %s: %s\n", e->dir, strerror(errno));
		free(e);
		return -1;
	}
	path_join(e->conf_path, e->dir, "echomaster.conf");
	path_join(e->log_path, e->dir, "daemon.log");
	path_join(e->out_path, e->dir, "daemon.out");
	path_join(e->pid_path, e->dir, "echomaster.pid");
	e->arg = *state;
	*state = e;
	return 0;
}

static int
rm_entry(const char *path, const struct stat *sb, int type, struct FTW *ftw)
{
	(void)sb;
	(void)type;
	(void)ftw;
	return remove(path);
}

/* Sanitizer reports and crashed workers fail the test even when the
 * client saw nothing wrong: a respawn would otherwise hide them. */
static int
log_check_crashes(struct env *e)
{
	static const char *const bad[] = { "AddressSanitizer",
	    "LeakSanitizer", "runtime error:", "(SIGSEGV)", "(SIGABRT)",
	    "(SIGBUS)", "(SIGFPE)", "(SIGILL)" };
	char *line;
	size_t i;
	int rc = 0;

	for (i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
		if ((line = env_log_line(e, bad[i])) == NULL)
			continue;
		print_error("daemon log reports a crash: %s\n", line);
		free(line);
		rc = -1;
	}
	if (rc == -1)
		env_dump_log(e);
	return rc;
}

int
env_teardown(void **state)
{
	struct env *e = *state;
	const char *keep = getenv("EM_KEEP");
	int rc;

	if (e == NULL)
		return 0;
	rc = e->crashes_expected ? 0 : log_check_crashes(e);
	env_kill(e);
	proc_kill_known(e);
	if (e->helper > 0) {
		kill(e->helper, SIGKILL);
		waitpid(e->helper, NULL, 0);
	}
	if (keep != NULL && *keep == '1')
		print_error("EM_KEEP: kept %s\n", e->dir);
	else
		nftw(e->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	free(e);
	*state = NULL;
	return rc;
}

/* ---- files and config ---------------------------------------------------- */

void
file_write(const char *path, const char *text)
{
	char tmp[PATH_MAX + 8];
	size_t len = strlen(text);
	FILE *f;

	snprintf(tmp, sizeof(tmp), "%s.new", path);
	f = fopen(tmp, "w");
	if (f == NULL)
		fail_msg("fopen %s: %s", tmp, strerror(errno));
	if (fwrite(text, 1, len, f) != len || fclose(f) != 0)
		fail_msg("write %s: %s", tmp, strerror(errno));
	if (rename(tmp, path) == -1)
		fail_msg("rename %s: %s", tmp, strerror(errno));
}

char *
file_read(const char *path, size_t *lenp)
{
	size_t cap = 8192, len = 0;
	char *buf;
	ssize_t n;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd == -1)
		return NULL;
	buf = malloc(cap + 1);
	assert_non_null(buf);
	while ((n = read(fd, buf + len, cap - len)) > 0) {
		len += (size_t)n;
		if (len == cap) {
			cap *= 2;
			buf = realloc(buf, cap + 1);
			assert_non_null(buf);
		}
	}
	close(fd);
	buf[len] = '\0';
	if (lenp != NULL)
		*lenp = len;
	return buf;
}

char *
text_with_port(const char *text, int port)
{
	char num[16], *out, *o;
	const char *p;
	size_t nlen;

	nlen = (size_t)snprintf(num, sizeof(num), "%d", port);
	/* "PORT" is 4 characters and a port at most 5, so 2x is plenty. */
	out = malloc(strlen(text) * 2 + 1);
	assert_non_null(out);
	for (p = text, o = out; *p != '\0';) {
		if (strncmp(p, "PORT", 4) == 0) {
			memcpy(o, num, nlen);
			o += nlen;
			p += 4;
		} else
			*o++ = *p++;
	}
	*o = '\0';
	return out;
}

char *
text_replace(const char *text, const char *from, const char *to)
{
	size_t flen = strlen(from), tlen = strlen(to), count = 0;
	const char *p, *hit;
	char *out, *o;

	for (p = text; (hit = strstr(p, from)) != NULL; p = hit + flen)
		count++;
	if (count == 0)
		fail_msg("text_replace: \"%s\" not found in:\n%s", from, text);
	out = malloc(strlen(text) + count * tlen + 1);
	assert_non_null(out);
	for (p = text, o = out; (hit = strstr(p, from)) != NULL;
	    p = hit + flen) {
		memcpy(o, p, (size_t)(hit - p));
		o += hit - p;
		memcpy(o, to, tlen);
		o += tlen;
	}
	strcpy(o, p);
	return out;
}

void
conf_init(struct em_conf *c, int workers)
{
	memset(c, 0, sizeof(*c));
	c->workers = workers;
	c->idle_timeout = -1;
	/* Longer than any test waits for a drain, so a drain that only ends
	 * because the timeout expired is noticed as too slow. */
	c->shutdown_timeout = 20;
}

void
conf_listen(struct em_conf *c, const char *proto, int port, const char *mode)
{
	struct em_listener *l;

	assert_true(c->nlisten < EM_MAX_LISTENERS);
	l = &c->listen[c->nlisten++];
	l->proto = proto;
	l->address = "127.0.0.1";
	l->mode = mode;
	l->port = port;
}

void
conf_listen_pair(struct em_conf *c, int port, const char *mode)
{
	conf_listen(c, "tcp", port, mode);
	conf_listen(c, "udp", port, mode);
}

/* One setting a line, so a test can name the line an error is on. */
static void
conf_render(const struct env *e, const struct em_conf *c, FILE *f)
{
	size_t i;

	fprintf(f, "# written by the echomaster integration tests\n");
	if (c->workers <= 0)
		fprintf(f, "workers = \"auto\";\n");
	else
		fprintf(f, "workers = %d;\n", c->workers);
	fprintf(f, "daemon = %s;\n", c->daemonize ? "true" : "false");
	fprintf(f, "pid_file = \"%s\";\n", c->no_pid_file ? "" : e->pid_path);
	fprintf(f, "shutdown_timeout = %d;\n", c->shutdown_timeout);
	fprintf(f, "log = { level = \"%s\"; stderr = true; };\n",
	    c->level != NULL ? c->level : "info");
	if (c->user != NULL)
		fprintf(f, "user = \"%s\";\n", c->user);
	if (c->group != NULL)
		fprintf(f, "group = \"%s\";\n", c->group);
	if (c->idle_timeout >= 0)
		fprintf(f, "limits = { idle_timeout = %d; };\n",
		    c->idle_timeout);
	if (c->extra != NULL)
		fprintf(f, "%s\n", c->extra);
	fprintf(f, "listen = (\n");
	for (i = 0; i < c->nlisten; i++) {
		const struct em_listener *l = &c->listen[i];

		fprintf(f, "  { proto = \"%s\"; address = \"%s\"; port = %d; "
		    "mode = \"%s\"; }%s\n", l->proto, l->address, l->port,
		    l->mode, i + 1 < c->nlisten ? "," : "");
	}
	fprintf(f, ");\n");
}

char *
env_conf_text(const struct env *e, const struct em_conf *c)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	assert_non_null(f);
	conf_render(e, c, f);
	assert_int_equal(fclose(f), 0);
	return buf;
}

void
env_write_conf_at(struct env *e, const char *path, const struct em_conf *c)
{
	char *text = env_conf_text(e, c);

	file_write(path, text);
	free(text);
}

void
env_write_conf(struct env *e, const struct em_conf *c)
{
	env_write_conf_at(e, e->conf_path, c);
}

const char *
env_file(struct env *e, const char *name)
{
	char *dst = e->files[e->nfiles++ % 4];
	char dir[PATH_MAX];

	/* A copy: dst lives in the same struct as e->dir. */
	memcpy(dir, e->dir, sizeof(dir));
	path_join(dst, dir, name);
	return dst;
}

void
env_write_conf_text(struct env *e, const char *text)
{
	file_write(e->conf_path, text);
}

/* ---- starting and stopping the daemon ------------------------------------ */

static void
child_redirect(int target, const char *path, int flags)
{
	int fd = open(path, flags | O_CLOEXEC, 0644);

	if (fd == -1 || dup2(fd, target) == -1) {
		/* Still the test's stderr (a failed dup2 left it so): say why. */
		dprintf(STDERR_FILENO, "harness: %s %s for fd %d: %s\n",
		    fd == -1 ? "open" : "dup2 of", path, target, strerror(errno));
		_exit(126);
	}
	close(fd);
}

/* In the child between fork and exec: its own process group so teardown can
 * kill the master and its workers at once; death with the test process so
 * a crashed test leaves nothing; default signal state, since SIG_IGN and
 * the mask survive exec and the daemon must see what a shell would give it. */
static void
child_exec(pid_t parent, const char *const *argv, const char *out,
    const char *err, int out_flags, rlim_t nofile)
{
	struct rlimit rl = { nofile, nofile };
	sigset_t none;

	setpgid(0, 0);
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != parent)
		_exit(125);
	signal(SIGPIPE, SIG_DFL);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	child_redirect(STDIN_FILENO, "/dev/null", O_RDONLY);
	child_redirect(STDOUT_FILENO, out, out_flags);
	child_redirect(STDERR_FILENO, err, out_flags);
	if (nofile != 0 && setrlimit(RLIMIT_NOFILE, &rl) == -1)
		_exit(124);
	execv(argv[0], (char *const *)argv);
	/* Into the log the test will print: a missing binary (say, relinked
	 * by a concurrent make) must not look like a daemon failure. */
	dprintf(STDERR_FILENO, "harness: execv %s: %s\n", argv[0],
	    strerror(errno));
	_exit(127);
}

static pid_t
spawn(const char *const *argv, const char *out, const char *err, int flags, rlim_t nofile)
{
	pid_t parent = getpid();
	pid_t pid;

	fflush(NULL);
	pid = fork();
	if (pid == -1)
		fail_msg("fork: %s", strerror(errno));
	if (pid == 0)
		child_exec(parent, argv, out, err, flags, nofile);
	/* Both sides set the group: whichever runs first wins the race. */
	setpgid(pid, pid);
	return pid;
}

pid_t
env_start(struct env *e)
{
	const char *argv[] = { em_binary(), "-F", "-c", e->conf_path, NULL };

	assert_true(e->master == 0 || e->reaped);
	e->master = spawn(argv, e->out_path, e->log_path,
	    O_WRONLY | O_CREAT | O_APPEND, e->nofile);
	e->reaped = false;
	e->status = 0;
	return e->master;
}

pid_t
env_start_ready(struct env *e, int workers, int port)
{
	char ready[64];

	env_start(e);
	if (e->ctl_path[0] != '\0') {
		env_wait_serving(e, 1, workers, EM_DEADLINE_MS);
	} else {
		snprintf(ready, sizeof(ready), "ready: %d workers, generation 1",
		    workers);
		env_wait_log(e, ready, EM_DEADLINE_MS);
	}
	if (port > 0)
		tcp_wait_listening(port, EM_DEADLINE_MS);
	return e->master;
}

void
env_signal(struct env *e, int sig)
{
	assert_true(e->master > 0 && !e->reaped);
	if (kill(e->master, sig) == -1)
		fail_msg("kill(%d, %d): %s", (int)e->master, sig,
		    strerror(errno));
}

bool
env_exited(struct env *e)
{
	int status;

	if (e->master <= 0 || e->reaped)
		return true;
	if (waitpid(e->master, &status, WNOHANG) != e->master)
		return false;
	e->reaped = true;
	e->status = status;
	return true;
}

static void
status_describe(int status, char *buf, size_t len)
{
	if (WIFEXITED(status))
		snprintf(buf, len, "exit status %d", WEXITSTATUS(status));
	else if (WIFSIGNALED(status))
		snprintf(buf, len, "killed by signal %d", WTERMSIG(status));
	else
		snprintf(buf, len, "wait status %#x", status);
}

int
env_wait_exit(struct env *e, int timeout_ms)
{
	int64_t deadline = now_ms() + timeout_ms;

	while (!env_exited(e)) {
		if (now_ms() >= deadline) {
			env_dump_log(e);
			fail_msg("master %d still running after %d ms",
			    (int)e->master, timeout_ms);
		}
		nap_ms(EM_POLL_NAP_MS);
	}
	return e->status;
}

void
env_kill(struct env *e)
{
	int status;

	if (e->master <= 0 || e->reaped)
		return;
	/* The whole group: workers share the master's process group. */
	kill(-e->master, SIGKILL);
	kill(e->master, SIGKILL);
	while (waitpid(e->master, &status, 0) == -1 && errno == EINTR)
		;
	e->reaped = true;
	e->status = status;
}

/* ---- the log ------------------------------------------------------------- */

char *
env_log(struct env *e)
{
	char *log = file_read(e->log_path, NULL);

	if (log == NULL) {
		log = strdup("");
		assert_non_null(log);
	}
	return log;
}

size_t
env_log_size(struct env *e)
{
	struct stat st;

	if (stat(e->log_path, &st) == -1)
		return 0;
	return (size_t)st.st_size;
}

bool
env_log_has(struct env *e, const char *needle)
{
	char *log = env_log(e);
	bool found = strstr(log, needle) != NULL;

	free(log);
	return found;
}

size_t
env_log_find(struct env *e, size_t offset, const char *needle)
{
	size_t len, at = 0;
	char *log, *hit;

	log = file_read(e->log_path, &len);
	if (log == NULL)
		return 0;
	if (offset <= len && (hit = strstr(log + offset, needle)) != NULL)
		at = (size_t)(hit - log) + strlen(needle);
	free(log);
	return at;
}

size_t
env_wait_log_from(struct env *e, size_t offset, const char *needle,
    int timeout_ms)
{
	int64_t deadline = now_ms() + timeout_ms;
	char how[64];
	size_t at;

	for (;;) {
		if ((at = env_log_find(e, offset, needle)) != 0)
			return at;
		if (env_exited(e)) {
			/* It may have logged the line just before exiting. */
			if ((at = env_log_find(e, offset, needle)) != 0)
				return at;
			env_dump_log(e);
			status_describe(e->status, how, sizeof(how));
			fail_msg("master exited (%s) while waiting for log "
			    "\"%s\"", how, needle);
		}
		if (now_ms() >= deadline) {
			env_dump_log(e);
			fail_msg("no log line \"%s\" within %d ms", needle,
			    timeout_ms);
		}
		nap_ms(EM_POLL_NAP_MS);
	}
}

size_t
env_wait_log(struct env *e, const char *needle, int timeout_ms)
{
	return env_wait_log_from(e, 0, needle, timeout_ms);
}

void
env_dump_log(struct env *e)
{
	size_t len;
	char *log = file_read(e->log_path, &len);

	/* stdio, not print_error: cmocka may cut long messages short. */
	if (log == NULL) {
		fprintf(stderr, "--- no daemon log at %s\n", e->log_path);
		return;
	}
	fprintf(stderr, "--- daemon log %s (last %d bytes):\n%s\n"
	    "--- end of log\n", e->log_path, LOG_TAIL_BYTES,
	    len > LOG_TAIL_BYTES ? log + len - LOG_TAIL_BYTES : log);
	fflush(stderr);
	free(log);
}

char *
env_log_line(struct env *e, const char *needle)
{
	char *log = env_log(e), *hit, *start, *end, *line;

	hit = strstr(log, needle);
	if (hit == NULL) {
		free(log);
		return NULL;
	}
	for (start = hit; start > log && start[-1] != '\n'; start--)
		;
	end = strchrnul(hit, '\n');
	line = strndup(start, (size_t)(end - start));
	free(log);
	assert_non_null(line);
	return line;
}

/* ---- running the binary as a command ------------------------------------- */

int
run_daemon_cmd(struct env *e, const char *const *args, int timeout_ms,
    char **out, char **err)
{
	static unsigned seq;
	const char *argv[16];
	char out_path[PATH_MAX + 32], err_path[PATH_MAX + 32];
	int64_t deadline = now_ms() + timeout_ms;
	int status;
	size_t i;
	pid_t pid;

	argv[0] = em_binary();
	for (i = 0; args[i] != NULL && i + 2 < sizeof(argv) / sizeof(*argv);
	    i++)
		argv[i + 1] = args[i];
	argv[i + 1] = NULL;
	seq++;
	snprintf(out_path, sizeof(out_path), "%s/cmd%u.out", e->dir, seq);
	snprintf(err_path, sizeof(err_path), "%s/cmd%u.err", e->dir, seq);
	pid = spawn(argv, out_path, err_path, O_WRONLY | O_CREAT | O_TRUNC, 0);
	while (waitpid(pid, &status, WNOHANG) != pid) {
		if (now_ms() >= deadline) {
			kill(-pid, SIGKILL);
			kill(pid, SIGKILL);
			waitpid(pid, &status, 0);
			fail_msg("%s %s ... still running after %d ms; killed",
			    argv[0], args[0], timeout_ms);
		}
		nap_ms(EM_POLL_NAP_MS);
	}
	if (out != NULL)
		*out = file_read(out_path, NULL);
	if (err != NULL)
		*err = file_read(err_path, NULL);
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

size_t
env_log_count(struct env *e, const char *needle)
{
	char *log = env_log(e), *p = log;
	size_t n = 0;

	while ((p = strstr(p, needle)) != NULL) {
		n++;
		p += strlen(needle);
	}
	free(log);
	return n;
}
