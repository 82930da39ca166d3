#!/bin/sh
# Installs what `make check-fleet` needs (packaging/build-deps.sh fleet)
# without letting the packages start their system services: the test runs
# its own HAProxy and nginx in a network namespace, and the machine should
# be left as it was found. On Debian a policy-rc.d that refuses every start
# is in place for the install (unless one already is), and the units the
# install enabled are disabled again.
set -eu
top=$(cd "$(dirname "$0")/../.." && pwd)
[ "$(id -u)" = 0 ] || { echo "check-fleet: run as root (network namespaces)" >&2; exit 1; }
if ! command -v dpkg-query >/dev/null 2>&1; then
	exec "$top/packaging/build-deps.sh" fleet
fi
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q '^install ok installed$'; }
new=""
for p in haproxy nginx; do installed "$p" || new="$new $p"; done
policy=/usr/sbin/policy-rc.d
own_policy=""
trap '[ -z "$own_policy" ] || rm -f "$policy"' EXIT
if [ -n "$new" ] && [ ! -e "$policy" ]; then
	printf '#!/bin/sh\n# check-fleet: no service starts during its install\nexit 101\n' >"$policy"
	chmod 755 "$policy"
	own_policy=1
fi
"$top/packaging/build-deps.sh" fleet
for p in $new; do
	if command -v deb-systemd-helper >/dev/null 2>&1; then
		deb-systemd-helper disable "$p.service" >/dev/null 2>&1 || :
	fi
done
