#!/usr/bin/env bash
# sys.largest and sys.files against du and find on the same tree (a fresh tree of small files, and
# /usr): the walks disk-full relies on should cost no more than the tools an engineer would type.
#   bench/walk.sh [BINARY] [FILES]
set -euo pipefail
bin=$(realpath "${1:-./runbook}")
files=${2:-50000}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

python3 - "$work/tree" "$files" <<'PY'
import os, sys
root, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    d = os.path.join(root, "d%02d" % (i % 50), "e%03d" % (i % 997))
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "f%d.log" % i), "wb") as f:
        f.write(b"x" * (i % 5000))
PY

cat >"$work/walk.lua" <<'LUA'
local sys = require "sys"
return runbook {
  name = "walk", summary = "benchmark", severity = "SEV4",
  inputs = { dir = input.path { required = true }, what = input.string { default = "largest" } },
  step "walk" { title = "walk", run = function(ctx)
    if ctx.what == "largest" then
      local r = must(sys.largest(ctx.dir, { depth = 2, timeout = 600 }))
      print("entries", #r.entries, "total", r.total_bytes, "partial", r.partial)
    else
      local r = must(sys.files(ctx.dir, { pattern = "*.log", min_size = 1000, timeout = 600 }))
      print("count", r.count, "total", r.total_bytes, "partial", r.partial)
    end
  end },
}
LUA

best() { # label, command...: best of 5 wall-clock runs, in ms
    local label=$1; shift
    local best=999999 start end ms
    for _ in 1 2 3 4 5; do
        start=$(date +%s%N); "$@" >/dev/null 2>&1; end=$(date +%s%N)
        ms=$(( (end - start) / 1000000 )); [ "$ms" -lt "$best" ] && best=$ms
    done
    printf '%-52s %6d ms\n' "$label" "$best"
}

run() { "$bin" exec "$work/walk.lua" --auto --transcript "$work/t$RANDOM$RANDOM.cast" "$@"; }
echo "tree: $files files in $(find "$work/tree" -type d | wc -l) directories; best of 5 (warm cache)"
best "runbook: sys.largest(tree, depth 2)" run dir="$work/tree" what=largest
best "du -x -d 2 tree" du -x -d 2 "$work/tree"
best "runbook: sys.files(tree, *.log, >= 1000 B)" run dir="$work/tree" what=files
best "find tree -name '*.log' -size +999c" find "$work/tree" -name '*.log' -size +999c
best "runbook: sys.largest(/usr, depth 2)" run dir=/usr what=largest
best "du -x -d 2 /usr" du -x -d 2 /usr
