#!/usr/bin/env bash
# Installs what `make bench` needs besides pathtrace's own build deps, from Debian's packages:
# iperf3 (the traffic) and bpftrace (the comparison tracer). Idempotent: a package already
# installed is not fetched again.
set -euo pipefail

pkgs=(
	iperf3     # traffic: UDP small packets and TCP between the lab's pod and ext
	bpftrace   # the same tracepoints and filter in a bpftrace script, for comparison
	iproute2   # ip netns exec, to run iperf3 inside the lab's namespaces
)

. "$(dirname "${BASH_SOURCE[0]}")/apt-install.sh"
apt_install "${pkgs[@]}"
