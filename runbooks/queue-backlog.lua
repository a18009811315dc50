-- queue-backlog: jobs pile up in a Redis list (alert: queue depth above 10 for 10 minutes; uploads
-- or emails not processed). Measures the depth and whether it drains, checks that consumers
-- run, and looks at the oldest job; restarting the workers is the confirmed remediation.
-- The oldest job is at the end the producer did not push to (LPUSH producers: the tail, RPUSH:
-- the head), and its age is read from its own timestamp when the payload carries one. Reads the
-- workers' log first, as the playbooks do (the job that fails again and again, a broker refused).
local recipe = require "recipe"
local redis  = require "redis"
local sys    = require "sys"

local LOG_CAUSES = {
  { pattern = "Traceback|Exception|ERROR|failed", code = "queue.worker_errors", text = "the workers fail on jobs" },
  { pattern = "Connection refused|ConnectionError|Error 111|timed out", code = "queue.broker_unreachable",
    text = "the workers cannot reach the broker" },
  { pattern = "[Oo]ut of memory|MemoryError|Killed|SIGKILL", code = "queue.worker_killed", text = "the workers are killed (memory)" },
}

-- When the job says when it was enqueued (Celery's, RQ's, Sidekiq's payloads do, under one of these
-- names): epoch seconds or milliseconds. nil when it does not.
local STAMPS = { "enqueued_at", "created_at", "timestamp", "queued_at" }
local function enqueued_at(payload)
  for _, key in ipairs(STAMPS) do
    local v = tonumber(payload:match('"' .. key .. '"%s*:%s*"?(%d+%.?%d*)'))
    if v then return v > 1e11 and v / 1000 or v end
  end
end

return runbook {
  name     = "queue-backlog",
  summary  = "A job queue in Redis grows: are the workers alive?",
  severity = "SEV3",
  description = "Symptoms: a backlog alert, jobs (uploads, emails, transcodes) not processed.",

  inputs = {
    drain_wait = input.duration { default = "60s", help = "how long to wait for the queue to drain after the restart" },
    url     = input.url { env = "REDIS_URL", default = "redis://127.0.0.1:6379/0", help = "the Redis holding the queue" },
    queue   = input.string { default = "jobs", help = "the list key of the queue" },
    warn    = input.int { default = 10, min = 0, help = "queue length that is a warning" },
    crit    = input.int { default = 100, min = 0, help = "queue length that is critical" },
    worker  = input.string { required = false, help = "a word of the workers' command line, to find them" },
    on      = input.target { default = "local", env = "WORKER_ON", help = "where the workers run (their processes, log and restart)" },
    service = input.string { default = "worker", help = "the workers' systemd unit (Compose and Kubernetes targets name their own)" },
    restart = input.argv { required = false, help = "how to restart the workers, when not through their service manager" },
    log_unit = input.string { required = false, help = "the workers' journald unit, to read their log" },
    log_file = input.path { required = false, help = "the workers' log file" },
    log_service = input.string { required = false, help = "the workers' Compose service, to read their log" },
    since   = input.duration { default = "30m", help = "how far back to read the log" },
    timeout = input.duration { default = "10s", help = "deadline of the log read" },
    watch   = input.duration { default = "5s", help = "how long to watch whether it drains" },
    producer = input.string { default = "lpush", help = "how jobs are pushed: lpush (Sidekiq, Celery) or rpush " ..
                                                       "(RQ, Resque): the oldest job is at the other end" },
    age_warn = input.duration { default = "5m", help = "age of the oldest job that is a warning" },
    age_crit = input.duration { default = "30m", help = "age of the oldest job that is critical" },
  },

  step "depth" {
    title   = "How deep is the queue, and does it drain?",
    explain = "Two readings a few seconds apart: a long queue that shrinks is busy, one that grows is stuck.",
    run = function(ctx)
      if ctx.producer ~= "lpush" and ctx.producer ~= "rpush" then
        error("producer= must be lpush or rpush, got " .. tostring(ctx.producer), 0)
      end
      local conn = must(redis.connect(ctx.url))
      local first = must(conn:llen(ctx.queue))
      ctx.state.depth = first
      ctx.state.status = ctx:check("jobs queued in " .. ctx.queue, first,
                                   { warn = "~:" .. ctx.warn, crit = "~:" .. ctx.crit, code = "queue.depth" })
      if first == 0 then conn:close() return end
      local ok = ctx:wait_until("the queue shrinks", function()
        local now = conn:llen(ctx.queue)
        return now and now < first
      end, { timeout = ctx.watch, every = 0.5 })
      ctx.state.draining = ok ~= nil
      if not ok then
        ctx:finding { code = "queue.stuck", "no job left the queue in %s: nothing consumes it", fmt.duration(ctx.watch) }
      end
      local oldest = conn:call("LINDEX", ctx.queue, ctx.producer == "rpush" and 0 or -1)
      conn:close()
      if not oldest then return end
      ctx:note("oldest job: %s", tostring(oldest):sub(1, 120))
      local at = enqueued_at(tostring(oldest))
      if at then
        ctx:check("age of the oldest job", os.time() - at, { warn = "~:" .. ctx.age_warn, crit = "~:" .. ctx.age_crit,
                                                             format = fmt.duration, code = "queue.age" })
      end
    end,
  },

  step "logs" {
    title   = "What do the workers' logs say?",
    explain = "The same traceback again and again is a poison job; connection errors are the broker; a killed " ..
              "worker is memory.",
    run = function(ctx)
      recipe.logs(ctx, { on = ctx.on, unit = ctx.log_unit, file = ctx.log_file, service = ctx.log_service,
                         since = ctx.since, timeout = ctx.timeout, what = "the workers' log", causes = LOG_CAUSES })
    end,
  },

  step "workers" {
    title = "Are the workers running?",
    run = function(ctx)
      if not ctx.worker then return ctx:note("worker= not given: not looked for") end
      local procs = must(sys.processes { match = ctx.worker, sort = "cpu", sample = "300ms", on = ctx.on ~= "local" and ctx.on or nil })
      if #procs == 0 then
        ctx.state.no_workers = true
        return ctx:finding { code = "queue.no_workers", "no process matches '%s': the workers are gone", ctx.worker }
      end
      ctx:show(fmt.table(procs, { { "pid", right = true }, { "cpu_pct", title = "cpu", format = fmt.pct, right = true },
                                  { "age", title = "up", format = fmt.duration, right = true }, { "cmdline", title = "command" } }))
      if not ctx.state.draining then
        ctx:finding { code = "queue.workers_stuck", "%d workers run but the queue does not drain: they may be stuck on a job", #procs }
      end
    end,
  },

  step "restart" {
    title   = "Restart the workers",
    explain = "Stuck or dead workers come back and pick the queue up again; a job they were on is retried " ..
              "if the queue acknowledges jobs, lost otherwise.",
    run = function(ctx)
      if ctx.state.draining or (ctx.state.depth or 0) <= ctx.warn then return ctx:ok("the queue is fine: no restart") end
      local conn = must(redis.connect(ctx.url))
      must(recipe.restart(ctx, { argv = ctx.restart, on = ctx.on, name = ctx.service, target = "the workers of " .. ctx.queue,
                                 leave_running = true,   -- a restart may start the daemon itself (not through systemd)
                                 summary = string.format("restart the workers (%d jobs waiting in %s)", ctx.state.depth, ctx.queue),
                                 ready = function() local now = conn:llen(ctx.queue) return now and now < ctx.state.depth end,
                                 ready_what = "the queue drains", wait = ctx.drain_wait, every = 1 }))
      conn:close()
    end,
  },

  step "verify" {
    title = "Is it under control?",
    run = function(ctx)
      local conn = must(redis.connect(ctx.url))
      local n = must(conn:llen(ctx.queue))
      conn:close()
      if ctx:check("jobs queued", n, { warn = "~:" .. ctx.warn, crit = "~:" .. ctx.crit }) == "CRITICAL" then
        return ctx:escalate("the queue is still critical: scale the workers or find the poison job")
      end
      return ctx:resolved(string.format("%d jobs queued", n))
    end,
  },
}
