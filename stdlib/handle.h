/*
 * handle.h - the lifecycle that the connection handles of pg and redis share.
 *
 * A handle is closed by the runbook (conn:close(), `<close>`, __gc), discarded by its module after
 * an I/O error or a timeout (broken: calls then fail with kind "closed" and say why), and busy
 * while a call is in flight, so that another task of parallel() cannot use it meanwhile. A close
 * that comes during a call takes effect when the call ends.
 *
 * A module's handle struct begins with its struct handle_state (so that these functions find it in
 * the userdata), which holds the library's connection (PGconn, redisContext) as an opaque pointer;
 * the module's struct handle_type says how to release it.
 */
#ifndef HANDLE_H
#define HANDLE_H

#include <lua.h>
#include <stdbool.h>
#include <stddef.h>

#define HANDLE_TARGET_MAX 300

struct handle_type {
	const char *mt;                   /* its metatable's registry name ("runbook.pg.conn") */
	const char *module;               /* "pg": tostring shows "pg.conn TARGET", messages "pg.close" */
	void (*disconnect)(void *conn);   /* releases the library's connection (PQfinish, redisFree) */
};

struct handle_state {
	const struct handle_type *type;
	void *conn;                       /* the library's connection; NULL once closed or discarded */
	char target[HANDLE_TARGET_MAX];   /* host:port/db, never a password */
	bool closed;                      /* closed by the runbook: using it raises */
	const char *broken;               /* why the module discarded it ("a timeout"); NULL if it did not */
	bool busy;                        /* a call is in flight on it */
};

/* Pushes a new handle of type t for conn, a connection just made to target: a zeroed userdata of
 * size bytes (the module's struct) with nuvalue user values. Returns the module's struct. */
void *handle_push(lua_State *L, const struct handle_type *t, size_t size, int nuvalue, void *conn,
                  const char *target);

/* The handle at idx (the module's struct); raises unless it is a handle of type t that the runbook
 * has not closed. */
void *handle_check_open(lua_State *L, int idx, const struct handle_type *t, const char *fn);

/* Raises when busy; pushes nil, "<fn> <target>: connection was closed after ...", "closed" and
 * returns 3 when the module discarded it; else returns 0. */
int handle_unusable(lua_State *L, const struct handle_state *s, const char *fn);

/* A call starts on the handle at index 1: the op on top of the stack keeps it alive (as its user
 * value 1), and it is busy until handle_call_ended. */
void handle_call_start(lua_State *L, struct handle_state *s);

/* The call has ended: the handle is free again, and its connection is released now if the runbook
 * closed it meanwhile. */
void handle_call_ended(struct handle_state *s);

/* The module has released conn (a timeout, an I/O error): if it was the handle's, the handle is
 * broken, and its later calls fail saying why. */
void handle_mark_broken(struct handle_state *s, const void *conn, const char *why);

/* conn:close() (and __close), __gc and __tostring for the handles of type t: the module's
 * lua_CFunctions call these. */
int handle_close(lua_State *L, const struct handle_type *t);
int handle_gc(lua_State *L, const struct handle_type *t);
int handle_tostring(lua_State *L, const struct handle_type *t);

/* An op on a handle fails: the first failure is the one that explains, so nothing changes when
 * *kind is set already; else *kind = what and cause[0..n) gets the printf-style message.
 * pg_op_fail and redis_op_fail are this on their op. */
void handle_op_fail(const char **kind, char *cause, size_t n, const char *what, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));

#endif
