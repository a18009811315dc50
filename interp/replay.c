/* replay.c - see replay.h. One resumed session per process, so the state is file-static. */
#include "replay.h"
#include "redact.h"
#include "transcript.h"

#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REPLAY_MT "runbook.replay"

struct entry {
	char *step;
	char *host;        /* a host a fleet action ran on (fp: its command and target), or NULL */
	int ordinal;       /* 0: the whole step was completed; -1: a host entry */
	char fp[65];       /* "" for a completed step */
	char *why;
};

static struct entry *entries;
static size_t count, cap;
static char current[128];
static int asked;       /* questions so far in the current attempt */
static bool in_step;

void replay_enter_step(const char *step)
{
	in_step = step != NULL;
	snprintf(current, sizeof current, "%s", step ? step : "");
	asked = 0;
}

static void add(const char *step, int ordinal, const char *fp, const char *why)
{
	if (count == cap) {
		cap = cap ? cap * 2 : 16;
		entries = realloc(entries, cap * sizeof *entries);
		if (!entries)
			abort();
	}
	struct entry *e = &entries[count++];
	e->step = strdup(step);
	e->why = strdup(why);
	e->host = NULL;
	if (!e->step || !e->why)
		abort();
	e->ordinal = ordinal;
	snprintf(e->fp, sizeof e->fp, "%s", fp ? fp : "");
}

static void clear(void)
{
	for (size_t i = 0; i < count; i++) {
		free(entries[i].step);
		free(entries[i].why);
		free(entries[i].host);
	}
	free(entries);
	entries = NULL;
	count = cap = 0;
}

/* sha256 of the redacted plan texts, NUL-separated (absent texts are empty). */
static void fingerprint(const char *prim, const char *summary, const char *detail, const char *target,
                        char out[65])
{
	const char *parts[4] = { prim, summary, detail, target };
	size_t total = 0, lens[4];
	char *clean[4];
	for (int i = 0; i < 4; i++) {
		const char *s = parts[i] ? parts[i] : "";
		clean[i] = redact(s, strlen(s), &lens[i]);
		total += lens[i] + 1;
	}
	char *buf = malloc(total);
	if (!buf)
		abort();
	size_t off = 0;
	for (int i = 0; i < 4; i++) {
		memcpy(buf + off, clean[i], lens[i]);
		off += lens[i];
		buf[off++] = '\0';
		free(clean[i]);
	}
	sha256_hex(buf, off, out);
	free(buf);
}

const char *replay_check(const struct gate_plan *p)
{
	if (!in_step || count == 0)
		return NULL;
	int ordinal = ++asked;
	char fp[65];
	fingerprint(p->primitive, p->summary, p->detail, p->target, fp);
	for (size_t i = 0; i < count; i++) {
		struct entry *e = &entries[i];
		if (strcmp(e->step, current) != 0 || e->ordinal < 0)
			continue;
		/* A fleet's question is withheld host by host (replay_host_ran), unless its step was completed. */
		if (e->ordinal == 0 || (!p->fleet && (e->ordinal == ordinal || strcmp(e->fp, fp) == 0)))
			return e->why;
	}
	return NULL;
}

const char *replay_host_ran(const char *fp, const char *host)
{
	for (size_t i = 0; in_step && i < count; i++) {
		struct entry *e = &entries[i];
		if (e->ordinal < 0 && strcmp(e->step, current) == 0 && strcmp(e->fp, fp) == 0 && strcmp(e->host, host) == 0)
			return e->why;
	}
	return NULL;
}

/* ------------------------------------------------------------------------------------- Lua */
static int replay_completed(lua_State *L)
{
	add(luaL_checkstring(L, 1), 0, NULL, luaL_checkstring(L, 2));
	return 0;
}

static int replay_confirmed(lua_State *L)
{
	const char *step = luaL_checkstring(L, 1);
	lua_Integer n = luaL_checkinteger(L, 2);
	const char *fp = luaL_checkstring(L, 3);
	luaL_argcheck(L, n >= 1 && n <= 100000, 2, "ordinal out of range");
	luaL_argcheck(L, strlen(fp) == 64, 3, "not a sha256 fingerprint");
	add(step, (int)n, fp, luaL_checkstring(L, 4));
	return 0;
}

static int replay_host_done(lua_State *L)
{
	const char *fp = luaL_checkstring(L, 2);
	luaL_argcheck(L, strlen(fp) == 64, 2, "not a sha256 fingerprint");
	add(luaL_checkstring(L, 1), -1, fp, luaL_checkstring(L, 4));
	if (!(entries[count - 1].host = strdup(luaL_checkstring(L, 3))))
		abort();
	return 0;
}

static int replay_lua_host_ran(lua_State *L)
{
	const char *why = replay_host_ran(luaL_checkstring(L, 1), luaL_checkstring(L, 2));
	if (!why)
		return 0;
	lua_pushstring(L, why);
	return 1;
}

static int replay_fingerprint(lua_State *L)
{
	char fp[65];
	fingerprint(luaL_checkstring(L, 1), luaL_optstring(L, 2, ""), luaL_optstring(L, 3, ""),
	            luaL_optstring(L, 4, ""), fp);
	lua_pushstring(L, fp);
	return 1;
}

static int replay_clear(lua_State *L)
{
	(void)L;
	clear();
	return 0;
}

int luaopen_replay(lua_State *L)
{
	static const luaL_Reg fns[] = {
		{ "completed", replay_completed }, { "confirmed", replay_confirmed },
		{ "fingerprint", replay_fingerprint }, { "clear", replay_clear },
		{ "host_done", replay_host_done }, { "host_ran", replay_lua_host_ran }, { NULL, NULL },
	};
	luaL_newlib(L, fns);
	/* A sentinel whose __gc frees the entries when the state closes (no leak at exit). */
	lua_newuserdatauv(L, 1, 0);
	if (luaL_newmetatable(L, REPLAY_MT)) {
		lua_pushcfunction(L, replay_clear);
		lua_setfield(L, -2, "__gc");
	}
	lua_setmetatable(L, -2);
	lua_setfield(L, -2, "_state");
	return 1;
}
