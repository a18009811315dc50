-- redis-failure.drill.lua - how `runbook drill redis-failure` rehearses this runbook against the lab's
-- Redis (doc/drills.md). Each mode: what it breaks, breaks(lab), and what the runbook must show
-- (finding codes; steps where an action must, or must never, reach the gate).
return {
  modes = {
    down = { what = "redis-server stopped: connections are refused",
             breaks = function(lab) lab.control("stop", "redis") end,
             expect = { findings = { "redis.down" }, offers = { "restart" }, never = { "flush", "maxmemory" } } },
    hung = { what = "redis-server frozen with SIGSTOP: it accepts but never answers",
             breaks = function(lab) lab.kill(lab.state.redis.pid, "STOP") end,
             expect = { findings = { "redis.hung" }, offers = { "restart" }, never = { "flush", "maxmemory" } } },
    slow = { what = "three 30 ms scripts have blocked the server (the slow log records them)",
             breaks = function(lab)
               lab.redis_cli("SLOWLOG", "RESET")
               for _ = 1, 3 do
                 lab.redis_cli("EVAL", "local t0 = redis.call('TIME') repeat local t = redis.call('TIME') " ..
                               "until (t[1] - t0[1]) * 1000000 + (t[2] - t0[2]) > 30000", "0")
               end
             end,
             diagnosis = true,   -- slow commands are the application's to fix: the drill repairs
             expect = { findings = { "redis.slowlog" }, never = { "restart", "flush", "maxmemory" } } },
    -- FLUSHDB is irreversible: offered, but --yes does not confirm it (--yes-irreversible URL does).
    oom = { what = "maxmemory 2mb reached with allkeys-lru: keys are being evicted",
            breaks = function(lab)
              lab.redis_cli("CONFIG", "SET", "maxmemory-policy", "allkeys-lru")
              lab.redis_cli("CONFIG", "SET", "maxmemory", "2mb")
              lab.redis_cli("EVAL", "for i = 1, tonumber(ARGV[1]) do redis.call('SET', 'drill:' .. i, string.rep('x', 200)) end",
                            "0", "30000")
            end,
            expect = { findings = { "redis.memory_full" }, offers = { "flush", "maxmemory", "persist" }, never = { "restart" } } },
  },
  -- The runbook's inputs, aimed at the lab.
  inputs = function(lab)
    local s = lab.state
    return { url = s.redis.url, restart = lab.lab_cmd("restart", "redis"), health = s.api.url .. "/health",
             timeout = "1s", maxmemory = "64mb", sample = "1s" }
  end,
  healthy = function(lab)
    local info = lab.redis_cli("INFO", "memory").stdout
    local used, max = tonumber(info:match("used_memory:(%d+)")), tonumber(info:match("\nmaxmemory:(%d+)"))
    if used and max and max > 0 and used >= max * 0.95 then return false, "memory is still at maxmemory" end
    return lab.service_healthy()
  end,
  repair = function(lab) lab.control("restart", "redis") end,   -- a stopped (SIGSTOP) one is continued first
}
