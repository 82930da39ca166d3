/*
 * test_tls_tickets.c: the rotation of the TLS session ticket keys, as
 * clients see it. The master makes a new key each day and keeps the one
 * before: a ticket issued before a rotation still resumes after it (and
 * the server issues a fresh one under the new key); after a second
 * rotation the old ticket is refused (a full handshake, the client still
 * served) while the fresh one resumes. The same across a live upgrade,
 * which carries both keys and their age.
 *
 * A day is not waited for: the test-hooks daemon ($ECHOMASTER_TESTHOOKS)
 * reads a wall-clock offset from the file EM_TEST_WALL_OFFSET names; the
 * test moves it a day ahead, then waits for the master's log line of the
 * rotation. worker_timeout keeps its default, so the master's loop turns
 * every second (it checks heartbeats) and sees the moved clock then.
 */
#include "harness.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/ssl.h>

#define DAY_MS		(24LL * 3600 * 1000)
#define ROTATED		"TLS session ticket keys rotated; the previous key is still accepted"
#define KEY_HEX		33

static const int versions[] = { TLS1_2_VERSION, TLS1_3_VERSION };
#define NVERSIONS	(sizeof(versions) / sizeof(versions[0]))

static const char *
version_name(int v)
{
	return v == TLS1_3_VERSION ? "TLS 1.3" : "TLS 1.2";
}

/* The test-hooks daemon, with the clock offset file, serving upper over TLS on port. */
static void
start_daemon(struct env *e, int port, int workers)
{
	const char *hooks = getenv("ECHOMASTER_TESTHOOKS");
	char *saved = getenv("ECHOMASTER") != NULL ? strdup(getenv("ECHOMASTER")) : NULL;
	struct em_conf c;
	char extra[PATH_MAX + 64];

	if (hooks == NULL || access(hooks, X_OK) != 0)
		fail_msg("ECHOMASTER_TESTHOOKS must name the test-hooks build (make check sets it)");
	tls_make_cert(e, "a");
	file_write(env_file(e, "wall-offset"), "0\n");
	snprintf(extra, sizeof(extra), "control_socket = \"%s\";", env_control_socket(e));
	conf_init(&c, workers);
	c.shutdown_timeout = 5;
	c.extra = extra;
	conf_listen(&c, "tcp", port, "upper");
	env_write_conf_tls(e, &c, port, "a");
	setenv("ECHOMASTER", hooks, 1);
	setenv("EM_TEST_WALL_OFFSET", env_file(e, "wall-offset"), 1);
	env_start_ready(e, workers, port);
	unsetenv("EM_TEST_WALL_OFFSET");
	if (saved != NULL)
		setenv("ECHOMASTER", saved, 1);
	else
		unsetenv("ECHOMASTER");
	free(saved);
}

/* Whether the serving master is alive: ours, or after an upgrade the one it handed over to. */
static bool
master_alive(struct env *e)
{
	return e->detached > 0 ? proc_alive(e->detached, e->detached_start) : !env_exited(e);
}

/*
 * Moves the master's wall clock to `days` days ahead and waits for its
 * rotation's log line (by hand: after an upgrade the master is not the
 * env's child, which env_wait_log_from expects).
 */
static void
let_days_pass(struct env *e, int days)
{
	int64_t deadline = now_ms() + EM_DEADLINE_MS;
	size_t off = env_log_size(e);
	char text[32];

	snprintf(text, sizeof(text), "%lld\n", (long long)days * DAY_MS);
	file_write(env_file(e, "wall-offset"), text);
	while (env_log_find(e, off, ROTATED) == 0) {
		if (!master_alive(e) || now_ms() >= deadline) {
			env_dump_log(e);
			fail_msg("no rotation logged after %d days", days);
		}
		nap_ms(EM_POLL_NAP_MS);
	}
}

/* What a client saw on one connection. */
struct outcome {
	bool		 resumed;
	SSL_SESSION	*ticket;	/* a new ticket the server issued, or NULL */
	char		 key[KEY_HEX];	/* the name of its key, "" if none */
};

static bool
same_ticket(const SSL_SESSION *a, const SSL_SESSION *b)
{
	const unsigned char *ta, *tb;
	size_t la, lb;

	SSL_SESSION_get0_ticket(a, &ta, &la);
	SSL_SESSION_get0_ticket(b, &tb, &lb);
	return la == lb && memcmp(ta, tb, la) == 0;
}

/*
 * One connection: a handshake (resuming `session` if not NULL), an echo,
 * then whatever new ticket it brought. The echo comes after the server's
 * tickets, so none is still on its way.
 */
static void
connect_once(int port, int version, SSL_SESSION *session, struct outcome *out)
{
	struct tls_opts o = { .version = version, .session = session };
	struct tls_client cl;

	memset(out, 0, sizeof(*out));
	if (tls_connect(&cl, port, &o, EM_DEADLINE_MS) != 1)
		fail_msg("%s: the handshake failed", version_name(version));
	out->resumed = tls_resumed(&cl);
	tls_roundtrip(&cl, "ticket?\n", "TICKET?\n");
	out->ticket = tls_take_ticket(&cl, 0);
	/* TLS 1.2 keeps the ticket it resumed with when no new one came. */
	if (out->ticket != NULL && session != NULL && same_ticket(out->ticket, session)) {
		SSL_SESSION_free(out->ticket);
		out->ticket = NULL;
	}
	if (out->ticket != NULL)
		tls_ticket_key_name(out->ticket, out->key, sizeof(out->key));
	tls_close(&cl);
}

/* Connects (resuming `session` if not NULL): it must resume or not, per want, and is served either way. */
static void
expect_resume(int port, int version, SSL_SESSION *session, bool want, struct outcome *out,
    const char *what)
{
	connect_once(port, version, session, out);
	if (out->ticket == NULL)
		print_message("%s, %s: %s; no new ticket\n", version_name(version), what,
		    out->resumed ? "resumed" : "full handshake");
	else
		print_message("%s, %s: %s; a new ticket under key %.8s, lifetime hint %lu s\n",
		    version_name(version), what, out->resumed ? "resumed" : "full handshake",
		    out->key, SSL_SESSION_get_ticket_lifetime_hint(out->ticket));
	if (out->resumed != want)
		fail_msg("%s, %s: %s, want %s", version_name(version), what,
		    out->resumed ? "resumed" : "a full handshake", want ? "resumed" : "a full handshake");
}

/* The connection must have brought a new ticket under the key named want (NULL: any). */
static SSL_SESSION *
expect_ticket(const struct outcome *out, const char *want)
{
	if (out->ticket == NULL)
		fail_msg("no new ticket");
	if (want != NULL)
		assert_string_equal(out->key, want);
	return out->ticket;
}

static void
a_ticket_outlives_one_rotation_not_two(void **state)
{
	struct env *e = *state;
	SSL_SESSION *old[NVERSIONS], *fresh[NVERSIONS];
	char k0[NVERSIONS][KEY_HEX], k1[NVERSIONS][KEY_HEX], k2[KEY_HEX];
	struct outcome o;
	int port = port_pick();

	start_daemon(e, port, 2);
	for (size_t v = 0; v < NVERSIONS; v++) {
		expect_resume(port, versions[v], NULL, false, &o, "first connection");
		old[v] = expect_ticket(&o, NULL);
		memcpy(k0[v], o.key, KEY_HEX);
		/*
		 * Before any rotation: the ticket resumes; TLS 1.2 keeps it, TLS
		 * 1.3 gets a new one under the same key (a ticket is for one use).
		 */
		expect_resume(port, versions[v], old[v], true, &o, "same day");
		if (versions[v] == TLS1_3_VERSION)
			SSL_SESSION_free(expect_ticket(&o, k0[v]));
		else
			assert_null(o.ticket);
	}
	let_days_pass(e, 1);
	for (size_t v = 0; v < NVERSIONS; v++) {
		/* Under the previous key: accepted, and renewed under the new one. */
		expect_resume(port, versions[v], old[v], true, &o, "a day later");
		fresh[v] = expect_ticket(&o, NULL);
		memcpy(k1[v], o.key, KEY_HEX);
		assert_string_not_equal(k1[v], k0[v]);
		/* A new client's ticket is under the new key too. */
		expect_resume(port, versions[v], NULL, false, &o, "a new client a day later");
		SSL_SESSION_free(expect_ticket(&o, k1[v]));
	}
	let_days_pass(e, 2);
	for (size_t v = 0; v < NVERSIONS; v++) {
		/* Its key is gone: a full handshake, the client served all the same. */
		expect_resume(port, versions[v], old[v], false, &o, "the first ticket two days later");
		SSL_SESSION_free(expect_ticket(&o, NULL));
		memcpy(k2, o.key, KEY_HEX);
		assert_string_not_equal(k2, k1[v]);
		/* The renewed one's key is now the previous: accepted, and renewed again. */
		expect_resume(port, versions[v], fresh[v], true, &o, "the renewed ticket two days later");
		SSL_SESSION_free(expect_ticket(&o, k2));
		SSL_SESSION_free(old[v]);
		SSL_SESSION_free(fresh[v]);
	}
	/* Per version: six handshakes, three of them resumed; one rotation a day, no more. */
	env_total_wait(e, "tls_handshakes", 6 * NVERSIONS);
	assert_int_equal(env_total(e, "tls_resumed"), 3 * NVERSIONS);
	assert_int_equal(env_log_count(e, ROTATED), 2);
}

static pid_t
pid_file_pid(struct env *e)
{
	char *text = file_read(e->pid_path, NULL);
	long pid = text != NULL ? strtol(text, NULL, 10) : 0;

	free(text);
	return (pid_t)pid;
}

/* SIGUSR2: waits for the new master's pid in the pid file, and for the old master to exit. */
static pid_t
upgrade(struct env *e)
{
	pid_t first = e->master, next;
	int64_t deadline = now_ms() + EM_DEADLINE_MS;
	size_t off = env_log_size(e);
	int status;

	env_signal(e, SIGUSR2);
	env_wait_log_from(e, off, "upgrade ok: pid ", EM_DEADLINE_MS);
	while ((next = pid_file_pid(e)) == first && now_ms() < deadline)
		nap_ms(EM_POLL_NAP_MS);
	assert_true(next != first && next > 0);
	status = env_wait_exit(e, EM_DEADLINE_MS);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	env_adopt_detached(e, next);
	return next;
}

/* Both keys, and the age of the first, travel in the upgrade state. */
static void
rotated_keys_survive_a_live_upgrade(void **state)
{
	struct env *e = *state;
	SSL_SESSION *old, *fresh;
	char k1[KEY_HEX];
	struct outcome o;
	int port = port_pick(), v = TLS1_3_VERSION;
	pid_t next;

	start_daemon(e, port, 1);
	expect_resume(port, v, NULL, false, &o, "first connection");
	old = expect_ticket(&o, NULL);
	let_days_pass(e, 1);
	expect_resume(port, v, old, true, &o, "a day later");
	fresh = expect_ticket(&o, NULL);
	memcpy(k1, o.key, KEY_HEX);
	next = upgrade(e);
	assert_true(env_log_has(e, "upgrade: TLS session ticket keys taken over from the old master"));
	print_message("upgraded to master %d\n", (int)next);
	/* The new master's workers: the previous key still accepted, the current one issuing. */
	expect_resume(port, v, old, true, &o, "after the upgrade, the first ticket");
	SSL_SESSION_free(expect_ticket(&o, k1));
	expect_resume(port, v, NULL, false, &o, "after the upgrade, a new client");
	SSL_SESSION_free(expect_ticket(&o, k1));
	/* The next day comes on the old master's schedule, once, and the first key goes. */
	let_days_pass(e, 2);
	expect_resume(port, v, old, false, &o, "after the upgrade, two days later, the first ticket");
	SSL_SESSION_free(o.ticket);
	expect_resume(port, v, fresh, true, &o, "after the upgrade, two days later, the renewed ticket");
	SSL_SESSION_free(o.ticket);
	assert_int_equal(env_log_count(e, ROTATED), 2);
	SSL_SESSION_free(old);
	SSL_SESSION_free(fresh);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(a_ticket_outlives_one_rotation_not_two, env_setup,
		    env_teardown),
		cmocka_unit_test_setup_teardown(rotated_keys_survive_a_live_upgrade, env_setup,
		    env_teardown),
	};

	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests_name("tls tickets", tests, NULL, NULL);
}
