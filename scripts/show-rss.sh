#!/usr/bin/env bash
# `make show-rss`: the peak RSS of `pathtrace show` on a large trace and on inputs that are
# not traces, which must stay under 64 MB whatever the size (issue #15): a ~1 GB trace written
# by bin/bigtrace (bench/bigtrace: a recorded trace's packets repeated), /dev/zero, 300 MB of
# random bytes, and 300 MB of JSON that starts as a trace and whose meta never ends. Also
# `pathtrace merge` at its default bound. No privileges; needs ~1.5 GB in $TMPDIR (removed
# after), and a minute or two. SIZE=<bytes> changes the large trace's size.
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
SIZE=${SIZE:-1073741824}
LIMIT_KB=$((64 * 1024))
CGO_ENABLED=0 "$GO" build -o bin/pathtrace ./cmd/pathtrace
"$GO" build -o bin/bigtrace ./bench/bigtrace
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT

./bin/bigtrace -o "$dir/big.json" -size "$SIZE"
head -c 300000000 /dev/urandom >"$dir/random.bin"
{ printf '{"schema": "pathtrace/v1", "meta": {"kernel": "'; head -c 300000000 /dev/zero | tr '\0' a; } >"$dir/endless-meta.json"
for n in 1 2; do
	./bin/bigtrace -from "testdata/merge/tcp/node$n.json" -o "$dir/node$n.json" -rounds 5000 -span 3s
done

fail=0
# measure NAME LIMIT_KB CMD...: runs CMD under /usr/bin/time, prints one row.
measure() {
	local name=$1 limit=$2
	shift 2
	local rc=0
	/usr/bin/time -f '%M %e' -o "$dir/time" "$@" >/dev/null 2>"$dir/err" || rc=$?
	read -r rss secs < <(tail -n 1 "$dir/time")
	local err
	err=$(head -c 110 "$dir/err")
	printf '%-28s %8d KB %7ss  exit %d  %s\n' "$name" "$rss" "$secs" "$rc" "$err"
	if [ "$limit" -gt 0 ] && [ "$rss" -gt "$limit" ]; then
		echo "  over $((limit / 1024)) MB" >&2
		fail=1
	fi
}
printf '%-28s %11s %8s\n' input "peak RSS" time
measure "show $(($(stat -c %s "$dir/big.json") / 1048576)) MB trace" $LIMIT_KB ./bin/pathtrace show --color never "$dir/big.json"
measure "show /dev/zero" $LIMIT_KB ./bin/pathtrace show /dev/zero
measure "show 300 MB random" $LIMIT_KB ./bin/pathtrace show "$dir/random.bin"
measure "show 300 MB endless meta" $LIMIT_KB ./bin/pathtrace show "$dir/endless-meta.json"
measure "merge 2x$(($(stat -c %s "$dir/node1.json") / 1048576)) MB (cut at 50000)" 0 ./bin/pathtrace merge --color never "$dir/node1.json" "$dir/node2.json"
exit $fail
