-- queue-backlog.drill.lua - how `runbook drill queue-backlog` rehearses this runbook against the lab's
-- Redis: jobs nobody consumes; the "workers" the runbook may restart are the drill's stand-in, a
-- command that takes every job off the queue.
return {
  modes = { stuck = { what = "50 jobs queued (RPUSH) and no worker consuming them", breaks = function(lab)
    lab.redis_cli("DEL", "drill:jobs")
    local argv = { "drill:jobs" }
    for i = 1, 50 do argv[#argv + 1] = string.format('{"id":%d,"enqueued_at":%d}', i, os.time() - 60 + i) end
    lab.redis_cli("RPUSH", table.unpack(argv))
  end, expect = { findings = { "queue.depth", "queue.stuck" }, offers = { "restart" } } } },
  inputs = function(lab)
    return { url = lab.state.redis.url, queue = "drill:jobs", watch = "1s", producer = "rpush",
             restart = string.format("redis-cli -p %d DEL drill:jobs", lab.state.redis.port) }
  end,
  healthy = function(lab)
    local n = tonumber((lab.redis_cli("LLEN", "drill:jobs").stdout:match("%d+")))
    if n and n > 0 then return false, n .. " jobs still queued" end
    return true
  end,
  repair = function(lab) lab.redis_cli("DEL", "drill:jobs") end,
}
