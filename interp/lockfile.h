/*
 * lockfile.h - advisory locks that name their holder (require "lockfile"; the library's own code
 * only, never visible to runbooks).
 *
 * A lock is a file held with flock(LOCK_EX). The kernel releases it when the holder exits, however
 * it exits (kill -9 included), so a lock file that exists but that nobody holds was left by a
 * session that died: a stale lock, which the next acquirer simply takes over. The file's content
 * is the holder's details (JSON written by the caller), so that whoever finds the lock taken can
 * say who has it. Lua API:
 *
 *   lockfile.acquire(path, details)  -> handle, previous details ("" when the file was new)
 *                                     | nil, details of the holder, "held"
 *                                     | nil, message, "error"
 *   lockfile.held(path)              -> true when a live process holds it, false when free or stale
 *   lockfile.alive(pid)              -> whether a process with that pid exists (on this host)
 *   lockfile.mkdir(path)             -> true | nil, err: mkdir -p, new directories mode 0700
 *   handle:release()                 -> removes the file if it is still ours, then closes;
 *                                       idempotent, also run by __gc and __close
 */
#ifndef LOCKFILE_H
#define LOCKFILE_H

#include <lua.h>

int luaopen_lockfile(lua_State *L);

#endif
