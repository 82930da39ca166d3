/*
 * echobench: a load generator for upper-case (or plain) echo servers on
 * loopback. One epoll loop per thread; every reply byte is checked.
 *
 *   echobench -w pingpong|churn|stream|idle|udp -p PORT [options]
 *   echobench --free-port          print a port free for TCP and UDP
 *   echobench --wait SECS -p PORT  wait until the server echoes on both
 *
 * Built with EB_TLS (and eb_tls.c, OpenSSL) it is tlsbench, which adds the
 * workloads tls-handshake, tls-resume, tls-pingpong, tls-stream and
 * tls-idle, and whose --wait probes over TLS (TCP only).
 *
 * The last line printed is "RESULT key=value ..." for scripts. Exit status:
 * 0 when every reply was right and nothing failed, 1 on any mismatch or
 * error (or, for idle, a connection that did not echo), 2 on bad usage.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "eb.h"

volatile int		eb_measuring;
pthread_barrier_t	eb_barrier;

struct eb_workload {
	const char	*name;
	void		*(*run)(void *);
	size_t		 msglen;	/* default message or write size */
	int		 idle;		/* holds connections: barriers, -P */
	int		 counts;	/* stops after -n exchanges */
};

static const struct eb_workload eb_workloads[] = {
	{ "pingpong",	eb_pingpong,	64, 0, 1 },
	{ "churn",	eb_churn,	64, 0, 0 },
	{ "stream",	eb_stream,	16384, 0, 0 },
	{ "idle",	eb_idle,	32, 1, 0 },
	{ "udp",	eb_udp,		64, 0, 0 },
#ifdef EB_TLS
	{ "tls-handshake", eb_tls_handshake, 64, 0, 1 },
	{ "tls-resume",	eb_tls_resume,	64, 0, 1 },
	{ "tls-pingpong", eb_tls_pingpong, 64, 0, 1 },
	{ "tls-stream",	eb_tls_stream,	16384, 0, 1 },
	{ "tls-idle",	eb_tls_idle,	32, 1, 0 },
#endif
};

#ifdef EB_TLS
#define EB_WAIT_READY	eb_tls_wait_ready
#define EB_TLS_WARM	64	/* tls-idle: handshakes before the base RSS */
#else
#define EB_WAIT_READY	eb_wait_ready
#endif

struct eb_result {
	struct eb_stats	st;
	double		secs;		/* measured period */
	long		rss_base, rss_held;	/* idle, KiB */
	int		failed;
};

static void __attribute__((noreturn))
eb_usage(int status)
{
	fprintf(status ? stderr : stdout,
"usage: echobench -w WORKLOAD -p PORT [options]\n"
"       echobench --free-port\n"
"       echobench --wait SECS -p PORT [-a ADDR] [-M MODE]\n"
"workloads: pingpong churn stream idle udp\n"
#ifdef EB_TLS
"           tls-handshake tls-resume tls-pingpong tls-stream tls-idle\n"
"           (--wait probes over TLS)\n"
#endif
"  -a, --addr ADDR         server IPv4 address (127.0.0.1)\n"
"  -p, --port PORT         server port (TCP and UDP)\n"
"  -c, --conns N           connections or UDP sockets (100; idle: to hold)\n"
"  -m, --msg BYTES         message size (64; stream: write size 16384)\n"
"  -d, --duration SECS     measured time (5)\n"
"  -W, --warmup SECS       unmeasured time first (0.5)\n"
"  -n, --count N           pingpong: exactly N requests, then stop\n"
#ifdef EB_TLS
"                          (tls-pingpong too; tls-handshake: N handshakes,\n"
"                          tls-resume: N resumed ones, tls-stream: N writes)\n"
#endif
"  -t, --threads N         threads, one epoll loop each (1)\n"
"  -M, --mode upper|echo   what the server does to the bytes (upper)\n"
"  -s, --sources N         spread connections over 127.0.0.1..N (1)\n"
"  -P, --pid PID[,PID2]    idle: server (master) pid, to sum RSS; PID2: a\n"
"                          second server's (a TLS proxy and its backend)\n"
"  -H, --hold SECS         idle: seconds to hold the connections (2)\n"
"  -T, --udp-timeout SECS  udp: a datagram is lost after this (0.2)\n"
"  -L, --linger0           churn: close with RST (no TIME_WAIT left)\n"
"  -X, --proxy-v2          churn and --wait: send a PROXY protocol v2 header\n"
"                          first, as a load balancer does\n"
"  -x, --procs N           idle: client processes (default: as many as the\n"
"                          descriptor limit needs)\n"
#ifdef EB_TLS
"  -i, --pause SECS        tls-pingpong: the thread waits so long before each\n"
"                          request, so that the server has always read all\n"
"                          there was (a steady path for callgrind.sh)\n"
#endif
);
	exit(status);
}

static double
eb_secs(const char *s)
{
	char *end;
	double v = strtod(s, &end);

	if (*end != '\0' || v < 0 || v > 86400)
		eb_usage(2);
	return v;
}

static long
eb_num(const char *s, long lo, long hi)
{
	char *end;
	long v = strtol(s, &end, 10);

	if (*end != '\0' || v < lo || v > hi)
		eb_usage(2);
	return v;
}

/* -P PID or PID,PID2 */
static void
eb_pids(char *s, struct eb_opts *o)
{
	char *comma = strchr(s, ',');

	if (comma != NULL) {
		*comma = '\0';
		o->server_pid2 = (pid_t)eb_num(comma + 1, 1, 1 << 30);
	}
	o->server_pid = (pid_t)eb_num(s, 1, 1 << 30);
}

static void
eb_sleep(double secs)
{
	struct timespec ts = { (time_t)secs,
	    (long)((secs - (double)(time_t)secs) * 1e9) };

	while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
		;
}

static const struct eb_workload *
eb_parse(int argc, char *argv[], struct eb_opts *o)
{
	static const struct option longopts[] = {
		{ "workload", 1, NULL, 'w' }, { "addr", 1, NULL, 'a' },
		{ "port", 1, NULL, 'p' }, { "conns", 1, NULL, 'c' },
		{ "msg", 1, NULL, 'm' }, { "duration", 1, NULL, 'd' },
		{ "warmup", 1, NULL, 'W' }, { "count", 1, NULL, 'n' },
		{ "threads", 1, NULL, 't' }, { "mode", 1, NULL, 'M' },
		{ "sources", 1, NULL, 's' }, { "pid", 1, NULL, 'P' },
		{ "hold", 1, NULL, 'H' }, { "udp-timeout", 1, NULL, 'T' },
		{ "linger0", 0, NULL, 'L' }, { "free-port", 0, NULL, 'f' },
		{ "wait", 1, NULL, 'r' }, { "help", 0, NULL, 'h' },
		{ "procs", 1, NULL, 'x' }, { "proxy-v2", 0, NULL, 'X' },
		{ "pause", 1, NULL, 'i' },
		{ NULL, 0, NULL, 0 }
	};
	const struct eb_workload *w = NULL;
	const char *addr = "127.0.0.1";
	double wait = -1;
	long port = 0;
	int c;

	*o = (struct eb_opts){ .conns = 100, .duration = 5, .warmup = 0.5,
	    .threads = 1, .upper = 1, .nsrc = 1, .hold = 2,
	    .udp_timeout = 0.2 };
	while ((c = getopt_long(argc, argv, "w:a:p:c:m:d:W:n:t:M:s:P:H:T:LXx:i:h",
	    longopts, NULL)) != -1) {
		switch (c) {
		case 'w':
			for (size_t i = 0; i < sizeof(eb_workloads) /
			    sizeof(eb_workloads[0]); i++)
				if (strcmp(optarg, eb_workloads[i].name) == 0)
					w = &eb_workloads[i];
			if (w == NULL)
				eb_usage(2);
			break;
		case 'a': addr = optarg; break;
		case 'p': port = eb_num(optarg, 1, 65535); break;
		case 'c': o->conns = (int)eb_num(optarg, 1, 10000000); break;
		case 'm': o->msglen = (size_t)eb_num(optarg, 1, 1 << 24); break;
		case 'd': o->duration = eb_secs(optarg); break;
		case 'W': o->warmup = eb_secs(optarg); break;
		case 'n': o->count = (uint64_t)eb_num(optarg, 1, 1L << 40); break;
		case 't': o->threads = (int)eb_num(optarg, 1, 256); break;
		case 's': o->nsrc = (int)eb_num(optarg, 1, 254); break;
		case 'P': eb_pids(optarg, o); break;
		case 'H': o->hold = eb_secs(optarg); break;
		case 'T': o->udp_timeout = eb_secs(optarg); break;
		case 'L': o->linger0 = 1; break;
		case 'X': o->proxy_v2 = 1; break;
		case 'x': o->procs = (int)eb_num(optarg, 1, 256); break;
		case 'i': o->pause = eb_secs(optarg); break;
		case 'M':
			if (strcmp(optarg, "upper") && strcmp(optarg, "echo"))
				eb_usage(2);
			o->upper = strcmp(optarg, "upper") == 0;
			break;
		case 'f':
			port = eb_free_port();
			if (port < 0)
				exit(1);
			printf("%ld\n", port);
			exit(0);
		case 'r': wait = eb_secs(optarg); break;
		case 'h': eb_usage(0);
		default: eb_usage(2);
		}
	}
	if (optind != argc || port == 0 || (w == NULL && wait < 0))
		eb_usage(2);
	o->server.sin_family = AF_INET;
	o->server.sin_port = htons((uint16_t)port);
	if (inet_pton(AF_INET, addr, &o->server.sin_addr) != 1)
		eb_usage(2);
	if (wait >= 0)
		exit(EB_WAIT_READY(o, wait) == 0 ? 0 : 1);
	if (o->count && !w->counts)
		eb_usage(2);	/* it would never stop */
	o->workload = w->name;
	o->idle = w->idle;
	if (o->msglen == 0)
		o->msglen = w->msglen;
	if (o->threads > o->conns)
		o->threads = o->conns;
	return w;
}

/* Idle: hold the connections, then read the server's memory. */
static void
eb_idle_hold(const struct eb_opts *o, struct eb_result *r)
{
	eb_sleep(o->hold);
	if (o->server_pid)
		r->rss_held = eb_servers_rss_kib(o);
}

/* Idle child: tell the parent all is open, wait until it has measured. */
static void
eb_child_sync(const struct eb_opts *o)
{
	char c = 'A';

	if (write(o->sync_w, &c, 1) != 1 || read(o->sync_r, &c, 1) != 1)
		_exit(3);
}

static int
eb_read_full(int fd, void *buf, size_t len)
{
	for (size_t got = 0; got < len;) {
		ssize_t n = read(fd, (char *)buf + got, len - got);

		if (n <= 0)
			return -1;
		got += (size_t)n;
	}
	return 0;
}

static void eb_run(const struct eb_workload *, const struct eb_opts *,
    struct eb_result *);

/*
 * Idle beyond one process's descriptor limit: each of o->procs children holds
 * a slice of the connections with its own threads; the parent waits until
 * all have opened theirs and echoed once, holds, reads the server's memory,
 * lets them prove every connection again, and adds up their counts.
 */
static void
eb_run_procs(const struct eb_workload *w, const struct eb_opts *o,
    struct eb_result *r)
{
	int up[256][2], down[256][2], base = 0;
	pid_t pid[256];
	uint64_t t0 = eb_now();

	if (o->server_pid)
		r->rss_base = eb_servers_rss_kib(o);
	for (int i = 0; i < o->procs; i++) {
		struct eb_opts co = *o;

		co.conns = o->conns / o->procs + (i < o->conns % o->procs);
		co.base = base;
		base += co.conns;
		if (pipe(up[i]) == -1 || pipe(down[i]) == -1 ||
		    (pid[i] = fork()) == -1) {
			perror("echobench: pipe/fork");
			exit(2);
		}
		if (pid[i] == 0) {
			struct eb_result cr;

			memset(&cr, 0, sizeof(cr));
			co.procs = 1;
			co.server_pid = co.server_pid2 = 0;
			co.sync_r = down[i][0];
			co.sync_w = up[i][1];
			co.threads = co.threads > co.conns ? co.conns : co.threads;
			if (eb_nofile((size_t)co.conns + 1024) == -1)
				fprintf(stderr, "echobench: child: cannot raise "
				    "RLIMIT_NOFILE to %d\n", co.conns + 1024);
			eb_run(w, &co, &cr);
			cr.st.errors += (uint64_t)cr.failed;
			if (write(co.sync_w, &cr.st, sizeof(cr.st)) !=
			    (ssize_t)sizeof(cr.st))
				_exit(3);
			_exit(0);
		}
		close(up[i][1]);
		close(down[i][0]);
	}
	for (int i = 0; i < o->procs; i++) {
		char c;

		if (read(up[i][0], &c, 1) != 1)
			r->failed = 1;
	}
	r->secs = (double)(eb_now() - t0) / 1e9;
	eb_idle_hold(o, r);
	for (int i = 0; i < o->procs; i++) {
		struct eb_stats st;

		if (write(down[i][1], "B", 1) != 1 ||
		    eb_read_full(up[i][0], &st, sizeof(st)) == -1)
			r->failed = 1;
		else
			eb_stats_merge(&r->st, &st);
		waitpid(pid[i], NULL, 0);
	}
}

/* Runs the threads; fills r with their merged counts and the timing. */
static void
eb_run(const struct eb_workload *w, const struct eb_opts *o,
    struct eb_result *r)
{
	struct eb_thread *t = calloc((size_t)o->threads, sizeof(*t));
	int idle = w->idle, first = o->base;
	uint64_t t0, t1 = 0;

	if (t == NULL || (idle && pthread_barrier_init(&eb_barrier, NULL,
	    (unsigned)o->threads + 1) != 0)) {
		perror("echobench: set-up");
		exit(2);
	}
	if (idle && o->server_pid)
		r->rss_base = eb_servers_rss_kib(o);
	eb_measuring = o->count || idle ? 1 : 0;
	t0 = eb_now();
	for (int i = 0; i < o->threads; i++) {
		t[i].id = i;
		t[i].o = o;
		t[i].first = first;
		t[i].nconns = o->conns / o->threads +
		    (i < o->conns % o->threads);
		first += t[i].nconns;
		if (pthread_create(&t[i].tid, NULL, w->run, &t[i]) != 0) {
			perror("echobench: pthread_create");
			exit(2);
		}
	}
	if (idle) {
		pthread_barrier_wait(&eb_barrier);	/* open, echoed once */
		t1 = eb_now();
		if (o->sync_w > 0)
			eb_child_sync(o);
		else
			eb_idle_hold(o, r);
		pthread_barrier_wait(&eb_barrier);
		pthread_barrier_wait(&eb_barrier);	/* echoed again */
	} else if (!o->count) {
		eb_sleep(o->warmup);
		eb_measuring = 1;
		t0 = eb_now();
		eb_sleep(o->duration);
		eb_measuring = 2;
		t1 = eb_now();
	}
	for (int i = 0; i < o->threads; i++) {
		pthread_join(t[i].tid, NULL);
		eb_stats_merge(&r->st, &t[i].st);
		r->failed |= t[i].failed;
	}
	if (o->count)
		t1 = eb_now();
	r->secs = (double)(t1 - t0) / 1e9;
	free(t);
}

/* The load generator's own CPU seconds (its threads, and its processes for idle). */
static double
eb_cpu_secs(void)
{
	struct rusage self, kids;

	getrusage(RUSAGE_SELF, &self);
	getrusage(RUSAGE_CHILDREN, &kids);
	return (double)(self.ru_utime.tv_sec + self.ru_stime.tv_sec +
	    kids.ru_utime.tv_sec + kids.ru_stime.tv_sec) +
	    (double)(self.ru_utime.tv_usec + self.ru_stime.tv_usec +
	    kids.ru_utime.tv_usec + kids.ru_stime.tv_usec) / 1e6;
}

/* The RESULT line's TLS keys, after the common ones: resumed=N. */
static const char *
eb_result_tls(const struct eb_opts *o, const struct eb_stats *s)
{
	static char buf[64];

	if (strncmp(o->workload, "tls-", 4) != 0)
		return "";
	snprintf(buf, sizeof(buf), " resumed=%llu",
	    (unsigned long long)s->resumed);
	return buf;
}

static void
eb_report(const struct eb_opts *o, const struct eb_result *r)
{
	const struct eb_stats *s = &r->st;
	double rate = r->secs > 0 ? (double)s->ops / r->secs : 0;
	double mbps = r->secs > 0 ? (double)s->bytes / r->secs / 1e6 : 0;
	double loss = s->sent ? (double)s->lost / (double)s->sent : 0;
	double perconn = s->opened ? (double)(r->rss_held - r->rss_base) *
	    1024.0 / (double)s->opened : 0;

	printf("%s: %d conns, %zu-byte messages, %d threads, %.2f s\n",
	    o->workload, o->conns, o->msglen, o->threads, r->secs);
	if (o->idle)
		printf("  opened %llu, echoed %llu before and %llu after the "
		    "hold; server RSS %ld KiB empty, %ld KiB held: %.0f bytes "
		    "per connection\n", (unsigned long long)s->opened,
		    (unsigned long long)s->echoed1, (unsigned long long)s->ops,
		    r->rss_base, r->rss_held, perconn);
	else
		printf("  %.0f ops/s, %.2f MB/s, latency p50 %.1f us, "
		    "p99 %.1f us, p99.9 %.1f us\n", rate, mbps,
		    (double)eb_hist_pct(&s->lat, 0.50) / 1e3,
		    (double)eb_hist_pct(&s->lat, 0.99) / 1e3,
		    (double)eb_hist_pct(&s->lat, 0.999) / 1e3);
	if (strcmp(o->workload, "tls-resume") == 0)
		printf("  resumed %llu handshakes\n",
		    (unsigned long long)s->resumed);
	if (strcmp(o->workload, "udp") == 0)
		printf("  sent %llu, lost %llu (%.4f%%), late %llu\n",
		    (unsigned long long)s->sent, (unsigned long long)s->lost,
		    loss * 100, (unsigned long long)s->late);
	printf("  mismatches %llu, errors %llu\n",
	    (unsigned long long)s->mismatches, (unsigned long long)s->errors);
	printf("RESULT workload=%s conns=%d msg=%zu secs=%.3f ops=%llu "
	    "rate=%.1f mbps=%.3f p50_us=%.2f p99_us=%.2f p999_us=%.2f "
	    "sent=%llu lost=%llu loss=%.6f late=%llu opened=%llu "
	    "echoed1=%llu rss_base_kib=%ld rss_held_kib=%ld "
	    "bytes_per_conn=%.1f mismatches=%llu errors=%llu cpu_s=%.3f%s\n",
	    o->workload, o->conns, o->msglen, r->secs,
	    (unsigned long long)s->ops, rate, mbps,
	    (double)eb_hist_pct(&s->lat, 0.50) / 1e3,
	    (double)eb_hist_pct(&s->lat, 0.99) / 1e3,
	    (double)eb_hist_pct(&s->lat, 0.999) / 1e3,
	    (unsigned long long)s->sent, (unsigned long long)s->lost, loss,
	    (unsigned long long)s->late, (unsigned long long)s->opened,
	    (unsigned long long)s->echoed1, r->rss_base, r->rss_held, perconn,
	    (unsigned long long)s->mismatches, (unsigned long long)s->errors,
	    eb_cpu_secs(), eb_result_tls(o, s));
}

/*
 * Processes the idle workload needs: a process may not hold more descriptors
 * than the hard RLIMIT_NOFILE, and raising that takes CAP_SYS_RESOURCE.
 */
static int
eb_procs_needed(int conns)
{
	struct rlimit rl;
	long per;

	eb_nofile((size_t)conns + 1024);
	if (getrlimit(RLIMIT_NOFILE, &rl) == -1 ||
	    rl.rlim_cur >= (rlim_t)conns + 1024)
		return 1;
	per = (long)rl.rlim_cur - 1024;
	if (per < 1000)
		per = 1000;
	return (int)((conns + per - 1) / per) > 256 ? 256 :
	    (int)((conns + per - 1) / per);
}

int
main(int argc, char *argv[])
{
	struct eb_opts o;
	struct eb_result r;
	const struct eb_workload *w = eb_parse(argc, argv, &o);
	int bad;

	signal(SIGPIPE, SIG_IGN);
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (w->idle && o.procs == 0)
		o.procs = eb_procs_needed(o.conns);
	if (o.procs <= 1 && eb_nofile((size_t)o.conns + 1024) == -1)
		fprintf(stderr, "echobench: cannot raise RLIMIT_NOFILE to %d\n",
		    o.conns + 1024);
	eb_pattern_init(o.msglen, o.upper);
#ifdef EB_TLS
	if (eb_tls_init() == -1)
		exit(2);
	if (w->idle && o.server_pid)	/* a warm server's memory as the base */
		eb_tls_warm(&o, EB_TLS_WARM);
#endif
	memset(&r, 0, sizeof(r));
	if (o.procs > 1)
		eb_run_procs(w, &o, &r);
	else
		eb_run(w, &o, &r);
	eb_report(&o, &r);
	bad = r.failed || r.st.mismatches || r.st.errors ||
	    (w->idle && r.st.ops < (uint64_t)o.conns) ||
	    (o.count && r.st.ops < o.count);
	if (bad)
		fprintf(stderr, "echobench: %s FAILED\n", o.workload);
	return bad ? 1 : 0;
}
