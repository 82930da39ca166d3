#!/bin/bash
# make install / make uninstall into scratch DESTDIRs: the layout for
# PREFIX=/usr (what the packages use) and the default /usr/local, an
# administrator's configuration kept by both, and nothing left behind.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

TMP=$(mktemp -d /tmp/em-install.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
cd "$EM_TOP"
mk() { make --no-print-directory -s "$@" >"$TMP/make.log" 2>&1 || { cat "$TMP/make.log"; return 1; }; }
files() { (cd "$1" && find . ! -type d | sed 's|^\.||' | sort); }

check "make builds build/echomaster" mk all
unitdir=$(pkg-config --variable=systemdsystemunitdir systemd 2>/dev/null || echo /lib/systemd/system)
sysusersdir=$(pkg-config --variable=sysusersdir systemd 2>/dev/null || echo /usr/lib/sysusers.d)
tmpfilesdir=$(pkg-config --variable=tmpfilesdir systemd 2>/dev/null || echo /usr/lib/tmpfiles.d)

say "== PREFIX=/usr"
D=$TMP/usr
check "make install DESTDIR=... PREFIX=/usr" mk install DESTDIR="$D" PREFIX=/usr
check_eq "it installs exactly the expected files" "$(printf '%s\n' \
	/etc/echomaster/echomaster.conf \
	"$unitdir/echomaster.service" \
	/usr/sbin/echomaster \
	/usr/share/man/man5/echomaster.conf.5 \
	/usr/share/man/man8/echomaster.8 \
	"$sysusersdir/echomaster.conf" \
	"$tmpfilesdir/echomaster.conf" | sort)" "$(files "$D")"
check "the unit runs /usr/sbin/echomaster" \
	grep -q '^ExecStart=/usr/sbin/echomaster -F -c /etc/echomaster/echomaster.conf$' "$D$unitdir/echomaster.service"
check_eq "the binary is mode 755" 755 "$(stat -c %a "$D/usr/sbin/echomaster")"
echo '# edited by the administrator' >>"$D/etc/echomaster/echomaster.conf"
check "a second install keeps an edited configuration" bash -c \
	"make --no-print-directory -s install DESTDIR='$D' PREFIX=/usr | grep -q 'keeping the existing' &&
	 tail -n 1 '$D/etc/echomaster/echomaster.conf' | grep -q 'edited by the administrator'"
check "make uninstall" mk uninstall DESTDIR="$D" PREFIX=/usr
check_eq "uninstall removes all but the edited configuration" /etc/echomaster/echomaster.conf "$(files "$D")"
cp conf/echomaster.conf "$D/etc/echomaster/echomaster.conf"
check "make uninstall with the shipped configuration" mk uninstall DESTDIR="$D" PREFIX=/usr
check_eq "then nothing is left" "" "$(files "$D")"
check "and /etc/echomaster is gone" test ! -e "$D/etc/echomaster"

say "== PREFIX=/usr/local (the default)"
D=$TMP/local
check "make install DESTDIR=..." mk install DESTDIR="$D"
check_eq "it installs exactly the expected files" "$(printf '%s\n' \
	/etc/echomaster/echomaster.conf \
	/usr/local/lib/systemd/system/echomaster.service \
	/usr/local/lib/sysusers.d/echomaster.conf \
	/usr/local/lib/tmpfiles.d/echomaster.conf \
	/usr/local/sbin/echomaster \
	/usr/local/share/man/man5/echomaster.conf.5 \
	/usr/local/share/man/man8/echomaster.8 | sort)" "$(files "$D")"
check "the unit runs /usr/local/sbin/echomaster" bash -c \
	"grep -q '^ExecStart=/usr/local/sbin/echomaster -F ' '$D/usr/local/lib/systemd/system/echomaster.service' &&
	 ! grep -q /usr/sbin/ '$D/usr/local/lib/systemd/system/echomaster.service'"
check "make uninstall DESTDIR=..." mk uninstall DESTDIR="$D"
check_eq "nothing is left" "" "$(files "$D")"

summary test-install
