-- drill.lua - `runbook drill NAME|FILE`: rehearse an incident for real. Brings the lab up if needed,
-- breaks it the way the runbook is about, runs the runbook against the lab (inputs aimed at it,
-- service restarts mapped to `runbook lab restart ...`), then judges the run: the findings the
-- runbook must report (by code), the actions it must and must not offer, and whether the system is
-- healthy again, and how long it took. Interactive by default, for training; --auto --yes for tests.
--
-- This file is the machinery only: each runbook's drill is its sibling NAME.drill.lua (see
-- doc/drills.md), loaded in a sandbox like the runbook's; what a drill may do to the lab is the
-- API below, handed to its functions as their argument.
local audit  = require "audit"
local core   = require "core"
local engine = require "engine"
local lab    = require "lab"
local loader = require "loader"
local render = require "render"
local sh     = require "sh"

local M = {}

local function lab_cmd(...)
  return core.exe() .. " lab " .. table.concat({ ... }, " ")
end

-- Waits (bounded) until check() returns true; returns its last answer.
local function settle(check, seconds)
  local deadline = core.now() + seconds * 1000
  local ok, why
  repeat
    ok, why = check()
    if ok then return true end
    core.sleep(0.1)
  until core.now() > deadline
  return false, why
end

-- The lab service's verdict: GET /health answers 200 only when PostgreSQL and Redis both answer.
local function service_healthy(state)
  local http = require "http"
  local r, err = http.get(state.api.url .. "/health", { timeout = 2 })
  if not r then return false, err end
  if r.status ~= 200 then return false, "GET /health answers " .. r.status .. ": " .. (r.body or ""):gsub("%s+$", "") end
  return true
end

----------------------------------------------------------------------------- the drill API
-- What a drill file's functions receive (breaks, inputs, healthy, repair, cleanup): the lab's
-- state and what the shipped drills need to break and mend it, nothing of the host beyond that.

local function shq(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

local function write_file(path, text)
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
end

local read_file = lab.read_file

-- Processes a drill starts in the background (psql sessions, servers, hogs): each in a process
-- group of its own, recorded here so that ending them all is one call, even from another run.
local function groups_file() os.execute("mkdir -p " .. shq(lab.dir())) return lab.dir() .. "/sessions.pids" end

local function end_spawned()
  local f = io.open(groups_file())
  if not f then return end
  for line in f:lines() do
    local pid = math.tointeger(tonumber(line))
    if pid then core.kill(-pid, "KILL") end
  end
  f:close()
  os.remove(groups_file())
end

-- Runs script (/bin/sh) in a new session in the background; returns its process group id.
local function spawn(script)
  local mark = string.format("%s/spawn.%.0f.%d", lab.dir(), core.now(), math.random(1 << 30))
  local wrapped = string.format("echo $$ > %s; echo $$ >> %s; %s", shq(mark), shq(groups_file()), script)
  assert(os.execute("setsid -f sh -c " .. shq(wrapped) .. " </dev/null >/dev/null 2>&1"))
  local pid
  settle(function() pid = math.tointeger(tonumber(read_file(mark) or "")) return pid ~= nil end, 5)
  os.remove(mark)
  return pid
end

local function psql_args(s, user)
  return string.format("psql -X -q -h 127.0.0.1 -p %d -U %s -d %s", s.pg.port, user or s.pg.user, s.pg.database)
end

-- The API for the lab as it is now (state: lab.state(), {} for a standalone drill).
local function api(state)
  local d = {
    state = state,                 -- the lab: state.pg, .redis, .api, .nginx (ports, urls, pids, files)
    dir = lab.dir(),               -- the lab's own directory: a drill's files go under it
    uid = core.identity().uid,
    control = lab.control,         -- control("stop"|"start"|"restart", "pg"|"redis"|"api"|"nginx")
    lab_cmd = lab_cmd,             -- lab_cmd("restart", "redis"): the command line, for a runbook's input
    kill = core.kill,              -- kill(pid, "STOP"|"CONT"|"KILL"|"0"); true when it was delivered
    sleep = core.sleep, now = core.now, free_port = core.free_port,
    settle = settle,               -- settle(check, seconds): waits (bounded) until check() is true
    write = write_file, read = read_file, shq = shq,
    spawn = spawn, end_spawned = end_spawned,
    nginx_conf = function() return lab.nginx_conf(state) end,   -- the lab's own nginx.conf text
  }
  -- A command line for /bin/sh that must succeed (raises otherwise); opts.check = false: its status.
  function d.sh(cmd, opts)
    local ok = os.execute(cmd)
    if opts and opts.check == false then return ok == true end
    if not ok then error("the drill's command failed: " .. cmd, 0) end
    return true
  end
  -- A command (argv) that must succeed: quiet, bounded, its result.
  function d.run(argv)
    local a = table.move(argv, 1, #argv, 1, {})
    for k, v in pairs(argv) do if type(k) ~= "number" then a[k] = v end end
    a.quiet, a.timeout, a.check = true, argv.timeout or 30, argv.check ~= false
    return assert(sh.read(a))
  end
  function d.service_healthy() return service_healthy(state) end
  function d.redis_cli(...) return d.run { "redis-cli", "-p", tostring(state.redis.port), ... } end
  function d.psql_command(user) return psql_args(state, user) end
  -- One SQL text through psql as the lab's superuser; its output, trimmed.
  function d.psql(sql)
    return (d.run { "sh", "-c", psql_args(state) .. " -At -c " .. shq(sql) }.stdout:gsub("%s+$", ""))
  end
  -- A psql session of user that runs sql and stays open (until end_spawned).
  function d.session(user, sql)
    return spawn(string.format("(printf '%%s\\n' %s; exec sleep 600) | %s >/dev/null 2>&1", shq(sql), psql_args(state, user)))
  end
  -- The lab's nginx: requests through it (so that its logs hold what users met), its verdict,
  -- its reload (done when the old configuration's workers have exited), its own config restored.
  function d.traffic(path, n, headers)
    local http = require "http"
    for _ = 1, n do http.get(state.nginx.url .. path, { timeout = 2, headers = headers }) end
  end
  function d.proxied_healthy()
    local http = require "http"
    local r, err = http.get(state.nginx.url .. "/health", { timeout = 2 })
    if not r then return false, err end
    if r.status ~= 200 then return false, "GET /health through nginx answers " .. r.status end
    return service_healthy(state)
  end
  function d.reload_nginx()
    local n = state.nginx
    local old = {}   -- its workers: the children of its master
    for pid in (read_file(string.format("/proc/%d/task/%d/children", n.pid, n.pid)) or ""):gmatch("%d+") do
      old[#old + 1] = math.tointeger(tonumber(pid))
    end
    d.run { "nginx", "-c", n.conf, "-p", n.dir .. "/", "-e", n.error_log, "-s", "reload" }
    settle(function()
      for _, pid in ipairs(old) do if core.kill(pid, "0") then return false end end
      return true
    end, 10)
  end
  function d.restore_nginx()
    write_file(state.nginx.conf, lab.nginx_conf(state))
    if state.nginx.pid and core.kill(state.nginx.pid, "0") then d.reload_nginx() else lab.control("start", "nginx") end
  end
  -- A drill that cannot break the lab says why (shown as "cannot break the lab: ...").
  function d.fail(msg) error({ lab = msg }, 0) end
  return d
end

------------------------------------------------------------------------------ drill files
local HOOKS = { "inputs", "healthy", "repair", "cleanup" }

-- A drill file's declaration, checked: modes with what, breaks and expect.findings; inputs; the
-- optional healthy, repair, cleanup; standalone (needs no lab servers). nil, err when it is wrong.
local function validate(d, where)
  if type(d.modes) ~= "table" then   -- empty: nothing to rehearse yet (runbook new's template)
    return nil, where .. ": modes = { NAME = { what, breaks, expect }, ... } is missing"
  end
  for name, m in pairs(d.modes) do
    local at = where .. ": mode " .. tostring(name)
    if type(m) ~= "table" then return nil, at .. " must be a table" end
    if type(m.what) ~= "string" then return nil, at .. ": what (a line saying what is broken) is missing" end
    if type(m.breaks) ~= "function" then return nil, at .. ": breaks = function(lab) ... end is missing" end
    local e = m.expect
    if type(e) ~= "table" or type(e.findings) ~= "table" or #e.findings == 0 then
      return nil, at .. ": expect.findings must name the finding codes the runbook has to report"
    end
    for _, k in ipairs { "offers", "never" } do
      if e[k] ~= nil and type(e[k]) ~= "table" then return nil, at .. ": expect." .. k .. " must be a list of step ids" end
    end
  end
  for _, k in ipairs(HOOKS) do
    if d[k] ~= nil and type(d[k]) ~= "function" then return nil, where .. ": " .. k .. " must be a function(lab)" end
  end
  if type(d.inputs) ~= "function" then return nil, where .. ": inputs = function(lab, mode) ... end is missing" end
  return d
end

-- A drill file, loaded (in its sandbox) and checked: the declaration, or nil, err.
function M.load(path)
  local d, err = loader.load_drill(path)
  if d then d, err = validate(d, path) end
  if d then d.file = path end
  return d, err
end

-- The drill of a runbook: NAME or FILE -> the runbook, its drill, or nil, err (nil: no such drill).
function M.find(arg)
  local path, err = loader.resolve(arg)
  if not path then return nil, nil, err end
  local rb, lerr = loader.load(path)
  if not rb then return nil, nil, lerr end
  local dpath, derr = loader.resolve_drill(rb.name, path)
  if not dpath then return rb, nil, derr end
  local d, verr = M.load(dpath)
  if not d then return rb, nil, verr end
  return rb, d
end

-- The names of the drills on the search path.
local function names()
  local n = {}
  for _, e in ipairs(loader.all_drills()) do n[#n + 1] = e.name end
  return n
end

-- The mode names of a drill, sorted.
function M.modes(d)
  local modes = {}
  for k in pairs(d.modes) do modes[#modes + 1] = k end
  table.sort(modes)
  return modes
end

-- What the run showed against what the mode expects, from the transcript: finding codes (of
-- ctx:finding and of checks past a threshold) and the steps whose actions reached the gate.
-- Returns the list of what is missing or wrong (empty: the diagnosis is right).
function M.judge(expect, transcript)
  local records, err = audit.records(transcript)
  if not records then return { err } end
  local codes, offered = {}, {}
  for _, r in ipairs(records) do
    if r.code and (r.type == "check" or (r.type == "note" and r.level == "finding")) then codes[r.code] = true end
    if r.type == "plan" and r.step then offered[r.step] = true end
  end
  local wrong = {}
  for _, code in ipairs(expect.findings or {}) do
    if not codes[code] then wrong[#wrong + 1] = "no finding " .. code end
  end
  for _, step in ipairs(expect.offers or {}) do
    if not offered[step] then wrong[#wrong + 1] = "no action offered at step " .. step end
  end
  for _, step in ipairs(expect.never or {}) do
    if offered[step] then wrong[#wrong + 1] = "an action offered at step " .. step .. ", which this fault does not call for" end
  end
  return wrong
end

-- Named as exec names its transcripts (runbook, time, session), so that they sort by time.
local function transcript_path(name)
  local dir, err = core.transcript_dir()
  if not dir then return nil, err end
  return string.format("%s/%s-%s-%s.cast", dir, name, os.date("!%Y%m%dT%H%M%SZ"), engine.session_id())
end

local USAGE = "usage: runbook drill NAME|FILE [--mode MODE] [--auto] [--yes] [--yes-irreversible TARGET]\n"

function M.main(args)
  local name, mode, flags = nil, nil, {}
  local i = 1
  while i <= #args do
    local a = args[i]
    if a == "--auto" or a == "--yes" then flags[a:sub(3)] = true
    elseif a == "--mode" then i = i + 1; mode = args[i]
    elseif a == "--yes-irreversible" and args[i + 1] then i = i + 1; flags.yes_irreversible = args[i]
    elseif a:sub(1, 1) == "-" or name then core.err(USAGE) return 2
    else name = a end
    i = i + 1
  end
  if not name then core.err(USAGE) return 2 end
  local rb, drill, err = M.find(name)
  if not drill then
    if rb and err then core.err("runbook drill: " .. err .. "\n") return 2 end
    core.err("runbook drill: no drill for '" .. name .. "'" .. (rb and (" (no " .. rb.name .. ".drill.lua beside " ..
             rb.file .. " nor on the search path)") or "") ..
             " (drills: " .. table.concat(names(), ", ") .. ")\n")
    return 2
  end
  name = rb.name
  local modes = M.modes(drill)
  if #modes == 0 then
    core.err("runbook drill " .. name .. ": " .. drill.file .. " declares no modes yet (see doc/drills.md)\n")
    return 2
  end
  mode = mode or (drill.modes.down and "down" or modes[1])
  if not drill.modes[mode] then
    core.err("runbook drill " .. name .. ": no mode '" .. mode .. "' (modes: " .. table.concat(modes, ", ") .. ")\n")
    return 2
  end

  local state = lab.state()
  if not state and not drill.standalone then
    render.print("bringing the lab up first")
    local code = lab.main { "up" }
    if code ~= 0 then return code end
    state = lab.state()
  end
  state = state or {}
  -- Before: the lab as a whole answers (standalone drills bring their own system).
  local ok, why = settle(function()
    if drill.standalone then return true end
    return service_healthy(state)
  end, 10)
  if not ok then
    core.err("runbook drill: the lab is not healthy before the drill (" .. tostring(why) .. "); try: runbook lab down && runbook lab up\n")
    return 1
  end

  -- The hooks a drill may leave out: a lab drill's system is healthy when the lab's service is.
  local function hook(k, d, ...)
    if drill[k] then return drill[k](d, ...) end
    if k == "healthy" and not drill.standalone then return service_healthy(d.state) end
    return true
  end
  local spec = drill.modes[mode]
  local transcript, terr = transcript_path(name)
  if not transcript then core.err("runbook drill: " .. terr .. "\n") return 1 end
  render.print(render.bold("drill " .. name .. " (" .. mode .. "): " .. spec.what))
  local t0 = core.now()
  local d = api(state)
  local bok, berr = pcall(spec.breaks, d)
  if not bok then
    core.err("runbook drill " .. name .. ": cannot break the lab: " ..
             tostring(type(berr) == "table" and berr.lab or berr) .. "\n")
    pcall(hook, "cleanup", d)
    return 1
  end
  local iok, inputs = pcall(drill.inputs, d, mode)
  if not iok or type(inputs) ~= "table" then
    core.err("runbook drill " .. name .. ": " .. drill.file .. ": inputs(lab, mode) must return a table of the " ..
             "runbook's inputs: " .. tostring(inputs) .. "\n")
    pcall(hook, "repair", d)
    pcall(hook, "cleanup", d)
    return 1
  end
  local argv = { "runbook", "drill", name, "--mode", mode }
  if flags.yes_irreversible then argv[#argv + 1] = "--yes-irreversible" argv[#argv + 1] = flags.yes_irreversible end
  local code = engine.exec(rb, { auto = flags.auto, yes = flags.yes, yes_irreversible = flags.yes_irreversible,
                                 inputs = inputs, transcript = transcript, argv = argv })
  local wrong = M.judge(spec.expect, transcript)
  d = api(lab.state() or {})
  -- A diagnosis (the runbook is right to escalate: the fault is not its to fix) is judged by its
  -- finding; the drill repairs the lab itself, and an escalation counts as the expected outcome.
  if spec.diagnosis then
    render.print("drill " .. name .. ": the runbook diagnoses this one; the drill repairs the lab")
    pcall(hook, "repair", d)
    d = api(lab.state() or {})
    if code == 3 then code = 0 end
  end
  -- A check that raises (a server still frozen) is a "not healthy", not the drill's crash.
  local healthy, hwhy = settle(function()
    local hok, h, hw = pcall(hook, "healthy", d)
    if not hok then return false, tostring(h) end
    return h, hw
  end, 10)
  local secs = (core.now() - t0) / 1000
  pcall(hook, "cleanup", d)
  if #wrong > 0 then
    render.print(render.red(string.format("drill %s (%s): the runbook missed the fault: %s", name, mode,
                                          table.concat(wrong, "; "))))
    if not healthy then pcall(hook, "repair", d) end
    return code ~= 0 and code ~= 4 and code or 1
  end
  render.print(render.green(string.format("drill %s: the runbook reported %s", name, table.concat(spec.expect.findings, ", "))))
  if healthy then
    render.print(render.green(string.format("drill %s: healthy again after %.1f s", name, secs)))
    return code
  end
  render.print(render.red(string.format("drill %s: still broken after %.1f s: %s", name, secs, tostring(hwhy))))
  pcall(hook, "repair", d)
  return code ~= 0 and code or 1
end

return M
