-- check.lua - judging a measured value against warning/critical thresholds, in the range syntax
-- of the monitoring plugins (Nagios, Icinga, check_postgres), so that thresholds read the same
-- in a runbook as in the alert that paged you:
--   "10"      alert outside 0..10        "10:"    alert below 10
--   "~:10"    alert above 10             "10:20"  alert outside 10..20
--   "@10:20"  alert inside 10..20 (inclusive)
-- check.judge(value, { warn = "80", crit = "90" }) -> "OK" | "WARNING" | "CRITICAL" | "UNKNOWN", why
local M = {}

M.OK, M.WARNING, M.CRITICAL, M.UNKNOWN = "OK", "WARNING", "CRITICAL", "UNKNOWN"

local function bound(s, what, spec)
  if s == "~" then return nil end
  local n = tonumber(s)
  if not n then error(string.format("check: bad %s '%s' in range '%s'", what, s, spec), 4) end
  return n
end

-- Parses a range; raises on a malformed one (a mistake in the runbook, not in the system).
function M.range(spec)
  if type(spec) == "number" then spec = tostring(spec) end
  if type(spec) ~= "string" or spec == "" then error("check: a range is a string such as \"10:20\"", 3) end
  local r = { spec = spec, inside = false }
  local body = spec
  if body:sub(1, 1) == "@" then r.inside, body = true, body:sub(2) end
  local lo, hi = body:match("^([^:]*):(.*)$")
  if lo then
    r.low = lo == "" and 0 or bound(lo, "start", spec)
    r.high = hi ~= "" and bound(hi, "end", spec) or nil
  else
    r.low, r.high = 0, bound(body, "end", spec)
  end
  if r.low and r.high and r.low > r.high then
    error(string.format("check: range '%s' starts above its end", spec), 3)
  end
  return r
end

-- Does the value raise an alert for this range?
function M.alerts(range, v)
  local inside = (range.low == nil or v >= range.low) and (range.high == nil or v <= range.high)
  if range.inside then return inside end
  return not inside
end

local function describe(range)
  local lo, hi = range.low, range.high
  if range.inside then return string.format("inside %s..%s", lo or "-inf", hi or "inf") end
  if lo and hi then return lo == 0 and string.format("above %s", hi) or string.format("outside %s..%s", lo, hi) end
  if lo then return string.format("below %s", lo) end
  return string.format("above %s", hi)
end

function M.judge(value, opts)
  opts = opts or {}
  for k in pairs(opts) do
    if k ~= "warn" and k ~= "crit" then error("check: unknown option '" .. tostring(k) .. "' (warn, crit)", 2) end
  end
  local warn = opts.warn ~= nil and M.range(opts.warn) or nil
  local crit = opts.crit ~= nil and M.range(opts.crit) or nil
  if type(value) ~= "number" or value ~= value then
    return M.UNKNOWN, "no value" .. (value ~= nil and (" (" .. tostring(value) .. ")") or "")
  end
  if crit and M.alerts(crit, value) then return M.CRITICAL, "critical: " .. describe(crit) end
  if warn and M.alerts(warn, value) then return M.WARNING, "warning: " .. describe(warn) end
  return M.OK, nil
end

return M
