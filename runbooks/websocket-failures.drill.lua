-- websocket-failures.drill.lua - how `runbook drill websocket-failures` rehearses this runbook: the
-- lab's nginx reloaded with its /ws location changed.
local function with_ws_location(lab, replace)
  local conf = lab.nginx_conf()
  local block = conf:match("    location /ws {.-\n    }\n")
  lab.write(lab.state.nginx.conf, (conf:gsub(block:gsub("%p", "%%%0"), (replace(block):gsub("%%", "%%%%")))))
  lab.reload_nginx()
end

return {
  modes = {
    stripped = { what = "nginx's /ws location reloaded without the Upgrade and Connection headers", breaks = function(lab)
      with_ws_location(lab, function(b)
        return (b:gsub("      proxy_set_header Upgrade[^\n]*\n", ""):gsub("      proxy_set_header Connection[^\n]*\n", ""))
      end)
    end, diagnosis = true, expect = { findings = { "ws.upgrade_lost", "ws.proxy_fault", "ws.no_upgrade_headers" } } },
    timeout = { what = "nginx's /ws location reloaded with proxy_read_timeout 10s: idle sockets are cut", breaks = function(lab)
      with_ws_location(lab, function(b) return (b:gsub("proxy_read_timeout 3600s;", "proxy_read_timeout 10s;")) end)
    end, diagnosis = true, expect = { findings = { "ws.proxy_timeout" }, never = {} } },
  },
  inputs = function(lab)
    local n = lab.state.nginx
    return { url = n.url .. "/ws/", direct = lab.state.api.url .. "/ws/", error_log = n.error_log, timeout = "2s",
             config_dump = string.format("nginx -T -c %s -p %s/ -e %s", n.conf, n.dir, n.error_log) }
  end,
  healthy = function(lab) return lab.proxied_healthy() end,
  repair = function(lab) lab.restore_nginx() end,
}
