/*
 * sys_worker.c - the bounded filesystem calls of sys: stat/statvfs/open/walk of a path run as a job in
 * a worker thread (tasks_offload) that the caller stops waiting for at the deadline, one job at a time
 * per path, and the op (fs_op) by which a probe waits for its job and then finishes.
 */
#include "sys_internal.h"

/* ------------------------------------------------------------------ bounded filesystem calls */

static void fsjob_run(void *arg)
{
	struct fsjob *j = arg;
	if (j->kind == FS_OPEN) {
		j->fd = open(j->path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
		if (j->fd < 0)
			j->err = errno;
		else if (fstat(j->fd, &j->st) != 0 || !S_ISREG(j->st.st_mode))
			j->err = EINVAL;
	} else if (j->kind == FS_OPENDIR) {
		j->fd = open(j->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (j->fd < 0 || fstat(j->fd, &j->st) != 0 || !(j->real = realpath(j->path, NULL)))
			j->err = errno;
	} else if (j->kind == FS_WALK) {
		j->err = walk_run(j->walk, j->path, j->fd, &j->st, j->real);
		j->fd = -1;   /* the walk's now, closed by it */
	} else if (j->kind == FS_STAT) {
		if (stat(j->path, &j->st) != 0)
			j->err = errno;
	} else if (j->kind == FS_STATVFS_REAL && !(j->real = realpath(j->path, NULL))) {
		j->err = errno;
	} else if (statvfs(j->real ? j->real : j->path, &j->vfs) != 0) {
		j->err = errno;
	}
}

void fsjob_free(void *arg)
{
	struct fsjob *j = arg;
	if (j->fd >= 0)
		close(j->fd);
	if (j->walk)
		walk_free(j->walk);
	free(j->path);
	free(j->real);
	free(j);
}

struct fsjob *fsjob_new(const char *path, enum fsjob_kind kind)
{
	struct fsjob *j = calloc(1, sizeof *j);
	if (!j)
		abort();
	j->path = xstrdup(path);
	j->kind = kind;
	j->fd = -1;
	return j;
}

/*
 * The jobs running, by path. A call on a path where one still runs waits for it before it starts
 * its own: a probe polled every few seconds on a dead NFS mount (wait_until), or twenty parallel()
 * tasks on one path, would otherwise each leave a thread and its pipe blocked there, until the
 * process runs out of file descriptors. Each entry holds a reference to its job. A walk is known
 * only once its caller has stopped waiting for it (stuck past its deadline, say), by its root, and
 * only to the walks that come after it: a walk taking its time holds up no other probe.
 */
static struct busy *busy;
static size_t nbusy, busy_cap;

static void forget_finished_jobs(void)
{
	for (size_t i = 0; i < nbusy;) {
		if (tasks_offload_done(busy[i].o)) {
			tasks_offload_release(busy[i].o);
			free(busy[i].path);
			busy[i] = busy[--nbusy];
		} else {
			i++;
		}
	}
}

/* The job still running on path that a call of that kind waits for (any job; a walk, only for a
 * walk of the same kind), or NULL. */
const struct busy *busy_find(const char *path, enum busy_kind kind)
{
	forget_finished_jobs();
	for (size_t i = 0; i < nbusy; i++)
		if (strcmp(busy[i].path, path) == 0 && (busy[i].kind == BUSY_JOB || busy[i].kind == kind))
			return &busy[i];
	return NULL;
}

static struct offload *busy_on(const char *path, enum busy_kind kind)
{
	const struct busy *b = busy_find(path, kind);
	return b ? b->o : NULL;
}

static void busy_add(const char *path, struct offload *o, enum busy_kind kind)
{
	forget_finished_jobs();
	grow((void **)&busy, &busy_cap, nbusy + 1, sizeof *busy);
	busy[nbusy++] = (struct busy){ .path = xstrdup(path), .o = tasks_offload_retain(o), .kind = kind,
	                               .since = sched_now() };
}

/* Runs j in a worker, known by its path while it runs (a walk: see busy); NULL when no thread is
 * to be had. */
struct offload *fsjob_start(struct fsjob *j)
{
	struct offload *o = tasks_offload(fsjob_run, j, fsjob_free);
	if (o && j->kind != FS_WALK)
		busy_add(j->path, o, BUSY_JOB);
	return o;
}

/* The caller is done with j, run by o (NULL: it ran here, or never). */
void fsjob_done(struct offload *o, struct fsjob *j)
{
	if (o)
		tasks_offload_release(o);   /* the worker frees j when it is done too */
	else
		fsjob_free(j);
}


static bool fs_op_over(struct fs_op *op, int err)
{
	op->err = err;
	return true;
}

static bool fs_op_wait(struct fs_op *op, const struct offload *o)
{
	msec_t grace = op->j->kind == FS_WALK ? WALK_GRACE_MS : 0;
	tasks_wait_init(&op->w, op->p.deadline > 0 ? op->p.deadline + grace : INT64_MAX);
	tasks_want(&op->w, tasks_offload_fd(o), POLLIN);
	return false;
}

/* Starts the job, after the one still running on its path, if any, has ended. */
static bool fs_op_start(struct fs_op *op)
{
	if (op->earlier) {
		if (!tasks_offload_done(op->earlier))
			return fs_op_wait(op, op->earlier);
		tasks_offload_release(op->earlier);
		op->earlier = NULL;
	}
	/* A walk's root is opened after any job on it, a walk of its kind left stuck there included. */
	struct offload *earlier = op->j->kind == FS_WALK ? NULL
	                        : busy_on(op->j->path, op->walk ? walk_busy_kind(op->walk) : BUSY_JOB);
	if (earlier) {   /* held: until this op looks again, another call may forget it */
		op->earlier = tasks_offload_retain(earlier);
		return fs_op_wait(op, op->earlier);
	}
	op->o = fsjob_start(op->j);
	if (op->o)
		return tasks_offload_done(op->o) ? fs_op_over(op, op->j->err) : fs_op_wait(op, op->o);
	/* No thread to be had (a pids limit reached): a walk can meet a hung mount anywhere below. */
	if (op->j->walk || may_hang(op->j->path))
		return fs_op_over(op, NO_WORKER);
	fsjob_run(op->j);
	return fs_op_over(op, op->j->err);
}

static bool fs_op_advance(void *p)
{
	struct fs_op *op = p;
	if (op->scan)
		return grep_scan_advance(op);
	if (!op->j)
		return fs_op_over(op, 0);
	if (op->w.result == SCHED_TIMEOUT && op->j->walk && op->o && tasks_offload_done(op->o))
		return fs_op_over(op, op->j->err);   /* a walk done as its grace ended: what it saw */
	if (op->w.result != SCHED_READY)
		return fs_op_over(op, op->w.result == SCHED_TIMEOUT ? ETIMEDOUT : EINTR);
	if (!op->o)
		return fs_op_start(op);
	return tasks_offload_done(op->o) ? fs_op_over(op, op->j->err) : fs_op_wait(op, op->o);
}

static int fs_op_done(lua_State *L, void *p)
{
	struct fs_op *op = p;
	return op->finish(L, op);
}

static void fs_op_release(void *p)
{
	struct fs_op *op = p;
	if (op->earlier)
		tasks_offload_release(op->earlier);
	if (op->j && op->j->walk) {
		walk_cancel(op->j->walk);   /* a walk nobody waits for any more stops, unless stuck */
		if (op->o && !tasks_offload_done(op->o))
			busy_add(op->j->path, op->o, walk_busy_kind(op->j->walk));
	}
	if (op->j)
		fsjob_done(op->o, op->j);
	if (op->walk)
		walk_free(op->walk);
	op->walk = NULL;
	if (op->scan)
		grep_scan_free(op->scan);   /* its helper killed, if still running */
	free(op->pattern);
	op->scan = NULL;
	op->pattern = NULL;
	op->earlier = op->o = NULL;
	op->j = NULL;
}

static const struct tasks_machine fs_op_machine = { fs_op_advance, fs_op_done, fs_op_release };


/* Pushes the op of the probe fn on target: a job of kind on path (NULL: none), then finish. The
 * caller sets the probe's own options and runs it (tasks_run_op). */
struct fs_op *fs_op_push(lua_State *L, const char *fn, const char *target, msec_t timeout_ms,
                         const char *path, enum fsjob_kind kind, int (*finish)(lua_State *L, struct fs_op *op))
{
	struct fs_op *op = tasks_push_op(L, sizeof *op, &fs_op_machine);
	probe_begin(&op->p, fn, target, timeout_ms);
	op->j = path ? fsjob_new(path, kind) : NULL;
	op->finish = finish;
	op->task = (struct tasks_op){ .machine = &fs_op_machine, .op = op, .w = &op->w };
	return op;
}

/* The fd the job opened, now the caller's. */
int fs_op_take_fd(struct fs_op *op)
{
	int fd = op->j->fd;
	op->j->fd = -1;
	return fd;
}
