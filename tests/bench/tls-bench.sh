#!/bin/bash
# TLS, side by side in one run (make bench-tls): echomaster's own TLS
# listener, the reference TLS server, and the set-ups a user would build
# instead of it.
#
# Columns:
#   echomaster   a TCP listener with tls = { certificate; key; }
#                (tests/bench/echomaster-tls-bench.conf.in), workers "auto"
#   reference    tests/bench/tlsref.c, one process per CPU: the limit
#   nginx+em     nginx's stream module terminating TLS (Debian's nginx and
#                libnginx-mod-stream), proxy_pass to plain echomaster
#   stunnel+em   stunnel4 terminating TLS in front of plain echomaster
# All serve one ECDSA P-256 certificate made for the run with openssl(1);
# tlsbench asks each for TLS 1.3, TLS_AES_128_GCM_SHA256 and (OpenSSL's first
# key share) X25519, so all do the same cryptography; session tickets are on
# everywhere, each server with its own key shared by its processes. The
# proxies' echomaster and nginx run "auto" workers, tlsref one process per
# CPU, stunnel its thread per connection. For the two proxies, memory and CPU
# are the proxy's and its echomaster's added up: what the set-up costs.
#
# As run-bench.sh: each pass runs every workload once against each server
# (a fresh server per measurement), rotating from pass to pass which server
# goes first; the table gives per figure the median over the passes of each
# column and the medians of the per-pass ratios echomaster/reference (target
# 0.95; p99 1.10; CPU per unit 1.05) and echomaster/nginx (target: ahead,
# > 1; memory, p99, CPU: < 1), with the lowest and highest per-pass ratio
# echomaster/reference beside the median. An idle TLS connection may cost
# echomaster at most 16384 bytes.
#
# On a shared machine the rates are noise-bound: the load generator and the
# server share the CPUs with whatever else runs. So each measurement also
# reads the machine's CPU time (/proc/stat, steal included) and subtracts
# what the set-up and the load generator used: the rest is other work. A
# measurement during which other work took more than BENCH_FOREIGN_MAX CPUs
# is taken again, up to BENCH_RETRIES times, and the least disturbed one
# kept (the table counts those still disturbed). The CPU time per unit of
# work (the set-up's, per handshake, request or GB) moves much less with the
# load than the rates do: its em/ref target 1.05 is the rates' 0.95 in cost.
#
# Environment: BUILD (build), BENCH_PASSES (5), BENCH_DURATION (2 seconds
# per measurement), BENCH_THREADS (2 load generator threads), BENCH_PIN (0;
# 1: load generator on CPU 0, servers on the others), BENCH_TLS_IDLE (2000
# idle TLS connections), BENCH_WORKERS (auto, or a number for all),
# BENCH_ONLY (rows, e.g. "tls-handshake tls-idle"), BENCH_TLS_SERVERS
# ("em ref nginx stunnel"), BENCH_FOREIGN_MAX (0.15 CPUs of other work),
# BENCH_RETRIES (2).
# When echomaster refuses its TLS config (-t: a build without TLS
# listeners), its column is left out and the table says so.
# Writes $BUILD/bench/tls/results.txt (the table) and raw.txt (every
# result). Exit status 1 if any measurement failed (a wrong reply byte, a
# handshake that did not resume, an error).
set -u
cd "$(dirname "$0")/../.." || exit 2
. tests/bench/lib.sh

mkdir -p "$BENCH_OUT/tls" || exit 2
TLS_DIR=$(cd "$BENCH_OUT/tls" && pwd)	# absolute: nginx and echomaster chdir
PASSES=${BENCH_PASSES:-5}
DUR=${BENCH_DURATION:-2}
# Two: one thread is busy all the time with its own half of the handshakes
# (client_CPUs 0.98 in tls-handshake), and the rows would compare tlsbench.
THREADS=${BENCH_THREADS:-2}
PIN=${BENCH_PIN:-0}
IDLE=${BENCH_TLS_IDLE:-2000}
WORKERS=${BENCH_WORKERS:-auto}
ROWS=(${BENCH_ONLY:-tls-handshake tls-resume tls-pingpong-100 tls-stream tls-idle})
SERVERS=(${BENCH_TLS_SERVERS:-em ref nginx stunnel})
FOREIGN_MAX=${BENCH_FOREIGN_MAX:-0.15}
RETRIES=${BENCH_RETRIES:-2}
WARMUP=0.5
HZ=$(getconf CLK_TCK)
RAW=$TLS_DIR/raw.txt
RESULTS=$TLS_DIR/results.txt
NGINX_MODULE=/usr/lib/nginx/modules/ngx_stream_module.so
CLIENT_PREFIX=()
FRONT_PID= FRONT_MAIN= BACK_PID= BACK_MAIN= FRONT_THREADS=
EM_NOTE=
STOP_CRASHES=0

MAXCONN=$((IDLE > 10000 ? IDLE : 10000))
ulimit -n "$(ulimit -Hn)" 2>/dev/null
NOFILE=$(ulimit -n)

if [ "$PIN" = 1 ] && [ "$(nproc)" -lt 2 ]; then
	echo "bench-tls: no CPU pinning with a single CPU" >&2
	PIN=0
fi
CLIENT_PREFIX=()
SERVER_PREFIX=()
if [ "$PIN" = 1 ]; then
	CLIENT_PREFIX=(taskset -c 0)
	SERVER_PREFIX=(taskset -c "1-$(($(nproc) - 1))")
fi
NWORK=$WORKERS
[ "$WORKERS" = auto ] && NWORK=$(nproc)

tb_check_tools() {
	local f

	for f in "$EB" "$TB" "$TR" "$EM"; do
		[ -x "$f" ] || { echo "bench-tls: $f is missing (make bench-tls builds it)" >&2; exit 2; }
	done
	for f in nginx stunnel4 openssl; do
		command -v "$f" >/dev/null ||
		    { echo "bench-tls: $f is missing (packaging/build-deps.sh bench-tls)" >&2; exit 2; }
	done
	[ -f "$NGINX_MODULE" ] ||
	    { echo "bench-tls: $NGINX_MODULE is missing (libnginx-mod-stream)" >&2; exit 2; }
}

# nginx in the foreground, stream only: TLS in, plain TCP to echomaster.
tb_nginx_conf() {	# PORT BACKPORT
	cat >"$TLS_DIR/nginx.conf" <<-EOF
	daemon off;
	master_process on;
	worker_processes $WORKERS;
	worker_rlimit_nofile $NOFILE;
	pid $TLS_DIR/nginx.pid;
	error_log $TLS_DIR/nginx-error.log warn;
	load_module $NGINX_MODULE;
	events { worker_connections $((2 * IDLE + 1024)); }
	stream {
	    server {
	        listen 127.0.0.1:$1 ssl;
	        ssl_certificate $TLS_CERT;
	        ssl_certificate_key $TLS_KEY;
	        ssl_protocols TLSv1.2 TLSv1.3;
	        ssl_session_tickets on;
	        proxy_pass 127.0.0.1:$2;
	    }
	}
	EOF
}

tb_stunnel_conf() {	# PORT BACKPORT
	cat >"$TLS_DIR/stunnel.conf" <<-EOF
	foreground = yes
	pid =
	debug = err
	[echo]
	accept = 127.0.0.1:$1
	connect = 127.0.0.1:$2
	cert = $TLS_CERT
	key = $TLS_KEY
	sslVersionMin = TLSv1.2
	socket = l:TCP_NODELAY=1
	socket = r:TCP_NODELAY=1
	EOF
}

# tb_start em|ref|nginx|stunnel PORT: FRONT_* is what serves TLS on PORT,
# BACK_* the plain echomaster behind a proxy.
tb_start() {
	local srv=$1 port=$2 log=$TLS_DIR/$1.log want=$NWORK back i

	FRONT_PID= FRONT_MAIN= BACK_PID= BACK_MAIN=
	case $srv in
	nginx|stunnel)
		back=$("$EB" --free-port) || return 1
		bench_start em "$back" "$WORKERS" || return 1
		BACK_PID=$SERVER_PID BACK_MAIN=$SERVER_MAIN
		SERVER_PID= SERVER_MAIN=
		;;
	esac
	case $srv in
	em)
		bench_tls_em_conf "$port" "$WORKERS" "$TLS_DIR/echomaster-tls.conf"
		${SERVER_PREFIX[@]+"${SERVER_PREFIX[@]}"} "$EM" -F \
		    -c "$TLS_DIR/echomaster-tls.conf" 2>>"$log" &
		;;
	ref)
		${SERVER_PREFIX[@]+"${SERVER_PREFIX[@]}"} "$TR" -c "$TLS_CERT" \
		    -k "$TLS_KEY" -p "$port" -n "$want" 2>>"$log" &
		;;
	nginx)
		tb_nginx_conf "$port" "$back"
		${SERVER_PREFIX[@]+"${SERVER_PREFIX[@]}"} nginx -p "$TLS_DIR" \
		    -c "$TLS_DIR/nginx.conf" -e "$TLS_DIR/nginx-error.log" 2>>"$log" &
		;;
	stunnel)
		tb_stunnel_conf "$port" "$back"
		want=0		# threads, not processes
		${SERVER_PREFIX[@]+"${SERVER_PREFIX[@]}"} stunnel4 \
		    "$TLS_DIR/stunnel.conf" 2>>"$log" &
		;;
	esac
	FRONT_PID=$! FRONT_MAIN=$!
	if ! "$TB" --wait 30 -p "$port"; then
		echo "bench-tls: $srv did not echo over TLS on port $port; see $log" >&2
		tb_stop "$srv"
		return 1
	fi
	for ((i = 0; i < 300; i++)); do
		[ "$(bench_children "$FRONT_MAIN")" -ge "$want" ] && break
		sleep 0.05
	done
	sleep 0.2
	FRONT_THREADS=$(tb_threads)
}

tb_threads() {
	ls /proc/"$FRONT_MAIN"/task 2>/dev/null | wc -l
}

# stunnel 5.68 can crash as it stops (SIGSEGV in pthread_join, in its
# exit path) while the threads of connections just closed are still
# ending: so it is stopped only once its thread count is back to what it
# was when it started serving (at most 15 s).
tb_quiesce() {
	local i

	for ((i = 0; i < 300; i++)); do
		[ "$(tb_threads)" -le "$FRONT_THREADS" ] && return
		sleep 0.05
	done
}

# Stops the set-up; a server that died of a signal as it stopped (its
# measurement was complete by then) is said in its log and counted, not
# printed over the table.
tb_stop() {	# SERVER
	local log=$TLS_DIR/${1:-server}.log

	[ "${1:-}" = stunnel ] && tb_quiesce
	SERVER_PID=$FRONT_PID SERVER_MAIN=$FRONT_MAIN
	bench_stop 2>>"$log"
	if [ "$BENCH_STOP_STATUS" -gt 128 ] && [ "$BENCH_STOP_STATUS" -ne 137 ] &&
	    [ "$BENCH_STOP_STATUS" -ne 143 ]; then
		echo "bench-tls: $1 died of signal $((BENCH_STOP_STATUS - 128)) as it stopped" >>"$log"
		STOP_CRASHES=$((STOP_CRASHES + 1))
	fi
	SERVER_PID=$BACK_PID SERVER_MAIN=$BACK_MAIN
	bench_stop 2>>"$log"
	FRONT_PID= FRONT_MAIN= BACK_PID= BACK_MAIN=
}

# CPU ticks used so far by the set-up: the front and what is behind it.
tb_cpu_ticks() {
	local t=0 m

	for m in $FRONT_MAIN $BACK_MAIN; do
		SERVER_MAIN=$m
		t=$((t + $(bench_cpu_ticks)))
	done
	SERVER_MAIN=
	echo "$t"
}

# cpu_cost ROW RESULTLINE TICKS: run-bench.sh's, for the TLS rows: the
# set-up's CPU time per handshake or request (us), per GB streamed (ms).
cpu_cost() {
	printf '%s\n' "$2" | awk -v row="$1" -v ticks="$3" -v hz="$HZ" -v w="$WARMUP" '
	{ for (i = 1; i <= NF; i++) { split($i, kv, "="); f[kv[1]] = kv[2] } }
	END {
		if (row == "tls-idle" || f["secs"] <= 0) exit
		scale = (f["secs"] + w) / f["secs"]
		if (row == "tls-stream") { units = f["mbps"] * f["secs"] / 1000; per = 1000 }
		else { units = f["ops"]; per = 1000000 }
		if (units > 0)
			printf "cpu_per_unit=%.3f", ticks / hz * per / (units * scale)
	}'
}

row_args() {
	case $1 in
	tls-handshake)	echo "-w tls-handshake -c 100 -s 16" ;;
	tls-resume)	echo "-w tls-resume -c 100 -s 16" ;;
	tls-pingpong-*)	echo "-w tls-pingpong -c ${1#tls-pingpong-}" ;;
	tls-stream)	echo "-w tls-stream -c 10" ;;
	tls-idle)	echo "-w tls-idle -c $IDLE -H 1" ;;
	*)		return 1 ;;
	esac
}

server_name() {
	case $1 in
	em) echo echomaster ;; ref) echo reference ;;
	nginx) echo nginx+em ;; stunnel) echo stunnel+em ;;
	esac
}

# CPU time the whole machine used so far, in clock ticks: user, nice,
# system and steal (another guest's use of our CPUs is other work too).
machine_ticks() {
	awk '$1 == "cpu" { print $2 + $3 + $4 + $9; exit }' /proc/stat
}

# measure ROW SERVER: one measurement against a fresh set-up. Sets M_RC,
# M_LINE (RESULT's keys, the set-up's cpu_per_unit, the CPUs of other work
# meanwhile as foreign and the load generator's own as client_cpus),
# M_FOREIGN and M_SHOW (tlsbench's summary line).
measure() {
	local row=$1 srv=$2 port out args cpu0 cpu1 mach0 mach1 t0 t1 pids

	M_RC=99 M_LINE= M_FOREIGN=0 M_SHOW="did not start"
	args=$(row_args "$row") || { echo "bench-tls: unknown row $row" >&2; return 1; }
	port=$("$EB" --free-port) || return 1
	tb_start "$srv" "$port" || return 1
	pids=$FRONT_MAIN${BACK_MAIN:+,$BACK_MAIN}
	[ "$row" = tls-idle ] && args="$args -P $pids"
	cpu0=$(tb_cpu_ticks) mach0=$(machine_ticks) t0=$(date +%s%N)
	# shellcheck disable=SC2086
	out=$(${CLIENT_PREFIX[@]+"${CLIENT_PREFIX[@]}"} "$TB" $args -p "$port" \
	    -d "$DUR" -W "$WARMUP" -t "$THREADS" 2>"$TLS_DIR/tlsbench.err")
	M_RC=$?
	cpu1=$(tb_cpu_ticks) mach1=$(machine_ticks) t1=$(date +%s%N)
	tb_stop "$srv"
	M_LINE=$(printf '%s\n' "$out" | sed -n 's/^RESULT //p')
	M_FOREIGN=$(printf '%s\n' "$M_LINE" | awk -v m=$((mach1 - mach0)) \
	    -v s=$((cpu1 - cpu0)) -v hz="$HZ" -v wall=$((t1 - t0)) '
	{ for (i = 1; i <= NF; i++) if ($i ~ /^cpu_s=/) c = substr($i, 7) }
	END {
		f = (m - s - c * hz) / hz / (wall / 1e9)
		printf "%.3f %.3f", (f > 0 ? f : 0), c / (wall / 1e9)
	}')
	M_LINE="$M_LINE $(cpu_cost "$row" "$M_LINE" $((cpu1 - cpu0))) foreign=${M_FOREIGN% *} client_cpus=${M_FOREIGN#* }"
	M_FOREIGN=${M_FOREIGN% *}
	M_SHOW=$(printf '%s\n' "$out" | sed -n 2p | sed 's/^ *//')
}

# run_one ROW SERVER PASS: a measurement, taken again (BENCH_RETRIES) while
# other work took more than BENCH_FOREIGN_MAX CPUs; the least disturbed is
# appended to $RAW, with disturbed=1 if even that one was.
run_one() {
	local row=$1 srv=$2 pass=$3 try best= best_f= best_rc= best_show= tries=0

	for ((try = 0; try <= RETRIES; try++)); do
		measure "$row" "$srv"
		tries=$((try + 1))
		if [ -z "$best" ] || awk -v a="$M_FOREIGN" -v b="$best_f" 'BEGIN { exit !(a < b) }'; then
			best=$M_LINE best_f=$M_FOREIGN best_rc=$M_RC best_show=$M_SHOW
		fi
		# A failure is not retried; nor is memory (tls-idle), which the load does not move.
		[ "$M_RC" -ne 0 ] || [ "$row" = tls-idle ] && break
		awk -v f="$M_FOREIGN" -v max="$FOREIGN_MAX" 'BEGIN { exit !(f <= max) }' && break
	done
	local disturbed
	disturbed=$(awk -v f="$best_f" -v max="$FOREIGN_MAX" 'BEGIN { print ((f > max) ? 1 : 0) }')
	echo "row=$row pass=$pass server=$srv rc=$best_rc $best tries=$tries disturbed=$disturbed" >>"$RAW"
	printf '  pass %d %-17s %-11s %s (other work %.2f CPUs%s)\n' "$pass" "$row" \
	    "$(server_name "$srv")" "$best_show" "$best_f" \
	    "$([ "$tries" -gt 1 ] && echo ", $tries tries")"
	if [ "$best_rc" -ne 0 ]; then
		echo "  FAILED (exit $best_rc):" >&2
		sed 's/^/    /' "$TLS_DIR/tlsbench.err" >&2
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
	# "key unit sense target": sense hi = more is better, lo = less is;
	# target is for echomaster/reference (abs: for echomaster itself).
	function metrics(row) {
		if (row == "tls-handshake")
			return "rate hs/s hi 0.95;p99_us p99_us lo 1.10;cpu_per_unit cpu_us/hs lo 1.05;" LG
		if (row == "tls-resume")
			return "rate resumed/s hi 0.95;p99_us p99_us lo 1.10;cpu_per_unit cpu_us/hs lo 1.05;" LG
		if (row ~ /^tls-pingpong/)
			return "rate req/s hi 0.95;p99_us p99_us lo 1.10;cpu_per_unit cpu_us/req lo 1.05;" LG
		if (row == "tls-stream") return "mbps MB/s hi 0.95;cpu_per_unit cpu_ms/GB lo 1.05;" LG
		if (row == "tls-idle") return "bytes_per_conn bytes/conn abs 16384;ops echoed_after_hold info -"
		return ""
	}
	# The median of the per-pass ratios a/b; lo and hi get the extremes.
	# The load generator busy: near 1 CPU a thread, the rates are its own.
	BEGIN { LG = "client_cpus client_CPUs info -" }
	function ratio_of(r, a, b, k,    p, n, Q) {
		n = 0
		lo = hi = ""
		for (p = 1; p <= passes; p++)
			if (((r, a, p) in ok) && ((r, b, p) in ok) && val[r, b, p, k] > 0) {
				Q[++n] = val[r, a, p, k] / val[r, b, p, k]
				if (lo == "" || Q[n] < lo) lo = Q[n]
				if (hi == "" || Q[n] > hi) hi = Q[n]
			}
		return median(Q, n)
	}
	function col(r, s, k,    p, n, V) {
		n = 0
		for (p = 1; p <= passes; p++)
			if ((r, s, p) in ok) V[++n] = val[r, s, p, k]
		return median(V, n)
	}
	function short(q, t, sense) {
		if (sense == "hi")
			return q >= t ? "met" : sprintf("SHORT %.1f%%", (t - q) * 100)
		return q <= t ? "met" : sprintf("SHORT %.1f%%", (q - t) * 100)
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
		measured[r]++
		if (f["disturbed"] == 1) disturbed[r]++
		ok[r, f["server"], f["pass"]] = 1
		for (k in f) val[r, f["server"], f["pass"], k] = f[k]
	}
	END {
		printf "%-30s %10s %10s %10s %10s  %7s %-11s %-20s %8s %s\n", "workload",
		    "echomaster", "reference", "nginx+em", "stunnel+em", "em/ref",
		    "passes", "target", "em/nginx", "target"
		for (ri = 1; ri <= nrows; ri++) {
			r = order[ri]
			nm = split(metrics(r), ms, ";")
			for (mi = 1; mi <= nm; mi++) {
				split(ms[mi], m, " ")
				em = col(r, "em", m[1])
				qr = ratio_of(r, "em", "ref", m[1])
				spread = lo == "" || m[3] == "abs" || m[3] == "info" ? "-" : sprintf("%.2f-%.2f", lo, hi)
				qn = ratio_of(r, "em", "nginx", m[1])
				t1 = t2 = "-"
				if ((m[3] == "hi" || m[3] == "lo") && m[4] != "-" && qr != "")
					t1 = sprintf("%s %.2f %s", m[3] == "hi" ? ">=" : "<=", m[4], short(qr, m[4], m[3]))
				if (m[3] == "abs" && em != "")
					t1 = sprintf("<= %d %s", m[4], em <= m[4] ? "met" : "SHORT")
				if (m[3] == "hi" && qn != "")
					t2 = sprintf("> 1 %s", qn > 1 ? "met" : "SHORT")
				if ((m[3] == "lo" || m[3] == "abs") && qn != "")
					t2 = sprintf("< 1 %s", qn < 1 ? "met" : "SHORT")
				printf "%-30s %10s %10s %10s %10s  %7s %-11s %-20s %8s %s\n",
				    r " " m[2], num(em), num(col(r, "ref", m[1])),
				    num(col(r, "nginx", m[1])), num(col(r, "stunnel", m[1])),
				    qr == "" ? "-" : sprintf("%.3f", qr), spread, t1,
				    qn == "" ? "-" : sprintf("%.3f", qn), t2
			}
			if (failed[r])
				printf "%-30s %d measurement(s) FAILED, see raw.txt\n", r, failed[r]
			if (disturbed[r])
				printf "%-30s %d of %d measurement(s) shared the machine with more than %s CPUs of other work\n",
				    r, disturbed[r], measured[r], max
		}
	}' max="$FOREIGN_MAX" "$RAW"
}

# tls-bench.sh --table RAWFILE: only print the table of an earlier run.
if [ "${1:-}" = --table ] && [ -f "${2:-}" ]; then
	RAW=$2
	table
	exit
fi

tb_check_tools
: >"$RAW"
bench_tls_cert "$TLS_DIR" || { echo "bench-tls: openssl could not make the certificate" >&2; exit 2; }
bench_tls_em_conf "$("$EB" --free-port)" "$WORKERS" "$TLS_DIR/echomaster-tls.conf"
if ! "$EM" -t -c "$TLS_DIR/echomaster-tls.conf" >"$TLS_DIR/em-t.log" 2>&1; then
	EM_NOTE="echomaster column left out: $EM refuses a TLS listener ($(head -1 "$TLS_DIR/em-t.log"))"
	echo "bench-tls: $EM_NOTE" >&2
	s=()
	for srv in "${SERVERS[@]}"; do [ "$srv" != em ] && s+=("$srv"); done
	SERVERS=("${s[@]}")
fi
start=$(date +%s)
status=0
echo "bench-tls: ${#ROWS[@]} workloads x ${#SERVERS[@]} servers x $PASSES passes," \
    "${DUR}s each (threads=$THREADS pin=$PIN)"
for ((pass = 1; pass <= PASSES; pass++)); do
	# Rotate the servers' order: each goes first in turn.
	order=()
	for ((i = 0; i < ${#SERVERS[@]}; i++)); do
		order+=("${SERVERS[(i + pass - 1) % ${#SERVERS[@]}]}")
	done
	for row in "${ROWS[@]}"; do
		for srv in "${order[@]}"; do
			run_one "$row" "$srv" "$pass" || status=1
		done
	done
done
{
	bench_machine
	echo "settings: passes=$PASSES duration=${DUR}s threads=$THREADS" \
	    "pin=$PIN idle=$IDLE workers=$WORKERS foreign_max=$FOREIGN_MAX retries=$RETRIES"
	echo "tls:      TLS 1.3, TLS_AES_128_GCM_SHA256, X25519, ECDSA P-256" \
	    "certificate, session tickets; $(nginx -v 2>&1 | sed 's/^nginx version: //')," \
	    "$(stunnel4 -version 2>&1 | sed -n 's/^\(stunnel [0-9.]*\) .*/\1/p'), $(openssl version | cut -d' ' -f1-2)"
	echo "ratio = median over the passes of echomaster/reference and" \
	    "echomaster/nginx+em (passes: the lowest and highest em/ref);" \
	    "proxies: proxy + echomaster behind it"
	[ -n "$EM_NOTE" ] && echo "$EM_NOTE"
	[ "$STOP_CRASHES" -gt 0 ] && echo "$STOP_CRASHES server(s) died of a signal as they" \
	    "stopped, after their measurement (see the servers' logs in $TLS_DIR)"
	echo
	table
	echo
	echo "make bench-tls took $(($(date +%s) - start)) s"
} >"$RESULTS"
echo
cat "$RESULTS"
exit $status
