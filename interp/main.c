/*
 * main.c - the command line: subcommands, --help, --version, exit codes.
 *
 * Help and version are answered here without starting Lua, from the texts of help.c (which the man
 * page runbook(1) is made from too). Each subcommand's own options are parsed by interp/cli.lua, which
 * returns the exit code (see runbook.h).
 */
#include "help.h"
#include "host.h"
#include "labd.h"
#include "redact.h"
#include "modules.h"
#include "runbook.h"
#include "sched.h"
#include "tasks.h"
#include "term.h"
#include "transcript.h"

#include <ctype.h>
#include <errno.h>
#include <lauxlib.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* At exit, how long the awaited worker threads still running (cancel requests on their way) are
 * waited for; other workers still running (stuck in the kernel) make it exit without the exit handlers. */
#define OFFLOADS_SETTLE_MS 500

static bool wants_help(int argc, char **argv)
{
	for (int i = 2; i < argc; i++) {
		if (strcmp(argv[i], "--") == 0)
			return false;
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
			return true;
	}
	return false;
}

/* After Lua has its copy: the value of every name=value argument (the inputs, secrets among them)
 * is overwritten in place, so that /proc/PID/cmdline (ps, anyone on the host) no longer shows it. */
static void hide_input_values(int argc, char **argv)
{
	for (int i = 2; i < argc; i++) {
		char *a = argv[i], *eq = strchr(a, '=');
		if (!eq || a[0] == '-' || eq == a)
			continue;
		bool name = true;
		for (char *c = a; c < eq; c++)
			name = name && (isalnum((unsigned char)*c) || *c == '_');
		if (name)
			memset(eq + 1, '*', strlen(eq + 1));
	}
}

/* The watchdog's last resort (sched.h): the main thread is inside a long C call that no signal
 * reaches. The transcript is closed by a record saying so (outcome "killed"), then the process
 * ends, without Lua: its state is in the middle of that call. */
static void unresponsive(int sig)
{
	const char *what = sig == SIGINT ? "a second Ctrl-C" : sig == SIGTERM ? "SIGTERM" : "SIGHUP";
	char fields[320], line[320];
	snprintf(fields, sizeof fields, "{\"exit\":%d,\"outcome\":\"killed\",\"message\":\"%s was not honoured "
	         "within 1 s (a call running inside C): the process was ended there\"}", EXIT_ABORTED, what);
	bool recorded = transcript_is_open() && !transcript_busy() && transcript_close(fields, NULL) == 0;
	int n = snprintf(line, sizeof line, "\nrunbook: %s was not honoured within 1 s (a call running inside C, such as "
	                 "a string.find that backtracks): ended%s\n", what, recorded ? "; the transcript says so" : "");
	ssize_t w = write(STDERR_FILENO, line, (size_t)n);
	(void)w;
	term_restore();
	_exit(EXIT_ABORTED);
}

static int run_lua(int argc, char **argv)
{
	errno = 0;
	lua_State *L = host_new();
	if (!L && errno == EINVAL)
		return EXIT_USAGE;   /* said by host_new */
	if (!L) {
		fprintf(stderr, "runbook: cannot create the Lua state (out of memory)\n");
		return EXIT_INTERNAL;
	}
	int code = EXIT_INTERNAL;
	for (int i = 2; i < argc; i++)
		if (strcmp(argv[i], "--debug") == 0)
			host_set_debug(true);
	lua_getglobal(L, "require");
	lua_pushstring(L, "cli");
	if (host_call(L, 1, 1) == LUA_OK) {
		lua_getfield(L, -1, "main");
		lua_createtable(L, argc, 0);
		for (int i = 1; i < argc; i++) {
			lua_pushstring(L, argv[i]);
			lua_rawseti(L, -2, i);
		}
		hide_input_values(argc, argv);
		if (host_call(L, 1, 1) == LUA_OK)
			code = (int)luaL_optinteger(L, -1, EXIT_INTERNAL);
		else
			err_printf("runbook: internal error: %s\n", luaL_tolstring(L, -1, NULL));
	} else {
		err_printf("runbook: internal error: %s\n", luaL_tolstring(L, -1, NULL));
	}
	if (!modules_settle()) {   /* a module stuck in dlopen: leave without the libraries' exit handlers */
		term_restore();
		fflush(NULL);
		_exit(code);
	}
	host_close(L);   /* its __gc may send cancel requests, from worker threads */
	if (!tasks_offloads_settle(OFFLOADS_SETTLE_MS)) {
		term_restore();
		fflush(NULL);
		_exit(code);
	}
	return code;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fputs(help_usage, stderr);
		return EXIT_USAGE;
	}
	const char *cmd = argv[1];
	if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "version") == 0) {
		printf("runbook %s\n", RUNBOOK_VERSION);
		return EXIT_OK;
	}
	if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
		fputs(help_usage, stdout);
		return EXIT_OK;
	}
	if (strcmp(cmd, "help") == 0) {
		const char *h = argc > 2 ? help_find(argv[2]) : help_usage;
		if (!h) {
			fprintf(stderr, "runbook: no such command '%s'\n", argv[2]);
			return EXIT_USAGE;
		}
		fputs(h, stdout);
		return EXIT_OK;
	}
	if (strcmp(cmd, "lab") == 0 && argc > 2 && strcmp(argv[2], "serve") == 0)
		return labd_main(argc - 2, argv + 2);
	if (strcmp(cmd, "__grep") == 0)
		return sys_grep_helper(argc - 2, argv + 2);
	const char *help = help_command(cmd);
	if (!help) {
		fprintf(stderr, "runbook: '%s' is not a command. See 'runbook --help'.\n", cmd);
		return EXIT_USAGE;
	}
	if (wants_help(argc, argv)) {
		fputs(help, stdout);
		return EXIT_OK;
	}
	sched_init();
	sched_on_unresponsive(unresponsive);
	term_init();
	int code = run_lua(argc, argv);
	term_restore();
	redact_free_all();
	return code;
}
