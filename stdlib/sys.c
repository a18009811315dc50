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
 *
 * This file is the module table and the helpers its parts share (sys_internal.h); the parts:
 * sys_worker.c (the bounded filesystem calls), sys_fs.c (fs, filesystems), sys_walk.c (largest,
 * files), sys_proc.c (processes, deleted_open), sys_mem.c (memory, load), sys_log.c (tail, grep).
 */
#include "sys_internal.h"

/* ------------------------------------------------------------------------------ common helpers */

void probe_begin(struct probe *p, const char *fn, const char *target, msec_t timeout_ms)
{
	p->fn = fn;
	p->target = target;
	/* timeout = 0: no deadline of its own, but --timeout still caps it */
	p->timeout_ms = timeout_ms > 0 || sched_cap() == 0 ? timeout_ms : sched_cap();
	p->deadline = p->timeout_ms > 0 ? sched_deadline(p->timeout_ms) : 0;
	p->t0 = sched_now_precise();
}

void probe_end(const struct probe *p, const char *outcome, const char *summary)
{
	luax_audit_probe(p->fn, p->target, p->timeout_ms, sched_now_precise() - p->t0, outcome, summary);
}

const char *errno_kind(int err)
{
	switch (err) {
	case ENOENT: case ENOTDIR: return "notfound";
	case EACCES: case EPERM:   return "permission";
	case ETIMEDOUT:            return "timeout";
	case EINTR:                return "interrupted";
	default:                   return "error";
	}
}

const char *errno_cause(int err)
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
int probe_fail_errno(lua_State *L, const struct probe *p, int err)
{
	probe_end(p, errno_kind(err), errno_cause(err));
	return luax_fail(L, errno_kind(err), "%s %s: %s", p->fn, p->target, errno_cause(err));
}

/* Returns 0, or ETIMEDOUT / EINTR when the walk or wait must stop. */
int probe_check(const struct probe *p)
{
	if (sched_interrupted())
		return EINTR;
	if (p->deadline && sched_now() >= p->deadline)
		return ETIMEDOUT;
	return 0;
}

double pct(double part, double whole)
{
	return whole > 0 ? part * 100.0 / whole : 0.0;
}

/* Rounds to one decimal: 93.4 reads better than 93.41176470588235 and compares the same way. */
double round1(double v)
{
	return (double)(long long)(v * 10.0 + 0.5) / 10.0;
}

void *xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n);
	if (!q && n)
		abort();
	return q;
}

char *xstrdup(const char *s)
{
	char *d = strdup(s);
	if (!d)
		abort();
	return d;
}

/* Grows *v (of *cap elements of size sz) to hold at least n elements. */
void grow(void **v, size_t *cap, size_t n, size_t sz)
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
void sort_array(void *v, size_t n, size_t size, int (*cmp)(const void *, const void *))
{
	if (n > 1)
		qsort(v, n, size, cmp);
}

/* Reads a whole small file (/proc, /sys) into buf; returns its length or -1 with errno set. */
ssize_t read_small(const char *path, char *buf, size_t size)
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

lua_Integer opt_count(lua_State *L, int idx, const char *key, lua_Integer def, lua_Integer min, const char *fn)
{
	lua_Integer v = luax_opt_integer(L, idx, key, def, fn);
	if (v < min || v > 1000000)
		luaL_error(L, "%s: option '%s' must be between %d and 1000000", fn, key, (int)min);
	return v;
}

/* ------------------------------------------------------------------------------------ module */

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
		{ "filter", sys_filter },
		{ NULL, NULL },
	};
	luaL_newlib(L, fns);
	return 1;
}

/* The parsers of sys.memory, sys.load and sys.fs for what stdlib/reach.lua read on a target. */
int luaopen_sys_transport(lua_State *L)
{
	static const luaL_Reg fns[] = {
		{ "memory", sysx_memory }, { "load", sysx_load }, { "fs", sysx_fs }, { "processes", sysx_processes },
		{ "filesystems", sysx_filesystems }, { "tail", sysx_tail },
		{ "largest", sysx_largest }, { "files", sysx_files },
		{ "deleted_open", sysx_deleted_open },
		{ NULL, NULL },
	};
	luaL_newlib(L, fns);
	return 1;
}
