/*
 * sys_log.c - sys.tail: the end of a log, read from a file opened by a worker (never blocking on a
 * FIFO), bounded in time and in line length. sys.grep and sys.filter are in sys_grep.c.
 */
#include "sys_internal.h"

/* ------------------------------------------------------------------------------------ sys.tail */

/* The failure to open a log (the worker opens it without ever blocking on a FIFO someone put in its
 * place, and refuses what is not a regular file). */
int log_fail(lua_State *L, const struct probe *p, int err)
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

static const char *const tail_options[] = { "lines", "timeout", "on", NULL };   /* on: "local" here */

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

/* The table of sys.tail from the last bytes of the file (buf, len): its last `want` lines. p: the
 * local probe to audit, NULL for a target's (reach.lua audits its command). */
static void push_tail(lua_State *L, const struct probe *p, const char *buf, size_t len, lua_Integer want,
                      lua_Integer size, lua_Integer mtime, bool cut)
{
	while (len > 0 && buf[len - 1] == '\n')
		len--;
	/* Back from the end to just after the want-th newline: the start of the first line shown. */
	size_t first = len;
	lua_Integer n = len > 0;
	while (first > 0 && !(buf[first - 1] == '\n' && n++ == want))
		first--;
	if (n > want)
		n = want;
	if (p) {
		char summary[96];
		snprintf(summary, sizeof summary, "%lld lines of %lld bytes", (long long)n, (long long)size);
		probe_end(p, "ok", summary);
	}
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
	luax_setint(L, "size", size);
	luax_setint(L, "mtime", mtime);
	luax_setbool(L, "truncated", cut);
}

static int tail_finish(lua_State *L, struct fs_op *op);

int sys_tail(lua_State *L)
{
	if (luax_remote(L, 2))
		return luax_delegate(L, "reach", "sys_tail");
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
	push_tail(L, p, buf, len, want, st.st_size, st.st_mtime, cut);
	free(buf);
	return 1;
}

/*
 * sys_transport.tail(text, lines, size, mtime) -> the table of sys.tail, from what a target printed
 * for it (stdlib/reach.lua): the end of the file (its last 16 MiB, then its last lines + 2), its size
 * and mtime. Cut as here: the file is longer than what came and holds too few newlines in it.
 */
int sysx_tail(lua_State *L)
{
	size_t len;
	const char *text = luaL_checklstring(L, 1, &len);
	lua_Integer want = luaL_checkinteger(L, 2);
	lua_Integer size = luaL_checkinteger(L, 3);
	lua_Integer newlines = 0;
	for (size_t i = 0; i < len; i++)
		newlines += text[i] == '\n';
	push_tail(L, NULL, text, len, want, size, luaL_checkinteger(L, 4), (lua_Integer)len < size && newlines <= want);
	return 1;
}
