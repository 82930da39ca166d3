/*
 * test_slowloris.c: limits.min_rate. A client that trickles a byte now and
 * then is closed after idle_timeout like an idle one; a client that talks
 * briskly is kept; with min_rate = 0 the trickling client is kept too.
 */
#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define IDLE_S 2

static void
write_conf(struct env *e, int port, int min_rate)
{
	char text[512];

	snprintf(text, sizeof(text),
	    "workers = 1;\n"
	    "log = { level = \"info\"; stderr = true; };\n"
	    "limits = { idle_timeout = %d; min_rate = %d; };\n"
	    "listen = ( { proto = \"tcp\"; address = \"127.0.0.1\"; port = %d; } );\n",
	    IDLE_S, min_rate, port);
	env_write_conf_text(e, text);
}

/*
 * Sends one byte every 200 ms on `slow` (5 bytes a second) and 64 bytes
 * every 200 ms on `brisk` (320 a second), reading the echoes, for `ms`.
 * Returns false as soon as `slow` is closed by the server.
 */
static bool
trickle(int slow, int brisk, int ms)
{
	char buf[64] = "brisk brisk brisk brisk brisk brisk brisk brisk brisk brisk b", got[64];

	for (int64_t end = now_ms() + ms; now_ms() < end; nap_ms(200)) {
		assert_int_equal(tcp_send_all(brisk, buf, sizeof(buf), EM_DEADLINE_MS), 0);
		assert_int_equal(tcp_read_exact(brisk, got, sizeof(got), EM_DEADLINE_MS), (ssize_t)sizeof(got));
		if (tcp_send_all(slow, "s", 1, 1000) != 0 || tcp_read_exact(slow, got, 1, 1000) != 1)
			return false;
	}
	return true;
}

static void
a_trickling_client_is_closed_a_brisk_one_kept(void **state)
{
	struct env *e = *state;
	int port = port_pick(), slow, brisk;
	int64_t start;

	write_conf(e, port, 100);
	env_start_ready(e, 1, port);
	slow = tcp_connect(port, EM_DEADLINE_MS);
	brisk = tcp_connect(port, EM_DEADLINE_MS);
	assert_true(slow >= 0 && brisk >= 0);
	start = now_ms();
	/* 5 bytes a second is under min_rate = 100: closed once idle_timeout passes. */
	assert_false(trickle(slow, brisk, (IDLE_S + 8) * 1000));
	print_message("the trickling client was closed after %lld ms\n", (long long)(now_ms() - start));
	assert_true(now_ms() - start >= IDLE_S * 1000 - 500);
	/* The brisk client, 320 bytes a second, is still served. */
	tcp_roundtrip(port, "x", 1, "X");
	assert_true(trickle(brisk, brisk, 500));
	close(slow);
	close(brisk);
}

static void
without_min_rate_any_byte_counts(void **state)
{
	struct env *e = *state;
	int port = port_pick(), slow, brisk;

	write_conf(e, port, 0);
	env_start_ready(e, 1, port);
	slow = tcp_connect(port, EM_DEADLINE_MS);
	brisk = tcp_connect(port, EM_DEADLINE_MS);
	assert_true(slow >= 0 && brisk >= 0);
	/* Twice idle_timeout at 5 bytes a second: kept, since every byte is activity. */
	assert_true(trickle(slow, brisk, 2 * IDLE_S * 1000 + 500));
	close(slow);
	close(brisk);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(a_trickling_client_is_closed_a_brisk_one_kept, env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(without_min_rate_any_byte_counts, env_setup, env_teardown),
	};
	return cmocka_run_group_tests_name("slowloris", tests, NULL, NULL);
}
