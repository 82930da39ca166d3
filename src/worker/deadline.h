/*
 * deadline: an intrusive list of things that must finish within a time
 * limit, oldest first. Entries join at the tail as they start, so the head
 * is always the first to run out: expiring looks at the head only and
 * stops at the first entry still in time.
 *
 * The conn module keeps two: connections waiting for their PROXY header and
 * TLS handshakes under way. The node lives in the state that exists only
 * for that wait (struct conn_proxy, struct conn_tls), so a plain
 * connection carries none of it.
 */
#ifndef EM_DEADLINE_H
#define EM_DEADLINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct deadline_node {
	struct deadline_node *prev, *next;
	void *owner;       /* what the entry stands for (the caller's) */
	int64_t since_ms;  /* when it started: the clock of its limit */
};

struct deadline_list {
	struct deadline_node *head;  /* oldest */
	struct deadline_node *tail;
};

/* Starts n's clock at now_ms and appends it; owner is given back by deadline_expired. */
void deadline_append(struct deadline_list *l, struct deadline_node *n, void *owner,
    int64_t now_ms);

/* Takes n off the list. */
void deadline_unlink(struct deadline_list *l, struct deadline_node *n);

/*
 * The owner of the oldest entry if it is limit_ms old or more at now_ms,
 * else NULL. It stays listed: the caller ends it, which unlinks it.
 */
void *deadline_expired(const struct deadline_list *l, int64_t now_ms, int64_t limit_ms);

/* Whether anything is listed. */
static inline bool
deadline_pending(const struct deadline_list *l)
{
	return l->head != NULL;
}

#endif
