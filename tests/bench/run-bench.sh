#!/bin/bash
# echomaster against the reference server, side by side, in one run.
#
# Each pass runs every workload once against each server (a fresh server per
# measurement), alternating from pass to pass which server goes first; churn
# goes last in a pass because the TIME_WAIT sockets it leaves slow whatever
# follows. The table gives, per figure, the median over the passes of each
# server's value and the median of the per-pass ratios echomaster/reference.
#
# Environment: BUILD (build), BENCH_PASSES (3), BENCH_DURATION (2 seconds per
# measurement), BENCH_THREADS (1 load generator thread), BENCH_PIN (auto:
# pin single-connection pingpong only; 1: pin every workload, load generator
# on CPU 0 and servers on the others; 0: none), BENCH_IDLE (10000 idle
# connections), BENCH_WORKERS (auto: workers = "auto" and one reference
# process per CPU; a number for both), BENCH_ONLY (rows to run, e.g.
# "pingpong-1 udp").
# Row churn-proxy is echomaster against itself: its "echomaster" column runs
# with proxy_protocol = "v2" behind a client that sends the header
# (echobench -X), its "reference" column the same churn without PROXY.
# BENCH_AGAINST=sandbox-off (make bench-sandbox): the "reference" column is
# the same echomaster build with sandbox = false, the "echomaster" column has
# it on (the default), every row held to a ratio of 0.98 (p99 latency 1.02):
# what seccomp and Landlock cost. Row churn-proxy is left out then.
# Writes $BUILD/bench/results.txt (the table) and raw.txt (every result).
# Exit status 1 if any measurement failed (a wrong reply byte, an error).
set -u
cd "$(dirname "$0")/../.." || exit 2
. tests/bench/lib.sh

PASSES=${BENCH_PASSES:-5}
DUR=${BENCH_DURATION:-2}
THREADS=${BENCH_THREADS:-1}
PIN=${BENCH_PIN:-auto}
IDLE=${BENCH_IDLE:-10000}
WORKERS=${BENCH_WORKERS:-auto}
AGAINST=${BENCH_AGAINST:-reference}
if [ "$AGAINST" = sandbox-off ]; then
	ROWS=(${BENCH_ONLY:-pingpong-1 pingpong-100 pingpong-1000 stream udp idle churn})
else
	ROWS=(${BENCH_ONLY:-pingpong-1 pingpong-100 pingpong-1000 stream udp idle churn churn-proxy})
fi
WARMUP=0.5
HZ=$(getconf CLK_TCK)
RAW=$BENCH_OUT/raw.txt
RESULTS=$BENCH_OUT/results.txt
CLIENT_PREFIX=()

# The servers may need more descriptors than the shell's default limit;
# raising the hard limit takes CAP_SYS_RESOURCE (echobench itself spreads
# idle connections over several processes when it cannot).
MAXCONN=$((IDLE > 10000 ? IDLE : 10000))
if [ "$(ulimit -Hn)" != unlimited ] && [ "$(ulimit -Hn)" -lt $((IDLE + 4096)) ]; then
	ulimit -Hn $((IDLE + 4096)) 2>/dev/null
fi
ulimit -n "$(ulimit -Hn)" 2>/dev/null

if [ "$PIN" != 0 ] && [ "$(nproc)" -lt 2 ]; then
	echo "bench: no CPU pinning with a single CPU" >&2
	PIN=0
fi

# Pinning puts the load generator on CPU 0 and the server on the others.
# Single-connection pingpong is pinned unless BENCH_PIN=0: unpinned, it is
# bimodal (4x faster when the scheduler happens to put client and worker on
# the same CPU), which says nothing about the server.
pin_for() {
	CLIENT_PREFIX=()
	SERVER_PREFIX=()
	if [ "$PIN" = 1 ] || { [ "$PIN" = auto ] && [ "$1" = pingpong-1 ]; }; then
		CLIENT_PREFIX=(taskset -c 0)
		SERVER_PREFIX=(taskset -c "1-$(($(nproc) - 1))")
	fi
}

for f in "$EB" "$RS" "$EM"; do
	[ -x "$f" ] || { echo "bench: $f is missing (make bench builds it)" >&2; exit 2; }
done

# cpu_cost ROW RESULTLINE TICKS: the server's CPU time per unit of work,
# cpu_per_unit= (microseconds per request, datagram or connection; for
# stream, milliseconds per GB echoed). The CPU time spans the warm-up too, so
# the work is scaled by (secs + warm-up) / secs. Much less sensitive than
# the rates to other load on the machine: it asks what a request costs, not
# how many the server got the CPU for.
cpu_cost() {
	printf '%s\n' "$2" | awk -v row="$1" -v ticks="$3" -v hz="$HZ" -v w="$WARMUP" '
	{ for (i = 1; i <= NF; i++) { split($i, kv, "="); f[kv[1]] = kv[2] } }
	END {
		if (row == "idle" || f["secs"] <= 0) exit
		scale = (f["secs"] + w) / f["secs"]
		if (row == "stream") { units = f["mbps"] * f["secs"] / 1000; per = 1000 }
		else { units = f["ops"]; per = 1000000 }
		if (units > 0)
			printf "cpu_per_unit=%.3f", ticks / hz * per / (units * scale)
	}'
}

row_args() {
	case $1 in
	pingpong-*)	echo "-w pingpong -c ${1#pingpong-}" ;;
	churn)		echo "-w churn -c 100 -s 16" ;;
	churn-proxy)	echo "-w churn -c 100 -s 16" ;;
	stream)		echo "-w stream -c 10" ;;
	udp)		echo "-w udp -c 100" ;;
	idle)		echo "-w idle -c $IDLE -s $((IDLE / 20000 + 2)) -H 1" ;;
	*)		return 1 ;;
	esac
}

# run_one ROW SERVER PASS: one measurement, appended to $RAW.
run_one() {
	local row=$1 srv=$2 pass=$3 port out rc args line cpu0 cpu1
	local name=echomaster kind=$2

	[ "$srv" = ref ] && name=reference
	if [ "$AGAINST" = sandbox-off ]; then
		[ "$srv" = ref ] && kind=em name=sandbox-off
		[ "$srv" = em ] && kind=em-sandbox name=sandbox-on
	fi
	args=$(row_args "$row") || { echo "bench: unknown row $row" >&2; return 1; }
	# churn-proxy: echomaster behind PROXY v2 against plain echomaster.
	if [ "$row" = churn-proxy ]; then
		if [ "$srv" = em ]; then
			kind=em-proxy name=echomaster+PROXY args="$args -X"
		else
			kind=em name=echomaster
		fi
	fi
	pin_for "$row"
	port=$("$EB" --free-port) || return 1
	if ! bench_start "$kind" "$port" "$WORKERS"; then
		echo "row=$row pass=$pass server=$srv rc=99" >>"$RAW"
		return 1
	fi
	[ "$row" = idle ] && args="$args -P $SERVER_MAIN"
	cpu0=$(bench_cpu_ticks)
	# shellcheck disable=SC2086
	out=$(${CLIENT_PREFIX[@]+"${CLIENT_PREFIX[@]}"} "$EB" $args -p "$port" \
	    -d "$DUR" -W "$WARMUP" -t "$THREADS" 2>"$BENCH_OUT/echobench.err")
	rc=$?
	cpu1=$(bench_cpu_ticks)
	bench_stop
	line=$(printf '%s\n' "$out" | sed -n 's/^RESULT //p')
	line="$line $(cpu_cost "$row" "$line" $((cpu1 - cpu0)))"
	echo "row=$row pass=$pass server=$srv rc=$rc $line" >>"$RAW"
	printf '  pass %d %-14s %-16s %s\n' "$pass" "$row" "$name" \
	    "$(printf '%s\n' "$out" | sed -n 2p | sed 's/^ *//')"
	if [ "$rc" -ne 0 ]; then
		echo "  FAILED (exit $rc):" >&2
		sed 's/^/    /' "$BENCH_OUT/echobench.err" >&2
		return 1
	fi
}

table() {
	awk '
	function median(a, n,    i, j, t) {
		for (i = 2; i <= n; i++)
			for (j = i; j > 1 && a[j - 1] > a[j]; j--) {
				t = a[j]; a[j] = a[j - 1]; a[j - 1] = t
			}
		if (n == 0) return ""
		return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
	}
	function num(v) {
		if (v == "") return "-"
		if (v >= 1000) return sprintf("%.0f", v)
		if (v >= 10) return sprintf("%.1f", v)
		return sprintf("%.3g", v)
	}
	function metrics(row,    m) {
		m = metrics_of(row)
		if (against == "sandbox-off") {
			gsub(/ hi 0\.9[05]/, " hi 0.98", m)
			gsub(/ lo 1\.10/, " lo 1.02", m)
		}
		return m
	}
	function metrics_of(row) {
		if (row ~ /^pingpong/)
			return "rate req/s hi 0.95;p99_us p99_us lo 1.10;cpu_per_unit cpu_us/req info 0"
		if (row == "churn") return "rate conn/s hi 0.90;cpu_per_unit cpu_us/conn info 0"
		if (row == "churn-proxy") return "rate conn/s hi 0.95;cpu_per_unit cpu_us/conn info 0"
		if (row == "stream") return "mbps MB/s hi 0.95;cpu_per_unit cpu_ms/GB info 0"
		if (row == "udp") return "rate dgram/s hi 0.95;loss loss_fraction info 0;cpu_per_unit cpu_us/dgram info 0"
		if (row == "idle") return "bytes_per_conn bytes/conn abs 1024;ops echoed_after_hold info 0"
		return ""
	}
	{
		delete f
		for (i = 1; i <= NF; i++) {
			split($i, kv, "=")
			f[kv[1]] = kv[2]
		}
		r = f["row"]
		if (f["pass"] > passes) passes = f["pass"]
		if (!(r in seen)) { seen[r] = 1; order[++nrows] = r }
		if (f["rc"] != 0) { failed[r]++; next }
		ok[r, f["server"], f["pass"]] = 1
		for (k in f) val[r, f["server"], f["pass"], k] = f[k]
	}
	END {
		printf "%-26s %12s %12s %8s  %s\n", "workload", "echomaster",
		    "reference", "ratio", "target"
		for (ri = 1; ri <= nrows; ri++) {
			r = order[ri]
			nm = split(metrics(r), ms, ";")
			for (mi = 1; mi <= nm; mi++) {
				split(ms[mi], m, " ")
				ne = nr = nq = 0
				delete E; delete R; delete Q
				for (p = 1; p <= passes; p++) {
					e = ((r, "em", p) in ok)
					q = ((r, "ref", p) in ok)
					if (e) E[++ne] = val[r, "em", p, m[1]]
					if (q) R[++nr] = val[r, "ref", p, m[1]]
					if (e && q && val[r, "ref", p, m[1]] > 0)
						Q[++nq] = val[r, "em", p, m[1]] / val[r, "ref", p, m[1]]
				}
				em = median(E, ne); rf = median(R, nr); ratio = median(Q, nq)
				target = "-"
				if (m[3] == "hi" && ratio != "")
					target = sprintf(">= %.2f %s", m[4], ratio >= m[4] ? "met" : sprintf("SHORT by %.1f%%", (m[4] - ratio) * 100))
				else if (m[3] == "lo" && ratio != "")
					target = sprintf("<= %.2f %s", m[4], ratio <= m[4] ? "met" : sprintf("SHORT by %.1f%%", (ratio - m[4]) * 100))
				else if (m[3] == "abs" && em != "")
					target = sprintf("<= %d %s", m[4], em <= m[4] ? "met" : "SHORT")
				printf "%-26s %12s %12s %8s  %s\n", r " " m[2], num(em),
				    num(rf), ratio == "" || m[3] == "abs" ? "-" : sprintf("%.3f", ratio), target
			}
			if (failed[r])
				printf "%-26s %d measurement(s) FAILED, see raw.txt\n", r, failed[r]
		}
	}' against="$AGAINST" "$RAW"
}

# run-bench.sh --table RAWFILE: only print the table of an earlier run.
if [ "${1:-}" = --table ] && [ -f "${2:-}" ]; then
	RAW=$2
	table
	exit
fi

mkdir -p "$BENCH_OUT"
: >"$RAW"
start=$(date +%s)
status=0
echo "bench: ${#ROWS[@]} workloads x 2 servers x $PASSES passes, ${DUR}s each" \
    "(threads=$THREADS pin=$PIN)"
for ((pass = 1; pass <= PASSES; pass++)); do
	order=(em ref)
	((pass % 2 == 0)) && order=(ref em)
	for row in "${ROWS[@]}"; do
		for srv in "${order[@]}"; do
			run_one "$row" "$srv" "$pass" || status=1
		done
	done
done
{
	bench_machine
	echo "settings: passes=$PASSES duration=${DUR}s threads=$THREADS" \
	    "pin=$PIN idle=$IDLE workers=$WORKERS"
	if [ "$AGAINST" = sandbox-off ]; then
		echo "ratio = median over the passes of sandbox on / sandbox off (one build)"
	else
		echo "ratio = median over the passes of echomaster/reference;" \
		    "churn-proxy: echomaster with PROXY v2 / echomaster without"
	fi
	echo
	table
	echo
	echo "make bench took $(($(date +%s) - start)) s"
} >"$RESULTS"
echo
cat "$RESULTS"
exit $status
