-- database-unavailable.drill.lua - how `runbook drill database-unavailable` rehearses this runbook
-- against the lab's PostgreSQL (doc/drills.md).
local pg = require "pg"

-- Idle sessions of the application's role, held open by the drill while the runbook runs.
local held = {}
local function fill_connections(lab)
  for _ = 1, 60 do
    local conn = pg.connect(lab.state.pg.app_url, { timeout = 2 })
    if not conn then break end
    held[#held + 1] = conn
  end
  lab.sleep(1.2)   -- older than the drill's idle_age (1s): what the runbook may terminate
end

return {
  modes = {
    down = { what = "postgres stopped: connections are refused", breaks = function(lab) lab.control("stop", "pg") end,
             expect = { findings = { "pg.down" }, offers = { "restart" }, never = { "idle" } } },
    hung = { what = "the postmaster frozen with SIGSTOP: connects hang",
             breaks = function(lab) lab.kill(lab.state.pg.pid, "STOP") end,
             expect = { findings = { "pg.hung" }, offers = { "restart" }, never = { "idle" } } },
    full = { what = "every connection slot taken by idle sessions of the application's role", breaks = fill_connections,
             expect = { findings = { "pg.connections_full" }, offers = { "idle" }, never = { "restart" } } },
  },
  -- As a team runs it: the application's role (DATABASE_URL), and a superuser for the remediation.
  inputs = function(lab)
    local s = lab.state
    return { url = s.pg.app_url, admin_url = s.pg.url, restart = lab.lab_cmd("restart", "pg"),
             health = s.api.url .. "/health", idle_age = "1s", timeout = "1s" }
  end,
  -- The application's view: its role can connect (not only the operator's reserved slots).
  healthy = function(lab)
    local r, err = pg.ping(lab.state.pg.app_url, { timeout = 2 })
    if not r then return false, err end
    return lab.service_healthy()
  end,
  repair = function(lab)
    for i = #held, 1, -1 do pcall(held[i].close, held[i]); held[i] = nil end
    lab.control("restart", "pg")
  end,
}
