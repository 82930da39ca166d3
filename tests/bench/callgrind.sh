#!/bin/bash
# Server-side instructions per echoed request, counted by callgrind: a noise-
# free figure next to the timings of run-bench.sh.
#
# Each server (echomaster with workers = 1, the reference with one process)
# runs under `valgrind --tool=callgrind` twice, serving a fixed pingpong of
# SMALL and then LARGE requests; instructions per request are
# (Ir(LARGE) - Ir(SMALL)) / (LARGE - SMALL), summed over all the server's
# processes, so start-up, the readiness probes and shutdown cancel out.
#
# Environment: BUILD (build), CG_SMALL (5000), CG_LARGE (25000), CG_CONNS
# (10 connections), CG_MSG (64-byte messages), CG_KEEP=1 keeps the callgrind
# files in $BUILD/bench/callgrind/ for callgrind_annotate.
# Writes $BUILD/bench/callgrind.txt.
set -u
cd "$(dirname "$0")/../.." || exit 2
. tests/bench/lib.sh

SMALL=${CG_SMALL:-5000}
LARGE=${CG_LARGE:-25000}
CONNS=${CG_CONNS:-10}
MSG=${CG_MSG:-64}
DIR=$BENCH_OUT/callgrind
OUT=$BENCH_OUT/callgrind.txt

command -v valgrind >/dev/null || { echo "callgrind: valgrind is not installed" >&2; exit 2; }
for f in "$EB" "$RS" "$EM"; do
	[ -x "$f" ] || { echo "callgrind: $f is missing (make bench-callgrind builds it)" >&2; exit 2; }
done

# cg_run SERVER REQUESTS: prints the server's total Ir (all its processes).
cg_run() {
	local srv=$1 n=$2 port tag=$1-$2 f total=0 ir

	port=$("$EB" --free-port) || return 1
	rm -f "$DIR/$tag".*
	SERVER_PREFIX=(valgrind --tool=callgrind -q
	    "--callgrind-out-file=$DIR/$tag.%p")
	bench_start "$srv" "$port" 1 || return 1
	if ! "$EB" -w pingpong -c "$CONNS" -m "$MSG" -n "$n" -p "$port" \
	    >"$DIR/$tag.echobench" 2>&1; then
		echo "callgrind: pingpong against $srv failed:" >&2
		cat "$DIR/$tag.echobench" >&2
		bench_stop
		return 1
	fi
	bench_stop
	sleep 0.5	# the worker writes its profile after the master returns
	for f in "$DIR/$tag".[0-9]*; do
		ir=$(sed -n 's/^\(summary\|totals\): *\([0-9]*\).*/\2/p' "$f" | head -1)
		[ -n "$ir" ] || { echo "callgrind: no total in $f" >&2; return 1; }
		total=$((total + ir))
	done
	echo "$total"
}

mkdir -p "$DIR"
declare -A per
status=0
for srv in em ref; do
	small=$(cg_run "$srv" "$SMALL") || { status=1; continue; }
	large=$(cg_run "$srv" "$LARGE") || { status=1; continue; }
	per[$srv]=$(awk -v a="$small" -v b="$large" -v n=$((LARGE - SMALL)) \
	    'BEGIN { printf "%.0f", (b - a) / n }')
	echo "callgrind: $srv: $small Ir for $SMALL requests, $large Ir for $LARGE" >&2
done
[ "${CG_KEEP:-0}" = 1 ] || rm -f "$DIR"/*.[0-9]*
{
	bench_machine
	echo "fixed pingpong: $CONNS connections, $MSG-byte messages," \
	    "$SMALL and $LARGE requests; echomaster workers = 1, reference -n 1"
	echo
	printf '%-36s %12s %12s %8s  %s\n' "figure" "echomaster" "reference" "ratio" "target"
	if [ -n "${per[em]:-}" ] && [ -n "${per[ref]:-}" ]; then
		r=$(awk -v a="${per[em]}" -v b="${per[ref]}" 'BEGIN { printf "%.3f", a / b }')
		v=$(awk -v r="$r" 'BEGIN { print (r <= 1.2) ? "met" : sprintf("SHORT by %.1f%%", (r - 1.2) * 100) }')
		printf '%-36s %12s %12s %8s  %s\n' "server instructions per request" \
		    "${per[em]}" "${per[ref]}" "$r" "<= 1.20 $v"
	else
		echo "a measurement failed"
	fi
} >"$OUT"
cat "$OUT"
exit $status
