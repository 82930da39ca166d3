/*
 * harness.h: shared helpers for the echomaster black-box tests.
 *
 * Each test owns one struct env: a private mkdtemp directory holding the
 * config, the daemon's stderr log and its pid file, and the daemon the test
 * started. env_teardown() kills and reaps whatever is still running and
 * removes the directory, so a failed assertion never leaves a process behind.
 *
 * Synchronisation is always "poll a condition until a deadline": waiting
 * for the control socket's status (when the config has one) or a log line,
 * a TCP connect, a set of worker processes, an exit. The
 * short naps inside those loops are poll intervals, never the thing a test
 * relies on. Deadlines are generous because the suite must pass on a loaded
 * 2-core machine; every loop is bounded by one.
 *
 * Helpers that say "fails the test" call cmocka's fail() themselves, after
 * printing what they waited for and the tail of the daemon's log; the
 * others return 0 / -1 (or a length) and leave judging to the caller.
 */
#ifndef EM_TESTS_HARNESS_H
#define EM_TESTS_HARNESS_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdbool.h>
#include <limits.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <cmocka.h>
#include <openssl/ssl.h>

/* How long any single awaited condition may take before the test fails. */
#define EM_DEADLINE_MS 20000
/* Poll interval of the wait loops: short enough not to slow the suite,
 * long enough not to burn a core the daemon needs on a 2-core machine. */
#define EM_POLL_NAP_MS 20

#define EM_MAX_LISTENERS 8
#define EM_MAX_WORKERS   64

/* The daemon's process titles (INTERFACE.md, "Process titles"). */
#define EM_TITLE_WORKER   "echomaster: worker process"
#define EM_TITLE_DRAINING "echomaster: worker process is shutting down"
#define EM_TITLE_MASTER   "echomaster: master process "

struct em_listener {
	const char	*proto;		/* "tcp" or "udp" */
	const char	*address;	/* "127.0.0.1" unless a test says otherwise */
	const char	*mode;		/* "upper" or "echo" */
	int		 port;
};

/* What env_write_conf() renders; conf_init() gives test-friendly defaults. */
struct em_conf {
	int			 workers;
	int			 shutdown_timeout;
	int			 idle_timeout;	/* -1: not written */
	bool			 no_pid_file;
	bool			 daemonize;	/* daemon = true */
	const char		*level;		/* log.level; NULL: "info" */
	const char		*user;		/* NULL: not written */
	const char		*group;		/* NULL: not written */
	const char		*extra;		/* settings put before listen, NULL: none */
	size_t			 nlisten;
	struct em_listener	 listen[EM_MAX_LISTENERS];
};

/* A worker the harness has seen, so teardown can kill it even after its
 * master is gone (start time guards against pid reuse). */
struct em_known_pid {
	pid_t			 pid;
	unsigned long long	 start;
};

#define EM_MAX_KNOWN 256

struct env {
	char		 dir[PATH_MAX];		/* mkdtemp, removed by teardown */
	char		 conf_path[PATH_MAX];	/* the config passed with -c */
	char		 log_path[PATH_MAX];	/* the daemon's stderr */
	char		 out_path[PATH_MAX];	/* the daemon's stdout */
	char		 pid_path[PATH_MAX];	/* pid_file in the config */
	char		 ctl_path[PATH_MAX];	/* control_socket, "" if none */
	pid_t		 master;		/* 0 when no daemon was started */
	bool		 reaped;		/* master exited and was waited for */
	int		 status;		/* its wait status once reaped */
	const void	*arg;			/* cmocka prestate, for table tests */
	pid_t		 helper;		/* a non-daemon child a test made */
	rlim_t		 nofile;		/* env_start: RLIMIT_NOFILE, 0 = inherit */
	pid_t		 detached;		/* a master that daemonized */
	unsigned long long detached_start;
	bool		 crashes_expected;	/* skip teardown's crash check */
	char		 files[4][PATH_MAX];	/* env_file()'s ring of results */
	unsigned	 nfiles;
	struct em_known_pid known[EM_MAX_KNOWN];
	size_t		 nknown;
};

/* cmocka fixtures: create the env (taking *state as env->arg), and destroy
 * it: kill and reap the daemon's process group, remove the directory.
 * Teardown fails the test if the daemon's log reports a sanitizer error or
 * a worker that crashed (SIGSEGV, SIGABRT, ...). */
int	 env_setup(void **state);
int	 env_teardown(void **state);

/* Absolute path of the daemon: $ECHOMASTER, else build/echomaster. */
const char *em_binary(void);

/* Time and the poll interval used inside every wait loop. */
int64_t	 now_ms(void);
void	 nap_ms(int ms);
/* Naps until CLOCK_MONOTONIC is frac_ms into a second (at most a second).
 * Not synchronisation: it picks when a test acts, so that a daemon that
 * rounds a deadline to whole seconds shows it every time, not by chance. */
void	 clock_align_ms(int frac_ms);

/* A port that is free for both TCP and UDP on 127.0.0.1; ports_pick() gives
 * n distinct ones. Fails the test if none is found in a bounded number of
 * tries. */
int	 port_pick(void);
void	 ports_pick(int *ports, size_t n);
/* A listening TCP socket of the test's own on 127.0.0.1:port, to make the
 * daemon's bind fail. Fails the test. */
int	 port_occupy(int port);

/* Config rendering. conf_init: workers as given, shutdown_timeout 20,
 * pid_file in the env dir, no listeners; conf_listen appends one. */
void	 conf_init(struct em_conf *c, int workers);
void	 conf_listen(struct em_conf *c, const char *proto, int port,
	    const char *mode);
/* Adds a tcp and a udp listener on the same port. */
void	 conf_listen_pair(struct em_conf *c, int port, const char *mode);
/* The rendered config text (malloc'd), one setting per line: line 1 a
 * comment, 2 workers, 3 daemon, 4 pid_file, 5 shutdown_timeout, 6 log,
 * then user, group and limits when set, then extra as given, then
 * "listen = (" and one listener per line. Workers <= 0 renders "auto". */
char	*env_conf_text(const struct env *e, const struct em_conf *c);
/* Writes env->conf_path atomically (temp file + rename), so a reload never
 * reads half a file. */
void	 env_write_conf(struct env *e, const struct em_conf *c);
void	 env_write_conf_at(struct env *e, const char *path,
	    const struct em_conf *c);
void	 env_write_conf_text(struct env *e, const char *text);
void	 file_write(const char *path, const char *text);
/* A path inside the env dir; the result lives in the env and stays valid
 * for the next three calls. */
const char *env_file(struct env *e, const char *name);
/* Reads a whole file into a NUL-terminated malloc'd buffer, NULL if absent. */
char	*file_read(const char *path, size_t *len);
/* Replaces every "PORT" in text by port; returns a malloc'd string. */
char	*text_with_port(const char *text, int port);
/* Replaces every `from` in text by `to`; returns a malloc'd string. Fails
 * the test if `from` does not occur. */
char	*text_replace(const char *text, const char *from, const char *to);

/* Starts `ECHOMASTER -F -c conf_path` in its own process group, stdout and
 * stderr to files in the env dir; returns the master's pid. */
pid_t	 env_start(struct env *e);
/* env_start, then waits until generation 1 serves with N workers, and for a
 * TCP connect to port to succeed (port 0: skip the connect). With a control
 * socket (env_control_socket) it asks status-json (env_wait_serving);
 * without, it waits for the log's "ready: N workers, generation 1". Fails
 * the test. */
pid_t	 env_start_ready(struct env *e, int workers, int port);
void	 env_signal(struct env *e, int sig);
/* Non-blocking check: true once the master has exited (and reaps it). */
bool	 env_exited(struct env *e);
/* Waits for the master to exit; returns its wait status. Fails the test on
 * timeout. */
int	 env_wait_exit(struct env *e, int timeout_ms);
/* SIGKILL to the daemon's process group, then reap the master. */
void	 env_kill(struct env *e);

/* The daemon's log. env_log_size() is an offset for env_wait_log_from(). */
char	*env_log(struct env *e);
/* How many times NEEDLE appears in the daemon's log so far. */
size_t	 env_log_count(struct env *e, const char *needle);
size_t	 env_log_size(struct env *e);
bool	 env_log_has(struct env *e, const char *needle);
/* Waits until the log, from offset on, contains needle. Fails the test on
 * timeout or if the master exits meanwhile. Returns the offset just past the
 * first match. */
size_t	 env_wait_log_from(struct env *e, size_t offset, const char *needle,
	    int timeout_ms);
size_t	 env_wait_log(struct env *e, const char *needle, int timeout_ms);
/* Offset just past needle in the log at or after offset, 0 if absent. */
size_t	 env_log_find(struct env *e, size_t offset, const char *needle);
/* Prints the last part of the log on stderr, for failure reports. */
void	 env_dump_log(struct env *e);
/* The whole log line containing needle (malloc'd), or NULL. */
char	*env_log_line(struct env *e, const char *needle);

/* The control socket. env_control_socket: the path for a test's config to
 * name as control_socket (in the env dir), recorded in e->ctl_path so that
 * readiness waits ask the master from then on. */
const char *env_control_socket(struct env *e);
/* Sends cmd ("status-json", "reload", ...) as `echomaster -s` does and reads
 * the answer to EOF within timeout_ms: 0 for "ok", 1 for "error", the body
 * after the first line in *body (malloc'd) unless body is NULL; -1 with
 * errno when the master cannot be reached or does not answer in time. */
int	 env_control(struct env *e, const char *cmd, char **body,
	    int timeout_ms);
/* Polls status-json until the master serves generation G with N worker
 * slots and N workers of generation G are in state "serving" (older
 * generations may still drain). Fails the test on timeout or if the master
 * exits, printing the log and the last status. */
void	 env_wait_serving(struct env *e, unsigned generation, int workers,
	    int timeout_ms);

/* One status-json answer, parsed: the master's figures and each worker's
 * (serving, starting and draining ones alike; a worker leaves the list once
 * the master has reaped it). */
struct em_status_worker {
	pid_t		 pid;
	unsigned	 generation;
	int		 slot;
	char		 state[16];	/* "serving", "draining", ... */
	uint64_t	 active;
	uint64_t	 accepted;
	uint64_t	 refused;
	uint64_t	 refused_acl;
	uint64_t	 moved_out;
	uint64_t	 moved_in;
	uint64_t	 moves_failed;
	bool		 sandboxed;	/* it runs in its sandbox */
};

struct em_status {
	unsigned		 generation;	/* the serving generation */
	int			 workers;	/* its slots */
	int			 draining_generations;
	size_t			 n;
	struct em_status_worker	 w[EM_MAX_WORKERS * 2];
};

/* Asks status-json and parses it into *st: 0, or -1 when the master cannot
 * be reached or the answer lacks a field (a missing per-worker counter is
 * an error too, so a test cannot pass on a daemon that does not count). */
int	 env_status(struct env *e, struct em_status *st, int timeout_ms);
/* The worker with that pid in *st, NULL if absent. */
const struct em_status_worker *status_worker(const struct em_status *st,
	    pid_t pid);
/* Workers of generation gen in *st (gen 0: of any generation older than
 * the serving one). */
size_t	 status_count_gen(const struct em_status *st, unsigned gen);
/* The sum over the workers of generation gen (0: of every generation) of
 * one counter, named by its offset: offsetof(struct em_status_worker, active). */
uint64_t status_gen_sum(const struct em_status *st, unsigned gen, size_t counter);

/* Waits until status-json lists no worker older than the serving
 * generation (a worker is listed until it is reaped, and the totals count
 * it until then); returns how long after t0 that was seen. Fails the test
 * after timeout_ms, printing the log. */
int64_t	 env_wait_old_gone(struct env *e, int64_t t0, int timeout_ms);

/* The "totals" counter name from status-json; fails the test when the
 * master does not answer or the counter is missing. */
uint64_t env_total(struct env *e, const char *name);
/* Polls the totals until name reaches want (counters are published within
 * a loop turn); fails the test when it ends anywhere else. */
void	 env_total_wait(struct env *e, const char *name, uint64_t want);
/* `echomaster -c CONF -s CMD [OPT]` (opt may be NULL): its exit status,
 * its output in *out (malloc'd) unless out is NULL. */
int	 env_ctl(struct env *e, const char *cmd, const char *opt, char **out);
/* Plays systemd's notify socket: binds a datagram socket at the env's
 * notify.sock, its path in path, and returns it. */
int	 env_notify_open(struct env *e, char *path, size_t len);
/* Waits for a datagram on fd that contains needle and returns it (a static
 * buffer, printed); fails the test when none comes in time. */
const char *env_notify_wait(int fd, const char *needle);

/* /proc/PID/stat: the fields tests look at. */
struct proc_info {
	char			 state;		/* R, S, Z, ... */
	pid_t			 ppid;
	pid_t			 pgrp;
	unsigned long long	 utime;		/* clock ticks */
	unsigned long long	 stime;
	unsigned long long	 start;		/* starttime: tells reused pids apart */
};
int	 proc_info(pid_t pid, struct proc_info *pi);

/* /proc inspection. proc_title: the cmdline with NULs as spaces and trailing
 * blanks trimmed, the way ps -o args shows it. */
int	 proc_title(pid_t pid, char *buf, size_t len);
/* Children of ppid whose title is exactly title (any title if NULL),
 * sorted; returns how many (at most max stored; pids may be NULL to only
 * count). Zombies are left out. */
size_t	 proc_children(pid_t ppid, const char *title, pid_t *pids, size_t max);
/* Alive means: exists, is not a zombie, and has the same start time as when
 * proc_start_time() was read (guards against pid reuse). */
unsigned long long proc_start_time(pid_t pid);
bool	 proc_alive(pid_t pid, unsigned long long start_time);
/* Waits until the master has exactly n children titled EM_TITLE_WORKER and
 * none titled EM_TITLE_DRAINING; stores them sorted in pids. Fails the test
 * on timeout. */
void	 env_wait_workers(struct env *e, size_t n, pid_t *pids,
	    int timeout_ms);
/* The same for another master than the one the test started (a live
 * upgrade's new master, say), whose workers teardown then knows too. */
void	 env_wait_workers_of(struct env *e, pid_t master, size_t n,
	    pid_t *pids, int timeout_ms);
bool	 pids_contain(const pid_t *pids, size_t n, pid_t pid);
/* Whether sig is pending (not yet delivered or read from a signalfd) for
 * the process, from SigPnd/ShdPnd in /proc/PID/status. */
bool	 proc_signal_pending(pid_t pid, int sig);
/* Kills workers seen earlier (by env_wait_workers) that outlived their
 * master, but only if they are still the same processes and still in the
 * daemon's process group. For teardown. */
void	 proc_kill_known(struct env *e);
/* Records a master that detached itself (daemon = true): not our child, so
 * teardown kills it, and its workers, by pid if it is still alive. */
void	 env_adopt_detached(struct env *e, pid_t pid);
/* Forks a child that only waits to be killed (it dies with the test too);
 * stored in e->helper so teardown kills and reaps it. */
pid_t	 env_spawn_helper(struct env *e);

/* TCP clients. All sockets are non-blocking; every call is bounded by its
 * timeout. tcp_connect returns the fd, or -1 with errno set (ECONNREFUSED
 * when nothing listens, ETIMEDOUT when the deadline passes). */
int	 tcp_connect(int port, int timeout_ms);
/* The same to a numeric IPv4 or IPv6 address, e.g. "::1". */
int	 tcp_connect_to(const char *ip, int port, int timeout_ms);
/* Waits until a connect to port succeeds. Fails the test. */
void	 tcp_wait_listening(int port, int timeout_ms);
/* Waits until a connect to port is refused. Fails the test. */
void	 tcp_wait_refused(int port, int timeout_ms);
int	 tcp_send_all(int fd, const void *buf, size_t len, int timeout_ms);
/* Reads until len bytes, EOF or the timeout; returns the bytes read, or -1
 * on a socket error. */
ssize_t	 tcp_read_exact(int fd, void *buf, size_t len, int timeout_ms);
/* 0 once the peer closed with nothing more to read; -1 on extra data, error
 * or timeout. */
int	 tcp_wait_eof(int fd, int timeout_ms);
/* Connects, sends msg and reads len bytes back, checked against expect
 * unless it is NULL; returns the open connection. Fails the test. */
int	 tcp_open_echoed(int port, const void *msg, size_t len,
	    const void *expect);
/* Connects, sends msg, expects exactly `expect` back, closes. Fails the
 * test, saying what arrived. */
void	 tcp_roundtrip(int port, const void *msg, size_t len,
	    const void *expect);

/* UDP: sends the datagram from a socket connected to 127.0.0.1:port and
 * waits for one reply; retries a few times within timeout_ms since UDP may
 * drop. Returns the reply length, or -1. */
ssize_t	 udp_exchange(int port, const void *msg, size_t len, void *reply,
	    size_t cap, int timeout_ms);
ssize_t	 udp_exchange_to(const char *ip, int port, const void *msg,
	    size_t len, void *reply, size_t cap, int timeout_ms);

/* Waits until a datagram to port draws ECONNREFUSED. Fails the test. */
void	 udp_wait_refused(int port, int timeout_ms);

/* The reference transform of mode "upper", the one every test and the fault
 * suite check the daemon's replies against: a-z to A-Z, all else as is. Not
 * src/worker/echo.c's echo_upper: a test must not share the daemon's code. */
uint8_t	 ref_upper_byte(uint8_t b);
void	 ref_upper(const uint8_t *in, uint8_t *out, size_t len);
/* Deterministic bytes covering all 256 values, different for each seed. */
void	 pattern_fill(uint8_t *buf, size_t len, uint32_t seed);
/* Fails the test naming the first differing offset when a != b. */
void	 bytes_expect(const uint8_t *got, const uint8_t *want, size_t len,
	    const char *what);
/* The same against ref_upper(sent), without a second buffer. */
void	 bytes_expect_upper(const uint8_t *got, const uint8_t *sent,
	    size_t len, const char *what);

/*
 * A TCP stream that sends `out` and collects what comes back, driven by
 * poll over many streams at once so neither side deadlocks against
 * backpressure. `limit` caps how much of out may be sent so far, which lets
 * a test hold every stream half-way while it does something else.
 */
struct em_stream {
	int		 fd;
	uint8_t		*out;		/* what to send (owned) */
	uint8_t		*in;		/* what came back (owned) */
	size_t		 len;		/* of both */
	size_t		 sent;
	size_t		 rcvd;
	bool		 shut_wr;	/* shutdown(SHUT_WR) done */
	bool		 eof;		/* peer closed */
};

/* Connects and fills out with pattern_fill(seed). Fails the test. */
void	 stream_open(struct em_stream *s, int port, size_t len, uint32_t seed);
/* The same over a connection the caller made (fd becomes the stream's). */
void	 stream_attach(struct em_stream *s, int fd, size_t len, uint32_t seed);
void	 stream_close(struct em_stream *s);
/* Pumps until every stream has sent and received at least `limit` bytes (or
 * all of them); with half_close, each then shuts down its write side after
 * the last byte and the pump also waits for EOF. Returns 0, or -1 on error
 * or timeout (errno ETIMEDOUT). */
int	 streams_pump(struct em_stream *s, size_t n, size_t limit,
	    bool half_close, int timeout_ms);
/* One poll round of the above, at most wait_ms long. */
int	 streams_step(struct em_stream *s, size_t n, size_t limit,
	    bool half_close, int wait_ms);

/* Runs the daemon binary with the given arguments (argv[0] is added) and
 * waits for it; stdout and stderr are returned malloc'd when out/err are not
 * NULL. Returns the exit status, -1 if it died by a signal. A run that
 * outlives timeout_ms is killed and fails the test. */
int	 run_daemon_cmd(struct env *e, const char *const *args, int timeout_ms,
	    char **out, char **err);

/* ---- TLS (harness_tls.c) -------------------------------------------------- */

/* Makes NAME.crt and NAME.key in the env dir with openssl(1): ECDSA P-256,
 * self-signed for CN and DNS name NAME, 30 days. Fails the test. */
void	 tls_make_cert(struct env *e, const char *name);
/* text (a config conf_render wrote) with its TCP listener on port serving
 * TLS with NAME's certificate and key, and tls_extra (more settings of the
 * tls group, NULL: none) in its tls group; malloc'd. */
char	*tls_listener_text(struct env *e, const char *text, int port,
	    const char *name, const char *tls_extra);
/* env_write_conf, with the TCP listener on port a TLS one (NAME's pair). */
void	 env_write_conf_tls(struct env *e, const struct em_conf *c, int port,
	    const char *name);

/*
 * A TLS client over a non-blocking socket, every wait bounded by a
 * timeout. It does not verify the server's certificate (the tests make
 * them self-signed). ticket: the first session ticket the server sent on
 * this connection (TLS 1.2: the handshake's session; TLS 1.3: the first
 * NewSessionTicket), owned, until tls_take_ticket takes it.
 */
struct tls_client {
	SSL_CTX		*ctx;
	SSL		*ssl;
	int		 fd;
	SSL_SESSION	*ticket;
};

struct tls_opts {
	int		 version;	/* TLS1_2_VERSION, TLS1_3_VERSION; 0: either */
	SSL_SESSION	*session;	/* to resume (copied), or NULL */
};

/* A client context (version 0: either); SSL objects made from it keep
 * their TLS 1.3 ticket in the tls_client their app data points at. Sets
 * SIGPIPE to be ignored: OpenSSL writes with write(2). */
SSL_CTX	*tls_client_ctx(int version);
/* Connects to 127.0.0.1:port and handshakes: 1, or 0 when the handshake
 * failed or timed out (cl is then freed). A failed connect fails the test. */
int	 tls_connect(struct tls_client *cl, int port, const struct tls_opts *o,
	    int timeout_ms);
/* Sends our close_notify (if the socket takes it) and frees everything. */
void	 tls_close(struct tls_client *cl);
/* 0, or -1 on an error or timeout. */
int	 tls_send_all(struct tls_client *cl, const void *buf, size_t len,
	    int timeout_ms);
/* Reads until len bytes, the server's close_notify or EOF, an error or the
 * timeout; returns how many bytes came. */
ssize_t	 tls_read_exact(struct tls_client *cl, void *buf, size_t len,
	    int timeout_ms);
/* Sends msg, expects exactly expect back. Fails the test. */
void	 tls_roundtrip(struct tls_client *cl, const char *msg, const char *expect);
/* Whether the handshake resumed the session it was given. */
bool	 tls_resumed(const struct tls_client *cl);
/* The connection's ticket (see struct tls_client), waiting for a TLS 1.3
 * one at most timeout_ms; the caller frees it. NULL if none came. */
SSL_SESSION *tls_take_ticket(struct tls_client *cl, int timeout_ms);
/* The name of the key a ticket is under (its first 16 bytes), in hex: cap
 * at least 33. Fails the test on a ticket too short to have one. */
void	 tls_ticket_key_name(const SSL_SESSION *s, char *hex, size_t cap);

/* A non-blocking TCP socket bound to SRC (IPv4) and connected to 127.0.0.1:PORT. Fails the test. */
int	 tcp_connect_from(const char *src, int port);

#endif
