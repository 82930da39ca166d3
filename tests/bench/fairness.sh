#!/bin/bash
# Fairness as issue 4 defines it: FAIR_WORKERS workers (4), FAIR_CONNS
# connections (1000) arriving evenly over FAIR_OVER seconds (3), each doing a
# 64-byte pingpong every FAIR_INTERVAL seconds on average (0.2: moderate
# load). Once all are open and held for a second, counts the connections each
# worker holds; prints max/min and Jain's index, for echomaster and the
# reference, FAIR_PASSES times each (3), alternating which goes first.
#
# Writes $BUILD/bench/fairness.txt. Exit status 1 if a reply was wrong or a
# connection was lost.
set -u
cd "$(dirname "$0")/../.." || exit 2
. tests/bench/lib.sh

WORKERS=${FAIR_WORKERS:-4}
CONNS=${FAIR_CONNS:-1000}
OVER=${FAIR_OVER:-3}
INTERVAL=${FAIR_INTERVAL:-0.2}
PASSES=${FAIR_PASSES:-3}
OUT=$BENCH_OUT/fairness.txt

for f in "$EB" "$RS" "$EM"; do
	[ -x "$f" ] || { echo "fairness: $f is missing (make bench-tools)" >&2; exit 2; }
done
mkdir -p "$BENCH_OUT"
status=0
{
	bench_machine
	echo "$WORKERS workers, $CONNS connections over ${OVER}s," \
	    "a pingpong every ${INTERVAL}s each"
} >"$OUT"
for ((pass = 1; pass <= PASSES; pass++)); do
	order=(em ref)
	((pass % 2 == 0)) && order=(ref em)
	for srv in "${order[@]}"; do
		port=$("$EB" --free-port) || exit 1
		bench_start "$srv" "$port" "$WORKERS" || { status=1; continue; }
		pids=$(cat /proc/"$SERVER_MAIN"/task/*/children | tr ' ' ',')
		out=$(python3 tests/bench/fairness.py "$port" "$pids" "$CONNS" \
		    "$OVER" "$INTERVAL") || status=1
		bench_stop
		printf 'pass %d %-4s %s\n' "$pass" "$srv" \
		    "$(printf '%s\n' "$out" | sed -n 's/^RESULT //p')" | tee -a "$OUT"
	done
done
exit $status
