/*
 * test_handover_worker.c: the worker side of reload_handover, from the
 * clients and the log. Streams that keep sending and verifying every byte
 * live through a reload while the old workers move them and exit at once;
 * and a receiver whose ack comes after the sender gave up (the test hooks'
 * EM_TEST_ACK_LATE) costs no connection: the sender takes them all back
 * and drains them, the receiver closes its copies.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "harness.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MANY		300
#define MANY_BYTES	(192u * 1024)
#define LATE		40
#define LATE_BYTES	(64u * 1024)
#define OLD_GONE_MS	1500

static void
write_handover_conf(struct env *e, int workers, int port)
{
	char *text;

	if (asprintf(&text,
	    "workers = %d;\ncontrol_socket = \"%s\";\nshutdown_timeout = 20;\n"
	    "reload_handover = true;\npid_file = \"\";\n"
	    "log = { level = \"info\"; stderr = true; };\n"
	    "listen = ( { proto = \"tcp\"; address = \"127.0.0.1\"; port = %d; mode = \"upper\"; } );\n",
	    workers, env_control_socket(e), port) == -1)
		fail_msg("asprintf");
	env_write_conf_text(e, text);
	free(text);
}

/* The last three numbers of the status totals row: moved_out, moved_in, moves_failed. */
static void
status_moves(struct env *e, unsigned long long *out, unsigned long long *in,
    unsigned long long *failed)
{
	char *body = NULL, *line, *tok, *last[3] = { NULL, NULL, NULL };

	if (env_control(e, "status", &body, EM_DEADLINE_MS) == -1 || body == NULL)
		fail_msg("status: %s", strerror(errno));
	if ((line = strstr(body, "\ntotal")) == NULL)
		fail_msg("no totals row in:\n%s", body);
	line = strtok(line + 1, "\n");
	for (tok = strtok(line, " "); tok != NULL; tok = strtok(NULL, " ")) {
		last[0] = last[1];
		last[1] = last[2];
		last[2] = tok;
	}
	assert_non_null(last[0]);
	*out = strtoull(last[0], NULL, 10);
	*in = strtoull(last[1], NULL, 10);
	*failed = strtoull(last[2], NULL, 10);
	free(body);
}

/* Whether any of the workers in old[] still runs. */
static bool
any_alive(const pid_t *old, const unsigned long long *start, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (proc_alive(old[i], start[i]))
			return true;
	return false;
}

/* Pumps every stream to its end (half-closed, EOF last); a stream cut early fails the test. */
static void
pump_to_end(struct em_stream *s, size_t n, const pid_t *old, const unsigned long long *start,
    size_t nold, int64_t t0, int64_t *gone)
{
	int64_t deadline = now_ms() + EM_DEADLINE_MS * 2;
	size_t done = 0;

	while (done < n) {
		if (now_ms() >= deadline)
			fail_msg("streams not done: %zu of %zu", done, n);
		if (streams_step(s, n, SIZE_MAX, true, 20) == -1)
			fail_msg("a stream broke: %s", strerror(errno));
		if (*gone == -1 && !any_alive(old, start, nold))
			*gone = now_ms() - t0;
		done = 0;
		for (size_t i = 0; i < n; i++) {
			if (s[i].eof && s[i].rcvd < s[i].len)
				fail_msg("stream %zu: EOF after %zu of %zu bytes", i, s[i].rcvd, s[i].len);
			done += s[i].eof;
		}
	}
}

static void
test_streams_move_and_old_workers_exit_at_once(void **state)
{
	struct env *e = *state;
	struct em_stream *s = calloc(MANY, sizeof(*s));
	pid_t old[2];
	unsigned long long start[2], out, in, failed;
	int64_t t0, gone = -1;
	int port = port_pick();

	assert_non_null(s);
	write_handover_conf(e, 2, port);
	env_start_ready(e, 2, port);
	env_wait_workers(e, 2, old, EM_DEADLINE_MS);
	for (size_t i = 0; i < 2; i++)
		start[i] = proc_start_time(old[i]);
	for (size_t i = 0; i < MANY; i++)
		stream_open(&s[i], port, MANY_BYTES, (uint32_t)i + 1);
	if (streams_pump(s, MANY, MANY_BYTES / 3, false, EM_DEADLINE_MS) == -1)
		fail_msg("before the reload: %s", strerror(errno));
	t0 = now_ms();
	env_signal(e, SIGHUP);
	/* Traffic goes on, but no stream ends before the old workers are gone: all of them move. */
	while (gone == -1 && now_ms() - t0 < EM_DEADLINE_MS) {
		if (streams_step(s, MANY, 2 * MANY_BYTES / 3, false, 20) == -1)
			fail_msg("a stream broke during the move: %s", strerror(errno));
		if (!any_alive(old, start, 2))
			gone = now_ms() - t0;
	}
	pump_to_end(s, MANY, old, start, 2, t0, &gone);
	for (size_t i = 0; i < MANY; i++)
		bytes_expect_upper(s[i].in, s[i].out, MANY_BYTES, "moved stream");
	status_moves(e, &out, &in, &failed);
	print_message("%d streams: old workers gone %lld ms after the HUP; "
	    "the new ones moved in %llu (moves failed %llu)\n", MANY, (long long)gone, in, failed);
	assert_true(gone != -1 && gone < OLD_GONE_MS);
	assert_int_equal(in, MANY);
	assert_int_equal(failed, 0);
	for (size_t i = 0; i < MANY; i++)
		stream_close(&s[i]);
	free(s);
}

/*
 * A receiver that acks after the sender's MOVE_ACK_TIMEOUT_MS: the sender
 * has shut its socket's read side by then, so the ack fails (EPIPE), the
 * receiver closes what it took, and the sender serves every connection
 * itself until its clients are done: the batch it took back, and the ones
 * it had not offered yet, with no receiver left.
 */
static void
test_a_late_ack_costs_no_connection(void **state)
{
	struct env *e = *state;
	struct em_stream s[LATE];
	const char *hooks = getenv("ECHOMASTER_TESTHOOKS");
	char *saved = getenv("ECHOMASTER") != NULL ? strdup(getenv("ECHOMASTER")) : NULL;
	const char *late = env_file(e, "ack-late");
	pid_t old[1];
	unsigned long long start[1];
	int64_t t0, gone = -1;
	int port = port_pick();

	if (hooks == NULL || access(hooks, X_OK) != 0)
		fail_msg("ECHOMASTER_TESTHOOKS must name the test-hooks build (make check sets it)");
	write_handover_conf(e, 1, port);
	setenv("ECHOMASTER", hooks, 1);
	setenv("EM_TEST_ACK_LATE", late, 1);
	env_start_ready(e, 1, port);
	unsetenv("EM_TEST_ACK_LATE");
	if (saved != NULL)
		setenv("ECHOMASTER", saved, 1);
	else
		unsetenv("ECHOMASTER");
	free(saved);
	env_wait_workers(e, 1, old, EM_DEADLINE_MS);
	start[0] = proc_start_time(old[0]);
	for (size_t i = 0; i < LATE; i++)
		stream_open(&s[i], port, LATE_BYTES, (uint32_t)i + 100);
	if (streams_pump(s, LATE, LATE_BYTES / 4, false, EM_DEADLINE_MS) == -1)
		fail_msg("before the reload: %s", strerror(errno));
	file_write(late, "");
	t0 = now_ms();
	env_signal(e, SIGHUP);
	/* The first batch carries a quarter of them (move.c); the rest are never offered. */
	env_wait_log(e, "no ack in time: 0 connections moved, 0 refused, 10 taken back", EM_DEADLINE_MS);
	env_wait_log(e, "no worker left to take 30 connections", EM_DEADLINE_MS);
	env_wait_log(e, "not sent; closing the 10 connections it took", EM_DEADLINE_MS);
	unlink(late);
	assert_true(proc_alive(old[0], start[0]));  /* it drains what it took back */
	pump_to_end(s, LATE, old, start, 1, t0, &gone);
	for (size_t i = 0; i < LATE; i++) {
		bytes_expect_upper(s[i].in, s[i].out, LATE_BYTES, "taken back stream");
		stream_close(&s[i]);
	}
	/* Its clients done, the old worker ends; the master counts what it kept. */
	env_wait_log(e, "40 could not move and were drained", EM_DEADLINE_MS);
	if (gone == -1)
		gone = now_ms() - t0;
	print_message("%d streams taken back after the late ack; all bytes right; "
	    "the old worker gone within %lld ms of the HUP, once its clients were done\n",
	    LATE, (long long)gone);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_streams_move_and_old_workers_exit_at_once,
		    env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(test_a_late_ack_costs_no_connection,
		    env_setup, env_teardown),
	};

	return cmocka_run_group_tests_name("handover_worker", tests, NULL, NULL);
}
