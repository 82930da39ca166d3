# tests/fuzz: libFuzzer on the configuration parser (cfg_load_string, the
# path `-t` takes). Included by the top-level Makefile.
#
#   make fuzz                   build, then fuzz for FUZZ_SECONDS (default 60)
#   make fuzz FUZZ_SECONDS=600  longer
#
# The committed seeds (tests/fuzz/corpus) are only read; what the fuzzer
# learns goes to build/fuzz/corpus, and a crashing input to
# build/fuzz/crash-*. Each one found becomes a case in
# tests/unit/test_cfg_fuzz.c. Needs clang and libFuzzer (Debian:
# libclang-rt-14-dev), installed by `packaging/build-deps.sh fuzz`.

FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 60
FUZZ_DIR     := $(BUILD)/fuzz
FUZZ_SAN     := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
# The daemon's own flags, minus -Werror: clang-only warnings are the lint's
# business (make lint), not a reason for the fuzzer not to run.
FUZZ_CFLAGS   = $(filter-out -fsanitize=% -fno-sanitize-recover=%,$(EM_CFLAGS)) \
	-Wno-error -g -O1 $(FUZZ_SAN)
FUZZ_OBJS    := $(patsubst %.c,$(FUZZ_DIR)/%.o,$(wildcard src/common/*.c))
FUZZ_BIN     := $(FUZZ_DIR)/fuzz_cfg

.PHONY: fuzz fuzz-build

$(FUZZ_DIR)/%.o: %.c
	@mkdir -p $(@D)
	$(call quiet,CLANG,$<)$(FUZZ_CC) $(CPPFLAGS) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -MMD -MP -c -o $@ $<

$(FUZZ_BIN): $(FUZZ_DIR)/tests/fuzz/fuzz_cfg.o $(FUZZ_OBJS)
	$(call quiet,LINK,$@)$(FUZZ_CC) $(FUZZ_SAN) -fsanitize=fuzzer -o $@ $^ $(LIBCONFIG_LIBS) -ldl

fuzz-build: deps
	@packaging/build-deps.sh fuzz
	$(Q)$(MAKE) --no-print-directory $(FUZZ_BIN)

fuzz: fuzz-build
	@mkdir -p $(FUZZ_DIR)/corpus
	$(FUZZ_BIN) -max_total_time=$(FUZZ_SECONDS) -timeout=10 -rss_limit_mb=2048 \
	    -print_final_stats=1 -dict=tests/fuzz/cfg.dict \
	    -artifact_prefix=$(FUZZ_DIR)/ $(FUZZ_DIR)/corpus tests/fuzz/corpus

-include $(FUZZ_OBJS:.o=.d) $(FUZZ_DIR)/tests/fuzz/fuzz_cfg.d
