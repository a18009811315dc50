/* handle.c - see handle.h. */
#include "handle.h"
#include "luax.h"

#include <lauxlib.h>
#include <string.h>

void handle_check_open(lua_State *L, const struct handle_state *s, const char *fn, const char *target)
{
	if (!s) {
		const char *method = strchr(fn, '.');
		luaL_error(L, "%s: call it on a connection, with a colon: conn:%s(...)", fn, method ? method + 1 : fn);
	} else if (s->closed) {
		luaL_error(L, "%s %s: the connection is closed", fn, target);
	}
}

int handle_unusable(lua_State *L, const struct handle_state *s, bool live, const char *fn, const char *target)
{
	if (s->busy)
		luaL_error(L, "%s %s: the connection is busy with another task's call (open one connection per task "
		           "of parallel())", fn, target);
	if (!live)
		return luax_fail(L, "closed", "%s %s: connection was closed after %s; connect again", fn, target,
		                 s->broken ? s->broken : "an error");
	return 0;
}

bool handle_mark_closed(struct handle_state *s, bool live)
{
	s->closed = true;
	return live && !s->busy;
}

bool handle_call_ended(struct handle_state *s, bool live)
{
	s->busy = false;
	return s->closed && live;
}

void handle_push_name(lua_State *L, const char *type, const struct handle_state *s, bool live, const char *target)
{
	if (s->closed)
		lua_pushfstring(L, "%s %s (closed)", type, target);
	else if (!live)
		lua_pushfstring(L, "%s %s (closed after %s)", type, target, s->broken ? s->broken : "an error");
	else
		lua_pushfstring(L, "%s %s", type, target);
}
