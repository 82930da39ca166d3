/*
 * The control socket's request parsing and answer (control_read,
 * control_reply), driven over a socketpair: the test writes what a client
 * would and reads what the client would get back. Then the socket itself:
 * control_listen, and control_request (the `echomaster -s` side) against a
 * child that answers with control_read and control_reply.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
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

/* ---- the socket and the client side --------------------------------------- */

struct sockdir {
	char dir[64];
	char path[96];
};

static void
sockdir_make(struct sockdir *d)
{
	snprintf(d->dir, sizeof(d->dir), "/tmp/em-test-control.XXXXXX");
	assert_non_null(mkdtemp(d->dir));
	snprintf(d->path, sizeof(d->path), "%s/control.sock", d->dir);
}

static void
sockdir_remove(struct sockdir *d)
{
	unlink(d->path);
	rmdir(d->dir);
}

/* In a child: answers one client on lfd as the master would, then exits. */
static void
serve_one(int lfd)
{
	struct pollfd p = { .fd = lfd, .events = POLLIN };
	struct reqconn *c;
	enum ctl_cmd cmd = CTL_NONE;

	alarm(10);  /* the bound on a child the test forgot */
	if (poll(&p, 1, 5000) != 1 || (c = reqconn_accept(lfd, 0, 0)) == NULL)
		_exit(2);
	while (cmd == CTL_NONE) {
		p.fd = c->fd;
		if (poll(&p, 1, 5000) != 1)
			_exit(3);
		cmd = control_read(c);
	}
	if (cmd == CTL_STATUS)
		control_reply(c, true, "generation 1, 2 workers\n");
	else
		control_reply(c, false, "unknown command\n");
	_exit(0);
}

/* control_request(cmd) against a child serving one answer; the body in *out. */
static int
request_of(const char *path, int lfd, const char *cmd, char **out)
{
	char err[256] = "", *body = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&body, &len);
	int rc, status;
	pid_t pid;

	assert_non_null(f);
	if ((pid = fork()) == 0)
		serve_one(lfd);
	assert_true(pid > 0);
	rc = control_request(path, cmd, f, err, sizeof(err));
	assert_int_equal(fclose(f), 0);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	*out = body;
	return rc;
}

static void
request_ok_and_error_answers(void **state)
{
	struct sockdir d;
	char err[256], *body;
	int lfd;

	(void)state;
	sockdir_make(&d);
	assert_true((lfd = control_listen(d.path, err, sizeof(err))) >= 0);
	assert_int_equal(request_of(d.path, lfd, "status", &body), 0);
	assert_string_equal(body, "generation 1, 2 workers\n");
	free(body);
	assert_int_equal(request_of(d.path, lfd, "bogus", &body), 1);
	assert_string_equal(body, "unknown command\n");
	free(body);
	close(lfd);
	sockdir_remove(&d);
}

static void
request_without_a_master(void **state)
{
	struct sockdir d;
	char err[256] = "";

	(void)state;
	sockdir_make(&d);
	assert_int_equal(control_request(d.path, "status", stdout, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "cannot reach the master at "));
	assert_non_null(strstr(err, d.path));
	sockdir_remove(&d);
}

/* The socket is 0600; a live master's socket is kept, a dead one's replaced. */
static void
listen_replaces_only_a_dead_masters_socket(void **state)
{
	struct sockdir d;
	struct stat st;
	char err[256] = "";
	int lfd, again;

	(void)state;
	sockdir_make(&d);
	assert_true((lfd = control_listen(d.path, err, sizeof(err))) >= 0);
	assert_int_equal(stat(d.path, &st), 0);
	assert_true(S_ISSOCK(st.st_mode));
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(control_listen(d.path, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "in use by another master"));
	close(lfd);  /* the master died: its socket file stays behind */
	assert_int_equal(stat(d.path, &st), 0);
	assert_true((again = control_listen(d.path, err, sizeof(err))) >= 0);
	close(again);
	sockdir_remove(&d);
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
		cmocka_unit_test(request_ok_and_error_answers),
		cmocka_unit_test(request_without_a_master),
		cmocka_unit_test(listen_replaces_only_a_dead_masters_socket),
	};
	return cmocka_run_group_tests_name("control", tests, NULL, NULL);
}
