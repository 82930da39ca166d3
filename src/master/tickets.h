/*
 * tickets: the TLS session ticket keys' life in the master. The keys live
 * in the scoreboard every worker maps (common/tlsctx.h reads them in the
 * workers' ticket callback): made at start, before any fork, so that a
 * ticket from one worker resumes on any other and after a reload; rotated
 * daily, the previous key still accepted for a day more; carried across a
 * live upgrade in its state.
 */
#ifndef EM_TICKETS_H
#define EM_TICKETS_H

#include <stdint.h>

#include "common/tlsctx.h"

/* Fills keys (in the scoreboard) with a carried set, or with a fresh key when carried is NULL; fatal without randomness. */
void tickets_start(struct tlsctx_ticket_keys *keys, const struct tlsctx_ticket_keys *carried);

/* Rotates the keys once a day has passed since the newest was made; logs it. */
void tickets_tick(struct tlsctx_ticket_keys *keys);

/*
 * When the next rotation is due, on the loop's clock (now): an idle master
 * must wake for it. Not sooner than a second from now (a rotation that
 * failed is tried again then, not in a busy loop), nor later than a day (a
 * wall clock set back).
 */
int64_t tickets_due(const struct tlsctx_ticket_keys *keys, int64_t now);

#endif
