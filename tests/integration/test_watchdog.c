/*
 * test_watchdog.c: a worker whose event loop stops turning is found by its
 * missing heartbeat, killed and replaced, while the other workers keep
 * serving the same listeners.
 */
#include "harness.h"

#include <signal.h>
#include <stdlib.h>

static void
a_frozen_worker_is_replaced(void **state)
{
	struct env *e = *state;
	int port = port_pick();
	pid_t before[2], after[2];
	pid_t frozen;
	char *text = text_with_port(
	    "workers = 2;\n"
	    "worker_timeout = 1;\n"
	    "log = { level = \"info\"; stderr = true; };\n"
	    "listen = ( { proto = \"tcp\"; address = \"127.0.0.1\"; port = PORT; } );\n", port);

	env_write_conf_text(e, text);
	free(text);
	env_start_ready(e, 2, port);
	env_wait_workers(e, 2, before, EM_DEADLINE_MS);
	frozen = before[0];
	assert_int_equal(kill(frozen, SIGSTOP), 0);
	/* Meanwhile the other worker answers on the shared listener. */
	tcp_roundtrip(port, "still here", 10, "STILL HERE");
	env_wait_log(e, "sent no heartbeat", EM_DEADLINE_MS);
	env_wait_log(e, "killed by signal 9 (SIGKILL)", EM_DEADLINE_MS);
	env_wait_workers(e, 2, after, EM_DEADLINE_MS);
	assert_false(pids_contain(after, 2, frozen));
	assert_true(pids_contain(after, 2, before[1]));
	tcp_roundtrip(port, "and again", 9, "AND AGAIN");
}

/* worker_timeout = 0 turns the watchdog off: a stopped worker is left alone. */
static void
the_watchdog_can_be_turned_off(void **state)
{
	struct env *e = *state;
	int port = port_pick();
	pid_t workers[1];
	int64_t until;
	char *text = text_with_port(
	    "workers = 1;\n"
	    "worker_timeout = 0;\n"
	    "log = { level = \"info\"; stderr = true; };\n"
	    "listen = ( { proto = \"tcp\"; address = \"127.0.0.1\"; port = PORT; } );\n", port);

	env_write_conf_text(e, text);
	free(text);
	env_start_ready(e, 1, port);
	env_wait_workers(e, 1, workers, EM_DEADLINE_MS);
	assert_int_equal(kill(workers[0], SIGSTOP), 0);
	/* Absence can only be checked over a span: 3 s is three master heartbeat checks. */
	for (until = now_ms() + 3000; now_ms() < until; nap_ms(100))
		assert_false(env_log_has(e, "sent no heartbeat"));
	assert_int_equal(kill(workers[0], SIGCONT), 0);
	tcp_roundtrip(port, "ok", 2, "OK");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(a_frozen_worker_is_replaced, env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(the_watchdog_can_be_turned_off, env_setup, env_teardown),
	};
	return cmocka_run_group_tests_name("watchdog", tests, NULL, NULL);
}
