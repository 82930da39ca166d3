#include "worker/acl.h"

#include <netinet/in.h>
#include <string.h>

static const uint8_t v4mapped_prefix[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

int
acl_peer(const struct sockaddr *sa, int *family, const uint8_t **addr)
{
	if (sa->sa_family == AF_INET) {
		*family = AF_INET;
		*addr = (const uint8_t *)&((const struct sockaddr_in *)sa)->sin_addr;
		return 0;
	}
	if (sa->sa_family == AF_INET6) {
		const uint8_t *a = ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;
		if (memcmp(a, v4mapped_prefix, sizeof(v4mapped_prefix)) == 0) {
			*family = AF_INET;
			*addr = a + 12;
		} else {
			*family = AF_INET6;
			*addr = a;
		}
		return 0;
	}
	return -1;
}

static bool
acl_list_matches(const struct cfg_cidr_list *l, int family, const uint8_t *addr)
{
	for (size_t i = 0; i < l->n; i++)
		if (cfg_cidr_match(&l->v[i], family, addr))
			return true;
	return false;
}

bool
acl_admits(const struct cfg_cidr_list *allow, const struct cfg_cidr_list *deny,
    const struct sockaddr *sa)
{
	const uint8_t *addr;
	int family;

	if (acl_peer(sa, &family, &addr) == -1)
		return false;
	if (acl_list_matches(allow, family, addr))
		return true;
	return !acl_list_matches(deny, family, addr);
}
