/*
 * sys_grep.c - sys.grep: the lines of a file matching a POSIX extended regex, the last `limit` of them.
 *
 * A worker opens the file (sys_worker.c: never blocking on a FIFO or a hung mount). The matching runs
 * in a helper process, this program started again as `runbook __grep` with the file as its stdin:
 * glibc's regexec backtracks for minutes on one long line with a pattern like `(a|aa)*b` (for ever
 * with a back-reference), inside C where no Lua hook, signal or deadline reaches it, and a thread
 * cannot be stopped there. A process can: it is killed at the probe's deadline, at Ctrl-C, or when the
 * op is released (a parallel() task stopped). The helper streams its matches and how many lines it
 * has read, so a deadline in a long file still returns what was seen (`partial`).
 *
 * sys.filter matches strings the same way (lines read from a journal, kubectl or compose): they reach
 * the same helper as NUL-ended records in a memfd, its "line" numbers being their indices.
 */
#include "sys_internal.h"

#include "leftovers.h"
#include "term.h"
#include "tool.h"

#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>

extern char **environ;

/* The regex reaches the helper in its environment, not its argv: /proc/PID/cmdline is readable by
 * everyone, and a runbook may grep a log for a secret (did the token leak?). */
#define PATTERN_ENV "RUNBOOK_GREP_PATTERN"
#define PROGRESS_LINES 1024   /* the helper says how far it is every so many lines, */
#define PROGRESS_MS 50        /* or this often */
#define REAP_MS 500           /* a killed helper is waited for this long (in I/O on a dead disk: not) */

/* One record of the helper's stream; a match's text (len bytes) follows it. */
struct grep_rec {
	char kind;        /* 'm' a match, 'l' lines read so far, 'e' the end, 'x' a read error */
	uint32_t len;
	int64_t n;        /* 'm': its line; 'l', 'e': the lines read; 'x': the errno */
};

/* ------------------------------------------------------------------------------- the helper */

static void put(FILE *out, char kind, int64_t n, const char *text, size_t len)
{
	struct grep_rec r = { .kind = kind, .len = (uint32_t)len, .n = n };
	fwrite(&r, sizeof r, 1, out);
	if (len)
		fwrite(text, 1, len, out);
}

/* `runbook __grep icase|case [texts]`: stdin the file, the regex in $RUNBOOK_GREP_PATTERN, records on
 * stdout. With `texts`, stdin is NUL-ended strings (a string may hold newlines), and a match is sent
 * without its text: sys.filter wants the indices only. */
int sys_grep_helper(int argc, char **argv)
{
	const char *pattern = getenv(PATTERN_ENV);
	bool texts = argc == 2 && strcmp(argv[1], "texts") == 0;
	if (!(argc == 1 || texts) || !pattern) {
		fputs("runbook __grep: started by sys.grep only\n", stderr);
		return 2;
	}
	prctl(PR_SET_PDEATHSIG, SIGKILL);   /* runbook gone (kill -9): nobody reads what this finds */
	regex_t re;
	if (regcomp(&re, pattern, REG_EXTENDED | REG_NOSUB | (strcmp(argv[0], "icase") == 0 ? REG_ICASE : 0)))
		return 2;
	char *line = NULL;
	size_t cap = 0;
	ssize_t len;
	int64_t lineno = 0, told = 0;
	msec_t last = sched_now();
	while ((len = getdelim(&line, &cap, texts ? '\0' : '\n', stdin)) >= 0) {
		lineno++;
		if (len > 0 && line[len - 1] == (texts ? '\0' : '\n'))
			line[--len] = '\0';
		if (len > MAX_TEXT_LINE && told < lineno - 1) {   /* where a regex may backtrack for long */
			put(stdout, 'l', lineno - 1, NULL, 0);
			fflush(stdout);
			told = lineno - 1;
		}
		if (regexec(&re, line, 0, NULL, 0) == 0)
			put(stdout, 'm', lineno, line, texts ? 0 : (size_t)len > MAX_TEXT_LINE ? MAX_TEXT_LINE : (size_t)len);
		msec_t now = sched_now();
		if (lineno == 1 || lineno - told >= PROGRESS_LINES || now - last >= PROGRESS_MS) {
			put(stdout, 'l', lineno, NULL, 0);
			fflush(stdout);
			told = lineno;
			last = now;
		}
	}
	if (ferror(stdin))
		put(stdout, 'x', errno, NULL, 0);
	else
		put(stdout, 'e', lineno, NULL, 0);
	free(line);
	regfree(&re);
	return fflush(stdout) == 0 ? 0 : 1;
}

/* ------------------------------------------------------------------------- the probe's side */

struct hit {
	lua_Integer line;
	char *text;
};

struct grep_scan {
	pid_t pid;                    /* the helper, 0 once reaped (or left stuck) */
	int fd;                       /* its stdout, -1 once at its end */
	char *buf;                    /* what it wrote and was not parsed yet */
	size_t len, cap;
	struct hit *ring;             /* the last `limit` matches */
	size_t limit;
	lua_Integer count, lines;
	int read_err;                 /* the helper could not read the file: its errno */
	bool texts;                   /* sys.filter's: the matches' lines only, every one of them */
	bool ended;                   /* its 'e' or 'x' came: the scan is complete */
};

/* The environment with the regex in it (the pointers of environ, and one string of ours). */
static char **helper_env(const char *pattern, char **ours)
{
	size_t n = 0;
	while (environ[n])
		n++;
	char **env = calloc(n + 2, sizeof *env);
	size_t len = strlen(PATTERN_ENV) + 1 + strlen(pattern) + 1;
	if (!env || !(*ours = malloc(len)))
		abort();
	snprintf(*ours, len, "%s=%s", PATTERN_ENV, pattern);
	size_t k = 0;
	for (size_t i = 0; i < n; i++)
		if (strncmp(environ[i], PATTERN_ENV "=", sizeof PATTERN_ENV) != 0)
			env[k++] = environ[i];
	env[k] = *ours;
	return env;
}

/* Starts the helper on file (closed here); 0 or an errno. */
static int spawn_helper(struct grep_scan *s, int file, const char *pattern, bool icase)
{
	if (file < 0)
		return errno;
	int out[2];
	if (pipe2(out, O_CLOEXEC) != 0) {
		int e = errno;
		close(file);
		return e;
	}
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, file, 0);
	posix_spawn_file_actions_adddup2(&fa, out[1], 1);
	posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
	tool_spawnattr_init(&attr);
	char *ours;
	char **env = helper_env(pattern, &ours);
	char *argv[] = { "runbook", "__grep", icase ? "icase" : "case", s->texts ? "texts" : NULL, NULL };
	bool keep = leftovers_spawning(false);   /* a command of ours, not something another one left */
	int r = posix_spawn(&s->pid, "/proc/self/exe", &fa, &attr, argv, env);
	leftovers_started(r == 0 ? s->pid : 0, keep);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&attr);
	free(env);
	free(ours);
	close(file);
	close(out[1]);
	if (r != 0) {
		s->pid = 0;
		close(out[0]);
		return r;
	}
	fcntl(out[0], F_SETFL, O_NONBLOCK);
	s->fd = out[0];
	return 0;
}

/* Kills the helper if it still runs and reaps it, waiting a little (stuck in the kernel: left). */
static void end_helper(struct grep_scan *s)
{
	if (s->fd >= 0)
		close(s->fd);
	s->fd = -1;
	if (s->pid <= 0)
		return;
	kill(s->pid, SIGKILL);
	leftovers_ended(s->pid);
	int pidfd = (int)syscall(SYS_pidfd_open, s->pid, 0);
	if (pidfd >= 0) {
		struct pollfd p = { .fd = pidfd, .events = POLLIN };
		while (poll(&p, 1, REAP_MS) < 0 && errno == EINTR)
			;
		close(pidfd);
	}
	while (waitpid(s->pid, NULL, WNOHANG) < 0 && errno == EINTR)
		;
	s->pid = 0;
}

void grep_scan_free(struct grep_scan *s)
{
	end_helper(s);
	for (size_t i = 0; i < s->limit; i++)
		free(s->ring[i].text);
	free(s->ring);
	free(s->buf);
	free(s);
}

static void keep_match(struct grep_scan *s, lua_Integer line, const char *text, size_t len)
{
	struct hit *h = &s->ring[(size_t)s->count % s->limit];
	free(h->text);
	char *t = NULL;
	if (!s->texts) {
		t = xrealloc(NULL, len + 1);
		memcpy(t, text, len);
		t[len] = '\0';
	}
	*h = (struct hit){ .line = line, .text = t };
	s->count++;
}

/* Takes in the whole records of the stream. */
static void parse(struct grep_scan *s)
{
	size_t at = 0;
	struct grep_rec r;
	while (!s->ended && s->len - at >= sizeof r) {
		memcpy(&r, s->buf + at, sizeof r);
		if (s->len - at - sizeof r < r.len)
			break;
		const char *text = s->buf + at + sizeof r;
		if (r.kind == 'm')
			keep_match(s, (lua_Integer)r.n, text, r.len);
		if (r.kind == 'm' && r.n > s->lines)   /* the buffer flushed before its progress record */
			s->lines = (lua_Integer)r.n;
		else if (r.kind == 'l' || r.kind == 'e')
			s->lines = (lua_Integer)r.n;
		if (r.kind == 'x')
			s->read_err = (int)r.n;
		s->ended = r.kind == 'e' || r.kind == 'x';
		at += sizeof r + r.len;
	}
	memmove(s->buf, s->buf + at, s->len - at);
	s->len -= at;
}

/* Reads what the helper wrote; true at its end (or when it is gone without one). */
static bool drain(struct grep_scan *s)
{
	for (;;) {
		grow((void **)&s->buf, &s->cap, s->len + 65536, 1);
		ssize_t n = read(s->fd, s->buf + s->len, s->cap - s->len);
		if (n > 0) {
			s->len += (size_t)n;
			parse(s);
		} else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
			return true;
		} else if (errno == EAGAIN) {
			return s->ended;
		}
	}
}

bool grep_scan_advance(struct fs_op *op)
{
	struct grep_scan *s = op->scan;
	if (op->w.result == SCHED_INTERRUPTED || op->w.result == SCHED_TIMEOUT) {
		op->err = op->w.result == SCHED_TIMEOUT ? ETIMEDOUT : EINTR;
		return true;
	}
	if (drain(s))
		return true;
	tasks_wait_init(&op->w, op->p.deadline > 0 ? op->p.deadline : INT64_MAX);
	tasks_want(&op->w, s->fd, POLLIN);
	return false;
}

/* ------------------------------------------------------------------------------------ sys.grep */

static const char *const grep_options[] = { "icase", "limit", "timeout", "on", NULL };   /* on: "local" here */

static int grep_finish(lua_State *L, struct fs_op *op);

/* Raises on a bad regex: compiled here only for that, the helper compiles its own. */
static void check_regex(lua_State *L, const char *fn, const char *pattern, bool icase)
{
	regex_t re;
	int rc = regcomp(&re, pattern, REG_EXTENDED | REG_NOSUB | (icase ? REG_ICASE : 0));
	if (rc != 0) {
		char why[160];
		regerror(rc, &re, why, sizeof why);
		luaL_error(L, "%s: bad regular expression '%s': %s", fn, pattern, why);
	}
	regfree(&re);
}

static struct grep_scan *scan_new(size_t limit, bool texts)
{
	struct grep_scan *s = calloc(1, sizeof *s);
	if (!s || !(s->ring = calloc(limit, sizeof *s->ring)))
		abort();
	s->limit = limit;
	s->fd = -1;
	s->texts = texts;
	return s;
}

int sys_grep(lua_State *L)
{
	const char *path = luaL_checkstring(L, 1);
	const char *pattern = luaL_checkstring(L, 2);
	if (luax_remote(L, 3)) {   /* grep -E there: the same regex checked here first */
		check_regex(L, "sys.grep", pattern, lua_getfield(L, 3, "icase") != LUA_TNIL && lua_toboolean(L, -1));
		lua_pop(L, 1);
		return luax_delegate(L, "reach", "sys_grep");
	}
	luax_check_options(L, 3, "sys.grep", grep_options);
	bool icase = luax_opt_bool(L, 3, "icase", false, "sys.grep");
	lua_Integer limit = opt_count(L, 3, "limit", 100, 1, "sys.grep");
	msec_t timeout = luax_opt_duration(L, 3, "timeout", DEFAULT_WALK_TIMEOUT_MS, "sys.grep");
	check_regex(L, "sys.grep", pattern, icase);
	struct fs_op *op = fs_op_push(L, "sys.grep", path, timeout, path, FS_OPEN, grep_finish);
	op->count = limit;
	op->pattern = xstrdup(pattern);
	op->icase = icase;
	return tasks_run_op(L, &op->task);
}

/* The file is open: the helper starts on it, and the op waits for it (TASKS_AGAIN). */
static int grep_start(lua_State *L, struct fs_op *op)
{
	const struct probe *p = &op->p;
	if (op->err)
		return log_fail(L, p, op->err);
	struct grep_scan *s = scan_new((size_t)op->count, false);
	int err = spawn_helper(s, fs_op_take_fd(op), op->pattern, op->icase);
	if (err) {
		grep_scan_free(s);
		probe_end(p, "error", strerror(err));
		return luax_fail(L, "error", "%s %s: cannot start the matcher: %s", p->fn, p->target, strerror(err));
	}
	op->scan = s;
	op->w.result = SCHED_READY;
	return TASKS_AGAIN;
}

static void push_matches(lua_State *L, const struct grep_scan *s)
{
	size_t kept = (size_t)s->count < s->limit ? (size_t)s->count : s->limit;
	size_t oldest = (size_t)s->count < s->limit ? 0 : (size_t)s->count % s->limit;
	lua_createtable(L, (int)kept, 0);
	for (size_t i = 0; i < kept; i++) {
		const struct hit *h = &s->ring[(oldest + i) % s->limit];
		lua_createtable(L, 0, 2);
		luax_setint(L, "line", h->line);
		luax_setstr(L, "text", h->text);
		lua_rawseti(L, -2, (lua_Integer)i + 1);
	}
}

static int grep_finish(lua_State *L, struct fs_op *op)
{
	struct grep_scan *s = op->scan;
	if (!s)
		return grep_start(L, op);
	const struct probe *p = &op->p;
	end_helper(s);
	int stop = op->err;
	if (stop == EINTR)
		return probe_fail_errno(L, p, EINTR);
	if (s->read_err)
		return probe_fail_errno(L, p, s->read_err);
	if (stop == ETIMEDOUT && s->lines == 0) {   /* not one line done: nothing to report as partial */
		probe_end(p, "timeout", "timed out on line 1");
		return luax_fail(L, "timeout", "%s %s: timed out matching its first line (a regex that backtracks "
		                 "on a long line? try a simpler one)", p->fn, p->target);
	}
	if (!stop && !s->ended) {
		probe_end(p, "error", "the matcher ended early");
		return luax_fail(L, "error", "%s %s: the matcher ended before the end of the file (out of memory?)",
		                 p->fn, p->target);
	}
	char summary[96];
	snprintf(summary, sizeof summary, "%lld matching lines of %lld%s", (long long)s->count,
	         (long long)s->lines, stop ? " (partial)" : "");
	probe_end(p, stop ? "partial" : "ok", summary);
	lua_createtable(L, 0, 4);
	push_matches(L, s);
	lua_setfield(L, -2, "matches");
	luax_setint(L, "count", s->count);
	luax_setint(L, "lines", s->lines);
	luax_setbool(L, "partial", stop != 0);
	return 1;
}

/* ---------------------------------------------------------------------------------- sys.filter */

static const char *const filter_options[] = { "icase", "timeout", NULL };

/* The strings of texts[1..n] NUL-ended in a memfd, read from its start: the helper's stdin (a file,
 * so nothing here waits for the helper to read). A string is cut at its first NUL, where regexec
 * stops anyway; what is not a string is an empty record, its match dropped by filter_finish. */
static int texts_file(lua_State *L, lua_Integer n)
{
	int fd = memfd_create("runbook-filter", MFD_CLOEXEC);
	if (fd < 0)
		return -1;
	char *buf = NULL;
	size_t len = 0, cap = 0;
	int ok = 0;
	for (lua_Integer i = 1; i <= n && ok == 0; i++) {
		const char *s = lua_rawgeti(L, 1, i) == LUA_TSTRING ? lua_tostring(L, -1) : "";
		size_t k = strlen(s) + 1;
		grow((void **)&buf, &cap, len + k, 1);
		memcpy(buf + len, s, k);
		len += k;
		lua_pop(L, 1);
		if (len >= 65536 || i == n) {
			ok = term_write_all(fd, buf, len);
			len = 0;
		}
	}
	free(buf);
	if (ok != 0 || lseek(fd, 0, SEEK_SET) != 0) {
		int e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

static int filter_finish(lua_State *L, struct fs_op *op);

/* sys.filter(texts, regex, { icase, timeout }): the indices of the strings of `texts` a POSIX extended
 * regex matches - sys.grep's matching for lines read elsewhere (a journal, kubectl or compose logs),
 * so that `grep =` means the same whatever the source, in the same helper, under the same deadline. */
int sys_filter(lua_State *L)
{
	luaL_checktype(L, 1, LUA_TTABLE);
	const char *pattern = luaL_checkstring(L, 2);
	luax_check_options(L, 3, "sys.filter", filter_options);
	bool icase = luax_opt_bool(L, 3, "icase", false, "sys.filter");
	msec_t timeout = luax_opt_duration(L, 3, "timeout", DEFAULT_WALK_TIMEOUT_MS, "sys.filter");
	check_regex(L, "sys.filter", pattern, icase);
	lua_settop(L, 3);
	lua_Integer n = (lua_Integer)lua_rawlen(L, 1);
	if (n == 0) {
		lua_newtable(L);
		return 1;
	}
	struct fs_op *op = fs_op_push(L, "sys.filter", "texts", timeout, NULL, FS_OPEN, filter_finish);
	op->count = n;
	struct grep_scan *s = scan_new((size_t)n, true);
	op->scan = s;   /* freed with the op from here on */
	op->w.result = SCHED_READY;
	int err = spawn_helper(s, texts_file(L, n), pattern, icase);
	if (err) {
		probe_end(&op->p, "error", strerror(err));
		return luax_fail(L, "error", "sys.filter: cannot start the matcher: %s", strerror(err));
	}
	return tasks_run_op(L, &op->task);
}

static int filter_finish(lua_State *L, struct fs_op *op)
{
	struct grep_scan *s = op->scan;
	const struct probe *p = &op->p;
	end_helper(s);
	if (op->err == EINTR)
		return probe_fail_errno(L, p, EINTR);
	if (op->err == ETIMEDOUT) {
		char summary[96];
		snprintf(summary, sizeof summary, "timed out on text %lld of %lld", (long long)s->lines + 1,
		         (long long)op->count);
		probe_end(p, "timeout", summary);
		return luax_fail(L, "timeout", "sys.filter: %s (a regex that backtracks on a long line? try a "
		                 "simpler one)", summary);
	}
	if (s->read_err || !s->ended) {
		probe_end(p, "error", "the matcher ended early");
		return luax_fail(L, "error", "sys.filter: the matcher ended before the last text (out of memory?)");
	}
	lua_createtable(L, (int)s->count, 0);
	lua_Integer found = 0;
	for (lua_Integer i = 0; i < s->count; i++) {
		lua_Integer at = s->ring[i].line;
		bool text = lua_rawgeti(L, 1, at) == LUA_TSTRING;
		lua_pop(L, 1);
		if (text) {
			lua_pushinteger(L, at);
			lua_rawseti(L, -2, ++found);
		}
	}
	return 1;
}
