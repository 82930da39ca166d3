/*
 * proctitle: nginx-style process titles ("echomaster: worker process") shown
 * by ps. Linux has no setproctitle(3): the title is written over the memory
 * of argv and environ, which proctitle_init first moves to the heap.
 */
#ifndef EM_PROCTITLE_H
#define EM_PROCTITLE_H

#include "common/log.h"

/* Call once at the top of main, before anything reads argv or environ. */
int proctitle_init(int argc, char **argv);

/* The original command line, "/path/echomaster -c conf/echo.conf". */
const char *proctitle_cmdline(void);

void proctitle_set(const char *fmt, ...) EM_PRINTF(1, 2);

#endif
