/*
 * pg_probe.h - what the ready-made probes (pg_probes.c) and the backend actions (pg_actions.c)
 * share: a probe as data, the functions that start one and write its record, and the formatting
 * of durations. Private to the pg module: nothing here is exported.
 */
#ifndef PG_PROBE_H
#define PG_PROBE_H

#include "pg.h"
#include "luax.h"

#include <lauxlib.h>
#include <stddef.h>

#pragma GCC visibility push(hidden)

extern const char *const timeout_only[];

/* A ready-made probe as data: what it is called, the options it takes, the statements it runs (in one
 * READ ONLY pipeline) and the callback that shapes their results. Each descriptor stands right after
 * its SQL and callback below, so that a probe reads in one place; a method only reads its own
 * options, then starts its probe with probe_run (or probe_start when its callback needs more). */
struct probe {
	const char *fn;                  /* "pg.locks": messages and audit records */
	const char *const *options;      /* the options it accepts, "timeout" among them */
	const char *sql[PG_MAX_STMTS];   /* in pipeline order, NULL after the last */
	int nparams;                     /* $1..$n of the first statement (a probe with parameters has one) */
	pg_done_fn done;
};

/* Checks the handle and the probe's options (at opts_idx), then pushes its op with the statements
 * queued; NULL after pushing nil, err, "closed" for a broken handle (the caller returns 3). */
struct pg_op *probe_start(lua_State *L, const struct probe *p, int opts_idx, const char *const *params);
/* A probe method whose callback needs nothing from the call but the results. */
int probe_run(lua_State *L, const struct probe *p, int opts_idx, const char *const *params);
/* Writes op's transcript record with a printf-style summary (pg_audit, or pg_action_result). */
void summarize(void (*record)(struct pg_op *, const char *), struct pg_op *op, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void fmt_ms(char *out, size_t n, double ms);
/* A duration option in ms, as a decimal string for a bigint parameter. */
void duration_param(lua_State *L, int idx, const char *key, msec_t def, const char *fn, char *out, size_t n);

/* Adds conn:terminate_idle, conn:cancel and conn:terminate to the methods table on the stack. */
void pg_actions_register(lua_State *L);

#pragma GCC visibility pop

#endif
