# tests/lint.mk: static analysis of src/ (make lint), included by the
# top-level Makefile. Zero findings, or it fails. Tools come from
# `packaging/build-deps.sh lint` (cppcheck, clang-tidy).
#
# cppcheck: warning, portability and performance, not style (whose
# variableScope/constParameter advice is taste, and argues with STYLE.md).
# Without --library=posix: its mmap model refuses the fd -1 that
# MAP_ANONYMOUS requires (scoreboard.c, an error and a "leak"), and it
# calls getpwnam "non-reentrant" in processes that have one thread.
#
# clang-tidy: the static analyzer, bugprone, cert and misc, minus these,
# each for a reason:
#   analyzer security.insecureAPI.DeprecatedOrUnsafeBufferHandling: wants
#       the Annex K memcpy_s/snprintf_s, which glibc does not have
#   analyzer optin.performance.Padding: struct layout is chosen for reading
#   analyzer valist.Uninitialized: clang 14 reports every correct
#       va_start/vsnprintf/va_end (proctitle_set, log_emit) on x86-64
#   bugprone-easily-swappable-parameters: any two adjacent parameters of one
#       type; an API taste, not a bug
#   bugprone-implicit-widening-of-multiplication-result: each hit is a
#       constant like 64 * 1024; products of variables are already cast to
#       64 bits before multiplying
#   cert-err33-c: every unchecked close()/snprintf()/fprintf(); the daemon
#       ignores those results on purpose (the unused-return-value bugs it
#       could catch are bugprone-unused-return-value's, which stays)
#   misc-no-recursion: the config parser recurses over its fixed key tables
#       (three levels deep)
# Compiled with the daemon's own flags, so clang's warnings count too.

LINT_SRCS := $(wildcard src/common/*.c src/master/*.c src/worker/*.c)
LINT_TIDY_CHECKS := -*,clang-analyzer-*,$\
-clang-analyzer-security.insecureAPI.DeprecatedOrUnsafeBufferHandling,$\
-clang-analyzer-optin.performance.Padding,$\
-clang-analyzer-valist.Uninitialized,$\
bugprone-*,-bugprone-easily-swappable-parameters,$\
-bugprone-implicit-widening-of-multiplication-result,$\
cert-*,-cert-err33-c,misc-*,-misc-no-recursion
LINT_JOBS ?= $(shell nproc 2>/dev/null || echo 2)

.PHONY: lint lint-cppcheck lint-tidy

lint: deps
	@packaging/build-deps.sh lint
	$(Q)$(MAKE) --no-print-directory -k -j$(LINT_JOBS) lint-cppcheck lint-tidy

lint-cppcheck:
	@echo "lint: cppcheck $$(cppcheck --version | cut -d' ' -f2) over src/"
	$(Q)cppcheck --std=c11 --enable=warning,portability,performance \
	    --inline-suppr --quiet --error-exitcode=1 -D_GNU_SOURCE -D__linux__ \
	    -Isrc --suppress=missingIncludeSystem \
	    --template='{file}:{line}: {severity} ({id}): {message}' src/

# One clang-tidy per file, run in parallel by make; never up to date.
LINT_TIDY_RUNS := $(addprefix lint-tidy/,$(LINT_SRCS))
.PHONY: $(LINT_TIDY_RUNS)
lint-tidy: $(LINT_TIDY_RUNS)
$(LINT_TIDY_RUNS): lint-tidy/%:
	$(call quiet,TIDY,$*)out=$$(clang-tidy --quiet -checks='$(LINT_TIDY_CHECKS)' \
	    -warnings-as-errors='*' $* -- $(EM_CFLAGS) 2>&1); rc=$$?; \
	    printf '%s\n' "$$out" | grep -v ' generated\.$$' | grep -v '^$$' || true; \
	    exit $$rc
