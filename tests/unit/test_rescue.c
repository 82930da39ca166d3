/* rescue: the one setting `echomaster -s` needs, found even in a broken file. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "master/rescue.h"

#define LISTEN_TCP "listen = ( { proto = \"tcp\"; address = \"127.0.0.1\"; port = 8087; } );\n"

static char *
write_temp(const char *text)
{
	char *path = strdup("/tmp/em-cfg-XXXXXX");
	int fd = mkstemp(path);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	return path;
}

static void
pid_file_is_found_even_in_a_broken_file(void **state)
{
	char out[256], err[CFG_ERR_LEN];
	char *good = write_temp("pid_file = \"/run/a.pid\";\n" LISTEN_TCP);
	char *broken = write_temp("# pid_file = \"/run/no.pid\";\nworkers = ;;; oops\n  workers = 2; pid_file = \"/run/b.pid\";\nlisten = (\n");
	char *none = write_temp(LISTEN_TCP);

	(void)state;
	assert_int_equal(rescue_read_setting(good, "pid_file", out, sizeof(out), err), 0);
	assert_string_equal(out, "/run/a.pid");
	assert_int_equal(rescue_read_setting(broken, "pid_file", out, sizeof(out), err), 0);
	assert_string_equal(out, "/run/b.pid");
	assert_int_equal(rescue_read_setting(none, "pid_file", out, sizeof(out), err), 0);
	assert_string_equal(out, "");
	assert_int_equal(rescue_read_setting("/nonexistent/x.conf", "pid_file", out, sizeof(out), err), -1);
	assert_non_null(strstr(err, "/nonexistent/x.conf:0: cannot read the file"));
	unlink(good);
	unlink(broken);
	unlink(none);
	free(good);
	free(broken);
	free(none);
}

static void
control_socket_is_found_even_in_a_broken_file(void **state)
{
	char out[256], err[CFG_ERR_LEN];
	char *broken = write_temp("listen = ( { proto = \"tcp\" ;;;\n"
	    "my_control_socket = \"/run/not-this.sock\";\n"
	    "control_socket: \"/run/em.sock\"; # control_socket = \"/run/comment.sock\"\n");

	(void)state;
	assert_int_equal(rescue_read_setting(broken, "control_socket", out, sizeof(out), err), 0);
	assert_string_equal(out, "/run/em.sock");
	assert_int_equal(rescue_read_setting(broken, "pid_file", out, sizeof(out), err), 0);
	assert_string_equal(out, "");
	unlink(broken);
	free(broken);
}

static void
a_setting_that_is_not_a_string_is_an_error(void **state)
{
	char out[256], err[CFG_ERR_LEN];
	char *path = write_temp("workers = 2;\npid_file = 7;\n" LISTEN_TCP);
	char expect[512];

	(void)state;
	assert_int_equal(rescue_read_setting(path, "pid_file", out, sizeof(out), err), -1);
	snprintf(expect, sizeof(expect), "%s:2: 'pid_file' must be a string", path);
	assert_string_equal(err, expect);
	unlink(path);
	free(path);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(pid_file_is_found_even_in_a_broken_file),
		cmocka_unit_test(control_socket_is_found_even_in_a_broken_file),
		cmocka_unit_test(a_setting_that_is_not_a_string_is_an_error),
	};
	return cmocka_run_group_tests_name("rescue", tests, NULL, NULL);
}
