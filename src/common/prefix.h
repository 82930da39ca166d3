/*
 * prefix: IPv4 and IPv6 address prefixes ("10.0.0.0/8", "::1/128") and
 * ordered lists of them, knowing nothing of the configuration or of
 * sockets' owners. The configuration parses them (cfg.c) and the worker's
 * access lists match peers against them (acl.c); a PROXY protocol trusted
 * list is meant to be the next user, which is why it stands alone.
 *
 * Addresses are bytes in network order with an AF_INET or AF_INET6
 * family. An IPv4-mapped IPv6 peer (::ffff:a.b.c.d, as a dual-stack socket
 * reports an IPv4 client) is an IPv4 address here: prefix_addr_of says so,
 * so that one IPv4 prefix covers a client whichever socket it came in on.
 */
#ifndef EM_PREFIX_H
#define EM_PREFIX_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* Room for prefix_format's text: the longest IPv6 address, "/128" and the NUL. */
#define PREFIX_TEXT_LEN (INET6_ADDRSTRLEN + 4)

struct prefix {
	int family;           /* AF_INET or AF_INET6 */
	uint8_t addr[16];     /* network byte order; the first 4 for IPv4 */
	int bits;             /* the prefix length: 0..32 or 0..128 */
};

/* Checked in order, the first match wins; v is owned by whoever filled it. */
struct prefix_list {
	size_t n;
	struct prefix *v;
};

/*
 * Parses "ADDR[/BITS]"; without BITS the prefix is the one address.
 * Returns 0, or -1 with a message in err (names are not resolved: a
 * prefix must not change with DNS).
 */
int prefix_parse(const char *text, struct prefix *out, char *err, size_t errlen);

/* Writes "ADDR/BITS", the form prefix_parse reads back. */
void prefix_format(const struct prefix *p, char text[PREFIX_TEXT_LEN]);

/* True when the address (FAMILY, network order) falls in the prefix. */
bool prefix_match(const struct prefix *p, int family, const void *addr);

/* True when any prefix of the list matches. */
bool prefix_list_match(const struct prefix_list *l, int family, const void *addr);

/*
 * The address of SA as prefixes see it: *family and *addr, which points
 * into SA. An IPv4-mapped IPv6 address is given as its IPv4 address.
 * Returns -1 for a family that is neither AF_INET nor AF_INET6.
 */
int prefix_addr_of(const struct sockaddr *sa, int *family, const uint8_t **addr);

#endif
