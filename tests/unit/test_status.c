/*
 * The three status renderings (-s status, -s status --json, /metrics) of a
 * hand-built view: two serving workers and a draining one with known
 * counters and times, and a master with none.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <ctype.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "master/status.h"

#define NOW_MS 5000000

/* The counter columns in the order every rendering shows them. */
static const char *const names[] = {
	"active", "accepted", "refused", "refused_acl", "refused_per_address", "bytes_in",
	"bytes_out", "dgrams_in", "dgrams_out", "dgrams_dropped", "dgrams_denied",
	"dgrams_ratelimited", "proxy_headers", "proxy_bad", "proxy_timeout", "proxy_untrusted",
	"tls_handshakes", "tls_resumed", "tls_fail_protocol", "tls_fail_cert", "tls_fail_timeout",
	"tls_fail_other", "moved_out", "moved_in", "moves_failed",
};
#define NNAMES (sizeof(names) / sizeof(names[0]))

static struct sb_worker sbw[3];
static struct status_worker workers[3];

/* Worker k's counter i: distinct everywhere, so a column mix-up shows. */
static uint64_t
value(size_t k, size_t i)
{
	return (uint64_t)(k + 1) * 1000 + i;
}

static void
sb_fill(struct sb_worker *sb, size_t k)
{
	uint64_t *fields[] = {
		&sb->active, &sb->accepted, &sb->refused, &sb->refused_acl,
		&sb->refused_per_address, &sb->bytes_in, &sb->bytes_out, &sb->dgrams_in,
		&sb->dgrams_out, &sb->dgrams_dropped, &sb->dgrams_denied,
		&sb->dgrams_ratelimited, &sb->proxy_headers, &sb->proxy_bad, &sb->proxy_timeout,
		&sb->proxy_untrusted, &sb->tls_handshakes, &sb->tls_resumed, &sb->tls_fail_protocol,
		&sb->tls_fail_cert, &sb->tls_fail_timeout, &sb->tls_fail_other,
		&sb->moved_out, &sb->moved_in, &sb->moves_failed,
	};

	for (size_t i = 0; i < NNAMES; i++)
		*fields[i] = value(k, i);
}

/*
 * Generation 2 serves with slots 0 and 1 (up 4m10s and 12.3s, heartbeats
 * 0.2s and 1.5s old); a worker of generation 1 drains (up 3d04h).
 */
static struct status_view
view_three(void)
{
	const int64_t up[] = { 250000, 12345, 273600000 };
	const int64_t age[] = { 200, 1500, 61000 };
	const pid_t pids[] = { 4101, 4102, 3999 };
	const unsigned gens[] = { 2, 2, 1 };
	const int slots[] = { 0, 1, 0 };
	const char *states[] = { "serving", "serving", "draining" };

	memset(sbw, 0, sizeof(sbw));
	for (size_t k = 0; k < 3; k++) {
		sb_fill(&sbw[k], k);
		sbw[k].pid = pids[k];
		sbw[k].generation = gens[k];
		sbw[k].slot = slots[k];
		sbw[k].started_ms = NOW_MS - up[k];
		sbw[k].heartbeat_ms = NOW_MS - age[k];
		sbw[k].sandboxed = k < 2;  /* the draining one predates `sandbox = true` */
		workers[k] = (struct status_worker){ .pid = pids[k], .generation = gens[k],
		    .slot = slots[k], .state = states[k], .sb = &sbw[k] };
	}
	return (struct status_view){ .master_pid = 4000, .generation = 2, .workers = 2,
	    .now_ms = NOW_MS, .uptime_ms = 3723000, .respawns = 7, .respawns_throttled = 3,
	    .reloads_ok = 1, .reloads_failed = 2, .upgrades_ok = 4, .upgrades_failed = 5,
	    .draining_generations = 1,
	    .parked_slots = 0, .nworkers = 3, .w = workers };
}

static struct status_view
view_empty(void)
{
	return (struct status_view){ .master_pid = 4000, .generation = 1, .workers = 2,
	    .now_ms = NOW_MS, .uptime_ms = 999, .parked_slots = 2 };
}

/* ---- text ---------------------------------------------------------------- */

/* Line n (0-based) of text, malloc'd; fails the test if there is none. */
static char *
line_at(const char *text, int n)
{
	const char *p = text, *end;

	for (int i = 0; i < n; i++) {
		if ((p = strchr(p, '\n')) == NULL)
			fail_msg("no line %d in:\n%s", n, text);
		p++;
	}
	end = strchrnul(p, '\n');
	return strndup(p, (size_t)(end - p));
}

/* Splits line into blank-separated words (in place); returns how many. */
static size_t
words(char *line, char **w, size_t max)
{
	size_t n = 0;

	for (char *t = strtok(line, " "); t != NULL && n < max; t = strtok(NULL, " "))
		w[n++] = t;
	return n;
}

static void
row_expect(const char *text, int n, const char *const *lead, size_t nlead,
    const uint64_t *want)
{
	char *line = line_at(text, n), *w[32], num[32];
	size_t nw = words(line, w, 32);

	assert_int_equal(nw, nlead + NNAMES);
	for (size_t i = 0; i < nlead; i++)
		assert_string_equal(w[i], lead[i]);
	for (size_t i = 0; i < NNAMES; i++) {
		snprintf(num, sizeof(num), "%" PRIu64, want[i]);
		assert_string_equal(w[nlead + i], num);
	}
	free(line);
}

static void
text_has_the_master_lines(void **state)
{
	struct status_view v = view_three();
	char *text = status_text(&v), *l;

	(void)state;
	assert_non_null(text);
	l = line_at(text, 0);
	assert_string_equal(l, "echomaster " EM_VERSION ": master 4000, up 1h02m, generation 2, 2 workers");
	free(l);
	l = line_at(text, 1);
	assert_string_equal(l, "respawns 7 (throttled 3), reloads 1 ok / 2 failed, "
	    "upgrades 4 ok / 5 failed, draining generations 1, parked slots 0");
	free(l);
	l = line_at(text, 2);
	assert_string_equal(l, "");
	free(l);
	free(text);
}

static void
text_has_a_header_a_row_per_worker_and_totals(void **state)
{
	struct status_view v = view_three();
	char *text = status_text(&v), *l, *w[32];
	const char *head[] = { "PID", "GEN", "SLOT", "STATE", "UP", "HEARTBEAT", "SANDBOX" };
	const char *rows[3][7] = {
		{ "4101", "2", "0", "serving", "4m10s", "0.2s", "yes" },
		{ "4102", "2", "1", "serving", "12.3s", "1.5s", "yes" },
		{ "3999", "1", "0", "draining", "3d04h", "1m01s", "no" },
	};
	const char *total[] = { "total" };
	uint64_t want[NNAMES];

	(void)state;
	assert_non_null(text);
	l = line_at(text, 3);
	assert_int_equal(words(l, w, 32), 7 + NNAMES);
	for (size_t i = 0; i < 7; i++)
		assert_string_equal(w[i], head[i]);
	for (size_t i = 0; i < NNAMES; i++)
		assert_string_equal(w[7 + i], names[i]);
	free(l);
	for (size_t k = 0; k < 3; k++) {
		for (size_t i = 0; i < NNAMES; i++)
			want[i] = value(k, i);
		row_expect(text, 4 + (int)k, rows[k], 7, want);
	}
	for (size_t i = 0; i < NNAMES; i++)
		want[i] = value(0, i) + value(1, i) + value(2, i);
	row_expect(text, 7, total, 1, want);
	/* Every value ends under the end of its column's name: the rows are as long as the header. */
	for (int n = 4; n <= 7; n++) {
		char *head_line = line_at(text, 3), *row = line_at(text, n);
		assert_int_equal(strlen(row), strlen(head_line));
		for (size_t i = 0; head_line[i] != '\0'; i++)
			if (head_line[i] != ' ' && (head_line[i + 1] == ' ' || head_line[i + 1] == '\0') &&
			    i > 54)
				assert_true(row[i] != ' ' && (row[i + 1] == ' ' || row[i + 1] == '\0'));
		free(head_line);
		free(row);
	}
	/* The totals line is the last. */
	l = strstr(text, "\ntotal");
	assert_non_null(l);
	assert_ptr_equal(strchr(l + 1, '\n'), text + strlen(text) - 1);
	free(text);
}

static void
text_without_workers(void **state)
{
	struct status_view v = view_empty();
	char *text = status_text(&v), *l;
	const char *total[] = { "total" };
	const uint64_t zeros[NNAMES] = { 0 };

	(void)state;
	assert_non_null(text);
	l = line_at(text, 0);
	assert_string_equal(l, "echomaster " EM_VERSION ": master 4000, up 0.9s, generation 1, 2 workers");
	free(l);
	assert_non_null(strstr(text, "parked slots 2\n"));
	l = line_at(text, 3);
	assert_true(strncmp(l, "     PID  GEN SLOT STATE", 24) == 0);
	free(l);
	row_expect(text, 4, total, 1, zeros);
	free(text);
}

/* ---- JSON ---------------------------------------------------------------- */

/* A recursive-descent check of RFC 8259 syntax; p advances past the value. */
static bool json_value(const char **p, int depth);

static void
json_ws(const char **p)
{
	while (**p == ' ' || **p == '\t' || **p == '\n' || **p == '\r')
		(*p)++;
}

static bool
json_string(const char **p)
{
	if (**p != '"')
		return false;
	for ((*p)++; **p != '"'; (*p)++) {
		if ((unsigned char)**p < 0x20)
			return false;
		if (**p == '\\' && strchr("\"\\/bfnrtu", *++*p) == NULL)
			return false;
	}
	(*p)++;
	return true;
}

static bool
json_number(const char **p)
{
	const char *s = *p;

	if (**p == '-')
		(*p)++;
	if (!isdigit((unsigned char)**p))
		return false;
	if (**p == '0' && isdigit((unsigned char)(*p)[1]))
		return false;
	while (isdigit((unsigned char)**p))
		(*p)++;
	if (**p == '.') {
		(*p)++;
		if (!isdigit((unsigned char)**p))
			return false;
		while (isdigit((unsigned char)**p))
			(*p)++;
	}
	return *p > s;
}

/* Members of an object (close '}') or elements of an array (close ']'). */
static bool
json_items(const char **p, char close, int depth)
{
	(*p)++;
	json_ws(p);
	if (**p == close) {
		(*p)++;
		return true;
	}
	for (;;) {
		json_ws(p);
		if (close == '}') {
			if (!json_string(p))
				return false;
			json_ws(p);
			if (*(*p)++ != ':')
				return false;
		}
		if (!json_value(p, depth + 1))
			return false;
		json_ws(p);
		if (**p == close) {
			(*p)++;
			return true;
		}
		if (*(*p)++ != ',')
			return false;
	}
}

static bool
json_value(const char **p, int depth)
{
	if (depth > 16)
		return false;
	json_ws(p);
	switch (**p) {
	case '{': return json_items(p, '}', depth);
	case '[': return json_items(p, ']', depth);
	case '"': return json_string(p);
	case 't': return strncmp(*p, "true", 4) == 0 ? (*p += 4, true) : false;
	case 'f': return strncmp(*p, "false", 5) == 0 ? (*p += 5, true) : false;
	case 'n': return strncmp(*p, "null", 4) == 0 ? (*p += 4, true) : false;
	default: return json_number(p);
	}
}

static void
json_expect_valid(const char *text)
{
	const char *p = text;

	if (!json_value(&p, 0))
		fail_msg("not JSON at offset %td: %.40s", p - text, p);
	json_ws(&p);
	if (*p != '\0')
		fail_msg("text after the JSON value at offset %td: %.40s", p - text, p);
}

/* The object that starts at the first "key":{ in text, malloc'd. */
static char *
json_object(const char *text, const char *key)
{
	char pat[64];
	const char *start, *p;
	int depth = 0;

	snprintf(pat, sizeof(pat), "\"%s\":{", key);
	if ((start = strstr(text, pat)) == NULL)
		fail_msg("no object %s in %s", pat, text);
	start += strlen(pat) - 1;
	for (p = start; *p != '\0'; p++) {
		depth += *p == '{' ? 1 : *p == '}' ? -1 : 0;
		if (depth == 0)
			return strndup(start, (size_t)(p + 1 - start));
	}
	fail_msg("unterminated object %s", pat);
	return NULL;
}

/* The text of member key's value in the object obj, e.g. "2" or "\"serving\"". */
static void
json_member_expect(const char *obj, const char *key, const char *want)
{
	char pat[64];
	const char *at, *end;

	snprintf(pat, sizeof(pat), "\"%s\":", key);
	if ((at = strstr(obj, pat)) == NULL)
		fail_msg("no member \"%s\" in %s", key, obj);
	at += strlen(pat);
	end = at + strcspn(at, ",}]");
	if ((size_t)(end - at) != strlen(want) || strncmp(at, want, strlen(want)) != 0)
		fail_msg("member \"%s\" is %.*s, want %s", key, (int)(end - at), at, want);
}

/* The k-th element (an object) of the array "workers", malloc'd; NULL past the end. */
static char *
json_worker(const char *text, size_t k)
{
	const char *p = strstr(text, "\"workers\":[");
	const char *end;

	assert_non_null(p);
	p += strlen("\"workers\":[");
	for (size_t i = 0; i <= k; i++) {
		if (*p != '{')
			return NULL;
		end = strchr(p, '}');
		assert_non_null(end);
		if (i == k)
			return strndup(p, (size_t)(end + 1 - p));
		p = end + 1;
		if (*p == ',')
			p++;
	}
	return NULL;
}

static void
json_counters_expect(const char *obj, const uint64_t *want)
{
	char num[32];

	for (size_t i = 0; i < NNAMES; i++) {
		snprintf(num, sizeof(num), "%" PRIu64, want[i]);
		json_member_expect(obj, names[i], num);
	}
}

static void
json_is_well_formed_with_the_master_fields(void **state)
{
	struct status_view v = view_three();
	char *text = status_json(&v), *m;

	(void)state;
	assert_non_null(text);
	json_expect_valid(text);
	assert_true(strncmp(text, "{\"version\":\"" EM_VERSION "\",", 14 + strlen(EM_VERSION)) == 0);
	assert_string_equal(text + strlen(text) - 1, "\n");
	m = json_object(text, "master");
	json_member_expect(m, "pid", "4000");
	json_member_expect(m, "uptime_ms", "3723000");
	json_member_expect(m, "generation", "2");
	json_member_expect(m, "workers", "2");
	json_member_expect(m, "respawns", "7");
	json_member_expect(m, "respawns_throttled", "3");
	json_member_expect(m, "reloads_ok", "1");
	json_member_expect(m, "reloads_failed", "2");
	json_member_expect(m, "upgrades_ok", "4");
	json_member_expect(m, "upgrades_failed", "5");
	json_member_expect(m, "draining_generations", "1");
	json_member_expect(m, "parked_slots", "0");
	free(m);
	free(text);
}

static void
json_lists_each_worker_and_the_totals(void **state)
{
	struct status_view v = view_three();
	char *text = status_json(&v), *w, *t;
	const char *want[3][7] = {
		{ "4101", "2", "0", "\"serving\"", "250000", "200", "true" },
		{ "4102", "2", "1", "\"serving\"", "12345", "1500", "true" },
		{ "3999", "1", "0", "\"draining\"", "273600000", "61000", "false" },
	};
	const char *keys[] = { "pid", "generation", "slot", "state", "uptime_ms",
	    "heartbeat_age_ms", "sandboxed" };
	uint64_t sums[NNAMES], vals[NNAMES];

	(void)state;
	assert_non_null(text);
	for (size_t k = 0; k < 3; k++) {
		assert_non_null(w = json_worker(text, k));
		for (size_t i = 0; i < 7; i++)
			json_member_expect(w, keys[i], want[k][i]);
		for (size_t i = 0; i < NNAMES; i++)
			vals[i] = value(k, i);
		json_counters_expect(w, vals);
		free(w);
	}
	assert_null(json_worker(text, 3));
	for (size_t i = 0; i < NNAMES; i++)
		sums[i] = value(0, i) + value(1, i) + value(2, i);
	t = json_object(text, "totals");
	json_counters_expect(t, sums);
	free(t);
	free(text);
}

static void
json_without_workers(void **state)
{
	struct status_view v = view_empty();
	char *text = status_json(&v), *t;
	const uint64_t zeros[NNAMES] = { 0 };

	(void)state;
	assert_non_null(text);
	json_expect_valid(text);
	assert_non_null(strstr(text, "\"workers\":[]"));
	t = json_object(text, "master");
	json_member_expect(t, "parked_slots", "2");
	free(t);
	t = json_object(text, "totals");
	json_counters_expect(t, zeros);
	free(t);
	free(text);
}

/* ---- Prometheus ------------------------------------------------------------ */

static const struct {
	const char *metric;
	const char *type;
} metrics[] = {
	{ "echomaster_connections_active", "gauge" },
	{ "echomaster_connections_accepted_total", "counter" },
	{ "echomaster_connections_refused_total", "counter" },
	{ "echomaster_connections_denied_total", "counter" },
	{ "echomaster_connections_over_address_limit_total", "counter" },
	{ "echomaster_bytes_received_total", "counter" },
	{ "echomaster_bytes_sent_total", "counter" },
	{ "echomaster_datagrams_received_total", "counter" },
	{ "echomaster_datagrams_sent_total", "counter" },
	{ "echomaster_datagrams_dropped_total", "counter" },
	{ "echomaster_datagrams_denied_total", "counter" },
	{ "echomaster_datagrams_rate_limited_total", "counter" },
	{ "echomaster_proxy_headers_total", "counter" },
	{ "echomaster_proxy_headers_bad_total", "counter" },
	{ "echomaster_proxy_headers_timeout_total", "counter" },
	{ "echomaster_proxy_untrusted_total", "counter" },
	{ "echomaster_tls_handshakes_total", "counter" },
	{ "echomaster_tls_resumed_total", "counter" },
	{ "echomaster_tls_failed_protocol_total", "counter" },
	{ "echomaster_tls_failed_certificate_total", "counter" },
	{ "echomaster_tls_failed_timeout_total", "counter" },
	{ "echomaster_tls_failed_other_total", "counter" },
	{ "echomaster_connections_moved_out_total", "counter" },
	{ "echomaster_connections_moved_in_total", "counter" },
	{ "echomaster_connections_move_failed_total", "counter" },
};
#define NMETRICS (sizeof(metrics) / sizeof(metrics[0]))

/* The sample line that starts with prefix (a name and labels) has value want. */
static void
sample_expect(const char *text, const char *prefix, const char *want)
{
	char line[256];
	const char *at = text;

	snprintf(line, sizeof(line), "%s %s\n", prefix, want);
	while ((at = strstr(at, prefix)) != NULL && at != text && at[-1] != '\n')
		at++;
	if (at == NULL)
		fail_msg("no sample %s", prefix);
	if (strncmp(at, line, strlen(line)) != 0)
		fail_msg("sample %.*s, want %s", (int)strcspn(at, "\n"), at, line);
}

/* "# HELP name text" then "# TYPE name type", each on a line of its own. */
static void
header_expect(const char *text, const char *name, const char *type)
{
	char help[128], typeline[128];
	const char *at, *nl;

	snprintf(help, sizeof(help), "# HELP %s ", name);
	snprintf(typeline, sizeof(typeline), "# TYPE %s %s\n", name, type);
	if ((at = strstr(text, help)) == NULL || (at != text && at[-1] != '\n'))
		fail_msg("no %s", help);
	nl = strchr(at, '\n');
	assert_non_null(nl);
	assert_true(nl - at > (ptrdiff_t)strlen(help));  /* a help text */
	if (strncmp(nl + 1, typeline, strlen(typeline)) != 0)
		fail_msg("after %.*s comes %.*s, want %s", (int)(nl - at), at,
		    (int)strcspn(nl + 1, "\n"), nl + 1, typeline);
}

static void
prometheus_has_help_type_and_a_sample_per_worker(void **state)
{
	struct status_view v = view_three();
	char *text = status_prometheus(&v), prefix[160], num[32];

	(void)state;
	assert_non_null(text);
	for (size_t i = 0; i < NMETRICS; i++) {
		header_expect(text, metrics[i].metric, metrics[i].type);
		for (size_t k = 0; k < 3; k++) {
			snprintf(prefix, sizeof(prefix), "%s{worker=\"%d\",generation=\"%u\",pid=\"%ld\"}",
			    metrics[i].metric, workers[k].slot, workers[k].generation,
			    (long)workers[k].pid);
			snprintf(num, sizeof(num), "%" PRIu64, value(k, i));
			sample_expect(text, prefix, num);
		}
	}
	free(text);
}

static void
prometheus_has_the_master_figures(void **state)
{
	struct status_view v = view_three();
	char *text = status_prometheus(&v);

	(void)state;
	assert_non_null(text);
	header_expect(text, "echomaster_respawns_total", "counter");
	sample_expect(text, "echomaster_respawns_total", "7");
	header_expect(text, "echomaster_respawns_throttled_total", "counter");
	sample_expect(text, "echomaster_respawns_throttled_total", "3");
	header_expect(text, "echomaster_reloads_total", "counter");
	sample_expect(text, "echomaster_reloads_total{result=\"ok\"}", "1");
	sample_expect(text, "echomaster_reloads_total{result=\"failed\"}", "2");
	header_expect(text, "echomaster_upgrades_total", "counter");
	sample_expect(text, "echomaster_upgrades_total{result=\"ok\"}", "4");
	sample_expect(text, "echomaster_upgrades_total{result=\"failed\"}", "5");
	header_expect(text, "echomaster_uptime_seconds", "gauge");
	sample_expect(text, "echomaster_uptime_seconds", "3723.000");
	header_expect(text, "echomaster_generation", "gauge");
	sample_expect(text, "echomaster_generation", "2");
	header_expect(text, "echomaster_workers", "gauge");
	sample_expect(text, "echomaster_workers", "2");
	header_expect(text, "echomaster_draining_generations", "gauge");
	sample_expect(text, "echomaster_draining_generations", "1");
	header_expect(text, "echomaster_parked_slots", "gauge");
	sample_expect(text, "echomaster_parked_slots", "0");
	free(text);
}

/* Every line is a comment or NAME[{LABELS}] VALUE; the text ends in a newline. */
static void
prometheus_lines_are_all_well_formed(void **state)
{
	struct status_view views[2] = { view_three(), view_empty() };

	(void)state;
	for (size_t n = 0; n < 2; n++) {
		char *text = status_prometheus(&views[n]), *save = NULL;
		size_t samples = 0;

		assert_non_null(text);
		assert_string_equal(text + strlen(text) - 1, "\n");
		for (char *l = strtok_r(text, "\n", &save); l != NULL; l = strtok_r(NULL, "\n", &save)) {
			char name[96], rest[160];
			double val;
			if (strncmp(l, "# HELP ", 7) == 0 || strncmp(l, "# TYPE ", 7) == 0)
				continue;
			if (sscanf(l, "%95[a-z_]%159[^ ] %lf", name, rest, &val) != 3 &&
			    sscanf(l, "%95[a-z_] %lf", name, &val) != 2)
				fail_msg("not a sample line: %s", l);
			assert_true(strncmp(name, "echomaster_", 11) == 0);
			samples++;
		}
		/* The counters and the sandbox gauge x 3 workers + 11 master samples; with no workers, only the latter. */
		assert_int_equal(samples, n == 0 ? (NMETRICS + 1) * 3 + 11 : 11);
		free(text);
	}
}

/* name: in the text's first line, the JSON's top level, and a metrics label. */
static void
the_instance_name_is_shown(void **state)
{
	struct status_view v = view_three();
	char *text, *l;

	(void)state;
	v.name = "edge-7";
	text = status_text(&v);
	l = line_at(text, 0);
	assert_string_equal(l, "echomaster " EM_VERSION ": instance edge-7, master 4000, up 1h02m, "
	    "generation 2, 2 workers");
	free(l);
	free(text);
	text = status_json(&v);
	assert_non_null(strstr(text, "{\"version\":\"" EM_VERSION "\",\"name\":\"edge-7\",\"master\":{"));
	free(text);
	text = status_prometheus(&v);
	header_expect(text, "echomaster_instance_info", "gauge");
	sample_expect(text, "echomaster_instance_info{name=\"edge-7\"}", "1");
	free(text);
}

static void
prometheus_without_workers(void **state)
{
	struct status_view v = view_empty();
	char *text = status_prometheus(&v);

	(void)state;
	assert_non_null(text);
	for (size_t i = 0; i < NMETRICS; i++)
		header_expect(text, metrics[i].metric, metrics[i].type);
	assert_null(strstr(text, "{worker="));
	sample_expect(text, "echomaster_parked_slots", "2");
	sample_expect(text, "echomaster_uptime_seconds", "0.999");
	free(text);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(text_has_the_master_lines),
		cmocka_unit_test(text_has_a_header_a_row_per_worker_and_totals),
		cmocka_unit_test(text_without_workers),
		cmocka_unit_test(json_is_well_formed_with_the_master_fields),
		cmocka_unit_test(json_lists_each_worker_and_the_totals),
		cmocka_unit_test(json_without_workers),
		cmocka_unit_test(prometheus_has_help_type_and_a_sample_per_worker),
		cmocka_unit_test(prometheus_has_the_master_figures),
		cmocka_unit_test(prometheus_lines_are_all_well_formed),
		cmocka_unit_test(prometheus_without_workers),
		cmocka_unit_test(the_instance_name_is_shown),
	};
	return cmocka_run_group_tests_name("status", tests, NULL, NULL);
}
