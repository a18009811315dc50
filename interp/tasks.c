/* tasks.c - see tasks.h. */
#include "tasks.h"
#include "host.h"
#include "luax.h"

#include <errno.h>
#include <fcntl.h>
#include <lauxlib.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <string.h>
#include <unistd.h>

#define DEFAULT_LIMIT 50

/* Yielded alongside the waiter, so that parallel() knows a wait from any other yield. */
static const char wait_tag = 'w';
/* Registry key of the weak set of threads that parallel() runs. */
static const char task_threads = 't';

void tasks_wait_init(struct sched_waiter *w, msec_t deadline)
{
	w->nfds = 0;
	w->deadline = deadline;
	w->result = SCHED_READY;
}

void tasks_want(struct sched_waiter *w, int fd, short events)
{
	if (w->nfds < TASKS_WAIT_FDS && fd >= 0)
		w->fds[w->nfds++] = (struct pollfd){ .fd = fd, .events = events };
}

msec_t tasks_wait_start(struct sched_waiter *w, msec_t timeout_ms)
{
	tasks_wait_init(w, sched_deadline(timeout_ms));
	msec_t cap = sched_cap();
	return cap > 0 && cap < timeout_ms ? cap : timeout_ms;
}

bool tasks_ready(const struct sched_waiter *w)
{
	for (int i = 0; i < w->nfds; i++)
		if (w->fds[i].revents)
			return true;
	return false;
}

bool tasks_must_yield(lua_State *L)
{
	if (!lua_isyieldable(L))
		return false;
	lua_rawgetp(L, LUA_REGISTRYINDEX, &task_threads);
	if (!lua_istable(L, -1)) {
		lua_pop(L, 1);
		return false;
	}
	lua_pushthread(L);
	bool mine = lua_rawget(L, -2) != LUA_TNIL;
	lua_pop(L, 2);
	return mine;
}

bool tasks_key(lua_State *L, char *buf, size_t size)
{
	bool found = false;
	if (lua_rawgetp(L, LUA_REGISTRYINDEX, &task_threads) == LUA_TTABLE) {
		lua_pushthread(L);
		int t = lua_rawget(L, -2);
		if (t == LUA_TSTRING || t == LUA_TNUMBER) {
			snprintf(buf, size, "%s", lua_tostring(L, -1));   /* converts the stack's copy only */
			found = true;
		}
		lua_pop(L, 1);
	}
	lua_pop(L, 1);
	return found;
}

int tasks_yield(lua_State *L, struct sched_waiter *w, lua_KContext ctx, lua_KFunction k)
{
	lua_pushlightuserdata(L, (void *)&wait_tag);
	lua_pushlightuserdata(L, w);
	return lua_yieldk(L, 2, ctx, k);
}

void tasks_block(struct sched_waiter *w)
{
	for (int i = 0; i < w->nfds; i++)
		w->fds[i].revents = 0;
	w->result = sched_poll(w->fds, w->nfds, w->deadline);
}

/* ------------------------------------------------------------------------- running an op */

/* Every op's userdata: its machine, then the op itself, aligned as Lua aligns a userdata's memory
 * (LUAI_MAXALIGN: a number, a pointer, an integer, a long). */
#define OP_MT "runbook.tasks.op"
union op_header {
	const struct tasks_machine *machine;
	lua_Number n;
	lua_Integer i;
	void *p;
	long l;
};

static int op_gc(lua_State *L)
{
	union op_header *h = lua_touserdata(L, 1);
	if (h->machine->release)
		h->machine->release(h + 1);
	return 0;
}

void *tasks_push_op(lua_State *L, size_t size, const struct tasks_machine *m)
{
	union op_header *h = lua_newuserdatauv(L, sizeof *h + size, 1);
	memset(h, 0, sizeof *h + size);
	h->machine = m;
	if (luaL_newmetatable(L, OP_MT)) {
		lua_pushcfunction(L, op_gc);
		lua_setfield(L, -2, "__gc");
		lua_pushcfunction(L, op_gc);
		lua_setfield(L, -2, "__close");
	}
	lua_setmetatable(L, -2);
	lua_toclose(L, -1);
	return h + 1;
}

static int run_op_k(lua_State *L, int status, lua_KContext ctx)
{
	(void)status;
	struct tasks_op *t = (struct tasks_op *)ctx;
	for (;;) {
		if (t->machine->advance(t->op)) {
			int n = t->machine->done(L, t->op);
			if (n == TASKS_AGAIN)
				continue;
			/* Released here rather than by the op's __close on return: with a Ctrl-C pending, the
			 * host's call hook raises as Lua calls __close, before its body runs, and the release
			 * (the connection, the handle's busy mark) would wait for the collector. */
			if (t->machine->release)
				t->machine->release(t->op);
			return n;
		}
		if (tasks_must_yield(L))
			return tasks_yield(L, t->w, ctx, run_op_k);
		tasks_block(t->w);
	}
}

int tasks_run_op(lua_State *L, struct tasks_op *t)
{
	return run_op_k(L, LUA_OK, (lua_KContext)t);
}

/* ------------------------------------------------------------------------------- parallel() */

struct task {
	lua_State *co;
	int thread_ref, key_ref;
	struct sched_waiter *w;     /* set while the task waits */
	double t0;
	bool started, finished;
};

struct run {
	lua_State *L;
	struct task *tasks;
	size_t n, next, running, limit;
	int results;                /* stack index of the results table */
	int control_ref;            /* a control signal (Ctrl-C, abort) raised by a task, or LUA_NOREF */
};

/* task_threads[co] = the task's key (key_ref), or nil (LUA_NOREF). */
static void mark_task_thread(lua_State *L, lua_State *co, int key_ref)
{
	if (lua_rawgetp(L, LUA_REGISTRYINDEX, &task_threads) != LUA_TTABLE) {
		lua_pop(L, 1);
		lua_newtable(L);
		lua_createtable(L, 0, 1);
		lua_pushliteral(L, "k");
		lua_setfield(L, -2, "__mode");
		lua_setmetatable(L, -2);
		lua_pushvalue(L, -1);
		lua_rawsetp(L, LUA_REGISTRYINDEX, &task_threads);
	}
	lua_pushthread(co);
	lua_xmove(co, L, 1);
	if (key_ref == LUA_NOREF)
		lua_pushnil(L);
	else
		lua_rawgeti(L, LUA_REGISTRYINDEX, key_ref);
	lua_rawset(L, -3);
	lua_pop(L, 1);
}

/* results[key] = { value = v1, err = v2, kind = v3, ms } from a task's return values. */
static void record_returns(struct run *r, struct task *t, int nres)
{
	lua_State *L = r->L, *co = t->co;
	lua_createtable(L, 0, 4);
	if (nres >= 1 && !lua_isnil(co, -nres)) {
		lua_pushvalue(co, -nres);
		lua_xmove(co, L, 1);
		lua_setfield(L, -2, "value");
	} else {
		for (int i = 2; i <= 3 && i <= nres; i++) {
			lua_pushvalue(co, -nres + i - 1);
			lua_xmove(co, L, 1);
			lua_setfield(L, -2, i == 2 ? "err" : "kind");
		}
		if (nres < 2) {
			lua_pushliteral(L, "returned nothing");
			lua_setfield(L, -2, "err");
		}
	}
	luax_setnum(L, "ms", sched_now_precise() - t->t0);
	lua_rawgeti(L, LUA_REGISTRYINDEX, t->key_ref);
	lua_insert(L, -2);
	lua_settable(L, r->results);
	lua_pop(co, nres);
}

static void record_error(struct run *r, struct task *t, const char *kind, const char *fmt, const char *msg)
{
	lua_State *L = r->L;
	lua_createtable(L, 0, 3);
	lua_pushfstring(L, fmt, msg);
	lua_setfield(L, -2, "err");
	lua_pushstring(L, kind);
	lua_setfield(L, -2, "kind");
	luax_setnum(L, "ms", sched_now_precise() - t->t0);
	lua_rawgeti(L, LUA_REGISTRYINDEX, t->key_ref);
	lua_insert(L, -2);
	lua_settable(L, r->results);
}

static void finish(struct run *r, struct task *t)
{
	t->finished = true;
	t->w = NULL;
	r->running--;
	mark_task_thread(r->L, t->co, LUA_NOREF);
}

/* Resumes a task and files what came of it: a wait, its results, or its error. */
static void resume(struct run *r, struct task *t)
{
	int nres = 0;
	host_thread_push(t->co);
	int status = lua_resume(t->co, r->L, 0, &nres);
	host_thread_pop();
	if (status == LUA_YIELD) {
		if (nres == 2 && lua_touserdata(t->co, -2) == &wait_tag) {
			t->w = lua_touserdata(t->co, -1);
			lua_pop(t->co, 2);
			return;
		}
		lua_pop(t->co, nres);
		record_error(r, t, "error", "%s", "parallel: a task called coroutine.yield (run it in its own coroutine)");
		lua_resetthread(t->co);
	} else if (status == LUA_OK) {
		record_returns(r, t, nres);
	} else if (host_control_kind(t->co, -1)) {
		if (r->control_ref == LUA_NOREF) {
			lua_xmove(t->co, r->L, 1);
			r->control_ref = luaL_ref(r->L, LUA_REGISTRYINDEX);
		}
	} else {
		const char *msg = lua_tostring(t->co, -1);
		record_error(r, t, "error", "%s", msg ? msg : "error object is not a string");
	}
	finish(r, t);
}

static void start(struct run *r, struct task *t)
{
	lua_State *L = r->L;
	t->co = lua_newthread(L);
	t->thread_ref = luaL_ref(L, LUA_REGISTRYINDEX);
	lua_rawgeti(L, LUA_REGISTRYINDEX, t->key_ref);
	lua_gettable(L, 1);
	lua_xmove(L, t->co, 1);
	mark_task_thread(L, t->co, t->key_ref);
	t->started = true;
	t->t0 = sched_now_precise();
	r->running++;
	resume(r, t);
}

/* Polls every waiting task's fds at once until one wait ends; resumes the tasks whose did. */
static void wait_round(struct run *r)
{
	size_t nfds = 0;
	msec_t deadline = INT64_MAX;
	for (size_t i = 0; i < r->n; i++) {
		struct task *t = &r->tasks[i];
		if (t->w) {
			nfds += (size_t)t->w->nfds;
			if (t->w->deadline < deadline)
				deadline = t->w->deadline;
		}
	}
	struct pollfd *set = calloc(nfds ? nfds : 1, sizeof *set);
	if (!set)
		abort();
	size_t k = 0;
	for (size_t i = 0; i < r->n; i++)
		if (r->tasks[i].w)
			for (int j = 0; j < r->tasks[i].w->nfds; j++)
				set[k++] = r->tasks[i].w->fds[j];
	enum sched_wait how = sched_poll(set, (int)nfds, deadline);
	msec_t now = sched_now();
	k = 0;
	for (size_t i = 0; i < r->n; i++) {
		struct task *t = &r->tasks[i];
		if (!t->w)
			continue;
		struct sched_waiter *w = t->w;
		bool ready = false;
		for (int j = 0; j < w->nfds; j++, k++) {
			w->fds[j].revents = how == SCHED_READY ? set[k].revents : 0;
			ready |= w->fds[j].revents != 0;
		}
		if (how == SCHED_INTERRUPTED)
			w->result = SCHED_INTERRUPTED;
		else if (ready)
			w->result = SCHED_READY;
		else if (now >= w->deadline)
			w->result = SCHED_TIMEOUT;
		else
			continue;
		t->w = NULL;
		resume(r, t);
	}
	free(set);
}

static const char *const parallel_options[] = { "limit", NULL };

static void collect_keys(lua_State *L, struct run *r)
{
	size_t cap = 0;
	lua_pushnil(L);
	while (lua_next(L, 1)) {
		lua_pop(L, 1);
		if (r->n == cap) {
			cap = cap ? cap * 2 : 16;
			r->tasks = realloc(r->tasks, cap * sizeof *r->tasks);
			if (!r->tasks)
				abort();
		}
		lua_pushvalue(L, -1);
		r->tasks[r->n++] = (struct task){ .key_ref = luaL_ref(L, LUA_REGISTRYINDEX), .thread_ref = LUA_NOREF };
	}
}

static void release_tasks(struct run *r)
{
	for (size_t i = 0; i < r->n; i++) {
		struct task *t = &r->tasks[i];
		if (t->started && !t->finished) {
			mark_task_thread(r->L, t->co, LUA_NOREF);
			lua_resetthread(t->co);   /* runs the task's pending __close handlers */
		}
		luaL_unref(r->L, LUA_REGISTRYINDEX, t->thread_ref);
		luaL_unref(r->L, LUA_REGISTRYINDEX, t->key_ref);
	}
	free(r->tasks);
}

/*
 * parallel(tasks, { limit = 50 }): tasks is a table of functions (an array, or keyed by name).
 * Returns a table with the same keys: { value = first result } or { err, kind } for a task that
 * returned nil, err, kind or raised; each with ms. Ctrl-C or abort in any task stops them all.
 */
int tasks_parallel(lua_State *L)
{
	luaL_checktype(L, 1, LUA_TTABLE);
	luax_check_options(L, 2, "parallel", parallel_options);
	lua_Integer limit = luax_opt_integer(L, 2, "limit", DEFAULT_LIMIT, "parallel");
	if (limit < 1)
		luaL_error(L, "parallel: option 'limit' must be at least 1");
	lua_pushnil(L);
	while (lua_next(L, 1)) {
		if (!lua_isfunction(L, -1))
			luaL_error(L, "parallel: task %s is a %s, not a function", luaL_tolstring(L, -2, NULL), luaL_typename(L, -2));
		lua_pop(L, 1);
	}
	lua_settop(L, 2);
	lua_newtable(L);
	struct run r = { .L = L, .limit = (size_t)limit, .results = 3, .control_ref = LUA_NOREF };
	collect_keys(L, &r);
	while (r.control_ref == LUA_NOREF && (r.next < r.n || r.running > 0)) {
		while (r.control_ref == LUA_NOREF && r.running < r.limit && r.next < r.n)
			start(&r, &r.tasks[r.next++]);
		if (r.control_ref == LUA_NOREF && r.running > 0)
			wait_round(&r);
	}
	release_tasks(&r);
	if (r.control_ref != LUA_NOREF) {
		lua_rawgeti(L, LUA_REGISTRYINDEX, r.control_ref);
		luaL_unref(L, LUA_REGISTRYINDEX, r.control_ref);
		return lua_error(L);
	}
	lua_settop(L, 3);
	return 1;
}

/* -------------------------------------------------------------------------------- offload */

struct offload {
	atomic_int refs;
	atomic_bool done;
	int pipe[2];
	void (*work)(void *);
	void *arg;
	void (*free_arg)(void *);
	bool awaited;              /* the exit waits for it (tasks_offload_awaited) */
};

/* Worker threads still running, for tasks_offloads_settle: a process that exits under one would cut
 * an awaited one short (a cancel request on its way), or run the libraries' exit handlers beneath
 * any other (a lookup nobody waits for any more). A worker that has ended is joined (ended[]), so
 * that its thread's own cleanup (the libraries' thread-local destructors) is over too. */
static pthread_mutex_t running_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t running_done;
static pthread_once_t running_once = PTHREAD_ONCE_INIT;
static int running, awaited;
static pthread_t *ended;
static size_t nended, ended_cap;

static void running_init(void)
{
	pthread_condattr_t a;
	pthread_condattr_init(&a);
	pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
	pthread_cond_init(&running_done, &a);
	pthread_condattr_destroy(&a);
}

/* n workers more (or fewer); a worker that ends passes its own thread, to be joined. */
static void running_add(int n, bool is_awaited, const pthread_t *self)
{
	pthread_once(&running_once, running_init);
	pthread_mutex_lock(&running_lock);
	if (self) {
		if (nended == ended_cap) {
			ended_cap = ended_cap ? 2 * ended_cap : 16;
			ended = realloc(ended, ended_cap * sizeof *ended);
			if (!ended)
				abort();
		}
		ended[nended++] = *self;
	}
	running += n;
	if (is_awaited)
		awaited += n;
	pthread_cond_broadcast(&running_done);
	pthread_mutex_unlock(&running_lock);
}

/* Joins the workers that have ended: at most the time their threads take to finish exiting. */
static void join_ended(void)
{
	pthread_once(&running_once, running_init);
	pthread_mutex_lock(&running_lock);
	pthread_t *v = ended;
	size_t n = nended;
	ended = NULL;
	nended = ended_cap = 0;
	pthread_mutex_unlock(&running_lock);
	for (size_t i = 0; i < n; i++)
		pthread_join(v[i], NULL);
	free(v);
}

static struct timespec monotonic_in(msec_t ms)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	t.tv_sec += ms / 1000;
	t.tv_nsec += (ms % 1000) * 1000000L;
	if (t.tv_nsec >= 1000000000L) {
		t.tv_sec++;
		t.tv_nsec -= 1000000000L;
	}
	return t;
}

/* After the awaited workers, the others get this long to end: one whose work has just returned
 * is on its way out; one still inside its work is stuck (a kernel call that does not return). */
#define ENDING_WAIT_MS 50

bool tasks_offloads_settle(msec_t limit_ms)
{
	pthread_once(&running_once, running_init);
	struct timespec until = monotonic_in(limit_ms);
	pthread_mutex_lock(&running_lock);
	while (awaited > 0 && pthread_cond_timedwait(&running_done, &running_lock, &until) == 0)
		;
	until = monotonic_in(ENDING_WAIT_MS);
	while (running > 0 && pthread_cond_timedwait(&running_done, &running_lock, &until) == 0)
		;
	bool settled = running == 0;
	pthread_mutex_unlock(&running_lock);
	join_ended();
	return settled;
}

static void offload_unref(struct offload *o)
{
	if (atomic_fetch_sub(&o->refs, 1) != 1)
		return;
	close(o->pipe[0]);
	close(o->pipe[1]);
	if (o->free_arg)
		o->free_arg(o->arg);
	free(o);
}

static void *offload_main(void *p)
{
	struct offload *o = p;
	o->work(o->arg);
	atomic_store(&o->done, true);
	ssize_t n;
	do
		n = write(o->pipe[1], "", 1);
	while (n < 0 && errno == EINTR);
	bool was_awaited = o->awaited;
	offload_unref(o);
	pthread_t self = pthread_self();
	running_add(-1, was_awaited, &self);
	return NULL;
}

static struct offload *offload_start(void (*work)(void *), void *arg, void (*free_arg)(void *), bool is_awaited)
{
	struct offload *o = calloc(1, sizeof *o);
	if (!o)
		abort();
	if (pipe2(o->pipe, O_CLOEXEC | O_NONBLOCK) != 0) {
		free(o);
		return NULL;
	}
	o->work = work;
	o->arg = arg;
	o->free_arg = free_arg;
	o->awaited = is_awaited;
	atomic_init(&o->refs, 2);
	atomic_init(&o->done, false);

	/* The worker must never run the signal handlers: they belong to the Lua thread. */
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	join_ended();   /* joinable, so that the exit can wait for a thread's end (tasks_offloads_settle) */
	pthread_t t;
	running_add(1, is_awaited, NULL);
	int rc = pthread_create(&t, NULL, offload_main, o);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc != 0) {
		running_add(-1, is_awaited, NULL);
		o->free_arg = NULL;   /* the caller still owns arg */
		close(o->pipe[0]);
		close(o->pipe[1]);
		free(o);
		return NULL;
	}
	return o;
}

struct offload *tasks_offload(void (*work)(void *), void *arg, void (*free_arg)(void *))
{
	return offload_start(work, arg, free_arg, false);
}

struct offload *tasks_offload_awaited(void (*work)(void *), void *arg, void (*free_arg)(void *))
{
	return offload_start(work, arg, free_arg, true);
}

int   tasks_offload_fd(const struct offload *o) { return o->pipe[0]; }
bool  tasks_offload_done(const struct offload *o) { return atomic_load(&o->done); }
void *tasks_offload_arg(const struct offload *o) { return o->arg; }
void  tasks_offload_release(struct offload *o) { offload_unref(o); }
struct offload *tasks_offload_retain(struct offload *o) { atomic_fetch_add(&o->refs, 1); return o; }
