/*
 * pg_readonly.c - what conn:query (a probe: no question asked) may send to PostgreSQL.
 *
 * BEGIN READ ONLY stops writes to tables, not functions with side effects (pg_terminate_backend,
 * pg_advisory_lock, set_config, nextval, dblink, lo_export, ...) nor COPY ... TO PROGRAM. So the SQL
 * is parsed first by PostgreSQL's own parser (libpg_query, the server's grammar as a library) into
 * its raw parse tree (JSON, decoded by lua-cjson), and refused, before anything is sent, unless:
 *   - it is one statement: SELECT (WITH, VALUES and TABLE are SELECTs to the parser), SHOW, or
 *     EXPLAIN without ANALYZE of such a statement;
 *   - nothing in it is another statement (a data-modifying WITH: INSERT/UPDATE/DELETE/MERGE), a
 *     SELECT INTO (creates a table) or a locking clause (FOR UPDATE/SHARE: row locks, written);
 *   - every function it calls and every operator it writes is, in pg_proc, not VOLATILE in any of
 *     the schemas it could resolve to (all of them when unqualified: search_path is not guessed),
 *     or is one of the read-only volatile functions of pg_catalog listed below; and the functions
 *     that assign a transaction ID (txid_current, pg_current_xact_id) are refused though STABLE;
 *   - every view it reads (outside pg_catalog and information_schema, which only a superuser
 *     changes) passes the same check: its definition comes from pg_get_viewdef.
 * What the catalogue says is looked up on the connection, inside the call's deadline, by one
 * read-only statement per round (a view's definition can name more functions and views: up to
 * MAX_ROUNDS rounds), and kept in the handle's user value for later calls; conn:exec clears it.
 *
 * Not checked (documented in doc/probes.md): a function's owner can declare it STABLE and still call
 * volatile functions inside; casts and type input functions; the operators a sort or a join picks
 * implicitly; row-level security policies; foreign tables read through a wrapper.
 */
#include "pg_readonly.h"
#include "luax.h"

#include <lauxlib.h>
#include <lua-cjson.h>
#include <pg_query.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define STAGE_LOOKUP  100       /* op->stage of the look-ups: STAGE_LOOKUP + round */
#define MAX_ROUNDS    8
#define MAX_DEPTH     400       /* nesting of the parse tree we walk (deeper: refused) */
#define MAX_VIEW_DEPTH 8
#define MAX_WANTED    256       /* names looked up in one round */
#define NAME_MAX_LEN  128

/* Volatile functions of pg_catalog that only read, so that a probe may call them. Each is volatile
 * because its answer changes from one call to the next, not because it changes anything. */
static const char *const read_only_volatile[] = {
	/* clocks and random numbers */
	"clock_timestamp", "timeofday", "random", "gen_random_uuid",
	/* waits, ended by the probe's deadline (a cancel request) */
	"pg_sleep", "pg_sleep_for", "pg_sleep_until",
	/* WAL positions and recovery */
	"pg_current_wal_lsn", "pg_current_wal_insert_lsn", "pg_current_wal_flush_lsn", "pg_last_wal_receive_lsn",
	"pg_last_wal_replay_lsn", "pg_last_xact_replay_timestamp", "pg_is_in_recovery", "pg_is_wal_replay_paused",
	"pg_get_wal_replay_pause_state", "pg_last_committed_xact", "pg_xact_commit_timestamp",
	"pg_xact_commit_timestamp_origin", "pg_xact_status", "txid_status", "pg_get_wal_resource_managers",
	"pg_control_checkpoint", "pg_control_init", "pg_control_recovery", "pg_control_system",
	/* locks and who blocks whom */
	"pg_blocking_pids", "pg_safe_snapshot_blocking_pids", "pg_lock_status", "pg_get_multixact_members",
	"pg_prepared_xact",
	/* sizes */
	"pg_database_size", "pg_relation_size", "pg_table_size", "pg_indexes_size", "pg_total_relation_size",
	"pg_tablespace_size",
	/* statistics and the server's own state */
	"pg_stat_get_xact_blocks_fetched", "pg_stat_get_xact_blocks_hit", "pg_stat_get_xact_function_calls",
	"pg_stat_get_xact_function_self_time", "pg_stat_get_xact_function_total_time", "pg_stat_get_xact_numscans",
	"pg_stat_get_xact_tuples_deleted", "pg_stat_get_xact_tuples_fetched", "pg_stat_get_xact_tuples_hot_updated",
	"pg_stat_get_xact_tuples_inserted", "pg_stat_get_xact_tuples_returned", "pg_stat_get_xact_tuples_updated",
	"pg_stat_have_stats", "pg_stat_get_recovery_prefetch", "pg_notification_queue_usage",
	"pg_get_backend_memory_contexts", "pg_get_shmem_allocations", "pg_show_all_file_settings",
	"pg_hba_file_rules", "pg_ident_file_mappings", "pg_current_logfile", "pg_jit_available", "current_query",
	"pg_partition_tree", "pg_partition_ancestors", "pg_show_replication_origin_status", "pg_sequence_last_value",
	/* the server's own directories (not any path: pg_ls_dir, pg_read_file and pg_stat_file stay refused) */
	"pg_ls_waldir", "pg_ls_logdir", "pg_ls_tmpdir", "pg_ls_archive_statusdir", "pg_ls_logicalsnapdir",
	"pg_ls_logicalmapdir", "pg_ls_replslotdir",
	NULL,
};

/* Not volatile, yet they change something: they assign the transaction an ID (consumed for good). */
static const char *const assigns_xid[] = { "txid_current", "pg_current_xact_id", NULL };

static bool listed(const char *name, const char *const *list)
{
	for (; *list; list++)
		if (strcmp(name, *list) == 0)
			return true;
	return false;
}

/* One check of the SQL, with what the cache (a table on the stack) already knows. */
struct check {
	lua_State *L;
	int cache;                  /* stack index of the handle's cache: "f:name" -> { schema = volatile }, */
	                            /* "o:name" likewise for operators, "r:name" -> { schema = view definition } */
	int wanted;                 /* stack index of the names to look up: "f:name" -> true */
	int nwanted;
	const char *kind;           /* the refusal's kind, NULL while all is well */
	char why[700];
	char via[200];              /* "view s.v: " while checking a view's definition */
	int view_depth;
};

static void refuse(struct check *c, const char *kind, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void refuse(struct check *c, const char *kind, const char *fmt, ...)
{
	if (c->kind)
		return;   /* the first refusal is the one reported */
	c->kind = kind;
	size_t n = (size_t)snprintf(c->why, sizeof c->why, "%s", c->via);
	if (n >= sizeof c->why)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(c->why + n, sizeof c->why - n, fmt, ap);
	va_end(ap);
}

/* The string of a parse node { String = { sval = "x" } } at idx, or NULL. */
static const char *node_string(lua_State *L, int idx)
{
	const char *s = NULL;
	if (lua_type(L, idx) == LUA_TTABLE && lua_getfield(L, idx, "String") == LUA_TTABLE) {
		if (lua_getfield(L, -1, "sval") == LUA_TSTRING)
			s = lua_tostring(L, -1);   /* stays referenced by the tree */
		lua_pop(L, 1);
	}
	lua_pop(L, 1);
	return s;
}

static void check_sql(struct check *c, const char *sql, bool top);

/* What the catalogue said of one name, from the cache entry on top: refuses what may not run, follows
 * views. */
static void judge(struct check *c, char kind, const char *schema, const char *name)
{
	lua_State *L = c->L;
	int entry = lua_gettop(L);
	bool found = false;
	lua_pushnil(L);
	while (!c->kind && lua_next(L, entry)) {
		const char *nsp = lua_tostring(L, -2);
		if (nsp && (!schema || strcmp(schema, nsp) == 0)) {
			found = true;
			if (kind == 'r') {
				char saved[sizeof c->via];
				memcpy(saved, c->via, sizeof saved);
				int w = snprintf(c->via, sizeof c->via, "%sview %s.%s: ", saved, nsp, name);
				if (++c->view_depth > MAX_VIEW_DEPTH || w >= (int)sizeof c->via)
					refuse(c, "refused", "views nested more than %d deep cannot be checked", MAX_VIEW_DEPTH);
				else
					check_sql(c, lua_tostring(L, -1), false);
				c->view_depth--;
				memcpy(c->via, saved, sizeof saved);
			} else if (lua_toboolean(L, -1) && !(strcmp(nsp, "pg_catalog") == 0 && kind == 'f'
			                                       && listed(name, read_only_volatile))) {
				if (kind == 'f')
					refuse(c, "refused", "%s.%s() is VOLATILE in pg_proc (it may change something) and not one "
					       "of the read-only functions a probe may call", nsp, name);
				else
					refuse(c, "refused", "operator %s.%s runs a VOLATILE function (it may change something)",
					       nsp, name);
			}
		}
		lua_settop(L, entry + 1);   /* the key, for lua_next */
	}
	lua_settop(L, entry);
	if (!found && kind == 'f' && !c->kind)
		refuse(c, "42883", "function %s%s%s() does not exist (pg_proc has no function of that name)",
		       schema ? schema : "", schema ? "." : "", name);
}

/* A name the SQL uses (kind f: function, o: operator, r: relation): judged when the cache knows it,
 * else wanted for the next look-up. */
static void use_name(struct check *c, char kind, const char *schema, const char *name)
{
	lua_State *L = c->L;
	if (!name || c->kind)
		return;
	if (strlen(name) >= NAME_MAX_LEN || (schema && strlen(schema) >= NAME_MAX_LEN)) {
		refuse(c, "refused", "a name longer than %d bytes cannot be checked", NAME_MAX_LEN - 1);
		return;
	}
	if (kind == 'f' && listed(name, assigns_xid) && (!schema || strcmp(schema, "pg_catalog") == 0)) {
		refuse(c, "refused", "%s() assigns the transaction an ID, which is not a read", name);
		return;
	}
	int top = lua_gettop(L);
	char key[NAME_MAX_LEN + 2];
	snprintf(key, sizeof key, "%c:%s", kind, name);
	luaL_checkstack(L, 8, "checking a query");
	if (lua_getfield(L, c->cache, key) == LUA_TTABLE) {
		judge(c, kind, schema, name);
	} else if (lua_getfield(L, c->wanted, key) == LUA_TNIL) {
		if (++c->nwanted > MAX_WANTED) {
			refuse(c, "refused", "the query uses more than %d different names", MAX_WANTED);
		} else {
			lua_pushboolean(L, 1);
			lua_setfield(L, c->wanted, key);
		}
	}
	lua_settop(L, top);
}

/* A qualified name given as a list of String nodes at idx: [catalog.][schema.]name. */
static void use_list(struct check *c, char kind, int idx)
{
	lua_State *L = c->L;
	if (lua_type(L, idx) != LUA_TTABLE)
		return;
	int top = lua_gettop(L);
	lua_Integer n = (lua_Integer)lua_rawlen(L, idx);
	if (n < 1)
		return;
	lua_rawgeti(L, idx, n);
	const char *name = node_string(L, top + 1);
	const char *schema = NULL;
	if (n >= 2) {
		lua_rawgeti(L, idx, n - 1);
		schema = node_string(L, top + 2);
	}
	use_name(c, kind, schema, name);
	lua_settop(L, top);
}

/* Where the statement node's type names another statement ("DeleteStmt"): "DELETE". */
static void statement_word(char *out, size_t n, const char *type)
{
	size_t len = strlen(type) - 4, i;
	for (i = 0; i < len && i + 1 < n; i++)
		out[i] = (char)(type[i] >= 'a' && type[i] <= 'z' ? type[i] - 32 : type[i]);
	out[i] = 0;
}

static bool ends_with(const char *s, const char *suffix)
{
	size_t a = strlen(s), b = strlen(suffix);
	return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* Walks the parse tree node at idx (a table). */
static void walk(struct check *c, int idx, int depth)
{
	lua_State *L = c->L;
	if (depth > MAX_DEPTH) {
		refuse(c, "refused", "the query is nested too deeply to be checked");
		return;
	}
	luaL_checkstack(L, 8, "checking a query");
	lua_pushnil(L);
	while (!c->kind && lua_next(L, idx)) {
		int v = lua_gettop(L);
		if (lua_type(L, -2) == LUA_TSTRING && lua_type(L, v) == LUA_TTABLE) {
			const char *k = lua_tostring(L, -2);
			char word[64];
			if (ends_with(k, "Stmt") && strcmp(k, "SelectStmt") != 0) {
				statement_word(word, sizeof word, k);
				refuse(c, "refused", "the query contains %s, a statement that is not a read (a data-modifying WITH?)",
				       word);
			} else if (strcmp(k, "intoClause") == 0) {
				refuse(c, "refused", "SELECT INTO creates a table");
			} else if (strcmp(k, "lockingClause") == 0) {
				refuse(c, "refused", "FOR UPDATE/SHARE locks rows, which writes them");
			} else if (strcmp(k, "FuncCall") == 0) {
				lua_getfield(L, v, "funcname");
				use_list(c, 'f', lua_gettop(L));
				lua_pop(L, 1);
			} else if (strcmp(k, "A_Expr") == 0 || strcmp(k, "SubLink") == 0 || strcmp(k, "SortBy") == 0) {
				lua_getfield(L, v, k[0] == 'A' ? "name" : k[1] == 'u' ? "operName" : "useOp");
				use_list(c, 'o', lua_gettop(L));
				lua_pop(L, 1);
			} else if (strcmp(k, "RangeVar") == 0) {
				lua_getfield(L, v, "schemaname");
				lua_getfield(L, v, "relname");
				use_name(c, 'r', lua_tostring(L, -2), lua_tostring(L, -1));
				lua_pop(L, 2);
			}
		}
		if (!c->kind && lua_type(L, v) == LUA_TTABLE)
			walk(c, v, depth + 1);
		lua_settop(L, v - 1);
	}
	if (c->kind)
		lua_settop(L, idx);   /* lua_next was left in the middle */
}

/* Pushes the parse tree of sql as Lua tables; false (nothing pushed, c refused) when it has none. */
static bool parse(struct check *c, const char *sql)
{
	lua_State *L = c->L;
	PgQueryParseResult r = pg_query_parse(sql);
	if (r.error) {
		refuse(c, "42601", "%s (at character %d; checked by PostgreSQL %s's parser before sending)",
		       r.error->message, r.error->cursorpos, PG_VERSION);
		pg_query_free_parse_result(r);
		return false;
	}
	luaL_requiref(L, "cjson", luaopen_cjson, 0);
	lua_getfield(L, -1, "decode");
	lua_remove(L, -2);
	lua_pushstring(L, r.parse_tree);
	pg_query_free_parse_result(r);
	if (lua_pcall(L, 1, 1, 0) != LUA_OK || lua_type(L, -1) != LUA_TTABLE) {
		lua_pop(L, 1);
		refuse(c, "refused", "the query is nested too deeply to be checked");
		return false;
	}
	return true;
}

/* The first word of the statement at [loc, loc+len) of sql, upper-cased: "COPY". */
static void first_word(char *out, size_t n, const char *sql, lua_Integer loc)
{
	const char *p = sql + loc;
	while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r' || *p == '(')
		p++;
	size_t i = 0;
	for (; i + 1 < n && ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || *p == '_'); p++, i++)
		out[i] = (char)(*p >= 'a' && *p <= 'z' ? *p - 32 : *p);
	out[i] = 0;
	if (!i)
		snprintf(out, n, "this statement");
}

/* EXPLAIN: refused with ANALYZE (it runs the statement), whatever its value. */
static void check_explain(struct check *c, int stmt)
{
	lua_State *L = c->L;
	int base = lua_gettop(L);
	if (lua_getfield(L, stmt, "options") == LUA_TTABLE) {
		int opts = lua_gettop(L);
		for (lua_Integer i = 1; !c->kind && lua_rawgeti(L, opts, i) == LUA_TTABLE; i++) {
			if (lua_getfield(L, -1, "DefElem") == LUA_TTABLE && lua_getfield(L, -1, "defname") == LUA_TSTRING
			    && strcasecmp(lua_tostring(L, -1), "analyze") == 0)
				refuse(c, "refused", "EXPLAIN ANALYZE runs the statement");
			lua_settop(L, opts);
		}
	}
	lua_settop(L, base);
	if (lua_getfield(L, stmt, "query") != LUA_TTABLE || lua_getfield(L, -1, "SelectStmt") != LUA_TTABLE)
		refuse(c, "refused", "EXPLAIN of a statement that is not a SELECT");
	lua_settop(L, base);
}

/* Checks one SQL text: the user's (top) or a view's definition. */
static void check_sql(struct check *c, const char *sql, bool top)
{
	lua_State *L = c->L;
	int base = lua_gettop(L);
	if (!sql || !parse(c, sql))
		return;
	int tree = lua_gettop(L);
	lua_getfield(L, tree, "stmts");
	lua_Integer n = lua_type(L, -1) == LUA_TTABLE ? (lua_Integer)lua_rawlen(L, -1) : 0;
	if (n != 1) {
		refuse(c, "refused", n ? "%lld statements in one string: a probe runs one" : "there is no statement to run",
		       (long long)n);
		lua_settop(L, base);
		return;
	}
	lua_rawgeti(L, -1, 1);
	lua_getfield(L, -1, "stmt_location");
	lua_Integer loc = lua_tointeger(L, -1);
	lua_pop(L, 1);
	lua_getfield(L, -1, "stmt");
	int stmt = lua_gettop(L);
	lua_pushnil(L);
	const char *type = lua_next(L, stmt) ? lua_tostring(L, -2) : "";
	int body = lua_gettop(L);
	if (strcmp(type, "ExplainStmt") == 0 && top)
		check_explain(c, body);
	if (strcmp(type, "SelectStmt") == 0 || (top && (strcmp(type, "ExplainStmt") == 0
	                                                  || strcmp(type, "VariableShowStmt") == 0))) {
		walk(c, body, 0);
	} else {
		char word[64];
		first_word(word, sizeof word, sql, loc >= 0 && loc < (lua_Integer)strlen(sql) ? loc : 0);
		refuse(c, "refused", "%s is not a read (a probe runs SELECT, WITH, VALUES, TABLE, SHOW, or EXPLAIN "
		       "without ANALYZE)", word);
	}
	lua_settop(L, base);
}

/* Pushes the handle's cache (its user value 1), made on first use. */
static void push_cache(lua_State *L)
{
	if (lua_getiuservalue(L, 1, 1) != LUA_TTABLE) {
		lua_pop(L, 1);
		lua_newtable(L);
		lua_pushvalue(L, -1);
		lua_setiuservalue(L, 1, 1);
	}
}

/* Appends the names of kind wanted (the table at idx) to b as a PostgreSQL array literal. */
static void wanted_array(lua_State *L, int idx, char kind, luaL_Buffer *b)
{
	bool first = true;
	luaL_addchar(b, '{');
	lua_pushnil(L);
	while (lua_next(L, idx)) {
		const char *k = lua_tostring(L, -2);
		lua_pop(L, 1);
		if (k[0] != kind)
			continue;
		if (!first)
			luaL_addchar(b, ',');
		first = false;
		luaL_addchar(b, '"');
		for (const char *p = k + 2; *p; p++) {
			if (*p == '"' || *p == '\\')
				luaL_addchar(b, '\\');
			luaL_addchar(b, *p);
		}
		luaL_addchar(b, '"');
	}
	luaL_addchar(b, '}');
}

static const char lookup_sql[] =
	"SELECT 'f' AS k, p.proname::text AS name, n.nspname::text AS schema, bool_or(p.provolatile = 'v')::text AS v"
	" FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace"
	" WHERE p.proname = ANY ($1::text[]) GROUP BY 2, 3"
	" UNION ALL SELECT 'o', o.oprname::text, n.nspname::text, bool_or(p.provolatile = 'v')::text"
	" FROM pg_catalog.pg_operator o JOIN pg_catalog.pg_namespace n ON n.oid = o.oprnamespace"
	" JOIN pg_catalog.pg_proc p ON p.oid = o.oprcode WHERE o.oprname = ANY ($2::text[]) GROUP BY 2, 3"
	" UNION ALL SELECT 'r', c.relname::text, n.nspname::text, pg_catalog.pg_get_viewdef(c.oid)"
	" FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
	" WHERE c.relname = ANY ($3::text[]) AND c.relkind = 'v'"
	" AND n.nspname NOT IN ('pg_catalog', 'information_schema')";

/* Queues the look-up of the wanted names (the table on top) as the op's next pipeline. */
static void queue_lookup(lua_State *L, struct pg_op *op, int round)
{
	int wanted = lua_gettop(L);
	const char *params[3];
	for (int i = 0; i < 3; i++) {
		luaL_Buffer b;
		luaL_buffinit(L, &b);
		wanted_array(L, wanted, "for"[i], &b);
		luaL_pushresult(&b);
		params[i] = lua_tostring(L, -1);
	}
	pg_op_reset(op);
	pg_op_stmtv(op, lookup_sql, 3, params);   /* copies them */
	lua_settop(L, wanted);
	op->stage = STAGE_LOOKUP + round;
	pg_op_pipeline(op, true, 0);
}

/* The user's statement back in the op (a look-up took its place): for sending, or for the messages. */
static void restore_statement(lua_State *L, struct pg_op *op)
{
	pg_op_reset(op);
	pg_op_stmt(L, op, lua_tostring(L, 2), 3);
	op->stage = 0;
}

/* One round of the check: refuses the op, queues a look-up, or queues the statement. */
static void check_round(lua_State *L, struct pg_op *op, int round, bool replaced)
{
	int top = lua_gettop(L);
	push_cache(L);
	lua_newtable(L);
	struct check c = { .L = L, .cache = top + 1, .wanted = top + 2 };
	check_sql(&c, lua_tostring(L, 2), true);
	if (!c.kind && c.nwanted && round >= MAX_ROUNDS)
		refuse(&c, "refused", "views nested more than %d deep cannot be checked", MAX_ROUNDS);
	if (c.kind) {
		if (replaced)
			restore_statement(L, op);
		if (strcmp(c.kind, "refused") == 0)
			pg_op_fail(op, c.kind, "refused before sending: %s; to run it, use conn:exec(...), which asks first "
			           "at the confirmation gate", c.why);
		else
			pg_op_fail(op, c.kind, "%s", c.why);
	} else if (c.nwanted) {
		queue_lookup(L, op, round);
	} else {
		if (replaced)
			restore_statement(L, op);
		pg_op_pipeline(op, true, 0);
	}
	lua_settop(L, top);
}

void pg_readonly_start(lua_State *L, struct pg_op *op)
{
	check_round(L, op, 0, false);
}

/* Files the look-up's rows in the cache: every name asked gets an entry, found or not. */
static void learn(lua_State *L, const PGresult *r)
{
	push_cache(L);
	int cache = lua_gettop(L);
	int rows = PQntuples(r);
	for (int i = 0; i < rows; i++) {
		char key[NAME_MAX_LEN + 2];
		const char *k = PQgetvalue(r, i, 0), *name = PQgetvalue(r, i, 1), *schema = PQgetvalue(r, i, 2);
		snprintf(key, sizeof key, "%c:%s", k[0], name);
		if (lua_getfield(L, cache, key) != LUA_TTABLE) {
			lua_pop(L, 1);
			lua_newtable(L);
			lua_pushvalue(L, -1);
			lua_setfield(L, cache, key);
		}
		if (k[0] == 'r')
			lua_pushstring(L, PQgetvalue(r, i, 3));
		else
			lua_pushboolean(L, strcmp(PQgetvalue(r, i, 3), "true") == 0);
		lua_setfield(L, -2, schema);
		lua_pop(L, 1);
	}
	lua_pop(L, 1);
}

/* The names the op asked for (its parameters), each given an entry in the cache if it has none:
 * asked and not found is an answer too. */
static void learn_absent(lua_State *L, const struct pg_op *op)
{
	push_cache(L);
	int cache = lua_gettop(L);
	for (int i = 0; i < 3 && i < op->stmts[0].nparams; i++) {
		const char *p = op->stmts[0].params[i];
		if (!p || *p++ != '{')
			continue;
		while (*p == '"') {
			char key[NAME_MAX_LEN + 2];
			size_t n = 0;
			key[n++] = "for"[i];
			key[n++] = ':';
			for (p++; *p && *p != '"'; p++) {
				if (*p == '\\' && p[1])
					p++;
				if (n + 1 < sizeof key)
					key[n++] = *p;
			}
			key[n] = 0;
			if (*p)
				p++;
			if (*p == ',')
				p++;
			if (lua_getfield(L, cache, key) != LUA_TTABLE) {
				lua_newtable(L);
				lua_setfield(L, cache, key);
			}
			lua_pop(L, 1);
		}
	}
	lua_pop(L, 1);
}

int pg_readonly_stage(lua_State *L, struct pg_op *op)
{
	if (op->stage < STAGE_LOOKUP)
		return 0;
	int round = op->stage - STAGE_LOOKUP;
	if (op->kind) {
		char cause[sizeof op->cause];
		snprintf(cause, sizeof cause, "%s", op->cause);
		restore_statement(L, op);
		if (snprintf(op->cause, sizeof op->cause, "checking the functions the query calls (pg_proc): %s", cause)
		    >= (int)sizeof op->cause)
			op->cause[sizeof op->cause - 1] = 0;   /* cut, as the cause always is */
		return 0;
	}
	learn_absent(L, op);
	learn(L, op->res[0]);
	check_round(L, op, round + 1, true);
	return op->kind ? 0 : PG_AGAIN;
}

void pg_readonly_forget(lua_State *L, int idx)
{
	lua_pushnil(L);
	lua_setiuservalue(L, idx, 1);
}
