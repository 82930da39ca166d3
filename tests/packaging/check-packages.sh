#!/bin/bash
# make check-packages: builds the .deb and the .rpm from git HEAD, lints
# them and the manuals, then runs every packaging test:
#   test-install.sh   make install / uninstall into scratch directories
#   test-rpm.sh       the rpm's files, scriptlets and payload
#   test-deb-host.sh  dpkg -i here, run the installed daemon, dpkg --purge
#   test-nspawn.sh    the .deb booted under systemd in a Debian 12 container,
#                     upgraded live to the next version (make-next.sh)
#   test-container.sh the Dockerfile built without Docker and run as PID 1;
#                     the Kubernetes manifest checked against it
# and ends with "check-packages: N passed, N failed". Runs as root.
#
# The package builds skip the unit and integration tests (make check runs
# them on its own): set DEB_BUILD_OPTIONS= and RPMBUILD_OPTS= to run them
# inside the builds too.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

cd "$EM_TOP"
[ "$(id -u)" = 0 ] || die "check-packages: run as root (dpkg -i, debootstrap, systemd-nspawn, unshare)"
export DEB_BUILD_OPTIONS=${DEB_BUILD_OPTIONS-nocheck}
export RPMBUILD_OPTS=${RPMBUILD_OPTS---nocheck}
TMP=$(mktemp -d /tmp/em-check-packages.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
t_start=$SECONDS
failed_scripts=()

# step NAME CMD...: one counted check whose output goes to a log, shown
# only on failure.
step() {
	local name=$1 t0=$SECONDS
	shift
	if "$@" >"$TMP/step.log" 2>&1; then
		ok "$name ($((SECONDS - t0)) s)"
	else
		not_ok "$name ($((SECONDS - t0)) s)"
		tail -n 40 "$TMP/step.log" | sed 's/^/       | /'
	fi
}

# run_script SCRIPT: runs a test script, adds its counts to ours.
run_script() {
	local script=$1 t0=$SECONDS last p f
	say
	say "== $script"
	set +e
	"tests/packaging/$script" 2>&1 | tee "$TMP/script.log"
	set -e
	last=$(grep -E '^test-[a-z-]+: [0-9]+ passed, [0-9]+ failed$' "$TMP/script.log" | tail -n 1 || true)
	if [ -z "$last" ]; then
		not_ok "$script stopped before its summary"
		failed_scripts+=("$script")
		return 0
	fi
	p=$(sed -E 's/.*: ([0-9]+) passed.*/\1/' <<<"$last")
	f=$(sed -E 's/.*passed, ([0-9]+) failed/\1/' <<<"$last")
	PASSED=$((PASSED + p))
	FAILED=$((FAILED + f))
	[ "$f" -eq 0 ] || failed_scripts+=("$script")
	say "   ($script: $((SECONDS - t0)) s)"
}

# Every Build-Depends of debian/control is installed by `make deb`: each is
# a package of build-deps.sh's deb group or provided by one (debhelper
# provides debhelper-compat and dh-sequence-installsysusers).
build_depends_covered() {
	local group atom pkg bad=""
	group=" $(packaging/build-deps.sh --list deb) "
	for atom in $(sed -n '/^Build-Depends:/,/^[A-Z]/p' packaging/debian/control |
		sed 's/^Build-Depends://; /^[A-Z]/d; s/([^)]*)//g; s/<[^>]*>//g' | tr ',' '\n' |
		sed 's/|.*//; s/[[:space:]]//g' | grep .); do
		pkg=$(dpkg-query -W -f='${Package} ${Provides}\n' | sed 's/([^)]*)//g; s/,//g' |
			awk -v a="$atom" '{ for (i = 1; i <= NF; i++) if ($i == a) { print $1; exit } }')
		say "$atom: ${pkg:-not installed}"
		case $group in *" ${pkg:-?} "*) ;; *) bad="$bad $atom" ;; esac
	done
	[ -z "$bad" ] || { say "not installed by build-deps.sh deb:$bad"; return 1; }
}

say "== building and linting (DEB_BUILD_OPTIONS=$DEB_BUILD_OPTIONS RPMBUILD_OPTS=$RPMBUILD_OPTS)"
step "make check-version (VERSION, debian/changelog and the spec agree)" make --no-print-directory check-version
step "build-deps.sh deb installs every Build-Depends of debian/control" build_depends_covered
step "make deb" make --no-print-directory deb
step "make rpm" make --no-print-directory rpm
step "make-next.sh: the $EM_NEXT_VERSION packages, for the upgrade tests" tests/packaging/make-next.sh

changes=$(ls "$EM_BUILD"/deb/echomaster_"$EM_VERSION"-*_*.changes 2>/dev/null | head -n 1 || true)
if [ -n "$changes" ]; then
	lintian --display-info --pedantic --fail-on error,warning "$changes" >"$TMP/lintian.log" 2>&1 && rc=0 || rc=$?
	say "   lintian --display-info --pedantic $(basename "$changes"):"
	sed 's/^/       | /' "$TMP/lintian.log"
	if [ "$rc" -eq 0 ]; then ok "lintian: no errors or warnings"; else not_ok "lintian: errors or warnings (status $rc)"; fi
else
	not_ok "lintian: no .changes under build/deb"
fi
# Cross-references are checked once the pages are installed (test-deb-host).
step "mandoc -Tlint -Wwarning man/echomaster.8 man/echomaster.conf.5" \
	bash -c 'out=$(mandoc -Tlint -Wwarning man/echomaster.8 man/echomaster.conf.5 2>&1); printf "%s\n" "$out"; [ -z "$out" ]'
step "systemd-analyze verify (the unit, before install: only the missing binary)" \
	bash -c 'out=$(systemd-analyze verify packaging/systemd/echomaster.service 2>&1 |
		grep -v -e "/usr/sbin/echomaster is not executable" -e "Command .man echomaster" || true);
		printf "%s\n" "$out"; [ -z "$out" ]'

run_script test-install.sh
run_script test-rpm.sh
run_script test-deb-host.sh
run_script test-nspawn.sh
run_script test-container.sh

say
[ ${#failed_scripts[@]} -gt 0 ] && say "failing: ${failed_scripts[*]}"
say "check-packages took $((SECONDS - t_start)) s"
summary check-packages
