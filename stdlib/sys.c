/*
 * sys.c - the machine itself (require "sys"): disks, memory, load, processes, logs.
 *
 *   sys.filesystems { all = false, network = false, timeout = 5 }   -> { fs, ... }
 *   sys.fs(path, { timeout = 5 })                                   -> fs
 *       fs = { mount, device, fstype, size, used, avail, used_pct, inodes, inodes_used,
 *              inodes_free, inodes_pct, readonly }                  (bytes; percentages as df)
 *   sys.largest(path, { depth = 1, limit = 10, timeout = 10, xdev = true, files = false })
 *       -> { entries = { {path, bytes, files} }, files = { {path, bytes} }?, total_bytes,
 *            unreadable, partial }
 *   sys.files(path, { pattern, older_than, min_size, recursive = true, xdev = true,
 *                     limit = 1000, timeout = 10 })
 *       -> { files = { {path, bytes, mtime, age} }, count, total_bytes, unreadable, partial }
 *   sys.deleted_open { path, timeout = 5, limit = 50 }
 *       -> { {pid, command, fd, path, bytes}, ..., unreadable = n, partial }
 *   sys.memory()  -> { total, available, used, free, buffers, cached, swap_total, swap_used,
 *                      swap_free, used_pct, swap_pct }
 *   sys.load()    -> { load1, load5, load15, cpus, per_cpu1, running, total_tasks, uptime }
 *   sys.processes { sort = "memory" | "cpu", limit = 10, sample = "250ms", match }
 *       -> { {pid, ppid, user, state, command, cmdline, rss, mem_pct, cpu_pct, threads, age}, ...,
 *            count = n }
 *   sys.tail(path, { lines = 50, timeout = 5 })        -> { lines = {...}, text, size, mtime, truncated }
 *   sys.grep(path, regex, { icase = false, limit = 100, timeout = 10 })
 *       -> { matches = { {line, text} }, count, lines, partial }
 *
 * A disk that is full is often a disk that is also slow, and a dead NFS server makes stat()
 * block in the kernel for minutes: everything that touches a path the operator named is bounded.
 * stat/statvfs/open of a path run in a worker thread the caller stops waiting for at the deadline
 * (inside parallel(), sys.fs, tail, grep and deleted_open yield meanwhile, and sys.processes during
 * its sample); tree walks stop at
 * their deadline and say partial = true. Ctrl-C ends a walk or a sample at once with
 * nil, "...: interrupted", "interrupted".
 */
#include "luax.h"
#include "modules.h"
#include "sched.h"
#include "tasks.h"
#include "users.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <limits.h>
#include <regex.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_FS_TIMEOUT_MS    5000
#define DEFAULT_WALK_TIMEOUT_MS  10000
#define DEFAULT_PROC_TIMEOUT_MS  5000
#define DEFAULT_SAMPLE_MS        250
#define MAX_TEXT_LINE            4096      /* longer log lines are cut: a terminal is no place for them */
#define TAIL_MAX_SCAN            (16 << 20)

/* ------------------------------------------------------------------------------ common helpers */

/* One call of a sys primitive: what it looked at, its deadline and its clock, for the audit. */
struct probe {
	const char *fn;
	const char *target;
	msec_t timeout_ms, deadline;
	double t0;
};

static void probe_begin(struct probe *p, const char *fn, const char *target, msec_t timeout_ms)
{
	p->fn = fn;
	p->target = target;
	/* timeout = 0: no deadline of its own, but --timeout still caps it */
	p->timeout_ms = timeout_ms > 0 || sched_cap() == 0 ? timeout_ms : sched_cap();
	p->deadline = p->timeout_ms > 0 ? sched_deadline(p->timeout_ms) : 0;
	p->t0 = sched_now_precise();
}

static void probe_end(const struct probe *p, const char *outcome, const char *summary)
{
	luax_audit_probe(p->fn, p->target, p->timeout_ms, sched_now_precise() - p->t0, outcome, summary);
}

/* Not an errno: the worker that would bound a call could not be started (fs_op_start). */
#define NO_WORKER (-1)

static const char *errno_kind(int err)
{
	switch (err) {
	case ENOENT: case ENOTDIR: return "notfound";
	case EACCES: case EPERM:   return "permission";
	case ETIMEDOUT:            return "timeout";
	case EINTR:                return "interrupted";
	default:                   return "error";
	}
}

static const char *errno_cause(int err)
{
	switch (err) {
	case ENOENT:    return "no such file or directory";
	case ENOTDIR:   return "not a directory";
	case EACCES:    return "permission denied";
	case EPERM:     return "operation not permitted";
	case ETIMEDOUT: return "timed out (is a network filesystem hanging?)";
	case EINTR:     return "interrupted";
	case NO_WORKER: return "no thread could be started to run it safely (the process or user limit on "
	                       "threads reached? see ulimit -u and the pids cgroup)";
	default:        return strerror(err);
	}
}

/* Audits the failure and pushes nil, "<fn> <target>: <cause>", kind. */
static int probe_fail_errno(lua_State *L, const struct probe *p, int err)
{
	probe_end(p, errno_kind(err), errno_cause(err));
	return luax_fail(L, errno_kind(err), "%s %s: %s", p->fn, p->target, errno_cause(err));
}

/* Returns 0, or ETIMEDOUT / EINTR when the walk or wait must stop. */
static int probe_check(const struct probe *p)
{
	if (sched_interrupted())
		return EINTR;
	if (p->deadline && sched_now() >= p->deadline)
		return ETIMEDOUT;
	return 0;
}

static double pct(double part, double whole)
{
	return whole > 0 ? part * 100.0 / whole : 0.0;
}

/* Rounds to one decimal: 93.4 reads better than 93.41176470588235 and compares the same way. */
static double round1(double v)
{
	return (double)(long long)(v * 10.0 + 0.5) / 10.0;
}

static void *xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n);
	if (!q && n)
		abort();
	return q;
}

static char *xstrdup(const char *s)
{
	char *d = strdup(s);
	if (!d)
		abort();
	return d;
}

/* Grows *v (of *cap elements of size sz) to hold at least n elements. */
static void grow(void **v, size_t *cap, size_t n, size_t sz)
{
	if (n <= *cap)
		return;
	size_t c = *cap ? *cap * 2 : 16;
	while (c < n)
		c *= 2;
	*v = xrealloc(*v, c * sz);
	*cap = c;
}

/* qsort, which must not be given the NULL of an empty vector. */
static void sort_array(void *v, size_t n, size_t size, int (*cmp)(const void *, const void *))
{
	if (n > 1)
		qsort(v, n, size, cmp);
}

/* Reads a whole small file (/proc, /sys) into buf; returns its length or -1 with errno set. */
static ssize_t read_small(const char *path, char *buf, size_t size)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	errno = 0;   /* an empty file leaves it so, not with an earlier call's */
	size_t len = 0;
	while (len + 1 < size) {
		ssize_t n = read(fd, buf + len, size - 1 - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	int saved = errno;
	close(fd);
	errno = saved;
	buf[len] = '\0';
	return (ssize_t)len;
}

/* ------------------------------------------------------------------ bounded filesystem calls */

/*
 * stat() and statvfs() of a path on a hung NFS or FUSE mount block in the kernel, where no
 * signal reaches them. They run in a worker thread (tasks_offload) that the caller stops
 * waiting for at the deadline: a stuck worker costs one small job and one thread, not the run.
 */
/* -> vfs; vfs and real; st; fd and st; fd, st and real; walk (given an FS_OPENDIR's fd, st, real) */
enum fsjob_kind { FS_STATVFS, FS_STATVFS_REAL, FS_STAT, FS_OPEN, FS_OPENDIR, FS_WALK };

struct walk;
static int walk_run(struct walk *w, const char *root, int fd, const struct stat *st, const char *real);
static enum busy_kind walk_busy_kind(const struct walk *w);
static void walk_cancel(struct walk *w);
static void walk_free(struct walk *w);

struct fsjob {
	char *path;
	enum fsjob_kind kind;
	int err;
	struct statvfs vfs;
	char *real;
	int fd;                   /* handed over, or closed with the job when nobody waits any more */
	struct stat st;
	struct walk *walk;        /* FS_WALK: the walk, its results, and the flag that stops it */
};

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

static void fsjob_free(void *arg)
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

static struct fsjob *fsjob_new(const char *path, enum fsjob_kind kind)
{
	struct fsjob *j = calloc(1, sizeof *j);
	if (!j)
		abort();
	j->path = xstrdup(path);
	j->kind = kind;
	j->fd = -1;
	return j;
}

static bool may_hang(const char *path);

/*
 * The jobs running, by path. A call on a path where one still runs waits for it before it starts
 * its own: a probe polled every few seconds on a dead NFS mount (wait_until), or twenty parallel()
 * tasks on one path, would otherwise each leave a thread and its pipe blocked there, until the
 * process runs out of file descriptors. Each entry holds a reference to its job. A walk is known
 * only once its caller has stopped waiting for it (stuck past its deadline, say), by its root, and
 * only to the walks that come after it: a walk taking its time holds up no other probe.
 */
enum busy_kind { BUSY_JOB, BUSY_WALK, BUSY_WALK_FOLLOWING };   /* the walks: by whether they follow links */
static struct busy { char *path; struct offload *o; enum busy_kind kind; msec_t since; } *busy;
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
static const struct busy *busy_find(const char *path, enum busy_kind kind)
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
static struct offload *fsjob_start(struct fsjob *j)
{
	struct offload *o = tasks_offload(fsjob_run, j, fsjob_free);
	if (o && j->kind != FS_WALK)
		busy_add(j->path, o, BUSY_JOB);
	return o;
}

/* The caller is done with j, run by o (NULL: it ran here, or never). */
static void fsjob_done(struct offload *o, struct fsjob *j)
{
	if (o)
		tasks_offload_release(o);   /* the worker frees j when it is done too */
	else
		fsjob_free(j);
}

/*
 * The probes on one path (sys.fs, sys.tail, sys.grep, sys.deleted_open) wait for their fsjob as an
 * op (interp/tasks.h): inside parallel() the task yields while the worker works, so a path on a hung
 * mount costs its own task the deadline, not the other tasks theirs. The rest of the probe (reading
 * the file the worker opened) is its finish.
 */
struct fs_op {
	struct sched_waiter w;
	struct tasks_op task;
	struct probe p;
	struct fsjob *j;           /* NULL: nothing to wait for */
	struct offload *o;         /* j's worker, once started */
	struct offload *earlier;   /* a job still running on the same path, waited for first */
	int err;                   /* 0 (read j), the job's errno, ETIMEDOUT, EINTR, NO_WORKER */
	int (*finish)(lua_State *L, struct fs_op *op);
	/* the probe's own options */
	struct walk *walk;         /* largest, files: the walk to run once its root is open */
	int (*walked)(lua_State *L, struct fs_op *op, const struct walk *w);   /* its results */
	lua_Integer count;         /* tail: lines; grep, deleted_open: limit */
	regex_t re;                /* grep */
	bool compiled;
};


static bool fs_op_over(struct fs_op *op, int err)
{
	op->err = err;
	return true;
}

/* A walk stops at its deadline on its own and reports what it has seen: it is waited for a little
 * longer, and only a walk stuck in the kernel (a disk that does not answer) ends in a timeout. */
#define WALK_GRACE_MS 150

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
	if (op->compiled)
		regfree(&op->re);
	op->earlier = op->o = NULL;
	op->j = NULL;
	op->compiled = false;
}

static const struct tasks_machine fs_op_machine = { fs_op_advance, fs_op_done, fs_op_release };


/* Pushes the op of the probe fn on target: a job of kind on path (NULL: none), then finish. The
 * caller sets the probe's own options and runs it (tasks_run_op). */
static struct fs_op *fs_op_push(lua_State *L, const char *fn, const char *target, msec_t timeout_ms,
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
static int fs_op_take_fd(struct fs_op *op)
{
	int fd = op->j->fd;
	op->j->fd = -1;
	return fd;
}

/* ------------------------------------------------------------------------------------ mounts */

struct mount {
	char *dir, *fstype, *source;
	unsigned devmajor, devminor;
	size_t order;             /* its line in mountinfo: a later mount is on top of an earlier one */
};

struct mounts {
	struct mount *v;
	size_t n, cap;
};

/* mountinfo escapes space, tab, newline and backslash as \ooo. */
static void unescape_octal(char *s)
{
	char *w = s;
	for (char *r = s; *r; r++) {
		if (r[0] == '\\' && r[1] >= '0' && r[1] <= '3' && r[2] >= '0' && r[2] <= '7' && r[3] >= '0' && r[3] <= '7') {
			*w++ = (char)((r[1] - '0') * 64 + (r[2] - '0') * 8 + (r[3] - '0'));
			r += 3;
		} else {
			*w++ = *r;
		}
	}
	*w = '\0';
}

/* "36 35 98:0 /root /mnt rw,noatime shared:1 - ext4 /dev/sda1 rw" */
static bool parse_mountinfo_line(char *line, struct mount *m)
{
	char *fields[32];
	int n = 0;
	for (char *save = NULL, *f = strtok_r(line, " \n", &save); f && n < 32; f = strtok_r(NULL, " \n", &save))
		fields[n++] = f;
	int dash = -1;
	for (int i = 6; i < n; i++)
		if (strcmp(fields[i], "-") == 0) {
			dash = i;
			break;
		}
	if (n < 6 || dash < 0 || dash + 2 >= n)
		return false;
	if (sscanf(fields[2], "%u:%u", &m->devmajor, &m->devminor) != 2)
		return false;
	unescape_octal(fields[4]);
	unescape_octal(fields[dash + 2]);
	m->dir = xstrdup(fields[4]);
	m->fstype = xstrdup(fields[dash + 1]);
	m->source = xstrdup(fields[dash + 2]);
	return true;
}

static int read_mounts(struct mounts *ms)
{
	FILE *f = fopen("/proc/self/mountinfo", "re");
	if (!f)
		return errno;
	char *line = NULL;
	size_t cap = 0;
	while (getline(&line, &cap, f) > 0) {
		struct mount m;
		if (!parse_mountinfo_line(line, &m))
			continue;
		grow((void **)&ms->v, &ms->cap, ms->n + 1, sizeof *ms->v);
		m.order = ms->n;
		ms->v[ms->n++] = m;
	}
	free(line);
	fclose(f);
	return 0;
}

static void free_mounts(struct mounts *ms)
{
	for (size_t i = 0; i < ms->n; i++) {
		free(ms->v[i].dir);
		free(ms->v[i].fstype);
		free(ms->v[i].source);
	}
	free(ms->v);
	*ms = (struct mounts){ 0 };
}

/* A filesystem whose server can vanish, making stat() hang: only looked at when asked. */
static bool is_network_fs(const char *type)
{
	static const char *const net[] = {
		"nfs", "nfs4", "cifs", "smb3", "smbfs", "ncpfs", "afs", "9p", "ceph", "glusterfs",
		"lustre", "gpfs", "davfs", "sshfs", NULL,
	};
	for (const char *const *t = net; *t; t++)
		if (strcmp(type, *t) == 0)
			return true;
	return strncmp(type, "fuse.", 5) == 0;
}

/* A file system whose answers come from a server or a daemon (network, FUSE but fuseblk, autofs):
 * a stat() on it hangs when that is gone, so walks never step into one. */
static bool served_fs(const char *type)
{
	return is_network_fs(type) || strcmp(type, "fuse") == 0 || strcmp(type, "autofs") == 0;
}

/* Kernel bookkeeping, and images that are full by construction (snaps, CDs): not disks to watch. */
static bool is_pseudo_fs(const char *type)
{
	static const char *const pseudo[] = {
		"proc", "sysfs", "cgroup", "cgroup2", "devpts", "mqueue", "debugfs", "tracefs",
		"securityfs", "pstore", "bpf", "configfs", "fusectl", "hugetlbfs", "autofs",
		"binfmt_misc", "nsfs", "rpc_pipefs", "efivarfs", "selinuxfs", "squashfs", "iso9660",
		"ramfs", NULL,
	};
	for (const char *const *t = pseudo; *t; t++)
		if (strcmp(type, *t) == 0)
			return true;
	return false;
}

/* The mount holding the canonical path: the longest mount point that is a path prefix of it. */
static const struct mount *mount_of(const struct mounts *ms, const char *real)
{
	const struct mount *best = NULL;
	size_t bestlen = 0;
	for (size_t i = 0; i < ms->n; i++) {
		const char *d = ms->v[i].dir;
		size_t len = strlen(d);
		bool prefix = strcmp(d, "/") == 0 ||
		              (strncmp(real, d, len) == 0 && (real[len] == '/' || real[len] == '\0'));
		if (prefix && len >= bestlen) {   /* >=: a later entry is mounted over an earlier one */
			best = &ms->v[i];
			bestlen = len;
		}
	}
	return best;
}

/* Whether path (as given: no realpath, which could hang itself) lies on a served file system. */
static bool may_hang(const char *path)
{
	char abs[2 * PATH_MAX + 2], cwd[PATH_MAX];
	if (path[0] != '/' && getcwd(cwd, sizeof cwd))
		snprintf(abs, sizeof abs, "%s/%.*s", cwd, PATH_MAX, path);
	else
		snprintf(abs, sizeof abs, "%.*s", PATH_MAX, path);
	struct mounts ms = { 0 };
	const struct mount *m = read_mounts(&ms) == 0 ? mount_of(&ms, abs) : NULL;
	bool served = !m || served_fs(m->fstype);
	free_mounts(&ms);
	return served;
}

static void push_fs(lua_State *L, const struct mount *m, const struct statvfs *v)
{
	double frsize = (double)v->f_frsize;
	double size = (double)v->f_blocks * frsize;
	double avail = (double)v->f_bavail * frsize;
	double used = size - (double)v->f_bfree * frsize;
	double inodes = (double)v->f_files, ifree = (double)v->f_ffree;
	lua_createtable(L, 0, 12);
	luax_setstr(L, "mount", m->dir);
	luax_setstr(L, "device", m->source);
	luax_setstr(L, "fstype", m->fstype);
	luax_setint(L, "size", (lua_Integer)size);
	luax_setint(L, "used", (lua_Integer)used);
	luax_setint(L, "avail", (lua_Integer)avail);
	/* As df: the share of what non-root users can have, so reserved blocks make 100% reachable. */
	luax_setnum(L, "used_pct", round1(pct(used, used + avail)));
	luax_setint(L, "inodes", (lua_Integer)inodes);
	luax_setint(L, "inodes_used", (lua_Integer)(inodes - ifree));
	luax_setint(L, "inodes_free", (lua_Integer)ifree);
	luax_setnum(L, "inodes_pct", round1(pct(inodes - ifree, inodes)));
	luax_setbool(L, "readonly", (v->f_flag & ST_RDONLY) != 0);
}

static void summarize_fs(char *buf, size_t n, const struct mount *m, const struct statvfs *v)
{
	double used = (double)(v->f_blocks - v->f_bfree), avail = (double)v->f_bavail;
	snprintf(buf, n, "%s %.1f%% used, inodes %.1f%%", m->dir, pct(used, used + avail),
	         pct((double)(v->f_files - v->f_ffree), (double)v->f_files));
}

static const char *const fs_options[] = { "timeout", NULL };

static int fs_finish(lua_State *L, struct fs_op *op)
{
	if (op->err)
		return probe_fail_errno(L, &op->p, op->err);
	struct mounts ms = { 0 };
	int err = read_mounts(&ms);
	const struct mount *m = err ? NULL : mount_of(&ms, op->j->real);
	if (!m) {
		free_mounts(&ms);
		return probe_fail_errno(L, &op->p, err ? err : ENOENT);
	}
	char summary[PATH_MAX + 64];
	summarize_fs(summary, sizeof summary, m, &op->j->vfs);
	probe_end(&op->p, "ok", summary);
	push_fs(L, m, &op->j->vfs);
	free_mounts(&ms);
	return 1;
}

static int sys_fs(lua_State *L)
{
	const char *path = luaL_checkstring(L, 1);
	luax_check_options(L, 2, "sys.fs", fs_options);
	msec_t timeout = luax_opt_duration(L, 2, "timeout", DEFAULT_FS_TIMEOUT_MS, "sys.fs");
	struct fs_op *op = fs_op_push(L, "sys.fs", path, timeout, path, FS_STATVFS_REAL, fs_finish);
	return tasks_run_op(L, &op->task);
}

static const char *const filesystems_options[] = { "all", "network", "timeout", NULL };

static bool seen_device(const struct mounts *ms, size_t upto, const struct mount *m)
{
	for (size_t i = 0; i < upto; i++)
		if (ms->v[i].devmajor == m->devmajor && ms->v[i].devminor == m->devminor)
			return true;
	return false;
}

/* A filesystem to report, and the worker asking its server when it has one. */
enum answer { ANSWERED, FAILED, SILENT };

struct fs_ask {
	const struct mount *m;
	bool served;
	struct fsjob *j;
	struct offload *o;
	struct offload *earlier;   /* a job still running on the mount point, waited for first */
	enum answer got;
	struct statvfs v;
};

/* Starts a worker asking the server of a's filesystem, after the job still running there, if any,
 * unless that one has been at it for longer than timeout_ms (0: no limit) already: then the server
 * is taken for hung, rather than waited for again. */
static void ask_server(struct fs_ask *a, msec_t timeout_ms)
{
	const struct busy *b = busy_find(a->m->dir, BUSY_JOB);
	if (b && timeout_ms > 0 && sched_now() - b->since >= timeout_ms)
		return;   /* neither a job nor one to wait for: unanswered */
	if (b) {
		a->earlier = tasks_offload_retain(b->o);
		return;
	}
	a->j = fsjob_new(a->m->dir, FS_STATVFS);
	if (!(a->o = fsjob_start(a->j))) {
		fsjob_free(a->j);
		a->j = NULL;
	}
}

/* The jobs a waits for, if any, are left to end on their own. */
static void forget_ask(struct fs_ask *a)
{
	if (a->j)
		fsjob_done(a->o, a->j);
	if (a->earlier)
		tasks_offload_release(a->earlier);
	a->j = NULL;
	a->o = a->earlier = NULL;
}

static void answered(struct fs_ask *a, enum answer got)
{
	a->got = got;
	if (got == ANSWERED && a->j)
		a->v = a->j->vfs;
	forget_ask(a);
}

/* Servers asked at once, at most: each ask is a thread and a pipe. */
#define MAX_ASKING 32

/*
 * Local filesystems are asked in the caller's thread; the served ones (network, FUSE) by workers,
 * up to MAX_ASKING at once and all until the one deadline, so that a server that is gone costs the
 * deadline once and does not leave the filesystems after it unanswered too. The answers are waited
 * for in order, as an op: inside parallel() the task yields meanwhile.
 */
struct filesystems_op {
	struct sched_waiter w;
	struct tasks_op task;
	struct probe p;
	bool all;
	struct mounts ms;
	struct fs_ask *asks;
	size_t n, next, asked;     /* next: the first without its answer; asked: the workers started */
	bool interrupted;
};


/* True when a has its answer; else the waiter is set for the job it waits for. */
static bool ask_answered(struct filesystems_op *op, struct fs_ask *a)
{
	if (!a->served) {
		a->got = statvfs(a->m->dir, &a->v) == 0 ? ANSWERED : FAILED;
		return true;
	}
	bool late = op->p.deadline && sched_now() >= op->p.deadline;
	if (a->earlier && tasks_offload_done(a->earlier)) {
		const struct fsjob *e = tasks_offload_arg(a->earlier);
		if (e->kind == FS_STATVFS && strcmp(e->path, a->m->dir) == 0) {   /* the same question */
			a->got = e->err ? FAILED : ANSWERED;
			a->v = e->vfs;
			forget_ask(a);
			return true;
		}
		tasks_offload_release(a->earlier);
		a->earlier = NULL;
		if (!late)
			ask_server(a, op->p.timeout_ms);
	}
	struct offload *on = a->earlier ? a->earlier : a->o;
	if (!on)
		answered(a, SILENT);   /* hung from before, or no thread was to be had */
	else if (on == a->o && tasks_offload_done(a->o))
		answered(a, a->j->err ? FAILED : ANSWERED);
	else if (late)
		answered(a, SILENT);   /* a hung server: counted, rather than waited for */
	else {
		tasks_wait_init(&op->w, op->p.deadline ? op->p.deadline : INT64_MAX);
		tasks_want(&op->w, tasks_offload_fd(on), POLLIN);
		return false;
	}
	return true;
}

static bool filesystems_advance(void *p)
{
	struct filesystems_op *op = p;
	if (op->w.result == SCHED_INTERRUPTED) {
		op->interrupted = true;
		return true;
	}
	for (; op->next < op->n; op->next++) {
		for (; op->asked < op->n && op->asked < op->next + MAX_ASKING; op->asked++)
			if (op->asks[op->asked].served)
				ask_server(&op->asks[op->asked], op->p.timeout_ms);
		if (!ask_answered(op, &op->asks[op->next]))
			return false;
	}
	return true;
}

static int filesystems_done(lua_State *L, void *p)
{
	struct filesystems_op *op = p;
	if (op->interrupted)
		return probe_fail_errno(L, &op->p, EINTR);
	lua_createtable(L, (int)op->n, 0);
	int n = 0, silent = 0;
	for (size_t i = 0; i < op->n; i++) {
		const struct fs_ask *a = &op->asks[i];
		silent += a->got == SILENT;
		if (a->got != ANSWERED || (!op->all && a->v.f_blocks == 0))
			continue;
		push_fs(L, a->m, &a->v);
		lua_rawseti(L, -2, ++n);
	}
	char summary[96];
	snprintf(summary, sizeof summary, "%d filesystems%s", n, silent ? ", some with a server did not answer" : "");
	probe_end(&op->p, silent ? "partial" : "ok", summary);
	if (silent) {
		lua_pushinteger(L, silent);
		lua_setfield(L, -2, "unanswered");
	}
	return 1;
}

static void filesystems_release(void *p)
{
	struct filesystems_op *op = p;
	for (size_t i = 0; op->asks && i < op->n; i++)
		forget_ask(&op->asks[i]);
	free(op->asks);
	op->asks = NULL;
	op->n = 0;
	free_mounts(&op->ms);
}

static const struct tasks_machine filesystems_machine = { filesystems_advance, filesystems_done, filesystems_release };


static int sys_filesystems(lua_State *L)
{
	luax_check_options(L, 1, "sys.filesystems", filesystems_options);
	bool all = luax_opt_bool(L, 1, "all", false, "sys.filesystems");
	bool network = luax_opt_bool(L, 1, "network", false, "sys.filesystems") || all;
	msec_t timeout = luax_opt_duration(L, 1, "timeout", DEFAULT_FS_TIMEOUT_MS, "sys.filesystems");
	struct filesystems_op *op = tasks_push_op(L, sizeof *op, &filesystems_machine);
	op->task = (struct tasks_op){ .machine = &filesystems_machine, .op = op, .w = &op->w };
	op->all = all;
	probe_begin(&op->p, "sys.filesystems", all ? "all" : network ? "local+network" : "local", timeout);
	int err = read_mounts(&op->ms);
	if (err)
		return probe_fail_errno(L, &op->p, err);
	op->asks = calloc(op->ms.n ? op->ms.n : 1, sizeof *op->asks);
	if (!op->asks)
		abort();
	for (size_t i = 0; i < op->ms.n; i++) {
		const struct mount *m = &op->ms.v[i];
		if ((is_network_fs(m->fstype) && !network) ||
		    (!all && (is_pseudo_fs(m->fstype) || seen_device(&op->ms, i, m))))
			continue;
		op->asks[op->n++] = (struct fs_ask){ .m = m, .served = served_fs(m->fstype) };
	}
	return tasks_run_op(L, &op->task);
}

/* -------------------------------------------------------------------------------- tree walks */

/*
 * An iterative walk (a deep tree cannot blow the C stack) that holds one directory fd per level
 * and looks at entries with fstatat relative to it, so paths never have to be re-resolved and a
 * symlink is never followed into another tree. The callbacks see the entry's full path in
 * w->path and its depth below the root (the root's entries have depth 1).
 *
 * It runs in a worker (an FS_WALK job, after an FS_OPENDIR job opened its root): inside parallel()
 * the task yields meanwhile, and a stat() that never returns (a disk that stopped answering, a
 * symlink followed onto a hung mount) holds the worker, not the run. It stops by itself at its
 * deadline, and when its caller stops waiting (Ctrl-C) at the next check.
 */
typedef int (*walk_dir_fn)(struct walk *w, const struct stat *st, int depth);
typedef void (*walk_file_fn)(struct walk *w, const struct stat *st, int depth);

struct frame {
	DIR *dir;
	size_t len;   /* length of this directory's path in w->path */
	int node;     /* what on_dir returned for it (largest: its aggregate) */
};

#define WALK_MAX_DEPTH 256   /* one fd per level: stay far from RLIMIT_NOFILE */

/* What a walk does: given by its probe (walk_run_op). */
struct walk_how {
	bool xdev, recursive;
	bool follows;              /* sys.files follow = true: stats symlinks' targets */
	walk_dir_fn on_dir;
	walk_file_fn on_file;
	void *ctx;                 /* the probe's results, freed by free_ctx with the walk */
	void (*free_ctx)(void *ctx);
};

struct walk {
	struct walk_how how;
	msec_t deadline;           /* 0: none */
	atomic_bool cancelled;     /* set by the caller that stops waiting */
	/* state */
	dev_t dev;
	char *path;
	size_t len, cap;
	struct frame *stack;
	size_t depth, stack_cap;
	int at;                  /* the fd of the directory holding the current entry */
	const char *name;        /* the current entry's name in it */
	long unreadable;
	int stop;                /* 0, ETIMEDOUT (partial) or EINTR */
	char **unvisited;        /* at a deadline: the root's subdirectories the walk never reached */
	size_t nunvisited, unvisited_cap;
	size_t rootlen;          /* of the root's path in w->path */
	struct mounts below;     /* the mounts under the root, their dir relative to it */
	char **skipped;          /* mount points not walked: network or FUSE file systems */
	size_t nskipped, skipped_cap;
};

static void add_path(char ***v, size_t *n, size_t *cap, const char *path)
{
	grow((void **)v, cap, *n + 1, sizeof **v);
	(*v)[(*n)++] = xstrdup(path);
}

/* By directory, then by order: the last of a run of equal directories is the one on top. */
static int by_dir(const void *a, const void *b)
{
	const struct mount *x = a, *y = b;
	int c = strcmp(x->dir, y->dir);
	return c ? c : (x->order > y->order) - (x->order < y->order);
}

/*
 * The mounts under the root (real: its canonical path), from /proc/self/mountinfo, their dir made
 * relative to the root, sorted, one a directory (the one on top): a mount point is then known by
 * its path, without a stat() that a file system whose server is gone would never answer.
 */
static void find_mounts_below(struct walk *w, const char *real)
{
	struct mounts all = { 0 };
	if (!real || read_mounts(&all) != 0) {
		free_mounts(&all);
		return;
	}
	size_t rl = strcmp(real, "/") == 0 ? 0 : strlen(real);
	for (size_t i = 0; i < all.n; i++) {
		struct mount *m = &all.v[i];
		if (strncmp(m->dir, real, rl) != 0 || m->dir[rl] != '/' || !m->dir[rl + 1])
			continue;
		grow((void **)&w->below.v, &w->below.cap, w->below.n + 1, sizeof *w->below.v);
		struct mount *b = &w->below.v[w->below.n++];
		*b = *m;
		b->dir = xstrdup(m->dir + rl + 1);
		m->fstype = m->source = NULL;   /* moved */
	}
	free_mounts(&all);
	sort_array(w->below.v, w->below.n, sizeof *w->below.v, by_dir);
	size_t kept = 0;
	for (size_t i = 0; i < w->below.n; i++) {
		struct mount *m = &w->below.v[i];
		if (i + 1 < w->below.n && strcmp(m->dir, w->below.v[i + 1].dir) == 0) {
			free(m->dir);
			free(m->fstype);
			free(m->source);
			continue;
		}
		w->below.v[kept++] = *m;
	}
	w->below.n = kept;
}

static int dir_is(const void *key, const void *elem)
{
	return strcmp(key, ((const struct mount *)elem)->dir);
}

/* Whether to leave out the current entry, if it is a mount point (a directory, or a file bound
 * over one): a network or FUSE file system is never walked (its server may be gone, and every
 * stat() with it), and with xdev another device is not. */
static bool leave_mount(struct walk *w)
{
	const char *rel = w->path + w->rootlen + (w->path[w->rootlen] == '/');
	const struct mount *m = w->below.n ? bsearch(rel, w->below.v, w->below.n, sizeof *w->below.v, dir_is) : NULL;
	if (!m)
		return false;
	if (served_fs(m->fstype)) {
		if (w->nskipped < 64)
			add_path(&w->skipped, &w->nskipped, &w->skipped_cap, w->path);
		return true;
	}
	return w->how.xdev && makedev(m->devmajor, m->devminor) != w->dev;
}

static void path_put(struct walk *w, size_t base, const char *name)
{
	size_t n = strlen(name);
	bool slash = base > 0 && w->path[base - 1] != '/';
	grow((void **)&w->path, &w->cap, base + slash + n + 1, 1);
	w->len = base;
	if (slash)
		w->path[w->len++] = '/';
	memcpy(w->path + w->len, name, n + 1);
	w->len += n;
}

static int walk_push(struct walk *w, int fd, int node)
{
	DIR *d = fdopendir(fd);
	if (!d) {
		int e = errno;
		close(fd);
		return e;
	}
	grow((void **)&w->stack, &w->stack_cap, w->depth + 1, sizeof *w->stack);
	w->stack[w->depth++] = (struct frame){ .dir = d, .len = w->len, .node = node };
	return 0;
}

static void walk_descend(struct walk *w, int node)
{
	if (w->depth >= WALK_MAX_DEPTH) {
		w->unreadable++;
		return;
	}
	int fd = openat(w->at, w->name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0 || walk_push(w, fd, node) != 0)
		w->unreadable++;
}

static void walk_entry(struct walk *w, const struct frame *f, const char *name)
{
	struct stat st;
	path_put(w, f->len, name);
	w->at = dirfd(f->dir);
	w->name = name;
	if (w->below.n && leave_mount(w))
		return;
	if (fstatat(w->at, name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
		w->unreadable++;
		return;
	}
	int depth = (int)w->depth;
	if (!S_ISDIR(st.st_mode)) {
		if (w->how.on_file)
			w->how.on_file(w, &st, depth);
		return;
	}
	if (w->how.xdev && st.st_dev != w->dev)
		return;
	int node = w->how.on_dir ? w->how.on_dir(w, &st, depth) : -1;
	if (w->how.recursive)
		walk_descend(w, node);
}

/*
 * A walk cut short by its deadline reports sizes that are lower bounds; the directories under the
 * root it never reached are named, so that nobody concludes /var is small because it was not seen.
 */
static void note_unvisited(struct walk *w)
{
	const struct frame *root = &w->stack[0];
	/* Within half the grace, so that the caller, still waiting, gets what the walk saw. */
	msec_t end = w->deadline ? w->deadline + WALK_GRACE_MS / 2 : INT64_MAX;
	for (struct dirent *de; w->nunvisited < 64 && !atomic_load(&w->cancelled) && sched_now() < end &&
	                        (de = readdir(root->dir));) {
		struct stat st;
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if (de->d_type != DT_DIR && (de->d_type != DT_UNKNOWN ||
		    fstatat(dirfd(root->dir), de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISDIR(st.st_mode)))
			continue;
		path_put(w, root->len, de->d_name);
		add_path(&w->unvisited, &w->nunvisited, &w->unvisited_cap, w->path);
	}
}

/* 0, or ETIMEDOUT / EINTR when the walk must stop. */
static int walk_check(struct walk *w)
{
	if (atomic_load(&w->cancelled))
		return EINTR;
	return w->deadline && sched_now() >= w->deadline ? ETIMEDOUT : 0;
}

/* Walks root, whose directory fd (the walk's now), stat and canonical path are given; returns 0
 * (w->stop tells whether it ended early) or an errno. */
static int walk_run(struct walk *w, const char *root, int fd, const struct stat *st, const char *real)
{
	w->dev = st->st_dev;
	path_put(w, 0, root);
	while (w->len > 1 && w->path[w->len - 1] == '/')
		w->path[--w->len] = '\0';
	w->rootlen = w->len;
	find_mounts_below(w, real);
	int e = walk_push(w, fd, -1);
	if (e)
		return e;
	while (w->depth > 0) {
		if ((w->stop = walk_check(w)))
			break;
		struct frame *f = &w->stack[w->depth - 1];
		errno = 0;
		struct dirent *de = readdir(f->dir);
		if (!de) {
			if (errno)
				w->unreadable++;
			closedir(f->dir);
			w->depth--;
			continue;
		}
		if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
			walk_entry(w, f, de->d_name);
	}
	if (w->stop == ETIMEDOUT)
		note_unvisited(w);
	while (w->depth > 0)
		closedir(w->stack[--w->depth].dir);
	return 0;
}

static void walk_cancel(struct walk *w)
{
	atomic_store(&w->cancelled, true);
}

/* A walk stuck on a symlink's target says nothing of walks that follow none. */
static enum busy_kind walk_busy_kind(const struct walk *w)
{
	return w->how.follows ? BUSY_WALK_FOLLOWING : BUSY_WALK;
}

static void walk_free(struct walk *w)
{
	if (w->how.free_ctx)
		w->how.free_ctx(w->how.ctx);
	for (size_t i = 0; i < w->nunvisited; i++)
		free(w->unvisited[i]);
	free(w->unvisited);
	for (size_t i = 0; i < w->nskipped; i++)
		free(w->skipped[i]);
	free(w->skipped);
	free_mounts(&w->below);
	free(w->path);
	free(w->stack);
	free(w);
}

/* t[field] = { paths... } on the table on top of the stack. */
static void push_paths(lua_State *L, const char *field, char **v, size_t n)
{
	lua_createtable(L, (int)n, 0);
	for (size_t i = 0; i < n; i++) {
		lua_pushstring(L, v[i]);
		lua_rawseti(L, -2, (lua_Integer)i + 1);
	}
	lua_setfield(L, -2, field);
}

/* The walk's second stage, once an FS_OPENDIR job has opened its root: the walk, in its own job. */
static int walk_finish(lua_State *L, struct fs_op *op);

static int walk_start(lua_State *L, struct fs_op *op)
{
	if (op->err)
		return probe_fail_errno(L, &op->p, op->err);
	struct fsjob *j = fsjob_new(op->j->path, FS_WALK);
	j->st = op->j->st;
	j->real = op->j->real;
	op->j->real = NULL;
	j->fd = fs_op_take_fd(op);
	fsjob_done(op->o, op->j);
	j->walk = op->walk;
	j->walk->deadline = op->p.deadline;
	op->walk = NULL;
	op->j = j;
	op->o = NULL;
	op->finish = walk_finish;
	op->w.result = SCHED_READY;   /* the first stage's wait ended so; fs_op_advance starts the job */
	return TASKS_AGAIN;
}

/* The walk's end: its failure, or the wait's (the walk is then still the worker's, stuck in the
 * kernel or stopping after Ctrl-C, and must not be touched); else its results, by op->walked. */
static int walk_finish(lua_State *L, struct fs_op *op)
{
	int err = op->err ? op->err : op->j->walk->stop == EINTR ? EINTR : 0;
	return err ? probe_fail_errno(L, &op->p, err) : op->walked(L, op, op->j->walk);
}

/* Pushes the op of a walk of path by the probe fn; walked pushes what it found. The caller then
 * says what the walk does (op->walk->how: its callbacks, and results which free_ctx frees with the
 * walk; allocated after the push, so that nothing is lost if the push raises) and runs it. */
static struct fs_op *walk_op_push(lua_State *L, const char *fn, const char *path, msec_t timeout_ms,
                                  int (*walked)(lua_State *L, struct fs_op *op, const struct walk *w))
{
	struct fs_op *op = fs_op_push(L, fn, path, timeout_ms, path, FS_OPENDIR, walk_start);
	op->walk = calloc(1, sizeof *op->walk);
	if (!op->walk)
		abort();
	atomic_init(&op->walk->cancelled, false);
	op->walked = walked;
	return op;
}

/* ----------------------------------------------------------------------------- sys.largest */

struct node {
	char *path;
	uint64_t bytes, files;
};

struct largest {
	int maxdepth;
	struct node *v;
	size_t n, cap;
	uint64_t total, total_files;
	bool want_files;
	struct node *top;      /* the largest files anywhere, when want_files */
	size_t ntop, limit;
};

/* Disk usage as du counts it: allocated blocks, not the apparent size. */
static uint64_t usage(const struct stat *st)
{
	return (uint64_t)st->st_blocks * 512u;
}

static void add_to_ancestors(struct walk *w, struct largest *g, uint64_t bytes, uint64_t files)
{
	for (size_t i = 0; i < w->depth; i++) {
		int node = w->stack[i].node;
		if (node >= 0) {
			g->v[node].bytes += bytes;
			g->v[node].files += files;
		}
	}
	g->total += bytes;
	g->total_files += files;
}

static int largest_dir(struct walk *w, const struct stat *st, int depth)
{
	struct largest *g = w->how.ctx;
	add_to_ancestors(w, g, usage(st), 0);
	if (depth > g->maxdepth)
		return -1;
	grow((void **)&g->v, &g->cap, g->n + 1, sizeof *g->v);
	g->v[g->n] = (struct node){ .path = xstrdup(w->path), .bytes = usage(st) };
	return (int)g->n++;
}

static void keep_if_top(struct largest *g, const char *path, uint64_t bytes)
{
	size_t slot = g->ntop;
	if (g->ntop == g->limit) {
		slot = 0;
		for (size_t i = 1; i < g->ntop; i++)
			if (g->top[i].bytes < g->top[slot].bytes)
				slot = i;
		if (g->top[slot].bytes >= bytes)
			return;
		free(g->top[slot].path);
	} else {
		g->ntop++;
	}
	g->top[slot] = (struct node){ .path = xstrdup(path), .bytes = bytes, .files = 1 };
}

static void largest_file(struct walk *w, const struct stat *st, int depth)
{
	(void)depth;
	struct largest *g = w->how.ctx;
	add_to_ancestors(w, g, usage(st), 1);
	if (g->want_files && S_ISREG(st->st_mode) && g->limit > 0)
		keep_if_top(g, w->path, usage(st));
}

static int by_bytes_desc(const void *a, const void *b)
{
	const struct node *x = a, *y = b;
	if (x->bytes != y->bytes)
		return x->bytes < y->bytes ? 1 : -1;
	return strcmp(x->path, y->path);
}

static void push_nodes(lua_State *L, struct node *v, size_t n, size_t limit, bool with_files)
{
	sort_array(v, n, sizeof *v, by_bytes_desc);
	if (n > limit)
		n = limit;
	lua_createtable(L, (int)n, 0);
	for (size_t i = 0; i < n; i++) {
		lua_createtable(L, 0, 3);
		luax_setstr(L, "path", v[i].path);
		luax_setint(L, "bytes", (lua_Integer)v[i].bytes);
		if (with_files)
			luax_setint(L, "files", (lua_Integer)v[i].files);
		lua_rawseti(L, -2, (lua_Integer)i + 1);
	}
}

static void free_nodes(struct node *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i].path);
	free(v);
}

static const char *const largest_options[] = { "depth", "limit", "timeout", "xdev", "files", NULL };

static lua_Integer opt_count(lua_State *L, int idx, const char *key, lua_Integer def, lua_Integer min, const char *fn)
{
	lua_Integer v = luax_opt_integer(L, idx, key, def, fn);
	if (v < min || v > 1000000)
		luaL_error(L, "%s: option '%s' must be between %d and 1000000", fn, key, (int)min);
	return v;
}

static const char *walk_outcome(const struct walk *w)
{
	return w->stop == ETIMEDOUT ? "partial" : "ok";
}

static void free_largest(void *ctx)
{
	struct largest *g = ctx;
	free_nodes(g->v, g->n);
	free_nodes(g->top, g->ntop);
	free(g);
}

static int largest_walked(lua_State *L, struct fs_op *op, const struct walk *w);

static int sys_largest(lua_State *L)
{
	const char *path = luaL_checkstring(L, 1);
	luax_check_options(L, 2, "sys.largest", largest_options);
	struct largest opts = {
		.maxdepth = (int)opt_count(L, 2, "depth", 1, 1, "sys.largest"),
		.limit = (size_t)opt_count(L, 2, "limit", 10, 1, "sys.largest"),
		.want_files = luax_opt_bool(L, 2, "files", false, "sys.largest"),
	};
	bool xdev = luax_opt_bool(L, 2, "xdev", true, "sys.largest");
	msec_t timeout = luax_opt_duration(L, 2, "timeout", DEFAULT_WALK_TIMEOUT_MS, "sys.largest");
	struct fs_op *op = walk_op_push(L, "sys.largest", path, timeout, largest_walked);
	struct largest *g = xrealloc(NULL, sizeof *g);
	*g = opts;
	if (g->want_files)
		g->top = xrealloc(NULL, g->limit * sizeof *g->top);
	op->walk->how = (struct walk_how){ .xdev = xdev, .recursive = true, .on_dir = largest_dir,
	                                   .on_file = largest_file, .ctx = g, .free_ctx = free_largest };
	return tasks_run_op(L, &op->task);
}

static int largest_walked(lua_State *L, struct fs_op *op, const struct walk *w)
{
	struct largest *g = w->how.ctx;
	char summary[128];
	snprintf(summary, sizeof summary, "%zu directories, %llu bytes in %llu files%s", g->n,
	         (unsigned long long)g->total, (unsigned long long)g->total_files, w->stop ? " (partial)" : "");
	probe_end(&op->p, walk_outcome(w), summary);

	lua_createtable(L, 0, 6);
	push_nodes(L, g->v, g->n, g->limit, true);
	lua_setfield(L, -2, "entries");
	if (g->want_files) {
		push_nodes(L, g->top, g->ntop, g->limit, false);
		lua_setfield(L, -2, "files");
	}
	luax_setint(L, "total_bytes", (lua_Integer)g->total);
	luax_setint(L, "total_files", (lua_Integer)g->total_files);
	luax_setint(L, "unreadable", w->unreadable);
	luax_setbool(L, "partial", w->stop != 0);
	push_paths(L, "unvisited", w->unvisited, w->nunvisited);
	push_paths(L, "skipped", w->skipped, w->nskipped);
	return 1;
}

/* ------------------------------------------------------------------------------- sys.files */

struct match {
	char *path;
	int64_t bytes;
	time_t mtime;
};

struct files {
	char *pattern;
	bool has_cutoff;
	time_t now, cutoff;
	int64_t min_size;
	struct match *v;
	size_t n, cap, limit;
	uint64_t count, total;
};

static void files_file(struct walk *w, const struct stat *lst, int depth)
{
	(void)depth;
	struct files *q = w->how.ctx;
	struct stat target;
	const struct stat *st = lst;
	if (S_ISLNK(lst->st_mode) && w->how.follows && fstatat(w->at, w->name, &target, 0) == 0)
		st = &target;
	if (!S_ISREG(st->st_mode))
		return;
	if (q->pattern && fnmatch(q->pattern, w->name, FNM_PERIOD) != 0)
		return;
	if (q->has_cutoff && st->st_mtime > q->cutoff)
		return;
	if (st->st_size < q->min_size)
		return;
	q->count++;
	q->total += (uint64_t)st->st_size;
	if (q->n == q->limit)
		return;
	grow((void **)&q->v, &q->cap, q->n + 1, sizeof *q->v);
	q->v[q->n++] = (struct match){ .path = xstrdup(w->path), .bytes = st->st_size, .mtime = st->st_mtime };
}

static int by_path(const void *a, const void *b)
{
	return strcmp(((const struct match *)a)->path, ((const struct match *)b)->path);
}

static void free_matches(struct match *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i].path);
	free(v);
}

static const char *const files_options[] = {
	"pattern", "older_than", "min_size", "recursive", "xdev", "follow", "limit", "timeout", NULL,
};

static void free_files(void *ctx)
{
	struct files *q = ctx;
	free_matches(q->v, q->n);
	free(q->pattern);
	free(q);
}

static int files_walked(lua_State *L, struct fs_op *op, const struct walk *w);

static int sys_files(lua_State *L)
{
	const char *path = luaL_checkstring(L, 1);
	luax_check_options(L, 2, "sys.files", files_options);
	msec_t older = luax_opt_duration(L, 2, "older_than", -1, "sys.files");
	const char *pattern = luax_opt_string(L, 2, "pattern", NULL, "sys.files");
	struct files opts = {
		.has_cutoff = older >= 0,
		.now = time(NULL),
		.min_size = luax_opt_integer(L, 2, "min_size", 0, "sys.files"),
		.limit = (size_t)opt_count(L, 2, "limit", 1000, 0, "sys.files"),
	};
	opts.cutoff = opts.now - (time_t)(older / 1000);
	bool xdev = luax_opt_bool(L, 2, "xdev", true, "sys.files");
	bool recursive = luax_opt_bool(L, 2, "recursive", true, "sys.files");
	bool follow = luax_opt_bool(L, 2, "follow", false, "sys.files");
	msec_t timeout = luax_opt_duration(L, 2, "timeout", DEFAULT_WALK_TIMEOUT_MS, "sys.files");
	struct fs_op *op = walk_op_push(L, "sys.files", path, timeout, files_walked);
	struct files *q = xrealloc(NULL, sizeof *q);
	*q = opts;
	q->pattern = pattern ? xstrdup(pattern) : NULL;   /* the worker's: it may outlive the call */
	op->walk->how = (struct walk_how){ .xdev = xdev, .recursive = recursive, .follows = follow,
	                                   .on_file = files_file, .ctx = q, .free_ctx = free_files };
	return tasks_run_op(L, &op->task);
}

static int files_walked(lua_State *L, struct fs_op *op, const struct walk *w)
{
	struct files *q = w->how.ctx;
	char summary[128];
	snprintf(summary, sizeof summary, "%llu files, %llu bytes%s", (unsigned long long)q->count,
	         (unsigned long long)q->total, w->stop ? " (partial)" : "");
	probe_end(&op->p, walk_outcome(w), summary);

	sort_array(q->v, q->n, sizeof *q->v, by_path);
	lua_createtable(L, 0, 6);
	lua_createtable(L, (int)q->n, 0);
	for (size_t i = 0; i < q->n; i++) {
		lua_createtable(L, 0, 4);
		luax_setstr(L, "path", q->v[i].path);
		luax_setint(L, "bytes", q->v[i].bytes);
		luax_setint(L, "mtime", (lua_Integer)q->v[i].mtime);
		luax_setint(L, "age", (lua_Integer)(q->now - q->v[i].mtime));
		lua_rawseti(L, -2, (lua_Integer)i + 1);
	}
	lua_setfield(L, -2, "files");
	luax_setint(L, "count", (lua_Integer)q->count);
	luax_setint(L, "total_bytes", (lua_Integer)q->total);
	luax_setbool(L, "truncated", q->count > q->n);
	luax_setint(L, "unreadable", w->unreadable);
	luax_setbool(L, "partial", w->stop != 0);
	push_paths(L, "skipped", w->skipped, w->nskipped);
	return 1;
}

/* ------------------------------------------------------------------------ sys.deleted_open */

struct held {
	int pid, fd;
	char command[32];
	char *path;
	int64_t bytes;
};

struct helds {
	struct held *v;
	size_t n, cap;
	long unreadable;
};

static bool is_pid(const char *s)
{
	if (!*s)
		return false;
	for (; *s; s++)
		if (!isdigit((unsigned char)*s))
			return false;
	return true;
}

static void read_comm(int pid, char *buf, size_t size)
{
	char path[64];
	snprintf(path, sizeof path, "/proc/%d/comm", pid);
	if (read_small(path, buf, size) <= 0)
		snprintf(buf, size, "?");
	buf[strcspn(buf, "\n")] = '\0';
}

static const char DELETED[] = " (deleted)";

/* Every fd of pid that points at a deleted regular file (on dev, when filtering). */
static void scan_fds(struct helds *h, int pid, bool filter, dev_t dev)
{
	char dir[64];
	snprintf(dir, sizeof dir, "/proc/%d/fd", pid);
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d = dfd < 0 ? NULL : fdopendir(dfd);
	if (!d) {
		if (dfd >= 0)
			close(dfd);
		if (errno != ENOENT)   /* ENOENT: it exited meanwhile */
			h->unreadable++;
		return;
	}
	char command[32] = "";
	for (struct dirent *de; (de = readdir(d));) {
		if (!is_pid(de->d_name))
			continue;
		char target[PATH_MAX + sizeof DELETED];
		ssize_t n = readlinkat(dfd, de->d_name, target, sizeof target - 1);
		if (n <= (ssize_t)(sizeof DELETED - 1) || target[0] != '/')
			continue;
		target[n] = '\0';
		size_t tail = (size_t)n - (sizeof DELETED - 1);
		if (strcmp(target + tail, DELETED) != 0 || strncmp(target, "/memfd:", 7) == 0)
			continue;
		struct stat st;
		if (fstatat(dfd, de->d_name, &st, 0) != 0 || !S_ISREG(st.st_mode) || st.st_nlink > 0)
			continue;
		if (filter && st.st_dev != dev)
			continue;
		if (!*command)
			read_comm(pid, command, sizeof command);
		target[tail] = '\0';
		grow((void **)&h->v, &h->cap, h->n + 1, sizeof *h->v);
		struct held *x = &h->v[h->n++];
		*x = (struct held){ .pid = pid, .fd = atoi(de->d_name), .path = xstrdup(target), .bytes = st.st_size };
		memcpy(x->command, command, sizeof x->command);
	}
	closedir(d);
}

static int by_held_bytes(const void *a, const void *b)
{
	const struct held *x = a, *y = b;
	if (x->bytes != y->bytes)
		return x->bytes < y->bytes ? 1 : -1;
	return x->pid - y->pid;
}

static void free_helds(struct helds *h)
{
	for (size_t i = 0; i < h->n; i++)
		free(h->v[i].path);
	free(h->v);
}

static const char *const deleted_options[] = { "path", "timeout", "limit", NULL };

static int deleted_open_finish(lua_State *L, struct fs_op *op);

static int sys_deleted_open(lua_State *L)
{
	luax_check_options(L, 1, "sys.deleted_open", deleted_options);
	const char *path = luax_opt_string(L, 1, "path", NULL, "sys.deleted_open");
	lua_Integer limit = opt_count(L, 1, "limit", 50, 1, "sys.deleted_open");
	msec_t timeout = luax_opt_duration(L, 1, "timeout", DEFAULT_PROC_TIMEOUT_MS, "sys.deleted_open");
	struct fs_op *op = fs_op_push(L, "sys.deleted_open", path ? path : "all filesystems", timeout, path,
	                              FS_STAT, deleted_open_finish);
	op->count = limit;
	return tasks_run_op(L, &op->task);
}

static int deleted_open_finish(lua_State *L, struct fs_op *op)
{
	const struct probe *p = &op->p;
	if (op->err)
		return probe_fail_errno(L, p, op->err);
	bool on_path = op->j != NULL;
	dev_t dev = on_path ? op->j->st.st_dev : 0;
	size_t limit = (size_t)op->count;
	DIR *proc = opendir("/proc");
	if (!proc)
		return probe_fail_errno(L, p, errno);
	struct helds h = { 0 };
	int stop = 0;
	for (struct dirent *de; !stop && (de = readdir(proc));)
		if (is_pid(de->d_name) && !(stop = probe_check(p)))
			scan_fds(&h, atoi(de->d_name), on_path, dev);
	closedir(proc);
	if (stop == EINTR) {
		free_helds(&h);
		return probe_fail_errno(L, p, EINTR);
	}
	sort_array(h.v, h.n, sizeof *h.v, by_held_bytes);
	int64_t total = 0;
	for (size_t i = 0; i < h.n; i++)
		total += h.v[i].bytes;
	char summary[128];
	snprintf(summary, sizeof summary, "%zu deleted files held open, %lld bytes%s", h.n, (long long)total,
	         h.unreadable ? " (some processes unreadable)" : "");
	probe_end(p, stop ? "partial" : "ok", summary);

	size_t n = h.n < limit ? h.n : limit;
	lua_createtable(L, (int)n, 4);
	for (size_t i = 0; i < n; i++) {
		lua_createtable(L, 0, 5);
		luax_setint(L, "pid", h.v[i].pid);
		luax_setstr(L, "command", h.v[i].command);
		luax_setint(L, "fd", h.v[i].fd);
		luax_setstr(L, "path", h.v[i].path);
		luax_setint(L, "bytes", h.v[i].bytes);
		lua_rawseti(L, -2, (lua_Integer)i + 1);
	}
	luax_setint(L, "count", (lua_Integer)h.n);
	luax_setint(L, "total_bytes", total);
	/* Without root, other users' processes cannot be looked into: say so rather than report "none". */
	luax_setint(L, "unreadable", h.unreadable);
	luax_setbool(L, "partial", stop != 0);
	free_helds(&h);
	return 1;
}

/* ----------------------------------------------------------------------- memory, load, uptime */

/* The value of "Key:   123 kB" in /proc/meminfo text, in bytes; -1 when absent. */
static int64_t meminfo_field(const char *text, const char *key)
{
	size_t klen = strlen(key);
	for (const char *line = text; line && *line; line = strchr(line, '\n'), line = line ? line + 1 : NULL)
		if (strncmp(line, key, klen) == 0 && line[klen] == ':')
			return strtoll(line + klen + 1, NULL, 10) * 1024;
	return -1;
}

static int sys_memory(lua_State *L)
{
	struct probe p;
	probe_begin(&p, "sys.memory", "/proc/meminfo", 0);
	char text[8192];
	if (read_small("/proc/meminfo", text, sizeof text) <= 0)
		return probe_fail_errno(L, &p, errno ? errno : EIO);
	int64_t total = meminfo_field(text, "MemTotal");
	int64_t free_ = meminfo_field(text, "MemFree");
	int64_t avail = meminfo_field(text, "MemAvailable");
	int64_t buffers = meminfo_field(text, "Buffers");
	int64_t cached = meminfo_field(text, "Cached") + (meminfo_field(text, "SReclaimable") > 0 ? meminfo_field(text, "SReclaimable") : 0);
	int64_t swap_total = meminfo_field(text, "SwapTotal");
	int64_t swap_free = meminfo_field(text, "SwapFree");
	if (total <= 0)
		return probe_fail_errno(L, &p, EIO);
	if (avail < 0)     /* kernels before 3.14 */
		avail = free_ + buffers + cached;
	/* "used" as free(1) of procps 4 counts it: what is not available, so caches do not alarm anyone. */
	int64_t used = total - avail;
	int64_t swap_used = swap_total > 0 ? swap_total - swap_free : 0;
	char summary[96];
	snprintf(summary, sizeof summary, "memory %.1f%% used, swap %.1f%% used", pct((double)used, (double)total),
	         pct((double)swap_used, (double)swap_total));
	probe_end(&p, "ok", summary);
	lua_createtable(L, 0, 11);
	luax_setint(L, "total", total);
	luax_setint(L, "available", avail);
	luax_setint(L, "used", used);
	luax_setint(L, "free", free_);
	luax_setint(L, "buffers", buffers);
	luax_setint(L, "cached", cached);
	luax_setint(L, "swap_total", swap_total > 0 ? swap_total : 0);
	luax_setint(L, "swap_used", swap_used);
	luax_setint(L, "swap_free", swap_free > 0 ? swap_free : 0);
	luax_setnum(L, "used_pct", round1(pct((double)used, (double)total)));
	luax_setnum(L, "swap_pct", round1(pct((double)swap_used, (double)swap_total)));
	return 1;
}

static double read_uptime(void)
{
	char text[128];
	return read_small("/proc/uptime", text, sizeof text) > 0 ? strtod(text, NULL) : 0.0;
}

static int sys_load(lua_State *L)
{
	struct probe p;
	probe_begin(&p, "sys.load", "/proc/loadavg", 0);
	char text[256];
	double l1, l5, l15;
	int running, tasks;
	if (read_small("/proc/loadavg", text, sizeof text) <= 0)
		return probe_fail_errno(L, &p, errno ? errno : EIO);
	if (sscanf(text, "%lf %lf %lf %d/%d", &l1, &l5, &l15, &running, &tasks) != 5)
		return probe_fail_errno(L, &p, EIO);
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	if (cpus < 1)
		cpus = 1;
	char summary[96];
	snprintf(summary, sizeof summary, "load %.2f %.2f %.2f on %ld cpus", l1, l5, l15, cpus);
	probe_end(&p, "ok", summary);
	lua_createtable(L, 0, 8);
	luax_setnum(L, "load1", l1);
	luax_setnum(L, "load5", l5);
	luax_setnum(L, "load15", l15);
	luax_setint(L, "cpus", cpus);
	luax_setnum(L, "per_cpu1", round1(l1 / (double)cpus * 10.0) / 10.0);
	luax_setint(L, "running", running);
	luax_setint(L, "total_tasks", tasks);
	luax_setnum(L, "uptime", read_uptime());
	return 1;
}

/* ---------------------------------------------------------------------------- sys.processes */

struct proc {
	int pid, ppid;
	char state;
	char comm[32];
	uint64_t ticks;          /* utime + stime */
	int64_t rss;             /* bytes */
	long threads;
	double age;              /* seconds since it started */
	uid_t uid;
	double cpu_pct;
	char *cmdline;
};

struct procs {
	struct proc *v;
	size_t n, cap;
};

/* Parses /proc/PID/stat: "pid (comm) S ppid ... utime stime ... threads . start vsize rss". */
static bool read_proc_stat(int pid, struct proc *pr, double uptime, long tck, long page)
{
	char path[64], text[1024];
	snprintf(path, sizeof path, "/proc/%d/stat", pid);
	if (read_small(path, text, sizeof text) <= 0)
		return false;
	char *open = strchr(text, '('), *close = strrchr(text, ')');
	if (!open || !close || close < open || close[1] != ' ')
		return false;
	size_t clen = (size_t)(close - open - 1);
	if (clen >= sizeof pr->comm)
		clen = sizeof pr->comm - 1;
	memcpy(pr->comm, open + 1, clen);
	pr->comm[clen] = '\0';
	char *field[24];
	int n = 0;
	for (char *save = NULL, *f = strtok_r(close + 2, " ", &save); f && n < 24; f = strtok_r(NULL, " ", &save))
		field[n++] = f;
	if (n < 22)
		return false;
	pr->pid = pid;
	pr->state = field[0][0];
	pr->ppid = atoi(field[1]);
	pr->ticks = strtoull(field[11], NULL, 10) + strtoull(field[12], NULL, 10);
	pr->threads = atol(field[17]);
	pr->age = uptime - (double)strtoull(field[19], NULL, 10) / (double)tck;
	pr->rss = strtoll(field[21], NULL, 10) * page;
	snprintf(path, sizeof path, "/proc/%d", pid);
	struct stat st;
	pr->uid = stat(path, &st) == 0 ? st.st_uid : (uid_t)-1;
	return true;
}

/* The command line with its NULs as spaces; kernel threads have none and show as [comm]. */
static char *read_cmdline(const struct proc *pr)
{
	char path[64], text[2048];
	snprintf(path, sizeof path, "/proc/%d/cmdline", pr->pid);
	ssize_t n = read_small(path, text, sizeof text);
	if (n <= 0) {
		snprintf(text, sizeof text, "[%s]", pr->comm);
		return xstrdup(text);
	}
	while (n > 0 && text[n - 1] == '\0')
		n--;
	for (ssize_t i = 0; i < n; i++)
		if (text[i] == '\0' || text[i] == '\n')
			text[i] = ' ';
	text[n] = '\0';
	return xstrdup(text);
}

static int scan_procs(struct procs *ps, const struct probe *p, bool want_cmdline)
{
	DIR *proc = opendir("/proc");
	if (!proc)
		return errno;
	double uptime = read_uptime();
	long tck = sysconf(_SC_CLK_TCK), page = sysconf(_SC_PAGESIZE);
	int stop = 0;
	for (struct dirent *de; !stop && (de = readdir(proc));) {
		if (!is_pid(de->d_name))
			continue;
		struct proc pr = { 0 };
		if (!read_proc_stat(atoi(de->d_name), &pr, uptime, tck, page))
			continue;   /* exited meanwhile */
		if (want_cmdline)
			pr.cmdline = read_cmdline(&pr);
		grow((void **)&ps->v, &ps->cap, ps->n + 1, sizeof *ps->v);
		ps->v[ps->n++] = pr;
		stop = probe_check(p);
	}
	closedir(proc);
	return stop == EINTR ? EINTR : 0;
}

static void free_procs(struct procs *ps)
{
	for (size_t i = 0; i < ps->n; i++)
		free(ps->v[i].cmdline);
	free(ps->v);
	ps->v = NULL;
	ps->n = ps->cap = 0;
}

static int by_pid(const void *a, const void *b)
{
	return ((const struct proc *)a)->pid - ((const struct proc *)b)->pid;
}

static int by_rss(const void *a, const void *b)
{
	const struct proc *x = a, *y = b;
	if (x->rss != y->rss)
		return x->rss < y->rss ? 1 : -1;
	return x->pid - y->pid;
}

static int by_cpu(const void *a, const void *b)
{
	const struct proc *x = a, *y = b;
	if (x->cpu_pct != y->cpu_pct)
		return x->cpu_pct < y->cpu_pct ? 1 : -1;
	return by_rss(a, b);
}

/* CPU use over the sample from the two scans' tick counts; without a sample, over the lifetime. */
static void compute_cpu(struct procs *now, const struct procs *before, double sample_s, long tck)
{
	for (size_t i = 0; i < now->n; i++) {
		struct proc *pr = &now->v[i];
		if (sample_s > 0) {
			struct proc key = { .pid = pr->pid };
			const struct proc *old = before->n ? bsearch(&key, before->v, before->n, sizeof key, by_pid) : NULL;
			uint64_t ticks = old && old->ticks <= pr->ticks ? pr->ticks - old->ticks : pr->ticks;
			pr->cpu_pct = round1(pct((double)ticks, sample_s * (double)tck));
		} else {
			pr->cpu_pct = pr->age > 0 ? round1(pct((double)pr->ticks, pr->age * (double)tck)) : 0;
		}
	}
}

/* The name of uid, "uid N" when the system knows none or does not tell in time. */
static const char *user_name(uid_t uid, char *buf, size_t size, msec_t deadline)
{
	if (uid == (uid_t)-1)
		snprintf(buf, size, "?");
	else
		users_name(uid, buf, size, deadline);
	return buf;
}

static size_t keep_matching(struct procs *ps, const char *match)
{
	size_t kept = 0;
	for (size_t i = 0; i < ps->n; i++) {
		struct proc *pr = &ps->v[i];
		if (strstr(pr->comm, match) || (pr->cmdline && strstr(pr->cmdline, match)))
			ps->v[kept++] = *pr;
		else
			free(pr->cmdline);
	}
	return ps->n = kept;
}

static void push_proc(lua_State *L, struct proc *pr, double memtotal, msec_t deadline)
{
	char user[64];
	char state[2] = { pr->state, '\0' };
	if (!pr->cmdline)
		pr->cmdline = read_cmdline(pr);
	lua_createtable(L, 0, 11);
	luax_setint(L, "pid", pr->pid);
	luax_setint(L, "ppid", pr->ppid);
	luax_setstr(L, "user", user_name(pr->uid, user, sizeof user, deadline));
	luax_setstr(L, "state", state);
	luax_setstr(L, "command", pr->comm);
	luax_setstr(L, "cmdline", pr->cmdline);
	luax_setint(L, "rss", pr->rss);
	luax_setnum(L, "mem_pct", round1(pct((double)pr->rss, memtotal)));
	luax_setnum(L, "cpu_pct", pr->cpu_pct);
	luax_setint(L, "threads", pr->threads);
	luax_setint(L, "age", (lua_Integer)pr->age);
}

static const char *const processes_options[] = { "sort", "limit", "sample", "match", "timeout", NULL };

/*
 * sys.processes as an op (interp/tasks.h): the wait between the two scans, the sample, is a wait
 * on nothing until its end, so that inside parallel() the other tasks go on meanwhile.
 */
struct procs_op {
	struct sched_waiter w;
	struct tasks_op task;
	struct probe p;
	struct procs before;
	double t0;                 /* the first scan's end */
	msec_t sample_end;
	bool by_cpu, sampled, interrupted;
	size_t limit;
	const char *match;         /* anchored by the options table */
};


static bool procs_advance(void *p)
{
	struct procs_op *op = p;
	op->interrupted = op->w.result == SCHED_INTERRUPTED;
	if (op->interrupted || sched_now() >= op->sample_end)
		return true;
	tasks_wait_init(&op->w, op->sample_end);
	return false;
}

static int procs_done(lua_State *L, void *p)
{
	struct procs_op *op = p;
	double sample_s = op->sampled ? (sched_now_precise() - op->t0) / 1000.0 : 0;
	struct procs now = { 0 };
	int err = op->interrupted ? EINTR : scan_procs(&now, &op->p, op->match != NULL);
	if (err) {
		free_procs(&now);
		return probe_fail_errno(L, &op->p, err);
	}
	compute_cpu(&now, &op->before, sample_s, sysconf(_SC_CLK_TCK));
	if (op->match)
		keep_matching(&now, op->match);
	sort_array(now.v, now.n, sizeof *now.v, op->by_cpu ? by_cpu : by_rss);

	size_t n = now.n < op->limit ? now.n : op->limit;
	char summary[160];
	if (n)
		snprintf(summary, sizeof summary, "%zu processes; top: %s (pid %d, %.1f%% cpu, %lld MiB)", now.n,
		         now.v[0].comm, now.v[0].pid, now.v[0].cpu_pct, (long long)(now.v[0].rss >> 20));
	else
		snprintf(summary, sizeof summary, "no process matches");
	probe_end(&op->p, "ok", summary);
	double memtotal = (double)sysconf(_SC_PHYS_PAGES) * (double)sysconf(_SC_PAGESIZE);
	lua_createtable(L, (int)n, 1);
	for (size_t i = 0; i < n; i++) {
		push_proc(L, &now.v[i], memtotal, op->p.deadline);
		lua_rawseti(L, -2, (lua_Integer)i + 1);
	}
	luax_setint(L, "count", (lua_Integer)now.n);
	free_procs(&now);
	return 1;
}

static void procs_release(void *p)
{
	free_procs(&((struct procs_op *)p)->before);
}

static const struct tasks_machine procs_machine = { procs_advance, procs_done, procs_release };


static int sys_processes(lua_State *L)
{
	luax_check_options(L, 1, "sys.processes", processes_options);
	const char *sort = luax_opt_string(L, 1, "sort", "memory", "sys.processes");
	if (strcmp(sort, "memory") != 0 && strcmp(sort, "cpu") != 0)
		luaL_error(L, "sys.processes: option 'sort' must be \"memory\" or \"cpu\", not \"%s\"", sort);
	size_t limit = (size_t)opt_count(L, 1, "limit", 10, 1, "sys.processes");
	msec_t sample = luax_opt_duration(L, 1, "sample", DEFAULT_SAMPLE_MS, "sys.processes");
	const char *match = luax_opt_string(L, 1, "match", NULL, "sys.processes");
	msec_t timeout = luax_opt_duration(L, 1, "timeout", DEFAULT_PROC_TIMEOUT_MS, "sys.processes");

	struct procs_op *op = tasks_push_op(L, sizeof *op, &procs_machine);
	probe_begin(&op->p, "sys.processes", match ? match : "all processes", timeout + sample);
	op->by_cpu = strcmp(sort, "cpu") == 0;
	op->limit = limit;
	op->match = match;
	op->task = (struct tasks_op){ .machine = &procs_machine, .op = op, .w = &op->w };
	if (sample > 0) {
		int err = scan_procs(&op->before, &op->p, false);
		if (err)
			return probe_fail_errno(L, &op->p, err);   /* the op, to be closed, frees the scan */
		sort_array(op->before.v, op->before.n, sizeof *op->before.v, by_pid);
		op->sampled = true;
		op->t0 = sched_now_precise();
		op->sample_end = sched_deadline(sample);
	}
	return tasks_run_op(L, &op->task);
}

/* ------------------------------------------------------------------------- sys.tail, sys.grep */

/* Opens a log for reading without ever blocking on a FIFO someone put in its place. */
static int log_fail(lua_State *L, const struct probe *p, int err)
{
	if (err != EINVAL)
		return probe_fail_errno(L, p, err);
	probe_end(p, "error", "not a regular file");
	return luax_fail(L, "error", "%s %s: not a regular file", p->fn, p->target);
}

static void push_line(lua_State *L, const char *s, size_t len)
{
	lua_pushlstring(L, s, len > MAX_TEXT_LINE ? MAX_TEXT_LINE : len);
}

static const char *const tail_options[] = { "lines", "timeout", NULL };

/* Reads backwards from the end until it holds `want` whole lines (or the start, or the cap). */
static char *read_tail(int fd, off_t size, lua_Integer want, size_t *len, bool *cut)
{
	char *buf = NULL;
	size_t have = 0;
	lua_Integer newlines = 0;
	off_t pos = size;
	while (pos > 0 && have < TAIL_MAX_SCAN && newlines <= want) {
		size_t chunk = pos < 65536 ? (size_t)pos : 65536;
		buf = xrealloc(buf, have + chunk + 1);
		memmove(buf + chunk, buf, have);
		ssize_t n = pread(fd, buf, chunk, pos - (off_t)chunk);
		if (n != (ssize_t)chunk) {   /* truncated under us (logrotate): keep what is whole */
			memmove(buf, buf + chunk, have);
			break;
		}
		pos -= (off_t)chunk;
		have += chunk;
		for (size_t i = 0; i < chunk; i++)
			newlines += buf[i] == '\n';
	}
	*cut = pos > 0 && newlines <= want;
	*len = have;
	return buf;
}

static int tail_finish(lua_State *L, struct fs_op *op);

static int sys_tail(lua_State *L)
{
	const char *path = luaL_checkstring(L, 1);
	luax_check_options(L, 2, "sys.tail", tail_options);
	lua_Integer lines = opt_count(L, 2, "lines", 50, 1, "sys.tail");
	msec_t timeout = luax_opt_duration(L, 2, "timeout", DEFAULT_FS_TIMEOUT_MS, "sys.tail");
	struct fs_op *op = fs_op_push(L, "sys.tail", path, timeout, path, FS_OPEN, tail_finish);
	op->count = lines;
	return tasks_run_op(L, &op->task);
}

static int tail_finish(lua_State *L, struct fs_op *op)
{
	const struct probe *p = &op->p;
	if (op->err)
		return log_fail(L, p, op->err);
	lua_Integer want = op->count;
	struct stat st = op->j->st;
	int fd = fs_op_take_fd(op);
	size_t len;
	bool cut;
	char *buf = read_tail(fd, st.st_size, want, &len, &cut);
	close(fd);
	while (len > 0 && buf[len - 1] == '\n')
		len--;
	/* Back from the end to just after the want-th newline: the start of the first line shown. */
	size_t first = len;
	lua_Integer n = len > 0;
	while (first > 0 && !(buf[first - 1] == '\n' && n++ == want))
		first--;
	if (n > want)
		n = want;
	char summary[96];
	snprintf(summary, sizeof summary, "%lld lines of %lld bytes", (long long)n, (long long)st.st_size);
	probe_end(p, "ok", summary);

	lua_createtable(L, 0, 5);
	lua_createtable(L, (int)n, 0);
	lua_Integer i = 0;
	for (size_t s = first; len > 0 && s <= len;) {
		size_t e = s;
		while (e < len && buf[e] != '\n')
			e++;
		push_line(L, buf + s, e - s);
		lua_rawseti(L, -2, ++i);
		s = e + 1;
	}
	lua_setfield(L, -2, "lines");
	lua_pushlstring(L, buf ? buf + first : "", len - first);
	lua_setfield(L, -2, "text");
	luax_setint(L, "size", st.st_size);
	luax_setint(L, "mtime", st.st_mtime);
	luax_setbool(L, "truncated", cut);
	free(buf);
	return 1;
}

struct hit {
	lua_Integer line;
	char *text;
};

static const char *const grep_options[] = { "icase", "limit", "timeout", NULL };

static int grep_finish(lua_State *L, struct fs_op *op);

static int sys_grep(lua_State *L)
{
	const char *path = luaL_checkstring(L, 1);
	const char *pattern = luaL_checkstring(L, 2);
	luax_check_options(L, 3, "sys.grep", grep_options);
	bool icase = luax_opt_bool(L, 3, "icase", false, "sys.grep");
	lua_Integer limit = opt_count(L, 3, "limit", 100, 1, "sys.grep");
	msec_t timeout = luax_opt_duration(L, 3, "timeout", DEFAULT_WALK_TIMEOUT_MS, "sys.grep");
	struct fs_op *op = fs_op_push(L, "sys.grep", path, timeout, path, FS_OPEN, grep_finish);
	op->count = limit;
	int rc = regcomp(&op->re, pattern, REG_EXTENDED | REG_NOSUB | (icase ? REG_ICASE : 0));
	if (rc != 0) {   /* the op, to be closed, frees its job */
		char why[160];
		regerror(rc, &op->re, why, sizeof why);
		return luaL_error(L, "sys.grep: bad regular expression '%s': %s", pattern, why);
	}
	op->compiled = true;
	return tasks_run_op(L, &op->task);
}

static int grep_finish(lua_State *L, struct fs_op *op)
{
	const struct probe *p = &op->p;
	if (op->err)
		return log_fail(L, p, op->err);
	size_t limit = (size_t)op->count;
	int fd = fs_op_take_fd(op);
	FILE *f = fdopen(fd, "r");
	if (!f) {
		int err = errno;
		close(fd);
		return log_fail(L, p, err);
	}
	/* The last `limit` matches: in a log the recent ones are the ones that matter. */
	struct hit *ring = calloc(limit, sizeof *ring);
	if (!ring)
		abort();
	char *line = NULL;
	size_t cap = 0;
	ssize_t len;
	lua_Integer lineno = 0, count = 0;
	int stop = 0;
	while (!stop && (len = getline(&line, &cap, f)) >= 0) {
		lineno++;
		if (len > 0 && line[len - 1] == '\n')
			line[--len] = '\0';
		if (regexec(&op->re, line, 0, NULL, 0) == 0) {
			struct hit *h = &ring[(size_t)count % limit];
			free(h->text);
			if ((size_t)len > MAX_TEXT_LINE)
				line[MAX_TEXT_LINE] = '\0';
			*h = (struct hit){ .line = lineno, .text = xstrdup(line) };
			count++;
		}
		if (lineno % 1024 == 0)
			stop = probe_check(p);
	}
	free(line);
	fclose(f);
	if (stop == EINTR) {
		for (size_t i = 0; i < limit; i++)
			free(ring[i].text);
		free(ring);
		return probe_fail_errno(L, p, EINTR);
	}
	char summary[96];
	snprintf(summary, sizeof summary, "%lld matching lines of %lld%s", (long long)count, (long long)lineno,
	         stop ? " (partial)" : "");
	probe_end(p, stop ? "partial" : "ok", summary);

	size_t kept = (size_t)count < limit ? (size_t)count : limit;
	size_t oldest = (size_t)count < limit ? 0 : (size_t)count % limit;
	lua_createtable(L, 0, 4);
	lua_createtable(L, (int)kept, 0);
	for (size_t i = 0; i < kept; i++) {
		struct hit *h = &ring[(oldest + i) % limit];
		lua_createtable(L, 0, 2);
		luax_setint(L, "line", h->line);
		luax_setstr(L, "text", h->text);
		lua_rawseti(L, -2, (lua_Integer)i + 1);
	}
	lua_setfield(L, -2, "matches");
	luax_setint(L, "count", count);
	luax_setint(L, "lines", lineno);
	luax_setbool(L, "partial", stop != 0);
	for (size_t i = 0; i < limit; i++)
		free(ring[i].text);
	free(ring);
	return 1;
}

int luaopen_sys(lua_State *L)
{
	static const luaL_Reg fns[] = {
		{ "filesystems", sys_filesystems },
		{ "fs", sys_fs },
		{ "largest", sys_largest },
		{ "files", sys_files },
		{ "deleted_open", sys_deleted_open },
		{ "memory", sys_memory },
		{ "load", sys_load },
		{ "processes", sys_processes },
		{ "tail", sys_tail },
		{ "grep", sys_grep },
		{ NULL, NULL },
	};
	luaL_newlib(L, fns);
	return 1;
}
