#include "master/pidfile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

static pid_t
pidfile_read(int fd)
{
	char buf[32];
	ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
	long pid;

	if (n <= 0)
		return 0;
	buf[n] = '\0';
	pid = strtol(buf, NULL, 10);
	return pid > 0 ? (pid_t)pid : 0;
}

int
pidfile_acquire(const char *path, char *err, size_t errlen)
{
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);

	if (fd == -1) {
		snprintf(err, errlen, "cannot open pid file %s: %s", path, strerror(errno));
		return -1;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) == -1) {
		int saved = errno;
		if (saved == EWOULDBLOCK)
			snprintf(err, errlen, "already running: pid file %s is held by pid %ld",
			    path, (long)pidfile_read(fd));
		else
			snprintf(err, errlen, "cannot lock pid file %s: %s", path, strerror(saved));
		close(fd);
		errno = saved;
		return -1;
	}
	return fd;
}

int
pidfile_write(int fd)
{
	char buf[32];
	int n = snprintf(buf, sizeof(buf), "%ld\n", (long)getpid());

	if (ftruncate(fd, 0) == -1 || pwrite(fd, buf, (size_t)n, 0) != n)
		return -1;
	return 0;
}

void
pidfile_release(int fd, const char *path)
{
	if (fd == -1)
		return;
	unlink(path);
	close(fd);
}

pid_t
pidfile_running(const char *path, char *err, size_t errlen)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	pid_t pid;

	if (fd == -1) {
		if (errno == ENOENT)
			return 0;
		snprintf(err, errlen, "cannot open pid file %s: %s", path, strerror(errno));
		return -1;
	}
	if (flock(fd, LOCK_SH | LOCK_NB) == 0) {
		close(fd);  /* we got the lock: no master holds it */
		return 0;
	}
	pid = pidfile_read(fd);
	close(fd);
	if (pid == 0)
		snprintf(err, errlen, "pid file %s is locked but holds no pid", path);
	return pid == 0 ? -1 : pid;
}
