-- high-error-rate.drill.lua - how `runbook drill high-error-rate` rehearses this runbook against the
-- lab's HTTP service (doc/drills.md).
return {
  modes = { cache = { what = "redis-server stopped: every request to /health fails with 503",
                      breaks = function(lab) lab.control("stop", "redis") end,
                      diagnosis = true,   -- the runbook measures and escalates; the drill repairs
                      expect = { findings = { "http.errors" } } } },
  inputs = function(lab) return { url = lab.state.api.url .. "/health", requests = 20, timeout = "2s" } end,
  healthy = function(lab) return lab.service_healthy() end,
  repair = function(lab) lab.control("restart", "redis") end,
}
