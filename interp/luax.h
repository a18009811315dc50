/*
 * luax.h - helpers every native module uses to look and fail the same way.
 *
 * Conventions (DESIGN.md §3): expected failures return nil, "<what> <target>: <cause>", kind;
 * mistakes by the runbook's author raise. Options are tables whose unknown keys raise with a
 * suggestion ("unknown option 'timout' (did you mean 'timeout'?)"). Durations are seconds as a
 * number or a string with a unit ("500ms", "2s", "5m", "1h", "7d").
 */
#ifndef LUAX_H
#define LUAX_H

#include <lua.h>
#include <lauxlib.h>
#include <stdbool.h>

#include "gate.h"
#include "sched.h"

/* Raises unless every string key of the table at idx is in allowed (NULL-terminated). */
void luax_check_options(lua_State *L, int idx, const char *fn, const char *const allowed[]);

/* Parses "500ms"/"2s"/"1.5m"/"1h"/"7d"/"30" (seconds). Returns 0 and *seconds, or -1. */
int luax_parse_duration(const char *s, double *seconds);
/* opts[key] as milliseconds (number = seconds, or a duration string); def when absent. Raises on junk. */
msec_t luax_opt_duration(lua_State *L, int idx, const char *key, msec_t def, const char *fn);
const char *luax_opt_string(lua_State *L, int idx, const char *key, const char *def, const char *fn);
lua_Integer luax_opt_integer(lua_State *L, int idx, const char *key, lua_Integer def, const char *fn);
bool luax_opt_bool(lua_State *L, int idx, const char *key, bool def, const char *fn);

/*
 * Creates the metatable NAME of a userdata type, once: the metamethods in meta; __index, when
 * methods is given, a table of methods (more_methods, if not NULL, adds to it: it finds the table
 * on the top of the stack); and __metatable = false, so that a runbook can neither read nor swap it.
 */
void luax_class(lua_State *L, const char *name, const luaL_Reg meta[], const luaL_Reg methods[],
                void (*more_methods)(lua_State *L));

/* Pushes nil, the redacted message, kind; returns 3 (use as `return luax_fail(...)`). */
int luax_fail(lua_State *L, const char *kind, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* An action that the gate did not let run (a: GATE_REFUSED, GATE_DECLINED or GATE_ABORT), WHAT
 * being the printf-style fmt: refused pushes nil, "WHAT: not run: the transcript cannot be
 * written", "refused" and returns 3; declined or aborted calls release(op) (when not NULL), then
 * raises the step's control signal ("skip", "abort") with "WHAT: declined by the operator". The
 * message is cut to fit cap bytes, as the primitive's own buffer cut it. */
int luax_not_run(lua_State *L, enum gate_answer a, size_t cap, void (*release)(void *op), void *op,
                 const char *fmt, ...) __attribute__((format(printf, 6, 7)));

/* Sets t[key] = value on the table at the top of the stack. */
void luax_setint(lua_State *L, const char *key, lua_Integer v);
void luax_setnum(lua_State *L, const char *key, lua_Number v);
void luax_setstr(lua_State *L, const char *key, const char *v);
void luax_setbool(lua_State *L, const char *key, bool v);

/* A "probe" audit record: what ran against what, its deadline, how long it took, how it ended. */
void luax_audit_probe(const char *primitive, const char *target, msec_t deadline_ms,
                      double duration_ms, const char *outcome, const char *summary);
/* The same for a call made through a transport (stdlib/reach.lua): on names the target
 * ("ssh://web1", "inventory:web"), host the one host of it the call went to. */
void luax_audit_probe_on(const char *primitive, const char *target, const char *on, const char *host,
                         msec_t deadline_ms, double duration_ms, const char *outcome, const char *summary);

/* Whether the argument table at idx has `on` other than "local" (a target: stdlib/target.lua). */
bool luax_remote(lua_State *L, int idx);
/* Returns what require(module)[fn](the arguments) returns: a primitive called with `on = target`
 * hands itself to the Lua that reaches the target (stdlib/reach.lua). It may yield inside it. */
int luax_delegate(lua_State *L, const char *module, const char *fn);

/* The edit distance used for "did you mean" suggestions. */
int luax_distance(const char *a, const char *b);

#endif
