-- lab.lua - `runbook lab up | status | down`: a real PostgreSQL, Redis, HTTP service and nginx on
-- 127.0.0.1 and free ports, under the user's state directory, for rehearsing incidents (drills).
-- Nothing runs as a system service; `down` stops everything by PID and removes the data.
-- The state of a running lab is one JSON file, lab.json, that drills read to aim runbooks at it.
local core   = require "core"
local cjson  = require "cjson"
local render = require "render"
local sh     = require "sh"
local tcp    = require "tcp"

local M = {}

local PGBIN = "/usr/lib/postgresql/15/bin"
local START_TIMEOUT = 30

function M.dir() return core.state_dir("lab") end
local function state_file() return M.dir() .. "/lab.json" end

local function fail(fmt, ...) error({ lab = string.format(fmt, ...) }, 0) end

-- Runs a setup command quietly; a failure names the command and its first line of output.
local function run(argv, timeout)
  argv.quiet, argv.timeout = true, timeout or START_TIMEOUT
  core.keep_leftovers(true)     -- the daemons these commands start are the lab
  local ok, r, err = pcall(sh.read, argv)
  core.keep_leftovers(false)
  if not ok then error(r, 0) end
  if not r then fail("%s", err) end
  if not r.ok then
    local why = (r.stderr ~= "" and r.stderr or r.stdout):match("[^\n]+") or ("exit " .. tostring(r.code))
    fail("%s failed: %s", argv[1] == "runuser" and argv[5] or argv[1], why)
  end
  return r
end

-- PostgreSQL refuses to run as root: as root, its commands run as the postgres user.
local function as_pg(argv)
  if core.identity().uid ~= 0 then return argv end
  local wrapped = { "runuser", "-u", "postgres", "--" }
  for _, a in ipairs(argv) do wrapped[#wrapped + 1] = a end
  return wrapped
end

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end
M.read_file = read_file   -- a file's text, nil when absent (also the drills')

local function write_state(state)
  local tmp = state_file() .. ".tmp"
  local f = assert(io.open(tmp, "wb"))
  f:write(cjson.encode(state), "\n")
  f:close()
  assert(os.rename(tmp, state_file()))
end

-- JSON has no integers: ports and pids come back as floats unless made whole again.
local function integers(t)
  for k, v in pairs(t) do
    if type(v) == "table" then integers(v) elseif type(v) == "number" then t[k] = math.tointeger(v) or v end
  end
  return t
end

function M.state()
  local s = read_file(state_file())
  if not s then return nil end
  local ok, state = pcall(cjson.decode, s)
  return ok and type(state) == "table" and integers(state) or nil
end

local function pid_from(path)
  local s = read_file(path)
  return s and math.tointeger(tonumber(s:match("^%s*(%d+)")))
end

local function alive(pid) return pid ~= nil and core.kill(pid, "0") == true end

-- Waits (bounded) until port accepts a connection; false at the deadline.
local function wait_port(port, seconds)
  local deadline = core.now() + seconds * 1000
  repeat
    if tcp.connect("127.0.0.1", port, { timeout = 0.5 }) then return true end
    core.sleep(0.05)
  until core.now() > deadline
  return false
end

------------------------------------------------------------------------------ the components

local function init_postgres(state)
  local pg = { port = core.free_port(), user = "lab", database = "postgres" }
  if core.identity().uid == 0 then
    -- The postgres user cannot enter root's home: its data lives in a private directory under /tmp.
    pg.data = run({ "mktemp", "-d", "/tmp/runbook-lab-pg.XXXXXX" }).stdout:gsub("%s+$", "")
    run { "chown", "postgres:", pg.data }
  else
    pg.data = M.dir() .. "/pg"
    run { "mkdir", "-p", pg.data }
  end
  pg.data = pg.data .. "/data"
  pg.url = string.format("postgresql://%s@127.0.0.1:%d/%s", pg.user, pg.port, pg.database)
  state.pg = pg
  write_state(state)
  run(as_pg { PGBIN .. "/initdb", "-D", pg.data, "-U", pg.user, "--auth=trust", "-E", "UTF8", "--no-instructions" }, 60)
end

local function start_postgres(state)
  local pg = state.pg
  run(as_pg { PGBIN .. "/pg_ctl", "-D", pg.data, "-l", pg.data .. "/server.log", "-w", "-t", "30", "-o",
              string.format("-c listen_addresses=127.0.0.1 -p %d -k %s -c max_connections=40", pg.port, pg.data),
              "start" })
  pg.pid = pid_from(pg.data .. "/postmaster.pid")
  if not pg.app_url then
    -- The application's role: not a superuser, so that filling max_connections with it leaves the
    -- reserved slots to the operator, as in production.
    run { "psql", "-X", "-q", "-h", "127.0.0.1", "-p", tostring(pg.port), "-U", pg.user, "-d", pg.database,
          "-c", "CREATE ROLE app LOGIN" }
    pg.app_url = string.format("postgresql://app@127.0.0.1:%d/%s", pg.port, pg.database)
  end
end

local function init_redis(state)
  local r = { port = core.free_port(), dir = M.dir() .. "/redis" }
  r.pidfile = r.dir .. "/redis.pid"
  r.url = string.format("redis://127.0.0.1:%d/0", r.port)
  state.redis = r
  write_state(state)
  run { "mkdir", "-p", r.dir }
end

-- Redis reads a config file of its own, as in production, so that CONFIG REWRITE has one to persist to.
local function redis_conf(r)
  local path = r.dir .. "/redis.conf"
  local f = io.open(path, "r")
  if f then f:close() return path end
  f = assert(io.open(path, "w"))
  f:write("# the lab's Redis (runbook lab); CONFIG REWRITE persists settings here\n")
  f:close()
  return path
end

local function start_redis(state)
  local r = state.redis
  os.remove(r.pidfile)
  run { "redis-server", redis_conf(r), "--port", tostring(r.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
        "--dir", r.dir, "--daemonize", "yes", "--pidfile", r.pidfile, "--logfile", r.dir .. "/redis.log",
        "--maxmemory", "64mb" }
  if not wait_port(r.port, START_TIMEOUT) then fail("redis-server did not answer on port %d", r.port) end
  local deadline = core.now() + 5000
  repeat   -- the daemon writes its pidfile a moment after it listens
    r.pid = pid_from(r.pidfile)
    if not r.pid then core.sleep(0.02) end
  until r.pid or core.now() > deadline
end

local function init_api(state)
  state.api = { port = core.free_port(), pidfile = M.dir() .. "/api.pid", log = M.dir() .. "/api.log" }
  state.api.url = string.format("http://127.0.0.1:%d", state.api.port)
  write_state(state)
end

local function start_api(state)
  local a = state.api
  run { core.exe(), "lab", "serve", "--port", tostring(a.port), "--pg-port", tostring(state.pg.port),
        "--redis-port", tostring(state.redis.port), "--daemon", "--pidfile", a.pidfile, "--log", a.log }
  a.pid = pid_from(a.pidfile)
end

-- nginx (Debian's) in front of the lab service, as in production: its own config, logs and pid
-- under the lab's directory, a free loopback port. /ws passes the WebSocket Upgrade on; the
-- access log records the upstream's status and times, which the proxy runbooks read.
local NGINX_CONF = [[
# the lab's nginx (runbook lab): in front of the lab service
%s
worker_processes 1;
pid %s/nginx.pid;
error_log %s/error.log warn;
events { worker_connections 128; }
http {
  log_format lab '$remote_addr - - [$time_local] "$request" $status $body_bytes_sent "$http_referer" '
                 '"$http_user_agent" rt=$request_time us=$upstream_status ut=$upstream_response_time';
  access_log %s/access.log lab;
  client_body_temp_path %s/tmp/body;
  proxy_temp_path %s/tmp/proxy;
  fastcgi_temp_path %s/tmp/fastcgi;
  uwsgi_temp_path %s/tmp/uwsgi;
  scgi_temp_path %s/tmp/scgi;
  map $http_upgrade $connection_upgrade { default upgrade; '' close; }
  upstream lab_api { server 127.0.0.1:%d; }
  server {
    listen 127.0.0.1:%d;
    location /ws {
      proxy_pass http://lab_api;
      proxy_http_version 1.1;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection $connection_upgrade;
      proxy_read_timeout 3600s;
    }
    location / {
      proxy_pass http://lab_api;
      proxy_connect_timeout 2s;
      proxy_read_timeout 60s;
    }
  }
}
]]

function M.nginx_conf(state)
  local n = state.nginx
  local d = n.dir
  return string.format(NGINX_CONF, core.identity().uid == 0 and "user root;" or "", d, d, d, d, d, d, d, d,
                       state.api.port, n.port)
end

local function init_nginx(state)
  local n = { port = core.free_port(), dir = M.dir() .. "/nginx" }
  n.conf, n.pidfile = n.dir .. "/nginx.conf", n.dir .. "/nginx.pid"
  n.access_log, n.error_log = n.dir .. "/access.log", n.dir .. "/error.log"
  n.url = string.format("http://127.0.0.1:%d", n.port)
  state.nginx = n
  write_state(state)
  run { "mkdir", "-p", n.dir .. "/tmp" }
  local f = assert(io.open(n.conf, "w"))
  f:write(M.nginx_conf(state))
  f:close()
end

local function start_nginx(state)
  local n = state.nginx
  os.remove(n.pidfile)
  run { "nginx", "-c", n.conf, "-p", n.dir .. "/", "-e", n.error_log }
  if not wait_port(n.port, START_TIMEOUT) then fail("nginx did not answer on port %d", n.port) end
  local deadline = core.now() + 5000
  repeat
    n.pid = pid_from(n.pidfile)
    if not n.pid then core.sleep(0.02) end
  until n.pid or core.now() > deadline
end

local COMPONENTS = {
  pg    = { init = init_postgres, start = start_postgres, what = "postgres" },
  redis = { init = init_redis, start = start_redis, what = "redis-server" },
  api   = { init = init_api, start = start_api, what = "the lab service" },
  nginx = { init = init_nginx, start = start_nginx, what = "nginx" },
}
local ORDER = { "pg", "redis", "api", "nginx" }

------------------------------------------------------------------------------------- status

local function component_rows(state)
  local rows = {}
  local function row(name, c, listening)
    rows[#rows + 1] = {
      name = name, pid = c and c.pid or "-", port = c and c.port or "-", url = c and c.url or "",
      state = not c and "absent" or not alive(c.pid) and "stopped" or listening and "up" or "not answering",
    }
  end
  for _, name in ipairs(ORDER) do
    local c = state[name]
    row(name, c, c and c.port and tcp.connect("127.0.0.1", c.port, { timeout = 0.5 }) ~= nil)
  end
  return rows
end

local function show(state)
  local rows = component_rows(state)
  render.print(render.fmt.table(rows, {
    { "name", title = "component" }, { "state" }, { "pid", right = true }, { "port", right = true }, { "url" },
  }))
  render.print("state: " .. state_file())
  for _, r in ipairs(rows) do if r.state ~= "up" then return false end end
  return true
end

--------------------------------------------------------------------------------------- down

local function wait_gone(pid, seconds)
  local deadline = core.now() + seconds * 1000
  while alive(pid) and core.now() < deadline do core.sleep(0.05) end
  return not alive(pid)
end

local function stop(pid, what)
  if not alive(pid) then return end
  core.kill(pid, "TERM")
  if not wait_gone(pid, 10) then
    core.kill(pid, "KILL")
    wait_gone(pid, 5)
  end
  if alive(pid) then fail("%s (pid %d) does not stop", what, pid) end
end

-- Stops one component by PID; a stopped (SIGSTOP) process is continued first so it can exit.
local function stop_component(state, name)
  local c = state[name]
  if not c then return end
  local pid = c.pid
  if name == "pg" then pid = pid or pid_from(c.data .. "/postmaster.pid") end
  if name == "redis" or name == "nginx" then pid = pid or pid_from(c.pidfile) end
  if not alive(pid) then return end
  core.kill(pid, "CONT")
  if name == "pg" then
    local argv = as_pg { PGBIN .. "/pg_ctl", "-D", c.data, "-m", "fast", "-w", "-t", "20", "stop" }
    argv.quiet, argv.timeout = true, 30
    sh.read(argv)
  end
  stop(pid, COMPONENTS[name].what)
  c.pid = nil
end

function M.down_state(state)
  for i = #ORDER, 1, -1 do stop_component(state, ORDER[i]) end
  if state.pg then run { "rm", "-rf", (state.pg.data:gsub("/data$", "")) } end
  run { "rm", "-rf", M.dir() }
end

----------------------------------------------------------------------------------- commands

function M.up()
  local state = M.state()
  if state then
    render.print("the lab is already set up:")
    return show(state) and 0 or 1
  end
  run { "mkdir", "-p", M.dir() }
  run { "chmod", "700", M.dir() }
  state = { created = os.date("!%Y-%m-%dT%H:%M:%SZ") }
  write_state(state)
  local ok, err = pcall(function()
    for _, name in ipairs(ORDER) do
      COMPONENTS[name].init(state)
      COMPONENTS[name].start(state)
      write_state(state)
    end
  end)
  write_state(state)
  if not ok then
    pcall(M.down_state, state)
    error(err, 0)
  end
  return show(state) and 0 or 1
end

function M.status()
  local state = M.state()
  if not state then
    render.print("no lab (start one with: runbook lab up)")
    return 1
  end
  return show(state) and 0 or 1
end

function M.down()
  local state = M.state()
  if not state then
    render.print("no lab to stop")
    return 0
  end
  M.down_state(state)
  render.print("lab stopped and removed")
  return 0
end

-- `runbook lab start|stop|restart pg|redis|api|nginx`: what drills map a runbook's restart input to.
local function control(sub, name)
  local state = M.state()
  if not state then fail("no lab (start one with: runbook lab up)") end
  if sub ~= "start" then stop_component(state, name) end
  if sub ~= "stop" then
    COMPONENTS[name].start(state)
    -- The lab is the platform: it counts restarts as systemd (NRestarts) or Kubernetes would.
    state[name].restarts = (state[name].restarts or 0) + 1
  end
  write_state(state)
  render.print(string.format("%s %s", name, sub == "stop" and "stopped" or "running, pid " .. tostring(state[name].pid)))
  return 0
end
M.control = control

-- `runbook lab restarts pg|redis|api`: how many times the lab (re)started it since `up`.
local function restarts(_, name)
  local state = M.state()
  if not state then fail("no lab (start one with: runbook lab up)") end
  core.out(tostring(state[name] and state[name].restarts or 0) .. "\n")
  return 0
end

local USAGE = "usage: runbook lab up | status | down\n       runbook lab start | stop | restart | restarts pg | redis | api | nginx\n"

-- `runbook lab SUB`: 0 done, 1 not healthy or failed, 2 usage.
function M.main(args)
  local sub = args[1]
  local simple = (sub == "up" or sub == "status" or sub == "down") and #args == 1
  local component = (sub == "start" or sub == "stop" or sub == "restart" or sub == "restarts") and #args == 2
                    and COMPONENTS[args[2]]
  if not simple and not component then
    core.err(USAGE)
    return 2
  end
  local ok, code = pcall(simple and M[sub] or sub == "restarts" and restarts or control, sub, args[2])
  if ok then return code end
  if type(code) == "table" and code.lab then
    core.err("runbook lab " .. sub .. ": " .. code.lab .. "\n")
    return 1
  end
  error(code, 0)
end

return M
