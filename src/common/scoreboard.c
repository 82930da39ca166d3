#include "common/scoreboard.h"

#include <string.h>
#include <sys/mman.h>

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
scoreboard_alloc(struct scoreboard *sb, unsigned *entry)
{
	for (unsigned i = 0; i < SB_ENTRIES; i++) {
		if (sb->w[i].pid != 0)
			continue;
		memset(&sb->w[i], 0, sizeof(sb->w[i]));
		if (i >= sb->high_water)
			sb->high_water = i + 1;
		*entry = i;
		return 0;
	}
	return -1;
}

void
scoreboard_release(struct scoreboard *sb, unsigned i)
{
	if (i >= SB_ENTRIES)
		return;
	/*
	 * The worker can no longer run, so nothing else changes its entries.
	 * Purged before the entry is free: a new worker in it starts with
	 * none. Skipped for workers that never counted (the scan reads 512 KiB).
	 */
	if (__atomic_load_n(&sb->w[i].addr_counted, __ATOMIC_SEQ_CST)) {
		addrtab_conn_purge(&sb->addr, i);
		sb->w[i].addr_counted = 0;
	}
	sb->w[i].pid = 0;
	sb->w[i].serving = 0;
	while (sb->high_water > 0 && sb->w[sb->high_water - 1].pid == 0)
		sb->high_water--;
}

uint64_t
scoreboard_average_active(const struct scoreboard *sb)
{
	uint64_t total = 0, n = 0;
	uint32_t hw = __atomic_load_n(&sb->high_water, __ATOMIC_RELAXED);

	for (uint32_t i = 0; i < hw && i < SB_ENTRIES; i++) {
		const struct sb_worker *w = &sb->w[i];
		if (__atomic_load_n(&w->serving, __ATOMIC_RELAXED)) {
			total += __atomic_load_n(&w->active, __ATOMIC_RELAXED);
			n++;
		}
	}
	return n ? total / n : 0;
}
