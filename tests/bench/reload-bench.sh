#!/bin/bash
# What a reload costs, handover against drain (make bench-reload).
#
# Rows:
#   idle-N     N idle connections (echobench -w idle) held through one HUP;
#              echobench checks that every one still echoes after the hold.
#   stream-N   N connections streaming (echobench -w stream) through one HUP;
#              every reply byte is checked.
#   Each with reload_handover = true and with false (the drain, with
#   shutdown_timeout = BENCH_RELOAD_DRAIN seconds and clients that keep
#   their connections: the old generation lasts shutdown_timeout, and then
#   cuts them). Measured: from the HUP to the exit of the last old worker
#   (polled in /proc every few ms), the master's own "handed over" figure,
#   and connections moved per second.
#   pingpong   echobench pingpong throughput (100 connections) with a HUP a
#              second (handover), against the same run without reloads.
#
# Targets: 10,000 connections moved in under 1 s; pingpong during the storm
# at least 0.90 of the calm run. Exit status 1 if a measurement failed (a
# handover row whose clients lost a connection or a byte, an echobench
# error in a calm run, a server that did not start).
#
# Environment: BUILD (build), BENCH_RELOAD_IDLE (10000),
# BENCH_RELOAD_STREAMS (1000), BENCH_RELOAD_DRAIN (2 s), BENCH_RELOAD_STORM
# (10 s a pingpong run), BENCH_RELOAD_PASSES (3 calm/storm pairs; the
# ratio is the median of the passes' storm/calm),
# BENCH_RELOAD_WORKERS (2).
# Writes $BUILD/bench/reload/results.txt. Every wait is bounded.
set -u
cd "$(dirname "$0")/../.." || exit 2
. tests/bench/lib.sh

IDLE=${BENCH_RELOAD_IDLE:-10000}
STREAMS=${BENCH_RELOAD_STREAMS:-1000}
DRAIN_S=${BENCH_RELOAD_DRAIN:-2}
STORM_S=${BENCH_RELOAD_STORM:-10}
PASSES=${BENCH_RELOAD_PASSES:-3}
WORKERS=${BENCH_RELOAD_WORKERS:-2}
OUT=$BENCH_OUT/reload
CONF=$OUT/echomaster.conf
LOG=$OUT/echomaster.log
ROWS=$OUT/rows.txt
RESULTS=$OUT/results.txt
MASTER=
PORT=

for f in "$EB" "$EM"; do
	[ -x "$f" ] || { echo "bench-reload: $f is missing (make bench-reload builds it)" >&2; exit 2; }
done
for t in awk sed timeout; do
	command -v "$t" >/dev/null || { echo "bench-reload: $t is missing" >&2; exit 2; }
done
mkdir -p "$OUT"
ulimit -n "$(ulimit -Hn)" 2>/dev/null
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt $((IDLE + 2048)) ]; then
	echo "bench-reload: RLIMIT_NOFILE $(ulimit -n) is too low for $IDLE connections" >&2
	exit 2
fi

now_ms() { echo $(($(date +%s%N) / 1000000)); }

# rb_conf HANDOVER: the config for the next start.
rb_conf() {
	cat >"$CONF" <<-EOF
	workers = $WORKERS;
	daemon = false;
	pid_file = "";
	control_socket = "$PWD/$OUT/control.sock";
	shutdown_timeout = $DRAIN_S;
	reload_handover = $1;
	max_draining_generations = 16;
	log = { level = "notice"; stderr = true; };
	limits = { max_connections = $((IDLE + 1000)); idle_timeout = 300; udp_rate = 0; };
	listen = (
	  { proto = "tcp"; address = "127.0.0.1"; port = $PORT; mode = "upper"; },
	  { proto = "udp"; address = "127.0.0.1"; port = $PORT; mode = "upper"; }
	);
	EOF
}

rb_workers() {
	cat /proc/"$MASTER"/task/*/children 2>/dev/null
}

# rb_gone PID: the process has exited (gone, or a zombie not yet reaped).
rb_gone() {
	local st

	st=$(sed 's/^.*) //' /proc/"$1"/stat 2>/dev/null | cut -c1) || return 0
	[ -z "$st" ] || [ "$st" = Z ]
}

rb_start() {
	local i

	PORT=$("$EB" --free-port) || return 1
	rb_conf "$1"
	rm -f "$OUT/control.sock"
	: >"$LOG"
	"$EM" -F -c "$CONF" 2>>"$LOG" &
	MASTER=$!
	if ! "$EB" --wait 30 -p "$PORT" >/dev/null; then
		echo "bench-reload: echomaster did not echo; see $LOG" >&2
		rb_stop
		return 1
	fi
	for ((i = 0; i < 300; i++)); do
		[ "$(rb_workers | wc -w)" -ge "$WORKERS" ] && return 0
		sleep 0.05
	done
	return 1
}

rb_stop() {
	[ -n "$MASTER" ] || return 0
	SERVER_PID=$MASTER SERVER_MAIN=$MASTER
	bench_stop
	MASTER=
}

# rb_active: connections open now, from status-json's totals.
rb_active() {
	"$EM" -c "$CONF" -s status --json 2>/dev/null |
	    sed -n 's/.*"totals":{"active":\([0-9]*\).*/\1/p'
}

# rb_wait_active N SECS
rb_wait_active() {
	local end=$(($(now_ms) + $2 * 1000))

	while [ "$(now_ms)" -lt "$end" ]; do
		[ "$(rb_active)" = "$1" ] && return 0
		sleep 0.1
	done
	echo "bench-reload: $(rb_active) connections open, want $1" >&2
	return 1
}

# rb_hup: HUP, then the ms until every worker there before it has exited
# (at most 30 s; -1 past that).
rb_hup() {
	local old t0 p left end

	old=$(rb_workers)
	t0=$(date +%s%N)
	kill -HUP "$MASTER"
	end=$((t0 + 30000000000))
	while [ "$(date +%s%N)" -lt "$end" ]; do
		left=0
		for p in $old; do
			rb_gone "$p" || { left=1; break; }
		done
		[ "$left" = 0 ] && { echo $((($(date +%s%N) - t0) / 1000000)); return; }
		sleep 0.005
	done
	echo -1
}

# The master's "generation G handed over N connections in T ms (...; K
# could not move ...)": "N T K", summed over the lines since offset $1.
rb_handed_over() {
	tail -c +"$(($1 + 1))" "$LOG" | sed -n \
	    's/.*handed over \([0-9]*\) connections in \([0-9]*\) ms.*; \([0-9]*\) could not move.*/\1 \2 \3/p' |
	    awk '{ n += $1; if ($2 > t) t = $2; k += $3 } END { printf "%d %d %d\n", n, t, k }'
}

result_field() {
	printf '%s\n' "$1" | sed -n "s/.* $2=\([^ ]*\).*/\1/p"
}

# rb_hold idle|stream N true|false: one row.
rb_hold() {
	local kind=$1 n=$2 ho=$3 ebpid out rc ms off moved tmax kept rate ok line
	local mode=handover

	[ "$ho" = false ] && mode=drain
	rb_start "$ho" || { echo "row=$kind-$n mode=$mode failed=start" >>"$ROWS"; return 1; }
	if [ "$kind" = idle ]; then
		timeout 120 "$EB" -w idle -c "$n" -s 2 -H 8 -p "$PORT" >"$OUT/eb.out" 2>"$OUT/eb.err" &
	else
		timeout 120 "$EB" -w stream -c "$n" -d 8 -W 0.5 -p "$PORT" >"$OUT/eb.out" 2>"$OUT/eb.err" &
	fi
	ebpid=$!
	if ! rb_wait_active "$n" 60; then
		kill "$ebpid" 2>/dev/null; wait "$ebpid" 2>/dev/null
		rb_stop
		echo "row=$kind-$n mode=$mode failed=connect" >>"$ROWS"
		return 1
	fi
	sleep 1
	off=$(stat -c %s "$LOG")
	ms=$(rb_hup)
	sleep 0.2
	read -r moved tmax kept < <(rb_handed_over "$off")
	wait "$ebpid"
	rc=$?
	rb_stop
	out=$(sed -n 's/^RESULT //p' "$OUT/eb.out")
	# Connections moved per second of the handover itself, as the master
	# timed it (from its order to the old workers to the last one's exit).
	rate=-
	[ "$moved" -gt 0 ] && rate=$((moved * 1000 / (tmax > 0 ? tmax : 1)))
	if [ "$kind" = idle ]; then
		line="echoed after the reload $(result_field " $out" ops)/$n"
	else
		line="$(result_field " $out" mbps) MB/s, mismatches $(result_field " $out" mismatches), errors $(result_field " $out" errors)"
	fi
	ok=1
	[ "$ho" = true ] && [ "$rc" -ne 0 ] && ok=0
	echo "row=$kind-$n mode=$mode exit_ms=$ms moved=$moved master_ms=$tmax kept=$kept moved_per_s=$rate client_rc=$rc ok=$ok clients=\"$line\"" >>"$ROWS"
	printf '  %-12s %-8s last old worker gone %6s ms after the HUP; moved %s (master: %s ms, %s kept); clients: %s (exit %d)\n' \
	    "$kind-$n" "$mode" "$ms" "$moved" "$tmax" "$kept" "$line" "$rc"
	[ "$ok" = 1 ]
}

# rb_pingpong calm|storm PASS: the pingpong rate, one run.
rb_pingpong() {
	local what=$1 pass=$2 out rc hups=0 ebpid i

	timeout $((STORM_S + 60)) "$EB" -w pingpong -c 100 -d "$STORM_S" -W 0.5 -p "$PORT" \
	    >"$OUT/pp.out" 2>"$OUT/pp.err" &
	ebpid=$!
	if [ "$what" = storm ]; then
		sleep 0.5
		for ((i = 0; i < STORM_S; i++)); do
			sleep 1
			kill -0 "$ebpid" 2>/dev/null || break
			kill -HUP "$MASTER" && hups=$((hups + 1))
		done
	fi
	wait "$ebpid"
	rc=$?
	out=$(sed -n 's/^RESULT //p' "$OUT/pp.out")
	echo "row=pingpong mode=$what pass=$pass hups=$hups rate=$(result_field " $out" rate) p99_us=$(result_field " $out" p99_us) errors=$(result_field " $out" errors) mismatches=$(result_field " $out" mismatches) client_rc=$rc" >>"$ROWS"
	printf '  pingpong     %-8s %s req/s, p99 %s us, %d HUPs (exit %d)\n' "$what" \
	    "$(result_field " $out" rate)" "$(result_field " $out" p99_us)" "$hups" "$rc"
	return "$rc"
}

table() {
	awk -v idle="$IDLE" -v drain="$DRAIN_S" '
	{
		delete f
		for (i = 1; i <= NF; i++) { split($i, kv, "="); f[kv[1]] = kv[2] }
		if (f["row"] == "pingpong") {
			if (f["client_rc"] != 0) badpp++
			rate[f["mode"], f["pass"]] = f["rate"]
			if (f["pass"] + 0 > passes) passes = f["pass"] + 0
			next
		}
		if ("failed" in f) { printf "%-12s %-8s FAILED (%s)\n", f["row"], f["mode"], f["failed"]; next }
		target = "-"
		if (f["mode"] == "handover" && f["row"] == "idle-" idle)
			target = sprintf("< 1000 ms %s", f["exit_ms"] >= 0 && f["exit_ms"] < 1000 ? "met" : "SHORT")
		if (f["mode"] == "drain")
			target = sprintf("~ shutdown_timeout %d s %s", drain,
			    (f["exit_ms"] >= drain * 1000 && f["exit_ms"] < drain * 1000 + 1000 ? "yes" : "NO"))
		cli = f["ok"] == 1 ? "ok" : "LOST"
		if (f["mode"] == "drain")
			cli = f["client_rc"] == 0 ? "kept" : "cut"
		printf("%-12s %-8s %10s %8s %10s %12s  %-4s %s\n", f["row"], f["mode"], f["exit_ms"],
		    f["moved"], f["master_ms"], f["moved_per_s"], cli, target)
	}
	BEGIN {
		printf "%-12s %-8s %10s %8s %10s %12s  %-4s %s\n", "workload", "reload",
		    "exit_ms", "moved", "master_ms", "moved/s", "cli", "target"
	}
	function median(a, n,    i, j, t) {
		for (i = 2; i <= n; i++)
			for (j = i; j > 1 && a[j - 1] > a[j]; j--) {
				t = a[j]; a[j] = a[j - 1]; a[j - 1] = t
			}
		return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
	}
	END {
		# Per pass: the storm run against the calm run of the same pass.
		for (p = 1; p <= passes; p++) {
			c = rate["calm", p]; st = rate["storm", p]
			if (c > 0 && st != "") {
				Q[++nq] = st / c; C[nq] = c; S[nq] = st
				list = list sprintf("%s%.3f", nq > 1 ? " " : "", st / c)
			}
		}
		if (nq > 0) {
			ratio = median(Q, nq)
			printf("\npingpong-100 req/s: calm %.0f, HUP every second %.0f (medians); storm/calm per pass: %s\n",
			    median(C, nq), median(S, nq), list)
			printf("ratio (median of the passes) %.3f  >= 0.90 %s%s\n", ratio,
			    (ratio >= 0.90 ? "met" : sprintf("SHORT by %.1f%%", (0.90 - ratio) * 100)),
			    (badpp ? " (a run FAILED, see rows.txt)" : ""))
		}
	}' "$ROWS"
}

: >"$ROWS"
start=$(date +%s)
status=0
echo "bench-reload: idle $IDLE and stream $STREAMS, handover and drain (shutdown_timeout $DRAIN_S s);" \
    "pingpong ${STORM_S}s calm and storm x $PASSES; $WORKERS workers"
for ho in true false; do
	rb_hold idle "$IDLE" "$ho" || status=1
	rb_hold stream "$STREAMS" "$ho" || status=1
done
if rb_start true; then
	for ((pass = 1; pass <= PASSES; pass++)); do
		order="calm storm"
		((pass % 2 == 0)) && order="storm calm"
		for what in $order; do
			rb_pingpong "$what" "$pass" || status=1
		done
	done
	rb_stop
else
	status=1
fi
{
	bench_machine
	echo "settings: workers=$WORKERS idle=$IDLE streams=$STREAMS shutdown_timeout=${DRAIN_S}s" \
	    "storm=${STORM_S}s passes=$PASSES"
	echo "exit_ms: HUP to the exit of the last old worker; master_ms: the master's"
	echo "\"handed over ... in T ms\"; moved/s: moved / master_ms; cli: every client"
	echo "connection intact (handover: ok or LOST), or cut at shutdown_timeout (drain)"
	echo
	table
	echo
	echo "make bench-reload took $(($(date +%s) - start)) s"
} >"$RESULTS"
echo
cat "$RESULTS"
exit $status
