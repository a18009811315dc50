-- redis-failure: the cache is down, hung, full or slow ("Redis connection failed", RedisDown).
-- Tells the four apart with probes (refused, no answer, memory at maxmemory with evictions, slow
-- commands and latency), offers the remediation that fits (restart; flush a cache db, typed
-- back; raise maxmemory, then persist it with CONFIG REWRITE) as confirmed actions, then checks
-- the cache and the service again. Evictions are judged as a rate over a sample window: the
-- counter is cumulative, and any LRU cache has evicted keys since it started. Reads Redis's own log
-- first, as the playbooks do (OOM command not allowed, failed background saves, maxclients).
local recipe = require "recipe"
local redis  = require "redis"

-- What Redis writes when it refuses work, and what each line means.
local LOG_CAUSES = {
  { pattern = "OOM command not allowed", code = "redis.oom", text = "Redis refuses writes at maxmemory" },
  { pattern = "MISCONF|Background saving error|Can't save in background|Failed opening the RDB",
    code = "redis.persistence_failed", text = "Redis cannot persist (and refuses writes when stop-writes-on-bgsave-error)" },
  { pattern = "max number of clients reached", code = "redis.maxclients", text = "Redis refuses new connections at maxclients" },
}

local function reach(ctx)
  return redis.ping(ctx.url, { timeout = ctx.timeout })
end

return runbook {
  name     = "redis-failure",
  summary  = "Redis is down, hung, out of memory or slow",
  severity = "SEV2",
  description = "Symptoms: \"Redis connection failed\" in application logs, a RedisDown alert, cache " ..
                "timeouts, queues not draining.",

  inputs = {
    url       = input.url { env = "REDIS_URL", default = "redis://127.0.0.1:6379/0", help = "the Redis to examine" },
    on        = input.target { default = "local", env = "REDIS_ON", help = "where Redis runs (its log, its restart)" },
    service   = input.string { default = "redis-server", help = "Redis's systemd unit (Compose and Kubernetes targets name their own)" },
    restart   = input.argv { required = false, help = "how to restart it, when not through its service (e.g. a script)" },
    log_unit  = input.string { required = false, help = "Redis's journald unit, to read its log" },
    log_file  = input.path { required = false, help = "Redis's log file (e.g. /var/log/redis/redis-server.log)" },
    log_service = input.string { required = false, help = "Redis's Compose service, to read its log" },
    since     = input.duration { default = "30m", help = "how far back to read the log" },
    health    = input.url { env = "HEALTH_URL", required = false, help = "the service's health endpoint, checked at the end" },
    timeout   = input.duration { default = "2s", help = "deadline of each probe" },
    memory_warn = input.int { default = 80, min = 1, max = 100, help = "percent of maxmemory that is a warning" },
    memory_crit = input.int { default = 95, min = 1, max = 100, help = "percent of maxmemory that is critical" },
    maxmemory = input.string { required = false, help = "a new maxmemory (e.g. 256mb) to offer when memory is full" },
    sample    = input.duration { default = "5s", help = "how long to watch the eviction counter" },
    restart_wait = input.duration { default = "30s", help = "how long to wait for PING after a restart" },
  },

  step "logs" {
    title   = "What does Redis's log say?",
    explain = "OOM command not allowed: writes refused at maxmemory. MISCONF / background saving error: the " ..
              "disk or fork failed and writes are refused. max number of clients reached: a connection leak.",
    run = function(ctx)
      recipe.logs(ctx, { on = ctx.on, unit = ctx.log_unit, file = ctx.log_file, service = ctx.log_service,
                         since = ctx.since, timeout = ctx.timeout, what = "Redis's log", causes = LOG_CAUSES })
    end,
  },

  step "reach" {
    title   = "Does Redis answer?",
    explain = "Refused means nothing listens (crashed, stopped); no answer within the deadline means the " ..
              "process is there but stuck (stopped, swapping, or blocked by a slow command).",
    run = function(ctx)
      local pong, err, kind = reach(ctx)
      if pong then
        ctx.state.up = true
        return ctx:ok("PONG in %s (Redis %s, %s)", fmt.ms(pong.ms), pong.version or "?", pong.role or "?")
      end
      if kind == "auth" then return ctx:escalate(err .. ": the password the application uses is wrong or was rotated") end
      ctx.state.broken = kind
      if kind == "refused" then
        ctx:finding { code = "redis.down", "Redis is down: %s", err }
      elseif kind == "timeout" then
        ctx:finding { code = "redis.hung", "Redis is hung: it accepts connections but does not answer (%s)", err }
      else
        ctx:finding { code = "redis.unreachable", "Redis is unreachable: %s", err }
      end
      return ctx:jump("restart")
    end,
  },

  step "memory" {
    title   = "Is it out of memory?",
    explain = "At maxmemory Redis evicts keys (allkeys-* policies) or refuses writes (noeviction).",
    run = function(ctx)
      local conn = must(redis.connect(ctx.url, { timeout = ctx.timeout }))
      local mem = must(conn:memory())
      ctx.state.memory = mem
      if not mem.maxmemory or mem.maxmemory == 0 then
        ctx:note("no maxmemory set: %s used, bounded only by the machine", fmt.bytes(mem.used_memory))
      else
        local status = ctx:check("memory used of maxmemory", mem.used_pct,
          { warn = "~:" .. ctx.memory_warn, crit = "~:" .. ctx.memory_crit, format = fmt.pct, code = "redis.memory_full" })
        ctx.state.memory_full = status == "CRITICAL"
      end
      -- Two readings of the cumulative counter, sample apart: keys evicted now, not since start.
      local t0 = os.time()
      local later = must(ctx:wait_until("a sample of " .. fmt.duration(ctx.sample) .. " has passed", function()
        return os.time() - t0 >= ctx.sample and conn:memory()
      end, { timeout = ctx.sample + 2, every = math.min(0.25, ctx.sample) }))
      local evicted = (later.evicted_keys or 0) - (mem.evicted_keys or 0)
      if evicted > 0 then
        ctx:finding { code = "redis.evicting", "%s keys evicted in %s, %.1f per second (policy %s)",
                      fmt.count(evicted), fmt.duration(ctx.sample), evicted / ctx.sample, mem.maxmemory_policy or "?" }
      elseif (mem.evicted_keys or 0) > 0 then
        ctx:note("no key evicted in %s (%s since start: the counter is cumulative)", fmt.duration(ctx.sample),
                 fmt.count(mem.evicted_keys))
      end
      conn:close()
    end,
  },

  step "slow" {
    title   = "Is it slow?",
    explain = "Round trips should stay under a millisecond on a local network; the slow log names the " ..
              "commands that blocked everyone else.",
    run = function(ctx)
      local conn = must(redis.connect(ctx.url, { timeout = ctx.timeout }))
      local lat = must(conn:latency { samples = 20 })
      ctx:check("PING round trip p95", lat.p95, { warn = "~:1", crit = "~:10", format = fmt.ms, code = "redis.latency" })
      local slow = must(conn:slowlog { limit = 5 })
      if #slow > 0 then
        local rows, slowest = {}, 0
        for i, e in ipairs(slow) do
          rows[i] = { ms = e.duration_us / 1000, command = table.concat(e.command or {}, " "):sub(1, 60) }
          slowest = math.max(slowest, rows[i].ms)
        end
        ctx:finding { code = "redis.slowlog",
                      "%d slow commands in the slow log, the slowest %s: each blocked every other client meanwhile",
                      #slow, fmt.ms(slowest) }
        ctx:show(fmt.table(rows, { { "ms", title = "took", format = fmt.ms, right = true }, { "command" } }))
      end
      conn:close()
    end,
  },

  step "restart" {
    title   = "Restart Redis",
    explain = "Only when it is down or hung. A restart drops what was not persisted; for a cache that is " ..
              "the price of having it back.",
    run = function(ctx)
      if not ctx.state.broken then return ctx:ok("Redis answers: no restart needed") end
      must(recipe.restart(ctx, { argv = ctx.restart, on = ctx.on, name = ctx.service, target = ctx.url,
                                 leave_running = true,   -- a restart may start the daemon itself (not through systemd)
                                 summary = "restart Redis (" .. ctx.state.broken .. ")",
                                 ready = function() return reach(ctx) end, ready_what = "Redis answers PING",
                                 wait = ctx.restart_wait, every = 0.2 }))
      ctx.state.broken = nil
    end,
  },

  step "flush" {
    title   = "Flush the cache database",
    explain = "When memory is full and the data is a cache, FLUSHDB frees it at once. It cannot be undone: " ..
              "you will be asked to type the target back.",
    run = function(ctx)
      if not ctx.state.memory_full then return ctx:ok("memory is not full: nothing to flush") end
      local conn = must(redis.connect(ctx.url, { timeout = ctx.timeout }))
      -- runbook: allow action-without-summary (FLUSHDB is shown with its key count, and the target typed back)
      must(conn:action("FLUSHDB"))
      ctx:ok("flushed %s", ctx.url)
      conn:close()
    end,
  },

  step "maxmemory" {
    title = "Raise maxmemory",
    run = function(ctx)
      if not ctx.state.memory_full then return ctx:ok("memory is not full") end
      if not ctx.maxmemory then return ctx:note("set maxmemory=SIZE to be offered a new limit") end
      local conn = must(redis.connect(ctx.url, { timeout = ctx.timeout }))
      -- runbook: allow action-without-summary (the command says it all: CONFIG SET maxmemory SIZE)
      local r = must(conn:action("CONFIG", "SET", "maxmemory", ctx.maxmemory))
      ctx.state.raised = not r.dry_run or nil
      conn:close()
    end,
  },

  step "persist" {
    title   = "Persist the new maxmemory",
    explain = "CONFIG SET lasts until the next restart; CONFIG REWRITE writes the running settings into " ..
              "Redis's config file, so that a restart does not bring the old limit back.",
    run = function(ctx)
      if not ctx.state.raised then return ctx:ok("nothing was changed: nothing to persist") end
      local conn = must(redis.connect(ctx.url, { timeout = ctx.timeout }))
      local info = must(conn:info("server"))
      local file = info.server and info.server.config_file
      if not file or file == "" then
        conn:close()
        return ctx:note("Redis runs without a config file: set maxmemory %s where it is started, or it is lost " ..
                        "at the next restart", ctx.maxmemory)
      end
      must(conn:action("CONFIG", "REWRITE", { summary = "write the running settings into " .. file }))
      conn:close()
    end,
  },

  step "verify" {
    title = "Is the cache back, and the service with it?",
    run = function(ctx)
      return recipe.verify(ctx, { probe = function() return reach(ctx) end, failed = "Redis still does not answer",
                                  ok = function(pong) return "PONG in " .. fmt.ms(pong.ms) end,
                                  health = ctx.health, timeout = ctx.timeout, resolved = "Redis answers" })
    end,
  },
}
