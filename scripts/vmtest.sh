#!/usr/bin/env bash
# `make vmtest`: the end-to-end suite on Debian's cloud kernels (bullseye 5.10, bookworm 6.1,
# trixie 6.12) under qemu/TCG. Arguments go to the runner (go run ./vmtest/runner -h), e.g.
#   scripts/vmtest.sh -kernels bookworm -run 'TestHealthyPing' -v
# Results: a table on stdout, console logs in vmtest/results/<suite>.log. Downloads are cached
# in ${PATHTRACE_VMTEST_CACHE:-~/.cache/pathtrace-vmtest}.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
	export PATH=$PATH:/usr/local/go/bin
fi
./scripts/vmtest-deps.sh
exec go run ./vmtest/runner "$@"
