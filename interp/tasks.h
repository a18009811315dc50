/*
 * tasks.h - how a native primitive waits, and parallel().
 *
 * A primitive that talks to a socket is a small state machine. When it must wait it fills a
 * sched_waiter (the fds it waits on, its absolute deadline) and then either blocks right there
 * (called from a step: nothing else to do meanwhile) or, when it runs as one of parallel()'s tasks,
 * yields its coroutine so that the other tasks progress; parallel() polls every task's fds at once
 * and resumes each when its wait ends. The primitive's code is the same in both cases:
 *
 *     static int op_k(lua_State *L, int status, lua_KContext ctx)
 *     {
 *         struct op *op = ctx;                       // lives in a userdata on L's stack
 *         for (;;) {
 *             if (advance(op) == DONE)               // non-blocking: reads w.result, revents
 *                 return push_results(L, op);
 *             if (tasks_must_yield(L))
 *                 return tasks_yield(L, &op->w, ctx, op_k);
 *             tasks_block(&op->w);
 *         }
 *     }
 *
 * Waits end READY (some fd has revents), TIMEOUT (the deadline passed) or INTERRUPTED (Ctrl-C).
 *
 * Blocking library calls that cannot be made non-blocking (getaddrinfo, PQcancel) run in a worker
 * thread (tasks_offload): its completion is one more fd to wait on, and a caller that stops waiting
 * (deadline, Ctrl-C) walks away while the worker finishes and frees its job on its own.
 */
#ifndef TASKS_H
#define TASKS_H

#include <lua.h>
#include <poll.h>
#include <stdbool.h>

#include "sched.h"

#define TASKS_WAIT_FDS 4

struct sched_waiter {
	struct pollfd fds[TASKS_WAIT_FDS];
	int nfds;
	msec_t deadline;           /* absolute (sched_now()); a wait never outlasts it */
	enum sched_wait result;    /* how the last wait ended */
};

/* Resets the waiter to wait on nothing until deadline; add fds with tasks_want. */
void tasks_wait_init(struct sched_waiter *w, msec_t deadline);
void tasks_want(struct sched_waiter *w, int fd, short events);

bool tasks_must_yield(lua_State *L);
int  tasks_yield(lua_State *L, struct sched_waiter *w, lua_KContext ctx, lua_KFunction k);
void tasks_block(struct sched_waiter *w);

/* parallel(tasks, { limit = 50 }) as a Lua C function; see README. */
int tasks_parallel(lua_State *L);

/* --- offloading one blocking call to a worker thread --- */
struct offload;
/* Runs work(arg) in a detached thread with every signal blocked. done_fd() becomes readable when
 * it has finished. free_arg (may be NULL) frees arg once both sides are finished with it. */
struct offload *tasks_offload(void (*work)(void *arg), void *arg, void (*free_arg)(void *arg));
int   tasks_offload_fd(const struct offload *o);
bool  tasks_offload_done(const struct offload *o);
void *tasks_offload_arg(const struct offload *o);
void  tasks_offload_release(struct offload *o);   /* the caller's side is finished with it */

#endif
