#!/bin/bash
# Boots the .deb under a real systemd: a minimal Debian 12 root made by
# debootstrap (cached under build/nspawn/base, reused across runs; delete it
# to refresh), the package installed in a copy of it with apt, then the copy
# booted with `systemd-nspawn -b` on a private network. Checks that the unit
# is enabled, becomes active only once the master has sent READY=1 (its
# STATUS= line shows the workers and generation), the workers run as
# echomaster, clients get their replies on port 7, `systemctl reload` and
# `echomaster -s reload` wait for the new generation, `echomaster -s status`
# lists the workers, a broken configuration fails `systemctl reload` and
# `restart` (the -t in ExecReload and ExecStartPre) while the daemon keeps
# serving the old one, a configuration the daemon itself refuses fails
# `systemctl reload` through the control socket and shows in the unit's
# status, the log lines reach the journal through syslog, and stop and purge
# leave nothing running. Then the file descriptor store: it follows
# reloads, a package upgrade to the next version (make-next.sh) under 100
# streams and a churn is a live upgrade (no byte lost, no connect refused,
# the unit never restarts, the new binary is the main PID), the same
# package installed again over a configuration its binary rejects fails
# the live upgrade and leaves the old master serving (dpkg still succeeds,
# no restart), and `systemctl restart` under a churn refuses no connect;
# last, the .rpm (Debian's rpm)
# installed and upgraded live by rpm -Uvh the same way.
#
# Commands run inside the container through nsenter on its init, since this
# host's PID 1 is not systemd (no machined, hence --register=no --keep-unit).
# Needs root, debootstrap and systemd-container; the first run downloads
# about 100 MB from EM_DEBIAN_MIRROR (default http://deb.debian.org/debian).
set -euo pipefail
. "$(dirname "$0")/lib.sh"

[ "$(id -u)" = 0 ] || die "test-nspawn: run as root"
DEB=$(deb_file)
[ -n "$DEB" ] || die "test-nspawn: no build/echomaster_$EM_VERSION-*.deb (make deb)"
MIRROR=${EM_DEBIAN_MIRROR:-http://deb.debian.org/debian}
SUITE=bookworm
NSPAWN_DIR=$EM_BUILD/nspawn
BASE=$NSPAWN_DIR/base
ROOT=$NSPAWN_DIR/root
NSPAWN_PID=
LEADER=

cleanup() {
	if [ -n "$NSPAWN_PID" ] && kill -0 "$NSPAWN_PID" 2>/dev/null; then
		kill -TERM "$NSPAWN_PID" 2>/dev/null || true   # nspawn asks the container to halt
		wait_for 30 eval "! kill -0 $NSPAWN_PID" || kill -KILL "$NSPAWN_PID" 2>/dev/null || true
		wait "$NSPAWN_PID" 2>/dev/null || true
	fi
	rm -rf "$ROOT"
}
trap cleanup EXIT

# The package's dependencies, first alternatives, without versions.
deb_depends() {
	dpkg-deb -f "$DEB" Depends | tr ',' '\n' | sed 's/|.*//; s/(.*)//; s/[[:space:]]//g' | grep .
}

make_base() {
	local t0=$SECONDS
	say "== building the cached Debian $SUITE root in $BASE (once)"
	rm -rf "$BASE.tmp"
	mkdir -p "$NSPAWN_DIR"
	debootstrap --variant=minbase --include=systemd,systemd-sysv \
		"$SUITE" "$BASE.tmp" "$MIRROR" >"$NSPAWN_DIR/debootstrap.log" 2>&1 ||
		{ tail -20 "$NSPAWN_DIR/debootstrap.log"; die "debootstrap failed (log: $NSPAWN_DIR/debootstrap.log)"; }
	# Fetch what the package depends on now, so later runs install offline;
	# and Debian's rpm, for the .rpm's upgrade.
	chroot "$BASE.tmp" apt-get install --download-only -y -qq $(deb_depends) rpm \
		>>"$NSPAWN_DIR/debootstrap.log" 2>&1 ||
		die "downloading the package's dependencies failed (log: $NSPAWN_DIR/debootstrap.log)"
	mv "$BASE.tmp" "$BASE"
	say "   built in $((SECONDS - t0)) s"
}

# in_ct CMD...: runs CMD in every namespace of the booted container.
in_ct() { nsenter -t "$LEADER" -a "$@"; }
# in_ct_net CMD...: runs a host command in the container's network only.
in_ct_net() { nsenter -t "$LEADER" -n "$@"; }
ct_tcp() { in_ct_net bash -c "$(declare -f tcp_roundtrip); tcp_roundtrip $1 $2 '$3'"; }
ct_udp() { in_ct_net bash -c "$(declare -f udp_roundtrip); udp_roundtrip $1 $2 '$3'"; }
ct_journal() { in_ct journalctl --no-pager -q -o cat _SYSTEMD_UNIT=echomaster.service "$@" 2>/dev/null; }
ct_log_has() { ct_journal _TRANSPORT=syslog | grep -q -- "$1"; }
is_active() { [ "$(in_ct systemctl is-active echomaster 2>/dev/null)" = "$1" ]; }
workers_of() { in_ct ps -o pid= --ppid "$1" 2>/dev/null | xargs; }
pids_gone() { for p in "$@"; do in_ct kill -0 "$p" 2>/dev/null && return 1; done; return 0; }

[ -d "$BASE" ] || make_base

say "== installing $(basename "$DEB") into a copy of the cached root"
rm -rf "$ROOT"
mkdir "$ROOT"
cp -a "$BASE/." "$ROOT/"   # the contents: BASE may be a symlink
cp "$DEB" "$ROOT/var/tmp/"
ct_deb=/var/tmp/$(basename "$DEB")
nspawn_run() {
	systemd-nspawn -q -D "$ROOT" --register=no --keep-unit --setenv=DEBIAN_FRONTEND=noninteractive "$@"
}
# Offline first (no network at all): the dependencies come from the cache.
if nspawn_run --private-network apt-get install -y -qq "$ct_deb" rpm >"$NSPAWN_DIR/install.log" 2>&1; then
	ok "apt-get install (offline, dependencies from the cache)"
else
	say "   the cache lacks a dependency; installing online (rm -rf $BASE to refresh the cache)"
	nspawn_run sh -c "apt-get update -qq && apt-get install -y -qq $ct_deb rpm" >>"$NSPAWN_DIR/install.log" 2>&1 ||
		{ tail -20 "$NSPAWN_DIR/install.log"; die "installing the package in the container failed"; }
	ok "apt-get install (online)"
fi

say "== booting it with systemd-nspawn -b"
t0=$SECONDS
# --system-call-filter: nspawn's own filter (systemd 252) lacks Landlock's
# calls, as @system-service does; the unit adds them for the service, and the
# container must pass them through for the check that Landlock is on.
systemd-nspawn -q -D "$ROOT" -b --private-network --register=no --keep-unit \
	--system-call-filter='landlock_create_ruleset landlock_add_rule landlock_restrict_self' \
	--console=pipe </dev/null >"$NSPAWN_DIR/boot.log" 2>&1 &
NSPAWN_PID=$!
find_leader() { LEADER=$(pgrep -P "$NSPAWN_PID" -x systemd) && [ -n "$LEADER" ]; }
wait_for 20 find_leader || die "the container's systemd did not start (log: $NSPAWN_DIR/boot.log)"
# systemctl answers once systemd has its private socket; then wait for boot.
systemctl_answers() { [ -n "$(in_ct systemctl is-system-running 2>/dev/null)" ]; }
wait_for 30 systemctl_answers || true
state=$(timeout 90 nsenter -t "$LEADER" -a systemctl is-system-running --wait 2>/dev/null || true)
check_eq "the container boots to 'running' ($((SECONDS - t0)) s)" running "$state"
[ "$state" = running ] || in_ct systemctl --failed --no-pager || true

check_eq "echomaster.service is enabled" enabled "$(in_ct systemctl is-enabled echomaster 2>&1 || true)"
if wait_for 20 is_active active; then ok "echomaster.service is active"; else
	not_ok "echomaster.service is not active"
	in_ct systemctl status --no-pager echomaster || true
	in_ct journalctl --no-pager -u echomaster || true
	die "no point going on"
fi
status_text() { in_ct systemctl show -p StatusText --value echomaster; }
ct_ready() {
	local m
	m=$(in_ct systemctl show -p MainPID --value echomaster)
	[ "$m" != 0 ] && in_ct journalctl --no-pager -q -o cat _PID="$m" _TRANSPORT=syslog |
		grep -q 'ready: [0-9]* workers, generation 1'
}
check "it logged ready through syslog" wait_for 15 ct_ready
ncpu=$(in_ct nproc)
check_eq "Type=notify, NotifyAccess=main" "notify main" \
	"$(in_ct systemctl show -p Type --value echomaster) $(in_ct systemctl show -p NotifyAccess --value echomaster)"
check_eq "the unit's status is the master's READY=1 STATUS= line" \
	"serving: $ncpu workers, generation 1" "$(status_text)"

MAIN=$(in_ct systemctl show -p MainPID --value echomaster)
check_eq "the master runs as root" root "$(in_ct ps -o user= -p "$MAIN" | xargs)"
check_eq "the master's title" "echomaster: master process /usr/sbin/echomaster -F -c /etc/echomaster/echomaster.conf" \
	"$(in_ct ps -o args= -p "$MAIN")"
workers=$(workers_of "$MAIN")
check_eq "workers = auto starts one per CPU" "$ncpu" "$(wc -w <<<"$workers")"
check_eq "every worker runs as echomaster" "echomaster" \
	"$(in_ct ps -o user= --ppid "$MAIN" | sort -u | xargs)"
check_eq "every worker is titled 'echomaster: worker process'" "echomaster: worker process" \
	"$(in_ct ps -o args= --ppid "$MAIN" | sort -u)"
sandbox_of() {   # Seccomp and NoNewPrivs of each of the pids, one "S/N" a pid
	for p in "$@"; do
		in_ct awk '/^Seccomp:/ { s = $2 } /^NoNewPrivs:/ { n = $2 } END { print s "/" n }' \
		    "/proc/$p/status"
	done | sort -u | xargs
}
check_eq "under the unit's own filter every worker is sandboxed (Seccomp 2, NoNewPrivs 1)" "2/1" \
	"$(sandbox_of $workers)"
check "the sandbox has Landlock under the unit (its calls are in SystemCallFilter)" \
	ct_log_has "sandbox on: no_new_privs, Landlock ABI"

check_eq "TCP 127.0.0.1:7 answers upper-cased" "HELLO, SYSTEMD" "$(ct_tcp 127.0.0.1 7 'hello, systemd' || true)"
check_eq "TCP [::1]:7 answers upper-cased" "OVER IPV6" "$(ct_tcp ::1 7 'over ipv6' || true)"
check_eq "UDP 127.0.0.1:7 answers upper-cased" "UDP UNDER SYSTEMD" "$(ct_udp 127.0.0.1 7 'udp under systemd' || true)"
check_eq "UDP [::1]:7 answers upper-cased" "UDP6" "$(ct_udp ::1 7 'udp6' || true)"
check "the start lines are in the journal as syslog from the unit" \
	ct_log_has "echomaster $EM_VERSION starting: config /etc/echomaster/echomaster.conf"
check_eq "syslog identifier is echomaster" echomaster \
	"$(in_ct journalctl --no-pager -q -o export _SYSTEMD_UNIT=echomaster.service _TRANSPORT=syslog |
		sed -n 's/^SYSLOG_IDENTIFIER=//p' | sort -u)"

status_lists() {   # echomaster -s status names every worker of the master
	local out
	out=$(in_ct /usr/sbin/echomaster -s status) || return 1
	printf '%s\n' "$out"
	for w in $(workers_of "$MAIN"); do grep -qw "$w" <<<"$out" || return 1; done
}
check "echomaster -s status (as root, through the control socket) lists the workers ($workers)" status_lists
check "echomaster -s status --json parses" bash -c \
	"nsenter -t $LEADER -a /usr/sbin/echomaster -s status --json | python3 -m json.tool"

say "== Type=notify: systemctl start returns once the workers are ready"
check "systemctl restart echomaster" in_ct systemctl restart echomaster
# No wait from here: the start job ended on READY=1.
check_eq "at once: the status shows the new master's first generation" \
	"serving: $ncpu workers, generation 1" "$(status_text)"
check_eq "at once: a client is answered" "AT ONCE" "$(ct_tcp 127.0.0.1 7 'at once' || true)"
MAIN=$(in_ct systemctl show -p MainPID --value echomaster)
workers=$(workers_of "$MAIN")

say "== reload"
check "systemctl reload echomaster" in_ct systemctl reload echomaster
# ExecReload's -s reload waits for the new workers: no wait here either.
check_eq "at once: the status shows generation 2" "serving: $ncpu workers, generation 2" "$(status_text)"
check "the reload is logged (generation 2)" wait_for 15 ct_log_has 'reload ok: generation 2'
check_eq "the master is the same process" "$MAIN" "$(in_ct systemctl show -p MainPID --value echomaster)"
# The master is root without CAP_KILL's bypass otherwise: draining the old,
# unprivileged workers proves it can still signal them.
check "the old workers ($workers) exit" wait_for 15 pids_gone $workers
check_eq "the new workers run as echomaster" "echomaster" "$(in_ct ps -o user= --ppid "$MAIN" | sort -u | xargs)"
check_eq "it answers after the reload" "RELOADED" "$(ct_tcp 127.0.0.1 7 'reloaded' || true)"
out=$(in_ct /usr/sbin/echomaster -s reload 2>&1) && rc=0 || rc=$?
check_eq "echomaster -s reload (through the control socket) exits 0" 0 "$rc"
check "it prints reload ok and generation 3 ($out)" grep -q 'reload ok.*3' <<<"$out"
check_eq "the status shows generation 3" "serving: $ncpu workers, generation 3" "$(status_text)"

say "== a broken configuration"
in_ct cp /etc/echomaster/echomaster.conf /root/echomaster.conf.good
in_ct sh -c 'echo "bogus_setting = 1;" >>/etc/echomaster/echomaster.conf'
check "systemctl reload fails on a broken file (ExecReload runs -t)" \
	fails in_ct systemctl reload echomaster
check_eq "the unit stays active" active "$(in_ct systemctl is-active echomaster || true)"
check_eq "its status still shows generation 3" "serving: $ncpu workers, generation 3" "$(status_text)"
out=$(in_ct /usr/sbin/echomaster -s reload 2>&1) && rc=0 || rc=$?
check "echomaster -s reload, past -t, fails ($rc) and prints FILE:LINE" \
	test "$rc" -ne 0 -a -n "$(grep '/etc/echomaster/echomaster.conf:[0-9]*: unknown setting' <<<"$out")"
check "the daemon logs the refusal" wait_for 15 ct_log_has \
	'reload failed: /etc/echomaster/echomaster.conf:[0-9]*: unknown setting'
check "the unit's status says the reload failed, and why" \
	grep -q '^reload failed: /etc/echomaster/echomaster.conf:[0-9]*: unknown setting.*generation 3' <<<"$(status_text)"
check_eq "the old configuration keeps serving" "STILL HERE" "$(ct_tcp 127.0.0.1 7 'still here' || true)"
# A file -t accepts but the daemon cannot apply: an address not on the host.
in_ct cp /root/echomaster.conf.good /etc/echomaster/echomaster.conf
in_ct sed -i '/proto = "tcp"; address = "\*"/a\	{ proto = "tcp"; address = "192.0.2.1"; port = 7; mode = "upper"; },' \
	/etc/echomaster/echomaster.conf
check "echomaster -t accepts a listener on 192.0.2.1" in_ct /usr/sbin/echomaster -t
check "systemctl reload fails when the daemon cannot bind it (ExecReload's -s reload)" \
	fails in_ct systemctl reload echomaster
check "the unit's status says why" grep -q '^reload failed: .*192.0.2.1' <<<"$(status_text)"
check_eq "the unit stays active, the master the same" "active $MAIN" \
	"$(in_ct systemctl is-active echomaster || true) $(in_ct systemctl show -p MainPID --value echomaster)"
check_eq "and serving" "STILL SERVING" "$(ct_tcp 127.0.0.1 7 'still serving' || true)"
in_ct sh -c 'cp /root/echomaster.conf.good /etc/echomaster/echomaster.conf &&
	echo "bogus_setting = 1;" >>/etc/echomaster/echomaster.conf'
check "systemctl restart fails on the broken file" fails in_ct systemctl restart echomaster
is_failed() { [ "$(in_ct systemctl show -p ActiveState --value echomaster)" = failed ]; }
check "the unit ends failed, not in a restart loop" wait_for 30 is_failed
restarts=$(in_ct systemctl show -p NRestarts --value echomaster)
check "at most 2 automatic retries ($restarts; StartLimitBurst=3)" test "$restarts" -le 2
startpre_logged() {
	ct_journal _TRANSPORT=stdout | grep -q '^/etc/echomaster/echomaster.conf:[0-9]*: unknown setting'
}
check "ExecStartPre's FILE:LINE message is in the journal" startpre_logged
in_ct cp /root/echomaster.conf.good /etc/echomaster/echomaster.conf
in_ct systemctl reset-failed echomaster
check "systemctl start with the file repaired" in_ct systemctl start echomaster
check "active and ready again" wait_for 20 ct_ready
check_eq "and answering" "BACK" "$(ct_tcp 127.0.0.1 7 'back' || true)"

say "== systemd's file descriptor store holds the TCP listeners"
# Not the UDP ones: the master's UDP socket receives nothing (set aside).
nlisten=$(in_ct grep -c '^[[:space:]]*{ proto = "tcp"' /etc/echomaster/echomaster.conf)
fdstore() { in_ct systemctl show -p NFileDescriptorStore --value echomaster; }
check_eq "FileDescriptorStoreMax=64" 64 "$(in_ct systemctl show -p FileDescriptorStoreMax --value echomaster)"
check_eq "the store holds the $nlisten TCP listeners" "$nlisten" "$(fdstore)"
in_ct sed -i '/proto = "tcp"; address = "\*"/a\	{ proto = "tcp"; address = "127.0.0.1"; port = 8; mode = "upper"; },' \
	/etc/echomaster/echomaster.conf
check "systemctl reload with a listener on 127.0.0.1:8 added" in_ct systemctl reload echomaster
check_eq "the store holds it too" "$((nlisten + 1))" "$(fdstore)"
check_eq "port 8 answers" "PORT 8" "$(ct_tcp 127.0.0.1 8 'port 8' || true)"
in_ct cp /root/echomaster.conf.good /etc/echomaster/echomaster.conf
check "systemctl reload with it removed again" in_ct systemctl reload echomaster
check_eq "the store let it go" "$nlisten" "$(fdstore)"
check "port 8 refuses connects: nothing holds it" fails ct_tcp 127.0.0.1 8 'closed'

# clients_start NAME ARGS...: tests/packaging/clients.py in the container's
# network, on port 7, in the background (its pid in CLIENTS_PID); its
# status line in NSPAWN_DIR/NAME.status, its last line in NAME.out.
clients_start() {
	local name=$1
	shift
	rm -f "$NSPAWN_DIR/$name".{status,stop,out}
	in_ct_net python3 "$EM_TOP/tests/packaging/clients.py" --port 7 --max-seconds 120 \
		--status "$NSPAWN_DIR/$name.status" --stop "$NSPAWN_DIR/$name.stop" "$@" \
		>"$NSPAWN_DIR/$name.out" 2>&1 &
	CLIENTS_PID=$!
}
# clients_field NAME FIELD: a count from NAME's status line.
clients_field() {
	awk -v f="$2" '{ for (i = 1; i < NF; i++) if ($i == f) print $(i + 1) }' \
		"$NSPAWN_DIR/$1.status" 2>/dev/null
}
# clients_past NAME FIELD N: FIELD has grown past N.
clients_past() { local v; v=$(clients_field "$1" "$2"); [ -n "$v" ] && [ "$v" -gt "$3" ]; }
# clients_stop NAME: asks them to finish and waits (not in a $(...): wait
# sees only this shell's children); their last line is then in CLIENTS_LINE.
clients_stop() {
	touch "$NSPAWN_DIR/$1.stop"
	wait "$CLIENTS_PID" || true
	CLIENTS_LINE=$(tail -n 1 "$NSPAWN_DIR/$1.out")
}
unit_show() { in_ct systemctl show -p "$1" --value echomaster; }

NEXT_DEB=$(next_deb_file)
say "== upgrading the package live: dpkg -i $(basename "${NEXT_DEB:-none}") under 100 streams and a churn"
[ -n "$NEXT_DEB" ] || die "no $EM_NEXT_VERSION .deb (tests/packaging/make-next.sh)"
cp "$NEXT_DEB" "$ROOT/var/tmp/"
OLD_MAIN=$(unit_show MainPID)
old_workers=$(workers_of "$OLD_MAIN")
invocation=$(unit_show InvocationID)
restarts=$(unit_show NRestarts)
entered=$(unit_show ActiveEnterTimestampMonotonic)
clients_start upgrade --streams 100 --churn 2
check "100 streams connected and echoing, the churn running" \
	wait_for 20 eval 'clients_past upgrade echoed 100000 && clients_past upgrade churned 100'
t0=$SECONDS
out=$(in_ct dpkg -i "/var/tmp/$(basename "$NEXT_DEB")" 2>&1) && rc=0 || rc=$?
check_eq "dpkg -i of $EM_NEXT_VERSION exits 0 ($((SECONDS - t0)) s)" 0 "$rc"
upgraded=$(grep -o "upgrade ok: pid [0-9]*, version [^,]*, generation [0-9]*" <<<"$out" || true)
check "its postinst ran echomaster -s upgrade: '${upgraded:-$(tail -n 3 <<<"$out" | xargs)}'" \
	grep -q "version $EM_NEXT_VERSION," <<<"$upgraded"
NEW_MAIN=$(sed -n 's/.*pid \([0-9]*\),.*/\1/p' <<<"$upgraded")
gen=$(sed -n 's/.*generation \([0-9]*\)$/\1/p' <<<"$upgraded")
check "no restart fallback" fails grep -q 'restarting echomaster.service instead' <<<"$out"
check_eq "the unit stayed active, same invocation, no restart" \
	"active $invocation $restarts $entered" \
	"$(in_ct systemctl is-active echomaster || true) $(unit_show InvocationID) $(unit_show NRestarts) $(unit_show ActiveEnterTimestampMonotonic)"
check_eq "systemctl show -p MainPID names the new master" "${NEW_MAIN:-?}" "$(unit_show MainPID)"
check "which is not the old one ($OLD_MAIN)" test "${NEW_MAIN:-$OLD_MAIN}" != "$OLD_MAIN"
check_eq "echomaster -v of its /proc/PID/exe" "echomaster $EM_NEXT_VERSION" \
	"$(in_ct "/proc/${NEW_MAIN:-0}/exe" -v 2>&1 || true)"
check_eq "the pid file names it" "${NEW_MAIN:-?}" "$(in_ct cat /run/echomaster/echomaster.pid 2>&1 | xargs)"
check "the old master and workers ($OLD_MAIN $old_workers) are gone" wait_for 15 pids_gone $OLD_MAIN $old_workers
check_eq "the new master's $ncpu workers run as echomaster" "$ncpu echomaster" \
	"$(workers_of "${NEW_MAIN:-0}" | wc -w) $(in_ct ps -o user= --ppid "${NEW_MAIN:-0}" | sort -u | xargs)"
check_eq "the unit's status is the new master's" "serving: $ncpu workers, generation ${gen:-?}" "$(status_text)"
check_eq "the store still holds the $nlisten listeners" "$nlisten" "$(fdstore)"
# The new master keeps quiet until it is the main process: systemd would
# ignore it, with a warning in the journal each time.
check_eq "systemd ignored no notification from a not-yet-main master" 0 \
	"$(in_ct journalctl --no-pager -q -o cat _PID=1 | grep -c 'reception only permitted for main PID' || true)"
echoed=$(clients_field upgrade echoed)
churned=$(clients_field upgrade churned)
check "the streams and the churn go on through the new workers" \
	wait_for 15 eval "clients_past upgrade echoed $((echoed + 100000)) && clients_past upgrade churned $((churned + 100))"
clients_stop upgrade
line=$CLIENTS_LINE
say "   clients: $line"
check_eq "across the upgrade: 100 streams held, none broken, no byte wrong; no connect refused or cut" \
	"streams 100 broken 0 wrong 0 refused 0 cut 0" \
	"$(awk '{ print $1, $2, $3, $4, $5, $6, $11, $12, $13, $14 }' <<<"$line")"

say "== dpkg -i again over a configuration the binary rejects: the live upgrade fails, no restart"
in_ct sh -c 'cp /etc/echomaster/echomaster.conf /root/echomaster.conf.good &&
	echo "bogus_setting = 1;" >>/etc/echomaster/echomaster.conf'
MAIN=$(unit_show MainPID)
invocation=$(unit_show InvocationID)
restarts=$(unit_show NRestarts)
out=$(in_ct dpkg -i "/var/tmp/$(basename "$NEXT_DEB")" 2>&1) && rc=0 || rc=$?
check_eq "dpkg -i exits 0" 0 "$rc"
check_eq "the package is configured (not left half-configured)" "install ok installed" \
	"$(in_ct dpkg-query -W -f='${Status}' echomaster 2>&1)"
check "its postinst says why the live upgrade failed" \
	grep -q 'the live upgrade failed: upgrade failed: /usr/sbin/echomaster -t: .*unknown setting' <<<"$out"
check "it says the old version keeps serving and does not restart" \
	bash -c 'grep -q "not restarting echomaster.service: the old version keeps serving" <<<"$1" &&
		! grep -q "restarting echomaster.service instead" <<<"$1"' _ "$out"
check_eq "the unit stayed active: same invocation, master, no restart" "active $invocation $MAIN $restarts" \
	"$(in_ct systemctl is-active echomaster || true) $(unit_show InvocationID) $(unit_show MainPID) $(unit_show NRestarts)"
check_eq "and serving" "UNTOUCHED" "$(ct_tcp 127.0.0.1 7 'untouched' || true)"
in_ct cp /root/echomaster.conf.good /etc/echomaster/echomaster.conf

say "== systemctl restart under a churn: the stored listeners refuse nobody"
MAIN=$(unit_show MainPID)
clients_start restart --churn 2
check "the churn is running" wait_for 20 clients_past restart churned 100
t0=$SECONDS
check "systemctl restart echomaster" in_ct systemctl restart echomaster
new=$(unit_show MainPID)
check "a new master ($new, was $MAIN)" test "$new" != "$MAIN" -a "$new" != 0
adopted() {
	in_ct journalctl --no-pager -q -o cat _PID="$new" _TRANSPORT=syslog | grep -c 'listening on .*inherited'
}
check_eq "it adopted the $nlisten stored listeners (logged 'inherited')" "$nlisten" "$(adopted || true)"
churned=$(clients_field restart churned)
check "the churn goes on" wait_for 15 clients_past restart churned $((churned + 100))
clients_stop restart
line=$CLIENTS_LINE
say "   clients: $line ($((SECONDS - t0)) s)"
check_eq "no connect refused across the restart" "refused 0" "$(awk '{ print $11, $12 }' <<<"$line")"
say "   (cut: in-flight churn connections a fast stop closes; the restart still cuts established ones)"
check_eq "the store holds the $nlisten listeners again" "$nlisten" "$(fdstore)"

say "== stop and purge"
check "systemctl stop echomaster" in_ct systemctl stop echomaster
check_eq "it stopped cleanly (Result=success)" success "$(in_ct systemctl show -p Result --value echomaster)"
check_eq "no echomaster process is left" "" "$(in_ct pgrep -a echomaster || true)"
check "RuntimeDirectory /run/echomaster is removed" in_ct test ! -e /run/echomaster
say "   $(in_ct systemd-analyze security echomaster 2>/dev/null | tail -n 1)"
check "systemctl start, then dpkg --purge echomaster" in_ct sh -c \
	'systemctl start echomaster && dpkg --purge echomaster >/dev/null'
check_eq "purge stopped it" "" "$(in_ct pgrep -a echomaster || true)"
check "purge removed /etc/echomaster" in_ct test ! -e /etc/echomaster
check "purge removed the unit and its enablement" in_ct sh -c \
	'! systemctl cat echomaster >/dev/null 2>&1 && ! test -e /etc/systemd/system/multi-user.target.wants/echomaster.service'

say "== the .rpm under systemd: rpm -Uvh of $EM_NEXT_VERSION upgrades it live"
# Debian's rpm has no systemd macros: %post neither enables nor starts the
# service (started by hand here) and %preun does not stop it; %posttrans,
# plain shell, is the same as on Fedora.
RPM=$(rpm_file)
NEXT_RPM=$(next_rpm_file)
[ -n "$RPM" ] && [ -n "$NEXT_RPM" ] || die "no .rpm of $EM_VERSION and $EM_NEXT_VERSION (make rpm, make-next.sh)"
cp "$RPM" "$NEXT_RPM" "$ROOT/var/tmp/"
ct_rpm() {
	local out rc=0
	out=$(in_ct rpm "$@" 2>&1) || rc=$?
	grep -v -e 'should not be used directly' -e 'assuming you know what you are doing' <<<"$out" || true
	return "$rc"
}
check "rpm -ivh --nodeps $(basename "$RPM")" ct_rpm -ivh --nodeps "/var/tmp/$(basename "$RPM")"
check "systemctl daemon-reload, start" in_ct sh -c 'systemctl daemon-reload && systemctl start echomaster'
check_eq "its unit is the rpm's" "echomaster-$EM_VERSION-1" \
	"$(in_ct rpm -qf --qf '%{NAME}-%{VERSION}-%{RELEASE}' "$(in_ct readlink -f "$(unit_show FragmentPath)")" 2>/dev/null)"
OLD_MAIN=$(unit_show MainPID)
invocation=$(unit_show InvocationID)
clients_start rpm --streams 50 --churn 2
check "50 streams and the churn running" \
	wait_for 20 eval 'clients_past rpm echoed 50000 && clients_past rpm churned 100'
out=$(ct_rpm -Uvh --nodeps "/var/tmp/$(basename "$NEXT_RPM")") && rc=0 || rc=$?
check_eq "rpm -Uvh --nodeps $(basename "$NEXT_RPM") exits 0" 0 "$rc"
upgraded=$(grep -o "upgrade ok: pid [0-9]*, version [^,]*, generation [0-9]*" <<<"$out" || true)
check "its %posttrans ran echomaster -s upgrade: '${upgraded:-$(tail -n 3 <<<"$out" | xargs)}'" \
	grep -q "version $EM_NEXT_VERSION," <<<"$upgraded"
NEW_MAIN=$(sed -n 's/.*pid \([0-9]*\),.*/\1/p' <<<"$upgraded")
check_eq "the unit stayed active, same invocation; MainPID is the new master" \
	"active $invocation ${NEW_MAIN:-?}" \
	"$(in_ct systemctl is-active echomaster || true) $(unit_show InvocationID) $(unit_show MainPID)"
check_eq "echomaster -v of its /proc/PID/exe" "echomaster $EM_NEXT_VERSION" \
	"$(in_ct "/proc/${NEW_MAIN:-0}/exe" -v 2>&1 || true)"
check "the old master is gone" wait_for 15 pids_gone "$OLD_MAIN"
churned=$(clients_field rpm churned)
check "the churn goes on" wait_for 15 clients_past rpm churned $((churned + 100))
clients_stop rpm
line=$CLIENTS_LINE
say "   clients: $line"
check_eq "across the rpm upgrade: 50 streams held, none broken, no byte wrong; no connect refused or cut" \
	"streams 50 broken 0 wrong 0 refused 0 cut 0" \
	"$(awk '{ print $1, $2, $3, $4, $5, $6, $11, $12, $13, $14 }' <<<"$line")"
check "rpm -e --nodeps echomaster, systemctl stop" in_ct sh -c \
	'rpm -e --nodeps echomaster 2>/dev/null; systemctl stop echomaster'
check_eq "nothing is left running" "" "$(in_ct pgrep -a echomaster || true)"

summary test-nspawn
