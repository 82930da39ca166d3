/*
 * test_reload.c: SIGHUP. A good config is applied (ports, worker count,
 * mode) without losing a connection or a byte; a bad one is logged with
 * FILE:LINE and changes nothing.
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

#define STREAMS		8
#define STREAM_BYTES	(4u * 1024 * 1024)
#define RELOADS		3

/* The setting of the tests whose premise is today's drain: the old workers
 * keep their connections until the client leaves or shutdown_timeout. */
static const char DRAIN[] = "reload_handover = false;";

static const char MSG[] = "reload me, gently\n";
static const char MSG_UP[] = "RELOAD ME, GENTLY\n";

static int
start_upper(struct env *e, int workers, int port)
{
	struct em_conf c;

	conf_init(&c, workers);
	conf_listen_pair(&c, port, "upper");
	env_write_conf(e, &c);
	env_start_ready(e, workers, port);
	return port;
}

/* Writes the new config, sends HUP and waits until the reload to
 * generation gen is announced. Returns the log offset at which the reload
 * began. */
static size_t
reload_to(struct env *e, const struct em_conf *c, int gen)
{
	char ok[64];
	size_t off;

	env_write_conf(e, c);
	off = env_log_size(e);
	env_signal(e, SIGHUP);
	snprintf(ok, sizeof(ok), "reload ok: generation %d, %d workers", gen,
	    c->workers);
	env_wait_log_from(e, off, ok, EM_DEADLINE_MS);
	return off;
}

/* INTERFACE.md: "ready: N workers, generation G" is logged at start with
 * G=1 and after each good reload with G+1. */
static void
test_reload_logs_ready_for_new_generation(void **state)
{
	struct env *e = *state;
	struct em_conf c;
	size_t off;
	int port = port_pick();

	start_upper(e, 2, port);
	conf_init(&c, 3);
	conf_listen_pair(&c, port, "upper");
	off = reload_to(e, &c, 2);
	env_wait_log_from(e, off, "ready: 3 workers, generation 2",
	    EM_DEADLINE_MS);
}

static void
udp_expect(int port, const char *msg, const char *want)
{
	char reply[128];
	ssize_t n;

	n = udp_exchange(port, msg, strlen(msg), reply, sizeof(reply),
	    EM_DEADLINE_MS);
	if (n != (ssize_t)strlen(want))
		fail_msg("UDP port %d: reply of %zd bytes (%s)", port, n,
		    n == -1 ? strerror(errno) : "wrong length");
	assert_memory_equal(reply, want, strlen(want));
}

static void
test_reload_changes_port_and_workers(void **state)
{
	struct env *e = *state;
	pid_t old[2], new[3];
	struct em_conf c;
	int ports[2];
	size_t i;

	ports_pick(ports, 2);
	start_upper(e, 2, ports[0]);
	env_wait_workers(e, 2, old, EM_DEADLINE_MS);
	conf_init(&c, 3);
	conf_listen_pair(&c, ports[1], "upper");
	reload_to(e, &c, 2);
	env_wait_workers(e, 3, new, EM_DEADLINE_MS);
	for (i = 0; i < 3; i++)
		assert_false(pids_contain(old, 2, new[i]));
	tcp_roundtrip(ports[1], MSG, strlen(MSG), MSG_UP);
	udp_expect(ports[1], MSG, MSG_UP);
	tcp_wait_refused(ports[0], EM_DEADLINE_MS);
	udp_wait_refused(ports[0], EM_DEADLINE_MS);
	assert_false(env_exited(e));
}

/* Same address, new mode: the kept socket is served the new way. */
static void
test_reload_changes_mode(void **state)
{
	struct env *e = *state;
	struct em_conf c;
	int port = port_pick();

	start_upper(e, 2, port);
	tcp_roundtrip(port, MSG, strlen(MSG), MSG_UP);
	conf_init(&c, 2);
	conf_listen_pair(&c, port, "echo");
	reload_to(e, &c, 2);
	env_wait_workers(e, 2, NULL, EM_DEADLINE_MS);
	tcp_roundtrip(port, MSG, strlen(MSG), MSG);
	udp_expect(port, MSG, MSG);
}

/* The broken config also asks for another port and worker count, so any
 * part of it applied by mistake shows. Its error is on line 5. */
static char *
broken_conf(struct env *e, int port)
{
	struct em_conf c;
	char *good, *bad;

	conf_init(&c, 4);
	conf_listen_pair(&c, port, "echo");
	good = env_conf_text(e, &c);
	bad = text_replace(good, "shutdown_timeout = 20;",
	    "shutdown_timeout = \"soon\";");
	free(good);
	return bad;
}

static void
test_reload_broken_config_keeps_old(void **state)
{
	struct env *e = *state;
	pid_t before[2], after[2];
	char where[PATH_MAX + 32], *text, *line;
	struct em_conf c;
	int ports[2], fd;
	size_t off;

	ports_pick(ports, 2);
	start_upper(e, 2, ports[0]);
	env_wait_workers(e, 2, before, EM_DEADLINE_MS);
	text = broken_conf(e, ports[1]);
	env_write_conf_text(e, text);
	free(text);
	off = env_log_size(e);
	env_signal(e, SIGHUP);
	env_wait_log_from(e, off, "reload failed: ", EM_DEADLINE_MS);
	line = env_log_line(e, "reload failed: ");
	snprintf(where, sizeof(where), "%s:5:", e->conf_path);
	if (strstr(line, where) == NULL)
		fail_msg("want \"%s\" in the log line: %s", where, line);
	free(line);
	/* The same workers, the old port and mode, not the new ones. */
	env_wait_workers(e, 2, after, EM_DEADLINE_MS);
	assert_memory_equal(before, after, sizeof(before));
	tcp_roundtrip(ports[0], MSG, strlen(MSG), MSG_UP);
	udp_expect(ports[0], MSG, MSG_UP);
	if ((fd = tcp_connect(ports[1], EM_DEADLINE_MS)) != -1) {
		close(fd);
		fail_msg("port %d of the rejected config accepts", ports[1]);
	}
	assert_false(env_log_has(e, "generation 2"));
	/* A failed reload uses up no generation: the next good one is 2. */
	conf_init(&c, 3);
	conf_listen_pair(&c, ports[0], "upper");
	reload_to(e, &c, 2);
	env_wait_workers(e, 3, NULL, EM_DEADLINE_MS);
	tcp_roundtrip(ports[0], MSG, strlen(MSG), MSG_UP);
}

static void
streams_check(struct em_stream *s, size_t n)
{
	char what[64];
	size_t i;

	for (i = 0; i < n; i++) {
		snprintf(what, sizeof(what), "stream %zu", i);
		assert_true(s[i].eof);
		assert_int_equal(s[i].rcvd, s[i].len);
		bytes_expect_upper(s[i].in, s[i].out, s[i].len, what);
		stream_close(&s[i]);
	}
}

/* Keeps every stream moving (up to limit) until the reload is announced. */
static void
pump_during_reload(struct env *e, struct em_stream *s, size_t n,
    size_t limit, size_t off, int gen)
{
	int64_t deadline = now_ms() + EM_DEADLINE_MS;
	char ok[64];

	snprintf(ok, sizeof(ok), "reload ok: generation %d", gen);
	while (env_log_find(e, off, ok) == 0) {
		if (now_ms() >= deadline || env_exited(e)) {
			env_dump_log(e);
			fail_msg("no \"%s\" while streaming", ok);
		}
		if (streams_step(s, n, limit, false, 20) == -1)
			fail_msg("stream failed during the reload: %s",
			    strerror(errno));
	}
}

/* Connections opened before the HUP are served to the last byte by the
 * draining old workers (reload_handover = false: drains are the premise
 * here; test_handover.c has the handover); connections opened after it by
 * the new ones. */
static void
test_reload_while_streaming_loses_nothing(void **state)
{
	struct env *e = *state;
	struct em_stream old[STREAMS], young[STREAMS];
	struct em_conf c;
	size_t i, off;
	int port = port_pick();

	conf_init(&c, 2);
	c.extra = DRAIN;
	conf_listen_pair(&c, port, "upper");
	env_write_conf(e, &c);
	env_start_ready(e, 2, port);
	for (i = 0; i < STREAMS; i++)
		stream_open(&old[i], port, STREAM_BYTES, (uint32_t)i + 10);
	if (streams_pump(old, STREAMS, STREAM_BYTES / 3, false,
	    EM_DEADLINE_MS * 2) == -1)
		fail_msg("first third: %s", strerror(errno));
	conf_init(&c, 3);
	c.extra = DRAIN;
	conf_listen_pair(&c, port, "upper");
	env_write_conf(e, &c);
	off = env_log_size(e);
	env_signal(e, SIGHUP);
	pump_during_reload(e, old, STREAMS, 2 * (STREAM_BYTES / 3), off, 2);
	for (i = 0; i < STREAMS; i++)
		stream_open(&young[i], port, STREAM_BYTES, (uint32_t)i + 100);
	if (streams_pump(old, STREAMS, STREAM_BYTES, true,
	    EM_DEADLINE_MS * 3) == -1)
		fail_msg("old streams after the reload: %s", strerror(errno));
	if (streams_pump(young, STREAMS, STREAM_BYTES, true,
	    EM_DEADLINE_MS * 3) == -1)
		fail_msg("new streams after the reload: %s", strerror(errno));
	streams_check(old, STREAMS);
	streams_check(young, STREAMS);
	/* With their connections gone the old workers finish draining. */
	env_wait_workers(e, 3, NULL, EM_DEADLINE_MS);
}

/* Connections made while reloads happen are all accepted and answered:
 * the kept listening socket never closes. */
static void
test_reload_refuses_no_connection(void **state)
{
	struct env *e = *state;
	struct em_conf c;
	char ok[64];
	int gen, port = port_pick(), during = 0;
	int64_t deadline;
	size_t off;

	start_upper(e, 2, port);
	for (gen = 2; gen < 2 + RELOADS; gen++) {
		conf_init(&c, gen % 2 == 0 ? 3 : 2);
		conf_listen_pair(&c, port, "upper");
		env_write_conf(e, &c);
		off = env_log_size(e);
		env_signal(e, SIGHUP);
		snprintf(ok, sizeof(ok), "reload ok: generation %d", gen);
		deadline = now_ms() + EM_DEADLINE_MS;
		do {
			tcp_roundtrip(port, MSG, strlen(MSG), MSG_UP);
			during++;
		} while (env_log_find(e, off, ok) == 0 && now_ms() < deadline);
		/* Fails with the log if the loop ended on the deadline. */
		env_wait_log_from(e, off, ok, EM_DEADLINE_MS);
		tcp_roundtrip(port, MSG, strlen(MSG), MSG_UP);
	}
	print_message("%d connections answered while reloading\n", during);
	env_wait_workers(e, (size_t)c.workers, NULL, EM_DEADLINE_MS);
}

/* The new port cannot be bound (the test holds it): the reload fails as a
 * whole, and the old port and workers go on. */
static void
test_reload_bind_failure_keeps_old(void **state)
{
	struct env *e = *state;
	pid_t before[2], after[2];
	struct em_conf c;
	int ports[2], held;
	size_t off;

	ports_pick(ports, 2);
	start_upper(e, 2, ports[0]);
	env_wait_workers(e, 2, before, EM_DEADLINE_MS);
	held = port_occupy(ports[1]);
	conf_init(&c, 2);
	conf_listen_pair(&c, ports[1], "upper");
	env_write_conf(e, &c);
	off = env_log_size(e);
	env_signal(e, SIGHUP);
	env_wait_log_from(e, off, "reload failed: ", EM_DEADLINE_MS);
	env_wait_workers(e, 2, after, EM_DEADLINE_MS);
	assert_memory_equal(before, after, sizeof(before));
	tcp_roundtrip(ports[0], MSG, strlen(MSG), MSG_UP);
	udp_expect(ports[0], MSG, MSG_UP);
	close(held);
}

static void
wait_children(struct env *e, size_t n)
{
	int64_t deadline = now_ms() + EM_DEADLINE_MS;
	pid_t pids[EM_MAX_WORKERS];
	size_t got;

	while ((got = proc_children(e->master, NULL, pids,
	    EM_MAX_WORKERS)) != n) {
		if (now_ms() >= deadline) {
			env_dump_log(e);
			fail_msg("master has %zu children, want %zu", got, n);
		}
		nap_ms(20);
	}
}

/* HUPs faster than reloads complete: the daemon ends up on the last config
 * with exactly its workers, none left over from the reloads in between. */
static void
test_reload_storm_settles(void **state)
{
	struct env *e = *state;
	struct em_conf c;
	int i, port = port_pick();

	start_upper(e, 2, port);
	conf_init(&c, 3);
	conf_listen_pair(&c, port, "echo");
	env_write_conf(e, &c);
	for (i = 0; i < 5; i++)
		env_signal(e, SIGHUP);
	env_wait_log(e, "reload ok: generation 2, 3 workers", EM_DEADLINE_MS);
	env_wait_workers(e, 3, NULL, EM_DEADLINE_MS);
	wait_children(e, 3);
	tcp_roundtrip(port, MSG, strlen(MSG), MSG);
	assert_false(env_exited(e));
}

/* An old worker holding a connection that never ends stops waiting after
 * shutdown_timeout, not before: the client sees EOF and the worker is
 * gone. t0 is taken before the HUP, so load only lengthens the measure.
 * A drain, so reload_handover = false. */
#define DRAIN_S 2

static void
test_reload_drain_bounded_by_shutdown_timeout(void **state)
{
	struct env *e = *state;
	struct em_conf c;
	int64_t t0, closed;
	int fd, port = port_pick();

	conf_init(&c, 2);
	c.shutdown_timeout = DRAIN_S;
	c.extra = DRAIN;
	conf_listen_pair(&c, port, "upper");
	env_write_conf(e, &c);
	env_start_ready(e, 2, port);
	fd = tcp_open_echoed(port, MSG, strlen(MSG), NULL);
	/* Late in a second: a deadline rounded to whole seconds would end
	 * the drain up to a second early, and always does from here. */
	clock_align_ms(700);
	t0 = now_ms();
	reload_to(e, &c, 2);
	if (tcp_wait_eof(fd, EM_DEADLINE_MS) == -1)
		fail_msg("held connection not closed after shutdown_timeout: "
		    "%s", strerror(errno));
	closed = now_ms() - t0;
	print_message("held connection closed %lld ms after the HUP "
	    "(shutdown_timeout = %d)\n", (long long)closed, DRAIN_S);
	close(fd);
	env_wait_workers(e, 2, NULL, EM_DEADLINE_MS);
	wait_children(e, 2);
	if (closed < DRAIN_S * 1000 - 50)
		fail_msg("the draining client was cut after %lld ms, before "
		    "shutdown_timeout = %d s", (long long)closed, DRAIN_S);
}

#define T(f) cmocka_unit_test_setup_teardown(f, env_setup, env_teardown)

int
main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_reload_changes_port_and_workers),
		T(test_reload_changes_mode),
		T(test_reload_logs_ready_for_new_generation),
		T(test_reload_broken_config_keeps_old),
		T(test_reload_while_streaming_loses_nothing),
		T(test_reload_refuses_no_connection),
		T(test_reload_bind_failure_keeps_old),
		T(test_reload_storm_settles),
		T(test_reload_drain_bounded_by_shutdown_timeout),
	};

	return cmocka_run_group_tests_name("reload", tests, NULL, NULL);
}
