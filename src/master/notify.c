#include "master/notify.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/ev.h"

static struct {
	int fd;
	struct sockaddr_un addr;
	socklen_t addrlen;
} nt = { .fd = -1 };

void
notify_init(void)
{
	const char *path = getenv("NOTIFY_SOCKET");
	size_t len;

	if (path == NULL || (path[0] != '/' && path[0] != '@') ||
	    (len = strlen(path)) >= sizeof(nt.addr.sun_path))
		return;
	nt.addr.sun_family = AF_UNIX;
	memcpy(nt.addr.sun_path, path, len);
	if (path[0] == '@')
		nt.addr.sun_path[0] = '\0';  /* an abstract socket */
	nt.addrlen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len);
	nt.fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (nt.fd == -1)
		log_warn("notify socket");
}

void
notify_send(const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	int n;

	if (nt.fd == -1)
		return;
	va_start(ap, fmt);
	n = vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(msg))
		return;
	if (sendto(nt.fd, msg, (size_t)n, MSG_NOSIGNAL, (struct sockaddr *)&nt.addr, nt.addrlen) == -1)
		log_debug("sd_notify: %m");
}

unsigned long long
notify_monotonic_usec(void)
{
	return (unsigned long long)(ev_now_ns() / 1000);
}
