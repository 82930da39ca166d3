/*
 * The control socket's request parsing and answer (control_read,
 * control_reply), driven over a socketpair: the test writes what a client
 * would and reads what the client would get back.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "master/control.h"
#include "reqconn_pair.h"

static const struct {
	const char *line;
	enum ctl_cmd cmd;
} commands[] = {
	{ "status\n", CTL_STATUS }, { "status-json\n", CTL_STATUS_JSON },
	{ "reload\n", CTL_RELOAD }, { "respawn\n", CTL_RESPAWN }, { "stop\n", CTL_STOP },
	{ "quit\n", CTL_QUIT }, { "reopen\n", CTL_REOPEN },
};

static void
each_command_is_recognised(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
		int peer;
		struct reqconn *c = conn_open(&peer);
		client_send(peer, commands[i].line);
		if (control_read(c) != commands[i].cmd)
			fail_msg("%.*s: not recognised", (int)strlen(commands[i].line) - 1,
			    commands[i].line);
		conn_free(c, peer);
	}
}

static void
nothing_sent_yet_is_not_a_command(void **state)
{
	int peer;
	struct reqconn *c = conn_open(&peer);

	(void)state;
	assert_int_equal(control_read(c), CTL_NONE);
	conn_free(c, peer);
}

/* The client's line arrives in pieces: nothing is decided before its newline. */
static void
a_line_split_across_reads(void **state)
{
	int peer;
	struct reqconn *c = conn_open(&peer);

	(void)state;
	client_send(peer, "stat");
	assert_int_equal(control_read(c), CTL_NONE);
	client_send(peer, "us-js");
	assert_int_equal(control_read(c), CTL_NONE);
	client_send(peer, "on\n");
	assert_int_equal(control_read(c), CTL_STATUS_JSON);
	conn_free(c, peer);
}

static void
unknown_commands_are_bad(void **state)
{
	const char *lines[] = { "bogus\n", "\n", "STATUS\n", "status now\n", " status\n",
	    "relo\n", "stopp\n" };

	(void)state;
	for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
		int peer;
		struct reqconn *c = conn_open(&peer);
		client_send(peer, lines[i]);
		if (control_read(c) != CTL_BAD)
			fail_msg("\"%.*s\" taken for a command", (int)strlen(lines[i]) - 1, lines[i]);
		conn_free(c, peer);
	}
}

static void
eof_before_a_line_is_bad(void **state)
{
	int peer;
	struct reqconn *c = conn_open(&peer);

	(void)state;
	client_send(peer, "status");
	assert_int_equal(control_read(c), CTL_NONE);
	shutdown(peer, SHUT_WR);
	assert_int_equal(control_read(c), CTL_BAD);
	conn_free(c, peer);
}

static void
eof_at_once_is_bad(void **state)
{
	int peer;
	struct reqconn *c = conn_open(&peer);

	(void)state;
	shutdown(peer, SHUT_WR);
	assert_int_equal(control_read(c), CTL_BAD);
	conn_free(c, peer);
}

/* A client that never sends a newline cannot make the master hold more than its buffer. */
static void
a_full_buffer_without_a_newline_is_bad(void **state)
{
	int peer;
	struct reqconn *c = conn_open(&peer);
	char junk[3000];
	enum ctl_cmd cmd = CTL_NONE;
	int reads = 0;

	(void)state;
	memset(junk, 'x', sizeof(junk));
	assert_int_equal(write(peer, junk, sizeof(junk)), (ssize_t)sizeof(junk));
	while (cmd == CTL_NONE && reads++ < 10)
		cmd = control_read(c);
	assert_int_equal(cmd, CTL_BAD);
	assert_int_equal(c->len, sizeof(c->buf) - 1);
	assert_int_equal(c->buf[c->len], '\0');
	conn_free(c, peer);
}

static void
reply_ok_then_the_body_then_eof(void **state)
{
	int peer;
	struct reqconn *c = conn_open(&peer);
	char *got;

	(void)state;
	client_send(peer, "status\n");
	assert_int_equal(control_read(c), CTL_STATUS);
	control_reply(c, true, "generation 1, 2 workers\nmore\n");  /* frees c */
	got = client_receive(peer);
	assert_string_equal(got, "ok\ngeneration 1, 2 workers\nmore\n");
	free(got);
	close(peer);
}

static void
reply_error_then_the_body(void **state)
{
	int peer;
	struct reqconn *c = conn_open(&peer);
	char *got;

	(void)state;
	client_send(peer, "nope\n");
	assert_int_equal(control_read(c), CTL_BAD);
	control_reply(c, false, "unknown command\n");
	got = client_receive(peer);
	assert_string_equal(got, "error\nunknown command\n");
	free(got);
	close(peer);
}

static void
reply_without_a_body(void **state)
{
	int peer;
	struct reqconn *c = conn_open(&peer);
	char *got;

	(void)state;
	control_reply(c, true, NULL);
	got = client_receive(peer);
	assert_string_equal(got, "ok\n");
	free(got);
	close(peer);
}

/* A body longer than the request buffer arrives whole, after the status line. */
static void
reply_with_a_long_body(void **state)
{
	int peer;
	struct reqconn *c = conn_open(&peer);
	size_t len = 20000;
	char *body = malloc(len + 1), *got;

	(void)state;
	assert_non_null(body);
	for (size_t i = 0; i < len; i++)
		body[i] = (char)('a' + i % 26);
	body[len] = '\0';
	control_reply(c, true, body);
	got = client_receive(peer);
	assert_int_equal(strlen(got), len + 3);
	assert_memory_equal(got, "ok\n", 3);
	assert_string_equal(got + 3, body);
	free(got);
	free(body);
	close(peer);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(each_command_is_recognised),
		cmocka_unit_test(nothing_sent_yet_is_not_a_command),
		cmocka_unit_test(a_line_split_across_reads),
		cmocka_unit_test(unknown_commands_are_bad),
		cmocka_unit_test(eof_before_a_line_is_bad),
		cmocka_unit_test(eof_at_once_is_bad),
		cmocka_unit_test(a_full_buffer_without_a_newline_is_bad),
		cmocka_unit_test(reply_ok_then_the_body_then_eof),
		cmocka_unit_test(reply_error_then_the_body),
		cmocka_unit_test(reply_without_a_body),
		cmocka_unit_test(reply_with_a_long_body),
	};
	return cmocka_run_group_tests_name("control", tests, NULL, NULL);
}
