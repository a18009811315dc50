-- high-error-rate: more requests fail than usual (alert: error rate above 5%). Samples the
-- endpoint itself for the status mix, asks Prometheus for the error rate the alert fired on when
-- one is given, then looks at the dependencies; nothing here changes the system.
local http = require "http"
local prometheus = require "prometheus"
local recipe = require "recipe"

-- What the service writes when it fails requests, and what each line points at.
local LOG_CAUSES = {
  { pattern = "Connection refused|ECONNREFUSED|could not connect|Connection to database failed|Redis connection",
    code = "http.dependency_errors", text = "a dependency refuses the service" },
  { pattern = "[Tt]imed? ?out|TimeoutError|deadline exceeded", code = "http.timeouts_logged", text = "calls time out" },
  { pattern = "Traceback|Exception|panic:", code = "http.exceptions", text = "the service raises" },
}

local function sample(ctx)
  local tasks = {}
  for i = 1, ctx.requests do
    tasks[i] = function() return http.get(ctx.url, { timeout = ctx.timeout, expect = "2xx" }) end
  end
  local statuses, failures, n = {}, 0, 0
  for _, r in ipairs(parallel(tasks, { limit = 20 })) do
    n = n + 1
    local key = r.value and tostring(r.value.status) or (r.kind or "error")
    statuses[key] = (statuses[key] or 0) + 1
    if not (r.value and r.value.status < 500) then failures = failures + 1 end
  end
  return statuses, failures * 100 / math.max(n, 1)
end

return runbook {
  name     = "high-error-rate",
  summary  = "The service answers with too many errors (5xx)",
  severity = "SEV2",
  description = "Symptoms: an error-rate alert (more than 5% of requests failing), users seeing errors on " ..
                "some operations.",

  inputs = {
    url        = input.url { env = "SERVICE_URL", default = "http://127.0.0.1:8000/health", help = "an endpoint to sample" },
    requests   = input.int { default = 50, min = 1, max = 1000, help = "how many requests to sample" },
    warn       = input.int { default = 1, min = 0, max = 100, help = "error percent that is a warning" },
    crit       = input.int { default = 5, min = 0, max = 100, help = "error percent that is critical" },
    prometheus = input.url { env = "PROMETHEUS_URL", required = false, help = "Prometheus, for the rate over 5 minutes" },
    metric     = input.string { default = "http_requests_total", help = "the request counter in Prometheus" },
    timeout    = input.duration { default = "5s", help = "deadline of each request" },
    on         = input.target { default = "local", env = "APP_ON", help = "where the service runs (its log)" },
    log_unit = input.string { required = false, help = "the service's journald unit, to read its log" },
    log_file = input.path { required = false, help = "the service's log file" },
    log_service = input.string { required = false, help = "the service's Compose service, to read its log" },
    since    = input.duration { default = "30m", help = "how far back to read the log" },
  },

  step "sample" {
    title   = "What do requests get right now?",
    explain = "Requests sent at once; 5xx answers and transport errors count as errors, 4xx do not.",
    run = function(ctx)
      local statuses, pct = sample(ctx)
      local rows = {}
      for status, n in pairs(statuses) do rows[#rows + 1] = { status = status, n = n } end
      table.sort(rows, function(a, b) return a.n > b.n end)
      ctx:show(fmt.table(rows, { { "status" }, { "n", title = "requests", right = true } }))
      ctx.state.sampled = ctx:check("errors in the sample", pct,
        { warn = "~:" .. ctx.warn, crit = "~:" .. ctx.crit, format = fmt.pct, code = "http.errors" })
    end,
  },

  step "prometheus" {
    title   = "What rate did the alert see?",
    explain = "The share of 5xx answers over the last 5 minutes, as the playbooks' query computes it.",
    run = function(ctx)
      if not ctx.prometheus then return ctx:note("prometheus= not given: skipped") end
      -- "or vector(0)": with no 5xx series at all the numerator is empty, and so would be the ratio.
      local q = string.format('(sum(rate(%s{status=~"5.."}[5m])) or vector(0)) / sum(rate(%s[5m]))', ctx.metric, ctx.metric)
      local rate, err, kind = prometheus.query(ctx.prometheus, q, { timeout = ctx.timeout })
      -- NaN: 0/0, no request at all in the window.
      if kind == "nan" then return ctx:note("Prometheus: no traffic in the last 5 minutes") end
      if not rate then return ctx:note("%s", err) end
      ctx:check("error rate over 5 minutes", rate * 100, { warn = "~:" .. ctx.warn, crit = "~:" .. ctx.crit, format = fmt.pct,
                                                           code = "http.error_rate" })
    end,
  },

  step "logs" {
    title   = "What does the service's log say?",
    explain = "The most frequent error lines: a refused dependency, timeouts, the same exception again and again.",
    run = function(ctx)
      recipe.logs(ctx, { on = ctx.on, unit = ctx.log_unit, file = ctx.log_file, service = ctx.log_service,
                         since = ctx.since, timeout = ctx.timeout, what = "the service's log", causes = LOG_CAUSES })
    end,
  },

  step "verdict" {
    title = "Verdict",
    run = function(ctx)
      if ctx.state.sampled == "OK" then return ctx:resolved("the error rate is back under " .. ctx.warn .. "%") end
      return ctx:escalate("errors persist: check the service's logs and its dependencies (runbook exec api-down)")
    end,
  },
}
