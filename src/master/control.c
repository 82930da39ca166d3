#include "master/control.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/sock.h"


static const struct {
	const char *name;
	enum ctl_cmd cmd;
} commands[] = {
	{ "status", CTL_STATUS }, { "status-json", CTL_STATUS_JSON }, { "reload", CTL_RELOAD },
	{ "respawn", CTL_RESPAWN }, { "stop", CTL_STOP }, { "quit", CTL_QUIT },
	{ "reopen", CTL_REOPEN }, { "drain", CTL_DRAIN }, { "ready", CTL_READY },
	{ "maint", CTL_MAINT }, { "upgrade", CTL_UPGRADE },
};

static int
sun_fill(struct sockaddr_un *sun, const char *path, char *err, size_t errlen)
{
	size_t len = strlen(path);

	memset(sun, 0, sizeof(*sun));
	sun->sun_family = AF_UNIX;
	if (len >= sizeof(sun->sun_path)) {
		snprintf(err, errlen, "control socket path too long: %s", path);
		return -1;
	}
	memcpy(sun->sun_path, path, len + 1);
	return 0;
}

/* True when some process accepts connections on PATH. */
static bool
control_in_use(const struct sockaddr_un *sun)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	bool live;

	if (fd == -1)
		return false;
	live = connect(fd, (const struct sockaddr *)sun, sizeof(*sun)) == 0;
	close(fd);
	return live;
}

int
control_listen(const char *path, char *err, size_t errlen)
{
	struct sockaddr_un sun;
	mode_t old_mask;
	int fd;

	if (sun_fill(&sun, path, err, errlen) == -1)
		return -1;
	if (control_in_use(&sun)) {
		snprintf(err, errlen, "control socket %s is in use by another master", path);
		return -1;
	}
	unlink(path);
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) == -1) {
		snprintf(err, errlen, "control socket: %s", strerror(errno));
		return -1;
	}
	/* Created 0600 from the start: there is no moment anyone else could connect. */
	old_mask = umask(0177);
	if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) == -1 || listen(fd, 16) == -1) {
		snprintf(err, errlen, "control socket %s: %s", path, strerror(errno));
		umask(old_mask);
		close(fd);
		return -1;
	}
	umask(old_mask);
	return fd;
}

enum ctl_cmd
control_read(struct reqconn *c)
{
	char *nl;

	if (reqconn_read(c) == -1)
		return CTL_BAD;
	if ((nl = strchr(c->buf, '\n')) == NULL)
		return CTL_NONE;
	*nl = '\0';
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (strcmp(c->buf, commands[i].name) == 0)
			return commands[i].cmd;
	return CTL_BAD;
}

void
control_reply(struct reqconn *c, bool ok, const char *body)
{
	reqconn_finish(c, ok ? "ok\n" : "error\n", body);
}

int
control_request(const char *path, const char *cmd, FILE *out, char *err, size_t errlen)
{
	struct sockaddr_un sun;
	char buf[4096];
	bool first = true;
	int fd, status = -1;
	ssize_t n;

	if (sun_fill(&sun, path, err, errlen) == -1)
		return -1;
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1 ||
	    connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == -1) {
		snprintf(err, errlen, "cannot reach the master at %s: %s", path, strerror(errno));
		if (fd != -1)
			close(fd);
		return -1;
	}
	snprintf(buf, sizeof(buf), "%s\n", cmd);
	if (sock_send_all(fd, buf, strlen(buf)) == -1) {
		snprintf(err, errlen, "cannot send to the master at %s: %s", path, strerror(errno));
		close(fd);
		return -1;
	}
	while ((n = read(fd, buf, sizeof(buf))) > 0) {
		const char *body = buf;
		size_t len = (size_t)n;
		if (first) {
			const char *nl = memchr(buf, '\n', len);
			if (nl == NULL)
				break;
			status = strncmp(buf, "ok\n", 3) == 0 ? 0 : 1;
			body = nl + 1;
			len -= (size_t)(body - buf);
			first = false;
		}
		fwrite(body, 1, len, out);
	}
	close(fd);
	if (status == -1)
		snprintf(err, errlen, "the master at %s closed without an answer", path);
	return status;
}
