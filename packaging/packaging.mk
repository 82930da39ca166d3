# Installation and packages; included by the top-level Makefile, which
# defines VERSION (from the VERSION file), BUILD and PREFIX.
#
#   make install [DESTDIR=...] [PREFIX=/usr/local]   install echomaster
#   make uninstall [DESTDIR=...] [PREFIX=...]        remove what install put
#   make deb              build/echomaster_VERSION-REV_ARCH.deb  (dpkg-buildpackage)
#   make rpm              build/echomaster-VERSION-REL.ARCH.rpm  (rpmbuild)
#   (both first install what they build with: packaging/build-deps.sh deb|rpm)
#   make check-packages   build both, lint them, install, boot under systemd
#
# Layout. The binary and the manuals follow PREFIX. The configuration is
# always /etc/echomaster/echomaster.conf, the path compiled into the daemon,
# so `echomaster` finds it whatever PREFIX was. systemd, sysusers and
# tmpfiles files go where this system's systemd looks for them: the
# directories pkg-config names when PREFIX is /usr (what packages use), and
# PREFIX/lib/... otherwise (/usr/local/lib/systemd/system is on systemd's
# search path). Each directory can be overridden on the command line.
#
# `make deb` and `make rpm` package `git archive HEAD` (set GIT_REF to
# package another commit): uncommitted changes are not in the packages, and a
# file missing from git breaks the build, which proves the tarball complete.
# The debian/ directory is packaging/debian from the working tree.

INSTALL ?= install
SBINDIR ?= $(PREFIX)/sbin
MANDIR  ?= $(PREFIX)/share/man
SYSCONFDIR ?= /etc

ifeq ($(PREFIX),/usr)
systemd_var = $(or $(shell $(PKG_CONFIG) --variable=$(1) systemd 2>/dev/null),$(2))
SYSTEMDSYSTEMUNITDIR ?= $(call systemd_var,systemdsystemunitdir,/lib/systemd/system)
SYSUSERSDIR ?= $(call systemd_var,sysusersdir,/usr/lib/sysusers.d)
TMPFILESDIR ?= $(call systemd_var,tmpfilesdir,/usr/lib/tmpfiles.d)
else
SYSTEMDSYSTEMUNITDIR ?= $(PREFIX)/lib/systemd/system
SYSUSERSDIR ?= $(PREFIX)/lib/sysusers.d
TMPFILESDIR ?= $(PREFIX)/lib/tmpfiles.d
endif

EM_CONF_DIR := $(DESTDIR)$(SYSCONFDIR)/echomaster
EM_CONF     := $(EM_CONF_DIR)/echomaster.conf
# Every file install puts, except the configuration (see install-conf).
EM_INSTALLED = $(DESTDIR)$(SBINDIR)/echomaster \
	$(DESTDIR)$(MANDIR)/man8/echomaster.8 \
	$(DESTDIR)$(MANDIR)/man5/echomaster.conf.5 \
	$(DESTDIR)$(SYSTEMDSYSTEMUNITDIR)/echomaster.service \
	$(DESTDIR)$(SYSUSERSDIR)/echomaster.conf \
	$(DESTDIR)$(TMPFILESDIR)/echomaster.conf

.PHONY: install install-conf uninstall deb rpm check-packages check-version

install: $(BUILD)/echomaster install-conf
	$(INSTALL) -d $(DESTDIR)$(SBINDIR) $(DESTDIR)$(MANDIR)/man8 \
		$(DESTDIR)$(MANDIR)/man5 $(DESTDIR)$(SYSTEMDSYSTEMUNITDIR) \
		$(DESTDIR)$(SYSUSERSDIR) $(DESTDIR)$(TMPFILESDIR)
	$(INSTALL) -m 0755 $(BUILD)/echomaster $(DESTDIR)$(SBINDIR)/echomaster
	$(INSTALL) -m 0644 man/echomaster.8 $(DESTDIR)$(MANDIR)/man8/echomaster.8
	$(INSTALL) -m 0644 man/echomaster.conf.5 $(DESTDIR)$(MANDIR)/man5/echomaster.conf.5
	sed 's|/usr/sbin/echomaster|$(SBINDIR)/echomaster|g' \
		packaging/systemd/echomaster.service > $(BUILD)/echomaster.service
	$(INSTALL) -m 0644 $(BUILD)/echomaster.service $(DESTDIR)$(SYSTEMDSYSTEMUNITDIR)/echomaster.service
	$(INSTALL) -m 0644 packaging/systemd/echomaster.sysusers $(DESTDIR)$(SYSUSERSDIR)/echomaster.conf
	$(INSTALL) -m 0644 packaging/systemd/echomaster.tmpfiles $(DESTDIR)$(TMPFILESDIR)/echomaster.conf
	@if [ -z "$(DESTDIR)" ]; then \
		echo "install: now create the user and the runtime directory, and tell systemd:"; \
		echo "  systemd-sysusers; systemd-tmpfiles --create echomaster.conf; systemctl daemon-reload"; \
	fi

# An administrator's configuration is never overwritten: the shipped one is
# installed only where there is none.
install-conf:
	$(INSTALL) -d $(EM_CONF_DIR)
	@if [ -e $(EM_CONF) ]; then \
		echo "install: keeping the existing $(EM_CONF)"; \
	else \
		echo "$(INSTALL) -m 0644 conf/echomaster.conf $(EM_CONF)"; \
		$(INSTALL) -m 0644 conf/echomaster.conf $(EM_CONF); \
	fi

# The configuration goes only if it is still the shipped one, and its
# directory only if that leaves it empty; shared directories stay.
uninstall:
	rm -f $(EM_INSTALLED)
	@if [ -e $(EM_CONF) ]; then \
		if cmp -s conf/echomaster.conf $(EM_CONF); then \
			echo "rm -f $(EM_CONF)"; rm -f $(EM_CONF); \
		else \
			echo "uninstall: keeping the modified $(EM_CONF)"; \
		fi; \
	fi
	@if [ -d $(EM_CONF_DIR) ]; then \
		rmdir $(EM_CONF_DIR) 2>/dev/null || echo "uninstall: keeping $(EM_CONF_DIR), not empty"; \
	fi

# One version everywhere: VERSION, debian/changelog and the spec.
# (braces: the sed expression holds unbalanced parentheses)
DEB_CHANGELOG_VERSION = ${shell sed -n '1s/^echomaster (\([^)-]*\)-[^)]*).*/\1/p' packaging/debian/changelog}
RPM_SPEC_VERSION = $(shell sed -n 's/^Version:[[:space:]]*//p' packaging/rpm/echomaster.spec)
check-version:
	@test "$(DEB_CHANGELOG_VERSION)" = "$(VERSION)" || { echo "packaging/debian/changelog is at $(DEB_CHANGELOG_VERSION), VERSION is $(VERSION): add a changelog entry (dch -v $(VERSION)-1)" >&2; exit 1; }
	@test "$(RPM_SPEC_VERSION)" = "$(VERSION)" || { echo "packaging/rpm/echomaster.spec says Version: $(RPM_SPEC_VERSION), VERSION is $(VERSION): update the spec and its %changelog" >&2; exit 1; }

GIT_REF ?= HEAD
EM_SRC_NAME = echomaster-$(VERSION)
git_tarball = git archive --format=tar --prefix=$(EM_SRC_NAME)/ $(GIT_REF) | gzip -n9 > $(1)
dirty_warning = @git diff --quiet $(GIT_REF) -- . ':!packaging/debian' 2>/dev/null || \
	echo "$(1): note: packaging $(GIT_REF); uncommitted changes are not in the package"

# Out of tree: build/deb/echomaster-VERSION/ is the unpacked tarball with
# packaging/debian as debian/, the tarball is the 3.0 (quilt) orig, and the
# binary packages are copied up to build/. DEB_BUILD_OPTIONS is passed
# through (nocheck skips `make check` inside the build).
deb: check-version
	@packaging/build-deps.sh deb
	$(call dirty_warning,deb)
	rm -rf $(BUILD)/deb
	mkdir -p $(BUILD)/deb
	$(call git_tarball,$(BUILD)/deb/echomaster_$(VERSION).orig.tar.gz)
	tar -C $(BUILD)/deb -xzf $(BUILD)/deb/echomaster_$(VERSION).orig.tar.gz
	cp -R packaging/debian $(BUILD)/deb/$(EM_SRC_NAME)/debian
	cd $(BUILD)/deb/$(EM_SRC_NAME) && dpkg-buildpackage --unsigned-source --unsigned-changes -J
	rm -f $(BUILD)/echomaster_*.deb $(BUILD)/echomaster-dbgsym_*.deb
	cp $(BUILD)/deb/*.deb $(BUILD)/
	@ls -1 $(BUILD)/echomaster_*.deb

# rpmbuild's tree is build/rpm. Debian's rpm has an empty package database,
# so the build dependencies cannot be checked there: --nodeps on Debian only.
RPMBUILD_FLAGS = $(if $(wildcard /etc/debian_version),--nodeps)
rpm: check-version
	@packaging/build-deps.sh rpm
	$(call dirty_warning,rpm)
	rm -rf $(BUILD)/rpm
	mkdir -p $(BUILD)/rpm/SOURCES
	$(call git_tarball,$(BUILD)/rpm/SOURCES/$(EM_SRC_NAME).tar.gz)
	cp packaging/systemd/echomaster.sysusers $(BUILD)/rpm/SOURCES/
	rpmbuild -ba $(RPMBUILD_FLAGS) $(RPMBUILD_OPTS) --define '_topdir $(CURDIR)/$(BUILD)/rpm' \
		packaging/rpm/echomaster.spec
	rm -f $(BUILD)/echomaster-*.rpm
	cp $(BUILD)/rpm/RPMS/*/echomaster-$(VERSION)-*.rpm $(BUILD)/
	@ls -1 $(BUILD)/echomaster-$(VERSION)-*.rpm

check-packages:
	@packaging/build-deps.sh build packages
	tests/packaging/check-packages.sh
