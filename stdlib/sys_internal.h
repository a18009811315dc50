/*
 * sys_internal.h - what the parts of the sys module (stdlib/sys.c, sys_*.c) share: the probe and its
 * audit, the helpers, the bounded filesystem jobs and their op, the mounts, the walks, and the module's
 * functions for its table. Private to sys: nothing here is exported from the binary.
 */
#ifndef RUNBOOK_SYS_INTERNAL_H
#define RUNBOOK_SYS_INTERNAL_H

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

#pragma GCC visibility push(hidden)   /* shared by the parts of sys only: -rdynamic exports none of it */

#define DEFAULT_FS_TIMEOUT_MS    5000
#define DEFAULT_WALK_TIMEOUT_MS  10000
#define DEFAULT_PROC_TIMEOUT_MS  5000
#define DEFAULT_SAMPLE_MS        250
#define MAX_TEXT_LINE            4096      /* longer log lines are cut: a terminal is no place for them */
#define TAIL_MAX_SCAN            (16 << 20)

/* ------------------------------------------------------------------ the probe, helpers (sys.c) */

/* One call of a sys primitive: what it looked at, its deadline and its clock, for the audit. */
struct probe {
	const char *fn;
	const char *target;
	msec_t timeout_ms, deadline;
	double t0;
};

/* Not an errno: the worker that would bound a call could not be started (fs_op_start). */
#define NO_WORKER (-1)

void probe_begin(struct probe *p, const char *fn, const char *target, msec_t timeout_ms);
void probe_end(const struct probe *p, const char *outcome, const char *summary);
const char *errno_kind(int err);
const char *errno_cause(int err);
int probe_fail_errno(lua_State *L, const struct probe *p, int err);
int probe_check(const struct probe *p);
double pct(double part, double whole);
double round1(double v);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
void grow(void **v, size_t *cap, size_t n, size_t sz);
void sort_array(void *v, size_t n, size_t size, int (*cmp)(const void *, const void *));
ssize_t read_small(const char *path, char *buf, size_t size);
lua_Integer opt_count(lua_State *L, int idx, const char *key, lua_Integer def, lua_Integer min, const char *fn);

/* --------------------------------------------------- bounded filesystem calls (sys_worker.c) */

/*
 * stat() and statvfs() of a path on a hung NFS or FUSE mount block in the kernel, where no
 * signal reaches them. They run in a worker thread (tasks_offload) that the caller stops
 * waiting for at the deadline: a stuck worker costs one small job and one thread, not the run.
 */
/* -> vfs; vfs and real; st; fd and st; fd, st and real; walk (given an FS_OPENDIR's fd, st, real) */
enum fsjob_kind { FS_STATVFS, FS_STATVFS_REAL, FS_STAT, FS_OPEN, FS_OPENDIR, FS_WALK };

/* A job running on a path, that the next calls on it wait for (sys_worker.c: busy). */
enum busy_kind { BUSY_JOB, BUSY_WALK, BUSY_WALK_FOLLOWING };   /* the walks: by whether they follow links */
struct busy { char *path; struct offload *o; enum busy_kind kind; msec_t since; };

/* The walk an FS_WALK job runs (sys_walk.c). */
struct walk;
int walk_run(struct walk *w, const char *root, int fd, const struct stat *st, const char *real);
enum busy_kind walk_busy_kind(const struct walk *w);
void walk_cancel(struct walk *w);
void walk_free(struct walk *w);

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
	char *pattern;             /* grep: the regex, and */
	bool icase;
	struct grep_scan *scan;    /* its scan by a helper process, once the file is open (sys_grep.c) */
};

/* A walk stops at its deadline on its own and reports what it has seen: it is waited for a little
 * longer, and only a walk stuck in the kernel (a disk that does not answer) ends in a timeout. */
#define WALK_GRACE_MS 150

struct fsjob *fsjob_new(const char *path, enum fsjob_kind kind);
void fsjob_free(void *arg);
struct offload *fsjob_start(struct fsjob *j);
void fsjob_done(struct offload *o, struct fsjob *j);
const struct busy *busy_find(const char *path, enum busy_kind kind);
struct fs_op *fs_op_push(lua_State *L, const char *fn, const char *target, msec_t timeout_ms,
                         const char *path, enum fsjob_kind kind, int (*finish)(lua_State *L, struct fs_op *op));
int fs_op_take_fd(struct fs_op *op);

/* sys.grep's second stage (sys_grep.c): the helper process that matches the file the worker opened. */
struct grep_scan;
bool grep_scan_advance(struct fs_op *op);
void grep_scan_free(struct grep_scan *s);

/* The failure to open a log for sys.tail or sys.grep (sys_log.c). */
int log_fail(lua_State *L, const struct probe *p, int err);

/* ------------------------------------------------------------------------- mounts (sys_fs.c) */

struct mount {
	char *dir, *fstype, *source;
	unsigned devmajor, devminor;
	size_t order;             /* its line in mountinfo: a later mount is on top of an earlier one */
	bool readonly;            /* mounted ro (its per-mount options): what a target's stat -f cannot say */
};

struct mounts {
	struct mount *v;
	size_t n, cap;
};

int read_mounts(struct mounts *ms);
void parse_mounts(struct mounts *ms, char *text);   /* a target's mountinfo (text: cut up) */
void free_mounts(struct mounts *ms);
bool served_fs(const char *type);
bool may_hang(const char *path);

/* Seconds since boot, from /proc/uptime (sys_mem.c). */
double read_uptime(void);

/* ------------------------------------------------------------------- the module's functions */

int sys_filesystems(lua_State *L);
int sys_fs(lua_State *L);
int sys_largest(lua_State *L);
int sys_files(lua_State *L);
int sys_deleted_open(lua_State *L);
int sys_memory(lua_State *L);
int sys_load(lua_State *L);
/* The same results from text a transport brought back (sys_transport, stdlib/reach.lua). */
int sysx_memory(lua_State *L);
int sysx_load(lua_State *L);
int sysx_fs(lua_State *L);
int sysx_processes(lua_State *L);
int sysx_filesystems(lua_State *L);
int sysx_tail(lua_State *L);
int sysx_largest(lua_State *L);
int sysx_files(lua_State *L);
int sysx_deleted_open(lua_State *L);
int sys_processes(lua_State *L);
int sys_tail(lua_State *L);
int sys_grep(lua_State *L);
int sys_filter(lua_State *L);

#pragma GCC visibility pop

#endif
