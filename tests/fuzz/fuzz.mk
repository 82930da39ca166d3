# tests/fuzz: libFuzzer on the configuration parser (cfg_load_string, the
# path `-t` takes) and on the PROXY protocol parser (worker/proxy.c, what a
# client sends first on a proxy_protocol listener). Included by the
# top-level Makefile.
#
#   make fuzz                   build, then fuzz for FUZZ_SECONDS (default 60)
#                               in all: half each, so CI's time stays as it was
#   make fuzz FUZZ_SECONDS=600  longer
#
# The committed seeds (tests/fuzz/corpus, tests/fuzz/corpus-proxy) are only
# read; what the fuzzer learns goes to build/fuzz/corpus and
# build/fuzz/corpus-proxy, and a crashing input to build/fuzz/crash-*. Each
# one found becomes a case in tests/unit/test_cfg_fuzz.c or
# tests/unit/test_proxy.c. Needs clang and libFuzzer (Debian:
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
FUZZ_PROXY   := $(FUZZ_DIR)/fuzz_proxy
FUZZ_HALF     = $$(( ($(FUZZ_SECONDS) + 1) / 2 ))

.PHONY: fuzz fuzz-build

$(FUZZ_DIR)/%.o: %.c
	@mkdir -p $(@D)
	$(call quiet,CLANG,$<)$(FUZZ_CC) $(CPPFLAGS) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -MMD -MP -c -o $@ $<

$(FUZZ_BIN): $(FUZZ_DIR)/tests/fuzz/fuzz_cfg.o $(FUZZ_OBJS)
	$(call quiet,LINK,$@)$(FUZZ_CC) $(FUZZ_SAN) -fsanitize=fuzzer -o $@ $^ $(LIBCONFIG_LIBS) $(OPENSSL_LIBS) -ldl

# The PROXY parser is pure: it links alone.
$(FUZZ_PROXY): $(FUZZ_DIR)/tests/fuzz/fuzz_proxy.o $(FUZZ_DIR)/src/worker/proxy.o
	$(call quiet,LINK,$@)$(FUZZ_CC) $(FUZZ_SAN) -fsanitize=fuzzer -o $@ $^

fuzz-build: deps
	@packaging/build-deps.sh fuzz
	$(Q)$(MAKE) --no-print-directory $(FUZZ_BIN) $(FUZZ_PROXY)

fuzz: fuzz-build
	@mkdir -p $(FUZZ_DIR)/corpus $(FUZZ_DIR)/corpus-proxy
	$(FUZZ_BIN) -max_total_time=$(FUZZ_HALF) -timeout=10 -rss_limit_mb=2048 \
	    -print_final_stats=1 -dict=tests/fuzz/cfg.dict \
	    -artifact_prefix=$(FUZZ_DIR)/ $(FUZZ_DIR)/corpus tests/fuzz/corpus
	$(FUZZ_PROXY) -max_total_time=$(FUZZ_HALF) -timeout=10 -rss_limit_mb=2048 \
	    -print_final_stats=1 -dict=tests/fuzz/proxy.dict \
	    -artifact_prefix=$(FUZZ_DIR)/ $(FUZZ_DIR)/corpus-proxy tests/fuzz/corpus-proxy

-include $(FUZZ_OBJS:.o=.d) $(FUZZ_DIR)/tests/fuzz/fuzz_cfg.d $(FUZZ_DIR)/tests/fuzz/fuzz_proxy.d \
	$(FUZZ_DIR)/src/worker/proxy.d
