#include "master/workers.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/log.h"
#include "master/events.h"
#include "worker/worker.h"

struct wproc *
wproc_spawn(int epfd, struct scoreboard *sb, const struct cfg *cfg, const struct listeners *ls,
    int slot, unsigned generation, int64_t now_ms)
{
	struct epoll_event ev = { .events = EPOLLIN };
	struct wproc *p = calloc(1, sizeof(*p));
	pid_t master_pid = getpid();
	struct sb_worker *me;
	int sv[2];

	if (p == NULL)
		return NULL;
	if (scoreboard_alloc(sb, &p->sb_entry) == -1) {
		log_warnx("scoreboard full: too many worker processes alive");
		free(p);
		return NULL;
	}
	me = &sb->w[p->sb_entry];
	me->generation = generation;
	me->slot = slot;
	me->started_ms = now_ms;
	me->heartbeat_ms = now_ms;
	me->pid = -1;  /* taken; the real pid follows the fork */
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == -1) {
		log_warn("socketpair");
		scoreboard_release(sb, p->sb_entry);
		free(p);
		return NULL;
	}
	switch (p->pid = fork()) {
	case -1:
		log_warn("fork");
		close(sv[0]);
		close(sv[1]);
		scoreboard_release(sb, p->sb_entry);
		free(p);
		return NULL;
	case 0: {
		struct worker_spec spec = {
			.cfg = cfg, .listen_fds = ls->fds, .chan_fd = sv[1],
			.master_pid = master_pid, .slot = slot, .generation = generation,
			.sb = sb, .me = me,
		};
		worker_main(&spec);
	}
	default:
		break;
	}
	close(sv[1]);
	me->pid = p->pid;
	p->ev_kind = MEV_WORKER;
	p->chan_fd = sv[0];
	p->slot = slot;
	p->generation = generation;
	p->state = WP_STARTING;
	p->started_ms = now_ms;
	ev.data.ptr = p;
	if (fcntl(p->chan_fd, F_SETFL, O_NONBLOCK) == -1 ||
	    epoll_ctl(epfd, EPOLL_CTL_ADD, p->chan_fd, &ev) == -1)
		log_warn("worker %ld channel", (long)p->pid);
	log_info("worker %ld started (slot %d, generation %u)", (long)p->pid, slot, generation);
	return p;
}

void
wproc_free(int epfd, struct scoreboard *sb, struct wproc *p)
{
	scoreboard_release(sb, p->sb_entry);
	if (p->chan_fd != -1) {
		epoll_ctl(epfd, EPOLL_CTL_DEL, p->chan_fd, NULL);
		close(p->chan_fd);
	}
	free(p);
}

void
wproc_describe_exit(int status, char *buf, size_t len)
{
	if (WIFEXITED(status))
		snprintf(buf, len, "exited with status %d", WEXITSTATUS(status));
	else if (WIFSIGNALED(status))
		snprintf(buf, len, "killed by signal %d (SIG%s)%s", WTERMSIG(status),
		    sigabbrev_np(WTERMSIG(status)) ? sigabbrev_np(WTERMSIG(status)) : "?",
		    WCOREDUMP(status) ? ", core dumped" : "");
	else
		snprintf(buf, len, "ended with wait status %#x", status);
}

bool
wproc_exit_is_clean(int status)
{
	return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

int
workers_backoff_next(int prev_delay_ms, int64_t uptime_ms)
{
	if (uptime_ms >= WORKERS_STABLE_MS)
		return 0;
	if (prev_delay_ms < WORKERS_BACKOFF_MIN_MS)
		return WORKERS_BACKOFF_MIN_MS;
	if (prev_delay_ms >= WORKERS_BACKOFF_MAX_MS / 2)
		return WORKERS_BACKOFF_MAX_MS;
	return prev_delay_ms * 2;
}
