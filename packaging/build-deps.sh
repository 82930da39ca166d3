#!/bin/sh
# Installs what building and testing echomaster needs, when it is missing.
# Usage: build-deps.sh [build|deb|rpm|packages|lint|fuzz|valgrind]...   (default: build)
#   build     compiler, make, pkg-config, libconfig, libseccomp, OpenSSL 3 (and openssl(1) for the TLS tests), cmocka,
#             haproxy (make check's TLS-behind-PROXY test puts the real one in front)
#   deb       what `make deb` needs: dpkg-buildpackage, and the Build-Depends
#             of packaging/debian/control (check-packages checks they agree)
#   rpm       what `make rpm` needs: rpmbuild, and what the spec builds with
#   packages  what `make check-packages` adds: linters, the boot test's tools
#   lint      cppcheck and clang-tidy (make lint)
#   fuzz      clang and its libFuzzer runtime (make fuzz)
#   valgrind  valgrind (make valgrind)
#   bench-tls what `make bench-tls` adds: OpenSSL (the reference server and
#             the load generator), nginx with its stream module, stunnel4
#        build-deps.sh --list GROUP   prints the group's packages for this system
#   fleet     haproxy, nginx's stream module, iproute2, python3 (make check-fleet)
# Uses apt-get on Debian-like systems and dnf on Fedora-like ones; needs root
# only when something is actually missing.
set -eu

list=false
[ "${1:-}" = --list ] && { list=true; shift; }
groups=${*:-build}

deb_build="gcc make pkg-config libconfig-dev libcmocka-dev libseccomp-dev libssl-dev openssl haproxy"
# deb: dpkg-buildpackage checks build-essential and the Build-Depends:
# debhelper provides debhelper-compat (= 13) and, since 13.x,
# dh-sequence-installsysusers; systemd gives pkg-config its unit paths.
deb_deb="build-essential dpkg-dev debhelper fakeroot haproxy libcmocka-dev libconfig-dev libseccomp-dev libssl-dev openssl pkg-config systemd"
# rpm: Debian's rpm holds rpmbuild; the spec's BuildRequires are checked only
# on Fedora (--nodeps here), so their Debian names are listed instead.
deb_rpm="rpm gcc make pkg-config libconfig-dev libcmocka-dev libseccomp-dev libssl-dev openssl haproxy"
# packages: lintian; mandoc and man-db for the manuals (manpages-dev and
# libsystemd-dev: the syslog(3) and sd_listen_fds(3) they refer to); systemd for the unit checks and the .deb's
# sysusers; procps (pgrep); debootstrap, its keyring and systemd-nspawn for
# the boot test; python3 for its clients, and its yaml module for the
# container test (Dockerfile and manifest).
deb_packages="$deb_deb $deb_rpm lintian mandoc man-db manpages-dev libsystemd-dev systemd procps debootstrap debian-archive-keyring systemd-container python3 python3-yaml"
deb_lint="cppcheck clang-tidy"
deb_fuzz="clang libclang-rt-14-dev"
deb_valgrind="valgrind"
deb_fleet="haproxy nginx libnginx-mod-stream iproute2 python3"
rpm_build="gcc make pkgconf-pkg-config libconfig-devel libcmocka-devel libseccomp-devel openssl-devel openssl haproxy"
# On Fedora `make deb` works too: Fedora packages dpkg-dev and debhelper.
rpm_deb="$rpm_build dpkg-dev debhelper fakeroot systemd"
# The spec's BuildRequires.
rpm_rpm="rpm-build systemd-rpm-macros $rpm_build"
rpm_packages="$rpm_rpm mandoc systemd-devel"
rpm_lint="cppcheck clang-tools-extra"
rpm_fuzz="clang compiler-rt"
rpm_valgrind="valgrind"
rpm_fleet="haproxy nginx nginx-mod-stream iproute python3"
# bench-tls: the TLS peers run in front of plain echomaster; openssl(1)
# makes the bench certificate. (Group names with a dash: deb_bench_tls.)
deb_bench_tls="libssl-dev openssl nginx libnginx-mod-stream stunnel4"
rpm_bench_tls="openssl-devel openssl nginx nginx-mod-stream stunnel"

# apt-get, not dpkg-query: Fedora has dpkg-dev once `make deb` ran there.
if command -v apt-get >/dev/null 2>&1 && command -v dpkg-query >/dev/null 2>&1; then
	want=""
	for g in $groups; do g=$(echo "$g" | tr - _); eval "want=\"\$want \$deb_$g\""; done
	$list && { echo $want; exit 0; }
	missing=""
	for p in $want; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$' ||
			missing="$missing $p"
	done
	[ -z "$missing" ] && exit 0
	echo "build-deps: installing missing Debian packages:$missing"
	[ "$(id -u)" = 0 ] || { echo "build-deps: run as root (or: sudo apt-get install$missing)" >&2; exit 1; }
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing
elif command -v rpm >/dev/null 2>&1 && command -v dnf >/dev/null 2>&1; then
	want=""
	for g in $groups; do g=$(echo "$g" | tr - _); eval "want=\"\$want \$rpm_$g\""; done
	$list && { echo $want; exit 0; }
	missing=""
	for p in $want; do rpm -q "$p" >/dev/null 2>&1 || missing="$missing $p"; done
	[ -z "$missing" ] && exit 0
	echo "build-deps: installing missing packages:$missing"
	[ "$(id -u)" = 0 ] || { echo "build-deps: run as root (or: sudo dnf install$missing)" >&2; exit 1; }
	dnf install -y $missing
else
	echo "build-deps: neither apt-get nor dnf found; install by hand: a C compiler, make, pkg-config, libconfig and cmocka development files" >&2
	exit 1
fi
