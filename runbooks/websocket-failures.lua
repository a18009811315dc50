-- websocket-failures: live updates stop, clients reconnect in a loop ("WebSocket connection failed",
-- 1006 closes). Makes the handshake itself through the proxy (a raw HTTP request with the Upgrade
-- headers: 101 is success), and directly to the application when given, to tell a proxy that drops
-- the hop-by-hop Upgrade/Connection headers from an application that refuses; reads the proxy's
-- config for those headers and for read timeouts that cut idle sockets, its error log for upstream
-- timeouts, and counts the open connections. It changes nothing: the fix is the proxy's config.
local logs = require "logs"
local sh   = require "sh"
local tcp  = require "tcp"

-- "http://host:port/path" -> host, port, path.
local function split_url(url)
  local scheme, host, port, path = url:match("^(https?)://([^/:]+):?(%d*)(.*)$")
  if not scheme then return nil end
  return host, tonumber(port) or (scheme == "https" and 443 or 80), path ~= "" and path or "/", scheme
end

-- The opening handshake: status (101 when upgraded), or nil, err, kind.
local function handshake(ctx, url)
  local host, port, path, scheme = split_url(url)
  if not host then return nil, "not an http:// URL: " .. url, "error" end
  if scheme == "https" then return nil, "the handshake probe speaks plain HTTP: give the proxy's http:// URL or its inner port", "error" end
  local req = table.concat({
    "GET " .. path .. " HTTP/1.1", "Host: " .. host .. ":" .. port, "Upgrade: websocket", "Connection: Upgrade",
    "Sec-WebSocket-Version: 13", "Sec-WebSocket-Key: cnVuYm9vayBwcm9iZSBrZXk=", "User-Agent: runbook-websocket-probe", "", "" }, "\r\n")
  local r, err, kind = tcp.connect(host, port, { timeout = ctx.timeout, send = req })
  if not r then return nil, err, kind end
  local status = tonumber(r.reply:match("^HTTP/%d%.%d (%d%d%d)"))
  if not status then return nil, url .. ": the answer is not HTTP (" .. (r.reply:sub(1, 40):gsub("%c", ".")) .. ")", "protocol" end
  return status, r.reply:match("^[^\r\n]*")
end

return runbook {
  name     = "websocket-failures",
  summary  = "WebSocket connections fail or drop: the handshake through the proxy, its timeouts, the connection count",
  severity = "SEV2",
  description = "Symptoms: \"WebSocket connection failed\", clients reconnecting in a loop, live updates stopping " ..
                "after a minute of silence, 1006 closes in the browser console.",

  inputs = {
    url          = input.url { env = "WS_URL", default = "http://127.0.0.1/ws/", help = "the WebSocket endpoint through the proxy (http://)" },
    direct       = input.url { required = false, help = "the same endpoint on the application, bypassing the proxy" },
    on           = input.target { default = "local", env = "PROXY_ON", help = "where the proxy runs" },
    config_dump  = input.argv { default = { "nginx", "-T" }, help = "prints the proxy's whole configuration" },
    error_log    = input.path { default = "/var/log/nginx/error.log", help = "the proxy's error log" },
    since        = input.duration { default = "30m", help = "how far back to read the error log" },
    min_timeout  = input.duration { default = "60s", help = "the shortest proxy read timeout a WebSocket location may have" },
    timeout      = input.duration { default = "5s", help = "deadline of each probe" },
  },

  step "handshake" {
    title   = "Does the WebSocket handshake get through the proxy?",
    explain = "A WebSocket starts as an HTTP request with Upgrade: websocket; the answer 101 Switching Protocols " ..
              "means the socket is open. 400/426 means the Upgrade never reached the application.",
    run = function(ctx)
      local status, line, kind = handshake(ctx, ctx.url)
      if not status then
        ctx.state.failed = true
        return ctx:finding { code = kind == "refused" and "ws.proxy_down" or "ws.unreachable", "%s", line }
      end
      if status == 101 then return ctx:ok("%s: %s", ctx.url, line) end
      ctx.state.failed = status
      if status == 400 or status == 426 then
        return ctx:finding { code = "ws.upgrade_lost", "%s answers \"%s\": the Upgrade did not reach the application", ctx.url, line }
      end
      ctx:finding { code = "ws.handshake_failed", "%s answers \"%s\" instead of 101", ctx.url, line }
    end,
  },

  step "direct" {
    title   = "Does the application upgrade when asked directly?",
    run = function(ctx)
      if not ctx.direct then return ctx:note("set direct=URL to tell the proxy's fault from the application's") end
      local status, line = handshake(ctx, ctx.direct)
      if status == 101 then
        ctx.state.app_ok = true
        if ctx.state.failed then
          return ctx:finding { code = "ws.proxy_fault", "the application upgrades directly (%s) but not through the proxy", line }
        end
        return ctx:ok("%s: %s", ctx.direct, line)
      end
      ctx:finding { code = "ws.app_refuses", "the application itself does not upgrade: %s", tostring(line) }
    end,
  },

  step "config" {
    title   = "Does the proxy pass the Upgrade on, and keep idle sockets open?",
    explain = "nginx must set `proxy_http_version 1.1`, `proxy_set_header Upgrade $http_upgrade` and " ..
              "`proxy_set_header Connection \"upgrade\"` where WebSockets pass; its proxy_read_timeout (60s by " ..
              "default) closes a socket that was silent that long.",
    run = function(ctx)
      local argv = { table.unpack(ctx.config_dump) }
      argv.quiet, argv.timeout, argv.on = true, ctx.timeout, ctx.on ~= "local" and ctx.on or nil
      local r = must(sh.read(argv))
      if not r.ok then return ctx:note("%s fails: %s", table.concat(ctx.config_dump, " "), (r.stderr:match("[^\n]+") or "")) end
      local conf = r.stdout:gsub("#[^\n]*", "")
      if not conf:find("proxy_set_header%s+Upgrade%s") then
        ctx.state.misconfigured = true
        ctx:finding { code = "ws.no_upgrade_headers", "the proxy's config never sets the Upgrade header: nginx drops it " ..
                      "(it is hop-by-hop) and the application sees a plain GET" }
      end
      local shortest
      for v in conf:gmatch("proxy_read_timeout%s+([%w]+)%s*;") do
        local secs = v:match("^%d+$") and tonumber(v) or (v:match("^%d+s$") and tonumber(v:sub(1, -2)))
                     or (v:match("^%d+m$") and tonumber(v:sub(1, -2)) * 60) or nil
        if secs and (not shortest or secs < shortest) then shortest = secs end
      end
      if shortest and shortest < ctx.min_timeout then
        ctx.state.misconfigured = true
        ctx:finding { code = "ws.proxy_timeout", "a proxy_read_timeout of %d s: a WebSocket silent that long is cut " ..
                      "(clients see 1006 and reconnect); %s or more, or pings from the server, keep it open",
                      shortest, fmt.duration(ctx.min_timeout) }
      end
    end,
  },

  step "error-log" {
    title   = "Does the proxy's error log show timeouts or early closes?",
    run = function(ctx)
      local r, err = logs.read { on = ctx.on, file = ctx.error_log, since = ctx.since,
                                 grep = "upstream timed out|prematurely closed|Connection reset", timeout = ctx.timeout }
      if not r then return ctx:note("cannot read %s: %s", ctx.error_log, err) end
      if #r.lines == 0 then return ctx:ok("no upstream timeout or early close in %s", fmt.duration(ctx.since)) end
      for _, g in ipairs(logs.top(r.lines, nil, 3)) do ctx:note("%d× %s", g.count, g.example:sub(1, 100)) end
      ctx:finding { code = "ws.proxy_timeouts", "%d upstream timeouts or early closes in the last %s", #r.lines, fmt.duration(ctx.since) }
    end,
  },

  step "connections" {
    title   = "How many connections are open on the proxy's port?",
    explain = "Each WebSocket holds a connection: a count near worker_connections (or the file descriptor limit) " ..
              "refuses the next ones.",
    run = function(ctx)
      local _, port = split_url(ctx.url)
      local argv = { "ss", "-Htn", "state", "established", "( sport = :" .. tostring(port) .. " )",
                     quiet = true, timeout = ctx.timeout, on = ctx.on ~= "local" and ctx.on or nil }
      local r = must(sh.read(argv))
      local n = 0
      for _ in r.stdout:gmatch("[^\n]+") do n = n + 1 end
      ctx:note("%d established connections on port %d", n, port)
    end,
  },

  step "verdict" {
    title = "Do WebSockets work?",
    run = function(ctx)
      local status = handshake(ctx, ctx.url)
      if status == 101 and not ctx.state.failed and not ctx.state.misconfigured then
        return ctx:resolved("the handshake succeeds through the proxy")
      end
      return ctx:escalate((status == 101 and "the handshake succeeds, but the proxy's config cuts WebSockets"
                           or "WebSocket handshakes fail through the proxy") ..
                          ": fix its config (see the findings), test it with nginx -t, then reload it")
    end,
  },
}
