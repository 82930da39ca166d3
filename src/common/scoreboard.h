/*
 * scoreboard: memory shared by the master and every worker, mapped by the
 * master before the first fork. Each worker process owns one cache-line
 * aligned entry and is its only writer, so no lock is ever taken: counters
 * are plain stores, readers take what they see. The master assigns and
 * clears entries; a worker reads the others' entries only to decide whether
 * it holds more than its share of connections. (An entry is not a worker
 * slot: a slot is a place in a generation, which a respawn refills with a
 * new worker and a new entry.)
 *
 * After the entries come the per-address tables (addrtable.h), which every
 * worker writes with atomic operations: connections per client address and
 * the UDP token buckets, so that both limits hold for the whole daemon.
 * When the master reaps a worker, scoreboard_release() takes that worker's
 * connections out of the per-address counts.
 */
#ifndef EM_SCOREBOARD_H
#define EM_SCOREBOARD_H

#include <stdint.h>
#include <sys/types.h>

#include "common/addrtable.h"
#include "common/tlsctx.h"

/* Room for a full generation, a reload's new one, and old ones draining. */
#define SB_ENTRIES 4096

struct sb_worker {
	/* Written by the master at spawn and reap. */
	int32_t pid;          /* 0 = entry free */
	uint32_t generation;
	int32_t slot;         /* the worker's slot within its generation */
	int32_t serving;      /* 1 = of the serving generation, not draining */
	int64_t started_ms;
	/* Written by the worker only. */
	int64_t heartbeat_ms; /* monotonic; the loop stamps it every turn */
	uint64_t active;      /* TCP connections open now */
	uint64_t accepted;
	uint64_t refused;
	uint64_t bytes_in;
	uint64_t bytes_out;
	uint64_t dgrams_in;
	uint64_t dgrams_out;
	uint64_t dgrams_dropped;     /* truncated, loop-prone source port, send failed */
	/* Hostile and unwanted input; `refused` above is max_connections only. */
	uint64_t refused_acl;        /* TCP clients the allow/deny lists refused */
	uint64_t refused_per_address;/* TCP clients over max_connections_per_address */
	uint64_t dgrams_denied;      /* datagrams the allow/deny lists refused */
	uint64_t dgrams_ratelimited; /* datagrams over udp_rate/udp_burst */
	/* Reload handover and TTOU: connections moved between workers. */
	uint64_t moved_out;          /* handed to another worker, which took them */
	uint64_t moved_in;           /* taken over from another worker */
	uint64_t moves_failed;       /* could not be moved: kept here, and drained */
	int32_t addr_counted;        /* set once it counts connections in sb->addr */
	/* PROXY protocol listeners (proxy_protocol): headers taken, and refusals by class. */
	uint64_t proxy_headers;      /* headers accepted */
	uint64_t proxy_bad;          /* malformed, too long or a bad CRC32C: closed */
	uint64_t proxy_timeout;      /* not complete within limits.proxy_timeout: closed */
	uint64_t proxy_untrusted;    /* from a source outside proxy_trusted: closed at accept */
	/* TLS listeners (worker/tlsconn.h): handshakes completed, of them resumed, failures by class. */
	uint64_t tls_handshakes;
	uint64_t tls_resumed;        /* by a session ticket */
	uint64_t tls_fail_protocol;  /* no common version, cipher or ALPN protocol; not TLS at all */
	uint64_t tls_fail_cert;      /* mutual TLS: no client certificate, or one that does not verify */
	uint64_t tls_fail_timeout;   /* not complete within limits.handshake_timeout */
	uint64_t tls_fail_other;     /* closed by the client mid-handshake, or anything else */
	/* The sandbox (worker/sandbox.h). */
	int32_t sandboxed;           /* 1 once the worker has applied it */
	int32_t violation;           /* the system call that trapped, plus one; 0 = none */
} __attribute__((aligned(64)));

struct scoreboard {
	uint32_t high_water;  /* entries [0, high_water) may be in use */
	struct sb_worker w[SB_ENTRIES];
	struct addrtab addr;  /* owners are entry indexes */
	/* TLS session ticket keys: written by the master alone (master/tickets.c), read by every worker. */
	struct tlsctx_ticket_keys tls_keys;
};

_Static_assert(SB_ENTRIES <= (1 << ADDRTAB_OWNER_BITS), "an entry index must fit an addrtab owner");

/* Maps a zeroed scoreboard shared with future children; NULL on failure. */
struct scoreboard *scoreboard_create(void);

/* Takes a free entry: 0 and its index in *entry, or -1 when all are taken. */
int scoreboard_alloc(struct scoreboard *sb, unsigned *entry);

/*
 * Marks an entry free again (its worker was reaped, or never started), and
 * forgets the connections it counted per address: a worker that died
 * without closing them must not hold their addresses' quota forever.
 * Times in the scoreboard are ev_now_ms() (common/ev.h).
 */
void scoreboard_release(struct scoreboard *sb, unsigned entry);

/*
 * The average number of TCP connections held by the serving workers, as the
 * workers last wrote them. Advisory: other workers' counts may be a moment old.
 */
uint64_t scoreboard_average_active(const struct scoreboard *sb);

#endif
