/*
 * test_graceful.c: a graceful stop (QUIT) resets no connection the kernel
 * accepted. Before the workers stop accepting, the master stops new
 * handshakes on the TCP listeners and lets the workers take what the
 * kernel has queued (src/master/quiesce.h), so every client whose connect
 * succeeded is served: its line comes back upper-cased, then EOF. A client
 * that connects after that is refused (ECONNREFUSED once the listener is
 * closed), which is counted apart: a refusal is not a reset.
 *
 * Shown two ways: a burst of non-blocking connects spanning the QUIT, and
 * connect-echo-close churn from several processes across it; then the
 * burst again, a few times, with two busy loops competing for the CPUs.
 * Each run counts served, refused, reset (RST or an error after
 * "connected"), early EOF and wrong replies; reset, EOF and wrong must be
 * 0, and both served and refused must be seen, so the run did span the
 * stop. The burst's last connects are issued only once the log says new
 * handshakes are dropped (a loaded machine may run the master later than
 * the whole burst takes), and none of them may connect.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "harness.h"

#include <errno.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define BURST           2000
#define BURST_BEFORE    1000   /* connects issued before the QUIT, the rest after */
#define BURST_LATE      100    /* the last ones: issued once the filter is known to be on */
#define BURST_LOOK      25     /* after the QUIT, the log is looked at every this many */
#define FILTER_ON_LOG   "graceful stop: no new connections"
#define CHURNERS        4
#define BUSY_LOOPS      2
#define REPEATS         3
#define MSG_MAX         32

/* What the clients saw; only served and refused are allowed. */
struct tally {
	unsigned long served;      /* the echo came back whole and right, then EOF */
	unsigned long refused;     /* the connect failed: never accepted */
	unsigned long reset;       /* an error (RST) after the connect succeeded */
	unsigned long early_eof;   /* EOF before the whole echo */
	unsigned long wrong;       /* bytes that are not the echo */
	unsigned long unanswered;  /* the connect neither succeeded nor failed in time */
	unsigned long admitted;    /* connected, though it began after the filter was on */
};

static void
tally_add(struct tally *t, const struct tally *u)
{
	t->served += u->served;
	t->refused += u->refused;
	t->reset += u->reset;
	t->early_eof += u->early_eof;
	t->wrong += u->wrong;
	t->unanswered += u->unanswered;
	t->admitted += u->admitted;
}

static void
tally_print(const char *what, const struct tally *t)
{
	print_message("%s: served %lu, refused %lu, reset %lu, early EOF %lu, wrong %lu, "
	    "unanswered %lu, admitted late %lu\n", what, t->served, t->refused, t->reset,
	    t->early_eof, t->wrong, t->unanswered, t->admitted);
}

/* The verdict of every run: nothing accepted was lost, and the run spanned the stop. */
static void
tally_expect(const char *what, const struct tally *t)
{
	tally_print(what, t);
	assert_int_equal(t->reset, 0);
	assert_int_equal(t->early_eof, 0);
	assert_int_equal(t->wrong, 0);
	assert_int_equal(t->admitted, 0);
	assert_true(t->served > 0);
	assert_true(t->refused + t->unanswered > 0);
}

static void
graceful_conf(struct env *e, int port)
{
	struct em_conf c;

	conf_init(&c, 2);
	c.shutdown_timeout = 20;
	conf_listen(&c, "tcp", port, "upper");
	env_write_conf(e, &c);
}

static int
connect_start(int port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
	    .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) == -1 && errno != EINPROGRESS) {
		close(fd);
		return -1;
	}
	return fd;
}

/* One client of the burst: connecting, then waiting for its echo. */
struct bclient {
	int fd;                 /* -1 once judged */
	bool connected;
	bool late;              /* begun after the log said new handshakes are dropped */
	char msg[MSG_MAX];
	char got[MSG_MAX];
	size_t len, rcvd;
};

static void
judge_close(struct bclient *b, unsigned long *count)
{
	(*count)++;
	close(b->fd);
	b->fd = -1;
}

static void
bclient_connected(struct bclient *b, struct tally *t)
{
	int err = 0;
	socklen_t el = sizeof(err);

	getsockopt(b->fd, SOL_SOCKET, SO_ERROR, &err, &el);
	if (err != 0) {
		judge_close(b, &t->refused);
		return;
	}
	if (b->late) {
		judge_close(b, &t->admitted);
		return;
	}
	b->connected = true;
	if (send(b->fd, b->msg, b->len, MSG_NOSIGNAL) != (ssize_t)b->len)
		judge_close(b, &t->reset);
}

/* The echo, then EOF: the worker closes once the client has shut its side. */
static void
bclient_read(struct bclient *b, struct tally *t)
{
	char up[MSG_MAX];
	ssize_t n = recv(b->fd, b->got + b->rcvd, sizeof(b->got) - b->rcvd, 0);

	if (n < 0) {
		if (errno != EAGAIN && errno != EINTR)
			judge_close(b, &t->reset);
		return;
	}
	if (n > 0) {
		b->rcvd += (size_t)n;
		if (b->rcvd > b->len)
			judge_close(b, &t->wrong);
		else if (b->rcvd == b->len)
			shutdown(b->fd, SHUT_WR);
		return;
	}
	ref_upper((const uint8_t *)b->msg, (uint8_t *)up, b->len);
	if (b->rcvd < b->len)
		judge_close(b, &t->early_eof);
	else if (memcmp(up, b->got, b->len) != 0)
		judge_close(b, &t->wrong);
	else
		judge_close(b, &t->served);
}

static void
bclient_event(struct bclient *b, short revents, struct tally *t)
{
	if (!b->connected) {
		if (revents & (POLLOUT | POLLERR | POLLHUP))
			bclient_connected(b, t);
		return;
	}
	if (revents & (POLLIN | POLLERR | POLLHUP))
		bclient_read(b, t);
}

/* One poll round over the clients still open; returns how many are open. */
static size_t
burst_step(struct bclient *b, size_t n, struct pollfd *pfd, struct tally *t, int wait_ms)
{
	size_t k = 0;

	for (size_t i = 0; i < n; i++) {
		if (b[i].fd == -1)
			continue;
		pfd[k].fd = b[i].fd;
		pfd[k].events = b[i].connected ? POLLIN : POLLOUT;
		pfd[k].revents = 0;
		k++;
	}
	if (k == 0 || poll(pfd, k, wait_ms) <= 0)
		return k;
	for (size_t i = 0, j = 0; i < n && j < k; i++) {
		if (b[i].fd == -1 || b[i].fd != pfd[j].fd)
			continue;
		if (pfd[j].revents != 0)
			bclient_event(&b[i], pfd[j].revents, t);
		j++;
	}
	return k;
}

static void
burst_open(struct bclient *b, int port, int i, struct tally *t)
{
	memset(b, 0, sizeof(*b));
	b->len = (size_t)snprintf(b->msg, sizeof(b->msg), "burst %d\n", i);
	if ((b->fd = connect_start(port)) == -1)
		t->refused++;
}

/*
 * Whether the log, from FROM on, says the QUIT's filter is on, looked at
 * every BURST_LOOK connects. Before the last BURST_LATE it is waited for:
 * however late a loaded machine runs the master, those meet the filter.
 */
static bool
burst_filter_on(struct env *e, size_t from, int i)
{
	if (i == BURST - BURST_LATE) {
		env_wait_log_from(e, from, FILTER_ON_LOG, EM_DEADLINE_MS);
		return true;
	}
	return i % BURST_LOOK == 0 && env_log_find(e, from, FILTER_ON_LOG) > 0;
}

/*
 * BURST connects, BURST_BEFORE of them before the QUIT and the rest after,
 * the later ones once the filter is on, all served as they complete; then
 * waits until each is judged or the deadline has passed (a SYN the filter
 * dropped is refused at its retransmit once the listener is closed).
 */
static void
burst_across_quit(struct env *e, int port, struct tally *t)
{
	struct bclient *b = calloc(BURST, sizeof(*b));
	struct pollfd *pfd = calloc(BURST, sizeof(*pfd));
	bool filter_on = false;
	int filter_at = 0;
	size_t open = 1, from = 0;
	int64_t deadline;

	assert_non_null(b);
	assert_non_null(pfd);
	memset(t, 0, sizeof(*t));
	for (int i = 0; i < BURST; i++) {
		if (i == BURST_BEFORE) {
			from = env_log_size(e);
			env_signal(e, SIGQUIT);
		} else if (i > BURST_BEFORE && !filter_on && burst_filter_on(e, from, i)) {
			filter_on = true;
			filter_at = i;
		}
		burst_open(&b[i], port, i, t);
		b[i].late = filter_on;
		if (i % 50 == 49)
			burst_step(b, (size_t)i + 1, pfd, t, 0);
	}
	print_message("QUIT before connect %d; the filter on, as logged, before connect %d\n",
	    BURST_BEFORE, filter_at);
	deadline = now_ms() + EM_DEADLINE_MS;
	while (open > 0 && now_ms() < deadline)
		open = burst_step(b, BURST, pfd, t, 50);
	for (size_t i = 0; i < BURST; i++)
		if (b[i].fd != -1)
			judge_close(&b[i], b[i].connected ? &t->early_eof : &t->unanswered);
	free(b);
	free(pfd);
}

/* A daemon started again in the same env: its log goes on, so wait past the old lines. */
static void
start_ready_again(struct env *e, int port)
{
	size_t from = env_log_size(e);

	env_start(e);
	env_wait_log_from(e, from, "ready: 2 workers, generation 1", EM_DEADLINE_MS);
	tcp_wait_listening(port, EM_DEADLINE_MS);
}

static void
burst_run(struct env *e, const char *what)
{
	int port = port_pick();
	size_t from = env_log_size(e);
	struct tally t;

	graceful_conf(e, port);
	start_ready_again(e, port);
	burst_across_quit(e, port, &t);
	assert_int_equal(env_wait_exit(e, EM_DEADLINE_MS), 0);
	tally_expect(what, &t);
	assert_int_equal(t.served + t.refused + t.unanswered, BURST);
	/* The master waited for the queues, and did not give up on them. */
	assert_true(env_log_find(e, from, "graceful stop: accept queues empty") > 0);
}

static void
burst_of_connects_across_quit_resets_none(void **state)
{
	burst_run(*state, "burst of 2000 across QUIT");
}

/* One churning client process: connect, one line, the echo, close, until told to stop. */
static void
churn_one(int port, int wfd)
{
	struct tally t = { 0 };
	sigset_t set;
	int i = 0;

	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	sigprocmask(SIG_BLOCK, &set, NULL);
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	for (;;) {
		struct bclient b;
		struct pollfd p;
		int64_t deadline = now_ms() + 5000;
		struct timespec zero = { 0 };

		if (sigtimedwait(&set, NULL, &zero) == SIGUSR1)
			break;
		burst_open(&b, port, i++, &t);
		while (b.fd != -1 && now_ms() < deadline) {
			p.fd = b.fd;
			p.events = b.connected ? POLLIN : POLLOUT;
			p.revents = 0;
			if (poll(&p, 1, 50) > 0)
				bclient_event(&b, p.revents, &t);
		}
		if (b.fd != -1)
			judge_close(&b, b.connected ? &t.early_eof : &t.unanswered);
	}
	if (write(wfd, &t, sizeof(t)) != (ssize_t)sizeof(t))
		_exit(1);
	_exit(0);
}

static void
churn_across_quit_resets_none(void **state)
{
	struct env *e = *state;
	int port = port_pick(), fds[2];
	pid_t kids[CHURNERS];
	struct tally all = { 0 };

	graceful_conf(e, port);
	env_start_ready(e, 2, port);
	assert_int_equal(pipe(fds), 0);
	for (int i = 0; i < CHURNERS; i++) {
		assert_true((kids[i] = fork()) >= 0);
		if (kids[i] == 0)
			churn_one(port, fds[1]);
	}
	close(fds[1]);
	/* Churn first, then the stop in the middle of it; then a little past the exit. */
	for (int64_t until = now_ms() + 500; now_ms() < until; )
		nap_ms(EM_POLL_NAP_MS);
	env_signal(e, SIGQUIT);
	assert_int_equal(env_wait_exit(e, EM_DEADLINE_MS), 0);
	for (int i = 0; i < CHURNERS; i++)
		kill(kids[i], SIGUSR1);
	for (int i = 0; i < CHURNERS; i++) {
		struct tally t;
		assert_int_equal(read(fds[0], &t, sizeof(t)), (ssize_t)sizeof(t));
		tally_add(&all, &t);
	}
	for (int i = 0; i < CHURNERS; i++)
		waitpid(kids[i], NULL, 0);
	close(fds[0]);
	tally_expect("churn of 4 clients across QUIT", &all);
}

/* Burns a CPU until killed (or until the test process is gone). */
static pid_t
busy_loop(void)
{
	pid_t pid = fork();

	assert_true(pid >= 0);
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		for (volatile unsigned long x = 0;; x++)
			;
	}
	return pid;
}

static void
bursts_under_load_reset_none(void **state)
{
	struct env *e = *state;
	pid_t busy[BUSY_LOOPS];
	char what[64];

	for (int i = 0; i < BUSY_LOOPS; i++)
		busy[i] = busy_loop();
	for (int r = 0; r < REPEATS; r++) {
		snprintf(what, sizeof(what), "burst under load, run %d", r + 1);
		burst_run(e, what);
	}
	for (int i = 0; i < BUSY_LOOPS; i++) {
		kill(busy[i], SIGKILL);
		waitpid(busy[i], NULL, 0);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(burst_of_connects_across_quit_resets_none,
		    env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(churn_across_quit_resets_none, env_setup,
		    env_teardown),
		cmocka_unit_test_setup_teardown(bursts_under_load_reset_none, env_setup,
		    env_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
