-- proxy-down.drill.lua - how `runbook drill proxy-down` rehearses this runbook against the lab's real
-- nginx in front of its service (doc/drills.md). What it breaks is the lab's own: its nginx config
-- and its service.
local function stale_config(lab)
  -- The service moved to another port and nginx.conf says so, but the running nginx was never
  -- reloaded: it still sends requests to the old port.
  local s = lab.state
  lab.write(s.nginx.conf, (lab.nginx_conf():gsub("server 127%.0%.0%.1:" .. s.api.port .. ";",
                                                 "server 127.0.0.1:" .. lab.free_port() .. ";")))
  lab.reload_nginx()
  lab.write(s.nginx.conf, lab.nginx_conf())
  lab.traffic("/health", 3)
end

return {
  modes = {
    down = { what = "nginx stopped: connections to the site are refused", breaks = function(lab) lab.control("stop", "nginx") end,
             expect = { findings = { "proxy.down" }, offers = { "restart" }, never = { "reload" } } },
    upstream = { what = "the service behind nginx stopped: nginx answers 502", breaks = function(lab)
      lab.control("stop", "api")
      lab.traffic("/health", 5)
    end, diagnosis = true,
    expect = { findings = { "proxy.bad_gateway", "proxy.upstream_refused", "proxy.5xx", "proxy.upstream_down" },
               never = { "restart", "reload" } } },
    stale = { what = "nginx runs a configuration that points at an old port; the file on disk is right", breaks = stale_config,
              expect = { findings = { "proxy.bad_gateway", "proxy.upstream_refused" }, offers = { "reload" }, never = { "restart" } } },
    config = { what = "a broken nginx.conf, and nginx stopped (a restart would fail)", breaks = function(lab)
      lab.control("stop", "nginx")
      lab.write(lab.state.nginx.conf, (lab.nginx_conf():gsub("worker_connections 128;", "worker_connections 128")))
    end, diagnosis = true,
    expect = { findings = { "proxy.down", "proxy.config_invalid" }, never = { "restart", "reload" } } },
  },
  inputs = function(lab)
    local n = lab.state.nginx
    return { url = n.url .. "/health", on = "local", error_log = n.error_log, access_log = n.access_log,
             timeout = "2s", since = "10m",
             config_test = string.format("nginx -t -c %s -p %s/ -e %s", n.conf, n.dir, n.error_log),
             upstream = lab.state.api.url .. "/health", restart = lab.lab_cmd("restart", "nginx"),
             reload = "nginx -c " .. n.conf .. " -p " .. n.dir .. "/ -s reload" }
  end,
  healthy = function(lab) return lab.proxied_healthy() end,
  repair = function(lab)
    lab.write(lab.state.nginx.conf, lab.nginx_conf())
    lab.control("restart", "api")
    lab.control("restart", "nginx")
  end,
}
