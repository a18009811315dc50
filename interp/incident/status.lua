-- status.lua - status updates: ctx:update(status, text) in a runbook, and `u` at the step menu.
--
-- An update is rendered from a template with the incident's facts, shown, recorded (a
-- status_update record with the message, then a status_update_result record with what each sink
-- did), and posted to the sinks of config.lua's status section. Posting to a webhook is an action:
-- it goes through the gate (http.post), so it is shown, confirmed and recorded like any other, is
-- only shown under --dry-run, and is not repeated by a resumed session. Without --incident an
-- update is shown and recorded but posted nowhere.
--
--   status = {
--     sinks = {
--       { type = "slack", url_env = "SLACK_WEBHOOK_URL", name = "#incidents" },  -- incoming webhook
--       { type = "pagerduty", routing_key_env = "PD_ROUTING_KEY" },              -- Events API v2
--       { type = "webhook", url = "https://...", headers = { Authorization = "Bearer ..." } },
--       { type = "stdout" },                                                     -- shown only
--     },
--     templates = { identified = "{STATUS} {incident}: {text}", ... },
--   }
--
-- URLs (and their paths), routing keys and header values are secrets: redacted everywhere. Prefer
-- url_env / routing_key_env, which read the environment, to secrets written in the file.
local core     = require "core"
local cjson    = require "cjson"
local incident = require "incident"
local render   = require "render"

local M = {}

M.STATUSES = { "investigating", "identified", "monitoring", "resolved" }
local IS_STATUS = {}
for _, s in ipairs(M.STATUSES) do IS_STATUS[s] = true end

M.FIELDS = { "incident", "severity", "severity_title", "status", "STATUS", "started", "elapsed", "runbook",
             "step", "findings", "text", "impact", "operator", "host", "session", "next_update" }
local IS_FIELD = {}
for _, f in ipairs(M.FIELDS) do IS_FIELD[f] = true end

-- In the spirit of the playbooks' communication templates: status, severity, impact, start,
-- what is known, when the next update comes.
M.TEMPLATES = {
  investigating = "[{STATUS}] {incident} · {severity} ({severity_title})\n"
               .. "Impact: {impact}\n"
               .. "Started {started} · {elapsed} elapsed · runbook {runbook}, now at: {step}\n"
               .. "{text}\n"
               .. "Findings so far: {findings}\n"
               .. "We are investigating. Next update by {next_update}.",
  identified = "[{STATUS}] {incident} · {severity} ({severity_title})\n"
            .. "We have identified the cause and are working on a fix. {text}\n"
            .. "Findings: {findings}\n"
            .. "Impact: {impact} · started {started} · {elapsed} elapsed\n"
            .. "Next update by {next_update}.",
  monitoring = "[{STATUS}] {incident} · {severity}\n"
            .. "A fix is in place and we are watching the system. {text}\n"
            .. "Impact: {impact} · started {started} · {elapsed} elapsed\n"
            .. "Next update by {next_update}.",
  resolved = "[{STATUS}] {incident} · {severity}\n"
          .. "{text}\n"
          .. "Started {started}, resolved after {elapsed}. A post-mortem will follow.",
}

-- An escalation (ctx:escalate, or the incident clock's chain) is posted like an update.
M.ESCALATED = "[ESCALATED] {incident} · {severity} ({severity_title})\n"
           .. "{text}\n"
           .. "Findings: {findings}\n"
           .. "Impact: {impact} · started {started} · {elapsed} elapsed · runbook {runbook}, at: {step}"

local PAGERDUTY_URL = "https://events.pagerduty.com/v2/enqueue"
-- Events API v2: an escalation or a new incident triggers (pages), identified and monitoring
-- acknowledge (someone is on it), resolved resolves.
local PD_ACTION = { investigating = "trigger", escalated = "trigger", identified = "acknowledge",
                    monitoring = "acknowledge", resolved = "resolve" }
local PD_SEVERITY = { "critical", "error", "warning", "info" }   -- by severity rank

------------------------------------------------------------------------------- validation
local bad = incident.config_error
local SINK_TYPES = { "stdout", "slack", "pagerduty", "webhook" }
local SINK_KEYS = {
  stdout = { "type", "name" },
  slack = { "type", "name", "url", "url_env", "timeout" },
  webhook = { "type", "name", "url", "url_env", "headers", "timeout" },
  pagerduty = { "type", "name", "url", "routing_key", "routing_key_env", "timeout" },
}

-- A URL and its path are secrets: a webhook URL is its own credential.
local function secret_url(url)
  core.secret(url)
  local path = url:match("^[%a][%w+.-]*://[^/]+(/.+)$")
  if path then core.secret(path) end
end

-- field (a literal value) or field_env (the name of an environment variable); returns the value
-- (nil when the variable is unset: the sink then fails at posting time, saying so).
local function value_or_env(spec, field, where, required)
  local v, env = spec[field], spec[field .. "_env"]
  if v ~= nil and env ~= nil then bad(where, "give %s or %s_env, not both", field, field) end
  if v ~= nil then
    if type(v) ~= "string" or v == "" then bad(where .. "." .. field, "must be a non-empty string") end
    return v
  end
  if env ~= nil then
    if type(env) ~= "string" or not env:match("^[%a_][%w_]*$") then
      bad(where .. "." .. field .. "_env", "must name an environment variable")
    end
    local got = os.getenv(env)
    return got ~= "" and got or nil, env
  end
  if required then bad(where, "needs %s = \"...\" or %s_env = \"VARIABLE\"", field, field) end
end

local function check_sink(i, spec, path)
  local where = string.format("%s: status.sinks[%d]", path, i)
  if type(spec) ~= "table" then bad(where, "must be a table { type = ..., ... }") end
  local kind = spec.type
  if not SINK_KEYS[kind] then
    bad(where .. ".type", "must be one of %s, got %s", table.concat(SINK_TYPES, ", "), tostring(kind))
  end
  incident.check_keys(spec, SINK_KEYS[kind], where)
  if spec.name ~= nil and (type(spec.name) ~= "string" or spec.name == "") then bad(where .. ".name", "must be a string") end
  local sink = { type = kind, name = spec.name or kind, timeout = 10 }
  if spec.timeout ~= nil then sink.timeout = incident.check_duration(spec.timeout, where .. ".timeout") end
  if kind == "slack" or kind == "webhook" then
    sink.url, sink.env = value_or_env(spec, "url", where, true)
  elseif kind == "pagerduty" then
    sink.routing_key, sink.env = value_or_env(spec, "routing_key", where, true)
    sink.url = value_or_env(spec, "url", where, false) or PAGERDUTY_URL
    if sink.routing_key then core.secret(sink.routing_key) end
  end
  if sink.url then
    if not sink.url:match("^https?://[^/]") then bad(where .. ".url", "must be an http:// or https:// URL") end
    if sink.url ~= PAGERDUTY_URL then secret_url(sink.url) end
  end
  if spec.headers ~= nil then
    if type(spec.headers) ~= "table" then bad(where .. ".headers", "must be a table of name = value") end
    sink.headers = {}
    for k, v in pairs(spec.headers) do
      if type(k) ~= "string" or not k:match("^[%w-]+$") or type(v) ~= "string" then
        bad(where .. ".headers", "must map header names to strings (%s)", tostring(k))
      end
      core.secret(v)
      sink.headers[k] = v
    end
  end
  return sink
end

local function check_template(status, text, where)
  if not IS_STATUS[status] then
    bad(where, "templates are per status: %s (got %s)", table.concat(M.STATUSES, ", "), tostring(status))
  end
  where = where .. "." .. status
  if type(text) ~= "string" then bad(where, "must be a string") end
  for field in text:gmatch("{([%w_]+)}") do
    if not IS_FIELD[field] then
      bad(where, "unknown field {%s} (fields: %s)", field, table.concat(M.FIELDS, ", "))
    end
  end
  return text
end

-- The validated status section: { sinks = {...}, templates = status -> text }.
function M.validate(section, path)
  local out = { sinks = {}, templates = {} }
  for k, v in pairs(M.TEMPLATES) do out.templates[k] = v end
  if section == nil then return out end
  incident.check_keys(section, { "sinks", "templates" }, path .. ": status")
  if section.sinks ~= nil then
    if type(section.sinks) ~= "table" then bad(path .. ": status.sinks", "must be a list of sinks") end
    for i, spec in ipairs(section.sinks) do out.sinks[i] = check_sink(i, spec, path) end
  end
  if section.templates ~= nil then
    if type(section.templates) ~= "table" then bad(path .. ": status.templates", "must be a table status = text") end
    for status, text in pairs(section.templates) do
      out.templates[status] = check_template(status, text, path .. ": status.templates")
    end
  end
  return out
end

---------------------------------------------------------------------------------- rendering
local function utc_minute(t) return os.date("!%Y-%m-%d %H:%M UTC", math.floor(t)) end

local function facts_of(session, run, status, text, now)
  local inc, id = session.inc, core.identity()
  local step = session.step
  local findings = #session.findings > 0 and table.concat(session.findings, "; ") or "none yet"
  local f = {
    incident = inc and inc.id or "(no incident)", severity = inc and inc.severity or session.rb.severity,
    severity_title = inc and inc.sev.title or "", status = status, STATUS = status:upper(),
    started = utc_minute(inc and inc.started or now), elapsed = incident.span(now - (inc and inc.started or now)),
    runbook = session.rb.name, step = step and string.format("%d. %s", step.index, step.title) or "the start",
    findings = findings, text = text, impact = inc and inc.impact or "being assessed",
    operator = id.user, host = id.host, session = run.session,
    next_update = "when there is news",
  }
  local every = inc and inc.sev.update_every
  if every and status ~= "resolved" then f.next_update = os.date("!%H:%M UTC", math.floor(now + every)) end
  for k, v in pairs(f) do   -- what leaves for a webhook is redacted like what is shown
    if type(v) == "string" then f[k] = core.redact(v) end
  end
  return f
end

-- Fills {field}s; lines left empty (an empty {text}) are dropped.
function M.render(template, facts)
  local text = template:gsub("{([%w_]+)}", function(k) return facts[k] ~= nil and tostring(facts[k]) or "" end)
  local lines = {}
  for line in (text .. "\n"):gmatch("(.-)\n") do
    line = line:gsub("%s+$", "")
    if line ~= "" then lines[#lines + 1] = line end
  end
  return table.concat(lines, "\n")
end

------------------------------------------------------------------------------------ payloads
local function slack_payload(message) return { text = message } end

local function pagerduty_payload(sink, session, facts, message)
  local inc = session.inc
  local body = { routing_key = sink.routing_key, dedup_key = inc.id, event_action = PD_ACTION[facts.status] or "trigger" }
  if body.event_action == "trigger" then
    body.payload = {
      summary = (message:match("^[^\n]*") .. " " .. facts.text):sub(1, 1024),
      source = facts.host, severity = PD_SEVERITY[inc.sev.rank or 2] or "error",
      timestamp = incident.iso(incident.now()), component = facts.runbook, class = inc.severity,
      custom_details = { status = facts.status, text = facts.text, findings = facts.findings,
                         step = facts.step, elapsed = facts.elapsed, impact = facts.impact,
                         operator = facts.operator, session = facts.session },
    }
  end
  return body
end

local function webhook_payload(session, facts, message, now)
  local inc = session.inc
  return { incident = inc.id, severity = inc.severity, status = facts.status, text = facts.text, message = message,
           started = incident.iso(inc.started), elapsed_s = now - inc.started, runbook = facts.runbook,
           step = facts.step, findings = session.findings, impact = inc.impact, operator = facts.operator,
           host = facts.host, session = facts.session, ts = incident.iso(now) }
end

---------------------------------------------------------------------------------- delivery
-- One POST through the gate. Returns what happened, in a few words.
local function post_json(sink, payload, summary, dry_run)
  if not sink.url or (sink.type == "pagerduty" and not sink.routing_key) then
    return "failed: $" .. tostring(sink.env) .. " is not set"
  end
  local ok, http = pcall(require, "http")
  if not ok or type(http) ~= "table" or not http.post then
    return "failed: this runbook binary has no http module"
  end
  local pok, r, err = pcall(http.post, sink.url, { json = payload, headers = sink.headers, timeout = sink.timeout,
                                                  summary = summary, target = sink.name })
  if not pok then
    local control = core.is_control(r)
    if control == "skip" then return "declined" end
    if control then error(r, 0) end   -- abort, Ctrl-C: the engine's business
    return "failed: " .. core.redact(tostring(r))
  end
  if not r then return "failed: " .. core.redact(tostring(err)) end
  if r.dry_run then return dry_run and "dry run: not sent" or "not repeated (resumed session)" end
  local status = math.tointeger(r.status) or r.status
  if type(status) == "number" and status >= 200 and status < 300 then return "posted (HTTP " .. status .. ")" end
  return "failed: HTTP " .. tostring(status)
end

local function deliver(sink, session, run, facts, message, now)
  if sink.type == "stdout" then return "shown" end
  if not session.inc then return "not posted: no incident (run with --incident ID)" end
  local summary = string.format("post the %s update of %s to %s", facts.status, session.inc.id, sink.name)
  if sink.type == "slack" then return post_json(sink, slack_payload(message), summary, run.dry_run) end
  if sink.type == "pagerduty" then
    return post_json(sink, pagerduty_payload(sink, session, facts, message), summary, run.dry_run)
  end
  return post_json(sink, webhook_payload(session, facts, message, now), summary, run.dry_run)
end

local function audit(kind, fields) core.audit(kind, cjson.encode(fields)) end

local function check_status(status, level)
  if not IS_STATUS[status] then
    error(string.format("ctx:update: the status must be %s, got %s", table.concat(M.STATUSES, ", "),
                        tostring(status)), level)
  end
end

local send

-- Renders, shows, records and posts an update. Returns { { sink, outcome }, ... }.
function M.post(session, run, status, text)
  check_status(status, 3)
  if text ~= nil and type(text) ~= "string" then error("ctx:update: the text must be a string", 3) end
  return send(session, run, status, text or "", session.cfg.status.templates[status])
end

-- An escalation, with its reason, to every sink (PagerDuty: a trigger at the incident's severity).
function M.escalation(session, run, reason)
  return send(session, run, "escalated", reason, M.ESCALATED)
end

send = function(session, run, status, text, template)
  local now = incident.now()
  local facts = facts_of(session, run, status, text, now)
  local message = M.render(template, facts)
  local sinks = session.cfg.status.sinks
  if #sinks == 0 then sinks = { { type = "stdout", name = "stdout" } } end
  render.print("  " .. render.bold("▸ status update") .. " · " .. status .. (session.inc and (" · " .. session.inc.id) or ""))
  render.block(message)
  local names = {}
  for i, s in ipairs(sinks) do names[i] = s.name end
  audit("status_update", { incident = session.inc and session.inc.id, status = status, message = message,
                           sinks = names, text = string.format("%s: %s", status, text) })
  local results, shown = {}, {}
  for _, sink in ipairs(sinks) do
    local outcome = deliver(sink, session, run, facts, message, now)
    results[#results + 1] = { sink = sink.name, outcome = outcome }
    shown[#shown + 1] = sink.name .. ": " .. outcome
  end
  if status ~= "escalated" then   -- an escalation is not the status update the cadence asks for
    if session.inc then session.inc.last_update = now end
    session.last_status = status
  end
  render.print("    → " .. table.concat(shown, " · "))
  audit("status_update_result", { status = status, results = results, text = table.concat(shown, " · ") })
  return results
end

-- A status word from what the operator typed: the word or a prefix that names one.
local function match_status(line)
  local found
  for _, s in ipairs(M.STATUSES) do
    if s == line then return s end
    if s:sub(1, #line) == line then
      if found then return nil end
      found = s
    end
  end
  return found
end

local function ask(question)
  local line, why = core.prompt(question)
  if not line and why == "interrupted" then core.clear_interrupt() end
  return line
end

-- `u` at the step menu: asks for the status and the text, then posts. Returns "abort" when the
-- operator aborted the run at a post's confirmation.
function M.from_menu(session, run)
  local last = session.last_status or "investigating"
  local line = ask(string.format("      status (investigating, identified, monitoring, resolved) [%s]: ", last))
  if not line then return end
  local status = line == "" and last or match_status(line)
  if not status then
    render.print("      no such status: " .. line .. " (nothing posted)")
    return
  end
  local text = ask("      message: ")
  if not text then return end
  local ok, err = pcall(M.post, session, run, status, text)
  if ok then return end
  local control = core.is_control(err)
  if control == "abort" then return "abort" end
  if control == "interrupt" then core.clear_interrupt() return end
  render.outcome("error", "status update failed: " .. core.redact(tostring(err)))
end

return M
