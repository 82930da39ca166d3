#!/bin/bash
# The container packaging, without Docker (this machine has no engine):
#
# 1. Static: the container configuration passes -t with the packaged
#    binary; every COPY source of packaging/docker/Dockerfile exists and is
#    let through by its Dockerfile.dockerignore; the Kubernetes manifest
#    parses and agrees with the configuration (ports, control socket
#    directory, grace period above preStop plus shutdown_timeout).
# 2. Build: the Dockerfile's steps run over a Debian 12 root made by
#    debootstrap (cached under build/container/base; delete it to refresh):
#    COPY copies from the top of the tree, RUN runs in a chroot with the
#    host's network, USER, EXPOSE, ENTRYPOINT, CMD, HEALTHCHECK and
#    STOPSIGNAL are recorded; any other instruction fails the test, so this
#    interpreter cannot silently fall behind the Dockerfile.
# 3. Run: ENTRYPOINT + CMD as PID 1 of new PID, mount and network
#    namespaces, chrooted into that root, the root file system read-only
#    but for /run/echomaster, as USER with no capability and no_new_privs
#    (docker run --cap-drop=ALL --read-only, or the Deployment's
#    securityContext). Clients get their replies over TCP and UDP, IPv4 and
#    IPv6; the HEALTHCHECK and both probes of the manifest pass, run like
#    `docker exec`; an orphan such an exec leaves behind is reaped by the
#    master; SIGTERM (docker stop) drains: a connected client still gets its
#    reply, and the master exits 0.
#
# Needs root, debootstrap, python3 with yaml, and network for RUN's
# apt-get update (the first run also downloads the base, about 40 MB).
set -euo pipefail
. "$(dirname "$0")/lib.sh"

[ "$(id -u)" = 0 ] || die "test-container: run as root"
DEB=$(deb_file)
[ -n "$DEB" ] || die "test-container: no build/echomaster_$EM_VERSION-*.deb (make deb)"
cd "$EM_TOP"
DOCKERFILE=packaging/docker/Dockerfile
CONF=packaging/docker/echomaster.conf
K8S=packaging/kubernetes/echomaster.yaml
MIRROR=${EM_DEBIAN_MIRROR:-http://deb.debian.org/debian}
CT_DIR=$EM_BUILD/container
BASE=$CT_DIR/base
ROOT=$CT_DIR/root
PATH_IN_CT=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
TMP=$(mktemp -d /tmp/em-container.XXXXXX)
RUN_PID=     # unshare, on the host
CT_PID=      # the container's PID 1 (the master), its host pid

cleanup() {
	if [ -n "$RUN_PID" ] && kill -0 "$RUN_PID" 2>/dev/null; then
		[ -n "$CT_PID" ] && kill -KILL "$CT_PID" 2>/dev/null   # a PID namespace dies with its init
		wait "$RUN_PID" 2>/dev/null || true
	fi
	rm -rf "$TMP" "$ROOT"
}
trap cleanup EXIT

# The packaged binary, for the static checks.
dpkg-deb -x "$DEB" "$TMP/deb"
BIN=$TMP/deb/usr/sbin/echomaster
# conf_value KEY: a top-level setting as -T prints it, quotes removed.
conf_value() { { "$BIN" -T -c "$CONF" 2>/dev/null || true; } | sed -n "s/^$1 = \"\{0,1\}\([^\";]*\)\"\{0,1\};$/\1/p"; }
conf_ports() { { "$BIN" -T -c "$CONF" 2>/dev/null || true; } | sed -n 's/.*proto = "\([a-z]*\)".* port = \([0-9]*\);.*/\1 \2/p' | sort -u; }

say "== static checks"
check "echomaster -t accepts $CONF (the packaged binary)" "$BIN" -t -c "$CONF"
check_eq "it makes TERM graceful" true "$(conf_value stop_signal_graceful)"
check "it logs to stderr" grep -q "stderr = true" <("$BIN" -T -c "$CONF" 2>/dev/null)
check_eq "it has a control socket under /run/echomaster" /run/echomaster/control.sock "$(conf_value control_socket)"
check_eq "it listens on TCP and UDP port 8087" "$(printf 'tcp 8087\nudp 8087')" "$(conf_ports)"
SHUTDOWN_TIMEOUT=$(conf_value shutdown_timeout)

# The Dockerfile as a list of shell calls: df_INSTRUCTION ARG... (exec-form
# JSON arrays become arguments; line continuations and comments go).
python3 - "$DOCKERFILE" >"$TMP/dockerfile.sh" <<'EOF'
import json, re, shlex, sys
text = open(sys.argv[1]).read()
lines, cur = [], ""
for raw in text.split("\n"):
    if not cur and re.match(r"\s*#", raw):
        continue
    if raw.rstrip().endswith("\\"):
        cur += raw.rstrip()[:-1] + " "
        continue
    cur += raw
    if cur.strip():
        lines.append(cur.strip())
    cur = ""
for line in lines:
    word, _, rest = line.partition(" ")
    word, rest = word.lower(), rest.strip()
    if word == "healthcheck":
        opts = re.findall(r"--\S+", rest.split(" CMD ")[0])
        rest = rest.split(" CMD ", 1)[1].strip() if " CMD " in rest else rest
        print("df_healthcheck_opts", " ".join(shlex.quote(o) for o in opts))
    if rest.startswith("["):
        args = json.loads(rest)
    elif word in ("run", "healthcheck", "entrypoint", "cmd"):
        args = [rest]   # shell form: one argument for sh -c
    else:
        args = shlex.split(rest)
    form = "exec" if rest.startswith("[") else "shell"
    if word in ("entrypoint", "cmd", "healthcheck"):
        print("df_%s %s %s" % (word, form, " ".join(shlex.quote(a) for a in args)))
    else:
        print("df_%s %s" % (word, " ".join(shlex.quote(a) for a in args)))
EOF

# The Dockerfile copies `make deb`'s build/; the test's packages are in
# BUILD (make BUILD=... check-packages): COPY reads build/ from there.
ctx_path() { case $1 in build/*) printf '%s\n' "${EM_BUILD#"$EM_TOP"/}/${1#build/}" ;; *) printf '%s\n' "$1" ;; esac; }
# The files COPY reads, and whether the .dockerignore keeps them.
copy_sources() { sed -n 's/^df_copy \(.*\) [^ ]*$/\1/p' "$TMP/dockerfile.sh" | xargs -n 1; }
missing=""; ignored=""
while IFS= read -r src; do
	compgen -G "$(ctx_path "$src")" >/dev/null || missing="$missing $src"
	grep -qxF "!$src" "$DOCKERFILE.dockerignore" || ignored="$ignored $src"
done < <(copy_sources)
check_eq "every COPY source in $DOCKERFILE exists" "" "$missing"
check_eq "Dockerfile.dockerignore lets every COPY source through" "" "$ignored"
check "the Dockerfile starts FROM Debian 12" grep -qE '^df_from (debian:12|debian:bookworm)' "$TMP/dockerfile.sh"
check "the Dockerfile copies $CONF to the default path" \
	grep -qxF "df_copy $CONF /etc/echomaster/echomaster.conf" "$TMP/dockerfile.sh"

# The manifest, flattened to KEY=VALUE lines.
python3 - "$K8S" >"$TMP/k8s.env" <<'EOF'
import shlex, sys, yaml
docs = {d["kind"]: d for d in yaml.safe_load_all(open(sys.argv[1])) if d}
out = {"kinds": " ".join(sorted(docs))}
dep, svc = docs.get("Deployment", {}), docs.get("Service", {})
pod = dep.get("spec", {}).get("template", {}).get("spec", {})
c = (pod.get("containers") or [{}])[0]
out["container_ports"] = " ".join(sorted("%s:%s:%s" % (p["protocol"], p["containerPort"], p["name"]) for p in c.get("ports", [])))
out["service_ports"] = " ".join(sorted("%s:%s:%s" % (p["protocol"], p["port"], p["targetPort"]) for p in svc.get("spec", {}).get("ports", [])))
out["selector_matches"] = str(svc.get("spec", {}).get("selector") == dep.get("spec", {}).get("template", {}).get("metadata", {}).get("labels")).lower()
out["grace"] = pod.get("terminationGracePeriodSeconds", 30)
pre = c.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
out["prestop_sleep"] = pre[-1] if pre[:1] == ["/bin/sleep"] else 0
out["liveness"] = " ".join(c.get("livenessProbe", {}).get("exec", {}).get("command", []))
out["readiness"] = " ".join(c.get("readinessProbe", {}).get("exec", {}).get("command", []))
out["resources"] = str(all(k in c.get("resources", {}).get(w, {}) for w in ("requests", "limits") for k in ("cpu", "memory"))).lower()
out["mounts"] = " ".join(m["mountPath"] for m in c.get("volumeMounts", []))
out["run_as_user"] = c.get("securityContext", {}).get("runAsUser", pod.get("securityContext", {}).get("runAsUser", ""))
out["caps_drop"] = " ".join(c.get("securityContext", {}).get("capabilities", {}).get("drop", []))
for k, v in out.items():
    print("K8S_%s=%s" % (k, shlex.quote(str(v))))
EOF
. "$TMP/k8s.env"
check_eq "$K8S holds a Deployment and a Service" "Deployment Service" "$K8S_kinds"
check_eq "the pod exposes the configuration's port, TCP and UDP" \
	"TCP:8087:echo-tcp UDP:8087:echo-udp" "$K8S_container_ports"
check_eq "the Service offers port 7, TCP and UDP, to them" "TCP:7:echo-tcp UDP:7:echo-udp" "$K8S_service_ports"
check_eq "the Service selects the pods" true "$K8S_selector_matches"
check "terminationGracePeriodSeconds ($K8S_grace) > preStop ($K8S_prestop_sleep) + shutdown_timeout ($SHUTDOWN_TIMEOUT)" \
	test "$K8S_grace" -gt $((K8S_prestop_sleep + SHUTDOWN_TIMEOUT))
check_eq "the liveness probe asks the master through the control socket" \
	"/usr/sbin/echomaster -s status" "$K8S_liveness"
check "the readiness probe is set" test -n "$K8S_readiness"
check_eq "requests and limits for cpu and memory" true "$K8S_resources"
check_eq "the control socket's directory is a volume (read-only root)" \
	"$(dirname "$(conf_value control_socket)")" "$K8S_mounts"
check_eq "every capability is dropped" ALL "$K8S_caps_drop"

say "== building the image without Docker, over a Debian 12 root"
make_base() {
	local t0=$SECONDS
	say "   debootstrap bookworm into $BASE (once)"
	rm -rf "$BASE.tmp"
	mkdir -p "$CT_DIR"
	debootstrap --variant=minbase bookworm "$BASE.tmp" "$MIRROR" >"$CT_DIR/debootstrap.log" 2>&1 ||
		{ tail -20 "$CT_DIR/debootstrap.log"; die "debootstrap failed (log: $CT_DIR/debootstrap.log)"; }
	mv "$BASE.tmp" "$BASE"
	say "   built in $((SECONDS - t0)) s"
}
[ -d "$BASE" ] || make_base
rm -rf "$ROOT"
mkdir "$ROOT"
cp -a "$BASE/." "$ROOT/"   # the contents: BASE may be a symlink
IMG_USER=root; ENTRYPOINT=(); CMD=(); HEALTH=(); EXPOSE=(); STOPSIGNAL=SIGTERM
df_from() { :; }
df_copy() {
	local dest=${*: -1} n=$(($# - 1)) src
	for src in "${@:1:n}"; do
		# shellcheck disable=SC2086  # the glob is COPY's
		cp -a $(ctx_path "$src") "$ROOT$dest" || return 1
	done
}
df_run() {
	cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
	unshare --mount --propagation private sh -c '
		mount -t proc proc "$1/proc" && mount --rbind /dev "$1/dev" &&
		exec chroot "$1" env -i PATH="$2" HOME=/root /bin/sh -c "$3"' sh "$ROOT" "$PATH_IN_CT" "$1"
}
df_user() { IMG_USER=$1; }
df_expose() { EXPOSE+=("$@"); }
df_stopsignal() { STOPSIGNAL=$1; }
df_healthcheck_opts() { :; }
form_args() { if [ "$1" = exec ]; then shift; printf '%s\0' "$@"; else printf '%s\0' /bin/sh -c "$2"; fi; }
df_entrypoint() { mapfile -d '' ENTRYPOINT < <(form_args "$@"); }
df_cmd() { mapfile -d '' CMD < <(form_args "$@"); }
df_healthcheck() { mapfile -d '' HEALTH < <(form_args "$@"); }
t0=$SECONDS
step_no=0; build_ok=true
while IFS= read -r line; do
	step_no=$((step_no + 1))
	word=${line%% *}
	if ! declare -F "$word" >/dev/null; then
		not_ok "Dockerfile step $step_no: ${word#df_} is not known to this test (teach it)"
		build_ok=false; break
	fi
	if ! eval "$line" >>"$TMP/build.log" 2>&1; then
		not_ok "Dockerfile step $step_no failed: $line"
		tail -n 20 "$TMP/build.log" | sed 's/^/       | /'
		build_ok=false; break
	fi
done <"$TMP/dockerfile.sh"
$build_ok && ok "the Dockerfile's $step_no steps ran ($((SECONDS - t0)) s)"
$build_ok || die "no image, no point going on"

in_img() { chroot "$ROOT" env -i PATH="$PATH_IN_CT" "$@"; }
check_eq "the image has no systemd (the standalone sysusers stood in)" "" \
	"$(in_img dpkg-query -W -f='${Status}' systemd 2>/dev/null | grep ' installed$' || true)"
check_eq "the image's echomaster is $(basename "$DEB")'s" "echomaster $EM_VERSION" "$(in_img echomaster -v)"
check "the user echomaster exists" in_img getent passwd echomaster
IMG_UID=$(in_img id -u echomaster)
check_eq "USER is echomaster" echomaster "$IMG_USER"
check_eq "the manifest's runAsUser is the image's uid of echomaster" "$IMG_UID" "$K8S_run_as_user"
check_eq "/run/echomaster belongs to echomaster" echomaster "$(in_img stat -c %U /run/echomaster)"
check_eq "EXPOSE names the configuration's ports" "8087/tcp 8087/udp" "${EXPOSE[*]}"
check_eq "STOPSIGNAL is TERM" SIGTERM "$STOPSIGNAL"
check "the HEALTHCHECK command is in the image" test -x "$ROOT${HEALTH[0]}"
check_eq "ENTRYPOINT + CMD" "/usr/sbin/echomaster -F" "${ENTRYPOINT[*]} ${CMD[*]}"

say "== running it as PID 1: ${ENTRYPOINT[*]} ${CMD[*]}, as $IMG_USER"
# Like docker run --cap-drop=ALL --read-only --tmpfs /run/echomaster: the
# host's `ip` raises lo in the new network namespace before the chroot.
unshare --pid --fork --net --mount --propagation private sh -c '
	root=$1 user=$2 path=$3; shift 3
	ip link set lo up &&
	mount --bind "$root" "$root" &&
	mount --bind "$root/run/echomaster" "$root/run/echomaster" &&
	mount -o remount,bind,ro "$root" &&
	mount -t proc proc "$root/proc" &&
	exec chroot "$root" env -i PATH="$path" HOME=/ \
		setpriv --reuid="$user" --regid="$user" --init-groups \
		--inh-caps=-all --bounding-set=-all --no-new-privs -- "$@"' \
	sh "$ROOT" "$IMG_USER" "$PATH_IN_CT" "${ENTRYPOINT[@]}" "${CMD[@]}" \
	</dev/null >"$TMP/stdout" 2>"$TMP/log" &
RUN_PID=$!
find_pid1() { CT_PID=$(pgrep -P "$RUN_PID") && [ -n "$CT_PID" ]; }
wait_for 10 find_pid1 || { cat "$TMP/log"; die "no PID 1 started"; }
ready() { grep -q 'ready: [0-9]* workers, generation 1' "$TMP/log"; }
if wait_for 15 ready; then ok "the master reports ready"; else
	cat "$TMP/log"; die "the master did not report ready within 15 s"
fi
check_eq "the master is PID 1 in its namespace" 1 "$(awk '/^NSpid:/ { print $NF }' "/proc/$CT_PID/status")"
check_eq "it runs as $IMG_USER's uid" "$IMG_UID" "$(awk '/^Uid:/ { print $3 }' "/proc/$CT_PID/status")"
check_eq "with no capability at all" 0000000000000000 "$(awk '/^CapEff:/ { print $2 }' "/proc/$CT_PID/status")"
check_eq "its log lines reach stderr (docker logs)" "" "$(grep -q 'starting' "$TMP/log" || echo none)"
workers=$(pgrep -P "$CT_PID" | xargs || true)
check_eq "the 2 workers of the configuration" 2 "$(wc -w <<<"$workers")"

ct_net() { nsenter -t "$CT_PID" -n "$@"; }
ct_tcp() { ct_net bash -c "$(declare -f tcp_roundtrip); tcp_roundtrip $1 $2 '$3'"; }
ct_udp() { ct_net bash -c "$(declare -f udp_roundtrip); udp_roundtrip $1 $2 '$3'"; }
# docker exec: every namespace and the root of PID 1, as the image's user.
ct_exec() {
	nsenter -t "$CT_PID" -m -n -p -r -w env -i PATH="$PATH_IN_CT" \
		setpriv --reuid="$IMG_USER" --regid="$IMG_USER" --init-groups -- "$@"
}
check_eq "TCP 127.0.0.1:8087 answers" "HELLO, CONTAINER" "$(ct_tcp 127.0.0.1 8087 'hello, container' || true)"
check_eq "TCP [::1]:8087 answers" "IPV6 IN A CONTAINER" "$(ct_tcp ::1 8087 'ipv6 in a container' || true)"
check_eq "UDP 127.0.0.1:8087 answers" "A DATAGRAM" "$(ct_udp 127.0.0.1 8087 'a datagram' || true)"
check_eq "UDP [::1]:8087 answers" "V6 DATAGRAM" "$(ct_udp ::1 8087 'v6 datagram' || true)"
check "the HEALTHCHECK passes (${HEALTH[*]})" ct_exec "${HEALTH[@]}"
# shellcheck disable=SC2086  # the probes are word lists
check "the readiness probe passes ($K8S_readiness)" ct_exec $K8S_readiness
# shellcheck disable=SC2086
if ct_exec $K8S_liveness >"$TMP/status" 2>&1; then
	ok "the liveness probe passes ($K8S_liveness)"
	sed 's/^/       | /' "$TMP/status"
else
	not_ok "the liveness probe fails ($K8S_liveness)"
	sed 's/^/       | /' "$TMP/status"
fi

out=$(ct_exec echomaster -s reload 2>&1) || true
check_eq "docker exec ... echomaster -s reload waits for the new workers" "reload ok: generation 2, 2 workers" "$out"
two_workers() { [ "$(pgrep -c -P "$CT_PID")" = 2 ]; }
check "the old generation's workers exit" wait_for 10 two_workers
workers=$(pgrep -P "$CT_PID" | xargs || true)

# An orphan: a process started by an exec whose parent exits is adopted by
# PID 1. If the master did not reap it, it would stay a zombie for ever.
ct_exec sh -c 'sleep 2.25 & exit 0'
orphan_adopted() { ORPHAN=$(pgrep -P "$CT_PID" -f '^sleep 2.25$') && [ -n "$ORPHAN" ]; }
if wait_for 2 orphan_adopted; then
	ok "the master adopts an orphan (pid $ORPHAN on the host)"
	check "the orphan is reaped when it exits (no zombie)" wait_for 6 test ! -e "/proc/$ORPHAN"
else
	not_ok "no orphan adopted by the master"
fi
check_eq "the workers are the same after the orphan's death" "$workers" "$(pgrep -P "$CT_PID" | xargs || true)"
check_eq "it still answers" "STILL UP" "$(ct_tcp 127.0.0.1 8087 'still up' || true)"

say "== docker stop: SIGTERM to PID 1 drains"
# A client connected before the TERM sends its second line after it.
ct_net bash -c '
	exec 3<>/dev/tcp/127.0.0.1/8087 || exit 1
	printf "before\n" >&3; IFS= read -r -t 5 a <&3; printf "%s\n" "$a" >"$1/before"
	for _ in $(seq 100); do [ -e "$1/go" ] && break; sleep 0.1; done
	printf "after\n" >&3; IFS= read -r -t 5 b <&3; printf "%s\n" "$b" >"$1/after"' sh "$TMP" &
client=$!
check "the client's first line comes back" wait_for 5 grep -qx BEFORE "$TMP/before"
kill -TERM "$CT_PID"
# A fast shutdown is over within a second: past that, still alive = draining.
sleep 1.5
check "the master is still draining 1.5 s after TERM" kill -0 "$CT_PID"
t_go=$SECONDS
touch "$TMP/go"
wait "$client" || true
check_eq "the connected client's line after TERM comes back" AFTER "$(cat "$TMP/after" 2>/dev/null || true)"
rc=0
wait_for $((SHUTDOWN_TIMEOUT + 5)) eval "! kill -0 $RUN_PID" || true
wait "$RUN_PID" || rc=$?
RUN_PID=
check_eq "PID 1 exits 0" 0 "$rc"
check "within shutdown_timeout of the client's last line ($((SECONDS - t_go)) s)" \
	test $((SECONDS - t_go)) -le "$SHUTDOWN_TIMEOUT"
say "   the master's log:"
sed 's/^/       | /' "$TMP/log"

summary test-container
