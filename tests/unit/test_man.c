/*
 * The man page and the key table agree: the settings echomaster.conf(5)
 * says a reload does not change are exactly those cfg.c marks
 * restart_only, in its order. When this fails, run `make man` and commit
 * the page (man/mangen.c writes the block between the marks).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "common/cfg.h"

/* make check runs the tests from the top of the source tree. */
#define CONF_PAGE "man/echomaster.conf.5"
#define MARK_BEGIN ".\\\" restart-only begin"
#define MARK_END   ".\\\" restart-only end"
#define NAMES_MAX  32

/* The NAME of an ".Ic NAME" line, "" for the "and" between the last two, NULL for anything else. */
static const char *
block_line_name(char *line)
{
	char *end;

	line[strcspn(line, "\n")] = '\0';
	if (strcmp(line, "and") == 0)
		return "";
	if (strncmp(line, ".Ic ", 4) != 0)
		return NULL;
	line += 4;
	end = line + strcspn(line, " ");
	*end = '\0';
	return line;
}

/* Reads the names listed between the marks of PATH into names; returns how many. */
static size_t
page_restart_only(const char *path, char names[NAMES_MAX][CFG_NAME_LEN])
{
	FILE *f = fopen(path, "r");
	char line[1024];
	bool inside = false, seen_end = false;
	size_t n = 0;

	if (f == NULL)
		fail_msg("cannot open %s: run the test from the top of the source tree", path);
	while (fgets(line, sizeof(line), f) != NULL && !seen_end) {
		const char *name;

		if (strncmp(line, MARK_BEGIN, strlen(MARK_BEGIN)) == 0) {
			inside = true;
			continue;
		}
		if ((seen_end = strncmp(line, MARK_END, strlen(MARK_END)) == 0) || !inside)
			continue;
		if ((name = block_line_name(line)) == NULL)
			fail_msg("%s: \"%s\" between the restart-only marks: run make man", path, line);
		if (name[0] == '\0')
			continue;
		if (n == NAMES_MAX || snprintf(names[n++], CFG_NAME_LEN, "%s", name) >= CFG_NAME_LEN)
			fail_msg("%s: too many or too long names between the restart-only marks", path);
	}
	fclose(f);
	if (!inside || !seen_end)
		fail_msg("%s: the restart-only marks are missing (see man/mangen.c)", path);
	return n;
}

static void
the_page_lists_what_the_table_marks(void **state)
{
	char names[NAMES_MAX][CFG_NAME_LEN], name[CFG_NAME_LEN];
	size_t n = page_restart_only(CONF_PAGE, names), i;

	(void)state;
	for (i = 0; cfg_restart_only_name(i, name) != NULL; i++) {
		if (i >= n)
			fail_msg("%s does not list %s as restart-only: run make man", CONF_PAGE, name);
		if (strcmp(names[i], name) != 0)
			fail_msg("%s lists %s where the table has %s: run make man", CONF_PAGE,
			    names[i], name);
	}
	if (i < n)
		fail_msg("%s lists %s, which the table does not mark: run make man", CONF_PAGE,
		    names[i]);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(the_page_lists_what_the_table_marks),
	};
	return cmocka_run_group_tests_name("man", tests, NULL, NULL);
}
