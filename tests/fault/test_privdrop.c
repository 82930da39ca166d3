/*
 * test_privdrop.c: root only where needed. Started as root with
 * user = "nobody", the master (root) binds a privileged port, TCP and UDP;
 * every worker runs as nobody: real, effective, saved and filesystem uid
 * and gid, with no capability left, and both protocols are served.
 *
 * Needs root. Run as anyone else it does not pass quietly: cmocka reports
 * it SKIPPED with the reason.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "fault.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define WORKERS 2

static const char MSG[] = "port seven, please\n";
static const char MSG_UP[] = "PORT SEVEN, PLEASE\n";

static bool
port_free(int type, int port)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	int fd = socket(AF_INET, type | SOCK_CLOEXEC, 0), one = 1;
	bool ok;

	sin.sin_port = htons((uint16_t)port);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	ok = fd != -1 && bind(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0;
	if (fd != -1)
		close(fd);
	return ok;
}

/* Port 7 itself unless something (an installed echomaster) holds it on
 * 127.0.0.1; then the highest free privileged port. */
static int
privileged_port(void)
{
	if (port_free(SOCK_STREAM, 7) && port_free(SOCK_DGRAM, 7))
		return 7;
	for (int p = 1023; p > 512; p--)
		if (port_free(SOCK_STREAM, p) && port_free(SOCK_DGRAM, p))
			return p;
	fail_msg("no free privileged port on 127.0.0.1");
	return -1;
}

/* "Uid:" or "Gid:" from /proc/PID/status: real, effective, saved, fs. */
static void
ids(pid_t pid, const char *key, long v[4])
{
	char path[64], line[256];
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	assert_non_null(f = fopen(path, "re"));
	while (fgets(line, sizeof(line), f) != NULL)
		if (strncmp(line, key, strlen(key)) == 0 &&
		    sscanf(line + strlen(key), "%ld %ld %ld %ld", &v[0], &v[1],
		    &v[2], &v[3]) == 4) {
			fclose(f);
			return;
		}
	fclose(f);
	fail_msg("no %s line for %d", key, (int)pid);
}

static unsigned long long
cap_eff(pid_t pid)
{
	char path[64], line[256];
	unsigned long long v = ~0ULL;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	assert_non_null(f = fopen(path, "re"));
	while (fgets(line, sizeof(line), f) != NULL)
		if (sscanf(line, "CapEff: %llx", &v) == 1)
			break;
	fclose(f);
	return v;
}

static void
test_workers_run_as_nobody(void **state)
{
	struct env *e = *state;
	struct passwd *pw;
	pid_t pids[WORKERS];
	long u[4], g[4];
	char reply[64];
	struct em_conf c;
	int port, i, k;

	if (geteuid() != 0) {
		print_message("privilege drop NOT CHECKED: this test needs root "
		    "(euid is %d)\n", (int)geteuid());
		skip();
	}
	assert_non_null(pw = getpwnam("nobody"));
	port = privileged_port();
	conf_init(&c, WORKERS);
	conf_listen_pair(&c, port, "upper");
	fault_write_conf(e, &c, "user = \"nobody\";\n");
	env_start_ready(e, WORKERS, port);
	env_wait_workers(e, WORKERS, pids, EM_DEADLINE_MS);
	ids(e->master, "Uid:", u);
	assert_int_equal(u[0], 0);
	assert_int_equal(u[1], 0);
	for (i = 0; i < WORKERS; i++) {
		ids(pids[i], "Uid:", u);
		ids(pids[i], "Gid:", g);
		for (k = 0; k < 4; k++) {
			assert_int_equal(u[k], pw->pw_uid);
			assert_int_equal(g[k], pw->pw_gid);
		}
		assert_int_equal(cap_eff(pids[i]), 0);
	}
	tcp_roundtrip(port, MSG, strlen(MSG), MSG_UP);
	assert_int_equal(udp_exchange(port, MSG, strlen(MSG), reply,
	    sizeof(reply), EM_DEADLINE_MS), strlen(MSG));
	assert_memory_equal(reply, MSG_UP, strlen(MSG));
	print_message("port %d: master uid 0, %d workers uid/gid %d/%d (real, "
	    "effective, saved, fs), no capabilities; TCP and UDP served\n",
	    port, WORKERS, (int)pw->pw_uid, (int)pw->pw_gid);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_workers_run_as_nobody,
		    env_setup, env_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
