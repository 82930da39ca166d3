/*
 * The handover's pure parts: how connections are spread over the receivers,
 * which listener of our configuration a taken-over connection arrived on
 * (for its allow/deny re-check); and the kernel behaviour the sender's
 * give-up relies on (move.h): after shutdown(SHUT_RD) on an AF_UNIX
 * SOCK_SEQPACKET socket, the peer's send fails with EPIPE, and what was
 * queued before is still read.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "worker/move.h"

/* The greedy rule move_spread must equal: each connection to the lowest score so far, ties to the first. */
static void
spread_greedy(const uint64_t *score, size_t k, uint64_t n, uint64_t *share)
{
	for (size_t i = 0; i < k; i++)
		share[i] = 0;
	while (n-- > 0) {
		size_t best = 0;
		for (size_t i = 1; i < k; i++)
			if (score[i] + share[i] < score[best] + share[best])
				best = i;
		share[best]++;
	}
}

static void
check_spread(const uint64_t *score, size_t k, uint64_t n)
{
	uint64_t got[16], want[16], sum = 0;

	move_spread(score, k, n, got);
	spread_greedy(score, k, n, want);
	for (size_t i = 0; i < k; i++) {
		assert_int_equal(got[i], want[i]);
		sum += got[i];
	}
	assert_int_equal(sum, k != 0 ? n : 0);
}

static void
spreading_equals_the_greedy_choice(void **state)
{
	static const uint64_t even[] = { 0, 0, 0, 0 };
	static const uint64_t uneven[] = { 100, 0, 37, 400, 5 };
	static const uint64_t one[] = { 12 };

	(void)state;
	for (uint64_t n = 0; n < 600; n += 7) {
		check_spread(even, 4, n);
		check_spread(uneven, 5, n);
		check_spread(one, 1, n);
	}
	check_spread(uneven, 5, 100000);
	check_spread(even, 0, 10);
}

/* The case that matters: receivers end level however uneven they began. */
static void
spreading_levels_the_receivers(void **state)
{
	uint64_t score[3] = { 900, 100, 0 }, share[3];

	(void)state;
	move_spread(score, 3, 2000, share);
	assert_int_equal(score[0] + share[0], 1000);
	assert_int_equal(score[1] + share[1], 1000);
	assert_int_equal(score[2] + share[2], 1000);
	/* Too few to level them: only the lowest get any. */
	move_spread(score, 3, 150, share);
	assert_int_equal(share[0], 0);
	assert_int_equal(share[1], 25);
	assert_int_equal(share[2], 125);
}

static struct cfg_listen
listener(int proto, const char *ip, int port)
{
	struct cfg_listen l;

	memset(&l, 0, sizeof(l));
	l.proto = proto;
	l.port = port;
	if (strchr(ip, ':') != NULL) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&l.addr;
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons((uint16_t)port);
		assert_int_equal(inet_pton(AF_INET6, ip, &s6->sin6_addr), 1);
		l.addrlen = sizeof(*s6);
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&l.addr;
		s4->sin_family = AF_INET;
		s4->sin_port = htons((uint16_t)port);
		assert_int_equal(inet_pton(AF_INET, ip, &s4->sin_addr), 1);
		l.addrlen = sizeof(*s4);
	}
	return l;
}

static const struct cfg_listen *
of(const struct cfg *cfg, const char *ip, int port)
{
	struct cfg_listen local = listener(CFG_PROTO_TCP, ip, port);

	return move_listener_of(cfg, (const struct sockaddr *)&local.addr);
}

static void
the_listener_is_found_by_port_family_and_address(void **state)
{
	struct cfg_listen l[] = {
		listener(CFG_PROTO_UDP, "0.0.0.0", 7000),   /* 0: same port, wrong protocol */
		listener(CFG_PROTO_TCP, "0.0.0.0", 7000),   /* 1: IPv4 wildcard */
		listener(CFG_PROTO_TCP, "127.0.0.5", 7000), /* 2: exact, preferred over 1 */
		listener(CFG_PROTO_TCP, "::", 7001),        /* 3: IPv6 wildcard */
		listener(CFG_PROTO_TCP, "10.0.0.1", 7002),  /* 4: a specific address only */
	};
	struct cfg cfg = { .nlisten = 5, .listen = l };

	(void)state;
	assert_ptr_equal(of(&cfg, "127.0.0.1", 7000), &l[1]);
	assert_ptr_equal(of(&cfg, "127.0.0.5", 7000), &l[2]);
	assert_ptr_equal(of(&cfg, "::1", 7001), &l[3]);
	assert_ptr_equal(of(&cfg, "::ffff:127.0.0.1", 7001), &l[3]);  /* IPv4 on a dual-stack listener */
	assert_null(of(&cfg, "127.0.0.1", 7001));    /* no IPv4 listener on that port */
	assert_null(of(&cfg, "::1", 7000));          /* no IPv6 one on this */
	assert_ptr_equal(of(&cfg, "10.0.0.1", 7002), &l[4]);
	assert_null(of(&cfg, "10.0.0.2", 7002));     /* another address: not that listener */
	assert_null(of(&cfg, "127.0.0.1", 7999));    /* the reload removed it */
}

/* The linearization point of the sender's give-up (move.h). */
static void
shut_rd_makes_a_late_ack_fail_and_keeps_a_queued_one(void **state)
{
	char ack[8] = "ack", buf[8];
	int sv[2];

	(void)state;
	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK, 0, sv), 0);
	assert_int_equal(send(sv[1], ack, 4, MSG_NOSIGNAL), 4);     /* queued before */
	assert_int_equal(shutdown(sv[0], SHUT_RD), 0);
	errno = 0;
	assert_int_equal(send(sv[1], ack, 4, MSG_NOSIGNAL), -1);    /* late */
	assert_int_equal(errno, EPIPE);
	assert_int_equal(recv(sv[0], buf, sizeof(buf), MSG_DONTWAIT), 4);
	assert_int_equal(recv(sv[0], buf, sizeof(buf), MSG_DONTWAIT), 0);  /* and nothing more */
	close(sv[0]);
	close(sv[1]);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(spreading_equals_the_greedy_choice),
		cmocka_unit_test(spreading_levels_the_receivers),
		cmocka_unit_test(the_listener_is_found_by_port_family_and_address),
		cmocka_unit_test(shut_rd_makes_a_late_ack_fail_and_keeps_a_queued_one),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
