/*
 * gate.h - the action gate: the one way anything that changes the world gets permission.
 *
 * gate_ask() shows exactly what will happen, records the plan, asks on the terminal, records
 * the answer and fdatasyncs the transcript before returning GATE_RUN. It cannot be bypassed from
 * Lua: the primitives that act (sh.action, and later pg/redis/http actions) call it from C.
 *   --dry-run            shown, recorded, never run              -> GATE_DRY_RUN
 *   --yes                shown, recorded as confirmed by --yes   -> GATE_RUN, except for an
 *                        irreversible action: --yes never confirms one. It is asked on the terminal
 *                        (the target typed back), run when --yes-irreversible named that exact
 *                        target, and declined otherwise (the run goes on, exit 4)
 *   no terminal          shown, recorded as declined             -> GATE_DECLINED
 *   "yes" (or the target typed back when irreversible)           -> GATE_RUN
 *   anything else: the operator chooses skip (GATE_DECLINED), ask again, or abort (GATE_ABORT)
 *   the transcript cannot be written                             -> GATE_REFUSED
 */
#ifndef GATE_H
#define GATE_H

#include <stdbool.h>

struct gate_plan {
	const char *primitive;   /* "sh.action" */
	const char *summary;     /* one line: what will happen */
	const char *detail;      /* the exact effect (argv, SQL), may be NULL */
	const char *target;      /* what it acts on; typed back when irreversible */
	const char *blast;       /* measured just before by a probe, may be NULL */
	bool irreversible;
	const char *typeback;    /* when irreversible: what is typed back instead of target (a fleet's host count) */
	bool fleet;              /* one question for many hosts: a resumed session withholds per host (replay.h) */
};

enum gate_answer { GATE_RUN, GATE_DRY_RUN, GATE_DECLINED, GATE_ABORT, GATE_REFUSED };

/* yes_irreversible: the one target --yes-irreversible names (NULL: none); copied. */
void gate_configure(bool dry_run, bool yes, const char *yes_irreversible);
bool gate_dry_run(void);
enum gate_answer gate_ask(const struct gate_plan *plan);
int  gate_declined(void);   /* actions declined or not asked for want of a terminal */
const char *gate_answer_name(enum gate_answer a);

/* The decline menu offers "r: repl" while an opener is registered (interp/lineedit.c registers the
 * engine's for interactive runs; NULL unregisters). It returns what the operator chose there:
 * back to the menu, ask again, skip the step or abort the run. */
enum gate_repl { GATE_REPL_BACK, GATE_REPL_RETRY, GATE_REPL_SKIP, GATE_REPL_QUIT };
void gate_set_repl(enum gate_repl (*open)(void));

/* Audit helpers for the acting primitive: before it starts and once it has a result. */
void gate_action_start(const char *primitive, const char *target);
void gate_action_result(const char *primitive, const char *target, const char *outcome, double duration_ms,
                        const char *summary);
/* The same for an action run through a transport: on is the target, host the host it ran on. */
void gate_action_start_on(const char *primitive, const char *target, const char *on, const char *host);
void gate_action_result_on(const char *primitive, const char *target, const char *on, const char *host,
                           const char *outcome, double duration_ms, const char *summary);

#endif
