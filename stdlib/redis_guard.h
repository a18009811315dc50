/*
 * redis_guard.h - what a Redis probe may not run, beyond writes (redis_guard.c); and conn:scan, the
 * bounded walk that replaces KEYS (redis_scan.c). Internal to the redis module.
 */
#ifndef REDIS_GUARD_H
#define REDIS_GUARD_H

#include "redis.h"

#pragma GCC visibility push(hidden)   /* shared by the parts of redis only: not visible to other objects */

/* A probe's refusal that needs no server: scripts and functions (actions), KEYS (conn:scan). The
 * reason, or NULL. */
const char *redis_guard_refusal(const struct redis_args *a);

/* What COMMAND INFO's entry says beyond its flags: "is filed under @dangerous" when the server files
 * the command under @dangerous, or (a server that reports no ACL categories) Redis 7.0 does; else NULL. */
const char *redis_guard_verdict(const redisReply *info);

/* Adds conn:scan to the table of methods on top. */
void redis_scan_register(lua_State *L);

#pragma GCC visibility pop

#endif
