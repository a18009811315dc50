/*
 * sh.c - running commands (require "sh").
 *
 *   sh.read { argv..., timeout = 10, grace = 1, quiet = false, shell = false, cwd = nil,
 *             env = { NAME = "value" }, check = false, max_output = 1048576 }
 *     -> { argv, code, signal, ok, stdout, stderr, ms, truncated } | nil, err, kind
 *   sh.action { argv..., timeout = 120, irreversible = false, target = nil, summary = nil,
 *               blast = nil, check = true, leave_running = false, ...the options of sh.read }
 *     -> result | { dry_run = true, argv } | nil, err, kind
 *
 * argv is an array, never a shell string, unless shell = true (then argv[1] is run by /bin/sh -c).
 * The child gets its own session (no controlling terminal: nothing it starts can type into the
 * operator's terminal), stdin from /dev/null and the default signal dispositions. At the deadline
 * its process group gets SIGTERM, then SIGKILL after `grace`. When it ends, whatever it left
 * behind (background jobs, daemons) is killed with it (stdlib/leftovers.h), unless sh.action was
 * given leave_running = true, which the gate shows (a restart that starts a daemon itself). Ctrl-C does the same at
 * once. A leader still there a second after SIGKILL is stuck in the kernel and left behind.
 * Output is streamed live (unless quiet) and captured up to max_output per stream. The command is a
 * state machine (interp/tasks.h): inside parallel() its task yields while it runs.
 * sh.read returns the result even when the command exits non-zero (ok = false) unless check =
 * true; sh.action fails with kind "exit" then. A declined action ends the step (the engine
 * records it as declined); under --dry-run it is only shown.
 * Error kinds: timeout, interrupted, notfound, permission, exit, refused, error.
 *
 * With `on = target` other than "local" (stdlib/target.lua) a call is stdlib/reach.lua's, which
 * reaches the target through OpenSSH, docker compose or kubectl and runs that argv here again
 * (sh_transport.c, sh_run): one spawn, deadline and kill for every transport.
 */
#include "gate.h"
#include "host.h"
#include "leftovers.h"
#include "luax.h"
#include "modules.h"
#include "sched.h"
#include "sh_internal.h"
#include "tasks.h"
#include "term.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

#define DEFAULT_READ_TIMEOUT_MS   10000
#define DEFAULT_ACTION_TIMEOUT_MS 120000
#define DEFAULT_GRACE_MS          1000
#define INTERRUPT_GRACE_MS        200
#define STUCK_WAIT_MS             1000    /* after SIGKILL: longer, and the process is stuck in the kernel */
#define DEFAULT_MAX_OUTPUT        (1 << 20)

static const char *const read_options[] = {
	"timeout", "grace", "quiet", "shell", "cwd", "env", "check", "max_output", "on", NULL,
};
static const char *const action_options[] = {
	"timeout", "grace", "quiet", "shell", "cwd", "env", "check", "max_output", "on",
	"irreversible", "target", "summary", "blast", "leave_running", NULL,
};

/* line: the live output's unfinished line, held back until its newline so that redaction sees a
 * secret whole even when the command writes it in pieces. */
struct capture { char *data; size_t len, max; bool truncated; char *line; size_t line_len; const char *label; };

#define LIVE_LINE_MAX 8192


struct outcome {
	int code, signal;          /* code -1 when killed by a signal */
	bool timed_out, interrupted;
	pid_t stuck;               /* did not exit after SIGKILL (in the kernel: a hung disk or mount) */
	int spawn_errno;
	double ms;
	struct capture out, err;
};

/* ------------------------------------------------------------------------------ argument parsing */

static bool needs_quotes(const char *s)
{
	if (!*s)
		return true;
	for (; *s; s++)
		if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./=:,+@%", *s))
			return true;
	return false;
}

/* Whether s holds a character that '...' cannot show as it runs: a control character (a newline
 * would start a line of the gate's own), one the output path shows as an escape (C1, bidi), or a
 * byte that is not UTF-8. */
static bool needs_escapes(const char *s)
{
	for (size_t n = strlen(s), i = 0; i < n;) {
		unsigned cp;
		bool escaped;
		i += term_char(s + i, n - i, &cp, &escaped);
		if (escaped || cp < 0x20)
			return true;
	}
	return false;
}

/* One word as a shell reads it back: bare when it can be, else in '...', or, when it needs escapes,
 * in bash's $'...' with those characters escaped (\n, \t, \r, \xNN): one line, and exactly
 * the bytes that run. p has room for 4 bytes per byte of s, and 4. */
static char *quote_word(char *p, const char *s)
{
	if (!needs_quotes(s))
		return stpcpy(p, s);
	if (!needs_escapes(s)) {
		*p++ = '\'';
		for (; *s; s++) {
			if (*s == '\'')
				p = stpcpy(p, "'\\''");
			else
				*p++ = *s;
		}
		*p++ = '\'';
		*p = 0;
		return p;
	}
	p = stpcpy(p, "$'");
	for (size_t n = strlen(s), i = 0; i < n;) {
		unsigned cp;
		bool escaped;
		size_t len = term_char(s + i, n - i, &cp, &escaped);
		if (cp == '\\' || cp == '\'')
			p += sprintf(p, "\\%c", (char)cp);
		else if (cp == '\n' || cp == '\t' || cp == '\r')
			p += sprintf(p, "\\%c", cp == '\n' ? 'n' : cp == '\t' ? 't' : 'r');
		else if (escaped)   /* C0, DEL, C1, bidi, not UTF-8: its bytes (\u would depend on the locale) */
			for (size_t k = 0; k < len; k++)
				p += sprintf(p, "\\x%02x", (unsigned char)s[i + k]);
		else
			p = (char *)memcpy(p, s + i, len) + len;
		i += len;
	}
	*p++ = '\'';
	*p = 0;
	return p;
}

/* The command line as a person would type it: words quoted only when needed. */
char *display_line(const char *const *argv)
{
	size_t cap = 1;
	for (const char *const *a = argv; *a; a++)
		cap += 4 * strlen(*a) + 4;
	char *out = malloc(cap), *p = out;
	if (!out)
		abort();
	for (const char *const *a = argv; *a; a++) {
		if (a != argv)
			*p++ = ' ';
		p = quote_word(p, *a);
	}
	*p = 0;
	return out;
}

/* Validates and collects everything from the argument table; raises on author mistakes. Nothing is
 * allocated until validation is over, so a raise leaks nothing. */
void parse_command(lua_State *L, struct command *c, bool action)
{
	c->fn = action ? "sh.action" : "sh.read";
	luaL_checktype(L, 1, LUA_TTABLE);
	luax_check_options(L, 1, c->fn, action ? action_options : read_options);
	int n = (int)lua_rawlen(L, 1);
	if (n == 0)
		luaL_error(L, "%s: no command given (write %s { \"cmd\", \"arg\", ... })", c->fn, c->fn);
	for (int i = 1; i <= n; i++) {
		int t = lua_rawgeti(L, 1, i);
		if (t != LUA_TSTRING && t != LUA_TNUMBER)
			luaL_error(L, "%s: argv[%d] must be a string, got %s", c->fn, i, luaL_typename(L, -1));
		lua_tostring(L, -1); /* numbers become strings in place, anchored below */
		lua_pop(L, 1);
	}
	c->timeout_ms = luax_opt_duration(L, 1, "timeout", action ? DEFAULT_ACTION_TIMEOUT_MS : DEFAULT_READ_TIMEOUT_MS, c->fn);
	c->grace_ms = luax_opt_duration(L, 1, "grace", DEFAULT_GRACE_MS, c->fn);
	c->quiet = luax_opt_bool(L, 1, "quiet", false, c->fn);
	c->check = luax_opt_bool(L, 1, "check", action, c->fn);
	c->cwd = luax_opt_string(L, 1, "cwd", NULL, c->fn);
	lua_Integer max = luax_opt_integer(L, 1, "max_output", DEFAULT_MAX_OUTPUT, c->fn);
	if (max < 0)
		luaL_error(L, "%s: max_output must be >= 0", c->fn);
	c->max_output = (size_t)max;
	bool shell = luax_opt_bool(L, 1, "shell", false, c->fn);
	if (shell && n != 1)
		luaL_error(L, "%s: shell = true takes exactly one string, the shell command", c->fn);

	lua_getfield(L, 1, "env");
	int nenv = 0;
	if (!lua_isnil(L, -1)) {
		luaL_argexpected(L, lua_istable(L, -1), 1, "env to be a table of NAME = value");
		lua_pushnil(L);
		while (lua_next(L, -2)) {
			if (lua_type(L, -2) != LUA_TSTRING || !lua_isstring(L, -1) || strchr(lua_tostring(L, -2), '='))
				luaL_error(L, "%s: env must map NAME = \"value\"", c->fn);
			nenv++;
			lua_pop(L, 1);
		}
	}

	/* From here on nothing raises. */
	c->argc = shell ? 3 : n;
	c->argv = calloc((size_t)c->argc + 1, sizeof *c->argv);
	if (!c->argv)
		abort();
	if (shell) {
		c->argv[0] = "/bin/sh";
		c->argv[1] = "-c";
		lua_rawgeti(L, 1, 1);
		c->argv[2] = lua_tostring(L, -1);
		lua_pop(L, 1);
	} else {
		for (int i = 1; i <= n; i++) {
			lua_rawgeti(L, 1, i);
			c->argv[i - 1] = lua_tostring(L, -1); /* anchored by the argument table */
			lua_pop(L, 1);
		}
	}
	c->display = display_line(shell ? c->argv + 2 : c->argv);
	if (nenv > 0) {
		size_t base = 0;
		while (environ[base])
			base++;
		c->envp = calloc(base + (size_t)nenv + 1, sizeof *c->envp);
		if (!c->envp)
			abort();
		size_t k = 0;
		lua_pushnil(L);
		while (lua_next(L, -2)) {
			if (asprintf(&c->envp[k++], "%s=%s", lua_tostring(L, -2), lua_tostring(L, -1)) < 0)
				abort();
			lua_pop(L, 1);
		}
		for (size_t i = 0; i < base; i++) {
			const char *eq = strchr(environ[i], '=');
			size_t keylen = eq ? (size_t)(eq - environ[i]) : strlen(environ[i]);
			bool overridden = false;
			for (size_t j = 0; j < (size_t)nenv && !overridden; j++)
				overridden = strncmp(c->envp[j], environ[i], keylen) == 0 && c->envp[j][keylen] == '=';
			if (!overridden && !(c->envp[k++] = strdup(environ[i])))
				abort();
		}
	}
	lua_pop(L, 1); /* env */
}

void free_command(struct command *c)
{
	if (c->envp)
		for (char **e = c->envp; *e; e++)
			free(*e);
	free(c->envp);
	free(c->argv);
	free(c->display);
}

/* ------------------------------------------------------------------------------------ running */

static int pidfd_open(pid_t pid) { return (int)syscall(SYS_pidfd_open, pid, 0); }

static void hold(struct capture *cap, const char *s, size_t n)
{
	if (n == 0)
		return;
	char *grown = realloc(cap->line, cap->line_len + n);
	if (!grown)
		abort();
	cap->line = grown;
	memcpy(cap->line + cap->line_len, s, n);
	cap->line_len += n;
}

/* Shows the held line (prefix, text, newline) in one write, and empties it. Inside parallel(),
 * where the lines of several commands mix, the prefix names the task's key. */
static void show_line(struct capture *cap)
{
	char prefix[160], dim[32], off[32];
	snprintf(prefix, sizeof prefix, "    %s│%s %s%s%s", term_style("2", dim, sizeof dim), term_style("0", off, sizeof off),
	         cap->label ? "[" : "", cap->label ? cap->label : "", cap->label ? "] " : "");
	size_t plen = strlen(prefix);
	char *out = malloc(plen + cap->line_len + 1);
	if (!out)
		abort();
	memcpy(out, prefix, plen);
	if (cap->line_len)
		memcpy(out + plen, cap->line, cap->line_len);
	out[plen + cap->line_len] = '\n';
	out_write(out, plen + cap->line_len + 1);
	free(out);
	cap->line_len = 0;
}

static void stream(struct capture *cap, const char *buf, size_t n, bool quiet)
{
	size_t keep = cap->len < cap->max ? cap->max - cap->len : 0;
	if (n > keep)
		cap->truncated = true;
	if (keep > 0) {
		size_t take = n < keep ? n : keep;
		char *grown = realloc(cap->data, cap->len + take + 1);
		if (!grown)
			abort();
		cap->data = grown;
		memcpy(cap->data + cap->len, buf, take);
		cap->len += take;
		cap->data[cap->len] = 0;
	}
	if (quiet)
		return;
	/* Live output, whole lines only, indented under the step so that it reads as the command's. */
	size_t start = 0;
	for (size_t i = 0; i < n; i++) {
		if (buf[i] == '\n') {
			hold(cap, buf + start, i - start);
			show_line(cap);
			start = i + 1;
		}
	}
	hold(cap, buf + start, n - start);
	if (cap->line_len >= LIVE_LINE_MAX)
		show_line(cap);
}

static void drain(int *fd, struct capture *cap, bool quiet)
{
	char buf[8192];
	ssize_t r = read(*fd, buf, sizeof buf);
	if (r > 0) {
		stream(cap, buf, (size_t)r, quiet);
	} else if (r == 0 || (errno != EAGAIN && errno != EINTR)) {
		close(*fd);
		*fd = -1;
	}
}

/* Reaps the child. A stopped one that SIGKILL did not end is waiting in the kernel (I/O on a dead
 * disk or a hard NFS mount), where no signal reaches it: it is left there, not waited for. */
static void reap(pid_t pid, bool stopped, struct outcome *o)
{
	int status = 0;
	pid_t r;
	while ((r = waitpid(pid, &status, stopped ? WNOHANG : 0)) < 0 && errno == EINTR)
		;
	if (r == 0) {
		o->stuck = pid;
		o->code = -1;
		o->signal = SIGKILL;
		return;
	}
	o->code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
	o->signal = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
}

static int spawn(const struct command *c, pid_t *pid, int *out_fd, int *err_fd)
{
	int out[2], err[2];
	if (pipe2(out, O_CLOEXEC) != 0)
		return errno;
	if (pipe2(err, O_CLOEXEC) != 0) {
		int e = errno;
		close(out[0]);
		close(out[1]);
		return e;
	}
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_adddup2(&fa, out[1], 1);
	posix_spawn_file_actions_adddup2(&fa, err[1], 2);
	if (c->cwd)
		posix_spawn_file_actions_addchdir_np(&fa, c->cwd);
	posix_spawnattr_init(&attr);
	sigset_t none, defaults;
	sigemptyset(&none);
	sigemptyset(&defaults);
	sigaddset(&defaults, SIGPIPE);
	sigaddset(&defaults, SIGINT);
	sigaddset(&defaults, SIGTERM);
	sigaddset(&defaults, SIGHUP);
	posix_spawnattr_setsigmask(&attr, &none);
	posix_spawnattr_setsigdefault(&attr, &defaults);
	posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
	int r = posix_spawnp(pid, c->argv[0], &fa, &attr, (char *const *)c->argv, c->envp ? c->envp : environ);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&attr);
	close(out[1]);
	close(err[1]);
	if (r != 0) {
		close(out[0]);
		close(err[0]);
		return r;
	}
	fcntl(out[0], F_SETFL, O_NONBLOCK);
	fcntl(err[0], F_SETFL, O_NONBLOCK);
	*out_fd = out[0];
	*err_fd = err[0];
	return 0;
}

/*
 * A running command as a state machine (interp/tasks.h), so that inside parallel() its task yields
 * while the command runs and the other tasks go on. RUNNING reads its output until it exits;
 * DRAINING reads a little longer (a backgrounded grandchild may hold the pipes); at the deadline
 * STOPPING gives it its grace after SIGTERM, KILLING a second after SIGKILL.
 */
enum phase { RUNNING, DRAINING, STOPPING, KILLING, OVER };

#define DRAIN_MS         250
#define NO_PIDFD_TICK_MS 10      /* without a pidfd, waitpid is asked this often */

struct run_op {
	struct sched_waiter w;
	struct tasks_op task;
	struct command c;
	struct outcome o;
	enum phase phase;
	pid_t pgid;                /* the child's pid, which is its process group's id; 0: none */
	int pidfd, fds[2];         /* pidfd -1: none to be had (EMFILE, a kernel before 5.3) */
	msec_t deadline;           /* the command's */
	msec_t phase_end;          /* the end of DRAINING, STOPPING or KILLING */
	double t0;
	bool action, released;
	bool raw;                  /* run for a transport (sh_transport.run): its result whatever happened */
	const char *on, *host;     /* the target and host of a transport's run, for the audit; NULL locally */
	char task_key[40];         /* the parallel() task's key, for the live output */
};


static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

/* Whether the child has exited. It is not reaped: until then its pid, the group's id, cannot be
 * given to another process, so killpg cannot reach a stranger. */
static bool exited_now(const struct run_op *op)
{
	if (op->pidfd >= 0) {
		struct pollfd p = { .fd = op->pidfd, .events = POLLIN };
		return poll(&p, 1, 0) > 0;
	}
	siginfo_t si = { 0 };
	return waitid(P_PID, (id_t)op->pgid, &si, WEXITED | WNOHANG | WNOWAIT) == 0 && si.si_pid == op->pgid;
}

/* Blocks up to ms for the child to exit, ignoring Ctrl-C: it is being stopped. */
static bool wait_exit(const struct run_op *op, msec_t ms)
{
	msec_t end = sched_now() + ms;
	while (!exited_now(op)) {
		msec_t left = end - sched_now();
		if (left <= 0)
			return false;
		struct pollfd p = { .fd = op->pidfd, .events = POLLIN };
		poll(&p, 1, (int)(op->pidfd < 0 && left > NO_PIDFD_TICK_MS ? NO_PIDFD_TICK_MS : left));
	}
	return true;
}

/*
 * Stopping a command at once (Ctrl-C, or its task closed with parallel()'s others) blocks: every
 * wait ends at once while an interrupt is pending. Commands stopped one after another share the
 * grace and the wait after SIGKILL of the first, so that thirty commands stuck in the kernel cost
 * about a second and a half, not thirty-six.
 */
#define STOP_MIN_WAIT_MS 20
static msec_t stop_grace_end, stop_wait_end;

/* ms, or what is left of the shared time until end, but at least STOP_MIN_WAIT_MS. */
static msec_t shared_wait(msec_t ms, msec_t end)
{
	msec_t left = end - sched_now();
	if (left < STOP_MIN_WAIT_MS)
		left = STOP_MIN_WAIT_MS;
	return ms < left ? ms : left;
}

static void stop_now(struct run_op *op)
{
	msec_t now = sched_now();
	if (now > stop_wait_end + 1000) {   /* not one more of the commands of the same stop */
		stop_grace_end = now + INTERRUPT_GRACE_MS;
		stop_wait_end = stop_grace_end + STUCK_WAIT_MS;
	}
	bool signalled = op->phase == STOPPING || op->phase == KILLING;   /* its grace is over */
	killpg(op->pgid, SIGTERM);
	if (!wait_exit(op, signalled ? 0 : shared_wait(INTERRUPT_GRACE_MS, stop_grace_end))) {
		killpg(op->pgid, SIGKILL);
		wait_exit(op, shared_wait(STUCK_WAIT_MS, stop_wait_end));
	}
	killpg(op->pgid, SIGKILL);   /* whatever the leader left behind in its group */
}

/* The end of the command: pipes closed, the child reaped (or left behind, stuck). */
static bool run_over(struct run_op *op)
{
	close_fd(&op->fds[0]);
	close_fd(&op->fds[1]);
	close_fd(&op->pidfd);
	leftovers_ended(op->pgid);
	reap(op->pgid, op->o.timed_out || op->o.interrupted, &op->o);
	op->o.ms = sched_now_precise() - op->t0;
	if (op->o.out.line_len)
		show_line(&op->o.out);
	if (op->o.err.line_len)
		show_line(&op->o.err);
	op->phase = OVER;
	return true;
}

/* Arms the next wait, until `until`: on the pipes when asked, and on the exit unless it is known;
 * without a pidfd, only for a tick, to ask waitpid again. */
static bool arm(struct run_op *op, bool pipes, msec_t until)
{
	if (op->pidfd < 0 && op->phase != DRAINING && until > sched_now() + NO_PIDFD_TICK_MS)
		until = sched_now() + NO_PIDFD_TICK_MS;
	tasks_wait_init(&op->w, until);
	for (int i = 0; pipes && i < 2; i++)
		tasks_want(&op->w, op->fds[i], POLLIN);
	if (op->phase != DRAINING)
		tasks_want(&op->w, op->pidfd, POLLIN);
	return false;
}

static bool advance_stopping(struct run_op *op)
{
	bool exited = exited_now(op);
	if (!exited && sched_now() < op->phase_end)
		return arm(op, false, op->phase_end);
	if (!exited && op->phase == STOPPING) {
		killpg(op->pgid, SIGKILL);
		op->phase = KILLING;
		op->phase_end = sched_now() + STUCK_WAIT_MS;
		return arm(op, false, op->phase_end);
	}
	killpg(op->pgid, SIGKILL);   /* whatever the leader left behind in its group */
	return run_over(op);
}

static bool advance_running(struct run_op *op)
{
	for (int k = 0; k < op->w.nfds; k++) {
		const struct pollfd *f = &op->w.fds[k];
		if (f->revents && f->fd == op->fds[0])
			drain(&op->fds[0], &op->o.out, op->c.quiet);
		else if (f->revents && f->fd == op->fds[1])
			drain(&op->fds[1], &op->o.err, op->c.quiet);
	}
	msec_t now = sched_now();
	if (op->phase == RUNNING && exited_now(op)) {
		op->phase = DRAINING;
		op->phase_end = now + DRAIN_MS;
	}
	if (op->phase == DRAINING && ((op->fds[0] < 0 && op->fds[1] < 0) || now >= op->phase_end))
		return run_over(op);
	if (op->phase == RUNNING && now >= op->deadline) {
		op->o.timed_out = true;
		killpg(op->pgid, SIGTERM);
		op->phase = STOPPING;
		op->phase_end = now + op->c.grace_ms;
		return arm(op, false, op->phase_end);
	}
	return arm(op, true, op->phase == DRAINING ? op->phase_end : op->deadline);
}

static bool run_advance(void *p)
{
	struct run_op *op = p;
	if (op->phase == OVER)
		return true;
	if (op->w.result == SCHED_INTERRUPTED) {
		op->o.interrupted = true;
		stop_now(op);
		return run_over(op);
	}
	if (op->phase == STOPPING || op->phase == KILLING)
		return advance_stopping(op);
	return advance_running(op);
}

static void free_outcome(struct outcome *o)
{
	free(o->out.data);
	free(o->err.data);
	free(o->out.line);
	free(o->err.line);
}

/* ------------------------------------------------------------------------------------ results */

static const char *first_line(const struct capture *cap, char *buf, size_t n)
{
	const char *s = cap->data ? cap->data : "";
	while (*s == '\n')
		s++;
	size_t len = strcspn(s, "\n");
	snprintf(buf, n, "%.*s", (int)(len < n - 1 ? len : n - 1), s);
	return buf;
}

static void outcome_word(const struct outcome *o, char *buf, size_t n)
{
	if (o->spawn_errno)
		snprintf(buf, n, "%s", o->spawn_errno == ENOENT ? "notfound" : "error");
	else if (o->timed_out)
		snprintf(buf, n, "timeout");
	else if (o->interrupted)
		snprintf(buf, n, "interrupted");
	else if (o->signal)
		snprintf(buf, n, "signal %d", o->signal);
	else
		snprintf(buf, n, "exit %d", o->code);
}

static void push_result(lua_State *L, const struct command *c, const struct outcome *o)
{
	lua_createtable(L, 0, 9);
	lua_createtable(L, c->argc, 0);
	for (int i = 0; i < c->argc; i++) {
		lua_pushstring(L, c->argv[i]);
		lua_rawseti(L, -2, i + 1);
	}
	lua_setfield(L, -2, "argv");
	if (o->signal) {
		luax_setint(L, "signal", o->signal);
	} else {
		luax_setint(L, "code", o->code);
	}
	luax_setbool(L, "ok", !o->signal && o->code == 0);
	lua_pushlstring(L, o->out.data ? o->out.data : "", o->out.len);
	lua_setfield(L, -2, "stdout");
	lua_pushlstring(L, o->err.data ? o->err.data : "", o->err.len);
	lua_setfield(L, -2, "stderr");
	luax_setnum(L, "ms", o->ms);
	luax_setbool(L, "truncated", o->out.truncated || o->err.truncated);
}

/* Pushes the Lua return values for a finished command: result, or nil, err, kind. */
static int push_returns(lua_State *L, const struct command *c, const struct outcome *o)
{
	char line[256];
	if (o->spawn_errno == ENOENT)
		return luax_fail(L, "notfound", "%s %s: command not found", c->fn, c->argv[0]);
	if (o->spawn_errno == EACCES)
		return luax_fail(L, "permission", "%s %s: permission denied", c->fn, c->argv[0]);
	if (o->spawn_errno)
		return luax_fail(L, "error", "%s %s: %s", c->fn, c->display, strerror(o->spawn_errno));
	char left[160] = "";
	if (o->stuck)
		snprintf(left, sizeof left, "; it did not exit after SIGKILL (stuck in the kernel: a hung disk or NFS "
		         "mount?) and is left behind as pid %d", (int)o->stuck);
	if (o->timed_out)
		return luax_fail(L, "timeout", "%s %s: timed out after %.0f ms (stopped%s)", c->fn, c->display, o->ms, left);
	if (o->interrupted)
		return luax_fail(L, "interrupted", "%s %s: interrupted%s", c->fn, c->display, left);
	if (c->check && (o->signal || o->code != 0)) {
		const char *why = first_line(o->err.len ? &o->err : &o->out, line, sizeof line);
		if (o->signal)
			return luax_fail(L, "exit", "%s %s: killed by signal %d%s%s", c->fn, c->display, o->signal, *why ? ": " : "", why);
		return luax_fail(L, "exit", "%s %s: exited with code %d%s%s", c->fn, c->display, o->code, *why ? ": " : "", why);
	}
	push_result(L, c, o);
	return 1;
}

static void summarize(const struct outcome *o, char *buf, size_t n)
{
	bool failed = o->signal || o->code != 0;
	first_line(failed && o->err.len ? &o->err : &o->out, buf, n);
}

static void run_audit(const struct run_op *op)
{
	char word[32], line[200];
	outcome_word(&op->o, word, sizeof word);
	summarize(&op->o, line, sizeof line);
	if (op->action)
		gate_action_result_on("sh.action", op->c.display, op->on, op->host, word, op->o.ms, line);
	else
		luax_audit_probe_on("sh.read", op->c.display, op->on, op->host, op->c.timeout_ms, op->o.ms, word, line);
}

/* A transport's run: the result table whatever happened, with how it ended, for reach.lua to judge. */
static int push_raw(lua_State *L, const struct run_op *op)
{
	push_result(L, &op->c, &op->o);
	luax_setbool(L, "timed_out", op->o.timed_out);
	luax_setbool(L, "interrupted", op->o.interrupted);
	if (op->o.spawn_errno)
		luax_setstr(L, "spawn_error", op->o.spawn_errno == ENOENT ? "command not found" : strerror(op->o.spawn_errno));
	return 1;
}

static int run_done(lua_State *L, void *p)
{
	struct run_op *op = p;
	run_audit(op);
	return op->raw ? push_raw(L, op) : push_returns(L, &op->c, &op->o);
}

/* Also when a parallel() task is stopped in the middle (its op is closed): the command with it. */
static void run_release(void *p)
{
	struct run_op *op = p;
	if (op->released)
		return;
	op->released = true;
	if (op->phase != OVER) {   /* stopped in the middle: the transcript still says how it ended */
		op->o.interrupted = true;
		stop_now(op);
		run_over(op);
		run_audit(op);
	}
	free_outcome(&op->o);
	free_command(&op->c);
}

static const struct tasks_machine run_machine = { run_advance, run_done, run_release };

/* Starts the command; from here its op owns the child, the pipes and the command. Its live lines
 * name label (the parallel() task's key) unless it is NULL. */
static void run_start(struct run_op *op, const char *label)
{
	op->t0 = sched_now_precise();
	op->o.out = (struct capture){ .max = op->c.max_output, .label = label };
	op->o.err = (struct capture){ .max = op->c.max_output, .label = label };
	op->fds[0] = op->fds[1] = op->pidfd = -1;
	op->task = (struct tasks_op){ .machine = &run_machine, .op = op, .w = &op->w };
	op->phase = OVER;
	bool keep = leftovers_spawning(op->c.leave_running);
	if ((op->o.spawn_errno = spawn(&op->c, &op->pgid, &op->fds[0], &op->fds[1])) != 0) {
		leftovers_started(0, keep);
		op->pgid = 0;
		op->o.ms = sched_now_precise() - op->t0;
		return;
	}
	leftovers_started(op->pgid, keep);
	op->pidfd = pidfd_open(op->pgid);
	op->deadline = sched_deadline(op->c.timeout_ms);
	op->phase = RUNNING;
}

/* ------------------------------------------------------------------------------- the functions */

/* Runs c (its strings anchored by the argument table at index 1) to its end, yielding inside
 * parallel(); returns the results of sh.read or sh.action. */
int sh_run(lua_State *L, const struct command *c, bool action, const char *on, const char *host)
{
	struct run_op *op = tasks_push_op(L, sizeof *op, &run_machine);
	op->c = *c;
	op->action = action;
	op->raw = on != NULL;
	op->on = on;
	op->host = host;
	run_start(op, tasks_key(L, op->task_key, sizeof op->task_key) ? op->task_key : NULL);
	return tasks_run_op(L, &op->task);
}

/* ------------------------------------------------------------------------ calls with `on = target` */

static int sh_read(lua_State *L)
{
	if (luax_remote(L, 1))
		return luax_delegate(L, "reach", "read");
	struct command c = { 0 };
	parse_command(L, &c, false);
	return sh_run(L, &c, false, NULL, NULL);
}

/* After a question that was not answered yes: the dry run's result, nil, err, "refused", or the
 * declined step's control signal. */
int sh_not_run(lua_State *L, enum gate_answer a, const char *display)
{
	if (a == GATE_DRY_RUN) {
		lua_createtable(L, 0, 2);
		luax_setbool(L, "dry_run", true);
		luax_setstr(L, "command", display);
		return 1;
	}
	return luax_not_run(L, a, 300, NULL, NULL, "sh.action %s", display);
}

static int sh_action(lua_State *L)
{
	if (luax_remote(L, 1))
		return luax_delegate(L, "reach", "action");
	struct command c = { 0 };
	/* The gate's texts are read before anything is allocated: these may raise. */
	luaL_checktype(L, 1, LUA_TTABLE);
	bool irreversible = luax_opt_bool(L, 1, "irreversible", false, "sh.action");
	const char *target = luax_opt_string(L, 1, "target", NULL, "sh.action");
	const char *summary = luax_opt_string(L, 1, "summary", NULL, "sh.action");
	const char *blast = luax_opt_string(L, 1, "blast", NULL, "sh.action");
	bool leave_running = luax_opt_bool(L, 1, "leave_running", false, "sh.action");
	if (irreversible && !target)
		luaL_error(L, "sh.action: irreversible = true needs target = \"...\" (the operator types it back)");
	parse_command(L, &c, true);
	c.leave_running = leave_running;

	char *shown = NULL, *detail = NULL;
	static const char leaves[] = "it may leave processes running after it ends (leave_running = true)";
	const char *cwd_word[] = { c.cwd, NULL };
	char *cwd = c.cwd ? display_line(cwd_word) : NULL;   /* quoted like the words: one line */
	if (asprintf(&shown, "$ %s%s%s%s", c.display, cwd ? "    (in " : "", cwd ? cwd : "", cwd ? ")" : "") < 0 ||
	    asprintf(&detail, "%s%s%s", summary ? shown : "", summary && leave_running ? "\n" : "", leave_running ? leaves : "") < 0)
		abort();
	struct gate_plan plan = {
		.primitive = "sh.action",
		.summary = summary ? summary : shown,
		.detail = *detail ? detail : NULL,
		.target = target,
		.blast = blast,
		.irreversible = irreversible,
	};
	enum gate_answer a = gate_ask(&plan);
	free(shown);
	free(detail);
	free(cwd);
	if (a != GATE_RUN) {
		lua_pushstring(L, c.display);   /* anchored: the command is freed before not_run may raise */
		free_command(&c);
		return sh_not_run(L, a, lua_tostring(L, -1));
	}
	gate_action_start("sh.action", c.display);
	return sh_run(L, &c, true, NULL, NULL);
}

int luaopen_sh(lua_State *L)
{
	static const luaL_Reg fns[] = {
		{ "read", sh_read },
		{ "action", sh_action },
		{ NULL, NULL },
	};
	luaL_newlib(L, fns);
	return 1;
}
