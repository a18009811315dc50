/*
 * redis_probes.c - what makes conn:call a probe (the policy applied to what COMMAND INFO says of a
 * command), INFO parsed into typed fields, and the ready-made probes of the redis module: conn:info,
 * memory, clients, replication, slowlog, latency, keyspace, llen (see redis.c for the API). Each probe
 * is one batch of fixed read-only commands (INFO <section>, SLOWLOG GET/LEN, PING, LLEN) on the
 * connection, under the call's one deadline: they need no COMMAND INFO.
 */
#include "luax.h"
#include "redis.h"
#include "redis_guard.h"

#include <ctype.h>
#include <errno.h>
#include <lauxlib.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- what a probe may run */

static bool in_list(const char *s, const char *const list[])
{
	for (const char *const *p = list; *p; p++)
		if (strcmp(s, *p) == 0)
			return true;
	return false;
}

/* Refusals that need no server: what the command would do to the connection (both forms), or for a
 * probe, writes the server does not flag. Returns the reason, NULL when the command may go on. */
const char *redis_local_refusal(const struct redis_args *a, bool action, bool *anywhere)
{
	static const char *const streams[] = { "subscribe", "psubscribe", "ssubscribe", "unsubscribe", "punsubscribe",
	                                       "sunsubscribe", "monitor", "sync", "psync", NULL };
	static const char *const session[] = { "hello", "reset", "quit", NULL };
	static const char *const transactions[] = { "multi", "exec", "discard", "watch", "unwatch", NULL };
	*anywhere = true;
	if (in_list(a->name, streams))
		return "turns the connection into a stream of messages, which this module does not read";
	if (strcmp(a->name, "select") == 0)
		return "would change the database of this connection (put the database in the URL: redis://host:port/N)";
	if (in_list(a->name, session) || (strcmp(a->name, "client") == 0 && (strcmp(a->sub, "reply") == 0
	                                                                   || strcmp(a->sub, "tracking") == 0)))
		return "would change this connection's protocol or state";
	*anywhere = false;
	if (action)
		return NULL;
	const char *guard = redis_guard_refusal(a);   /* scripts, functions, KEYS (redis_guard.c) */
	if (guard)
		return guard;
	if (in_list(a->name, transactions))
		return "is a transaction command";
	if (strcmp(a->name, "auth") == 0)
		return "changes the connection's login";
	return NULL;
}

/* The read-only admin and pubsub commands a probe may run. */
static bool allowlisted(const char *key)
{
	static const char *const reads[] = {
		"config|get", "config|help", "slowlog|get", "slowlog|len", "slowlog|help", "client|list", "client|info",
		"client|getname", "client|id", "latency|latest", "latency|history", "latency|doctor", "latency|graph",
		"latency|histogram", "latency|help", "memory|stats", "memory|usage", "memory|doctor", "memory|malloc-stats",
		"memory|help", "info", "lastsave", "pubsub|channels", "pubsub|numsub", "pubsub|numpat",
		"pubsub|shardchannels", "pubsub|shardnumsub", "pubsub|help", "role", "module|list", NULL,
	};
	return in_list(key, reads);
}

static bool has_flag(const redisReply *info, const char *flag)
{
	if (!info || info->type != REDIS_REPLY_ARRAY || info->elements < 3 || info->element[2]->type != REDIS_REPLY_ARRAY)
		return false;
	const redisReply *flags = info->element[2];
	for (size_t i = 0; i < flags->elements; i++)
		if (flags->element[i]->str && strcasecmp(flags->element[i]->str, flag) == 0)
			return true;
	return false;
}

/* What a command's COMMAND INFO entry says of it, before the allowlist: "ok" or a reason. */
static const char *flags_verdict(const redisReply *info)
{
	if (has_flag(info, "write") || has_flag(info, "may_replicate"))
		return "can write";
	if (has_flag(info, "admin"))
		return "is an admin command";
	if (has_flag(info, "pubsub"))
		return "is a publish/subscribe command";
	const char *guard = redis_guard_verdict(info);   /* @dangerous (redis_guard.c) */
	return guard ? guard : "ok";
}

/* The verdict cached for the command (cache table on top), or NULL when the server must be asked.
 * *shown_sub: whether the subcommand is part of the command's name in messages. */
const char *redis_cached_verdict(lua_State *L, const struct redis_args *a, bool *shown_sub)
{
	char key[130];
	const char *v = NULL;
	*shown_sub = false;
	if (a->sub[0]) {
		snprintf(key, sizeof key, "%s|%s", a->name, a->sub);
		if (lua_getfield(L, -1, key) == LUA_TSTRING) {
			v = lua_tostring(L, -1);   /* interned in the cache table, which stays referenced */
			*shown_sub = true;
		}
		lua_pop(L, 1);
		if (v)
			return v;
	}
	if (lua_getfield(L, -1, a->name) == LUA_TSTRING)
		v = lua_tostring(L, -1);
	lua_pop(L, 1);
	if (v && strcmp(v, "container") == 0)
		return a->sub[0] ? NULL : "ok";   /* no subcommand: the server will say what is missing */
	if (v && a->sub[0] && strcmp(v, "is an admin command") == 0)
		*shown_sub = true;                /* a server without subcommand entries (Redis < 7) */
	return v;
}

/* Applies the allowlist: false, with the message for the raise, when the command may not run as a probe. */
bool redis_allowed(char *msg, size_t n, const char *fn, const char *target, const struct redis_args *a, const char *verdict,
                    bool shown_sub)
{
	if (strcmp(verdict, "ok") == 0)
		return true;
	char key[130];
	snprintf(key, sizeof key, "%s|%s", a->name, a->sub);
	bool reading = strcmp(verdict, "can write") != 0 && (allowlisted(a->name) || (a->sub[0] && allowlisted(key)));
	if (reading)
		return true;
	char shown[140];
	redis_upper_words(shown, sizeof shown, a->name, shown_sub ? a->sub : "");
	snprintf(msg, n, "%s %s: %s %s; use conn:action(...) to run it through the confirmation gate", fn, target, shown,
	         verdict);
	return false;
}

/* Files what COMMAND INFO said in the cache (on top) and returns the verdict for the call. */
const char *redis_learn(lua_State *L, const struct redis_args *a, const redisReply *arr, bool *shown_sub)
{
	const redisReply *ci = arr->elements > 0 && arr->element[0]->type == REDIS_REPLY_ARRAY ? arr->element[0] : NULL;
	const redisReply *si = a->sub[0] && arr->elements > 1 && arr->element[1]->type == REDIS_REPLY_ARRAY
	                       ? arr->element[1] : NULL;
	char key[130];
	snprintf(key, sizeof key, "%s|%s", a->name, a->sub);
	*shown_sub = false;
	if (!ci)
		return "ok";   /* unknown to the server: it will refuse it itself */
	const redisReply *subs = ci->elements >= 10 ? ci->element[9] : NULL;
	if (subs && subs->type == REDIS_REPLY_ARRAY && subs->elements > 0) {
		lua_pushliteral(L, "container");
		lua_setfield(L, -2, a->name);
		if (!a->sub[0])
			return "ok";
		const char *v = si ? flags_verdict(si) : "ok";
		lua_pushstring(L, v);
		lua_setfield(L, -2, key);
		*shown_sub = true;
		return v;
	}
	const char *v = flags_verdict(ci);
	lua_pushstring(L, v);
	lua_setfield(L, -2, a->name);
	*shown_sub = a->sub[0] && strcmp(v, "is an admin command") == 0;
	return v;
}

/* ----------------------------------------------------------------------------- INFO */

/* Whether s[0..n) is a decimal number; *integer tells whether it has no fraction or exponent. */
static bool is_number(const char *s, size_t n, bool *integer)
{
	size_t i = 0, digits = 0;
	*integer = true;
	if (i < n && (s[i] == '-' || s[i] == '+'))
		i++;
	for (; i < n && isdigit((unsigned char)s[i]); i++)
		digits++;
	if (i < n && s[i] == '.') {
		*integer = false;
		for (i++; i < n && isdigit((unsigned char)s[i]); i++)
			digits++;
	}
	if (digits && i < n && (s[i] == 'e' || s[i] == 'E')) {
		*integer = false;
		i++;
		if (i < n && (s[i] == '-' || s[i] == '+'))
			i++;
		size_t e = 0;
		for (; i < n && isdigit((unsigned char)s[i]); i++)
			e++;
		if (!e)
			return false;
	}
	return digits > 0 && i == n;
}

static void push_scalar(lua_State *L, const char *s, size_t n)
{
	bool integer;
	if (n < 64 && is_number(s, n, &integer)) {
		char tmp[64];
		memcpy(tmp, s, n);
		tmp[n] = 0;
		if (integer) {
			errno = 0;
			long long v = strtoll(tmp, NULL, 10);
			if (errno == 0) {
				lua_pushinteger(L, (lua_Integer)v);
				return;
			}
		}
		lua_pushnumber(L, strtod(tmp, NULL));
		return;
	}
	lua_pushlstring(L, s, n);
}

/* "keys=1,expires=0,avg_ttl=0": every comma-separated part is name=value. */
static bool is_pairs(const char *s, size_t n)
{
	if (!memchr(s, '=', n))
		return false;
	const char *p = s, *end = s + n;
	while (p < end) {
		const char *comma = memchr(p, ',', (size_t)(end - p));
		const char *e = comma ? comma : end;
		const char *eq = memchr(p, '=', (size_t)(e - p));
		if (!eq || eq == p)
			return false;
		for (const char *k = p; k < eq; k++)
			if (!(isalnum((unsigned char)*k) || *k == '_' || *k == '-' || *k == '.'))
				return false;
		p = comma ? comma + 1 : end;
	}
	return true;
}

static void push_info_value(lua_State *L, const char *s, size_t n)
{
	if (!is_pairs(s, n)) {
		push_scalar(L, s, n);
		return;
	}
	lua_newtable(L);
	const char *p = s, *end = s + n;
	while (p < end) {
		const char *comma = memchr(p, ',', (size_t)(end - p));
		const char *e = comma ? comma : end;
		const char *eq = memchr(p, '=', (size_t)(e - p));
		lua_pushlstring(L, p, (size_t)(eq - p));
		push_scalar(L, eq + 1, (size_t)(e - eq - 1));
		lua_settable(L, -3);
		p = comma ? comma + 1 : end;
	}
}

/* Pushes INFO's text as { section = { field = value } }: section names lowercased, numbers as
 * numbers, "a=1,b=2" values as tables. */
static void push_info(lua_State *L, const char *text, size_t len)
{
	lua_newtable(L);
	bool have_section = false;
	const char *p = text, *end = text + len;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *e = nl ? nl : end;
		const char *le = e;
		if (le > p && le[-1] == '\r')
			le--;
		if (le > p && *p == '#') {
			const char *s = p + 1;
			while (s < le && *s == ' ')
				s++;
			char name[64];
			redis_lower(name, sizeof name, s, (size_t)(le - s));
			if (have_section)
				lua_pop(L, 1);
			if (lua_getfield(L, -1, name) != LUA_TTABLE) {
				lua_pop(L, 1);
				lua_newtable(L);
				lua_pushvalue(L, -1);
				lua_setfield(L, -3, name);
			}
			have_section = true;
		} else if (le > p) {
			const char *colon = memchr(p, ':', (size_t)(le - p));
			if (colon && colon > p) {
				if (!have_section) {
					lua_newtable(L);
					lua_pushvalue(L, -1);
					lua_setfield(L, -3, "default");
					have_section = true;
				}
				lua_pushlstring(L, p, (size_t)(colon - p));
				push_info_value(L, colon + 1, (size_t)(le - colon - 1));
				lua_settable(L, -3);
			}
		}
		p = nl ? nl + 1 : end;
	}
	if (have_section)
		lua_pop(L, 1);
}

/* The value of `key` in INFO text, copied to out; NULL when absent. */
const char *redis_info_str(const redisReply *r, const char *key, char *out, size_t n)
{
	if (!r || r->type != REDIS_REPLY_STRING)
		return NULL;
	size_t kl = strlen(key);
	const char *p = r->str, *end = r->str + r->len;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *e = nl ? nl : end;
		if ((size_t)(e - p) > kl && memcmp(p, key, kl) == 0 && p[kl] == ':') {
			const char *v = p + kl + 1, *ve = e;
			if (ve > v && ve[-1] == '\r')
				ve--;
			snprintf(out, n, "%.*s", (int)(ve - v), v);
			return out;
		}
		p = nl ? nl + 1 : end;
	}
	return NULL;
}

static bool info_num(const redisReply *r, const char *key, double *v)
{
	char buf[64];
	bool integer;
	if (!redis_info_str(r, key, buf, sizeof buf) || !is_number(buf, strlen(buf), &integer))
		return false;
	*v = strtod(buf, NULL);
	return true;
}

/* t[field] = INFO's key as an integer (or a number when it has a fraction); nothing when absent. */
static void set_info_num(lua_State *L, const redisReply *r, const char *field, const char *key)
{
	char buf[64];
	if (redis_info_str(r, key, buf, sizeof buf)) {
		bool integer;
		if (is_number(buf, strlen(buf), &integer)) {
			push_scalar(L, buf, strlen(buf));
			lua_setfield(L, -2, field);
		}
	}
}

static void set_info_str(lua_State *L, const redisReply *r, const char *field, const char *key)
{
	char buf[256];
	if (redis_info_str(r, key, buf, sizeof buf))
		luax_setstr(L, field, buf);
}

/* -------------------------------------------------------------------------- the probes */

static const char *const probe_options[] = { "timeout", NULL };

/* Common start of a probe on the handle at 1 with options at optidx: the op, or NULL when the
 * handle is unusable (*ret values pushed). */
static struct redis_op *probe_start(lua_State *L, const char *fn, int optidx, const char *const opts[], int *ret)
{
	struct redis_handle *h = redis_check_handle(L, fn);
	luax_check_options(L, optidx, fn, opts);
	msec_t timeout = luax_opt_duration(L, optidx, "timeout", h->timeout_ms, fn);
	*ret = redis_handle_unusable(L, h, fn);
	return *ret ? NULL : redis_op_push(L, fn, h, timeout);
}

static int run_probe(lua_State *L, struct redis_op *op, redis_done_fn done)
{
	redis_batch(op, 0);
	return redis_op_run(L, op, done);
}

/* The whole of a probe that reads INFO sections and nothing else (options at 2): INFO <section>,
 * and INFO <more> unless NULL, in one batch; done finds their replies in op->rep[0] and [1]. */
static int info_probe(lua_State *L, const char *fn, redis_done_fn done, const char *section, const char *more)
{
	int n;
	struct redis_op *op = probe_start(L, fn, 2, probe_options, &n);
	if (!op)
		return n;
	redis_queue(op, "INFO", section, NULL);
	if (more)
		redis_queue(op, "INFO", more, NULL);
	return run_probe(L, op, done);
}

/* A probe's integer option at 2 that must lie in [lo, hi] (raises otherwise), read after checking
 * the options' names so that a misspelt one is reported first. */
static lua_Integer ranged_option(lua_State *L, const char *fn, const char *const opts[], const char *key, lua_Integer def,
                                 lua_Integer lo, lua_Integer hi)
{
	luax_check_options(L, 2, fn, opts);
	lua_Integer v = luax_opt_integer(L, 2, key, def, fn);
	if (v < lo || v > hi)
		luaL_error(L, "%s: option '%s' must be %I-%I", fn, key, lo, hi);
	return v;
}

/* Fails a probe whose reply is not of the type its command always answers with (something that
 * speaks RESP but is not Redis): a protocol error, audited. */
static int unexpected_reply(lua_State *L, struct redis_op *op, const char *command, const char *expected)
{
	redis_op_fail(op, "protocol", "%s answered with something other than %s", command, expected);
	redis_audit(op, NULL);
	return redis_fail_push(L, op);
}

static int info_done(lua_State *L, struct redis_op *op)
{
	int n = redis_probe_failed(L, op);
	if (n)
		return n;
	const redisReply *r = op->rep[0];
	char summary[100];
	snprintf(summary, sizeof summary, "INFO%s%s: %zu bytes", op->name[0] ? " " : "", op->name, r->len);
	redis_audit(op, summary);
	push_info(L, r->str ? r->str : "", r->len);
	return 1;
}

static int conn_info(lua_State *L)
{
	int optidx = lua_istable(L, 2) ? 2 : 3;
	const char *section = optidx == 3 ? luaL_optstring(L, 2, NULL) : NULL;
	int n;
	struct redis_op *op = probe_start(L, "redis.info", optidx, probe_options, &n);
	if (!op)
		return n;
	if (section) {
		redis_lower(op->name, sizeof op->name, section, strlen(section));
		redis_queue(op, "INFO", section, NULL);
	} else {
		redis_queue(op, "INFO", NULL, NULL);
	}
	return run_probe(L, op, info_done);
}

static int memory_done(lua_State *L, struct redis_op *op)
{
	int n = redis_probe_failed(L, op);
	if (n)
		return n;
	const redisReply *mem = op->rep[0], *stats = op->rep[1];
	double used = 0, max = 0;
	info_num(mem, "used_memory", &used);
	info_num(mem, "maxmemory", &max);
	char policy[64] = "", summary[200];
	redis_info_str(mem, "maxmemory_policy", policy, sizeof policy);
	if (max > 0)
		snprintf(summary, sizeof summary, "used %.0f of maxmemory %.0f bytes (%.1f%%), policy %s", used, max,
		         used * 100 / max, policy);
	else
		snprintf(summary, sizeof summary, "used %.0f bytes, no maxmemory", used);
	redis_audit(op, summary);
	lua_createtable(L, 0, 9);
	set_info_num(L, mem, "used_memory", "used_memory");
	set_info_num(L, mem, "used_memory_rss", "used_memory_rss");
	set_info_num(L, mem, "used_memory_peak", "used_memory_peak");
	set_info_num(L, mem, "maxmemory", "maxmemory");
	if (max > 0)
		luax_setnum(L, "used_pct", used * 100 / max);
	set_info_num(L, mem, "fragmentation_ratio", "mem_fragmentation_ratio");
	set_info_num(L, stats, "evicted_keys", "evicted_keys");
	if (policy[0])
		luax_setstr(L, "maxmemory_policy", policy);
	return 1;
}

static int conn_memory(lua_State *L) { return info_probe(L, "redis.memory", memory_done, "memory", "stats"); }

static int clients_done(lua_State *L, struct redis_op *op)
{
	int n = redis_probe_failed(L, op);
	if (n)
		return n;
	const redisReply *cl = op->rep[0], *stats = op->rep[1];
	double connected = 0, max = 0, blocked = 0;
	info_num(cl, "connected_clients", &connected);
	info_num(cl, "maxclients", &max);
	info_num(cl, "blocked_clients", &blocked);
	char summary[160];
	snprintf(summary, sizeof summary, "%.0f clients connected of %.0f, %.0f blocked", connected, max, blocked);
	redis_audit(op, summary);
	lua_createtable(L, 0, 5);
	set_info_num(L, cl, "connected", "connected_clients");
	set_info_num(L, cl, "blocked", "blocked_clients");
	set_info_num(L, cl, "maxclients", "maxclients");
	set_info_num(L, stats, "rejected", "rejected_connections");
	if (max > 0)
		luax_setnum(L, "used_pct", connected * 100 / max);
	return 1;
}

static int conn_clients(lua_State *L) { return info_probe(L, "redis.clients", clients_done, "clients", "stats"); }

static int replication_done(lua_State *L, struct redis_op *op)
{
	int n = redis_probe_failed(L, op);
	if (n)
		return n;
	const redisReply *r = op->rep[0];
	char role[32] = "?", link[32] = "", summary[200];
	redis_info_str(r, "role", role, sizeof role);
	redis_info_str(r, "master_link_status", link, sizeof link);
	double offset = 0, replicas = 0;
	info_num(r, "master_repl_offset", &offset);
	info_num(r, "connected_slaves", &replicas);
	if (strcmp(role, "master") == 0)
		snprintf(summary, sizeof summary, "master with %.0f connected replicas", replicas);
	else
		snprintf(summary, sizeof summary, "%s, link to its master %s", role, link[0] ? link : "?");
	redis_audit(op, summary);
	lua_createtable(L, 0, 10);
	luax_setstr(L, "role", role);
	set_info_num(L, r, "connected_replicas", "connected_slaves");
	set_info_num(L, r, "master_repl_offset", "master_repl_offset");
	lua_newtable(L);
	for (int i = 0, k = 0; i < 1000; i++) {
		char field[24], buf[512];
		snprintf(field, sizeof field, "slave%d", i);
		if (!redis_info_str(r, field, buf, sizeof buf))
			break;
		push_info_value(L, buf, strlen(buf));
		if (!lua_istable(L, -1)) {
			lua_pop(L, 1);
			continue;
		}
		if (lua_getfield(L, -1, "offset") == LUA_TNUMBER) {
			lua_Integer lag = (lua_Integer)offset - lua_tointeger(L, -1);
			lua_pop(L, 1);
			luax_setint(L, "lag_bytes", lag > 0 ? lag : 0);
		} else {
			lua_pop(L, 1);
		}
		lua_rawseti(L, -2, ++k);
	}
	lua_setfield(L, -2, "replicas");
	if (strcmp(role, "master") != 0) {
		set_info_str(L, r, "master_host", "master_host");
		set_info_num(L, r, "master_port", "master_port");
		set_info_str(L, r, "master_link_status", "master_link_status");
		luax_setbool(L, "master_link_up", strcmp(link, "up") == 0);
		set_info_num(L, r, "master_last_io_seconds", "master_last_io_seconds_ago");
		set_info_num(L, r, "master_link_down_seconds", "master_link_down_since_seconds");
		set_info_num(L, r, "repl_offset", "slave_repl_offset");
		char sync[8];
		if (redis_info_str(r, "master_sync_in_progress", sync, sizeof sync))
			luax_setbool(L, "master_sync_in_progress", strcmp(sync, "1") == 0);
	}
	return 1;
}

static int conn_replication(lua_State *L) { return info_probe(L, "redis.replication", replication_done, "replication", NULL); }

static const char *const slowlog_options[] = { "timeout", "limit", NULL };

static int slowlog_done(lua_State *L, struct redis_op *op)
{
	int n = redis_probe_failed(L, op);
	if (n)
		return n;
	const redisReply *r = op->rep[0], *len = op->rep[1];
	if (r->type != REDIS_REPLY_ARRAY)
		return unexpected_reply(L, op, "SLOWLOG GET", "an array");
	char summary[120];
	snprintf(summary, sizeof summary, "%zu entries (of %lld)", r->elements,
	         len->type == REDIS_REPLY_INTEGER ? len->integer : -1LL);
	redis_audit(op, summary);
	lua_createtable(L, (int)r->elements, 1);
	for (size_t i = 0; i < r->elements; i++) {
		const redisReply *e = r->element[i];
		if (e->type != REDIS_REPLY_ARRAY || e->elements < 4)
			continue;
		lua_createtable(L, 0, 6);
		if (e->element[0]->type == REDIS_REPLY_INTEGER)
			luax_setint(L, "id", (lua_Integer)e->element[0]->integer);
		if (e->element[1]->type == REDIS_REPLY_INTEGER)
			luax_setint(L, "time", (lua_Integer)e->element[1]->integer);
		if (e->element[2]->type == REDIS_REPLY_INTEGER)
			luax_setint(L, "duration_us", (lua_Integer)e->element[2]->integer);
		const redisReply *words = e->element[3];
		lua_createtable(L, words->type == REDIS_REPLY_ARRAY ? (int)words->elements : 0, 0);
		for (size_t j = 0; words->type == REDIS_REPLY_ARRAY && j < words->elements; j++) {
			if (!words->element[j]->str)
				continue;
			lua_pushlstring(L, words->element[j]->str, words->element[j]->len);
			lua_rawseti(L, -2, (lua_Integer)j + 1);
		}
		lua_setfield(L, -2, "command");
		if (e->elements >= 6 && e->element[4]->str)
			luax_setstr(L, "client", e->element[4]->str);
		if (e->elements >= 6 && e->element[5]->str)
			luax_setstr(L, "client_name", e->element[5]->str);
		lua_rawseti(L, -2, (lua_Integer)i + 1);
	}
	if (len->type == REDIS_REPLY_INTEGER)
		luax_setint(L, "total", (lua_Integer)len->integer);
	return 1;
}

static int conn_slowlog(lua_State *L)
{
	lua_Integer limit = ranged_option(L, "redis.slowlog", slowlog_options, "limit", 10, 0, 100000);
	int n;
	struct redis_op *op = probe_start(L, "redis.slowlog", 2, slowlog_options, &n);
	if (!op)
		return n;
	char num[32];
	snprintf(num, sizeof num, "%lld", (long long)limit);
	redis_queue(op, "SLOWLOG", "GET", num);
	redis_queue(op, "SLOWLOG", "LEN", NULL);
	return run_probe(L, op, slowlog_done);
}

static const char *const latency_options[] = { "timeout", "samples", NULL };

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

/* One PING at a time, each timed from the moment it is written to its reply. */
static int latency_done(lua_State *L, struct redis_op *op)
{
	int n = redis_probe_failed(L, op);
	if (n)
		return n;
	op->samples[op->nsamples++] = sched_now_precise() - op->sent_at;
	if (op->nsamples < op->wanted) {
		redis_queue(op, "PING", NULL, NULL);
		redis_batch(op, 0);
		return REDIS_AGAIN;
	}
	double sum = 0;
	for (int i = 0; i < op->nsamples; i++)
		sum += op->samples[i];
	qsort(op->samples, (size_t)op->nsamples, sizeof *op->samples, cmp_double);
	int p95 = (int)ceil(0.95 * op->nsamples) - 1;
	double avg = sum / op->nsamples;
	char summary[160];
	snprintf(summary, sizeof summary, "%d PINGs: min %.3f, avg %.3f, p95 %.3f, max %.3f ms", op->nsamples,
	         op->samples[0], avg, op->samples[p95 < 0 ? 0 : p95], op->samples[op->nsamples - 1]);
	redis_audit(op, summary);
	lua_createtable(L, 0, 5);
	luax_setint(L, "samples", op->nsamples);
	luax_setnum(L, "min", op->samples[0]);
	luax_setnum(L, "avg", avg);
	luax_setnum(L, "max", op->samples[op->nsamples - 1]);
	luax_setnum(L, "p95", op->samples[p95 < 0 ? 0 : p95]);
	return 1;
}

static int conn_latency(lua_State *L)
{
	lua_Integer samples = ranged_option(L, "redis.latency", latency_options, "samples", 20, 1, 10000);
	int n;
	struct redis_op *op = probe_start(L, "redis.latency", 2, latency_options, &n);
	if (!op)
		return n;
	op->samples = calloc((size_t)samples, sizeof *op->samples);
	if (!op->samples)
		abort();
	op->wanted = (int)samples;
	redis_queue(op, "PING", NULL, NULL);
	return run_probe(L, op, latency_done);
}

static int keyspace_done(lua_State *L, struct redis_op *op)
{
	int n = redis_probe_failed(L, op);
	if (n)
		return n;
	const redisReply *r = op->rep[0];
	lua_newtable(L);
	long long keys = 0, expires = 0;
	int k = 0;
	const char *p = r->str ? r->str : "", *end = p + r->len;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *e = nl ? nl : end;
		if (e > p && e[-1] == '\r')
			e--;
		const char *colon = memchr(p, ':', (size_t)(e - p));
		if (e - p > 3 && strncmp(p, "db", 2) == 0 && colon && isdigit((unsigned char)p[2])) {
			push_info_value(L, colon + 1, (size_t)(e - colon - 1));
			if (lua_istable(L, -1)) {
				luax_setint(L, "db", strtol(p + 2, NULL, 10));
				if (lua_getfield(L, -1, "keys") == LUA_TNUMBER)
					keys += lua_tointeger(L, -1);
				if (lua_getfield(L, -2, "expires") == LUA_TNUMBER)
					expires += lua_tointeger(L, -1);
				lua_pop(L, 2);
				lua_rawseti(L, -2, ++k);
			} else {
				lua_pop(L, 1);
			}
		}
		p = nl ? nl + 1 : end;
	}
	luax_setint(L, "keys", keys);
	luax_setint(L, "expires", expires);
	char summary[120];
	snprintf(summary, sizeof summary, "%lld keys (%lld with a TTL) in %d databases", keys, expires, k);
	redis_audit(op, summary);
	return 1;
}

static int conn_keyspace(lua_State *L) { return info_probe(L, "redis.keyspace", keyspace_done, "keyspace", NULL); }

static int llen_done(lua_State *L, struct redis_op *op)
{
	int n = redis_probe_failed(L, op);
	if (n)
		return n;
	const redisReply *r = op->rep[0];
	if (r->type != REDIS_REPLY_INTEGER)
		return unexpected_reply(L, op, "LLEN", "an integer");
	char summary[120];
	snprintf(summary, sizeof summary, "LLEN: %lld", r->integer);
	redis_audit(op, summary);
	lua_pushinteger(L, (lua_Integer)r->integer);
	return 1;
}

static int conn_llen(lua_State *L)
{
	size_t len;
	const char *key = luaL_checklstring(L, 2, &len);
	int n;
	struct redis_op *op = probe_start(L, "redis.llen", 3, probe_options, &n);
	if (!op)
		return n;
	const char *argv[2] = { "LLEN", key };
	size_t lens[2] = { 4, len };
	redis_queue_argv(op, 2, argv, lens);
	return run_probe(L, op, llen_done);
}

void redis_probes_register(lua_State *L)
{
	static const luaL_Reg methods[] = {
		{ "info", conn_info }, { "memory", conn_memory }, { "clients", conn_clients },
		{ "replication", conn_replication }, { "slowlog", conn_slowlog }, { "latency", conn_latency },
		{ "keyspace", conn_keyspace }, { "llen", conn_llen }, { NULL, NULL },
	};
	luaL_setfuncs(L, methods, 0);
	redis_scan_register(L);   /* conn:scan (redis_scan.c) */
}
