#include "worker/sandbox.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/landlock.h>
#include <seccomp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>


/*
 * The system calls a serving worker makes, found with strace over the
 * whole integration suite and by reading the worker's code: its loop
 * (epoll, accept4, read/write, the send and recv families, close,
 * shutdown, socket options and names), the handover (sendmsg/recvmsg with
 * SCM_RIGHTS, memfd_create, pwrite, seals through fcntl, fstat and a
 * read-only mmap of the received memfd), malloc (brk, mmap, munmap,
 * mremap, madvise, mprotect), the clock (vDSO normally; the calls are the
 * fallback), signals (signalfd reads, the SIGSYS handler's own
 * rt_sigaction, tgkill and rt_sigreturn) and exit. mmap and mprotect are
 * allowed only without PROT_EXEC, fstat only on a descriptor.
 */
static const char *const allowed[] = {
	"read", "readv", "write", "writev", "pwrite64", "close", "lseek",
	"recvfrom", "recvmsg", "recvmmsg", "sendto", "sendmsg", "sendmmsg",
	"accept4", "shutdown", "setsockopt", "getsockopt", "getsockname", "getpeername",
	"epoll_wait", "epoll_pwait", "epoll_ctl", "fcntl", "fstat", "memfd_create", "ftruncate",
	"brk", "munmap", "mremap", "madvise",
	"clock_gettime", "clock_getres", "gettimeofday", "time", "nanosleep", "clock_nanosleep",
	"rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "restart_syscall",
	"getpid", "gettid", "getppid", "tgkill", "uname", "getrandom", "futex", "sched_yield",
	"exit", "exit_group",
#ifdef EM_TEST_HOOKS
	/* Test builds only: their hooks are switched by a file's presence. */
	"access", "faccessat", "faccessat2",
#endif
};

/* Landlock flags newer than Debian 12's <linux/landlock.h>; the ABI only grows. */
#define LL_FS_TRUNCATE           (1ULL << 14)  /* ABI 3 */
#define LL_FS_IOCTL_DEV          (1ULL << 15)  /* ABI 5 */
#define LL_NET_BIND_TCP          (1ULL << 0)   /* ABI 4 */
#define LL_NET_CONNECT_TCP       (1ULL << 1)
#define LL_SCOPE_ABSTRACT_UNIX   (1ULL << 0)   /* ABI 6 */
#define LL_SCOPE_SIGNAL          (1ULL << 1)

/* struct landlock_ruleset_attr as of ABI 6; older kernels take a prefix of it. */
struct ll_ruleset_attr {
	uint64_t handled_access_fs;
	uint64_t handled_access_net;
	uint64_t scoped;
};

/* Our scoreboard entry, for the SIGSYS handler: it can do nothing but store. */
static struct sb_worker *sandbox_me;

static int __attribute__((format(printf, 3, 4)))
fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return -1;
}

/*
 * A trapped call: record which (plus one: 0 means none), then die of the
 * same SIGSYS, which SA_RESETHAND has made fatal again and which stays
 * pending until this handler returns.
 */
static void
sandbox_trapped(int sig, siginfo_t *si, void *uctx)
{
	(void)uctx;
	if (sandbox_me != NULL)
		__atomic_store_n(&sandbox_me->violation, si->si_syscall + 1, __ATOMIC_RELAXED);
	raise(sig);
}

static int
sandbox_catch(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = sandbox_trapped;
	sa.sa_flags = SA_SIGINFO | SA_RESETHAND;
	sigemptyset(&sa.sa_mask);
	return sigaction(SIGSYS, &sa, NULL);
}

/* The file system rights each Landlock ABI knows: all of them are handled, none granted. */
static uint64_t
landlock_fs_rights(int abi)
{
	uint64_t fs = (LANDLOCK_ACCESS_FS_MAKE_SYM << 1) - 1;  /* ABI 1: bits 0..12 */

	if (abi >= 2)
		fs |= LANDLOCK_ACCESS_FS_REFER;
	if (abi >= 3)
		fs |= LL_FS_TRUNCATE;
	if (abi >= 5)
		fs |= LL_FS_IOCTL_DEV;
	return fs;
}

/*
 * No path can be opened, made or removed; from ABI 4 no TCP port bound or
 * connected to; from ABI 6 no signal to, and no abstract socket of, a
 * process outside this worker. A kernel without Landlock: 1 (the master
 * says so once, at start).
 */
static int
sandbox_landlock(char *err, size_t errlen)
{
	struct ll_ruleset_attr attr = { 0 };
	size_t size = sizeof(attr.handled_access_fs);
	int abi, fd;

	abi = (int)syscall(SYS_landlock_create_ruleset, NULL, 0, LANDLOCK_CREATE_RULESET_VERSION);
	if (abi < 0)
		return errno == ENOSYS || errno == EOPNOTSUPP ? 1 :
		    fail(err, errlen, "landlock_create_ruleset: %s", strerror(errno));
	attr.handled_access_fs = landlock_fs_rights(abi);
	if (abi >= 4) {
		attr.handled_access_net = LL_NET_BIND_TCP | LL_NET_CONNECT_TCP;
		size = offsetof(struct ll_ruleset_attr, scoped);
	}
	if (abi >= 6) {
		attr.scoped = LL_SCOPE_ABSTRACT_UNIX | LL_SCOPE_SIGNAL;
		size = sizeof(attr);
	}
	if ((fd = (int)syscall(SYS_landlock_create_ruleset, &attr, size, 0)) == -1)
		return fail(err, errlen, "landlock_create_ruleset: %s", strerror(errno));
	if (syscall(SYS_landlock_restrict_self, fd, 0) == -1) {
		close(fd);
		return fail(err, errlen, "landlock_restrict_self: %s", strerror(errno));
	}
	close(fd);
	return 0;
}

static int
rule(scmp_filter_ctx ctx, uint32_t action, const char *name, unsigned nargs,
    const struct scmp_arg_cmp *args)
{
	int nr = seccomp_syscall_resolve_name(name);

	if (nr == __NR_SCMP_ERROR)
		return 0;  /* not a call of this architecture (time on arm64, say) */
	return seccomp_rule_add_array(ctx, action, nr, nargs, args);
}

/* The calls that are allowed only with some arguments, or refused without a trap. */
static int
seccomp_narrow_rules(scmp_filter_ctx ctx)
{
	const struct scmp_arg_cmp no_exec = SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0);
	const struct scmp_arg_cmp on_fd = SCMP_A3(SCMP_CMP_MASKED_EQ, AT_EMPTY_PATH, AT_EMPTY_PATH);
	const struct scmp_arg_cmp unix_family = SCMP_A0(SCMP_CMP_EQ, AF_UNIX, 0);  /* datum_b spelled out: clang -Wmissing-field-initializers */

	if (rule(ctx, SCMP_ACT_ALLOW, "mmap", 1, &no_exec) < 0 ||
	    rule(ctx, SCMP_ACT_ALLOW, "mprotect", 1, &no_exec) < 0 ||
	    rule(ctx, SCMP_ACT_ALLOW, "newfstatat", 1, &on_fd) < 0 ||
	    rule(ctx, SCMP_ACT_ERRNO(EPERM), "socket", 1, &unix_family) < 0 ||
	    rule(ctx, SCMP_ACT_ERRNO(EPERM), "connect", 0, NULL) < 0)
		return -1;
	return 0;
}

/* The allow-list; everything else traps. libseccomp checks the architecture first. */
static int
sandbox_seccomp(char *err, size_t errlen)
{
	scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_TRAP);
	int rc = -1;

	if (ctx == NULL)
		return fail(err, errlen, "seccomp_init failed");
	if (seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS) < 0) {
		fail(err, errlen, "seccomp: cannot refuse foreign architectures");
		goto out;
	}
	for (size_t i = 0; i < sizeof(allowed) / sizeof(allowed[0]); i++)
		if (rule(ctx, SCMP_ACT_ALLOW, allowed[i], 0, NULL) < 0) {
			fail(err, errlen, "seccomp: cannot allow %s", allowed[i]);
			goto out;
		}
	if (seccomp_narrow_rules(ctx) < 0) {
		fail(err, errlen, "seccomp: cannot add the argument rules");
		goto out;
	}
	if ((rc = seccomp_load(ctx)) < 0)
		fail(err, errlen, "seccomp_load: %s", strerror(-rc));
out:
	seccomp_release(ctx);
	return rc < 0 ? -1 : 0;
}

int
sandbox_apply(struct sb_worker *me, char *err, size_t errlen)
{
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == -1)
		return fail(err, errlen, "prctl(PR_SET_NO_NEW_PRIVS): %s", strerror(errno));
	if (sandbox_landlock(err, errlen) == -1)
		return -1;
	sandbox_me = me;
	if (sandbox_catch() == -1)
		return fail(err, errlen, "sigaction(SIGSYS): %s", strerror(errno));
	if (sandbox_seccomp(err, errlen) == -1)
		return -1;
	me->sandboxed = 1;
	return 0;
}
