/* The upper-case transform: exactly a-z change, every other byte value stays. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

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

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(every_byte_value),
		cmocka_unit_test(text_like_the_seed),
		cmocka_unit_test(lengths_around_vector_widths),
	};
	return cmocka_run_group_tests_name("echo", tests, NULL, NULL);
}
