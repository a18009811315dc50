/*
 * core.c - the host's services for the Lua half of the library (require "core").
 *
 * Not visible to runbooks: the sandbox only exposes what interp/sandbox.lua hands over.
 * Every function here is a thin binding over term, transcript, gate, sched and redact, so that
 * the invariants (redaction, write-before-show, the gate) stay in C.
 */
#include "gate.h"
#include "host.h"
#include "luax.h"
#include "redact.h"
#include "replay.h"
#include "runbook.h"
#include "sched.h"
#include "tasks.h"
#include "term.h"
#include "transcript.h"
#include "modules.h"
#include "users.h"

#include <arpa/inet.h>
#include <errno.h>
#include <lauxlib.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

static int core_out(lua_State *L)
{
	size_t n;
	const char *s = luaL_checklstring(L, 1, &n);
	out_write(s, n);
	return 0;
}

static int core_err(lua_State *L)
{
	err_printf("%s", luaL_checkstring(L, 1));
	return 0;
}

static int core_redact(lua_State *L)
{
	size_t n, len;
	const char *s = luaL_checklstring(L, 1, &n);
	char *clean = redact(s, n, &len);
	lua_pushlstring(L, clean, len);
	free(clean);
	return 1;
}

static int core_secret(lua_State *L)
{
	redact_add_secret(luaL_checkstring(L, 1));
	return 0;
}

static int core_prompt(lua_State *L)
{
	char line[1024];
	enum prompt_result r = term_prompt(luaL_checkstring(L, 1), line, sizeof line);
	switch (r) {
	case PROMPT_LINE: lua_pushstring(L, line); return 1;
	case PROMPT_EOF: lua_pushnil(L); lua_pushstring(L, "eof"); return 2;
	case PROMPT_NOTTY: lua_pushnil(L); lua_pushstring(L, "notty"); return 2;
	case PROMPT_INTERRUPTED:
		/* The press is the answer; keep the count for the caller but stop the hook. */
		sched_disarm();
		lua_pushnil(L);
		lua_pushstring(L, "interrupted");
		return 2;
	}
	return 0;
}

static int core_interactive(lua_State *L) { lua_pushboolean(L, term_interactive()); return 1; }
static int core_color(lua_State *L) { lua_pushboolean(L, term_color()); return 1; }
static int core_now(lua_State *L) { lua_pushnumber(L, sched_now_precise()); return 1; }

static int core_sleep(lua_State *L)
{
	double s = luaL_checknumber(L, 1);
	if (sched_sleep_until(sched_now() + (msec_t)(s * 1000)) == SCHED_INTERRUPTED)
		return luax_fail(L, "interrupted", "sleep: interrupted");
	lua_pushboolean(L, 1);
	return 1;
}

static int core_interrupts(lua_State *L) { lua_pushinteger(L, sched_interrupts()); return 1; }
static int core_terminated(lua_State *L) { lua_pushboolean(L, sched_terminated()); return 1; }
static int core_clear_interrupt(lua_State *L) { (void)L; sched_clear_interrupt(); return 0; }

static int core_set_cap(lua_State *L) { sched_set_cap((msec_t)luaL_checknumber(L, 1)); return 0; }

static int core_duration(lua_State *L)
{
	double s;
	if (lua_type(L, 1) == LUA_TNUMBER) {
		s = lua_tonumber(L, 1);
		if (s < 0)
			return luax_fail(L, "usage", "negative duration");
	} else if (luax_parse_duration(luaL_checkstring(L, 1), &s) != 0) {
		return luax_fail(L, "usage", "bad duration '%s' (use 500ms, 2s, 5m, 1h, 7d)", lua_tostring(L, 1));
	}
	if (s == (double)(lua_Integer)s)
		lua_pushinteger(L, (lua_Integer)s);
	else
		lua_pushnumber(L, s);
	return 1;
}

static int core_gate_configure(lua_State *L)
{
	gate_configure(lua_toboolean(L, 1), lua_toboolean(L, 2), luaL_optstring(L, 3, NULL));
	return 0;
}

static int core_declined(lua_State *L) { lua_pushinteger(L, gate_declined()); return 1; }

static int core_audit(lua_State *L)
{
	const char *type = luaL_checkstring(L, 1);
	size_t n, len;
	const char *json = luaL_optlstring(L, 2, "{}", &n);
	char *clean = redact(json, n, &len);
	int r = transcript_audit(type, clean);
	free(clean);
	lua_pushboolean(L, r == 0);
	return 1;
}

/* core.audit_probe(primitive, target, deadline_ms, duration_ms, outcome, summary): the probe record of
 * a primitive written in Lua (prometheus.query), as the C ones write theirs. */
static int core_audit_probe(lua_State *L)
{
	luax_audit_probe(luaL_checkstring(L, 1), luaL_checkstring(L, 2), (msec_t)luaL_checkinteger(L, 3),
	                 luaL_checknumber(L, 4), luaL_checkstring(L, 5), luaL_optstring(L, 6, ""));
	return 0;
}

static int core_marker(lua_State *L)
{
	size_t n, len;
	const char *s = luaL_checklstring(L, 1, &n);
	char *clean = redact(s, n, &len);
	transcript_marker(clean);
	free(clean);
	return 0;
}

static int core_transcript_open(lua_State *L)
{
	char err[512];
	if (transcript_open(luaL_checkstring(L, 1), luaL_checkstring(L, 2), err, sizeof err) != 0)
		return luax_fail(L, "transcript", "%s", err);
	lua_pushboolean(L, 1);
	return 1;
}

static int core_transcript_close(lua_State *L)
{
	char head[65];
	if (transcript_close(luaL_optstring(L, 1, "{}"), head) != 0)
		return luax_fail(L, "transcript", "cannot finish transcript %s", transcript_path());
	lua_pushstring(L, head);
	return 1;
}

static int core_transcript_dir(lua_State *L)
{
	char dir[4096];
	if (transcript_default_dir(dir, sizeof dir) != 0)
		return luax_fail(L, "transcript", "cannot create the transcript directory %s", dir);
	lua_pushstring(L, dir);
	return 1;
}

/* core.state_dir(sub): runbook_state_path, for lock.lua, history.lua and lab.lua. */
static int core_state_dir(lua_State *L)
{
	char dir[4096];
	if (runbook_state_path(luaL_checkstring(L, 1), dir, sizeof dir) != 0)
		return luaL_error(L, "the state directory's path is too long (XDG_STATE_HOME or HOME)");
	lua_pushstring(L, dir);
	return 1;
}

static int core_transcript_ok(lua_State *L) { lua_pushboolean(L, transcript_ok()); return 1; }
static int core_transcript_step(lua_State *L)
{
	transcript_set_step(luaL_optstring(L, 1, NULL));
	replay_enter_step(luaL_optstring(L, 1, NULL));   /* each attempt of a step */
	return 0;
}
static int core_transcript_sync(lua_State *L) { lua_pushboolean(L, transcript_sync() == 0); return 1; }

static int core_sha256(lua_State *L)
{
	size_t n;
	const char *s = luaL_checklstring(L, 1, &n);
	char hex[65];
	sha256_hex(s, n, hex);
	lua_pushstring(L, hex);
	return 1;
}

static int core_chain(lua_State *L)
{
	size_t n;
	const char *prev = luaL_checkstring(L, 1);
	const char *line = luaL_checklstring(L, 2, &n);
	char hex[65];
	transcript_chain(prev, line, n, hex);
	lua_pushstring(L, hex);
	return 1;
}

static int core_control(lua_State *L)
{
	return host_raise_control(L, luaL_checkstring(L, 1), luaL_optstring(L, 2, luaL_checkstring(L, 1)));
}

static int core_is_control(lua_State *L)
{
	const char *kind = host_control_kind(L, 1);
	if (!kind)
		return 0;
	lua_pushstring(L, kind);
	return 1;
}

static int core_thread_push(lua_State *L)
{
	host_thread_push(lua_tothread(L, 1));
	return 0;
}

static int core_thread_pop(lua_State *L) { (void)L; host_thread_pop(); return 0; }

static int core_distance(lua_State *L)
{
	lua_pushinteger(L, luax_distance(luaL_checkstring(L, 1), luaL_checkstring(L, 2)));
	return 1;
}

static int core_modules(lua_State *L)
{
	lua_newtable(L);
	int i = 0;
	for (const luaL_Reg *m = runbook_modules; m->name; m++) {
		lua_pushstring(L, m->name);
		lua_rawseti(L, -2, ++i);
	}
	return 1;
}

static int core_identity(lua_State *L)
{
	char host[256] = "";
	gethostname(host, sizeof host - 1);
	lua_newtable(L);
	luax_setstr(L, "user", users_self());   /* "uid N" when the system knows no name or does not answer */
	luax_setint(L, "uid", getuid());
	luax_setstr(L, "host", host);
	luax_setstr(L, "tty", term_tty_name());
	luax_setint(L, "pid", getpid());
	return 1;
}

/* Processes the library manages itself (the lab's servers): signal by name, liveness ("0");
 * a negative pid signals the process group. */
static int core_kill(lua_State *L)
{
	static const char *const names[] = { "TERM", "KILL", "STOP", "CONT", "HUP", "INT", "0", NULL };
	static const int sigs[] = { SIGTERM, SIGKILL, SIGSTOP, SIGCONT, SIGHUP, SIGINT, 0 };
	pid_t pid = (pid_t)luaL_checkinteger(L, 1);
	int sig = sigs[luaL_checkoption(L, 2, "TERM", names)];
	luaL_argcheck(L, pid > 1 || pid < -1, 1, "not a process id (or -group)");
	if (kill(pid, sig) != 0)
		return luax_fail(L, errno == ESRCH ? "gone" : "error", "kill %d: %s", (int)pid, strerror(errno));
	lua_pushboolean(L, 1);
	return 1;
}

/* A port on 127.0.0.1 that nothing listens on right now (the kernel's choice). */
static int core_free_port(lua_State *L)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t len = sizeof a;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 || getsockname(fd, (struct sockaddr *)&a, &len) != 0) {
		if (fd >= 0)
			close(fd);
		return luax_fail(L, "error", "free port: %s", strerror(errno));
	}
	close(fd);
	lua_pushinteger(L, ntohs(a.sin_port));
	return 1;
}

static int core_exe(lua_State *L)
{
	char exe[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
	lua_pushlstring(L, exe, n > 0 ? (size_t)n : 0);
	return 1;
}

/*
 * PREFIX/share/runbook for the PREFIX the binary runs from (/proc/self/exe is PREFIX/bin/runbook),
 * so that an install staged with DESTDIR, or moved, still finds its runbooks; the PREFIX it was
 * built for otherwise (a binary run from the source tree).
 */
static void push_share_dir(lua_State *L)
{
	char exe[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
	if (n > 0) {
		exe[n] = '\0';
		char *slash = strrchr(exe, '/');
		if (slash && slash - exe >= 4 && strncmp(slash - 4, "/bin", 4) == 0) {
			struct stat st;
			snprintf(slash - 4, sizeof exe - (size_t)(slash - 4 - exe), "/share/runbook");
			if (stat(exe, &st) == 0 && S_ISDIR(st.st_mode)) {
				lua_pushstring(L, exe);
				return;
			}
		}
	}
	lua_pushstring(L, RUNBOOK_SHARE);
}

/* core.transcribe(text): what the terminal echoed (a typed line), redacted, into the transcript. */
static int core_transcribe(lua_State *L)
{
	size_t n, len;
	const char *s = luaL_checklstring(L, 1, &n);
	char *clean = redact(s, n, &len);
	transcript_output(clean, len);
	free(clean);
	return 0;
}

/* ------------------------------------------------------------------ the gate's way into the REPL */

#define GATE_HOOK_MT "runbook.core.gate_repl"

/* The opener lives in a userdata anchored in the registry: user value 1 is the thread it runs on
 * (the gate is reached from whichever thread called the acting primitive, so the REPL gets a
 * thread of its own), user value 2 the Lua function. Its __gc unregisters it from the gate. */
static const char gate_key = 'g';

struct gate_hook { lua_State *T; };

static struct gate_hook *gate_hook;

static enum gate_repl open_repl_from_gate(void)
{
	struct gate_hook *h = gate_hook;
	if (!h)
		return GATE_REPL_BACK;
	lua_State *T = h->T;
	lua_settop(T, 0);
	/* T's only anchor is the hook, which the REPL itself may unregister (offer_at_gate(nil)):
	 * held here until the call is over, or the collector could free the thread running it. */
	lua_pushthread(T);
	int anchor = luaL_ref(T, LUA_REGISTRYINDEX);
	lua_rawgetp(T, LUA_REGISTRYINDEX, &gate_key);
	lua_getiuservalue(T, 1, 2);
	lua_remove(T, 1);
	enum gate_repl choice = GATE_REPL_BACK;
	if (host_call(T, 0, 1) != LUA_OK) {
		err_printf("  the REPL failed: %s\n", luaL_tolstring(T, -1, NULL));
	} else {
		const char *s = lua_tostring(T, -1);
		if (s && strcmp(s, "retry") == 0)
			choice = GATE_REPL_RETRY;
		else if (s && strcmp(s, "skip") == 0)
			choice = GATE_REPL_SKIP;
		else if (s && strcmp(s, "quit") == 0)
			choice = GATE_REPL_QUIT;
	}
	lua_settop(T, 0);
	luaL_unref(T, LUA_REGISTRYINDEX, anchor);
	return choice;
}

static void gate_hook_unregister(struct gate_hook *h)
{
	if (gate_hook == h) {
		gate_hook = NULL;
		gate_set_repl(NULL);
	}
}

static int gate_hook_gc(lua_State *L)
{
	gate_hook_unregister(luaL_checkudata(L, 1, GATE_HOOK_MT));
	return 0;
}

/* core.set_gate_repl(fn | nil): fn() -> "back" | "retry" | "skip" | "quit", the gate's "r" answer. */
static int core_set_gate_repl(lua_State *L)
{
	if (gate_hook)
		gate_hook_unregister(gate_hook);
	lua_pushnil(L);
	lua_rawsetp(L, LUA_REGISTRYINDEX, &gate_key);
	if (lua_isnoneornil(L, 1))
		return 0;
	luaL_checktype(L, 1, LUA_TFUNCTION);
	struct gate_hook *h = lua_newuserdatauv(L, sizeof *h, 2);
	h->T = NULL;
	luaL_setmetatable(L, GATE_HOOK_MT);
	h->T = lua_newthread(L);
	lua_setiuservalue(L, -2, 1);
	lua_pushvalue(L, 1);
	lua_setiuservalue(L, -2, 2);
	lua_rawsetp(L, LUA_REGISTRYINDEX, &gate_key);
	gate_hook = h;
	gate_set_repl(open_repl_from_gate);
	return 0;
}

int luaopen_core(lua_State *L)
{
	static const luaL_Reg fns[] = {
		{ "out", core_out }, { "err", core_err }, { "redact", core_redact }, { "secret", core_secret },
		{ "prompt", core_prompt }, { "interactive", core_interactive }, { "color", core_color },
		{ "now", core_now }, { "sleep", core_sleep }, { "interrupts", core_interrupts },
		{ "terminated", core_terminated }, { "clear_interrupt", core_clear_interrupt },
		{ "set_cap", core_set_cap }, { "duration", core_duration },
		{ "gate_configure", core_gate_configure }, { "declined", core_declined },
		{ "set_gate_repl", core_set_gate_repl }, { "transcribe", core_transcribe },
		{ "audit", core_audit }, { "audit_probe", core_audit_probe }, { "marker", core_marker },
		{ "transcript_open", core_transcript_open }, { "transcript_close", core_transcript_close },
		{ "transcript_dir", core_transcript_dir }, { "transcript_ok", core_transcript_ok },
		{ "transcript_step", core_transcript_step }, { "transcript_sync", core_transcript_sync },
		{ "sha256", core_sha256 }, { "chain", core_chain },
		{ "control", core_control }, { "is_control", core_is_control },
		{ "thread_push", core_thread_push }, { "thread_pop", core_thread_pop },
		{ "distance", core_distance }, { "modules", core_modules }, { "state_dir", core_state_dir },
		{ "prefetch", modules_prefetch }, { "module_wait", modules_wait }, { "identity", core_identity },
		{ "parallel", tasks_parallel },
		{ "kill", core_kill }, { "free_port", core_free_port }, { "exe", core_exe },
		{ NULL, NULL },
	};
	static const luaL_Reg gate_hook_meta[] = { { "__gc", gate_hook_gc }, { "__close", gate_hook_gc }, { NULL, NULL } };
	luax_class(L, GATE_HOOK_MT, gate_hook_meta, NULL, NULL);
	luaL_newlib(L, fns);
	lua_pushstring(L, RUNBOOK_VERSION);
	lua_setfield(L, -2, "version");
	push_share_dir(L);
	lua_setfield(L, -2, "share");
	return 1;
}
