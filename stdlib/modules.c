/*
 * modules.c - the table of native modules; see modules.h.
 *
 * sh, sys and tcp are linked in. pg, redis and http are shared objects opened on their first
 * `require`: libpq, hiredis and libcurl bring some forty libraries with them, and mapping them on
 * every start tripled the time of `runbook list`. The REPL's line editor (interp/lineedit.c, with
 * libedit and the three libraries it brings) is one too, for the sessions that have a terminal.
 * They are looked for next to the binary:
 * PREFIX/lib/runbook when installed, obj/modules (obj-asan/modules for runbook-asan) in the
 * source tree.
 *
 * `runbook exec` knows from the runbook's `require`s which of them it will need, and opens them
 * ahead (core.prefetch) in a worker thread, while the main thread goes on with the inputs, the
 * transcript and the first probes: mapping libcurl and its libraries is ~5 ms of CPU, as long as
 * a PostgreSQL connection takes. A task of parallel() that needs a module still being opened
 * yields until it is there (core.module_wait), so the other tasks' probes go ahead meanwhile.
 * The price: a required module is opened even when the run ends before using it (--dry-run, invalid
 * inputs, a held lock), and the exit waits for that (modules_settle).
 */
#include "modules.h"
#include "tasks.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define PREFETCH_WAIT_MS 10000   /* dlopen from a hung file system, say */
#define SETTLE_WAIT_MS 2000

static bool exists(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0;
}

/* Fills path with where NAME.so is; false (and path names the last place tried) if nowhere. */
static bool module_path(const char *name, char *path, size_t size)
{
	char exe[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
	if (n <= 0)
		n = 0;
	exe[n] = '\0';
	char *slash = strrchr(exe, '/');
	const char *base = slash ? slash + 1 : exe;
	size_t blen = strlen(base);
	bool asan = blen > 5 && strcmp(base + blen - 5, "-asan") == 0;
	if (slash)
		*slash = '\0';
	/* A binary in a build tree uses that tree's modules only: one from an installed runbook is
	 * another build, whose calls into this binary need not match. */
	snprintf(path, size, "%s/%s/modules", exe, asan ? "obj-asan" : "obj");
	if (exists(path)) {
		snprintf(path, size, "%s/%s/modules/%s.so", exe, asan ? "obj-asan" : "obj", name);
		return exists(path);
	}
	snprintf(path, size, "%s/../lib/runbook/%s.so", exe, name);
	if (exists(path))
		return true;
	snprintf(path, size, "%s/%s.so", RUNBOOK_LIBDIR, name);
	return exists(path);
}

/* ------------------------------------------------------------------ opening ahead of use */

static const char *const shared_modules[] = { "pg", "redis", "http" };
#define NSHARED (sizeof shared_modules / sizeof *shared_modules)

/*
 * One worker thread opens the modules, in the order of the runbook's requires: dlopen serialises
 * on one lock anyway, so the first module is ready (and its probes can start) as early as
 * possible. One thread, not one per module: creating a thread waits for a dlopen in progress.
 */
struct prefetch {
	int index;
	int ready[2];          /* a pipe, written once the worker is done with this module */
	atomic_bool done;
	lua_CFunction open;    /* luaopen_<name>, found by the worker; NULL if it failed */
	char path[PATH_MAX + 64];
};

static struct prefetch *prefetches[NSHARED];   /* NULL: not asked for */
static pthread_mutex_t queue_lock = PTHREAD_MUTEX_INITIALIZER;
static int queue[NSHARED], queued, taken;       /* guarded by queue_lock */
static bool worker_running;                     /* guarded by queue_lock */
static struct offload *workers[NSHARED];
static int nworkers;

static int shared_index(const char *name)
{
	for (size_t i = 0; i < NSHARED; i++)
		if (strcmp(shared_modules[i], name) == 0)
			return (int)i;
	return -1;
}

static void mark_done(struct prefetch *p)
{
	atomic_store(&p->done, true);
	while (write(p->ready[1], "", 1) < 0 && errno == EINTR)
		;
}

/*
 * A failure is left for load_shared to report: it opens the same path. The worker also looks up
 * luaopen_<name>: dlopen and dlsym in the main thread would wait for the worker's next dlopen.
 */
static void open_ahead(struct prefetch *p)
{
	void *h = dlopen(p->path, RTLD_NOW | RTLD_LOCAL);
	if (!h)
		return;
	char sym[64];
	snprintf(sym, sizeof sym, "runbook_warm_%s", shared_modules[p->index]);
	void (*setup)(void) = (void (*)(void))dlsym(h, sym);   /* library setup needing no Lua state */
	if (setup)
		setup();
	snprintf(sym, sizeof sym, "luaopen_%s", shared_modules[p->index]);
	p->open = (lua_CFunction)dlsym(h, sym);
	/* The setup leaves OpenSSL's error queue in this thread, which its exit handler frees; a
	 * process ending right after the worker is done outruns that, and LeakSanitizer (which cannot
	 * see thread-local data here, see the Makefile) reports it. Freed now; made again if needed. */
	void (*openssl_thread_stop)(void) = (void (*)(void))dlsym(h, "OPENSSL_thread_stop");
	if (openssl_thread_stop)
		openssl_thread_stop();
}

static void prefetch_worker(void *unused)
{
	(void)unused;
	for (;;) {
		pthread_mutex_lock(&queue_lock);
		if (taken == queued) {
			worker_running = false;
			pthread_mutex_unlock(&queue_lock);
			return;
		}
		struct prefetch *p = prefetches[queue[taken++]];
		pthread_mutex_unlock(&queue_lock);
		open_ahead(p);
		mark_done(p);
	}
}

/* Queues module i; starts the worker unless it runs. */
static void enqueue(int i)
{
	pthread_mutex_lock(&queue_lock);
	queue[queued++] = i;
	bool start = !worker_running;
	worker_running = true;
	pthread_mutex_unlock(&queue_lock);
	struct offload *o = start ? tasks_offload(prefetch_worker, NULL, NULL) : NULL;
	if (o)
		workers[nworkers++] = o;
	else if (start) {   /* no thread: nothing is opened ahead, load_shared does it all */
		pthread_mutex_lock(&queue_lock);
		while (taken < queued)
			mark_done(prefetches[queue[taken++]]);
		worker_running = false;
		pthread_mutex_unlock(&queue_lock);
	}
}

/* Blocks until the worker is done with module i, if it was asked for (its setup must be over
 * before this thread touches the library), for at most limit_ms; stops early on Ctrl-C when
 * interruptible. False if the worker is not done. */
static bool wait_prefetch(int i, msec_t limit_ms, bool interruptible)
{
	struct prefetch *p = i >= 0 ? prefetches[i] : NULL;
	struct pollfd fd = { .fd = p ? p->ready[0] : -1, .events = POLLIN };
	msec_t deadline = sched_now() + limit_ms;
	while (p && !atomic_load(&p->done)) {
		msec_t left = deadline - sched_now();
		if (left <= 0 || (interruptible && sched_interrupted()))
			return false;
		poll(&fd, 1, left < 100 ? (int)left : 100);
	}
	return true;
}

/*
 * Called before the process exits: the worker may still be inside dlopen or a library's setup,
 * and exit() must not run the destructors (atexit handlers the libraries registered on their way
 * in) under it. False if it is still there after SETTLE_WAIT_MS: then exit without them.
 */
bool modules_settle(void)
{
	for (int i = 0; i < (int)NSHARED; i++)
		if (!wait_prefetch(i, SETTLE_WAIT_MS, false))
			return false;
	for (int k = 0; k < nworkers; k++) {
		struct pollfd fd = { .fd = tasks_offload_fd(workers[k]), .events = POLLIN };
		while (!tasks_offload_done(workers[k]))
			poll(&fd, 1, 100);
		tasks_offload_release(workers[k]);
	}
	nworkers = 0;
	for (size_t i = 0; i < NSHARED; i++) {
		struct prefetch *p = prefetches[i];
		if (p) {
			close(p->ready[0]);
			close(p->ready[1]);
			free(p);
		}
		prefetches[i] = NULL;
	}
	return true;
}

/* core.prefetch(name): starts opening a shared module in the background; a no-op for the others. */
int modules_prefetch(lua_State *L)
{
	int i = shared_index(luaL_checkstring(L, 1));
	if (i < 0 || prefetches[i])
		return 0;
	luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
	bool loaded = lua_getfield(L, -1, shared_modules[i]) != LUA_TNIL;
	lua_pop(L, 2);
	struct prefetch *p = calloc(1, sizeof *p);
	if (loaded || !p || !module_path(shared_modules[i], p->path, sizeof p->path) ||
	    pipe2(p->ready, O_CLOEXEC | O_NONBLOCK) != 0) {
		free(p);
		return 0;
	}
	p->index = i;
	atomic_init(&p->done, false);
	prefetches[i] = p;
	enqueue(i);
	return 0;
}

static int module_wait_k(lua_State *L, int status, lua_KContext ctx)
{
	(void)status;
	struct sched_waiter *w = (struct sched_waiter *)ctx;
	const struct prefetch *p = prefetches[lua_tointeger(L, 2)];
	while (!atomic_load(&p->done) && w->result != SCHED_TIMEOUT && w->result != SCHED_INTERRUPTED) {
		if (tasks_must_yield(L))
			return tasks_yield(L, w, ctx, module_wait_k);
		tasks_block(w);
	}
	return 0;   /* opened or not, the caller goes on to require(), which reports any failure */
}

/* core.module_wait(name): returns once a prefetch of name has finished; yields inside parallel(). */
int modules_wait(lua_State *L)
{
	int i = shared_index(luaL_checkstring(L, 1));
	if (i < 0 || !prefetches[i] || atomic_load(&prefetches[i]->done))
		return 0;
	lua_settop(L, 1);
	lua_pushinteger(L, i);
	struct sched_waiter *w = lua_newuserdatauv(L, sizeof *w, 0);
	tasks_wait_init(w, sched_now() + PREFETCH_WAIT_MS);
	tasks_want(w, prefetches[i]->ready[0], POLLIN);
	return module_wait_k(L, LUA_OK, (lua_KContext)w);
}

static int load_shared(lua_State *L, const char *name)
{
	char path[PATH_MAX + 64], sym[64];
	int i = shared_index(name);
	if (!wait_prefetch(i, PREFETCH_WAIT_MS, true))
		return luaL_error(L, "module '%s': %s while its libraries were still being opened", name,
		                  sched_interrupted() ? "interrupted" : "gave up after 10 s (a hung file system?)");
	if (i >= 0 && prefetches[i] && prefetches[i]->open)
		return prefetches[i]->open(L);
	if (!module_path(name, path, sizeof path))
		return luaL_error(L, "module '%s' is not installed (looked for %s): reinstall runbook", name, path);
	/* RTLD_NOW: a missing symbol is an error here, not a process killed by ld.so mid-run. */
	void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (!h)
		return luaL_error(L, "module '%s' cannot be loaded: %s", name, dlerror());
	snprintf(sym, sizeof sym, "luaopen_%s", name);
	lua_CFunction open = (lua_CFunction)dlsym(h, sym);
	if (!open)
		return luaL_error(L, "module '%s' is broken: %s has no %s", name, path, sym);
	return open(L);   /* the handle stays open for the life of the process, as Lua's own C loader does */
}

int modules_open_lineedit(lua_State *L) { return load_shared(L, "lineedit"); }

static int open_pg(lua_State *L) { return load_shared(L, "pg"); }
static int open_redis(lua_State *L) { return load_shared(L, "redis"); }
static int open_http(lua_State *L) { return load_shared(L, "http"); }

const luaL_Reg runbook_modules[] = {
	{ "sh", luaopen_sh },
	{ "sys", luaopen_sys },
	{ "tcp", luaopen_tcp },
	{ "http", open_http },
	{ "pg", open_pg },
	{ "redis", open_redis },
	{ NULL, NULL },
};
