/*
 * lineedit.h - the REPL's terminal: line editing (libedit), completion, history without secrets,
 * and the action gate's way into the REPL. Exposed to the library's Lua half only, as
 * require "lineedit" (registered in package.preload by host.c, opened from the shared object
 * lineedit.so by stdlib/modules.c, so that only terminal sessions map libedit); runbooks never see it.
 *
 *   lineedit.open { history = PATH, complete = function(before_cursor, word) -> { word, ... } }
 *       -> editor [, warning]      (stdin must be a terminal; one editor at a time)
 *   editor:read(prompt)            -> line | nil, "eof" | nil, "interrupted"
 *   editor:remember(line)          -> true | false, why   (history in memory and in the file)
 *   editor:close()                 also __close and __gc
 *   lineedit.secret_in(line)       -> why | nil: the reason a line must never reach the history
 *   lineedit.history_path()        -> $XDG_STATE_HOME/runbook/history (directory created 0700)
 *   lineedit.transcribe(text)      what the terminal echoed (a typed line), redacted, into the transcript
 *   lineedit.set_gate_repl(fn|nil) fn() -> "back" | "retry" | "skip" | "quit": the gate's "r" answer
 */
#ifndef LINEEDIT_H
#define LINEEDIT_H

#include <lua.h>

int luaopen_lineedit(lua_State *L);

#endif
