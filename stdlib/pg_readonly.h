/*
 * pg_readonly.h - what conn:query may send (pg_readonly.c): its SQL is checked by PostgreSQL's own
 * parser and the catalogue before it leaves. Internal to the pg module.
 */
#ifndef PG_READONLY_H
#define PG_READONLY_H

#include "pg.h"

#pragma GCC visibility push(hidden)   /* shared by the parts of pg only: not visible to other objects */

/* conn:query, with the handle at index 1, the SQL at 2 and its parameters at 3, its op pushed with
 * that statement: refuses the op (op->kind set: "refused", "42601", "42883") when the SQL is not a
 * read; else queues the catalogue look-up the check still needs, or the statement itself. */
void pg_readonly_start(lua_State *L, struct pg_op *op);

/* First thing in conn:query's done callback: after a look-up, finishes the check and queues the next
 * look-up or the statement (returns PG_AGAIN), or refuses the op (returns 0); 0 when the op is past
 * the check, its results (or failure) being conn:query's to report. */
int pg_readonly_stage(lua_State *L, struct pg_op *op);

/* conn:exec may have created or changed functions and views: the handle at idx forgets what it
 * learned of them. */
void pg_readonly_forget(lua_State *L, int idx);

#pragma GCC visibility pop

#endif
