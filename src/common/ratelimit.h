/*
 * ratelimit: the token bucket of limits.udp_rate / limits.udp_burst as a
 * pure function of one 64-bit state and the time, so that a shared table
 * can update it with a single compare-and-swap.
 *
 * The state is the "theoretical arrival time" of the generic cell rate
 * algorithm, which is a token bucket written differently: the instant, in
 * nanoseconds of CLOCK_MONOTONIC, at which the bucket will be full again.
 * A bucket of depth BURST refilled at RATE tokens a second holds
 * BURST - (tat - now) * RATE / 1e9 tokens while tat > now, and is full when
 * tat <= now. Taking a token moves tat on by one interval 1e9 / RATE.
 * A state of 0 (or any time in the past) is a full bucket, which is why a
 * zeroed table needs no initialisation.
 */
#ifndef EM_RATELIMIT_H
#define EM_RATELIMIT_H

#include <stdbool.h>
#include <stdint.h>

/*
 * Takes one token at NOW_NS from the bucket whose state is TAT. Returns
 * true and stores the new state in *next when a token was there; returns
 * false (and leaves *next alone) when the bucket is empty. RATE 0 means no
 * limit: always true, state unchanged. BURST below 1 counts as 1.
 */
bool ratelimit_take(uint64_t tat, uint64_t now_ns, uint32_t rate, uint32_t burst, uint64_t *next);

/* True when the bucket with state TAT is full at NOW_NS: it carries no history. */
bool ratelimit_is_full(uint64_t tat, uint64_t now_ns);

#endif
