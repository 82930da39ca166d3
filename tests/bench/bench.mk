# The benchmark suite (included by the top Makefile).
#
#   make bench            build echobench, refserver and echomaster, then run
#                         the table: echomaster against the reference server
#   make bench-tools      only build echobench and refserver
#   make bench-callgrind  instructions per echoed request under callgrind
#   make bench-syscalls   system calls per echoed request under strace -c -f
#   make bench-callgrind-tls, bench-syscalls-tls
#                         the same for TLS, echomaster against tlsref: per
#                         request, full handshake, resumed handshake and
#                         16 KiB record (callgrind.sh tls, syscalls.sh tls)
#   make bench-fairness   connections per worker, 4 workers, 1000 arrivals
#   make bench-sandbox    the same table, sandbox on against sandbox off in
#                         one build: every ratio at least 0.98
#   make bench-reload     what a reload costs: HUP to the last old worker's
#                         exit with 10,000 idle and 1,000 streaming
#                         connections, handover against drain; pingpong
#                         under a HUP a second against a calm run
#                         (tests/bench/reload-bench.sh, BENCH_RELOAD_* knobs)
#   make bench-tls        TLS: echomaster's TLS listener against the reference
#                         TLS server (tlsref), nginx's stream module and
#                         stunnel in front of plain echomaster; full and
#                         resumed handshakes, pingpong, stream, idle memory
#                         (tests/bench/tls-bench.sh, BENCH_TLS_IDLE knob)
#
# Knobs (environment or make variables): BENCH_PASSES (5), BENCH_DURATION
# (seconds per measurement, 2), BENCH_PIN (auto = pin pingpong-1 only, 1 =
# load generator on CPU 0 and servers on the others for every row, 0 = no
# pinning), BENCH_THREADS (load generator threads, 1), BENCH_IDLE (10000),
# BENCH_ONLY="pingpong-1 udp" (a subset of the rows). See BENCHMARKS.md.

BENCH_DIR    := $(BUILD)/bench
BENCH_CFLAGS := -std=gnu11 -Wall -Wextra -Werror -Wshadow -Wformat=2 \
	-Wstrict-prototypes -Wmissing-prototypes -pthread
ECHOBENCH_SRCS := tests/bench/echobench.c tests/bench/eb_tcp.c \
	tests/bench/eb_udp.c tests/bench/eb_util.c
# tlsbench is echobench with the TLS workloads (EB_TLS, eb_tls.c, OpenSSL).
# Recursively expanded: pkg-config runs after bench-tls installed libssl-dev.
BENCH_TLS_LIBS = $(shell $(PKG_CONFIG) --libs libssl libcrypto 2>/dev/null || echo -lssl -lcrypto)

.PHONY: bench bench-sandbox bench-tools bench-callgrind bench-syscalls bench-fairness bench-reload
.PHONY: bench-tls bench-tls-tools bench-callgrind-tls bench-syscalls-tls

bench-tools: $(BENCH_DIR)/echobench $(BENCH_DIR)/refserver

$(BENCH_DIR)/echobench: $(ECHOBENCH_SRCS) tests/bench/eb.h
	@mkdir -p $(@D)
	$(call quiet,CCLD,$@)$(CC) $(CPPFLAGS) $(BENCH_CFLAGS) $(CFLAGS) \
		$(EM_LDFLAGS) $(LDFLAGS) -o $@ $(ECHOBENCH_SRCS)

$(BENCH_DIR)/refserver: tests/bench/refserver.c
	@mkdir -p $(@D)
	$(call quiet,CCLD,$@)$(CC) $(CPPFLAGS) $(BENCH_CFLAGS) $(CFLAGS) \
		$(EM_LDFLAGS) $(LDFLAGS) -o $@ $<

bench-tls-tools: $(BENCH_DIR)/echobench $(BENCH_DIR)/tlsbench $(BENCH_DIR)/tlsref

$(BENCH_DIR)/tlsbench: $(ECHOBENCH_SRCS) tests/bench/eb_tls.c tests/bench/eb.h
	@mkdir -p $(@D)
	$(call quiet,CCLD,$@)$(CC) $(CPPFLAGS) $(BENCH_CFLAGS) -DEB_TLS $(CFLAGS) \
		$(EM_LDFLAGS) $(LDFLAGS) -o $@ $(ECHOBENCH_SRCS) \
		tests/bench/eb_tls.c $(BENCH_TLS_LIBS)

$(BENCH_DIR)/tlsref: tests/bench/tlsref.c
	@mkdir -p $(@D)
	$(call quiet,CCLD,$@)$(CC) $(CPPFLAGS) $(BENCH_CFLAGS) $(CFLAGS) \
		$(EM_LDFLAGS) $(LDFLAGS) -o $@ $< $(BENCH_TLS_LIBS)

bench: deps bench-tools $(BUILD)/echomaster
	$(Q)BUILD=$(BUILD) tests/bench/run-bench.sh

bench-sandbox: deps bench-tools $(BUILD)/echomaster
	$(Q)BUILD=$(BUILD) BENCH_AGAINST=sandbox-off tests/bench/run-bench.sh

bench-callgrind: bench-tools $(BUILD)/echomaster
	$(Q)BUILD=$(BUILD) tests/bench/callgrind.sh

bench-syscalls: bench-tools $(BUILD)/echomaster
	$(Q)BUILD=$(BUILD) tests/bench/syscalls.sh

bench-callgrind-tls: bench-tls-tools $(BUILD)/echomaster
	$(Q)BUILD=$(BUILD) tests/bench/callgrind.sh tls

bench-syscalls-tls: bench-tls-tools $(BUILD)/echomaster
	$(Q)BUILD=$(BUILD) tests/bench/syscalls.sh tls

bench-fairness: bench-tools $(BUILD)/echomaster
	$(Q)BUILD=$(BUILD) tests/bench/fairness.sh

# deps: the compiler and libraries (packaging/build-deps.sh build); the
# script needs nothing else but coreutils, sed and awk.
bench-reload: deps
	$(Q)$(MAKE) --no-print-directory $(if $(Q),-s) bench-tools $(BUILD)/echomaster
	$(Q)BUILD=$(BUILD) tests/bench/reload-bench.sh

# deps, then the peers and OpenSSL (packaging/build-deps.sh bench-tls), and
# only then the tools: the link lines ask pkg-config for libssl.
bench-tls: deps
	@packaging/build-deps.sh bench-tls
	$(Q)$(MAKE) --no-print-directory $(if $(Q),-s) bench-tls-tools $(BUILD)/echomaster
	$(Q)BUILD=$(BUILD) tests/bench/tls-bench.sh
