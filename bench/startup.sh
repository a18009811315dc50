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

# A state directory of its own: `list` reads past sessions ("last run 3 days ago"). The second
# one holds 2000 sessions of disk-full, as a year of use might: the newest a success, then 1999
# failures, or, for the worst case, the other way round (list reads back to the last success).
state=$(mktemp -d)
trap 'rm -rf "$state"' EXIT
export XDG_STATE_HOME=$state/empty

echo "runs per command: $n ($(nproc) cores, $(uname -r))"
measure "runbook --version (no Lua)" "$bin" --version
measure "runbook check runbooks/disk-full.lua" "$bin" check runbooks/disk-full.lua
measure "runbook show disk-full" "$bin" show disk-full
measure "runbook list" "$bin" list

export XDG_STATE_HOME=$state/busy
dir=$XDG_STATE_HOME/runbook/transcripts
sessions() { # FIRST LATER: a session like FIRST, then 1999 like LATER, named as exec names them
    rm -rf "$dir"
    "$bin" exec disk-full --auto "path=$1" >/dev/null 2>&1 || true
    "$bin" exec disk-full --auto "path=$2" >/dev/null 2>&1 || true
    local later
    later=$(ls -t "$dir"/*.cast | head -1)
    for ((i = 0; i < 1999; i++)); do
        cp "$later" "$dir/disk-full-2099$(printf '%04d' $((i / 100)))T00$(printf '%02d' $((i % 100 / 60)))$(printf '%02d' $((i % 60)))Z-$(printf '%06x' "$i").cast"
    done
}
sessions /nonexistent-path /
measure "runbook list (2000 sessions, newest ok)" "$bin" list
sessions / /nonexistent-path
measure "runbook list (2000 sessions, 1999 failed)" "$bin" list
if command -v lua5.4 >/dev/null; then measure "lua5.4 -e '' (floor)" lua5.4 -e ''; fi
