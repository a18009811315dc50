-- cert-expiry: a TLS certificate is about to expire, or has (browsers warn, clients refuse).
-- Reads the certificate the server really presents: days left, issuer, subject, whether the chain
-- verifies and the name matches. It changes nothing: renewal is the certificate owner's job.
local http = require "http"
local recipe = require "recipe"

-- What clients and servers write when TLS fails.
local LOG_CAUSES = {
  { pattern = "certificate has expired|certificate expired|CERT_HAS_EXPIRED", code = "tls.expired_logged",
    text = "handshakes fail on an expired certificate" },
  { pattern = "unable to get local issuer|unknown ca|certificate verify failed|self.signed", code = "tls.untrusted_logged",
    text = "handshakes fail: the chain does not verify" },
  { pattern = "SSL_do_handshake|SSL routines|handshake failure", code = "tls.handshake_errors", text = "TLS handshakes fail" },
}

return runbook {
  name     = "cert-expiry",
  summary  = "A TLS certificate expires soon, has expired, or does not verify",
  severity = "SEV3",
  description = "Symptoms: certificate warnings, clients failing with \"certificate has expired\" or " ..
                "\"unable to get local issuer certificate\", an expiry alert.",

  inputs = {
    url  = input.url { default = "https://127.0.0.1:443/", help = "the HTTPS endpoint to examine" },
    warn = input.int { default = 30, min = 0, help = "days left that is a warning" },
    crit = input.int { default = 7, min = 0, help = "days left that is critical" },
    timeout = input.duration { default = "5s", help = "deadline of the check" },
    on   = input.target { default = "local", env = "TLS_ON", help = "where the TLS server (or the proxy) runs: its log" },
    log_unit = input.string { required = false, help = "the TLS server's (nginx, the application) journald unit, to read its log" },
    log_file = input.path { required = false, help = "the TLS server's (nginx, the application) log file" },
    log_service = input.string { required = false, help = "the TLS server's (nginx, the application) Compose service, to read its log" },
    since    = input.duration { default = "30m", help = "how far back to read the log" },
  },

  step "logs" {
    title   = "What does the server's log say?",
    explain = "Failed handshakes as the server (or a client) logs them: expired, untrusted, or another TLS error.",
    run = function(ctx)
      recipe.logs(ctx, { on = ctx.on, unit = ctx.log_unit, file = ctx.log_file, service = ctx.log_service,
                         since = ctx.since, timeout = ctx.timeout, what = "the server's log", causes = LOG_CAUSES })
    end,
  },

  step "certificate" {
    title   = "What certificate does the server present?",
    explain = "The leaf certificate of the chain the server sends, read without trusting it first, so an " ..
              "expired or self-signed one can still be examined.",
    run = function(ctx)
      local c = must(http.cert(ctx.url, { timeout = ctx.timeout }))
      ctx.state.cert = c
      ctx:note("subject %s; issuer %s", tostring(c.subject), tostring(c.issuer))
      ctx.state.status = ctx:check("days left", c.days_left, { warn = ctx.warn .. ":", crit = ctx.crit .. ":", code = "tls.expiry" })
      if c.valid == false then ctx:finding { code = "tls.untrusted", "the chain does not verify: %s", tostring(c.error) } end
      if c.hostname_ok == false then ctx:finding { code = "tls.hostname", "the certificate is not valid for this host name" } end
    end,
  },

  step "verdict" {
    title = "Verdict",
    run = function(ctx)
      local c = ctx.state.cert
      if ctx.state.status == "OK" and c.valid ~= false and c.hostname_ok ~= false then
        return ctx:resolved(string.format("the certificate is valid for %d more days", c.days_left))
      end
      return ctx:escalate(string.format("renew or fix the certificate of %s (%s days left)", ctx.url, tostring(c.days_left)))
    end,
  },
}
