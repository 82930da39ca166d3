/*
 * The upgrade channel's end, as a new master sees it: the old master's
 * EOF is reported once and the channel leaves epoll, so a level-triggered
 * EOF cannot wake the loop again; while the channel is open the old
 * master counts as still there.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "master/upgrade.h"

#define KIND 7

static void
adopted(struct upgrade *u, int *epfd, int *peer)
{
	int sv[2];

	assert_true((*epfd = epoll_create1(EPOLL_CLOEXEC)) >= 0);
	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
	upgrade_init(u, *epfd, KIND, "/nonexistent/echomaster", "/nonexistent/echo.conf");
	assert_true(upgrade_owns_place(u));
	assert_int_equal(upgrade_predecessor(u), 0);
	upgrade_adopt(u, sv[0], 4242);
	*peer = sv[1];
}

static int
ready_events(int epfd)
{
	struct epoll_event ev[4];

	return epoll_wait(epfd, ev, 4, 0);
}

static void
eof_is_reported_once(void **state)
{
	struct upgrade u;
	int epfd, peer;

	(void)state;
	adopted(&u, &epfd, &peer);
	assert_false(upgrade_owns_place(&u));
	u.phase = UP_ADOPTED;  /* took over; the old master drains */
	assert_true(upgrade_owns_place(&u));
	assert_int_equal(upgrade_predecessor(&u), 4242);
	assert_int_equal(ready_events(epfd), 0);
	close(peer);  /* the old master exits */
	assert_int_equal(ready_events(epfd), 1);
	assert_int_equal(upgrade_read(&u), UPE_PEER_GONE);
	assert_int_equal(u.chan, -1);
	assert_int_equal(upgrade_predecessor(&u), 0);
	/* Out of epoll, and a stale event of the same batch says nothing more. */
	assert_int_equal(ready_events(epfd), 0);
	assert_int_equal(upgrade_read(&u), UPE_NONE);
	assert_int_equal(upgrade_read(&u), UPE_NONE);
	upgrade_close(&u);
	close(epfd);
}

static void
eof_before_take_over(void **state)
{
	struct upgrade u;
	int epfd, peer;

	(void)state;
	adopted(&u, &epfd, &peer);
	close(peer);
	assert_int_equal(upgrade_read(&u), UPE_PEER_GONE);
	assert_int_equal(ready_events(epfd), 0);
	assert_int_equal(upgrade_read(&u), UPE_NONE);
	close(epfd);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(eof_is_reported_once),
		cmocka_unit_test(eof_before_take_over),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
