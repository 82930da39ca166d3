#include "master/daemon.h"

#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include "common/exitcode.h"
#include "common/log.h"

void
daemon_absolute_path(struct cfg *cfg)
{
	char *abs;

	if (cfg->path[0] == '/' || (abs = realpath(cfg->path, NULL)) == NULL)
		return;
	free(cfg->path);
	cfg->path = abs;
}

static void
daemon_fork(void)
{
	switch (fork()) {
	case -1: fatal("fork");
	case 0: break;
	default: _exit(EXIT_OK);
	}
}

void
daemon_detach(void)
{
	int fd;

	daemon_fork();
	if (setsid() == -1)
		fatal("setsid");
	daemon_fork();
	if (chdir("/") == -1)
		fatal("chdir /");
	if ((fd = open("/dev/null", O_RDWR)) == -1)
		fatal("/dev/null");
	dup2(fd, STDIN_FILENO);
	dup2(fd, STDOUT_FILENO);
	dup2(fd, STDERR_FILENO);
	if (fd > STDERR_FILENO)
		close(fd);
}
