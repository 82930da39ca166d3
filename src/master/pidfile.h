/*
 * pidfile: the master's pid file, flock()ed for as long as the master lives.
 * The lock, not the pid inside, says whether a master is running: a file
 * left by a killed master is unlocked, hence stale, and simply replaced.
 */
#ifndef EM_PIDFILE_H
#define EM_PIDFILE_H

#include <stddef.h>
#include <sys/types.h>

/* Opens and locks PATH. Returns the fd, or -1 with a message in err
 * (errno EWOULDBLOCK when another master holds it). */
int pidfile_acquire(const char *path, char *err, size_t errlen);

/* Writes our pid into the locked file. */
int pidfile_write(int fd);

/* Removes the file and drops the lock. */
void pidfile_release(int fd, const char *path);

/*
 * The pid of the master holding PATH's lock: returns it, 0 when no master
 * holds the lock (not running, or stale file), -1 with err on failure.
 */
pid_t pidfile_running(const char *path, char *err, size_t errlen);

#endif
