/*
 * sys_walk.c - the tree walks of sys (bounded, iterative, one fd per level, mounts below the root
 * skipped when served) and the two probes built on them: sys.largest (du) and sys.files (find).
 */
#include "sys_internal.h"

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
static void find_mounts_below(struct walk *w, const char *real, struct mounts *from)
{
	struct mounts all = { 0 };
	if (from)
		all = *from;
	else if (!real || read_mounts(&all) != 0) {
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

/* The walk's root path and the mounts below its canonical path (from: a target's, consumed; NULL: here). */
static void walk_root(struct walk *w, const char *root, const char *real, struct mounts *from)
{
	path_put(w, 0, root);
	while (w->len > 1 && w->path[w->len - 1] == '/')
		w->path[--w->len] = '\0';
	w->rootlen = w->len;
	find_mounts_below(w, real, from);
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
int walk_run(struct walk *w, const char *root, int fd, const struct stat *st, const char *real)
{
	w->dev = st->st_dev;
	walk_root(w, root, real, NULL);
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

void walk_cancel(struct walk *w)
{
	atomic_store(&w->cancelled, true);
}

/* A walk stuck on a symlink's target says nothing of walks that follow none. */
enum busy_kind walk_busy_kind(const struct walk *w)
{
	return w->how.follows ? BUSY_WALK_FOLLOWING : BUSY_WALK;
}

void walk_free(struct walk *w)
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

static struct walk *new_walk(void)
{
	struct walk *w = calloc(1, sizeof *w);
	if (!w)
		abort();
	atomic_init(&w->cancelled, false);
	return w;
}

/* Pushes the op of a walk of path by the probe fn; walked pushes what it found. The caller then
 * says what the walk does (op->walk->how: its callbacks, and results which free_ctx frees with the
 * walk; allocated after the push, so that nothing is lost if the push raises) and runs it. */
static struct fs_op *walk_op_push(lua_State *L, const char *fn, const char *path, msec_t timeout_ms,
                                  int (*walked)(lua_State *L, struct fs_op *op, const struct walk *w))
{
	struct fs_op *op = fs_op_push(L, fn, path, timeout_ms, path, FS_OPENDIR, walk_start);
	op->walk = new_walk();
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

static const char *const largest_options[] = { "depth", "limit", "timeout", "xdev", "files", "on", NULL };

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

/* The walk of sys.largest by the options at idx (raises on a bad one). */
static struct walk *largest_walk(lua_State *L, int idx)
{
	luax_check_options(L, idx, "sys.largest", largest_options);
	struct largest opts = {
		.maxdepth = (int)opt_count(L, idx, "depth", 1, 1, "sys.largest"),
		.limit = (size_t)opt_count(L, idx, "limit", 10, 1, "sys.largest"),
		.want_files = luax_opt_bool(L, idx, "files", false, "sys.largest"),
	};
	bool xdev = luax_opt_bool(L, idx, "xdev", true, "sys.largest");
	struct walk *w = new_walk();
	struct largest *g = xrealloc(NULL, sizeof *g);
	*g = opts;
	if (g->want_files)
		g->top = xrealloc(NULL, g->limit * sizeof *g->top);
	w->how = (struct walk_how){ .xdev = xdev, .recursive = true, .on_dir = largest_dir,
	                            .on_file = largest_file, .ctx = g, .free_ctx = free_largest };
	return w;
}

static int largest_walked(lua_State *L, struct fs_op *op, const struct walk *w);

int sys_largest(lua_State *L)
{
	if (luax_remote(L, 2))
		return luax_delegate(L, "reach", "sys_largest");
	const char *path = luaL_checkstring(L, 1);
	msec_t timeout = luax_opt_duration(L, 2, "timeout", DEFAULT_WALK_TIMEOUT_MS, "sys.largest");
	struct walk *how = largest_walk(L, 2);   /* nothing raises from here on */
	struct fs_op *op = walk_op_push(L, "sys.largest", path, timeout, largest_walked);
	free(op->walk);
	op->walk = how;
	return tasks_run_op(L, &op->task);
}

static void push_largest(lua_State *L, const struct walk *w)
{
	struct largest *g = w->how.ctx;
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
}

static int largest_walked(lua_State *L, struct fs_op *op, const struct walk *w)
{
	struct largest *g = w->how.ctx;
	char summary[128];
	snprintf(summary, sizeof summary, "%zu directories, %llu bytes in %llu files%s", g->n,
	         (unsigned long long)g->total, (unsigned long long)g->total_files, w->stop ? " (partial)" : "");
	probe_end(&op->p, walk_outcome(w), summary);
	push_largest(L, w);
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
	"pattern", "older_than", "min_size", "recursive", "xdev", "follow", "limit", "timeout", "on", NULL,
};

static void free_files(void *ctx)
{
	struct files *q = ctx;
	free_matches(q->v, q->n);
	free(q->pattern);
	free(q);
}

/* The walk of sys.files by the options at idx (raises on a bad one); now: the clock its ages count from. */
static struct walk *files_walk(lua_State *L, int idx, time_t now)
{
	luax_check_options(L, idx, "sys.files", files_options);
	msec_t older = luax_opt_duration(L, idx, "older_than", -1, "sys.files");
	const char *pattern = luax_opt_string(L, idx, "pattern", NULL, "sys.files");
	struct files opts = {
		.has_cutoff = older >= 0,
		.now = now,
		.min_size = luax_opt_integer(L, idx, "min_size", 0, "sys.files"),
		.limit = (size_t)opt_count(L, idx, "limit", 1000, 0, "sys.files"),
	};
	opts.cutoff = opts.now - (time_t)(older / 1000);
	bool xdev = luax_opt_bool(L, idx, "xdev", true, "sys.files");
	bool recursive = luax_opt_bool(L, idx, "recursive", true, "sys.files");
	bool follow = luax_opt_bool(L, idx, "follow", false, "sys.files");
	struct walk *w = new_walk();
	struct files *q = xrealloc(NULL, sizeof *q);
	*q = opts;
	q->pattern = pattern ? xstrdup(pattern) : NULL;   /* the worker's: it may outlive the call */
	w->how = (struct walk_how){ .xdev = xdev, .recursive = recursive, .follows = follow,
	                            .on_file = files_file, .ctx = q, .free_ctx = free_files };
	return w;
}

static int files_walked(lua_State *L, struct fs_op *op, const struct walk *w);

int sys_files(lua_State *L)
{
	if (luax_remote(L, 2))
		return luax_delegate(L, "reach", "sys_files");
	const char *path = luaL_checkstring(L, 1);
	msec_t timeout = luax_opt_duration(L, 2, "timeout", DEFAULT_WALK_TIMEOUT_MS, "sys.files");
	struct walk *how = files_walk(L, 2, time(NULL));
	struct fs_op *op = walk_op_push(L, "sys.files", path, timeout, files_walked);
	free(op->walk);
	op->walk = how;
	return tasks_run_op(L, &op->task);
}

static void push_files(lua_State *L, const struct walk *w)
{
	struct files *q = w->how.ctx;
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
}

static int files_walked(lua_State *L, struct fs_op *op, const struct walk *w)
{
	struct files *q = w->how.ctx;
	char summary[128];
	snprintf(summary, sizeof summary, "%llu files, %llu bytes%s", (unsigned long long)q->count,
	         (unsigned long long)q->total, w->stop ? " (partial)" : "");
	probe_end(&op->p, walk_outcome(w), summary);
	push_files(L, w);
	return 1;
}

/* ------------------------------------------------ the same walks from what a target's find printed */

/*
 * On a target (stdlib/reach.lua), `find ROOT [-xdev] -maxdepth D -printf '%y %D %b %s %T@ %d %P\0'`
 * stands for the walk: its records (preorder, as the walk goes) are replayed through the probe's own
 * callbacks, with the mounts below the root from the target's mountinfo, so that what is counted,
 * skipped and kept is decided by the same code. Only sys.files' follow cannot be: find gives no
 * target's size without following every link (reach.lua refuses it there).
 */
static void replay_entry(struct walk *w, int **nodes, size_t *ncap, char **skip, const char *rec)
{
	char type;
	unsigned long long dev, blocks;
	long long size;
	double mtime;   /* seconds.fraction */
	int depth, used = 0;
	if (sscanf(rec, "%c %llu %llu %lld %lf %d %n", &type, &dev, &blocks, &size, &mtime, &depth, &used) < 6 ||
	    !used || depth < 0 || depth > WALK_MAX_DEPTH)
		return;
	grow((void **)nodes, ncap, (size_t)depth + 1, sizeof **nodes);
	if (depth == 0) {   /* the root */
		w->dev = (dev_t)dev;
		(*nodes)[0] = -1;
		return;
	}
	path_put(w, w->rootlen, rec + used);
	size_t skiplen = *skip ? strlen(*skip) : 0;
	if (skiplen && strncmp(w->path, *skip, skiplen) == 0 && w->path[skiplen] == '/')
		return;   /* below a mount point left out, or a directory on another device */
	const char *slash = strrchr(w->path + w->rootlen, '/');
	w->name = slash ? slash + 1 : w->path + w->rootlen;
	grow((void **)&w->stack, &w->stack_cap, (size_t)depth, sizeof *w->stack);
	for (int i = 0; i < depth; i++)
		w->stack[i] = (struct frame){ .node = (*nodes)[i] };
	w->depth = (size_t)depth;
	struct stat st = { .st_dev = (dev_t)dev, .st_blocks = (blkcnt_t)blocks, .st_size = (off_t)size,
	                   .st_mtime = (time_t)mtime };
	st.st_mode = type == 'd' ? S_IFDIR : type == 'f' ? S_IFREG : type == 'l' ? S_IFLNK : S_IFIFO;
	bool leave = w->below.n && leave_mount(w);
	if (!leave && !S_ISDIR(st.st_mode)) {
		if (w->how.on_file)
			w->how.on_file(w, &st, depth);
		return;
	}
	if (leave || (w->how.xdev && st.st_dev != w->dev)) {
		free(*skip);
		*skip = xstrdup(w->path);
		return;
	}
	(*nodes)[depth] = w->how.on_dir ? w->how.on_dir(w, &st, depth) : -1;
}

/* sys_transport.largest|files(root, real, mountinfo, records, unreadable, opts[, now]): replays. */
static void replay(lua_State *L, struct walk *w)
{
	const char *root = luaL_checkstring(L, 1), *real = luaL_checkstring(L, 2);
	char *info = xstrdup(luaL_checkstring(L, 3));
	size_t len;
	const char *rec = luaL_checklstring(L, 4, &len), *end = rec + len;
	struct mounts ms = { 0 };
	parse_mounts(&ms, info);
	free(info);
	walk_root(w, root, real, &ms);
	int *nodes = NULL;
	size_t ncap = 0;
	char *skip = NULL;
	for (; rec < end; rec += strlen(rec) + 1)
		replay_entry(w, &nodes, &ncap, &skip, rec);
	free(nodes);
	free(skip);
	w->depth = 0;
	w->unreadable = (long)luaL_checkinteger(L, 5);
}

int sysx_largest(lua_State *L)
{
	struct walk *w = largest_walk(L, 6);
	replay(L, w);   /* raises on programmer errors only: reach.lua gives what it parsed */
	push_largest(L, w);
	walk_free(w);
	return 1;
}

int sysx_files(lua_State *L)
{
	struct walk *w = files_walk(L, 6, (time_t)luaL_checkinteger(L, 7));
	replay(L, w);
	push_files(L, w);
	walk_free(w);
	return 1;
}
