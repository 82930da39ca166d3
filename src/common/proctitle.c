#include "common/proctitle.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern char **environ;

static struct {
	char *area;          /* the memory the kernel shows as our command line */
	size_t len;
	char **env;          /* our copy of environ, kept for the process's life */
	char cmdline[1024];  /* the original one, for the master's title */
} pt;

static char **
strings_copy(char **v, size_t n)
{
	char **copy = calloc(n + 1, sizeof(*copy));

	if (copy == NULL)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		if ((copy[i] = strdup(v[i])) == NULL) {
			while (i > 0)
				free(copy[--i]);
			free(copy);
			return NULL;
		}
	}
	return copy;
}

int
proctitle_init(int argc, char **argv)
{
	char *end;
	char **env;
	size_t used = 0, nenv = 0;

	if (argc < 1 || argv[0] == NULL)
		return -1;
	end = argv[0];
	for (int i = 0; i < argc; i++) {
		int n = snprintf(pt.cmdline + used, sizeof(pt.cmdline) - used, "%s%s",
		    i ? " " : "", argv[i]);
		if (n > 0 && (size_t)n < sizeof(pt.cmdline) - used)
			used += (size_t)n;
		if (argv[i] == end)
			end = argv[i] + strlen(argv[i]) + 1;
	}
	/* The environment usually follows argv; its room is ours too once it has moved. */
	for (; environ[nenv] != NULL; nenv++)
		if (environ[nenv] == end)
			end = environ[nenv] + strlen(environ[nenv]) + 1;
	if ((env = strings_copy(environ, nenv)) == NULL)
		return -1;
	environ = pt.env = env;
	pt.area = argv[0];
	pt.len = (size_t)(end - argv[0]);
	for (int i = 0; i < argc; i++)
		if ((argv[i] = strdup(argv[i])) == NULL)
			return -1;
	return 0;
}

const char *
proctitle_cmdline(void)
{
	return pt.cmdline;
}

void
proctitle_set(const char *fmt, ...)
{
	va_list ap;

	if (pt.area == NULL || pt.len < 2)
		return;
	memset(pt.area, 0, pt.len);
	va_start(ap, fmt);
	vsnprintf(pt.area, pt.len - 1, fmt, ap);
	va_end(ap);
}
