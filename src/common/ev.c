#include "common/ev.h"

#include <stddef.h>
#include <sys/epoll.h>
#include <time.h>

static int
ev_ctl(int epfd, int op, int fd, uint32_t events, struct ev_source *src)
{
	struct epoll_event ev = { .events = events, .data.ptr = src };

	return epoll_ctl(epfd, op, fd, &ev);
}

int
ev_add(int epfd, int fd, uint32_t events, struct ev_source *src)
{
	return ev_ctl(epfd, EPOLL_CTL_ADD, fd, events, src);
}

int
ev_mod(int epfd, int fd, uint32_t events, struct ev_source *src)
{
	return ev_ctl(epfd, EPOLL_CTL_MOD, fd, events, src);
}

int
ev_del(int epfd, int fd)
{
	return epoll_ctl(epfd, EPOLL_CTL_DEL, fd, NULL);
}

static int64_t
ev_clock_ms(clockid_t id)
{
	struct timespec ts;

	clock_gettime(id, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t
ev_now_ms(void)
{
	return ev_clock_ms(CLOCK_MONOTONIC);
}

int64_t
ev_now_coarse_ms(void)
{
	return ev_clock_ms(CLOCK_MONOTONIC_COARSE);
}

uint64_t
ev_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}
