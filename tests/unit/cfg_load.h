/*
 * cfg_load.h: loading a config text in the unit tests of the parser
 * (test_cfg, test_cfg_tls): one that must load, and one that must fail at a
 * given line with a given message. Include it after cmocka.h: it fails the
 * test through cmocka.
 */
#ifndef EM_TESTS_CFG_LOAD_H
#define EM_TESTS_CFG_LOAD_H

#include <stdio.h>
#include <string.h>

#include "common/cfg.h"

/* TEXT loaded as test.conf; fails the test on an error. */
static inline struct cfg *
load_ok(const char *text)
{
	char err[CFG_ERR_LEN] = "";
	struct cfg *cfg = cfg_load_string("test.conf", text, err);

	if (cfg == NULL)
		fail_msg("unexpected error: %s", err);
	return cfg;
}

/* The whole message must start with FILE:LINE: and contain what it says. */
static inline void
expect_error(const char *text, int line, const char *needle)
{
	char err[CFG_ERR_LEN] = "";
	char prefix[64];
	struct cfg *cfg = cfg_load_string("test.conf", text, err);

	if (cfg != NULL) {
		cfg_free(cfg);
		fail_msg("accepted, expected an error at line %d containing \"%s\"", line, needle);
	}
	snprintf(prefix, sizeof(prefix), "test.conf:%d: ", line);
	if (strncmp(err, prefix, strlen(prefix)) != 0 || strstr(err, needle) == NULL)
		fail_msg("got \"%s\", expected \"%s...%s\"", err, prefix, needle);
}

#endif
