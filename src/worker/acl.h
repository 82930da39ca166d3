/*
 * acl: the access decision of a listener's allow and deny lists, as a pure
 * function of the lists and the client's address, the way nginx's stream
 * access module decides: allow is checked first and its first matching
 * prefix admits; then deny, where a match refuses; no match admits.
 */
#ifndef EM_ACL_H
#define EM_ACL_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "common/cfg.h"

/*
 * The address of SA as the lists see it: *family AF_INET or AF_INET6 and
 * *addr its bytes in network order. An IPv4-mapped IPv6 address
 * (::ffff:a.b.c.d) is given as the IPv4 address. Returns -1 for any other
 * family.
 */
int acl_peer(const struct sockaddr *sa, int *family, const uint8_t **addr);

/* True when the lists admit the client at SA; an unknown family is refused. */
bool acl_admits(const struct cfg_cidr_list *allow, const struct cfg_cidr_list *deny,
    const struct sockaddr *sa);

#endif
