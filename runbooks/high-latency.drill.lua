-- high-latency.drill.lua - how `runbook drill high-latency` rehearses this runbook against the lab's
-- HTTP service (doc/drills.md).
return {
  modes = { stalled = { what = "the lab's HTTP service frozen with SIGSTOP: requests wait for their deadline",
                        breaks = function(lab) lab.kill(lab.state.api.pid, "STOP") end,
                        diagnosis = true,   -- the runbook measures and escalates; the drill repairs
                        expect = { findings = { "http.no_success" } } } },
  inputs = function(lab) return { url = lab.state.api.url .. "/health", requests = 10, timeout = "1s" } end,
  healthy = function(lab) return lab.service_healthy() end,
  repair = function(lab) if lab.state.api.pid then lab.kill(lab.state.api.pid, "CONT") end end,
}
