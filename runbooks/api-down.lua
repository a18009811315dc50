-- api-down: the site is down (health endpoint 5xx or silent, users cannot use the app).
-- Walks the chain the outage playbooks walk: the health endpoint, then each dependency the
-- service needs (database, cache, an upstream API), then the service's own process; offers a
-- restart of the service as a confirmed action, then checks the endpoint again. A restart loop is
-- read from the platform's restart counter over a window (systemd's NRestarts, Kubernetes'
-- restartCount, Compose's RestartCount), never from a young process alone. Reads the service's
-- log as the playbooks do (crashes, refused dependencies, a port taken, out of memory).
local http   = require "http"
local pg     = require "pg"
local recipe = require "recipe"
local redis  = require "redis"
local sys    = require "sys"
local sh     = require "sh"

-- What a service that does not come up writes, and what each line means.
local LOG_CAUSES = {
  { pattern = "Traceback|panic:|Unhandled exception|uncaughtException|FATAL", code = "api.crash",
    text = "the service crashes" },
  { pattern = "Connection refused|ECONNREFUSED|could not connect to server|Connection to database failed",
    code = "api.dependency_refused", text = "a dependency refuses the service's connections" },
  { pattern = "[Aa]ddress already in use|EADDRINUSE", code = "api.port_in_use", text = "its port is taken by another process" },
  { pattern = "MemoryError|[Oo]ut of memory|OOMKilled|heap out of memory", code = "api.out_of_memory",
    text = "the service runs out of memory" },
}

local function remote(ctx) return ctx.on ~= "local" and ctx.on or nil end

local function health(ctx)
  return http.get(ctx.url, { timeout = ctx.timeout, expect = "2xx" })
end

return runbook {
  name     = "api-down",
  summary  = "The service's health endpoint fails: find which dependency, then restart",
  severity = "SEV1",
  description = "Symptoms: /health answers 5xx or nothing, users cannot reach the application, an " ..
                "uptime alert fires.",

  inputs = {
    url      = input.url { env = "HEALTH_URL", default = "http://127.0.0.1:8000/health", help = "the health endpoint" },
    database = input.url { env = "DATABASE_URL", required = false, help = "the database the service uses" },
    cache    = input.url { env = "REDIS_URL", required = false, help = "the Redis the service uses" },
    upstream = input.url { required = false, help = "an upstream HTTP dependency to check" },
    process  = input.string { required = false, help = "a word of the service's command line, to find its process" },
    on       = input.target { default = "local", env = "APP_ON", help = "where the service runs (its process, log and restart)" },
    service  = input.string { default = "app", help = "the service's systemd unit (Compose and Kubernetes targets name their own)" },
    restart  = input.argv { required = false, help = "how to restart the service, when not through its service manager" },
    log_unit = input.string { required = false, help = "the service's journald unit, to read its log" },
    log_file = input.path { required = false, help = "the service's log file" },
    log_service = input.string { required = false, help = "the service's Compose service, to read its log" },
    since    = input.duration { default = "30m", help = "how far back to read the log" },
    timeout  = input.duration { default = "3s", help = "deadline of each probe" },
    restarts = input.argv { required = false, help = "a command printing the service's restart counter: " ..
                            "systemctl show -p NRestarts --value app · kubectl get pod P -o " ..
                            "jsonpath={.status.containerStatuses[0].restartCount} · docker inspect -f {{.RestartCount}} app" },
    window   = input.duration { default = "1m", help = "how long to watch the restart counter" },
    loop     = input.int { default = 1, min = 1, help = "restarts within the window that make a loop" },
    restart_wait = input.duration { default = "60s", help = "how long to wait for the endpoint after a restart" },
  },

  step "health" {
    title   = "What does the health endpoint say?",
    explain = "A health endpoint that answers names what it misses; one that does not answer points at the " ..
              "process itself or what is in front of it.",
    run = function(ctx)
      local r, err, kind = health(ctx)
      if not r then
        ctx.state.silent = true
        return ctx:finding { code = "api.down", "%s does not answer (%s): %s", ctx.url, kind, err }
      end
      if r.ok then return ctx:ok("%s answers %d in %s", ctx.url, r.status, fmt.ms(r.timings.total_ms)) end
      ctx.state.failing = r.status
      ctx:finding { code = "api.failing", "%s answers %d", ctx.url, r.status }
      if r.json and type(r.json.dependencies) == "table" then
        for name, dep in pairs(r.json.dependencies) do
          if type(dep) == "table" and dep.ok == false then
            ctx:finding { code = "api.dependency_down", "the service reports %s down: %s", name, tostring(dep.error or "?") }
          end
        end
      end
    end,
  },

  step "logs" {
    title   = "What does the service's log say?",
    explain = "The most frequent lines of the last minutes: a crash and its traceback, a dependency that refuses, " ..
              "a port already taken, running out of memory.",
    run = function(ctx)
      recipe.logs(ctx, { on = ctx.on, unit = ctx.log_unit, file = ctx.log_file, service = ctx.log_service,
                         since = ctx.since, timeout = ctx.timeout, what = "the service's log", causes = LOG_CAUSES })
    end,
  },

  step "dependencies" {
    title   = "Do its dependencies answer?",
    explain = "All at once, each within its own deadline.",
    run = function(ctx)
      local checks = {}
      if ctx.database then checks.database = function() return pg.ping(ctx.database, { timeout = ctx.timeout }) end end
      if ctx.cache then checks.cache = function() return redis.ping(ctx.cache, { timeout = ctx.timeout }) end end
      if ctx.upstream then checks.upstream = function() return http.get(ctx.upstream, { timeout = ctx.timeout }) end end
      if next(checks) == nil then return ctx:note("no dependency given (database=, cache=, upstream=)") end
      local results = parallel(checks)
      for _, name in ipairs { "database", "cache", "upstream" } do
        local r = results[name]
        if r and r.err then
          ctx.state.dependency_down = name
          ctx:finding { code = "api.dependency_down", "%s: %s", name, r.err }
        elseif r then
          ctx:ok("%s answers", name)
        end
      end
      if ctx.state.dependency_down then
        ctx:note("fix %s first (its own runbook), then come back to the service", ctx.state.dependency_down)
      end
    end,
  },

  step "process" {
    title = "Is the service's process running?",
    run = function(ctx)
      if not ctx.process then return ctx:note("process= not given: not looked for") end
      local procs = must(sys.processes { match = ctx.process, sort = "cpu", sample = "200ms", on = remote(ctx) })
      if #procs == 0 then
        ctx.state.no_process = true
        return ctx:finding { code = "api.no_process", "no process matches '%s'", ctx.process }
      end
      ctx:show(fmt.table(procs, {
        { "pid", right = true }, { "cpu_pct", title = "cpu", format = fmt.pct, right = true },
        { "rss", title = "memory", format = fmt.bytes, right = true },
        { "age", title = "up", format = fmt.duration, right = true }, { "cmdline", title = "command" },
      }))
      ctx:note("the oldest started %s ago", fmt.duration(procs[1].age))
    end,
  },

  step "restarts" {
    title   = "Is it restarting in a loop?",
    explain = "The platform's restart counter, read twice a window apart: a service that crashes at start " ..
              "is restarted again and again, and a restart by hand will not help.",
    run = function(ctx)
      if not ctx.restarts then return ctx:note("restarts= not given: the restart counter is not watched") end
      local function counter()
        local argv = { quiet = true, timeout = ctx.timeout, on = remote(ctx) }
        for i, a in ipairs(ctx.restarts) do argv[i] = a end
        local r = must(sh.read(argv))
        local n = math.tointeger(tonumber(r.ok and r.stdout:match("%d+")))
        if not n then error(table.concat(ctx.restarts, " ") .. " printed no restart count: " .. r.stdout:sub(1, 80), 0) end
        return n
      end
      local first, t0 = counter(), os.time()
      local last = must(ctx:wait_until(fmt.duration(ctx.window) .. " have passed", function()
        return os.time() - t0 >= ctx.window and counter()
      end, { timeout = ctx.window + 5, every = math.min(1, ctx.window) }))
      local n = last - first
      if n >= ctx.loop then
        ctx.state.looping = n
        return ctx:finding { code = "api.restart_loop", "restarted %d times in %s (the counter went from %d to %d): " ..
                             "it is restarting in a loop", n, fmt.duration(ctx.window), first, last }
      end
      ctx:ok("no restart in %s (counter at %d)", fmt.duration(ctx.window), last)
    end,
  },

  step "restart" {
    title   = "Restart the service",
    explain = "When the endpoint fails and its dependencies answer, a restart is the quickest way back; " ..
              "when a dependency is down, restarting the service does not help.",
    run = function(ctx)
      if not (ctx.state.silent or ctx.state.failing) then return ctx:ok("the service is healthy: no restart") end
      if ctx.state.dependency_down then return ctx:note("not restarting: %s is down", ctx.state.dependency_down) end
      if ctx.state.looping then
        return ctx:note("not restarting: it restarts by itself and fails again; its logs say why")
      end
      must(recipe.restart(ctx, { argv = ctx.restart, on = ctx.on, name = ctx.service, target = ctx.url,
                                 leave_running = true,   -- a restart may start the daemon itself (not through systemd)
                                 summary = "restart the service", ready_what = ctx.url .. " answers 2xx",
                                 ready = function() local h = health(ctx) return h and h.ok end,
                                 wait = ctx.restart_wait, every = 0.5 }))
    end,
  },

  step "verify" {
    title = "Is the site back?",
    run = function(ctx)
      local r, err = health(ctx)
      if not r then return ctx:escalate(ctx.url .. " still does not answer: " .. err) end
      if not r.ok then return ctx:escalate(string.format("%s still answers %d", ctx.url, r.status)) end
      return ctx:resolved(string.format("%s answers %d", ctx.url, r.status))
    end,
  },
}
