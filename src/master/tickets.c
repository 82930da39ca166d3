#include "master/tickets.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "common/log.h"

#define TICKET_ROTATE_MS (24 * 3600 * 1000LL)

/* Wall-clock milliseconds: ticket keys outlive a boot's monotonic clock (a live upgrade carries them). */
static int64_t
wall_ms(void)
{
	int64_t now = (int64_t)time(NULL) * 1000;

#ifdef EM_TEST_HOOKS
	/* Test builds only: the clock runs ahead by the milliseconds in the file EM_TEST_WALL_OFFSET names. */
	const char *path = getenv("EM_TEST_WALL_OFFSET");
	char text[32];
	FILE *f;

	if (path != NULL && (f = fopen(path, "re")) != NULL) {
		if (fgets(text, sizeof(text), f) != NULL)
			now += strtoll(text, NULL, 10);
		fclose(f);
	}
#endif
	return now;
}

void
tickets_start(struct tlsctx_ticket_keys *keys, const struct tlsctx_ticket_keys *carried)
{
	if (carried != NULL) {
		*keys = *carried;
		keys->seq = 0;
		log_info("upgrade: TLS session ticket keys taken over from the old master");
	} else if (tlsctx_rotate_ticket_keys(keys, wall_ms()) == -1) {
		fatalx("cannot make TLS session ticket keys: no randomness");
	}
	tlsctx_use_ticket_keys(keys);
}

void
tickets_tick(struct tlsctx_ticket_keys *keys)
{
	int64_t now = wall_ms();

	if (now - keys->created_ms < TICKET_ROTATE_MS)
		return;
	if (tlsctx_rotate_ticket_keys(keys, now) == -1)
		log_warnx("cannot rotate the TLS session ticket keys: no randomness; keeping them");
	else
		log_info("TLS session ticket keys rotated; the previous key is still accepted");
}

int64_t
tickets_due(const struct tlsctx_ticket_keys *keys, int64_t now)
{
	int64_t left = keys->created_ms + TICKET_ROTATE_MS - wall_ms();

	if (left > TICKET_ROTATE_MS)
		left = TICKET_ROTATE_MS;
	return now + (left > 1000 ? left : 1000);
}
