#!/bin/sh
# Installs what building and testing echomaster needs, when it is missing.
# Usage: build-deps.sh [build|packages|lint|fuzz|valgrind]...   (default: build)
#   build     compiler, make, pkg-config, libconfig, cmocka
#   packages  what `make deb`, `make rpm` and `make check-packages` use
#   lint      cppcheck and clang-tidy (make lint)
#   fuzz      clang and its libFuzzer runtime (make fuzz)
#   valgrind  valgrind (make valgrind)
#   fleet     haproxy, nginx's stream module, iproute2, python3 (make check-fleet)
# Uses apt-get on Debian-like systems and dnf on Fedora-like ones; needs root
# only when something is actually missing.
set -eu

groups=${*:-build}

deb_build="gcc make pkg-config libconfig-dev libcmocka-dev"
# packages: dpkg-buildpackage and lintian; rpmbuild; mandoc and man-db for the
# manuals (manpages-dev: the syslog(3) they refer to); systemd for the unit
# checks, its pkg-config paths and the .deb's sysusers; procps (pgrep);
# debootstrap, its keyring and systemd-nspawn for the boot test; python3
# and its yaml module for the container test (Dockerfile and manifest).
deb_packages="debhelper dpkg-dev fakeroot lintian mandoc man-db manpages-dev rpm systemd procps debootstrap debian-archive-keyring systemd-container python3 python3-yaml"
deb_lint="cppcheck clang-tidy"
deb_fuzz="clang libclang-rt-14-dev"
deb_valgrind="valgrind"
deb_fleet="haproxy nginx libnginx-mod-stream iproute2 python3"
rpm_build="gcc make pkgconf-pkg-config libconfig-devel libcmocka-devel"
rpm_packages="rpm-build systemd-rpm-macros mandoc"
rpm_lint="cppcheck clang-tools-extra"
rpm_fuzz="clang compiler-rt"
rpm_valgrind="valgrind"
rpm_fleet="haproxy nginx nginx-mod-stream iproute python3"

if command -v dpkg-query >/dev/null 2>&1; then
	want=""
	for g in $groups; do eval "want=\"\$want \$deb_$g\""; done
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
	for g in $groups; do eval "want=\"\$want \$rpm_$g\""; done
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
