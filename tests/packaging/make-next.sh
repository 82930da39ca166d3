#!/bin/bash
# Builds the next version of the packages, for the upgrade tests: the same
# tree (git HEAD, with the working tree's packaging/debian and spec, as
# `make deb` and `make rpm` take them) with VERSION, debian/changelog and the
# spec bumped to EM_NEXT_VERSION (VERSION.1), in BUILD/next/src, packaged
# there by its own `make deb rpm`. Offline and reproducible: the new
# changelog entries reuse the top entries' authors and dates. Leaves
# BUILD/next/src/build/echomaster_NEXT-1_*.deb and echomaster-NEXT-1.*.rpm.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

SRC=$EM_BUILD/next/src
rm -rf "$EM_BUILD/next"
mkdir -p "$SRC"
git -C "$EM_TOP" archive HEAD | tar -x -C "$SRC"
rm -rf "$SRC/packaging/debian"
cp -R "$EM_TOP/packaging/debian" "$SRC/packaging/debian"
cp "$EM_TOP/packaging/rpm/echomaster.spec" "$SRC/packaging/rpm/echomaster.spec"

echo "$EM_NEXT_VERSION" >"$SRC/VERSION"
cl=$SRC/packaging/debian/changelog
trailer=$(grep -m 1 '^ -- ' "$cl")
{
	printf 'echomaster (%s-1) bookworm; urgency=medium\n\n' "$EM_NEXT_VERSION"
	printf '  * Upgrade test build of %s (tests/packaging/make-next.sh).\n\n' "$EM_VERSION"
	printf '%s\n\n' "$trailer"
	cat "$cl"
} >"$cl.new"
mv "$cl.new" "$cl"
spec=$SRC/packaging/rpm/echomaster.spec
entry=$(sed -n '/^%changelog/{n;p;q}' "$spec" | sed "s/ - [^ ]*\$/ - $EM_NEXT_VERSION-1/")
sed -i "s/^Version:\\([[:space:]]*\\).*/Version:\\1$EM_NEXT_VERSION/" "$spec"
sed -i "/^%changelog/a\\
$entry\\
- Upgrade test build of $EM_VERSION (tests/packaging/make-next.sh).\\
" "$spec"

cd "$SRC"
git init -q
git add -A
git -c user.name=make-next -c user.email=make-next@invalid -c commit.gpgsign=false \
	commit -q -m "echomaster $EM_NEXT_VERSION (upgrade test build)"
# BUILD is the outer tree's; this tree builds in its own build/.
env -u BUILD -u MAKEFLAGS -u MAKELEVEL make --no-print-directory BUILD=build deb rpm
