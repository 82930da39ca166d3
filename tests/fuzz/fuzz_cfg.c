/*
 * fuzz_cfg.c: libFuzzer target for the configuration parser, through
 * cfg_load_string(), the same path `echomaster -t` takes (cfg_load reads the
 * file with libconfig and then shares every step). A loaded config is also
 * dumped (-T) and freed, so the printer and the destructor are covered too.
 *
 * Besides the sanitizers' verdict, one invariant: a refused config always
 * says why ("FILE:LINE: message", never an empty error).
 *
 * Built and run by `make fuzz` (tests/fuzz/fuzz.mk). Every crash it finds
 * becomes a case in tests/unit/test_cfg_fuzz.c.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <netdb.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cfg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
const char *__lsan_default_suppressions(void);

/*
 * libconfig 1.5 (Debian 12) leaks a string token the grammar did not
 * expect: the whole file `"x"` loses 64 bytes (allocated in strbuf_append),
 * `""` one byte (allocated in libconfig_yylex); its bison grammar has no
 * %destructor. That is the library, not echomaster, and the first things the
 * fuzzer found (tests/unit/test_cfg_fuzz.c keeps the cases); they are
 * suppressed by the lexer's allocating functions so the fuzzer can look
 * further. Any other leak still stops it.
 */
const char *
__lsan_default_suppressions(void)
{
	return "leak:strbuf_append\nleak:libconfig_yylex\n";
}

/*
 * An address that is not a literal would be looked up in DNS, which is slow,
 * needs a network and is not the parser. Names are refused as if they did
 * not resolve; literals go to the real getaddrinfo. (This definition takes
 * the place of libc's and of the sanitizers' weak interceptor.)
 */
int
getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
    struct addrinfo **res)
{
	static int (*real)(const char *, const char *, const struct addrinfo *,
	    struct addrinfo **);
	struct addrinfo h = { 0 };

	if (real == NULL)
		real = (int (*)(const char *, const char *, const struct addrinfo *,
		    struct addrinfo **))dlsym(RTLD_NEXT, "getaddrinfo");
	if (hints != NULL)
		h = *hints;
	h.ai_flags |= AI_NUMERICHOST;
	return real(node, service, &h, res);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static FILE *devnull;
	char err[CFG_ERR_LEN] = "";
	struct cfg *cfg;
	char *text;

	if (devnull == NULL && (devnull = fopen("/dev/null", "w")) == NULL)
		abort();
	if ((text = malloc(size + 1)) == NULL)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	cfg = cfg_load_string("fuzz.conf", text, err);
	if (cfg != NULL) {
		cfg_dump(cfg, devnull);
		cfg_free(cfg);
	} else if (err[0] == '\0') {
		fprintf(stderr, "refused without a message\n");
		abort();
	}
	free(text);
	return 0;
}
