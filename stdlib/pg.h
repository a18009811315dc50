/*
 * pg.h - what pg.c (connections, the query engine, conn:query/exec) and pg_probes.c (the
 * ready-made probes and the backend actions) share. Internal to the pg module.
 *
 * Every call on a connection is one `struct pg_op`, a userdata on the caller's stack (marked
 * to-be-closed, so that an abandoned parallel() task releases it at once) driven by one state
 * machine: [name lookup, connect,] send a pipeline of statements, read its results. The op's
 * `done` callback runs when the pipeline has ended (op->kind set on failure, op->res[] filled
 * on success); it pushes the Lua results and returns their number, or queues another pipeline
 * (pg_op_pipeline) and returns PG_AGAIN (a probe in two stages, an action after its gate).
 */
#ifndef PG_H
#define PG_H

#include <libpq-fe.h>
#include <lua.h>
#include <stdbool.h>

#include "gate.h"
#include "handle.h"
#include "tasks.h"

#define PG_TARGET_MAX HANDLE_TARGET_MAX
#define PG_MAX_STMTS  4
#define PG_AGAIN      TASKS_AGAIN
#define PG_DEFAULT_QUERY_TIMEOUT_MS 10000

/* Type OIDs (catalog/pg_type.h is a server header). */
#define PG_BOOLOID    16
#define PG_INT8OID    20
#define PG_INT2OID    21
#define PG_INT4OID    23
#define PG_OIDOID     26
#define PG_FLOAT4OID  700
#define PG_FLOAT8OID  701
#define PG_NUMERICOID 1700

struct pg_handle {
	struct handle_state s;        /* first: its PGconn (s.conn), target, closed, broken, busy (handle.h) */
};

struct pg_stmt {
	char *sql;
	int nparams;
	char **params;                /* NULL entries are SQL NULLs */
};

struct pg_connect;                /* connection parameters and the name lookup (pg.c) */
struct pg_op;
typedef int (*pg_done_fn)(lua_State *L, struct pg_op *op);

struct pg_op {
	struct sched_waiter w;
	int phase;
	const char *fn;               /* "pg.query": messages and audit records */
	char target[PG_TARGET_MAX];
	msec_t timeout_ms;
	double t0, connect_ms;
	struct pg_connect *cx;        /* pg.connect and pg.ping only */
	PGconn *own;                  /* a connection the op owns (being made; ping's) */
	struct pg_handle *h;          /* the handle the op runs on, or NULL */
	PGconn *conn;                 /* the connection in use: own or h->s.conn */
	short want;                   /* poll events wanted on PQsocket(conn) */
	/* the pipeline */
	bool read_only;               /* BEGIN READ ONLY ... ROLLBACK around the statements */
	struct pg_stmt stmts[PG_MAX_STMTS];
	int nstmts;
	PGresult *res[PG_MAX_STMTS];
	int results_seen, syncs_seen, syncs_expected;
	struct offload *cancel;       /* a cancel request on its way */
	bool released;
	/* the outcome */
	const char *kind;             /* NULL while all is well: "timeout", "refused", ..., or sqlstate */
	char sqlstate[6];
	char cause[1024];
	pg_done_fn done;
	struct tasks_op task;         /* how pg_op_run drives it (tasks.h) */
	/* for the callbacks */
	int stage;
	int choice;
	lua_Integer ival;
	char label[64];
	double action_t0;             /* when the action started (pg_gate) */
};

/* --- pg.c, for pg_probes.c --- */

/* The open handle at idx (raises when it is not one, or closed by the runbook). */
struct pg_handle *pg_check_handle(lua_State *L, int idx, const char *fn);
/* Pushes nil, "<fn> <target>: connection was closed after ...", "closed" when the handle is
 * unusable (returns 3), raises when another task is using it, else returns 0. */
int pg_handle_unusable(lua_State *L, struct pg_handle *h, const char *fn);
/* Pushes a new op on h (to-be-closed) and marks h busy. */
struct pg_op *pg_op_push(lua_State *L, const char *fn, struct pg_handle *h, msec_t timeout_ms);
/* Appends a statement; params is a Lua array at params_idx (0: none). Raises on bad params. */
void pg_op_stmt(lua_State *L, struct pg_op *op, const char *sql, int params_idx);
/* Appends a statement with n C-string parameters (NULL entries are NULLs). */
void pg_op_stmtv(struct pg_op *op, const char *sql, int n, const char *const *params);
/* Clears the statements and results of the previous pipeline (for the next stage). */
void pg_op_reset(struct pg_op *op);
/* Queues the statements for sending with a new deadline (0: keep the current one). */
void pg_op_pipeline(struct pg_op *op, bool read_only, msec_t timeout_ms);
/* Sends the queued pipeline and drives the op until op->done has pushed its results. */
int pg_op_run(lua_State *L, struct pg_op *op, pg_done_fn done);

/* The probe audit record for op (outcome "ok" or op->kind). */
void pg_audit(struct pg_op *op, const char *summary);
/* Pushes nil, "<fn> <target>: <cause>", kind; returns 3. */
int pg_fail_push(lua_State *L, struct pg_op *op);
/* For a probe: 0, or (the op failed) audits the failure, pushes nil, err, kind and returns 3. */
int pg_probe_failed(lua_State *L, struct pg_op *op);
/* Fails op with kind and a printf-style cause (before or instead of running it). */
#define pg_op_fail(op, what, ...) handle_op_fail(&(op)->kind, (op)->cause, sizeof (op)->cause, (what), __VA_ARGS__)

/* Pushes one value converted by its type OID (nil for NULL). */
void pg_push_value(lua_State *L, const PGresult *r, int row, int col);
/* Pushes row of a result as a table { column = value } (NULLs left out). */
void pg_push_row(lua_State *L, const PGresult *r, int row);
/* Pushes { row tables..., columns = {names}, rows = n, ms } for a result. */
void pg_push_rows(lua_State *L, const PGresult *r, double ms);
/* A field of a row as text / integer / boolean (NULL, 0, false for NULL or no such column). */
const char *pg_text(const PGresult *r, int row, const char *col);
lua_Integer pg_int(const PGresult *r, int row, const char *col);
bool pg_bool(const PGresult *r, int row, const char *col);
double pg_elapsed(const struct pg_op *op);

/* The gate for an action on op->h: GATE_RUN returns 0 (the action starts: audit record, new
 * t0); under --dry-run pushes { dry_run = true, sql } and returns 1; refused pushes nil, err,
 * "refused" and returns 3; declined raises the skip/abort control. */
int pg_gate(lua_State *L, struct pg_op *op, const struct gate_plan *plan, const char *sql);
/* Writes the action_result record for an action started by pg_gate. */
void pg_action_result(struct pg_op *op, const char *summary);

/* --- pg_probes.c --- */
/* Adds the probe and action methods (connections, ..., terminate_idle) to the table on top. */
void pg_probes_register(lua_State *L);

/* pg_service.c: applies the options of a connection service (service=name) through set, which
 * must not override options already given. True when there is none, or it was found and applied;
 * false with err set (not found, a bad file). */
typedef void (*pg_service_set)(void *ud, const char *key, const char *value);
bool pg_service_apply(const char *service, pg_service_set set, void *ud, char *err, size_t errn);

#endif
