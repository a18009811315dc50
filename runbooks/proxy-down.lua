-- proxy-down: the site is unreachable or answers 502/504, and the application may be fine: the
-- proxy in front of it (nginx) is down, misconfigured, or cannot reach its upstream. Walks what
-- the outage playbooks do for "Network/Load Balancer Issue": the URL through the proxy, `nginx -t`,
-- the error log (upstream refusals and timeouts), the 502/504 counts of the access log, the
-- upstream directly; offers a restart when the proxy is down and its config is valid, a reload
-- when the upstream answers directly but not through the proxy; never either on a broken config.
local http    = require "http"
local logs    = require "logs"
local service = require "service"
local sh      = require "sh"

local UPSTREAM_ERRORS = "connect\\(\\) failed|upstream timed out|no live upstreams|upstream prematurely closed"

local function through(ctx)
  return http.get(ctx.url, { timeout = ctx.timeout, expect = { 200, 201, 204, 301, 302, 304, 401, 403, 404 } })
end

-- Waits until the URL answers (need_ok: with success) three times in a row: during a reload the old workers still accept
-- connections for a moment, and one good answer may come from the new ones while the next does not.
local function wait_answering(ctx, what, need_ok)
  local in_a_row = 0
  return must(ctx:wait_until(what, function()
    local r = through(ctx)
    in_a_row = (r and (r.ok or not need_ok)) and in_a_row + 1 or 0
    return in_a_row >= 3
  end, { timeout = ctx.restart_wait, every = 0.2 }))
end

-- The proxy's restart or reload: the team's command, else the service on its target.
local function control(ctx, verb, argv, why)
  if argv then
    local a = {}
    for i, w in ipairs(argv) do a[i] = w end
    a.summary, a.on = verb .. " the proxy (" .. why .. ")", ctx.on ~= "local" and ctx.on or nil
    a.target = ctx.on ~= "local" and ctx.on or ctx.url
    a.leave_running = true   -- the team's command may start the proxy itself (not through systemd)
    return must(sh.action(a))
  end
  return must(service[verb] { on = ctx.on, name = ctx.unit, summary = verb .. " " .. ctx.unit .. " (" .. why .. ")" })
end

return runbook {
  name     = "proxy-down",
  summary  = "The proxy (nginx) in front of the service is down, misconfigured or cut off from its upstream",
  severity = "SEV1",
  description = "Symptoms: the site answers 502 Bad Gateway or 504 Gateway Timeout, or nothing at all, while " ..
                "the application's own health looks fine; connection refused on 80/443.",

  inputs = {
    url          = input.url { env = "PROXY_URL", default = "http://127.0.0.1/", help = "a URL through the proxy" },
    upstream     = input.url { env = "UPSTREAM_URL", required = false, help = "the application directly (its health endpoint), bypassing the proxy" },
    on           = input.target { default = "local", env = "PROXY_ON", help = "where nginx runs" },
    unit         = input.string { default = "nginx", help = "the proxy's service name" },
    config_test  = input.argv { default = { "nginx", "-t" }, help = "the command that checks the proxy's config" },
    error_log    = input.path { default = "/var/log/nginx/error.log", help = "the proxy's error log" },
    access_log   = input.path { default = "/var/log/nginx/access.log", help = "the proxy's access log" },
    restart      = input.argv { required = false, help = "how to restart the proxy (default: the service on its target)" },
    reload       = input.argv { required = false, help = "how to reload the proxy (default: the service on its target)" },
    since        = input.duration { default = "30m", help = "how far back to read the logs" },
    restart_wait = input.duration { default = "30s", help = "how long to wait for the proxy to answer after a restart or reload" },
    timeout      = input.duration { default = "5s", help = "deadline of each probe" },
  },

  step "reach" {
    title   = "What does the URL through the proxy answer?",
    explain = "Refused: nothing listens, the proxy is down. 502: the proxy is up but its upstream refused or " ..
              "closed. 504: the upstream did not answer in time.",
    run = function(ctx)
      local r, err, kind = through(ctx)
      if not r then
        if kind == "refused" then
          ctx.state.down = true
          return ctx:finding { code = "proxy.down", "nothing listens behind %s: %s", ctx.url, err }
        end
        ctx.state.silent = true
        return ctx:finding { code = "proxy.unreachable", "%s does not answer (%s): %s", ctx.url, kind, err }
      end
      if r.status == 502 or r.status == 503 or r.status == 504 then
        ctx.state.gateway = r.status
        return ctx:finding { code = "proxy.bad_gateway", "%s answers %d: the proxy is up, its upstream is not answering it",
                             ctx.url, r.status }
      end
      if not r.ok then return ctx:finding { code = "proxy.error", "%s answers %d", ctx.url, r.status } end
      ctx:ok("%s answers %d in %s", ctx.url, r.status, fmt.ms(r.timings.total_ms))
    end,
  },

  step "config" {
    title   = "Is the proxy's configuration valid (nginx -t)?",
    explain = "A restart or reload with a broken config leaves the proxy down (or keeps the old one): fix it first.",
    run = function(ctx)
      local argv = { table.unpack(ctx.config_test) }
      argv.quiet, argv.timeout, argv.on = true, ctx.timeout, ctx.on ~= "local" and ctx.on or nil
      local r = must(sh.read(argv))
      local said = (r.stderr .. r.stdout):gsub("%s+$", "")
      if r.ok then return ctx:ok("%s: the configuration is valid", table.concat(ctx.config_test, " ")) end
      ctx.state.config_bad = said:match("%[emerg%][^\n]*") or said:match("[^\n]+") or ("exit " .. tostring(r.code))
      ctx:finding { code = "proxy.config_invalid", "%s fails: %s", table.concat(ctx.config_test, " "), ctx.state.config_bad }
    end,
  },

  step "error-log" {
    title   = "What does the proxy's error log say about its upstream?",
    explain = "connect() failed (111: Connection refused): the upstream is down or on another port. upstream " ..
              "timed out: it is alive but too slow. no live upstreams: every server of the group is marked failed.",
    run = function(ctx)
      local r, err = logs.read { on = ctx.on, file = ctx.error_log, since = ctx.since, grep = UPSTREAM_ERRORS,
                                 timeout = ctx.timeout, lines = 2000 }
      if not r then return ctx:note("cannot read %s: %s", ctx.error_log, err) end
      if #r.lines == 0 then return ctx:ok("no upstream error in %s in the last %s", ctx.error_log, fmt.duration(ctx.since)) end
      local top = logs.top(r.lines, nil, 5)
      local rows = {}
      for i, g in ipairs(top) do rows[i] = { count = g.count, line = g.example:sub(1, 110) } end
      ctx:show(fmt.table(rows, { { "count", right = true }, { "line", title = "error log (grouped)" } }))
      local refused = #logs.top(r.lines, "Connection refused|no live upstreams", 1000) > 0
      local timedout = #logs.top(r.lines, "timed out", 1000) > 0
      if refused then
        ctx.state.upstream_refused = true
        ctx:finding { code = "proxy.upstream_refused", "the upstream refused the proxy's connections (%d lines in %s)",
                      #r.lines, fmt.duration(ctx.since) }
      end
      if timedout then
        ctx:finding { code = "proxy.upstream_timeout", "the upstream did not answer the proxy in time (see the lines above)" }
      end
    end,
  },

  step "access-log" {
    title   = "How many 502/504 did users get?",
    run = function(ctx)
      local r, err = logs.read { on = ctx.on, file = ctx.access_log, since = ctx.since, timeout = ctx.timeout, lines = 20000 }
      if not r then return ctx:note("cannot read %s: %s", ctx.access_log, err) end
      local bad = logs.top(r.lines, "\" (502|503|504) ", 100)
      local n = 0
      for _, g in ipairs(bad) do n = n + g.count end
      if n == 0 then return ctx:ok("no 502/503/504 among %d requests in the last %s", #r.lines, fmt.duration(ctx.since)) end
      local rate = logs.rate(r.lines, "\" (502|503|504) ", { recent = "5m", baseline = ctx.since, label = "502/503/504" })
      ctx:finding { code = "proxy.5xx", "%d of %d requests answered 502/503/504 in the last %s (%s)", n, #r.lines,
                    fmt.duration(ctx.since), rate.text }
    end,
  },

  step "upstream" {
    title   = "Does the upstream answer directly?",
    explain = "Healthy directly but not through the proxy: the proxy is at fault (stale config or DNS, wrong " ..
              "port). Down directly too: the application is, and it has its own runbook (api-down).",
    run = function(ctx)
      if not ctx.upstream then return ctx:note("set upstream=URL to check the application behind the proxy") end
      local r, err, kind = http.get(ctx.upstream, { timeout = ctx.timeout })
      if r and r.ok then
        ctx.state.upstream_ok = true
        return ctx:ok("%s answers %d directly", ctx.upstream, r.status)
      end
      ctx.state.upstream_down = true
      ctx:finding { code = "proxy.upstream_down", "the upstream itself fails: %s", r and ("it answers " .. r.status) or (kind .. ": " .. err) }
    end,
  },

  step "restart" {
    title   = "Restart the proxy",
    explain = "Only when the proxy is down and its configuration is valid.",
    run = function(ctx)
      if not ctx.state.down then return ctx:ok("the proxy answers: no restart needed") end
      if ctx.state.config_bad then
        return ctx:escalate("the proxy is down and its configuration is broken (" .. ctx.state.config_bad ..
                            "): fix the config (nginx -t must pass), then start it")
      end
      control(ctx, "restart", ctx.restart, "down")
      wait_answering(ctx, "the proxy answers")
      ctx.state.down = nil
    end,
  },

  step "reload" {
    title   = "Reload the proxy",
    explain = "When the upstream answers directly but the proxy still fails to reach it, the running proxy holds a " ..
              "stale view (an old address, a server marked failed): a reload re-reads the config and resolves again.",
    run = function(ctx)
      if not (ctx.state.gateway and ctx.state.upstream_ok) then
        return ctx:ok("no reload called for (it helps when the upstream answers directly but not through the proxy)")
      end
      if ctx.state.config_bad then return ctx:escalate("the configuration is broken: a reload would fail (" .. ctx.state.config_bad .. ")") end
      control(ctx, "reload", ctx.reload, "stale upstream")
      wait_answering(ctx, "the proxy answers through its upstream", true)
    end,
  },

  step "verify" {
    title = "Does the site answer through the proxy?",
    run = function(ctx)
      local r, err = through(ctx)
      if r and r.ok then return ctx:resolved(string.format("%s answers %d through the proxy", ctx.url, r.status)) end
      if ctx.state.upstream_down or ctx.state.upstream_refused then
        return ctx:escalate("the proxy is up but its upstream is not: the application is down (run api-down on it)")
      end
      return ctx:escalate("the site still fails through the proxy: " .. (r and ("it answers " .. r.status) or err))
    end,
  },
}
