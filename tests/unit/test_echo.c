/* The upper-case transform: exactly a-z change, every other byte value stays. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

#include "worker/echo.h"

static void
every_byte_value(void **state)
{
	unsigned char buf[256];

	(void)state;
	for (int i = 0; i < 256; i++)
		buf[i] = (unsigned char)i;
	echo_upper(buf, sizeof(buf));
	for (int i = 0; i < 256; i++) {
		int want = (i >= 'a' && i <= 'z') ? i - 'a' + 'A' : i;
		if (buf[i] != want)
			fail_msg("byte 0x%02x became 0x%02x, want 0x%02x", i, buf[i], want);
	}
}

static void
text_like_the_seed(void **state)
{
	unsigned char buf[] = "hello, World! 123 \xc3\xa9t\xc3\xa9\r\n";

	(void)state;
	echo_upper(buf, sizeof(buf) - 1);
	assert_string_equal((char *)buf, "HELLO, WORLD! 123 \xc3\xa9T\xc3\xa9\r\n");
}

static void
lengths_around_vector_widths(void **state)
{
	unsigned char buf[300], want[300];

	(void)state;
	for (size_t len = 0; len < sizeof(buf); len++) {
		memset(buf, 'q', sizeof(buf));
		memset(want, 'q', sizeof(want));
		memset(want, 'Q', len);
		echo_upper(buf, len);
		assert_memory_equal(buf, want, sizeof(buf));  /* nothing past len touched */
	}
}

static struct sockaddr_storage
addr(int family, const char *text, unsigned port)
{
	struct sockaddr_storage ss = { .ss_family = (sa_family_t)family };

	if (family == AF_INET) {
		inet_pton(AF_INET, text, &((struct sockaddr_in *)&ss)->sin_addr);
		((struct sockaddr_in *)&ss)->sin_port = htons((uint16_t)port);
	} else {
		inet_pton(AF_INET6, text, &((struct sockaddr_in6 *)&ss)->sin6_addr);
		((struct sockaddr_in6 *)&ss)->sin6_port = htons((uint16_t)port);
	}
	return ss;
}

static void
whoami_line_plain(void **state)
{
	struct sockaddr_storage client = addr(AF_INET, "192.0.2.1", 4242);
	struct sockaddr_storage server = addr(AF_INET6, "2001:db8::7", 7);
	struct echo_whoami who = { .instance = "edge-7", .host = "h1", .pid = 123, .slot = 2,
	    .generation = 5, .client = &client, .server = &server };
	char line[ECHO_WHOAMI_MAX];
	size_t n;

	(void)state;
	n = echo_whoami(line, sizeof(line), &who);
	assert_string_equal(line, "instance=edge-7 host=h1 pid=123 worker=2 generation=5 "
	    "client=192.0.2.1:4242 server=[2001:db8::7]:7\n");
	assert_int_equal(n, strlen(line));
}

static void
whoami_line_with_proxy_escapes_the_header_values(void **state)
{
	struct sockaddr_storage client = addr(AF_INET, "192.0.2.1", 4242);
	struct sockaddr_storage server = addr(AF_INET, "127.0.0.1", 7);
	struct sockaddr_storage bal = addr(AF_INET, "198.18.0.1", 50000);
	unsigned char uid[128];
	struct echo_whoami who = { .instance = "a", .host = "b", .pid = 1, .slot = 0,
	    .generation = 1, .client = &client, .server = &server, .proxy_version = 2,
	    .balancer = &bal, .authority = "ex ample.com\r\n%", .authority_len = 15,
	    .unique_id = uid, .unique_id_len = 3 };
	char line[ECHO_WHOAMI_MAX];
	size_t n;

	(void)state;
	uid[0] = 0, uid[1] = 0xff, uid[2] = 'z';
	n = echo_whoami(line, sizeof(line), &who);
	assert_string_equal(line, "instance=a host=b pid=1 worker=0 generation=1 client=192.0.2.1:4242 "
	    "server=127.0.0.1:7 proxy=v2 balancer=198.18.0.1:50000 "
	    "authority=ex%20ample.com%0D%0A%25 unique_id=%00%FFz\n");
	/* the longest values still fit, as one line */
	memset(uid, 0, sizeof(uid));
	who.unique_id_len = sizeof(uid);
	who.authority = (const char *)uid;
	who.authority_len = sizeof(uid);
	n = echo_whoami(line, sizeof(line), &who);
	assert_true(n < ECHO_WHOAMI_MAX);
	assert_int_equal(line[n - 1], '\n');
	assert_null(memchr(line, '\n', n - 1));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(every_byte_value),
		cmocka_unit_test(text_like_the_seed),
		cmocka_unit_test(lengths_around_vector_widths),
		cmocka_unit_test(whoami_line_plain),
		cmocka_unit_test(whoami_line_with_proxy_escapes_the_header_values),
	};
	return cmocka_run_group_tests_name("echo", tests, NULL, NULL);
}
