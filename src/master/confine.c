#include "master/confine.h"

#include <errno.h>
#include <seccomp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/landlock.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

/* What no echomaster master ever does; also refused to every worker, which inherits it. */
static const char *const master_denied[] = {
	"ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "pidfd_getfd",
	"mount", "umount2", "pivot_root", "chroot", "move_mount", "open_tree", "fsopen",
	"fsmount", "fsconfig", "fspick", "mount_setattr",
	"init_module", "finit_module", "delete_module", "kexec_load", "kexec_file_load",
	"bpf", "perf_event_open", "userfaultfd", "reboot", "swapon", "swapoff", "acct",
	"settimeofday", "clock_settime", "clock_adjtime", "adjtimex",
	"setns", "unshare", "keyctl", "add_key", "request_key",
	"open_by_handle_at", "name_to_handle_at", "iopl", "ioperm", "quotactl",
	"lookup_dcookie", "syslog", "vhangup", "personality", "uselib",
};

/* In the environment once this process has its deny-list; inherited across exec. */
#define CONFINE_ENV "ECHOMASTER_CONFINED"

static int
fail(char *err, size_t errlen, const char *what, int rc)
{
	snprintf(err, errlen, "%s: %s", what, strerror(rc < 0 ? -rc : rc));
	return -1;
}

static int
confine_deny_list(char *err, size_t errlen)
{
	scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
	int rc = 0;

	if (ctx == NULL)
		return fail(err, errlen, "seccomp_init", ENOMEM);
	for (size_t i = 0; i < sizeof(master_denied) / sizeof(master_denied[0]) && rc == 0; i++) {
		int nr = seccomp_syscall_resolve_name(master_denied[i]);

		if (nr != __NR_SCMP_ERROR)
			rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), nr, 0);
	}
	if (rc == 0)
		rc = seccomp_load(ctx);
	seccomp_release(ctx);
	return rc == 0 ? 0 : fail(err, errlen, "seccomp", rc);
}

const char *
confine_unavailable(void)
{
#ifdef EM_SANITIZE
	return "this build has the address and undefined-behaviour sanitizers, which need "
	    "more system calls";
#else
	const char *preload = getenv("LD_PRELOAD");

	if (preload != NULL && strstr(preload, "vgpreload") != NULL)
		return "running under valgrind, which needs more system calls";
	return NULL;
#endif
}

int
confine_master(char *err, size_t errlen)
{
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == -1)
		return fail(err, errlen, "prctl(PR_SET_NO_NEW_PRIVS)", errno);
	/*
	 * Set by the master whose filter we inherited across an upgrade's exec:
	 * the same list again would only stack. The seccomp mode alone cannot
	 * tell ours from a service manager's (systemd's SystemCallFilter,
	 * Docker's profile), under which ours must still be loaded.
	 */
	if (getenv(CONFINE_ENV) != NULL)
		return 0;
	if (confine_deny_list(err, errlen) == -1)
		return -1;
	return setenv(CONFINE_ENV, "1", 1) == -1 ? fail(err, errlen, "setenv", errno) : 0;
}

int
confine_landlock_abi(void)
{
	long abi = syscall(SYS_landlock_create_ruleset, NULL, 0, LANDLOCK_CREATE_RULESET_VERSION);

	return abi < 0 ? 0 : (int)abi;
}

void
confine_syscall_name(int nr, char *buf, size_t len)
{
	char *name = seccomp_syscall_resolve_num_arch(SCMP_ARCH_NATIVE, nr);

	if (name != NULL)
		snprintf(buf, len, "%s", name);
	else
		snprintf(buf, len, "#%d", nr);
	free(name);
}
