/*
 * redis_conn.h - what the parts of the redis module's core share (redis.c, redis_engine.c,
 * redis_commands.c): the common includes and defaults, and the functions that cross between them.
 * Private to the redis module (redis.h is what redis_probes.c sees too); nothing here is exported.
 */
#ifndef REDIS_CONN_H
#define REDIS_CONN_H

#include "redis.h"
#include "gate.h"
#include "host.h"
#include "jsonw.h"
#include "luax.h"
#include "modules.h"
#include "redact.h"

#include <sys/un.h>
#include <ctype.h>
#include <errno.h>
#include <lauxlib.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_TIMEOUT_MS        REDIS_DEFAULT_TIMEOUT_MS
#define DEFAULT_ACTION_TIMEOUT_MS 60000
#define TARGET_MAX                REDIS_TARGET_MAX
#define MAX_CMDS                  REDIS_MAX_CMDS
#define MAX_ARGS                  4096
#define AGAIN                     REDIS_AGAIN

#pragma GCC visibility push(hidden)   /* shared by the parts of redis only: not visible to other objects */

/* redis.c */
int errno_of(const char *errstr);
void free_queue(struct redis_op *op);
void discard(struct redis_op *op, const char *why);
void op_release(void *p);
void push_value(lua_State *L, const redisReply *r, int depth);
void describe_reply(const redisReply *r, char *out, size_t n);

/* redis_commands.c */
int conn_call(lua_State *L);
int conn_action(lua_State *L);

/* redis_engine.c: the machine of every op (redis_op_push). */
extern const struct tasks_machine redis_op_machine;

#pragma GCC visibility pop

#endif
