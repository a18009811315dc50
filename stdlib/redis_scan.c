/*
 * redis_scan.c - conn:scan, the bounded walk of the keyspace that replaces KEYS in a probe.
 *
 *   conn:scan { match = "session:*", count = 1000, limit = 10000, type = "string", timeout }
 *       -> { "key", ..., n, truncated, stopped = "limit" | "deadline" | nil, scans, ms } | nil, err, kind
 *
 * KEYS answers in one call that holds the server for as long as the keyspace is large. SCAN visits a
 * slice of it per call (COUNT is the hint of its size), so other clients are served in between, and
 * the walk is ours to stop: at `limit` keys (truncated, stopped = "limit"), or when the next call
 * would not come back before the call's deadline (truncated, stopped = "deadline": the round trips so
 * far tell how long one takes), so that the connection stays usable. A key SCAN returns twice (it may,
 * while the keyspace is rehashed) is listed once. A deadline that strikes in the middle of a SCAN all
 * the same ends the walk with the keys found so far (stopped = "deadline") and the connection is
 * discarded, like any call cut short; if no SCAN has come back, the call fails with kind "timeout".
 */
#include "luax.h"
#include "redis_guard.h"

#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FN "redis.scan"
#define DEFAULT_COUNT 1000
#define MAX_COUNT     100000
#define DEFAULT_LIMIT 10000
#define MAX_LIMIT     1000000

/* The stack of conn:scan while it runs: the handle, the options, the keys, the set of keys seen. */
enum { HANDLE = 1, OPTS = 2, KEYS = 3, SEEN = 4 };

static const char *const scan_options[] = { "match", "count", "limit", "type", "timeout", NULL };

/* The walk's state, in the op's fields for callbacks (redis.h). */
#define CURSOR(op)  ((op)->sub)         /* SCAN's cursor, as text */
#define COUNT(op)   ((op)->wanted)      /* SCAN's COUNT */
#define LIMIT(op)   ((op)->stage)       /* keys wanted at most */
#define CALLS(op)   ((op)->nsamples)    /* SCANs answered */
#define SLOWEST(op) ((op)->action_t0)   /* the slowest round trip, ms */

static lua_Integer int_option(lua_State *L, const char *key, lua_Integer def, lua_Integer hi)
{
	lua_Integer v = luax_opt_integer(L, OPTS, key, def, FN);
	if (v < 1 || v > hi)
		luaL_error(L, "%s: %s must be between 1 and %d, got %d", FN, key, (int)hi, (int)v);
	return v;
}

/* Queues SCAN <cursor> [MATCH m] [COUNT c] [TYPE t] and starts its round trip. */
static void queue_scan(lua_State *L, struct redis_op *op)
{
	const char *argv[8];
	size_t lens[8];
	int n = 0;
	char count[24];
	argv[n] = "SCAN", lens[n++] = 4;
	argv[n] = CURSOR(op), lens[n++] = strlen(CURSOR(op));
	if (lua_getfield(L, OPTS, "match") == LUA_TSTRING) {
		argv[n] = "MATCH", lens[n++] = 5;
		argv[n] = lua_tolstring(L, -1, &lens[n]), n++;   /* the options table keeps it */
	}
	lua_pop(L, 1);
	snprintf(count, sizeof count, "%d", COUNT(op));
	argv[n] = "COUNT", lens[n++] = 5;
	argv[n] = count, lens[n++] = strlen(count);
	if (lua_getfield(L, OPTS, "type") == LUA_TSTRING) {
		argv[n] = "TYPE", lens[n++] = 4;
		argv[n] = lua_tolstring(L, -1, &lens[n]), n++;
	}
	lua_pop(L, 1);
	redis_queue_argv(op, n, argv, lens);
	op->sent_at = sched_now_precise();
	redis_batch(op, 0);
}

/* Pushes the result: the keys table, with its fields. */
static int finish(lua_State *L, struct redis_op *op, const char *stopped)
{
	char summary[200];
	lua_Integer n = (lua_Integer)lua_rawlen(L, KEYS);
	snprintf(summary, sizeof summary, "SCAN: %lld keys in %d calls%s%s", (long long)n, CALLS(op),
	         stopped ? ", stopped at the " : "", stopped ? stopped : "");
	redis_audit(op, summary);
	lua_pushvalue(L, KEYS);
	luax_setint(L, "n", n);
	luax_setbool(L, "truncated", stopped != NULL);
	if (stopped)
		luax_setstr(L, "stopped", stopped);
	luax_setint(L, "scans", CALLS(op));
	luax_setnum(L, "ms", redis_elapsed(op));
	return 1;
}

/* Files the keys of one SCAN reply; true when the limit is reached. */
static bool take_keys(lua_State *L, const redisReply *keys, lua_Integer limit)
{
	lua_Integer n = (lua_Integer)lua_rawlen(L, KEYS);
	for (size_t i = 0; i < keys->elements; i++) {
		const redisReply *k = keys->element[i];
		if (!k->str)
			continue;
		lua_pushlstring(L, k->str, k->len);
		if (lua_rawget(L, SEEN) == LUA_TNIL) {
			if (n >= limit)
				return true;
			lua_pushlstring(L, k->str, k->len);
			lua_pushboolean(L, 1);
			lua_rawset(L, SEEN);
			lua_pushlstring(L, k->str, k->len);
			lua_rawseti(L, KEYS, ++n);
		}
		lua_pop(L, 1);
	}
	return n >= limit;
}

static int scan_done(lua_State *L, struct redis_op *op)
{
	if (op->kind) {
		if (CALLS(op) > 0 && strcmp(op->kind, "timeout") == 0)
			return finish(L, op, "deadline");
		redis_audit(op, NULL);
		return redis_fail_push(L, op);
	}
	const redisReply *r = op->rep[0];
	if (redis_is_error(r)) {
		redis_fail_reply(op, r, "SCAN");
		redis_audit(op, NULL);
		return redis_fail_push(L, op);
	}
	if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 || !r->element[0]->str
	    || r->element[1]->type != REDIS_REPLY_ARRAY || r->element[0]->len >= sizeof CURSOR(op)) {
		redis_op_fail(op, "protocol", "SCAN answered with something other than [cursor, keys]");
		redis_audit(op, NULL);
		return redis_fail_push(L, op);
	}
	double rtt = sched_now_precise() - op->sent_at;
	CALLS(op)++;
	if (rtt > SLOWEST(op))
		SLOWEST(op) = rtt;
	if (take_keys(L, r->element[1], LIMIT(op)))
		return finish(L, op, "limit");
	memcpy(CURSOR(op), r->element[0]->str, r->element[0]->len);
	CURSOR(op)[r->element[0]->len] = 0;
	if (strcmp(CURSOR(op), "0") == 0)
		return finish(L, op, NULL);
	/* The next call must come back before the deadline: twice the slowest round trip, and 5 ms. */
	if ((double)sched_now() + 2 * SLOWEST(op) + 5 >= (double)op->deadline)
		return finish(L, op, "deadline");
	queue_scan(L, op);
	return REDIS_AGAIN;
}

static int conn_scan(lua_State *L)
{
	struct redis_handle *h = redis_check_handle(L, FN);
	lua_settop(L, 2);
	if (lua_isnil(L, OPTS)) {
		lua_newtable(L);
		lua_replace(L, OPTS);
	}
	luax_check_options(L, OPTS, FN, scan_options);
	msec_t timeout = luax_opt_duration(L, OPTS, "timeout", h->timeout_ms, FN);
	lua_Integer count = int_option(L, "count", DEFAULT_COUNT, MAX_COUNT);
	lua_Integer limit = int_option(L, "limit", DEFAULT_LIMIT, MAX_LIMIT);
	luax_opt_string(L, OPTS, "match", NULL, FN);
	luax_opt_string(L, OPTS, "type", NULL, FN);
	int n = redis_handle_unusable(L, h, FN);
	if (n)
		return n;
	lua_newtable(L);   /* KEYS */
	lua_newtable(L);   /* SEEN */
	struct redis_op *op = redis_op_push(L, FN, h, timeout);
	COUNT(op) = (int)count;
	LIMIT(op) = (int)limit;
	snprintf(CURSOR(op), sizeof CURSOR(op), "0");
	queue_scan(L, op);
	return redis_op_run(L, op, scan_done);
}

void redis_scan_register(lua_State *L)
{
	lua_pushcfunction(L, conn_scan);
	lua_setfield(L, -2, "scan");
}
