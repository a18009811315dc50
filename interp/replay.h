/*
 * replay.h - what an earlier session of the same runbook already did, so that a resumed session
 * (`runbook exec --resume TRANSCRIPT`) never repeats an action.
 *
 * A resumed session walks the runbook again: its probes run again, to re-check the state, but the
 * gate asks replay_check() before anything else, and withholds an action (shows it, records it as
 * "not repeated", returns as under --dry-run) when
 *   - its step was completed in the earlier session: the whole step is a re-check; or
 *   - the earlier session confirmed an action of this step with the same plan (primitive, summary,
 *     detail and target, redacted): the fingerprint; or
 *   - the earlier session confirmed the action asked in the same position of the step (the Nth
 *     question of an attempt), because a plan's text may embed what a probe just measured.
 * Withholding too much only costs the operator a manual step; repeating a restart costs more.
 *
 * Lua API (require "replay"; the library's own code only):
 *   replay.completed(step, why)                   the step ended ok in the earlier session
 *   replay.confirmed(step, n, fingerprint, why)   its n-th question (n >= 1) was confirmed there
 *   replay.host_done(step, fingerprint, host, why) a fleet action ran on host there (fingerprint:
 *                                                 replay.fingerprint("sh.action", command, "", target))
 *   replay.host_ran(fingerprint, host) -> why|nil whether it did, in the current step
 *   replay.fingerprint(primitive, summary, detail, target) -> hex, computed as replay_check does
 *
 * A fleet's question (gate_plan.fleet) is asked again on resume, for the hosts it did not run on:
 * stdlib/reach.lua leaves out those replay_host_ran names.
 *   replay.clear()                                forget everything (also when the state closes)
 */
#ifndef REPLAY_H
#define REPLAY_H

#include "gate.h"

#include <lua.h>

/* An attempt of the step begins (ordinals restart), or NULL between steps. */
void replay_enter_step(const char *step);
/* The reason to withhold the plan, or NULL to ask as usual. Counts the question either way. */
const char *replay_check(const struct gate_plan *p);
/* Why a fleet action of the current step must not run again on host (it ran there), or NULL. */
const char *replay_host_ran(const char *fp, const char *host);

int luaopen_replay(lua_State *L);

#endif
