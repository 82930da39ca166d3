/*
 * ev: the one way both processes use epoll and the clock. Every object
 * registered with an epoll set starts with a struct ev_source (its first
 * member), whose kind the owning process's loop switches on; the kinds are
 * that process's own enum (master.h, worker.h). Like redis's ae.c, this
 * knows nothing of what a source is: it only registers and tells time.
 */
#ifndef EM_EV_H
#define EM_EV_H

#include <stdint.h>

struct ev_source {
	uint8_t kind;  /* the owning process's enum of event kinds */
};

/* epoll_ctl ADD / MOD / DEL with src as the event's data; 0, or -1 and errno. */
int ev_add(int epfd, int fd, uint32_t events, struct ev_source *src);
int ev_mod(int epfd, int fd, uint32_t events, struct ev_source *src);
int ev_del(int epfd, int fd);

/* Monotonic milliseconds: the one clock every timer, deadline and heartbeat uses. */
int64_t ev_now_ms(void);

/*
 * The same clock at the kernel tick's resolution (a few ms), which costs no
 * system call: for a loop that reads the time on every turn.
 */
int64_t ev_now_coarse_ms(void);

/* The same clock as ev_now_ms in nanoseconds: for rates finer than a millisecond. */
uint64_t ev_now_ns(void);

/* The sooner of two deadlines, where 0 means none. */
int64_t ev_sooner(int64_t a, int64_t b);

#endif
