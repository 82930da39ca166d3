/* The worker channel's messages over a real SOCK_SEQPACKET socketpair. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/chan.h"
#include "seqpacket_pair.h"

static int
open_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	int n = 0;

	assert_non_null(d);
	while (readdir(d) != NULL)
		n++;
	closedir(d);
	return n;
}

static void
ready_then_eof(void **state)
{
	struct chan_msg m = { .kind = CHAN_READY };
	int sv[2];

	(void)state;
	pair(sv);
	assert_int_equal(chan_recv(sv[1], &m), -1);
	assert_int_equal(errno, EAGAIN);
	m.kind = CHAN_READY;
	assert_int_equal(chan_send(sv[0], &m), 0);
	assert_int_equal(chan_recv(sv[1], &m), 1);
	assert_int_equal(m.kind, CHAN_READY);
	assert_int_equal(m.nfds, 0);
	close(sv[0]);
	assert_int_equal(chan_recv(sv[1], &m), 0);
	close(sv[1]);
}

/* The descriptors arrive as new ones on the same files, close-on-exec, with their entries. */
static void
hand_over_carries_peers_and_entries(void **state)
{
	struct chan_msg m = { .kind = CHAN_HAND_OVER, .nfds = 3, .more = true };
	int sv[2], peers[3][2], before;

	(void)state;
	pair(sv);
	for (int i = 0; i < 3; i++) {
		pair(peers[i]);
		m.fds[i] = peers[i][0];
		m.entry[i] = 10u + (uint32_t)i;
	}
	before = open_fds();
	assert_int_equal(chan_send(sv[0], &m), 0);
	memset(&m, 0, sizeof(m));
	assert_int_equal(chan_recv(sv[1], &m), 1);
	assert_int_equal(m.kind, CHAN_HAND_OVER);
	assert_true(m.more);
	assert_int_equal(m.nfds, 3);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(m.entry[i], 10 + i);
		same_file(m.fds[i], peers[i][0]);
		assert_true(fcntl(m.fds[i], F_GETFD) & FD_CLOEXEC);
	}
	assert_int_equal(open_fds(), before + 3);
	chan_close_fds(&m);
	assert_int_equal(open_fds(), before);
	for (int i = 0; i < 3; i++) {
		close(peers[i][0]);
		close(peers[i][1]);
	}
	close(sv[0]);
	close(sv[1]);
}

/* Anything but a whole message of ours is refused, and what it brought is closed. */
static void
malformed_messages_are_refused_and_closed(void **state)
{
	struct chan_msg m = { .kind = CHAN_TAKE_OVER, .nfds = 2 };
	int sv[2], p[2], before;

	(void)state;
	pair(sv);
	pair(p);
	m.fds[0] = p[0];
	m.fds[1] = p[1];
	before = open_fds();
	assert_int_equal(chan_send(sv[0], &m), 0);  /* TAKE_OVER takes exactly one */
	assert_int_equal(chan_recv(sv[1], &m), -1);
	assert_int_equal(errno, EPROTO);
	assert_int_equal(open_fds(), before);
	assert_int_equal(write(sv[0], "R", 1), 1);  /* the old one-byte "ready" */
	assert_int_equal(chan_recv(sv[1], &m), -1);
	assert_int_equal(errno, EPROTO);
	m = (struct chan_msg){ .kind = 99 };
	assert_int_equal(chan_send(sv[0], &m), 0);
	assert_int_equal(chan_recv(sv[1], &m), -1);
	assert_int_equal(errno, EPROTO);
	m.nfds = CHAN_MAX_FDS + 1;
	assert_int_equal(chan_send(sv[0], &m), -1);
	assert_int_equal(errno, EINVAL);
	assert_int_equal(open_fds(), before);
	close(p[0]);
	close(p[1]);
	close(sv[0]);
	close(sv[1]);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(ready_then_eof),
		cmocka_unit_test(hand_over_carries_peers_and_entries),
		cmocka_unit_test(malformed_messages_are_refused_and_closed),
	};
	return cmocka_run_group_tests_name("chan", tests, NULL, NULL);
}
