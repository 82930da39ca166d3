/* The pending-output buffer behind backpressure: order kept, bound enforced, memory freed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include "worker/outbuf.h"

static void
empty_holds_no_memory(void **state)
{
	struct outbuf b = { 0 };

	(void)state;
	assert_null(b.data);
	assert_int_equal(outbuf_room(&b), OUTBUF_CAP);
	assert_int_equal(outbuf_append(&b, "abc", 3), 0);
	assert_non_null(b.data);
	outbuf_consume(&b, 3);
	assert_null(b.data);  /* drained: the memory goes back at once */
	assert_int_equal(b.len, 0);
}

static void
bytes_come_out_in_order_across_wraps(void **state)
{
	static unsigned char in[OUTBUF_CAP * 3], out[OUTBUF_CAP * 3];
	struct outbuf b = { 0 };
	size_t wrote = 0, read = 0, step = 0;

	(void)state;
	for (size_t i = 0; i < sizeof(in); i++)
		in[i] = (unsigned char)(i * 7 + i / 251);
	while (read < sizeof(in)) {
		size_t n = (step * 977) % 5003 + 1;
		if (n > outbuf_room(&b))
			n = outbuf_room(&b);
		if (n > sizeof(in) - wrote)
			n = sizeof(in) - wrote;
		assert_int_equal(outbuf_append(&b, in + wrote, n), 0);
		wrote += n;
		n = (step * 1319) % 7001 + 1;
		if (n > b.len)
			n = b.len;
		memcpy(out + read, b.data + b.off, n);
		outbuf_consume(&b, n);
		read += n;
		step++;
	}
	assert_memory_equal(in, out, sizeof(in));
	outbuf_free(&b);
}

static void
the_bound_is_enforced(void **state)
{
	static unsigned char chunk[OUTBUF_CAP];
	struct outbuf b = { 0 };

	(void)state;
	assert_int_equal(outbuf_append(&b, chunk, OUTBUF_CAP - 1), 0);
	assert_int_equal(outbuf_room(&b), 1);
	assert_int_equal(outbuf_append(&b, chunk, 2), -1);
	assert_int_equal(errno, ENOBUFS);
	assert_int_equal(b.len, OUTBUF_CAP - 1);  /* a refused append changes nothing */
	assert_int_equal(outbuf_append(&b, chunk, 1), 0);
	assert_int_equal(outbuf_room(&b), 0);
	outbuf_free(&b);
	assert_null(b.data);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(empty_holds_no_memory),
		cmocka_unit_test(bytes_come_out_in_order_across_wraps),
		cmocka_unit_test(the_bound_is_enforced),
	};
	return cmocka_run_group_tests_name("outbuf", tests, NULL, NULL);
}
