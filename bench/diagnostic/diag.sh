#!/usr/bin/env bash
# The 10-probe diagnostic as an on-call engineer would script it: psql, redis-cli, curl, df, free.
# The SQL is that of conn:connections() and conn:blocked() (stdlib/pg_probes.c).
#   diag.sh PG_URL REDIS_HOST REDIS_PORT HTTP_URL QUEUE_KEY
pg=$1 rhost=$2 rport=$3 url=$4 queue=$5
export PGCONNECT_TIMEOUT=2
psql "$pg" -XAtc "SELECT 1"
psql "$pg" -XAt -c "SELECT current_setting('max_connections')::int AS max_connections, current_setting('superuser_reserved_connections')::int AS reserved" \
    -c "SELECT coalesce(datname, '') AS database, coalesce(state, 'unknown') AS state, count(*)::int AS n FROM pg_stat_activity WHERE backend_type = 'client backend' GROUP BY 1, 2 ORDER BY 1, 2"
psql "$pg" -XAtc "SELECT w.pid, w.usename AS user, w.datname AS database, w.application_name AS application, w.wait_event_type, w.wait_event, (extract(epoch FROM clock_timestamp() - w.query_start) * 1000)::bigint AS wait_ms, left(w.query, 2000) AS query, bp.pid AS blocker_pid, b.usename AS blocker_user, b.application_name AS blocker_application, b.state AS blocker_state, (extract(epoch FROM clock_timestamp() - b.xact_start) * 1000)::bigint AS blocker_xact_ms, left(b.query, 2000) AS blocker_query, cardinality(pg_blocking_pids(bp.pid)) = 0 AS blocker_is_root FROM pg_stat_activity w CROSS JOIN LATERAL unnest(pg_blocking_pids(w.pid)) AS bp(pid) LEFT JOIN pg_stat_activity b ON b.pid = bp.pid WHERE w.pid <> pg_backend_pid() ORDER BY w.query_start, w.pid, bp.pid"
timeout 2 redis-cli -h "$rhost" -p "$rport" PING
timeout 2 redis-cli -h "$rhost" -p "$rport" INFO memory | grep used_memory:
timeout 2 redis-cli -h "$rhost" -p "$rport" LLEN "$queue"
curl -fsS -m 2 -o /dev/null -w '%{http_code}\n' "$url"
df -P /
free -b
cat /proc/loadavg
