/*
 * modules.h - the native modules a runbook may require. One file per module under stdlib/;
 * file name = require name = luaopen_<name>. Adding a module is one line in modules.c (and, for
 * one that links a large library, a line in the Makefile's MOD_SRC: it becomes a shared object).
 */
#ifndef MODULES_H
#define MODULES_H

#include <lauxlib.h>
#include <stdbool.h>

extern const luaL_Reg runbook_modules[];

int luaopen_sh(lua_State *L);
int luaopen_sh_transport(lua_State *L);
int luaopen_sys_transport(lua_State *L);  /* not for runbooks: stdlib/reach.lua's */   /* not for runbooks: stdlib/reach.lua's */
int luaopen_sys(lua_State *L);
int luaopen_tcp(lua_State *L);
int luaopen_http(lua_State *L);
int luaopen_pg(lua_State *L);
int luaopen_redis(lua_State *L);

/* require "lineedit" (the library's Lua half only, see interp/lineedit.h), from its shared object. */
int modules_open_lineedit(lua_State *L);

/* core.prefetch(name) and core.module_wait(name): see modules.c */
int modules_prefetch(lua_State *L);
int modules_wait(lua_State *L);
/* Waits for the modules still being opened ahead; call before the process exits. False: one is
 * stuck (in dlopen), and the process must leave with _exit, not exit. */
bool modules_settle(void);

#endif
