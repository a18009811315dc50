/*
 * sys_proc.c - the processes of the machine, from /proc: sys.processes (top, with a CPU sample) and
 * sys.deleted_open (the deleted files still held open, which df counts and du does not).
 */
#include "sys_internal.h"

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

/* Whether an fd whose link reads target (n bytes) and whose file is st is a deleted regular file (on
 * dev, when filtering); *tail: where the " (deleted)" of target begins. Here and on a target. */
static bool held_deleted(const char *target, size_t n, const struct stat *st, bool filter, dev_t dev, size_t *tail)
{
	if (n <= sizeof DELETED - 1 || target[0] != '/')
		return false;
	*tail = n - (sizeof DELETED - 1);
	if (strncmp(target + *tail, DELETED, sizeof DELETED - 1) != 0 || strncmp(target, "/memfd:", 7) == 0)
		return false;
	return S_ISREG(st->st_mode) && st->st_nlink == 0 && !(filter && st->st_dev != dev);
}

static void add_held(struct helds *h, int pid, int fd, const char *command, const char *path, size_t len, int64_t bytes)
{
	grow((void **)&h->v, &h->cap, h->n + 1, sizeof *h->v);
	struct held *x = &h->v[h->n++];
	*x = (struct held){ .pid = pid, .fd = fd, .path = xrealloc(NULL, len + 1), .bytes = bytes };
	memcpy(x->path, path, len);
	x->path[len] = '\0';
	snprintf(x->command, sizeof x->command, "%s", command);
}

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
		struct stat st;
		size_t tail;
		if (n <= 0 || fstatat(dfd, de->d_name, &st, 0) != 0 || !held_deleted(target, (size_t)n, &st, filter, dev, &tail))
			continue;
		if (!*command)
			read_comm(pid, command, sizeof command);
		add_held(h, pid, atoi(de->d_name), command, target, tail, st.st_size);
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

static const char *const deleted_options[] = { "path", "timeout", "limit", "on", NULL };

/* The table of sys.deleted_open (h freed): the `limit` largest, and the counts of all. */
static void push_helds(lua_State *L, struct helds *h, size_t limit, bool partial)
{
	sort_array(h->v, h->n, sizeof *h->v, by_held_bytes);
	int64_t total = 0;
	for (size_t i = 0; i < h->n; i++)
		total += h->v[i].bytes;
	size_t n = h->n < limit ? h->n : limit;
	lua_createtable(L, (int)n, 4);
	for (size_t i = 0; i < n; i++) {
		lua_createtable(L, 0, 5);
		luax_setint(L, "pid", h->v[i].pid);
		luax_setstr(L, "command", h->v[i].command);
		luax_setint(L, "fd", h->v[i].fd);
		luax_setstr(L, "path", h->v[i].path);
		luax_setint(L, "bytes", h->v[i].bytes);
		lua_rawseti(L, -2, (lua_Integer)i + 1);
	}
	luax_setint(L, "count", (lua_Integer)h->n);
	luax_setint(L, "total_bytes", total);
	/* Without root, other users' processes cannot be looked into: say so rather than report "none". */
	luax_setint(L, "unreadable", h->unreadable);
	luax_setbool(L, "partial", partial);
	free_helds(h);
}

static int deleted_open_finish(lua_State *L, struct fs_op *op);

int sys_deleted_open(lua_State *L)
{
	if (luax_remote(L, 1))
		return luax_delegate(L, "reach", "sys_deleted_open");
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
	int64_t total = 0;
	for (size_t i = 0; i < h.n; i++)
		total += h.v[i].bytes;
	char summary[128];
	snprintf(summary, sizeof summary, "%zu deleted files held open, %lld bytes%s", h.n, (long long)total,
	         h.unreadable ? " (some processes unreadable)" : "");
	probe_end(p, stop ? "partial" : "ok", summary);
	push_helds(L, &h, (size_t)op->count, stop != 0);
	return 1;
}

/*
 * sys_transport.deleted_open(text, dev, limit) -> the table of sys.deleted_open, from what a target's
 * find printed (stdlib/reach.lua): "L /proc/PID/fd FD LINK" (not following), "U<unreadable>",
 * "S /proc/PID/fd FD TYPE NLINK DEV SIZE" (following: the open file), each NUL-ended, then "C" and
 * grep -H's "/proc/PID/comm:NAME" lines. dev: the device of `path` there, or nil.
 */
static const char *comm_of(const char *comms, int pid, char *buf, size_t size)
{
	char key[48];
	int k = snprintf(key, sizeof key, "/proc/%d/comm:", pid);
	const char *at = comms;
	while ((at = strstr(at, key)) && at != comms && at[-1] != '\n')
		at += k;
	if (!at)
		return "?";
	at += k;
	snprintf(buf, size, "%.*s", (int)strcspn(at, "\n"), at);
	return buf;
}

int sysx_deleted_open(lua_State *L)
{
	size_t len;
	const char *text = luaL_checklstring(L, 1, &len), *end = text + len;
	bool filter = !lua_isnoneornil(L, 2);
	dev_t dev = filter ? (dev_t)luaL_checkinteger(L, 2) : 0;
	size_t limit = (size_t)luaL_checkinteger(L, 3);
	const char *comms = "";
	struct helds h = { 0 };
	for (const char *r = text; r < end; r += strlen(r) + 1) {   /* the comms first: they come last */
		if (r[0] == 'C' && r[1] == '\0') {
			comms = r + 2;
			end = r;
		} else if (r[0] == 'U') {
			h.unreadable = atol(r + 1);
		}
	}
	for (const char *r = text; r < end; r += strlen(r) + 1) {
		int pid, fd, used = 0;
		if (sscanf(r, "L /proc/%d/fd %d %n", &pid, &fd, &used) < 2 || !used)
			continue;
		const char *link = r + used;
		for (const char *q = text; q < end; q += strlen(q) + 1) {
			int qpid, qfd, nlink;
			char type;
			unsigned long long qdev;
			long long size;
			if (sscanf(q, "S /proc/%d/fd %d %c %d %llu %lld", &qpid, &qfd, &type, &nlink, &qdev, &size) < 6 ||
			    qpid != pid || qfd != fd)
				continue;
			struct stat st = { .st_mode = type == 'f' ? S_IFREG : S_IFIFO, .st_nlink = (nlink_t)nlink,
			                   .st_dev = (dev_t)qdev, .st_size = (off_t)size };
			size_t tail;
			char command[32];
			if (held_deleted(link, strlen(link), &st, filter, dev, &tail))
				add_held(&h, pid, fd, comm_of(comms, pid, command, sizeof command), link, tail, size);
			break;
		}
	}
	push_helds(L, &h, limit, false);
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

/* Parses the text of /proc/PID/stat, "pid (comm) S ppid ... utime stime ... threads . start vsize
 * rss" (text is cut up); here or as a target printed it. pid and uid are the caller's. */
static bool parse_proc_stat(char *text, struct proc *pr, double uptime, long tck, long page)
{
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
	pr->pid = atoi(text);
	pr->state = field[0][0];
	pr->ppid = atoi(field[1]);
	pr->ticks = strtoull(field[11], NULL, 10) + strtoull(field[12], NULL, 10);
	pr->threads = atol(field[17]);
	pr->age = uptime - (double)strtoull(field[19], NULL, 10) / (double)tck;
	pr->rss = strtoll(field[21], NULL, 10) * page;
	return true;
}

static bool read_proc_stat(int pid, struct proc *pr, double uptime, long tck, long page)
{
	char path[64], text[1024];
	snprintf(path, sizeof path, "/proc/%d/stat", pid);
	if (read_small(path, text, sizeof text) <= 0 || !parse_proc_stat(text, pr, uptime, tck, page))
		return false;
	pr->pid = pid;
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

/* user: the name of pr->uid where pr runs. */
static void push_proc(lua_State *L, struct proc *pr, double memtotal, const char *user)
{
	char state[2] = { pr->state, '\0' };
	if (!pr->cmdline)
		pr->cmdline = read_cmdline(pr);
	lua_createtable(L, 0, 11);
	luax_setint(L, "pid", pr->pid);
	luax_setint(L, "ppid", pr->ppid);
	luax_setstr(L, "user", user);
	luax_setstr(L, "state", state);
	luax_setstr(L, "command", pr->comm);
	luax_setstr(L, "cmdline", pr->cmdline);
	luax_setint(L, "rss", pr->rss);
	luax_setnum(L, "mem_pct", round1(pct((double)pr->rss, memtotal)));
	luax_setnum(L, "cpu_pct", pr->cpu_pct);
	luax_setint(L, "threads", pr->threads);
	luax_setint(L, "age", (lua_Integer)pr->age);
}

/* What a sys.processes call asks for. */
struct procs_how {
	bool by_cpu;
	size_t limit;
	const char *match;         /* anchored by the options table */
};

/* The uid -> name pairs a target printed ("name:uid" lines, each ending in a newline). */
struct names { char *text; };

static const char *remote_user(const struct names *nm, uid_t uid, char *buf, size_t size)
{
	snprintf(buf, size, "uid %u", (unsigned)uid);
	for (const char *l = nm->text; l && *l; l = strchr(l, '\n'), l = l ? l + 1 : NULL) {
		const char *colon = strchr(l, ':');
		if (colon && strtoul(colon + 1, NULL, 10) == uid && colon[1] >= '0' && colon[1] <= '9') {
			snprintf(buf, size, "%.*s", (int)(colon - l), l);
			break;
		}
	}
	return buf;
}

/* The result of sys.processes from a scan (and the one before, for the sample): the CPU shares,
 * the match, the order, the top `limit` pushed, with the count; names: the target's users (NULL:
 * this machine's, asked until deadline). Fills summary. */
static void push_procs(lua_State *L, struct procs *now, const struct procs *before, double sample_s, long tck,
                       double memtotal, struct procs_how how, const struct names *names, msec_t deadline,
                       char *summary, size_t ssize)
{
	compute_cpu(now, before, sample_s, tck);
	if (how.match)
		keep_matching(now, how.match);
	sort_array(now->v, now->n, sizeof *now->v, how.by_cpu ? by_cpu : by_rss);
	size_t n = now->n < how.limit ? now->n : how.limit;
	if (n)
		snprintf(summary, ssize, "%zu processes; top: %s (pid %d, %.1f%% cpu, %lld MiB)", now->n,
		         now->v[0].comm, now->v[0].pid, now->v[0].cpu_pct, (long long)(now->v[0].rss >> 20));
	else
		snprintf(summary, ssize, "no process matches");
	lua_createtable(L, (int)n, 1);
	for (size_t i = 0; i < n; i++) {
		char user[64];
		if (names)
			remote_user(names, now->v[i].uid, user, sizeof user);
		else
			user_name(now->v[i].uid, user, sizeof user, deadline);
		push_proc(L, &now->v[i], memtotal, user);
		lua_rawseti(L, -2, (lua_Integer)i + 1);
	}
	luax_setint(L, "count", (lua_Integer)now->n);
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
	bool sampled, interrupted;
	struct procs_how how;
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
	int err = op->interrupted ? EINTR : scan_procs(&now, &op->p, op->how.match != NULL);
	if (err) {
		free_procs(&now);
		return probe_fail_errno(L, &op->p, err);
	}
	char summary[160];
	push_procs(L, &now, &op->before, sample_s, sysconf(_SC_CLK_TCK),
	           (double)sysconf(_SC_PHYS_PAGES) * (double)sysconf(_SC_PAGESIZE), op->how, NULL, op->p.deadline,
	           summary, sizeof summary);
	probe_end(&op->p, "ok", summary);
	free_procs(&now);
	return 1;
}

static void procs_release(void *p)
{
	free_procs(&((struct procs_op *)p)->before);
}

static const struct tasks_machine procs_machine = { procs_advance, procs_done, procs_release };


int sys_processes(lua_State *L)
{
	if (luax_remote(L, 1))
		return luax_delegate(L, "reach", "sys_processes");
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
	op->how = (struct procs_how){ .by_cpu = strcmp(sort, "cpu") == 0, .limit = limit, .match = match };
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

/* ------------------------------------------------------------- sys.processes from a target */

static struct proc *find_pid(struct procs *ps, int pid)
{
	struct proc key = { .pid = pid };
	return ps->n ? bsearch(&key, ps->v, ps->n, sizeof key, by_pid) : NULL;
}

/* The next line of the target's text, cut out in place. */
static char *next_line(char **cur)
{
	if (!*cur || !**cur)
		return NULL;
	char *line = *cur, *nl = strchr(line, '\n');
	*cur = nl ? nl + 1 : line + strlen(line);
	if (nl)
		*nl = '\0';
	return line;
}

/* Reads the /proc/PID/stat lines of a section into ps (sorted by pid). */
static void scan_section(char **cur, struct procs *ps, double uptime, long tck, long page)
{
	char *line;
	while (*cur && **cur && !isupper((unsigned char)**cur) && (line = next_line(cur))) {   /* to the next marker */
		struct proc pr = { .uid = (uid_t)-1 };
		if (!parse_proc_stat(line, &pr, uptime, tck, page))
			continue;
		grow((void **)&ps->v, &ps->cap, ps->n + 1, sizeof *ps->v);
		ps->v[ps->n++] = pr;
	}
	sort_array(ps->v, ps->n, sizeof *ps->v, by_pid);
}

/*
 * sys_transport.processes(text, sort, limit, match, sample_s) -> the table of sys.processes | nil,
 * err, from what stdlib/reach.lua's script printed on the target:
 *   H uptime clock-ticks page-size memtotal-kB / S1, the stat lines / S2, the stat lines after the
 *   sample / U, `ls -dn` of /proc/PID (owners) / N, the name:uid lines of its passwd / C, pid TAB
 *   command line
 * parsed by the code that parses them here (parse_proc_stat, push_procs).
 */
int sysx_processes(lua_State *L)
{
	const char *text = luaL_checkstring(L, 1);
	const char *sort = luaL_checkstring(L, 2);
	struct procs_how how = { .by_cpu = strcmp(sort, "cpu") == 0, .limit = (size_t)luaL_checkinteger(L, 3),
	                         .match = luaL_optstring(L, 4, NULL) };
	double sample_s = luaL_checknumber(L, 5);
	char *copy = xstrdup(text), *cur = copy, *line;
	double uptime = 0, memkb = 0;
	long tck = 0, page = 0;
	struct procs before = { 0 }, now = { 0 };
	struct names names = { NULL };
	char section = 0;
	size_t nlen = 0;
	while ((line = next_line(&cur))) {
		if (line[0] == 'H') {
			sscanf(line, "H %lf %ld %ld %lf", &uptime, &tck, &page, &memkb);
		} else if (strcmp(line, "S1") == 0 && tck > 0) {
			scan_section(&cur, &before, uptime, tck, page);
		} else if (strcmp(line, "S2") == 0 && tck > 0) {
			scan_section(&cur, &now, uptime, tck, page);
		} else if (strcmp(line, "U") == 0 || strcmp(line, "N") == 0 || strcmp(line, "C") == 0) {
			section = line[0];
		} else if (section == 'N') {   /* name:uid */
			size_t l = strlen(line);
			names.text = xrealloc(names.text, nlen + l + 2);
			memcpy(names.text + nlen, line, l);
			nlen += l;
			names.text[nlen++] = '\n';
			names.text[nlen] = '\0';
		} else if (section == 'U') {   /* "dr-xr-xr-x 9 UID GID ... /proc/PID" */
			char mode[16];
			unsigned links, uid;
			const char *slash = strrchr(line, '/');
			struct proc *pr = slash ? find_pid(&now, atoi(slash + 1)) : NULL;
			if (pr && sscanf(line, "%15s %u %u", mode, &links, &uid) == 3)
				pr->uid = uid;
		} else if (section == 'C' && strchr(line, '\t')) {   /* pid TAB command line */
			struct proc *pr = find_pid(&now, atoi(line));
			const char *cmd = strchr(line, '\t') + 1;
			size_t n = strlen(cmd);
			while (n > 0 && cmd[n - 1] == ' ')
				n--;
			if (pr && !pr->cmdline && n > 0)
				pr->cmdline = strndup(cmd, n);
		}
	}
	if (tck <= 0 || page <= 0 || now.n == 0) {
		free_procs(&before);
		free_procs(&now);
		free(copy);
		free(names.text);
		return luax_fail(L, "unavailable", "sys.processes: the target printed no readable /proc/PID/stat");
	}
	for (size_t i = 0; i < now.n; i++) {
		if (!now.v[i].cmdline) {   /* kernel threads have none, as here */
			char buf[64];
			snprintf(buf, sizeof buf, "[%s]", now.v[i].comm);
			now.v[i].cmdline = xstrdup(buf);
		}
	}
	char summary[160];
	push_procs(L, &now, &before, sample_s, tck, memkb * 1024.0, how, &names, 0, summary, sizeof summary);
	free_procs(&before);
	free_procs(&now);
	free(copy);
	free(names.text);
	return 1;
}
