-- cert-expiry: a TLS certificate is about to expire, or has (browsers warn, clients refuse).
-- Reads the certificate the server really presents: days left, issuer, subject, whether the chain
-- verifies and the name matches. It changes nothing: renewal is the certificate owner's job.
local http = require "http"

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
