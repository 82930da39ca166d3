#!/bin/bash
# Installs build/echomaster_*.deb on this host for real (dpkg -i, as root),
# checks what it put there, runs the installed daemon with a copy of the
# installed configuration moved to a free port, talks to it, then purges the
# package and checks that nothing is left but what policy allows (the
# system user). The host's systemd is not involved: the unit is tested by
# booting a container (test-nspawn.sh).
set -euo pipefail
. "$(dirname "$0")/lib.sh"

[ "$(id -u)" = 0 ] || die "test-deb-host: run as root (dpkg -i)"
DEB=$(deb_file)
[ -n "$DEB" ] || die "test-deb-host: no build/echomaster_$EM_VERSION-*.deb (make deb)"
if dpkg-query -W -f='${Status}' echomaster 2>/dev/null | grep -q 'installed$'; then
	die "test-deb-host: echomaster is already installed here; this test installs and purges it, so remove it first"
fi

TMP=$(mktemp -d /tmp/em-deb.XXXXXX)
DAEMON_PID=
INSTALLED=false
cleanup() {
	if [ -n "$DAEMON_PID" ] && kill -0 "$DAEMON_PID" 2>/dev/null; then
		kill -TERM "$DAEMON_PID" 2>/dev/null || true
		wait_for 5 eval "! kill -0 $DAEMON_PID" || kill -KILL "$DAEMON_PID" 2>/dev/null || true
	fi
	if $INSTALLED; then
		dpkg --purge echomaster >/dev/null 2>&1 || true
	fi
	rm -rf "$TMP"
}
trap cleanup EXIT

# The postinst's service step, with stand-ins (lib.sh's scriptlet_run): the
# same cases as the rpm's %posttrans in test-rpm.sh, plus a first install.
# The real upgrade under systemd is test-nspawn.sh's.
say "== the postinst's service step against stand-ins"
dpkg-deb -e "$DEB" "$TMP/control"
SCRIPT=$TMP/control/postinst
RUN_DIR=$TMP/pi
ARGS=(configure 1.0.0-1)
RESTART="deb-systemd-invoke restart echomaster.service"
service_step_checks postinst
out=$(scriptlet_run "$RUN_DIR" "$SCRIPT" 0 ok ok ok configure "")
check "postinst: a first install: dh_installsystemd's start, no echomaster command, exit 0" \
	bash -c 'grep -qx "deb-systemd-invoke start echomaster.service" <<<"$1" &&
		! grep -q "^echomaster -\|restart" <<<"$1" && grep -qx "exit 0" <<<"$1"' _ "$out"
out=$(scriptlet_run "$RUN_DIR" "$SCRIPT" 3 ok ok ok configure 1.0.0-1)
check "postinst: an upgrade of a stopped service: only dh_installsystemd's start, as before" \
	bash -c 'grep -qx "deb-systemd-invoke start echomaster.service" <<<"$1" &&
		! grep -q "^echomaster -\|restart" <<<"$1" && grep -qx "exit 0" <<<"$1"' _ "$out"

say "== installing $(basename "$DEB")"
if dpkg -i "$DEB" >"$TMP/dpkg-i.log" 2>&1; then
	INSTALLED=true
	ok "dpkg -i $(basename "$DEB")"
else
	cat "$TMP/dpkg-i.log"
	die "dpkg -i failed"
fi

# What the package installed, and how.
check "user echomaster created, no login" \
	bash -c 'getent passwd echomaster | grep -q ":/nonexistent:/usr/sbin/nologin$"'
check "group echomaster created" getent group echomaster
check_eq "installed binary prints the VERSION file's version" \
	"echomaster $EM_VERSION" "$(/usr/sbin/echomaster -v)"
check "the configuration is a conffile" \
	bash -c "dpkg-query -W -f='\${Conffiles}' echomaster | grep -q '^ /etc/echomaster/echomaster.conf '"
check "the installed configuration is conf/echomaster.conf" \
	cmp "$EM_TOP/conf/echomaster.conf" /etc/echomaster/echomaster.conf
check "echomaster -t accepts the installed configuration" /usr/sbin/echomaster -t
check "the unit is enabled (multi-user.target.wants)" \
	test -L /etc/systemd/system/multi-user.target.wants/echomaster.service
check "/run/echomaster made by tmpfiles.d" test -d /run/echomaster
unit=$(dpkg -L echomaster | grep '/systemd/system/echomaster.service$')
check_eq "the unit is in systemd's system unit directory" \
	"$(pkg-config --variable=systemdsystemunitdir systemd)/echomaster.service" "$unit"
out=$(systemd-analyze verify "$unit" 2>&1) || true
check_eq "systemd-analyze verify $unit is silent" "" "$out"

# The manuals, with the installed pages there to resolve their references.
for page in "$EM_TOP/man/echomaster.8" "$EM_TOP/man/echomaster.conf.5"; do
	out=$(mandoc -Tlint "$page" 2>&1 | grep -v 'outdated mandoc.db' || true)
	check_eq "mandoc -Tlint $(basename "$page") is silent" "" "$out"
	out=$(MANWIDTH=80 man --warnings -l "$page" 2>&1 >/dev/null || echo "man failed")
	check_eq "man -l $(basename "$page") renders without warnings" "" "$out"
done
check "man finds the installed echomaster(8)" man -w 8 echomaster
check "man finds the installed echomaster.conf(5)" man -w 5 echomaster.conf

# The manuals agree with the installed binary: every option of --help, every
# setting of -T, and both example configurations as -T prints them.
missing=""
while read -r short long; do
	grep -q "^\.It Fl $short\( Ar [a-z]*\)\? , Fl \\\\-$long" "$EM_TOP/man/echomaster.8" || missing="$missing -$short/--$long"
done < <(/usr/sbin/echomaster -h | sed -n 's/^  -\(.\), --\([a-z]*\).*/\1 \2/p')
check_eq "echomaster(8) lists every option of --help, long form too" "" "$missing"
missing=""
for key in $(/usr/sbin/echomaster -T -c "$EM_TOP/conf/echo.conf" 2>/dev/null | grep -o '[a-z_]* =' | tr -d ' =' | sort -u); do
	grep -q "^\.It Ic $key Pq" "$EM_TOP/man/echomaster.conf.5" || missing="$missing $key"
done
check_eq "echomaster.conf(5) describes every setting -T prints" "" "$missing"
flat() { grep -v '^#' | tr -s ' \n\t' ' ' | sed 's/ *$//'; }
man_example() {   # the literal block of echomaster.conf.5 that holds $1
	awk -v want="$1" '/^\.Bd -literal/ { on = 1; buf = ""; next }
		/^\.Ed/ { if (on && index(buf, want)) print buf; on = 0; next }
		on { buf = buf $0 "\n" }' "$EM_TOP/man/echomaster.conf.5" | flat
}
check_eq "echomaster.conf(5)'s first example is conf/echo.conf as -T prints it" \
	"$(/usr/sbin/echomaster -T -c "$EM_TOP/conf/echo.conf" 2>/dev/null | flat)" "$(man_example 'port = 8087')"
check_eq "echomaster.conf(5)'s second example is the packaged configuration as -T prints it" \
	"$(/usr/sbin/echomaster -T 2>/dev/null | flat)" "$(man_example 'pid_file = "/run/echomaster/echomaster.pid"')"

# The installed daemon, with the installed configuration on a free port.
PORT=$(free_port)
sed -e "s/port = 7;/port = $PORT;/" \
	-e "s|^pid_file = .*|pid_file = \"$TMP/echomaster.pid\";|" \
	-e "s|^control_socket = .*|control_socket = \"$TMP/control.sock\";|" \
	-e 's/stderr = false;/stderr = true;/' \
	/etc/echomaster/echomaster.conf >"$TMP/echomaster.conf"
check_eq "test configuration differs from the installed one in 7 lines" 7 \
	"$(diff /etc/echomaster/echomaster.conf "$TMP/echomaster.conf" | grep -c '^>' || true)"
check "echomaster -t accepts the test configuration" /usr/sbin/echomaster -t -c "$TMP/echomaster.conf"

say "== running /usr/sbin/echomaster -F on port $PORT"
/usr/sbin/echomaster -F -c "$TMP/echomaster.conf" 2>"$TMP/log" &
DAEMON_PID=$!
if wait_for 15 grep -q 'ready: [0-9]* workers, generation 1' "$TMP/log"; then
	ok "the daemon reports ready"
else
	cat "$TMP/log"
	die "the daemon did not report ready within 15 s"
fi
check_eq "TCP over IPv4 gets the upper-cased reply" "HELLO FROM DPKG, 123!" \
	"$(tcp_roundtrip 127.0.0.1 "$PORT" 'hello from dpkg, 123!' || true)"
check_eq "TCP over IPv6 gets the upper-cased reply" "IPV6 ECHO" \
	"$(tcp_roundtrip ::1 "$PORT" 'ipv6 echo' || true)"
check_eq "UDP over IPv4 gets the upper-cased reply" "A DATAGRAM" \
	"$(udp_roundtrip 127.0.0.1 "$PORT" 'a datagram' || true)"
check_eq "UDP over IPv6 gets the upper-cased reply" "V6 DATAGRAM" \
	"$(udp_roundtrip ::1 "$PORT" 'v6 datagram' || true)"
check_eq "the pid file names the master" "$DAEMON_PID" "$(tr -d '[:space:]' <"$TMP/echomaster.pid")"

uid=$(id -u echomaster)
workers=$(pgrep -P "$DAEMON_PID" || true)
bad=""
for w in $workers; do
	[ "$(awk '/^Uid:/ { print $2 $3 $4 $5 }' "/proc/$w/status")" = "$uid$uid$uid$uid" ] || bad="$bad $w"
	tr '\0' ' ' <"/proc/$w/cmdline" | grep -q '^echomaster: worker process' || bad="$bad $w(title)"
done
if [ -n "$workers" ] && [ -z "$bad" ]; then
	ok "every worker ($(echo $workers)) runs as echomaster and is titled 'echomaster: worker process'"
else
	not_ok "workers as echomaster: workers [$(echo $workers)], wrong:$bad"
fi
check "the master is titled 'echomaster: master process /usr/sbin/echomaster ...'" \
	bash -c "tr '\\0' ' ' </proc/$DAEMON_PID/cmdline | grep -q '^echomaster: master process /usr/sbin/echomaster -F -c '"

check "echomaster -s reload" /usr/sbin/echomaster -s reload -c "$TMP/echomaster.conf"
check "the reload completes (generation 2)" wait_for 15 grep -q 'reload ok: generation 2' "$TMP/log"
check_eq "it still serves after the reload" "AFTER RELOAD" \
	"$(tcp_roundtrip 127.0.0.1 "$PORT" 'after reload' || true)"
check "echomaster -s stop" /usr/sbin/echomaster -s stop -c "$TMP/echomaster.conf"
rc=0
wait_for 5 eval "! kill -0 $DAEMON_PID" || true
wait "$DAEMON_PID" || rc=$?
DAEMON_PID=
check_eq "the master exits 0 on stop" 0 "$rc"
check "the pid file is removed on exit" test ! -e "$TMP/echomaster.pid"

say "== purging"
dpkg -L echomaster >"$TMP/files"
check "dpkg --purge echomaster" dpkg --purge echomaster
INSTALLED=false
check "dpkg forgets echomaster" \
	bash -c "! dpkg-query -W -f='\${Status}' echomaster 2>/dev/null | grep -q 'installed'"
left=""
while IFS= read -r f; do
	# Directories shared with other packages stay; every file must go.
	if [ -e "$f" ] && [ ! -d "$f" ]; then left="$left $f"; fi
done <"$TMP/files"
check_eq "no file of the package is left" "" "$left"
for f in /etc/echomaster /run/echomaster \
	/etc/systemd/system/multi-user.target.wants/echomaster.service \
	/var/lib/systemd/deb-systemd-helper-enabled/echomaster.service \
	/var/lib/systemd/deb-systemd-helper-enabled/multi-user.target.wants/echomaster.service; do
	check "purge removed $f" test ! -e "$f"
done
# Debian keeps system users on purge: files may still carry their IDs.
check "the system user echomaster is kept, as Debian policy does" getent passwd echomaster

summary test-deb-host
