/* The messages between an old and a new master (live upgrade), over a real SOCK_SEQPACKET pair. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "master/upmsg.h"

static void
pair(int sv[2])
{
	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
}

static void
same_file(int a, int b)
{
	struct stat x, y;

	assert_int_equal(fstat(a, &x), 0);
	assert_int_equal(fstat(b, &y), 0);
	assert_true(x.st_ino == y.st_ino && x.st_dev == y.st_dev);
}

static struct upmsg
state_msg(void)
{
	return (struct upmsg){ .kind = UPM_STATE, .state = { .pid = 1234, .generation = 7,
	    .nslots = 3, .reloads_ok = 4, .reloads_failed = 5, .upgrades_ok = 6,
	    .upgrades_failed = 8, .started_ms = 123456789, .fds = UPMSG_PID_FD | UPMSG_METRICS_FD } };
}

static void
state_round_trip_with_fds(void **state)
{
	struct upmsg m = state_msg(), got;
	int sv[2], p[2];

	(void)state;
	pair(sv);
	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	assert_int_equal(upmsg_send(sv[0], &m, UPMSG_VERSION, p, 2), 0);
	assert_int_equal(upmsg_recv(sv[1], &got), 1);
	assert_int_equal(got.kind, UPM_STATE);
	assert_true(got.understood);
	assert_int_equal(got.version, UPMSG_VERSION);
	assert_int_equal(got.pid, 1234);
	assert_int_equal(got.generation, 7);
	assert_int_equal(got.state.pid, 1234);
	assert_int_equal(got.state.generation, 7);
	assert_int_equal(got.state.nslots, 3);
	assert_int_equal(got.state.reloads_ok, 4);
	assert_int_equal(got.state.reloads_failed, 5);
	assert_int_equal(got.state.upgrades_ok, 6);
	assert_int_equal(got.state.upgrades_failed, 8);
	assert_int_equal(got.state.started_ms, 123456789);
	assert_int_equal(got.state.fds, UPMSG_PID_FD | UPMSG_METRICS_FD);
	assert_int_equal(got.nfds, 2);
	same_file(got.fds[0], p[0]);
	same_file(got.fds[1], p[1]);
	assert_true(fcntl(got.fds[0], F_GETFD) & FD_CLOEXEC);
	upmsg_close_fds(&got);
	close(p[0]);
	close(p[1]);
	close(sv[0]);
	close(sv[1]);
}

/* A state of another format: the envelope is read, the body is not, the fds are closed. */
static void
unknown_state_version_is_not_understood(void **state)
{
	struct upmsg m = state_msg(), got;
	int sv[2], p[2];

	(void)state;
	pair(sv);
	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	assert_int_equal(upmsg_send(sv[0], &m, UPMSG_VERSION + 1, p, 2), 0);
	assert_int_equal(upmsg_recv(sv[1], &got), 1);
	assert_int_equal(got.kind, UPM_STATE);
	assert_false(got.understood);
	assert_int_equal(got.version, UPMSG_VERSION + 1);
	assert_int_equal(got.pid, 1234);          /* the envelope */
	assert_int_equal(got.generation, 7);
	assert_int_equal(got.state.nslots, 0);    /* not the body */
	assert_int_equal(got.nfds, 0);
	close(p[0]);
	close(p[1]);
	close(sv[0]);
	close(sv[1]);
}

/* ANSWER and READY read the same whatever the sender's format. */
/* Format 2 carries the TLS ticket keys; format 1 (an older binary's) is read without them. */
static void
state_carries_ticket_keys(void **state)
{
	struct upmsg m = state_msg(), got;
	int sv[2];

	(void)state;
	pair(sv);
	m.state.fds = 0;
	m.state.has_tickets = true;
	m.state.tickets.created_ms = 42;
	memset(m.state.tickets.k[0].name, 0xab, sizeof(m.state.tickets.k[0].name));
	memset(m.state.tickets.k[1].hmac, 0xcd, sizeof(m.state.tickets.k[1].hmac));
	assert_int_equal(upmsg_send(sv[0], &m, UPMSG_VERSION, NULL, 0), 0);
	assert_int_equal(upmsg_recv(sv[1], &got), 1);
	assert_true(got.understood);
	assert_true(got.state.has_tickets);
	assert_int_equal(got.state.tickets.created_ms, 42);
	assert_memory_equal(&got.state.tickets.k, &m.state.tickets.k, sizeof(m.state.tickets.k));
	assert_int_equal(upmsg_send(sv[0], &m, 1, NULL, 0), 0);
	assert_int_equal(upmsg_recv(sv[1], &got), 1);
	assert_true(got.understood);
	assert_int_equal(got.state.reloads_ok, 4);
	assert_false(got.state.has_tickets);
	close(sv[0]);
	close(sv[1]);
}

static void
answer_and_ready_in_any_version(void **state)
{
	struct upmsg a = { .kind = UPM_ANSWER, .understood = true };
	struct upmsg r = { .kind = UPM_READY, .pid = 99, .generation = 8 }, got;
	int sv[2];

	(void)state;
	pair(sv);
	strcpy(r.binary_version, "9.9.9");
	assert_int_equal(upmsg_send(sv[0], &a, UPMSG_VERSION + 3, NULL, 0), 0);
	assert_int_equal(upmsg_recv(sv[1], &got), 1);
	assert_int_equal(got.kind, UPM_ANSWER);
	assert_true(got.understood);
	assert_int_equal(upmsg_send(sv[0], &r, UPMSG_VERSION + 3, NULL, 0), 0);
	assert_int_equal(upmsg_recv(sv[1], &got), 1);
	assert_int_equal(got.kind, UPM_READY);
	assert_int_equal(got.pid, 99);
	assert_int_equal(got.generation, 8);
	assert_string_equal(got.binary_version, "9.9.9");
	close(sv[0]);
	close(sv[1]);
}

static void
hand_over_relays_a_chan_message(void **state)
{
	struct upmsg m = { .kind = UPM_HAND_OVER, .slot = 2 }, got;
	int sv[2], p[2];

	(void)state;
	pair(sv);
	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	m.hand = (struct chan_msg){ .kind = CHAN_HAND_OVER, .nfds = 2, .more = true,
	    .entry = { CHAN_ENTRY_UNKNOWN, CHAN_ENTRY_UNKNOWN }, .fds = { p[0], p[1] } };
	assert_int_equal(upmsg_send(sv[0], &m, UPMSG_VERSION, NULL, 0), 0);
	assert_int_equal(upmsg_recv(sv[1], &got), 1);
	assert_int_equal(got.kind, UPM_HAND_OVER);
	assert_int_equal(got.slot, 2);
	assert_int_equal(got.hand.kind, CHAN_HAND_OVER);
	assert_true(got.hand.more);
	assert_int_equal(got.hand.nfds, 2);
	assert_int_equal(got.nfds, 0);
	assert_true(got.hand.entry[1] == CHAN_ENTRY_UNKNOWN);
	same_file(got.hand.fds[1], p[1]);
	upmsg_close_fds(&got);
	close(p[0]);
	close(p[1]);
	close(sv[0]);
	close(sv[1]);
}

static void
garbage_and_eof(void **state)
{
	struct upmsg got;
	int sv[2];

	(void)state;
	pair(sv);
	assert_int_equal(upmsg_recv(sv[1], &got), -1);
	assert_int_equal(errno, EAGAIN);
	assert_int_equal(write(sv[0], "hello, world, not a message", 27), 27);
	assert_int_equal(upmsg_recv(sv[1], &got), -1);
	assert_int_equal(errno, EPROTO);
	close(sv[0]);
	assert_int_equal(upmsg_recv(sv[1], &got), 0);
	close(sv[1]);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(state_round_trip_with_fds),
		cmocka_unit_test(unknown_state_version_is_not_understood),
		cmocka_unit_test(state_carries_ticket_keys),
		cmocka_unit_test(answer_and_ready_in_any_version),
		cmocka_unit_test(hand_over_relays_a_chan_message),
		cmocka_unit_test(garbage_and_eof),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
