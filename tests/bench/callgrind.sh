#!/bin/bash
# Server-side instructions per unit of work, counted by callgrind: a noise-
# free figure next to the timings of run-bench.sh and tls-bench.sh.
#
#   callgrind.sh       plain TCP: instructions per echoed request
#   callgrind.sh tls   TLS: per request on an open connection (tls-pingpong),
#                      per full handshake (tls-handshake), per resumed
#                      handshake (tls-resume) and per 16 KiB record streamed
#                      (tls-stream)
#
# Each server (echomaster with workers = 1, the reference with one process:
# refserver, or tlsref for tls) runs under `valgrind --tool=callgrind` twice
# per figure, serving a fixed SMALL and then LARGE amount of work; the
# figure is (Ir(LARGE) - Ir(SMALL)) / (LARGE - SMALL), summed over all the
# server's processes, so start-up, the readiness probes, the connections'
# own handshakes (pingpong) and shutdown cancel out.
#
# What a server does per request depends on timing: a server slowed down
# by valgrind finds the next request already there far more often than a
# real one (no EAGAIN read, many requests an event), and the count then
# moves by 5% between runs. So the TLS pingpong is one connection whose
# client waits CG_PAUSE before each request: every request is then one
# wake-up, and the count the same to a few instructions from run to run.
#
# Environment: BUILD (build), CG_SMALL (5000), CG_LARGE (25000) requests,
# CG_CONNS (10 connections), CG_MSG (64-byte messages); for tls instead
# CG_TLS_SMALL (500), CG_TLS_LARGE (3000) requests with CG_PAUSE (0.002 s),
# CG_HS_SMALL (100), CG_HS_LARGE (500) handshakes over CG_HS_CONNS (10)
# loops, CG_ST_SMALL (200), CG_ST_LARGE (1000) records over one connection.
# CG_KEEP=1 keeps the callgrind files in $BUILD/bench/callgrind/ for
# callgrind_annotate. Writes $BUILD/bench/callgrind.txt (callgrind-tls.txt).
set -u
cd "$(dirname "$0")/../.." || exit 2
. tests/bench/lib.sh

MODE=${1:-plain}
SMALL=${CG_SMALL:-5000}
LARGE=${CG_LARGE:-25000}
CONNS=${CG_CONNS:-10}
MSG=${CG_MSG:-64}
HS_SMALL=${CG_HS_SMALL:-100}
HS_LARGE=${CG_HS_LARGE:-500}
HS_CONNS=${CG_HS_CONNS:-10}
TLS_SMALL=${CG_TLS_SMALL:-500}
TLS_LARGE=${CG_TLS_LARGE:-3000}
PAUSE=${CG_PAUSE:-0.002}
ST_SMALL=${CG_ST_SMALL:-200}
ST_LARGE=${CG_ST_LARGE:-1000}
DIR=$BENCH_OUT/callgrind
OUT=$BENCH_OUT/callgrind.txt
CLIENT=$EB
SERVERS=(em ref)

case $MODE in
plain) ;;
tls)
	OUT=$BENCH_OUT/callgrind-tls.txt
	CLIENT=$TB
	SERVERS=(em-tls ref-tls)
	;;
*)	echo "usage: callgrind.sh [plain|tls]" >&2; exit 2 ;;
esac
command -v valgrind >/dev/null || { echo "callgrind: valgrind is not installed" >&2; exit 2; }
for f in "$CLIENT" "$EM" $([ "$MODE" = tls ] && echo "$TR" || echo "$RS"); do
	[ -x "$f" ] || { echo "callgrind: $f is missing (make bench-callgrind builds it)" >&2; exit 2; }
done

# cg_run SERVER TAG COUNT WORKLOAD-ARGS...: prints the server's total Ir (all
# its processes) for a run of exactly COUNT units of the workload.
cg_run() {
	local srv=$1 tag=$1-$2-$3 n=$3 port f total=0 ir

	shift 3
	port=$("$EB" --free-port) || return 1
	rm -f "$DIR/$tag".*
	SERVER_PREFIX=(valgrind --tool=callgrind -q
	    "--callgrind-out-file=$DIR/$tag.%p")
	bench_start "$srv" "$port" 1 || return 1
	if ! "$CLIENT" "$@" -n "$n" -p "$port" >"$DIR/$tag.echobench" 2>&1; then
		echo "callgrind: $* -n $n against $srv failed:" >&2
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

# cg_figure SERVER NAME SMALL LARGE WORKLOAD-ARGS...: per[SERVER,NAME].
declare -A per
cg_figure() {
	local srv=$1 name=$2 small=$3 large=$4 a b

	shift 4
	a=$(cg_run "$srv" "$name" "$small" "$@") || return 1
	b=$(cg_run "$srv" "$name" "$large" "$@") || return 1
	per[$srv,$name]=$(awk -v a="$a" -v b="$b" -v n=$((large - small)) \
	    'BEGIN { printf "%.0f", (b - a) / n }')
	echo "callgrind: $srv $name: $a Ir for $small, $b Ir for $large" >&2
}

# row LABEL NAME TARGET: one line of the table, echomaster against the reference.
row() {
	local em=${per[${SERVERS[0]},$2]:-} ref=${per[${SERVERS[1]},$2]:-} r v

	if [ -z "$em" ] || [ -z "$ref" ]; then
		printf '%-36s %s\n' "$1" "a measurement failed"
		return
	fi
	r=$(awk -v a="$em" -v b="$ref" 'BEGIN { printf "%.3f", a / b }')
	v=-
	[ "$3" != - ] && v=$(awk -v r="$r" -v t="$3" 'BEGIN {
	    printf "<= %.2f %s", t, (r <= t) ? "met" : sprintf("SHORT by %.1f%%", (r - t) * 100) }')
	printf '%-36s %12s %12s %8s  %s\n' "$1" "$em" "$ref" "$r" "$v"
}

mkdir -p "$DIR"
[ "$MODE" = tls ] && { bench_tls_cert "$DIR" || { echo "callgrind: openssl could not make the certificate" >&2; exit 2; }; }
status=0
for srv in "${SERVERS[@]}"; do
	if [ "$MODE" = plain ]; then
		cg_figure "$srv" req "$SMALL" "$LARGE" -w pingpong -c "$CONNS" -m "$MSG" || status=1
		continue
	fi
	cg_figure "$srv" req "$TLS_SMALL" "$TLS_LARGE" -w tls-pingpong -c 1 -i "$PAUSE" -m "$MSG" || status=1
	cg_figure "$srv" hs "$HS_SMALL" "$HS_LARGE" -w tls-handshake -c "$HS_CONNS" -m "$MSG" || status=1
	cg_figure "$srv" resume "$HS_SMALL" "$HS_LARGE" -w tls-resume -c "$HS_CONNS" -m "$MSG" || status=1
	cg_figure "$srv" record "$ST_SMALL" "$ST_LARGE" -w tls-stream -c 1 || status=1
done
[ "${CG_KEEP:-0}" = 1 ] || rm -f "$DIR"/*.[0-9]*
{
	bench_machine
	if [ "$MODE" = plain ]; then
		echo "fixed pingpong: $CONNS connections, $MSG-byte messages," \
		    "$SMALL and $LARGE requests; echomaster workers = 1, reference -n 1"
	else
		echo "TLS 1.3, TLS_AES_128_GCM_SHA256, X25519, ECDSA P-256; echomaster workers = 1," \
		    "tlsref -n 1"
		echo "tls-pingpong: 1 connection, $MSG-byte messages, $TLS_SMALL and $TLS_LARGE" \
		    "requests, ${PAUSE} s before each; tls-handshake, tls-resume: $HS_CONNS loops,"
		echo "$HS_SMALL and $HS_LARGE handshakes; tls-stream: 1 connection, $ST_SMALL and" \
		    "$ST_LARGE records of 16 KiB"
	fi
	echo
	printf '%-36s %12s %12s %8s  %s\n' "figure" "echomaster" "reference" "ratio" "target"
	if [ "$MODE" = plain ]; then
		row "server instructions per request" req 1.2
	else
		# 1.05: about 1/0.95, the rates' target
		row "instructions per TLS request" req 1.05
		row "instructions per full handshake" hs 1.05
		row "instructions per resumed handshake" resume 1.05
		row "instructions per 16 KiB record" record 1.05
	fi
} >"$OUT"
cat "$OUT"
exit $status
