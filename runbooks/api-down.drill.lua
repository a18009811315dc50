-- api-down.drill.lua - how `runbook drill api-down` rehearses this runbook against the lab's HTTP
-- service (doc/drills.md). The lab is the platform: its own restart counter stands for systemd's NRestarts.
return {
  modes = {
    down = { what = "the lab's HTTP service stopped", breaks = function(lab) lab.control("stop", "api") end,
             expect = { findings = { "api.down" }, offers = { "restart" } } },
    dependency = { what = "redis-server stopped: the service reports a dependency down",
                   breaks = function(lab) lab.control("stop", "redis") end,
                   diagnosis = true,   -- a dependency outage is not the service's to fix: api-down escalates
                   expect = { findings = { "api.failing", "api.dependency_down" }, never = { "restart" } } },
  },
  inputs = function(lab)
    local s = lab.state
    return { url = s.api.url .. "/health", database = s.pg.app_url, cache = s.redis.url,
             restart = lab.lab_cmd("restart", "api"), process = "lab serve --port " .. s.api.port, timeout = "1s",
             restarts = lab.lab_cmd("restarts", "api"), window = "1s" }
  end,
  healthy = function(lab) return lab.service_healthy() end,
  repair = function(lab) lab.control("restart", "redis") lab.control("restart", "api") end,
}
