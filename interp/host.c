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
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


#define CONTROL_MT "runbook.control"

/* The Lua state's memory limit: RUNBOOK_MEMORY_LIMIT or --memory-limit, else this. When it is hit
 * the allocation fails (Lua raises "not enough memory"), and the limit grows once by a reserve, so
 * that the run can still be wound down: its transcript closed, its locks released. */
#define DEFAULT_MEMORY_LIMIT ((size_t)1 << 30)
#define WIND_DOWN_RESERVE    ((size_t)64 << 20)
static size_t mem_used, mem_limit = DEFAULT_MEMORY_LIMIT;
static bool mem_hit;

static void *limited_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
	(void)ud;
	size_t old = ptr ? osize : 0;
	if (nsize == 0) {
		free(ptr);
		mem_used -= old;
		return NULL;
	}
	if (nsize > old && nsize - old > mem_limit - mem_used) {
		if (!mem_hit) {
			mem_hit = true;
			mem_limit += WIND_DOWN_RESERVE;
		}
		return NULL;
	}
	void *p = realloc(ptr, nsize);
	if (p)
		mem_used = mem_used - old + nsize;
	return p;
}

bool host_memory_exceeded(void) { return mem_hit; }
size_t host_memory_limit(void) { return mem_hit ? mem_limit - WIND_DOWN_RESERVE : mem_limit; }

bool host_set_memory_limit(size_t bytes)
{
	if (bytes < mem_used + ((size_t)16 << 20) || mem_hit)
		return false;
	mem_limit = bytes;
	return true;
}

/* "512M", "2G", "1.5GiB", "1048576": bytes, or 0 when it is not a size. */
size_t host_parse_size(const char *s)
{
	char *end;
	double v = strtod(s, &end);
	if (end == s || v <= 0)
		return 0;
	double unit = 1;
	switch (*end) {
	case 'k': case 'K': unit = 1024.0; end++; break;
	case 'm': case 'M': unit = 1024.0 * 1024; end++; break;
	case 'g': case 'G': unit = 1024.0 * 1024 * 1024; end++; break;
	case 't': case 'T': unit = 1024.0 * 1024 * 1024 * 1024; end++; break;
	default: break;
	}
	if (unit > 1 && (strcmp(end, "iB") == 0 || strcmp(end, "B") == 0))
		end += strlen(end);
	if (*end || v * unit >= 0x1p62)
		return 0;
	return (size_t)(v * unit);
}

static int panic(lua_State *L)
{
	const char *msg = lua_tostring(L, -1);
	fprintf(stderr, "runbook: %s\n", mem_hit ? "the memory limit was reached outside any step (raise "
	        "RUNBOOK_MEMORY_LIMIT)" : msg ? msg : "unrecoverable Lua error");
	return 0;   /* Lua aborts */
}
#define MAX_THREADS 64

/* Read by the signal handler: plain array and a sig_atomic_t count, written outside it. */
static lua_State *threads[MAX_THREADS];
static volatile sig_atomic_t nthreads;

static void interrupt_hook(lua_State *L, lua_Debug *ar)
{
	(void)ar;
	sched_honoured();
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

static bool debug_tracebacks;
void host_set_debug(bool on) { debug_tracebacks = on; }

static int tostring_meta(lua_State *L)
{
	luaL_tolstring(L, 1, NULL);
	return 1;
}

/* The message handler: the error as one line of text (a traceback only with --debug), whatever
 * was raised, an object whose __tostring fails included. */
static int traceback(lua_State *L)
{
	if (host_control_kind(L, 1))
		return 1;
	const char *msg = lua_tostring(L, 1);
	if (!msg && luaL_getmetafield(L, 1, "__tostring") != LUA_TNIL) {
		lua_pop(L, 1);
		lua_pushcfunction(L, tostring_meta);
		lua_pushvalue(L, 1);
		if (lua_pcall(L, 1, 1, 0) == LUA_OK && lua_type(L, -1) == LUA_TSTRING)
			msg = lua_tostring(L, -1);
		else
			msg = lua_pushfstring(L, "(a %s was raised as an error, and its __tostring failed)", luaL_typename(L, 1));
	}
	if (!msg)
		msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
	if (debug_tracebacks)
		luaL_traceback(L, L, msg, 1);
	else
		lua_pushstring(L, msg);
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

/* The host's own C modules, beside the runbooks' (runbook_modules). */
static const luaL_Reg host_modules[] = {
	{ "cjson", luaopen_cjson },
	{ "core", luaopen_core },
	{ "lineedit", modules_open_lineedit },
	{ "lockfile", luaopen_lockfile },             /* incidents: session locks (interp/lock.lua) */
	{ "replay", luaopen_replay },                 /* incidents: exec --resume (interp/resume.lua) */
	{ "sh_transport", luaopen_sh_transport },     /* targets: sh's transports (stdlib/reach.lua) */
	{ "sys_transport", luaopen_sys_transport },   /* targets: sys's parsers for what reach.lua read */
	{ NULL, NULL },
};

static void register_preloads(lua_State *L)
{
	luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
	luaL_setfuncs(L, runbook_modules, 0);
	luaL_setfuncs(L, host_modules, 0);
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
	const char *env = getenv("RUNBOOK_MEMORY_LIMIT");
	if (env && *env) {
		size_t limit = host_parse_size(env);
		if (limit < ((size_t)32 << 20)) {
			fprintf(stderr, "runbook: RUNBOOK_MEMORY_LIMIT=%s is not a size of at least 32M (write 512M, 2G)\n", env);
			errno = EINVAL;
			return NULL;
		}
		mem_limit = limit;
	}
	lua_State *L = lua_newstate(limited_alloc, NULL);
	if (!L)
		return NULL;
	lua_atpanic(L, panic);
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
