/* prefix: parsing, matching and formatting address prefixes, and how a socket's peer is seen. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/un.h>

#include "common/prefix.h"

static struct prefix
parsed(const char *text)
{
	struct prefix p;
	char err[128];

	if (prefix_parse(text, &p, err, sizeof(err)) == -1)
		fail_msg("\"%s\" refused: %s", text, err);
	return p;
}

static bool
matches(const char *prefix, const char *ip)
{
	struct prefix p = parsed(prefix);
	uint8_t a[16];
	int family = strchr(ip, ':') != NULL ? AF_INET6 : AF_INET;

	assert_int_equal(inet_pton(family, ip, a), 1);
	return prefix_match(&p, family, a);
}

static void
ipv4_prefixes_off_byte_boundaries(void **state)
{
	struct prefix c;
	char err[128];
	uint8_t in[4] = { 192, 168, 1, 130 }, out[4] = { 192, 168, 1, 120 };

	(void)state;
	assert_int_equal(prefix_parse("192.168.1.128/25", &c, err, sizeof(err)), 0);
	assert_true(prefix_match(&c, AF_INET, in));
	assert_false(prefix_match(&c, AF_INET, out));
	assert_int_equal(prefix_parse("10.0.0.0/33", &c, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "0..32"));
	assert_int_equal(prefix_parse("::/129", &c, err, sizeof(err)), -1);
	assert_int_equal(prefix_parse("example.com/8", &c, err, sizeof(err)), -1);
	assert_int_equal(prefix_parse("10.0.0.0/", &c, err, sizeof(err)), -1);
}

static void
an_address_alone_is_a_whole_prefix(void **state)
{
	(void)state;
	assert_int_equal(parsed("127.0.0.2").bits, 32);
	assert_int_equal(parsed("::1").bits, 128);
	assert_int_equal(parsed("::1").family, AF_INET6);
	assert_true(matches("127.0.0.2", "127.0.0.2"));
	assert_false(matches("127.0.0.2", "127.0.0.3"));
}

static void
zero_bits_match_the_whole_family_only(void **state)
{
	(void)state;
	assert_true(matches("0.0.0.0/0", "203.0.113.9"));
	assert_false(matches("0.0.0.0/0", "2001:db8::1"));
	assert_true(matches("::/0", "2001:db8::1"));
	assert_false(matches("::/0", "203.0.113.9"));
	/* A mapped address given as IPv6 bytes is IPv6 here; prefix_addr_of is what maps it. */
	assert_false(matches("127.0.0.0/8", "::ffff:127.0.0.1"));
}

static void
ipv6_prefixes_off_byte_boundaries(void **state)
{
	(void)state;
	assert_true(matches("2001:db8:ff00::/40", "2001:db8:ffff::1"));
	assert_false(matches("2001:db8:ff00::/40", "2001:db8:fe00::1"));
	assert_true(matches("fe80::/10", "febf::1"));
	assert_false(matches("fe80::/10", "fec0::1"));
}

static void
mistakes_say_what_is_wrong(void **state)
{
	struct prefix p;
	char err[128];

	(void)state;
	assert_int_equal(prefix_parse("127.0.0.300/32", &p, err, sizeof(err)), -1);
	assert_string_equal(err, "\"127.0.0.300\" is not an IPv4 or IPv6 address");
	assert_int_equal(prefix_parse("/8", &p, err, sizeof(err)), -1);
	assert_string_equal(err, "\"/8\" is not an address prefix");
	assert_int_equal(prefix_parse("::/-1", &p, err, sizeof(err)), -1);
	assert_string_equal(err, "\"::/-1\": the prefix length must be 0..128");
	assert_int_equal(prefix_parse("10.0.0.0/8x", &p, err, sizeof(err)), -1);
}

static void
format_writes_what_parse_reads(void **state)
{
	const char *texts[] = { "10.0.0.0/8", "192.168.1.128/25", "::1/128", "2001:db8::/32",
	    "0.0.0.0/0", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128" };
	char text[PREFIX_TEXT_LEN];

	(void)state;
	for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
		struct prefix p = parsed(texts[i]);
		prefix_format(&p, text);
		assert_string_equal(text, texts[i]);
	}
	{
		struct prefix p = parsed("127.0.0.2");
		prefix_format(&p, text);
		assert_string_equal(text, "127.0.0.2/32");
	}
}

static void
a_list_matches_when_any_prefix_does(void **state)
{
	struct prefix v[2] = { parsed("10.0.0.0/8"), parsed("::1") };
	struct prefix_list list = { .n = 2, .v = v }, empty = { 0 };
	uint8_t a4[4] = { 10, 9, 8, 7 }, b4[4] = { 11, 0, 0, 1 }, a6[16] = { [15] = 1 };

	(void)state;
	assert_true(prefix_list_match(&list, AF_INET, a4));
	assert_false(prefix_list_match(&list, AF_INET, b4));
	assert_true(prefix_list_match(&list, AF_INET6, a6));
	assert_false(prefix_list_match(&empty, AF_INET, a4));
}

static void
a_peer_is_seen_by_family_and_mapped_ipv4_as_ipv4(void **state)
{
	struct sockaddr_in s4 = { .sin_family = AF_INET };
	struct sockaddr_in6 s6 = { .sin6_family = AF_INET6 };
	struct sockaddr_un su = { .sun_family = AF_UNIX };
	const uint8_t *a;
	int family;

	(void)state;
	assert_int_equal(inet_pton(AF_INET, "192.0.2.7", &s4.sin_addr), 1);
	assert_int_equal(prefix_addr_of((const struct sockaddr *)&s4, &family, &a), 0);
	assert_int_equal(family, AF_INET);
	assert_memory_equal(a, "\xc0\x00\x02\x07", 4);

	assert_int_equal(inet_pton(AF_INET6, "2001:db8::7", &s6.sin6_addr), 1);
	assert_int_equal(prefix_addr_of((const struct sockaddr *)&s6, &family, &a), 0);
	assert_int_equal(family, AF_INET6);
	assert_ptr_equal(a, s6.sin6_addr.s6_addr);

	assert_int_equal(inet_pton(AF_INET6, "::ffff:127.0.0.2", &s6.sin6_addr), 1);
	assert_int_equal(prefix_addr_of((const struct sockaddr *)&s6, &family, &a), 0);
	assert_int_equal(family, AF_INET);
	assert_memory_equal(a, "\x7f\x00\x00\x02", 4);

	/* Only ::ffff:0:0/96 is IPv4: the deprecated compatible form ::a.b.c.d stays IPv6. */
	assert_int_equal(inet_pton(AF_INET6, "::127.0.0.2", &s6.sin6_addr), 1);
	assert_int_equal(prefix_addr_of((const struct sockaddr *)&s6, &family, &a), 0);
	assert_int_equal(family, AF_INET6);

	assert_int_equal(prefix_addr_of((const struct sockaddr *)&su, &family, &a), -1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(ipv4_prefixes_off_byte_boundaries),
		cmocka_unit_test(an_address_alone_is_a_whole_prefix),
		cmocka_unit_test(zero_bits_match_the_whole_family_only),
		cmocka_unit_test(ipv6_prefixes_off_byte_boundaries),
		cmocka_unit_test(mistakes_say_what_is_wrong),
		cmocka_unit_test(format_writes_what_parse_reads),
		cmocka_unit_test(a_list_matches_when_any_prefix_does),
		cmocka_unit_test(a_peer_is_seen_by_family_and_mapped_ipv4_as_ipv4),
	};
	return cmocka_run_group_tests_name("prefix", tests, NULL, NULL);
}
