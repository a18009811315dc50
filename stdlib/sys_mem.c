/*
 * sys_mem.c - sys.memory and sys.load, from /proc/meminfo, /proc/loadavg and /proc/uptime; on a target
 * (stdlib/reach.lua) the same parsers read what the transport brought back.
 */
#include "sys_internal.h"

/* ----------------------------------------------------------------------- memory, load, uptime */

/* The value of "Key:   123 kB" in /proc/meminfo text, in bytes; -1 when absent. */
static int64_t meminfo_field(const char *text, const char *key)
{
	size_t klen = strlen(key);
	for (const char *line = text; line && *line; line = strchr(line, '\n'), line = line ? line + 1 : NULL)
		if (strncmp(line, key, klen) == 0 && line[klen] == ':')
			return strtoll(line + klen + 1, NULL, 10) * 1024;
	return -1;
}

/* The result of sys.memory from /proc/meminfo's text, here or from a target (p NULL: not recorded
 * here, the transport's read was). */
static int push_memory(lua_State *L, const struct probe *p, const char *text)
{
	int64_t total = meminfo_field(text, "MemTotal");
	int64_t free_ = meminfo_field(text, "MemFree");
	int64_t avail = meminfo_field(text, "MemAvailable");
	int64_t buffers = meminfo_field(text, "Buffers");
	int64_t cached = meminfo_field(text, "Cached") + (meminfo_field(text, "SReclaimable") > 0 ? meminfo_field(text, "SReclaimable") : 0);
	int64_t swap_total = meminfo_field(text, "SwapTotal");
	int64_t swap_free = meminfo_field(text, "SwapFree");
	if (total <= 0)
		return p ? probe_fail_errno(L, p, EIO) : luax_fail(L, "error", "sys.memory: no MemTotal in /proc/meminfo");
	if (avail < 0)     /* kernels before 3.14 */
		avail = free_ + buffers + cached;
	/* "used" as free(1) of procps 4 counts it: what is not available, so caches do not alarm anyone. */
	int64_t used = total - avail;
	int64_t swap_used = swap_total > 0 ? swap_total - swap_free : 0;
	char summary[96];
	snprintf(summary, sizeof summary, "memory %.1f%% used, swap %.1f%% used", pct((double)used, (double)total),
	         pct((double)swap_used, (double)swap_total));
	if (p)
		probe_end(p, "ok", summary);
	lua_createtable(L, 0, 11);
	luax_setint(L, "total", total);
	luax_setint(L, "available", avail);
	luax_setint(L, "used", used);
	luax_setint(L, "free", free_);
	luax_setint(L, "buffers", buffers);
	luax_setint(L, "cached", cached);
	luax_setint(L, "swap_total", swap_total > 0 ? swap_total : 0);
	luax_setint(L, "swap_used", swap_used);
	luax_setint(L, "swap_free", swap_free > 0 ? swap_free : 0);
	luax_setnum(L, "used_pct", round1(pct((double)used, (double)total)));
	luax_setnum(L, "swap_pct", round1(pct((double)swap_used, (double)swap_total)));
	return 1;
}

/* Begins the probe fn and reads the /proc file path into text: 0 when it is read, else the
 * probe's failure is pushed and its count of results returned. */
static int probe_read_proc(lua_State *L, struct probe *p, const char *fn, const char *path, char *text, size_t n)
{
	probe_begin(p, fn, path, 0);
	if (read_small(path, text, n) > 0)
		return 0;
	return probe_fail_errno(L, p, errno ? errno : EIO);
}

int sys_memory(lua_State *L)
{
	if (luax_remote(L, 1))
		return luax_delegate(L, "reach", "sys_memory");
	struct probe p;
	char text[8192];
	int failed = probe_read_proc(L, &p, "sys.memory", "/proc/meminfo", text, sizeof text);
	return failed ? failed : push_memory(L, &p, text);
}

double read_uptime(void)
{
	char text[128];
	return read_small("/proc/uptime", text, sizeof text) > 0 ? strtod(text, NULL) : 0.0;
}

/* The result of sys.load from /proc/loadavg's text, the number of CPUs and the uptime (p: as above). */
static int push_load(lua_State *L, const struct probe *p, const char *text, long cpus, double uptime)
{
	double l1, l5, l15;
	int running, tasks;
	if (sscanf(text, "%lf %lf %lf %d/%d", &l1, &l5, &l15, &running, &tasks) != 5)
		return p ? probe_fail_errno(L, p, EIO) : luax_fail(L, "error", "sys.load: /proc/loadavg is not as expected");
	if (cpus < 1)
		cpus = 1;
	char summary[96];
	snprintf(summary, sizeof summary, "load %.2f %.2f %.2f on %ld cpus", l1, l5, l15, cpus);
	if (p)
		probe_end(p, "ok", summary);
	lua_createtable(L, 0, 8);
	luax_setnum(L, "load1", l1);
	luax_setnum(L, "load5", l5);
	luax_setnum(L, "load15", l15);
	luax_setint(L, "cpus", cpus);
	luax_setnum(L, "per_cpu1", round1(l1 / (double)cpus * 10.0) / 10.0);
	luax_setint(L, "running", running);
	luax_setint(L, "total_tasks", tasks);
	luax_setnum(L, "uptime", uptime);
	return 1;
}

int sys_load(lua_State *L)
{
	if (luax_remote(L, 1))
		return luax_delegate(L, "reach", "sys_load");
	struct probe p;
	char text[256];
	int failed = probe_read_proc(L, &p, "sys.load", "/proc/loadavg", text, sizeof text);
	return failed ? failed : push_load(L, &p, text, sysconf(_SC_NPROCESSORS_ONLN), read_uptime());
}

/* ------------------------------------------------- the same parsers for a target (sys_transport) */

/* sys_transport.memory(meminfo_text) -> the table of sys.memory | nil, err */
int sysx_memory(lua_State *L) { return push_memory(L, NULL, luaL_checkstring(L, 1)); }

/* sys_transport.load(loadavg_text, cpus, uptime) -> the table of sys.load | nil, err */
int sysx_load(lua_State *L)
{
	return push_load(L, NULL, luaL_checkstring(L, 1), (long)luaL_checkinteger(L, 2), luaL_checknumber(L, 3));
}
