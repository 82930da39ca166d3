/*
 * addrtable: per-client-address state shared by every worker, in the
 * scoreboard's shared memory. Two fixed-size, lock-free tables:
 *
 * conn  TCP connections open per address, for
 *       limits.max_connections_per_address. An entry is one 64-bit word,
 *       tag (32 bits of the address's hash) | owner (scoreboard entry of
 *       the worker, 12 bits) | count (20 bits), so that every change is a
 *       single compare-and-swap. An address has one entry per worker that
 *       holds connections from it; its count is the sum of the entries with
 *       its tag in its probe window. Only the owner changes a non-zero
 *       count, so a dead worker's connections are exactly its entries: the
 *       master zeroes them when it reaps the worker (addrtab_conn_purge),
 *       and nothing leaks however the worker ended. An entry whose count is
 *       0 is free and any worker may claim it.
 *
 * rate  one token bucket per UDP source address (limits.udp_rate and
 *       udp_burst, see ratelimit.h): a 64-bit key (the address's hash) and
 *       a 64-bit bucket state, each updated with compare-and-swap. A bucket
 *       that has filled up again carries no history, so its entry may be
 *       taken over by another address at any time.
 *
 * Addresses are hashed with SipHash-2-4 under a random key drawn when the
 * memory is created, so a client cannot aim at a probe window or a tag.
 * IPv4 and IPv4-mapped IPv6 addresses hash alike.
 *
 * Collisions and a full table, by design:
 * - conn: two addresses whose 32-bit tags are equal and whose hashes fall
 *   within one window share one count: both are limited sooner, never
 *   later (probability about 2^-32 per lookup with a full window). When
 *   the window of an address has no entry of its own and no free entry
 *   (ADDRTAB_CONN_WINDOW addresses or worker shares with live
 *   connections there), the connection is refused, like nginx's limit_conn
 *   when its zone is exhausted: the limit fails closed.
 * - rate: when the window of a source has neither its own entry nor a full
 *   (idle) bucket to take over, the datagram is charged to one overflow
 *   bucket that every such source shares, so spoofed floods can draw at
 *   most udp_rate replies a second from it altogether: the limit fails
 *   closed. Races (two workers claiming the same new source at once) can
 *   give a source a second bucket for a moment: at most twice its rate.
 */
#ifndef EM_ADDRTABLE_H
#define EM_ADDRTABLE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#define ADDRTAB_CONN_SIZE    65536   /* power of two; 512 KiB */
#define ADDRTAB_CONN_WINDOW  32      /* entries probed per address: 4 cache lines */
#define ADDRTAB_OWNER_BITS   12      /* scoreboard entries: SB_ENTRIES must fit */
#define ADDRTAB_COUNT_BITS   20
#define ADDRTAB_COUNT_MAX    ((1U << ADDRTAB_COUNT_BITS) - 1)

#define ADDRTAB_RATE_SIZE    65536   /* power of two; 1 MiB */
#define ADDRTAB_RATE_WINDOW  8

/* What addrtab_conn_acquire returns when it does not admit. */
#define ADDRTAB_OVER  (-1)  /* the address holds its limit already */
#define ADDRTAB_FULL  (-2)  /* no room to count it: refused (fails closed) */

struct addrtab_bucket {
	uint64_t key;  /* hash of the address, 0 = never used */
	uint64_t tat;  /* ratelimit.h state */
};

struct addrtab {
	uint64_t seed[2];                                 /* SipHash key, set once before forking */
	uint64_t conn[ADDRTAB_CONN_SIZE];
	struct addrtab_bucket rate[ADDRTAB_RATE_SIZE];
	struct addrtab_bucket rate_overflow;              /* shared by sources that find no room */
};

/* Draws the hash key. Before any worker exists; the rest is zero already. */
void addrtab_init(struct addrtab *t);

/*
 * The keyed hash of the client address at SA (AF_INET or AF_INET6; an
 * IPv4-mapped address hashes as the IPv4 one). Unknown families hash as
 * the address 0.
 */
uint64_t addrtab_hash(const struct addrtab *t, const struct sockaddr *sa);

/*
 * Counts one more TCP connection of the address with hash H held by the
 * worker in scoreboard entry OWNER, unless the address already holds LIMIT
 * (> 0) across all workers. Returns the entry index to give back to
 * addrtab_conn_release, or ADDRTAB_OVER / ADDRTAB_FULL.
 */
int addrtab_conn_acquire(struct addrtab *t, uint64_t h, unsigned owner, unsigned limit);

/*
 * Counts one more connection of the address with hash H for OWNER whatever
 * the limit: for a connection admitted before, by another worker, that a
 * reload hands over to OWNER (worker/move.h). Returns the entry index, or
 * ADDRTAB_FULL when the window has no room to count it.
 */
int addrtab_conn_add(struct addrtab *t, uint64_t h, unsigned owner);

/* Counts one connection less on entry I, which OWNER acquired. */
void addrtab_conn_release(struct addrtab *t, int i, unsigned owner);

/* How many connections the address with hash H holds, all workers together. */
unsigned addrtab_conn_count(const struct addrtab *t, uint64_t h);

/*
 * Forgets every connection counted for OWNER. Only once that worker can no
 * longer run (the master calls it after reaping it), or the counts race.
 */
void addrtab_conn_purge(struct addrtab *t, unsigned owner);

/*
 * Takes a token at NOW_NS from the bucket of the source with hash H: true
 * when the datagram may be answered. RATE 0 means no limit.
 */
bool addrtab_rate_admit(struct addrtab *t, uint64_t h, uint64_t now_ns, uint32_t rate,
    uint32_t burst);

#endif
