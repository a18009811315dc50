/*
 * redis_guard.c - what a Redis probe (conn:call) may not run although it writes nothing.
 *
 * Scripts and functions (EVAL, EVAL_RO, EVALSHA, EVALSHA_RO, FCALL, FCALL_RO, FUNCTION ..., SCRIPT
 * ...) are actions: Redis runs a script to its end, so a loop in EVAL_RO keeps the server answering
 * BUSY to every client long after the probe's deadline (SCRIPT KILL is the only way out), and a
 * script reaches whatever redis.call allows it, past the checks below.
 *
 * Commands that Redis files under @dangerous (ACL CAT dangerous: KEYS, FLUSHALL, DEBUG, SHUTDOWN,
 * CONFIG SET, MIGRATE, SORT, CLIENT KILL, ...) are refused too, but for the reads of the allowlist in
 * redis_probes.c (INFO, CONFIG GET, SLOWLOG GET/LEN, CLIENT LIST, LATENCY ..., LASTSAVE, ROLE, MODULE
 * LIST). The server is asked (COMMAND INFO's ACL categories, which cover its version's commands,
 * renamed ones and modules'), and the categories of Redis 7.0 (Debian 12's redis-server, `ACL CAT
 * dangerous`) are a floor for a server that reports none (Redis before 6) or reports less.
 *
 * KEYS walks the whole keyspace in one call that blocks the server; conn:scan (redis_scan.c) is the
 * bounded walk that replaces it.
 */
#include "redis_guard.h"

#include <string.h>
#include <strings.h>

/* Redis 7.0.15's `ACL CAT dangerous`, container subcommands as "name|sub". */
static const char *const dangerous_70[] = {
	"acl|deluser", "acl|dryrun", "acl|getuser", "acl|list", "acl|load", "acl|log", "acl|save", "acl|setuser",
	"acl|users", "bgrewriteaof", "bgsave", "client|kill", "client|list", "client|no-evict", "client|pause",
	"client|unblock", "client|unpause", "cluster|addslots", "cluster|addslotsrange", "cluster|bumpepoch",
	"cluster|count-failure-reports", "cluster|delslots", "cluster|delslotsrange", "cluster|failover",
	"cluster|flushslots", "cluster|forget", "cluster|meet", "cluster|replicas", "cluster|replicate",
	"cluster|reset", "cluster|saveconfig", "cluster|set-config-epoch", "cluster|setslot", "cluster|slaves",
	"config|get", "config|resetstat", "config|rewrite", "config|set", "debug", "failover", "flushall", "flushdb",
	"info", "keys", "lastsave", "latency|doctor", "latency|graph", "latency|histogram", "latency|history",
	"latency|latest", "latency|reset", "migrate", "module|list", "module|load", "module|loadex", "module|unload",
	"monitor", "pfdebug", "pfselftest", "psync", "replconf", "replicaof", "restore", "restore-asking", "role",
	"save", "shutdown", "slaveof", "slowlog|get", "slowlog|len", "slowlog|reset", "sort", "sort_ro", "swapdb",
	"sync", NULL,
};

static bool listed(const char *s, const char *const *list)
{
	for (; *list; list++)
		if (strcmp(s, *list) == 0)
			return true;
	return false;
}

const char *redis_guard_refusal(const struct redis_args *a)
{
	static const char *const scripts[] = { "eval", "eval_ro", "evalsha", "evalsha_ro", "fcall", "fcall_ro",
	                                       "function", "script", NULL };
	if (listed(a->name, scripts))
		return "runs or manages a script, which is an action: a script runs to its end whatever the probe's "
		       "deadline (a loop leaves Redis answering BUSY to every client) and can reach any command";
	if (strcmp(a->name, "keys") == 0)
		return "walks the whole keyspace in one call that blocks the server (use conn:scan { match = ..., "
		       "limit = ... }, a bounded SCAN walk)";
	return NULL;
}

const char *redis_guard_verdict(const redisReply *info)
{
	if (!info || info->type != REDIS_REPLY_ARRAY || info->elements < 1 || !info->element[0]->str)
		return NULL;
	char name[130];
	size_t n = strlen(info->element[0]->str);
	if (n >= sizeof name)
		return NULL;
	for (size_t i = 0; i <= n; i++)
		name[i] = (char)(info->element[0]->str[i] >= 'A' && info->element[0]->str[i] <= 'Z'
		                 ? info->element[0]->str[i] + 32 : info->element[0]->str[i]);
	if (listed(name, dangerous_70))
		return "is filed under @dangerous";
	const redisReply *cats = info->elements > 6 ? info->element[6] : NULL;
	if (cats && cats->type == REDIS_REPLY_ARRAY)
		for (size_t i = 0; i < cats->elements; i++)
			if (cats->element[i]->str && strcasecmp(cats->element[i]->str, "@dangerous") == 0)
				return "is filed under @dangerous";
	return NULL;
}
