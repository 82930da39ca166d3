/* The access decision: allow first, then deny, no match admits; IPv4-mapped peers match as IPv4. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "worker/acl.h"

/* A list from up to 4 prefixes in config syntax; NULL ends it. */
static struct prefix_list
list_of(const char *a, const char *b, const char *c, const char *d)
{
	static struct prefix pool[64];
	static size_t used;
	const char *texts[] = { a, b, c, d };
	struct prefix_list l = { .n = 0, .v = &pool[used] };
	char err[128];

	for (int i = 0; i < 4 && texts[i] != NULL; i++) {
		assert_true(used < 64);
		assert_int_equal(prefix_parse(texts[i], &pool[used++], err, sizeof(err)), 0);
		l.n++;
	}
	return l;
}

static struct sockaddr_storage
peer(const char *ip)
{
	struct sockaddr_storage ss;

	memset(&ss, 0, sizeof(ss));
	if (strchr(ip, ':') != NULL) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
		s6->sin6_family = AF_INET6;
		assert_int_equal(inet_pton(AF_INET6, ip, &s6->sin6_addr), 1);
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
		s4->sin_family = AF_INET;
		assert_int_equal(inet_pton(AF_INET, ip, &s4->sin_addr), 1);
	}
	return ss;
}

static bool
admits(const struct prefix_list *allow, const struct prefix_list *deny, const char *ip)
{
	struct sockaddr_storage ss = peer(ip);

	return acl_admits(allow, deny, (const struct sockaddr *)&ss);
}

static void
no_lists_admit_everyone(void **state)
{
	struct prefix_list none = { 0 };

	(void)state;
	assert_true(admits(&none, &none, "127.0.0.3"));
	assert_true(admits(&none, &none, "::1"));
}

static void
the_example_of_the_issue(void **state)
{
	/* allow = [ "127.0.0.2/32", "::1/128" ]; deny = [ "0.0.0.0/0" ]; */
	struct prefix_list allow = list_of("127.0.0.2/32", "::1/128", NULL, NULL);
	struct prefix_list deny = list_of("0.0.0.0/0", NULL, NULL, NULL);

	(void)state;
	assert_true(admits(&allow, &deny, "127.0.0.2"));
	assert_true(admits(&allow, &deny, "::1"));
	assert_false(admits(&allow, &deny, "127.0.0.3"));
	assert_false(admits(&allow, &deny, "10.1.2.3"));
	/* deny names no IPv6 prefix: other IPv6 clients match nothing, so they are admitted. */
	assert_true(admits(&allow, &deny, "2001:db8::1"));
}

static void
allow_is_checked_before_deny(void **state)
{
	struct prefix_list allow = list_of("127.0.0.0/8", NULL, NULL, NULL);
	struct prefix_list deny = list_of("127.0.0.3/32", NULL, NULL, NULL);
	struct prefix_list none = { 0 };

	(void)state;
	/* nginx order: an allow match wins even over a narrower deny. */
	assert_true(admits(&allow, &deny, "127.0.0.3"));
	/* Without the allow, the deny applies. */
	assert_false(admits(&none, &deny, "127.0.0.3"));
	assert_true(admits(&none, &deny, "127.0.0.2"));
}

static void
only_an_allow_list_admits_everyone(void **state)
{
	/* No deny: whatever allow does not match still matches nothing, and is admitted. */
	struct prefix_list allow = list_of("127.0.0.2", NULL, NULL, NULL);
	struct prefix_list none = { 0 };

	(void)state;
	assert_true(admits(&allow, &none, "127.0.0.2"));
	assert_true(admits(&allow, &none, "127.0.0.3"));
}

static void
prefixes_of_any_length(void **state)
{
	struct prefix_list none = { 0 };
	struct prefix_list deny = list_of("10.0.0.0/9", "2001:db8:ff00::/40", NULL, NULL);

	(void)state;
	assert_false(admits(&none, &deny, "10.127.255.255"));
	assert_true(admits(&none, &deny, "10.128.0.0"));
	assert_false(admits(&none, &deny, "2001:db8:ffff::1"));
	assert_true(admits(&none, &deny, "2001:db8:fe00::1"));
}

static void
mapped_ipv4_matches_as_ipv4(void **state)
{
	struct prefix_list allow = list_of("127.0.0.2/32", NULL, NULL, NULL);
	struct prefix_list deny = list_of("0.0.0.0/0", "::/0", NULL, NULL);
	struct prefix_list deny6 = list_of("::/0", NULL, NULL, NULL);
	struct prefix_list none = { 0 };
	struct sockaddr_storage ss = peer("::ffff:127.0.0.2");
	const uint8_t *a;
	int family;

	(void)state;
	assert_int_equal(prefix_addr_of((const struct sockaddr *)&ss, &family, &a), 0);
	assert_int_equal(family, AF_INET);
	assert_memory_equal(a, "\x7f\x00\x00\x02", 4);
	assert_true(admits(&allow, &deny, "::ffff:127.0.0.2"));
	assert_false(admits(&allow, &deny, "::ffff:127.0.0.3"));
	/* As IPv4, a mapped peer is outside every IPv6 prefix. */
	assert_true(admits(&none, &deny6, "::ffff:127.0.0.3"));
	assert_false(admits(&none, &deny6, "::1"));
}

static void
first_match_wins_within_a_list(void **state)
{
	struct prefix_list allow = list_of("192.0.2.0/24", "192.0.2.7/32", NULL, NULL);
	struct prefix_list deny = list_of("0.0.0.0/0", NULL, NULL, NULL);

	(void)state;
	assert_true(admits(&allow, &deny, "192.0.2.7"));
	assert_true(admits(&allow, &deny, "192.0.2.200"));
	assert_false(admits(&allow, &deny, "192.0.3.1"));
}

static void
unknown_families_are_refused(void **state)
{
	struct prefix_list none = { 0 };
	struct sockaddr_storage ss = { .ss_family = AF_UNIX };

	(void)state;
	assert_false(acl_admits(&none, &none, (const struct sockaddr *)&ss));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(no_lists_admit_everyone),
		cmocka_unit_test(the_example_of_the_issue),
		cmocka_unit_test(allow_is_checked_before_deny),
		cmocka_unit_test(only_an_allow_list_admits_everyone),
		cmocka_unit_test(prefixes_of_any_length),
		cmocka_unit_test(mapped_ipv4_matches_as_ipv4),
		cmocka_unit_test(first_match_wins_within_a_list),
		cmocka_unit_test(unknown_families_are_refused),
	};
	return cmocka_run_group_tests_name("acl", tests, NULL, NULL);
}
