/*
 * notify's file descriptor store messages, as systemd would receive them: a
 * datagram socket stands in for NOTIFY_SOCKET and reads the messages with
 * their SCM_RIGHTS descriptors.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "master/notify.h"

#define MAX_FDS 300

struct fake_systemd {
	int fd;
	char path[108];
};

struct received {
	char text[512];
	int fds[MAX_FDS];
	size_t nfds;
};

static int
setup(void **state)
{
	static struct fake_systemd fs;
	struct sockaddr_un sun = { .sun_family = AF_UNIX };

	snprintf(fs.path, sizeof(fs.path), "/tmp/em-test-notify.%ld", (long)getpid());
	unlink(fs.path);
	memcpy(sun.sun_path, fs.path, strlen(fs.path) + 1);
	fs.fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	assert_true(fs.fd != -1);
	assert_int_equal(bind(fs.fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
	setenv("NOTIFY_SOCKET", fs.path, 1);
	notify_init();
	*state = &fs;
	return 0;
}

static int
teardown(void **state)
{
	struct fake_systemd *fs = *state;

	close(fs->fd);
	unlink(fs->path);
	unsetenv("NOTIFY_SOCKET");
	notify_init();
	return 0;
}

/* Reads one datagram, waiting at most 5 s; false when none came. */
static bool
receive(int fd, struct received *r, int timeout_ms)
{
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(sizeof(int) * MAX_FDS)];
	} ctl;
	struct iovec iov = { .iov_base = r->text, .iov_len = sizeof(r->text) - 1 };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf,
		.msg_controllen = sizeof(ctl.buf) };
	struct pollfd p = { .fd = fd, .events = POLLIN };
	ssize_t n;

	r->nfds = 0;
	if (poll(&p, 1, timeout_ms) != 1)
		return false;
	n = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC);
	assert_true(n >= 0);
	assert_false(mh.msg_flags & (MSG_CTRUNC | MSG_TRUNC));
	r->text[n] = '\0';
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c != NULL; c = CMSG_NXTHDR(&mh, c)) {
		size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);

		assert_int_equal(c->cmsg_type, SCM_RIGHTS);
		memcpy(r->fds + r->nfds, CMSG_DATA(c), k * sizeof(int));
		r->nfds += k;
	}
	return true;
}

/* Whether A and B are the same open socket (dup'ed or passed). */
static bool
same_socket(int a, int b)
{
	struct stat sa, sb;

	return fstat(a, &sa) == 0 && fstat(b, &sb) == 0 && sa.st_dev == sb.st_dev &&
	    sa.st_ino == sb.st_ino;
}

static void
close_received(struct received *r)
{
	for (size_t i = 0; i < r->nfds; i++)
		close(r->fds[i]);
}

/* The old entries go first, then the sockets, each under the one name. */
static void
store_replaces_the_stored_listeners(void **state)
{
	struct fake_systemd *fs = *state;
	int sv[2], other[2], fds[3];
	struct received r;

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	assert_int_equal(socketpair(AF_UNIX, SOCK_DGRAM, 0, other), 0);
	fds[0] = sv[0], fds[1] = other[0], fds[2] = sv[1];
	assert_int_equal(notify_store_fds(fds, 3), 0);

	assert_true(receive(fs->fd, &r, 5000));
	assert_string_equal(r.text, "FDSTOREREMOVE=1\nFDNAME=listener");
	assert_int_equal(r.nfds, 0);
	assert_true(receive(fs->fd, &r, 5000));
	assert_string_equal(r.text, "FDSTORE=1\nFDNAME=listener");
	assert_int_equal(r.nfds, 3);
	for (int i = 0; i < 3; i++) {
		assert_true(same_socket(r.fds[i], fds[i]));
		assert_false(r.fds[i] == fds[i]);  /* a new descriptor for the same socket */
	}
	close_received(&r);
	assert_false(receive(fs->fd, &r, 0));
	/* The master's own copies are untouched. */
	for (int i = 0; i < 3; i++)
		assert_true(fcntl(fds[i], F_GETFD) != -1);
	close(sv[0]), close(sv[1]), close(other[0]), close(other[1]);
}

/* More sockets than one message carries: several FDSTORE messages, none lost. */
static void
store_splits_many_sockets(void **state)
{
	struct fake_systemd *fs = *state;
	int fds[260];
	size_t got = 0, msgs = 0;
	struct received r;

	for (int i = 0; i < 260; i += 2) {
		assert_int_equal(socketpair(AF_UNIX, SOCK_DGRAM, 0, fds + i), 0);
	}
	assert_int_equal(notify_store_fds(fds, 260), 0);
	assert_true(receive(fs->fd, &r, 5000));
	assert_string_equal(r.text, "FDSTOREREMOVE=1\nFDNAME=listener");
	while (receive(fs->fd, &r, 0)) {
		assert_string_equal(r.text, "FDSTORE=1\nFDNAME=listener");
		for (size_t i = 0; i < r.nfds; i++)
			assert_true(same_socket(r.fds[i], fds[got + i]));
		got += r.nfds;
		msgs++;
		close_received(&r);
	}
	assert_int_equal(got, 260);
	assert_int_equal(msgs, 2);
	for (int i = 0; i < 260; i++)
		close(fds[i]);
}

/* No store, no socket left open: zero descriptors still replace the old ones. */
static void
store_of_none_only_removes(void **state)
{
	struct fake_systemd *fs = *state;
	struct received r;

	assert_int_equal(notify_store_fds(NULL, 0), 0);
	assert_true(receive(fs->fd, &r, 5000));
	assert_string_equal(r.text, "FDSTOREREMOVE=1\nFDNAME=listener");
	assert_false(receive(fs->fd, &r, 0));
}

/* Without NOTIFY_SOCKET (not under systemd) nothing is sent and nothing fails. */
static void
without_notify_socket_nothing_is_sent(void **state)
{
	struct fake_systemd *fs = *state;
	struct received r;
	int sv[2];

	unsetenv("NOTIFY_SOCKET");
	notify_init();
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	assert_int_equal(notify_store_fds(sv, 2), 0);
	notify_send("READY=1");
	assert_false(receive(fs->fd, &r, 0));  /* AF_UNIX delivers at once */
	close(sv[0]), close(sv[1]);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(store_replaces_the_stored_listeners, setup, teardown),
		cmocka_unit_test_setup_teardown(store_splits_many_sockets, setup, teardown),
		cmocka_unit_test_setup_teardown(store_of_none_only_removes, setup, teardown),
		cmocka_unit_test_setup_teardown(without_notify_socket_nothing_is_sent, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
