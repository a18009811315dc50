/* host.c - the lua_State; see host.h. */
#include "host.h"
#include "embedded.h"
#include "lockfile.h"
#include "replay.h"
#include "sched.h"
#include "../stdlib/modules.h"

#include <lauxlib.h>
#include <lua-cjson.h>
#include <lualib.h>
#include <signal.h>
#include <string.h>


#define CONTROL_MT "runbook.control"
#define MAX_THREADS 64

/* Read by the signal handler: plain array and a sig_atomic_t count, written outside it. */
static lua_State *threads[MAX_THREADS];
static volatile sig_atomic_t nthreads;

static void interrupt_hook(lua_State *L, lua_Debug *ar)
{
	(void)ar;
	lua_sethook(L, NULL, 0, 0);
	host_raise_control(L, "interrupt", "interrupted");
}

/* In the signal handler: lua_sethook is the one Lua call documented as signal-safe. */
static void arm_hooks(void)
{
	for (int i = 0; i < nthreads; i++)
		lua_sethook(threads[i], interrupt_hook, LUA_MASKCALL | LUA_MASKRET | LUA_MASKCOUNT, 1);
}

static void disarm_hooks(void)
{
	for (int i = 0; i < nthreads; i++)
		lua_sethook(threads[i], NULL, 0, 0);
}

void host_thread_push(lua_State *co)
{
	if (nthreads < MAX_THREADS) {
		threads[nthreads] = co;
		nthreads = nthreads + 1;
	}
	if (sched_interrupted())
		arm_hooks();
}

void host_thread_pop(void)
{
	if (nthreads > 1)
		nthreads = nthreads - 1;
}

void host_push_control(lua_State *L, const char *kind, const char *message)
{
	lua_createtable(L, 0, 2);
	lua_pushstring(L, kind);
	lua_setfield(L, -2, "kind");
	lua_pushstring(L, message);
	lua_setfield(L, -2, "message");
	luaL_setmetatable(L, CONTROL_MT);
}

int host_raise_control(lua_State *L, const char *kind, const char *message)
{
	host_push_control(L, kind, message);
	return lua_error(L);
}

const char *host_control_kind(lua_State *L, int idx)
{
	idx = lua_absindex(L, idx);
	if (!lua_istable(L, idx) || !lua_getmetatable(L, idx))
		return NULL;
	luaL_getmetatable(L, CONTROL_MT);
	int same = lua_rawequal(L, -1, -2);
	lua_pop(L, 2);
	if (!same)
		return NULL;
	lua_getfield(L, idx, "kind");
	const char *kind = lua_tostring(L, -1);
	lua_pop(L, 1);
	return kind; /* interned short string, anchored by the control table */
}

static int control_tostring(lua_State *L)
{
	lua_getfield(L, 1, "message");
	return 1;
}

static int traceback(lua_State *L)
{
	if (host_control_kind(L, 1))
		return 1;
	const char *msg = lua_tostring(L, 1);
	if (!msg)
		msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
	luaL_traceback(L, L, msg, 1);
	return 1;
}

int host_call(lua_State *L, int nargs, int nresults)
{
	int base = lua_gettop(L) - nargs;
	lua_pushcfunction(L, traceback);
	lua_insert(L, base);
	int status = lua_pcall(L, nargs, nresults, base);
	lua_remove(L, base);
	return status;
}

static int load_embedded(lua_State *L)
{
	const struct embedded_file *f = lua_touserdata(L, lua_upvalueindex(1));
	char chunk[96];
	snprintf(chunk, sizeof chunk, "=%s.lua", f->name);
	if (luaL_loadbufferx(L, f->code, f->size, chunk, "b") != LUA_OK)
		return lua_error(L);
	lua_pushstring(L, f->name);
	lua_call(L, 1, 1);
	return 1;
}

static void register_preloads(lua_State *L)
{
	luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
	for (const luaL_Reg *m = runbook_modules; m->name; m++) {
		lua_pushcfunction(L, m->func);
		lua_setfield(L, -2, m->name);
	}
	lua_pushcfunction(L, luaopen_cjson);
	lua_setfield(L, -2, "cjson");
	lua_pushcfunction(L, luaopen_core);
	lua_setfield(L, -2, "core");
	lua_pushcfunction(L, modules_open_lineedit);
	lua_setfield(L, -2, "lineedit");
	lua_pushcfunction(L, luaopen_lockfile);   /* incidents: session locks (interp/lock.lua) */
	lua_setfield(L, -2, "lockfile");
	lua_pushcfunction(L, luaopen_replay);     /* incidents: exec --resume (interp/resume.lua) */
	lua_setfield(L, -2, "replay");
	lua_pushcfunction(L, luaopen_sh_transport);   /* targets: sh's transports (stdlib/reach.lua) */
	lua_setfield(L, -2, "sh_transport");
	lua_pushcfunction(L, luaopen_sys_transport);  /* targets: sys's parsers for what reach.lua read */
	lua_setfield(L, -2, "sys_transport");
	for (const struct embedded_file *f = embedded_files; f->name; f++) {
		lua_pushlightuserdata(L, (void *)f);
		lua_pushcclosure(L, load_embedded, 1);
		lua_setfield(L, -2, f->name);
	}
	lua_pop(L, 1);
}

/* The library's own state has no way to load C code or binary chunks either. */
static void close_loaders(lua_State *L)
{
	lua_getglobal(L, "package");
	lua_getfield(L, -1, "searchers");
	for (int i = 4; i >= 2; i--) {
		lua_pushnil(L);
		lua_rawseti(L, -2, i);
	}
	lua_pop(L, 1);
	lua_pushnil(L);
	lua_setfield(L, -2, "loadlib");
	lua_pushstring(L, "");
	lua_setfield(L, -2, "cpath");
	lua_pushstring(L, "");
	lua_setfield(L, -2, "path");
	lua_pop(L, 1);
}

lua_State *host_new(void)
{
	lua_State *L = luaL_newstate();
	if (!L)
		return NULL;
	luaL_openlibs(L);
	luaL_newmetatable(L, CONTROL_MT);
	lua_pushcfunction(L, control_tostring);
	lua_setfield(L, -2, "__tostring");
	lua_pop(L, 1);
	close_loaders(L);
	register_preloads(L);
	threads[0] = L;
	nthreads = 1;
	sched_on_interrupt(arm_hooks, disarm_hooks);
	return L;
}

void host_close(lua_State *L)
{
	nthreads = 0;
	sched_on_interrupt(NULL, NULL);
	lua_close(L);
}
