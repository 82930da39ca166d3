/*
 * fault.h: helpers the fault-injection suite needs beyond the integration
 * harness (tests/integration/harness.h, used as is): /proc figures (fds,
 * CPU time, RSS, uids, zombies, workers found by parent pid), a start with
 * a resource limit, configs with extra settings, and a load generator that
 * keeps many connect-echo-close clients and long-lived streams going, plain
 * or over TLS, while a test breaks things, counting every outcome a client
 * can see.
 *
 * Like the harness: every wait is bounded by a deadline, and the naps inside
 * wait loops are poll intervals, never the synchronisation itself.
 */
#ifndef EM_TESTS_FAULT_H
#define EM_TESTS_FAULT_H

#include "../integration/harness.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/types.h>

/* ---- /proc --------------------------------------------------------------- */

/* Children of ppid that are alive (not zombies), sorted; whatever their
 * title, so it works under valgrind where titles are not visible. */
size_t	 fault_children(pid_t ppid, pid_t *pids, size_t max);
/* Children of ppid in state Z. */
size_t	 fault_zombies(pid_t ppid);
/* Entries of /proc/PID/fd, -1 if unreadable. */
int	 fault_fd_count(pid_t pid);
/* utime + stime of the process, in clock ticks; -1 if gone. */
long long fault_cpu_ticks(pid_t pid);
/* VmRSS in KiB, -1 if gone. */
long	 fault_rss_kb(pid_t pid);
/* Master plus every live child: the server's resident memory. */
long	 fault_server_rss_kb(pid_t master);
/* Real and effective uid from /proc/PID/status; -1 if gone. */
int	 fault_uids(pid_t pid, uid_t *ruid, uid_t *euid);
/* The one-letter state from /proc/PID/stat, '?' if gone. */
char	 fault_state(pid_t pid);
/* Waits until the master has exactly n live children (by parent pid, any
 * title); stores them in pids. Fails the test on timeout. */
void	 fault_wait_children(struct env *e, size_t n, pid_t *pids,
	    int timeout_ms);

/* ---- starting ------------------------------------------------------------ */

/* Like env_start(), with RLIMIT_NOFILE set to nofile in the child before
 * exec. The env owns the master as if env_start() had made it. */
pid_t	 fault_start_nofile(struct env *e, rlim_t nofile);
/* Renders c with extra settings (one or more "key = value;" lines) put
 * before the listen list, and writes it as the env's config. */
void	 fault_write_conf(struct env *e, const struct em_conf *c,
	    const char *extra);
/* The same, with the TCP listener on tls_port serving TLS with the
 * certificate FAULT_CERT (tls_make_cert), made on first use. */
#define FAULT_CERT "fault"
void	 fault_write_conf_tls(struct env *e, const struct em_conf *c,
	    const char *extra, int tls_port);

/* ---- UDP ----------------------------------------------------------------- */

/* A connected UDP socket to 127.0.0.1:port, non-blocking. Fails the test. */
int	 udp_client(int port);
/* Sends msg on a connected UDP socket and waits for one reply of exactly
 * the right bytes; retries (UDP may drop) within timeout_ms. Returns the
 * reply length or -1. */
ssize_t	 udp_roundtrip_fd(int fd, const void *msg, size_t len, void *reply,
	    size_t cap, int timeout_ms);

/* ---- load ---------------------------------------------------------------- */

/*
 * A poll-driven load on one TCP port: `nshort` slots that each connect,
 * send a random message (1..4096 bytes), read the upper-cased echo, close
 * and start over; `nstream` slots that each keep one connection sending and
 * reading a deterministic byte stream for stream_ms (0: until stopped), then
 * half-close, expect EOF, and open a new one.
 *
 * A connection the test marks doomed (load_doom_ports: its server side was
 * in a worker the test killed) may break; any other break, any refused
 * connect, any wrong byte and any stall longer than stall_ms is counted
 * against the daemon.
 */
struct load_conn;

struct load_stats {
	uint64_t	 served;	/* connect-echo-close completed */
	uint64_t	 streams_done;	/* streams completed with EOF */
	uint64_t	 stream_bytes;	/* verified stream bytes, all streams */
	uint64_t	 refused;	/* connect: ECONNREFUSED */
	uint64_t	 wrong;		/* a byte that was not the echo */
	uint64_t	 broken;	/* reset/EOF/error, not doomed */
	uint64_t	 doomed_lost;	/* broken, doomed: expected */
	uint64_t	 stalled;	/* no progress for stall_ms */
	uint64_t	 connect_failed;/* any other connect error */
	uint64_t	 handshakes;	/* TLS handshakes completed */
};

struct load {
	int			 port;
	size_t			 nshort;
	size_t			 nstream;
	int			 stream_ms;
	int			 stall_ms;
	bool			 stopping;	/* no new connections */
	struct load_conn	*conns;
	struct load_stats	 st;
	uint32_t		 rng;
	SSL_CTX			*tls_ctx;	/* a TLS load's client context, else NULL */
	char			 first_error[256];
};

void	 load_start(struct load *l, int port, size_t nshort, size_t nstream,
	    int stream_ms, uint32_t seed);
/* The same over TLS: each connection handshakes (fully, no resumption)
 * before its bytes, and a stream half-closes with its close_notify and
 * ends at the server's. load_finish frees the context. */
void	 load_start_tls(struct load *l, int port, size_t nshort, size_t nstream,
	    int stream_ms, uint32_t seed);
/* One poll round of at most wait_ms; nothing once the load is finished. */
void	 load_step(struct load *l, int wait_ms);
/* Runs load_step until ms have passed. */
void	 load_run_for(struct load *l, int ms);
/* Stops starting connections, lets the open ones finish (streams
 * half-close at once), bounded by timeout_ms; then closes everything. */
void	 load_finish(struct load *l, int timeout_ms);
/* Marks as doomed every open connection whose local port is in ports. */
size_t	 load_doom_ports(struct load *l, const int *ports, size_t n);
/* Prints the counts, prefixed by what. */
void	 load_print(const struct load *l, const char *what);
/* Fails the test if anything but doomed connections went wrong. */
void	 load_expect_clean(const struct load *l);

/* Client ports (the remote ports of established TCP sockets on the
 * server's `port`) held in pid's descriptor table. Returns how many. */
size_t	 fault_held_client_ports(pid_t pid, int port, int *ports, size_t max);

/* Random numbers for tests: xorshift32, never 0 given a non-zero seed. */
uint32_t fault_rand(uint32_t *state);

#endif
