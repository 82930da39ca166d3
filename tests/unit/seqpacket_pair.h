/*
 * seqpacket_pair.h: a SOCK_SEQPACKET socketpair and a check that two
 * descriptors are the same file, for the unit tests of the messages that
 * carry descriptors (test_chan, test_upmsg). Include it after cmocka.h: it
 * fails the test through cmocka's asserts.
 */
#ifndef EM_TESTS_SEQPACKET_PAIR_H
#define EM_TESTS_SEQPACKET_PAIR_H

#include <sys/socket.h>
#include <sys/stat.h>

static inline void
pair(int sv[2])
{
	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
}

/* a and b open the same file: a descriptor passed is the one sent. */
static inline void
same_file(int a, int b)
{
	struct stat x, y;

	assert_int_equal(fstat(a, &x), 0);
	assert_int_equal(fstat(b, &y), 0);
	assert_true(x.st_ino == y.st_ino && x.st_dev == y.st_dev);
}

#endif
