-- triage: the first five minutes. Every dependency checked at once, a severity suggested from
-- what is down (the playbooks' scale: SEV1 complete outage .. SEV4 cosmetic, P0..P3), and the
-- runbook to run next.
local http  = require "http"
local pg    = require "pg"
local redis = require "redis"
local sys   = require "sys"
local recipe = require "recipe"

-- Lines in the service's log that name the component at fault.
local LOG_CAUSES = {
  { pattern = "too many clients|Connection to database failed|could not connect to server", code = "triage.log_database",
    text = "the service cannot use its database" },
  { pattern = "OOM command not allowed|Redis connection|Error 111 connecting", code = "triage.log_cache",
    text = "the service cannot use its cache" },
  { pattern = "No space left on device", code = "triage.log_disk", text = "writes fail: no space left on device" },
  { pattern = "MemoryError|[Oo]ut of memory|Cannot allocate memory", code = "triage.log_memory", text = "the service runs out of memory" },
}

return runbook {
  name     = "triage",
  summary  = "Quick diagnostic: everything at once, a severity, the next runbook",
  severity = "SEV2",
  description = "Run it first when an alert fires and it is not yet clear what is broken.",

  inputs = {
    url      = input.url { env = "HEALTH_URL", required = false, help = "the service's health endpoint" },
    database = input.url { env = "DATABASE_URL", required = false, help = "the database" },
    cache    = input.url { env = "REDIS_URL", required = false, help = "the Redis" },
    path     = input.path { default = "/", help = "a filesystem the service writes to" },
    timeout  = input.duration { default = "3s", help = "deadline of each probe" },
    on       = input.target { default = "local", env = "APP_ON", help = "where the service runs (its disk, memory, load, log)" },
    log_unit = input.string { required = false, help = "the service's journald unit, to read its log" },
    log_file = input.path { required = false, help = "the service's log file" },
    log_service = input.string { required = false, help = "the service's Compose service, to read its log" },
    since    = input.duration { default = "30m", help = "how far back to read the log" },
  },

  step "everything" {
    title   = "Check everything at once",
    explain = "Each check has its own deadline; together they take about as long as the slowest one.",
    run = function(ctx)
      local t, on = ctx.timeout, ctx.on ~= "local" and ctx.on or nil
      local checks = {
        disk = function() return sys.fs(ctx.path, { on = on }) end,
        memory = function() return sys.memory { on = on } end,
        load = function() return sys.load { on = on } end,
      }
      if ctx.url then checks.service = function() return http.get(ctx.url, { timeout = t, expect = "2xx" }) end end
      if ctx.database then checks.database = function() return pg.ping(ctx.database, { timeout = t }) end end
      if ctx.cache then checks.cache = function() return redis.ping(ctx.cache, { timeout = t }) end end
      local r = parallel(checks)
      local down = {}
      local function judge(name, failed, text, ...)
        if failed then down[name] = true ctx:finding { code = "triage." .. name, text, ... } else ctx:ok(text, ...) end
      end
      if r.service then
        local v = r.service.value
        judge("service", not (v and v.ok), "service: %s", v and (v.status .. " in " .. fmt.ms(v.timings.total_ms)) or r.service.err)
      end
      if r.database then judge("database", r.database.err, "database: %s", r.database.err or "answers") end
      if r.cache then judge("cache", r.cache.err, "cache: %s", r.cache.err or "answers") end
      local fs, mem, load = r.disk.value, r.memory.value, r.load.value
      if fs then judge("disk", fs.used_pct >= 90, "disk %s: %s used", fs.mount, fmt.pct(fs.used_pct)) end
      if mem then judge("memory", mem.used_pct >= 90, "memory: %s used", fmt.pct(mem.used_pct)) end
      if load then judge("load", load.per_cpu1 >= 2, "load: %.2f per cpu", load.per_cpu1) end
      ctx.state.down = down
    end,
  },

  step "logs" {
    title   = "What does the service's log say?",
    explain = "The most frequent lines of the service's log, and those that name a component: the database, the cache, " ..
              "the disk, memory.",
    run = function(ctx)
      local _, found = recipe.logs(ctx, { on = ctx.on, unit = ctx.log_unit, file = ctx.log_file, service = ctx.log_service,
                                          since = ctx.since, timeout = ctx.timeout, what = "the service's log", causes = LOG_CAUSES })
      -- A component the log names counts as down for the severity, as if its check had failed.
      ctx.state.down = ctx.state.down or {}
      for _, code in ipairs(found or {}) do ctx.state.down[code:match("^triage%.log_(%w+)$")] = true end
    end,
  },

  step "severity" {
    title   = "How bad is it, and what next?",
    explain = "SEV1: complete outage (respond within 15 minutes). SEV2: major degradation (30 minutes). " ..
              "SEV3: partial degradation (2 hours). SEV4: cosmetic (24 hours).",
    run = function(ctx)
      local d = ctx.state.down or {}
      local sev, next_rb
      -- A failing service with a failing dependency is that dependency's incident.
      if d.database then sev, next_rb = "SEV1 (P0)", "database-unavailable"
      elseif d.service and d.cache then sev, next_rb = "SEV1 (P0)", "redis-failure"
      elseif d.service then sev, next_rb = "SEV1 (P0)", "api-down"
      elseif d.cache then sev, next_rb = "SEV2 (P1)", "redis-failure"
      elseif d.disk then sev, next_rb = "SEV2 (P1)", "disk-full"
      elseif d.memory then sev, next_rb = "SEV2 (P1)", "memory-pressure"
      elseif d.load then sev, next_rb = "SEV3 (P2)", "high-latency"
      end
      if not sev then return ctx:resolved("nothing down that triage can see: SEV4 at most") end
      ctx:finding { code = "triage.severity", "suggested severity: %s", sev }
      return ctx:escalate("run next: runbook exec " .. next_rb)
    end,
  },
}
