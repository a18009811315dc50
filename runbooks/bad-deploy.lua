-- bad-deploy: errors or latency rose, and a deploy went out just before ("was there a deploy in the
-- last hour? roll it back"). Lists what changed and when (deploy.history: Kubernetes rollouts,
-- Compose containers, systemd start times, a git checkout), measures the error rate and the
-- latency of the access log before and after the latest change, and offers the rollback (an action
-- through the gate: kubectl rollout undo, or the team's command) only when the rise starts at it.
local deploy = require "deploy"
local http   = require "http"
local logs   = require "logs"
local sys    = require "sys"

local ERRORS = "\" 5[0-9][0-9] "

-- The request time of an access log line (nginx's $request_time written as rt=0.123), in ms.
local function request_ms(text)
  local rt = text:match("rt=([%d.]+)")
  return rt and tonumber(rt) * 1000
end

local function p95(values)
  if #values == 0 then return nil end
  table.sort(values)
  return values[math.max(1, math.ceil(#values * 0.95))]
end

-- Requests, errors and latencies of the lines before and after time t.
local function split_at(lines, t)
  local texts = {}
  for i, l in ipairs(lines) do texts[i] = l.text end
  local is_error = {}
  for _, i in ipairs(sys.filter(texts, ERRORS)) do is_error[i] = true end
  local sides = { before = { n = 0, errors = 0, ms = {} }, after = { n = 0, errors = 0, ms = {} } }
  for i, l in ipairs(lines) do
    if l.ts then
      local side = l.ts >= t and sides.after or sides.before
      side.n = side.n + 1
      if is_error[i] then side.errors = side.errors + 1 end
      local ms = request_ms(l.text)
      if ms then side.ms[#side.ms + 1] = ms end
    end
  end
  for _, side in pairs(sides) do
    side.error_pct = side.n > 0 and side.errors * 100 / side.n or 0
    side.p95 = p95(side.ms)
  end
  return sides
end

return runbook {
  name     = "bad-deploy",
  summary  = "Errors or latency rose right after a deploy: find the change, measure before and after, roll back",
  severity = "SEV2",
  description = "Symptoms: an error-rate or latency alert shortly after a release; 5xx in the access log that " ..
                "were not there an hour ago.",

  inputs = {
    on          = input.target { default = "local", env = "DEPLOY_ON", help = "the workload (k8s://NS/deployment/NAME, compose://..., ssh://...)" },
    unit        = input.string { required = false, help = "the systemd unit, for local and ssh:// targets" },
    repo        = input.path { required = false, help = "a git checkout deployed from (its commits are changes)" },
    access_log  = input.path { default = "/var/log/nginx/access.log", help = "the access log (status, and rt= request time)" },
    log_on      = input.target { default = "local", env = "ACCESS_LOG_ON", help = "where the access log is" },
    since       = input.duration { default = "2h", help = "how far back to look for changes and requests" },
    min_error_pct = input.int { default = 5, min = 1, max = 100, help = "error percentage after the deploy that is a problem" },
    ratio       = input.int { default = 3, min = 2, help = "how many times worse than before is a rise" },
    rollback    = input.argv { required = false, help = "the team's rollback command (default on Kubernetes: kubectl rollout undo)" },
    url         = input.url { env = "HEALTH_URL", required = false, help = "a URL to check after the rollback" },
    rollback_wait = input.duration { default = "2m", help = "how long to wait for the URL to answer after the rollback" },
    timeout     = input.duration { default = "10s", help = "deadline of each probe" },
  },

  step "changes" {
    title   = "What changed, and when?",
    explain = "The last deploys, restarts and commits, newest first: an incident that starts minutes after one of " ..
              "them is most likely caused by it.",
    run = function(ctx)
      local h = must(deploy.history { on = ctx.on, unit = ctx.unit, repo = ctx.repo, since = ctx.since, timeout = ctx.timeout })
      if #h.changes == 0 then return ctx:ok("no change in the last %s (%s)", fmt.duration(ctx.since), table.concat(h.sources, ", ")) end
      local rows = {}
      for i, c in ipairs(h.changes) do
        if i > 8 then break end
        rows[i] = { when = c.time or "?", what = c.what:sub(1, 90) }
      end
      ctx:show(fmt.table(rows, { { "when" }, { "what", title = "change" } }))
      ctx.state.change = h.latest
      ctx:note("latest: %s at %s", h.latest.what, h.latest.time or "?")
    end,
  },

  step "impact" {
    title   = "Did errors or latency rise at that change?",
    explain = "Error percentage and p95 request time before and after the latest change: a rise that starts " ..
              "there points at the deploy; one that started earlier does not.",
    run = function(ctx)
      local change = ctx.state.change
      if not change or not change.ts then return ctx:note("no dated change to compare around") end
      local r = must(logs.read { on = ctx.log_on, file = ctx.access_log, since = ctx.since, lines = 100000, timeout = ctx.timeout })
      local s = split_at(r.lines, change.ts)
      local b, a = s.before, s.after
      ctx:show(fmt.table({
        { side = "before", requests = b.n, errors = string.format("%.1f%%", b.error_pct), p95 = b.p95 and fmt.ms(b.p95) or "-" },
        { side = "after", requests = a.n, errors = string.format("%.1f%%", a.error_pct), p95 = a.p95 and fmt.ms(a.p95) or "-" },
      }, { { "side", title = "" }, { "requests", right = true }, { "errors", right = true }, { "p95", right = true } }))
      if a.n == 0 then return ctx:note("no request since the change yet") end
      local rose = a.error_pct >= ctx.min_error_pct and a.error_pct >= ctx.ratio * math.max(b.error_pct, 0.1)
      if rose then
        ctx.state.bad = true
        ctx:finding { code = "deploy.errors_rose", "errors went from %.1f%% before %s to %.1f%% after it", b.error_pct,
                      change.what, a.error_pct }
      end
      if a.p95 and b.p95 and a.p95 >= ctx.ratio * b.p95 and a.p95 >= 100 then
        ctx.state.bad = true
        ctx:finding { code = "deploy.latency_rose", "p95 request time went from %s to %s after %s", fmt.ms(b.p95), fmt.ms(a.p95), change.what }
      end
      if not ctx.state.bad then ctx:ok("no rise at the change (%.1f%% errors after it)", a.error_pct) end
    end,
  },

  step "rollback" {
    title   = "Roll the deploy back",
    explain = "The first mitigation of the playbooks once a deploy is the likely cause: restore the previous version, " ..
              "then find the bug at leisure.",
    run = function(ctx)
      if not ctx.state.bad then return ctx:ok("no rise starts at a deploy: nothing to roll back") end
      local r = must(deploy.rollback { on = ctx.on, argv = ctx.rollback,
                                       summary = "roll back " .. (ctx.state.change.name or ctx.on) .. " (errors rose after it)" })
      ctx.state.rolled_back = not r.dry_run or nil
    end,
  },

  step "verify" {
    title = "Is the service healthy again?",
    run = function(ctx)
      if not ctx.state.bad then return ctx:resolved("no deploy explains the symptoms: look elsewhere (high-error-rate, triage)") end
      if not ctx.url then return ctx:note("set url= to check the service after the rollback") end
      local ok = ctx:wait_until(ctx.url .. " answers 2xx", function()
        local r = http.get(ctx.url, { timeout = ctx.timeout })
        return r and r.ok
      end, { timeout = ctx.rollback_wait, every = 0.5 })
      if ok then return ctx:resolved("rolled back; " .. ctx.url .. " answers") end
      return ctx:escalate(ctx.url .. " still fails after the rollback")
    end,
  },
}
