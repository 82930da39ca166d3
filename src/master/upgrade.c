#include "master/upgrade.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/log.h"
#include "master/supervisor.h"

void
upgrade_init(struct upgrade *u, int epfd, uint8_t kind, const char *exe, const char *conf)
{
	memset(u, 0, sizeof(*u));
	u->ev.kind = kind;
	u->epfd = epfd;
	u->check_fd = -1;
	u->chan = -1;
	snprintf(u->exe, sizeof(u->exe), "%s", exe);
	snprintf(u->conf, sizeof(u->conf), "%s", conf);
}

/* In a child about to exec: what the master blocked or ignored is the default again. */
static void
child_reset_signals(void)
{
	sigset_t none;

	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	for (int sig = 1; sig < NSIG; sig++)
		if (sig != SIGKILL && sig != SIGSTOP)
			signal(sig, SIG_DFL);
}

/* In a child: execs ARGV, or says why on stderr and exits 127. */
static void
child_exec(char *const argv[])
{
	char msg[256];
	int n;

	execv(argv[0], argv);
	n = snprintf(msg, sizeof(msg), "exec failed: %s\n", strerror(errno));
	if (write(STDERR_FILENO, msg, (size_t)n) < 0)
		_exit(127);
	_exit(127);
}

static void
child_check(const struct upgrade *u, int err_fd)
{
	char *argv[] = { (char *)u->exe, "-t", "-c", (char *)u->conf, NULL };
	int null = open("/dev/null", O_RDWR);

	child_reset_signals();
	if (null != -1) {
		dup2(null, STDIN_FILENO);
		dup2(null, STDOUT_FILENO);
	}
	dup2(err_fd, STDERR_FILENO);
	close_range(3, ~0U, 0);
	child_exec(argv);
}

int
upgrade_check(struct upgrade *u, int64_t now)
{
	int p[2];

	if (pipe2(p, O_CLOEXEC) == -1) {
		snprintf(u->why, sizeof(u->why), "pipe: %s", strerror(errno));
		return -1;
	}
	if ((u->check_pid = fork()) == -1) {
		snprintf(u->why, sizeof(u->why), "fork: %s", strerror(errno));
		close(p[0]);
		close(p[1]);
		u->check_pid = 0;
		return -1;
	}
	if (u->check_pid == 0)
		child_check(u, p[1]);
	close(p[1]);
	u->check_fd = p[0];
	fcntl(u->check_fd, F_SETFL, O_NONBLOCK);
	u->phase = UP_CHECKING;
	u->deadline_ms = now + UPGRADE_CHECK_TIMEOUT_MS;
	log_notice("upgrade: checking %s with %s", u->exe, u->conf);
	return 0;
}

/* The check's first line of stderr that says something, into buf. */
static void
check_output(struct upgrade *u, char *buf, size_t len)
{
	ssize_t n = read(u->check_fd, buf, len - 1);
	char *nl;

	buf[n > 0 ? n : 0] = '\0';
	if ((nl = strchr(buf, '\n')) != NULL)
		*nl = '\0';
	close(u->check_fd);
	u->check_fd = -1;
}

static void
check_reaped(struct upgrade *u, int status, enum upgrade_event *ev)
{
	char out[400], how[96];

	u->check_pid = 0;
	check_output(u, out, sizeof(out));
	if (sup_exit_is_clean(status)) {
		*ev = UPE_CHECKED;
		return;
	}
	sup_describe_exit(status, how, sizeof(how));
	if (out[0] != '\0')
		snprintf(u->why, sizeof(u->why), "%s -t: %s", u->exe, out);
	else
		snprintf(u->why, sizeof(u->why), "%s -t %s", u->exe, how);
	*ev = UPE_FAILED;
}

bool
upgrade_reaped(struct upgrade *u, pid_t pid, int status, enum upgrade_event *ev)
{
	char how[96];

	*ev = UPE_NONE;
	if (pid == 0)
		return false;
	if (pid == u->check_pid) {
		check_reaped(u, status, ev);
		return true;
	}
	if (pid != u->new_pid)
		return false;
	u->new_pid = 0;
	sup_describe_exit(status, how, sizeof(how));
	if (u->phase == UP_STARTING || u->phase == UP_CONFIRMING) {
		snprintf(u->why, sizeof(u->why), "the new master %ld %s before it %s", (long)pid,
		    how, u->phase == UP_STARTING ? "was ready" : "took over");
		*ev = UPE_FAILED;
	} else {
		log_warnx("upgrade: the new master %ld %s", (long)pid, how);
	}
	return true;
}

/*
 * In the new master's child: the listeners on 3.. (LISTEN_FDS), the channel
 * right after them, nothing else open past stderr. Everything is first
 * moved above the range, so that no dup2 overwrites a descriptor still to
 * be placed (a dup2 onto itself would also leave close-on-exec set).
 */
static void
child_new_master(const struct upgrade *u, const struct listeners *ls, int chan)
{
	char *argv[] = { (char *)u->exe, "-F", "-c", (char *)u->conf, NULL };
	int top = LISTENERS_INHERIT_FIRST + (int)ls->n + 1, nchan = top - 1;
	int fds[ls->n + 1];
	char num[32];

	child_reset_signals();
	for (size_t i = 0; i < ls->n; i++)
		fds[i] = fcntl(ls->fds[i], F_DUPFD, top);
	chan = fcntl(chan, F_DUPFD, top);
	for (size_t i = 0; i < ls->n; i++)
		if (fds[i] == -1 || dup2(fds[i], LISTENERS_INHERIT_FIRST + (int)i) == -1)
			_exit(127);
	if (chan == -1 || dup2(chan, nchan) == -1)
		_exit(127);
	close_range((unsigned)top, ~0U, 0);
	snprintf(num, sizeof(num), "%ld", (long)getpid());
	setenv("LISTEN_PID", num, 1);
	snprintf(num, sizeof(num), "%zu", ls->n);
	setenv("LISTEN_FDS", num, 1);
	unsetenv("LISTEN_FDNAMES");
	snprintf(num, sizeof(num), "%d", nchan);
	setenv(UPGRADE_FD_ENV, num, 1);
	child_exec(argv);
}

/* The state format to write: ours, unless a test build is told to write another. */
static uint32_t
state_version(void)
{
#ifdef EM_TEST_HOOKS
	if (getenv("EM_TEST_UPGRADE_STATE_VERSION") != NULL)
		return (uint32_t)strtoul(getenv("EM_TEST_UPGRADE_STATE_VERSION"), NULL, 10);
#endif
	return UPMSG_VERSION;
}

static int
send_state(struct upgrade *u, const struct upmsg_state *st, const int pass[3])
{
	struct upmsg m = { .kind = UPM_STATE, .state = *st };
	int fds[3];
	uint32_t n = 0;

	m.state.fds = 0;
	for (int i = 0; i < 3; i++) {
		if (pass[i] == -1)
			continue;
		m.state.fds |= 1u << i;
		fds[n++] = pass[i];
	}
	if (upmsg_send(u->chan, &m, state_version(), fds, n) == -1) {
		snprintf(u->why, sizeof(u->why), "cannot send the state to the new master: %s",
		    strerror(errno));
		return -1;
	}
	return 0;
}

static void
watch_channel(struct upgrade *u)
{
	if (ev_add(u->epfd, u->chan, EPOLLIN, &u->ev) == -1)
		log_warn("upgrade: epoll_ctl");
}

int
upgrade_spawn(struct upgrade *u, const struct upmsg_state *st, const int pass[3],
    const struct listeners *ls, int64_t now)
{
	int sv[2];
	pid_t pid;

	if (u->chan != -1) {
		/* Never orphan a channel (it would stay in epoll): the caller refuses this. */
		log_warnx("upgrade: a channel to pid %ld was still open; closing it", (long)u->peer_pid);
		upgrade_close(u);
	}
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == -1) {
		snprintf(u->why, sizeof(u->why), "socketpair: %s", strerror(errno));
		return -1;
	}
	if ((pid = fork()) == -1) {
		snprintf(u->why, sizeof(u->why), "fork: %s", strerror(errno));
		close(sv[0]);
		close(sv[1]);
		return -1;
	}
	if (pid == 0)
		child_new_master(u, ls, sv[1]);
	close(sv[1]);
	u->chan = sv[0];
	u->new_pid = u->peer_pid = pid;
	u->phase = UP_STARTING;
	u->understood = false;
	u->deadline_ms = now + UPGRADE_READY_TIMEOUT_MS;
	log_notice("upgrade: started the new master %ld (%s)", (long)pid, u->exe);
	/*
	 * A new master that cannot take the state has exited or is about to
	 * (the exec failed, it crashed): its exit status, reaped, says more
	 * than EPIPE, and the deadline bounds the wait for it.
	 */
	if (send_state(u, st, pass) == -1) {
		log_warnx("upgrade: %s", u->why);
		upgrade_close(u);
		return 0;
	}
	watch_channel(u);
	return 0;
}

/* The old master's view of one message. */
static enum upgrade_event
old_side_message(struct upgrade *u)
{
	struct upmsg *m = &u->msg;

	switch (m->kind) {
	case UPM_ANSWER:
		u->understood = m->understood;
		return UPE_ANSWERED;
	case UPM_READY:
		return UPE_READY;
	case UPM_HAND_OVER:
		return UPE_HAND_OVER;
	case UPM_HAND_OVER_END:
		return UPE_HANDED;
	case UPM_TAKEN:
		if (u->phase != UP_CONFIRMING)
			return UPE_NONE;
		u->phase = UP_COMMITTED;
		return UPE_TAKEN;
	default:
		log_warnx("upgrade: message %u from the new master ignored", (unsigned)m->kind);
		upmsg_close_fds(m);
		return UPE_NONE;
	}
}

enum upgrade_event
upgrade_read(struct upgrade *u)
{
	int r;

	if (u->chan == -1)
		return UPE_NONE;  /* closed earlier in this epoll batch: its EOF was reported */
	r = upmsg_recv(u->chan, &u->msg);
	if (r == -1 && (errno == EAGAIN || errno == EINTR))
		return UPE_NONE;
	if (r == -1 && errno == EPROTO) {
		log_warnx("upgrade: a malformed message from pid %ld ignored", (long)u->peer_pid);
		return UPE_NONE;
	}
	if (r <= 0) {
		upgrade_close(u);
		/*
		 * Before its take-over: its exit status, once reaped, is the
		 * better reason; the deadline bounds it.
		 */
		return u->phase == UP_STARTING || u->phase == UP_CONFIRMING ? UPE_NONE :
		    UPE_PEER_GONE;
	}
	if (u->phase == UP_ADOPTING || u->phase == UP_ADOPTED) {
		if (u->msg.kind == UPM_TAKE_OVER)
			return UPE_TAKE_OVER;
		if (u->msg.kind == UPM_MAIN)
			return UPE_MAIN;
		upmsg_close_fds(&u->msg);
		log_warnx("upgrade: message %u from the old master ignored", (unsigned)u->msg.kind);
		return UPE_NONE;
	}
	return old_side_message(u);
}

/* The phases with a deadline. */
static bool
timed(const struct upgrade *u)
{
	return u->phase == UP_CHECKING || u->phase == UP_STARTING || u->phase == UP_CONFIRMING;
}

bool
upgrade_overdue(struct upgrade *u, int64_t now)
{
	if (!timed(u) || now < u->deadline_ms)
		return false;
	if (u->phase == UP_CHECKING)
		snprintf(u->why, sizeof(u->why), "the check of %s did not finish within %d s", u->exe,
		    UPGRADE_CHECK_TIMEOUT_MS / 1000);
	else
		snprintf(u->why, sizeof(u->why), "the new master %ld (%s) %s within %d s",
		    (long)u->new_pid, u->exe, u->phase == UP_STARTING ? "was not ready" :
		    "did not take over", UPGRADE_READY_TIMEOUT_MS / 1000);
	return true;
}

int64_t
upgrade_due(const struct upgrade *u)
{
	return timed(u) ? u->deadline_ms : 0;
}

static void
kill_and_reap(pid_t pid)
{
	if (pid <= 0)
		return;
	kill(pid, SIGKILL);
	while (waitpid(pid, NULL, 0) == -1 && errno == EINTR)
		;
}

void
upgrade_kill(struct upgrade *u)
{
	kill_and_reap(u->check_pid);
	kill_and_reap(u->new_pid);
	u->check_pid = u->new_pid = 0;
	if (u->check_fd != -1)
		close(u->check_fd);
	u->check_fd = -1;
	upgrade_close(u);
	u->phase = UP_IDLE;
}

void
upgrade_close(struct upgrade *u)
{
	if (u->chan == -1)
		return;
	ev_del(u->epfd, u->chan);
	close(u->chan);
	u->chan = -1;
}

pid_t
upgrade_predecessor(const struct upgrade *u)
{
	if ((u->phase != UP_ADOPTING && u->phase != UP_ADOPTED) || u->chan == -1)
		return 0;
	return u->peer_pid;
}

bool
upgrade_owns_place(const struct upgrade *u)
{
	return u->phase != UP_ADOPTING;
}

static int
send_simple(struct upgrade *u, struct upmsg *m, const char *what)
{
	if (u->chan == -1 || upmsg_send(u->chan, m, UPMSG_VERSION, NULL, 0) == -1) {
		snprintf(u->why, sizeof(u->why), "cannot send %s to pid %ld: %s", what,
		    (long)u->peer_pid, u->chan == -1 ? "channel closed" : strerror(errno));
		log_warnx("upgrade: %s", u->why);
		return -1;
	}
	return 0;
}

int
upgrade_take_over(struct upgrade *u, int nold, int64_t now)
{
	struct upmsg m = { .kind = UPM_TAKE_OVER, .slot = nold };

	u->phase = UP_CONFIRMING;
	u->deadline_ms = now + UPGRADE_READY_TIMEOUT_MS;
	return send_simple(u, &m, "take-over");
}

int
upgrade_boot(int fd, struct upmsg *m, char *err, size_t errlen)
{
	struct pollfd pfd = { .fd = fd, .events = POLLIN };
	struct upmsg answer = { .kind = UPM_ANSWER };
	int r;

	fcntl(fd, F_SETFD, FD_CLOEXEC);
	if (poll(&pfd, 1, UPGRADE_READY_TIMEOUT_MS) != 1) {
		snprintf(err, errlen, "upgrade: no state from the old master");
		return -1;
	}
	if ((r = upmsg_recv(fd, m)) != 1 || m->kind != UPM_STATE) {
		snprintf(err, errlen, "upgrade: %s from the old master", r == 0 ? "EOF" :
		    r == -1 ? strerror(errno) : "not a state");
		return -1;
	}
	answer.understood = m->understood;
	if (upmsg_send(fd, &answer, UPMSG_VERSION, NULL, 0) == -1) {
		snprintf(err, errlen, "upgrade: cannot answer the old master: %s", strerror(errno));
		upmsg_close_fds(m);
		return -1;
	}
	return 0;
}

void
upgrade_adopt(struct upgrade *u, int fd, pid_t old_pid)
{
	/* The old master reads promptly; a stuck one must not hold us forever. */
	struct timeval tv = { .tv_sec = 5 };

	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	u->chan = fd;
	u->peer_pid = old_pid;
	u->phase = UP_ADOPTING;
	watch_channel(u);
}

int
upgrade_send_ready(struct upgrade *u, unsigned generation)
{
	struct upmsg m = { .kind = UPM_READY, .pid = getpid(), .generation = generation };

	snprintf(m.binary_version, sizeof(m.binary_version), "%s", EM_VERSION);
	return send_simple(u, &m, "ready");
}

int
upgrade_relay(void *arg, const struct chan_msg *hand)
{
	struct upgrade_relay *r = arg;
	struct upmsg m = { .kind = UPM_HAND_OVER, .slot = r->slot, .hand = *hand };

	if (r->u->chan == -1) {
		errno = EPIPE;
		return -1;
	}
	return upmsg_send(r->u->chan, &m, UPMSG_VERSION, NULL, 0);
}

int
upgrade_send_taken(struct upgrade *u)
{
	struct upmsg m = { .kind = UPM_TAKEN };

	return send_simple(u, &m, "the take-over's confirmation");
}

int
upgrade_send_main(struct upgrade *u)
{
	struct upmsg m = { .kind = UPM_MAIN };

	return send_simple(u, &m, "systemd's new main process");
}

int
upgrade_send_end(struct upgrade *u)
{
	struct upmsg m = { .kind = UPM_HAND_OVER_END };

	return send_simple(u, &m, "the end of the hand-over");
}
