-- incident.lua - the incident around a run: its id and severity, the severity scales (built in, and
-- from $XDG_CONFIG_HOME/runbook/config.lua), the incident clock and the escalation chain; and the
-- session object whose hooks the engine calls (lock, header fields, the status line between steps,
-- escalation notices, the step menu's `u`, ctx:update, resume re-checks).
--
-- config.lua is data: it runs with no globals at all (no modules, no functions to call), bounded in
-- instructions, and every field is validated, errors naming the file and the field:
--
--   return {
--     severities = {
--       SEV2 = { title = "...", response = "30m", resolution = "8h", update_every = "30m",
--                escalation = { { level = "L2", who = "team lead", after = "1h" }, ... } },
--       CRIT = { ... },                      -- new names can be used with --severity
--     },
--     status = { sinks = { ... }, templates = { ... } },   -- see status.lua
--   }
--
-- Test hook: RUNBOOK_FAKE_CLOCK=FILE makes the incident clock read FILE (seconds since the epoch,
-- or an ISO 8601 UTC time) every time it is consulted, so a test advances time by rewriting the
-- file instead of sleeping. Only the incident clock follows it (elapsed time, escalations, update
-- cadence, "last run N days ago"); transcript timestamps stay real.
local core   = require "core"
local cjson  = require "cjson"
local render = require "render"
local suggest = require("dsl").suggest

local M = {}

----------------------------------------------------------------------------------- the clock
-- Days since 1970-01-01 of a civil date (proleptic Gregorian), without the local time zone.
local function days_from_civil(y, m, d)
  y = m <= 2 and y - 1 or y
  local era = (y >= 0 and y or y - 399) // 400
  local yoe = y - era * 400
  local doy = (153 * (m > 2 and m - 3 or m + 9) + 2) // 5 + d - 1
  return era * 146097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719468
end

-- "2025-01-15T14:35Z", "2025-01-15T14:35:07.123Z", "2025-01-15 14:35:07" (UTC) -> epoch seconds.
function M.parse_iso(s)
  if type(s) ~= "string" then return nil end
  local y, mo, d, h, mi, rest = s:match("^(%d%d%d%d)-(%d%d)-(%d%d)[T ](%d%d):(%d%d)(.*)$")
  if not y then return nil end
  local sec, zone = rest:match("^:(%d%d)%.?%d*(.*)$")
  if not sec then sec, zone = "0", rest end
  if zone ~= "" and zone ~= "Z" and zone ~= "+00:00" and zone ~= "+0000" then return nil end
  y, mo, d, h, mi, sec = tonumber(y), tonumber(mo), tonumber(d), tonumber(h), tonumber(mi), tonumber(sec)
  if mo < 1 or mo > 12 or d < 1 or d > 31 or h > 23 or mi > 59 or sec > 60 then return nil end
  return days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec
end

function M.iso(t) return os.date("!%Y-%m-%dT%H:%M:%SZ", math.floor(t)) end

-- The incident clock: seconds since the epoch (RUNBOOK_FAKE_CLOCK, above, for tests).
function M.now()
  local fake = os.getenv("RUNBOOK_FAKE_CLOCK")
  if not fake or fake == "" then return os.time() end
  local f = io.open(fake, "rb")
  local text = f and f:read("a") or ""
  if f then f:close() end
  local word = text:match("^%s*(%S+)") or ""
  local t = tonumber(word) or M.parse_iso(word)
  if not t then
    error("RUNBOOK_FAKE_CLOCK=" .. fake .. " (a test hook): the file must hold seconds since the epoch or an ISO 8601 UTC time", 0)
  end
  return t
end

-- 1033 -> "00:17:13" (hours grow past 24: an incident clock, not a time of day).
function M.hms(s)
  s = math.max(0, math.floor(s))
  return string.format("%02d:%02d:%02d", s // 3600, s % 3600 // 60, s % 60)
end

-- A short span for people: "45s", "12m", "1h05m", "3d04h".
function M.span(s)
  s = math.max(0, math.floor(s + 0.5))
  if s < 60 then return s .. "s" end
  if s < 3600 then return (s // 60) .. "m" end
  if s < 86400 then return string.format("%dh%02dm", s // 3600, s % 3600 // 60) end
  return string.format("%dd%02dh", s // 86400, s % 86400 // 3600)
end

------------------------------------------------------------------------------- severities
local H, MIN, DAY = 3600, 60, 86400

-- Built in, from the incident playbooks this tool grew from. SEV1..SEV4: respond within 15m / 30m /
-- 2h / 24h; an unresolved SEV1 goes to the senior on-call engineer at 30m, the engineering manager
-- at 1h and the CTO at 2h, a SEV2 to the first two at 1h and 2h. P0..P3: respond within 15m / 1h /
-- 4h / 24h and resolve within 2h / 8h / 24h / 5d; a P0 notifies the on-call engineer at 15m, the
-- engineering lead at 30m and the CTO at 1h; a P1 unresolved after 1h goes to the engineering
-- manager. Status updates every 15 minutes for the worst, 30 for the next, hourly below that.
M.BUILTIN = {
  SEV1 = { rank = 1, title = "complete outage affecting all users", response = 15 * MIN, resolution = 2 * H,
           update_every = 15 * MIN, escalation = {
             { level = "L2", who = "senior on-call engineer", after = 30 * MIN },
             { level = "L3", who = "engineering manager", after = 1 * H },
             { level = "L4", who = "CTO / VP engineering", after = 2 * H } } },
  SEV2 = { rank = 2, title = "major degradation of core functionality", response = 30 * MIN, resolution = 8 * H,
           update_every = 30 * MIN, escalation = {
             { level = "L2", who = "senior on-call engineer", after = 1 * H },
             { level = "L3", who = "engineering manager", after = 2 * H } } },
  SEV3 = { rank = 3, title = "minor or partial degradation", response = 2 * H, resolution = 24 * H,
           update_every = 1 * H, escalation = {} },
  SEV4 = { rank = 4, title = "cosmetic, no functional impact", response = 24 * H, resolution = 5 * DAY,
           update_every = false, escalation = {} },
  P0 = { rank = 1, title = "critical: service down or data at risk", response = 15 * MIN, resolution = 2 * H,
         update_every = 15 * MIN, escalation = {
           { level = "L1", who = "on-call engineer", after = 15 * MIN },
           { level = "L2", who = "engineering lead", after = 30 * MIN },
           { level = "L3", who = "CTO", after = 1 * H } } },
  P1 = { rank = 2, title = "high: a major feature broken or degraded", response = 1 * H, resolution = 8 * H,
         update_every = 30 * MIN, escalation = {
           { level = "L2", who = "engineering manager", after = 1 * H } } },
  P2 = { rank = 3, title = "medium: partial impact", response = 4 * H, resolution = 24 * H,
         update_every = 1 * H, escalation = {} },
  P3 = { rank = 4, title = "low: minor impact", response = 24 * H, resolution = 5 * DAY,
         update_every = false, escalation = {} },
}

------------------------------------------------------------------------------ config.lua
function M.config_path()
  local x = os.getenv("XDG_CONFIG_HOME")
  if not x or x:sub(1, 1) ~= "/" then x = (os.getenv("HOME") or "") .. "/.config" end
  return x .. "/runbook/config.lua"
end

-- Validation raises { config = message }; load_config turns it into nil, message.
local function bad(where, fmt, ...) error({ config = where .. ": " .. string.format(fmt, ...) }, 0) end
M.config_error = bad

function M.check_keys(t, allowed, where)
  if type(t) ~= "table" then bad(where, "must be a table, got %s", type(t)) end
  local set = {}
  for _, k in ipairs(allowed) do set[k] = true end
  for k in pairs(t) do
    if not set[k] then
      bad(where, "unknown field '%s'%s (fields: %s)", tostring(k), suggest(k, allowed), table.concat(allowed, ", "))
    end
  end
end

function M.check_duration(v, where, allow_false)
  if allow_false and v == false then return false end
  if type(v) ~= "number" and type(v) ~= "string" then
    bad(where, "must be a duration like \"30m\", got %s", type(v))
  end
  local s, err = core.duration(v)
  if not s then bad(where, "%s", err) end
  return s
end

local SEVERITY_KEYS = { "title", "rank", "response", "resolution", "update_every", "escalation" }
local LEVEL_KEYS = { "level", "who", "after" }

local function check_severity(name, spec, base, where)
  if type(name) ~= "string" or not name:match("^[%w][%w_-]*$") then
    bad(where, "a severity name must be a word like SEV2, got %s", tostring(name))
  end
  where = where .. "." .. name
  M.check_keys(spec, SEVERITY_KEYS, where)
  local sev = {}
  for k, v in pairs(base or { rank = 9, escalation = {} }) do sev[k] = v end
  if spec.title ~= nil then
    if type(spec.title) ~= "string" then bad(where .. ".title", "must be a string") end
    sev.title = spec.title
  end
  if spec.rank ~= nil then
    if math.type(spec.rank) ~= "integer" or spec.rank < 1 then bad(where .. ".rank", "must be a whole number from 1 (worst)") end
    sev.rank = spec.rank
  end
  for _, k in ipairs({ "response", "resolution" }) do
    if spec[k] ~= nil then sev[k] = M.check_duration(spec[k], where .. "." .. k) end
  end
  if spec.update_every ~= nil then sev.update_every = M.check_duration(spec.update_every, where .. ".update_every", true) end
  if spec.escalation ~= nil then
    if type(spec.escalation) ~= "table" then bad(where .. ".escalation", "must be a list of { level, who, after }") end
    local chain, last = {}, -1
    for i, lv in ipairs(spec.escalation) do
      local w = string.format("%s.escalation[%d]", where, i)
      M.check_keys(lv, LEVEL_KEYS, w)
      if type(lv.who) ~= "string" or lv.who == "" then bad(w .. ".who", "must name who to escalate to") end
      if lv.level ~= nil and type(lv.level) ~= "string" then bad(w .. ".level", "must be a string like \"L2\"") end
      local after = M.check_duration(lv.after, w .. ".after")
      if after <= last then bad(w .. ".after", "must come later than the level before it") end
      last = after
      chain[i] = { level = lv.level or ("L" .. (i + 1)), who = lv.who, after = after }
    end
    for k in pairs(spec.escalation) do
      if math.type(k) ~= "integer" or k < 1 or k > #spec.escalation then
        bad(where .. ".escalation", "must be a list (found the key %s)", tostring(k))
      end
    end
    sev.escalation = chain
  end
  return sev
end

-- Runs config.lua as data: no globals (any name raises), bounded in instructions.
local function run_data(path, src)
  local env = setmetatable({}, {
    __index = function(_, k) error("undefined name '" .. tostring(k) .. "' (config.lua holds data: tables, strings, numbers)", 2) end,
    __newindex = function(_, k) error("cannot set the global '" .. tostring(k) .. "' (use local)", 2) end,
    __metatable = false,
  })
  local chunk, err = load(src, "@" .. path, "t", env)
  if not chunk then return nil, err end
  local co = coroutine.create(chunk)
  debug.sethook(co, function() error("runs too long: config.lua holds data, it needs no loops", 2) end, "", 1000000)
  local ok, v = coroutine.resume(co)
  if not ok then return nil, tostring(v) end
  if coroutine.status(co) ~= "dead" then return nil, path .. ": must return a table" end
  if type(v) ~= "table" then
    return nil, path .. ": must return a table: return { severities = { ... }, status = { ... } }"
  end
  return v
end

-- The configuration: { severities = name -> spec, status = validated status section, path }.
-- A missing file is the built-in configuration; a broken one is nil, "FILE: field: problem".
function M.load_config(path)
  path = path or M.config_path()
  local cfg = { severities = {}, path = path }
  for k, v in pairs(M.BUILTIN) do cfg.severities[k] = v end
  local src, rerr = core.read_file(path, 1024 * 1024)   -- a regular file only: a FIFO would hang every run
  if not src then
    if not rerr:find("No such file or directory", 1, true) then return nil, rerr end
    cfg.status = require("status").validate(nil, path)
    return cfg
  end
  local data, err = run_data(path, src)
  if not data then return nil, err end
  local ok, verr = pcall(function()
    M.check_keys(data, { "severities", "status", "signing", "runbooks" }, path)
    if data.signing ~= nil then   -- see interp/witness.lua
      M.check_keys(data.signing, { "key", "allowed_signers" }, path .. ": signing")
      for k, v in pairs(data.signing) do
        if type(v) ~= "string" or v == "" then bad(path .. ": signing." .. k, "must be a file name") end
      end
      cfg.signing = data.signing
    end
    cfg.runbooks = M.check_runbooks(data.runbooks, path .. ": runbooks")
    if data.severities ~= nil then
      if type(data.severities) ~= "table" then bad(path .. ": severities", "must be a table of NAME = { ... }") end
      for name, spec in pairs(data.severities) do
        cfg.severities[name] = check_severity(name, spec, M.BUILTIN[name], path .. ": severities")
      end
    end
    cfg.status = require("status").validate(data.status, path)
  end)
  if not ok then
    if type(verr) == "table" and verr.config then return nil, verr.config end
    error(verr, 0)
  end
  return cfg
end

-- runbooks = { ["redis-failure"] = { on = "k8s://prod/statefulset/redis", restart_wait = "5m" } }: per
-- runbook input values (strings, numbers, or a list of words for an argv input). Whether
-- each names an input of its runbook, and parses as one, is checked when that runbook runs.
function M.check_runbooks(v, where)
  if v == nil then return {} end
  if type(v) ~= "table" then bad(where, "must be a table of [\"runbook-name\"] = { input = value, ... }") end
  local out = {}
  for name, inputs in pairs(v) do
    if type(name) ~= "string" or not name:match("^[%w][%w_.-]*$") then
      bad(where, "a runbook name must be a word like \"redis-failure\", got %s", tostring(name))
    end
    local w = string.format('%s["%s"]', where, name)
    if type(inputs) ~= "table" then bad(w, "must be a table of input = value") end
    for k, val in pairs(inputs) do
      if type(k) ~= "string" or not k:match("^[%a_][%w_]*$") then bad(w, "an input name must be a word, got %s", tostring(k)) end
      local tv = type(val)
      if tv == "table" then
        for i, word in pairs(val) do
          if math.type(i) ~= "integer" or i < 1 or i > #val or type(word) ~= "string" then
            bad(w .. "." .. k, "a list must hold words (strings), like { \"kubectl\", \"rollout\", \"restart\" }")
          end
        end
        if #val == 0 then bad(w .. "." .. k, "an empty list") end
      elseif tv ~= "string" and tv ~= "number" then
        bad(w .. "." .. k, "must be a string, a number or a list of words, got %s", tv)
      end
    end
    out[name] = inputs
  end
  return out
end

-- The config.lua values of rb's inputs: name -> value, or nil, "FILE: runbooks[...]: problem"
-- when config.lua is broken or names an input rb does not have.
function M.runbook_defaults(rb)
  local cfg, err = M.load_config()
  if not cfg then return nil, err end
  local mine = (cfg.runbooks or {})[rb.name] or {}
  for k, v in pairs(mine) do
    if not rb.inputs[k] then
      return nil, string.format('%s: runbooks["%s"].%s: %s has no input \'%s\' (inputs: %s)', cfg.path, rb.name, k,
                                rb.name, k, table.concat(rb.input_names, ", "))
    end
  end
  return mine
end

function M.severity_names(cfg)
  local names = {}
  for k in pairs(cfg.severities) do names[#names + 1] = k end
  table.sort(names, function(a, b)
    local ra, rb = cfg.severities[a].rank or 9, cfg.severities[b].rank or 9
    if a:sub(1, 1) ~= b:sub(1, 1) then return a < b end
    if ra ~= rb then return ra < rb end
    return a < b
  end)
  return names
end

------------------------------------------------------------------------- escalation chain
-- The deadlines of an incident, in order: each escalation level, then the resolution target.
function M.deadlines(inc)
  local out = {}
  for _, lv in ipairs(inc.sev.escalation or {}) do
    out[#out + 1] = { key = lv.level .. " " .. lv.who, kind = "escalation", level = lv.level, who = lv.who,
                      after = lv.after, at = inc.started + lv.after }
  end
  if inc.sev.resolution then
    out[#out + 1] = { key = "resolution", kind = "target", after = inc.sev.resolution,
                      at = inc.started + inc.sev.resolution }
  end
  table.sort(out, function(a, b)
    if a.at ~= b.at then return a.at < b.at end
    return a.kind == "escalation" and b.kind ~= "escalation"   -- at the same time, who to call first
  end)
  return out
end

local function next_escalation(inc, now)
  for _, d in ipairs(M.deadlines(inc)) do
    if d.kind == "escalation" and not inc.announced[d.key] and d.at > now then return d end
  end
end

-- "incident INC-42 · SEV2 · 00:17:05 elapsed · next escalation: team lead in 12m · next update in 13m"
function M.status_line(inc, now)
  local parts = { "incident " .. inc.id, inc.severity, M.hms(now - inc.started) .. " elapsed" }
  local d = next_escalation(inc, now)
  if d then
    parts[#parts + 1] = string.format("next escalation: %s in %s", d.who, M.span(d.at - now))
  elseif #(inc.sev.escalation or {}) == 0 then
    parts[#parts + 1] = "no escalation chain"
  else
    parts[#parts + 1] = "no further escalation"
  end
  local every = inc.sev.update_every
  if every then
    local due = (inc.last_update or inc.started) + every
    parts[#parts + 1] = due > now and ("next update in " .. M.span(due - now))
                        or ("update overdue by " .. M.span(now - due))
  end
  return table.concat(parts, " · ")
end

local function audit(kind, fields) core.audit(kind, cjson.encode(fields)) end

-- Announces each deadline that has passed since the last look, once, and records it. Returns
-- the texts of the escalations announced (for the status sinks).
function M.announce_passed(inc, now)
  local escalations = {}
  for _, d in ipairs(M.deadlines(inc)) do
    if now >= d.at and not inc.announced[d.key] then
      inc.announced[d.key] = true
      local text
      if d.kind == "escalation" then
        text = string.format("escalate to %s %s: %s (%s) is unresolved after %s", d.level, d.who, inc.id,
                             inc.severity, M.span(d.after))
        render.print(render.bold(render.red("  ⚠ ESCALATE")) .. "  " .. text)
        audit("escalation", { incident = inc.id, severity = inc.severity, level = d.level, who = d.who,
                              after_s = d.after, elapsed_s = now - inc.started, text = text })
        escalations[#escalations + 1] = text
      else
        text = string.format("%s (%s) has passed its resolution target of %s", inc.id, inc.severity, M.span(d.after))
        render.print(render.bold(render.red("  ⚠ TARGET MISSED")) .. "  " .. text)
        audit("target_missed", { incident = inc.id, severity = inc.severity, target = "resolution",
                                 after_s = d.after, elapsed_s = now - inc.started, text = text })
      end
    end
  end
  return escalations
end

-- Once per cadence period: a reminder that a status update is due.
local function remind_update(inc, now)
  local every = inc.sev.update_every
  if not every then return end
  local due = (inc.last_update or inc.started) + every
  if now >= due and inc.reminded ~= due then
    inc.reminded = due
    render.print(render.yellow("  ⏰ status update due") .. string.format(
      ": none for %s (%s: every %s); u at the step menu posts one", M.span(now - (inc.last_update or inc.started)),
      inc.severity, M.span(every)))
  end
end

----------------------------------------------------------------------- incident options
local function check_id(id)
  if not id:match("^[%w][%w_.:/#-]*$") or #id > 64 then
    return nil, "--incident: '" .. id .. "' is not an incident id (letters, digits and - _ . : / #, like INC-42)"
  end
  return id
end

-- --since: an ISO 8601 UTC time, or a duration ago ("20m"): when the incident began.
local function parse_since(s, now)
  local t = M.parse_iso(s)
  if t then
    if t > now + 60 then return nil, "--since " .. s .. " is in the future" end
    return t
  end
  local d = core.duration(s)
  if d then return now - d end
  return nil, "--since: '" .. s .. "' is neither a UTC time (2025-01-15T14:35Z) nor a duration ago (20m)"
end

-- The incident of a run, from the options (and from the transcript being resumed), or nil.
local function incident_of(rb, opts, cfg, now)
  if not opts.incident then
    for _, k in ipairs({ "severity", "since", "impact" }) do
      if opts[k] then return nil, "--" .. k .. " needs --incident ID (the incident it belongs to)" end
    end
    return false
  end
  local id, err = check_id(opts.incident)
  if not id then return nil, err end
  local severity = opts.severity or rb.severity
  local sev = cfg.severities[severity]
  if not sev then
    local best = suggest(severity, M.severity_names(cfg))
    return nil, string.format("--severity: unknown severity '%s'%s (known: %s; add more in %s)", severity, best,
                              table.concat(M.severity_names(cfg), ", "), cfg.path)
  end
  local started = now
  if opts.since then
    started, err = parse_since(opts.since, now)
    if not started then return nil, err end
  end
  return { id = id, severity = severity, sev = sev, started = started, impact = opts.impact,
           announced = {} }
end

------------------------------------------------------------------------ the session hooks
local Session = {}
Session.__index = Session

-- The session object the engine calls. opts: incident, severity, since, impact, lock_timeout,
-- resume (from resume.lua), dry_run. Returns it, or nil and a usage error.
function M.session(rb, opts)
  local cfg, err = M.load_config()
  if not cfg then return nil, err end
  local now = M.now()
  local inc
  inc, err = incident_of(rb, opts, cfg, now)
  if inc == nil then return nil, err end
  local s = setmetatable({ rb = rb, opts = opts, cfg = cfg, inc = inc or nil, findings = {},   -- inc: false without --incident
                           resume = opts.resume }, Session)
  if s.inc and s.resume then s.resume.carry_over(s.inc) end
  s.menu_hint = s.inc and " · u: update" or ""
  return s
end

-- Takes the lock on (runbook, target). Returns nil to go on, or the exit code to stop with.
function Session:lock(run, inputs)
  local lock = require "lock"
  local code
  self.lock_state, code = lock.take(self.rb, inputs, {
    transcript = run.transcript, session = run.session, incident = self.inc and self.inc.id,
    timeout = self.opts.lock_timeout or 0, dry_run = self.opts.dry_run,
  })
  return code
end

function Session:header_fields()
  local h = {}
  if self.inc then
    h.incident = { id = self.inc.id, severity = self.inc.severity, started = M.iso(self.inc.started),
                   impact = self.inc.impact, escalated = self:announced_list(),
                   targets = { response = self.inc.sev.response, resolution = self.inc.sev.resolution },
                   last_update = self.inc.last_update and M.iso(self.inc.last_update) or nil }
  end
  if self.resume then h.resumed_from = self.resume.link end
  if self.lock_state and self.lock_state.id then h.lock = self.lock_state.id end
  return h
end

function Session:announced_list()
  local list = {}
  for k in pairs(self.inc.announced) do list[#list + 1] = k end
  table.sort(list)
  return list
end

function Session:start_fields(fields)
  if self.inc then fields.incident, fields.severity = self.inc.id, self.inc.severity end
  if self.resume then fields.resumed_from = self.resume.link.session end
  return fields
end

-- After the banner: the incident line, the lock's story, the resume record.
function Session:started(run)
  if self.inc then
    local inc = self.inc
    render.print(string.format("incident %s · %s (%s) · started %s", inc.id, inc.severity, inc.sev.title or "",
                               M.iso(inc.started)) .. (inc.impact and (" · impact: " .. inc.impact) or ""))
  end
  if self.lock_state then require("lock").report(self.lock_state) end
  if self.resume then self.resume.begin(run) end
end

-- Between steps: passed deadlines (once each), the status line, and whether the step is only a
-- re-check (completed in the session being resumed: no menu, its actions are not repeated).
function Session:before_step(run, step)
  if self.inc then
    local now = M.now()
    for _, text in ipairs(M.announce_passed(self.inc, now)) do self:post(run, "escalation", text) end
    remind_update(self.inc, now)
    render.print(render.dim(M.status_line(self.inc, now)))
    -- The first finding of a run is the cause identified: posted once, between steps.
    if self.identified == "due" then
      self.identified = "posted"
      self:post(run, "identified", self.identified_text)
    end
  end
  self.step = step
  if self.resume then return self.resume.before_step(run, step) end
end

-- Findings as status updates quote them: redacted, since updates leave for Slack and PagerDuty.
function Session:finding(text, code)
  self.findings[#self.findings + 1] = core.redact(code and (code .. ": " .. text) or text)
  -- A coded finding is a diagnosis (the shipped runbooks name theirs): the cause identified.
  if code and not self.identified then self.identified = "due" self.identified_text = core.redact(text) end
end

-- Posts an update ("identified", "resolved") or an escalation to the sinks, on behalf of the run;
-- a failure to post is shown, and never ends the run. Without sinks in config.lua nothing is
-- posted: the run's own output already says it all.
function Session:post(run, kind, text)
  if #self.cfg.status.sinks == 0 then return end
  local status = require "status"
  local ok, err
  if kind == "escalation" then ok, err = pcall(status.escalation, self, run, text)
  else ok, err = pcall(status.post, self, run, kind, text) end
  if ok then return end
  local control = core.is_control(err)
  if control then error(err, 0) end
  render.outcome("error", "status update failed: " .. core.redact(tostring(err)))
end

-- The run's outcome, under --incident: the identified update still due, then resolved, or the
-- escalation with its reason.
function Session:outcome(run)
  if not self.inc or not run.outcome or run.aborted then return end
  if self.identified == "due" then
    self.identified = "posted"
    self:post(run, "identified", self.identified_text)
  end
  if run.outcome == "resolved" then self:post(run, "resolved", run.outcome_msg)
  else self:post(run, "escalation", run.outcome_msg) end
end

-- ctx:update(status, text) and the menu's u.
function Session:update(run, status, text)
  return require("status").post(self, run, status, text)
end

-- The step menu's extra keys. Returns true when the line was ours.
function Session:menu(run, line)
  if line ~= "u" or not self.inc then return false end
  return require("status").from_menu(self, run) or true
end

function Session:finish()
  if self.lock_state then require("lock").release(self.lock_state) end
  self.lock_state = nil
end

return M
