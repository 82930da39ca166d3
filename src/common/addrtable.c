#include "common/addrtable.h"

#include <limits.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "common/ratelimit.h"

#define CONN_MASK  (ADDRTAB_CONN_SIZE - 1)
#define RATE_MASK  (ADDRTAB_RATE_SIZE - 1)
#define COUNT_MASK ((uint64_t)ADDRTAB_COUNT_MAX)
#define OWNER_MASK ((1U << ADDRTAB_OWNER_BITS) - 1)

_Static_assert(ADDRTAB_OWNER_BITS + ADDRTAB_COUNT_BITS == 32, "conn entry: tag takes the high 32 bits");
_Static_assert((uint64_t)ADDRTAB_CONN_WINDOW * ADDRTAB_COUNT_MAX < UINT_MAX, "addrtab_conn_add: no sum reaches UINT_MAX");
_Static_assert((ADDRTAB_CONN_SIZE & CONN_MASK) == 0, "conn table size: a power of two");
_Static_assert((ADDRTAB_RATE_SIZE & RATE_MASK) == 0, "rate table size: a power of two");

void
addrtab_init(struct addrtab *t)
{
	if (getrandom(t->seed, sizeof(t->seed), 0) != (ssize_t)sizeof(t->seed)) {
		/* No entropy yet (early boot): weaker, but still not a constant. */
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		t->seed[0] = (uint64_t)ts.tv_nsec * 0x9e3779b97f4a7c15ULL ^ (uint64_t)getpid();
		t->seed[1] = (uint64_t)ts.tv_sec * 0xc2b2ae3d27d4eb4fULL ^ (uint64_t)(uintptr_t)t;
	}
}

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND do { \
	v0 += v1; v1 = ROTL(v1, 13); v1 ^= v0; v0 = ROTL(v0, 32); \
	v2 += v3; v3 = ROTL(v3, 16); v3 ^= v2; \
	v0 += v3; v3 = ROTL(v3, 21); v3 ^= v0; \
	v2 += v1; v1 = ROTL(v1, 17); v1 ^= v2; v2 = ROTL(v2, 32); \
} while (0)

/* SipHash-2-4 of a 16-byte message. */
static uint64_t
siphash16(const uint64_t key[2], const uint8_t msg[16])
{
	uint64_t v0 = 0x736f6d6570736575ULL ^ key[0], v1 = 0x646f72616e646f6dULL ^ key[1];
	uint64_t v2 = 0x6c7967656e657261ULL ^ key[0], v3 = 0x7465646279746573ULL ^ key[1];
	uint64_t m[2], b = (uint64_t)16 << 56;

	memcpy(m, msg, sizeof(m));
	for (int i = 0; i < 2; i++) {
		v3 ^= m[i];
		SIPROUND;
		SIPROUND;
		v0 ^= m[i];
	}
	v3 ^= b;
	SIPROUND;
	SIPROUND;
	v0 ^= b;
	v2 ^= 0xff;
	SIPROUND;
	SIPROUND;
	SIPROUND;
	SIPROUND;
	return v0 ^ v1 ^ v2 ^ v3;
}

uint64_t
addrtab_hash(const struct addrtab *t, const struct sockaddr *sa)
{
	/* IPv4 as ::ffff:a.b.c.d, so that both spellings of a client are one client. */
	uint8_t a[16] = { [10] = 0xff, [11] = 0xff };

	if (sa->sa_family == AF_INET)
		memcpy(a + 12, &((const struct sockaddr_in *)sa)->sin_addr, 4);
	else if (sa->sa_family == AF_INET6)
		memcpy(a, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
	else
		memset(a, 0, sizeof(a));
	return siphash16(t->seed, a);
}

/* ---- conn: connections per address -------------------------------------- */

static uint32_t
conn_tag_of(uint64_t h)
{
	uint32_t tag = (uint32_t)(h >> 32);  /* the index takes the low bits */

	return tag != 0 ? tag : 1;
}

static uint32_t entry_tag(uint64_t v) { return (uint32_t)(v >> 32); }
static unsigned entry_owner(uint64_t v) { return (unsigned)(v >> ADDRTAB_COUNT_BITS) & OWNER_MASK; }
static unsigned entry_count(uint64_t v) { return (unsigned)(v & COUNT_MASK); }

static uint64_t
entry_make(uint32_t tag, unsigned owner, unsigned count)
{
	return (uint64_t)tag << 32 | (uint64_t)(owner & OWNER_MASK) << ADDRTAB_COUNT_BITS | count;
}

static uint64_t
conn_load(const struct addrtab *t, size_t i)
{
	return __atomic_load_n(&t->conn[i & CONN_MASK], __ATOMIC_SEQ_CST);
}

static bool
conn_cas(struct addrtab *t, size_t i, uint64_t old, uint64_t new)
{
	return __atomic_compare_exchange_n(&t->conn[i], &old, new, false,
	    __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
}

static unsigned
conn_sum(const struct addrtab *t, size_t base, uint32_t tag)
{
	unsigned sum = 0;

	for (size_t k = 0; k < ADDRTAB_CONN_WINDOW; k++) {
		uint64_t v = conn_load(t, base + k);
		if (entry_count(v) != 0 && entry_tag(v) == tag)
			sum += entry_count(v);
	}
	return sum;
}

unsigned
addrtab_conn_count(const struct addrtab *t, uint64_t h)
{
	return conn_sum(t, h & CONN_MASK, conn_tag_of(h));
}

/* Where the address would be counted: its own entry, else a free one; -1 when neither. */
static int
conn_pick(const struct addrtab *t, size_t base, uint32_t tag, unsigned owner, unsigned *sum,
    uint64_t *seen)
{
	int mine = -1, spare = -1;

	*sum = 0;
	for (size_t k = 0; k < ADDRTAB_CONN_WINDOW; k++) {
		size_t i = (base + k) & CONN_MASK;
		uint64_t v = conn_load(t, i);
		bool ours = entry_tag(v) == tag && entry_owner(v) == owner;

		if (entry_count(v) == 0) {
			if (spare == -1)
				spare = (int)i;
			continue;
		}
		if (entry_tag(v) == tag)
			*sum += entry_count(v);
		if (ours && mine == -1)
			mine = (int)i;
	}
	if (mine == -1)
		mine = spare;
	if (mine != -1)
		*seen = conn_load(t, (size_t)mine);
	return mine;
}

/*
 * Lock-free: read the window, compare-and-swap one entry, and start over
 * when another worker changed it meanwhile. Two workers admitting the same
 * address at once could each see LIMIT - 1, so each checks the sum again
 * after its increment and backs out when over: with sequentially consistent
 * operations the later of the two sees both increments. Both may back out;
 * never both stay.
 */
int
addrtab_conn_acquire(struct addrtab *t, uint64_t h, unsigned owner, unsigned limit)
{
	size_t base = h & CONN_MASK;
	uint32_t tag = conn_tag_of(h);

	for (;;) {
		unsigned sum;
		uint64_t v = 0, want;
		int i = conn_pick(t, base, tag, owner, &sum, &v);

		if (sum >= limit)
			return ADDRTAB_OVER;
		if (i == -1)
			return ADDRTAB_FULL;
		if (entry_count(v) == 0)
			want = entry_make(tag, owner, 1);   /* claim a free entry */
		else if (entry_tag(v) == tag && entry_owner(v) == owner &&
		    entry_count(v) < ADDRTAB_COUNT_MAX)
			want = v + 1;
		else
			continue;  /* changed between the scan and the load: look again */
		if (!conn_cas(t, (size_t)i, v, want))
			continue;
		if (conn_sum(t, base, tag) > limit) {
			addrtab_conn_release(t, i, owner);
			return ADDRTAB_OVER;
		}
		return i;
	}
}

/* No sum can reach UINT_MAX (ADDRTAB_CONN_WINDOW counts of 20 bits): acquire never refuses it. */
int
addrtab_conn_add(struct addrtab *t, uint64_t h, unsigned owner)
{
	return addrtab_conn_acquire(t, h, owner, UINT_MAX);
}

void
addrtab_conn_release(struct addrtab *t, int i, unsigned owner)
{
	uint64_t v;

	if (i < 0 || i >= ADDRTAB_CONN_SIZE)
		return;
	do {
		v = conn_load(t, (size_t)i);
		/* Not ours or already zero: a bug elsewhere; never corrupt another's count. */
		if (entry_count(v) == 0 || entry_owner(v) != (owner & OWNER_MASK))
			return;
	} while (!conn_cas(t, (size_t)i, v, v - 1));
}

void
addrtab_conn_purge(struct addrtab *t, unsigned owner)
{
	for (size_t i = 0; i < ADDRTAB_CONN_SIZE; i++) {
		uint64_t v = conn_load(t, i);
		/* Others only ever claim entries whose count is 0, so this CAS retries rarely. */
		while (entry_count(v) != 0 && entry_owner(v) == (owner & OWNER_MASK) &&
		    !conn_cas(t, i, v, v & ~COUNT_MASK))
			v = conn_load(t, i);
	}
}

/* ---- rate: token buckets per UDP source ---------------------------------- */

/* The bucket of KEY in its window, one taken over for it, or the overflow bucket. */
static struct addrtab_bucket *
rate_find(struct addrtab *t, uint64_t key, size_t base, uint64_t now_ns)
{
	for (int attempt = 0; attempt < 2; attempt++) {
		struct addrtab_bucket *victim = NULL;
		uint64_t old = 0;

		for (size_t k = 0; k < ADDRTAB_RATE_WINDOW; k++) {
			struct addrtab_bucket *b = &t->rate[(base + k) & RATE_MASK];
			uint64_t bk = __atomic_load_n(&b->key, __ATOMIC_ACQUIRE);

			if (bk == key)
				return b;
			if (victim == NULL && (bk == 0 ||
			    ratelimit_is_full(__atomic_load_n(&b->tat, __ATOMIC_ACQUIRE), now_ns))) {
				victim = b;
				old = bk;
			}
		}
		if (victim == NULL)
			break;
		/* A full bucket has no history: taking it over is the same as a fresh one. */
		if (__atomic_compare_exchange_n(&victim->key, &old, key, false,
		    __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
			return victim;
	}
	return &t->rate_overflow;
}

bool
addrtab_rate_admit(struct addrtab *t, uint64_t h, uint64_t now_ns, uint32_t rate,
    uint32_t burst)
{
	struct addrtab_bucket *b;
	uint64_t tat, next;

	if (rate == 0)
		return true;
	b = rate_find(t, h != 0 ? h : 1, h & RATE_MASK, now_ns);
	tat = __atomic_load_n(&b->tat, __ATOMIC_ACQUIRE);
	do {
		if (!ratelimit_take(tat, now_ns, rate, burst, &next))
			return false;
	} while (!__atomic_compare_exchange_n(&b->tat, &tat, next, false,
	    __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE));
	return true;
}
