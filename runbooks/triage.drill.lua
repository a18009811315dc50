-- triage.drill.lua - how `runbook drill triage` rehearses this runbook against the lab (doc/drills.md).
return {
  modes = { cache = { what = "redis-server stopped", breaks = function(lab) lab.control("stop", "redis") end,
                      diagnosis = true,   -- triage names the fault; the drill repairs it
                      expect = { findings = { "triage.cache", "triage.severity" } } } },
  inputs = function(lab)
    local s = lab.state
    return { url = s.api.url .. "/health", database = s.pg.url, cache = s.redis.url, timeout = "1s" }
  end,
  healthy = function(lab) return lab.service_healthy() end,
  repair = function(lab) lab.control("restart", "redis") end,
}
