-- drill.lua - `runbook drill NAME`: rehearse an incident for real. Brings the lab up if needed,
-- breaks it the way the runbook is about, runs the runbook against the lab (inputs aimed at it,
-- service restarts mapped to `runbook lab restart ...`), then judges the run: the findings the
-- runbook must report (by code), the actions it must and must not offer, and whether the system is
-- healthy again, and how long it took. Interactive by default, for training; --auto --yes for tests.
--
-- A drill is hermetic: what it breaks and what the runbook is aimed at are the lab's own processes
-- and ports. Each mode is data: { what, breaks, diagnosis, expect = { findings = { codes },
-- offers = { step ids }, never = { step ids } } }; an action is "offered" at a step when its plan
-- reached the gate there (confirmed or not).
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

local function redis_cli(state, ...)
  local argv = { "redis-cli", "-p", tostring(state.redis.port), ... }
  argv.quiet, argv.timeout = true, 10
  return assert(sh.read(argv))
end

M.drills = {
  ["redis-failure"] = {
    modes = {
      down = { what = "redis-server stopped: connections are refused", breaks = function() lab.control("stop", "redis") end,
               expect = { findings = { "redis.down" }, offers = { "restart" }, never = { "flush", "maxmemory" } } },
      hung = { what = "redis-server frozen with SIGSTOP: it accepts but never answers",
               breaks = function(s) core.kill(s.redis.pid, "STOP") end,
               expect = { findings = { "redis.hung" }, offers = { "restart" }, never = { "flush", "maxmemory" } } },
      slow = { what = "three 30 ms scripts have blocked the server (the slow log records them)", breaks = function(s)
        redis_cli(s, "SLOWLOG", "RESET")
        for _ = 1, 3 do
          redis_cli(s, "EVAL", "local t0 = redis.call('TIME') repeat local t = redis.call('TIME') " ..
                    "until (t[1] - t0[1]) * 1000000 + (t[2] - t0[2]) > 30000", "0")
        end
      end, diagnosis = true,
      expect = { findings = { "redis.slowlog" }, never = { "restart", "flush", "maxmemory" } } },
      -- FLUSHDB is irreversible: offered, but --yes does not confirm it (--yes-irreversible URL does).
      oom = { what = "maxmemory 2mb reached with allkeys-lru: keys are being evicted", breaks = function(s)
        redis_cli(s, "CONFIG", "SET", "maxmemory-policy", "allkeys-lru")
        redis_cli(s, "CONFIG", "SET", "maxmemory", "2mb")
        redis_cli(s, "EVAL", "for i = 1, tonumber(ARGV[1]) do redis.call('SET', 'drill:' .. i, string.rep('x', 200)) end",
                  "0", "30000")
      end, expect = { findings = { "redis.memory_full" }, offers = { "flush", "maxmemory", "persist" },
                      never = { "restart" } } },
    },
    inputs = function(s)
      return { url = s.redis.url, restart = lab_cmd("restart", "redis"), health = s.api.url .. "/health",
               timeout = "1s", maxmemory = "64mb", sample = "1s" }
    end,
    healthy = function(s)
      local info = redis_cli(s, "INFO", "memory").stdout
      local used, max = tonumber(info:match("used_memory:(%d+)")), tonumber(info:match("\nmaxmemory:(%d+)"))
      if used and max and max > 0 and used >= max * 0.95 then return false, "memory is still at maxmemory" end
      return service_healthy(s)
    end,
    repair = function() lab.control("restart", "redis") end,   -- a stopped (SIGSTOP) one is continued first
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
    down = { what = "postgres stopped: connections are refused", breaks = function() lab.control("stop", "pg") end,
             expect = { findings = { "pg.down" }, offers = { "restart" }, never = { "idle" } } },
    hung = { what = "the postmaster frozen with SIGSTOP: connects hang", breaks = function(s) core.kill(s.pg.pid, "STOP") end,
             expect = { findings = { "pg.hung" }, offers = { "restart" }, never = { "idle" } } },
    full = { what = "every connection slot taken by idle sessions of the application's role", breaks = fill_connections,
             expect = { findings = { "pg.connections_full" }, offers = { "idle" }, never = { "restart" } } },
  },
  -- As a team runs it: the application's role (DATABASE_URL), and a superuser for the remediation.
  inputs = function(s)
    return { url = s.pg.app_url, admin_url = s.pg.url, restart = lab_cmd("restart", "pg"),
             health = s.api.url .. "/health", idle_age = "1s", timeout = "1s" }
  end,
  healthy = app_connects,
  repair = function(s)
    for i = #held, 1, -1 do pcall(held[i].close, held[i]); held[i] = nil end
    lab.control("restart", "pg")
  end,
}

-- A process that holds a lot of memory: tail keeps a line that never ends. It runs in its own
-- session, so that the drill can remove it and its helpers as one process group, under a name of
-- its own (a link to tail), which is what the runbook is told to match: nothing else on the
-- machine is ever a candidate.
local HOG_BYTES = "400M"
local HOG_NAME = "runbook-lab-hog"
local function hog_pidfile() os.execute("mkdir -p " .. lab.dir()) return lab.dir() .. "/hog.pid" end

local function hog_group()
  local f = io.open(hog_pidfile())
  local pid = f and math.tointeger(tonumber(f:read("l")))
  if f then f:close() end
  return pid
end

local function start_hog()
  local pidfile = hog_pidfile()
  local exe = lab.dir() .. "/" .. HOG_NAME
  assert(os.execute(string.format("ln -sf \"$(command -v tail)\" %s", exe)))
  assert(os.execute(string.format(
    "setsid -f sh -c 'echo $$ > %s; (head -c %s /dev/zero; exec sleep 600) | %s >/dev/null' </dev/null >/dev/null 2>&1",
    pidfile, HOG_BYTES, exe)))
  local deadline = core.now() + 5000
  repeat core.sleep(0.05) until (io.open(pidfile) and true) or core.now() > deadline
  -- The fault is injected once the memory is held, not while it is still being read.
  local sys = require "sys"
  settle(function()
    local group = hog_group()
    for _, p in ipairs(sys.processes { match = HOG_NAME, sample = 0, limit = 1000 } or {}) do
      if p.ppid == group and p.rss >= 380 * 1024 * 1024 then return true end
    end
    return false
  end, 10)
end

-- Healthy when the hog (a child of the drill's shell) is gone.
local function hog_gone()
  local sys = require "sys"
  local group = hog_group()
  if not group then return true end
  for _, p in ipairs(sys.processes { match = HOG_NAME, sample = 0, limit = 1000 } or {}) do
    if p.ppid == group and p.command == HOG_NAME then
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
  modes = { hog = { what = "a process grabbing " .. HOG_BYTES .. " of memory", breaks = start_hog,
                    expect = { findings = { "memory.high", "memory.hog" }, offers = { "relieve" } } } },
  -- The thresholds are low because the lab's hog is small beside the machine's memory; match, the
  -- hog's path in this lab's directory, keeps every other process (another lab's hog too) out of reach.
  inputs = function() return { warn = 1, hog_pct = 1, match = lab.dir() .. "/" .. HOG_NAME } end,
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
  if core.identity().uid ~= 0 then
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
  modes = { full = { what = "an 8 MiB filesystem 95% full: an old rotated log and a live one", breaks = fill_disk,
                     expect = { findings = { "disk.full", "disk.old_logs" }, offers = { "old-logs" } } } },
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
    down = { what = "the lab's HTTP service stopped", breaks = function() lab.control("stop", "api") end,
             expect = { findings = { "api.down" }, offers = { "restart" } } },
    dependency = { what = "redis-server stopped: the service reports a dependency down",
                   breaks = function() lab.control("stop", "redis") end, diagnosis = true,
                   expect = { findings = { "api.failing", "api.dependency_down" }, never = { "restart" } } },
  },
  -- The lab is the platform: its own restart counter stands for systemd's NRestarts.
  inputs = function(s)
    return { url = s.api.url .. "/health", database = s.pg.app_url, cache = s.redis.url,
             restart = lab_cmd("restart", "api"), process = "lab serve --port " .. s.api.port, timeout = "1s",
             restarts = lab_cmd("restarts", "api"), window = "1s" }
  end,
  healthy = service_healthy,
  -- A dependency outage is not the service's to fix: api-down escalates, the drill repairs it.
  repair = function() lab.control("restart", "redis") lab.control("restart", "api") end,
}

M.drills["triage"] = {
  modes = { cache = { what = "redis-server stopped", breaks = function() lab.control("stop", "redis") end, diagnosis = true,
                      expect = { findings = { "triage.cache", "triage.severity" } } } },
  inputs = function(s) return { url = s.api.url .. "/health", database = s.pg.url, cache = s.redis.url, timeout = "1s" } end,
  healthy = service_healthy,
  repair = function() lab.control("restart", "redis") end,
}

M.drills["high-error-rate"] = {
  modes = { cache = { what = "redis-server stopped: every request to /health fails with 503",
                      breaks = function() lab.control("stop", "redis") end, diagnosis = true,
                      expect = { findings = { "http.errors" } } } },
  inputs = function(s) return { url = s.api.url .. "/health", requests = 20, timeout = "2s" } end,
  healthy = service_healthy,
  repair = function() lab.control("restart", "redis") end,
}

M.drills["high-latency"] = {
  modes = { stalled = { what = "the lab's HTTP service frozen with SIGSTOP: requests wait for their deadline",
                        breaks = function(s) core.kill(s.api.pid, "STOP") end, diagnosis = true,
                        expect = { findings = { "http.no_success" } } } },
  inputs = function(s) return { url = s.api.url .. "/health", requests = 10, timeout = "1s" } end,
  healthy = service_healthy,
  repair = function(s) if s.api.pid then core.kill(s.api.pid, "CONT") end end,
}

-- Jobs nobody consumes; the "workers" the runbook may restart are the drill's stand-in, a command
-- that takes every job off the queue.
M.drills["queue-backlog"] = {
  modes = { stuck = { what = "50 jobs queued (RPUSH) and no worker consuming them", breaks = function(s)
    redis_cli(s, "DEL", "drill:jobs")
    local argv = { "drill:jobs" }
    for i = 1, 50 do argv[#argv + 1] = string.format('{"id":%d,"enqueued_at":%d}', i, os.time() - 60 + i) end
    redis_cli(s, "RPUSH", table.unpack(argv))
  end, expect = { findings = { "queue.depth", "queue.stuck" }, offers = { "restart" } } } },
  inputs = function(s)
    return { url = s.redis.url, queue = "drill:jobs", watch = "1s", producer = "rpush",
             restart = string.format("redis-cli -p %d DEL drill:jobs", s.redis.port) }
  end,
  healthy = function(s)
    local n = tonumber((redis_cli(s, "LLEN", "drill:jobs").stdout:match("%d+")))
    if n and n > 0 then return false, n .. " jobs still queued" end
    return true
  end,
  repair = function(s) redis_cli(s, "DEL", "drill:jobs") end,
}

-- Sessions a drill opens with psql and keeps open (each in its own process group, recorded so
-- that cleanup can end them all): idle transactions, lock holders, waiters.
local function groups_file() os.execute("mkdir -p " .. lab.dir()) return lab.dir() .. "/sessions.pids" end

local function shq(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

local function psql_args(s, user)
  return string.format("psql -X -q -h 127.0.0.1 -p %d -U %s -d %s", s.pg.port, user, s.pg.database)
end

local function open_session(s, user, sql)
  local script = string.format("echo $$ >> %s; (printf '%%s\\n' %s; exec sleep 600) | %s >/dev/null 2>&1",
                               groups_file(), shq(sql), psql_args(s, user))
  assert(os.execute("setsid -f sh -c " .. shq(script) .. " </dev/null >/dev/null 2>&1"))
end

local function psql(s, sql)
  local r = assert(sh.read { "sh", "-c", psql_args(s, s.pg.user) .. " -At -c " .. shq(sql), quiet = true, timeout = 10 })
  return (r.stdout:gsub("%s+$", ""))
end

local function end_sessions()
  local f = io.open(groups_file())
  if not f then return end
  for line in f:lines() do
    local pid = math.tointeger(tonumber(line))
    if pid then core.kill(-pid, "KILL") end
  end
  f:close()
  os.remove(groups_file())
end

local function count_where(s, cond)
  return tonumber(psql(s, "SELECT count(*) FROM pg_stat_activity WHERE " .. cond)) or -1
end

M.drills["connection-pool-exhausted"] = {
  modes = { stuck = { what = "5 sessions of the application's role idle inside a transaction", breaks = function(s)
    for _ = 1, 5 do open_session(s, "app", "BEGIN; SELECT 1;") end
    settle(function() return count_where(s, "state = 'idle in transaction'") >= 5 end, 10)
    core.sleep(1.2)   -- older than the drill's txn_age
  end, expect = { findings = { "pg.idle_in_transaction" }, offers = { "terminate" } } } },
  inputs = function(s) return { url = s.pg.url, txn_age = "1s" } end,
  healthy = function(s)
    local n = count_where(s, "state = 'idle in transaction'")
    if n ~= 0 then return false, n .. " sessions idle in transaction" end
    return true
  end,
  repair = end_sessions, cleanup = end_sessions,
}

local function end_lock_backends(s)
  psql(s, "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity " ..
          "WHERE pid <> pg_backend_pid() AND (query LIKE '%drill_t%' OR query LIKE '%pg_sleep(600)%')")
end

M.drills["slow-queries"] = {
  modes = { locked = { what = "a transaction holds an exclusive lock and sleeps; a query waits for it", breaks = function(s)
    psql(s, "DROP TABLE IF EXISTS drill_t; CREATE TABLE drill_t (id int)")
    open_session(s, s.pg.user, "BEGIN; LOCK TABLE drill_t IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(600);")
    settle(function() return count_where(s, "query LIKE 'BEGIN; LOCK TABLE drill_t%' OR query LIKE '%pg_sleep(600)%'") >= 1 end, 10)
    open_session(s, s.pg.user, "SELECT count(*) FROM drill_t;")
    settle(function() return count_where(s, "wait_event_type = 'Lock'") >= 1 end, 10)
    core.sleep(1.2)   -- longer than the drill's min
  end, expect = { findings = { "pg.lock_waits" }, offers = { "cancel" } } } },
  inputs = function(s) return { url = s.pg.url, min = "1s" } end,
  healthy = function(s)
    local n = count_where(s, "wait_event_type = 'Lock'")
    if n ~= 0 then return false, n .. " sessions wait on a lock" end
    return true
  end,
  -- A backend inside pg_sleep does not notice that its client was killed: it is terminated too.
  repair = function(s) end_sessions() pcall(end_lock_backends, s) end,
  cleanup = function(s) end_sessions() pcall(end_lock_backends, s) pcall(psql, s, "DROP TABLE IF EXISTS drill_t") end,
}

M.drills["migration-failure"] = {
  modes = { behind = { what = "the schema is at migration a1b2c3, the code expects d4e5f6 and a table orders", breaks = function(s)
    psql(s, "DROP TABLE IF EXISTS orders; DROP TABLE IF EXISTS alembic_version; " ..
            "CREATE TABLE alembic_version (version_num varchar(32) PRIMARY KEY); " ..
            "INSERT INTO alembic_version VALUES ('a1b2c3')")
  end, expect = { findings = { "migration.behind", "migration.relations_missing" }, offers = { "migrate" },
                  never = { "rollback" } } } },
  -- The code's head comes from the code (what `alembic heads` prints), not from an input; the
  -- downgrade is given, as a team would, and must not be offered once the upgrade succeeded.
  inputs = function(s)
    return { url = s.pg.url, heads = [[sh -c "echo 'd4e5f6 (head)'"]], relations = "orders",
             downgrade = psql_args(s, s.pg.user) .. [[ -c "DROP TABLE orders"]],
             migrate = psql_args(s, s.pg.user) .. [[ -c "CREATE TABLE orders (id int); UPDATE alembic_version SET version_num = 'd4e5f6'"]] }
  end,
  healthy = function(s)
    local v = psql(s, "SELECT version_num FROM alembic_version")
    local orders = psql(s, "SELECT to_regclass('orders') IS NOT NULL")
    if v ~= "d4e5f6" or orders ~= "t" then return false, "at " .. v .. (orders ~= "t" and ", orders missing" or "") end
    return true
  end,
  repair = function(s) psql(s, "DROP TABLE IF EXISTS orders; DROP TABLE IF EXISTS alembic_version") end,
  cleanup = function(s) pcall(psql, s, "DROP TABLE IF EXISTS orders; DROP TABLE IF EXISTS alembic_version") end,
}

-- An HTTPS server whose certificate expires in 3 days (openssl s_server, self-signed).
local function tls_dir() return lab.dir() .. "/tls" end
M.drills["cert-expiry"] = {
  standalone = true,
  modes = { expiring = { what = "a self-signed certificate that expires in 3 days", breaks = function()
    local d = tls_dir()
    assert(os.execute("mkdir -p " .. d))
    assert(sh.read { "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "3", "-subj", "/CN=localhost",
                     "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost", "-keyout", d .. "/key.pem",
                     "-out", d .. "/cert.pem", quiet = true, timeout = 30, check = true })
    M.tls_port = core.free_port()
    local script = string.format("echo $$ >> %s; exec openssl s_server -quiet -accept 127.0.0.1:%d -cert %s/cert.pem -key %s/key.pem -www",
                                 groups_file(), M.tls_port, d, d)
    assert(os.execute("setsid -f sh -c " .. shq(script) .. " </dev/null >/dev/null 2>&1"))
    local tcp = require "tcp"
    settle(function() return tcp.connect("127.0.0.1", M.tls_port, { timeout = 0.5 }) ~= nil end, 10)
  end, diagnosis = true, expect = { findings = { "tls.expiry", "tls.untrusted" } } } },
  inputs = function() return { url = string.format("https://127.0.0.1:%d/", M.tls_port) } end,
  healthy = function() return true end,
  repair = end_sessions, cleanup = end_sessions,
}

-- The web-facing runbooks' drills (lab/drill_web.lua), against the lab's nginx.
for name, d in pairs(require("drill_web") { lab_cmd = lab_cmd, settle = settle, service_healthy = service_healthy }) do
  M.drills[name] = d
end

local function names()
  local n = {}
  for k in pairs(M.drills) do n[#n + 1] = k end
  table.sort(n)
  return n
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

local USAGE = "usage: runbook drill NAME [--mode MODE] [--auto] [--yes] [--yes-irreversible TARGET]\n"

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
  -- Before: the lab as a whole answers (standalone drills bring their own system).
  local ok, why = settle(function()
    if drill.standalone then return true end
    return service_healthy(state)
  end, 10)
  if not ok then
    core.err("runbook drill: the lab is not healthy before the drill (" .. tostring(why) .. "); try: runbook lab down && runbook lab up\n")
    return 1
  end

  local path, err = loader.resolve(name)
  local rb
  if path then rb, err = loader.load(path) end
  if not rb then core.err("runbook drill: " .. err .. "\n") return 2 end

  local spec = drill.modes[mode]
  local what, breaks = spec.what, spec.breaks
  if not (spec.expect and spec.expect.findings and #spec.expect.findings > 0) then
    error("drill " .. name .. " --mode " .. mode .. ": expect.findings must name what the runbook has to report", 0)
  end
  local transcript, terr = transcript_path(name)
  if not transcript then core.err("runbook drill: " .. terr .. "\n") return 1 end
  render.print(render.bold("drill " .. name .. " (" .. mode .. "): " .. what))
  local t0 = core.now()
  local bok, berr = pcall(breaks, state)
  if not bok then
    core.err("runbook drill " .. name .. ": cannot break the lab: " ..
             tostring(type(berr) == "table" and berr.lab or berr) .. "\n")
    if drill.cleanup then pcall(drill.cleanup, state) end
    return 1
  end
  local argv = { "runbook", "drill", name, "--mode", mode }
  if flags.yes_irreversible then argv[#argv + 1] = "--yes-irreversible" argv[#argv + 1] = flags.yes_irreversible end
  local code = engine.exec(rb, { auto = flags.auto, yes = flags.yes, yes_irreversible = flags.yes_irreversible,
                                 inputs = drill.inputs(state, mode), transcript = transcript, argv = argv })
  local wrong = M.judge(spec.expect, transcript)
  state = lab.state() or {}
  -- A diagnosis (the runbook is right to escalate: the fault is not its to fix) is judged by its
  -- finding; the drill repairs the lab itself, and an escalation counts as the expected outcome.
  local diagnosis = spec.diagnosis
  if diagnosis then
    render.print("drill " .. name .. ": the runbook diagnoses this one; the drill repairs the lab")
    pcall(drill.repair, state)
    state = lab.state() or {}
    if code == 3 then code = 0 end
  end
  -- A check that raises (a server still frozen) is a "not healthy", not the drill's crash.
  local healthy, hwhy = settle(function()
    local ok, h, why = pcall(drill.healthy, state)
    if not ok then return false, tostring(h) end
    return h, why
  end, 10)
  local secs = (core.now() - t0) / 1000
  if drill.cleanup then pcall(drill.cleanup, state) end
  if #wrong > 0 then
    render.print(render.red(string.format("drill %s (%s): the runbook missed the fault: %s", name, mode,
                                          table.concat(wrong, "; "))))
    if not healthy then pcall(drill.repair, state) end
    return code ~= 0 and code ~= 4 and code or 1
  end
  render.print(render.green(string.format("drill %s: the runbook reported %s", name, table.concat(spec.expect.findings, ", "))))
  if healthy then
    render.print(render.green(string.format("drill %s: healthy again after %.1f s", name, secs)))
    return code
  end
  render.print(render.red(string.format("drill %s: still broken after %.1f s: %s", name, secs, tostring(hwhy))))
  pcall(drill.repair, state)
  return code ~= 0 and code or 1
end

return M
