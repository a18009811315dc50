/* luax.c - see luax.h. */
#include "luax.h"
#include "host.h"
#include "jsonw.h"
#include "redact.h"
#include "transcript.h"

#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int luax_distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	if (la > 64 || lb > 64)
		return 99;
	int row[65];
	for (size_t j = 0; j <= lb; j++)
		row[j] = (int)j;
	for (size_t i = 1; i <= la; i++) {
		int diag = row[0];
		row[0] = (int)i;
		for (size_t j = 1; j <= lb; j++) {
			int up = row[j];
			int cost = tolower((unsigned char)a[i - 1]) != tolower((unsigned char)b[j - 1]);
			int best = diag + cost;
			if (up + 1 < best)
				best = up + 1;
			if (row[j - 1] + 1 < best)
				best = row[j - 1] + 1;
			row[j] = best;
			diag = up;
		}
	}
	return row[lb];
}

static const char *closest(const char *word, const char *const allowed[])
{
	const char *best = NULL;
	int bestd = 3;
	for (const char *const *a = allowed; *a; a++) {
		int d = luax_distance(word, *a);
		if (d < bestd) {
			bestd = d;
			best = *a;
		}
	}
	return best;
}

void luax_check_options(lua_State *L, int idx, const char *fn, const char *const allowed[])
{
	if (lua_isnoneornil(L, idx))
		return;
	luaL_checktype(L, idx, LUA_TTABLE);
	idx = lua_absindex(L, idx);
	lua_pushnil(L);
	while (lua_next(L, idx)) {
		lua_pop(L, 1);
		if (lua_type(L, -1) != LUA_TSTRING)
			continue;
		const char *key = lua_tostring(L, -1);
		bool known = false;
		for (const char *const *a = allowed; *a && !known; a++)
			known = strcmp(*a, key) == 0;
		if (!known) {
			const char *hint = closest(key, allowed);
			if (hint)
				luaL_error(L, "%s: unknown option '%s' (did you mean '%s'?)", fn, key, hint);
			luaL_error(L, "%s: unknown option '%s'", fn, key);
		}
	}
}

int luax_parse_duration(const char *s, double *seconds)
{
	char *end;
	while (isspace((unsigned char)*s))
		s++;
	double v = strtod(s, &end);
	if (end == s || !isfinite(v) || v < 0)
		return -1;
	while (isspace((unsigned char)*end))
		end++;
	static const struct { const char *unit; double scale; } units[] = {
		{ "", 1 }, { "ms", 0.001 }, { "s", 1 }, { "sec", 1 }, { "m", 60 }, { "min", 60 },
		{ "h", 3600 }, { "d", 86400 },
	};
	for (size_t i = 0; i < sizeof units / sizeof *units; i++) {
		if (strcmp(end, units[i].unit) == 0) {
			*seconds = v * units[i].scale;
			return 0;
		}
	}
	return -1;
}

static int opt_field(lua_State *L, int idx, const char *key)
{
	if (lua_isnoneornil(L, idx))
		return LUA_TNIL;
	return lua_getfield(L, idx, key);
}

msec_t luax_opt_duration(lua_State *L, int idx, const char *key, msec_t def, const char *fn)
{
	int t = opt_field(L, idx, key);
	msec_t ms = def;
	double s;
	if (t == LUA_TNUMBER) {
		s = lua_tonumber(L, -1);
		if (!(s >= 0 && isfinite(s)))
			luaL_error(L, "%s: option '%s' must be a non-negative number of seconds", fn, key);
		ms = (msec_t)llround(s * 1000);
	} else if (t == LUA_TSTRING) {
		if (luax_parse_duration(lua_tostring(L, -1), &s) != 0)
			luaL_error(L, "%s: option '%s': bad duration '%s' (use 500ms, 2s, 5m, 1h, 7d)", fn, key, lua_tostring(L, -1));
		ms = (msec_t)llround(s * 1000);
	} else if (t != LUA_TNIL) {
		luaL_error(L, "%s: option '%s' must be a duration (number of seconds or \"2s\")", fn, key);
	}
	if (!lua_isnoneornil(L, idx))
		lua_pop(L, 1);
	return ms;
}

const char *luax_opt_string(lua_State *L, int idx, const char *key, const char *def, const char *fn)
{
	int t = opt_field(L, idx, key);
	const char *v = def;
	if (t == LUA_TSTRING)
		v = lua_tostring(L, -1); /* stays alive: the options table holds it */
	else if (t != LUA_TNIL)
		luaL_error(L, "%s: option '%s' must be a string", fn, key);
	if (!lua_isnoneornil(L, idx))
		lua_pop(L, 1);
	return v;
}

lua_Integer luax_opt_integer(lua_State *L, int idx, const char *key, lua_Integer def, const char *fn)
{
	int t = opt_field(L, idx, key);
	lua_Integer v = def;
	if (t == LUA_TNUMBER && lua_isinteger(L, -1))
		v = lua_tointeger(L, -1);
	else if (t != LUA_TNIL)
		luaL_error(L, "%s: option '%s' must be an integer", fn, key);
	if (!lua_isnoneornil(L, idx))
		lua_pop(L, 1);
	return v;
}

bool luax_opt_bool(lua_State *L, int idx, const char *key, bool def, const char *fn)
{
	int t = opt_field(L, idx, key);
	bool v = def;
	if (t == LUA_TBOOLEAN)
		v = lua_toboolean(L, -1);
	else if (t != LUA_TNIL)
		luaL_error(L, "%s: option '%s' must be true or false", fn, key);
	if (!lua_isnoneornil(L, idx))
		lua_pop(L, 1);
	return v;
}

int luax_fail(lua_State *L, const char *kind, const char *fmt, ...)
{
	char *msg = NULL;
	va_list ap;
	va_start(ap, fmt);
	int n = vasprintf(&msg, fmt, ap);
	va_end(ap);
	lua_pushnil(L);
	if (n < 0) {
		lua_pushstring(L, "out of memory");
	} else {
		size_t len;
		char *clean = redact(msg, (size_t)n, &len);
		lua_pushlstring(L, clean, len);
		free(clean);
		free(msg);
	}
	lua_pushstring(L, kind);
	return 3;
}

void luax_setint(lua_State *L, const char *key, lua_Integer v) { lua_pushinteger(L, v); lua_setfield(L, -2, key); }
void luax_setnum(lua_State *L, const char *key, lua_Number v) { lua_pushnumber(L, v); lua_setfield(L, -2, key); }
void luax_setstr(lua_State *L, const char *key, const char *v) { lua_pushstring(L, v); lua_setfield(L, -2, key); }
void luax_setbool(lua_State *L, const char *key, bool v) { lua_pushboolean(L, v); lua_setfield(L, -2, key); }

void luax_audit_probe(const char *primitive, const char *target, msec_t deadline_ms,
                      double duration_ms, const char *outcome, const char *summary)
{
	luax_audit_probe_on(primitive, target, NULL, NULL, deadline_ms, duration_ms, outcome, summary);
}

void luax_audit_probe_on(const char *primitive, const char *target, const char *on, const char *host,
                         msec_t deadline_ms, double duration_ms, const char *outcome, const char *summary)
{
	struct jbuf b = { 0 };
	jb_open_call(&b, primitive, target, on, host);
	msec_t cap = sched_cap();   /* --timeout: what the primitive really had */
	if (cap > 0 && (deadline_ms <= 0 || cap < deadline_ms))
		deadline_ms = cap;
	if (deadline_ms > 0)
		jb_kint(&b, "deadline_ms", deadline_ms);
	char num[32];
	snprintf(num, sizeof num, "%.3f", duration_ms);
	jb_key(&b, "duration_ms");
	jb_rawz(&b, num);
	jb_kstr(&b, "outcome", outcome);
	jb_kstr_redacted(&b, "summary", summary);
	jb_close(&b);
	transcript_audit("probe", b.p);
	jb_free(&b);
}

void luax_class(lua_State *L, const char *name, const luaL_Reg meta[], const luaL_Reg methods[],
                void (*more_methods)(lua_State *L))
{
	if (luaL_newmetatable(L, name)) {
		luaL_setfuncs(L, meta, 0);
		if (methods) {
			lua_newtable(L);
			luaL_setfuncs(L, methods, 0);
			if (more_methods)
				more_methods(L);
			lua_setfield(L, -2, "__index");
		}
		lua_pushboolean(L, 0);
		lua_setfield(L, -2, "__metatable");
	}
	lua_pop(L, 1);
}

int luax_not_run(lua_State *L, enum gate_answer a, size_t cap, void (*release)(void *op), void *op,
                 const char *fmt, ...)
{
	char *what = NULL;
	va_list ap;
	va_start(ap, fmt);
	int n = vasprintf(&what, fmt, ap);
	va_end(ap);
	char *msg = malloc(cap);
	if (n < 0 || !msg)
		abort();
	snprintf(msg, cap, "%s: %s", what,
	         a == GATE_REFUSED ? "not run: the transcript cannot be written" : "declined by the operator");
	free(what);
	if (a == GATE_REFUSED) {
		int nret = luax_fail(L, "refused", "%s", msg);
		free(msg);
		return nret;
	}
	if (release)
		release(op);
	host_push_control(L, a == GATE_ABORT ? "abort" : "skip", msg);
	free(msg);
	return lua_error(L);
}

/* ------------------------------------------------------------------- calls with `on = target` */

bool luax_remote(lua_State *L, int idx)
{
	if (lua_type(L, idx) != LUA_TTABLE)
		return false;
	int t = lua_getfield(L, idx, "on");
	bool remote = t != LUA_TNIL && !(t == LUA_TSTRING && strcmp(lua_tostring(L, -1), "local") == 0);
	lua_pop(L, 1);
	return remote;
}

static int delegated_k(lua_State *L, int status, lua_KContext base)
{
	(void)status;
	return lua_gettop(L) - (int)base;
}

int luax_delegate(lua_State *L, const char *module, const char *fn)
{
	int n = lua_gettop(L);
	lua_getglobal(L, "require");
	lua_pushstring(L, module);
	lua_call(L, 1, 1);
	lua_getfield(L, -1, fn);
	lua_remove(L, -2);
	for (int i = 1; i <= n; i++)
		lua_pushvalue(L, i);
	lua_callk(L, n, LUA_MULTRET, n, delegated_k);   /* a fleet's tasks yield across this call */
	return delegated_k(L, LUA_OK, n);
}
