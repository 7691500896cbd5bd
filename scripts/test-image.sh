#!/usr/bin/env bash
# Builds the exporter image FROM scratch with buildah from the static binary (no registry, no
# RUN step) and checks it:
#   * /jumpstarter/bin/jmp version runs inside the image (chroot into the mounted image), and
#     j is a symlink to it;
#   * the image has no entrypoint, so the Quadlet's Exec= (deploy/jumpstarter-exporter.container,
#     the seeds' `Exec=/jumpstarter/bin/jmp run --exporter my-exporter`) is the whole command:
#     run as Entrypoint + Exec inside the image, it starts controller mode with the config
#     /etc/jumpstarter/exporters/my-exporter.yaml and stops cleanly on SIGTERM.
#
#   scripts/test-image.sh [DIST]     # DIST: where jmp is (default dist/; built with
#                                    # scripts/build-static.sh if missing)
#   IMAGE=localhost/jumpstarter-rs:latest KEEP=1 scripts/test-image.sh   # keep the image
#
# Needs root (or a user namespace buildah can use) and buildah; with CI=true and apt-get
# present, buildah is installed from Debian. Storage is private to the run (vfs driver in a
# temporary directory) unless KEEP=1, which commits to the default storage (driver:
# STORAGE_DRIVER, default vfs).
set -euo pipefail
cd "$(dirname "$0")/.."
dist="${1:-dist}"
image="${IMAGE:-localhost/jumpstarter-rs:latest}"

if ! command -v buildah >/dev/null; then
    if [ "${CI:-}" = true ] && command -v apt-get >/dev/null; then
        apt-get update -qq && apt-get install -y -qq --no-install-recommends buildah >/dev/null
    else
        echo "error: buildah not found (Debian: apt-get install buildah)" >&2
        exit 1
    fi
fi
[ -x "$dist/jmp" ] || scripts/build-static.sh "$dist"

work="$(mktemp -d)"
b=(buildah --storage-driver "${STORAGE_DRIVER:-vfs}")
if [ -z "${KEEP:-}" ]; then
    b+=(--root "$work/storage" --runroot "$work/run")
fi
ctr=""
dev_mounted=""
cleanup() {
    if [ -n "$dev_mounted" ]; then
        umount "$dev_mounted" 2>/dev/null || true
    fi
    if [ -n "$ctr" ]; then
        "${b[@]}" umount "$ctr" >/dev/null 2>&1 || true
        "${b[@]}" rm "$ctr" >/dev/null 2>&1 || true
    fi
    if [ -z "${KEEP:-}" ]; then
        "${b[@]}" rmi --all --force >/dev/null 2>&1 || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT
start=$(date +%s)

# The image's files: the binary, j as a symlink, trust roots for clients, an empty /tmp.
root="$work/rootfs"
mkdir -p "$root/jumpstarter/bin" "$root/etc/ssl/certs" "$root/etc/jumpstarter/exporters" "$root/tmp" \
    "$root/dev" "$root/proc"
chmod 1777 "$root/tmp"
cp "$dist/jmp" "$root/jumpstarter/bin/jmp"
ln -s jmp "$root/jumpstarter/bin/j"
if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
    cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/"
fi

build=$("${b[@]}" from scratch)
ctr="$build"
"${b[@]}" copy "$build" "$root/" / >/dev/null
"${b[@]}" config \
    --env PATH=/jumpstarter/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    --entrypoint '[]' --cmd '["/jumpstarter/bin/jmp", "--help"]' \
    --volume /etc/jumpstarter --port 1909 --stop-signal SIGTERM \
    --label org.opencontainers.image.title=jumpstarter-rs "$build"
"${b[@]}" commit --quiet "$build" "$image" >/dev/null
"${b[@]}" rm "$build" >/dev/null
ctr=""
echo "built $image FROM scratch in $(($(date +%s) - start)) s"

fail() {
    echo "error: $*" >&2
    exit 1
}

# Entrypoint and command as the image records them.
config=$("${b[@]}" inspect --type image "$image")
field() { python3 -c 'import json,sys; print(json.dumps(json.loads(sys.stdin.read())["OCIv1"]["config"].get(sys.argv[1]) or []))' "$1" <<<"$config"; }
entrypoint=$(field Entrypoint)
cmd=$(field Cmd)
[ "$entrypoint" = "[]" ] || fail "the image has an entrypoint: $entrypoint"
[ "$cmd" = '["/jumpstarter/bin/jmp", "--help"]' ] || fail "unexpected Cmd: $cmd"

# A container of the image, its root file system mounted.
ctr=$("${b[@]}" from "$image")
mnt=$("${b[@]}" mount "$ctr")
chroot=$(command -v chroot)
# The host's /dev, as a container runtime gives one (jmp needs /dev/urandom, /dev/null).
mount --bind /dev "$mnt/dev"
dev_mounted="$mnt/dev"
in_image() { env -i PATH=/jumpstarter/bin HOME=/tmp JMP_LOG=info "$chroot" "$mnt" "$@"; }

version=$(in_image /jumpstarter/bin/jmp version) || fail "/jumpstarter/bin/jmp version failed"
echo "in the image: /jumpstarter/bin/jmp version: $version"
[ "$(readlink "$mnt/jumpstarter/bin/j")" = jmp ] || fail "/jumpstarter/bin/j is not a symlink to jmp"
# Called as j, the binary is j (which outside a jmp shell says what it misses).
j_out=$(in_image j power on 2>&1 || true)
grep -q "JUMPSTARTER_HOST not set" <<<"$j_out" || fail "j does not run as j in the image: $j_out"

# The Quadlet's Exec= line, word by word, appended to the (empty) entrypoint.
exec_line=$(sed -n 's/^Exec=//p' deploy/jumpstarter-exporter.container)
[ "$exec_line" = "/jumpstarter/bin/jmp run --exporter my-exporter" ] \
    || fail "deploy/jumpstarter-exporter.container: Exec= is not the seeds' line: $exec_line"
read -r -a argv <<<"$exec_line"
alias="${argv[-1]}"
# A controller-mode config (a JWT-shaped token no controller issued); nothing listens on its
# endpoint, so the exporter keeps retrying.
cat >"$mnt/etc/jumpstarter/exporters/$alias.yaml" <<EOF
apiVersion: jumpstarter.dev/v1alpha1
kind: ExporterConfig
metadata:
  namespace: default
  name: $alias
endpoint: 127.0.0.1:9
token: eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJub2JvZHkifQ.bm90LWEtcmVhbC1zaWduYXR1cmU
tls:
  insecure: true
export:
  power:
    type: jumpstarter_driver_power.driver.MockPower
EOF
log="$work/exec.log"
# (env and chroot exec, so $pid is jmp itself.)
env -i PATH=/jumpstarter/bin HOME=/tmp JMP_LOG=info "$chroot" "$mnt" "${argv[@]}" 2>"$log" &
pid=$!
sleep 3
kill -0 "$pid" 2>/dev/null || { cat "$log" >&2; fail "the Exec= command exited early"; }
kill -TERM "$pid"
status=0
wait "$pid" || status=$?
if [ "$status" != 143 ] || ! grep -q "cannot reach the controller at 127.0.0.1:9" "$log"; then
    cat "$log" >&2
    fail "the Exec= command did not run controller mode (exit $status)"
fi
echo "in the image: '$exec_line' ran controller mode with /etc/jumpstarter/exporters/$alias.yaml and stopped on SIGTERM (143)"
echo "image checks passed in $(($(date +%s) - start)) s"
