/* Respawn backoff and the words the master logs when a worker ends. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>
#include <sys/wait.h>

#include "master/workers.h"

static void
quick_deaths_double_the_delay_up_to_the_cap(void **state)
{
	int d = 0;
	const int want[] = { 100, 200, 400, 800, 1600, 3200, 6400, 10000, 10000 };

	(void)state;
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		d = workers_backoff_next(d, 50);
		assert_int_equal(d, want[i]);
	}
}

static void
a_long_life_resets_the_backoff(void **state)
{
	(void)state;
	assert_int_equal(workers_backoff_next(10000, WORKERS_STABLE_MS), 0);
	assert_int_equal(workers_backoff_next(0, WORKERS_STABLE_MS - 1), WORKERS_BACKOFF_MIN_MS);
	assert_int_equal(workers_backoff_next(0, 0), WORKERS_BACKOFF_MIN_MS);
}

static void
exit_descriptions(void **state)
{
	char buf[96];

	(void)state;
	wproc_describe_exit(W_EXITCODE(3, 0), buf, sizeof(buf));
	assert_string_equal(buf, "exited with status 3");
	wproc_describe_exit(W_EXITCODE(0, 9), buf, sizeof(buf));
	assert_string_equal(buf, "killed by signal 9 (SIGKILL)");
	wproc_describe_exit(W_EXITCODE(0, 11) | 0x80, buf, sizeof(buf));
	assert_string_equal(buf, "killed by signal 11 (SIGSEGV), core dumped");
	assert_true(wproc_exit_is_clean(W_EXITCODE(0, 0)));
	assert_false(wproc_exit_is_clean(W_EXITCODE(1, 0)));
	assert_false(wproc_exit_is_clean(W_EXITCODE(0, 15)));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(quick_deaths_double_the_delay_up_to_the_cap),
		cmocka_unit_test(a_long_life_resets_the_backoff),
		cmocka_unit_test(exit_descriptions),
	};
	return cmocka_run_group_tests_name("workers", tests, NULL, NULL);
}
