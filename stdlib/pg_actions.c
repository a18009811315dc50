/*
 * pg_actions.c - the backend actions of a PostgreSQL connection, through the gate (declined: the
 * step is skipped; --dry-run: { dry_run = true, ... }). Each is a probe (stage 0) that measures what
 * it would act on, shown at the gate, then the action's own statement (stage 1).
 *
 * Actions, through the gate (declined: the step is skipped; --dry-run: { dry_run = true, ... }):
 *   conn:terminate_idle { older_than = "10m", state = "idle", database = nil, timeout = 10 }
 *       a probe counts the backends in that state for that long (not ours) and the prompt shows
 *       them (n, users and applications, the oldest); then pg_terminate_backend on exactly those
 *       that are still in that state -> { count, terminated, pids = {...}, skipped = {...}, ms }
 *   conn:cancel(pid, { timeout })    -> { pid, cancelled, ms }     pg_cancel_backend
 *   conn:terminate(pid, { timeout }) -> { pid, terminated, ms }    pg_terminate_backend
 */
#include "pg_probe.h"

#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* An action (terminate_idle, cancel, terminate) is a probe (stage 0) that measures what it would
 * touch, then the gate, then the action's own statement (stage 1).
 *
 * Asks the gate for op's action, described by the three strings the caller pushed last: what a
 * probe measured (-3, the blast radius), the SQL as the prompt shows it (-2) and the one-line
 * summary (-1). Returns what pg_gate returns (0: run it; the strings stay on the stack). */
static int action_gate(lua_State *L, struct pg_op *op)
{
	struct gate_plan plan = {
		.primitive = op->fn,
		.summary = lua_tostring(L, -1),
		.detail = lua_tostring(L, -2),
		.target = op->target,
		.blast = lua_tostring(L, -3),
	};
	return pg_gate(L, op, &plan, lua_tostring(L, -2));
}

/* Queues stage 1, the action's statement: a write (no READ ONLY) with a deadline of its own, the
 * call's timeout again from now. The callback then returns PG_AGAIN. */
static void action_stage(struct pg_op *op, const char *sql, int n, const char *const *params)
{
	pg_op_reset(op);
	pg_op_stmtv(op, sql, n, params);
	op->stage = 1;
	pg_op_pipeline(op, false, op->timeout_ms);
}

static int action_failed(lua_State *L, struct pg_op *op)
{
	pg_action_result(op, NULL);
	return pg_fail_push(L, op);
}

/* ----------------------------------------------------------------------- terminate_idle */

static const char SQL_IDLE_CANDIDATES[] =
	"SELECT pid, usename AS user, application_name AS application, datname AS database, state, "
	"(extract(epoch FROM clock_timestamp() - state_change) * 1000)::bigint AS idle_ms "
	"FROM pg_stat_activity "
	"WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() AND state = $1 "
	"AND state_change <= clock_timestamp() - $2::bigint * interval '1 millisecond' "
	"AND ($3::text IS NULL OR datname = $3) ORDER BY state_change, pid";

static const char SQL_TERMINATE_IDLE[] =
	"SELECT p.pid, CASE WHEN a.pid IS NOT NULL THEN pg_terminate_backend(p.pid) ELSE false END AS terminated "
	"FROM unnest($1::int[]) AS p(pid) "
	"LEFT JOIN pg_stat_activity a ON a.pid = p.pid AND a.state = $2 AND a.backend_type = 'client backend' "
	"ORDER BY p.pid";

/* "3 backends idle for 10m or more, the oldest for 2h 03m: runbook/psql x2, alice/app x1" */
static char *describe_backends(const PGresult *r, const char *state, const char *older)
{
	size_t cap = 512 + (size_t)PQntuples(r) * 160;
	char *out = malloc(cap);
	if (!out)
		abort();
	int n = PQntuples(r), len;
	char oldest[32];
	fmt_ms(oldest, sizeof oldest, (double)pg_int(r, 0, "idle_ms"));
	len = snprintf(out, cap, "%d backend%s %s for %s or more (the oldest for %s): ", n, n == 1 ? "" : "s", state, older,
	               oldest);
	int groups = 0;
	for (int i = 0; i < n; i++) {
		const char *u = pg_text(r, i, "user"), *a = pg_text(r, i, "application");
		u = u ? u : "?";
		a = a && *a ? a : "-";
		bool seen = false;
		for (int j = 0; j < i && !seen; j++) {
			const char *u2 = pg_text(r, j, "user"), *a2 = pg_text(r, j, "application");
			seen = strcmp(u, u2 ? u2 : "?") == 0 && strcmp(a, a2 && *a2 ? a2 : "-") == 0;
		}
		if (seen)
			continue;
		int same = 0;
		for (int j = i; j < n; j++) {
			const char *u2 = pg_text(r, j, "user"), *a2 = pg_text(r, j, "application");
			same += strcmp(u, u2 ? u2 : "?") == 0 && strcmp(a, a2 && *a2 ? a2 : "-") == 0;
		}
		if (groups++ == 8) {
			len += snprintf(out + len, cap - (size_t)len, ", ...");
			break;
		}
		len += snprintf(out + len, cap - (size_t)len, "%s%.60s (%.60s) x%d", groups > 1 ? ", " : "", u, a, same);
	}
	return out;
}

static const char *const terminate_idle_options[] = { "timeout", "older_than", "state", "database", NULL };

static int terminate_idle_done(lua_State *L, struct pg_op *op)
{
	if (op->stage == 0) {
		if (op->kind)
			return pg_probe_failed(L, op);
		const PGresult *r = op->res[0];
		const char *state = op->stmts[0].params[0];
		const char *older = op->label;
		int n = PQntuples(r);
		summarize(pg_audit, op, "%d backends %s for %s or more", n, state, older);
		if (n == 0) {
			lua_createtable(L, 0, 5);
			luax_setint(L, "count", 0);
			luax_setint(L, "terminated", 0);
			lua_newtable(L);
			lua_setfield(L, -2, "pids");
			lua_newtable(L);
			lua_setfield(L, -2, "skipped");
			luax_setnum(L, "ms", pg_elapsed(op));
			return 1;
		}
		/* The pids as an array literal for the action, and the SQL as the prompt shows it. */
		luaL_Buffer pids;
		luaL_buffinit(L, &pids);
		luaL_addchar(&pids, '{');
		for (int i = 0; i < n; i++) {
			if (i)
				luaL_addchar(&pids, ',');
			luaL_addstring(&pids, pg_text(r, i, "pid"));
		}
		luaL_addchar(&pids, '}');
		luaL_pushresult(&pids);
		char *blast = describe_backends(r, state, older);
		lua_pushstring(L, blast);
		free(blast);
		lua_pushfstring(L, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity\n"
		                   "WHERE pid = ANY('%s') AND state = '%s'    -- only those still %s",
		                lua_tostring(L, -2), state, state);
		lua_pushfstring(L, "terminate %d %s backend%s on %s", n, state, n == 1 ? "" : "s", op->target);
		op->ival = n;
		int k = action_gate(L, op);
		if (k == 1) {   /* dry run: the pids array literal is below the plan's three strings */
			luax_setint(L, "count", n);
			lua_pushvalue(L, -5);
			lua_setfield(L, -2, "pids");
		}
		if (k)
			return k;
		char *st = strdup(state);   /* state is the probe's $1, which action_stage frees */
		if (!st)
			abort();
		const char *params[] = { lua_tostring(L, -4), st };
		action_stage(op, SQL_TERMINATE_IDLE, 2, params);
		free(st);
		lua_pop(L, 4);
		return PG_AGAIN;
	}
	if (op->kind)
		return action_failed(L, op);
	const PGresult *r = op->res[0];
	lua_createtable(L, 0, 5);
	lua_newtable(L);
	lua_newtable(L);
	int done = 0, skipped = 0;
	for (int i = 0; i < PQntuples(r); i++) {
		lua_pushinteger(L, pg_int(r, i, "pid"));
		if (pg_bool(r, i, "terminated"))
			lua_rawseti(L, -3, ++done);
		else
			lua_rawseti(L, -2, ++skipped);
	}
	lua_setfield(L, -3, "skipped");
	lua_setfield(L, -2, "pids");
	luax_setint(L, "count", op->ival);
	luax_setint(L, "terminated", done);
	luax_setnum(L, "ms", sched_now_precise() - op->action_t0);
	summarize(pg_action_result, op, "terminated %d of %d backends%s", done, (int)op->ival,
	          skipped ? " (the others were no longer in that state)" : "");
	return 1;
}

/* Stage 0 counts the candidates ($1 state, $2 older_than in ms, $3 database or NULL). */
static const struct probe TERMINATE_IDLE = {
	.fn = "pg.terminate_idle", .options = terminate_idle_options, .sql = { SQL_IDLE_CANDIDATES }, .nparams = 3,
	.done = terminate_idle_done,
};

static int conn_terminate_idle(lua_State *L)
{
	static const char *const states[] = { "idle", "idle in transaction", "idle in transaction (aborted)", NULL };
	char older[32];
	msec_t older_ms = luax_opt_duration(L, 2, "older_than", 10 * 60 * 1000, "pg.terminate_idle");
	duration_param(L, 2, "older_than", 10 * 60 * 1000, "pg.terminate_idle", older, sizeof older);
	const char *state = luax_opt_string(L, 2, "state", "idle", "pg.terminate_idle");
	const char *database = luax_opt_string(L, 2, "database", NULL, "pg.terminate_idle");
	bool known = false;
	for (int i = 0; states[i]; i++)
		known |= strcmp(state, states[i]) == 0;
	if (!known)
		luaL_error(L, "pg.terminate_idle: state must be \"idle\", \"idle in transaction\" or "
		              "\"idle in transaction (aborted)\" (got \"%s\")", state);
	const char *params[] = { state, older, database };
	struct pg_op *op = probe_start(L, &TERMINATE_IDLE, 2, params);
	if (!op)
		return 3;
	fmt_ms(op->label, sizeof op->label, (double)older_ms);
	return pg_op_run(L, op, TERMINATE_IDLE.done);
}

/* -------------------------------------------------------------------- cancel, terminate */

static const char SQL_BACKEND[] =
	"SELECT pid, usename AS user, datname AS database, application_name AS application, state, backend_type, "
	"(extract(epoch FROM clock_timestamp() - coalesce(query_start, backend_start)) * 1000)::bigint AS query_ms, "
	"left(query, 300) AS query, pid = pg_backend_pid() AS self "
	"FROM pg_stat_activity WHERE pid = $1::int";

static int signal_done(lua_State *L, struct pg_op *op)
{
	bool cancel = strcmp(op->fn, "pg.cancel") == 0;
	if (op->stage == 0) {
		if (op->kind)
			return pg_probe_failed(L, op);
		const PGresult *r = op->res[0];
		if (PQntuples(r) == 0 || pg_bool(r, 0, "self")) {
			pg_op_fail(op, "error", PQntuples(r) ? "backend %lld is this connection's own"
			                                      : "no backend with pid %lld", (long long)op->ival);
			return pg_probe_failed(L, op);
		}
		char age[32];
		fmt_ms(age, sizeof age, (double)pg_int(r, 0, "query_ms"));
		const char *state = pg_text(r, 0, "state"), *q = pg_text(r, 0, "query");
		summarize(pg_audit, op, "backend %lld: %s", (long long)op->ival, state ? state : "?");
		lua_pushfstring(L, "backend %d: user %s, application %s, database %s, %s for %s%s%s", (int)op->ival,
		                pg_text(r, 0, "user") ? pg_text(r, 0, "user") : "?",
		                pg_text(r, 0, "application") && *pg_text(r, 0, "application") ? pg_text(r, 0, "application") : "-",
		                pg_text(r, 0, "database") ? pg_text(r, 0, "database") : "-", state ? state : "?", age,
		                q && *q ? ": " : "", q ? q : "");
		lua_pushfstring(L, "SELECT %s(%d)", cancel ? "pg_cancel_backend" : "pg_terminate_backend", (int)op->ival);
		lua_pushfstring(L, cancel ? "cancel the query of backend %d on %s" : "terminate backend %d on %s",
		                (int)op->ival, op->target);
		int k = action_gate(L, op);
		if (k == 1)
			luax_setint(L, "pid", op->ival);
		if (k)
			return k;
		lua_pop(L, 3);
		char pid[32];
		snprintf(pid, sizeof pid, "%lld", (long long)op->ival);
		const char *params[] = { pid };
		action_stage(op, cancel ? "SELECT pg_cancel_backend($1::int) AS ok" : "SELECT pg_terminate_backend($1::int) AS ok",
		             1, params);
		return PG_AGAIN;
	}
	if (op->kind)
		return action_failed(L, op);
	bool ok = pg_bool(op->res[0], 0, "ok");
	summarize(pg_action_result, op, "%s backend %lld: %s", cancel ? "cancel" : "terminate", (long long)op->ival,
	          ok ? "signalled" : "not signalled (it has ended)");
	lua_createtable(L, 0, 3);
	luax_setint(L, "pid", op->ival);
	luax_setbool(L, cancel ? "cancelled" : "terminated", ok);
	luax_setnum(L, "ms", sched_now_precise() - op->action_t0);
	return 1;
}

/* Stage 0 looks the backend up ($1, its pid); signal_done tells the two apart by op->fn. */
static const struct probe CANCEL = {
	.fn = "pg.cancel", .options = timeout_only, .sql = { SQL_BACKEND }, .nparams = 1, .done = signal_done,
};
static const struct probe TERMINATE = {
	.fn = "pg.terminate", .options = timeout_only, .sql = { SQL_BACKEND }, .nparams = 1, .done = signal_done,
};

static int signal_backend(lua_State *L, const struct probe *p)
{
	lua_Integer pid = luaL_checkinteger(L, 2);
	if (pid <= 0 || pid > 0x7fffffff)
		luaL_error(L, "%s: pid must be a positive integer", p->fn);
	char param[32];
	snprintf(param, sizeof param, "%lld", (long long)pid);
	const char *params[] = { param };
	struct pg_op *op = probe_start(L, p, 3, params);
	if (!op)
		return 3;
	op->ival = pid;
	return pg_op_run(L, op, p->done);
}

static int conn_cancel(lua_State *L) { return signal_backend(L, &CANCEL); }
static int conn_terminate(lua_State *L) { return signal_backend(L, &TERMINATE); }

void pg_actions_register(lua_State *L)
{
	static const luaL_Reg methods[] = {
		{ "terminate_idle", conn_terminate_idle },
		{ "cancel", conn_cancel },
		{ "terminate", conn_terminate },
		{ NULL, NULL },
	};
	luaL_setfuncs(L, methods, 0);
}
