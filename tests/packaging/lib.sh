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
