/*
 * help.h - the command line's help texts, in one table: `runbook --help`, `runbook help COMMAND` and
 * `COMMAND --help` print them (main.c, without starting Lua), and the man page runbook(1) is made
 * from the same texts (interp/man.lua, through core.help()), so that the two cannot drift.
 *
 * The texts keep one plain layout that man.lua reads back: "usage: ..." lines (continued by lines
 * starting "       runbook"), paragraphs separated by blank lines, a "name:" line heading a list of
 * "  TERM   meaning" items (meanings continued by deeper-indented lines), and "label: text" lines
 * (continued by lines indented under the text).
 */
#ifndef RUNBOOK_HELP_H
#define RUNBOOK_HELP_H

struct help_text {
	const char *name, *text;
};

extern const char help_usage[];                   /* runbook --help */
extern const struct help_text help_commands[];    /* each command's, up to { NULL, NULL } */
extern const struct help_text help_topics[];      /* files, environment: runbook help TOPIC */

/* The help of a command, or NULL when there is no such command. */
const char *help_command(const char *name);
/* The help of a command or of a topic, or NULL. */
const char *help_find(const char *name);

#endif
