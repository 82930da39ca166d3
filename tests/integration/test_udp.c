/*
 * test_udp.c: every UDP sender is answered while workers come and go.
 * Each worker reads a socket of its own on the listener's address, and the
 * kernel picks one by a hash of the sender's address; so a worker that
 * dies, or hangs until the watchdog kills it, must not leave its share of
 * senders unanswered. Each udp_exchange call is a new sender (a new
 * socket, a new source port), and it resends every 2 s until its deadline.
 */
#include "harness.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SENDERS 100

static void
start_two_workers(struct env *e, int port, pid_t *workers)
{
	char *text = text_with_port(
	    "workers = 2;\n"
	    "worker_timeout = 1;\n"
	    "log = { level = \"info\"; stderr = true; };\n"
	    "listen = ( { proto = \"tcp\"; address = \"127.0.0.1\"; port = PORT; },\n"
	    "           { proto = \"udp\"; address = \"127.0.0.1\"; port = PORT; } );\n", port);

	env_write_conf_text(e, text);
	free(text);
	env_start_ready(e, 2, port);
	env_wait_workers(e, 2, workers, EM_DEADLINE_MS);
}

/* SENDERS new senders in turn, each answered with its own bytes upper-cased. */
static void
expect_every_sender_answered(int port)
{
	for (int i = 0; i < SENDERS; i++) {
		char msg[32], want[32], got[64];
		int len = snprintf(msg, sizeof(msg), "sender-%03d", i);
		ssize_t n;

		snprintf(want, sizeof(want), "SENDER-%03d", i);
		n = udp_exchange(port, msg, (size_t)len, got, sizeof(got), EM_DEADLINE_MS);
		if (n != len)
			fail_msg("sender %d: reply of %zd bytes (%s)", i, n,
			    n == -1 ? strerror(errno) : "wrong length");
		assert_memory_equal(got, want, (size_t)len);
	}
}

static void
senders_are_answered_after_a_worker_dies(void **state)
{
	struct env *e = *state;
	int port = port_pick();
	pid_t workers[2];

	start_two_workers(e, port, workers);
	expect_every_sender_answered(port);
	assert_int_equal(kill(workers[0], SIGKILL), 0);
	expect_every_sender_answered(port);
	env_wait_log(e, "killed by signal 9", EM_DEADLINE_MS);
	env_wait_workers(e, 2, NULL, EM_DEADLINE_MS);
	expect_every_sender_answered(port);
}

/*
 * A stopped worker still holds its socket, so its senders wait; once the
 * watchdog (worker_timeout = 1) has killed it, they are answered by the
 * other worker and then by its replacement.
 */
static void
senders_of_a_hung_worker_are_answered_once_it_is_replaced(void **state)
{
	struct env *e = *state;
	int port = port_pick();
	pid_t workers[2];

	start_two_workers(e, port, workers);
	assert_int_equal(kill(workers[0], SIGSTOP), 0);
	expect_every_sender_answered(port);
	env_wait_log(e, "sent no heartbeat", EM_DEADLINE_MS);
	env_wait_workers(e, 2, NULL, EM_DEADLINE_MS);
	expect_every_sender_answered(port);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(senders_are_answered_after_a_worker_dies, env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(senders_of_a_hung_worker_are_answered_once_it_is_replaced, env_setup, env_teardown),
	};
	return cmocka_run_group_tests_name("udp", tests, NULL, NULL);
}
