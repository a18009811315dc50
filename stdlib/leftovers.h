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

void leftovers_started(pid_t leader);    /* just spawned, its session's id is its pid */
/* Before the leader is reaped (so that its pid, the session's id, is not reused meanwhile).
 * Returns whether anything was left behind. */
bool leftovers_ended(pid_t leader);

#endif
