/* deadline: an oldest-first list of waits with a time limit (see deadline.h). */
#include "worker/deadline.h"

#include <stddef.h>

void
deadline_append(struct deadline_list *l, struct deadline_node *n, void *owner, int64_t now_ms)
{
	n->owner = owner;
	n->since_ms = now_ms;
	n->prev = l->tail;
	n->next = NULL;
	if (l->tail != NULL)
		l->tail->next = n;
	else
		l->head = n;
	l->tail = n;
}

void
deadline_unlink(struct deadline_list *l, struct deadline_node *n)
{
	if (n->prev != NULL)
		n->prev->next = n->next;
	else
		l->head = n->next;
	if (n->next != NULL)
		n->next->prev = n->prev;
	else
		l->tail = n->prev;
	n->prev = n->next = NULL;
}

void *
deadline_expired(const struct deadline_list *l, int64_t now_ms, int64_t limit_ms)
{
	if (l->head == NULL || now_ms - l->head->since_ms < limit_ms)
		return NULL;
	return l->head->owner;
}
