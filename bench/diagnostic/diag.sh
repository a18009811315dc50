#!/usr/bin/env bash
# The 10-probe diagnostic as an on-call engineer would script it: psql, redis-cli, curl, df, free.
#   diag.sh PG_URL REDIS_HOST REDIS_PORT HTTP_URL QUEUE_KEY
pg=$1 rhost=$2 rport=$3 url=$4 queue=$5
export PGCONNECT_TIMEOUT=2
psql "$pg" -XAtc "SELECT 1"
psql "$pg" -XAtc "SELECT state, count(*) FROM pg_stat_activity GROUP BY state"
psql "$pg" -XAtc "SELECT pid, pg_blocking_pids(pid) FROM pg_stat_activity WHERE cardinality(pg_blocking_pids(pid)) > 0"
timeout 2 redis-cli -h "$rhost" -p "$rport" PING
timeout 2 redis-cli -h "$rhost" -p "$rport" INFO memory | grep used_memory:
timeout 2 redis-cli -h "$rhost" -p "$rport" LLEN "$queue"
curl -fsS -m 2 -o /dev/null -w '%{http_code}\n' "$url"
df -P /
free -b
cat /proc/loadavg
