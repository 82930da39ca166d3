/*
 * main: the command line and start-up. Parses options, loads the
 * configuration, and either answers at once (-t, -T, -s, -v, -h) or takes
 * the pid file, binds, detaches and hands over to the master.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/cfg.h"
#include "common/exitcode.h"
#include "common/log.h"
#include "common/proctitle.h"
#include "master/control.h"
#include "master/daemon.h"
#include "master/listeners.h"
#include "master/master.h"
#include "master/pidfile.h"
#include "master/rescue.h"
#include "master/upgrade.h"

struct options {
	const char *config;
	const char *signal;
	bool test;
	bool dump;
	bool foreground;
	bool json;
};

/* What -s can ask; through the control socket when there is one, else by signal. */
static const struct {
	const char *name;
	int signo;           /* 0: only the control socket can do it */
} signal_names[] = {
	{ "reload", SIGHUP }, { "stop", SIGTERM }, { "quit", SIGQUIT }, { "reopen", SIGUSR1 },
	{ "upgrade", SIGUSR2 }, { "status", 0 }, { "respawn", 0 }, { "drain", 0 }, { "ready", 0 },
	{ "maint", 0 },
};

static void
usage(FILE *out)
{
	fprintf(out,
	    "usage: echomaster [-tTFvh] [-c file] [-s signal [-j]]\n"
	    "\n"
	    "  -c, --config FILE   configuration file (default %s)\n"
	    "  -t, --test          check the configuration and exit\n"
	    "  -T, --dump          check the configuration, print it with defaults filled in, exit\n"
	    "  -F, --foreground    stay in the foreground, whatever 'daemon' says\n"
	    "  -s, --signal SIG    ask the running master: reload, upgrade, stop, quit,\n"
	    "                      reopen through control_socket (reload and upgrade then\n"
	    "                      wait for the outcome) or as HUP, USR2, TERM, QUIT, USR1\n"
	    "                      through pid_file; status, respawn (unpark crash-looping\n"
	    "                      slots), and drain, ready, maint (what the HAProxy agent\n"
	    "                      reports) need control_socket. upgrade: the master runs\n"
	    "                      the binary at the path it was started from (replace the\n"
	    "                      file first), hands it the sockets and the connections,\n"
	    "                      and exits\n"
	    "  -j, --json          with -s status: print JSON\n"
	    "  -v, --version       print the version and exit\n"
	    "  -h, --help          print this help and exit\n"
	    "\n"
	    "Signals to the master: HUP reload, USR2 live upgrade, QUIT graceful stop\n"
	    "(drain_delay, then the queued connections are accepted, then the drain),\n"
	    "TERM/INT fast stop, USR1 reopen logs. Exit status: 0 ok, 1 usage or\n"
	    "configuration error, 2 runtime failure.\n",
	    CFG_DEFAULT_PATH);
}

static int
options_parse(struct options *o, int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "test", no_argument, NULL, 't' },
		{ "dump", no_argument, NULL, 'T' },
		{ "foreground", no_argument, NULL, 'F' },
		{ "signal", required_argument, NULL, 's' },
		{ "json", no_argument, NULL, 'j' },
		{ "version", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int ch;

	memset(o, 0, sizeof(*o));
	o->config = CFG_DEFAULT_PATH;
	while ((ch = getopt_long(argc, argv, "c:tTFs:jvh", longopts, NULL)) != -1) {
		switch (ch) {
		case 'c': o->config = optarg; break;
		case 't': o->test = true; break;
		case 'T': o->test = o->dump = true; break;
		case 'F': o->foreground = true; break;
		case 's': o->signal = optarg; break;
		case 'j': o->json = true; break;
		case 'v':
			printf("echomaster %s\n", EM_VERSION);
			exit(EXIT_OK);
		case 'h':
			usage(stdout);
			exit(EXIT_OK);
		default:
			usage(stderr);
			return -1;
		}
	}
	if (optind != argc) {
		fprintf(stderr, "echomaster: unexpected argument \"%s\"\n", argv[optind]);
		usage(stderr);
		return -1;
	}
	return 0;
}

/* -s through the control socket: the master answers, and says how it went. */
static int
ask_master(const struct options *o, const char *ctl_path)
{
	char err[256];
	const char *cmd = strcmp(o->signal, "status") == 0 && o->json ? "status-json" : o->signal;
	int rc = control_request(ctl_path, cmd, stdout, err, sizeof(err));

	if (rc == -1) {
		fprintf(stderr, "echomaster: %s\n", err);
		return EXIT_RUNTIME;
	}
	return rc == 0 ? EXIT_OK : EXIT_CONFIG;
}

/* -s by signal, to the master named by the pid file. */
static int
signal_master(const struct options *o, int signo)
{
	char path[4096], err[CFG_ERR_LEN];
	pid_t pid;

	if (rescue_read_setting(o->config, "pid_file", path, sizeof(path), err) == -1) {
		fprintf(stderr, "%s\n", err);
		return EXIT_CONFIG;
	}
	if (path[0] == '\0') {
		fprintf(stderr, "echomaster: %s sets neither control_socket nor pid_file, so the "
		    "master cannot be found\n", o->config);
		return EXIT_CONFIG;
	}
	if ((pid = pidfile_running(path, err, sizeof(err))) <= 0) {
		if (pid == 0)
			fprintf(stderr, "echomaster: not running (no master holds %s)\n", path);
		else
			fprintf(stderr, "echomaster: %s\n", err);
		return EXIT_RUNTIME;
	}
	if (kill(pid, signo) == -1) {
		fprintf(stderr, "echomaster: cannot signal master %ld: %m\n", (long)pid);
		return EXIT_RUNTIME;
	}
	if (signo == SIGUSR2)
		fprintf(stderr, "echomaster: sent SIGUSR2 to master %ld; without control_socket the "
		    "outcome cannot be reported here: see the log\n", (long)pid);
	return EXIT_OK;
}

/*
 * -s: only control_socket and pid_file are read from the file, so a config
 * broken elsewhere still lets an operator reach the running master.
 */
static int
send_signal(const struct options *o)
{
	char ctl[4096], err[CFG_ERR_LEN];
	int signo = -1;

	for (size_t i = 0; i < sizeof(signal_names) / sizeof(signal_names[0]); i++)
		if (strcmp(o->signal, signal_names[i].name) == 0)
			signo = signal_names[i].signo;
	if (signo == -1) {
		fprintf(stderr, "echomaster: unknown signal \"%s\" (reload, upgrade, stop, quit, "
		    "reopen, status, respawn, drain, ready or maint)\n", o->signal);
		return EXIT_CONFIG;
	}
	if (rescue_read_setting(o->config, "control_socket", ctl, sizeof(ctl), err) == -1) {
		fprintf(stderr, "%s\n", err);
		return EXIT_CONFIG;
	}
	if (ctl[0] != '\0')
		return ask_master(o, ctl);
	if (signo == 0) {
		fprintf(stderr, "echomaster: -s %s needs control_socket in %s\n", o->signal, o->config);
		return EXIT_CONFIG;
	}
	return signal_master(o, signo);
}

/* The pid file is taken before anything is bound: a second instance fails first. */
static void
start_take_pid_file(struct master_boot *boot)
{
	char err[CFG_ERR_LEN];

	if (boot->cfg->pid_file[0] == '\0')
		return;
	if ((boot->pid_path = strdup(boot->cfg->pid_file)) == NULL)
		fatal("strdup");
	if ((boot->pid_fd = pidfile_acquire(boot->pid_path, err, sizeof(err))) == -1)
		fatalx("%s", err);
}

/*
 * Start-up: the pid file, the listeners (adopting those inherited by
 * LISTEN_FDS, binding the others), then detaching (after binding, so
 * that a bind error still reaches the terminal) and the pid written; then
 * the master runs. Any failure here is fatal: nothing serves yet.
 */
/*
 * The binary a live upgrade runs: this one's path, read before anything
 * could replace the file (once it is replaced, /proc/self/exe names the
 * old, deleted file).
 */
static char *
start_resolve_exe(void)
{
	char path[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", path, sizeof(path) - 1);
	char *exe;

	if (n <= 0)
		fatal("readlink /proc/self/exe");
	path[n] = '\0';
	if ((exe = strdup(path)) == NULL)
		fatal("strdup");
	return exe;
}

/*
 * What the environment hands a starting master: systemd's LISTEN_* and a
 * live upgrade's channel. Taken first thing, before proctitle copies the
 * environment and before anything opens a descriptor that could be
 * mistaken for an inherited one; unset, so that no child of ours sees them.
 */
struct start_env {
	struct listen_env listen;
	struct inherited inh;       /* the sockets LISTEN_FDS passed us */
	bool inherit_failed;        /* malformed LISTEN_*: inherit_err says so */
	char inherit_err[128];
	char *upgrade_fd;           /* UPGRADE_FD_ENV, malloc'd; NULL when unset */
};

static int
start_env_take(struct start_env *se)
{
	const char *fd = getenv(UPGRADE_FD_ENV);

	memset(se, 0, sizeof(*se));
	if (listeners_env_take(&se->listen) == -1)
		return -1;
	if (fd != NULL && (se->upgrade_fd = strdup(fd)) == NULL) {
		listeners_env_free(&se->listen);
		return -1;
	}
	unsetenv(UPGRADE_FD_ENV);
	se->inherit_failed = listeners_inherit(&se->inh, &se->listen, se->inherit_err,
	    sizeof(se->inherit_err)) == -1;
	return 0;
}

static void
start_env_free(struct start_env *se)
{
	listeners_inherited_free(&se->inh);
	listeners_env_free(&se->listen);
	free(se->upgrade_fd);
}

/* The listeners: inherited ones (LISTEN_FDS) adopted, the others bound; strays closed. */
static struct listeners *
start_listeners(struct cfg *cfg, struct start_env *se, char *err, size_t errlen)
{
	struct listeners *ls;

	if (se->inherit_failed) {
		snprintf(err, errlen, "%s", se->inherit_err);
		return NULL;
	}
	ls = listeners_open_inherited(cfg, &se->inh, err, errlen);
	listeners_inherited_free(&se->inh);
	return ls;
}

/*
 * Start-up: the pid file, the listeners (adopting those inherited by
 * LISTEN_FDS, binding the others), then detaching (after binding, so that
 * a bind error still reaches the terminal) and the pid written; then the
 * master runs. Any failure here is fatal: nothing serves yet.
 */
static int
start(struct cfg *cfg, bool foreground, struct start_env *se)
{
	struct master_boot boot = { .cfg = cfg, .pid_fd = -1, .upgrade_fd = -1, .ctl_fd = -1,
	    .metrics_fd = -1 };
	bool detach = cfg->daemon && !foreground;
	char err[CFG_ERR_LEN];

	boot.exe = start_resolve_exe();
	daemon_absolute_path(cfg);  /* a new master of a live upgrade is given it with -c */
	log_configure(cfg->log_facility, cfg->log_level, cfg->log_stderr);
	start_take_pid_file(&boot);
	if ((boot.ls = start_listeners(cfg, se, err, sizeof(err))) == NULL) {
		pidfile_release(boot.pid_fd, boot.pid_path);  /* we never ran: leave no pid file */
		fatalx("%s", err);
	}
	if (detach)
		daemon_detach();
	if (boot.pid_fd != -1 && pidfile_write(boot.pid_fd) == -1)
		fatal("cannot write pid file %s", boot.pid_path);
	return master_run(&boot);
}

/* The descriptors of the old master's state, by the UPMSG_*_FD bits, in that order. */
static void
upgraded_fds(struct master_boot *boot)
{
	const struct upmsg *m = &boot->from;
	int *dst[] = { &boot->pid_fd, &boot->ctl_fd, &boot->metrics_fd };
	uint32_t k = 0;

	for (int i = 0; i < 3; i++)
		if (m->understood && (m->state.fds & (1u << i)) && k < m->nfds)
			*dst[i] = m->fds[k++];
}

/*
 * The pid file's path: the file the old master's descriptor is open on (a
 * changed pid_file takes a restart), else the configured one; NULL for none.
 */
static char *
upgraded_pid_path(const struct cfg *cfg, int pid_fd)
{
	char link[64], path[PATH_MAX];
	ssize_t n = -1;
	char *p;

	if (pid_fd != -1) {
		snprintf(link, sizeof(link), "/proc/self/fd/%d", pid_fd);
		n = readlink(link, path, sizeof(path) - 1);
	}
	if (n > 0) {
		path[n] = '\0';
		if (cfg->pid_file[0] == '/' && strcmp(path, cfg->pid_file) != 0)
			log_warnx("changing pid_file needs a restart; still using %s", path);
	} else if (cfg->pid_file[0] == '\0') {
		return NULL;
	} else {
		snprintf(path, sizeof(path), "%s", cfg->pid_file);
	}
	if ((p = strdup(path)) == NULL)
		fatal("strdup");
	return p;
}

/*
 * Start-up of a live upgrade's new master, exec'd by the old one with
 * UPGRADE_FD_ENV: the old master's state first, then its listeners from
 * LISTEN_FDS. Never detaches: it stays the old master's child until that
 * one exits. The pid file is the old master's very descriptor (its lock
 * with it), written once we take over; when the state was not understood
 * it is taken afresh once the old master is gone.
 */
static int
start_upgraded(struct cfg *cfg, struct start_env *se)
{
	struct master_boot boot = { .cfg = cfg, .pid_fd = -1, .ctl_fd = -1, .metrics_fd = -1 };
	char err[CFG_ERR_LEN];

	boot.upgrade_fd = (int)strtol(se->upgrade_fd, NULL, 10);  /* a bad one fails below */
#ifdef EM_TEST_HOOKS
	/* Test builds only: a new master that crashes as it starts, while the named file exists. */
	if (getenv("EM_TEST_UPGRADE_CRASH") != NULL && access(getenv("EM_TEST_UPGRADE_CRASH"), F_OK) == 0)
		signal(SIGSEGV, SIG_DFL), raise(SIGSEGV);  /* not a sanitizer's handler: a real crash */
#endif
	boot.exe = start_resolve_exe();
	daemon_absolute_path(cfg);
	log_configure(cfg->log_facility, cfg->log_level, cfg->log_stderr);
	if (boot.upgrade_fd < 3 || upgrade_boot(boot.upgrade_fd, &boot.from, err, sizeof(err)) == -1)
		fatalx("%s", boot.upgrade_fd < 3 ? "upgrade: bad " UPGRADE_FD_ENV : err);
	upgraded_fds(&boot);
	boot.pid_path = upgraded_pid_path(cfg, boot.pid_fd);
	if ((boot.ls = start_listeners(cfg, se, err, sizeof(err))) == NULL)
		fatalx("%s", err);
	return master_run(&boot);
}

static int
main_run(int argc, char **argv, struct start_env *se)
{
	struct options o;
	struct cfg *cfg;
	char err[CFG_ERR_LEN];

	if (proctitle_init(argc, argv) == -1) {
		fprintf(stderr, "echomaster: out of memory\n");
		return EXIT_RUNTIME;
	}
	if (options_parse(&o, argc, argv) == -1)
		return EXIT_CONFIG;
	if (o.signal != NULL)
		return send_signal(&o);
	if ((cfg = cfg_load(o.config, err)) == NULL) {
		fprintf(stderr, "%s\n", err);
		if (o.test)
			fprintf(stderr, "echomaster: configuration file %s test failed\n", o.config);
		return EXIT_CONFIG;
	}
	if (o.test) {
		if (cfg->warnings != NULL)
			fputs(cfg->warnings, stderr);
		fprintf(stderr, "echomaster: configuration file %s syntax is ok\n", o.config);
		fprintf(stderr, "echomaster: configuration file %s test is successful\n", o.config);
		if (o.dump)
			cfg_dump(cfg, stdout);
		cfg_free(cfg);
		return EXIT_OK;
	}
	log_init(true);
	cfg_log_warnings(cfg);
	return se->upgrade_fd != NULL ? start_upgraded(cfg, se) : start(cfg, o.foreground, se);
}

int
main(int argc, char **argv)
{
	struct start_env se;
	int rc;

	if (start_env_take(&se) == -1) {
		fprintf(stderr, "echomaster: out of memory\n");
		return EXIT_RUNTIME;
	}
	rc = main_run(argc, argv, &se);
	start_env_free(&se);
	return rc;
}
