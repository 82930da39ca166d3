#include "common/cfg.h"

#include <errno.h>
#include <grp.h>
#include <libconfig.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

#include "common/log.h"
#include "common/sock.h"
#include "common/tlsctx.h"

enum key_type {
	KT_INT,
	KT_BOOL,
	KT_STRING,
	KT_ENUM,
	KT_WORKERS, /* an integer, or "auto" */
	KT_GROUP,
	KT_LISTEN,  /* a list of listener groups */
	KT_PREFIXES, /* an array of "ADDR[/BITS]" strings (common/prefix) */
	KT_PROTOCOLS, /* an array of TLS version names: a CFG_TLS_* mask */
	KT_STRINGS,  /* an array of strings: struct cfg_strings */
	KT_CERTS,    /* a list of certificate/key groups: tls.certificates */
};

struct key_choice {
	const char *name;
	int value;
};

/*
 * One configuration key: the single description parser, defaults, dump and
 * the reload's restart-only report share. restart_only is read only on
 * scalar keys at the top level or in a group, whose fields are all in
 * struct cfg: every listener setting follows a reload (master/listeners.c
 * keeps a socket whose address stayed, and opens the others).
 */
struct key {
	const char *name;
	enum key_type type;
	size_t offset;                     /* into struct cfg, or struct cfg_listen */
	long long min, max;                /* KT_INT, KT_WORKERS */
	long long def_int;                 /* KT_INT, KT_BOOL, KT_ENUM, KT_WORKERS (0 = auto) */
	const char *def_str;               /* KT_STRING */
	const struct key_choice *choices;  /* KT_ENUM */
	const struct key *members;         /* KT_GROUP, KT_LISTEN */
	bool required;
	bool restart_only;                 /* a reload keeps the running value */
};

static const struct key_choice facility_choices[] = {
	{ "daemon", LOG_DAEMON }, { "user", LOG_USER },
	{ "local0", LOG_LOCAL0 }, { "local1", LOG_LOCAL1 },
	{ "local2", LOG_LOCAL2 }, { "local3", LOG_LOCAL3 },
	{ "local4", LOG_LOCAL4 }, { "local5", LOG_LOCAL5 },
	{ "local6", LOG_LOCAL6 }, { "local7", LOG_LOCAL7 },
	{ NULL, 0 },
};

static const struct key_choice level_choices[] = {
	{ "debug", LOG_DEBUG }, { "info", LOG_INFO }, { "notice", LOG_NOTICE },
	{ "warning", LOG_WARNING }, { "error", LOG_ERR },
	{ NULL, 0 },
};

static const struct key_choice proto_choices[] = {
	{ "tcp", CFG_PROTO_TCP }, { "udp", CFG_PROTO_UDP }, { NULL, 0 },
};

static const struct key_choice mode_choices[] = {
	{ "upper", CFG_MODE_UPPER }, { "echo", CFG_MODE_ECHO }, { "whoami", CFG_MODE_WHOAMI },
	{ NULL, 0 },
};

static const struct key_choice proxy_choices[] = {
	{ "off", CFG_PROXY_OFF }, { "v1", CFG_PROXY_V1 }, { "v2", CFG_PROXY_V2 },
	{ "any", CFG_PROXY_ANY }, { NULL, 0 },
};

#define CFG_OFF(field)    offsetof(struct cfg, field)
#define LISTEN_OFF(field) offsetof(struct cfg_listen, field)

static const struct key log_keys[] = {
	{ .name = "facility", .type = KT_ENUM, .offset = CFG_OFF(log_facility),
	  .def_int = LOG_DAEMON, .choices = facility_choices },
	{ .name = "level", .type = KT_ENUM, .offset = CFG_OFF(log_level),
	  .def_int = LOG_INFO, .choices = level_choices },
	{ .name = "stderr", .type = KT_BOOL, .offset = CFG_OFF(log_stderr), .def_int = 1 },
	{ .name = NULL },
};

static const struct key limits_keys[] = {
	{ .name = "max_connections", .type = KT_INT, .offset = CFG_OFF(max_connections),
	  .min = 1, .max = 1000000, .def_int = 10000 },
	{ .name = "idle_timeout", .type = KT_INT, .offset = CFG_OFF(idle_timeout),
	  .min = 0, .max = 86400, .def_int = 300 },
	{ .name = "min_rate", .type = KT_INT, .offset = CFG_OFF(min_rate),
	  .min = 0, .max = 1000000000, .def_int = 0 },
	{ .name = "max_connections_per_address", .type = KT_INT, .offset = CFG_OFF(max_per_address),
	  .min = 0, .max = 1000000, .def_int = 0 },
	{ .name = "udp_rate", .type = KT_INT, .offset = CFG_OFF(udp_rate),
	  .min = 0, .max = 100000000, .def_int = 1000 },
	{ .name = "udp_burst", .type = KT_INT, .offset = CFG_OFF(udp_burst),
	  .min = 1, .max = 100000000, .def_int = 2000 },
	{ .name = "proxy_timeout", .type = KT_INT, .offset = CFG_OFF(proxy_timeout),
	  .min = 1, .max = 3600, .def_int = 5 },
	{ .name = "handshake_timeout", .type = KT_INT, .offset = CFG_OFF(handshake_timeout),
	  .min = 1, .max = 3600, .def_int = 10 },
	{ .name = NULL },
};

static const struct key metrics_keys[] = {
	{ .name = "address", .type = KT_STRING, .offset = CFG_OFF(metrics_address), .def_str = "",
	  .restart_only = true },
	{ .name = "port", .type = KT_INT, .offset = CFG_OFF(metrics_port),
	  .min = 1, .max = 65535, .def_int = 9187, .restart_only = true },
	{ .name = NULL },
};

/* The HAProxy agent (master/agent.c): opened once by the master, like /metrics. */
static const struct key agent_keys[] = {
	{ .name = "address", .type = KT_STRING, .offset = CFG_OFF(agent_address), .def_str = "",
	  .restart_only = true },
	{ .name = "port", .type = KT_INT, .offset = CFG_OFF(agent_port),
	  .min = 1, .max = 65535, .def_int = 9188, .restart_only = true },
	{ .name = NULL },
};

static const struct key crash_loop_keys[] = {
	{ .name = "deaths", .type = KT_INT, .offset = CFG_OFF(crash_loop_deaths),
	  .min = 1, .max = 1000, .def_int = 5 },
	{ .name = "window", .type = KT_INT, .offset = CFG_OFF(crash_loop_window),
	  .min = 1, .max = 3600, .def_int = 60 },
	{ .name = NULL },
};

static const struct key_choice tls_protocol_choices[] = {
	{ "TLSv1.2", CFG_TLS_V12 }, { "TLSv1.3", CFG_TLS_V13 }, { NULL, 0 },
};

#define TLS_OFF(field)  offsetof(struct cfg_listen, tls.field)
#define CERT_OFF(field) offsetof(struct cfg_tls_cert, field)

/* An entry of tls.certificates; offsets into struct cfg_tls_cert. */
static const struct key cert_keys[] = {
	{ .name = "certificate", .type = KT_STRING, .offset = CERT_OFF(certificate), .def_str = "",
	  .required = true },
	{ .name = "key", .type = KT_STRING, .offset = CERT_OFF(key), .def_str = "", .required = true },
	{ .name = NULL },
};

/* A listener's tls group (common/tlsctx.h builds its contexts); offsets into struct cfg_listen. */
static const struct key tls_keys[] = {
	{ .name = "certificate", .type = KT_STRING, .offset = TLS_OFF(certificate), .def_str = "" },
	{ .name = "key", .type = KT_STRING, .offset = TLS_OFF(key), .def_str = "" },
	{ .name = "certificates", .type = KT_CERTS, .offset = TLS_OFF(certs) },
	{ .name = "protocols", .type = KT_PROTOCOLS, .offset = TLS_OFF(protocols),
	  .def_int = CFG_TLS_V12 | CFG_TLS_V13, .choices = tls_protocol_choices },
	{ .name = "ciphers", .type = KT_STRING, .offset = TLS_OFF(ciphers), .def_str = "" },
	{ .name = "ciphersuites", .type = KT_STRING, .offset = TLS_OFF(ciphersuites), .def_str = "" },
	{ .name = "client_ca", .type = KT_STRING, .offset = TLS_OFF(client_ca), .def_str = "" },
	{ .name = "alpn", .type = KT_STRINGS, .offset = TLS_OFF(alpn) },
	{ .name = NULL },
};

static const struct key listen_keys[] = {
	{ .name = "proto", .type = KT_ENUM, .offset = LISTEN_OFF(proto),
	  .choices = proto_choices, .required = true },
	{ .name = "address", .type = KT_STRING, .offset = LISTEN_OFF(address),
	  .def_str = "", .required = true },
	{ .name = "port", .type = KT_INT, .offset = LISTEN_OFF(port),
	  .min = 1, .max = 65535, .required = true },
	{ .name = "mode", .type = KT_ENUM, .offset = LISTEN_OFF(mode),
	  .def_int = CFG_MODE_UPPER, .choices = mode_choices },
	{ .name = "allow", .type = KT_PREFIXES, .offset = LISTEN_OFF(allow) },
	{ .name = "deny", .type = KT_PREFIXES, .offset = LISTEN_OFF(deny) },
	{ .name = "proxy_protocol", .type = KT_ENUM, .offset = LISTEN_OFF(proxy_protocol),
	  .def_int = CFG_PROXY_OFF, .choices = proxy_choices },
	{ .name = "proxy_trusted", .type = KT_PREFIXES, .offset = LISTEN_OFF(proxy_trusted) },
	{ .name = "tls", .type = KT_GROUP, .members = tls_keys },
	{ .name = NULL },
};

static const struct key root_keys[] = {
	{ .name = "workers", .type = KT_WORKERS, .offset = CFG_OFF(workers),
	  .min = 1, .max = CFG_WORKERS_MAX, .def_int = 0 },
	{ .name = "daemon", .type = KT_BOOL, .offset = CFG_OFF(daemon), .def_int = 0,
	  .restart_only = true },
	{ .name = "pid_file", .type = KT_STRING, .offset = CFG_OFF(pid_file), .def_str = "",
	  .restart_only = true },
	{ .name = "user", .type = KT_STRING, .offset = CFG_OFF(user), .def_str = "" },
	{ .name = "group", .type = KT_STRING, .offset = CFG_OFF(group), .def_str = "" },
	{ .name = "shutdown_timeout", .type = KT_INT, .offset = CFG_OFF(shutdown_timeout),
	  .min = 0, .max = 3600, .def_int = 10 },
	{ .name = "worker_timeout", .type = KT_INT, .offset = CFG_OFF(worker_timeout),
	  .min = 0, .max = 3600, .def_int = 10 },
	{ .name = "max_draining_generations", .type = KT_INT, .offset = CFG_OFF(max_draining),
	  .min = 1, .max = 64, .def_int = 4 },
	{ .name = "stop_signal_graceful", .type = KT_BOOL, .offset = CFG_OFF(stop_graceful),
	  .def_int = 0 },
	{ .name = "reload_handover", .type = KT_BOOL, .offset = CFG_OFF(reload_handover),
	  .def_int = 1 },
	{ .name = "sandbox", .type = KT_BOOL, .offset = CFG_OFF(sandbox), .def_int = 1 },
	{ .name = "control_socket", .type = KT_STRING, .offset = CFG_OFF(control_socket),
	  .def_str = "", .restart_only = true },
	/* Seconds a graceful stop reports drain (agent, status) while still accepting. */
	{ .name = "drain_delay", .type = KT_INT, .offset = CFG_OFF(drain_delay),
	  .min = 0, .max = 3600, .def_int = 0 },
	{ .name = "name", .type = KT_STRING, .offset = CFG_OFF(name), .def_str = "" },
	{ .name = "log", .type = KT_GROUP, .members = log_keys },
	{ .name = "limits", .type = KT_GROUP, .members = limits_keys },
	{ .name = "metrics", .type = KT_GROUP, .members = metrics_keys },
	{ .name = "agent", .type = KT_GROUP, .members = agent_keys },
	{ .name = "crash_loop", .type = KT_GROUP, .members = crash_loop_keys },
	{ .name = "listen", .type = KT_LISTEN, .members = listen_keys, .required = true },
	{ .name = NULL },
};

/* State of one parse: where messages point, and the first error. */
struct parse {
	const char *name;  /* the file as messages name it */
	struct cfg *cfg;   /* for its warnings */
	char *err;
	bool failed;
};

static EM_PRINTF(3, 4) int
parse_fail(struct parse *p, const config_setting_t *where, const char *fmt, ...)
{
	const char *file = p->name;
	int line = 1;
	char msg[CFG_ERR_LEN];
	va_list ap;

	if (p->failed)
		return -1;
	if (where != NULL) {
		if (config_setting_source_file(where) != NULL)
			file = config_setting_source_file(where);
		if (config_setting_source_line(where) > 0)
			line = config_setting_source_line(where);
	}
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (snprintf(p->err, CFG_ERR_LEN, "%s:%d: %s", file, line, msg) >= CFG_ERR_LEN)
		memcpy(p->err + CFG_ERR_LEN - 4, "...", 4);  /* keep the FILE:LINE: part */
	p->failed = true;
	return -1;
}

static int *
field_int(void *base, const struct key *k)
{
	return (int *)((char *)base + k->offset);
}

static bool *
field_bool(void *base, const struct key *k)
{
	return (bool *)((char *)base + k->offset);
}

static char **
field_str(void *base, const struct key *k)
{
	return (char **)((char *)base + k->offset);
}

static struct prefix_list *
field_prefixes(void *base, const struct key *k)
{
	return (struct prefix_list *)((char *)base + k->offset);
}

static struct cfg_strings *
field_strings(void *base, const struct key *k)
{
	return (struct cfg_strings *)((char *)base + k->offset);
}

/* KT_CERTS: the array, followed by its count (struct cfg_tls: certs, ncerts). */
static struct cfg_tls_cert **
field_certs(void *base, const struct key *k)
{
	return (struct cfg_tls_cert **)((char *)base + k->offset);
}

static size_t *
field_ncerts(void *base, const struct key *k)
{
	return (size_t *)((char *)base + k->offset + offsetof(struct cfg_tls, ncerts) -
	    offsetof(struct cfg_tls, certs));
}

static const char *
choice_name(const struct key_choice *c, int value)
{
	for (; c->name != NULL; c++)
		if (c->value == value)
			return c->name;
	return "?";
}

const char *
cfg_proto_name(int proto)
{
	return choice_name(proto_choices, proto);
}

const char *
cfg_mode_name(int mode)
{
	return choice_name(mode_choices, mode);
}

/* Fills in every default of a key table; strings become owned copies. */
static int
keys_set_defaults(const struct key *keys, void *base)
{
	for (const struct key *k = keys; k->name != NULL; k++) {
		switch (k->type) {
		case KT_INT:
		case KT_ENUM:
		case KT_WORKERS:
		case KT_PROTOCOLS:
			*field_int(base, k) = (int)k->def_int;
			break;
		case KT_BOOL:
			*field_bool(base, k) = k->def_int != 0;
			break;
		case KT_STRING:
			if ((*field_str(base, k) = strdup(k->def_str)) == NULL)
				return -1;
			break;
		case KT_GROUP:
			if (keys_set_defaults(k->members, base) == -1)
				return -1;
			break;
		case KT_LISTEN:
		case KT_PREFIXES:
		case KT_STRINGS:
		case KT_CERTS:
			break;
		}
	}
	return 0;
}

static void
strings_free(struct cfg_strings *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
	l->v = NULL;
	l->n = 0;
}

static void keys_free_owned(const struct key *keys, void *base);

static void
certs_free(struct cfg_tls_cert **v, size_t *n)
{
	for (size_t i = 0; i < *n; i++)
		keys_free_owned(cert_keys, &(*v)[i]);
	free(*v);
	*v = NULL;
	*n = 0;
}

/* Frees what keys own: strings and prefix lists. */
static void
keys_free_owned(const struct key *keys, void *base)
{
	for (const struct key *k = keys; k->name != NULL; k++) {
		if (k->type == KT_STRING) {
			free(*field_str(base, k));
			*field_str(base, k) = NULL;
		} else if (k->type == KT_PREFIXES) {
			free(field_prefixes(base, k)->v);
			field_prefixes(base, k)->v = NULL;
			field_prefixes(base, k)->n = 0;
		} else if (k->type == KT_GROUP) {
			keys_free_owned(k->members, base);
		} else if (k->type == KT_STRINGS) {
			strings_free(field_strings(base, k));
		} else if (k->type == KT_CERTS) {
			certs_free(field_certs(base, k), field_ncerts(base, k));
		}
	}
}

static const char *
type_name(int type)
{
	switch (type) {
	case CONFIG_TYPE_GROUP: return "a group";
	case CONFIG_TYPE_INT:
	case CONFIG_TYPE_INT64: return "an integer";
	case CONFIG_TYPE_FLOAT: return "a float";
	case CONFIG_TYPE_STRING: return "a string";
	case CONFIG_TYPE_BOOL: return "a boolean";
	case CONFIG_TYPE_ARRAY: return "an array";
	case CONFIG_TYPE_LIST: return "a list";
	default: return "unknown";
	}
}

static bool
is_integer(const config_setting_t *s)
{
	int t = config_setting_type(s);
	return t == CONFIG_TYPE_INT || t == CONFIG_TYPE_INT64;
}

static int
parse_int(struct parse *p, const config_setting_t *s, const struct key *k, void *base)
{
	long long v;

	if (!is_integer(s))
		return parse_fail(p, s, "'%s' must be an integer, not %s", k->name,
		    type_name(config_setting_type(s)));
	v = config_setting_get_int64(s);
	if (v < k->min || v > k->max)
		return parse_fail(p, s, "'%s' is %lld, out of range %lld..%lld", k->name, v,
		    k->min, k->max);
	*field_int(base, k) = (int)v;
	return 0;
}

static int
parse_string(struct parse *p, const config_setting_t *s, const struct key *k, void *base)
{
	char *copy;

	if (config_setting_type(s) != CONFIG_TYPE_STRING)
		return parse_fail(p, s, "'%s' must be a string, not %s", k->name,
		    type_name(config_setting_type(s)));
	if ((copy = strdup(config_setting_get_string(s))) == NULL)
		return parse_fail(p, s, "out of memory");
	free(*field_str(base, k));
	*field_str(base, k) = copy;
	return 0;
}

static int
parse_enum(struct parse *p, const config_setting_t *s, const struct key *k, void *base)
{
	const char *v;
	char allowed[256] = "";

	if (config_setting_type(s) != CONFIG_TYPE_STRING)
		return parse_fail(p, s, "'%s' must be a string, not %s", k->name,
		    type_name(config_setting_type(s)));
	v = config_setting_get_string(s);
	for (const struct key_choice *c = k->choices; c->name != NULL; c++) {
		if (strcmp(c->name, v) == 0) {
			*field_int(base, k) = c->value;
			return 0;
		}
		if (allowed[0] != '\0')
			strncat(allowed, ", ", sizeof(allowed) - strlen(allowed) - 1);
		strncat(allowed, c->name, sizeof(allowed) - strlen(allowed) - 1);
	}
	return parse_fail(p, s, "unknown %s \"%s\" (one of: %s)", k->name, v, allowed);
}

static int
parse_workers(struct parse *p, const config_setting_t *s, const struct key *k, void *base)
{
	if (config_setting_type(s) == CONFIG_TYPE_STRING) {
		if (strcmp(config_setting_get_string(s), "auto") != 0)
			return parse_fail(p, s, "'workers' must be \"auto\" or an integer %lld..%lld",
			    k->min, k->max);
		*field_int(base, k) = 0;
		return 0;
	}
	if (!is_integer(s))
		return parse_fail(p, s, "'workers' must be \"auto\" or an integer %lld..%lld",
		    k->min, k->max);
	return parse_int(p, s, k, base);
}

static int
parse_prefixes(struct parse *p, const config_setting_t *s, const struct key *k, void *base)
{
	struct prefix_list *list = field_prefixes(base, k);
	int n;

	if (config_setting_type(s) != CONFIG_TYPE_ARRAY && config_setting_type(s) != CONFIG_TYPE_LIST)
		return parse_fail(p, s, "'%s' must be an array of \"ADDRESS/PREFIX\" strings, not %s",
		    k->name, type_name(config_setting_type(s)));
	n = config_setting_length(s);
	free(list->v);
	list->n = 0;
	if ((list->v = calloc((size_t)n + 1, sizeof(*list->v))) == NULL)
		return parse_fail(p, s, "out of memory");
	for (int i = 0; i < n; i++) {
		const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
		char err[128];

		if (config_setting_type(e) != CONFIG_TYPE_STRING)
			return parse_fail(p, e, "'%s' entries must be strings like \"10.0.0.0/8\"", k->name);
		if (prefix_parse(config_setting_get_string(e), &list->v[i], err, sizeof(err)) == -1)
			return parse_fail(p, e, "'%s': %s", k->name, err);
		list->n++;
	}
	return 0;
}

static int parse_members(struct parse *p, const config_setting_t *group,
    const struct key *keys, void *base, const char *parent);

static bool
is_array(const config_setting_t *s)
{
	return config_setting_type(s) == CONFIG_TYPE_ARRAY || config_setting_type(s) == CONFIG_TYPE_LIST;
}

/* tls.protocols: [ "TLSv1.2", "TLSv1.3" ], at least one. */
static int
parse_protocols(struct parse *p, const config_setting_t *s, const struct key *k, void *base)
{
	int mask = 0, n;

	if (!is_array(s))
		return parse_fail(p, s, "'%s' must be an array like [ \"TLSv1.2\", \"TLSv1.3\" ], not %s",
		    k->name, type_name(config_setting_type(s)));
	if ((n = config_setting_length(s)) == 0)
		return parse_fail(p, s, "'%s' is empty: name at least one of TLSv1.2, TLSv1.3", k->name);
	for (int i = 0; i < n; i++) {
		const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
		const char *v = config_setting_type(e) == CONFIG_TYPE_STRING ?
		    config_setting_get_string(e) : NULL;
		const struct key_choice *c = k->choices;

		for (; v != NULL && c->name != NULL && strcmp(c->name, v) != 0; c++)
			;
		if (v == NULL || c->name == NULL)
			return parse_fail(p, e, "unknown protocol %s%s%s in '%s' (one of: TLSv1.2, TLSv1.3)",
			    v ? "\"" : "", v ? v : "(not a string)", v ? "\"" : "", k->name);
		mask |= c->value;
	}
	*field_int(base, k) = mask;
	return 0;
}

static int
parse_strings(struct parse *p, const config_setting_t *s, const struct key *k, void *base)
{
	struct cfg_strings *l = field_strings(base, k);
	int n;

	if (!is_array(s))
		return parse_fail(p, s, "'%s' must be an array of strings, not %s", k->name,
		    type_name(config_setting_type(s)));
	n = config_setting_length(s);
	strings_free(l);
	if ((l->v = calloc((size_t)n + 1, sizeof(*l->v))) == NULL)
		return parse_fail(p, s, "out of memory");
	for (int i = 0; i < n; i++) {
		const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);

		if (config_setting_type(e) != CONFIG_TYPE_STRING)
			return parse_fail(p, e, "'%s' entries must be strings", k->name);
		if ((l->v[i] = strdup(config_setting_get_string(e))) == NULL)
			return parse_fail(p, e, "out of memory");
		l->n++;
	}
	return 0;
}

/* tls.certificates: ( { certificate = "..."; key = "..."; }, ... ). */
static int
parse_certs(struct parse *p, const config_setting_t *s, const struct key *k, void *base)
{
	struct cfg_tls_cert **v = field_certs(base, k);
	size_t *nv = field_ncerts(base, k);
	int n;

	if (!is_array(s))
		return parse_fail(p, s, "'%s' must be a list ( { certificate = ...; key = ...; }, ... ), not %s",
		    k->name, type_name(config_setting_type(s)));
	n = config_setting_length(s);
	certs_free(v, nv);
	if ((*v = calloc((size_t)n + 1, sizeof(**v))) == NULL)
		return parse_fail(p, s, "out of memory");
	for (int i = 0; i < n; i++) {
		const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
		struct cfg_tls_cert *c = &(*v)[i];

		if (config_setting_type(e) != CONFIG_TYPE_GROUP)
			return parse_fail(p, e, "each '%s' entry must be a group { certificate = ...; key = ...; }",
			    k->name);
		if (keys_set_defaults(cert_keys, c) == -1)
			return parse_fail(p, e, "out of memory");
		*nv = (size_t)i + 1;  /* from here on certs_free owns its strings */
		c->line = config_setting_source_line(e);
		if (parse_members(p, e, cert_keys, c, "tls.certificates") == -1)
			return -1;
	}
	return 0;
}
static int parse_listen_list(struct parse *p, const config_setting_t *s, struct cfg *cfg);

static int
parse_value(struct parse *p, const config_setting_t *s, const struct key *k, void *base)
{
	switch (k->type) {
	case KT_INT:
		return parse_int(p, s, k, base);
	case KT_BOOL:
		if (config_setting_type(s) != CONFIG_TYPE_BOOL)
			return parse_fail(p, s, "'%s' must be true or false, not %s", k->name,
			    type_name(config_setting_type(s)));
		*field_bool(base, k) = config_setting_get_bool(s) != 0;
		return 0;
	case KT_STRING:
		return parse_string(p, s, k, base);
	case KT_ENUM:
		return parse_enum(p, s, k, base);
	case KT_WORKERS:
		return parse_workers(p, s, k, base);
	case KT_GROUP:
		if (config_setting_type(s) != CONFIG_TYPE_GROUP)
			return parse_fail(p, s, "'%s' must be a group { ... }, not %s", k->name,
			    type_name(config_setting_type(s)));
		return parse_members(p, s, k->members, base, k->name);
	case KT_LISTEN:
		return parse_listen_list(p, s, base);
	case KT_PREFIXES:
		return parse_prefixes(p, s, k, base);
	case KT_PROTOCOLS:
		return parse_protocols(p, s, k, base);
	case KT_STRINGS:
		return parse_strings(p, s, k, base);
	case KT_CERTS:
		return parse_certs(p, s, k, base);
	}
	return -1;
}

static const struct key *
key_find(const struct key *keys, const char *name)
{
	for (const struct key *k = keys; k->name != NULL; k++)
		if (strcmp(k->name, name) == 0)
			return k;
	return NULL;
}

/*
 * Parses every member of a group against a key table; unknown keys are
 * errors. parent names the group in messages ("limits"), NULL at the root.
 */
static int
parse_members(struct parse *p, const config_setting_t *group, const struct key *keys,
    void *base, const char *parent)
{
	int n = config_setting_length(group);

	for (int i = 0; i < n; i++) {
		const config_setting_t *s = config_setting_get_elem(group, (unsigned)i);
		const char *name = config_setting_name(s);
		const struct key *k = key_find(keys, name != NULL ? name : "");

		if (k == NULL)
			return parse_fail(p, s, "unknown setting '%s%s%s'", parent ? parent : "",
			    parent ? "." : "", name != NULL ? name : "");
		if (parse_value(p, s, k, base) == -1)
			return -1;
	}
	for (const struct key *k = keys; k->name != NULL; k++)
		if (k->required && config_setting_get_member(group, k->name) == NULL)
			return parse_fail(p, group, "missing required setting '%s%s%s'",
			    parent ? parent : "", parent ? "." : "", k->name);
	return 0;
}

static int
resolve_listen(struct parse *p, const config_setting_t *s, struct cfg_listen *l)
{
	char err[256];

	if (sock_resolve(l->address, l->port, l->proto == CFG_PROTO_TCP ? SOCK_STREAM : SOCK_DGRAM,
	    &l->addr, &l->addrlen, err, sizeof(err)) == -1)
		return parse_fail(p, s, "%s", err);
	return 0;
}

bool
cfg_listen_same(const struct cfg_listen *a, const struct cfg_listen *b)
{
	return a->proto == b->proto && a->addrlen == b->addrlen &&
	    memcmp(&a->addr, &b->addr, a->addrlen) == 0;
}

/* PROXY settings make sense on a TCP listener with proxy_protocol on, nowhere else. */
static int
check_listen_proxy(struct parse *p, const config_setting_t *s, const struct cfg_listen *l)
{
	const config_setting_t *where;

	if (l->proto == CFG_PROTO_UDP && l->proxy_protocol != CFG_PROXY_OFF)
		return parse_fail(p, config_setting_get_member(s, "proxy_protocol"),
		    "'proxy_protocol' is for tcp listeners only: a datagram carries no header");
	if (l->proxy_protocol == CFG_PROXY_OFF && l->proxy_trusted.n != 0 &&
	    (where = config_setting_get_member(s, "proxy_trusted")) != NULL)
		return parse_fail(p, where, "'proxy_trusted' needs 'proxy_protocol' on this listener");
	return 0;
}

/* Adds a warning line to the configuration's, for the caller to show. */
static void
cfg_warn(struct parse *p, const config_setting_t *where, const char *msg)
{
	struct cfg *cfg = p->cfg;
	size_t old = cfg->warnings != NULL ? strlen(cfg->warnings) : 0;
	const char *file = where && config_setting_source_file(where) ? config_setting_source_file(where) : p->name;
	int line = where ? config_setting_source_line(where) : 1;
	char text[CFG_ERR_LEN];
	int n = snprintf(text, sizeof(text), "%s:%d: warning: %s\n", file, line, msg);
	char *grown = realloc(cfg->warnings, old + (size_t)n + 1);

	if (grown == NULL)
		return;  /* a warning lost to a lack of memory is still only a warning */
	memcpy(grown + old, text, (size_t)n + 1);
	cfg->warnings = grown;
}

/* The setting a tlsctx report is about, for its FILE:LINE. */
static const config_setting_t *
tls_setting(const config_setting_t *tls, const struct cfg_tls *t, enum tlsctx_setting which,
    size_t pair)
{
	static const char *const names[] = {
		[TLSCTX_SET_CERTIFICATE] = "certificate", [TLSCTX_SET_KEY] = "key",
		[TLSCTX_SET_CIPHERS] = "ciphers", [TLSCTX_SET_CIPHERSUITES] = "ciphersuites",
		[TLSCTX_SET_CLIENT_CA] = "client_ca", [TLSCTX_SET_ALPN] = "alpn",
	};
	const config_setting_t *s = tls, *m;
	bool has_default = t->certificate[0] != '\0';

	if (which == TLSCTX_SET_OTHER)
		return tls;
	if ((which == TLSCTX_SET_CERTIFICATE || which == TLSCTX_SET_KEY) &&
	    (!has_default || pair > 0)) {
		const config_setting_t *list = config_setting_get_member(tls, "certificates");
		const config_setting_t *e = list ? config_setting_get_elem(list,
		    (unsigned)(pair - (has_default ? 1 : 0))) : NULL;
		if (e != NULL)
			s = e;
	}
	m = config_setting_get_member(s, names[which]);
	return m != NULL ? m : s;
}

struct tls_warn_arg {
	struct parse *p;
	const config_setting_t *tls;
	const struct cfg_tls *t;
};

static void
tls_warn(void *arg, const struct tlsctx_report *w)
{
	struct tls_warn_arg *a = arg;

	cfg_warn(a->p, tls_setting(a->tls, a->t, w->setting, w->pair), w->msg);
}

/*
 * A tls group: on TCP listeners only (with proxy_protocol, the header
 * comes first in clear, then the handshake), with at least one
 * certificate and its key. Its contexts are built here, so that
 * start, -t and reload refuse the same files.
 */
static int
check_listen_tls(struct parse *p, const config_setting_t *s, struct cfg_listen *l)
{
	const config_setting_t *tls = config_setting_get_member(s, "tls");
	struct cfg_tls *t = &l->tls;
	struct tls_warn_arg wa = { .p = p, .tls = tls, .t = t };
	struct tlsctx_report r;

	if (tls == NULL)
		return 0;
	t->on = true;
	if (l->proto != CFG_PROTO_TCP)
		return parse_fail(p, tls, "'tls' is for tcp listeners only");
	if (t->certificate[0] == '\0' && t->ncerts == 0)
		return parse_fail(p, tls, "'tls' needs 'certificate' and 'key' (or 'certificates')");
	if ((t->certificate[0] == '\0') != (t->key[0] == '\0'))
		return parse_fail(p, tls, "'tls' needs both 'certificate' and 'key', or neither");
	if ((t->ctx = tlsctx_build(t, &r, tls_warn, &wa)) == NULL)
		return parse_fail(p, tls_setting(tls, t, r.setting, r.pair), "%s", r.msg);
	return 0;
}

static int
parse_listen_entry(struct parse *p, const config_setting_t *s, struct cfg *cfg, size_t i)
{
	struct cfg_listen *l = &cfg->listen[i];
	char where[128];

	l->line = config_setting_source_line(s);
	if (config_setting_type(s) != CONFIG_TYPE_GROUP)
		return parse_fail(p, s, "each 'listen' entry must be a group { ... }, not %s",
		    type_name(config_setting_type(s)));
	if (keys_set_defaults(listen_keys, l) == -1)
		return parse_fail(p, s, "out of memory");
	cfg->nlisten = i + 1;  /* from here on cfg_free owns the entry's strings */
	if (parse_members(p, s, listen_keys, l, "listen") == -1 ||
	    check_listen_proxy(p, s, l) == -1 || resolve_listen(p, s, l) == -1 ||
	    check_listen_tls(p, s, l) == -1)
		return -1;
	for (size_t j = 0; j < i; j++) {
		if (cfg_listen_same(&cfg->listen[j], l)) {
			sock_addr_format(&l->addr, where, sizeof(where));
			return parse_fail(p, s, "duplicate listener %s %s (first at line %d)",
			    cfg_proto_name(l->proto), where, cfg->listen[j].line);
		}
	}
	return 0;
}

static int
parse_listen_list(struct parse *p, const config_setting_t *s, struct cfg *cfg)
{
	int n;

	if (config_setting_type(s) != CONFIG_TYPE_LIST && config_setting_type(s) != CONFIG_TYPE_ARRAY)
		return parse_fail(p, s, "'listen' must be a list ( { ... }, ... ), not %s",
		    type_name(config_setting_type(s)));
	n = config_setting_length(s);
	if (n == 0)
		return parse_fail(p, s, "'listen' is empty: at least one listener is needed");
	if ((cfg->listen = calloc((size_t)n, sizeof(*cfg->listen))) == NULL)
		return parse_fail(p, s, "out of memory");
	for (int i = 0; i < n; i++)
		if (parse_listen_entry(p, config_setting_get_elem(s, (unsigned)i), cfg, (size_t)i) == -1)
			return -1;
	return 0;
}

/*
 * user and group matter only when the master runs as root, so they are
 * looked up only then; as anyone else the workers simply keep our identity.
 */
static int
resolve_identity(struct parse *p, const config_t *lc, struct cfg *cfg)
{
	struct passwd *pw;
	struct group *gr;

	cfg->uid = getuid();
	cfg->gid = getgid();
	if (geteuid() != 0)
		return 0;
	/* user is never NULL: keys_set_defaults filled it before parsing. */
	if (cfg->user[0] != '\0') {  // NOLINT(clang-analyzer-core.NullDereference)
		errno = 0;
		if ((pw = getpwnam(cfg->user)) == NULL)
			return parse_fail(p, config_lookup(lc, "user"), "unknown user \"%s\"", cfg->user);
		cfg->uid = pw->pw_uid;
		cfg->gid = pw->pw_gid;
	}
	if (cfg->group[0] != '\0') {
		if ((gr = getgrnam(cfg->group)) == NULL)
			return parse_fail(p, config_lookup(lc, "group"), "unknown group \"%s\"", cfg->group);
		cfg->gid = gr->gr_gid;
	}
	return 0;
}

static int
resolve_workers(struct cfg *cfg)
{
	long n;

	cfg->workers_auto = cfg->workers == 0;
	if (!cfg->workers_auto)
		return 0;
	n = sysconf(_SC_NPROCESSORS_ONLN);
	if (n < 1)
		n = 1;
	cfg->workers = n > CFG_WORKERS_MAX ? CFG_WORKERS_MAX : (int)n;
	return 0;
}

/*
 * The instance name: name as written, or the host name when it is "".
 * Resolved here, in the master at load and reload, so every worker of a
 * generation says the same.
 */
static int
resolve_names(struct parse *p, const config_t *lc, struct cfg *cfg)
{
	if (gethostname(cfg->hostname, sizeof(cfg->hostname)) == -1)
		snprintf(cfg->hostname, sizeof(cfg->hostname), "localhost");
	cfg->hostname[sizeof(cfg->hostname) - 1] = '\0';
	if (strlen(cfg->name) >= sizeof(cfg->instance))
		return parse_fail(p, config_lookup(lc, "name"), "'name' is longer than %zu bytes",
		    sizeof(cfg->instance) - 1);
	for (const char *c = cfg->name; *c != '\0'; c++)
		if (*c <= ' ' || *c > '~' || *c == '"' || *c == '\\')
			return parse_fail(p, config_lookup(lc, "name"),
			    "'name' may hold printable ASCII only, without spaces, quotes or backslashes");
	snprintf(cfg->instance, sizeof(cfg->instance), "%s",
	    cfg->name[0] != '\0' ? cfg->name : cfg->hostname);
	return 0;
}

/* Turns a parsed libconfig tree into a validated struct cfg. */
static struct cfg *
cfg_build(struct parse *p, const config_t *lc, const char *path)
{
	struct cfg *cfg;

	if ((p->cfg = cfg = calloc(1, sizeof(*cfg))) == NULL ||
	    keys_set_defaults(root_keys, cfg) == -1 ||
	    (cfg->path = strdup(path)) == NULL) {
		parse_fail(p, NULL, "out of memory");
		cfg_free(cfg);
		return NULL;
	}
	if (parse_members(p, config_root_setting(lc), root_keys, cfg, NULL) == -1 ||
	    resolve_identity(p, lc, cfg) == -1 || resolve_workers(cfg) == -1 ||
	    resolve_names(p, lc, cfg) == -1) {
		cfg_free(cfg);
		return NULL;
	}
	return cfg;
}

static void
libconfig_error(struct parse *p, const config_t *lc)
{
	const char *file = config_error_file(lc) ? config_error_file(lc) : p->name;

	if (config_error_type(lc) == CONFIG_ERR_FILE_IO)
		snprintf(p->err, CFG_ERR_LEN, "%s:0: cannot read the file: %s", p->name,
		    strerror(errno ? errno : EIO));
	else
		snprintf(p->err, CFG_ERR_LEN, "%s:%d: %s", file, config_error_line(lc),
		    config_error_text(lc));
}

/* Reads with libconfig's file or string reader (same signature), then builds. */
static struct cfg *
cfg_parse(const char *name, int (*reader)(config_t *, const char *), const char *source,
    char err[CFG_ERR_LEN])
{
	struct parse p = { .name = name, .err = err };
	struct cfg *cfg = NULL;
	config_t lc;

	config_init(&lc);
	errno = 0;
	if (reader(&lc, source) == CONFIG_FALSE)
		libconfig_error(&p, &lc);
	else
		cfg = cfg_build(&p, &lc, name);
	config_destroy(&lc);
	return cfg;
}

struct cfg *
cfg_load(const char *path, char err[CFG_ERR_LEN])
{
	return cfg_parse(path, config_read_file, path, err);
}

struct cfg *
cfg_load_string(const char *name, const char *text, char err[CFG_ERR_LEN])
{
	return cfg_parse(name, config_read_string, text, err);
}

void
cfg_free(struct cfg *cfg)
{
	if (cfg == NULL)
		return;
	for (size_t i = 0; i < cfg->nlisten; i++) {
		tlsctx_free(cfg->listen[i].tls.ctx);
		keys_free_owned(listen_keys, &cfg->listen[i]);
	}
	free(cfg->listen);
	free(cfg->warnings);
	keys_free_owned(root_keys, cfg);
	free(cfg->path);
	free(cfg);
}

void
cfg_log_warnings(const struct cfg *cfg)
{
	for (const char *at = cfg->warnings; at != NULL && *at != '\0'; ) {
		size_t len = strcspn(at, "\n");

		log_warnx("%.*s", (int)len, at);
		at += len + (at[len] == '\n');
	}
}

static void
dump_string(FILE *out, const char *s)
{
	fputc('"', out);
	for (; *s != '\0'; s++) {
		if (*s == '"' || *s == '\\')
			fputc('\\', out);
		fputc(*s, out);
	}
	fputc('"', out);
}

static void
dump_prefixes(FILE *out, const struct prefix_list *l)
{
	fputc('[', out);
	for (size_t i = 0; i < l->n; i++) {
		char text[PREFIX_TEXT_LEN];
		prefix_format(&l->v[i], text);
		fprintf(out, "%s\"%s\"", i ? ", " : " ", text);
	}
	fputs(l->n ? " ]" : "]", out);
}

static void
dump_protocols(FILE *out, const struct key_choice *choices, int mask)
{
	int i = 0;

	fputc('[', out);
	for (const struct key_choice *c = choices; c->name != NULL; c++)
		if (mask & c->value)
			fprintf(out, "%s\"%s\"", i++ ? ", " : " ", c->name);
	fputs(" ]", out);
}

static void
dump_strings(FILE *out, const struct cfg_strings *l)
{
	fputc('[', out);
	for (size_t i = 0; i < l->n; i++) {
		fputs(i ? ", " : " ", out);
		dump_string(out, l->v[i]);
	}
	fputs(l->n ? " ]" : "]", out);
}

/* The paths only: never what the files hold. */
static void
dump_certs(FILE *out, const struct cfg_tls *t)
{
	fputc('(', out);
	for (size_t i = 0; i < t->ncerts; i++) {
		fputs(i ? ", { certificate = " : " { certificate = ", out);
		dump_string(out, t->certs[i].certificate);
		fputs("; key = ", out);
		dump_string(out, t->certs[i].key);
		fputs("; }", out);
	}
	fputs(t->ncerts ? " )" : ")", out);
}

static void
dump_value(FILE *out, const struct key *k, const void *base, const struct cfg *cfg)
{
	const char *b = base;

	switch (k->type) {
	case KT_INT:
		fprintf(out, "%d", *(const int *)(b + k->offset));
		break;
	case KT_BOOL:
		fputs(*(const bool *)(b + k->offset) ? "true" : "false", out);
		break;
	case KT_STRING:
		dump_string(out, *(char *const *)(b + k->offset));
		break;
	case KT_ENUM:
		dump_string(out, choice_name(k->choices, *(const int *)(b + k->offset)));
		break;
	case KT_WORKERS:
		if (cfg->workers_auto)
			fputs("\"auto\"", out);
		else
			fprintf(out, "%d", cfg->workers);
		break;
	case KT_PREFIXES:
		dump_prefixes(out, (const struct prefix_list *)(b + k->offset));
		break;
	case KT_PROTOCOLS:
		dump_protocols(out, k->choices, *(const int *)(b + k->offset));
		break;
	case KT_STRINGS:
		dump_strings(out, (const struct cfg_strings *)(b + k->offset));
		break;
	case KT_CERTS:
		dump_certs(out, (const struct cfg_tls *)(b + k->offset - offsetof(struct cfg_tls, certs)));
		break;
	case KT_GROUP:
	case KT_LISTEN:
		break;
	}
}

static void
dump_members(FILE *out, const struct key *keys, const void *base, const struct cfg *cfg,
    const char *sep)
{
	for (const struct key *k = keys; k->name != NULL; k++) {
		if (k->type == KT_GROUP || k->type == KT_LISTEN)
			continue;
		fprintf(out, "%s = ", k->name);
		dump_value(out, k, base, cfg);
		fputs(sep, out);
	}
}

void
cfg_dump(const struct cfg *cfg, FILE *out)
{
	fprintf(out, "# effective configuration of %s\n", cfg->path);
	dump_members(out, root_keys, cfg, cfg, ";\n");
	for (const struct key *k = root_keys; k->name != NULL; k++) {
		if (k->type != KT_GROUP)
			continue;
		fprintf(out, "%s = { ", k->name);
		dump_members(out, k->members, cfg, cfg, "; ");
		fputs("};\n", out);
	}
	fputs("listen = (\n", out);
	for (size_t i = 0; i < cfg->nlisten; i++) {
		fputs("  { ", out);
		dump_members(out, listen_keys, &cfg->listen[i], cfg, "; ");
		if (cfg->listen[i].tls.on) {
			fputs("tls = { ", out);
			dump_members(out, tls_keys, &cfg->listen[i], cfg, "; ");
			fputs("}; ", out);
		}
		fprintf(out, "}%s\n", i + 1 < cfg->nlisten ? "," : "");
	}
	fputs(");\n", out);
}

/* The I-th restart-only key, at the root or in a group, and its dotted name; NULL past the last. */
static const struct key *
restart_only_key(size_t i, char name[CFG_NAME_LEN])
{
	for (const struct key *k = root_keys; k->name != NULL; k++) {
		if (k->type != KT_GROUP) {
			if (k->restart_only && i-- == 0) {
				snprintf(name, CFG_NAME_LEN, "%s", k->name);
				return k;
			}
			continue;
		}
		for (const struct key *m = k->members; m->name != NULL; m++) {
			if (m->restart_only && i-- == 0) {
				snprintf(name, CFG_NAME_LEN, "%s.%s", k->name, m->name);
				return m;
			}
		}
	}
	return NULL;
}

const char *
cfg_restart_only_name(size_t i, char name[CFG_NAME_LEN])
{
	return restart_only_key(i, name) != NULL ? name : NULL;
}

/* Whether two configurations agree on one scalar key (what restart_only may mark). */
static bool
key_same(const struct key *k, const struct cfg *a, const struct cfg *b)
{
	const char *va = (const char *)a + k->offset, *vb = (const char *)b + k->offset;

	switch (k->type) {
	case KT_INT:
	case KT_ENUM:
	case KT_WORKERS:
		return *(const int *)va == *(const int *)vb;
	case KT_BOOL:
		return *(const bool *)va == *(const bool *)vb;
	case KT_STRING:
		return strcmp(*(char *const *)va, *(char *const *)vb) == 0;
	case KT_GROUP:
	case KT_LISTEN:
	case KT_PREFIXES:
	case KT_PROTOCOLS:
	case KT_STRINGS:
	case KT_CERTS:
		break;
	}
	return true;  /* not a scalar: never marked restart_only */
}

/* The value as -T writes it, so the log shows what the file would say; cut to fit. */
static void
key_text(const struct key *k, const struct cfg *cfg, char text[CFG_VALUE_LEN])
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	if (f == NULL) {
		snprintf(text, CFG_VALUE_LEN, "?");
		return;
	}
	dump_value(f, k, cfg, cfg);
	if (fclose(f) != 0 || buf == NULL)
		snprintf(text, CFG_VALUE_LEN, "?");
	else if (snprintf(text, CFG_VALUE_LEN, "%s", buf) >= CFG_VALUE_LEN)
		memcpy(text + CFG_VALUE_LEN - 4, "...", 4);
	free(buf);
}

size_t
cfg_restart_only_changes(const struct cfg *cur, const struct cfg *next,
    struct cfg_change *out, size_t max)
{
	char name[CFG_NAME_LEN];
	const struct key *k;
	size_t n = 0;

	for (size_t i = 0; (k = restart_only_key(i, name)) != NULL; i++) {
		if (key_same(k, cur, next))
			continue;
		if (n < max) {
			memcpy(out[n].name, name, sizeof(out[n].name));
			key_text(k, cur, out[n].kept);
		}
		n++;
	}
	return n;
}
