/*
 * fuzz_proxy.c: libFuzzer target for the PROXY protocol parser
 * (worker/proxy.c), the bytes a client sends first on a proxy_protocol
 * listener. The first input byte chooses the versions accepted (its low
 * two bits; 0 means any) and where the rest is cut in two; the rest is fed
 * whole, then in those two pieces, then a byte at a time.
 *
 * Besides the sanitizers' verdict, the invariants: the three feedings
 * agree on the verdict, the reason and the header's length; a header is
 * never longer than the parser's buffer nor than the bytes fed; a refusal
 * has a reason and a done header a version of 1 or 2.
 *
 * Built and run by `make fuzz` with the config target (tests/fuzz/fuzz.mk).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "worker/proxy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct outcome {
	enum proxy_status st;
	int error;
	size_t used;
	struct proxy_result r;
};

/* Feeds data in pieces of at most step bytes (0: whole), the first cut at cut. */
static struct outcome
run(enum proxy_accept acc, const uint8_t *d, size_t n, size_t cut, size_t step)
{
	struct proxy_parser p;
	struct outcome o = { .st = PROXY_NEED_MORE };
	size_t at = 0;

	proxy_init(&p, acc);
	while (o.st == PROXY_NEED_MORE && at < n) {
		size_t len = step != 0 ? step : at == 0 && cut != 0 ? cut : n - at, used = 0;

		if (len > n - at)
			len = n - at;
		o.st = proxy_feed(&p, d + at, len, &used, &o.r);
		if (used > len || (o.st == PROXY_NEED_MORE && used != len))
			abort();
		o.used += used;
		at += len;
	}
	o.error = p.error;
	return o;
}

static void
same(const struct outcome *a, const struct outcome *b)
{
	if (a->st != b->st || (a->st == PROXY_ERROR && a->error != b->error) ||
	    (a->st == PROXY_DONE && (a->used != b->used || a->r.version != b->r.version ||
	    a->r.has_addr != b->r.has_addr ||
	    memcmp(&a->r.src, &b->r.src, sizeof(a->r.src)) != 0 ||
	    a->r.authority_len != b->r.authority_len || a->r.unique_id_len != b->r.unique_id_len))) {
		fprintf(stderr, "the verdict depends on how the bytes arrived\n");
		abort();
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	enum proxy_accept acc;
	struct outcome whole, two, bytes;
	size_t cut;

	if (size < 1)
		return 0;
	acc = (data[0] & 3) == 0 ? PROXY_ACCEPT_ANY : (enum proxy_accept)(data[0] & 3);
	data++, size--;
	cut = size != 0 ? (size_t)(data[0] ^ (size > 1 ? data[size - 1] : 0)) % size : 0;
	whole = run(acc, data, size, 0, 0);
	two = run(acc, data, size, cut, 0);
	bytes = run(acc, data, size, 0, 1);
	same(&whole, &two);
	same(&whole, &bytes);
	if (whole.st == PROXY_DONE && (whole.used > PROXY_BUF_MAX || whole.used > size ||
	    (whole.r.version != 1 && whole.r.version != 2) ||
	    whole.r.authority_len > PROXY_AUTHORITY_MAX))
		abort();
	if (whole.st == PROXY_ERROR && whole.error == PROXY_ERR_NONE)
		abort();
	return 0;
}
