#include "common/sock.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int
sock_resolve(const char *address, int port, int socktype,
    struct sockaddr_storage *ss, socklen_t *len, char *err, size_t errlen)
{
	struct addrinfo hints, *res;
	char service[16];
	int rc;

	memset(ss, 0, sizeof(*ss));
	if (strcmp(address, "*") == 0) {
		struct sockaddr_in *sin = (struct sockaddr_in *)ss;
		sin->sin_family = AF_INET;
		sin->sin_addr.s_addr = htonl(INADDR_ANY);
		sin->sin_port = htons((unsigned short)port);
		*len = sizeof(*sin);
		return 0;
	}
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = socktype;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	snprintf(service, sizeof(service), "%d", port);
	if ((rc = getaddrinfo(address[0] ? address : NULL, service, &hints, &res)) != 0) {
		snprintf(err, errlen, "cannot resolve address \"%s\": %s", address,
		    rc == EAI_SYSTEM ? strerror(errno) : gai_strerror(rc));
		return -1;
	}
	memcpy(ss, res->ai_addr, res->ai_addrlen);
	*len = res->ai_addrlen;
	freeaddrinfo(res);
	return 0;
}

void
sock_addr_format(const struct sockaddr_storage *ss, char *buf, size_t len)
{
	char host[INET6_ADDRSTRLEN] = "?";

	if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)ss;
		inet_ntop(AF_INET6, &sin6->sin6_addr, host, sizeof(host));
		snprintf(buf, len, "[%s]:%u", host, ntohs(sin6->sin6_port));
	} else if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)ss;
		inet_ntop(AF_INET, &sin->sin_addr, host, sizeof(host));
		snprintf(buf, len, "%s:%u", host, ntohs(sin->sin_port));
	} else {
		snprintf(buf, len, "(family %d)", ss->ss_family);
	}
}

static int
sock_fail(int fd, char *err, size_t errlen, const char *what, const struct sockaddr_storage *ss)
{
	char where[128];
	int saved = errno;

	sock_addr_format(ss, where, sizeof(where));
	snprintf(err, errlen, "%s %s: %s", what, where, strerror(saved));
	if (fd != -1)
		close(fd);
	errno = saved;
	return -1;
}

int
sock_listen(const struct sockaddr_storage *ss, socklen_t len, int socktype,
    char *err, size_t errlen)
{
	int one = 1;
	int fd = socket(ss->ss_family, socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	if (fd == -1)
		return sock_fail(fd, err, errlen, "socket for", ss);
	/* So a restart binds at once even while old connections sit in TIME_WAIT. */
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == -1)
		return sock_fail(fd, err, errlen, "SO_REUSEADDR on", ss);
	if (ss->ss_family == AF_INET6 &&
	    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) == -1)
		return sock_fail(fd, err, errlen, "IPV6_V6ONLY on", ss);
	/* More than one datagram socket on the address: one per worker (worker/worker.c). */
	if (socktype == SOCK_DGRAM &&
	    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) == -1)
		return sock_fail(fd, err, errlen, "SO_REUSEPORT on", ss);
	if (bind(fd, (const struct sockaddr *)ss, len) == -1)
		return sock_fail(fd, err, errlen, "cannot bind", ss);
	/*
	 * An echo answers at once; Nagle would hold small replies for an ACK.
	 * Accepted sockets inherit the option, so no call per connection.
	 */
	if (socktype == SOCK_STREAM &&
	    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) == -1)
		return sock_fail(fd, err, errlen, "TCP_NODELAY on", ss);
	if (socktype == SOCK_STREAM && listen(fd, SOCK_BACKLOG) == -1)
		return sock_fail(fd, err, errlen, "cannot listen on", ss);
	return fd;
}

int
sock_dgram_aside(int fd, const struct sockaddr_storage *ss, socklen_t len)
{
	struct sockaddr_storage self = *ss;

	/* A wildcard address is not a destination: its loopback stands in. */
	if (self.ss_family == AF_INET) {
		struct sockaddr_in *sin = (struct sockaddr_in *)&self;
		if (sin->sin_addr.s_addr == htonl(INADDR_ANY))
			sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	} else if (self.ss_family == AF_INET6) {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&self;
		if (IN6_IS_ADDR_UNSPECIFIED(&sin6->sin6_addr))
			sin6->sin6_addr = in6addr_loopback;
	}
	return connect(fd, (const struct sockaddr *)&self, len);
}

int
sock_send_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len > 0) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}
