#include "worker/acl.h"

bool
acl_admits(const struct prefix_list *allow, const struct prefix_list *deny,
    const struct sockaddr *sa)
{
	const uint8_t *addr;
	int family;

	if (prefix_addr_of(sa, &family, &addr) == -1)
		return false;
	if (prefix_list_match(allow, family, addr))
		return true;
	return !prefix_list_match(deny, family, addr);
}
