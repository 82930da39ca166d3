/*
 * log: one small logging module for both processes.
 *
 * Every message goes to syslog (ident "echomaster", LOG_PID) and, when asked,
 * to stderr as one line "echomaster[PID]: LEVEL: message". The *_warn and
 * *_error variants append strerror(errno) and leave errno as it was; the
 * *x variants do not. fatal/fatalx log at LOG_CRIT and exit: start-up only.
 */
#ifndef EM_LOG_H
#define EM_LOG_H

#include <stdbool.h>
#include <syslog.h>

#define EM_PRINTF(f, a) __attribute__((format(printf, f, a)))

/* Opens syslog with LOG_DAEMON and enables stderr; before any config is read. */
void log_init(bool to_stderr);

/* Applies the configured facility, threshold level (LOG_DEBUG...LOG_ERR) and stderr switch. */
void log_configure(int facility, int level, bool to_stderr);

/* Closes and reopens the syslog connection (USR1). */
void log_reopen(void);

/* Maps "debug", "info", ... to LOG_* and back; -1 / NULL when unknown. */
const char *log_level_name(int level);

void log_debug(const char *fmt, ...) EM_PRINTF(1, 2);
void log_info(const char *fmt, ...) EM_PRINTF(1, 2);
void log_notice(const char *fmt, ...) EM_PRINTF(1, 2);
void log_warn(const char *fmt, ...) EM_PRINTF(1, 2);
void log_warnx(const char *fmt, ...) EM_PRINTF(1, 2);
void log_error(const char *fmt, ...) EM_PRINTF(1, 2);
void log_errorx(const char *fmt, ...) EM_PRINTF(1, 2);
__attribute__((noreturn)) void fatal(const char *fmt, ...) EM_PRINTF(1, 2);
__attribute__((noreturn)) void fatalx(const char *fmt, ...) EM_PRINTF(1, 2);

/* True when a message at this level would be written; guards costly debug formatting. */
bool log_enabled(int level);

#endif
