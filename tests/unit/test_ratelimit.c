/* The token bucket of udp_rate / udp_burst, on a clock the test turns by hand. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "common/ratelimit.h"

#define SEC 1000000000ULL
#define MS  1000000ULL

/* A bucket and the clock it is read with. */
struct bucket {
	uint64_t tat;
	uint64_t now;
	uint32_t rate, burst;
};

static bool
take(struct bucket *b)
{
	uint64_t next = 0xdeadbeef;
	bool ok = ratelimit_take(b->tat, b->now, b->rate, b->burst, &next);

	if (ok)
		b->tat = next;
	else
		assert_int_equal(next, 0xdeadbeef);  /* a refusal changes nothing */
	return ok;
}

/* How many tokens can be taken at once, right now. */
static unsigned
drain(struct bucket *b)
{
	unsigned n = 0;

	while (n < 10000000 && take(b))
		n++;
	return n;
}

static void
a_fresh_bucket_gives_its_burst_then_nothing(void **state)
{
	struct bucket b = { .tat = 0, .now = 1000 * SEC, .rate = 1000, .burst = 2000 };

	(void)state;
	assert_true(ratelimit_is_full(b.tat, b.now));
	assert_int_equal(drain(&b), 2000);
	assert_false(take(&b));
	assert_false(ratelimit_is_full(b.tat, b.now));
}

static void
it_refills_at_the_rate(void **state)
{
	struct bucket b = { .tat = 0, .now = 5 * SEC, .rate = 1000, .burst = 10 };

	(void)state;
	assert_int_equal(drain(&b), 10);
	b.now += 1 * MS / 2;          /* half an interval: still empty */
	assert_false(take(&b));
	b.now += 1 * MS / 2;          /* one interval: one token */
	assert_true(take(&b));
	assert_false(take(&b));
	b.now += 7 * MS;              /* seven intervals: seven tokens */
	assert_int_equal(drain(&b), 7);
}

static void
it_never_holds_more_than_the_burst(void **state)
{
	struct bucket b = { .tat = 0, .now = 5 * SEC, .rate = 100, .burst = 5 };

	(void)state;
	assert_int_equal(drain(&b), 5);
	b.now += 3600 * SEC;          /* an hour idle refills to the depth, not beyond */
	assert_true(ratelimit_is_full(b.tat, b.now));
	assert_int_equal(drain(&b), 5);
}

static void
a_steady_sender_at_the_rate_is_never_refused(void **state)
{
	struct bucket b = { .tat = 0, .now = 5 * SEC, .rate = 50, .burst = 1 };

	(void)state;
	for (int i = 0; i < 1000; i++) {
		assert_true(take(&b));
		b.now += SEC / 50;
	}
}

static void
over_a_long_run_the_rate_holds(void **state)
{
	/* Offered 10 a ms for 10 s against 1000/s with a burst of 2000: burst + 10 s of rate. */
	struct bucket b = { .tat = 0, .now = 5 * SEC, .rate = 1000, .burst = 2000 };
	unsigned ok = 0;

	(void)state;
	for (int ms = 0; ms < 10000; ms++, b.now += MS)
		for (int k = 0; k < 10; k++)
			ok += take(&b);
	assert_in_range(ok, 2000 + 10000 - 2, 2000 + 10000);
}

static void
a_burst_of_one_is_a_plain_rate(void **state)
{
	struct bucket b = { .tat = 0, .now = 5 * SEC, .rate = 10, .burst = 1 };

	(void)state;
	assert_true(take(&b));
	assert_false(take(&b));
	b.now += SEC / 10 - 1;
	assert_false(take(&b));
	b.now += 1;
	assert_true(take(&b));
}

static void
rate_zero_is_no_limit(void **state)
{
	struct bucket b = { .tat = 42, .now = 5 * SEC, .rate = 0, .burst = 1 };

	(void)state;
	for (int i = 0; i < 100000; i++)
		assert_true(take(&b));
	assert_int_equal(b.tat, 42);
}

static void
extreme_settings_do_not_overflow(void **state)
{
	/* The config's bounds: rate 1..1e8, burst 1..1e8. */
	struct bucket slow = { .tat = 0, .now = 5 * SEC, .rate = 1, .burst = 100000000 };
	struct bucket fast = { .tat = 0, .now = 5 * SEC, .rate = 100000000, .burst = 1 };

	(void)state;
	for (int i = 0; i < 1000; i++)
		assert_true(take(&slow));
	assert_true(slow.tat > slow.now);
	assert_true(take(&fast));
	assert_false(take(&fast));
	fast.now += 10;               /* 10 ns is one interval at 1e8 a second */
	assert_true(take(&fast));
	/* burst 0 cannot come from the config; it behaves as 1. */
	struct bucket zero = { .tat = 0, .now = 5 * SEC, .rate = 10, .burst = 0 };
	assert_true(take(&zero));
	assert_false(take(&zero));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(a_fresh_bucket_gives_its_burst_then_nothing),
		cmocka_unit_test(it_refills_at_the_rate),
		cmocka_unit_test(it_never_holds_more_than_the_burst),
		cmocka_unit_test(a_steady_sender_at_the_rate_is_never_refused),
		cmocka_unit_test(over_a_long_run_the_rate_holds),
		cmocka_unit_test(a_burst_of_one_is_a_plain_rate),
		cmocka_unit_test(rate_zero_is_no_limit),
		cmocka_unit_test(extreme_settings_do_not_overflow),
	};
	return cmocka_run_group_tests_name("ratelimit", tests, NULL, NULL);
}
