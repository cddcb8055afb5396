#!/usr/bin/env bash
# README's test command (via `make test`): every package's tests, unit and end-to-end. As root
# nothing may be skipped: a skipped privileged test would hide a broken end-to-end suite.
set -uo pipefail
cd "$(dirname "$0")/.."
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# -p 1: the privileged packages share one kernel. pathtrace adds its tracing table to every
# namespace it can see and the leftover checks list every BPF program, so two packages running
# at once would see each other.
# The Kubernetes harness's packages build Kubernetes and run a kubelet: make k8s-test runs them.
go test -count=1 -p 1 -v "$@" $(go list ./... | grep -v -e /internal/kubetest -e /e2e/kube) >"$log" 2>&1
rc=$?
grep -E '^(ok|FAIL|---|\?|panic:)|^\s+--- (FAIL|SKIP)' "$log" | grep -v -- '--- PASS'
if [ $rc -ne 0 ]; then
	echo "== failures in detail:"
	grep -B2 -A40 -E -- '--- FAIL' "$log" | head -400
	exit $rc
fi
passed=$(grep -cE -- '--- PASS' "$log")
skipped=$(grep -cE -- '--- SKIP' "$log")
echo "tests: $passed passed, 0 failed, $skipped skipped"
if [ "$(id -u)" -eq 0 ] && [ "$skipped" -ne 0 ]; then
	echo "tests were skipped although running as root:" >&2
	grep -A2 -- '--- SKIP' "$log" >&2
	exit 1
fi
