/*
 * cfg: the configuration, parsed once from a libconfig file into an immutable
 * struct cfg. A reload builds a whole new struct and swaps it in; nothing
 * ever edits a loaded one. Every key is described once, in the tables of
 * cfg.c: name, type, default, bounds, and whether a reload may change it.
 * The parser, the -T dump, the defaults, the reload's warnings and the
 * restart-only list of echomaster.conf(5) (make man) all follow those tables.
 */
#ifndef EM_CFG_H
#define EM_CFG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "common/prefix.h"

#define CFG_DEFAULT_PATH "/etc/echomaster/echomaster.conf"
#define CFG_WORKERS_MAX  1024
#define CFG_ERR_LEN      512
#define CFG_NAME_LEN     64   /* a dotted setting name: "metrics.address" */
#define CFG_VALUE_LEN    256  /* a setting's value as text; longer ones end in "..." */

enum cfg_proto { CFG_PROTO_TCP, CFG_PROTO_UDP };

enum cfg_mode { CFG_MODE_UPPER, CFG_MODE_ECHO, CFG_MODE_WHOAMI };

/* proxy_protocol: which PROXY protocol header a TCP listener requires (worker/proxy.h). */
enum cfg_proxy { CFG_PROXY_OFF = 0, CFG_PROXY_V1 = 1, CFG_PROXY_V2 = 2, CFG_PROXY_ANY = 3 };

/* tls.protocols: a bit per version a TLS listener accepts. */
#define CFG_TLS_V12 0x1
#define CFG_TLS_V13 0x2

/* An array of strings as written (tls.alpn). */
struct cfg_strings {
	char **v;
	size_t n;
};

/* One certificate and its key (tls.certificate and tls.key, or an entry of tls.certificates). */
struct cfg_tls_cert {
	char *certificate;
	char *key;
	int line;                     /* where it was defined, for messages */
};

struct tlsctx;

/*
 * A TCP listener's tls group. The contexts (ctx, common/tlsctx.h) are
 * built by cfg_load from the files named here, in the master, before
 * any fork: the workers inherit them and never open a file.
 */
struct cfg_tls {
	bool on;                      /* the listener has a tls group */
	char *certificate;            /* the default pair; "" when only certificates is given */
	char *key;
	struct cfg_tls_cert *certs;   /* certificates = ( ... ): chosen by SNI; the first is the default when certificate is "" */
	size_t ncerts;
	int protocols;                /* CFG_TLS_V12 | CFG_TLS_V13 */
	char *ciphers;                /* TLS 1.2; "" = OpenSSL's default */
	char *ciphersuites;           /* TLS 1.3; "" = OpenSSL's default */
	char *client_ca;              /* "" = no client certificate asked for */
	struct cfg_strings alpn;      /* accepted protocols, our preference first; empty = no ALPN */
	struct tlsctx *ctx;           /* built at load; freed by cfg_free */
};

/* Room for the instance name and the host name, NUL included. */
#define CFG_HOSTNAME_LEN 256

struct cfg_listen {
	int proto;                    /* enum cfg_proto */
	int mode;                     /* enum cfg_mode */
	char *address;                /* as written: "*", "::", a literal or a name */
	int port;
	struct sockaddr_storage addr; /* resolved at load time */
	socklen_t addrlen;
	struct prefix_list allow;     /* checked first: a match admits the client */
	struct prefix_list deny;      /* then: a match refuses it; no match admits */
	int proxy_protocol;           /* enum cfg_proxy; TCP only */
	struct prefix_list proxy_trusted; /* who may send the header; empty = any source */
	struct cfg_tls tls;           /* TCP only */
	int line;                     /* where it was defined, for messages */
};

struct cfg {
	char *path;
	int workers;          /* resolved: "auto" became the online CPU count */
	bool workers_auto;
	bool daemon;
	char *pid_file;       /* "" = none */
	char *user;           /* "" = do not change */
	char *group;
	uid_t uid;            /* resolved when started as root and user is set */
	gid_t gid;
	int shutdown_timeout;
	int worker_timeout;   /* seconds without a heartbeat before a worker is killed; 0 = off */
	int log_facility;     /* LOG_DAEMON... */
	int log_level;        /* LOG_ERR...LOG_DEBUG */
	bool log_stderr;
	int max_connections;  /* per worker */
	int idle_timeout;     /* seconds, 0 = none */
	int min_rate;         /* bytes/s a client must send for its connection to count as active; 0 = off */
	int max_per_address;  /* TCP connections from one client address, whole daemon; 0 = none */
	int udp_rate;         /* datagrams a second answered per source address; 0 = no limit */
	int udp_burst;        /* token bucket depth for udp_rate */
	int proxy_timeout;    /* seconds a PROXY listener waits for the header */
	int handshake_timeout;/* seconds a TLS listener waits for the handshake to complete */
	char *name;           /* as written; "" = the host name */
	char instance[CFG_HOSTNAME_LEN]; /* name, resolved at load: whoami, status, metrics */
	char hostname[CFG_HOSTNAME_LEN]; /* gethostname() at load */
	char *control_socket; /* "" = none */
	char *metrics_address;/* "" = no /metrics listener */
	int metrics_port;
	char *agent_address;  /* "" = no HAProxy agent listener */
	int agent_port;
	int drain_delay;      /* seconds a graceful stop reports drain before it stops accepting */
	int max_draining;     /* draining worker generations alive at once */
	int crash_loop_deaths;/* start-up deaths within crash_loop_window that park a slot */
	int crash_loop_window;/* seconds */
	bool stop_graceful;   /* TERM drains like QUIT (docker stop) */
	bool reload_handover; /* reload and TTOU move connections to the new workers instead of draining */
	bool sandbox;         /* workers confine themselves: no_new_privs, Landlock, seccomp */
	size_t nlisten;
	struct cfg_listen *listen;
	char *warnings;       /* "FILE:LINE: warning: ...\n" lines (an expired certificate); NULL = none */
};

/*
 * Loads and validates PATH. On success returns a new struct the caller owns
 * (free with cfg_free). On failure returns NULL and writes "FILE:LINE: message"
 * into err.
 */
struct cfg *cfg_load(const char *path, char err[CFG_ERR_LEN]);

/* Same, from a string; name is what messages call the file. For tests and fuzzing. */
struct cfg *cfg_load_string(const char *name, const char *text, char err[CFG_ERR_LEN]);

void cfg_free(struct cfg *cfg);

/* Logs cfg->warnings, a line each (log_warnx); the caller decides when. */
void cfg_log_warnings(const struct cfg *cfg);

/* Prints the effective configuration, defaults filled in, in libconfig syntax. */
void cfg_dump(const struct cfg *cfg, FILE *out);

/* "tcp"/"udp", "upper"/"echo"/"whoami". */
const char *cfg_proto_name(int proto);
const char *cfg_mode_name(int mode);

/* True when two listeners are the same socket: protocol, address and port. */
bool cfg_listen_same(const struct cfg_listen *a, const struct cfg_listen *b);

/*
 * Restart-only settings are those a reload cannot change: the master acts
 * on them once, at start-up (it detaches, locks the pid file, binds the
 * control socket and the metrics listener), and nothing a new generation
 * of workers does acts on them again. Only the key table says which they
 * are; the two functions below are how the master and the man page learn.
 *
 * Writes the dotted name ("metrics.port") of the I-th restart-only setting,
 * in table order, into name and returns it; NULL past the last one. The
 * man page's list is generated from this (man/mangen.c) and checked
 * against it (tests/unit/test_man.c).
 */
const char *cfg_restart_only_name(size_t i, char name[CFG_NAME_LEN]);

/* Room for every restart-only setting at once (test_cfg checks the table keeps to it). */
#define CFG_RESTART_ONLY_MAX 12

/* A restart-only setting that a reloaded file changes. */
struct cfg_change {
	char name[CFG_NAME_LEN];    /* dotted: "pid_file", "metrics.port" */
	char kept[CFG_VALUE_LEN];   /* CUR's value, the one still used, as -T writes it */
};

/*
 * Compares the restart-only settings of the running configuration CUR with
 * those of NEXT, a reload's, and fills out[0..max) with those that differ,
 * in table order. Returns how many differ, which may be more than max
 * (only max are filled). Reports only: logging is the caller's business.
 */
size_t cfg_restart_only_changes(const struct cfg *cur, const struct cfg *next,
    struct cfg_change *out, size_t max);

#endif
