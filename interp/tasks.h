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
 * tasks_run_op is that loop, for a primitive that describes its op with a struct tasks_machine
 * (advance, done, release): a done that starts another stage (the next query of a probe, the
 * action after its gate) returns TASKS_AGAIN and the loop goes on.
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

/* Resets the waiter for a call that may last timeout_ms from now, under the --timeout cap
 * (sched_deadline); returns the timeout the call really has, for its messages and audit record. */
msec_t tasks_wait_start(struct sched_waiter *w, msec_t timeout_ms);
/* True when some fd of the last wait has revents. */
bool tasks_ready(const struct sched_waiter *w);

bool tasks_must_yield(lua_State *L);
/* The key of the parallel() task L runs, as text (truncated to size), when it runs one. */
bool tasks_key(lua_State *L, char *buf, size_t size);
int  tasks_yield(lua_State *L, struct sched_waiter *w, lua_KContext ctx, lua_KFunction k);
void tasks_block(struct sched_waiter *w);

/* --- driving an op to its end --- */
#define TASKS_AGAIN (-1)

/* A kind of op (one static instance per module): its state machine, as tasks_run_op drives it. */
struct tasks_machine {
	/* One non-blocking step after a wait (it reads w->result and the revents): true when the op,
	 * or its current stage, is over; else it has filled the waiter for the next wait. */
	bool (*advance)(void *op);
	/* Pushes the results and returns their number, or TASKS_AGAIN after starting another stage. */
	int (*done)(lua_State *L, void *op);
	/* Releases what the op holds; idempotent (the op's __close and __gc call it too). May be NULL. */
	void (*release)(void *op);
};

/* One op as tasks_run_op sees it. It is the continuation's context across yields, so it lives in
 * the op itself (a userdata on L's stack), like the waiter. */
struct tasks_op {
	const struct tasks_machine *machine;
	void *op;
	struct sched_waiter *w;
};

/* Pushes a new op of the kind m: a zeroed userdata of size bytes with one user value, whose __close
 * and __gc call m->release, marked to-be-closed, so that a parallel() task stopped in the middle of
 * a call releases its op at once rather than when the collector comes. */
void *tasks_push_op(lua_State *L, size_t size, const struct tasks_machine *m);

/* Advances the op until its done has pushed the results (blocking, or yielding inside parallel());
 * returns their number. The op is released before that. */
int tasks_run_op(lua_State *L, struct tasks_op *t);

/* parallel(tasks, { limit = 50 }) as a Lua C function; see README. */
int tasks_parallel(lua_State *L);

/* --- offloading one blocking call to a worker thread --- */
struct offload;
/* Runs work(arg) in a thread of its own with every signal blocked (joined once it has ended, by the
 * next call or at exit). done_fd() becomes readable when it has finished. free_arg (may be NULL)
 * frees arg once both sides are finished with it. */
struct offload *tasks_offload(void (*work)(void *arg), void *arg, void (*free_arg)(void *arg));
/* The same, for work the process must not exit before (a cancel request on its way): the exit
 * waits for it, up to a limit (tasks_offloads_settle). */
struct offload *tasks_offload_awaited(void (*work)(void *arg), void *arg, void (*free_arg)(void *arg));
int   tasks_offload_fd(const struct offload *o);
bool  tasks_offload_done(const struct offload *o);
void *tasks_offload_arg(const struct offload *o);
void  tasks_offload_release(struct offload *o);   /* the caller's side is finished with it */
/* Another reference to o, released with tasks_offload_release too; returns o. */
struct offload *tasks_offload_retain(struct offload *o);
/* Before the process exits: waits up to limit_ms for the awaited workers still running (a cancel
 * request being sent), then briefly for the others, and joins those that ended; false if a worker
 * is still there (stuck in the kernel, a lookup nobody waits for): then exit without the exit
 * handlers (_exit), which must not run beneath it. */
bool  tasks_offloads_settle(msec_t limit_ms);

#endif
