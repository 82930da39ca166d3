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
# 0.95; p99 1.10) and echomaster/nginx (target: ahead, > 1; memory, p99:
# < 1). An idle TLS connection may cost echomaster at most 16384 bytes.
#
# Environment: BUILD (build), BENCH_PASSES (3), BENCH_DURATION (2 seconds
# per measurement), BENCH_THREADS (1 load generator thread), BENCH_PIN (0;
# 1: load generator on CPU 0, servers on the others), BENCH_TLS_IDLE (2000
# idle TLS connections), BENCH_WORKERS (auto, or a number for all),
# BENCH_ONLY (rows, e.g. "tls-handshake tls-idle"), BENCH_TLS_SERVERS
# ("em ref nginx stunnel").
# When echomaster refuses its TLS config (-t: a build without TLS
# listeners), its column is left out and the table says so.
# Writes $BUILD/bench/tls/results.txt (the table) and raw.txt (every
# result). Exit status 1 if any measurement failed (a wrong reply byte, a
# handshake that did not resume, an error).
set -u
cd "$(dirname "$0")/../.." || exit 2
. tests/bench/lib.sh

TB=$BENCH_OUT/tlsbench
TR=$BENCH_OUT/tlsref
mkdir -p "$BENCH_OUT/tls" || exit 2
TLS_DIR=$(cd "$BENCH_OUT/tls" && pwd)	# absolute: nginx and echomaster chdir
PASSES=${BENCH_PASSES:-3}
DUR=${BENCH_DURATION:-2}
THREADS=${BENCH_THREADS:-1}
PIN=${BENCH_PIN:-0}
IDLE=${BENCH_TLS_IDLE:-2000}
WORKERS=${BENCH_WORKERS:-auto}
ROWS=(${BENCH_ONLY:-tls-handshake tls-resume tls-pingpong-100 tls-stream tls-idle})
SERVERS=(${BENCH_TLS_SERVERS:-em ref nginx stunnel})
WARMUP=0.5
HZ=$(getconf CLK_TCK)
RAW=$TLS_DIR/raw.txt
RESULTS=$TLS_DIR/results.txt
CERT=$TLS_DIR/cert.pem
KEY=$TLS_DIR/key.pem
NGINX_MODULE=/usr/lib/nginx/modules/ngx_stream_module.so
CLIENT_PREFIX=()
FRONT_PID= FRONT_MAIN= BACK_PID= BACK_MAIN=
EM_NOTE=

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

# The run's certificate: ECDSA on P-256, self-signed, for two days.
tb_cert() {
	openssl ecparam -name prime256v1 -genkey -noout -out "$KEY" 2>/dev/null &&
	    chmod 600 "$KEY" &&
	    openssl req -new -x509 -key "$KEY" -out "$CERT" -days 2 \
	    -subj /CN=localhost 2>/dev/null
}

tb_em_conf() {	# PORT
	local w=$WORKERS

	[ "$w" = auto ] && w='"auto"'
	sed -e "s/@WORKERS@/$w/" -e "s/@PORT@/$1/" -e "s/@MAXCONN@/$MAXCONN/" \
	    -e "s|@CERT@|$CERT|" -e "s|@KEY@|$KEY|" \
	    tests/bench/echomaster-tls-bench.conf.in >"$TLS_DIR/echomaster-tls.conf"
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
	        ssl_certificate $CERT;
	        ssl_certificate_key $KEY;
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
	cert = $CERT
	key = $KEY
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
		tb_em_conf "$port"
		${SERVER_PREFIX[@]+"${SERVER_PREFIX[@]}"} "$EM" -F \
		    -c "$TLS_DIR/echomaster-tls.conf" 2>>"$log" &
		;;
	ref)
		${SERVER_PREFIX[@]+"${SERVER_PREFIX[@]}"} "$TR" -c "$CERT" \
		    -k "$KEY" -p "$port" -n "$want" 2>>"$log" &
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
		tb_stop
		return 1
	fi
	for ((i = 0; i < 300; i++)); do
		[ "$(bench_children "$FRONT_MAIN")" -ge "$want" ] && break
		sleep 0.05
	done
	sleep 0.2
}

tb_stop() {
	SERVER_PID=$FRONT_PID SERVER_MAIN=$FRONT_MAIN
	bench_stop
	SERVER_PID=$BACK_PID SERVER_MAIN=$BACK_MAIN
	bench_stop
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

# run_one ROW SERVER PASS: one measurement, appended to $RAW.
run_one() {
	local row=$1 srv=$2 pass=$3 port out rc args line cpu0 cpu1 pids

	args=$(row_args "$row") || { echo "bench-tls: unknown row $row" >&2; return 1; }
	port=$("$EB" --free-port) || return 1
	if ! tb_start "$srv" "$port"; then
		echo "row=$row pass=$pass server=$srv rc=99" >>"$RAW"
		return 1
	fi
	pids=$FRONT_MAIN${BACK_MAIN:+,$BACK_MAIN}
	[ "$row" = tls-idle ] && args="$args -P $pids"
	cpu0=$(tb_cpu_ticks)
	# shellcheck disable=SC2086
	out=$(${CLIENT_PREFIX[@]+"${CLIENT_PREFIX[@]}"} "$TB" $args -p "$port" \
	    -d "$DUR" -W "$WARMUP" -t "$THREADS" 2>"$TLS_DIR/tlsbench.err")
	rc=$?
	cpu1=$(tb_cpu_ticks)
	tb_stop
	line=$(printf '%s\n' "$out" | sed -n 's/^RESULT //p')
	line="$line $(cpu_cost "$row" "$line" $((cpu1 - cpu0)))"
	echo "row=$row pass=$pass server=$srv rc=$rc $line" >>"$RAW"
	printf '  pass %d %-17s %-11s %s\n' "$pass" "$row" "$(server_name "$srv")" \
	    "$(printf '%s\n' "$out" | sed -n 2p | sed 's/^ *//')"
	if [ "$rc" -ne 0 ]; then
		echo "  FAILED (exit $rc):" >&2
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
			return "rate hs/s hi 0.95;p99_us p99_us lo 1.10;cpu_per_unit cpu_us/hs lo -"
		if (row == "tls-resume")
			return "rate resumed/s hi 0.95;p99_us p99_us lo 1.10;cpu_per_unit cpu_us/hs lo -"
		if (row ~ /^tls-pingpong/)
			return "rate req/s hi 0.95;p99_us p99_us lo 1.10;cpu_per_unit cpu_us/req lo -"
		if (row == "tls-stream") return "mbps MB/s hi 0.95;cpu_per_unit cpu_ms/GB lo -"
		if (row == "tls-idle") return "bytes_per_conn bytes/conn abs 16384;ops echoed_after_hold info -"
		return ""
	}
	function ratio_of(r, a, b, k,    p, n, Q) {
		n = 0
		for (p = 1; p <= passes; p++)
			if (((r, a, p) in ok) && ((r, b, p) in ok) && val[r, b, p, k] > 0)
				Q[++n] = val[r, a, p, k] / val[r, b, p, k]
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
		ok[r, f["server"], f["pass"]] = 1
		for (k in f) val[r, f["server"], f["pass"], k] = f[k]
	}
	END {
		printf "%-26s %10s %10s %10s %10s  %7s %-20s %8s %s\n", "workload",
		    "echomaster", "reference", "nginx+em", "stunnel+em", "em/ref",
		    "target", "em/nginx", "target"
		for (ri = 1; ri <= nrows; ri++) {
			r = order[ri]
			nm = split(metrics(r), ms, ";")
			for (mi = 1; mi <= nm; mi++) {
				split(ms[mi], m, " ")
				em = col(r, "em", m[1])
				qr = ratio_of(r, "em", "ref", m[1])
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
				printf "%-26s %10s %10s %10s %10s  %7s %-20s %8s %s\n",
				    r " " m[2], num(em), num(col(r, "ref", m[1])),
				    num(col(r, "nginx", m[1])), num(col(r, "stunnel", m[1])),
				    qr == "" ? "-" : sprintf("%.3f", qr), t1,
				    qn == "" ? "-" : sprintf("%.3f", qn), t2
			}
			if (failed[r])
				printf "%-26s %d measurement(s) FAILED, see raw.txt\n", r, failed[r]
		}
	}' "$RAW"
}

# tls-bench.sh --table RAWFILE: only print the table of an earlier run.
if [ "${1:-}" = --table ] && [ -f "${2:-}" ]; then
	RAW=$2
	table
	exit
fi

tb_check_tools
: >"$RAW"
tb_cert || { echo "bench-tls: openssl could not make the certificate" >&2; exit 2; }
tb_em_conf "$("$EB" --free-port)"
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
	    "pin=$PIN idle=$IDLE workers=$WORKERS"
	echo "tls:      TLS 1.3, TLS_AES_128_GCM_SHA256, X25519, ECDSA P-256" \
	    "certificate, session tickets; $(nginx -v 2>&1 | sed 's/^nginx version: //')," \
	    "$(stunnel4 -version 2>&1 | sed -n 's/^\(stunnel [0-9.]*\) .*/\1/p'), $(openssl version | cut -d' ' -f1-2)"
	echo "ratio = median over the passes of echomaster/reference and" \
	    "echomaster/nginx+em; proxies: proxy + echomaster behind it"
	[ -n "$EM_NOTE" ] && echo "$EM_NOTE"
	echo
	table
	echo
	echo "make bench-tls took $(($(date +%s) - start)) s"
} >"$RESULTS"
echo
cat "$RESULTS"
exit $status
