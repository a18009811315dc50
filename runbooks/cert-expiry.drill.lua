-- cert-expiry.drill.lua - how `runbook drill cert-expiry` rehearses this runbook: an HTTPS server
-- (openssl s_server, self-signed) whose certificate expires in 3 days, on a free loopback port.
local tcp = require "tcp"

local port   -- the server's, once it runs

return {
  standalone = true,   -- needs no lab servers
  modes = { expiring = { what = "a self-signed certificate that expires in 3 days", breaks = function(lab)
    local d = lab.dir .. "/tls"
    lab.sh("mkdir -p " .. lab.shq(d))
    lab.run { "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "3", "-subj", "/CN=localhost",
              "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost", "-keyout", d .. "/key.pem",
              "-out", d .. "/cert.pem" }
    port = lab.free_port()
    lab.spawn(string.format("exec openssl s_server -quiet -accept 127.0.0.1:%d -cert %s -key %s -www",
                            port, lab.shq(d .. "/cert.pem"), lab.shq(d .. "/key.pem")))
    lab.settle(function() return tcp.connect("127.0.0.1", port, { timeout = 0.5 }) ~= nil end, 10)
  end, diagnosis = true,   -- renewing is a team's own process: the runbook reports, the drill stops the server
  expect = { findings = { "tls.expiry", "tls.untrusted" } } } },
  inputs = function() return { url = string.format("https://127.0.0.1:%d/", port) } end,
  healthy = function() return true end,
  repair = function(lab) lab.end_spawned() end,
  cleanup = function(lab) lab.end_spawned() end,
}
