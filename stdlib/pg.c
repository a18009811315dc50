/*
 * pg.c - PostgreSQL (require "pg"), over libpq's non-blocking interface.
 *
 *   pg.connect(url_or_conninfo, { timeout = 5, application_name = "runbook", password })
 *       -> conn | nil, err, kind
 *   pg.ping(url_or_conninfo, { timeout = 5, application_name, password })
 *       -> { ok = true, version, version_num, connect_ms, in_recovery, ms } | nil, err, kind
 *   conn:query(sql, params, { timeout = 10 })
 *       -> { {col = value, ...}, ..., columns = {names}, rows = n, ms } | nil, err, kind
 *   conn:exec(sql, params, { summary, target, irreversible = false, timeout = 60 })   an action
 *       -> the same plus command ("UPDATE 3") and affected | { dry_run = true, sql } | nil, err, kind
 *   conn:close(), `local conn <close> = ...`, __gc, tostring(conn) ("pg.conn 10.0.0.5:5432/app")
 *   The ready-made probes (conn:connections(), ...) and actions (conn:terminate_idle{}, ...) are
 *   in pg_probes.c.
 *
 * URLs (postgresql://user:password@host:port/db?sslmode=...) and key=value strings are parsed by
 * libpq (PQconninfoParse), a service (service=name, $PGSERVICE) is read by pg_service.c; the
 * host is resolved here, bounded (net_lookup), and handed to libpq
 * as `hostaddr`, so libpq never calls the blocking resolver. One deadline covers the lookup, the
 * TCP connect, TLS, authentication and, for ping, the first query. PQconnectPoll is driven on
 * PQsocket, which may change between polls (libpq retries without TLS on a new socket).
 *
 * Several hosts (postgresql://h1,h2:5433/db, host=h1,h2 port=5432,5433) are tried in turn, each
 * as a connection of its own. As in libpq, a host that cannot be reached, does not answer, or does
 * not match target_session_attrs hands over to the next, and a server that answers with an error
 * (a wrong password, a missing database, too many connections; all but 57P03, "starting up") ends
 * the call: the other hosts would not know the password better. Each host gets an equal share of
 * the time that is left, and each address of a host's name an equal share of the host's
 * (net_share_end), so that one that does not answer cannot use up the others' time.
 * prefer-standby is two rounds: the hosts as standby, then as any.
 *
 * conn:query runs BEGIN READ ONLY; the statement; ROLLBACK as one libpq pipeline (one round
 * trip; the ROLLBACK comes after its own Sync so that it also ends a transaction that the
 * statement's error left aborted). The statement goes through the extended protocol, which
 * refuses several statements in one string: a probe cannot write. Parameters are sent as text
 * ($1, $2, ...); values come back typed by their column's type OID: int2/int4/int8/oid ->
 * integer, float4/float8/numeric -> number, bool -> boolean, NULL -> nil, anything else ->
 * string. conn:exec runs its statement as it is (autocommit) after the gate has confirmed it.
 *
 * At the deadline, or on Ctrl-C, in the middle of a query: a cancel request goes to the server
 * from a worker thread (PQcancel blocks, and a stopped postmaster would hold it for ever), the
 * connection is closed, and the handle is marked broken: later calls return nil, "... connection
 * was closed after a timeout; connect again", "closed".
 *
 * Kinds: timeout, interrupted, refused, unreachable, reset, dns, auth (28P01, 28000, no
 * password), protocol, closed, error, or the SQLSTATE the server sent (42P01, 25006, 53300, ...).
 * Default deadlines: connect and ping 5 s, query and probes 10 s, exec 60 s.
 *
 * This file: the module table, the op userdata, results, the gate, pg.connect/ping and the handle's
 * query and exec; pg_conninfo.c parses the connection parameters, pg_engine.c drives an op.
 */
#include "pg_conn.h"
#include "pg_readonly.h"

#define CONN_MT "runbook.pg.conn"

static void finish_conn(void *conn) { PQfinish(conn); }

static const struct handle_type conn_type = { .mt = CONN_MT, .module = "pg", .disconnect = finish_conn };
_Static_assert(offsetof(struct pg_handle, s) == 0, "handle.c finds the handle_state at the start of the userdata");

/* ------------------------------------------------------------------------- small helpers */

double pg_elapsed(const struct pg_op *op) { return sched_now_precise() - op->t0; }

/* The first line of a libpq message, without its trailing newline. */
void first_line(char *out, size_t n, const char *msg)
{
	size_t len = strcspn(msg, "\n");
	while (len > 0 && isspace((unsigned char)msg[len - 1]))
		len--;
	snprintf(out, n, "%.*s", (int)len, msg);
}

void ignore_notice(void *arg, const PGresult *r)
{
	(void)arg;
	(void)r;   /* libpq would print notices on stderr, past redaction and the transcript */
}

/* ----------------------------------------------------------------------- the op userdata */

static void stmt_free(struct pg_stmt *s)
{
	free(s->sql);
	for (int i = 0; i < s->nparams; i++)
		free(s->params[i]);
	free(s->params);
	memset(s, 0, sizeof *s);
}

void pg_op_reset(struct pg_op *op)
{
	for (int i = 0; i < PG_MAX_STMTS; i++) {
		stmt_free(&op->stmts[i]);
		if (op->res[i])
			PQclear(op->res[i]);
		op->res[i] = NULL;
	}
	op->nstmts = 0;
}

struct cancel_job { PGcancel *cancel; };

static void cancel_work(void *arg)
{
	struct cancel_job *j = arg;
	char err[256];
	(void)PQcancel(j->cancel, err, sizeof err);
}

static void cancel_free(void *arg)
{
	struct cancel_job *j = arg;
	PQfreeCancel(j->cancel);
	free(j);
}

/* Sends a cancel request for whatever c runs, from a worker thread; NULL if none could start. */
static struct offload *cancel_start(PGconn *c)
{
	PGcancel *pc = PQgetCancel(c);
	if (!pc)
		return NULL;
	struct cancel_job *j = malloc(sizeof *j);
	if (!j)
		abort();
	j->cancel = pc;
	struct offload *o = tasks_offload_awaited(cancel_work, j, cancel_free);
	if (!o)
		cancel_free(j);
	return o;
}

/* Closes the op's connection (cancelling what runs on it first if asked); a handle's connection
 * is marked broken with `why`. Returns the cancel job, if one was started. */
struct offload *close_conn(struct pg_op *op, bool cancel, const char *why)
{
	PGconn *c = op->conn;
	if (!c)
		return NULL;
	struct offload *job = cancel ? cancel_start(c) : NULL;
	PQfinish(c);
	if (op->own == c)
		op->own = NULL;
	if (op->h)
		handle_mark_broken(&op->h->s, c, why);
	op->conn = NULL;
	return job;
}

/* Releases everything the op holds; idempotent (__close, then __gc). An op abandoned in the
 * middle of a query (its parallel() task was stopped) cancels it and closes the connection. */
void op_release(void *p)
{
	struct pg_op *op = p;
	if (op->released)
		return;
	op->released = true;
	if (op->phase == PH_SEND || op->phase == PH_READ || op->phase == PH_START) {
		struct offload *job = close_conn(op, op->phase != PH_START, "an interrupted call");
		if (job)
			tasks_offload_release(job);
	}
	if (op->own)
		PQfinish(op->own);
	op->own = op->conn = NULL;
	cx_free(op->cx);
	op->cx = NULL;
	pg_op_reset(op);
	if (op->cancel)
		tasks_offload_release(op->cancel);
	op->cancel = NULL;
	if (op->h)
		handle_call_ended(&op->h->s);
	op->phase = PH_DONE;
}

struct pg_op *pg_op_push(lua_State *L, const char *fn, struct pg_handle *h, msec_t timeout_ms)
{
	struct pg_op *op = tasks_push_op(L, sizeof *op, &pg_op_machine);
	op->fn = fn;
	op->timeout_ms = tasks_wait_start(&op->w, timeout_ms);
	op->t0 = sched_now_precise();
	op->phase = PH_IDLE;
	if (h) {
		handle_call_start(L, &h->s);
		op->h = h;
		op->conn = h->s.conn;
		snprintf(op->target, sizeof op->target, "%s", h->s.target);
	}
	return op;
}

static char *xstrdup(const char *s)
{
	char *d = strdup(s);
	if (!d)
		abort();
	return d;
}

static struct pg_stmt *new_stmt(struct pg_op *op, const char *sql)
{
	if (op->nstmts == PG_MAX_STMTS)
		abort();   /* a programming error in this module */
	struct pg_stmt *s = &op->stmts[op->nstmts++];
	s->sql = xstrdup(sql);
	return s;
}

void pg_op_stmtv(struct pg_op *op, const char *sql, int n, const char *const *params)
{
	struct pg_stmt *s = new_stmt(op, sql);
	if (n > 0) {
		s->params = calloc((size_t)n, sizeof *s->params);
		if (!s->params)
			abort();
		s->nparams = n;
		for (int i = 0; i < n; i++)
			s->params[i] = params[i] ? xstrdup(params[i]) : NULL;
	}
}

/* A Lua array of parameters as text; nil is NULL (use params.n when there are trailing nils). */
void pg_op_stmt(lua_State *L, struct pg_op *op, const char *sql, int idx)
{
	struct pg_stmt *s = new_stmt(op, sql);
	if (!idx || lua_isnoneornil(L, idx))
		return;
	if (!lua_istable(L, idx))
		luaL_error(L, "%s: params must be an array of values for $1, $2, ... (got a %s)", op->fn, luaL_typename(L, idx));
	lua_Integer n = (lua_Integer)lua_rawlen(L, idx);
	if (lua_getfield(L, idx, "n") == LUA_TNUMBER && lua_isinteger(L, -1))
		n = lua_tointeger(L, -1);
	lua_pop(L, 1);
	lua_pushnil(L);
	while (lua_next(L, idx)) {
		lua_pop(L, 1);
		bool ok = lua_isinteger(L, -1) && lua_tointeger(L, -1) >= 1 && lua_tointeger(L, -1) <= n;
		if (!ok && !(lua_type(L, -1) == LUA_TSTRING && strcmp(lua_tostring(L, -1), "n") == 0))
			luaL_error(L, "%s: params must be an array ($1, $2, ...); key '%s' does not belong there "
			           "(options go in the third argument: conn:query(sql, nil, { timeout = 5 }))",
			           op->fn, luaL_tolstring(L, -1, NULL));
	}
	if (n < 0 || n > 65535)
		luaL_error(L, "%s: %d parameters is too many", op->fn, (int)n);
	if (n == 0)
		return;
	s->params = calloc((size_t)n, sizeof *s->params);
	if (!s->params)
		abort();
	s->nparams = (int)n;
	for (int i = 1; i <= n; i++) {
		char num[64];
		const char *v = NULL;
		switch (lua_geti(L, idx, i)) {
		case LUA_TNIL:
			break;
		case LUA_TBOOLEAN:
			v = lua_toboolean(L, -1) ? "true" : "false";
			break;
		case LUA_TNUMBER:
			if (lua_isinteger(L, -1))
				snprintf(num, sizeof num, "%lld", (long long)lua_tointeger(L, -1));
			else
				snprintf(num, sizeof num, "%.17g", (double)lua_tonumber(L, -1));
			v = num;
			break;
		case LUA_TSTRING: {
			size_t len;
			v = lua_tolstring(L, -1, &len);
			if (strlen(v) != len)
				luaL_error(L, "%s: parameter $%d contains a NUL byte", op->fn, i);
			break;
		}
		default:
			luaL_error(L, "%s: parameter $%d is a %s (strings, numbers, booleans and nil only)", op->fn, i,
			           luaL_typename(L, -1));
		}
		if (v)
			s->params[i - 1] = xstrdup(v);
		lua_pop(L, 1);
	}
}

void pg_op_pipeline(struct pg_op *op, bool read_only, msec_t timeout_ms)
{
	op->read_only = read_only;
	op->phase = PH_START;
	if (timeout_ms > 0) {
		op->timeout_ms = tasks_wait_start(&op->w, timeout_ms);
		op->t0 = sched_now_precise();
	} else {
		tasks_wait_init(&op->w, op->w.deadline);
	}
}

/* -------------------------------------------------------------------------- results */

void pg_push_value(lua_State *L, const PGresult *r, int row, int col)
{
	if (PQgetisnull(r, row, col)) {
		lua_pushnil(L);
		return;
	}
	const char *v = PQgetvalue(r, row, col);
	char *end;
	switch (PQftype(r, col)) {
	case PG_INT2OID:
	case PG_INT4OID:
	case PG_INT8OID:
	case PG_OIDOID: {
		errno = 0;
		long long x = strtoll(v, &end, 10);
		if (errno == 0 && end != v && *end == 0) {
			lua_pushinteger(L, (lua_Integer)x);
			return;
		}
		break;
	}
	case PG_FLOAT4OID:
	case PG_FLOAT8OID:
	case PG_NUMERICOID: {
		double d = strtod(v, &end);
		if (end != v && *end == 0) {
			lua_pushnumber(L, d);
			return;
		}
		break;
	}
	case PG_BOOLOID:
		lua_pushboolean(L, v[0] == 't');
		return;
	default:
		break;
	}
	lua_pushlstring(L, v, (size_t)PQgetlength(r, row, col));
}

void pg_push_row(lua_State *L, const PGresult *r, int row)
{
	int ncols = PQnfields(r);
	lua_createtable(L, 0, ncols);
	for (int j = 0; j < ncols; j++) {
		if (PQgetisnull(r, row, j))
			continue;
		pg_push_value(L, r, row, j);
		lua_setfield(L, -2, PQfname(r, j));
	}
}

void pg_push_rows(lua_State *L, const PGresult *r, double ms)
{
	int nrows = PQntuples(r), ncols = PQnfields(r);
	lua_createtable(L, nrows, 3);
	for (int i = 0; i < nrows; i++) {
		pg_push_row(L, r, i);
		lua_rawseti(L, -2, i + 1);
	}
	lua_createtable(L, ncols, 0);
	for (int j = 0; j < ncols; j++) {
		lua_pushstring(L, PQfname(r, j));
		lua_rawseti(L, -2, j + 1);
	}
	lua_setfield(L, -2, "columns");
	luax_setint(L, "rows", nrows);
	luax_setnum(L, "ms", ms);
}

const char *pg_text(const PGresult *r, int row, const char *col)
{
	int j = PQfnumber(r, col);
	if (j < 0 || row >= PQntuples(r) || PQgetisnull(r, row, j))
		return NULL;
	return PQgetvalue(r, row, j);
}

lua_Integer pg_int(const PGresult *r, int row, const char *col)
{
	const char *v = pg_text(r, row, col);
	return v ? (lua_Integer)strtoll(v, NULL, 10) : 0;
}

bool pg_bool(const PGresult *r, int row, const char *col)
{
	const char *v = pg_text(r, row, col);
	return v && v[0] == 't';
}

void pg_audit(struct pg_op *op, const char *summary)
{
	luax_audit_probe(op->fn, op->target, op->timeout_ms, pg_elapsed(op), op->kind ? op->kind : "ok",
	                 summary ? summary : op->cause);
}

int pg_fail_push(lua_State *L, struct pg_op *op)
{
	if (!op->target[0])
		return luax_fail(L, op->kind ? op->kind : "error", "%s: %s", op->fn, op->cause);
	return luax_fail(L, op->kind ? op->kind : "error", "%s %s: %s", op->fn, op->target, op->cause);
}

int pg_probe_failed(lua_State *L, struct pg_op *op)
{
	if (!op->kind)
		return 0;
	pg_audit(op, NULL);
	return pg_fail_push(L, op);
}

/* ---------------------------------------------------------------------------- the gate */

int pg_gate(lua_State *L, struct pg_op *op, const struct gate_plan *plan, const char *sql)
{
	enum gate_answer a = gate_ask(plan);
	if (a == GATE_DRY_RUN) {
		lua_createtable(L, 0, 3);
		luax_setbool(L, "dry_run", true);
		luax_setstr(L, "sql", sql);
		luax_setstr(L, "target", op->target);
		return 1;
	}
	if (a != GATE_RUN)   /* the target is shorter than PG_TARGET_MAX: the messages are never cut */
		return luax_not_run(L, a, PG_TARGET_MAX + 100, NULL, NULL, "%s %s", op->fn, op->target);
	gate_action_start(op->fn, op->target);
	op->action_t0 = sched_now_precise();
	return 0;
}

void pg_action_result(struct pg_op *op, const char *summary)
{
	gate_action_result(op->fn, op->target, op->kind ? op->kind : "ok", sched_now_precise() - op->action_t0,
	                   summary ? summary : op->cause);
}

/* ------------------------------------------------------------------ pg.connect, pg.ping */

static const char *const connect_options[] = { "timeout", "application_name", "password", NULL };

static struct pg_op *start_connect(lua_State *L, const char *fn)
{
	const char *conninfo = luaL_checkstring(L, 1);
	luax_check_options(L, 2, fn, connect_options);
	msec_t timeout = luax_opt_duration(L, 2, "timeout", DEFAULT_CONNECT_TIMEOUT_MS, fn);
	const char *app = luax_opt_string(L, 2, "application_name", NULL, fn);
	const char *password = luax_opt_string(L, 2, "password", NULL, fn);
	lua_settop(L, 2);
	struct pg_op *op = pg_op_push(L, fn, NULL, timeout);
	if (cx_parse(op, conninfo, app, password))
		endpoint_start(op);
	return op;
}

static int connect_done(lua_State *L, struct pg_op *op)
{
	int n = pg_probe_failed(L, op);
	if (n)
		return n;
	handle_push(L, &conn_type, sizeof(struct pg_handle), 1, op->own, op->target);   /* 1: pg_readonly.c's cache */
	const char *v = PQparameterStatus(op->own, "server_version");
	op->own = op->conn = NULL;
	char summary[200];
	snprintf(summary, sizeof summary, "connected in %.1f ms (PostgreSQL %s)", op->connect_ms, v ? v : "?");
	pg_audit(op, summary);
	return 1;
}

static int pg_connect(lua_State *L)
{
	struct pg_op *op = start_connect(L, "pg.connect");
	return pg_op_run(L, op, connect_done);
}

static int ping_done(lua_State *L, struct pg_op *op)
{
	int n = pg_probe_failed(L, op);
	if (n)
		return n;
	char summary[200];
	const char *v = PQparameterStatus(op->own, "server_version");
	bool recovery = pg_bool(op->res[0], 0, "in_recovery");
	snprintf(summary, sizeof summary, "PostgreSQL %s%s, connected in %.1f ms", v ? v : "?",
	         recovery ? " (replica)" : "", op->connect_ms);
	pg_audit(op, summary);
	lua_createtable(L, 0, 6);
	luax_setbool(L, "ok", true);
	luax_setstr(L, "version", v ? v : "");
	luax_setint(L, "version_num", PQserverVersion(op->own));
	luax_setnum(L, "connect_ms", op->connect_ms);
	luax_setbool(L, "in_recovery", recovery);
	luax_setnum(L, "ms", pg_elapsed(op));
	return 1;
}

static int pg_ping(lua_State *L)
{
	struct pg_op *op = start_connect(L, "pg.ping");
	if (!op->kind) {
		pg_op_stmtv(op, "SELECT pg_is_in_recovery() AS in_recovery", 0, NULL);
		op->read_only = false;
	}
	return pg_op_run(L, op, ping_done);
}

/* ---------------------------------------------------------------------- the handle */

struct pg_handle *pg_check_handle(lua_State *L, int idx, const char *fn)
{
	return handle_check_open(L, idx, &conn_type, fn);
}

int pg_handle_unusable(lua_State *L, struct pg_handle *h, const char *fn)
{
	return handle_unusable(L, &h->s, fn);
}

static const char *const query_options[] = { "timeout", NULL };
static const char *const exec_options[] = { "timeout", "summary", "target", "irreversible", NULL };

static int query_done(lua_State *L, struct pg_op *op)
{
	int again = pg_readonly_stage(L, op);   /* the SQL's check by the catalogue comes first */
	if (again)
		return again;
	char summary[800], line[160];
	first_line(line, sizeof line, op->stmts[0].sql ? op->stmts[0].sql : "");
	if (op->kind) {
		snprintf(summary, sizeof summary, "%.600s (%s)", op->cause, line);
		pg_audit(op, summary);
		return pg_fail_push(L, op);
	}
	snprintf(summary, sizeof summary, "%d rows: %s", PQntuples(op->res[0]), line);
	pg_audit(op, summary);
	pg_push_rows(L, op->res[0], pg_elapsed(op));
	return 1;
}

/* The op of conn:query or conn:exec, for sql with the params at index 3 (the options at 4 are read
 * before): NULL after pushing nil, err, "closed" for a broken handle (the caller returns 3). */
static struct pg_op *statement_op(lua_State *L, const char *fn, struct pg_handle *h, const char *sql, msec_t timeout)
{
	lua_settop(L, 4);
	if (pg_handle_unusable(L, h, fn))
		return NULL;
	struct pg_op *op = pg_op_push(L, fn, h, timeout);
	pg_op_stmt(L, op, sql, 3);
	return op;
}

static int conn_query(lua_State *L)
{
	struct pg_handle *h = pg_check_handle(L, 1, "pg.query");
	const char *sql = luaL_checkstring(L, 2);
	luax_check_options(L, 4, "pg.query", query_options);
	msec_t timeout = luax_opt_duration(L, 4, "timeout", PG_DEFAULT_QUERY_TIMEOUT_MS, "pg.query");
	struct pg_op *op = statement_op(L, "pg.query", h, sql, timeout);
	if (!op)
		return 3;
	pg_readonly_start(L, op);   /* refuses it, or queues the look-ups its check needs, then the statement */
	return pg_op_run(L, op, query_done);
}

static int exec_done(lua_State *L, struct pg_op *op)
{
	char summary[300];
	if (op->kind) {
		pg_action_result(op, NULL);
		return pg_fail_push(L, op);
	}
	const PGresult *r = op->res[0];
	const char *affected = PQcmdTuples((PGresult *)r);
	snprintf(summary, sizeof summary, "%s", PQcmdStatus((PGresult *)r));
	pg_action_result(op, summary);
	pg_push_rows(L, r, sched_now_precise() - op->action_t0);
	luax_setstr(L, "command", PQcmdStatus((PGresult *)r));
	if (affected && *affected)
		luax_setint(L, "affected", (lua_Integer)strtoll(affected, NULL, 10));
	return 1;
}

/* The SQL as the gate shows it, with its parameters: "$1 = 'x'" (redacted on the way out). */
static char *describe_sql(const struct pg_stmt *s)
{
	size_t cap = strlen(s->sql) + 64;
	for (int i = 0; i < s->nparams; i++)
		cap += 16 + (s->params[i] ? strlen(s->params[i]) : 4);
	char *out = malloc(cap), *p = out;
	if (!out)
		abort();
	p += sprintf(p, "%s", s->sql);
	for (int i = 0; i < s->nparams; i++)
		p += s->params[i] ? sprintf(p, "%s$%d = '%s'", i ? ", " : "\nwith ", i + 1, s->params[i])
		                  : sprintf(p, "%s$%d = NULL", i ? ", " : "\nwith ", i + 1);
	return out;
}

static int conn_exec(lua_State *L)
{
	struct pg_handle *h = pg_check_handle(L, 1, "pg.exec");
	const char *sql = luaL_checkstring(L, 2);
	luax_check_options(L, 4, "pg.exec", exec_options);
	msec_t timeout = luax_opt_duration(L, 4, "timeout", DEFAULT_EXEC_TIMEOUT_MS, "pg.exec");
	const char *summary = luax_opt_string(L, 4, "summary", NULL, "pg.exec");
	const char *target = luax_opt_string(L, 4, "target", NULL, "pg.exec");
	bool irreversible = luax_opt_bool(L, 4, "irreversible", false, "pg.exec");
	pg_readonly_forget(L, 1);   /* it may change what a function name means */
	struct pg_op *op = statement_op(L, "pg.exec", h, sql, timeout);
	if (!op)
		return 3;
	char *detail = describe_sql(&op->stmts[0]);
	char shown[PG_TARGET_MAX + 40];
	snprintf(shown, sizeof shown, "run SQL on %s", h->s.target);
	struct gate_plan plan = {
		.primitive = "pg.exec",
		.summary = summary ? summary : shown,
		.detail = detail,
		.target = target ? target : h->s.target,
		.irreversible = irreversible,
	};
	lua_pushstring(L, detail);   /* the C copy is freed now; the gate may raise */
	free(detail);
	plan.detail = lua_tostring(L, -1);
	int n = pg_gate(L, op, &plan, sql);
	if (n)
		return n;
	lua_pop(L, 1);
	pg_op_pipeline(op, false, timeout);
	return pg_op_run(L, op, exec_done);
}

static int conn_close(lua_State *L) { return handle_close(L, &conn_type); }
static int conn_gc(lua_State *L) { return handle_gc(L, &conn_type); }
static int conn_tostring(lua_State *L) { return handle_tostring(L, &conn_type); }

/* ------------------------------------------------------------------------------------ module */

int luaopen_pg(lua_State *L)
{
	static const luaL_Reg fns[] = { { "connect", pg_connect }, { "ping", pg_ping }, { NULL, NULL } };
	static const luaL_Reg methods[] = {
		{ "query", conn_query }, { "exec", conn_exec }, { "close", conn_close }, { NULL, NULL },
	};
	static const luaL_Reg conn_meta[] = {
		{ "__gc", conn_gc }, { "__close", conn_close }, { "__tostring", conn_tostring }, { NULL, NULL },
	};
	luax_class(L, CONN_MT, conn_meta, methods, pg_probes_register);
	luaL_newlib(L, fns);
	return 1;
}
