/*
 * pg_probes.c - the ready-made PostgreSQL probes, as methods of a
 * connection (named after check_postgres' vocabulary). Each probe is a fixed statement run in a
 * READ ONLY transaction like conn:query, with its result shaped into named fields in base units
 * (counts, bytes, ms); every one takes { timeout = 10 } besides its own options.
 *
 *   conn:connections()  -> { total, max_connections, reserved, available, used_pct, active, idle,
 *                            idle_in_transaction, by_state = { state = n }, databases = { {database,
 *                            total, <state> = n} }, ms }           (client backends only)
 *   conn:long_running { min = "5m" }       -> { {pid, user, database, application, client, state,
 *                            wait_event_type, wait_event, duration_ms, xact_ms, query}, ..., count, max_ms, ms }
 *   conn:idle_in_transaction { min = "1m" } -> { {pid, ..., state, idle_ms, xact_ms, query}, ..., count, max_ms, ms }
 *   conn:blocked()      -> { {pid, user, database, application, wait_event_type, wait_event, wait_ms,
 *                            query, blocked_by = {pids}, blockers = { {pid, user, application, state,
 *                            xact_ms, query} }}, ..., count, roots = {pids that block and wait on
 *                            nobody}, max_wait_ms, ms }
 *   conn:locks()        -> { {mode, granted, count}, ..., total, granted, waiting, waiting_backends,
 *                            by_mode = { Mode = { granted, waiting } }, ms }
 *   conn:replication()  -> { role = "primary" | "replica", in_recovery, current_lsn (primary),
 *                            receive_lsn, replay_lsn, replay_lag_bytes, replay_lag_ms (replica),
 *                            replicas = { {pid, user, application, client, state, sync_state,
 *                            sent_lag_bytes, write_lag_bytes, flush_lag_bytes, replay_lag_bytes,
 *                            write_lag_ms, flush_lag_ms, replay_lag_ms} }, replica_count,
 *                            max_replay_lag_bytes, receiver = { status, sender_host, sender_port,
 *                            slot_name, last_msg_ms } | nil, ms }
 *   conn:database_sizes() -> { {database, bytes}, ..., total_bytes, ms }
 *   conn:migrations { framework = nil }   -> { framework = "alembic" | "django" | "rails" | "flyway"
 *                            | "migrate" | nil, table, latest (the newest migration: Alembic heads
 *                            joined by ",", Django "app.name", Rails/migrate version, Flyway version),
 *                            name (Django migration, Flyway description), applied (timestamp text),
 *                            success (Flyway: of the newest), count, failed (Flyway: rows with
 *                            success = false; migrate: 1 when dirty), heads (Alembic),
 *                            found = {frameworks whose table exists}, ms }
 *
 * The backend actions (terminate_idle, cancel, terminate) are in pg_actions.c.
 */
#include "pg_probe.h"

#include <lauxlib.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------------ helpers */

const char *const timeout_only[] = { "timeout", NULL };



/* Checks the handle and the probe's options (at opts_idx), then pushes its op with the statements
 * queued; NULL after pushing nil, err, "closed" for a broken handle (the caller returns 3). Option
 * values (and params) the caller read before stay valid: the options table stays on the stack. */
struct pg_op *probe_start(lua_State *L, const struct probe *p, int opts_idx, const char *const *params)
{
	struct pg_handle *h = pg_check_handle(L, 1, p->fn);
	luax_check_options(L, opts_idx, p->fn, p->options);
	msec_t timeout = luax_opt_duration(L, opts_idx, "timeout", PG_DEFAULT_QUERY_TIMEOUT_MS, p->fn);
	lua_settop(L, opts_idx);
	if (pg_handle_unusable(L, h, p->fn))
		return NULL;
	struct pg_op *op = pg_op_push(L, p->fn, h, timeout);
	for (int i = 0; i < PG_MAX_STMTS && p->sql[i]; i++)
		pg_op_stmtv(op, p->sql[i], i == 0 ? p->nparams : 0, params);
	pg_op_pipeline(op, true, 0);
	return op;
}

/* A probe method whose callback needs nothing from the call but the results. */
int probe_run(lua_State *L, const struct probe *p, int opts_idx, const char *const *params)
{
	struct pg_op *op = probe_start(L, p, opts_idx, params);
	return op ? pg_op_run(L, op, p->done) : 3;
}

/* Writes op's transcript record with a printf-style summary: pg_audit for a probe's outcome,
 * pg_action_result for an action's. */
void summarize(void (*record)(struct pg_op *, const char *), struct pg_op *op, const char *fmt, ...)
{
	char summary[300];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(summary, sizeof summary, fmt, ap);
	va_end(ap);
	record(op, summary);
}

static void incr(lua_State *L, int t, const char *key, lua_Integer by)
{
	lua_getfield(L, t, key);
	lua_Integer v = lua_tointeger(L, -1) + by;
	lua_pop(L, 1);
	lua_pushinteger(L, v);
	lua_setfield(L, t, key);
}

/* "idle in transaction (aborted)" -> "idle_in_transaction_aborted" */
static void state_key(char *out, size_t n, const char *state)
{
	size_t k = 0;
	for (const char *p = state; *p && k + 1 < n; p++) {
		if (*p == '(' || *p == ')')
			continue;
		out[k++] = *p == ' ' ? '_' : *p;
	}
	while (k > 0 && out[k - 1] == '_')
		k--;
	out[k] = 0;
}

void fmt_ms(char *out, size_t n, double ms)
{
	if (ms < 1000)
		snprintf(out, n, "%.0f ms", ms);
	else if (ms < 60000)
		snprintf(out, n, "%.1f s", ms / 1000);
	else if (ms < 3600000)
		snprintf(out, n, "%dm %02ds", (int)(ms / 60000), (int)(ms / 1000) % 60);
	else
		snprintf(out, n, "%dh %02dm", (int)(ms / 3600000), (int)(ms / 60000) % 60);
}

/* Sets t[key] from a column of row 0 (nil when NULL). */
static void set_col(lua_State *L, const PGresult *r, int row, const char *col, const char *key)
{
	int j = PQfnumber(r, col);
	if (j < 0 || row >= PQntuples(r))
		return;
	pg_push_value(L, r, row, j);
	lua_setfield(L, -2, key ? key : col);
}

/* A duration option in ms, as a decimal string for a bigint parameter. */
void duration_param(lua_State *L, int idx, const char *key, msec_t def, const char *fn, char *out, size_t n)
{
	snprintf(out, n, "%lld", (long long)luax_opt_duration(L, idx, key, def, fn));
}

/* ------------------------------------------------------------------------- connections */

static const char SQL_SETTINGS[] =
	"SELECT current_setting('max_connections')::int AS max_connections, "
	"current_setting('superuser_reserved_connections')::int AS reserved";

static const char SQL_CONNECTIONS[] =
	"SELECT coalesce(datname, '') AS database, coalesce(state, 'unknown') AS state, count(*)::int AS n "
	"FROM pg_stat_activity WHERE backend_type = 'client backend' GROUP BY 1, 2 ORDER BY 1, 2";

static int connections_done(lua_State *L, struct pg_op *op)
{
	if (op->kind)
		return pg_probe_failed(L, op);
	const PGresult *set = op->res[0], *r = op->res[1];
	lua_Integer max = pg_int(set, 0, "max_connections"), reserved = pg_int(set, 0, "reserved"), total = 0;
	lua_createtable(L, 0, 12);
	int top = lua_gettop(L);
	lua_newtable(L);                 /* by_state */
	lua_newtable(L);                 /* databases */
	lua_newtable(L);                 /* name -> database entry */
	int by_state = top + 1, dbs = top + 2, index = top + 3;
	for (const char *s = "active\0idle\0idle_in_transaction\0"; *s; s += strlen(s) + 1)
		incr(L, by_state, s, 0);
	for (int i = 0; i < PQntuples(r); i++) {
		char key[64];
		state_key(key, sizeof key, pg_text(r, i, "state"));
		lua_Integer n = pg_int(r, i, "n");
		const char *db = pg_text(r, i, "database");
		total += n;
		incr(L, by_state, key, n);
		if (lua_getfield(L, index, db) != LUA_TTABLE) {
			lua_pop(L, 1);
			lua_createtable(L, 0, 4);
			luax_setstr(L, "database", db);
			luax_setint(L, "total", 0);
			lua_pushvalue(L, -1);
			lua_setfield(L, index, db);
			lua_pushvalue(L, -1);
			lua_rawseti(L, dbs, (lua_Integer)lua_rawlen(L, dbs) + 1);
		}
		int e = lua_gettop(L);
		incr(L, e, "total", n);
		incr(L, e, key, n);
		lua_pop(L, 1);
	}
	lua_pop(L, 1);
	lua_setfield(L, top, "databases");
	for (const char *s = "active\0idle\0idle_in_transaction\0"; *s; s += strlen(s) + 1) {
		lua_getfield(L, by_state, s);
		lua_setfield(L, top, s);
	}
	lua_setfield(L, top, "by_state");
	luax_setint(L, "total", total);
	luax_setint(L, "max_connections", max);
	luax_setint(L, "reserved", reserved);
	luax_setint(L, "available", max - reserved - total > 0 ? max - reserved - total : 0);
	double pct = max > 0 ? (double)total * 100.0 / (double)max : 0;
	luax_setnum(L, "used_pct", pct);
	luax_setnum(L, "ms", pg_elapsed(op));
	lua_getfield(L, top, "active");
	lua_getfield(L, top, "idle_in_transaction");
	summarize(pg_audit, op, "%lld of %lld connections (%.0f%%): %lld active, %lld idle in transaction",
	          (long long)total, (long long)max, pct, (long long)lua_tointeger(L, -2), (long long)lua_tointeger(L, -1));
	lua_pop(L, 2);
	return 1;
}

static const struct probe CONNECTIONS = {
	.fn = "pg.connections", .options = timeout_only, .sql = { SQL_SETTINGS, SQL_CONNECTIONS }, .done = connections_done,
};

static int conn_connections(lua_State *L) { return probe_run(L, &CONNECTIONS, 2, NULL); }

/* ------------------------------------------------ long_running, idle_in_transaction */

static const char SQL_LONG_RUNNING[] =
	"SELECT pid, usename AS user, datname AS database, application_name AS application, "
	"host(client_addr) AS client, state, wait_event_type, wait_event, "
	"(extract(epoch FROM clock_timestamp() - query_start) * 1000)::bigint AS duration_ms, "
	"(extract(epoch FROM clock_timestamp() - xact_start) * 1000)::bigint AS xact_ms, "
	"left(query, 2000) AS query "
	"FROM pg_stat_activity "
	"WHERE state = 'active' AND backend_type = 'client backend' AND pid <> pg_backend_pid() "
	"AND query_start <= clock_timestamp() - $1::bigint * interval '1 millisecond' "
	"ORDER BY query_start";

static const char SQL_IDLE_IN_TRANSACTION[] =
	"SELECT pid, usename AS user, datname AS database, application_name AS application, "
	"host(client_addr) AS client, state, "
	"(extract(epoch FROM clock_timestamp() - state_change) * 1000)::bigint AS idle_ms, "
	"(extract(epoch FROM clock_timestamp() - xact_start) * 1000)::bigint AS xact_ms, "
	"left(query, 2000) AS query "
	"FROM pg_stat_activity "
	"WHERE state IN ('idle in transaction', 'idle in transaction (aborted)') AND pid <> pg_backend_pid() "
	"AND state_change <= clock_timestamp() - $1::bigint * interval '1 millisecond' "
	"ORDER BY state_change";

/* Rows as they are, plus count and the largest value of one column (max_ms). */
static int rows_max_done(lua_State *L, struct pg_op *op, const char *col, const char *what)
{
	if (op->kind)
		return pg_probe_failed(L, op);
	const PGresult *r = op->res[0];
	lua_Integer max = 0;
	for (int i = 0; i < PQntuples(r); i++)
		if (pg_int(r, i, col) > max)
			max = pg_int(r, i, col);
	pg_push_rows(L, r, pg_elapsed(op));
	luax_setint(L, "count", PQntuples(r));
	luax_setint(L, "max_ms", max);
	char longest[32];
	fmt_ms(longest, sizeof longest, (double)max);
	summarize(pg_audit, op, "%d %s%s%s", PQntuples(r), what, PQntuples(r) ? ", the longest " : "",
	          PQntuples(r) ? longest : "");
	return 1;
}

static int long_running_done(lua_State *L, struct pg_op *op)
{
	return rows_max_done(L, op, "duration_ms", "long-running queries");
}

static int idle_in_transaction_done(lua_State *L, struct pg_op *op)
{
	return rows_max_done(L, op, "idle_ms", "backends idle in transaction");
}

static const char *const min_options[] = { "timeout", "min", NULL };

static const struct probe LONG_RUNNING = {
	.fn = "pg.long_running", .options = min_options, .sql = { SQL_LONG_RUNNING }, .nparams = 1,
	.done = long_running_done,
};

static const struct probe IDLE_IN_TRANSACTION = {
	.fn = "pg.idle_in_transaction", .options = min_options, .sql = { SQL_IDLE_IN_TRANSACTION }, .nparams = 1,
	.done = idle_in_transaction_done,
};

/* Runs p with its option { min = <duration> } (default def) as $1, in ms. */
static int probe_min(lua_State *L, const struct probe *p, msec_t def)
{
	char min[32];
	duration_param(L, 2, "min", def, p->fn, min, sizeof min);
	const char *params[] = { min };
	return probe_run(L, p, 2, params);
}

static int conn_long_running(lua_State *L) { return probe_min(L, &LONG_RUNNING, 5 * 60 * 1000); }
static int conn_idle_in_transaction(lua_State *L) { return probe_min(L, &IDLE_IN_TRANSACTION, 60 * 1000); }

/* ------------------------------------------------------------------------------ blocked */

static const char SQL_BLOCKED[] =
	"SELECT w.pid, w.usename AS user, w.datname AS database, w.application_name AS application, "
	"w.wait_event_type, w.wait_event, "
	"(extract(epoch FROM clock_timestamp() - w.query_start) * 1000)::bigint AS wait_ms, "
	"left(w.query, 2000) AS query, bp.pid AS blocker_pid, b.usename AS blocker_user, "
	"b.application_name AS blocker_application, b.state AS blocker_state, "
	"(extract(epoch FROM clock_timestamp() - b.xact_start) * 1000)::bigint AS blocker_xact_ms, "
	"left(b.query, 2000) AS blocker_query, "
	"cardinality(pg_blocking_pids(bp.pid)) = 0 AS blocker_is_root "
	"FROM pg_stat_activity w "
	"CROSS JOIN LATERAL unnest(pg_blocking_pids(w.pid)) AS bp(pid) "
	"LEFT JOIN pg_stat_activity b ON b.pid = bp.pid "
	"WHERE w.pid <> pg_backend_pid() "
	"ORDER BY w.query_start, w.pid, bp.pid";

static int blocked_done(lua_State *L, struct pg_op *op)
{
	if (op->kind)
		return pg_probe_failed(L, op);
	const PGresult *r = op->res[0];
	lua_createtable(L, 8, 5);
	int top = lua_gettop(L);
	lua_newtable(L);                 /* roots: pid -> true, turned into an array below */
	int roots = top + 1, count = 0;
	lua_Integer prev = -1, max_wait = 0;
	int entry = 0, blockers = 0, blocked_by = 0;
	for (int i = 0; i < PQntuples(r); i++) {
		lua_Integer pid = pg_int(r, i, "pid");
		if (pid != prev) {
			if (entry)
				lua_settop(L, roots);
			prev = pid;
			lua_createtable(L, 0, 11);
			entry = lua_gettop(L);
			static const char *const cols[] = { "pid", "user", "database", "application", "wait_event_type",
			                                    "wait_event", "wait_ms", "query", NULL };
			for (int c = 0; cols[c]; c++)
				set_col(L, r, i, cols[c], NULL);
			lua_pushvalue(L, entry);
			lua_rawseti(L, top, ++count);
			lua_newtable(L);
			blocked_by = lua_gettop(L);
			lua_pushvalue(L, blocked_by);
			lua_setfield(L, entry, "blocked_by");
			lua_newtable(L);
			blockers = lua_gettop(L);
			lua_pushvalue(L, blockers);
			lua_setfield(L, entry, "blockers");
			if (pg_int(r, i, "wait_ms") > max_wait)
				max_wait = pg_int(r, i, "wait_ms");
		}
		lua_Integer bpid = pg_int(r, i, "blocker_pid");
		lua_pushinteger(L, bpid);
		lua_rawseti(L, blocked_by, (lua_Integer)lua_rawlen(L, blocked_by) + 1);
		lua_createtable(L, 0, 6);
		luax_setint(L, "pid", bpid);
		set_col(L, r, i, "blocker_user", "user");
		set_col(L, r, i, "blocker_application", "application");
		set_col(L, r, i, "blocker_state", "state");
		set_col(L, r, i, "blocker_xact_ms", "xact_ms");
		set_col(L, r, i, "blocker_query", "query");
		lua_rawseti(L, blockers, (lua_Integer)lua_rawlen(L, blockers) + 1);
		if (pg_bool(r, i, "blocker_is_root")) {
			lua_pushboolean(L, 1);
			lua_rawseti(L, roots, bpid);
		}
	}
	lua_settop(L, roots);
	lua_newtable(L);                 /* the roots, as a sorted array */
	int n = 0;
	for (int i = 0; i < PQntuples(r); i++) {
		lua_Integer bpid = pg_int(r, i, "blocker_pid");
		if (lua_rawgeti(L, roots, bpid) == LUA_TBOOLEAN) {
			lua_pushinteger(L, bpid);
			lua_rawseti(L, -3, ++n);
			lua_pushnil(L);
			lua_rawseti(L, roots, bpid);
		}
		lua_pop(L, 1);
	}
	lua_setfield(L, top, "roots");
	lua_pop(L, 1);
	luax_setint(L, "count", count);
	luax_setint(L, "max_wait_ms", max_wait);
	luax_setnum(L, "ms", pg_elapsed(op));
	char longest[32];
	fmt_ms(longest, sizeof longest, (double)max_wait);
	summarize(pg_audit, op, "%d blocked backends%s%s", count, count ? ", waiting up to " : "", count ? longest : "");
	return 1;
}

static const struct probe BLOCKED = {
	.fn = "pg.blocked", .options = timeout_only, .sql = { SQL_BLOCKED }, .done = blocked_done,
};

static int conn_blocked(lua_State *L) { return probe_run(L, &BLOCKED, 2, NULL); }

/* -------------------------------------------------------------------------------- locks */

static const char SQL_LOCKS[] =
	"SELECT mode, granted, count(*)::int AS count FROM pg_locks WHERE pid IS DISTINCT FROM pg_backend_pid() "
	"GROUP BY mode, granted ORDER BY mode, granted";
static const char SQL_LOCK_WAITERS[] =
	"SELECT count(DISTINCT pid)::int AS waiting_backends FROM pg_locks WHERE NOT granted";

static int locks_done(lua_State *L, struct pg_op *op)
{
	if (op->kind)
		return pg_probe_failed(L, op);
	const PGresult *r = op->res[0];
	pg_push_rows(L, r, pg_elapsed(op));
	int top = lua_gettop(L);
	lua_newtable(L);
	lua_Integer granted = 0, waiting = 0;
	for (int i = 0; i < PQntuples(r); i++) {
		const char *mode = pg_text(r, i, "mode");
		lua_Integer n = pg_int(r, i, "count");
		bool g = pg_bool(r, i, "granted");
		*(g ? &granted : &waiting) += n;
		if (lua_getfield(L, top + 1, mode) != LUA_TTABLE) {
			lua_pop(L, 1);
			lua_createtable(L, 0, 2);
			luax_setint(L, "granted", 0);
			luax_setint(L, "waiting", 0);
			lua_pushvalue(L, -1);
			lua_setfield(L, top + 1, mode);
		}
		incr(L, lua_gettop(L), g ? "granted" : "waiting", n);
		lua_pop(L, 1);
	}
	lua_setfield(L, top, "by_mode");
	luax_setint(L, "total", granted + waiting);
	luax_setint(L, "granted", granted);
	luax_setint(L, "waiting", waiting);
	luax_setint(L, "waiting_backends", pg_int(op->res[1], 0, "waiting_backends"));
	summarize(pg_audit, op, "%lld locks, %lld waiting", (long long)(granted + waiting), (long long)waiting);
	return 1;
}

static const struct probe LOCKS = {
	.fn = "pg.locks", .options = timeout_only, .sql = { SQL_LOCKS, SQL_LOCK_WAITERS }, .done = locks_done,
};

static int conn_locks(lua_State *L) { return probe_run(L, &LOCKS, 2, NULL); }

/* -------------------------------------------------------------------------- replication */

static const char SQL_RECOVERY[] =
	"SELECT pg_is_in_recovery() AS in_recovery, "
	"CASE WHEN NOT pg_is_in_recovery() THEN pg_current_wal_lsn()::text END AS current_lsn, "
	"pg_last_wal_receive_lsn()::text AS receive_lsn, pg_last_wal_replay_lsn()::text AS replay_lsn, "
	"CASE WHEN pg_is_in_recovery() THEN "
	"  pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn())::bigint END AS replay_lag_bytes, "
	"CASE WHEN NOT pg_is_in_recovery() THEN NULL "
	"  WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0 "
	"  ELSE (extract(epoch FROM clock_timestamp() - pg_last_xact_replay_timestamp()) * 1000)::bigint "
	"END AS replay_lag_ms";

static const char SQL_REPLICAS[] =
	"WITH here AS (SELECT CASE WHEN pg_is_in_recovery() THEN pg_last_wal_receive_lsn() "
	"                          ELSE pg_current_wal_lsn() END AS lsn) "
	"SELECT pid, usename AS user, application_name AS application, host(client_addr) AS client, state, sync_state, "
	"pg_wal_lsn_diff(here.lsn, sent_lsn)::bigint AS sent_lag_bytes, "
	"pg_wal_lsn_diff(here.lsn, write_lsn)::bigint AS write_lag_bytes, "
	"pg_wal_lsn_diff(here.lsn, flush_lsn)::bigint AS flush_lag_bytes, "
	"pg_wal_lsn_diff(here.lsn, replay_lsn)::bigint AS replay_lag_bytes, "
	"(extract(epoch FROM write_lag) * 1000)::bigint AS write_lag_ms, "
	"(extract(epoch FROM flush_lag) * 1000)::bigint AS flush_lag_ms, "
	"(extract(epoch FROM replay_lag) * 1000)::bigint AS replay_lag_ms "
	"FROM pg_stat_replication, here ORDER BY application_name, pid";

static const char SQL_RECEIVER[] =
	"SELECT status, sender_host, sender_port, slot_name, "
	"(extract(epoch FROM clock_timestamp() - last_msg_receipt_time) * 1000)::bigint AS last_msg_ms "
	"FROM pg_stat_wal_receiver";

static int replication_done(lua_State *L, struct pg_op *op)
{
	if (op->kind)
		return pg_probe_failed(L, op);
	const PGresult *rec = op->res[0], *reps = op->res[1], *recv = op->res[2];
	bool replica = pg_bool(rec, 0, "in_recovery");
	lua_createtable(L, 0, 12);
	luax_setstr(L, "role", replica ? "replica" : "primary");
	luax_setbool(L, "in_recovery", replica);
	set_col(L, rec, 0, "current_lsn", NULL);
	set_col(L, rec, 0, "receive_lsn", NULL);
	set_col(L, rec, 0, "replay_lsn", NULL);
	set_col(L, rec, 0, "replay_lag_bytes", NULL);
	set_col(L, rec, 0, "replay_lag_ms", NULL);
	pg_push_rows(L, reps, 0);
	lua_pushnil(L);
	lua_setfield(L, -2, "ms");
	lua_setfield(L, -2, "replicas");
	lua_Integer max_lag = 0;
	for (int i = 0; i < PQntuples(reps); i++)
		if (pg_int(reps, i, "replay_lag_bytes") > max_lag)
			max_lag = pg_int(reps, i, "replay_lag_bytes");
	luax_setint(L, "replica_count", PQntuples(reps));
	luax_setint(L, "max_replay_lag_bytes", max_lag);
	if (PQntuples(recv) > 0) {
		pg_push_row(L, recv, 0);
		lua_setfield(L, -2, "receiver");
	}
	luax_setnum(L, "ms", pg_elapsed(op));
	if (replica)
		summarize(pg_audit, op, "replica, receiver %s, replay lag %lld bytes",
		          pg_text(recv, 0, "status") ? pg_text(recv, 0, "status") : "not running",
		          (long long)pg_int(rec, 0, "replay_lag_bytes"));
	else
		summarize(pg_audit, op, "primary with %d replicas, max replay lag %lld bytes", PQntuples(reps),
		          (long long)max_lag);
	return 1;
}

static const struct probe REPLICATION = {
	.fn = "pg.replication", .options = timeout_only, .sql = { SQL_RECOVERY, SQL_REPLICAS, SQL_RECEIVER },
	.done = replication_done,
};

static int conn_replication(lua_State *L) { return probe_run(L, &REPLICATION, 2, NULL); }

/* ----------------------------------------------------------------------- database_sizes */

static const char SQL_SIZES[] =
	"SELECT datname AS database, "
	"CASE WHEN has_database_privilege(oid, 'CONNECT') THEN pg_database_size(oid) END AS bytes "
	"FROM pg_database WHERE datallowconn ORDER BY 2 DESC NULLS LAST, 1";

static int sizes_done(lua_State *L, struct pg_op *op)
{
	if (op->kind)
		return pg_probe_failed(L, op);
	const PGresult *r = op->res[0];
	lua_Integer total = 0;
	for (int i = 0; i < PQntuples(r); i++)
		total += pg_int(r, i, "bytes");
	pg_push_rows(L, r, pg_elapsed(op));
	luax_setint(L, "total_bytes", total);
	summarize(pg_audit, op, "%d databases, %lld bytes in all", PQntuples(r), (long long)total);
	return 1;
}

static const struct probe DATABASE_SIZES = {
	.fn = "pg.database_sizes", .options = timeout_only, .sql = { SQL_SIZES }, .done = sizes_done,
};

static int conn_database_sizes(lua_State *L) { return probe_run(L, &DATABASE_SIZES, 2, NULL); }

/* --------------------------------------------------------------------------- migrations */

/* In the order auto-detection prefers them. "migrate" is golang-migrate, whose
 * schema_migrations has a `dirty` flag (a failed migration) where Rails' has none. */
static const struct framework {
	const char *name, *table, *sql;
} frameworks[] = {
	{ "alembic", "alembic_version",
	  "SELECT version_num::text AS latest, NULL::text AS name, NULL::text AS applied, "
	  "count(*) OVER ()::int AS count, 0 AS failed FROM alembic_version ORDER BY version_num" },
	{ "django", "django_migrations",
	  "SELECT app || '.' || name AS latest, name, applied::text AS applied, count(*) OVER ()::int AS count, "
	  "0 AS failed FROM django_migrations ORDER BY applied DESC, id DESC LIMIT 1" },
	{ "rails", "schema_migrations",
	  "SELECT version::text AS latest, NULL::text AS name, NULL::text AS applied, count(*) OVER ()::int AS count, "
	  "0 AS failed FROM schema_migrations ORDER BY length(version::text) DESC, version::text DESC LIMIT 1" },
	{ "migrate", "schema_migrations",
	  "SELECT version::text AS latest, NULL::text AS name, NULL::text AS applied, count(*) OVER ()::int AS count, "
	  "(CASE WHEN dirty THEN 1 ELSE 0 END) AS failed FROM schema_migrations ORDER BY version DESC LIMIT 1" },
	{ "flyway", "flyway_schema_history",
	  "SELECT version AS latest, description AS name, installed_on::text AS applied, success, "
	  "count(*) OVER ()::int AS count, (count(*) FILTER (WHERE NOT success) OVER ())::int AS failed "
	  "FROM flyway_schema_history ORDER BY installed_rank DESC LIMIT 1" },
};
#define NFRAMEWORKS ((int)(sizeof frameworks / sizeof frameworks[0]))

static const char SQL_DETECT[] =
	"SELECT to_regclass('alembic_version') IS NOT NULL AS alembic, "
	"to_regclass('django_migrations') IS NOT NULL AS django, "
	"to_regclass('schema_migrations') IS NOT NULL AND NOT EXISTS (SELECT 1 FROM pg_attribute "
	"  WHERE attrelid = to_regclass('schema_migrations') AND attname = 'dirty' AND NOT attisdropped) AS rails, "
	"EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass('schema_migrations') "
	"  AND attname = 'dirty' AND NOT attisdropped) AS migrate, "
	"to_regclass('flyway_schema_history') IS NOT NULL AS flyway";

static void push_found(lua_State *L, lua_Integer mask)
{
	lua_newtable(L);
	int n = 0;
	for (int i = 0; i < NFRAMEWORKS; i++)
		if (mask & (1 << i)) {
			lua_pushstring(L, frameworks[i].name);
			lua_rawseti(L, -2, ++n);
		}
	lua_setfield(L, -2, "found");
}

static int migrations_done(lua_State *L, struct pg_op *op)
{
	if (op->kind)
		return pg_probe_failed(L, op);
	if (op->stage == 0) {
		const PGresult *r = op->res[0];
		lua_Integer mask = 0;
		for (int i = 0; i < NFRAMEWORKS; i++)
			if (pg_bool(r, 0, frameworks[i].name))
				mask |= 1 << i;
		op->ival = mask;
		int chosen = -1;
		for (int i = 0; i < NFRAMEWORKS && chosen < 0; i++)
			if ((mask & (1 << i)) && (op->choice == 0 || op->choice == i + 1))
				chosen = i;
		if (chosen < 0) {
			lua_createtable(L, 0, 3);
			push_found(L, mask);
			luax_setint(L, "count", 0);
			luax_setnum(L, "ms", pg_elapsed(op));
			pg_audit(op, "no migration table found");
			return 1;
		}
		op->stage = 1 + chosen;
		pg_op_reset(op);
		pg_op_stmtv(op, frameworks[chosen].sql, 0, NULL);
		pg_op_pipeline(op, true, 0);
		return PG_AGAIN;
	}
	const struct framework *f = &frameworks[op->stage - 1];
	const PGresult *r = op->res[0];
	lua_createtable(L, 0, 10);
	luax_setstr(L, "framework", f->name);
	luax_setstr(L, "table", f->table);
	push_found(L, op->ival);
	if (strcmp(f->name, "alembic") == 0) {
		int n = PQntuples(r);
		lua_newtable(L);
		for (int i = 0; i < n; i++) {
			lua_pushstring(L, pg_text(r, i, "latest"));
			lua_rawseti(L, -2, i + 1);
		}
		lua_setfield(L, -2, "heads");
		if (n) {
			luaL_checkstack(L, 2 * n, "too many alembic heads");
			for (int i = 0; i < n; i++) {
				if (i)
					lua_pushliteral(L, ",");
				lua_pushstring(L, pg_text(r, i, "latest"));
			}
			lua_concat(L, 2 * n - 1);
			lua_setfield(L, -2, "latest");
		}
	} else {
		set_col(L, r, 0, "latest", NULL);
		set_col(L, r, 0, "name", NULL);
		set_col(L, r, 0, "applied", NULL);
		set_col(L, r, 0, "success", NULL);
	}
	luax_setint(L, "count", PQntuples(r) ? pg_int(r, 0, "count") : 0);
	luax_setint(L, "failed", PQntuples(r) ? pg_int(r, 0, "failed") : 0);
	luax_setnum(L, "ms", pg_elapsed(op));
	summarize(pg_audit, op, "%s: %lld migrations, latest %s%s", f->name,
	          (long long)(PQntuples(r) ? pg_int(r, 0, "count") : 0),
	          pg_text(r, 0, "latest") ? pg_text(r, 0, "latest") : "none",
	          PQntuples(r) && pg_int(r, 0, "failed") ? " (failed migrations recorded)" : "");
	return 1;
}

static const char *const migrations_options[] = { "timeout", "framework", NULL };

/* Stage 0 finds the tables; migrations_done then reads the chosen framework's (op->choice). */
static const struct probe MIGRATIONS = {
	.fn = "pg.migrations", .options = migrations_options, .sql = { SQL_DETECT }, .done = migrations_done,
};

static int conn_migrations(lua_State *L)
{
	const char *want = luax_opt_string(L, 2, "framework", NULL, "pg.migrations");
	int index = 0;
	if (want) {
		for (int i = 0; i < NFRAMEWORKS && !index; i++)
			if (strcmp(want, frameworks[i].name) == 0)
				index = i + 1;
		if (!index)
			luaL_error(L, "pg.migrations: unknown framework '%s' (alembic, django, rails, migrate, flyway)", want);
	}
	struct pg_op *op = probe_start(L, &MIGRATIONS, 2, NULL);
	if (!op)
		return 3;
	op->choice = index;
	return pg_op_run(L, op, MIGRATIONS.done);
}

void pg_probes_register(lua_State *L)
{
	static const luaL_Reg methods[] = {
		{ "connections", conn_connections },
		{ "long_running", conn_long_running },
		{ "idle_in_transaction", conn_idle_in_transaction },
		{ "blocked", conn_blocked },
		{ "locks", conn_locks },
		{ "replication", conn_replication },
		{ "database_sizes", conn_database_sizes },
		{ "migrations", conn_migrations },
		{ NULL, NULL },
	};
	luaL_setfuncs(L, methods, 0);
	pg_actions_register(L);
}
