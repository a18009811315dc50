-- recipe.lua - the shapes runbooks kept writing again, written once: restart a service through the
-- gate and wait until it answers; check that a service is back (and its health endpoint with it)
-- and end the run on the answer. A runbook requires it like the native modules:
--   local recipe = require "recipe"
local http = require "http"
local sh   = require "sh"

local M = {}

-- Runs `o.argv` as an action (shown and confirmed at the gate), then waits until `o.ready()`
-- answers. Returns what `ready` last returned, or nil, err, kind (the action failed, or the wait
-- timed out). A declined action travels on as it does from sh.action.
function M.restart(ctx, o)
  local argv = {}
  for i, a in ipairs(o.argv) do argv[i] = a end
  argv.summary, argv.target, argv.timeout = o.summary, o.target, o.timeout
  argv.leave_running = true   -- a restart command may start the daemon itself (not through systemd)
  local r, err, kind = sh.action(argv)
  if not r then return nil, err, kind end
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

return M
