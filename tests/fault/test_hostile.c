/*
 * test_hostile.c: bad and hostile input. Random binary streams and random
 * datagram sizes from 0 to 65507 bytes echo exactly; idle, silent,
 * non-reading and half-closed clients are dropped after idle_timeout while
 * a slow but live one is not; limits.max_connections refuses the excess of
 * one worker cleanly without touching its connected clients.
 *
 * udp_rate = 0 where datagrams are counted: this file checks the echo, and
 * the per-source limiter would otherwise decide how many come back.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "fault.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define STREAMS		8
#define STREAM_MAX	(2u * 1024 * 1024)
#define DGRAMS		300
#define DGRAM_MAX	65507
#define IDLE_S		1
#define MAXCONN		5
#define EXCESS		5

static int
start_with(struct env *e, int workers, const char *extra)
{
	struct em_conf c;
	int port = port_pick();

	conf_init(&c, workers);
	conf_listen_pair(&c, port, "upper");
	fault_write_conf(e, &c, extra);
	env_start_ready(e, workers, port);
	return port;
}

static void
random_fill(uint8_t *buf, size_t len, uint32_t *rng)
{
	for (size_t i = 0; i < len; i++)
		buf[i] = (uint8_t)fault_rand(rng);
}

static void
test_random_binary_streams(void **state)
{
	struct env *e = *state;
	struct em_stream s[STREAMS];
	uint32_t rng = 0xb1a5u ^ (uint32_t)getpid();
	size_t i, total = 0;
	int port = start_with(e, 2, "");

	for (i = 0; i < STREAMS; i++) {
		size_t len = 1 + fault_rand(&rng) % STREAM_MAX;

		stream_open(&s[i], port, len, (uint32_t)i);
		random_fill(s[i].out, len, &rng);
		total += len;
	}
	if (streams_pump(s, STREAMS, SIZE_MAX, true, EM_DEADLINE_MS * 2) == -1)
		fail_msg("random streams: %s", strerror(errno));
	for (i = 0; i < STREAMS; i++) {
		bytes_expect_upper(s[i].in, s[i].out, s[i].len, "random stream");
		stream_close(&s[i]);
	}
	print_message("%d random binary streams, %zu bytes, echoed exactly\n",
	    STREAMS, total);
}

static void
dgram_check(int fd, const uint8_t *msg, size_t len, uint8_t *reply)
{
	ssize_t n = udp_roundtrip_fd(fd, msg, len, reply, DGRAM_MAX + 1,
	    EM_DEADLINE_MS);

	if (n != (ssize_t)len)
		fail_msg("datagram of %zu bytes: reply %zd (%s)", len, n,
		    n == -1 ? strerror(errno) : "wrong length");
	bytes_expect_upper(reply, msg, len, "datagram");
}

static void
test_random_datagram_sizes(void **state)
{
	struct env *e = *state;
	static const size_t edges[] = { 0, 1, 2, 1472, 1473, 8192, 65506,
	    DGRAM_MAX };
	uint8_t *msg = malloc(DGRAM_MAX), *reply = malloc(DGRAM_MAX + 1);
	uint32_t rng = 0xda7au ^ (uint32_t)getpid();
	size_t i, zero = 0, bytes = 0;
	int fd, port = start_with(e, 2, "limits = { udp_rate = 0; };\n");

	assert_non_null(msg);
	assert_non_null(reply);
	fd = udp_client(port);
	for (i = 0; i < sizeof(edges) / sizeof(*edges); i++) {
		random_fill(msg, edges[i], &rng);
		dgram_check(fd, msg, edges[i], reply);
	}
	for (i = 0; i < DGRAMS; i++) {
		size_t len = fault_rand(&rng) % (DGRAM_MAX + 1);

		/* One in ten empty: zero-length datagrams are answered too. */
		if (fault_rand(&rng) % 10 == 0)
			len = 0;
		random_fill(msg, len, &rng);
		dgram_check(fd, msg, len, reply);
		zero += len == 0;
		bytes += len;
	}
	print_message("%zu datagrams of random size (%zu empty, %zu bytes) "
	    "plus the edges 0..65507 echoed exactly\n", (size_t)DGRAMS, zero,
	    bytes);
	close(fd);
	free(msg);
	free(reply);
}

/* Whether the worker still holds the connection from local port lport. */
static bool
held_by(pid_t worker, int port, int lport)
{
	int held[256];
	size_t n = fault_held_client_ports(worker, port, held, 256);

	for (size_t i = 0; i < n && i < 256; i++)
		if (held[i] == lport)
			return true;
	return false;
}

static int
local_port(int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);

	assert_int_equal(getsockname(fd, (struct sockaddr *)&ss, &len), 0);
	return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

/* Fills the path to a client that does not read until the daemon has
 * output it cannot send; returns how much it sent. */
static size_t
stuff(int fd)
{
	static uint8_t junk[65536];
	int64_t last = now_ms();
	size_t sent = 0;

	memset(junk, 'q', sizeof(junk));
	while (now_ms() - last < 300) {
		ssize_t n = send(fd, junk, sizeof(junk),
		    MSG_DONTWAIT | MSG_NOSIGNAL);

		if (n > 0) {
			sent += (size_t)n;
			last = now_ms();
		} else {
			nap_ms(10);
		}
	}
	return sent;
}

enum { IDLE_SILENT, IDLE_AFTER_ECHO, IDLE_NOT_READING, IDLE_HALF_CLOSED,
    IDLE_KINDS };
static const char *const idle_names[IDLE_KINDS] = { "connected, silent",
    "silent after one echo", "not reading, output stuck",
    "half-closed, not reading" };

static void
test_idle_clients_closed_after_timeout(void **state)
{
	struct env *e = *state;
	int fd[IDLE_KINDS], lport[IDLE_KINDS], slow, k, port;
	int64_t t0, gone[IDLE_KINDS] = { 0 }, deadline;
	char got[32];
	pid_t worker;
	bool open_left;

	port = start_with(e, 1, "limits = { idle_timeout = 1; };\n");
	fault_wait_children(e, 1, &worker, EM_DEADLINE_MS);
	for (k = 0; k < IDLE_KINDS; k++) {
		fd[k] = tcp_connect(port, EM_DEADLINE_MS);
		assert_true(fd[k] >= 0);
		lport[k] = local_port(fd[k]);
	}
	t0 = now_ms();
	assert_int_equal(tcp_send_all(fd[IDLE_AFTER_ECHO], "hi", 2,
	    EM_DEADLINE_MS), 0);
	assert_int_equal(tcp_read_exact(fd[IDLE_AFTER_ECHO], got, 2,
	    EM_DEADLINE_MS), 2);
	stuff(fd[IDLE_NOT_READING]);
	stuff(fd[IDLE_HALF_CLOSED]);
	shutdown(fd[IDLE_HALF_CLOSED], SHUT_WR);
	/* Meanwhile a slow client, one byte every 300 ms, is live, not idle.
	 * It connects only now: the stuffing above can take over a second. */
	slow = tcp_connect(port, EM_DEADLINE_MS);
	assert_true(slow >= 0);
	deadline = t0 + IDLE_S * 1000 + 5000;
	for (int i = 0; now_ms() < deadline; i++) {
		assert_int_equal(tcp_send_all(slow, "s", 1, EM_DEADLINE_MS), 0);
		if (tcp_read_exact(slow, got, 1, EM_DEADLINE_MS) != 1)
			fail_msg("slow client: no echo at round %d, %lld ms after t0", i, (long long)(now_ms() - t0));
		assert_int_equal(got[0], 'S');
		open_left = false;
		for (k = 0; k < IDLE_KINDS; k++) {
			if (gone[k] == 0 && !held_by(worker, port, lport[k]))
				gone[k] = now_ms();
			open_left = open_left || gone[k] == 0;
		}
		if (!open_left && i > 10)
			break;
		nap_ms(300);
	}
	for (k = 0; k < IDLE_KINDS; k++) {
		print_message("%s: closed by the daemon after %lld ms "
		    "(idle_timeout %d s)\n", idle_names[k],
		    gone[k] != 0 ? (long long)(gone[k] - t0) : -1LL, IDLE_S);
		if (gone[k] == 0)
			fail_msg("%s client still held after %d ms", idle_names[k],
			    IDLE_S * 1000 + 5000);
		/* Not before the timeout: the stuffing took up to a second. */
		assert_true(gone[k] - t0 >= IDLE_S * 1000 - 100);
		close(fd[k]);
	}
	assert_true(held_by(worker, port, local_port(slow)));
	tcp_roundtrip(port, "after\n", 6, "AFTER\n");
	close(slow);
}

static void
test_max_connections_refuses_excess_cleanly(void **state)
{
	struct env *e = *state;
	int in[MAXCONN], out[EXCESS], i, fresh, port, eof = 0, reset = 0;
	char extra[64], got[16];

	snprintf(extra, sizeof(extra),
	    "limits = { max_connections = %d; };\n", MAXCONN);
	port = start_with(e, 1, extra);
	for (i = 0; i < MAXCONN; i++) {
		in[i] = tcp_connect(port, EM_DEADLINE_MS);
		assert_true(in[i] >= 0);
		assert_int_equal(tcp_send_all(in[i], "in", 2, EM_DEADLINE_MS), 0);
		assert_int_equal(tcp_read_exact(in[i], got, 2, EM_DEADLINE_MS), 2);
	}
	/* The excess: accepted by the kernel, then closed, never served. The
	 * close is a FIN, or a reset when "out" was already there unread. */
	for (i = 0; i < EXCESS; i++) {
		ssize_t n;

		out[i] = tcp_connect(port, EM_DEADLINE_MS);
		assert_true(out[i] >= 0);
		tcp_send_all(out[i], "out", 3, EM_DEADLINE_MS);
		n = tcp_read_exact(out[i], got, sizeof(got), EM_DEADLINE_MS);
		if (n == 0 && tcp_wait_eof(out[i], 0) == 0)
			eof++;
		else if (n == -1 && errno == ECONNRESET)
			reset++;
		else
			fail_msg("connection %d over max_connections = %d: read "
			    "gave %zd (%s), want EOF or a reset", MAXCONN + i + 1,
			    MAXCONN, n, n == -1 ? strerror(errno) : n > 0 ?
			    "served" : "nothing: still open");
		close(out[i]);
	}
	/* The connected ones did not notice. */
	for (i = 0; i < MAXCONN; i++) {
		assert_int_equal(tcp_send_all(in[i], "still", 5, EM_DEADLINE_MS),
		    0);
		assert_int_equal(tcp_read_exact(in[i], got, 5, EM_DEADLINE_MS),
		    5);
		assert_memory_equal(got, "STILL", 5);
	}
	/* A freed place is taken by the next client. */
	close(in[0]);
	for (int64_t deadline = now_ms() + EM_DEADLINE_MS;;) {
		fresh = tcp_connect(port, EM_DEADLINE_MS);
		assert_true(fresh >= 0);
		assert_int_equal(tcp_send_all(fresh, "new", 3, EM_DEADLINE_MS), 0);
		if (tcp_read_exact(fresh, got, 3, 2000) == 3)
			break;
		close(fresh);  /* the close of in[0] not yet seen: again */
		if (now_ms() >= deadline)
			fail_msg("no place freed by a closed connection");
	}
	assert_memory_equal(got, "NEW", 3);
	close(fresh);
	for (i = 1; i < MAXCONN; i++)
		close(in[i]);
	print_message("max_connections = %d: %d served; %d excess closed at "
	    "once, never served (%d EOF, %d reset); the %d kept working\n",
	    MAXCONN, MAXCONN, EXCESS, eof, reset, MAXCONN);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_random_binary_streams,
		    env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(test_random_datagram_sizes,
		    env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(
		    test_idle_clients_closed_after_timeout, env_setup,
		    env_teardown),
		cmocka_unit_test_setup_teardown(
		    test_max_connections_refuses_excess_cleanly, env_setup,
		    env_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
