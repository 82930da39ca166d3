/*
 * sock: address resolution and listening sockets. Knows nothing of the
 * configuration or of echo; returns 0/-1 (or an fd) and fills an error buffer.
 */
#ifndef EM_SOCK_H
#define EM_SOCK_H

#include <stddef.h>
#include <sys/socket.h>

/* The backlog asked of listen(2); the kernel caps it at net.core.somaxconn. */
#define SOCK_BACKLOG 4096

/*
 * Resolves ADDRESS:PORT for SOCKTYPE into ss. "*" is every IPv4 address and
 * "::" every IPv6 one; anything else is a literal or a name (first result).
 */
int sock_resolve(const char *address, int port, int socktype,
    struct sockaddr_storage *ss, socklen_t *len, char *err, size_t errlen);

/* Writes "1.2.3.4:80" or "[::1]:80". */
void sock_addr_format(const struct sockaddr_storage *ss, char *buf, size_t len);

/*
 * Opens, binds and (for SOCK_STREAM) listens a non-blocking, close-on-exec
 * socket. IPv6 sockets are IPv6-only, so "*" and "::" can share a port.
 * Datagram sockets are SO_REUSEPORT: more of them can bind the address,
 * and the kernel spreads the senders over them by a hash of their address.
 * Returns the fd, or -1 with a message in err.
 */
int sock_listen(const struct sockaddr_storage *ss, socklen_t len, int socktype,
    char *err, size_t errlen);

/*
 * Takes a bound datagram socket out of the SO_REUSEPORT spread: connected
 * to its own address (the loopback for a wildcard one), it only accepts
 * datagrams from itself, and the kernel (Linux 5.2 and later) gives the
 * other senders to the unconnected sockets on the address. The socket stays
 * bound. Returns connect(2)'s result.
 */
int sock_dgram_aside(int fd, const struct sockaddr_storage *ss, socklen_t len);

/*
 * Sends all of buf, without SIGPIPE; stops early on an error or the
 * socket's send timeout. Returns 0 when everything went, -1 otherwise.
 */
int sock_send_all(int fd, const void *buf, size_t len);

#endif
