-- bench/fleet.sh's runbook: `uptime` on every host of inventory:all, 50 at a time.
local sh = require "sh"
return runbook {
  name = "uptime", summary = "uptime on a fleet", severity = "SEV4",
  step "uptime" { title = "uptime everywhere", run = function(ctx)
    local f = must(sh.read { "uptime", on = "inventory:all", limit = 50, quiet = true, timeout = 30 })
    if #f.failed + #f.unreachable > 0 then
      error("not everywhere: failed " .. table.concat(f.failed, ",") .. "; unreachable " .. table.concat(f.unreachable, ","))
    end
    ctx:note("%d ok, %d failed, %d unreachable", #f.ok, #f.failed, #f.unreachable)
  end },
}
