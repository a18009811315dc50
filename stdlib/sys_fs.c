/*
 * sys_fs.c - sys.fs and sys.filesystems: the mounts (/proc/self/mountinfo), which of them may hang
 * (network, FUSE), and the usage of each as df shows it, asked of each server in its own worker.
 */
#include "sys_internal.h"

/* ------------------------------------------------------------------------------------ mounts */

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
	m->readonly = strncmp(fields[5], "ro", 2) == 0 && (fields[5][2] == ',' || fields[5][2] == '\0');
	m->dir = xstrdup(fields[4]);
	m->fstype = xstrdup(fields[dash + 1]);
	m->source = xstrdup(fields[dash + 2]);
	return true;
}

static void add_mount(struct mounts *ms, struct mount *m)
{
	grow((void **)&ms->v, &ms->cap, ms->n + 1, sizeof *ms->v);
	m->order = ms->n;
	ms->v[ms->n++] = *m;
}

/* The mounts of mountinfo text a target printed (cut up in place). */
void parse_mounts(struct mounts *ms, char *text)
{
	for (char *save = NULL, *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		struct mount m;
		if (parse_mountinfo_line(line, &m))
			add_mount(ms, &m);
	}
}

int read_mounts(struct mounts *ms)
{
	FILE *f = fopen("/proc/self/mountinfo", "re");
	if (!f)
		return errno;
	char *line = NULL;
	size_t cap = 0;
	while (getline(&line, &cap, f) > 0) {
		struct mount m;
		if (parse_mountinfo_line(line, &m))
			add_mount(ms, &m);
	}
	free(line);
	fclose(f);
	return 0;
}

void free_mounts(struct mounts *ms)
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
bool served_fs(const char *type)
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
bool may_hang(const char *path)
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

int sys_fs(lua_State *L)
{
	if (luax_remote(L, 2))
		return luax_delegate(L, "reach", "sys_fs");
	const char *path = luaL_checkstring(L, 1);
	luax_check_options(L, 2, "sys.fs", fs_options);
	msec_t timeout = luax_opt_duration(L, 2, "timeout", DEFAULT_FS_TIMEOUT_MS, "sys.fs");
	struct fs_op *op = fs_op_push(L, "sys.fs", path, timeout, path, FS_STATVFS_REAL, fs_finish);
	return tasks_run_op(L, &op->task);
}

/*
 * sys_transport.fs(text) -> the table of sys.fs | nil, err, from what a target printed for
 *   stat -f -c '%S %b %f %a %c %d' PATH; df -P PATH | tail -n 1; cat /proc/mounts
 * statvfs's own fields (stat -f), the mount point (df), and the mount's device, type and flags
 * (the last line of /proc/mounts for that point: the one on top). Pushed by push_fs, as locally.
 */
int sysx_fs(lua_State *L)
{
	size_t len;
	const char *text = luaL_checklstring(L, 1, &len);
	char *copy = strdup(text), *save = NULL;
	if (!copy)
		abort();
	struct statvfs v = { 0 };
	unsigned long long bs, blocks, bfree, bavail, files, ffree;
	char *line = strtok_r(copy, "\n", &save);
	char *df = line ? strtok_r(NULL, "\n", &save) : NULL;
	if (!line || sscanf(line, "%llu %llu %llu %llu %llu %llu", &bs, &blocks, &bfree, &bavail, &files, &ffree) != 6 || !df) {
		free(copy);
		return luax_fail(L, "unavailable", "sys.fs: the target's stat -f and df did not answer as expected");
	}
	v.f_frsize = bs;
	v.f_blocks = blocks;
	v.f_bfree = bfree;
	v.f_bavail = bavail;
	v.f_files = files;
	v.f_ffree = ffree;
	/* df -P: "device blocks used available capacity% mount point" (the point may hold spaces). */
	char *dir = df;
	for (int field = 0; field < 5 && dir; field++) {
		dir += strcspn(dir, " \t");
		dir += strspn(dir, " \t");
	}
	struct mount m = { .dir = dir && *dir ? dir : NULL, .fstype = "?", .source = "?" };
	for (char *l = strtok_r(NULL, "\n", &save); l && m.dir; l = strtok_r(NULL, "\n", &save)) {
		char *f = NULL;
		char *src = strtok_r(l, " ", &f), *mdir = strtok_r(NULL, " ", &f), *type = strtok_r(NULL, " ", &f);
		char *opts = strtok_r(NULL, " ", &f);
		if (!opts)
			continue;
		unescape_octal(mdir);
		if (strcmp(mdir, m.dir) == 0) {
			unescape_octal(src);
			m.source = src;
			m.fstype = type;
			bool ro = strncmp(opts, "ro", 2) == 0 && (opts[2] == ',' || opts[2] == '\0');
			v.f_flag = ro ? ST_RDONLY : 0;
		}
	}
	if (!m.dir) {
		free(copy);
		return luax_fail(L, "unavailable", "sys.fs: the target's df -P named no mount point");
	}
	push_fs(L, &m, &v);
	free(copy);
	return 1;
}

static const char *const filesystems_options[] = { "all", "network", "timeout", NULL };

static bool seen_device(const struct mounts *ms, size_t upto, const struct mount *m)
{
	for (size_t i = 0; i < upto; i++)
		if (ms->v[i].devmajor == m->devmajor && ms->v[i].devminor == m->devminor)
			return true;
	return false;
}

/* Whether sys.filesystems lists the i-th mount: not a network one unless asked, nor a pseudo
 * filesystem or a second mount of a device unless all. */
static bool listed(const struct mounts *ms, size_t i, bool all, bool network)
{
	const struct mount *m = &ms->v[i];
	return !((is_network_fs(m->fstype) && !network) || (!all && (is_pseudo_fs(m->fstype) || seen_device(ms, i, m))));
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


int sys_filesystems(lua_State *L)
{
	if (luax_remote(L, 1))
		return luax_delegate(L, "reach", "sys_filesystems");
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
		if (listed(&op->ms, i, all, network))
			op->asks[op->n++] = (struct fs_ask){ .m = m, .served = served_fs(m->fstype) };
	}
	return tasks_run_op(L, &op->task);
}

/*
 * sys_transport.filesystems(mountinfo, stats, all, network): for a target, in two calls. Without
 * stats: the mount points to ask (the ones sys.filesystems lists, chosen as here). With stats (one
 * line per point, "%S %b %f %a %c %d" of stat -f, or "-" when it could not say): the table of
 * sys.filesystems, each filesystem pushed by push_fs as here, read-only from its mount options.
 */
int sysx_filesystems(lua_State *L)
{
	char *info = xstrdup(luaL_checkstring(L, 1));
	const char *stats = luaL_optstring(L, 2, NULL);
	bool all = lua_toboolean(L, 3), network = lua_toboolean(L, 4) || all;
	struct mounts ms = { 0 };
	parse_mounts(&ms, info);
	free(info);
	lua_newtable(L);
	int n = 0, silent = 0;
	const char *line = stats;
	for (size_t i = 0; i < ms.n; i++) {
		if (!listed(&ms, i, all, network))
			continue;
		if (!stats) {
			lua_pushstring(L, ms.v[i].dir);
			lua_rawseti(L, -2, ++n);
			continue;
		}
		struct statvfs v = { 0 };
		unsigned long long f[6];
		bool got = line && *line && sscanf(line, "%llu %llu %llu %llu %llu %llu", &f[0], &f[1], &f[2], &f[3], &f[4], &f[5]) == 6;
		line = line && strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL;
		silent += !got;
		if (!got || (!all && f[1] == 0))
			continue;
		v.f_frsize = f[0];
		v.f_blocks = f[1];
		v.f_bfree = f[2];
		v.f_bavail = f[3];
		v.f_files = f[4];
		v.f_ffree = f[5];
		v.f_flag = ms.v[i].readonly ? ST_RDONLY : 0;
		push_fs(L, &ms.v[i], &v);
		lua_rawseti(L, -2, ++n);
	}
	if (silent) {
		lua_pushinteger(L, silent);
		lua_setfield(L, -2, "unanswered");
	}
	free_mounts(&ms);
	return 1;
}
