/* The configuration parser: every valid and invalid case a user can write. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

#include "common/cfg.h"
#include "cfg_load.h"

#define LISTEN_TCP "listen = ( { proto = \"tcp\"; address = \"127.0.0.1\"; port = 8087; } );\n"

static void
defaults_fill_everything_but_listen(void **state)
{
	struct cfg *cfg = load_ok(LISTEN_TCP);
	const struct sockaddr_in *sin = (const struct sockaddr_in *)&cfg->listen[0].addr;

	(void)state;
	assert_true(cfg->workers_auto);
	assert_int_equal(cfg->workers, sysconf(_SC_NPROCESSORS_ONLN));
	assert_false(cfg->daemon);
	assert_string_equal(cfg->pid_file, "");
	assert_string_equal(cfg->user, "");
	assert_int_equal(cfg->shutdown_timeout, 10);
	assert_int_equal(cfg->log_facility, LOG_DAEMON);
	assert_int_equal(cfg->log_level, LOG_INFO);
	assert_true(cfg->log_stderr);
	assert_int_equal(cfg->max_connections, 10000);
	assert_int_equal(cfg->idle_timeout, 300);
	assert_int_equal(cfg->max_per_address, 0);
	assert_int_equal(cfg->min_rate, 0);
	assert_int_equal(cfg->udp_rate, 1000);
	assert_int_equal(cfg->udp_burst, 2000);
	assert_int_equal(cfg->worker_timeout, 10);
	assert_int_equal(cfg->max_draining, 4);
	assert_false(cfg->stop_graceful);
	assert_true(cfg->reload_handover);
	assert_string_equal(cfg->control_socket, "");
	assert_string_equal(cfg->metrics_address, "");
	assert_int_equal(cfg->metrics_port, 9187);
	assert_int_equal(cfg->crash_loop_deaths, 5);
	assert_int_equal(cfg->crash_loop_window, 60);
	assert_int_equal(cfg->nlisten, 1);
	assert_int_equal(cfg->listen[0].allow.n, 0);
	assert_int_equal(cfg->listen[0].proto, CFG_PROTO_TCP);
	assert_int_equal(cfg->listen[0].mode, CFG_MODE_UPPER);
	assert_int_equal(sin->sin_family, AF_INET);
	assert_int_equal(ntohs(sin->sin_port), 8087);
	assert_int_equal(ntohl(sin->sin_addr.s_addr), INADDR_LOOPBACK);
	cfg_free(cfg);
}

static void
every_setting_is_read(void **state)
{
	struct cfg *cfg = load_ok(
	    "workers = 3;\n"
	    "daemon = true;\n"
	    "pid_file = \"/tmp/x.pid\";\n"
	    "shutdown_timeout = 0; reload_handover = false;\n"
	    "log = { facility = \"local3\"; level = \"debug\"; stderr = false; };\n"
	    "limits = { max_connections = 5; idle_timeout = 0; };\n"
	    "listen = (\n"
	    "  { proto = \"tcp\"; address = \"*\"; port = 7; mode = \"echo\"; },\n"
	    "  { proto = \"udp\"; address = \"::\"; port = 7; mode = \"upper\"; },\n"
	    "  { proto = \"udp\"; address = \"::1\"; port = 65535; }\n"
	    ");\n");

	(void)state;
	assert_false(cfg->workers_auto);
	assert_int_equal(cfg->workers, 3);
	assert_true(cfg->daemon);
	assert_string_equal(cfg->pid_file, "/tmp/x.pid");
	assert_int_equal(cfg->shutdown_timeout, 0);
	assert_false(cfg->reload_handover);
	assert_int_equal(cfg->log_facility, LOG_LOCAL3);
	assert_int_equal(cfg->log_level, LOG_DEBUG);
	assert_false(cfg->log_stderr);
	assert_int_equal(cfg->max_connections, 5);
	assert_int_equal(cfg->idle_timeout, 0);
	assert_int_equal(cfg->nlisten, 3);
	assert_int_equal(cfg->listen[0].mode, CFG_MODE_ECHO);
	assert_int_equal(cfg->listen[0].addr.ss_family, AF_INET);
	assert_int_equal(cfg->listen[1].proto, CFG_PROTO_UDP);
	assert_int_equal(cfg->listen[1].addr.ss_family, AF_INET6);
	assert_int_equal(cfg->listen[2].line, 10);
	cfg_free(cfg);
}

static void
same_port_on_tcp_and_udp_is_not_a_duplicate(void **state)
{
	struct cfg *cfg = load_ok("listen = (\n"
	    "  { proto = \"tcp\"; address = \"127.0.0.1\"; port = 8087; },\n"
	    "  { proto = \"udp\"; address = \"127.0.0.1\"; port = 8087; },\n"
	    "  { proto = \"tcp\"; address = \"127.0.0.2\"; port = 8087; }\n"
	    ");\n");

	(void)state;
	assert_int_equal(cfg->nlisten, 3);
	cfg_free(cfg);
}

static void
unknown_keys_are_refused(void **state)
{
	(void)state;
	expect_error("workers = 2;\nworker = 3;\n" LISTEN_TCP, 2, "unknown setting 'worker'");
	expect_error("log = {\n  colour = true; };\n" LISTEN_TCP, 2, "unknown setting 'log.colour'");
	expect_error("listen = (\n { proto = \"tcp\"; address = \"127.0.0.1\"; port = 1; prot = 2; }\n);\n",
	    2, "unknown setting 'listen.prot'");
}

static void
wrong_types_are_refused(void **state)
{
	(void)state;
	expect_error(LISTEN_TCP "daemon = \"yes\";\n", 2, "'daemon' must be true or false");
	expect_error(LISTEN_TCP "\nshutdown_timeout = \"10\";\n", 3, "'shutdown_timeout' must be an integer");
	expect_error("workers = 1.5;\n" LISTEN_TCP, 1, "'workers' must be \"auto\" or an integer");
	expect_error("workers = \"many\";\n" LISTEN_TCP, 1, "'workers' must be \"auto\" or an integer");
	expect_error("pid_file = 3;\n" LISTEN_TCP, 1, "'pid_file' must be a string");
	expect_error("log = \"syslog\";\n" LISTEN_TCP, 1, "'log' must be a group");
	expect_error("listen = { proto = \"tcp\"; };\n", 1, "'listen' must be a list");
	expect_error("listen = (\n  { proto = \"tcp\"; address = \"127.0.0.1\"; port = \"80\"; }\n);\n",
	    2, "'port' must be an integer");
}

static void
out_of_range_values_are_refused(void **state)
{
	(void)state;
	expect_error("listen = (\n  { proto = \"tcp\"; address = \"127.0.0.1\"; port = 0; }\n);\n",
	    2, "'port' is 0, out of range 1..65535");
	expect_error("listen = (\n\n  { proto = \"tcp\"; address = \"127.0.0.1\"; port = 70000; }\n);\n",
	    3, "'port' is 70000, out of range 1..65535");
	expect_error("workers = 0;\n" LISTEN_TCP, 1, "'workers' is 0, out of range 1..1024");
	expect_error("workers = 1025;\n" LISTEN_TCP, 1, "'workers' is 1025");
	expect_error("limits = { max_connections = 0; };\n" LISTEN_TCP, 1, "'max_connections' is 0");
	expect_error("limits = { idle_timeout = -1; };\n" LISTEN_TCP, 1, "'idle_timeout' is -1");
	expect_error("shutdown_timeout = 99999999999;\n" LISTEN_TCP, 1, "out of range 0..3600");
}

static void
unknown_names_are_refused(void **state)
{
	(void)state;
	expect_error("listen = (\n  { proto = \"tcp\"; address = \"127.0.0.1\"; port = 1; mode = \"lower\"; }\n);\n",
	    2, "unknown mode \"lower\" (one of: upper, echo, whoami)");
	expect_error("listen = (\n  { proto = \"sctp\"; address = \"127.0.0.1\"; port = 1; }\n);\n",
	    2, "unknown proto \"sctp\" (one of: tcp, udp)");
	expect_error("log = { level = \"loud\"; };\n" LISTEN_TCP, 1, "unknown level \"loud\"");
	expect_error("log = { facility = \"kern\"; };\n" LISTEN_TCP, 1, "unknown facility \"kern\"");
}

static void
listener_mistakes_are_refused(void **state)
{
	(void)state;
	expect_error("listen = (\n"
	    "  { proto = \"tcp\"; address = \"127.0.0.1\"; port = 8087; },\n"
	    "  { proto = \"tcp\"; address = \"127.0.0.1\"; port = 8087; mode = \"echo\"; }\n"
	    ");\n", 3, "duplicate listener tcp 127.0.0.1:8087 (first at line 2)");
	expect_error("workers = 1;\nlisten = ( );\n", 2, "'listen' is empty");
	expect_error("workers = 1;\n", 1, "missing required setting 'listen'");
	expect_error("listen = (\n  { proto = \"tcp\"; address = \"127.0.0.1\"; }\n);\n",
	    2, "missing required setting 'listen.port'");
	expect_error("listen = (\n  { proto = \"tcp\"; address = \"no-such-host.invalid\"; port = 1; }\n);\n",
	    2, "cannot resolve address \"no-such-host.invalid\"");
	expect_error("listen = ( 8087 );\n", 1, "each 'listen' entry must be a group");
}

static void
syntax_errors_name_their_line(void **state)
{
	(void)state;
	expect_error("workers = 2;\n\ndaemon = ;\n" LISTEN_TCP, 3, "syntax error");
	expect_error("workers = 2;\nlisten = ( { );\n", 2, "syntax error");
}

static void
dump_round_trips(void **state)
{
	struct cfg *cfg = load_ok("workers = 2;\nlimits = { idle_timeout = 7; };\n"
	    "listen = ( { proto = \"udp\"; address = \"::1\"; port = 9; mode = \"echo\";\n"
	    "  deny = [ \"10.0.0.0/8\", \"fe80::/10\" ]; } );\n");
	struct cfg *again;
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);

	(void)state;
	cfg_dump(cfg, f);
	fclose(f);
	again = load_ok(text);
	assert_int_equal(again->workers, 2);
	assert_int_equal(again->idle_timeout, 7);
	assert_int_equal(again->listen[0].proto, CFG_PROTO_UDP);
	assert_int_equal(again->listen[0].mode, CFG_MODE_ECHO);
	assert_true(cfg_listen_same(&cfg->listen[0], &again->listen[0]));
	assert_int_equal(again->listen[0].deny.n, 2);
	assert_int_equal(again->listen[0].deny.v[1].bits, 10);
	assert_non_null(strstr(text, "address = \"::1\";"));
	free(text);
	cfg_free(again);
	cfg_free(cfg);
}

static void
access_lists_parse_and_match(void **state)
{
	struct cfg *cfg = load_ok("listen = ( { proto = \"tcp\"; address = \"127.0.0.1\"; port = 1;\n"
	    "  allow = [ \"127.0.0.2/32\", \"::1/128\", \"10.1.0.0/16\" ];\n"
	    "  deny = [ \"0.0.0.0/0\" ]; } );\n");
	const struct cfg_listen *l = &cfg->listen[0];
	uint8_t a4[4] = { 127, 0, 0, 2 }, b4[4] = { 127, 0, 0, 3 }, c4[4] = { 10, 1, 200, 7 };
	uint8_t a6[16] = { [15] = 1 };

	(void)state;
	assert_int_equal(l->allow.n, 3);
	assert_int_equal(l->deny.n, 1);
	assert_true(prefix_match(&l->allow.v[0], AF_INET, a4));
	assert_false(prefix_match(&l->allow.v[0], AF_INET, b4));
	assert_true(prefix_match(&l->allow.v[1], AF_INET6, a6));
	assert_false(prefix_match(&l->allow.v[1], AF_INET, a4));
	assert_true(prefix_match(&l->allow.v[2], AF_INET, c4));
	assert_true(prefix_match(&l->deny.v[0], AF_INET, b4));
	cfg_free(cfg);
}

static void
access_list_mistakes_are_refused(void **state)
{
	(void)state;
	expect_error("listen = ( { proto = \"tcp\"; address = \"127.0.0.1\"; port = 1;\n"
	    "  allow = [ \"127.0.0.300/32\" ]; } );\n", 2,
	    "'allow': \"127.0.0.300\" is not an IPv4 or IPv6 address");
	expect_error("listen = ( { proto = \"tcp\"; address = \"127.0.0.1\"; port = 1;\n"
	    "  deny = \"0.0.0.0/0\"; } );\n", 2, "'deny' must be an array");
	expect_error("limits = { udp_rate = -1; };\n" LISTEN_TCP, 1, "'udp_rate' is -1");
	expect_error("limits = { min_rate = -5; };\n" LISTEN_TCP, 1, "'min_rate' is -5");
	expect_error("metrics = { port = 0; };\n" LISTEN_TCP, 1, "'port' is 0");
	expect_error("crash_loop = { deaths = 0; };\n" LISTEN_TCP, 1, "'deaths' is 0");
	expect_error("max_draining_generations = 0;\n" LISTEN_TCP, 1, "'max_draining_generations' is 0");
}

static void
the_table_names_the_restart_only_settings(void **state)
{
	const char *expect[] = { "daemon", "pid_file", "control_socket", "metrics.address",
	    "metrics.port", "agent.address", "agent.port" };
	char name[CFG_NAME_LEN];
	size_t n = 0;

	(void)state;
	while (cfg_restart_only_name(n, name) != NULL) {
		assert_true(n < sizeof(expect) / sizeof(expect[0]));
		assert_string_equal(name, expect[n]);
		n++;
	}
	assert_int_equal(n, sizeof(expect) / sizeof(expect[0]));
	assert_true(n <= CFG_RESTART_ONLY_MAX);
	assert_null(cfg_restart_only_name(n + 1, name));
}

static void
a_reload_reports_each_restart_only_change_with_the_kept_value(void **state)
{
	struct cfg *cur = load_ok("daemon = false; pid_file = \"/run/a.pid\";\n"
	    "metrics = { address = \"127.0.0.1\"; };\n" LISTEN_TCP);
	struct cfg *next = load_ok("daemon = true; pid_file = \"/run/b.pid\";\n"
	    "control_socket = \"/run/em.sock\";\n"
	    "metrics = { address = \"::1\"; port = 9188; };\n" LISTEN_TCP);
	struct cfg_change ch[CFG_RESTART_ONLY_MAX];

	(void)state;
	assert_int_equal(cfg_restart_only_changes(cur, next, ch, CFG_RESTART_ONLY_MAX), 5);
	assert_string_equal(ch[0].name, "daemon");
	assert_string_equal(ch[0].kept, "false");
	assert_string_equal(ch[1].name, "pid_file");
	assert_string_equal(ch[1].kept, "\"/run/a.pid\"");
	assert_string_equal(ch[2].name, "control_socket");
	assert_string_equal(ch[2].kept, "\"\"");
	assert_string_equal(ch[3].name, "metrics.address");
	assert_string_equal(ch[3].kept, "\"127.0.0.1\"");
	assert_string_equal(ch[4].name, "metrics.port");
	assert_string_equal(ch[4].kept, "9187");
	cfg_free(cur);
	cfg_free(next);
}

static void
reloadable_changes_are_not_reported(void **state)
{
	struct cfg *cur = load_ok("pid_file = \"/run/a.pid\"; metrics = { port = 9000; };\n"
	    LISTEN_TCP);
	struct cfg *next = load_ok("pid_file = \"/run/a.pid\"; metrics = { port = 9000; };\n"
	    "workers = 3; stop_signal_graceful = true; shutdown_timeout = 2;\n"
	    "reload_handover = false;\n"
	    "log = { level = \"debug\"; facility = \"local3\"; };\n"
	    "limits = { max_connections = 5; };\n"
	    "listen = ( { proto = \"udp\"; address = \"127.0.0.1\"; port = 8088; } );\n");
	struct cfg_change ch[CFG_RESTART_ONLY_MAX];

	(void)state;
	assert_int_equal(cfg_restart_only_changes(cur, next, ch, CFG_RESTART_ONLY_MAX), 0);
	assert_int_equal(cfg_restart_only_changes(cur, cur, ch, CFG_RESTART_ONLY_MAX), 0);
	cfg_free(cur);
	cfg_free(next);
}

static void
changes_past_max_are_counted_not_written(void **state)
{
	struct cfg *cur = load_ok(LISTEN_TCP);
	struct cfg *next = load_ok("daemon = true; pid_file = \"/run/b.pid\";\n"
	    "metrics = { port = 1; };\n" LISTEN_TCP);
	struct cfg_change ch[2];

	(void)state;
	memset(&ch[1], 'x', sizeof(ch[1]));
	assert_int_equal(cfg_restart_only_changes(cur, next, ch, 1), 3);
	assert_string_equal(ch[0].name, "daemon");
	assert_int_equal(ch[1].name[0], 'x');
	assert_int_equal(cfg_restart_only_changes(cur, next, NULL, 0), 3);
	cfg_free(cur);
	cfg_free(next);
}

static void
a_kept_value_is_written_as_the_dump_writes_it(void **state)
{
	char text[CFG_VALUE_LEN + 64], file[CFG_VALUE_LEN + 512];
	struct cfg *cur, *next;
	struct cfg_change ch[CFG_RESTART_ONLY_MAX];

	(void)state;
	cur = load_ok("pid_file = \"/run/a\\\"b.pid\";\n" LISTEN_TCP);
	next = load_ok(LISTEN_TCP);
	assert_int_equal(cfg_restart_only_changes(cur, next, ch, CFG_RESTART_ONLY_MAX), 1);
	assert_string_equal(ch[0].kept, "\"/run/a\\\"b.pid\"");
	cfg_free(cur);
	/* Too long to keep whole: cut, and the cut shown. */
	memset(text, 'p', sizeof(text) - 1);
	text[sizeof(text) - 1] = '\0';
	snprintf(file, sizeof(file), "pid_file = \"/%s\";\n" LISTEN_TCP, text);
	cur = load_ok(file);
	assert_int_equal(cfg_restart_only_changes(cur, next, ch, CFG_RESTART_ONLY_MAX), 1);
	assert_int_equal(strlen(ch[0].kept), CFG_VALUE_LEN - 1);
	assert_memory_equal(ch[0].kept, "\"/ppp", 5);
	assert_string_equal(ch[0].kept + CFG_VALUE_LEN - 4, "...");
	cfg_free(cur);
	cfg_free(next);
}

static void
a_missing_file_is_reported(void **state)
{
	char err[CFG_ERR_LEN];

	(void)state;
	assert_null(cfg_load("/nonexistent/echomaster.conf", err));
	assert_non_null(strstr(err, "/nonexistent/echomaster.conf:0: cannot read the file"));
}

/* ---- PROXY protocol, whoami and name (issue 14) ---- */

static void
proxy_whoami_and_name_defaults(void **state)
{
	struct cfg *cfg = load_ok(LISTEN_TCP);
	char host[CFG_HOSTNAME_LEN] = "";

	(void)state;
	assert_int_equal(cfg->proxy_timeout, 5);
	assert_int_equal(cfg->listen[0].proxy_protocol, CFG_PROXY_OFF);
	assert_int_equal(cfg->listen[0].proxy_trusted.n, 0);
	assert_string_equal(cfg->name, "");
	gethostname(host, sizeof(host) - 1);
	assert_string_equal(cfg->hostname, host);
	assert_string_equal(cfg->instance, host);  /* "" = the host name */
	cfg_free(cfg);
}

static void
proxy_whoami_and_name_are_read(void **state)
{
	struct cfg *cfg = load_ok("name = \"edge-7\";\n"
	    "limits = { proxy_timeout = 2; };\n"
	    "listen = (\n"
	    "  { proto = \"tcp\"; address = \"127.0.0.1\"; port = 8087; proxy_protocol = \"v2\";\n"
	    "    proxy_trusted = [ \"198.18.0.0/15\", \"::1\" ]; mode = \"whoami\"; },\n"
	    "  { proto = \"tcp\"; address = \"127.0.0.1\"; port = 8088; proxy_protocol = \"v1\"; },\n"
	    "  { proto = \"tcp\"; address = \"127.0.0.1\"; port = 8089; proxy_protocol = \"any\"; },\n"
	    "  { proto = \"udp\"; address = \"127.0.0.1\"; port = 8087; mode = \"whoami\"; }\n"
	    ");\n");
	char *dump = NULL;
	size_t len = 0;
	FILE *f;

	(void)state;
	assert_string_equal(cfg->name, "edge-7");
	assert_string_equal(cfg->instance, "edge-7");
	assert_int_equal(cfg->proxy_timeout, 2);
	assert_int_equal(cfg->listen[0].proxy_protocol, CFG_PROXY_V2);
	assert_int_equal(cfg->listen[0].mode, CFG_MODE_WHOAMI);
	assert_int_equal(cfg->listen[0].proxy_trusted.n, 2);
	assert_int_equal(cfg->listen[1].proxy_protocol, CFG_PROXY_V1);
	assert_int_equal(cfg->listen[2].proxy_protocol, CFG_PROXY_ANY);
	assert_int_equal(cfg->listen[3].mode, CFG_MODE_WHOAMI);
	assert_string_equal(cfg_mode_name(CFG_MODE_WHOAMI), "whoami");
	f = open_memstream(&dump, &len);
	assert_non_null(f);
	cfg_dump(cfg, f);
	fclose(f);
	assert_non_null(strstr(dump, "name = \"edge-7\";"));
	assert_non_null(strstr(dump, "proxy_timeout = 2;"));
	assert_non_null(strstr(dump, "proxy_protocol = \"v2\"; proxy_trusted = [ \"198.18.0.0/15\", \"::1/128\" ];"));
	free(dump);
	cfg_free(cfg);
}

static void
proxy_mistakes_are_refused(void **state)
{
	(void)state;
	expect_error("listen = (\n"
	    "  { proto = \"udp\"; address = \"127.0.0.1\"; port = 8087;\n"
	    "    proxy_protocol = \"v2\"; }\n"
	    ");\n", 3, "'proxy_protocol' is for tcp listeners only");
	expect_error("listen = (\n"
	    "  { proto = \"tcp\"; address = \"127.0.0.1\"; port = 8087;\n"
	    "    proxy_trusted = [ \"10.0.0.0/8\" ]; }\n"
	    ");\n", 3, "'proxy_trusted' needs 'proxy_protocol'");
	expect_error("listen = (\n"
	    "  { proto = \"tcp\"; address = \"127.0.0.1\"; port = 8087;\n"
	    "    proxy_protocol = \"v3\"; }\n"
	    ");\n", 3, "unknown proxy_protocol \"v3\" (one of: off, v1, v2, any)");
	expect_error("listen = (\n"
	    "  { proto = \"tcp\"; address = \"127.0.0.1\"; port = 8087; proxy_protocol = \"v1\";\n"
	    "    proxy_trusted = [ \"10.0.0.300\" ]; }\n"
	    ");\n", 3, "'proxy_trusted'");
	expect_error("limits = { proxy_timeout = 0; };\n" LISTEN_TCP, 1,
	    "'proxy_timeout' is 0, out of range 1..3600");
	expect_error("listen = ( { proto = \"tcp\"; address = \"127.0.0.1\"; port = 8087;\n"
	    "  mode = \"who\"; } );\n", 2, "unknown mode \"who\" (one of: upper, echo, whoami)");
	expect_error("name = \"two words\";\n" LISTEN_TCP, 1, "'name' may hold printable ASCII only");
	expect_error("name = 7;\n" LISTEN_TCP, 1, "'name' must be a string");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(defaults_fill_everything_but_listen),
		cmocka_unit_test(proxy_whoami_and_name_defaults),
		cmocka_unit_test(proxy_whoami_and_name_are_read),
		cmocka_unit_test(proxy_mistakes_are_refused),
		cmocka_unit_test(every_setting_is_read),
		cmocka_unit_test(same_port_on_tcp_and_udp_is_not_a_duplicate),
		cmocka_unit_test(unknown_keys_are_refused),
		cmocka_unit_test(wrong_types_are_refused),
		cmocka_unit_test(out_of_range_values_are_refused),
		cmocka_unit_test(unknown_names_are_refused),
		cmocka_unit_test(listener_mistakes_are_refused),
		cmocka_unit_test(syntax_errors_name_their_line),
		cmocka_unit_test(dump_round_trips),
		cmocka_unit_test(access_lists_parse_and_match),
		cmocka_unit_test(access_list_mistakes_are_refused),
		cmocka_unit_test(a_missing_file_is_reported),
		cmocka_unit_test(the_table_names_the_restart_only_settings),
		cmocka_unit_test(a_reload_reports_each_restart_only_change_with_the_kept_value),
		cmocka_unit_test(reloadable_changes_are_not_reported),
		cmocka_unit_test(changes_past_max_are_counted_not_written),
		cmocka_unit_test(a_kept_value_is_written_as_the_dump_writes_it),
	};
	return cmocka_run_group_tests_name("cfg", tests, NULL, NULL);
}
