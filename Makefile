# echomaster: a plain GNU Makefile.
#
#   make            build build/echomaster
#   make run        install missing build dependencies, build, run conf/echo.conf
#   make check      install missing build dependencies, build, run every test
#   make check SANITIZE=1   the same, built with ASan and UBSan
#   make install    DESTDIR and PREFIX honoured (see packaging/packaging.mk)
#
# CC, CFLAGS, CPPFLAGS, LDFLAGS, PREFIX and DESTDIR come from the caller;
# the flags the code needs are added to them, never instead of them.
# Quiet unless V=1.

VERSION := $(shell cat VERSION)
BUILD   := build

CC         ?= cc
PKG_CONFIG ?= pkg-config
CFLAGS     ?= -O2 -g
PREFIX     ?= /usr/local

# Recursively expanded on purpose: pkg-config runs when a recipe needs the
# flags, after `deps` had a chance to install libconfig and cmocka.
LIBCONFIG_CFLAGS = $(shell $(PKG_CONFIG) --cflags libconfig)
LIBCONFIG_LIBS   = $(shell $(PKG_CONFIG) --libs libconfig)
SECCOMP_LIBS     = $(shell $(PKG_CONFIG) --libs libseccomp)
OPENSSL_CFLAGS   = $(shell $(PKG_CONFIG) --cflags openssl)
OPENSSL_LIBS     = $(shell $(PKG_CONFIG) --libs openssl)
CMOCKA_CFLAGS    = $(shell $(PKG_CONFIG) --cflags cmocka)
CMOCKA_LIBS      = $(shell $(PKG_CONFIG) --libs cmocka)

# The link flags the build needs, on every link line before the caller's
# LDFLAGS: in a variable of our own, so `make LDFLAGS=...` cannot drop them.
EM_LDFLAGS =

EM_CFLAGS = -std=gnu11 -Wall -Wextra -Werror -Wshadow -Wformat=2 \
	-Wstrict-prototypes -Wmissing-prototypes -D_GNU_SOURCE -Isrc \
	-DEM_VERSION='"$(VERSION)"' $(LIBCONFIG_CFLAGS) $(OPENSSL_CFLAGS)
ifeq ($(SANITIZE),1)
EM_CFLAGS += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
EM_LDFLAGS += -fsanitize=address,undefined
# The sanitizers' run-time makes system calls the worker sandbox refuses.
EM_CFLAGS += -DEM_SANITIZE
endif
ifeq ($(TEST_HOOKS),1)
# Compiled in only for tests: lets a test make a worker crash at start-up.
EM_CFLAGS += -DEM_TEST_HOOKS
endif

ifneq ($(V),1)
Q = @
quiet = @printf '  %-6s %s\n' $(1) $(2);
endif

SRCS      := $(wildcard src/common/*.c src/master/*.c src/worker/*.c)
MAIN_SRC  := src/master/main.c
LIB_OBJS  := $(patsubst %.c,$(BUILD)/%.o,$(filter-out $(MAIN_SRC),$(SRCS)))
MAIN_OBJ  := $(BUILD)/src/master/main.o

UNIT_SRCS  := $(wildcard tests/unit/test_*.c)
UNIT_BINS  := $(patsubst tests/unit/%.c,$(BUILD)/tests/unit/%,$(UNIT_SRCS))
INTEG_SRCS := $(wildcard tests/integration/test_*.c)
INTEG_LIB  := $(patsubst %.c,$(BUILD)/%.o,$(filter-out $(INTEG_SRCS),$(wildcard tests/integration/*.c)))
INTEG_BINS := $(patsubst tests/integration/%.c,$(BUILD)/tests/integration/%,$(INTEG_SRCS))

.PHONY: all run check deps tests clean
# Keep test objects: they are intermediate files to make, but rebuilding them each time is waste.
.SECONDARY:
all: $(BUILD)/echomaster

$(BUILD)/echomaster: $(MAIN_OBJ) $(BUILD)/libechomaster.a
	$(call quiet,LINK,$@)$(CC) $(CFLAGS) $(EM_LDFLAGS) $(LDFLAGS) -o $@ $^ $(LIBCONFIG_LIBS) $(SECCOMP_LIBS) $(OPENSSL_LIBS)

$(BUILD)/libechomaster.a: $(LIB_OBJS)
	$(call quiet,AR,$@)rm -f $@ && $(AR) rcs $@ $^

$(BUILD)/%.o: %.c
	@mkdir -p $(@D)
	$(call quiet,CC,$<)$(CC) $(CPPFLAGS) $(EM_CFLAGS) $(CFLAGS) -MMD -MP -c -o $@ $<

$(BUILD)/tests/%.o: tests/%.c
	@mkdir -p $(@D)
	$(call quiet,CC,$<)$(CC) $(CPPFLAGS) $(EM_CFLAGS) $(CMOCKA_CFLAGS) $(CFLAGS) -MMD -MP -c -o $@ $<

$(BUILD)/tests/unit/%: $(BUILD)/tests/unit/%.o $(BUILD)/libechomaster.a
	$(call quiet,LINK,$@)$(CC) $(CFLAGS) $(EM_LDFLAGS) $(LDFLAGS) -o $@ $^ $(LIBCONFIG_LIBS) $(SECCOMP_LIBS) $(OPENSSL_LIBS) $(CMOCKA_LIBS)

$(BUILD)/tests/integration/%: $(BUILD)/tests/integration/%.o $(INTEG_LIB)
	$(call quiet,LINK,$@)$(CC) $(CFLAGS) $(EM_LDFLAGS) $(LDFLAGS) -o $@ $^ $(CMOCKA_LIBS) $(OPENSSL_LIBS)

deps:
	@packaging/build-deps.sh build

run: deps
	$(Q)$(MAKE) --no-print-directory $(if $(Q),-s) all
	exec $(BUILD)/echomaster -F -c conf/echo.conf

# Fragments under tests/ append their test programs to CHECK_BINS.
CHECK_BINS = $(UNIT_BINS) $(INTEG_BINS)

# A second daemon with the test hooks compiled in (TEST_HOOKS above), for the
# tests that need a worker to fail on purpose; never installed.
TESTHOOKS_BIN := $(BUILD)/testhooks/echomaster
ifneq ($(TEST_HOOKS),1)
$(TESTHOOKS_BIN): FORCE
	$(Q)$(MAKE) --no-print-directory $(if $(Q),-s) BUILD=$(BUILD)/testhooks TEST_HOOKS=1 $@
endif
.PHONY: FORCE
FORCE:

tests: $(BUILD)/echomaster $(TESTHOOKS_BIN) $(CHECK_BINS)

# The integration tests start the real daemon: ECHOMASTER names the binary.
check: deps
	$(Q)$(MAKE) --no-print-directory $(if $(Q),-s) tests
	$(Q)ECHOMASTER=$(CURDIR)/$(BUILD)/echomaster \
	    ECHOMASTER_TESTHOOKS=$(CURDIR)/$(TESTHOOKS_BIN) tests/run-tests.sh $(CHECK_BINS)

clean:
	rm -rf $(BUILD)

# Fragments are part of the build: a missing one is an error, not a silence.
include packaging/packaging.mk
include tests/bench/bench.mk
include tests/fault/fault.mk
include tests/fuzz/fuzz.mk
include tests/lint.mk
include man/man.mk
# Dependency files exist only once their objects were built.
-include $(patsubst %.o,%.d,$(LIB_OBJS) $(MAIN_OBJ) $(INTEG_LIB)) \
	$(patsubst %,%.d,$(UNIT_BINS) $(INTEG_BINS))
