#include "common/ratelimit.h"

#define NS_PER_SEC 1000000000ULL

bool
ratelimit_take(uint64_t tat, uint64_t now_ns, uint32_t rate, uint32_t burst, uint64_t *next)
{
	uint64_t interval, tolerance;

	if (rate == 0) {
		*next = tat;
		return true;
	}
	if (burst < 1)
		burst = 1;
	/* At most 1e8 a second by the config bounds: the interval is >= 10 ns. */
	interval = NS_PER_SEC / rate;
	if (interval == 0)
		interval = 1;
	/* (burst - 1) intervals ahead of now is the most the bucket may owe; < 2^63. */
	tolerance = (uint64_t)(burst - 1) * interval;
	if (tat > now_ns && tat - now_ns > tolerance)
		return false;
	*next = (tat > now_ns ? tat : now_ns) + interval;
	return true;
}

bool
ratelimit_is_full(uint64_t tat, uint64_t now_ns)
{
	return tat <= now_ns;
}
