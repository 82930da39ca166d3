#include "master/listeners.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <errno.h>

#include "common/log.h"
#include "common/sock.h"

static int
listener_find(const struct cfg *old_cfg, const struct listeners *old, const struct cfg_listen *l)
{
	if (old == NULL)
		return -1;
	for (size_t i = 0; i < old->n; i++)
		if (cfg_listen_same(&old_cfg->listen[i], l))
			return old->fds[i];
	return -1;
}

static int
listener_open_one(const struct cfg_listen *l, int shared, char *err, size_t errlen)
{
	char where[128];
	int fd;

	if (shared != -1) {
		if ((fd = fcntl(shared, F_DUPFD_CLOEXEC, 3)) == -1)
			snprintf(err, errlen, "dup listener: %s", strerror(errno));
		return fd;
	}
	fd = sock_listen(&l->addr, l->addrlen, l->proto == CFG_PROTO_TCP ? SOCK_STREAM : SOCK_DGRAM,
	    err, errlen);
	if (fd != -1) {
		/*
		 * UDP: the master's socket holds the address, and each worker binds
		 * one of its own beside it (worker_bind_own_udp). Set aside, the
		 * master's socket gets no senders; if that fails it gets its share,
		 * and every worker reads it too, so nothing goes unanswered.
		 */
		if (l->proto == CFG_PROTO_UDP && sock_dgram_aside(fd, &l->addr, l->addrlen) == -1)
			log_warn("UDP listener: cannot set the master's socket aside; the workers share it");
		sock_addr_format(&l->addr, where, sizeof(where));
		log_info("listening on %s %s (%s)", cfg_proto_name(l->proto), where,
		    cfg_mode_name(l->mode));
	}
	return fd;
}

struct listeners *
listeners_open(const struct cfg *cfg, const struct cfg *old_cfg, const struct listeners *old,
    char *err, size_t errlen)
{
	struct listeners *ls = calloc(1, sizeof(*ls));

	if (ls == NULL || (ls->fds = calloc(cfg->nlisten, sizeof(*ls->fds))) == NULL) {
		free(ls);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	for (size_t i = 0; i < cfg->nlisten; i++) {
		const struct cfg_listen *l = &cfg->listen[i];
		int fd = listener_open_one(l, listener_find(old_cfg, old, l), err, errlen);

		if (fd == -1) {
			listeners_close(ls);
			return NULL;
		}
		ls->fds[ls->n++] = fd;
	}
	return ls;
}

void
listeners_close(struct listeners *ls)
{
	if (ls == NULL)
		return;
	for (size_t i = 0; i < ls->n; i++)
		close(ls->fds[i]);
	free(ls->fds);
	free(ls);
}
