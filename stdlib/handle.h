/*
 * handle.h - the lifecycle that the connection handles of pg and redis share.
 *
 * A handle is closed by the runbook (conn:close(), `<close>`, __gc), discarded by its module after
 * an I/O error or a timeout (broken: calls then fail with kind "closed" and say why), and busy
 * while a call is in flight, so that another task of parallel() cannot use it meanwhile. A close
 * that comes during a call takes effect when the call ends. The library's connection itself
 * (PGconn, redisContext) stays in the module's handle; these functions are told whether it is live.
 */
#ifndef HANDLE_H
#define HANDLE_H

#include <lua.h>
#include <stdbool.h>

struct handle_state {
	bool closed;          /* closed by the runbook: using it raises */
	const char *broken;   /* why the module discarded it ("a timeout"); NULL if it did not */
	bool busy;            /* a call is in flight on it */
};

/* Raises unless s (NULL: not a handle at all) is a handle the runbook has not closed. */
void handle_check_open(lua_State *L, const struct handle_state *s, const char *fn, const char *target);

/* Raises when busy; pushes nil, "... closed after ...", "closed" and returns 3 when the module
 * discarded it (!live); else returns 0. */
int handle_unusable(lua_State *L, const struct handle_state *s, bool live, const char *fn, const char *target);

/* The runbook closes it: true when the library's connection is to be released now (it is live and
 * no call is in flight; otherwise handle_call_ended releases it). */
bool handle_mark_closed(struct handle_state *s, bool live);

/* A call on it has ended: true when the library's connection is to be released (closed meanwhile). */
bool handle_call_ended(struct handle_state *s, bool live);

/* Pushes "TYPE TARGET", with "(closed)" or "(closed after WHY)" as it is. */
void handle_push_name(lua_State *L, const char *type, const struct handle_state *s, bool live, const char *target);

#endif
