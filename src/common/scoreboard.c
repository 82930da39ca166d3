#include "common/scoreboard.h"

#include <string.h>
#include <sys/mman.h>
#include <time.h>

struct scoreboard *
scoreboard_create(void)
{
	/* Anonymous and shared: inherited by every fork, untouched pages cost nothing. */
	void *p = mmap(NULL, sizeof(struct scoreboard), PROT_READ | PROT_WRITE,
	    MAP_SHARED | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		return NULL;
	addrtab_init(&((struct scoreboard *)p)->addr);
	return p;
}

int
scoreboard_alloc(struct scoreboard *sb)
{
	for (int i = 0; i < SB_SLOTS; i++) {
		if (sb->w[i].pid != 0)
			continue;
		memset(&sb->w[i], 0, sizeof(sb->w[i]));
		if ((uint32_t)i >= sb->high_water)
			sb->high_water = (uint32_t)i + 1;
		return i;
	}
	return -1;
}

void
scoreboard_release(struct scoreboard *sb, int i)
{
	if (i < 0 || i >= SB_SLOTS)
		return;
	/*
	 * The worker can no longer run, so nothing else changes its entries.
	 * Purged before the slot is free: a new worker in the slot starts with
	 * none. Skipped for workers that never counted (the scan reads 512 KiB).
	 */
	if (__atomic_load_n(&sb->w[i].addr_counted, __ATOMIC_SEQ_CST)) {
		addrtab_conn_purge(&sb->addr, (unsigned)i);
		sb->w[i].addr_counted = 0;
	}
	sb->w[i].pid = 0;
	sb->w[i].serving = 0;
	while (sb->high_water > 0 && sb->w[sb->high_water - 1].pid == 0)
		sb->high_water--;
}

int64_t
scoreboard_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

uint64_t
scoreboard_average_active(const struct scoreboard *sb)
{
	uint64_t total = 0, n = 0;
	uint32_t hw = __atomic_load_n(&sb->high_water, __ATOMIC_RELAXED);

	for (uint32_t i = 0; i < hw && i < SB_SLOTS; i++) {
		const struct sb_worker *w = &sb->w[i];
		if (__atomic_load_n(&w->serving, __ATOMIC_RELAXED)) {
			total += __atomic_load_n(&w->active, __ATOMIC_RELAXED);
			n++;
		}
	}
	return n ? total / n : 0;
}
