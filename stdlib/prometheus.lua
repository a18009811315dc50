-- prometheus.lua - instant queries to Prometheus' HTTP API (require "prometheus").
--
--   prometheus.query(base_url, promql, { timeout = 10, headers, insecure, ca })
--     -> number | nil, err, kind
--
-- One GET of BASE/api/v1/query?query=PROMQL through http.get (so it is a probe: bounded by one
-- deadline, yields inside parallel(), audited, and the URL's password is redacted everywhere),
-- then a probe record of its own with what the answer meant (the value, or nodata, nan, ...).
-- The answer must be one number: a scalar, or an instant vector of exactly one series. Expected
-- failures return nil, "prometheus.query <base url, redacted>: <cause>", kind:
--   the kinds of http.get    nothing answered (dns, refused, timeout, ...)
--   rejected                 Prometheus (or a proxy in front of it) refused the query: its own
--                            error text (a parse error, a timeout of the evaluation) or the status
--   protocol                 an answer that is not Prometheus' JSON
--   nodata                   no series: the metric does not exist (yet), or the labels match none
--   series                   not one number: several series (aggregate the query: sum, max,
--                            ...), or a range vector (x[5m])
--   nan                      NaN: a ratio or a quantile over nothing (0/0), i.e. no traffic
--   inf                      +Inf or -Inf (histogram_quantile above the last finite bucket)
-- Mistakes in the call (a base URL that is not http(s)://, an empty query, an unknown option)
-- raise. Written in Lua on top of http.get: sandbox.lua lets runbooks require it and opens http
-- in the background for it.
local core    = require "core"
local suggest = require("dsl").suggest

local M = {}

local FN = "prometheus.query"
local OPTIONS = { "timeout", "headers", "insecure", "ca" }
local DEFAULT_TIMEOUT = 10   -- seconds; handed to http.get, so that its record and ours agree

-- Mistakes raise without a position of their own: the sandbox's wrapper adds the runbook's line.
local function raise(fmt, ...) error(string.format(fmt, ...), 0) end

local function argerror(n, what, v)
  raise("bad argument #%d to '%s' (%s expected, got %s)", n, FN, what, type(v))
end

local function check_options(opts)
  if opts == nil then return {} end
  if type(opts) ~= "table" then argerror(3, "table", opts) end
  for k in pairs(opts) do
    local known = false
    for _, o in ipairs(OPTIONS) do known = known or o == k end
    if not known then raise("%s: unknown option '%s'%s", FN, tostring(k), suggest(k, OPTIONS)) end
  end
  return opts
end

-- BASE/api/v1/query?query=... ; a base may end in "/", have a path prefix (a reverse proxy's
-- /prometheus) or parameters of its own (?token=...), which stay.
local function query_url(base, promql)
  local path, params = base:match("^([^?#]*)%??([^#]*)")
  local q = promql:gsub("[^%w%-_.~]", function(c) return string.format("%%%02X", c:byte()) end)
  return path:gsub("/+$", "") .. "/api/v1/query?" .. (params ~= "" and (params .. "&") or "") .. "query=" .. q
end

-- http.get's own mistakes ("http.get: option 'timeout' ...") are this function's: renamed.
local function get(url, opts)
  local function renamed(ok, ...)
    if ok then return ... end
    local e = ...
    if type(e) == "string" then error((e:gsub("^http%.get:", FN .. ":")), 0) end
    error(e, 0)   -- control signals (Ctrl-C, interrupts) travel unchanged
  end
  local http = require "http"   -- the shared module, opened on first use
  return renamed(pcall(http.get, url, {
    timeout = opts.timeout or DEFAULT_TIMEOUT, headers = opts.headers, ca = opts.ca, insecure = opts.insecure,
  }))
end

function M.query(base, promql, opts)
  if type(base) ~= "string" then argerror(1, "string", base) end
  if type(promql) ~= "string" then argerror(2, "string", promql) end
  opts = check_options(opts)
  -- The base URL with its password masked and without its parameters (a token= would be shown
  -- before http.get has registered it), for every message, a raised one included.
  local target = core.redact((base:gsub("[?#].*$", "?...")))
  if not base:match("^[hH][tT][tT][pP][sS]?://[^/?#]") then
    raise("%s: '%s' is not an http:// or https:// URL", FN, target)
  end
  if not promql:match("%S") then raise("%s: the query is empty", FN) end
  -- Its own probe record, after http.get's: that one says the GET worked, this one what it meant.
  local t0, deadline_ms = core.now(), math.floor((core.duration(opts.timeout or DEFAULT_TIMEOUT) or DEFAULT_TIMEOUT) * 1000)
  local function audit(outcome, summary)
    core.audit_probe(FN, target, deadline_ms, core.now() - t0, outcome, summary)
  end
  local function fail(kind, fmt, ...)
    -- core.redact once more: http.get has registered the URL's secrets (its password, token=
    -- values) by now, so that they are masked wherever they turn up in the cause.
    local cause = core.redact(string.format(fmt, ...))
    audit(kind, cause)
    return nil, core.redact(FN .. " " .. target .. ": ") .. cause, kind
  end

  local r, err, kind = get(query_url(base, promql), opts)
  if not r then
    -- "http.get <url with the query>: <cause>": the cause, under this function's name.
    return fail(kind, "%s", err:match("^http%.get %S+: (.*)$") or err)
  end
  local body = r.json
  if type(body) == "table" and body.status == "error" then
    return fail("rejected", "%s", tostring(body.error or body.errorType or r.problem or "status " .. r.status))
  end
  if r.status ~= 200 then return fail("rejected", "status %d, expected 200", r.status) end
  local data = type(body) == "table" and body.status == "success" and type(body.data) == "table" and body.data
  if not data then
    return fail("protocol", "not an answer of Prometheus' API (%s)",
                r.json_error or ("content type " .. tostring(r.headers["content-type"])))
  end

  local sample   -- [ time, "value" ]: floats travel as strings
  if data.resultType == "scalar" then
    sample = data.result
  elseif data.resultType == "vector" then
    local n = type(data.result) == "table" and #data.result or 0
    if n == 0 then return fail("nodata", "no data for %s", promql) end
    if n > 1 then
      return fail("series", "%d series for %s, expected one (aggregate it: sum(...), max(...))", n, promql)
    end
    sample = type(data.result[1]) == "table" and data.result[1].value
  else   -- "matrix" (a range selector: x[5m]) or "string"
    return fail("series", "a %s for %s, expected one number (an instant vector or a scalar)",
                tostring(data.resultType), promql)
  end
  local text = type(sample) == "table" and sample[2]
  if text == "NaN" then
    return fail("nan", "no traffic: %s is NaN (0/0, nothing was counted)", promql)
  end
  if text == "+Inf" or text == "-Inf" then
    return fail("inf", "%s is %s", promql, text)
  end
  local value = type(text) == "string" and tonumber(text)
  if not value then return fail("protocol", "not a number: %s", tostring(text)) end
  audit("ok", string.format("%s = %.17g", promql, value))
  return value
end

return M
