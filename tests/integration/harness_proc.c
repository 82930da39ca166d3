/*
 * harness_proc.c: what /proc says about the daemon's processes: parents,
 * titles, liveness (a zombie is dead: PID 1 here may never reap orphans),
 * pending signals; and the workers a test has seen, for teardown.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "harness.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

/* ---- /proc --------------------------------------------------------------- */

/* The fields of /proc/PID/stat that follow the command name, which may
 * hold anything, hence the last ')': 3 state, 4 ppid, 5 pgrp, 14 and 15
 * utime and stime, 22 starttime. */
int
proc_info(pid_t pid, struct proc_info *pi)
{
	char path[64], buf[1024], *p;
	int fd, pp, pg;
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
	if (sscanf(p + 1, " %c %d %d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu "
	    "%*d %*d %*d %*d %*d %*d %llu", &pi->state, &pp, &pg, &pi->utime,
	    &pi->stime, &pi->start) != 6)
		return -1;
	pi->ppid = pp;
	pi->pgrp = pg;
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
	struct proc_info pi;

	return proc_info(pid, &pi) == 0 ? pi.start : 0;
}

bool
proc_alive(pid_t pid, unsigned long long start_time)
{
	struct proc_info pi;

	if (proc_info(pid, &pi) == -1)
		return false;
	return pi.state != 'Z' && pi.state != 'X' && pi.start == start_time;
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
	char t[512];
	struct proc_info pi;
	struct dirent *de;
	pid_t pid;
	size_t n = 0;
	DIR *d;

	if ((d = opendir("/proc")) == NULL)
		fail_msg("opendir /proc: %s", strerror(errno));
	while ((de = readdir(d)) != NULL) {
		if (!isdigit((unsigned char)de->d_name[0]))
			continue;
		pid = (pid_t)atoi(de->d_name);
		if (proc_info(pid, &pi) == -1 || pi.ppid != parent || pi.state == 'Z')
			continue;
		if (title != NULL && (proc_title(pid, t, sizeof(t)) == -1 ||
		    strcmp(t, title) != 0))
			continue;
		if (pids != NULL && n < max)
			pids[n] = pid;
		n++;
	}
	closedir(d);
	if (pids != NULL)  /* NULL: only counting */
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

void
env_adopt_detached(struct env *e, pid_t pid)
{
	e->detached = pid;
	e->detached_start = proc_start_time(pid);
}

/* The detached master and its children, if still the same processes. */
static void
proc_kill_detached(struct env *e)
{
	pid_t kids[EM_MAX_WORKERS];
	size_t i, n;

	if (e->detached <= 0 || !proc_alive(e->detached, e->detached_start))
		return;
	n = proc_children(e->detached, NULL, kids, EM_MAX_WORKERS);
	kill(e->detached, SIGKILL);
	for (i = 0; i < n && i < EM_MAX_WORKERS; i++)
		kill(kids[i], SIGKILL);
}

void
proc_kill_known(struct env *e)
{
	struct em_known_pid *k;
	struct proc_info pi;
	size_t i;

	for (i = 0; i < e->nknown; i++) {
		k = &e->known[i];
		if (proc_info(k->pid, &pi) == 0 &&
		    pi.start == k->start && pi.pgrp == e->master && pi.state != 'Z')
			kill(k->pid, SIGKILL);
	}
	e->nknown = 0;
	proc_kill_detached(e);
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
	env_wait_workers_of(e, e->master, n, pids, timeout_ms);
}

void
env_wait_workers_of(struct env *e, pid_t master, size_t n, pid_t *pids,
    int timeout_ms)
{
	int64_t deadline = now_ms() + timeout_ms;
	pid_t seen[EM_MAX_WORKERS], draining[EM_MAX_WORKERS];
	size_t got, ndrain, i;
	bool exited;

	assert_true(n <= EM_MAX_WORKERS);
	for (;;) {
		got = proc_children(master, EM_TITLE_WORKER, seen,
		    EM_MAX_WORKERS);
		ndrain = proc_children(master, EM_TITLE_DRAINING, draining,
		    EM_MAX_WORKERS);
		for (i = 0; i < got && i < EM_MAX_WORKERS; i++)
			known_add(e, seen[i]);
		if (got == n && ndrain == 0)
			break;
		/* Only our own child can be reaped: another master is waited for until the deadline. */
		exited = master == e->master && env_exited(e);
		if (now_ms() >= deadline || exited) {
			env_dump_log(e);
			pids_print("workers seen", seen, got);
			pids_print("draining workers seen", draining, ndrain);
			fail_msg("master %d: wanted exactly %zu workers titled "
			    "\"%s\" and none draining; saw %zu and %zu "
			    "draining%s", (int)master, n, EM_TITLE_WORKER,
			    got, ndrain, exited ? " (master exited)" : "");
		}
		nap_ms(EM_POLL_NAP_MS);
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

