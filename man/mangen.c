/*
 * mangen: writes the parts of the man pages that the code already knows,
 * so that they cannot drift from it. Today one part: the list of settings
 * a reload does not change, in echomaster.conf(5), from the key table
 * (cfg_restart_only_name). `make man` runs it (man/man.mk);
 * tests/unit/test_man.c fails `make check` when the page and the table
 * disagree.
 *
 *   mangen PAGE    prints PAGE with the lines between its marks rewritten
 *
 * The marks are roff comments, invisible in the page:
 *   .\" restart-only begin ...
 *   .\" restart-only end
 */
#include <stdio.h>
#include <string.h>

#include "common/cfg.h"
#include "common/exitcode.h"

#define MARK_BEGIN ".\\\" restart-only begin"
#define MARK_END   ".\\\" restart-only end"

/* The names as one mdoc sentence end: ".Ic a ,", ".Ic b", "and", ".Ic c ." */
static void
print_restart_only(FILE *out)
{
	char name[CFG_NAME_LEN];
	size_t n = 0;

	while (cfg_restart_only_name(n, name) != NULL)
		n++;
	if (n == 0)
		fputs(".No none .\n", out);
	for (size_t i = 0; i < n; i++) {
		cfg_restart_only_name(i, name);
		if (i + 1 == n)
			fprintf(out, ".Ic %s .\n", name);
		else if (i + 2 == n)
			fprintf(out, ".Ic %s\nand\n", name);
		else
			fprintf(out, ".Ic %s ,\n", name);
	}
}

static bool
starts_with(const char *line, const char *mark)
{
	return strncmp(line, mark, strlen(mark)) == 0;
}

/* Copies IN to OUT, the marked block rewritten; -1 when the marks are missing or repeated. */
static int
rewrite(FILE *in, FILE *out)
{
	char line[4096];
	int begins = 0, ends = 0;
	bool inside = false;

	while (fgets(line, sizeof(line), in) != NULL) {
		if (starts_with(line, MARK_END)) {
			inside = false;
			ends++;
		}
		if (!inside)
			fputs(line, out);
		if (starts_with(line, MARK_BEGIN)) {
			print_restart_only(out);
			inside = true;
			begins++;
		}
	}
	return begins == 1 && ends == 1 && !inside ? 0 : -1;
}

int
main(int argc, char **argv)
{
	FILE *in;
	int rc;

	if (argc != 2) {
		fprintf(stderr, "usage: mangen PAGE\n");
		return EXIT_CONFIG;
	}
	if ((in = fopen(argv[1], "r")) == NULL) {
		fprintf(stderr, "mangen: %s: %m\n", argv[1]);
		return EXIT_RUNTIME;
	}
	rc = rewrite(in, stdout);
	fclose(in);
	if (rc == -1) {
		fprintf(stderr, "mangen: %s: needs one \"%s\" line and, after it, one \"%s\" line\n",
		    argv[1], MARK_BEGIN, MARK_END);
		return EXIT_CONFIG;
	}
	return fflush(stdout) == 0 ? EXIT_OK : EXIT_RUNTIME;
}
