/*
 * host.h - the lua_State: libraries, native modules, the embedded Lua half, control signals.
 *
 * host_new() opens the standard libraries for the library's own (trusted) code, registers the
 * native modules (stdlib/modules.c) and the embedded Lua sources in package.preload, and arms
 * Ctrl-C: a press sets a hook on every running Lua thread that raises the "interrupt" control
 * signal, so even `while true do end` stops. Runbooks never see this state's globals: they run
 * in the sandbox built by interp/sandbox.lua.
 *
 * Control signals (interrupt, skip, abort) are error values with the metatable
 * "runbook.control"; the sandbox's pcall rethrows them so a runbook cannot swallow them.
 */
#ifndef HOST_H
#define HOST_H

#include <lua.h>
#include <stdbool.h>

lua_State *host_new(void);   /* NULL: out of memory, or RUNBOOK_MEMORY_LIMIT is not a size (said) */

/* The Lua state's memory limit (default 1 GiB; RUNBOOK_MEMORY_LIMIT, --memory-limit). */
bool   host_memory_exceeded(void);          /* an allocation was refused: the run must end */
size_t host_memory_limit(void);
bool   host_set_memory_limit(size_t bytes); /* false: below what is in use (+16M), or already hit */
size_t host_parse_size(const char *s);      /* "512M", "2G": bytes; 0 when not a size */
void host_close(lua_State *L);

/* The one way C enters Lua: a protected call with a traceback. On error the message (a string,
 * or the control object) is left on the stack and the Lua status returned. */
int host_call(lua_State *L, int nargs, int nresults);
void host_set_debug(bool on);   /* --debug: host_call's errors carry a traceback */

void host_push_control(lua_State *L, const char *kind, const char *message);
int  host_raise_control(lua_State *L, const char *kind, const char *message); /* never returns */
const char *host_control_kind(lua_State *L, int idx);  /* NULL when not a control signal */

/* Coroutines the Ctrl-C hook must reach (pushed on resume, popped on yield or return). */
void host_thread_push(lua_State *co);
void host_thread_pop(void);

int luaopen_core(lua_State *L);   /* interp/core.c: the host services for the Lua half */

#endif
