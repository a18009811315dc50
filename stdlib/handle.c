/* handle.c - see handle.h. */
#include "handle.h"
#include "luax.h"

#include <lauxlib.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* The module's struct begins with its handle_state: a pointer to one is a pointer to the other. */
static struct handle_state *state_of(void *handle) { return handle; }

static void disconnect(struct handle_state *s)
{
	if (s->conn)
		s->type->disconnect(s->conn);
	s->conn = NULL;
}

void *handle_push(lua_State *L, const struct handle_type *t, size_t size, int nuvalue, void *conn,
                  const char *target)
{
	void *h = lua_newuserdatauv(L, size, nuvalue);
	memset(h, 0, size);
	luaL_setmetatable(L, t->mt);
	struct handle_state *s = state_of(h);
	s->type = t;
	s->conn = conn;
	snprintf(s->target, sizeof s->target, "%s", target);
	return h;
}

void *handle_check_open(lua_State *L, int idx, const struct handle_type *t, const char *fn)
{
	void *h = luaL_testudata(L, idx, t->mt);
	if (!h) {
		const char *method = strchr(fn, '.');
		luaL_error(L, "%s: call it on a connection, with a colon: conn:%s(...)", fn, method ? method + 1 : fn);
	} else if (state_of(h)->closed) {
		luaL_error(L, "%s %s: the connection is closed", fn, state_of(h)->target);
	}
	return h;
}

int handle_unusable(lua_State *L, const struct handle_state *s, const char *fn)
{
	if (s->busy)
		luaL_error(L, "%s %s: the connection is busy with another task's call (open one connection per task "
		           "of parallel())", fn, s->target);
	if (!s->conn)
		return luax_fail(L, "closed", "%s %s: connection was closed after %s; connect again", fn, s->target,
		                 s->broken ? s->broken : "an error");
	return 0;
}

void handle_call_start(lua_State *L, struct handle_state *s)
{
	lua_pushvalue(L, 1);
	lua_setiuservalue(L, -2, 1);
	s->busy = true;
}

void handle_call_ended(struct handle_state *s)
{
	s->busy = false;
	if (s->closed)
		disconnect(s);
}

void handle_mark_broken(struct handle_state *s, const void *conn, const char *why)
{
	if (!s->conn || s->conn != conn)
		return;
	s->conn = NULL;
	s->broken = why;
}

int handle_close(lua_State *L, const struct handle_type *t)
{
	void *h = luaL_testudata(L, 1, t->mt);
	if (!h)
		return luaL_error(L, "%s.close: call it on a connection, with a colon: conn:close()", t->module);
	struct handle_state *s = state_of(h);
	s->closed = true;
	if (!s->busy)   /* else the call in flight releases it when it ends (handle_call_ended) */
		disconnect(s);
	return 0;
}

int handle_gc(lua_State *L, const struct handle_type *t)
{
	struct handle_state *s = state_of(luaL_checkudata(L, 1, t->mt));
	s->closed = true;
	disconnect(s);
	return 0;
}

int handle_tostring(lua_State *L, const struct handle_type *t)
{
	const struct handle_state *s = state_of(luaL_checkudata(L, 1, t->mt));
	if (s->closed)
		lua_pushfstring(L, "%s.conn %s (closed)", t->module, s->target);
	else if (!s->conn)
		lua_pushfstring(L, "%s.conn %s (closed after %s)", t->module, s->target, s->broken ? s->broken : "an error");
	else
		lua_pushfstring(L, "%s.conn %s", t->module, s->target);
	return 1;
}

void handle_op_fail(const char **kind, char *cause, size_t n, const char *what, const char *fmt, ...)
{
	if (*kind)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(cause, n, fmt, ap);
	va_end(ap);
	*kind = what;
}
