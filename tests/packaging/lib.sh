# Shared helpers of the packaging tests; sourced, not run.
#
# Each test script counts its checks with ok/not_ok (or check CMD...) and
# ends with `summary NAME`, which prints "NAME: N passed, N failed" and
# returns non-zero if anything failed. Every wait is a bounded poll.

EM_TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
EM_VERSION=$(cat "$EM_TOP/VERSION")
# make passes BUILD (check-packages: make BUILD=build-x check-packages).
EM_BUILD=$EM_TOP/${BUILD:-build}
PASSED=0
FAILED=0

say() { printf '%s\n' "$*"; }
ok() { PASSED=$((PASSED + 1)); say "ok     $*"; }
not_ok() { FAILED=$((FAILED + 1)); say "FAIL   $*"; }

# check DESCRIPTION CMD [ARG...]: runs CMD, counts the outcome, shows the
# output of a failing command.
check() {
	local what=$1 out
	shift
	if out=$("$@" 2>&1); then
		ok "$what"
	else
		not_ok "$what"
		[ -n "$out" ] && printf '%s\n' "$out" | sed 's/^/       | /'
	fi
	return 0
}

# fails CMD [ARG...]: succeeds when CMD fails (for check).
fails() { ! "$@"; }

# check_eq DESCRIPTION EXPECTED ACTUAL
check_eq() {
	if [ "$2" = "$3" ]; then
		ok "$1"
	else
		not_ok "$1: expected \"$2\", got \"$3\""
	fi
}

summary() {
	say "$1: $PASSED passed, $FAILED failed"
	[ "$FAILED" -eq 0 ]
}

die() {
	say "FAIL   $*"
	FAILED=$((FAILED + 1))
	exit 1
}

# wait_for SECONDS CMD [ARG...]: polls CMD every 0.1 s until it succeeds;
# fails once SECONDS have passed.
wait_for() {
	local deadline=$((SECONDS + $1))
	shift
	until "$@" >/dev/null 2>&1; do
		[ "$SECONDS" -ge "$deadline" ] && return 1
		sleep 0.1
	done
}

# A port that nothing on this host uses, by TCP or UDP, IPv4 or IPv6.
free_port() {
	local port
	for _ in $(seq 200); do
		port=$((20000 + RANDOM % 40000))
		if ! cat /proc/net/tcp /proc/net/tcp6 /proc/net/udp /proc/net/udp6 2>/dev/null |
			awk -v hex="$(printf '%04X' "$port")" \
				'{ split($2, a, ":"); if (a[2] == hex) found = 1 } END { exit !found }'; then
			echo "$port"
			return 0
		fi
	done
	return 1
}

# tcp_roundtrip HOST PORT TEXT: sends TEXT and a newline over TCP, prints
# the line that comes back (bash's /dev/tcp; a 5 s bound on the reply).
tcp_roundtrip() {
	local reply
	exec 3<>"/dev/tcp/$1/$2" || return 1
	printf '%s\n' "$3" >&3
	IFS= read -r -t 5 reply <&3 || { exec 3<&-; return 1; }
	exec 3<&-
	printf '%s\n' "$reply"
}

# udp_roundtrip HOST PORT TEXT: one datagram out, the reply printed. The
# reply is read by dd in one read(2): bash's read takes a byte at a time,
# which on a datagram socket would keep only the first byte.
udp_roundtrip() {
	local reply
	exec 4<>"/dev/udp/$1/$2" || return 1
	printf '%s\n' "$3" >&4
	reply=$(timeout 5 dd bs=65536 count=1 status=none <&4) || { exec 4<&-; return 1; }
	exec 4<&-
	printf '%s\n' "$reply"
}

# The one .deb and .rpm `make deb` and `make rpm` leave in build/.
deb_file() { ls "$EM_BUILD"/echomaster_"$EM_VERSION"-*_*.deb 2>/dev/null | head -n 1; }
rpm_file() { ls "$EM_BUILD"/echomaster-"$EM_VERSION"-*.rpm 2>/dev/null | grep -v '\.src\.rpm$' | head -n 1; }

# The version tests/packaging/make-next.sh builds, and its packages.
EM_NEXT_VERSION=$EM_VERSION.1
next_deb_file() { ls "$EM_BUILD"/next/src/build/echomaster_"$EM_NEXT_VERSION"-*_*.deb 2>/dev/null | head -n 1; }
next_rpm_file() {
	ls "$EM_BUILD"/next/src/build/echomaster-"$EM_NEXT_VERSION"-*.rpm 2>/dev/null | grep -v '\.src\.rpm$' | head -n 1
}

# scriptlet_run DIR SCRIPT ACTIVE STATUS UPGRADE TEST [ARG...]: runs a
# package's service step (the .deb's postinst, the .rpm's %posttrans) with
# stand-ins for systemctl, deb-systemd-invoke and the rest of debhelper's
# helpers, and for the installed /usr/sbin/echomaster, in DIR (made afresh):
#   ACTIVE   what systemctl is-active exits: 0 (active) or 3 (not)
#   STATUS   echomaster -s status: ok; nosock (the file sets no
#            control_socket); unreachable (no master answers on it)
#   UPGRADE  echomaster -s upgrade: ok; old (a 1.0 master's answer through
#            the control socket); failed (attempted, the new binary's check
#            failed); with STATUS nosock the real one would send USR2
#   TEST     echomaster -t: ok, or bad (the new binary rejects the file)
# Prints what the script said, "exit N", then each command it ran.
scriptlet_run() {
	local d=$1 script=$2 active=$3 status=$4 upgrade=$5 test=$6 rc=0
	shift 6
	rm -rf "$d"
	mkdir -p "$d/bin" "$d/run/systemd/system"
	for cmd in systemctl deb-systemd-invoke deb-systemd-helper systemd-sysusers systemd-tmpfiles; do
		cat >"$d/bin/$cmd" <<EOS
#!/bin/sh
echo "$cmd \$*" >>"$d/log"
case "$cmd \$*" in "systemctl "*is-active*) exit $active ;; esac
exit 0
EOS
	done
	cat >"$d/bin/echomaster" <<EOS
#!/bin/sh
echo "echomaster \$*" >>"$d/log"
case "\$1 \$2:$status" in
"-s status:ok") echo "master 41, version 1.0.0, generation 1: serving"; exit 0 ;;
"-s status:nosock") echo "echomaster: -s status needs control_socket in /etc/echomaster/echomaster.conf" >&2; exit 1 ;;
"-s status:unreachable")
	echo "echomaster: cannot reach the master at /run/echomaster/control.sock: Connection refused" >&2; exit 2 ;;
"-s upgrade:nosock") echo "echomaster: sent SIGUSR2 to master 41" >&2; exit 0 ;;
"-s upgrade:unreachable")
	echo "echomaster: cannot reach the master at /run/echomaster/control.sock: Connection refused" >&2; exit 2 ;;
esac
case "\$1 \$2:$upgrade" in
"-s upgrade:ok") echo "upgrade ok: pid 42, version $EM_VERSION, generation 3"; exit 0 ;;
"-s upgrade:old") echo "unknown command (status, status-json, reload, respawn, stop, quit, reopen)"; exit 1 ;;
"-s upgrade:failed")
	echo "upgrade failed: /usr/sbin/echomaster -t: /etc/echomaster/echomaster.conf:60: unknown setting \"bogus_setting\""
	exit 1 ;;
esac
case "\$1:$test" in
"-t:ok") exit 0 ;;
"-t:bad") echo "/etc/echomaster/echomaster.conf:60: unknown setting \"bogus_setting\"" >&2; exit 1 ;;
esac
echo "echomaster stand-in: unexpected \$*" >&2; exit 64
EOS
	chmod +x "$d"/bin/*
	sed -e "s|/run/systemd/system|$d/run/systemd/system|; s|/usr/sbin/echomaster|$d/bin/echomaster|" \
		"$script" >"$d/script"
	: >"$d/log"
	PATH=$d/bin:$PATH sh "$d/script" "$@" 2>&1 || rc=$?
	echo "exit $rc"
	cat "$d/log"
}

# service_step_checks WHO: the checks of a package's service step, the same
# for the .deb's postinst and the .rpm's %posttrans, each case run through
# scriptlet_run. Uses SCRIPT (the extracted script), RUN_DIR, ARGS (an
# array: the script's arguments for an upgrade) and RESTART (the command
# it restarts with: "deb-systemd-invoke restart echomaster.service" or
# "systemctl restart echomaster.service").
service_step_checks() {
	local who=$1
	_ss() { scriptlet_run "$RUN_DIR" "$SCRIPT" "$@" "${ARGS[@]}"; }
	_has() { grep -q -e "$1" <<<"$ss_out"; }
	_ran() { grep -qx -e "$1" <<<"$ss_out"; }
	# _shows EXPR: EXPR holds, or the script's output is shown.
	_shows() { eval "$1" || { printf '%s\n' "$ss_out"; return 1; }; }

	ss_out=$(_ss 0 ok ok ok)
	check "$who: active, live upgrade ok: -s upgrade, no restart, exit 0" \
		_shows '_ran "echomaster -s upgrade -c /etc/echomaster/echomaster.conf" &&
			_has "^echomaster: upgrade ok: pid 42" && ! _has "restart" && _ran "exit 0"'

	ss_out=$(_ss 0 ok failed ok)
	check "$who: active, the live upgrade attempted and failed: no restart, exit 0" \
		_shows '_ran "echomaster -s upgrade -c /etc/echomaster/echomaster.conf" &&
			! _ran "$RESTART" && ! _ran "systemctl restart echomaster.service" && _ran "exit 0"'
	check "$who: ... it prints the reason, that the old version keeps serving, and what to do" \
		_shows '_has "the live upgrade failed: upgrade failed: /usr/sbin/echomaster -t: .*unknown setting" &&
			_has "not restarting echomaster.service: the old version keeps serving" &&
			_has "then run: systemctl restart echomaster"'

	ss_out=$(_ss 0 ok old ok)
	check "$who: active, an older master (\"unknown command\"): checks the file, restarts, exit 0" \
		_shows '_has "the running master is an older version (it answered: unknown command" &&
			_ran "echomaster -t -c /etc/echomaster/echomaster.conf" && _ran "$RESTART" && _ran "exit 0"'

	ss_out=$(_ss 0 ok old bad)
	check "$who: active, an older master, and the new binary rejects the file: no restart, says so" \
		_shows '! _ran "$RESTART" && _has "not restarting echomaster.service: the new version rejects" &&
			_has "unknown setting" && _has "the old version keeps serving" && _ran "exit 0"'

	ss_out=$(_ss 0 nosock ok ok)
	check "$who: active, no control_socket: no -s upgrade (no USR2), restarts instead" \
		_shows '! _has "^echomaster -s upgrade" && _has "the running master cannot be asked" &&
			_ran "$RESTART" && _ran "exit 0"'

	ss_out=$(_ss 0 unreachable ok ok)
	check "$who: active, no master answers on the control socket: no -s upgrade, restarts instead" \
		_shows '! _has "^echomaster -s upgrade" && _has "cannot reach the master" && _ran "$RESTART" && _ran "exit 0"'

	ss_out=$(_ss 0 unreachable ok bad)
	check "$who: active, not askable, the new binary rejects the file: no restart" \
		_shows '! _ran "$RESTART" && _has "the new version rejects" && _ran "exit 0"'

	ss_out=$(_ss 3 ok ok ok)
	check "$who: service not active: no echomaster command, no restart, exit 0" \
		_shows '! _has "^echomaster -" && ! _has "restart" && _ran "exit 0"'
}
