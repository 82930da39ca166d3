# tests/fault: the fault-injection suite (cmocka programs that start the real
# daemon and break things around it), linked with the integration harness.
# Included by the top-level Makefile; adds its programs to `make check`.
#
#   make valgrind   the daemon under valgrind memcheck through black-box
#                   scenarios (tests/fault/vg_scenarios.c); zero errors and
#                   no definite leak in any process, or it fails.

FAULT_SRCS := $(wildcard tests/fault/test_*.c)
FAULT_BINS := $(patsubst tests/fault/%.c,$(BUILD)/tests/fault/%,$(FAULT_SRCS))
FAULT_LIB  := $(BUILD)/tests/fault/fault.o
VG_BIN     := $(BUILD)/tests/fault/vg_scenarios

$(BUILD)/tests/fault/%: $(BUILD)/tests/fault/%.o $(FAULT_LIB) $(INTEG_LIB)
	$(call quiet,LINK,$@)$(CC) $(CFLAGS) $(EM_LDFLAGS) $(LDFLAGS) -o $@ $^ $(CMOCKA_LIBS) $(OPENSSL_LIBS)

CHECK_BINS += $(FAULT_BINS)
tests: $(FAULT_BINS)

.PHONY: valgrind
# Never with SANITIZE=1: valgrind and ASan do not mix.
valgrind: deps
	@packaging/build-deps.sh valgrind
	$(Q)$(MAKE) --no-print-directory SANITIZE= $(BUILD)/echomaster $(VG_BIN)
	$(Q)ECHOMASTER=$(CURDIR)/tests/fault/valgrind-wrap.sh \
	    EM_VALGRIND_DAEMON=$(CURDIR)/$(BUILD)/echomaster \
	    tests/run-tests.sh $(VG_BIN)

-include $(patsubst %,%.d,$(FAULT_BINS) $(VG_BIN)) $(FAULT_LIB:.o=.d)
