/*
 * runbook.h - what every layer of the host shares: the version and the exit codes.
 *
 * Exit codes are part of the command line's contract (documented in --help and the README):
 * a wrapper script can tell "fixed" from "escalated" from "the operator said no" without
 * parsing text.
 */
#ifndef RUNBOOK_H
#define RUNBOOK_H

#define RUNBOOK_VERSION "0.1.0"

enum exit_code {
	EXIT_OK        = 0,  /* completed, or resolved by the runbook */
	EXIT_FAILED    = 1,  /* a step failed and the run stopped there; verify: not complete */
	EXIT_USAGE     = 2,  /* bad command line, unknown runbook, invalid runbook */
	EXIT_ESCALATED = 3,  /* the runbook escalated */
	EXIT_DECLINED  = 4,  /* the run finished but at least one action was declined or not asked */
	EXIT_ABORTED   = 5,  /* the operator quit or pressed Ctrl-C twice */
	EXIT_LOCKED    = 6,  /* another session holds the runbook's lock (interp/lock.lua) */
	EXIT_INTERNAL  = 70, /* a bug in runbook itself, or the transcript could not be written */
};

#endif
