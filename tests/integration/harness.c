/*
 * harness.c: see harness.h. Everything here is test-side code: it drives the
 * real daemon through its command line, signals, log and sockets, and never
 * links any of the daemon's objects.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "harness.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Poll interval of the wait loops: short enough not to slow the suite,
 * long enough not to burn a core the daemon needs on a 2-core machine. */
#define POLL_NAP_MS	20
#define LOG_TAIL_BYTES	4096
#define PORT_TRIES	200
#define IO_CHUNK	65536

static void	 known_kill(struct env *e);
static int	 proc_stat(pid_t pid, char *state, pid_t *ppid, pid_t *pgrp,
		    unsigned long long *start);

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

static int
ms_left(int64_t deadline)
{
	int64_t left = deadline - now_ms();

	if (left < 0)
		return 0;
	return left > INT_MAX ? INT_MAX : (int)left;
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
	known_kill(e);
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

/* ---- ports --------------------------------------------------------------- */

static int
sock_bind_loopback(int type, int port)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	int fd = socket(AF_INET, type | SOCK_CLOEXEC, 0);

	if (fd == -1)
		return -1;
	sin.sin_port = htons((uint16_t)port);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(fd, (struct sockaddr *)&sin, sizeof(sin)) == -1) {
		close(fd);
		return -1;
	}
	return fd;
}

static int
sock_port(int fd)
{
	struct sockaddr_in sin;
	socklen_t len = sizeof(sin);

	if (getsockname(fd, (struct sockaddr *)&sin, &len) == -1)
		return -1;
	return ntohs(sin.sin_port);
}

/* Holds a TCP and a UDP socket on one free port; both stay open until
 * ports_release so that picking several ports never yields the same one. */
static int
port_hold(int fds[2])
{
	int i, port;

	for (i = 0; i < PORT_TRIES; i++) {
		fds[0] = sock_bind_loopback(SOCK_STREAM, 0);
		if (fds[0] == -1)
			continue;
		port = sock_port(fds[0]);
		fds[1] = sock_bind_loopback(SOCK_DGRAM, port);
		if (port > 0 && fds[1] != -1)
			return port;
		close(fds[0]);
	}
	return -1;
}

void
ports_pick(int *ports, size_t n)
{
	int fds[EM_MAX_LISTENERS][2];
	size_t i;

	assert_true(n <= EM_MAX_LISTENERS);
	for (i = 0; i < n; i++) {
		ports[i] = port_hold(fds[i]);
		if (ports[i] == -1)
			fail_msg("no free TCP+UDP port on 127.0.0.1 after %d tries",
			    PORT_TRIES);
	}
	for (i = 0; i < n; i++) {
		close(fds[i][0]);
		close(fds[i][1]);
	}
}

int
port_occupy(int port)
{
	int fd = sock_bind_loopback(SOCK_STREAM, port);

	if (fd == -1 || listen(fd, 1) == -1)
		fail_msg("cannot occupy 127.0.0.1:%d: %s", port,
		    strerror(errno));
	return fd;
}

int
port_pick(void)
{
	int port;

	ports_pick(&port, 1);
	return port;
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

static size_t
conf_render(const struct env *e, const struct em_conf *c, char *buf,
    size_t cap)
{
	char workers[16];
	size_t i, n;

	if (c->workers <= 0)
		snprintf(workers, sizeof(workers), "\"auto\"");
	else
		snprintf(workers, sizeof(workers), "%d", c->workers);
	n = (size_t)snprintf(buf, cap,
	    "# written by the echomaster integration tests\n"
	    "workers = %s;\n"
	    "daemon = false;\n"
	    "pid_file = \"%s\";\n"
	    "shutdown_timeout = %d;\n"
	    "log = { level = \"info\"; stderr = true; };\n",
	    workers, c->no_pid_file ? "" : e->pid_path,
	    c->shutdown_timeout);
	if (c->idle_timeout >= 0 && n < cap)
		n += (size_t)snprintf(buf + n, cap - n,
		    "limits = { idle_timeout = %d; };\n", c->idle_timeout);
	if (n < cap)
		n += (size_t)snprintf(buf + n, cap - n, "listen = (\n");
	for (i = 0; i < c->nlisten && n < cap; i++) {
		const struct em_listener *l = &c->listen[i];

		n += (size_t)snprintf(buf + n, cap - n,
		    "  { proto = \"%s\"; address = \"%s\"; port = %d; "
		    "mode = \"%s\"; }%s\n", l->proto, l->address, l->port,
		    l->mode, i + 1 < c->nlisten ? "," : "");
	}
	if (n < cap)
		n += (size_t)snprintf(buf + n, cap - n, ");\n");
	return n;
}

char *
env_conf_text(const struct env *e, const struct em_conf *c)
{
	size_t cap = 8192;
	char *buf = malloc(cap);

	assert_non_null(buf);
	assert_true(conf_render(e, c, buf, cap) < cap);
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

	if (fd == -1 || dup2(fd, target) == -1)
		_exit(126);
	close(fd);
}

/* In the child between fork and exec: its own process group so teardown can
 * kill the master and its workers at once; death with the test process so
 * a crashed test leaves nothing; default signal state, since SIG_IGN and
 * the mask survive exec and the daemon must see what a shell would give it. */
static void
child_exec(pid_t parent, const char *const *argv, const char *out,
    const char *err, int out_flags)
{
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
	execv(argv[0], (char *const *)argv);
	_exit(127);
}

static pid_t
spawn(const char *const *argv, const char *out, const char *err, int flags)
{
	pid_t parent = getpid();
	pid_t pid;

	fflush(NULL);
	pid = fork();
	if (pid == -1)
		fail_msg("fork: %s", strerror(errno));
	if (pid == 0)
		child_exec(parent, argv, out, err, flags);
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
	    O_WRONLY | O_CREAT | O_APPEND);
	e->reaped = false;
	e->status = 0;
	return e->master;
}

pid_t
env_start_ready(struct env *e, int workers, int port)
{
	char ready[64];

	env_start(e);
	snprintf(ready, sizeof(ready), "ready: %d workers, generation 1",
	    workers);
	env_wait_log(e, ready, EM_DEADLINE_MS);
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
		nap_ms(POLL_NAP_MS);
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
		nap_ms(POLL_NAP_MS);
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

/* ---- /proc --------------------------------------------------------------- */

/* Fields 3 (state), 4 (ppid), 5 (pgrp) and 22 (starttime) of
 * /proc/PID/stat; they follow the last ')' because comm may hold anything. */
static int
proc_stat(pid_t pid, char *state, pid_t *ppid, pid_t *pgrp,
    unsigned long long *start)
{
	char path[64], buf[1024], *p;
	int fd, field, pp, pg;
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1)
		return -1;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = '\0';
	if ((p = strrchr(buf, ')')) == NULL)
		return -1;
	if (sscanf(p + 1, " %c %d %d", state, &pp, &pg) != 3)
		return -1;
	*ppid = pp;
	*pgrp = pg;
	for (field = 2; field < 22 && p != NULL; field++)
		p = strchr(p + 1, ' ');
	if (p == NULL)
		return -1;
	*start = strtoull(p + 1, NULL, 10);
	return 0;
}

int
proc_title(pid_t pid, char *buf, size_t len)
{
	char path[64];
	ssize_t n, i;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1)
		return -1;
	n = read(fd, buf, len - 1);
	close(fd);
	if (n <= 0)
		return -1;
	for (i = 0; i < n; i++)
		if (buf[i] == '\0')
			buf[i] = ' ';
	while (n > 0 && buf[n - 1] == ' ')
		n--;
	buf[n] = '\0';
	return 0;
}

unsigned long long
proc_start_time(pid_t pid)
{
	unsigned long long start;
	pid_t ppid, pgrp;
	char state;

	if (proc_stat(pid, &state, &ppid, &pgrp, &start) == -1)
		return 0;
	return start;
}

bool
proc_alive(pid_t pid, unsigned long long start_time)
{
	unsigned long long start;
	pid_t ppid, pgrp;
	char state;

	if (proc_stat(pid, &state, &ppid, &pgrp, &start) == -1)
		return false;
	return state != 'Z' && state != 'X' && start == start_time;
}

static int
pid_cmp(const void *a, const void *b)
{
	pid_t x = *(const pid_t *)a, y = *(const pid_t *)b;

	return (x > y) - (x < y);
}

size_t
proc_children(pid_t parent, const char *title, pid_t *pids, size_t max)
{
	char t[512], state;
	unsigned long long start;
	struct dirent *de;
	pid_t pid, ppid, pgrp;
	size_t n = 0;
	DIR *d;

	if ((d = opendir("/proc")) == NULL)
		fail_msg("opendir /proc: %s", strerror(errno));
	while ((de = readdir(d)) != NULL) {
		if (!isdigit((unsigned char)de->d_name[0]))
			continue;
		pid = (pid_t)atoi(de->d_name);
		if (proc_stat(pid, &state, &ppid, &pgrp, &start) == -1 ||
		    ppid != parent || state == 'Z')
			continue;
		if (title != NULL && (proc_title(pid, t, sizeof(t)) == -1 ||
		    strcmp(t, title) != 0))
			continue;
		if (n < max)
			pids[n] = pid;
		n++;
	}
	closedir(d);
	qsort(pids, n < max ? n : max, sizeof(*pids), pid_cmp);
	return n;
}

static void
known_add(struct env *e, pid_t pid)
{
	size_t i;

	for (i = 0; i < e->nknown; i++)
		if (e->known[i].pid == pid)
			return;
	if (e->nknown < EM_MAX_KNOWN) {
		e->known[e->nknown].pid = pid;
		e->known[e->nknown].start = proc_start_time(pid);
		e->nknown++;
	}
}

/* Kills workers seen earlier that outlived their master, but only if they
 * are still the same processes and still in the daemon's process group. */
static void
known_kill(struct env *e)
{
	struct em_known_pid *k;
	unsigned long long start;
	pid_t ppid, pg;
	char state;
	size_t i;

	for (i = 0; i < e->nknown; i++) {
		k = &e->known[i];
		if (proc_stat(k->pid, &state, &ppid, &pg, &start) == 0 &&
		    start == k->start && pg == e->master && state != 'Z')
			kill(k->pid, SIGKILL);
	}
	e->nknown = 0;
}

static void
pids_print(const char *what, const pid_t *pids, size_t n)
{
	char buf[1024];
	size_t i, len = 0;

	buf[0] = '\0';
	for (i = 0; i < n && i < EM_MAX_WORKERS && len < sizeof(buf); i++)
		len += (size_t)snprintf(buf + len, sizeof(buf) - len, " %d",
		    (int)pids[i]);
	print_error("%s:%s\n", what, buf);
}

void
env_wait_workers(struct env *e, size_t n, pid_t *pids, int timeout_ms)
{
	int64_t deadline = now_ms() + timeout_ms;
	pid_t seen[EM_MAX_WORKERS], draining[EM_MAX_WORKERS];
	size_t got, ndrain, i;

	assert_true(n <= EM_MAX_WORKERS);
	for (;;) {
		got = proc_children(e->master, EM_TITLE_WORKER, seen,
		    EM_MAX_WORKERS);
		ndrain = proc_children(e->master, EM_TITLE_DRAINING, draining,
		    EM_MAX_WORKERS);
		for (i = 0; i < got && i < EM_MAX_WORKERS; i++)
			known_add(e, seen[i]);
		if (got == n && ndrain == 0)
			break;
		if (now_ms() >= deadline || env_exited(e)) {
			env_dump_log(e);
			pids_print("workers seen", seen, got);
			pids_print("draining workers seen", draining, ndrain);
			fail_msg("master %d: wanted exactly %zu workers titled "
			    "\"%s\" and none draining; saw %zu and %zu "
			    "draining%s", (int)e->master, n, EM_TITLE_WORKER,
			    got, ndrain, env_exited(e) ? " (master exited)" :
			    "");
		}
		nap_ms(POLL_NAP_MS);
	}
	if (pids != NULL)
		memcpy(pids, seen, n * sizeof(*pids));
}

/* One hex mask line ("SigPnd:\t0000000000000200") of /proc/PID/status. */
static bool
status_mask_has(const char *status, const char *key, int sig)
{
	const char *line = strstr(status, key);
	unsigned long long mask;

	if (line == NULL)
		return false;
	mask = strtoull(line + strlen(key), NULL, 16);
	return (mask >> (sig - 1)) & 1;
}

bool
proc_signal_pending(pid_t pid, int sig)
{
	char path[64], *status;
	bool pending;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	if ((status = file_read(path, NULL)) == NULL)
		return false;
	pending = status_mask_has(status, "\nSigPnd:", sig) ||
	    status_mask_has(status, "\nShdPnd:", sig);
	free(status);
	return pending;
}

pid_t
env_spawn_helper(struct env *e)
{
	pid_t parent = getpid();
	pid_t pid;

	assert_true(e->helper == 0);
	fflush(NULL);
	pid = fork();
	if (pid == -1)
		fail_msg("fork: %s", strerror(errno));
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(0);
		for (;;)
			pause();
	}
	e->helper = pid;
	return pid;
}

bool
pids_contain(const pid_t *pids, size_t n, pid_t pid)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (pids[i] == pid)
			return true;
	return false;
}

/* ---- TCP clients --------------------------------------------------------- */

/* poll() on one fd for events, bounded by deadline; 1 ready, 0 timed out. */
static int
fd_wait(int fd, short events, int64_t deadline)
{
	struct pollfd pfd = { .fd = fd, .events = events };
	int r;

	do {
		r = poll(&pfd, 1, ms_left(deadline));
	} while (r == -1 && errno == EINTR);
	return r;
}

/* A numeric IPv4 or IPv6 address and port into ss; its length, or 0. */
static socklen_t
sockaddr_fill(struct sockaddr_storage *ss, const char *ip, int port)
{
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
	struct sockaddr_in *sin = (struct sockaddr_in *)ss;

	memset(ss, 0, sizeof(*ss));
	if (inet_pton(AF_INET, ip, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		sin->sin_port = htons((uint16_t)port);
		return sizeof(*sin);
	}
	if (inet_pton(AF_INET6, ip, &sin6->sin6_addr) == 1) {
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((uint16_t)port);
		return sizeof(*sin6);
	}
	return 0;
}

int
tcp_connect_to(const char *ip, int port, int timeout_ms)
{
	int64_t deadline = now_ms() + timeout_ms;
	struct sockaddr_storage ss;
	socklen_t sslen = sockaddr_fill(&ss, ip, port);
	socklen_t len = sizeof(int);
	int fd, err = 0;

	if (sslen == 0)
		fail_msg("not a numeric address: %s", ip);
	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
	    0);
	if (fd == -1)
		return -1;
	if (connect(fd, (struct sockaddr *)&ss, sslen) == 0)
		return fd;
	if (errno != EINPROGRESS)
		goto fail;
	if (fd_wait(fd, POLLOUT, deadline) != 1) {
		errno = ETIMEDOUT;
		goto fail;
	}
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1)
		goto fail;
	if (err == 0)
		return fd;
	errno = err;
fail:
	err = errno;
	close(fd);
	errno = err;
	return -1;
}

int
tcp_connect(int port, int timeout_ms)
{
	return tcp_connect_to("127.0.0.1", port, timeout_ms);
}

void
tcp_wait_listening(int port, int timeout_ms)
{
	int64_t deadline = now_ms() + timeout_ms;
	int fd;

	for (;;) {
		fd = tcp_connect(port, 1000);
		if (fd != -1) {
			close(fd);
			return;
		}
		if (now_ms() >= deadline)
			fail_msg("connect to 127.0.0.1:%d never succeeded "
			    "within %d ms (last: %s)", port, timeout_ms,
			    strerror(errno));
		nap_ms(POLL_NAP_MS);
	}
}

void
tcp_wait_refused(int port, int timeout_ms)
{
	int64_t deadline = now_ms() + timeout_ms;
	int fd;

	for (;;) {
		fd = tcp_connect(port, 1000);
		if (fd == -1 && errno == ECONNREFUSED)
			return;
		if (fd != -1)
			close(fd);
		if (now_ms() >= deadline)
			fail_msg("127.0.0.1:%d still accepts connections after "
			    "%d ms", port, timeout_ms);
		nap_ms(POLL_NAP_MS);
	}
}

int
tcp_send_all(int fd, const void *buf, size_t len, int timeout_ms)
{
	int64_t deadline = now_ms() + timeout_ms;
	const uint8_t *p = buf;
	ssize_t n;

	while (len > 0) {
		n = send(fd, p, len, MSG_NOSIGNAL);
		if (n > 0) {
			p += n;
			len -= (size_t)n;
			continue;
		}
		if (n == -1 && errno != EAGAIN && errno != EINTR)
			return -1;
		if (fd_wait(fd, POLLOUT, deadline) == 0) {
			errno = ETIMEDOUT;
			return -1;
		}
	}
	return 0;
}

ssize_t
tcp_read_exact(int fd, void *buf, size_t len, int timeout_ms)
{
	int64_t deadline = now_ms() + timeout_ms;
	uint8_t *p = buf;
	size_t got = 0;
	ssize_t n;

	while (got < len) {
		n = recv(fd, p + got, len - got, 0);
		if (n > 0) {
			got += (size_t)n;
			continue;
		}
		if (n == 0)
			break;
		if (errno != EAGAIN && errno != EINTR)
			return -1;
		if (fd_wait(fd, POLLIN, deadline) == 0) {
			errno = ETIMEDOUT;
			break;
		}
	}
	return (ssize_t)got;
}

int
tcp_wait_eof(int fd, int timeout_ms)
{
	int64_t deadline = now_ms() + timeout_ms;
	char c;
	ssize_t n;

	for (;;) {
		n = recv(fd, &c, 1, 0);
		if (n == 0)
			return 0;
		if (n > 0) {
			errno = EPROTO;
			return -1;
		}
		if (errno != EAGAIN && errno != EINTR)
			return -1;
		if (fd_wait(fd, POLLIN, deadline) == 0) {
			errno = ETIMEDOUT;
			return -1;
		}
	}
}

void
tcp_roundtrip(int port, const void *msg, size_t len, const void *expect)
{
	uint8_t *got;
	ssize_t n;
	int fd;

	fd = tcp_connect(port, EM_DEADLINE_MS);
	if (fd == -1)
		fail_msg("connect to 127.0.0.1:%d: %s", port, strerror(errno));
	if (tcp_send_all(fd, msg, len, EM_DEADLINE_MS) == -1)
		fail_msg("send %zu bytes to port %d: %s", len, port,
		    strerror(errno));
	got = malloc(len + 1);
	assert_non_null(got);
	n = tcp_read_exact(fd, got, len, EM_DEADLINE_MS);
	close(fd);
	if (n != (ssize_t)len) {
		free(got);
		fail_msg("port %d: sent %zu bytes, got %zd back (%s)", port,
		    len, n, n == -1 ? strerror(errno) : "EOF or timeout");
	}
	bytes_expect(got, expect, len, "TCP reply");
	free(got);
}

/* ---- UDP ----------------------------------------------------------------- */

ssize_t
udp_exchange_to(const char *ip, int port, const void *msg, size_t len,
    void *reply, size_t cap, int timeout_ms)
{
	int64_t deadline = now_ms() + timeout_ms, attempt_end;
	struct sockaddr_storage ss;
	socklen_t sslen = sockaddr_fill(&ss, ip, port);
	ssize_t n = -1;
	int fd;

	if (sslen == 0)
		fail_msg("not a numeric address: %s", ip);
	fd = socket(ss.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1)
		return -1;
	/* Connected: only the server's replies arrive, and a closed port
	 * reports ECONNREFUSED instead of a silent timeout. */
	if (connect(fd, (struct sockaddr *)&ss, sslen) == -1)
		goto out;
	while (now_ms() < deadline) {
		if (send(fd, msg, len, 0) != (ssize_t)len)
			goto out;
		attempt_end = now_ms() + 2000;
		if (attempt_end > deadline)
			attempt_end = deadline;
		if (fd_wait(fd, POLLIN, attempt_end) == 1) {
			/* MSG_TRUNC: the real length even if cap is short. */
			n = recv(fd, reply, cap, MSG_TRUNC);
			goto out;
		}
	}
	errno = ETIMEDOUT;
out:
	if (n == -1) {
		int err = errno;

		close(fd);
		errno = err;
		return -1;
	}
	close(fd);
	return n;
}

ssize_t
udp_exchange(int port, const void *msg, size_t len, void *reply, size_t cap,
    int timeout_ms)
{
	return udp_exchange_to("127.0.0.1", port, msg, len, reply, cap,
	    timeout_ms);
}

void
udp_wait_refused(int port, int timeout_ms)
{
	int64_t deadline = now_ms() + timeout_ms;
	char reply[64];

	for (;;) {
		if (udp_exchange(port, "x", 1, reply, sizeof(reply), 1000) ==
		    -1 && errno == ECONNREFUSED)
			return;
		if (now_ms() >= deadline)
			fail_msg("UDP 127.0.0.1:%d still answers or is silent "
			    "after %d ms", port, timeout_ms);
		nap_ms(POLL_NAP_MS);
	}
}

/* ---- data ---------------------------------------------------------------- */

void
echo_upper(const uint8_t *in, uint8_t *out, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++)
		out[i] = in[i] >= 'a' && in[i] <= 'z' ?
		    (uint8_t)(in[i] - 'a' + 'A') : in[i];
}

void
pattern_fill(uint8_t *buf, size_t len, uint32_t seed)
{
	uint32_t x = seed * 2654435761u + 1;
	size_t i;

	for (i = 0; i < len; i++) {
		/* xorshift32: cheap, and every byte value turns up. */
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		buf[i] = (uint8_t)(x >> 11);
	}
}

void
bytes_expect(const uint8_t *got, const uint8_t *want, size_t len,
    const char *what)
{
	size_t i;

	for (i = 0; i < len; i++)
		if (got[i] != want[i])
			fail_msg("%s: first difference at byte %zu of %zu: got "
			    "0x%02x, want 0x%02x", what, i, len, got[i],
			    want[i]);
}

void
bytes_expect_upper(const uint8_t *got, const uint8_t *sent, size_t len,
    const char *what)
{
	uint8_t want[IO_CHUNK];
	size_t off, n, i;

	for (off = 0; off < len; off += n) {
		n = len - off < sizeof(want) ? len - off : sizeof(want);
		echo_upper(sent + off, want, n);
		for (i = 0; i < n; i++)
			if (got[off + i] != want[i])
				fail_msg("%s: first difference at byte %zu of "
				    "%zu: got 0x%02x, want 0x%02x", what,
				    off + i, len, got[off + i], want[i]);
	}
}

/* ---- streams ------------------------------------------------------------- */

void
stream_open(struct em_stream *s, int port, size_t len, uint32_t seed)
{
	memset(s, 0, sizeof(*s));
	s->fd = tcp_connect(port, EM_DEADLINE_MS);
	if (s->fd == -1)
		fail_msg("connect to 127.0.0.1:%d: %s", port, strerror(errno));
	s->len = len;
	s->out = malloc(len);
	s->in = malloc(len);
	assert_non_null(s->out);
	assert_non_null(s->in);
	pattern_fill(s->out, len, seed);
}

void
stream_close(struct em_stream *s)
{
	if (s->fd > 0)
		close(s->fd);
	free(s->out);
	free(s->in);
	memset(s, 0, sizeof(*s));
}

static size_t
stream_target(const struct em_stream *s, size_t limit)
{
	return limit < s->len ? limit : s->len;
}

static bool
stream_done(const struct em_stream *s, size_t limit, bool half_close)
{
	size_t t = stream_target(s, limit);

	if (s->sent < t || s->rcvd < t)
		return false;
	return !half_close || t < s->len || s->eof;
}

/* Reads what is there; anything past len is a protocol error (EPROTO). */
static int
stream_read(struct em_stream *s)
{
	uint8_t extra[1];
	ssize_t n;

	if (s->rcvd < s->len)
		n = recv(s->fd, s->in + s->rcvd, s->len - s->rcvd, 0);
	else
		n = recv(s->fd, extra, sizeof(extra), 0);
	if (n == 0) {
		s->eof = true;
		return 0;
	}
	if (n == -1)
		return errno == EAGAIN || errno == EINTR ? 0 : -1;
	if (s->rcvd == s->len) {
		errno = EPROTO;
		return -1;
	}
	s->rcvd += (size_t)n;
	return 0;
}

static int
stream_write(struct em_stream *s, size_t target)
{
	size_t chunk = target - s->sent;
	ssize_t n;

	if (chunk > IO_CHUNK)
		chunk = IO_CHUNK;
	n = send(s->fd, s->out + s->sent, chunk, MSG_NOSIGNAL);
	if (n == -1)
		return errno == EAGAIN || errno == EINTR ? 0 : -1;
	s->sent += (size_t)n;
	return 0;
}

static short
stream_events(struct em_stream *s, size_t limit, bool half_close)
{
	short ev = 0;

	if (half_close && s->sent == s->len && !s->shut_wr) {
		shutdown(s->fd, SHUT_WR);
		s->shut_wr = true;
	}
	if (s->sent < stream_target(s, limit))
		ev |= POLLOUT;
	if (!s->eof)
		ev |= POLLIN;
	return ev;
}

int
streams_step(struct em_stream *s, size_t n, size_t limit, bool half_close,
    int wait_ms)
{
	struct pollfd *pfd;
	size_t i;
	int r, rc = 0;

	pfd = calloc(n, sizeof(*pfd));
	assert_non_null(pfd);
	for (i = 0; i < n; i++) {
		pfd[i].fd = s[i].fd;
		pfd[i].events = stream_events(&s[i], limit, half_close);
	}
	r = poll(pfd, n, wait_ms);
	for (i = 0; r > 0 && i < n && rc == 0; i++) {
		if (pfd[i].revents & (POLLIN | POLLHUP | POLLERR))
			rc = stream_read(&s[i]);
		if (rc == 0 && (pfd[i].revents & POLLOUT))
			rc = stream_write(&s[i], stream_target(&s[i], limit));
		if (rc == -1)
			print_error("stream %zu: %s\n", i, strerror(errno));
	}
	free(pfd);
	return r == -1 && errno != EINTR ? -1 : rc;
}

static void
streams_print(const struct em_stream *s, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		print_error("stream %zu: len %zu sent %zu received %zu%s%s\n",
		    i, s[i].len, s[i].sent, s[i].rcvd,
		    s[i].shut_wr ? " shut_wr" : "", s[i].eof ? " eof" : "");
}

int
streams_pump(struct em_stream *s, size_t n, size_t limit, bool half_close,
    int timeout_ms)
{
	int64_t deadline = now_ms() + timeout_ms;
	size_t i;

	for (;;) {
		for (i = 0; i < n && stream_done(&s[i], limit, half_close); i++)
			;
		if (i == n)
			return 0;
		if (now_ms() >= deadline) {
			streams_print(s, n);
			errno = ETIMEDOUT;
			return -1;
		}
		if (streams_step(s, n, limit, half_close, 100) == -1) {
			streams_print(s, n);
			return -1;
		}
	}
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
	pid = spawn(argv, out_path, err_path, O_WRONLY | O_CREAT | O_TRUNC);
	while (waitpid(pid, &status, WNOHANG) != pid) {
		if (now_ms() >= deadline) {
			kill(-pid, SIGKILL);
			kill(pid, SIGKILL);
			waitpid(pid, &status, 0);
			fail_msg("%s %s ... still running after %d ms; killed",
			    argv[0], args[0], timeout_ms);
		}
		nap_ms(POLL_NAP_MS);
	}
	if (out != NULL)
		*out = file_read(out_path, NULL);
	if (err != NULL)
		*err = file_read(err_path, NULL);
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}
