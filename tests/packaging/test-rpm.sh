#!/bin/bash
# Checks build/echomaster-*.rpm: its version, file list, file flags and
# scriptlets against the expected layout; that the spec's Fedora branches
# expand (with stand-ins for systemd-rpm-macros, which Debian lacks); and
# runs %posttrans (the live upgrade) against stand-ins; installs the
# payload into a scratch root (rpm --root, --nodeps: the rpm
# built on Debian links against Debian's libconfig) to prove it complete.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

RPM=$(rpm_file)
[ -n "$RPM" ] || die "test-rpm: no build/echomaster-$EM_VERSION-*.rpm (make rpm)"
SPEC=$EM_TOP/packaging/rpm/echomaster.spec
TMP=$(mktemp -d /tmp/em-rpm.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
# Debian's rpm says this on every install; it is not a finding.
rpm_() {
	local out rc=0
	out=$(rpm "$@" 2>&1) || rc=$?
	grep -v -e 'should not be used directly' -e 'assuming you know what you are doing' <<<"$out" || true
	return "$rc"
}

say "== $(basename "$RPM")"
check_eq "the rpm's version is the VERSION file's" "$EM_VERSION" "$(rpm -qp --qf '%{VERSION}' "$RPM")"

# The file list, without the build-id links rpmbuild adds everywhere, and
# with Fedora's names for what depends on the distribution's rpm macros:
# compressed manuals, an unversioned documentation directory.
rpm -qlp "$RPM" | grep -v '^/usr/lib/\.build-id' |
	sed 's/\.gz$//; s|^/usr/share/doc/echomaster-[0-9.]*|/usr/share/doc/echomaster|; s|^/usr/share/licenses/echomaster-[0-9.]*|/usr/share/licenses/echomaster|' >"$TMP/files"
cat >"$TMP/expected" <<'EOF'
/etc/echomaster
/etc/echomaster/echomaster.conf
/run/echomaster
/usr/lib/systemd/system/echomaster.service
/usr/lib/sysusers.d/echomaster.conf
/usr/lib/tmpfiles.d/echomaster.conf
/usr/sbin/echomaster
/usr/share/doc/echomaster
/usr/share/doc/echomaster/README.md
/usr/share/licenses/echomaster
/usr/share/licenses/echomaster/LICENSE
/usr/share/man/man5/echomaster.conf.5
/usr/share/man/man8/echomaster.8
EOF
check "rpm -qlp lists exactly the expected files" diff -u "$TMP/expected" "$TMP/files"
flags=$(rpm -qp --qf '[%{FILEFLAGS:fflags} %{FILEMODES:perms} %{FILEUSERNAME}:%{FILEGROUPNAME} %{FILENAMES}\n]' "$RPM")
check "the configuration is %config(noreplace)" \
	grep -q '^cn -rw-r--r-- root:root /etc/echomaster/echomaster.conf$' <<<"$flags"
check "/run/echomaster is a %ghost directory, 0755 root" \
	grep -q '^g drwxr-xr-x root:root /run/echomaster$' <<<"$flags"
check "the binary is 0755 root" grep -q ' -rwxr-xr-x root:root /usr/sbin/echomaster$' <<<"$flags"

# Built here, without systemd-rpm-macros: the %pre fallback creates the
# user, and the guarded systemd scriptlets expand to nothing.
rpm -qp --scripts "$RPM" >"$TMP/scripts"
check "%pre creates group echomaster (fallback)" \
	grep -q '^getent group echomaster >/dev/null || groupadd -r echomaster$' "$TMP/scripts"
check "%pre creates user echomaster (fallback)" \
	grep -q 'useradd -r -g echomaster -d /nonexistent -s /sbin/nologin' "$TMP/scripts"
check "no scriptlet calls an undefined macro" bash -c "! grep -q '%' '$TMP/scripts'"

# The Fedora branches, with stand-ins for the systemd-rpm-macros macros.
cat >"$TMP/fedora.macros" <<'EOF'
%_unitdir /usr/lib/systemd/system
%_sysusersdir /usr/lib/sysusers.d
%_tmpfilesdir /usr/lib/tmpfiles.d
%systemd_requires \
Requires(post): systemd \
Requires(preun): systemd \
Requires(postun): systemd \
%{nil}
%systemd_post() FEDORA-systemd_post %{?*}
%systemd_preun() FEDORA-systemd_preun %{?*}
%systemd_postun_with_restart() FEDORA-systemd_postun_with_restart %{?*}
%systemd_postun() FEDORA-systemd_postun %{?*}
%tmpfiles_create() FEDORA-tmpfiles_create %{?*}
%sysusers_create_compat() FEDORA-sysusers_create_compat %{?*}
EOF
rpmspec -P --define "_topdir /topdir" --load "$TMP/fedora.macros" "$SPEC" >"$TMP/fedora.spec" 2>&1 || true
section() { awk -v s="$1" '$0 == s { on = 1; next } /^%[a-z]+$/ { on = 0 } on && NF && !/^#/' "$TMP/fedora.spec"; }
check_eq "Fedora %pre: sysusers_create_compat" \
	"FEDORA-sysusers_create_compat /topdir/SOURCES/echomaster.sysusers" "$(section %pre)"
check_eq "Fedora %post: tmpfiles_create, systemd_post" \
	"FEDORA-tmpfiles_create echomaster.conf FEDORA-systemd_post echomaster.service" "$(section %post | xargs)"
check_eq "Fedora %preun: systemd_preun" "FEDORA-systemd_preun echomaster.service" "$(section %preun)"
check_eq "Fedora %postun: systemd_postun, which does not restart on upgrade" \
	"FEDORA-systemd_postun echomaster.service" "$(section %postun | grep -v '^#')"
check "Fedora: Requires(post/preun/postun) systemd" \
	bash -c "[ \$(grep -c '^Requires(\\(post\\|preun\\|postun\\)): systemd\$' '$TMP/fedora.spec') = 3 ]"
check "Fedora: no shadow-utils fallback" bash -c "! grep -q shadow-utils '$TMP/fedora.spec'"
check_eq "the spec's BuildRequires" \
	"gcc haproxy libcmocka-devel libconfig-devel libseccomp-devel make openssl openssl-devel pkgconfig systemd-rpm-macros" \
	"$(sed -n 's/^BuildRequires:[[:space:]]*//p' "$SPEC" | sort | xargs)"

# The upgrade: %posttrans asks a running service to upgrade live; restarts
# it only when the live upgrade could not be attempted (no control socket
# to ask, or a master too old to know the command) and the new binary
# accepts the configuration; after an attempted and failed live upgrade it
# leaves the old master serving and says so. Run here with stand-ins for
# systemctl and the installed binary (lib.sh's scriptlet_run), in each case
# a package transaction can meet; test-deb-host.sh runs the same cases
# against the .deb's postinst.
SCRIPT=$TMP/posttrans.sh
rpm -qp --qf '%{POSTTRANS}\n' "$RPM" >"$SCRIPT"
check "the rpm has a %posttrans that runs echomaster -s upgrade" \
	grep -q '^em_bin=/usr/sbin/echomaster$' "$SCRIPT"
RUN_DIR=$TMP/pt
ARGS=(1)
RESTART="systemctl restart echomaster.service"
service_step_checks "%posttrans"

# The payload, installed into and erased from a scratch root.
ROOT=$TMP/root
mkdir -p "$ROOT"
check "rpm --root scratch --initdb" rpm --root "$ROOT" --dbpath /var/lib/rpm --initdb
out=$(rpm_ --root "$ROOT" --dbpath /var/lib/rpm -i --nodeps --noscripts "$RPM" || echo "rpm -i failed")
check_eq "rpm --root scratch -i --nodeps installs the payload" "" "$out"
out=$(rpm_ --root "$ROOT" --dbpath /var/lib/rpm -V --nodeps echomaster || echo "rpm -V failed")
check_eq "rpm -V finds every file as packaged" "" "$out"
check_eq "the payload's binary prints the version" "echomaster $EM_VERSION" \
	"$("$ROOT/usr/sbin/echomaster" -v 2>&1 || true)"
check "the payload's configuration is conf/echomaster.conf" \
	cmp "$EM_TOP/conf/echomaster.conf" "$ROOT/etc/echomaster/echomaster.conf"
check "the payload's unit runs /usr/sbin/echomaster" \
	grep -q '^ExecStart=/usr/sbin/echomaster -F ' "$ROOT/usr/lib/systemd/system/echomaster.service"
out=$(rpm_ --root "$ROOT" --dbpath /var/lib/rpm -e --nodeps --noscripts echomaster || echo "rpm -e failed")
check_eq "rpm -e erases it" "" "$out"
check_eq "nothing of the payload is left" "" \
	"$(find "$ROOT" ! -type d ! -path "$ROOT/var/lib/rpm/*" | sed "s|^$ROOT||")"

summary test-rpm
