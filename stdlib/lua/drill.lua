-- drill.lua - `runbook drill NAME`: rehearse an incident for real. Brings the lab up if needed,
-- breaks it the way the runbook is about, runs the runbook against the lab (inputs aimed at it,
-- service restarts mapped to `runbook lab restart ...`), then reports whether the system is
-- healthy again and how long it took. Interactive by default, for training; --auto --yes for tests.
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

local function redis_cli(state, ...)
  local argv = { "redis-cli", "-p", tostring(state.redis.port), ... }
  argv.quiet, argv.timeout = true, 10
  return assert(sh.read(argv))
end

M.drills = {
  ["redis-failure"] = {
    modes = {
      down = { "redis-server stopped: connections are refused", function(s) lab.control("stop", "redis") end },
      hung = { "redis-server frozen with SIGSTOP: it accepts but never answers",
               function(s) core.kill(s.redis.pid, "STOP") end },
    },
    inputs = function(s)
      return { url = s.redis.url, restart = lab_cmd("restart", "redis"), health = s.api.url .. "/health",
               timeout = "1s" }
    end,
    healthy = service_healthy,
    repair = function(s) core.kill(s.redis.pid, "CONT") lab.control("restart", "redis") end,
  },
}

-- The application's view: its role can connect (not only the operator's reserved slots).
local function app_connects(state)
  local pg = require "pg"
  local r, err = pg.ping(state.pg.app_url, { timeout = 2 })
  if not r then return false, err end
  return service_healthy(state)
end

-- Idle sessions of the application's role, held open by the drill while the runbook runs.
local held = {}
local function fill_connections(state)
  local pg = require "pg"
  for _ = 1, 60 do
    local conn = pg.connect(state.pg.app_url, { timeout = 2 })
    if not conn then break end
    held[#held + 1] = conn
  end
  core.sleep(1.2)   -- older than the drill's idle_age (1s): what the runbook may terminate
end

M.drills["database-unavailable"] = {
  modes = {
    down = { "postgres stopped: connections are refused", function() lab.control("stop", "pg") end },
    hung = { "the postmaster frozen with SIGSTOP: connects hang", function(s) core.kill(s.pg.pid, "STOP") end },
    full = { "every connection slot taken by idle sessions of the application's role", fill_connections },
  },
  inputs = function(s)
    return { url = s.pg.url, restart = lab_cmd("restart", "pg"), health = s.api.url .. "/health",
             idle_age = "1s", timeout = "1s" }
  end,
  healthy = app_connects,
  repair = function(s)
    for i = #held, 1, -1 do pcall(held[i].close, held[i]); held[i] = nil end
    core.kill(s.pg.pid, "CONT")
    lab.control("restart", "pg")
  end,
}

-- A process that holds a lot of memory: tail keeps a line that never ends. It runs in its own
-- session, so that the drill can remove it and its helpers as one process group.
local HOG_BYTES = "400M"
local function hog_pidfile() os.execute("mkdir -p " .. lab.dir()) return lab.dir() .. "/hog.pid" end

local function hog_group()
  local f = io.open(hog_pidfile())
  local pid = f and math.tointeger(tonumber(f:read("l")))
  if f then f:close() end
  return pid
end

local function start_hog()
  local pidfile = hog_pidfile()
  assert(os.execute(string.format(
    "setsid -f sh -c 'echo $$ > %s; (head -c %s /dev/zero; exec sleep 600) | tail >/dev/null' </dev/null >/dev/null 2>&1",
    pidfile, HOG_BYTES)))
  local deadline = core.now() + 5000
  repeat core.sleep(0.05) until (io.open(pidfile) and true) or core.now() > deadline
  -- The fault is injected once the memory is held, not while it is still being read.
  local sys = require "sys"
  settle(function()
    local group = hog_group()
    for _, p in ipairs(sys.processes { match = "tail", sample = 0, limit = 1000 } or {}) do
      if p.ppid == group and p.rss >= 380 * 1024 * 1024 then return true end
    end
    return false
  end, 10)
end

-- Healthy when the hog (tail, a child of the drill's shell) is gone.
local function hog_gone()
  local sys = require "sys"
  local group = hog_group()
  if not group then return true end
  for _, p in ipairs(sys.processes { match = "tail", sample = 0, limit = 1000 } or {}) do
    if p.ppid == group and p.command == "tail" then
      return false, string.format("tail (pid %d) still holds %s", p.pid, render.fmt.bytes(p.rss))
    end
  end
  return true
end

local function end_hog()
  local group = hog_group()
  if group then core.kill(-group, "KILL") end
  os.remove(hog_pidfile())
end

M.drills["memory-pressure"] = {
  standalone = true,   -- needs no lab servers
  modes = { hog = { "a process grabbing " .. HOG_BYTES .. " of memory", start_hog } },
  inputs = function() return { hog_pct = 1 } end,
  healthy = hog_gone,
  repair = end_hog,
  cleanup = end_hog,
}

-- A small filesystem that is nearly full: a tmpfs holding an old rotated log and a live one.
local function disk_dir() return lab.dir() .. "/disk" end

local function write_file(path, bytes)
  local f = assert(io.open(path, "wb"))
  local chunk = string.rep("x", 65536)
  for _ = 1, bytes // #chunk do f:write(chunk) end
  f:write(chunk:sub(1, bytes % #chunk))
  f:close()
end

local function fill_disk()
  if core.identity().user ~= "root" then
    error({ lab = "the disk-full drill mounts a small tmpfs, which needs root: run it as root, or inside " ..
                  "`unshare --user --map-root-user --mount`" }, 0)
  end
  local d = disk_dir()
  assert(os.execute("mkdir -p " .. d .. " && mount -t tmpfs -o size=8m runbook-drill " .. d))
  assert(os.execute("mkdir -p " .. d .. "/logs " .. d .. "/tmp"))
  write_file(d .. "/logs/app.log.1", 5 * 1024 * 1024)
  assert(os.execute("touch -d '30 days ago' " .. d .. "/logs/app.log.1"))
  write_file(d .. "/logs/app.log", 2 * 1024 * 1024 + 512 * 1024)
end

local function disk_ok()
  local sys = require "sys"
  local fs, err = sys.fs(disk_dir())
  if not fs then return false, err end
  if fs.used_pct >= 80 then return false, string.format("%s is %.0f%% full", fs.mount, fs.used_pct) end
  return true
end

local function unmount_disk() os.execute("umount " .. disk_dir() .. " 2>/dev/null") end

M.drills["disk-full"] = {
  standalone = true,
  modes = { full = { "an 8 MiB filesystem 95% full: an old rotated log and a live one", fill_disk } },
  inputs = function()
    local d = disk_dir()
    return { path = d, logs = d .. "/logs", tmp = d .. "/tmp", threshold = 80 }
  end,
  healthy = function(s)
    local f = io.open(disk_dir() .. "/logs")   -- absent: the drill's filesystem is not mounted
    if not f then return true end
    f:close()
    return disk_ok(s)
  end,
  repair = unmount_disk,
  cleanup = unmount_disk,
}

M.drills["api-down"] = {
  modes = {
    down = { "the lab's HTTP service stopped", function() lab.control("stop", "api") end },
    dependency = { "redis-server stopped: the service reports a dependency down",
                   function() lab.control("stop", "redis") end, diagnosis = true },
  },
  inputs = function(s)
    return { url = s.api.url .. "/health", database = s.pg.url, cache = s.redis.url,
             restart = lab_cmd("restart", "api"), process = "lab serve", timeout = "1s" }
  end,
  healthy = service_healthy,
  -- A dependency outage is not the service's to fix: api-down escalates, the drill repairs it.
  repair = function() lab.control("restart", "redis") lab.control("restart", "api") end,
}

M.drills["triage"] = {
  modes = { cache = { "redis-server stopped", function() lab.control("stop", "redis") end, diagnosis = true } },
  inputs = function(s) return { url = s.api.url .. "/health", database = s.pg.url, cache = s.redis.url, timeout = "1s" } end,
  healthy = service_healthy,
  repair = function() lab.control("restart", "redis") end,
}

local function names()
  local n = {}
  for k in pairs(M.drills) do n[#n + 1] = k end
  table.sort(n)
  return n
end

local USAGE = "usage: runbook drill NAME [--mode MODE] [--auto] [--yes]\n"

function M.main(args)
  local name, mode, flags = nil, nil, {}
  local i = 1
  while i <= #args do
    local a = args[i]
    if a == "--auto" or a == "--yes" then flags[a:sub(3)] = true
    elseif a == "--mode" then i = i + 1; mode = args[i]
    elseif a:sub(1, 1) == "-" or name then core.err(USAGE) return 2
    else name = a end
    i = i + 1
  end
  local drill = name and M.drills[name]
  if not drill then
    core.err((name and ("runbook drill: no drill for '" .. name .. "'") or USAGE:gsub("\n$", "")) ..
             " (drills: " .. table.concat(names(), ", ") .. ")\n")
    return 2
  end
  local modes = {}
  for k in pairs(drill.modes) do modes[#modes + 1] = k end
  table.sort(modes)
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
  local ok, why = settle(function() return drill.healthy(state) end, 10)
  if not ok then
    core.err("runbook drill: the lab is not healthy before the drill (" .. tostring(why) .. "); try: runbook lab down && runbook lab up\n")
    return 1
  end

  local path, err = loader.resolve(name)
  local rb
  if path then rb, err = loader.load(path) end
  if not rb then core.err("runbook drill: " .. err .. "\n") return 2 end

  local what, breaks = drill.modes[mode][1], drill.modes[mode][2]
  render.print(render.bold("drill " .. name .. " (" .. mode .. "): " .. what))
  local t0 = core.now()
  local bok, berr = pcall(breaks, state)
  if not bok then
    core.err("runbook drill " .. name .. ": cannot break the lab: " ..
             tostring(type(berr) == "table" and berr.lab or berr) .. "\n")
    if drill.cleanup then pcall(drill.cleanup, state) end
    return 1
  end
  local code = engine.exec(rb, { auto = flags.auto, yes = flags.yes, inputs = drill.inputs(state),
                                 argv = { "runbook", "drill", name, "--mode", mode } })
  state = lab.state() or {}
  -- A diagnosis (the runbook is right to escalate: the fault is not its to fix) is judged by its
  -- finding; the drill repairs the lab itself, and an escalation counts as the expected outcome.
  local diagnosis = drill.modes[mode].diagnosis
  if diagnosis then
    render.print("drill " .. name .. ": the runbook diagnoses this one; the drill repairs the lab")
    pcall(drill.repair, state)
    state = lab.state() or {}
    if code == 3 then code = 0 end
  end
  local healthy, hwhy = settle(function() return drill.healthy(state) end, 10)
  local secs = (core.now() - t0) / 1000
  if drill.cleanup then pcall(drill.cleanup, state) end
  if healthy then
    render.print(render.green(string.format("drill %s: healthy again after %.1f s", name, secs)))
    return code
  end
  render.print(render.red(string.format("drill %s: still broken after %.1f s: %s", name, secs, tostring(hwhy))))
  pcall(drill.repair, state)
  return code ~= 0 and code or 1
end

return M
