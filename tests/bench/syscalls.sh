#!/bin/bash
# System calls per echoed request, server side, counted with strace -c -f:
# a fixed pingpong at SC_CONNS connections against each server (echomaster
# with workers = "auto", the reference with one process per CPU). Start-up and
# shutdown are included but are a few hundred calls against SC_REQUESTS*2.
#
# Environment: BUILD (build), SC_REQUESTS (100000), SC_CONNS (100).
# Writes $BUILD/bench/syscalls.txt.
set -u
cd "$(dirname "$0")/../.." || exit 2
. tests/bench/lib.sh

N=${SC_REQUESTS:-100000}
CONNS=${SC_CONNS:-100}
OUT=$BENCH_OUT/syscalls.txt

command -v strace >/dev/null || { echo "syscalls: strace is not installed" >&2; exit 2; }
mkdir -p "$BENCH_OUT"
status=0
{
	bench_machine
	echo "fixed pingpong: $CONNS connections, 64-byte messages, $N requests," \
	    "server under strace -c -f; calls per request"
} >"$OUT"
for srv in em ref; do
	port=$("$EB" --free-port) || exit 1
	SERVER_PREFIX=(strace -f -c -o "$BENCH_OUT/strace-$srv.txt")
	SERVER_TRACER=1
	bench_start "$srv" "$port" || { status=1; continue; }
	"$EB" -w pingpong -c "$CONNS" -n "$N" -p "$port" >/dev/null || status=1
	bench_stop
	sleep 0.3
	{
		echo
		echo "== $srv (echomaster = em, reference = ref)"
		# strace -c rows: % time, seconds, usecs/call, calls, [errors,] syscall
		awk -v n="$N" '
		$1 ~ /^[0-9.]+$/ && $NF != "total" { c[$NF] = $4; total += $4 }
		END {
			for (s in c) if (c[s] / n >= 0.001)
				printf "  %-16s %8.3f per request\n", s, c[s] / n
			printf "  %-16s %8.3f per request\n", "ALL", total / n
		}' "$BENCH_OUT/strace-$srv.txt" | sort -k2 -rn
	} >>"$OUT"
done
cat "$OUT"
exit $status
