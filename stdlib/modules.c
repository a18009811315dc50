/*
 * modules.c - the table of native modules; see modules.h.
 *
 * sh, sys and tcp are linked in. pg, redis and http are shared objects opened on their first
 * `require`: libpq, hiredis and libcurl bring some forty libraries with them, and mapping them on
 * every start tripled the time of `runbook list`. They are looked for next to the binary:
 * PREFIX/lib/runbook when installed, obj/modules (obj-asan/modules for runbook-asan) in the
 * source tree.
 */
#include "modules.h"

#include <dlfcn.h>
#include <stdbool.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static bool exists(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0;
}

/* Fills path with where NAME.so is; false (and path names the last place tried) if nowhere. */
static bool module_path(const char *name, char *path, size_t size)
{
	char exe[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
	if (n <= 0)
		n = 0;
	exe[n] = '\0';
	char *slash = strrchr(exe, '/');
	const char *base = slash ? slash + 1 : exe;
	size_t blen = strlen(base);
	bool asan = blen > 5 && strcmp(base + blen - 5, "-asan") == 0;
	if (slash)
		*slash = '\0';
	snprintf(path, size, "%s/%s/modules/%s.so", exe, asan ? "obj-asan" : "obj", name);
	if (exists(path))
		return true;
	snprintf(path, size, "%s/../lib/runbook/%s.so", exe, name);
	if (exists(path))
		return true;
	snprintf(path, size, "%s/%s.so", RUNBOOK_LIBDIR, name);
	return exists(path);
}

static int load_shared(lua_State *L, const char *name)
{
	char path[PATH_MAX + 64], sym[64];
	if (!module_path(name, path, sizeof path))
		return luaL_error(L, "module '%s' is not installed (looked for %s): reinstall runbook", name, path);
	void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (!h)
		return luaL_error(L, "module '%s' cannot be loaded: %s", name, dlerror());
	snprintf(sym, sizeof sym, "luaopen_%s", name);
	lua_CFunction open = (lua_CFunction)dlsym(h, sym);
	if (!open)
		return luaL_error(L, "module '%s' is broken: %s has no %s", name, path, sym);
	return open(L);   /* the handle stays open for the life of the process, as Lua's own C loader does */
}

static int open_pg(lua_State *L) { return load_shared(L, "pg"); }
static int open_redis(lua_State *L) { return load_shared(L, "redis"); }
static int open_http(lua_State *L) { return load_shared(L, "http"); }

const luaL_Reg runbook_modules[] = {
	{ "sh", luaopen_sh },
	{ "sys", luaopen_sys },
	{ "tcp", luaopen_tcp },
	{ "http", open_http },
	{ "pg", open_pg },
	{ "redis", open_redis },
	{ NULL, NULL },
};
