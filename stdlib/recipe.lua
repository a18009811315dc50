-- recipe.lua - the shapes runbooks kept writing again, written once: restart a service through the
-- gate and wait until it answers; check that a service is back (and its health endpoint with it)
-- and end the run on the answer; read a component's log, show its most frequent lines and name the
-- cause the log gives. A runbook requires it like the native modules:
--   local recipe = require "recipe"
local http    = require "http"
local logs    = require "logs"
local service = require "service"
local sh      = require "sh"
local target  = require "target"

local M = {}

-- Restarts as an action (shown and confirmed at the gate): the team's `o.argv` when given (run on
-- `o.on`), else `service.restart { on = o.on, name = o.name }` (systemd, Compose or Kubernetes, as
-- the target implies); then waits until `o.ready()` answers. Returns what `ready` last returned,
-- or nil, err, kind (the action failed, or the wait timed out); a dry run's result as it is. A declined action travels on as it
-- does from sh.action.
function M.restart(ctx, o)
  local r, err, kind
  local remote = o.on and o.on ~= "local" and o.on or nil
  if o.argv then
    local argv = {}
    for i, a in ipairs(o.argv) do argv[i] = a end
    argv.summary, argv.target, argv.timeout, argv.on = o.summary, o.target, o.timeout, remote
    -- a restart command may start the daemon itself (not through systemd): it stays unless told not to
    argv.leave_running = o.leave_running ~= false
    r, err, kind = sh.action(argv)
  else
    r, err, kind = service.restart { on = o.on, name = o.name, summary = o.summary, timeout = o.timeout }
  end
  if not r or r.dry_run then return r, err, kind end
  return ctx:wait_until(o.ready_what or "it answers", o.ready, { timeout = o.wait or 60, every = o.every or 0.5 })
end

-- The service's health endpoint: true, or nil and why it fails.
function M.healthy(url, timeout)
  local r, err = http.get(url, { timeout = timeout or 10 })
  if not r then return nil, "the service's health check fails: " .. err end
  if not r.ok then return nil, string.format("the service's health check answers %d", r.status) end
  return r
end

-- Ends the run: escalates with the error when `o.probe()` fails (its nil, err) or the health check
-- at `o.health` (optional) fails; otherwise reports both and resolves with `o.resolved`.
-- o = { probe = fn, failed = "Redis still does not answer", ok = fn(value) -> text,
--       health = url | nil, timeout = seconds, resolved = "Redis answers" }
function M.verify(ctx, o)
  local v, err = o.probe()
  if not v then return ctx:escalate(o.failed .. ": " .. tostring(err)) end
  if o.ok then ctx:ok("%s", o.ok(v)) end
  if o.health then
    local h, herr = M.healthy(o.health, o.timeout)
    if not h then return ctx:escalate(herr) end
    ctx:ok("%s answers %d", o.health, h.status)
  end
  return ctx:resolved(o.resolved .. (o.health and " and the service is healthy" or ""))
end

-- Whether a log source is configured: one of unit=, file=, service=, or a target that has its own
-- logs (a Compose service, a Kubernetes workload).
local function has_source(o)
  if o.unit or o.file or o.service then return true end
  local t = o.on and target.parse(o.on)
  return t ~= nil and (t.kind == "compose" or t.kind == "k8s")
end

-- Reads a component's log as its playbook does first: the last `since` of it (journald unit=,
-- file=, Compose service= or the target's own), shows its most frequent lines (grep | sort | uniq
-- -c | sort -rn | head), and reports a coded finding for each cause whose pattern the log shows.
-- Nothing configured: notes it and returns. Returns the read and the codes found, or nil.
-- o = { on, unit, file, service, since, timeout, what = "Redis's log", grep = "ERROR|FATAL" | nil,
--       causes = { { pattern = "OOM command not allowed", code = "redis.oom", text = "Redis refuses writes" } } }
function M.logs(ctx, o)
  local what = o.what or "the log"
  if not has_source(o) then
    return ctx:note("no log source given for %s: set unit= (journald), file= or service= (Compose) to read it", what)
  end
  local r, err = logs.read { on = o.on, unit = o.unit, file = o.file, service = o.service, since = o.since,
                             grep = o.grep, timeout = o.timeout, lines = o.lines or 5000 }
  if not r then return ctx:note("cannot read %s: %s", what, err) end
  local fmt = require("render").fmt
  if #r.lines == 0 then
    return ctx:ok("%s: no %sline in the last %s (%s)", what, o.grep and "matching " or "", fmt.duration(o.since or 1800), r.source)
  end
  local rows = {}
  for i, g in ipairs(logs.top(r.lines, nil, o.top or 5)) do rows[i] = { count = g.count, line = g.example:sub(1, 110) } end
  ctx:show(fmt.table(rows, { { "count", right = true }, { "line", title = what .. " (most frequent, " .. #r.lines .. " lines)" } }))
  local found = {}
  for _, c in ipairs(o.causes or {}) do
    local top, n = logs.top(r.lines, c.pattern, 1)
    if n > 0 then
      found[#found + 1] = c.code
      ctx:finding { code = c.code, "%s: %d lines in %s, e.g. %s", c.text, n, what, top[1].example:sub(1, 100) }
    end
  end
  return r, found
end

return M
