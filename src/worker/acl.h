/*
 * acl: the access decision of a listener's allow and deny lists, as a pure
 * function of the lists and the client's address, the way nginx's stream
 * access module decides: allow is checked first and its first matching
 * prefix admits; then deny, where a match refuses; no match admits. The
 * prefixes and the address matching are common/prefix's; acl only adds
 * the order of the two lists.
 */
#ifndef EM_ACL_H
#define EM_ACL_H

#include <stdbool.h>
#include <sys/socket.h>

#include "common/prefix.h"

/*
 * True when the lists admit the client at SA; an IPv4-mapped IPv6 client
 * matches as IPv4 (prefix_addr_of), and an unknown family is refused.
 */
bool acl_admits(const struct prefix_list *allow, const struct prefix_list *deny,
    const struct sockaddr *sa);

#endif
