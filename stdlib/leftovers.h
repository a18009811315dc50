/*
 * leftovers.h - the processes a command leaves behind, ended with it.
 *
 * Commands (stdlib/sh.c) run in sessions of their own. While any runs, this process is a child
 * subreaper (PR_SET_CHILD_SUBREAPER): whatever a command starts and abandons (a background job, a
 * double fork, a daemon that called setsid) is re-parented to us instead of to init. When the
 * command ends, what it left is killed and reaped: the rest of its session, the orphans
 * re-parented to us since it started, and their descendants.
 */
#ifndef LEFTOVERS_H
#define LEFTOVERS_H

#include <stdbool.h>
#include <sys/types.h>

/* Before a command is spawned (so that what it abandons at once is re-parented to us already),
 * then after, with its pid (its session's id), or 0 when it could not be started. A kept command
 * (sh.action's leave_running, the lab's setup) may leave daemons: they are not ended. Returns
 * whether the command is kept (keep, or the lab's setup). */
bool leftovers_spawning(bool keep);
void leftovers_started(pid_t leader, bool keep);
void leftovers_keep_all(bool on);
/* While the gate asks: every process of the running commands (and anything left to us) stopped,
 * then continued. */
void leftovers_freeze(void);
void leftovers_thaw(void);   /* the lab's setup commands (core.keep_leftovers; not for runbooks) */
/* Before the leader is reaped (so that its pid, the session's id, is not reused meanwhile).
 * Returns whether anything was left behind. */
bool leftovers_ended(pid_t leader);

#endif
