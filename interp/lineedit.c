/*
 * lineedit.c - see lineedit.h.
 *
 * libedit's readline emulation keeps its state in globals, hence one editor at a time. It never
 * handles a signal itself (rl_catch_signals = 0): every key is read by editor_getc through
 * sched_poll, so Ctrl-C at the prompt ends the read at once (the line is dropped, as in a shell),
 * and the Lua hook the press armed is disarmed before control returns to Lua.
 *
 * History is plain text, one entry per line, mode 0600, opened with O_NOFOLLOW. A line that holds
 * a secret is kept neither in the file nor in memory, so that arrow-up cannot bring it back either.
 */
#include "lineedit.h"
#include "luax.h"
#include "redact.h"
#include "sched.h"
#include "term.h"
#include "transcript.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <lauxlib.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <editline/readline.h>

#define EDITOR_MT     "runbook.lineedit.editor"
#define HISTORY_MAX   1000            /* entries kept; the file is compacted past twice that */
#define HISTORY_SCAN  (1 << 20)       /* bytes read from the end of the file at start */
#define WAIT_SLICE_MS (3600 * 1000)

struct editor {
	bool open;
	int history_fd;            /* -1: no history file this session */
	int complete_ref;          /* the Lua completer in the registry, or LUA_NOREF */
	lua_State *L;              /* the thread inside :read(), which the completer runs on */
	char **cands;              /* the completer's words while libedit asks for them */
	size_t ncands, next;
	char *last;                /* the last line remembered: no consecutive duplicates */
};

static struct editor *active;  /* the open editor */
static bool read_interrupted;  /* set by editor_getc when Ctrl-C ended the read */

/* ---------------------------------------------------------------------------- secrets in a line */

static bool ident_char(char c) { return isalnum((unsigned char)c) || c == '_'; }

/* Case-insensitive search for word in s[0..n) with no identifier character on either side. */
static bool has_word(const char *s, size_t n, const char *word)
{
	size_t k = strlen(word);
	for (size_t i = 0; i + k <= n; i++) {
		if (strncasecmp(s + i, word, k) != 0)
			continue;
		if ((i == 0 || !ident_char(s[i - 1])) && (i + k == n || !ident_char(s[i + k])))
			return true;
	}
	return false;
}

/* Why line must stay out of the history, or NULL. What redact() would mask is a secret by
 * definition (URL passwords, password/token/secret assignments, secret inputs and what the run
 * learnt); AUTH commands and bearer tokens are secrets that nothing has registered yet. */
static const char *secret_reason(const char *s, size_t n)
{
	size_t len;
	char *clean = redact(s, n, &len);
	bool masked = len != n || memcmp(clean, s, n) != 0;
	free(clean);
	if (masked)
		return "it holds a secret (a password in a URL, a password, token or secret assigned, or a secret input)";
	if (has_word(s, n, "auth"))
		return "it holds an AUTH command";
	if (has_word(s, n, "bearer"))
		return "it holds a bearer token";
	return NULL;
}

static int lineedit_secret_in(lua_State *L)
{
	size_t n;
	const char *s = luaL_checklstring(L, 1, &n);
	const char *why = secret_reason(s, n);
	if (!why)
		return 0;
	lua_pushstring(L, why);
	return 1;
}

/* ------------------------------------------------------------------------------- the history file */

/* One write per entry, so that two sessions appending at once never interleave within a line. */
static int append_entry(int fd, const char *line, size_t n)
{
	char *buf = malloc(n + 1);
	if (!buf)
		return -1;
	memcpy(buf, line, n);
	buf[n] = '\n';
	int r = term_write_all(fd, buf, n + 1);
	free(buf);
	return r;
}

/* The last HISTORY_SCAN bytes of the file (NULL when it does not exist or is not ours to read). */
static char *read_tail(const char *path, size_t *len, bool *whole)
{
	int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return NULL;
	struct stat st;
	char *buf = NULL;
	if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_uid == geteuid()) {
		off_t from = st.st_size > HISTORY_SCAN ? st.st_size - HISTORY_SCAN : 0;
		size_t want = (size_t)(st.st_size - from);
		buf = malloc(want + 1);
		ssize_t got = buf ? pread(fd, buf, want, from) : -1;
		if (got < 0) {
			free(buf);
			buf = NULL;
		} else {
			buf[got] = 0;
			*len = (size_t)got;
			*whole = from == 0;
		}
	}
	close(fd);
	return buf;
}

/* Rewrites the file with only the entries kept, through a new file renamed over it. */
static void compact_history(const char *path, char **lines, size_t n)
{
	char tmp[PATH_MAX];
	if (snprintf(tmp, sizeof tmp, "%s.new", path) >= (int)sizeof tmp)
		return;
	unlink(tmp);   /* a leftover of a crash; unlink never follows a symlink */
	int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return;
	bool ok = true;
	for (size_t i = 0; i < n && ok; i++)
		ok = append_entry(fd, lines[i], strlen(lines[i])) == 0;
	ok = close(fd) == 0 && ok;
	if (!ok || rename(tmp, path) != 0)
		unlink(tmp);
}

/* Loads the newest HISTORY_MAX entries into libedit (dropping any that hold a secret now known). */
static void load_history(const char *path)
{
	size_t len = 0;
	bool whole = false;
	char *buf = read_tail(path, &len, &whole);
	if (!buf)
		return;
	char *p = buf;
	if (!whole) {                       /* the first line read is only the end of an entry */
		char *nl = strchr(p, '\n');
		p = nl ? nl + 1 : buf + len;
	}
	size_t n = 0, cap = 64;
	char **lines = malloc(cap * sizeof *lines);
	char *save = NULL;
	for (char *line = strtok_r(p, "\n", &save); line && lines; line = strtok_r(NULL, "\n", &save)) {
		if (secret_reason(line, strlen(line)))
			continue;
		if (n == cap) {
			char **grown = realloc(lines, 2 * cap * sizeof *lines);
			if (!grown)
				break;
			lines = grown;
			cap *= 2;
		}
		lines[n++] = line;
	}
	size_t first = n > HISTORY_MAX ? n - HISTORY_MAX : 0;
	for (size_t i = first; lines && i < n; i++)
		add_history(lines[i]);
	if (lines && (n > 2 * HISTORY_MAX || !whole))
		compact_history(path, lines + first, n - first);
	free(lines);
	free(buf);
}

/* Opens the history for appending: created 0600, never through a symlink, tightened if others
 * could read it. Returns 0, or pushes a warning (the session goes on without a history file). */
static int open_history(lua_State *L, struct editor *ed, const char *path)
{
	load_history(path);
	int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0) {
		lua_pushfstring(L, "history is off for this session: %s %s", path,
		                errno == ELOOP ? "is a symbolic link (remove it)" : strerror(errno));
		return 1;
	}
	struct stat st;
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_uid != geteuid() ||
	    ((st.st_mode & 077) && fchmod(fd, 0600) != 0)) {
		close(fd);
		lua_pushfstring(L, "history is off for this session: %s is not a private regular file of yours", path);
		return 1;
	}
	ed->history_fd = fd;
	return 0;
}

static int lineedit_history_path(lua_State *L)
{
	char dir[PATH_MAX];
	/* The transcripts' directory is $XDG_STATE_HOME/runbook/transcripts: the history sits beside it. */
	if (transcript_default_dir(dir, sizeof dir) != 0) {
		lua_pushnil(L);
		lua_pushfstring(L, "cannot create %s (set XDG_STATE_HOME to a writable directory)", dir);
		return 2;
	}
	char *slash = strrchr(dir, '/');
	*slash = 0;
	lua_pushfstring(L, "%s/history", dir);
	return 1;
}

/* ----------------------------------------------------------------------------- reading and completion */

/* libedit's getc: waits through the scheduler, so that Ctrl-C (or SIGTERM) ends the read. EOF
 * with read_interrupted set tells editor_read the difference from Ctrl-D. */
static int editor_getc(FILE *in)
{
	(void)in;
	for (;;) {
		struct pollfd p = { .fd = STDIN_FILENO, .events = POLLIN };
		enum sched_wait w = sched_poll(&p, 1, sched_now() + WAIT_SLICE_MS);
		if (w == SCHED_INTERRUPTED) {
			read_interrupted = true;
			return EOF;
		}
		if (w == SCHED_TIMEOUT)
			continue;
		unsigned char c;
		ssize_t r = read(STDIN_FILENO, &c, 1);
		if (r < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		return r == 1 ? c : EOF;
	}
}

static void free_candidates(struct editor *ed)
{
	for (size_t i = 0; i < ed->ncands; i++)
		free(ed->cands[i]);
	free(ed->cands);
	ed->cands = NULL;
	ed->ncands = ed->next = 0;
}

static char *next_candidate(const char *text, int state)
{
	(void)text;
	(void)state;
	struct editor *ed = active;
	if (!ed || ed->next >= ed->ncands)
		return NULL;
	return strdup(ed->cands[ed->next++]);
}

/* Copies the strings of the array at the top of L into ed->cands. */
static void take_candidates(lua_State *L, struct editor *ed)
{
	lua_Integer n = (lua_Integer)lua_rawlen(L, -1);   /* raw: nothing may raise through libedit */
	ed->cands = calloc(n > 0 ? (size_t)n : 1, sizeof *ed->cands);
	for (lua_Integer i = 1; ed->cands && i <= n; i++) {
		lua_rawgeti(L, -1, i);
		const char *s = lua_tostring(L, -1);
		char *copy = s ? strdup(s) : NULL;
		if (copy)
			ed->cands[ed->ncands++] = copy;
		lua_pop(L, 1);
	}
}

/* libedit asks for the words that may replace `text` (the word before the cursor): the Lua
 * completer gets the line up to the cursor and that word. Never file names as a fallback. */
static char **complete(const char *text, int start, int end)
{
	(void)start;
	(void)end;
	rl_attempted_completion_over = 1;
	struct editor *ed = active;
	if (!ed || !ed->L || ed->complete_ref == LUA_NOREF)
		return NULL;
	lua_State *L = ed->L;
	int top = lua_gettop(L);
	lua_rawgeti(L, LUA_REGISTRYINDEX, ed->complete_ref);
	lua_pushlstring(L, rl_line_buffer, (size_t)rl_point);
	lua_pushstring(L, text);
	if (lua_pcall(L, 2, 1, 0) == LUA_OK && lua_istable(L, -1))
		take_candidates(L, ed);
	lua_settop(L, top);
	char **matches = ed->ncands ? rl_completion_matches(text, next_candidate) : NULL;
	free_candidates(ed);
	return matches;
}

/* readline() prints the prompt before it leaves canonical mode, so a key typed in between (Ctrl-D
 * as soon as the prompt shows) would be taken by the kernel's line discipline instead. This hook
 * runs after readline() has saved the terminal's settings (which it puts back at the end) and
 * before the prompt: raw mode from here on. */
static int raw_before_prompt(void)
{
	rl_prep_terminal(1);
	return 0;
}

static void configure_readline(void)
{
	rl_pre_input_hook = raw_before_prompt;
	rl_readline_name = "runbook";
	rl_catch_signals = 0;
	rl_getc_function = editor_getc;
	rl_attempted_completion_function = complete;
	/* Not . and :, so that "sys.fi" and "conn:qu" are one word to complete. */
	rl_basic_word_break_characters = " \t\n\"'`@$><=;|&{}()[],+-*/%^#~";
	rl_completion_append_character = '\0';
	stifle_history(HISTORY_MAX);
}

/* ----------------------------------------------------------------------------------- the editor */

static struct editor *check_editor(lua_State *L)
{
	struct editor *ed = luaL_checkudata(L, 1, EDITOR_MT);
	if (!ed->open)
		luaL_error(L, "lineedit: the editor is closed (open a new one with lineedit.open)");
	return ed;
}

static int editor_read(lua_State *L)
{
	struct editor *ed = check_editor(L);
	const char *prompt = luaL_optstring(L, 2, "> ");
	read_interrupted = false;
	ed->L = L;
	char *line = readline(prompt);
	ed->L = NULL;
	if (read_interrupted) {
		free(line);
		/* The press was the answer: no hook may fire once we are back in Lua. */
		sched_clear_interrupt();
		term_write_all(STDOUT_FILENO, "\n", 1);
		lua_pushnil(L);
		lua_pushstring(L, "interrupted");
		return 2;
	}
	if (!line) {
		term_write_all(STDOUT_FILENO, "\n", 1);
		lua_pushnil(L);
		lua_pushstring(L, "eof");
		return 2;
	}
	lua_pushstring(L, line);
	free(line);
	return 1;
}

static int editor_remember(lua_State *L)
{
	struct editor *ed = check_editor(L);
	size_t n;
	const char *line = luaL_checklstring(L, 2, &n);
	const char *why = secret_reason(line, n);
	if (!why && (n == 0 || strlen(line) != n || strchr(line, '\n')))
		why = "it is empty or not one line of text";
	if (why) {
		lua_pushboolean(L, 0);
		lua_pushstring(L, why);
		return 2;
	}
	if (!ed->last || strcmp(ed->last, line) != 0) {
		add_history(line);
		if (ed->history_fd >= 0 && append_entry(ed->history_fd, line, n) != 0) {
			close(ed->history_fd);          /* a full disk: stop trying, keep editing */
			ed->history_fd = -1;
		}
		free(ed->last);
		ed->last = strdup(line);
	}
	lua_pushboolean(L, 1);
	return 1;
}

static void editor_release(lua_State *L, struct editor *ed)
{
	if (!ed->open)
		return;
	ed->open = false;
	if (ed->history_fd >= 0)
		close(ed->history_fd);
	ed->history_fd = -1;
	luaL_unref(L, LUA_REGISTRYINDEX, ed->complete_ref);
	ed->complete_ref = LUA_NOREF;
	free(ed->last);
	ed->last = NULL;
	free_candidates(ed);
	clear_history();
	if (active == ed)
		active = NULL;
}

static int editor_close(lua_State *L)
{
	editor_release(L, luaL_checkudata(L, 1, EDITOR_MT));
	return 0;
}

static int editor_tostring(lua_State *L)
{
	struct editor *ed = luaL_checkudata(L, 1, EDITOR_MT);
	lua_pushfstring(L, "lineedit editor (%s%s)", ed->open ? "open" : "closed",
	                ed->history_fd >= 0 ? ", with history" : "");
	return 1;
}

static int lineedit_open(lua_State *L)
{
	luaL_checktype(L, 1, LUA_TTABLE);
	if (active)
		return luaL_error(L, "lineedit.open: an editor is already open (close it first)");
	if (!isatty(STDIN_FILENO))
		return luaL_error(L, "lineedit.open: stdin is not a terminal (read lines plainly instead)");
	struct editor *ed = lua_newuserdatauv(L, sizeof *ed, 0);
	*ed = (struct editor){ .history_fd = -1, .complete_ref = LUA_NOREF };
	luaL_setmetatable(L, EDITOR_MT);
	configure_readline();
	ed->open = true;
	active = ed;
	if (lua_getfield(L, 1, "complete") == LUA_TFUNCTION)
		ed->complete_ref = luaL_ref(L, LUA_REGISTRYINDEX);
	else
		lua_pop(L, 1);
	int nret = 1;
	if (lua_getfield(L, 1, "history") == LUA_TSTRING) {
		const char *path = lua_tostring(L, -1);
		lua_pushvalue(L, -2);                       /* the editor above the path */
		nret += open_history(L, ed, path);
		return nret;
	}
	lua_pop(L, 1);
	return nret;
}

/* ----------------------------------------------------------------------------------- transcript */

int luaopen_lineedit(lua_State *L)
{
	static const luaL_Reg editor_methods[] = {
		{ "read", editor_read }, { "remember", editor_remember }, { "close", editor_close },
		{ NULL, NULL },
	};
	static const luaL_Reg editor_meta[] = {
		{ "__gc", editor_close }, { "__close", editor_close }, { "__tostring", editor_tostring },
		{ NULL, NULL },
	};
	static const luaL_Reg fns[] = {
		{ "open", lineedit_open }, { "secret_in", lineedit_secret_in },
		{ "history_path", lineedit_history_path },
		{ NULL, NULL },
	};
	luax_class(L, EDITOR_MT, editor_meta, editor_methods, NULL);
	luaL_newlib(L, fns);
	return 1;
}
