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

/* The one reader of the clock: nanoseconds of ID. */
static uint64_t
ev_clock_ns(clockid_t id)
{
	struct timespec ts;

	clock_gettime(id, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

int64_t
ev_now_ms(void)
{
	return (int64_t)(ev_clock_ns(CLOCK_MONOTONIC) / 1000000);
}

int64_t
ev_now_coarse_ms(void)
{
	return (int64_t)(ev_clock_ns(CLOCK_MONOTONIC_COARSE) / 1000000);
}

uint64_t
ev_now_ns(void)
{
	return ev_clock_ns(CLOCK_MONOTONIC);
}

int64_t
ev_sooner(int64_t a, int64_t b)
{
	return a == 0 || (b != 0 && b < a) ? b : a;
}
