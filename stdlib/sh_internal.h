/*
 * sh_internal.h - what sh.c shares with sh_transport.c (the transports' half of sh): the command
 * as parsed from an argument table, and running one with sh's own spawn, deadline and kill.
 */
#ifndef SH_INTERNAL_H
#define SH_INTERNAL_H

#include "gate.h"
#include "sched.h"

#include <lua.h>
#include <stdbool.h>
#include <stddef.h>

struct command {
	const char *fn;            /* "sh.read" or "sh.action" */
	const char **argv;         /* NULL-terminated; strings owned by the Lua argument table */
	int argc;
	char **envp;               /* NULL for the inherited environment */
	const char *cwd;
	msec_t timeout_ms, grace_ms;
	bool quiet, check, leave_running;
	size_t max_output;
	char *display;             /* argv as a shell-quoted line, for people */
};

/* Validates and collects the argv and options of the table at index 1 (raises on mistakes). */
void parse_command(lua_State *L, struct command *c, bool action);
void free_command(struct command *c);
/* The words as one shell line, each quoted only when needed. */
char *display_line(const char *const *argv);
/* Runs c (owned from here on) to its end, yielding inside parallel(). on NULL: a local call,
 * whose results are sh.read's or sh.action's; else a transport's run for the target on and its
 * host: recorded with them, and its result table returned whatever happened (with timed_out,
 * interrupted, spawn_error). */
int sh_run(lua_State *L, const struct command *c, bool action, const char *on, const char *host);
/* What sh.action returns for a question not answered yes (the dry run's table, nil, err,
 * "refused", or the declined step's control signal). */
int sh_not_run(lua_State *L, enum gate_answer a, const char *display);

#endif
