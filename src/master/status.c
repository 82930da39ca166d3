#include "master/status.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The per-worker counters, in the order every rendering shows them. */
static const struct counter {
	const char *name;     /* column and JSON key */
	const char *metric;   /* Prometheus name */
	const char *help;
	int gauge;
	size_t offset;        /* of a uint64_t in struct sb_worker */
} counters[] = {
	{ "active", "echomaster_connections_active", "TCP connections open now.", 1,
	  offsetof(struct sb_worker, active) },
	{ "accepted", "echomaster_connections_accepted_total", "TCP connections accepted.", 0,
	  offsetof(struct sb_worker, accepted) },
	{ "refused", "echomaster_connections_refused_total",
	  "TCP connections closed at once because a limit was reached.", 0,
	  offsetof(struct sb_worker, refused) },
	{ "refused_acl", "echomaster_connections_denied_total",
	  "TCP connections closed at once by a listener's allow/deny lists.", 0,
	  offsetof(struct sb_worker, refused_acl) },
	{ "refused_per_address", "echomaster_connections_over_address_limit_total",
	  "TCP connections closed at once by max_connections_per_address.", 0,
	  offsetof(struct sb_worker, refused_per_address) },
	{ "bytes_in", "echomaster_bytes_received_total", "Bytes read from TCP clients.", 0,
	  offsetof(struct sb_worker, bytes_in) },
	{ "bytes_out", "echomaster_bytes_sent_total", "Bytes written to TCP clients.", 0,
	  offsetof(struct sb_worker, bytes_out) },
	{ "dgrams_in", "echomaster_datagrams_received_total", "UDP datagrams received.", 0,
	  offsetof(struct sb_worker, dgrams_in) },
	{ "dgrams_out", "echomaster_datagrams_sent_total", "UDP datagrams answered.", 0,
	  offsetof(struct sb_worker, dgrams_out) },
	{ "dgrams_dropped", "echomaster_datagrams_dropped_total",
	  "UDP datagrams not answered (loop-prone source port, full send buffer).", 0,
	  offsetof(struct sb_worker, dgrams_dropped) },
	{ "dgrams_denied", "echomaster_datagrams_denied_total",
	  "UDP datagrams dropped by a listener's allow/deny lists.", 0,
	  offsetof(struct sb_worker, dgrams_denied) },
	{ "dgrams_ratelimited", "echomaster_datagrams_rate_limited_total",
	  "UDP datagrams dropped by the per-source rate limit (udp_rate).", 0,
	  offsetof(struct sb_worker, dgrams_ratelimited) },
	{ "proxy_headers", "echomaster_proxy_headers_total",
	  "PROXY protocol headers accepted.", 0, offsetof(struct sb_worker, proxy_headers) },
	{ "proxy_bad", "echomaster_proxy_headers_bad_total",
	  "PROXY protocol headers refused: malformed, too long or a bad CRC32C.", 0,
	  offsetof(struct sb_worker, proxy_bad) },
	{ "proxy_timeout", "echomaster_proxy_headers_timeout_total",
	  "PROXY protocol headers not complete within limits.proxy_timeout.", 0,
	  offsetof(struct sb_worker, proxy_timeout) },
	{ "proxy_untrusted", "echomaster_proxy_untrusted_total",
	  "PROXY protocol connections from a source outside proxy_trusted.", 0,
	  offsetof(struct sb_worker, proxy_untrusted) },
	{ "tls_handshakes", "echomaster_tls_handshakes_total",
	  "TLS handshakes completed.", 0, offsetof(struct sb_worker, tls_handshakes) },
	{ "tls_resumed", "echomaster_tls_resumed_total",
	  "TLS handshakes that resumed a session from a ticket.", 0,
	  offsetof(struct sb_worker, tls_resumed) },
	{ "tls_fail_protocol", "echomaster_tls_failed_protocol_total",
	  "TLS handshakes failed on the protocol: version, cipher, ALPN, or not TLS.", 0,
	  offsetof(struct sb_worker, tls_fail_protocol) },
	{ "tls_fail_cert", "echomaster_tls_failed_certificate_total",
	  "TLS handshakes failed on the client certificate (client_ca).", 0,
	  offsetof(struct sb_worker, tls_fail_cert) },
	{ "tls_fail_timeout", "echomaster_tls_failed_timeout_total",
	  "TLS handshakes not complete within limits.handshake_timeout.", 0,
	  offsetof(struct sb_worker, tls_fail_timeout) },
	{ "tls_fail_other", "echomaster_tls_failed_other_total",
	  "TLS handshakes failed otherwise (the client closed mid-handshake, say).", 0,
	  offsetof(struct sb_worker, tls_fail_other) },
	{ "moved_out", "echomaster_connections_moved_out_total",
	  "TCP connections handed over to another worker (reload_handover, TTOU).", 0,
	  offsetof(struct sb_worker, moved_out) },
	{ "moved_in", "echomaster_connections_moved_in_total",
	  "TCP connections taken over from another worker.", 0,
	  offsetof(struct sb_worker, moved_in) },
	{ "moves_failed", "echomaster_connections_move_failed_total",
	  "TCP connections a handover could not move: kept, and drained instead.", 0,
	  offsetof(struct sb_worker, moves_failed) },
};
#define NCOUNTERS (sizeof(counters) / sizeof(counters[0]))

static uint64_t
counter_get(const struct sb_worker *sb, size_t i)
{
	return __atomic_load_n((const uint64_t *)((const char *)sb + counters[i].offset),
	    __ATOMIC_RELAXED);
}

static uint64_t
counter_total(const struct status_view *v, size_t i)
{
	uint64_t sum = 0;

	for (size_t k = 0; k < v->nworkers; k++)
		sum += counter_get(v->w[k].sb, i);
	return sum;
}

/* A counter's column: room for 14 digits, or its name if that is wider. */
static int
column_width(size_t i)
{
	size_t n = strlen(counters[i].name);

	return n > 14 ? (int)n : 14;
}

/* "3d04h", "2h05m", "4m10s", "12.3s": short and unambiguous. */
static void
duration(char *buf, size_t len, int64_t ms)
{
	int64_t s = ms / 1000;

	if (s >= 86400)
		snprintf(buf, len, "%" PRId64 "d%02" PRId64 "h", s / 86400, s % 86400 / 3600);
	else if (s >= 3600)
		snprintf(buf, len, "%" PRId64 "h%02" PRId64 "m", s / 3600, s % 3600 / 60);
	else if (s >= 60)
		snprintf(buf, len, "%" PRId64 "m%02" PRId64 "s", s / 60, s % 60);
	else
		snprintf(buf, len, "%" PRId64 ".%" PRId64 "s", s, ms % 1000 / 100);
}

/* Set by the worker itself once it has applied its sandbox (worker/sandbox.h). */
static bool
sandboxed(const struct status_worker *w)
{
	return __atomic_load_n(&w->sb->sandboxed, __ATOMIC_RELAXED) != 0;
}

/* open_memstream sets the buffer only at fclose, hence the pointer to it. */
static char *
close_stream(FILE *f, char **buf)
{
	if (fclose(f) != 0) {
		free(*buf);
		return NULL;
	}
	return *buf;
}

char *
status_text(const struct status_view *v)
{
	char *buf = NULL, up[32], beat[32];
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	if (f == NULL)
		return NULL;
	duration(up, sizeof(up), v->uptime_ms);
	fprintf(f, "echomaster %s: %s%s%smaster %ld, up %s, generation %u, %d workers\n", EM_VERSION,
	    v->name != NULL ? "instance " : "", v->name != NULL ? v->name : "",
	    v->name != NULL ? ", " : "", (long)v->master_pid, up, v->generation, v->workers);
	fprintf(f, "respawns %" PRIu64 " (throttled %" PRIu64 "), reloads %" PRIu64 " ok / %" PRIu64
	    " failed, upgrades %" PRIu64 " ok / %" PRIu64 " failed, draining generations %d, "
	    "parked slots %d\n\n", v->respawns, v->respawns_throttled, v->reloads_ok,
	    v->reloads_failed, v->upgrades_ok, v->upgrades_failed, v->draining_generations,
	    v->parked_slots);
	if (v->state != NULL) {
		/* After the blank line: the second line's format is fixed for scripts. */
		fprintf(f, "state: %s; agent: %s\n\n", v->state, v->agent != NULL ? v->agent : "off");
	}
	fprintf(f, "%8s %4s %4s %-9s %8s %9s %-7s", "PID", "GEN", "SLOT", "STATE", "UP", "HEARTBEAT",
	    "SANDBOX");
	for (size_t i = 0; i < NCOUNTERS; i++)
		fprintf(f, " %*s", column_width(i), counters[i].name);
	fputc('\n', f);
	for (size_t k = 0; k < v->nworkers; k++) {
		const struct status_worker *w = &v->w[k];
		duration(up, sizeof(up), v->now_ms - w->sb->started_ms);
		duration(beat, sizeof(beat), v->now_ms - w->sb->heartbeat_ms);
		fprintf(f, "%8ld %4u %4d %-9s %8s %9s %-7s", (long)w->pid, w->generation, w->slot,
		    w->state, up, beat, sandboxed(w) ? "yes" : "no");
		for (size_t i = 0; i < NCOUNTERS; i++)
			fprintf(f, " %*" PRIu64, column_width(i), counter_get(w->sb, i));
		fputc('\n', f);
	}
	fprintf(f, "%-55s", "total");  /* as wide as the columns from PID to SANDBOX */
	for (size_t i = 0; i < NCOUNTERS; i++)
		fprintf(f, " %*" PRIu64, column_width(i), counter_total(v, i));
	fputc('\n', f);
	return close_stream(f, &buf);
}

char *
status_json(const struct status_view *v)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	if (f == NULL)
		return NULL;
	fprintf(f, "{\"version\":\"%s\",", EM_VERSION);
	if (v->name != NULL)
		fprintf(f, "\"name\":\"%s\",", v->name);  /* cfg allows no quote or backslash in it */
	fprintf(f, "\"master\":{\"pid\":%ld,\"uptime_ms\":%" PRId64
	    ",\"generation\":%u,\"workers\":%d,\"respawns\":%" PRIu64
	    ",\"respawns_throttled\":%" PRIu64 ",\"reloads_ok\":%" PRIu64
	    ",\"reloads_failed\":%" PRIu64 ",\"upgrades_ok\":%" PRIu64 ",\"upgrades_failed\":%"
	    PRIu64 ",\"draining_generations\":%d,\"parked_slots\":%d",
	    (long)v->master_pid, v->uptime_ms, v->generation,
	    v->workers, v->respawns, v->respawns_throttled, v->reloads_ok, v->reloads_failed,
	    v->upgrades_ok, v->upgrades_failed, v->draining_generations, v->parked_slots);
	/* Neither holds a quote or a backslash: agent.c writes them from fixed words and the host name. */
	if (v->state != NULL)
		fprintf(f, ",\"agent_state\":\"%s\",\"agent\":%s%s%s", v->state,
		    v->agent != NULL ? "\"" : "", v->agent != NULL ? v->agent : "null",
		    v->agent != NULL ? "\"" : "");
	fputs("},\"workers\":[", f);
	for (size_t k = 0; k < v->nworkers; k++) {
		const struct status_worker *w = &v->w[k];
		fprintf(f, "%s{\"pid\":%ld,\"generation\":%u,\"slot\":%d,\"state\":\"%s\","
		    "\"uptime_ms\":%" PRId64 ",\"heartbeat_age_ms\":%" PRId64 ",\"sandboxed\":%s",
		    k ? "," : "", (long)w->pid, w->generation, w->slot, w->state,
		    v->now_ms - w->sb->started_ms, v->now_ms - w->sb->heartbeat_ms,
		    sandboxed(w) ? "true" : "false");
		for (size_t i = 0; i < NCOUNTERS; i++)
			fprintf(f, ",\"%s\":%" PRIu64, counters[i].name, counter_get(w->sb, i));
		fputc('}', f);
	}
	fputs("],\"totals\":{", f);
	for (size_t i = 0; i < NCOUNTERS; i++)
		fprintf(f, "%s\"%s\":%" PRIu64, i ? "," : "", counters[i].name, counter_total(v, i));
	fputs("}}\n", f);
	return close_stream(f, &buf);
}

static void
metric_header(FILE *f, const char *name, const char *help, const char *type)
{
	fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

char *
status_prometheus(const struct status_view *v)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	if (f == NULL)
		return NULL;
	for (size_t i = 0; i < NCOUNTERS; i++) {
		metric_header(f, counters[i].metric, counters[i].help,
		    counters[i].gauge ? "gauge" : "counter");
		for (size_t k = 0; k < v->nworkers; k++)
			fprintf(f, "%s{worker=\"%d\",generation=\"%u\",pid=\"%ld\"} %" PRIu64 "\n",
			    counters[i].metric, v->w[k].slot, v->w[k].generation, (long)v->w[k].pid,
			    counter_get(v->w[k].sb, i));
	}
	if (v->name != NULL) {
		metric_header(f, "echomaster_instance_info", "The instance's name (name, or the host name).",
		    "gauge");
		fprintf(f, "echomaster_instance_info{name=\"%s\"} 1\n", v->name);
	}
	metric_header(f, "echomaster_worker_sandboxed",
	    "1 when the worker runs in its sandbox (sandbox = true).", "gauge");
	for (size_t k = 0; k < v->nworkers; k++)
		fprintf(f, "echomaster_worker_sandboxed{worker=\"%d\",generation=\"%u\",pid=\"%ld\"} %d\n",
		    v->w[k].slot, v->w[k].generation, (long)v->w[k].pid, sandboxed(&v->w[k]) ? 1 : 0);
	metric_header(f, "echomaster_respawns_total", "Workers restarted after dying.", "counter");
	fprintf(f, "echomaster_respawns_total %" PRIu64 "\n", v->respawns);
	metric_header(f, "echomaster_respawns_throttled_total",
	    "Respawns delayed by the crash backoff.", "counter");
	fprintf(f, "echomaster_respawns_throttled_total %" PRIu64 "\n", v->respawns_throttled);
	metric_header(f, "echomaster_reloads_total", "Configuration reloads, by result.", "counter");
	fprintf(f, "echomaster_reloads_total{result=\"ok\"} %" PRIu64 "\n", v->reloads_ok);
	fprintf(f, "echomaster_reloads_total{result=\"failed\"} %" PRIu64 "\n", v->reloads_failed);
	metric_header(f, "echomaster_upgrades_total", "Live binary upgrades, by result.", "counter");
	fprintf(f, "echomaster_upgrades_total{result=\"ok\"} %" PRIu64 "\n", v->upgrades_ok);
	fprintf(f, "echomaster_upgrades_total{result=\"failed\"} %" PRIu64 "\n", v->upgrades_failed);
	metric_header(f, "echomaster_uptime_seconds", "Seconds since the master started.", "gauge");
	fprintf(f, "echomaster_uptime_seconds %.3f\n", (double)v->uptime_ms / 1000);
	metric_header(f, "echomaster_generation", "The serving worker generation.", "gauge");
	fprintf(f, "echomaster_generation %u\n", v->generation);
	metric_header(f, "echomaster_workers", "Worker slots of the serving generation.", "gauge");
	fprintf(f, "echomaster_workers %d\n", v->workers);
	metric_header(f, "echomaster_draining_generations", "Old generations still draining.", "gauge");
	fprintf(f, "echomaster_draining_generations %d\n", v->draining_generations);
	metric_header(f, "echomaster_parked_slots",
	    "Worker slots parked by the crash-loop breaker.", "gauge");
	fprintf(f, "echomaster_parked_slots %d\n", v->parked_slots);
	return close_stream(f, &buf);
}

char *
status_render(const struct status_view *v, enum status_format format)
{
	switch (format) {
	case STATUS_TEXT: return status_text(v);
	case STATUS_JSON: return status_json(v);
	case STATUS_PROMETHEUS: return status_prometheus(v);
	}
	return NULL;
}
