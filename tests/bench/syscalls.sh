#!/bin/bash
# System calls per unit of work, server side, counted with strace -c -f.
#
#   syscalls.sh       plain TCP: per echoed request, a fixed pingpong of
#                     SC_REQUESTS requests at SC_CONNS connections; start-up
#                     and shutdown are included but are a few hundred calls
#                     against SC_REQUESTS*2
#   syscalls.sh tls   TLS: per request on open connections (tls-pingpong),
#                     per full handshake (tls-handshake), per resumed one
#                     (tls-resume) and per 16 KiB record streamed
#                     (tls-stream); each the difference of a run of
#                     SC_TLS_SMALL and one of SC_TLS_LARGE units, so that
#                     start-up, the connections' own handshakes (pingpong)
#                     and shutdown cancel out
#
# echomaster runs with workers = "auto", the reference (refserver, or
# tlsref for tls) with one process per CPU.
#
# Environment: BUILD (build), SC_REQUESTS (100000), SC_CONNS (100);
# SC_TLS_SMALL (2000), SC_TLS_LARGE (20000) requests and SC_HS_SMALL (200),
# SC_HS_LARGE (1000) handshakes over SC_HS_CONNS (100) loops, SC_ST_SMALL
# (2000), SC_ST_LARGE (10000) records over SC_ST_CONNS (10) connections.
# Writes $BUILD/bench/syscalls.txt (syscalls-tls.txt).
set -u
cd "$(dirname "$0")/../.." || exit 2
. tests/bench/lib.sh

MODE=${1:-plain}
N=${SC_REQUESTS:-100000}
CONNS=${SC_CONNS:-100}
TLS_SMALL=${SC_TLS_SMALL:-2000}
TLS_LARGE=${SC_TLS_LARGE:-20000}
HS_SMALL=${SC_HS_SMALL:-200}
HS_LARGE=${SC_HS_LARGE:-1000}
HS_CONNS=${SC_HS_CONNS:-100}
ST_SMALL=${SC_ST_SMALL:-2000}
ST_LARGE=${SC_ST_LARGE:-10000}
ST_CONNS=${SC_ST_CONNS:-10}
OUT=$BENCH_OUT/syscalls.txt
CLIENT=$EB
SERVERS=(em ref)

case $MODE in
plain) ;;
tls)
	OUT=$BENCH_OUT/syscalls-tls.txt
	CLIENT=$TB
	SERVERS=(em-tls ref-tls)
	;;
*)	echo "usage: syscalls.sh [plain|tls]" >&2; exit 2 ;;
esac
command -v strace >/dev/null || { echo "syscalls: strace is not installed" >&2; exit 2; }
mkdir -p "$BENCH_OUT"

# sc_counts SERVER COUNT WORKLOAD-ARGS...: "syscall calls" lines of the
# server (all its processes) for exactly COUNT units; nothing for COUNT 0.
sc_counts() {
	local srv=$1 n=$2 port trace=$BENCH_OUT/strace-$1-$2.txt

	shift 2
	[ "$n" -gt 0 ] || return 0
	port=$("$EB" --free-port) || return 1
	SERVER_PREFIX=(strace -f -c -o "$trace")
	SERVER_TRACER=1
	bench_start "$srv" "$port" || return 1
	if ! "$CLIENT" "$@" -n "$n" -p "$port" >/dev/null; then
		echo "syscalls: $* -n $n against $srv failed" >&2
		bench_stop
		return 1
	fi
	bench_stop
	sleep 0.3
	# strace -c rows: % time, seconds, usecs/call, calls, [errors,] syscall
	awk '$1 ~ /^[0-9.]+$/ && $NF != "total" { print $NF, $4 }' "$trace"
}

# sc_figure SERVER TITLE UNIT SMALL LARGE WORKLOAD-ARGS...: calls per UNIT, by call.
sc_figure() {
	local srv=$1 title=$2 unit=$3 small=$4 large=$5 a b

	shift 5
	a=$(sc_counts "$srv" "$small" "$@") || return 1
	b=$(sc_counts "$srv" "$large" "$@") || return 1
	echo
	echo "== $srv: $title (echomaster = em, reference = ref)"
	{ printf '%s\n' "$a" | sed 's/^/a /'; printf '%s\n' "$b" | sed 's/^/b /'; } |
	    awk -v n=$((large - small)) -v unit="$unit" '
	NF == 3 { c[$2] += ($1 == "b" ? $3 : -$3) }
	END {
		for (s in c) {
			total += c[s]
			if (c[s] / n >= 0.001 || c[s] / n <= -0.001)
				printf "  %-16s %8.3f per %s\n", s, c[s] / n, unit
		}
		printf "  %-16s %8.3f per %s\n", "ALL", total / n, unit
	}' | sort -k2 -rn
}

status=0
{
	bench_machine
	if [ "$MODE" = plain ]; then
		echo "fixed pingpong: $CONNS connections, 64-byte messages, $N requests," \
		    "server under strace -c -f; calls per request"
	else
		echo "TLS 1.3, TLS_AES_128_GCM_SHA256, X25519, ECDSA P-256; server under" \
		    "strace -c -f; calls per unit: the difference of two runs"
	fi
} >"$OUT"
[ "$MODE" = tls ] && { bench_tls_cert "$BENCH_OUT" || { echo "syscalls: openssl could not make the certificate" >&2; exit 2; }; }
for srv in "${SERVERS[@]}"; do
	if [ "$MODE" = plain ]; then
		sc_figure "$srv" "per request, $CONNS connections" request 0 "$N" \
		    -w pingpong -c "$CONNS" >>"$OUT" || status=1
		continue
	fi
	sc_figure "$srv" "per request (tls-pingpong, $CONNS connections, $TLS_SMALL and $TLS_LARGE)" \
	    request "$TLS_SMALL" "$TLS_LARGE" -w tls-pingpong -c "$CONNS" >>"$OUT" || status=1
	sc_figure "$srv" "per full handshake (tls-handshake, $HS_CONNS loops, $HS_SMALL and $HS_LARGE)" \
	    handshake "$HS_SMALL" "$HS_LARGE" -w tls-handshake -c "$HS_CONNS" -s 16 >>"$OUT" || status=1
	sc_figure "$srv" "per resumed handshake (tls-resume, $HS_CONNS loops, $HS_SMALL and $HS_LARGE)" \
	    handshake "$HS_SMALL" "$HS_LARGE" -w tls-resume -c "$HS_CONNS" -s 16 >>"$OUT" || status=1
	sc_figure "$srv" "per 16 KiB record (tls-stream, $ST_CONNS connections, $ST_SMALL and $ST_LARGE)" \
	    record "$ST_SMALL" "$ST_LARGE" -w tls-stream -c "$ST_CONNS" >>"$OUT" || status=1
done
cat "$OUT"
exit $status
