#include "common/log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/exitcode.h"

static struct {
	int facility;
	int level;
	bool to_stderr;
} log_state = { LOG_DAEMON, LOG_INFO, true };

static const char *const level_names[] = {
	[LOG_CRIT] = "crit",
	[LOG_ERR] = "error",
	[LOG_WARNING] = "warning",
	[LOG_NOTICE] = "notice",
	[LOG_INFO] = "info",
	[LOG_DEBUG] = "debug",
};

void
log_init(bool to_stderr)
{
	log_state.to_stderr = to_stderr;
	openlog("echomaster", LOG_PID | LOG_NDELAY, log_state.facility);
}

void
log_configure(int facility, int level, bool to_stderr)
{
	if (facility != log_state.facility) {
		closelog();
		openlog("echomaster", LOG_PID | LOG_NDELAY, facility);
	}
	log_state.facility = facility;
	log_state.level = level;
	log_state.to_stderr = to_stderr;
}

void
log_reopen(void)
{
	closelog();
	openlog("echomaster", LOG_PID | LOG_NDELAY, log_state.facility);
}

const char *
log_level_name(int level)
{
	if (level < 0 || level > LOG_DEBUG || level_names[level] == NULL)
		return NULL;
	return level_names[level];
}

bool
log_enabled(int level)
{
	return level <= log_state.level;
}

/*
 * One write(2) per stderr line, so the lines of the master and of several
 * workers sharing one stderr never interleave mid-line.
 */
static EM_PRINTF(3, 0) void
log_emit(int level, int errnum, const char *fmt, va_list ap)
{
	char msg[1024];
	int n;

	if (!log_enabled(level))
		return;
	n = vsnprintf(msg, sizeof(msg), fmt, ap);
	if (n < 0)
		return;
	if (errnum != 0 && (size_t)n < sizeof(msg))
		snprintf(msg + n, sizeof(msg) - (size_t)n, ": %s", strerror(errnum));
	syslog(level, "%s", msg);
	/* A fatal error reaches stderr too: before detaching, it is all an operator sees. */
	if (log_state.to_stderr || level <= LOG_CRIT) {
		char line[1200];
		int len = snprintf(line, sizeof(line), "echomaster[%ld]: %s: %s\n",
		    (long)getpid(), level_names[level], msg);
		if (len > (int)sizeof(line) - 1) {
			len = (int)sizeof(line) - 1;
			line[len - 1] = '\n';
		}
		if (len > 0 && write(STDERR_FILENO, line, (size_t)len) < 0) {
			/* Nowhere left to report a failing stderr. */
		}
	}
}

#define LOG_BODY(level, errnum)                  \
	do {                                     \
		int saved_errno = errno;         \
		va_list ap;                      \
		va_start(ap, fmt);               \
		log_emit(level, errnum, fmt, ap); \
		va_end(ap);                      \
		errno = saved_errno;             \
	} while (0)

void log_debug(const char *fmt, ...) { LOG_BODY(LOG_DEBUG, 0); }
void log_info(const char *fmt, ...) { LOG_BODY(LOG_INFO, 0); }
void log_notice(const char *fmt, ...) { LOG_BODY(LOG_NOTICE, 0); }
void log_warn(const char *fmt, ...) { LOG_BODY(LOG_WARNING, saved_errno); }
void log_warnx(const char *fmt, ...) { LOG_BODY(LOG_WARNING, 0); }
void log_error(const char *fmt, ...) { LOG_BODY(LOG_ERR, saved_errno); }
void log_errorx(const char *fmt, ...) { LOG_BODY(LOG_ERR, 0); }

void
fatal(const char *fmt, ...)
{
	LOG_BODY(LOG_CRIT, saved_errno);
	exit(EXIT_RUNTIME);
}

void
fatalx(const char *fmt, ...)
{
	LOG_BODY(LOG_CRIT, 0);
	exit(EXIT_RUNTIME);
}
