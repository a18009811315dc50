/*
 * tool.h - running one of the system's own tools (ssh-keygen, journalctl) to completion.
 *
 * Not for runbooks (they have sh): for the interpreter's own needs, where the command is fixed
 * and its output is small. The tool runs in a session of its own (it cannot read the operator's
 * terminal, e.g. to ask for a passphrase), with stdin fed from memory, and is killed at the deadline.
 */
#ifndef TOOL_H
#define TOOL_H

#include <spawn.h>
#include <stddef.h>

struct lua_State;

struct tool_result {
	int status;        /* exit code, 128+signal, or -1 when it could not be run or timed out */
	char *out, *err;   /* malloc'd, NUL-terminated (capped at TOOL_OUTPUT_MAX each) */
	size_t out_len, err_len;
	char why[160];     /* when status is -1 */
};

#define TOOL_OUTPUT_MAX (8u << 20)

/* Runs argv (argv[0] looked up on PATH) with in[0..inlen) as stdin. Always fills r; free with tool_free. */
void tool_run(const char *const *argv, const char *in, size_t inlen, int timeout_ms, struct tool_result *r);
void tool_free(struct tool_result *r);

/* Initialises attr for a helper process: a session of its own, every signal default and unblocked. */
void tool_spawnattr_init(posix_spawnattr_t *attr);

/* Lua: core.tool({argv...}, input, timeout_ms) -> status, stdout, stderr | nil, why, "tool" */
int tool_lua(struct lua_State *L);

#endif
