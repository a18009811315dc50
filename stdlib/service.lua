-- service.lua - a service where it lives (require "service"): status, restart, reload, wait_ready
-- with `on = target` picking the manager the target implies:
--   local, ssh://, inventory:   systemd: systemctl is-active / show / restart / reload NAME (over SSH)
--   compose://[DIR:]SERVICE      docker compose ps / restart SERVICE, run here against the project
--   k8s://[CTX/]NS/KIND/NAME     kubectl rollout status / rollout restart KIND/NAME
-- restart and reload are actions (sh.action: shown at the gate, recorded); status and wait_ready
-- are probes. Results name the manager, so that a runbook can say what it looked at.
local core   = require "core"
local reach  = require "reach"
local sh     = require "sh"
local target = require "target"

local M = {}

local OPTIONS = { on = true, name = true, timeout = true, every = true, quiet = true,
                  batch = true, max_fail = true, pause = true, limit = true, summary = true, blast = true }

local function args_of(fn, opts)
  if type(opts) ~= "table" then error(fn .. " { on = target, name = \"unit\" }", 0) end
  for k in pairs(opts) do
    if not OPTIONS[k] then error(string.format("%s: unknown option '%s'", fn, tostring(k)), 0) end
  end
  local on = opts.on or "local"
  local t, err = target.parse(on)
  if not t then error(fn .. ": on = " .. err, 0) end
  local name = opts.name
  if t.kind == "compose" then name = name or t.hosts[1].service
  elseif t.kind == "k8s" then
    if t.fleet then error(fn .. ": a selector is not a service: name the workload (k8s://NS/deployment/NAME)", 0) end
    name = t.hosts[1].object
  end
  if type(name) ~= "string" or not name:match("^[%w@][%w_.@:/-]*$") then
    error(fn .. ": name must be a unit name like \"redis-server\" (got " .. tostring(name) .. ")", 0)
  end
  return t, name
end

-- The local argv of a manager command for compose and k8s targets (they run here, not inside).
local function tool_argv(t, words)
  local ep = t.hosts[1]
  local argv = t.kind == "compose" and reach.compose_argv(ep) or reach.kubectl_argv(ep)
  for _, w in ipairs(words) do argv[#argv + 1] = w end
  return argv
end

local function with(argv, fields)
  for k, v in pairs(fields) do argv[k] = v end
  return argv
end

-- A systemd unit's state from `systemctl show`: { active, state, sub, pid, since }.
local function systemd_state(stdout)
  local v = {}
  for k, val in stdout:gmatch("(%w+)=([^\n]*)") do v[k] = val end
  return { active = v.ActiveState == "active", state = v.ActiveState, sub = v.SubState,
           pid = math.tointeger(tonumber(v.MainPID)), since = v.ActiveEnterTimestamp, manager = "systemd" }
end

local function status_of(fn, t, name, opts)
  local base = { quiet = opts.quiet ~= false, timeout = opts.timeout or 10 }
  if t.kind == "compose" then
    local r, err, kind = sh.read(with(tool_argv(t, { "ps", "-q", name }), base))
    if not r then return nil, err, kind end
    local id = r.stdout:match("%x+")
    if not id then return { active = false, state = "absent", manager = "compose", name = name } end
    r, err, kind = sh.read(with({ "docker", "inspect", "--format", "{{.State.Status}} {{.State.Pid}}", id }, base))
    if not r then return nil, err, kind end
    local state, pid = r.stdout:match("(%S+)%s+(%d+)")
    return { active = state == "running", state = state or "unknown", pid = math.tointeger(tonumber(pid)),
             manager = "compose", name = name }
  elseif t.kind == "k8s" then
    local r, err, kind = sh.read(with(tool_argv(t, { "rollout", "status", name, "--watch=false" }), base))
    if not r then return nil, err, kind end
    return { active = r.ok and r.stdout:find("successfully rolled out", 1, true) ~= nil,
             state = (r.stdout .. r.stderr):match("[^\n]+") or "", manager = "kubernetes", name = name }
  end
  local argv = with({ "systemctl", "show", name, "-p", "ActiveState,SubState,MainPID,ActiveEnterTimestamp" }, base)
  argv.on = t.text
  local r, err, kind = sh.read(argv)
  if not r then return nil, err, kind end
  if r.by_host then   -- a fleet: each host's state
    local out = { by_host = {}, active = {}, inactive = {}, unreachable = r.unreachable, manager = "systemd", name = name }
    for h, hr in pairs(r.by_host) do
      if hr.stdout then
        out.by_host[h] = systemd_state(hr.stdout)
        table.insert(out.by_host[h].active and out.active or out.inactive, h)
      end
    end
    table.sort(out.active)
    table.sort(out.inactive)
    return out
  end
  if not r.ok then return nil, string.format("%s %s on %s: %s", fn, name, t.text, (r.stderr:match("[^\n]+") or "systemctl failed")), "exit" end
  local st = systemd_state(r.stdout)
  st.name = name
  return st
end

function M.status(opts)
  local t, name = args_of("service.status", opts)
  return status_of("service.status", t, name, opts)
end

local function act(fn, verb, opts)
  local t, name = args_of(fn, opts)
  local a = { summary = opts.summary or string.format("%s %s on %s", verb, name, t.text), blast = opts.blast,
              timeout = opts.timeout or 120 }
  if t.kind == "compose" then
    if verb == "reload" then error(fn .. ": Compose has no reload; restart the service, or send it a signal with sh.action", 0) end
    return sh.action(with(tool_argv(t, { "restart", name }), a))
  elseif t.kind == "k8s" then
    if verb == "reload" then error(fn .. ": Kubernetes has no reload; restart the workload (rollout restart)", 0) end
    local r, err, kind = sh.action(with(tool_argv(t, { "rollout", "restart", name }), a))
    if not r or r.dry_run then return r, err, kind end
    local timeout = core.duration(opts.timeout or 300)
    return sh.read(with(tool_argv(t, { "rollout", "status", name, "--timeout=" .. math.floor(timeout) .. "s" }),
                        { timeout = timeout + 5, quiet = opts.quiet }))
  end
  a.on, a.batch, a.max_fail, a.pause, a.limit = t.text, opts.batch, opts.max_fail, opts.pause, opts.limit
  return sh.action(with({ "systemctl", verb, name }, a))
end

function M.restart(opts) return act("service.restart", "restart", opts) end
function M.reload(opts) return act("service.reload", "reload", opts) end

-- Polls status until the service is active (every host of a fleet), up to timeout.
function M.wait_ready(opts)
  local t, name = args_of("service.wait_ready", opts)
  local timeout = core.duration(opts.timeout or 60)
  local every = core.duration(opts.every or 1)
  local deadline = core.now() + timeout * 1000
  local last
  while true do
    local st, err, kind = status_of("service.wait_ready", t, name, { quiet = true, timeout = math.max(1, math.min(10, timeout)) })
    if st and (st.active == true or (st.by_host and #st.inactive == 0 and #(st.unreachable or {}) == 0)) then return st end
    last = st and (st.state or (st.inactive and ("not active on " .. target.fold(st.inactive)))) or err
    if kind == "interrupted" then return nil, err, kind end
    local left = deadline - core.now()
    if left <= 0 then
      return nil, string.format("service.wait_ready %s on %s: not ready after %s (last: %s)", name, t.text,
                                require("render").fmt.duration(timeout), tostring(last)), "timeout"
    end
    local ok, e, k = core.sleep(math.min(every, left / 1000))
    if not ok then return nil, e, k end
  end
end

return M
