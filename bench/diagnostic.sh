#!/usr/bin/env bash
# The issue-3 benchmark: a 10-probe diagnostic (PostgreSQL SELECT 1, connections by state, blocked
# queries; Redis PING, INFO memory, LLEN; HTTP GET /health; disk, memory, load) three ways:
#   runbook exec bench/diagnostic/diag.lua --auto     (parallel, one process)
#   bench/diagnostic/diag.sh                           (psql, redis-cli, curl, df, free)
#   bench/diagnostic/diag.c                            (hand-written C, same libraries, sequential)
# against servers it starts on 127.0.0.1 (postgresql, redis-server, a python HTTP server), then
# again with all three unreachable (listeners that never answer), where the deadline is 2 s.
# Commands run in turn, round after round (bench/diagnostic/interleave.py), so that the machine's
# drifts fall on all three alike. Three more rows show where the time goes: the runbook with the
# servers checked one after another (as the C program does), a runbook that checks nothing (what a
# session costs by itself) and the C program started with no checks (start and libraries).
#   bench/diagnostic.sh [BINARY] [RUNS]      needs: postgresql, redis-server, curl, time (apt)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin=$(realpath "${1:-$here/../runbook}")
runs=${2:-20}
work=$(mktemp -d)
chmod 755 "$work"
pids=()
cleanup() {
    # pg_ctl waits for the server to be gone: rm -rf under a server still shutting down fails.
    [ -f "$work/pg/postmaster.pid" ] && as_pg "$pgbin/pg_ctl" -D "$work/pg" -m immediate -w stop >/dev/null 2>&1 || true
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
pgbin=/usr/lib/postgresql/15/bin

pgport=$(free_port); rport=$(free_port); hport=$(free_port)
mkdir -p "$work/pg" && [ "$(id -u)" = 0 ] && chown postgres "$work/pg"
as_pg "$pgbin/initdb" -D "$work/pg" -U bench --auth=trust >/dev/null
as_pg "$pgbin/pg_ctl" -D "$work/pg" -o "-c listen_addresses=127.0.0.1 -p $pgport -k $work/pg" -l "$work/pg/log" -w start >/dev/null
redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no --dir "$work" >/dev/null & pids+=($!)
python3 - "$hport" <<'PY' & pids+=($!)
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b'{"status":"ok"}'
        self.send_response(200); self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body))); self.end_headers(); self.wfile.write(body)
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
PY
for _ in $(seq 100); do
    redis-cli -p "$rport" ping >/dev/null 2>&1 && curl -fs "http://127.0.0.1:$hport/" >/dev/null 2>&1 && break
    sleep 0.05
done
redis-cli -p "$rport" rpush jobs a b c >/dev/null

cc -O2 $(pkg-config --cflags libpq hiredis libcurl) -o "$work/diag" "$here/diagnostic/diag.c" $(pkg-config --libs libpq hiredis libcurl)

pg="postgresql://bench@127.0.0.1:$pgport/postgres"
args_c=("$pg" 127.0.0.1 "$rport" "http://127.0.0.1:$hport/health" jobs)
# runbook is started directly, as the others are (no wrapper script, whose bash start would count).
# Its transcripts go to the default place under XDG_STATE_HOME, a fresh name each session.
export XDG_STATE_HOME="$work/state"
rb() { # PG_URL REDIS_HOST REDIS_PORT HTTP_URL QUEUE [MODE] -> the runbook command line
    rb_cmd=("$bin" exec "$here/diagnostic/diag.lua" --auto pg="$1" redis="redis://$2:$3/0" url="$4" queue="$5" mode="${6:-parallel}")
}

echo "servers up: postgres :$pgport, redis :$rport, http :$hport; $runs rounds, each command once per round"
rb "${args_c[@]}" sequential
seq_cmd=("${rb_cmd[@]}")
rb "${args_c[@]}"
python3 "$here/diagnostic/interleave.py" --compare 2 "$runs" "runbook exec diag.lua --auto" -- "${rb_cmd[@]}" \
    -- "bash: psql, redis-cli, curl" -- "$here/diagnostic/diag.sh" "${args_c[@]}" \
    -- "hand-written C" -- "$work/diag" "${args_c[@]}" \
    -- "runbook, mode=sequential" -- "${seq_cmd[@]}" \
    -- "runbook, no checks (empty.lua)" -- "$bin" exec "$here/diagnostic/empty.lua" --auto \
    -- "C, no checks (--no-checks)" -- "$work/diag" --no-checks

# Unreachable: listeners whose accept queue is full drop the SYNs, so every connect waits for its deadline.
python3 - "$work/holes" <<'PY' & pids+=($!)
import socket, sys, time, os
socks, ports = [], []
for _ in range(3):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(0); ports.append(s.getsockname()[1]); socks.append(s)
    for _ in range(4):
        c = socket.socket(); c.setblocking(False); c.connect_ex(("127.0.0.1", ports[-1])); socks.append(c)
open(sys.argv[1], "w").write(" ".join(map(str, ports)))
time.sleep(3600)
PY
for _ in $(seq 100); do [ -s "$work/holes" ] && break; sleep 0.05; done
read -r h1 h2 h3 < "$work/holes" || true   # no final newline
dead=("postgresql://bench@127.0.0.1:$h1/postgres" 127.0.0.1 "$h2" "http://127.0.0.1:$h3/health" jobs)
echo "all three unreachable (deadline 2 s each), one round:"
rb "${dead[@]}"
python3 "$here/diagnostic/interleave.py" 1 "runbook exec diag.lua --auto" -- "${rb_cmd[@]}" \
    -- "bash: psql, redis-cli, curl" -- "$here/diagnostic/diag.sh" "${dead[@]}" \
    -- "hand-written C" -- "$work/diag" "${dead[@]}"
