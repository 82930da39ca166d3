/*
 * The shared per-address tables: connection counts summed over workers, a
 * dead worker's counts purged, a full window failing closed, token buckets
 * per source with idle ones taken over, and the limit holding under
 * concurrent processes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/addrtable.h"

#define SEC 1000000000ULL

static struct sockaddr_storage
addr_of(const char *ip)
{
	struct sockaddr_storage ss;

	memset(&ss, 0, sizeof(ss));
	if (strchr(ip, ':') != NULL) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons(1234);
		assert_int_equal(inet_pton(AF_INET6, ip, &s6->sin6_addr), 1);
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
		s4->sin_family = AF_INET;
		s4->sin_port = htons(4321);
		assert_int_equal(inet_pton(AF_INET, ip, &s4->sin_addr), 1);
	}
	return ss;
}

static uint64_t
hash_of(const struct addrtab *t, const char *ip)
{
	struct sockaddr_storage ss = addr_of(ip);

	return addrtab_hash(t, (const struct sockaddr *)&ss);
}

/* Zeroed shared memory, as scoreboard_create maps it. */
static int
table_setup(void **state)
{
	struct addrtab *t = mmap(NULL, sizeof(*t), PROT_READ | PROT_WRITE,
	    MAP_SHARED | MAP_ANONYMOUS, -1, 0);

	if (t == MAP_FAILED)
		return -1;
	addrtab_init(t);
	*state = t;
	return 0;
}

static int
table_teardown(void **state)
{
	munmap(*state, sizeof(struct addrtab));
	return 0;
}

static void
hashes_ignore_ports_and_the_ipv4_spelling(void **state)
{
	struct addrtab *t = *state;
	struct addrtab other = { .seed = { t->seed[0] ^ 1, t->seed[1] } };

	assert_true(hash_of(t, "127.0.0.2") == hash_of(t, "::ffff:127.0.0.2"));
	assert_true(hash_of(t, "127.0.0.2") != hash_of(t, "127.0.0.3"));
	assert_true(hash_of(t, "::1") != hash_of(t, "::2"));
	/* Keyed: another key, another hash. */
	assert_true(hash_of(t, "127.0.0.2") != hash_of(&other, "127.0.0.2"));
}

static void
the_limit_holds_across_workers(void **state)
{
	struct addrtab *t = *state;
	uint64_t a = hash_of(t, "127.0.0.2"), b = hash_of(t, "127.0.0.3");
	int e1, e2, e3, e4;

	assert_true((e1 = addrtab_conn_acquire(t, a, 1, 3)) >= 0);
	assert_true((e2 = addrtab_conn_acquire(t, a, 2, 3)) >= 0);
	assert_true((e3 = addrtab_conn_acquire(t, a, 1, 3)) >= 0);
	assert_int_equal(e1, e3);  /* one entry per worker and address */
	assert_int_not_equal(e1, e2);
	assert_int_equal(addrtab_conn_count(t, a), 3);
	assert_int_equal(addrtab_conn_acquire(t, a, 1, 3), ADDRTAB_OVER);
	assert_int_equal(addrtab_conn_acquire(t, a, 3, 3), ADDRTAB_OVER);
	/* Another address is not affected. */
	assert_true((e4 = addrtab_conn_acquire(t, b, 3, 3)) >= 0);
	assert_int_equal(addrtab_conn_count(t, b), 1);
	/* One closes: the next is admitted, by whichever worker. */
	addrtab_conn_release(t, e2, 2);
	assert_int_equal(addrtab_conn_count(t, a), 2);
	assert_true(addrtab_conn_acquire(t, a, 3, 3) >= 0);
	assert_int_equal(addrtab_conn_acquire(t, a, 2, 3), ADDRTAB_OVER);
	addrtab_conn_release(t, e4, 3);
	assert_int_equal(addrtab_conn_count(t, b), 0);
}

/* A handed-over connection is counted for its new owner even over the limit, and still limits. */
static void
a_moved_connection_is_counted_over_the_limit(void **state)
{
	struct addrtab *t = *state;
	uint64_t a = hash_of(t, "198.51.100.7");
	int e1, e2, e3;

	assert_true((e1 = addrtab_conn_acquire(t, a, 1, 2)) >= 0);
	assert_true((e2 = addrtab_conn_acquire(t, a, 1, 2)) >= 0);
	assert_int_equal(addrtab_conn_acquire(t, a, 2, 2), ADDRTAB_OVER);
	assert_true((e3 = addrtab_conn_add(t, a, 2)) >= 0);
	assert_int_not_equal(e3, e1);
	assert_int_equal(addrtab_conn_count(t, a), 3);
	/* The sender releases its entry after the ack: the new owner's count remains. */
	addrtab_conn_release(t, e1, 1);
	assert_int_equal(addrtab_conn_count(t, a), 2);
	assert_int_equal(addrtab_conn_acquire(t, a, 3, 2), ADDRTAB_OVER);
	addrtab_conn_release(t, e3, 2);
	addrtab_conn_release(t, e2, 1);
	assert_int_equal(addrtab_conn_count(t, a), 0);
	/* Purging the new owner forgets what it was handed. */
	assert_true(addrtab_conn_add(t, a, 4) >= 0);
	addrtab_conn_purge(t, 4);
	assert_int_equal(addrtab_conn_count(t, a), 0);
}

static void
a_release_by_another_owner_changes_nothing(void **state)
{
	struct addrtab *t = *state;
	uint64_t a = hash_of(t, "192.0.2.1");
	int e = addrtab_conn_acquire(t, a, 5, 10);

	assert_true(e >= 0);
	addrtab_conn_release(t, e, 6);
	addrtab_conn_release(t, -1, 5);
	addrtab_conn_release(t, ADDRTAB_CONN_SIZE, 5);
	assert_int_equal(addrtab_conn_count(t, a), 1);
	addrtab_conn_release(t, e, 5);
	addrtab_conn_release(t, e, 5);  /* never below zero */
	assert_int_equal(addrtab_conn_count(t, a), 0);
}

static void
a_dead_workers_counts_are_purged(void **state)
{
	struct addrtab *t = *state;
	uint64_t a = hash_of(t, "2001:db8::7"), b = hash_of(t, "2001:db8::8");

	for (int i = 0; i < 4; i++)
		assert_true(addrtab_conn_acquire(t, a, 7, 5) >= 0);
	assert_true(addrtab_conn_acquire(t, a, 8, 5) >= 0);
	assert_true(addrtab_conn_acquire(t, b, 7, 5) >= 0);
	assert_int_equal(addrtab_conn_acquire(t, a, 9, 5), ADDRTAB_OVER);
	addrtab_conn_purge(t, 7);  /* worker 7 was SIGKILLed and reaped */
	assert_int_equal(addrtab_conn_count(t, a), 1);
	assert_int_equal(addrtab_conn_count(t, b), 0);
	for (int i = 0; i < 4; i++)
		assert_true(addrtab_conn_acquire(t, a, 7, 5) >= 0);  /* its successor in the slot */
	assert_int_equal(addrtab_conn_acquire(t, a, 9, 5), ADDRTAB_OVER);
	addrtab_conn_purge(t, 7);
	addrtab_conn_purge(t, 8);
	assert_int_equal(addrtab_conn_count(t, a), 0);
}

/* Addresses 10.x.y.z whose hash starts the same probe window as `h`'s. */
static size_t
addresses_in_window(const struct addrtab *t, uint64_t h, size_t mask, char (*out)[32], size_t n)
{
	size_t found = 0;

	for (uint32_t i = 1; found < n && i < (1U << 24); i++) {
		char ip[32];
		snprintf(ip, sizeof(ip), "10.%u.%u.%u", i >> 16, (i >> 8) & 255, i & 255);
		if ((hash_of(t, ip) & mask) == (h & mask))
			snprintf(out[found++], 32, "%s", ip);
	}
	return found;
}

static void
a_full_window_fails_closed(void **state)
{
	struct addrtab *t = *state;
	static char ips[ADDRTAB_CONN_WINDOW + 1][32];
	uint64_t target = hash_of(t, "198.51.100.1");
	int entries[ADDRTAB_CONN_WINDOW];
	size_t n = addresses_in_window(t, target, ADDRTAB_CONN_SIZE - 1, ips, ADDRTAB_CONN_WINDOW);

	assert_int_equal(n, ADDRTAB_CONN_WINDOW);
	for (size_t i = 0; i < n; i++)
		assert_true((entries[i] = addrtab_conn_acquire(t, hash_of(t, ips[i]), 1, 10)) >= 0);
	assert_int_equal(addrtab_conn_acquire(t, target, 2, 10), ADDRTAB_FULL);
	/* Addresses already counted there still get more. */
	assert_true(addrtab_conn_acquire(t, hash_of(t, ips[3]), 1, 10) == entries[3]);
	/* A freed entry is taken by the newcomer. */
	addrtab_conn_release(t, entries[0], 1);
	assert_true(addrtab_conn_acquire(t, target, 2, 10) >= 0);
	addrtab_conn_purge(t, 1);
	addrtab_conn_purge(t, 2);
}

static void
the_limit_holds_between_processes(void **state)
{
	struct addrtab *t = *state;
	uint64_t a = hash_of(t, "127.0.0.9");
	int *holders = mmap(NULL, 2 * sizeof(int), PROT_READ | PROT_WRITE,
	    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	enum { PROCS = 4, ROUNDS = 20000, LIMIT = 3 };

	assert_true(holders != MAP_FAILED);
	holders[0] = holders[1] = 0;
	for (int p = 0; p < PROCS; p++) {
		pid_t pid = fork();
		assert_true(pid != -1);
		if (pid != 0)
			continue;
		for (int r = 0; r < ROUNDS; r++) {
			int e = addrtab_conn_acquire(t, a, (unsigned)p + 100, LIMIT);
			if (e < 0)
				continue;
			int now = __atomic_add_fetch(&holders[0], 1, __ATOMIC_SEQ_CST);
			if (now > LIMIT)
				__atomic_store_n(&holders[1], now, __ATOMIC_SEQ_CST);
			__atomic_sub_fetch(&holders[0], 1, __ATOMIC_SEQ_CST);
			addrtab_conn_release(t, e, (unsigned)p + 100);
		}
		_exit(0);
	}
	for (int p = 0; p < PROCS; p++) {
		int status;
		assert_true(wait(&status) > 0);
		assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	}
	assert_int_equal(holders[1], 0);  /* never more than LIMIT at once */
	assert_int_equal(addrtab_conn_count(t, a), 0);  /* nothing leaked */
	munmap(holders, 2 * sizeof(int));
}

static void
a_source_gets_its_burst_and_others_theirs(void **state)
{
	struct addrtab *t = *state;
	uint64_t a = hash_of(t, "127.0.0.2"), b = hash_of(t, "127.0.0.3");
	uint64_t now = 100 * SEC;
	int ok = 0;

	for (int i = 0; i < 50; i++)
		ok += addrtab_rate_admit(t, a, now, 1, 5);
	assert_int_equal(ok, 5);
	assert_true(addrtab_rate_admit(t, b, now, 1, 5));
	assert_false(addrtab_rate_admit(t, a, now + SEC / 2, 1, 5));
	assert_true(addrtab_rate_admit(t, a, now + SEC, 1, 5));
	assert_true(addrtab_rate_admit(t, a, now, 0, 5));  /* rate 0: no limit */
}

static void
idle_buckets_are_taken_over_and_the_rest_share_one(void **state)
{
	struct addrtab *t = *state;
	static char ips[ADDRTAB_RATE_WINDOW + 2][32];
	uint64_t h[ADDRTAB_RATE_WINDOW + 2], now = 200 * SEC;
	size_t n = addresses_in_window(t, hash_of(t, "203.0.113.1"), ADDRTAB_RATE_SIZE - 1, ips,
	    ADDRTAB_RATE_WINDOW + 2);

	assert_int_equal(n, ADDRTAB_RATE_WINDOW + 2);
	for (size_t i = 0; i < n; i++)
		h[i] = hash_of(t, ips[i]);
	/* The window fills with sources that are not idle. */
	for (size_t i = 0; i < ADDRTAB_RATE_WINDOW; i++)
		assert_true(addrtab_rate_admit(t, h[i], now, 1, 2));
	/* Two more find no room: they share the overflow bucket of depth 2. */
	assert_true(addrtab_rate_admit(t, h[ADDRTAB_RATE_WINDOW], now, 1, 2));
	assert_true(addrtab_rate_admit(t, h[ADDRTAB_RATE_WINDOW + 1], now, 1, 2));
	assert_false(addrtab_rate_admit(t, h[ADDRTAB_RATE_WINDOW], now, 1, 2));
	assert_false(addrtab_rate_admit(t, h[ADDRTAB_RATE_WINDOW + 1], now, 1, 2));
	/* The first sources kept their own buckets: one token left each. */
	assert_true(addrtab_rate_admit(t, h[0], now, 1, 2));
	assert_false(addrtab_rate_admit(t, h[0], now, 1, 2));
	/* Once the buckets have filled up again, a newcomer takes one over. */
	now += 10 * SEC;
	for (int i = 0; i < 2; i++)
		assert_true(addrtab_rate_admit(t, h[ADDRTAB_RATE_WINDOW], now, 1, 2));
	assert_false(addrtab_rate_admit(t, h[ADDRTAB_RATE_WINDOW], now, 1, 2));
	/* ... and the overflow bucket, not charged meanwhile, serves the other. */
	assert_true(addrtab_rate_admit(t, h[ADDRTAB_RATE_WINDOW + 1], now, 1, 2));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(hashes_ignore_ports_and_the_ipv4_spelling,
		    table_setup, table_teardown),
		cmocka_unit_test_setup_teardown(the_limit_holds_across_workers,
		    table_setup, table_teardown),
		cmocka_unit_test_setup_teardown(a_moved_connection_is_counted_over_the_limit,
		    table_setup, table_teardown),
		cmocka_unit_test_setup_teardown(a_release_by_another_owner_changes_nothing,
		    table_setup, table_teardown),
		cmocka_unit_test_setup_teardown(a_dead_workers_counts_are_purged,
		    table_setup, table_teardown),
		cmocka_unit_test_setup_teardown(a_full_window_fails_closed,
		    table_setup, table_teardown),
		cmocka_unit_test_setup_teardown(the_limit_holds_between_processes,
		    table_setup, table_teardown),
		cmocka_unit_test_setup_teardown(a_source_gets_its_burst_and_others_theirs,
		    table_setup, table_teardown),
		cmocka_unit_test_setup_teardown(idle_buckets_are_taken_over_and_the_rest_share_one,
		    table_setup, table_teardown),
	};
	return cmocka_run_group_tests_name("addrtable", tests, NULL, NULL);
}
