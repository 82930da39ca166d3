#include "master/rescue.h"

#include <ctype.h>
#include <errno.h>
#include <libconfig.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

/* Parses `NAME = "..."` at s (which starts with NAME); 0 and the value in out when it is one. */
static int
scan_setting_value(char *s, const char *name, char *out, size_t outlen)
{
	char *end;

	s += strlen(name);
	s += strspn(s, " \t");
	if (*s != '=' && *s != ':')
		return -1;
	s++;
	s += strspn(s, " \t");
	if (*s != '"' || (end = strchr(s + 1, '"')) == NULL)
		return -1;
	*end = '\0';
	snprintf(out, outlen, "%s", s + 1);
	return 0;
}

/*
 * The fallback for a file libconfig cannot parse: a plain text scan for
 * the setting, anywhere on a line, comments skipped.
 * Returns 0 found, 1 not found, -1 unreadable.
 */
static int
scan_setting(const char *path, const char *name, char *out, size_t outlen)
{
	FILE *f = fopen(path, "r");
	char line[1024];
	int found = 1;

	if (f == NULL)
		return -1;
	while (found == 1 && fgets(line, sizeof(line), f) != NULL) {
		char *s = line;

		line[strcspn(line, "#")] = '\0';
		while (found == 1 && (s = strstr(s, name)) != NULL) {
			bool at_word_start = s == line || !(isalnum((unsigned char)s[-1]) || s[-1] == '_');
			if (at_word_start && scan_setting_value(s, name, out, outlen) == 0)
				found = 0;
			s += strlen(name);
		}
	}
	fclose(f);
	return found;
}

int
rescue_read_setting(const char *path, const char *name, char *out, size_t outlen,
    char err[CFG_ERR_LEN])
{
	config_t lc;
	const char *v;
	int rc = 0;

	out[0] = '\0';
	config_init(&lc);
	errno = 0;
	if (config_read_file(&lc, path) == CONFIG_TRUE) {
		if (config_lookup_string(&lc, name, &v) == CONFIG_TRUE) {
			snprintf(out, outlen, "%s", v);
		} else if (config_lookup(&lc, name) != NULL) {
			snprintf(err, CFG_ERR_LEN, "%s:%d: '%s' must be a string", path,
			    config_setting_source_line(config_lookup(&lc, name)), name);
			rc = -1;
		}
	} else if (config_error_type(&lc) == CONFIG_ERR_FILE_IO) {
		snprintf(err, CFG_ERR_LEN, "%s:0: cannot read the file: %s", path,
		    strerror(errno ? errno : EIO));
		rc = -1;
	} else if (scan_setting(path, name, out, outlen) == -1) {
		snprintf(err, CFG_ERR_LEN, "%s:0: cannot read the file: %s", path, strerror(errno));
		rc = -1;
	}
	config_destroy(&lc);
	return rc;
}
