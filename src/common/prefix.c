#include "common/prefix.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ::ffff:0:0/96, under which IPv6 sockets show IPv4 peers. */
static const uint8_t v4mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

/* The "/BITS" part, or the whole address when there is none. */
static int
prefix_parse_bits(const char *text, const char *slash, struct prefix *out, char *err,
    size_t errlen)
{
	int max = out->family == AF_INET ? 32 : 128;
	char *end;
	long v;

	out->bits = max;
	if (slash == NULL)
		return 0;
	v = strtol(slash + 1, &end, 10);
	if (slash[1] == '\0' || *end != '\0' || v < 0 || v > max) {
		snprintf(err, errlen, "\"%s\": the prefix length must be 0..%d", text, max);
		return -1;
	}
	out->bits = (int)v;
	return 0;
}

int
prefix_parse(const char *text, struct prefix *out, char *err, size_t errlen)
{
	char addr[INET6_ADDRSTRLEN + 1];
	const char *slash = strchr(text, '/');
	size_t len = slash ? (size_t)(slash - text) : strlen(text);

	memset(out, 0, sizeof(*out));
	if (len == 0 || len >= sizeof(addr)) {
		snprintf(err, errlen, "\"%s\" is not an address prefix", text);
		return -1;
	}
	memcpy(addr, text, len);
	addr[len] = '\0';
	if (inet_pton(AF_INET, addr, out->addr) == 1)
		out->family = AF_INET;
	else if (inet_pton(AF_INET6, addr, out->addr) == 1)
		out->family = AF_INET6;
	else {
		snprintf(err, errlen, "\"%s\" is not an IPv4 or IPv6 address", addr);
		return -1;
	}
	return prefix_parse_bits(text, slash, out, err, errlen);
}

void
prefix_format(const struct prefix *p, char text[PREFIX_TEXT_LEN])
{
	char addr[INET6_ADDRSTRLEN];

	if (inet_ntop(p->family, p->addr, addr, sizeof(addr)) == NULL)
		snprintf(addr, sizeof(addr), "?");
	snprintf(text, PREFIX_TEXT_LEN, "%s/%d", addr, p->bits);
}

bool
prefix_match(const struct prefix *p, int family, const void *addr)
{
	const uint8_t *a = addr;
	int full = p->bits / 8, rest = p->bits % 8;

	if (p->family != family)
		return false;
	if (memcmp(a, p->addr, (size_t)full) != 0)
		return false;
	if (rest == 0)
		return true;
	return ((a[full] ^ p->addr[full]) & (uint8_t)(0xff << (8 - rest))) == 0;
}

bool
prefix_list_match(const struct prefix_list *l, int family, const void *addr)
{
	for (size_t i = 0; i < l->n; i++)
		if (prefix_match(&l->v[i], family, addr))
			return true;
	return false;
}

int
prefix_addr_of(const struct sockaddr *sa, int *family, const uint8_t **addr)
{
	if (sa->sa_family == AF_INET) {
		*family = AF_INET;
		*addr = (const uint8_t *)&((const struct sockaddr_in *)sa)->sin_addr;
		return 0;
	}
	if (sa->sa_family == AF_INET6) {
		const uint8_t *a = ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;
		if (memcmp(a, v4mapped, sizeof(v4mapped)) == 0) {
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
