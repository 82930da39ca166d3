#include "master/listeners.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/log.h"
#include "common/sock.h"
#include "master/quiesce.h"

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

/*
 * An inherited socket made ready to serve as L: a stream socket from
 * systemd may not listen yet, and a datagram one is set aside as a bound
 * one is (listener_open_one). Both calls are harmless on a socket that a
 * master of ours had prepared already.
 */
static int
listener_prepare_inherited(int fd, const struct cfg_listen *l, char *err, size_t errlen)
{
	char where[128];
	int fl = fcntl(fd, F_GETFL);

	sock_addr_format(&l->addr, where, sizeof(where));
	/*
	 * A master that died in a graceful stop (crash, SIGKILL) left its
	 * SYN-dropping filter (quiesce.h) on a socket systemd's fd store kept:
	 * served as it is, no client would ever connect. ENOENT: none there.
	 */
	if (quiesce_detach(fd) == -1 && errno != ENOENT)
		log_warn("inherited listener %s: cannot remove a socket filter", where);
	if (fl == -1 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) == -1 ||
	    (l->proto == CFG_PROTO_TCP && listen(fd, SOCK_BACKLOG) == -1)) {
		snprintf(err, errlen, "inherited listener %s %s: %s", cfg_proto_name(l->proto), where,
		    strerror(errno));
		return -1;
	}
	if (l->proto == CFG_PROTO_UDP && sock_dgram_aside(fd, &l->addr, l->addrlen) == -1)
		log_warn("UDP listener: cannot set the master's socket aside; the workers share it");
	log_info("listening on %s %s (%s), inherited", cfg_proto_name(l->proto), where,
	    cfg_mode_name(l->mode));
	return fd;
}

/* The inherited socket L adopts (taken out of INH), or -1 when there is none. */
static int
listener_adopt(struct inherited *inh, const struct cfg_listen *l)
{
	for (size_t i = 0; inh != NULL && i < inh->n; i++) {
		int fd = inh->fds[i];
		if (fd != -1 && listeners_fd_matches(fd, l)) {
			inh->fds[i] = -1;
			return fd;
		}
	}
	return -1;
}

static struct listeners *
listeners_open_from(const struct cfg *cfg, const struct cfg *old_cfg, const struct listeners *old,
    struct inherited *inh, char *err, size_t errlen)
{
	struct listeners *ls = calloc(1, sizeof(*ls));

	if (ls == NULL || (ls->fds = calloc(cfg->nlisten, sizeof(*ls->fds))) == NULL) {
		free(ls);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	for (size_t i = 0; i < cfg->nlisten; i++) {
		const struct cfg_listen *l = &cfg->listen[i];
		int fd = listener_adopt(inh, l);

		if (fd != -1) {
			ls->fds[ls->n++] = fd;  /* owned by the set from here, even if it fails */
			fd = listener_prepare_inherited(fd, l, err, errlen);
		} else if ((fd = listener_open_one(l, listener_find(old_cfg, old, l), err,
		    errlen)) != -1) {
			ls->fds[ls->n++] = fd;
		}
		if (fd == -1) {
			listeners_close(ls);
			return NULL;
		}
	}
	return ls;
}

struct listeners *
listeners_open(const struct cfg *cfg, const struct cfg *old_cfg, const struct listeners *old,
    char *err, size_t errlen)
{
	return listeners_open_from(cfg, old_cfg, old, NULL, err, errlen);
}

struct listeners *
listeners_open_inherited(const struct cfg *cfg, struct inherited *inh, char *err, size_t errlen)
{
	return listeners_open_from(cfg, NULL, NULL, inh, err, errlen);
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

/* A whole decimal number in [0, max]; -1 otherwise. */
static long
env_number(const char *s, long max)
{
	char *end;
	long v;

	if (s == NULL || *s < '0' || *s > '9')
		return -1;
	errno = 0;
	v = strtol(s, &end, 10);
	return errno != 0 || *end != '\0' || v > max ? -1 : v;
}

int
listeners_env_count(const char *listen_pid, const char *listen_fds, pid_t self)
{
	long pid, n;

	if (listen_pid == NULL || listen_fds == NULL)
		return 0;
	if ((pid = env_number(listen_pid, LONG_MAX)) <= 0 ||
	    (n = env_number(listen_fds, LISTENERS_INHERIT_MAX)) == -1)
		return -1;
	return pid == (long)self ? (int)n : 0;
}

/* LISTEN_FDNAMES, colon-separated, into INH's names (missing ones stay NULL). */
static int
inherit_names(struct inherited *inh, const char *names)
{
	const char *p = names;

	if ((inh->names = calloc(inh->n + 1, sizeof(*inh->names))) == NULL)
		return -1;
	for (size_t i = 0; p != NULL && *p != '\0' && i < inh->n; i++) {
		const char *colon = strchr(p, ':');
		size_t len = colon != NULL ? (size_t)(colon - p) : strlen(p);
		if ((inh->names[i] = strndup(p, len)) == NULL)
			return -1;
		p = colon != NULL ? colon + 1 : NULL;
	}
	return 0;
}

/* Moves NAME's value out of the environment into *out (NULL when unset). */
static int
env_take_one(const char *name, char **out)
{
	const char *v = getenv(name);

	*out = NULL;
	if (v != NULL && (*out = strdup(v)) == NULL)
		return -1;
	unsetenv(name);
	return 0;
}

int
listeners_env_take(struct listen_env *le)
{
	memset(le, 0, sizeof(*le));
	if (env_take_one("LISTEN_PID", &le->pid) == -1 ||
	    env_take_one("LISTEN_FDS", &le->fds) == -1 ||
	    env_take_one("LISTEN_FDNAMES", &le->names) == -1) {
		listeners_env_free(le);
		return -1;
	}
	return 0;
}

void
listeners_env_free(struct listen_env *le)
{
	free(le->pid);
	free(le->fds);
	free(le->names);
	memset(le, 0, sizeof(*le));
}

int
listeners_inherit(struct inherited *inh, const struct listen_env *le, char *err, size_t errlen)
{
	int n = listeners_env_count(le->pid, le->fds, getpid());

	memset(inh, 0, sizeof(*inh));
	if (n == -1) {
		snprintf(err, errlen, "malformed LISTEN_PID or LISTEN_FDS in the environment");
		return -1;
	}
	if (n == 0)
		return 0;
	inh->n = (size_t)n;
	if ((inh->fds = calloc(inh->n, sizeof(*inh->fds))) == NULL ||
	    inherit_names(inh, le->names) == -1) {
		listeners_inherited_free(inh);
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	for (size_t i = 0; i < inh->n; i++) {
		inh->fds[i] = LISTENERS_INHERIT_FIRST + (int)i;
		/* Ours now: no child of ours (the -t check, a new master) may inherit it by chance. */
		if (fcntl(inh->fds[i], F_SETFD, FD_CLOEXEC) == -1)
			inh->fds[i] = -1;
	}
	return 0;
}

/* Two socket addresses are the same listener's: family, port and address. */
static bool
addr_same(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
	if (a->ss_family != b->ss_family)
		return false;
	if (a->ss_family == AF_INET) {
		const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;
		return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
	}
	if (a->ss_family == AF_INET6) {
		const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;
		return x->sin6_port == y->sin6_port && x->sin6_scope_id == y->sin6_scope_id &&
		    memcmp(&x->sin6_addr, &y->sin6_addr, sizeof(x->sin6_addr)) == 0;
	}
	return false;
}

bool
listeners_fd_matches(int fd, const struct cfg_listen *l)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	int type;
	socklen_t tlen = sizeof(type);

	if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tlen) == -1 ||
	    type != (l->proto == CFG_PROTO_TCP ? SOCK_STREAM : SOCK_DGRAM))
		return false;
	memset(&ss, 0, sizeof(ss));
	if (getsockname(fd, (struct sockaddr *)&ss, &len) == -1)
		return false;
	return addr_same(&ss, &l->addr);
}

void
listeners_inherited_free(struct inherited *inh)
{
	for (size_t i = 0; i < inh->n && inh->fds != NULL; i++) {
		struct sockaddr_storage ss;
		socklen_t len = sizeof(ss);
		char where[128] = "(not a socket)";
		if (inh->fds[i] == -1)
			continue;
		memset(&ss, 0, sizeof(ss));
		if (getsockname(inh->fds[i], (struct sockaddr *)&ss, &len) == 0)
			sock_addr_format(&ss, where, sizeof(where));
		log_warnx("inherited descriptor %d (%s%s%s) matches no listener; closing it",
		    inh->fds[i], where, inh->names != NULL && inh->names[i] != NULL ? ", named " : "",
		    inh->names != NULL && inh->names[i] != NULL ? inh->names[i] : "");
		close(inh->fds[i]);
	}
	for (size_t i = 0; i < inh->n && inh->names != NULL; i++)
		free(inh->names[i]);
	free(inh->names);
	free(inh->fds);
	memset(inh, 0, sizeof(*inh));
}
