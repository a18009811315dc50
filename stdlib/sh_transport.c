/*
 * sh_transport.c - the transports' half of sh (require "sh_transport", for stdlib/reach.lua only:
 * not a runbook module). reach.lua resolves a target, builds the argv of ssh, docker compose or
 * kubectl, and comes here to ask the gate once (for one host or a fleet), to run that argv with
 * sh's own machinery (sh.c: spawn, deadline, process-group kill, Ctrl-C, live output) recorded
 * with its target and host, and for the small things Lua cannot do (quoting as sh shows it, a
 * private directory for ssh's control sockets).
 */
#include "gate.h"
#include "luax.h"
#include "modules.h"
#include "sh_internal.h"
#include "transcript.h"

#include <errno.h>
#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* sh_transport.run(cmd, { display =, on =, host =, action =, keep = }): runs cmd (an sh.read table: argv
 * and timeout, grace, quiet, max_output, shell, env) as sh.read does, and returns its result table
 * whatever happened, with timed_out, interrupted and spawn_error. display is what the audit
 * records as the command (the remote command line); on and host name the target and host. For
 * an action, the gate has been asked (sh_transport.gate) before. keep: what it leaves running is
 * not ended with it (stdlib/leftovers.h): ssh's master connection. */
static int shx_run(lua_State *L)
{
	luaL_checktype(L, 2, LUA_TTABLE);
	const char *display = luax_opt_string(L, 2, "display", NULL, "sh_transport.run");
	const char *on = luax_opt_string(L, 2, "on", NULL, "sh_transport.run");
	const char *host = luax_opt_string(L, 2, "host", NULL, "sh_transport.run");
	bool action = luax_opt_bool(L, 2, "action", false, "sh_transport.run");
	bool keep = luax_opt_bool(L, 2, "keep", false, "sh_transport.run");
	struct command c = { 0 };
	parse_command(L, &c, false);
	c.fn = action ? "sh.action" : "sh.read";
	c.leave_running = keep;   /* ssh's master connection (ControlPersist) outlives the call that made it */
	if (display) {
		free(c.display);
		if (!(c.display = strdup(display)))
			abort();
	}
	if (action) {
		gate_action_start_on("sh.action", c.display, on, host);
		/* Signed before it runs, as a "yes" is: a resumed session trusts only the signed part of a
		 * transcript, and must see that a fleet's action started on this host (interp/resume.lua). */
		transcript_checkpoint("action");
	}
	return sh_run(L, &c, action, on ? on : "local", host);   /* on and host: anchored by the table at 2 */
}

/* sh_transport.gate { summary, detail, target, irreversible, typeback, fleet, command }: asks the
 * one question of a remote or fleet action. Returns "run", or what sh.action returns when not run
 * (the dry run's table, nil, err, "refused", or the declined step's signal). */
static int shx_gate(lua_State *L)
{
	const char *fn = "sh_transport.gate";
	luaL_checktype(L, 1, LUA_TTABLE);
	struct gate_plan plan = {
		.primitive = "sh.action",
		.summary = luax_opt_string(L, 1, "summary", NULL, fn),
		.detail = luax_opt_string(L, 1, "detail", NULL, fn),
		.target = luax_opt_string(L, 1, "target", NULL, fn),
		.blast = luax_opt_string(L, 1, "blast", NULL, fn),
		.irreversible = luax_opt_bool(L, 1, "irreversible", false, fn),
		.typeback = luax_opt_string(L, 1, "typeback", NULL, fn),
		.fleet = luax_opt_bool(L, 1, "fleet", false, fn),
	};
	const char *command = luax_opt_string(L, 1, "command", "", fn);
	if (!plan.summary)
		luaL_error(L, "%s: no summary", fn);
	enum gate_answer a = gate_ask(&plan);
	if (a == GATE_RUN) {
		lua_pushliteral(L, "run");
		return 1;
	}
	return sh_not_run(L, a, command);
}

/* sh_transport.record(command, on, host, outcome, why): the action result of a host of a fleet that
 * the action did not run on ("not run": an earlier batch failed; "not repeated": a resumed session). */
static int shx_record(lua_State *L)
{
	gate_action_result_on("sh.action", luaL_checkstring(L, 1), luaL_checkstring(L, 2), luaL_checkstring(L, 3),
	                      luaL_checkstring(L, 4), 0, luaL_optstring(L, 5, ""));
	return 0;
}

/* sh_transport.quote(argv) -> the words as one line for a shell, each quoted only when needed:
 * what ssh gives the remote shell, and what the gate shows. */
static int shx_quote(lua_State *L)
{
	luaL_checktype(L, 1, LUA_TTABLE);
	int n = (int)lua_rawlen(L, 1);
	luaL_argcheck(L, n > 0, 1, "empty argv");
	const char **argv = lua_newuserdatauv(L, ((size_t)n + 1) * sizeof *argv, 0);
	for (int i = 1; i <= n; i++) {
		if (lua_rawgeti(L, 1, i) != LUA_TSTRING)
			luaL_error(L, "argv[%d] must be a string", i);
		argv[i - 1] = lua_tostring(L, -1);   /* anchored by the table */
		lua_pop(L, 1);
	}
	argv[n] = NULL;
	char *line = display_line(argv);
	lua_pushstring(L, line);
	free(line);
	return 1;
}

/* sh_transport.private_dir(path) -> path | nil, err: a directory only this user can enter, made
 * (mode 0700) when missing; an existing one that is a symlink, someone else's or open to others
 * is refused (ssh's control sockets live there). */
static int shx_private_dir(lua_State *L)
{
	const char *path = luaL_checkstring(L, 1);
	if (mkdir(path, 0700) != 0 && errno != EEXIST)
		return luax_fail(L, "error", "cannot create %s: %s", path, strerror(errno));
	struct stat st;
	if (lstat(path, &st) != 0)
		return luax_fail(L, "error", "cannot use %s: %s", path, strerror(errno));
	if (!S_ISDIR(st.st_mode) || st.st_uid != geteuid() || (st.st_mode & 077))
		return luax_fail(L, "error", "%s is not a private directory of this user (mode 0700): not used", path);
	lua_pushstring(L, path);
	return 1;
}

int luaopen_sh_transport(lua_State *L)
{
	static const luaL_Reg fns[] = {
		{ "run", shx_run }, { "gate", shx_gate }, { "record", shx_record }, { "quote", shx_quote },
		{ "private_dir", shx_private_dir }, { NULL, NULL },
	};
	luaL_newlib(L, fns);
	return 1;
}

