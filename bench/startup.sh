#!/usr/bin/env bash
# Startup cost: how long the commands that must feel instant take, averaged over N runs.
#   bench/startup.sh [BINARY] [N]
# Compares with `lua5.4 -e ''` when the standalone interpreter is installed, as the floor for
# "start a Lua state and exit".
set -euo pipefail
bin=${1:-./runbook}
n=${2:-200}

measure() { # label, command...
    local label=$1; shift
    local start end
    start=$(date +%s%N)
    for ((i = 0; i < n; i++)); do "$@" >/dev/null 2>&1 || true; done
    end=$(date +%s%N)
    printf '%-44s %8.3f ms/run\n' "$label" "$(awk -v a="$start" -v b="$end" -v n="$n" 'BEGIN { print (b - a) / n / 1e6 }')"
}

echo "runs per command: $n ($(nproc) cores, $(uname -r))"
measure "runbook --version (no Lua)" "$bin" --version
measure "runbook check runbooks/disk-full.lua" "$bin" check runbooks/disk-full.lua
measure "runbook show disk-full" "$bin" show disk-full
measure "runbook list" "$bin" list
if command -v lua5.4 >/dev/null; then measure "lua5.4 -e '' (floor)" lua5.4 -e ''; fi
