/*
 * gate.c - see gate.h.
 *
 * The questions are worded so that a reflex cannot confirm: "y" is not "yes", Enter is not
 * "yes", and whatever was typed before the question appeared is discarded (term_prompt flushes).
 */
#include "gate.h"
#include "jsonw.h"
#include "leftovers.h"
#include "redact.h"
#include "replay.h"
#include "sched.h"
#include "term.h"
#include "transcript.h"
#include "users.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static bool dry_run, assume_yes;
static char *yes_target;   /* --yes-irreversible TARGET */
static int declined;

void gate_configure(bool dry, bool yes, const char *yes_irreversible)
{
	dry_run = dry;
	assume_yes = yes;
	free(yes_target);
	yes_target = yes_irreversible && *yes_irreversible ? strdup(yes_irreversible) : NULL;
}

bool gate_dry_run(void) { return dry_run; }
int  gate_declined(void) { return declined; }

const char *gate_answer_name(enum gate_answer a)
{
	switch (a) {
	case GATE_RUN: return "run";
	case GATE_DRY_RUN: return "dry-run";
	case GATE_DECLINED: return "declined";
	case GATE_ABORT: return "abort";
	case GATE_REFUSED: return "refused";
	}
	return "?";
}

static void audit_plan(const struct gate_plan *p)
{
	struct jbuf b = { 0 };
	jb_open(&b);
	jb_kstr(&b, "primitive", p->primitive);
	jb_kstr_redacted(&b, "summary", p->summary);
	jb_kstr_redacted(&b, "detail", p->detail);
	jb_kstr_redacted(&b, "target", p->target);
	jb_kstr_redacted(&b, "blast", p->blast);
	jb_kbool(&b, "irreversible", p->irreversible);
	if (p->fleet)
		jb_kbool(&b, "fleet", true);
	jb_close(&b);
	transcript_audit("plan", b.p);
	jb_free(&b);
}

/* Records who answered what, and syncs: the answer is on disk before anything runs. */
static int audit_confirm(const char *answer, const char *how)
{
	struct jbuf b = { 0 };
	jb_open(&b);
	jb_kstr(&b, "answer", answer);
	jb_kstr(&b, "how", how);
	jb_kstr(&b, "user", users_self());
	jb_kstr(&b, "tty", term_tty_name());
	jb_close(&b);
	int r = transcript_audit("confirm", b.p);
	jb_free(&b);
	if (r == 0 && transcript_sync() == 0) {
		if (strcmp(answer, "yes") == 0)
			transcript_checkpoint("confirm");   /* signed and logged before the action runs */
		return 0;
	}
	return -1;
}

/* s on one line: a newline, tab, vertical tab or form feed in a summary, target or impact would lay out
 * lines that look like the gate's own ("  target  ..."), so they are shown as \n, \t, \v, \f (the
 * output path makes the other controls visible). Returns s itself or *copy, freed by the caller. */
static const char *one_line(const char *s, char **copy)
{
	*copy = NULL;
	if (!s || !s[strcspn(s, "\n\t\v\f")])
		return s;
	char *o = malloc(2 * strlen(s) + 1), *q = o;
	if (!o)
		abort();
	static const char layout[] = "\n\t\v\f", letters[] = "ntvf";
	for (; *s; s++) {
		const char *c = strchr(layout, *s);
		if (c) {
			*q++ = '\\';
			*q++ = letters[c - layout];
		} else {
			*q++ = *s;
		}
	}
	*q = 0;
	return *copy = o;
}

static void show_plan(const struct gate_plan *p)
{
	char on_buf[32], off_buf[32];
	const char *on = term_style(p->irreversible ? "1;31" : "1;33", on_buf, sizeof on_buf);
	const char *off = term_style("0", off_buf, sizeof off_buf);
	char *summary, *target, *blast;
	out_printf("  %sACTION%s  %s\n", on, off, one_line(p->summary, &summary));
	if (p->detail && *p->detail) {
		const char *line = p->detail;
		while (*line) {
			const char *nl = strchr(line, '\n');
			int len = nl ? (int)(nl - line) : (int)strlen(line);
			out_printf("          %.*s\n", len, line);
			line = nl ? nl + 1 : line + len;
		}
	}
	if (p->target && *p->target)
		out_printf("  target  %s\n", one_line(p->target, &target));
	else
		target = NULL;
	if (p->blast && *p->blast)
		out_printf("  impact  %s\n", one_line(p->blast, &blast));
	else
		blast = NULL;
	if (p->irreversible)
		out_printf("  %sThis cannot be undone.%s\n", on, off);
	free(summary);
	free(target);
	free(blast);
}

static enum gate_answer refuse_unrecorded(void)
{
	err_printf("  not run: the transcript cannot be written, so this action cannot be recorded\n");
	return GATE_REFUSED;
}

/* Asks until the operator confirms or declines. Returns GATE_RUN or GATE_DECLINED/ABORT. shown: the
 * target as the gate shows it. */
static enum gate_answer ask_until_answered(const struct gate_plan *p, const char *shown, const char **how)
{
	char line[512], question[600];
	const char *back = p->typeback ? p->typeback : shown;
	if (p->irreversible && p->typeback)
		snprintf(question, sizeof question, "  Type the number of hosts (%s) to confirm, or n to skip: ", back);
	else if (p->irreversible && p->target && *p->target)
		snprintf(question, sizeof question, "  Type the target (%s) to confirm, or n to skip: ", back);
	else
		snprintf(question, sizeof question, "  Type yes to run it, or n to skip: ");
	for (int tries = 0; tries < 5; tries++) {
		enum prompt_result r = term_prompt(question, line, sizeof line);
		if (r == PROMPT_INTERRUPTED) {
			sched_clear_interrupt();
			*how = "interrupted";
			return GATE_DECLINED;
		}
		if (r != PROMPT_LINE) {
			*how = "end of input";
			return GATE_DECLINED;
		}
		bool typed_back = p->irreversible && back && *back;
		if (typed_back ? strcmp(line, back) == 0 : strcmp(line, "yes") == 0) {
			*how = typed_back ? "typed the target" : "typed yes";
			return GATE_RUN;
		}
		if (!line[0] || strcmp(line, "n") == 0 || strcmp(line, "no") == 0) {
			*how = "typed no";
			return GATE_DECLINED;
		}
		snprintf(question, sizeof question, typed_back
		         ? "  That is not the target. Type %s exactly to confirm, or n to skip: "
		         : "  Type yes in full to confirm%s, or n to skip: ", typed_back ? back : "");
	}
	*how = "no valid answer";
	return GATE_DECLINED;
}

static enum gate_answer ask_operator(const struct gate_plan *p, const char **how)
{
	char *copy;
	enum gate_answer a = ask_until_answered(p, one_line(p->target, &copy), how);
	free(copy);
	return a;
}

static enum gate_repl (*open_repl)(void);

void gate_set_repl(enum gate_repl (*open)(void)) { open_repl = open; }

/* After a no: skip this step, ask again, look around in the REPL, or abort the run. Returns
 * GATE_RUN only via re-ask. */
static enum gate_answer after_decline(void)
{
	char line[64];
	for (;;) {
		enum prompt_result r = term_prompt(open_repl
			? "  Declined. s: skip this step · a: ask again · r: repl · q: abort the run [s]: "
			: "  Declined. s: skip this step · a: ask again · q: abort the run [s]: ", line, sizeof line);
		if (r == PROMPT_INTERRUPTED)
			sched_clear_interrupt();
		if (r != PROMPT_LINE || !line[0] || strcmp(line, "s") == 0)
			return GATE_DECLINED;
		if (strcmp(line, "a") == 0)
			return GATE_RUN; /* caller asks again */
		if (strcmp(line, "q") == 0)
			return GATE_ABORT;
		if (open_repl && strcmp(line, "r") == 0) {
			switch (open_repl()) {
			case GATE_REPL_BACK: continue;
			case GATE_REPL_RETRY: return GATE_RUN;
			case GATE_REPL_SKIP: return GATE_DECLINED;
			case GATE_REPL_QUIT: return GATE_ABORT;
			}
		}
	}
}

enum gate_answer gate_ask(const struct gate_plan *p)
{
	if (!transcript_ok())
		return refuse_unrecorded();
	audit_plan(p);
	show_plan(p);
	const char *withheld = replay_check(p);   /* a resumed session never repeats an action */
	if (withheld) {
		out_printf("  not repeated: %s\n", withheld);
		return audit_confirm("not repeated", withheld) == 0 ? GATE_DRY_RUN : refuse_unrecorded();
	}
	if (dry_run) {
		out_printf("  dry run: not executed\n");
		return audit_confirm("dry-run", "--dry-run") == 0 ? GATE_DRY_RUN : refuse_unrecorded();
	}
	if (p->irreversible && yes_target && p->target && strcmp(p->target, yes_target) == 0) {
		out_printf("  confirmed by --yes-irreversible %s\n", p->target);
		return audit_confirm("yes", "--yes-irreversible") == 0 ? GATE_RUN : refuse_unrecorded();
	}
	/* --yes is for unattended runs of reversible remediations: destroying data needs the target
	 * typed back, or named on the command line. */
	if (assume_yes && !p->irreversible) {
		out_printf("  confirmed by --yes\n");
		return audit_confirm("yes", "--yes") == 0 ? GATE_RUN : refuse_unrecorded();
	}
	if (assume_yes && !term_interactive()) {
		out_printf("  not run: --yes does not confirm an irreversible action (type the target on a terminal, "
		           "or pass --yes-irreversible %s)\n", p->target && *p->target ? p->target : "TARGET");
		declined++;
		audit_confirm("declined", "--yes does not confirm an irreversible action");
		return GATE_DECLINED;
	}
	if (!term_interactive()) {
		out_printf("  not run: no terminal to confirm on (run from a terminal, or pass --yes)\n");
		declined++;
		audit_confirm("declined", "no terminal");
		return GATE_DECLINED;
	}
	for (;;) {
		const char *how = "";
		leftovers_freeze();   /* no running command types the answer (parallel(), TIOCSTI as root) */
		enum gate_answer a = ask_operator(p, &how);
		leftovers_thaw();
		if (a == GATE_RUN)
			return audit_confirm("yes", how) == 0 ? GATE_RUN : refuse_unrecorded();
		audit_confirm("declined", how);
		if (strcmp(how, "interrupted") == 0) {
			declined++;
			return GATE_DECLINED;
		}
		enum gate_answer next = after_decline();
		if (next == GATE_RUN)
			continue;
		declined++;
		if (next == GATE_ABORT)
			transcript_audit("note", "{\"text\":\"operator aborted the run at an action\"}");
		return next;
	}
}

void gate_action_start(const char *primitive, const char *target)
{
	gate_action_start_on(primitive, target, NULL, NULL);
}

void gate_action_start_on(const char *primitive, const char *target, const char *on, const char *host)
{
	struct jbuf b = { 0 };
	jb_open_call(&b, primitive, target, on, host);
	jb_close(&b);
	transcript_audit("action_start", b.p);
	jb_free(&b);
}

/* The target again, as action_start has it: actions of parallel() tasks can end in any order. */
void gate_action_result(const char *primitive, const char *target, const char *outcome, double duration_ms,
                        const char *summary)
{
	gate_action_result_on(primitive, target, NULL, NULL, outcome, duration_ms, summary);
}

void gate_action_result_on(const char *primitive, const char *target, const char *on, const char *host,
                           const char *outcome, double duration_ms, const char *summary)
{
	struct jbuf b = { 0 };
	char num[32];
	jb_open_call(&b, primitive, target, on, host);
	jb_kstr(&b, "outcome", outcome);
	snprintf(num, sizeof num, "%.3f", duration_ms);
	jb_key(&b, "duration_ms");
	jb_rawz(&b, num);
	jb_kstr_redacted(&b, "summary", summary);
	jb_close(&b);
	transcript_audit("action_result", b.p);
	jb_free(&b);
	transcript_sync();
}
