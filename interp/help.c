/*
 * help.c - the help texts of the command line and its topics; see help.h. Edit them here: the man
 * page runbook(1) (doc/runbook.1) is regenerated from them by `make docs`.
 */
#include "help.h"

#include <stddef.h>
#include <string.h>

const char help_usage[] =
	"usage: runbook <command> [options]\n"
	"\n"
	"Walks incident runbooks step by step: probes look, actions ask first, everything is recorded.\n"
	"\n"
	"commands:\n"
	"  list                      the runbooks on the search path\n"
	"  show NAME                 a runbook rendered as Markdown; nothing is executed\n"
	"  exec NAME|FILE [opts]     run a runbook against real systems\n"
	"  check [--strict] FILE...  validate and lint runbooks; touches no server\n"
	"  transcript verify FILE    complete, killed, truncated at line N, or invalid at line N\n"
	"  transcript show FILE      the audit records of a transcript, readably\n"
	"  repl [--runbook NAME]     a Lua prompt with every module loaded, recorded in a transcript\n"
	"  doc [NAME]                the Lua API reference (Markdown), or one primitive's help\n"
	"  timeline TRANSCRIPT...    a Markdown post-mortem draft from the transcripts of an incident\n"
	"  history [NAME]            past sessions: runbook, start, duration, outcome, operator\n"
	"  unlock ID                 remove a session lock (the id is printed when a run is refused)\n"
	"  lab up|status|down        a local PostgreSQL, Redis and HTTP service to rehearse on\n"
	"  drill NAME                break the lab the way a runbook is about, run the runbook, check\n"
	"  new NAME [--from RUNBOOK] start a runbook: a commented template, or a copy of another\n"
	"  test [NAME...]            check --strict and every drill of the runbooks: N passed, N failed\n"
	"  help [COMMAND|TOPIC]      this text, a command's, or a topic's (files, environment)\n"
	"\n"
	"options: --help, --version\n"
	"environment: RUNBOOK_MEMORY_LIMIT  the most memory a runbook's Lua may use (default 1G)\n"
	"search path: ./runbooks, $RUNBOOK_PATH (colon-separated), $XDG_CONFIG_HOME/runbook/runbooks,\n"
	"             PREFIX/share/runbook/runbooks (PREFIX: where bin/runbook is installed)\n"
	"\n"
	"exit codes: 0 completed or resolved, 1 a step failed, 2 usage error, 3 escalated,\n"
	"            4 actions declined, 5 aborted by the operator, 6 locked by another session,\n"
	"            70 internal error\n";

const struct help_text help_commands[] = {
	{ "list", "usage: runbook list\n\nLists the runbooks on the search path: name, severity, summary.\n"
	          "The first runbook of a name wins: ./runbooks, $RUNBOOK_PATH, $XDG_CONFIG_HOME/runbook/runbooks,\n"
	          "PREFIX/share/runbook/runbooks (PREFIX: where bin/runbook is installed).\n" },
	{ "show", "usage: runbook show NAME|FILE\n\nPrints the runbook as Markdown: summary, inputs, steps, and under each step the commands,\nqueries and library calls it will run, read from its source. Nothing is executed.\n" },
	{ "exec", "usage: runbook exec NAME|FILE [options] [name=value ...]\n\n"
	          "Walks the runbook step by step. Probes run freely; actions show exactly what they will do and\n"
	          "wait for \"yes\" typed on the terminal (irreversible ones for the target typed back).\n\n"
	          "options:\n"
	          "  --dry-run          probes run for real, actions are only shown\n"
	          "  --auto             no pause between steps (actions still ask)\n"
	          "  --yes              confirm every reversible action without asking (recorded in the transcript);\n"
	          "                     an irreversible one still needs its target typed back on the terminal,\n"
	          "                     and without a terminal it is declined (exit 4)\n"
	          "  --yes-irreversible TARGET\n"
	          "                     also confirm the irreversible action on exactly TARGET (recorded)\n"
	          "  --start-at ID      begin at step ID (or its number)\n"
	          "  --timeout DUR      cap every primitive's deadline (500ms, 2s, 1m)\n"
	          "  --transcript FILE  write the transcript here (default $XDG_STATE_HOME/runbook/transcripts/)\n"
	          "  --incident ID      the incident this run belongs to: status line, escalations, status updates\n"
	          "  --severity SEV     its severity (default the runbook's): SEV1..SEV4, P0..P3, or from config.lua\n"
	          "  --since TIME|DUR   when the incident began (2025-01-15T14:35Z, or 20m ago; default now)\n"
	          "  --impact TEXT      who or what is affected, for status updates\n"
	          "  --resume FILE      continue the session of that transcript: done steps are re-checked,\n"
	          "                     confirmed actions are never repeated (NAME may then be left out); what\n"
	          "                     it records is shown, and runs only if signed by an allowed signer or\n"
	          "                     confirmed by typing yes (no terminal and unsigned: refused)\n"
	          "  --allowed-signers FILE  whose signatures --resume trusts (default\n"
	          "                     $XDG_CONFIG_HOME/runbook/allowed_signers)\n"
	          "  --sign-key FILE    sign the transcript's checkpoints with this SSH key (a private key, or a .pub\n"
	          "                     whose key is in ssh-agent); default $RUNBOOK_SIGN_KEY, then config.lua's\n"
	          "                     signing.key; without one the transcript is unsigned (see doc/transcripts.md)\n"
	          "  --lock-timeout DUR wait this long for a session holding the same runbook and target (default 0)\n"
	          "  --inventory FILE   the Ansible inventory of inventory:GROUP targets (default $RUNBOOK_INVENTORY)\n"
	          "  --memory-limit SIZE  the most memory the runbook's Lua may use (default 1G, or\n"
	          "                     $RUNBOOK_MEMORY_LIMIT): past it the run ends, its transcript closed\n"
	          "  name=value         set an input (see `runbook show NAME`); inputs also read their env variable,\n"
	          "                     then config.lua's runbooks = { [\"NAME\"] = { input = value } }\n\n"
	          "At each step: Enter runs it, s skips, j jumps to another step, r opens the REPL (see\n"
	          "'runbook help repl'), u posts a status update (with --incident), q quits.\n"
	          "Ctrl-C stops the call in progress and returns to the step menu; Ctrl-C at the menu ends the run.\n"
	          "A second Ctrl-C, or a SIGTERM, not honoured within 1 s (a call running inside C) ends the process\n"
	          "at once, the transcript closed by a record saying so (outcome \"killed\", exit 5).\n"
	          "Without a terminal and without --yes, no action runs: it is recorded as declined.\n\n"
	          "exit codes: 0 completed or resolved, 1 a step failed, 2 usage error, 3 escalated,\n"
	          "            4 actions declined, 5 aborted by the operator, 6 locked by another session,\n"
	          "            70 internal error\n" },
	{ "check", "usage: runbook check [--strict] FILE|NAME...\n       runbook check --explain RULE\n\n"
	           "Loads and validates each runbook without touching any server, then lints it: errors for\n"
	           "jumps to unknown steps (unknown-step) and unknown inputs read (unknown-input); warnings for\n"
	           "state-changing commands in sh.read (mutating-probe), actions without a summary or target\n"
	           "(action-without-summary, action-without-target), steps no path reaches (unreachable-step),\n"
	           "inputs never read (unused-input) and secrets in plain input.strings (plain-secret).\n"
	           "Each finding reads FILE:LINE: error|warning: message [rule].\n\n"
	           "  --strict        warnings fail too (for a team's CI)\n"
	           "  --explain RULE  what a rule looks for, and how to fix or silence it\n\n"
	           "A comment naming the rule on the finding's line (or on comment lines just above it)\n"
	           "silences it there: -- runbook: allow mutating-probe (why)\n"
	           "exit codes: 0 all valid, 1 at least one invalid (or, with --strict, warned about), 2 usage error\n" },
	{ "transcript", "usage: runbook transcript verify FILE [--allowed-signers FILE] [--witness [LOGFILE]]\n"
	                "       runbook transcript show FILE\n\n"
	                "verify checks the hash chain and prints \"complete\", \"truncated at line N\" or \"invalid at line N\",\n"
	                "or \"killed\" when the process was ended inside a call (a second Ctrl-C or SIGTERM not honoured);\n"
	                "then who signed it (FILE.sig, checked with ssh-keygen -Y verify against --allowed-signers,\n"
	                "default $XDG_CONFIG_HOME/runbook/allowed_signers) or \"unsigned\"; with --witness, whether the\n"
	                "chain heads the session wrote to the system log (journalctl, or LOGFILE) match the file.\n"
	                "What each check does and does not detect: doc/transcripts.md.\n"
	                "exit codes: 0 complete (signed or unsigned), 1 killed, truncated, invalid, a bad signature or a witness\n"
	                "            mismatch, 2 usage error\n"
	                "show prints the audit records: time, step, type and what happened.\n" },
	{ "lab", "usage: runbook lab up | status | down\n       runbook lab start | stop | restart | restarts pg | redis | api | nginx\n\n"
	         "A real PostgreSQL, Redis and HTTP service (GET /health reports both), and nginx (Debian's) in front\n"
	         "of the service with its own config, access and error logs, on 127.0.0.1 and free ports,\n"
	         "under $XDG_STATE_HOME/runbook/lab, for rehearsing incidents. Nothing runs as a system service;\n"
	         "down stops everything by PID and removes the data. restarts prints how many times the lab has\n"
	         "(re)started a component since up: the lab's restart counter, as systemd's NRestarts.\n"
	         "exit codes: 0 up (or stopped), 1 a component is not healthy or failed to start, 2 usage error\n" },
	{ "drill", "usage: runbook drill NAME|FILE [--mode MODE] [--auto] [--yes] [--yes-irreversible TARGET]\n\n"
	           "Rehearses an incident for real: brings the lab up if needed (see 'runbook lab'), breaks it the way\n"
	           "the runbook NAME is about, runs the runbook against the lab, and reports whether the system is\n"
	           "healthy again and how long it took. Interactive by default; --auto --yes runs it unattended.\n"
	           "The drill is the file NAME.drill.lua beside the runbook (else the first on the search path):\n"
	           "its modes say how to break the lab, the findings (by code) the runbook must report and the\n"
	           "actions it must and must not offer; the drill fails when the runbook misses them, whatever the\n"
	           "lab's health afterwards. See doc/drills.md.\n"
	           "exit codes: those of exec; 1 also when the system is still broken at the end, or when the\n"
	           "runbook missed the fault\n" },
	{ "timeline", "usage: runbook timeline TRANSCRIPT...\n\n"
	              "Prints a Markdown post-mortem draft from the transcripts of one incident: summary, durations (to\n"
	              "respond, first finding, mitigation, resolution), a timeline of findings, confirmations, actions,\n"
	              "escalations, status updates and handovers, and what was declined or skipped. Each transcript is\n"
	              "verified first: an invalid one is refused, a truncated one is used up to where it stops.\n"
	              "exit codes: 0 drafted, 1 a transcript is invalid or unreadable, 2 usage error\n" },
	{ "history", "usage: runbook history [NAME] [--limit N]\n\n"
	             "Past sessions from the transcript directory, newest first: start, runbook, duration, outcome,\n"
	             "operator, incident; then each runbook's last successful run (exit 0, not a dry run).\n"
	             "--limit N shows the N newest (default 50; 0: all).\n" },
	{ "unlock", "usage: runbook unlock ID\n\n"
	            "Removes the lock ID ($XDG_STATE_HOME/runbook/locks/ID.lock) that keeps a second session of a runbook\n"
	            "off the same target, and says whose it was. A lock whose session died is taken over by the next run\n"
	            "anyway; unlock is for a session that hangs, or a lock on a shared state directory. Without ID it\n"
	            "lists the locks.\n"
	            "exit codes: 0 removed, 1 no such lock, 2 usage error\n" },
	{ "repl", "usage: runbook repl [--runbook NAME|FILE] [options] [name=value ...]\n\n"
	          "A Lua prompt in a runbook's sandbox with every native module loaded as a global (sh, sys, ...).\n"
	          "An expression shows its value (_ holds the last one); an incomplete statement asks for more lines;\n"
	          "Tab completes globals, module fields (sys.) and methods (conn:); help(x) or :help sys.fs documents\n"
	          "a primitive. Actions go through the same confirmation gate as in a run, and the session is\n"
	          "recorded in a transcript. Ctrl-C stops an evaluation or clears the line; Ctrl-D or :quit leaves.\n"
	          "On a terminal, lines are kept in $XDG_STATE_HOME/runbook/history (mode 0600), except any line\n"
	          "holding a secret. Without a terminal, lines are read from stdin: no prompt, no history.\n\n"
	          "options:\n"
	          "  --runbook NAME     load the runbook's inputs (name=value, env, defaults) into ctx\n"
	          "  --dry-run          actions are only shown\n"
	          "  --timeout DUR      cap every primitive's deadline (500ms, 2s, 1m)\n"
	          "  --transcript FILE  write the transcript here (default $XDG_STATE_HOME/runbook/transcripts/)\n"
	          "  --debug            errors with a traceback\n\n"
	          "Inside a run, r at the step menu, a failed step or a declined action opens the same REPL with ctx;\n"
	          ":continue goes back to the menu, :retry, :skip and :quit answer it.\n"
	          "exit codes: 0, or 1 when input came from a pipe and an evaluation failed; 2 usage error\n" },
	{ "doc", "usage: runbook doc [NAME]\n       runbook doc --markdown | --man 1 | --man 7\n"
	         "       runbook doc --luals DIR [--as PATH]\n\n"
	         "Without NAME, prints the whole reference as Markdown, writing runbooks and the Lua API (what\n"
	         "doc/lua-api.md holds). With NAME (sys, sys.fs, ctx:jump, input.url), prints that entry as the\n"
	         "REPL's help(NAME) shows it.\n\n"
	         "options:\n"
	         "  --markdown         the whole reference, as without NAME\n"
	         "  --man 1            the man page runbook(1), in troff: this command line, from these help texts\n"
	         "  --man 7            the man page runbook-lua(7), in troff: writing runbooks and the Lua API\n"
	         "  --luals DIR        Lua language server definitions (---@meta files: every module, ctx, input.*,\n"
	         "                     runbook and step fields, with types and docs) and a .luarc.json naming DIR\n"
	         "                     (or PATH) into DIR, for completion and checking in VS Code, Neovim or Emacs;\n"
	         "                     'make install' puts them under PREFIX/share/runbook/luals. Copy that\n"
	         "                     .luarc.json beside your runbooks.\n\n"
	         "exit codes: 0, 1 DIR cannot be written, 2 no such name or usage error\n" },
	{ "new", "usage: runbook new NAME [--from RUNBOOK] [PATH]\n\n"
	         "Writes runbooks/NAME.lua (or PATH: a file named NAME.lua, or a directory to put it in): a\n"
	         "runbook with inputs, a probe step and an action step, and beside it NAME.drill.lua, its drill\n"
	         "(a mode to fill in), every part commented in a line; it passes 'runbook check --strict' as\n"
	         "written. --from copies a runbook found on the search path (or a file) under the new name, with\n"
	         "its drill. An existing file is never overwritten.\n"
	         "exit codes: 0 written, 2 usage error or the file exists\n" },
	{ "test", "usage: runbook test [NAME|FILE...]\n\n"
	          "For each runbook named (default: every runbook on the search path): 'runbook check --strict',\n"
	          "then 'runbook drill FILE --mode MODE --auto --yes' for each mode of its NAME.drill.lua. One PASS or FAIL\n"
	          "line each, and last exactly \"N passed, N failed\". For a team's CI.\n"
	          "exit codes: 0 all passed, 1 any failed, 2 usage error\n" },
	{ "help", "usage: runbook help [COMMAND|TOPIC]\n\nThis text, a command's, or a topic's: files (what runbook reads and writes), environment.\n" },
	{ NULL, NULL },
};

const struct help_text help_topics[] = {
	{ "files", "What runbook reads and writes. XDG_STATE_HOME is ~/.local/state and XDG_CONFIG_HOME is ~/.config\n"
	           "when they are not set; PREFIX is where bin/runbook is installed.\n\n"
	           "files:\n"
	           "  ./runbooks                           runbooks, searched first\n"
	           "  $XDG_CONFIG_HOME/runbook/runbooks    your runbooks, searched after $RUNBOOK_PATH\n"
	           "  PREFIX/share/runbook/runbooks        the runbooks shipped with runbook, searched last\n"
	           "  PREFIX/lib/runbook                   the modules pg, redis and http and the REPL's line editor,\n"
	           "                                       loaded on first use\n"
	           "  $XDG_CONFIG_HOME/runbook/config.lua  incident settings: severity scales, escalation, status sinks\n"
	           "  $XDG_STATE_HOME/runbook/transcripts  one hash-chained transcript per session (see --transcript)\n"
	           "  $XDG_STATE_HOME/runbook/locks        the session locks (see 'runbook unlock')\n"
	           "  $XDG_STATE_HOME/runbook/history      the REPL's line history (mode 0600)\n"
	           "  $XDG_STATE_HOME/runbook/lab          the lab's servers and their data (see 'runbook lab')\n"
	           "  $XDG_CONFIG_HOME/runbook/allowed_signers  whose transcript signatures are trusted (ssh-keygen format)\n"
	           "  TRANSCRIPT.sig                       the signatures of a transcript's checkpoints\n"
	           "  $XDG_RUNTIME_DIR/runbook             ssh's master connections (ControlPath), mode 0700\n" },
	{ "environment", "The variables runbook reads itself; a runbook's inputs also read the variable named by their env\n"
	                 "field, and the pg module reads libpq's (PGHOST, PGPORT, PGUSER, PGDATABASE, PGSERVICE, ...).\n\n"
	                 "environment:\n"
	                 "  RUNBOOK_PATH       colon-separated directories of runbooks, searched after ./runbooks\n"
	                 "  RUNBOOK_INVENTORY  the Ansible inventory of inventory:GROUP targets (as exec --inventory)\n"
	                 "  RUNBOOK_SIGN_KEY   the SSH key that signs transcripts (as exec --sign-key)\n"
	                 "  RUNBOOK_MEMORY_LIMIT  the most memory a runbook's Lua may use (default 1G)\n"
	                 "  RUNBOOK_SSH_CONFIG an ssh_config file for ssh:// and inventory targets (ssh -F)\n"
	                 "  RUNBOOK_SYSLOG_SOCKET  where the chain heads go instead of /dev/log (a witness for tests)\n"
	                 "  RUNBOOK_FAKE_CLOCK a file holding the incident clock's time (for tests: doc/incidents.md)\n"
	                 "  XDG_RUNTIME_DIR    where ssh's master connections live (runbook/), else a private directory\n"
	                 "  XDG_CONFIG_HOME    where runbook/runbooks and runbook/config.lua are (default ~/.config)\n"
	                 "  XDG_STATE_HOME     where transcripts, locks, the REPL's history and the lab are\n"
	                 "                     (default ~/.local/state; a relative path is ignored)\n"
	                 "  HOME               the default of both; without it, the account's home directory\n"
	                 "  NO_COLOR           set: no colours on the terminal\n"
	                 "  TERM               dumb: no colours\n"
	                 "  http_proxy, https_proxy, no_proxy\n"
	                 "                     as for curl, for the http module (loopback is never proxied)\n" },
	{ NULL, NULL },
};

static const char *find(const struct help_text *v, const char *name)
{
	for (; v->name; v++)
		if (strcmp(v->name, name) == 0)
			return v->text;
	return NULL;
}

const char *help_command(const char *name)
{
	return find(help_commands, name);
}

const char *help_find(const char *name)
{
	const char *h = find(help_commands, name);
	return h ? h : find(help_topics, name);
}
