-- drill_web.lua - the drills of the web-facing runbooks (proxy-down, auth-failures,
-- websocket-failures, bad-deploy), against the lab's real nginx in front of its service. Same
-- form as lab/drill.lua's (modes with what they break and the findings and offers they expect);
-- drill.lua adds them to its table. Everything broken here is the lab's own: its nginx config,
-- its logs, its service, files and a git checkout under the lab's directory.
local core = require "core"
local lab  = require "lab"
local sh   = require "sh"

return function(h)   -- h: drill.lua's helpers { lab_cmd, settle, service_healthy }
  local D = {}

  local function write(path, text)
    local f = assert(io.open(path, "w"))
    f:write(text)
    f:close()
  end

  local function nginx_cmd(s, ...)
    local argv = { "nginx", "-c", s.nginx.conf, "-p", s.nginx.dir .. "/", "-e", s.nginx.error_log, ... }
    argv.quiet, argv.timeout = true, 10
    return assert(sh.read(argv))
  end

  local function config_test(s)
    return string.format("nginx -t -c %s -p %s/ -e %s", s.nginx.conf, s.nginx.dir, s.nginx.error_log)
  end

  -- The proxy's verdict: GET /health through nginx answers 200.
  local function proxied_healthy(s)
    local http = require "http"
    local r, err = http.get(s.nginx.url .. "/health", { timeout = 2 })
    if not r then return false, err end
    if r.status ~= 200 then return false, "GET /health through nginx answers " .. r.status end
    return h.service_healthy(s)
  end

  -- Requests through nginx, so that its access and error logs hold what users met.
  local function traffic(s, path, n, headers)
    local http = require "http"
    for _ = 1, n do http.get(s.nginx.url .. path, { timeout = 2, headers = headers }) end
  end

  -- nginx's workers: the children of its master (/proc/PID/task/PID/children).
  local function workers(s)
    local f = io.open(string.format("/proc/%d/task/%d/children", s.nginx.pid, s.nginx.pid))
    local list = {}
    if f then
      for pid in f:read("a"):gmatch("%d+") do list[#list + 1] = math.tointeger(tonumber(pid)) end
      f:close()
    end
    return list
  end

  -- A reload is done when the workers of the old configuration have exited: until then they
  -- still accept connections, and a probe may meet either configuration.
  local function reload_nginx(s)
    local old = workers(s)
    nginx_cmd(s, "-s", "reload")
    h.settle(function()
      for _, pid in ipairs(old) do if core.kill(pid, "0") then return false end end
      return true
    end, 10)
  end

  local function restore_nginx(s)
    write(s.nginx.conf, lab.nginx_conf(s))
    if s.nginx.pid and core.kill(s.nginx.pid, "0") then reload_nginx(s) else lab.control("start", "nginx") end
  end

  local function base_inputs(s)
    return { url = s.nginx.url .. "/health", on = "local", config_test = config_test(s), error_log = s.nginx.error_log,
             access_log = s.nginx.access_log, timeout = "2s", since = "10m" }
  end

  D["proxy-down"] = {
    modes = {
      down = { what = "nginx stopped: connections to the site are refused", breaks = function() lab.control("stop", "nginx") end,
               expect = { findings = { "proxy.down" }, offers = { "restart" }, never = { "reload" } } },
      upstream = { what = "the service behind nginx stopped: nginx answers 502", breaks = function(s)
        lab.control("stop", "api")
        traffic(s, "/health", 5)
      end, diagnosis = true,
      expect = { findings = { "proxy.bad_gateway", "proxy.upstream_refused", "proxy.5xx", "proxy.upstream_down" },
                 never = { "restart", "reload" } } },
      -- The service moved to another port and nginx.conf says so, but the running nginx was never
      -- reloaded: it still sends requests to the old port.
      stale = { what = "nginx runs a configuration that points at an old port; the file on disk is right", breaks = function(s)
        write(s.nginx.conf, (lab.nginx_conf(s):gsub("server 127%.0%.0%.1:" .. s.api.port .. ";", "server 127.0.0.1:" .. core.free_port() .. ";")))
        reload_nginx(s)
        write(s.nginx.conf, lab.nginx_conf(s))
        traffic(s, "/health", 3)
      end, expect = { findings = { "proxy.bad_gateway", "proxy.upstream_refused" }, offers = { "reload" }, never = { "restart" } } },
      config = { what = "a broken nginx.conf, and nginx stopped (a restart would fail)", breaks = function(s)
        lab.control("stop", "nginx")
        write(s.nginx.conf, lab.nginx_conf(s):gsub("worker_connections 128;", "worker_connections 128"))
      end, diagnosis = true,
      expect = { findings = { "proxy.down", "proxy.config_invalid" }, never = { "restart", "reload" } } },
    },
    inputs = function(s)
      local i = base_inputs(s)
      i.upstream, i.restart, i.reload = s.api.url .. "/health", h.lab_cmd("restart", "nginx"),
                                        "nginx -c " .. s.nginx.conf .. " -p " .. s.nginx.dir .. "/ -s reload"
      return i
    end,
    healthy = proxied_healthy,
    repair = function(s)
      write(s.nginx.conf, lab.nginx_conf(s))
      lab.control("restart", "api")
      lab.control("restart", "nginx")
    end,
  }

  ------------------------------------------------------------------------- auth-failures
  local function auth_dir() return lab.dir() .. "/auth" end

  -- Three replicas' copies of the signing secret (the third differs when `differ`), and users
  -- whose tokens the service refuses: 401s through nginx, in its access log.
  local function replicas_and_refusals(differ)
    return function(s)
      local d = auth_dir()
      assert(os.execute("mkdir -p " .. d))
      for i = 1, 3 do write(string.format("%s/replica%d.key", d, i), (differ and i == 3) and "signing-key-B\n" or "signing-key-A\n") end
      traffic(s, "/login", 60, { Authorization = "Bearer expired-or-forged" })
    end
  end

  local function auth_inputs(s)
    local d = auth_dir()
    return { access_log = s.nginx.access_log, since = "1h", recent = "10m", min_rate = 5, timeout = "2s",
             secret_files = string.format("%s/replica1.key,%s/replica2.key,%s/replica3.key", d, d, d) }
  end

  D["auth-failures"] = {
    modes = {
      secret = { what = "one replica of three signs with another secret; 60 logins refused (401) through nginx",
                 breaks = replicas_and_refusals(true), diagnosis = true,
                 expect = { findings = { "auth.rejections", "auth.secret_mismatch" } } },
      -- The lab cannot move this machine's clock: the replica's clock is a stand-in command that
      -- prints the time 5 minutes ahead, as `date +%s` on a drifted host would.
      skew = { what = "a replica's clock 5 minutes ahead (a stand-in date); 60 logins refused (401) through nginx",
               breaks = replicas_and_refusals(false), diagnosis = true, clock = [[sh -c "echo $(( $(date +%s) + 300 ))"]],
               expect = { findings = { "auth.rejections", "auth.clock_skew" }, never = {} } },
    },
    inputs = function(s, mode)
      local i = auth_inputs(s)
      if mode == "skew" then i.clock = D["auth-failures"].modes.skew.clock end
      return i
    end,
    healthy = proxied_healthy,
    repair = function() os.execute("rm -rf " .. auth_dir()) end,
    cleanup = function() os.execute("rm -rf " .. auth_dir()) end,
  }

  -------------------------------------------------------------------- websocket-failures
  local function with_ws_location(s, replace)
    local conf = lab.nginx_conf(s)
    local block = conf:match("    location /ws {.-\n    }\n")
    write(s.nginx.conf, (conf:gsub(block:gsub("%p", "%%%0"), (replace(block):gsub("%%", "%%%%")))))
    reload_nginx(s)
  end

  D["websocket-failures"] = {
    modes = {
      stripped = { what = "nginx's /ws location reloaded without the Upgrade and Connection headers", breaks = function(s)
        with_ws_location(s, function(b) return (b:gsub("      proxy_set_header Upgrade[^\n]*\n", ""):gsub("      proxy_set_header Connection[^\n]*\n", "")) end)
      end, diagnosis = true, expect = { findings = { "ws.upgrade_lost", "ws.proxy_fault", "ws.no_upgrade_headers" } } },
      timeout = { what = "nginx's /ws location reloaded with proxy_read_timeout 10s: idle sockets are cut", breaks = function(s)
        with_ws_location(s, function(b) return (b:gsub("proxy_read_timeout 3600s;", "proxy_read_timeout 10s;")) end)
      end, diagnosis = true, expect = { findings = { "ws.proxy_timeout" }, never = {} } },
    },
    inputs = function(s)
      return { url = s.nginx.url .. "/ws/", direct = s.api.url .. "/ws/", error_log = s.nginx.error_log, timeout = "2s",
               config_dump = string.format("nginx -T -c %s -p %s/ -e %s", s.nginx.conf, s.nginx.dir, s.nginx.error_log) }
    end,
    healthy = proxied_healthy,
    repair = restore_nginx,
  }

  --------------------------------------------------------------------------- bad-deploy
  local function app_repo() return lab.dir() .. "/app" end

  local function git(...)
    local argv = { "git", "-C", app_repo(), "-c", "user.name=lab", "-c", "user.email=lab@localhost", ... }
    argv.quiet, argv.timeout, argv.check = true, 20, true
    return assert(sh.read(argv))
  end

  local function release(version, env)
    write(app_repo() .. "/VERSION", version .. "\n")
    git("add", "VERSION")
    local argv = { "git", "-C", app_repo(), "-c", "user.name=lab", "-c", "user.email=lab@localhost", "commit", "-q", "-m",
                   "release " .. version, quiet = true, timeout = 20, check = true, env = env }
    assert(sh.read(argv))
  end

  local function version()
    local f = io.open(app_repo() .. "/VERSION")
    local v = f and f:read("l")
    if f then f:close() end
    return v
  end

  D["bad-deploy"] = {
    modes = {
      errors = { what = "release v2 committed and deployed; the service fails from then on (nginx answers 502)", breaks = function(s)
        os.execute("rm -rf " .. app_repo())
        assert(os.execute("mkdir -p " .. app_repo()))
        git("init", "-q")
        local hour_ago = os.date("!%Y-%m-%dT%H:%M:%SZ", os.time() - 3600)
        release("v1", { GIT_AUTHOR_DATE = hour_ago, GIT_COMMITTER_DATE = hour_ago })
        traffic(s, "/health", 20)
        core.sleep(1.1)   -- the access log and git count whole seconds: the deploy comes after these requests
        release("v2")
        lab.control("stop", "api")
        traffic(s, "/health", 20)
      end, expect = { findings = { "deploy.errors_rose" }, offers = { "rollback" } } },
    },
    -- The lab's deploy is its checkout; rolling back is reverting the release and starting the service.
    inputs = function(s)
      return { repo = app_repo(), access_log = s.nginx.access_log, since = "1m", url = s.nginx.url .. "/health",
               rollback = string.format([[sh -c "git -C %s -c user.name=lab -c user.email=lab@localhost revert --no-edit HEAD && %s"]],
                                        app_repo(), h.lab_cmd("start", "api")),
               rollback_wait = "20s", timeout = "2s" }
    end,
    healthy = function(s)
      if version() ~= "v1" then return false, "the checkout is at " .. tostring(version()) end
      return proxied_healthy(s)
    end,
    repair = function() lab.control("start", "api") os.execute("rm -rf " .. app_repo()) end,
    cleanup = function() os.execute("rm -rf " .. app_repo()) end,
  }

  return D
end
