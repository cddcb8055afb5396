#!/usr/bin/env bash
# `make image-test`: the image from `make image`, run for real. bin/pathtrace-image.tar is
#  - loaded by podman into a throwaway storage and run the way `kubectl debug node/NODE
#    --profile=sysadmin` runs a pod (privileged, the node's network and PID namespaces, the
#    node's / at /host): --version, then `pathtrace demo`, which builds network namespaces and
#    traces them from inside the container and writes its JSON to the image's /tmp;
#  - imported by a containerd of its own (`ctr -n k8s.io images import`, as on a Kubernetes
#    node) and run there by ctr through containerd's shim and runc.
# Root.
set -euo pipefail
cd "$(dirname "$0")/.."
IMAGE=${IMAGE:-localhost/pathtrace:dev}
IMAGE_TAR=${IMAGE_TAR:-bin/pathtrace-image.tar}
if [ "$(id -u)" -ne 0 ]; then
	echo "image-test: skipped: needs root (privileged containers)"
	exit 0
fi
[ -f "$IMAGE_TAR" ] || { echo "image-test: $IMAGE_TAR is missing: run make image" >&2; exit 1; }
./scripts/image-deps.sh

work=$(mktemp -d)
ctrd_pid=
cleanup() {
	set +e
	if [ -n "$ctrd_pid" ]; then
		kill "$ctrd_pid"
		wait "$ctrd_pid" 2>/dev/null
	fi
	# containerd's snapshots may still be mounted if a step failed half-way.
	grep -o " $work/[^ ]*" /proc/mounts | sort -r | xargs -r -n1 umount -l 2>/dev/null
	rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "image-test: FAIL: $*" >&2; exit 1; }

echo "== podman load"
podman=(podman --root "$work/podman" --runroot "$work/podman-run" --storage-driver vfs)
"${podman[@]}" load -q -i "$IMAGE_TAR" | grep -qF "$IMAGE" || fail "podman load did not name the image $IMAGE"

# podman asks the runtime for 1048576 open files and a high process limit; where root lacks
# CAP_SYS_RESOURCE (sandboxed CI) runc cannot raise them, so ask for what this shell has. The
# process limit does not bind root in any case.
run=("${podman[@]}" run --privileged --network host --pid host -v /:/host:ro
	--ulimit "nofile=$(ulimit -Hn):$(ulimit -Hn)" --ulimit nproc=4096:4096)

echo "== podman run $IMAGE --version"
v=$("${run[@]}" --rm "$IMAGE" --version) || fail "podman run --version"
echo "$v"
[[ $v == "pathtrace version "* ]] || fail "--version printed: $v"

echo "== podman run $IMAGE demo --json /tmp/demo.json (privileged, host network and PID)"
name=pathtrace-image-test-$$
"${run[@]}" --name "$name" "$IMAGE" demo --color never --json /tmp/demo.json \
	>"$work/demo.txt" 2>&1 || { cat "$work/demo.txt"; fail "demo in the container"; }
"${podman[@]}" cp "$name:/tmp/demo.json" "$work/demo.json" || fail "no /tmp/demo.json in the container"
"${podman[@]}" rm "$name" >/dev/null
grep -E '^(Verdict|  cause)' "$work/demo.txt"
grep -q '^Verdict: DROPPED' "$work/demo.txt" || { cat "$work/demo.txt"; fail "the demo's verdict is not DROPPED"; }
grep -q 'forwarding disabled' "$work/demo.txt" || fail "the demo's cause is not forwarding disabled"
grep -q '"schema": *"pathtrace/v1"' "$work/demo.json" || fail "demo.json is not a pathtrace/v1 trace"
# The saved trace re-renders to the verdict the container printed.
bin/image/rootfs/usr/local/bin/pathtrace show "$work/demo.json" | grep -q '^Verdict: DROPPED' ||
	fail "pathtrace show demo.json does not give the verdict"

echo "== ctr -n k8s.io images import (a containerd of its own), ctr run --version"
cat >"$work/containerd.toml" <<TOML
version = 2
root = "$work/containerd/root"
state = "$work/containerd/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$work/containerd/containerd.sock"
TOML
containerd --config "$work/containerd.toml" >"$work/containerd.log" 2>&1 &
ctrd_pid=$!
ctr=(ctr -a "$work/containerd/containerd.sock" -n k8s.io)
for _ in $(seq 50); do "${ctr[@]}" version >/dev/null 2>&1 && break; sleep 0.2; done
"${ctr[@]}" images import "$IMAGE_TAR" >/dev/null || { cat "$work/containerd.log"; fail "ctr images import"; }
got=$("${ctr[@]}" images ls -q)
[ "$got" = "$IMAGE" ] || fail "containerd named the image '$got', want $IMAGE"
v2=$("${ctr[@]}" run --rm --privileged --net-host "$IMAGE" "pathtrace-image-test-$$" /usr/local/bin/pathtrace --version) ||
	{ tail -20 "$work/containerd.log"; fail "ctr run"; }
[ "$v2" = "$v" ] || fail "ctr run --version printed '$v2', podman '$v'"
echo "$v2"

echo "image-test: ok: loaded by podman and containerd; --version, and the demo traced from inside the container"
