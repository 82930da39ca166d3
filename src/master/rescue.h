/*
 * rescue: how `echomaster -s` finds the running master when the
 * configuration file may be broken. The operator who needs `-s stop` most
 * is the one who has just broken the file, so this reads one top-level
 * string setting (pid_file, control_socket) and nothing else: through
 * libconfig when the file parses, else by a plain scan of its lines. It
 * does not validate and does not replace cfg_load; the daemon itself never
 * uses it.
 */
#ifndef EM_RESCUE_H
#define EM_RESCUE_H

#include <stddef.h>

#include "common/cfg.h"

/*
 * Finds the top-level string setting NAME in PATH, even when the rest of
 * the file is wrong. Returns 0 and fills out ("" when the file does not
 * set it), or -1 with "FILE:LINE: message" in err: the file is unreadable,
 * or it parses and NAME is not a string.
 */
int rescue_read_setting(const char *path, const char *name, char *out, size_t outlen,
    char err[CFG_ERR_LEN]);

#endif
