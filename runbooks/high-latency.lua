-- high-latency: the service is slow (P95 above 500 ms). Measures where the time goes per phase
-- (DNS, connect, TLS, first byte, total) on a sample of requests, asks Prometheus for the p95 the
-- alert saw when one is given, and checks the host's load.
local http       = require "http"
local prometheus = require "prometheus"
local sys        = require "sys"
local recipe = require "recipe"

-- What a slow service writes, and what each line points at.
local LOG_CAUSES = {
  { pattern = "[Tt]imed? ?out|TimeoutError|deadline exceeded", code = "latency.timeouts_logged", text = "calls time out" },
  { pattern = "slow query|duration: [0-9.]+ ms", code = "latency.slow_queries_logged", text = "slow queries are logged" },
  { pattern = "pool exhausted|QueuePool limit|[Ww]aiting for (a )?connection", code = "latency.pool_wait",
    text = "requests wait for a database connection" },
}

local function percentile(values, p)
  table.sort(values)
  if #values == 0 then return nil end
  return values[math.max(1, math.ceil(#values * p))]
end

return runbook {
  name     = "high-latency",
  summary  = "The service answers slowly",
  severity = "SEV3",
  description = "Symptoms: a latency alert (p95 above 500 ms), pages that load slowly but load.",

  inputs = {
    url        = input.url { env = "SERVICE_URL", default = "http://127.0.0.1:8000/health", help = "an endpoint to sample" },
    requests   = input.int { default = 30, min = 1, max = 1000, help = "how many requests to sample" },
    warn_ms    = input.int { default = 300, min = 1, help = "p95 in ms that is a warning" },
    crit_ms    = input.int { default = 500, min = 1, help = "p95 in ms that is critical" },
    prometheus = input.url { env = "PROMETHEUS_URL", required = false, help = "Prometheus, for the p95 over 5 minutes" },
    histogram  = input.string { default = "http_request_duration_seconds_bucket", help = "the latency histogram" },
    timeout    = input.duration { default = "10s", help = "deadline of each request" },
    on         = input.target { default = "local", env = "APP_ON", help = "where the service runs (its load, processes, log)" },
    log_unit = input.string { required = false, help = "the service's journald unit, to read its log" },
    log_file = input.path { required = false, help = "the service's log file" },
    log_service = input.string { required = false, help = "the service's Compose service, to read its log" },
    since    = input.duration { default = "30m", help = "how far back to read the log" },
  },

  step "sample" {
    title   = "How long do requests take, and where?",
    run = function(ctx)
      local tasks = {}
      for i = 1, ctx.requests do tasks[i] = function() return http.get(ctx.url, { timeout = ctx.timeout }) end end
      local total, first, connect, failed = {}, {}, {}, 0
      for _, r in ipairs(parallel(tasks, { limit = 10 })) do
        if r.value then
          total[#total + 1] = r.value.timings.total_ms
          first[#first + 1] = r.value.timings.first_byte_ms
          connect[#connect + 1] = r.value.timings.connect_ms
        else
          failed = failed + 1
        end
      end
      if #total == 0 then return ctx:finding { code = "http.no_success", "no request succeeded (%d failed)", failed } end
      ctx:show(fmt.table({
        { phase = "connect", p50 = percentile(connect, 0.5), p95 = percentile(connect, 0.95) },
        { phase = "first byte", p50 = percentile(first, 0.5), p95 = percentile(first, 0.95) },
        { phase = "total", p50 = percentile(total, 0.5), p95 = percentile(total, 0.95) },
      }, { { "phase" }, { "p50", format = fmt.ms, right = true }, { "p95", format = fmt.ms, right = true } }))
      ctx.state.sampled = ctx:check("p95 of the sample", percentile(total, 0.95),
        { warn = "~:" .. ctx.warn_ms, crit = "~:" .. ctx.crit_ms, format = fmt.ms, code = "http.latency" })
      if failed > 0 then ctx:finding { code = "http.failures", "%d of %d requests failed", failed, ctx.requests } end
    end,
  },

  step "prometheus" {
    title = "What p95 did the alert see?",
    run = function(ctx)
      if not ctx.prometheus then return ctx:note("prometheus= not given: skipped") end
      local q = string.format("histogram_quantile(0.95, sum(rate(%s[5m])) by (le))", ctx.histogram)
      local p95, err, kind = prometheus.query(ctx.prometheus, q, { timeout = ctx.timeout })
      -- NaN: a quantile of empty buckets, no request at all in the window.
      if kind == "nan" then return ctx:note("Prometheus: no traffic in the last 5 minutes") end
      if not p95 then return ctx:note("%s", err) end
      ctx:check("p95 over 5 minutes", p95 * 1000, { warn = "~:" .. ctx.warn_ms, crit = "~:" .. ctx.crit_ms, format = fmt.ms,
                                                    code = "http.latency" })
    end,
  },

  step "host" {
    title = "Is the machine itself overloaded?",
    run = function(ctx)
      local on = ctx.on ~= "local" and ctx.on or nil
      local load = must(sys.load { on = on })
      ctx:check("load per cpu (1 min)", load.per_cpu1, { warn = "~:1", crit = "~:2", code = "host.load" })
      local top = must(sys.processes { sort = "cpu", limit = 5, sample = "500ms", on = on })
      ctx:show(fmt.table(top, { { "cpu_pct", title = "cpu", format = fmt.pct, right = true },
                                { "pid", right = true }, { "command" } }))
    end,
  },

  step "logs" {
    title   = "What does the service's log say?",
    explain = "Timeouts, slow queries and waits for a connection, as the service logs them.",
    run = function(ctx)
      recipe.logs(ctx, { on = ctx.on, unit = ctx.log_unit, file = ctx.log_file, service = ctx.log_service,
                         since = ctx.since, timeout = ctx.timeout, what = "the service's log", causes = LOG_CAUSES })
    end,
  },

  step "verdict" {
    title = "Verdict",
    run = function(ctx)
      if ctx.state.sampled == "OK" then return ctx:resolved("latency is back under " .. ctx.warn_ms .. " ms") end
      return ctx:escalate("still slow: look at slow queries (runbook exec slow-queries) and the cache (redis-failure)")
    end,
  },
}
