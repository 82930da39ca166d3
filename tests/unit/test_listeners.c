/*
 * listeners: the LISTEN_FDS protocol (systemd socket activation, the file
 * descriptor store, a live upgrade) and the adoption of inherited sockets.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/log.h"
#include "master/listeners.h"

/* A socket of TYPE bound to 127.0.0.1 on an ephemeral port (listening if a stream). */
static int
bound(int type, int *port)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(sin);
	int fd = socket(AF_INET, type | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	if (type == SOCK_STREAM)
		assert_int_equal(listen(fd, 8), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
	*port = ntohs(sin.sin_port);
	return fd;
}

static struct cfg *
config(int tcp_port, int udp_port)
{
	char text[512], err[CFG_ERR_LEN];
	struct cfg *cfg;

	snprintf(text, sizeof(text), "pid_file = \"\";\nlisten = (\n"
	    "  { proto = \"tcp\"; address = \"127.0.0.1\"; port = %d; },\n"
	    "  { proto = \"udp\"; address = \"127.0.0.1\"; port = %d; }\n);\n", tcp_port, udp_port);
	cfg = cfg_load_string("test.conf", text, err);
	if (cfg == NULL)
		fail_msg("%s", err);
	return cfg;
}

static void
env_count(void **state)
{
	(void)state;
	assert_int_equal(listeners_env_count(NULL, NULL, 42), 0);
	assert_int_equal(listeners_env_count("42", NULL, 42), 0);
	assert_int_equal(listeners_env_count("42", "3", 42), 3);
	assert_int_equal(listeners_env_count("42", "0", 42), 0);
	assert_int_equal(listeners_env_count("41", "3", 42), 0);  /* meant for another process */
	assert_int_equal(listeners_env_count("42", "x", 42), -1);
	assert_int_equal(listeners_env_count("42", "3x", 42), -1);
	assert_int_equal(listeners_env_count("42", "-1", 42), -1);
	assert_int_equal(listeners_env_count("42", "", 42), -1);
	assert_int_equal(listeners_env_count("0", "1", 42), -1);
	assert_int_equal(listeners_env_count("42", "100000", 42), -1);
}

static void
matches_protocol_and_address(void **state)
{
	int tport, uport, other;
	int t = bound(SOCK_STREAM, &tport), u = bound(SOCK_DGRAM, &uport);
	int o = bound(SOCK_STREAM, &other);
	struct cfg *cfg = config(tport, uport);

	(void)state;
	assert_true(listeners_fd_matches(t, &cfg->listen[0]));
	assert_false(listeners_fd_matches(t, &cfg->listen[1]));  /* udp listener */
	assert_true(listeners_fd_matches(u, &cfg->listen[1]));
	assert_false(listeners_fd_matches(u, &cfg->listen[0]));
	assert_false(listeners_fd_matches(o, &cfg->listen[0]));  /* another port */
	cfg_free(cfg);
	close(t);
	close(u);
	close(o);
}

/* What the child checks; each failure its own exit status, for the parent's message. */
static int
child_adopts(int t, int u, int stray, int tport, int uport)
{
	struct cfg *cfg = config(tport, uport);
	struct inherited inh;
	struct listen_env le;
	struct listeners *ls;
	char err[256], pid[32];

	/* As systemd passes them: 3, 4, 5, in the order of LISTEN_FDNAMES. */
	if (dup2(t, 3) != 3 || dup2(stray, 4) != 4 || dup2(u, 5) != 5)
		return 10;
	snprintf(pid, sizeof(pid), "%ld", (long)getpid());
	setenv("LISTEN_PID", pid, 1);
	setenv("LISTEN_FDS", "3", 1);
	setenv("LISTEN_FDNAMES", "tcp:stray:udp", 1);
	if (listeners_env_take(&le) == -1 || listeners_inherit(&inh, &le, err, sizeof(err)) == -1 ||
	    inh.n != 3)
		return 11;
	if (getenv("LISTEN_PID") != NULL || getenv("LISTEN_FDS") != NULL ||
	    getenv("LISTEN_FDNAMES") != NULL)
		return 12;
	if (!(fcntl(3, F_GETFD) & FD_CLOEXEC) || strcmp(inh.names[1], "stray") != 0)
		return 13;
	if ((ls = listeners_open_inherited(cfg, &inh, err, sizeof(err))) == NULL)
		return 14;
	if (ls->n != 2 || ls->fds[0] != 3 || ls->fds[1] != 5 || inh.fds[1] != 4)
		return 15;
	listeners_inherited_free(&inh);
	if (fcntl(4, F_GETFD) != -1)
		return 16;  /* the stray socket is closed */
	if (!(fcntl(3, F_GETFL) & O_NONBLOCK))
		return 17;
	listeners_close(ls);
	listeners_env_free(&le);
	cfg_free(cfg);
	return 0;
}

static void
adopts_inherited_and_closes_strays(void **state)
{
	int tport, uport, sport;
	int t = bound(SOCK_STREAM, &tport), u = bound(SOCK_DGRAM, &uport);
	int stray = bound(SOCK_STREAM, &sport);
	int status;
	pid_t pid;

	(void)state;
	/* High numbers first, so the child's dup2 onto 3..5 clobbers none of them. */
	t = fcntl(t, F_DUPFD_CLOEXEC, 100);
	u = fcntl(u, F_DUPFD_CLOEXEC, 101);
	stray = fcntl(stray, F_DUPFD_CLOEXEC, 102);
	assert_true((pid = fork()) >= 0);
	if (pid == 0)
		_exit(child_adopts(t, u, stray, tport, uport));
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
}

static void
not_for_us_takes_nothing(void **state)
{
	struct inherited inh;
	struct listen_env le;
	char err[256];

	(void)state;
	setenv("LISTEN_PID", "1", 1);
	setenv("LISTEN_FDS", "2", 1);
	assert_int_equal(listeners_env_take(&le), 0);
	assert_null(getenv("LISTEN_FDS"));
	assert_null(getenv("LISTEN_PID"));
	assert_string_equal(le.fds, "2");
	assert_null(le.names);
	assert_int_equal(listeners_inherit(&inh, &le, err, sizeof(err)), 0);
	assert_int_equal(inh.n, 0);
	listeners_env_free(&le);
	setenv("LISTEN_PID", "1", 1);
	setenv("LISTEN_FDS", "two", 1);
	assert_int_equal(listeners_env_take(&le), 0);
	assert_int_equal(listeners_inherit(&inh, &le, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "LISTEN_FDS"));
	listeners_inherited_free(&inh);
	listeners_env_free(&le);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(env_count),
		cmocka_unit_test(matches_protocol_and_address),
		cmocka_unit_test(adopts_inherited_and_closes_strays),
		cmocka_unit_test(not_for_us_takes_nothing),
	};

	log_init(false);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
