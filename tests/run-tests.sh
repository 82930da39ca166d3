#!/bin/bash
# Runs each cmocka test program given, shows its output, and closes with one
# line that adds up the cmocka results of all of them: "N passed, N failed".
# A program that dies without a cmocka summary counts as one failure.
set -u
passed=0 failed=0 bad_programs=()
for prog in "$@"; do
	name=${prog#build/}
	echo "== $name"
	out=$("$prog" 2>&1)
	rc=$?
	printf '%s\n' "$out"
	p=$(printf '%s\n' "$out" | sed -n 's/^\[  PASSED  \] \([0-9]*\) test(s)\./\1/p' | awk '{s+=$1} END {print s+0}')
	f=$(printf '%s\n' "$out" | sed -n 's/^\[  FAILED  \] \([0-9]*\) test(s), listed below:/\1/p' | awk '{s+=$1} END {print s+0}')
	if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
		f=1
		echo "!! $name exited with status $rc without a cmocka failure summary"
	fi
	passed=$((passed + p)) failed=$((failed + f))
	[ "$rc" -ne 0 ] && bad_programs+=("$name")
done
echo
[ ${#bad_programs[@]} -gt 0 ] && echo "failing programs: ${bad_programs[*]}"
echo "check: $passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ ${#bad_programs[@]} -eq 0 ]
