# Shared by the bench scripts (sourced, from the repo top): start one
# server on a port, wait until it serves, stop it.
#
# In:  BUILD, and optionally ECHOMASTER (the daemon binary), SERVER_PREFIX
#      (an array put before the server command: taskset, valgrind...),
#      MAXCONN (echomaster's limits.max_connections).
#      SERVER_TRACER=1 when SERVER_PREFIX is a tracer that forks the server
#      (strace): the server is then its child, and is the one signalled.
# Out: SERVER_PID (what was started) and SERVER_MAIN (the server's master).

BUILD=${BUILD:-build}
BENCH_OUT=$BUILD/bench
EB=$BENCH_OUT/echobench
RS=$BENCH_OUT/refserver
TB=$BENCH_OUT/tlsbench
TR=$BENCH_OUT/tlsref
TLS_CERT=${TLS_CERT:-}
TLS_KEY=${TLS_KEY:-}
EM=${ECHOMASTER:-$BUILD/echomaster}
MAXCONN=${MAXCONN:-10000}
SERVER_PREFIX=(${SERVER_PREFIX[@]+"${SERVER_PREFIX[@]}"})
SERVER_PID=
SERVER_MAIN=
BENCH_STOP_STATUS=0

bench_children() {
	cat /proc/"$1"/task/*/children 2>/dev/null | wc -w
}

# bench_tls_cert DIR: the run's certificate, ECDSA on P-256, self-signed
# for two days, as DIR/cert.pem and DIR/key.pem (TLS_CERT, TLS_KEY).
bench_tls_cert() {
	TLS_CERT=$1/cert.pem TLS_KEY=$1/key.pem
	openssl ecparam -name prime256v1 -genkey -noout -out "$TLS_KEY" 2>/dev/null &&
	    chmod 600 "$TLS_KEY" &&
	    openssl req -new -x509 -key "$TLS_KEY" -out "$TLS_CERT" -days 2 \
	    -subj /CN=localhost 2>/dev/null
}

# bench_tls_em_conf PORT WORKERS OUT: the TLS bench configuration
# (echomaster-tls-bench.conf.in) with TLS_CERT and TLS_KEY.
bench_tls_em_conf() {
	local w=$2

	[ "$w" = auto ] && w='"auto"'
	sed -e "s/@WORKERS@/$w/" -e "s/@PORT@/$1/" -e "s/@MAXCONN@/$MAXCONN/" \
	    -e "s|@CERT@|$TLS_CERT|" -e "s|@KEY@|$TLS_KEY|" \
	    tests/bench/echomaster-tls-bench.conf.in >"$3"
}

# bench_start em|em-proxy|em-sandbox|ref|em-tls|ref-tls PORT [WORKERS]:
# WORKERS is "auto" (one per CPU) or a number. em-proxy is echomaster with
# proxy_protocol = "v2" on its TCP listener, whose clients must send the
# header (echobench -X); em is echomaster with the bench config's sandbox =
# false, em-sandbox the same with sandbox = true (the daemon's default).
# em-tls and ref-tls serve TLS (echomaster's TLS bench configuration and
# tlsref) with the certificate of bench_tls_cert, probed by tlsbench.
bench_start() {
	local kind=$1 port=$2 workers=${3:-auto} log=$BENCH_OUT/$1.log
	local want i proxy=() conf_proxy='s/@@//' probe=$EB

	if [ "$kind" = em-proxy ]; then
		kind=em
		proxy=(-X)
		conf_proxy='s/\(proto = "tcp";.*mode = "upper";\)/\1 proxy_protocol = "v2";/'
	fi
	if [ "$kind" = em-sandbox ]; then  # the bench config has sandbox = false: on here
		kind=em
		conf_proxy='s/^sandbox = false;/sandbox = true;/'
	fi
	mkdir -p "$BENCH_OUT"
	want=$workers
	[ "$workers" = auto ] && want=$(nproc)
	if [ "$kind" = em-tls ]; then
		probe=$TB
		bench_tls_em_conf "$port" "$workers" "$BENCH_OUT/echomaster-tls.conf"
		${SERVER_PREFIX[@]+"${SERVER_PREFIX[@]}"} "$EM" -F \
		    -c "$BENCH_OUT/echomaster-tls.conf" 2>>"$log" &
	elif [ "$kind" = ref-tls ]; then
		probe=$TB
		${SERVER_PREFIX[@]+"${SERVER_PREFIX[@]}"} "$TR" -c "$TLS_CERT" \
		    -k "$TLS_KEY" -p "$port" -n "$want" 2>>"$log" &
	elif [ "$kind" = em ]; then
		local w=$workers
		[ "$w" = auto ] && w='"auto"'
		sed -e "s/@WORKERS@/$w/" -e "s/@PORT@/$port/" \
		    -e "s/@MAXCONN@/$MAXCONN/" -e "$conf_proxy" \
		    tests/bench/echomaster-bench.conf.in >"$BENCH_OUT/echomaster.conf"
		${SERVER_PREFIX[@]+"${SERVER_PREFIX[@]}"} "$EM" -F \
		    -c "$BENCH_OUT/echomaster.conf" 2>>"$log" &
	else
		${SERVER_PREFIX[@]+"${SERVER_PREFIX[@]}"} "$RS" -p "$port" \
		    -n "$want" 2>>"$log" &
	fi
	SERVER_PID=$!
	SERVER_MAIN=$SERVER_PID
	if ! "$probe" --wait 30 -p "$port" ${proxy[@]+"${proxy[@]}"}; then
		echo "bench: $kind did not echo on port $port; see $log" >&2
		bench_stop
		return 1
	fi
	if [ "${SERVER_TRACER:-0}" = 1 ]; then
		SERVER_MAIN=$(cat /proc/"$SERVER_PID"/task/*/children | awk '{ print $1 }')
	fi
	# Every worker up, not only the first one.
	for ((i = 0; i < 300; i++)); do
		[ "$(bench_children "$SERVER_MAIN")" -ge "$want" ] && break
		sleep 0.05
	done
	sleep 0.2
}

# bench_stop: BENCH_STOP_STATUS is the server's exit status (0 if none ran).
bench_stop() {
	local i

	BENCH_STOP_STATUS=0
	[ -n "$SERVER_PID" ] || return 0
	kill -TERM "$SERVER_MAIN" 2>/dev/null
	for ((i = 0; i < 100; i++)); do
		kill -0 "$SERVER_PID" 2>/dev/null || break
		sleep 0.05
	done
	kill -KILL "$SERVER_PID" 2>/dev/null
	wait "$SERVER_PID" 2>/dev/null
	BENCH_STOP_STATUS=$?
	[ "$SERVER_MAIN" != "$SERVER_PID" ] && kill -KILL "$SERVER_MAIN" 2>/dev/null
	SERVER_PID=
	SERVER_MAIN=
}

# bench_cpu_ticks: CPU time (user + system, clock ticks) used so far by the
# server's main process and its live children (the workers).
bench_cpu_ticks() {
	local p t=0 u s

	for p in "$SERVER_MAIN" $(cat /proc/"$SERVER_MAIN"/task/*/children 2>/dev/null); do
		# Fields 14 and 15 of /proc/PID/stat; the name in () may hold spaces.
		read -r u s < <(sed 's/^.*) //' /proc/"$p"/stat 2>/dev/null | awk '{ print $12, $13 }') || continue
		t=$((t + ${u:-0} + ${s:-0}))
	done
	echo "$t"
}

bench_machine() {
	echo "date:    $(date -u '+%Y-%m-%d %H:%M UTC')"
	echo "machine: $(nproc) CPUs, $(sed -n 's/^model name[[:space:]]*: //p' \
	    /proc/cpuinfo | head -1), kernel $(uname -r)"
	echo "commit:  $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
}
