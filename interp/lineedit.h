/*
 * lineedit.h - the REPL's terminal: line editing (libedit), completion, history without secrets.
 * Exposed to the library's Lua half only, as
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
 */
#ifndef LINEEDIT_H
#define LINEEDIT_H

#include <lua.h>

int luaopen_lineedit(lua_State *L);

#endif
