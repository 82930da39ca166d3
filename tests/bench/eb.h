/*
 * echobench: load generator for upper-case echo servers. Shared declarations.
 *
 * Every workload runs one epoll loop per thread over its share of the
 * connections, checks every reply byte against what the server must send
 * back, and adds its counts into one struct eb_stats per thread; the main
 * thread merges them and prints the result.
 */
#ifndef EB_H
#define EB_H

#include <netinet/in.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define EB_HIST_SUB	32	/* sub-buckets per power of two: ~3% error */
#define EB_HIST_N	(62 * EB_HIST_SUB)
#define EB_PAT		(1 << 16)	/* period of the test byte pattern */
#define EB_RBUF		(64 * 1024)

/* Latency histogram in nanoseconds, log-linear buckets. */
struct eb_hist {
	uint64_t	count;
	uint64_t	bucket[EB_HIST_N];
};

struct eb_stats {
	uint64_t	ops;		/* requests, connections or datagrams */
	uint64_t	bytes;		/* reply bytes verified */
	uint64_t	mismatches;	/* replies differing from what was expected */
	uint64_t	errors;		/* failed system calls, early closes */
	uint64_t	sent;		/* datagrams sent (udp) */
	uint64_t	lost;		/* datagrams never answered in time (udp) */
	uint64_t	late;		/* replies that came after their timeout */
	uint64_t	opened;		/* idle: connections established */
	uint64_t	echoed1;	/* idle: connections that echoed before the hold */
	uint64_t	resumed;	/* tls-resume: handshakes that resumed */
	struct eb_hist	lat;
};

struct eb_opts {
	const char	*workload;
	struct sockaddr_in server;
	int		 conns;		/* connections or UDP sockets */
	size_t		 msglen;
	double		 duration;	/* measured seconds */
	double		 warmup;	/* seconds run before measuring */
	uint64_t	 count;		/* -n: stop after so many requests or handshakes */
	int		 threads;
	int		 upper;
	int		 nsrc;		/* source addresses 127.0.0.1 .. */
	double		 hold;		/* idle: seconds to hold */
	pid_t		 server_pid;	/* idle: whose RSS to sum */
	pid_t		 server_pid2;	/* idle: and a second server's (-P A,B) */
	int		 idle;		/* the workload holds connections */
	double		 udp_timeout;	/* seconds before a datagram is lost */
	int		 linger0;	/* churn: close with RST, no TIME_WAIT */
	int		 proxy_v2;	/* churn, --wait: a PROXY v2 header first */
	int		 procs;		/* idle: processes (descriptor limit) */
	double		 pause;		/* tls-pingpong: seconds before each request */
	int		 base;		/* number of this process's first connection */
	int		 sync_r, sync_w;	/* idle child: pipes from and to the parent */
};

/* What each thread gets. */
struct eb_thread {
	pthread_t		 tid;
	int			 id;
	int			 first, nconns;	/* its slice of connections */
	const struct eb_opts	*o;
	struct eb_stats		 st;
	int			 failed;	/* set up could not complete */
};

/* Shared read-only data set up before the threads start. */
extern unsigned char	*eb_pattern;	/* EB_PAT + slack bytes sent */
extern unsigned char	*eb_expect;	/* the same, as the server returns it */
extern size_t		 eb_patlen;
extern volatile int	 eb_measuring;	/* 0 warm-up, 1 measuring, 2 stop */
extern pthread_barrier_t eb_barrier;	/* idle: phases, threads + main */

/* eb_util.c */
uint64_t	eb_now(void);
void		eb_hist_add(struct eb_hist *, uint64_t);
void		eb_hist_merge(struct eb_hist *, const struct eb_hist *);
uint64_t	eb_hist_pct(const struct eb_hist *, double);
void		eb_stats_merge(struct eb_stats *, const struct eb_stats *);
void		eb_pattern_init(size_t, int);
int		eb_verify(const unsigned char *, size_t, size_t);
int		eb_nofile(size_t);
long		eb_server_rss_kib(pid_t);
long		eb_servers_rss_kib(const struct eb_opts *);
int		eb_src_addr(int, int, struct sockaddr_in *);
int		eb_tcp_socket(const struct eb_opts *, int);
int		eb_wait_ready(const struct eb_opts *, double);
int		eb_free_port(void);
#define EB_PROXY_V2_LEN 28	/* a v2 PROXY TCP4 header, no TLVs */
void		eb_proxy_v2(unsigned char *, uint64_t);

/* eb_tcp.c: the thread bodies of the TCP workloads. */
void		*eb_pingpong(void *);
void		*eb_churn(void *);
void		*eb_stream(void *);
void		*eb_idle(void *);

/* eb_udp.c */
void		*eb_udp(void *);

/* eb_tls.c: the TLS workloads, built into tlsbench (EB_TLS) only. */
int		eb_tls_init(void);
int		eb_tls_wait_ready(const struct eb_opts *, double);
void		eb_tls_warm(const struct eb_opts *, int);
void		*eb_tls_handshake(void *);
void		*eb_tls_resume(void *);
void		*eb_tls_pingpong(void *);
void		*eb_tls_stream(void *);
void		*eb_tls_idle(void *);

#endif
