# man/man.mk: the generated parts of the man pages, included by the
# top-level Makefile.
#
#   make man    rewrites, from the key table of src/common/cfg.c, the list of
#               settings a reload does not change in man/echomaster.conf.5
#               (the lines between its "restart-only" marks; see man/mangen.c)
#
# Commit the result. make check fails while the page and the table disagree
# (tests/unit/test_man.c), so a key marked restart_only cannot go unlisted.

MANGEN     := $(BUILD)/man/mangen
MAN_PAGES  := man/echomaster.conf.5

.PHONY: man

$(MANGEN): $(BUILD)/man/mangen.o $(BUILD)/libechomaster.a
	$(call quiet,LINK,$@)$(CC) $(CFLAGS) $(EM_LDFLAGS) $(LDFLAGS) -o $@ $^ $(LIBCONFIG_LIBS) $(SECCOMP_LIBS) $(OPENSSL_LIBS)

# Rewritten in place only when it changes, so an up-to-date page keeps its mtime.
man: deps
	$(Q)$(MAKE) --no-print-directory $(if $(Q),-s) $(MANGEN)
	$(Q)for page in $(MAN_PAGES); do \
	    $(MANGEN) $$page > $(BUILD)/man/page.new || exit 1; \
	    if cmp -s $(BUILD)/man/page.new $$page; then echo "  MAN    $$page is up to date"; \
	    else cat $(BUILD)/man/page.new > $$page && echo "  MAN    $$page rewritten"; fi; \
	done; rm -f $(BUILD)/man/page.new

-include $(BUILD)/man/mangen.d
