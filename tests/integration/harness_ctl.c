/*
 * harness_ctl.c: the daemon's control socket, spoken the way `echomaster -s`
 * speaks it (one command line; "ok" or "error", a body, EOF), and the
 * readiness wait built on its status-json answer; `echomaster -s` itself;
 * the systemd notify socket a test plays.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "harness.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define CTL_ANSWER_MAX	(1024 * 1024)

const char *
env_control_socket(struct env *e)
{
	int n = snprintf(e->ctl_path, sizeof(e->ctl_path), "%s/control.sock", e->dir);

	assert_true(n > 0 && (size_t)n < sizeof(((struct sockaddr_un *)0)->sun_path));
	return e->ctl_path;
}

/* A non-blocking connection to the control socket, or -1 with errno. */
static int
ctl_connect(const char *path)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	int fd;

	memcpy(sun.sun_path, path, strlen(path) + 1);
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) == -1)
		return -1;
	/* A Unix socket connects at once, or fails (EAGAIN: backlog full). */
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == -1) {
		int saved = errno;
		close(fd);
		errno = saved;
		return -1;
	}
	return fd;
}

/* Reads up to EOF within the deadline; the answer, malloc'd, or NULL with errno. */
static char *
ctl_read_answer(int fd, int64_t deadline)
{
	size_t len = 0, cap = 4096;
	char *buf = malloc(cap), *bigger;
	ssize_t n;

	assert_non_null(buf);
	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		int64_t left = deadline - now_ms();
		if (left <= 0) {
			free(buf);
			errno = ETIMEDOUT;
			return NULL;
		}
		if (poll(&p, 1, (int)(left > 1000 ? 1000 : left)) <= 0)
			continue;  /* a slice of the deadline passed, or EINTR */
		if ((n = read(fd, buf + len, cap - 1 - len)) == 0)
			break;
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		if (n < 0 || len + (size_t)n >= CTL_ANSWER_MAX) {
			free(buf);
			errno = n < 0 ? errno : EMSGSIZE;
			return NULL;
		}
		len += (size_t)n;
		if (cap - 1 - len == 0) {
			bigger = realloc(buf, cap *= 2);
			assert_non_null(bigger);
			buf = bigger;
		}
	}
	buf[len] = '\0';
	return buf;
}

int
env_control(struct env *e, const char *cmd, char **body, int timeout_ms)
{
	int64_t deadline = now_ms() + timeout_ms;
	char line[64], *answer, *nl;
	int fd, len = snprintf(line, sizeof(line), "%s\n", cmd), status;

	assert_true(e->ctl_path[0] != '\0');
	assert_true(len > 0 && (size_t)len < sizeof(line));
	if ((fd = ctl_connect(e->ctl_path)) == -1)
		return -1;
	/* A line this short fits an empty socket buffer: no partial send. */
	if (send(fd, line, (size_t)len, MSG_NOSIGNAL) != len) {
		close(fd);
		return -1;
	}
	answer = ctl_read_answer(fd, deadline);
	close(fd);
	if (answer == NULL)
		return -1;
	if ((nl = strchr(answer, '\n')) == NULL) {
		free(answer);
		errno = EPROTO;
		return -1;
	}
	status = strncmp(answer, "ok\n", 3) == 0 ? 0 : 1;
	if (body != NULL) {
		*body = strdup(nl + 1);
		assert_non_null(*body);
	}
	free(answer);
	return status;
}

/* The text of member key in the object [obj, end): a pointer just past "key":, or NULL. */
static const char *
json_member(const char *obj, const char *end, const char *key)
{
	char pat[64];
	size_t plen = (size_t)snprintf(pat, sizeof(pat), "\"%s\":", key);
	const char *at = memmem(obj, (size_t)(end - obj), pat, plen);

	return at != NULL ? at + plen : NULL;
}

static bool
json_uint_is(const char *obj, const char *end, const char *key, unsigned long want)
{
	const char *v = json_member(obj, end, key);
	char *after;

	return v != NULL && strtoul(v, &after, 10) == want && after > v;
}

/*
 * status_json's answer (src/master/status.c): {"version":..,"master":{..,
 * "generation":G,"workers":N,..},"workers":[{"pid":..,"generation":G,
 * "slot":..,"state":"serving",..},..],"totals":{..}}. True when the
 * master serves generation G with N slots and N workers of generation G
 * are "serving".
 */
static bool
status_is_serving(const char *json, unsigned generation, int workers)
{
	const char *m = strstr(json, "\"master\":{"), *p = strstr(json, "\"workers\":[");
	const char *end;
	int serving = 0;

	if (m == NULL || p == NULL || (end = strchr(m, '}')) == NULL)
		return false;
	if (!json_uint_is(m, end, "generation", generation) ||
	    !json_uint_is(m, end, "workers", (unsigned long)workers))
		return false;
	/* The worker objects hold no nested object: each ends at its first '}'. */
	for (p += strlen("\"workers\":["); *p == '{'; p = *end == ',' ? end + 1 : end) {
		const char *state;
		if ((end = strchr(p, '}')) == NULL)
			return false;
		state = json_member(p, end, "state");
		if (json_uint_is(p, end, "generation", generation) && state != NULL &&
		    strncmp(state, "\"serving\"", 9) == 0)
			serving++;
		end++;
	}
	return serving == workers;
}

void
env_wait_serving(struct env *e, unsigned generation, int workers, int timeout_ms)
{
	int64_t deadline = now_ms() + timeout_ms;
	char *last = NULL, *body;
	int rc;

	for (;;) {
		int64_t left = deadline - now_ms();
		body = NULL;
		rc = env_control(e, "status-json", &body, left > 0 ? (int)left : 1);
		if (rc == 0 && status_is_serving(body, generation, workers)) {
			free(body);
			free(last);
			return;
		}
		if (body != NULL) {
			free(last);
			last = body;
		}
		if (env_exited(e) || now_ms() >= deadline)
			break;
		nap_ms(EM_POLL_NAP_MS);
	}
	env_dump_log(e);
	fprintf(stderr, "--- last status-json from %s:\n%s\n", e->ctl_path,
	    last != NULL ? last : "(none)");
	fflush(stderr);
	free(last);
	fail_msg("%s while waiting for generation %u with %d workers serving",
	    env_exited(e) ? "master exited" : "timed out", generation, workers);
}

/* The unsigned number after "key": in [obj, end); -1 if absent. */
static int
json_u64(const char *obj, const char *end, const char *key, uint64_t *out)
{
	const char *v = json_member(obj, end, key);
	char *after;

	if (v == NULL)
		return -1;
	*out = strtoull(v, &after, 10);
	return after > v && after <= end ? 0 : -1;
}

static int
json_int(const char *obj, const char *end, const char *key, int *out)
{
	uint64_t v;

	if (json_u64(obj, end, key, &v) == -1)
		return -1;
	*out = (int)v;
	return 0;
}

static int
status_parse_worker(const char *p, const char *end, struct em_status_worker *w)
{
	const char *state = json_member(p, end, "state");
	const char *sandboxed = json_member(p, end, "sandboxed");
	uint64_t pid, gen;
	size_t len;

	memset(w, 0, sizeof(*w));
	w->sandboxed = sandboxed != NULL && strncmp(sandboxed, "true", 4) == 0;
	if (state == NULL || *state != '"' || json_u64(p, end, "pid", &pid) == -1 ||
	    json_u64(p, end, "generation", &gen) == -1 ||
	    json_int(p, end, "slot", &w->slot) == -1 ||
	    json_u64(p, end, "active", &w->active) == -1 ||
	    json_u64(p, end, "accepted", &w->accepted) == -1 ||
	    json_u64(p, end, "refused", &w->refused) == -1 ||
	    json_u64(p, end, "refused_acl", &w->refused_acl) == -1 ||
	    json_u64(p, end, "moved_out", &w->moved_out) == -1 ||
	    json_u64(p, end, "moved_in", &w->moved_in) == -1 ||
	    json_u64(p, end, "moves_failed", &w->moves_failed) == -1)
		return -1;
	w->pid = (pid_t)pid;
	w->generation = (unsigned)gen;
	len = strcspn(state + 1, "\"");
	if (len >= sizeof(w->state))
		len = sizeof(w->state) - 1;
	memcpy(w->state, state + 1, len);
	w->state[len] = '\0';
	return 0;
}

static int
status_parse(const char *json, struct em_status *st)
{
	const char *m = strstr(json, "\"master\":{"), *p = strstr(json, "\"workers\":[");
	const char *end;
	uint64_t gen;

	memset(st, 0, sizeof(*st));
	if (m == NULL || p == NULL || (end = strchr(m, '}')) == NULL ||
	    json_u64(m, end, "generation", &gen) == -1 ||
	    json_int(m, end, "workers", &st->workers) == -1 ||
	    json_int(m, end, "draining_generations", &st->draining_generations) == -1)
		return -1;
	st->generation = (unsigned)gen;
	for (p += strlen("\"workers\":["); *p == '{'; p = *end == ',' ? end + 1 : end) {
		if ((end = strchr(p, '}')) == NULL)
			return -1;
		if (st->n < sizeof(st->w) / sizeof(st->w[0]) &&
		    status_parse_worker(p, end, &st->w[st->n++]) == -1)
			return -1;
		end++;
	}
	return 0;
}

int
env_status(struct env *e, struct em_status *st, int timeout_ms)
{
	char *body = NULL;
	int rc;

	if (env_control(e, "status-json", &body, timeout_ms) != 0) {
		free(body);
		return -1;
	}
	rc = status_parse(body, st);
	if (rc == -1)
		print_error("status-json not understood: %s\n", body);
	free(body);
	return rc;
}

const struct em_status_worker *
status_worker(const struct em_status *st, pid_t pid)
{
	for (size_t i = 0; i < st->n; i++)
		if (st->w[i].pid == pid)
			return &st->w[i];
	return NULL;
}

size_t
status_count_gen(const struct em_status *st, unsigned gen)
{
	size_t n = 0;

	for (size_t i = 0; i < st->n; i++)
		if (gen == 0 ? st->w[i].generation < st->generation :
		    st->w[i].generation == gen)
			n++;
	return n;
}

uint64_t
status_gen_sum(const struct em_status *st, unsigned gen, size_t counter)
{
	uint64_t sum = 0;

	for (size_t i = 0; i < st->n; i++)
		if (gen == 0 || st->w[i].generation == gen)
			sum += *(const uint64_t *)((const char *)&st->w[i] + counter);
	return sum;
}

int64_t
env_wait_old_gone(struct env *e, int64_t t0, int timeout_ms)
{
	int64_t deadline = now_ms() + timeout_ms;
	struct em_status st;

	for (;;) {
		if (env_status(e, &st, EM_DEADLINE_MS) == -1)
			fail_msg("status-json: %s", strerror(errno));
		if (status_count_gen(&st, 0) == 0)
			return now_ms() - t0;
		if (now_ms() >= deadline) {
			env_dump_log(e);
			fail_msg("%zu workers of an old generation still there %lld ms after t0",
			    status_count_gen(&st, 0), (long long)(now_ms() - t0));
		}
		nap_ms(EM_POLL_NAP_MS);
	}
}

uint64_t
env_total(struct env *e, const char *name)
{
	char *body = NULL, key[64], *at;
	uint64_t v;

	if (env_control(e, "status-json", &body, EM_DEADLINE_MS) != 0 || body == NULL)
		fail_msg("status-json failed");
	snprintf(key, sizeof(key), "\"%s\":", name);
	at = strstr(body, "\"totals\":");
	if (at == NULL || (at = strstr(at, key)) == NULL)
		fail_msg("no %s in the totals: %s", name, body);
	v = strtoull(at + strlen(key), NULL, 10);
	free(body);
	return v;
}

void
env_total_wait(struct env *e, const char *name, uint64_t want)
{
	int64_t deadline = now_ms() + EM_DEADLINE_MS;
	uint64_t v;

	while ((v = env_total(e, name)) < want && now_ms() < deadline)
		nap_ms(EM_POLL_NAP_MS);
	if (v != want)
		fail_msg("%s is %llu, want %llu", name, (unsigned long long)v, (unsigned long long)want);
}

int
env_ctl(struct env *e, const char *cmd, const char *opt, char **out)
{
	const char *args[] = { "-c", e->conf_path, "-s", cmd, opt, NULL };

	return run_daemon_cmd(e, args, EM_DEADLINE_MS, out, NULL);
}

int
env_notify_open(struct env *e, char *path, size_t len)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	snprintf(path, len, "%s", env_file(e, "notify.sock"));
	assert_true(strlen(path) < sizeof(sun.sun_path));
	memcpy(sun.sun_path, path, strlen(path) + 1);
	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
	return fd;
}

const char *
env_notify_wait(int fd, const char *needle)
{
	static char msg[1024];
	int64_t deadline = now_ms() + EM_DEADLINE_MS;

	while (now_ms() < deadline) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		ssize_t n;
		if (poll(&p, 1, 200) <= 0)
			continue;
		if ((n = recv(fd, msg, sizeof(msg) - 1, 0)) <= 0)
			continue;
		msg[n] = '\0';
		if (strstr(msg, needle) != NULL) {
			print_message("sd_notify: %s\n", msg);
			return msg;
		}
	}
	fail_msg("no sd_notify message with \"%s\"", needle);
	return NULL;
}
