/* The oldest-first deadline list: expiry looks at the head only, unlinking anywhere keeps the order. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "worker/deadline.h"

static void
expires_oldest_first_and_stops_at_one_in_time(void **state)
{
	struct deadline_list l = { 0 };
	struct deadline_node n[3];
	int owner[3];

	(void)state;
	assert_false(deadline_pending(&l));
	assert_null(deadline_expired(&l, 1000, 0));
	for (int i = 0; i < 3; i++)
		deadline_append(&l, &n[i], &owner[i], 100 * (i + 1));
	assert_true(deadline_pending(&l));
	assert_null(deadline_expired(&l, 199, 100));  /* the oldest started at 100 */
	assert_ptr_equal(deadline_expired(&l, 200, 100), &owner[0]);
	deadline_unlink(&l, &n[0]);
	assert_null(deadline_expired(&l, 200, 100));  /* the next started at 200 */
	assert_ptr_equal(deadline_expired(&l, 300, 100), &owner[1]);
}

static void
unlinking_any_entry_keeps_the_rest_in_order(void **state)
{
	struct deadline_list l = { 0 };
	struct deadline_node n[3];
	int owner[3];

	(void)state;
	for (int i = 0; i < 3; i++)
		deadline_append(&l, &n[i], &owner[i], 10);
	deadline_unlink(&l, &n[1]);  /* the middle */
	assert_ptr_equal(l.head, &n[0]);
	assert_ptr_equal(n[0].next, &n[2]);
	assert_ptr_equal(n[2].prev, &n[0]);
	deadline_unlink(&l, &n[2]);  /* the tail */
	assert_ptr_equal(l.tail, &n[0]);
	deadline_unlink(&l, &n[0]);  /* the last */
	assert_null(l.head);
	assert_null(l.tail);
	assert_false(deadline_pending(&l));
	deadline_append(&l, &n[1], &owner[1], 20);  /* an emptied list takes entries again */
	assert_ptr_equal(deadline_expired(&l, 20, 0), &owner[1]);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(expires_oldest_first_and_stops_at_one_in_time),
		cmocka_unit_test(unlinking_any_entry_keeps_the_rest_in_order),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
