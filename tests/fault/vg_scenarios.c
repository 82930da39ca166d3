/*
 * vg_scenarios.c: black-box scenarios for `make valgrind`. ECHOMASTER is
 * tests/fault/valgrind-wrap.sh, so the daemon runs under memcheck and every
 * process leaves a vg.PID.log in the test's directory. Each scenario drives
 * the daemon through a part of its life, stops it, and then reads every
 * report: zero errors and no definitely lost byte in each, and a complete
 * report from every process except the workers the scenario killed itself.
 *
 * Under valgrind the process titles are not in /proc/PID/cmdline (the guest's
 * argv is not the real one), so workers are found by parent pid.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "fault.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

/* Valgrind makes everything about 20 times slower. */
#define VG_DEADLINE_MS	60000
#define MAX_VICTIMS	8

static const char MSG[] = "under the microscope\n";
static const char MSG_UP[] = "UNDER THE MICROSCOPE\n";

struct vg_expect {
	pid_t	 victims[MAX_VICTIMS];	/* killed on purpose: no report */
	size_t	 nvictims;
};

static bool
report_ok(const char *path, const char *text)
{
	const char *dl = strstr(text, "definitely lost: ");

	if (strstr(text, "ERROR SUMMARY: 0 errors") == NULL) {
		print_error("%s reports errors:\n%s\n", path, text);
		return false;
	}
	if (dl != NULL && strncmp(dl, "definitely lost: 0 bytes", 24) != 0) {
		print_error("%s reports a leak:\n%s\n", path, text);
		return false;
	}
	return true;
}

/* Reads every vg.PID.log of the env; fails the test on any error, leak or
 * missing summary from a process that was not killed on purpose. */
static void
vg_check(struct env *e, const struct vg_expect *x)
{
	size_t reports = 0, incomplete = 0;
	char path[PATH_MAX + 256];
	struct dirent *de;
	bool ok = true;
	DIR *d;

	assert_non_null(d = opendir(e->dir));
	while ((de = readdir(d)) != NULL) {
		pid_t pid;
		char *text;

		if (sscanf(de->d_name, "vg.%d.log", &pid) != 1)
			continue;
		snprintf(path, sizeof(path), "%s/%s", e->dir, de->d_name);
		assert_non_null(text = file_read(path, NULL));
		reports++;
		if (strstr(text, "ERROR SUMMARY:") == NULL) {
			incomplete++;
			if (!pids_contain(x->victims, x->nvictims, pid)) {
				print_error("%s has no summary, and %d was not "
				    "killed on purpose:\n%s\n", path, (int)pid,
				    text);
				ok = false;
			}
		} else if (!report_ok(path, text)) {
			ok = false;
		}
		free(text);
	}
	closedir(d);
	print_message("valgrind: %zu process reports, %zu cut short by our "
	    "SIGKILL, %s\n", reports, incomplete, ok ? "all clean" : "FAILED");
	assert_true(reports > 1);
	assert_true(ok);
}

static int
vg_start(struct env *e, int workers, const char *extra)
{
	struct em_conf c;
	char ready[64];
	int port = port_pick();

	conf_init(&c, workers);
	conf_listen_pair(&c, port, "upper");
	fault_write_conf(e, &c, extra);
	env_start(e);
	snprintf(ready, sizeof(ready), "ready: %d workers, generation 1",
	    workers);
	env_wait_log(e, ready, VG_DEADLINE_MS);
	tcp_wait_listening(port, VG_DEADLINE_MS);
	return port;
}

static void
vg_stop(struct env *e, int sig)
{
	int status;

	env_signal(e, sig);
	status = env_wait_exit(e, VG_DEADLINE_MS);

	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		env_dump_log(e);
		fail_msg("master ended with wait status %#x, want exit 0 "
		    "(99: valgrind found errors in it)", status);
	}
}

static void
serve_some(int port)
{
	uint8_t *reply = malloc(65507), *big = malloc(65507);
	struct em_stream s;
	ssize_t n;

	assert_non_null(reply);
	assert_non_null(big);
	for (int i = 0; i < 10; i++)
		tcp_roundtrip(port, MSG, strlen(MSG), MSG_UP);
	stream_open(&s, port, 1024 * 1024, 7);
	assert_int_equal(streams_pump(&s, 1, SIZE_MAX, true, VG_DEADLINE_MS), 0);
	bytes_expect_upper(s.in, s.out, s.len, "stream under valgrind");
	stream_close(&s);
	n = udp_exchange(port, "", 0, reply, 65507, VG_DEADLINE_MS);
	assert_int_equal(n, 0);
	pattern_fill(big, 65507, 3);
	n = udp_exchange(port, big, 65507, reply, 65507, VG_DEADLINE_MS);
	assert_int_equal(n, 65507);
	bytes_expect_upper(reply, big, 65507, "largest datagram");
	free(reply);
	free(big);
}

/* Start, serve TCP and UDP, idle and over-limit clients, graceful stop. */
static void
test_vg_serve_and_quit(void **state)
{
	struct env *e = *state;
	struct vg_expect x = { .nvictims = 0 };
	int port = vg_start(e, 2, "limits = { idle_timeout = 1; "
	    "max_connections = 4; udp_rate = 0; };\n");
	int fds[6], i;

	serve_some(port);
	/* Over max_connections (per worker, 2 workers): some are closed. */
	for (i = 0; i < 6; i++)
		fds[i] = tcp_connect(port, VG_DEADLINE_MS);
	/* Idle ones are closed after idle_timeout. */
	for (i = 0; i < 6; i++) {
		if (fds[i] >= 0) {
			tcp_wait_eof(fds[i], VG_DEADLINE_MS);
			close(fds[i]);
		}
	}
	serve_some(port);
	vg_stop(e, SIGQUIT);
	vg_check(e, &x);
}

/* Reloads: worker count, a new listener, a broken file; fast stop. */
static void
test_vg_reloads(void **state)
{
	struct env *e = *state;
	struct vg_expect x = { .nvictims = 0 };
	int ports[2], port = vg_start(e, 2, "");
	struct em_conf c;
	size_t off;

	ports[0] = port;
	ports[1] = port_pick();
	conf_init(&c, 3);
	conf_listen_pair(&c, ports[0], "upper");
	conf_listen_pair(&c, ports[1], "echo");
	env_write_conf(e, &c);
	off = env_log_size(e);
	env_signal(e, SIGHUP);
	env_wait_log_from(e, off, "reload ok: generation 2, 3 workers",
	    VG_DEADLINE_MS);
	fault_wait_children(e, 3, NULL, VG_DEADLINE_MS);
	serve_some(ports[0]);
	tcp_roundtrip(ports[1], MSG, strlen(MSG), MSG);
	env_write_conf_text(e, "workers = \"many\";\n");
	off = env_log_size(e);
	env_signal(e, SIGHUP);
	env_wait_log_from(e, off, "reload failed", VG_DEADLINE_MS);
	serve_some(ports[0]);
	conf_init(&c, 1);
	conf_listen_pair(&c, ports[1], "upper");
	env_write_conf(e, &c);
	off = env_log_size(e);
	env_signal(e, SIGHUP);
	env_wait_log_from(e, off, "reload ok: generation 3, 1 workers",
	    VG_DEADLINE_MS);
	fault_wait_children(e, 1, NULL, VG_DEADLINE_MS);
	serve_some(ports[1]);
	vg_stop(e, SIGTERM);
	vg_check(e, &x);
}

/* A worker killed and respawned; USR1; graceful stop. */
static void
test_vg_worker_killed(void **state)
{
	struct env *e = *state;
	struct vg_expect x = { .nvictims = 0 };
	pid_t pids[2];
	char line[64];
	int port = vg_start(e, 2, "");

	e->crashes_expected = true;
	fault_wait_children(e, 2, pids, VG_DEADLINE_MS);
	x.victims[x.nvictims++] = pids[0];
	assert_int_equal(kill(pids[0], SIGKILL), 0);
	snprintf(line, sizeof(line), "worker %d killed by signal 9",
	    (int)pids[0]);
	env_wait_log(e, line, VG_DEADLINE_MS);
	fault_wait_children(e, 2, NULL, VG_DEADLINE_MS);
	serve_some(port);
	env_signal(e, SIGUSR1);
	env_wait_log(e, "reopen", VG_DEADLINE_MS);
	vg_stop(e, SIGQUIT);
	vg_check(e, &x);
}

/* -t and -T on a good file, -t on broken ones: the parser's paths. */
static void
test_vg_config_check(void **state)
{
	struct env *e = *state;
	static const char *const bad[] = {
		"workers = 0;\nlisten = ();\n",
		"listen = ( { proto = \"tcp\"; address = \"127.0.0.1\"; "
		    "port = 70000; } );\n",
		"listen = ( { proto = \"sctp\"; address = \"::1\"; port = 7; "
		    "allow = [ \"10.0.0.0/33\" ]; } );\n",
		"log = { level = \"loud\"; };\n",
		"this is not a config",
	};
	const char *t[] = { "-t", "-c", e->conf_path, NULL };
	const char *dump[] = { "-T", "-c", e->conf_path, NULL };
	struct vg_expect x = { .nvictims = 0 };
	struct em_conf c;

	conf_init(&c, 2);
	conf_listen_pair(&c, port_pick(), "upper");
	fault_write_conf(e, &c, "limits = { max_connections = 7; };\n");
	assert_int_equal(run_daemon_cmd(e, t, VG_DEADLINE_MS, NULL, NULL), 0);
	assert_int_equal(run_daemon_cmd(e, dump, VG_DEADLINE_MS, NULL, NULL),
	    0);
	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
		env_write_conf_text(e, bad[i]);
		assert_int_equal(run_daemon_cmd(e, t, VG_DEADLINE_MS, NULL,
		    NULL), 1);
	}
	vg_check(e, &x);
}

/* Runs a shell command in the env's directory; true when it succeeded. */
static bool
vg_sh(struct env *e, const char *cmd)
{
	char full[PATH_MAX + 1024];

	snprintf(full, sizeof(full), "cd '%s' && (%s) >/dev/null 2>&1", e->dir, cmd);
	return system(full) == 0;
}

/*
 * The error paths of a TLS connection: a record that is not the session's
 * (an alert, then the close), and a reset in the middle of a handshake.
 */
static void
vg_tls_errors(int port)
{
	static const uint8_t forged[5 + 64] = { 0x17, 0x03, 0x03, 0x00, 64, 0x55 };
	struct tls_opts o = { 0 };
	struct tls_client cl;
	struct linger lg = { .l_onoff = 1, .l_linger = 0 };
	char buf[256];

	assert_int_equal(tls_connect(&cl, port, &o, VG_DEADLINE_MS), 1);
	tls_roundtrip(&cl, MSG, MSG_UP);
	assert_int_equal(tcp_send_all(cl.fd, forged, sizeof(forged), VG_DEADLINE_MS), 0);
	assert_int_equal(tls_read_exact(&cl, buf, sizeof(buf), VG_DEADLINE_MS), 0);
	tls_close(&cl);
	cl.fd = tcp_connect(port, VG_DEADLINE_MS);
	assert_true(cl.fd >= 0);
	assert_int_equal(tcp_send_all(cl.fd, "\x16\x03\x01\x02\x00\x01", 6, VG_DEADLINE_MS), 0);
	setsockopt(cl.fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	close(cl.fd);
}

/*
 * TLS: handshakes (ECDSA and SNI, TLS 1.2 and 1.3, a resumption), whoami
 * lines over TLS, plain text and a stalled handshake closed, a forged
 * record and a reset handshake, a reload that reads the certificates
 * again; graceful stop. s_client is the client, and harness_tls's.
 */
static void
test_vg_tls(void **state)
{
	struct env *e = *state;
	struct vg_expect x = { .nvictims = 0 };
	struct em_conf c;
	char tls[2 * PATH_MAX + 256], *text, *with, *both, cmd[512], find[64];
	int ports[2], port, fd;

	assert_true(vg_sh(e, "openssl ecparam -name prime256v1 -genkey -noout -out a.key && "
	    "openssl req -new -x509 -key a.key -out a.crt -days 30 -subj /CN=a.test"));
	ports_pick(ports, 2);
	port = ports[0];
	conf_init(&c, 2);
	conf_listen(&c, "tcp", port, "whoami");
	conf_listen(&c, "tcp", ports[1], "upper");
	text = env_conf_text(e, &c);
	snprintf(find, sizeof(find), "mode = \"whoami\"; }");
	snprintf(tls, sizeof(tls), "mode = \"whoami\"; tls = { certificate = \"%s/a.crt\"; "
	    "key = \"%s/a.key\"; alpn = [ \"echo\" ]; }; }", e->dir, e->dir);
	with = text_replace(text, find, tls);
	both = tls_listener_text(e, with, ports[1], "a", NULL);
	env_write_conf_text(e, both);
	free(both);
	free(with);
	free(text);
	env_start(e);
	env_wait_log(e, "ready: 2 workers, generation 1", VG_DEADLINE_MS);
	tcp_wait_listening(port, VG_DEADLINE_MS);
	for (int v = 2; v <= 3; v++) {
		snprintf(cmd, sizeof(cmd), "openssl s_client -ign_eof -tls1_%d -connect 127.0.0.1:%d -alpn echo "
		    "-sess_out s%d.pem </dev/null | grep -q 'alpn=echo' && "
		    "openssl s_client -ign_eof -tls1_%d -connect 127.0.0.1:%d -sess_in s%d.pem </dev/null | "
		    "grep -q '^Reused'", v, port, v, v, port, v);
		if (!vg_sh(e, cmd))
			fail_msg("TLS 1.%d under valgrind: %s", v, cmd);
	}
	fd = tcp_connect(port, VG_DEADLINE_MS);
	assert_int_equal(tcp_send_all(fd, MSG, strlen(MSG), VG_DEADLINE_MS), 0);
	/* Plain text: at most an alert back, then the close (or a reset). */
	for (int64_t end = now_ms() + VG_DEADLINE_MS;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		char buf[256];
		ssize_t n;

		assert_true(now_ms() < end);
		if (poll(&p, 1, 100) != 1)
			continue;
		if ((n = read(fd, buf, sizeof(buf))) <= 0)
			break;
		assert_true(buf[0] == 0x15);  /* a TLS alert record, never the echo */
	}
	close(fd);
	vg_tls_errors(ports[1]);
	env_signal(e, SIGHUP);
	env_wait_log(e, "reload ok: generation 2", VG_DEADLINE_MS);
	snprintf(cmd, sizeof(cmd), "openssl s_client -ign_eof -connect 127.0.0.1:%d </dev/null | "
	    "grep -q 'generation=2 .*tls=TLSv1.3'", port);
	if (!vg_sh(e, cmd))
		fail_msg("TLS after the reload under valgrind");
	vg_stop(e, SIGQUIT);
	vg_check(e, &x);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_vg_serve_and_quit,
		    env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(test_vg_reloads, env_setup,
		    env_teardown),
		cmocka_unit_test_setup_teardown(test_vg_worker_killed, env_setup,
		    env_teardown),
		cmocka_unit_test_setup_teardown(test_vg_config_check, env_setup,
		    env_teardown),
		cmocka_unit_test_setup_teardown(test_vg_tls, env_setup, env_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
