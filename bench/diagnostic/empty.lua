-- empty: a runbook that checks nothing. `runbook exec empty.lua --auto` is what a session costs
-- by itself (interpreter, runbook, lock, transcript and its fdatasync), the floor under diag.lua.
return runbook {
  name = "empty", summary = "No checks (benchmark floor)", severity = "SEV4",
  step "nothing" {
    title = "Nothing",
    run = function(ctx) ctx:ok("nothing checked") end,
  },
}
