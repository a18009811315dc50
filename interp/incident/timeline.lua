-- timeline.lua - `runbook timeline TRANSCRIPT...`: a Markdown post-mortem draft built from the
-- audit records of one or more transcripts of the same incident (a session, the session that
-- resumed it, a colleague's run against another host).
--
-- It only states what the transcripts hold: a summary (incident, severity, runbooks, operators,
-- start, end, outcome), durations (to respond, to the first finding, to the first successful
-- action, to resolution), a timeline table (time, who, what: findings, confirmations, actions and
-- their results, escalations, status updates, takeovers), and what was declined, skipped or not
-- repeated. Every transcript is verified first: an invalid one (edited, spliced) is refused, since
-- a post-mortem must not rest on an altered record; a truncated one (a crash) is used up to where it
-- stops, with a warning, and the draft says so.
local core     = require "core"
local cjson    = require "cjson"
local incident = require "incident"

local M = {}

local EXIT_OK, EXIT_BAD, EXIT_USAGE = 0, 1, 2

local function decode(s)
  local ok, v = pcall(cjson.decode, s)
  return ok and v or nil
end

local function cell(s)
  return (tostring(s or ""):gsub("[\r\n]+", " "):gsub("|", "\\|"))
end

local function int(v) return math.tointeger(v) or v end

-- One verified transcript: { path, header, records (with .who, .session), status, line, why, head }.
local function load(path)
  local data, err = require("audit").read_file(path)
  if not data then return nil, err end
  local status, line, why, facts = require("audit").verify_data(data)
  if status == "invalid" then
    return nil, string.format("%s is invalid at line %d (%s); a post-mortem must not rest on an altered record: " ..
                              "leave it out, or see 'runbook transcript verify %s'", path, line, why, path)
  end
  local lines = {}
  for l in data:gmatch("([^\n]*)\n") do lines[#lines + 1] = l end
  local last = status == "complete" and #lines or math.min(#lines, line - 1)
  local header = lines[1] and decode(lines[1])
  local h = type(header) == "table" and header.runbook
  if type(h) ~= "table" then return nil, path .. " is not a runbook transcript" end
  local as_text = require("audit").as_text   -- untrusted input: text fields of other types become text
  h = as_text(h)
  if type(h.incident) ~= "table" then h.incident = nil end
  local t = { path = path, header = h, records = {}, status = status, line = line, why = why,
              head = facts and facts.head }
  for i = 2, last do
    local ev = decode(lines[i])
    if type(ev) == "table" and ev[2] == "a" then
      local rec = decode(ev[3])
      if type(rec) == "table" then
        rec = as_text(rec)
        if type(rec.from) ~= "table" then rec.from = nil end
        rec.who, rec.session, rec.t = h.user, h.session, incident.parse_iso(rec.ts)
        rec.runbook = h.name
        t.records[#t.records + 1] = rec
      end
    end
  end
  return t
end

----------------------------------------------------------------------------------- the rows
local function ok_outcome(outcome)
  outcome = tostring(outcome or "")
  return outcome == "exit 0" or outcome == "ok" or outcome:match("^2%d%d") ~= nil or outcome:match("^HTTP 2") ~= nil
end

local CONFIRM = {
  yes = "confirmed", declined = "declined", ["dry-run"] = "shown only (dry run)",
  ["not repeated"] = "not repeated (resumed session)",
}

-- Folds records into rows { t, ts, who, step, what, kind } and collects the facts of the summary.
local function rows_of(records, facts)
  local rows, plans, updates = {}, {}, {}   -- per session: sessions may overlap in time
  local function add(rec, kind, what)
    rows[#rows + 1] = { t = rec.t, ts = rec.ts, who = rec.who, step = rec.step, what = what, kind = kind }
  end
  for _, rec in ipairs(records) do
    local t, sid = rec.type, rec.session
    local plan, in_update = plans[sid], updates[sid]
    if t == "session_start" then
      add(rec, "session", string.format("session %s started: runbook %s%s", tostring(rec.session), tostring(rec.runbook),
        rec.resumed_from and (", resuming session " .. tostring(rec.resumed_from)) or ""))
    elseif t == "resume" then
      local from = rec.from or {}
      add(rec, "takeover", string.format("took over from %s@%s (session %s: %s)", tostring(from.user), tostring(from.host),
        tostring(from.session), tostring(from.ended)))
      facts.takeovers[#facts.takeovers + 1] = rec
    elseif t == "note" and rec.level == "finding" then
      add(rec, "finding", "finding: " .. tostring(rec.text))
      facts.first_finding = facts.first_finding or rec.t
    elseif t == "check" and (rec.status == "WARNING" or rec.status == "CRITICAL") then
      add(rec, "finding", string.format("%s: %s = %s", rec.status, tostring(rec.label), tostring(int(rec.value) or "?")))
      facts.first_finding = facts.first_finding or rec.t
    elseif t == "plan" then
      plans[sid] = rec
    elseif t == "confirm" then
      local word = CONFIRM[rec.answer] or tostring(rec.answer)
      local what = string.format("%s: %s", word, tostring(plan and plan.summary or "an action"))
      if rec.answer == "yes" then what = what .. string.format(" (%s by %s)", tostring(rec.how), tostring(rec.user)) end
      if rec.answer == "not repeated" then what = what .. ": " .. tostring(rec.how) end
      if in_update then
        in_update.posts[#in_update.posts + 1] = word
      else
        add(rec, rec.answer == "yes" and "confirm" or "decline", what)
        if rec.answer == "declined" then facts.declined[#facts.declined + 1] = rows[#rows] end
        if rec.answer == "not repeated" then facts.not_repeated[#facts.not_repeated + 1] = rows[#rows] end
      end
      plans[sid] = nil
    elseif t == "action_result" and not in_update then
      add(rec, "action", string.format("action %s → %s%s (%s ms)", tostring(rec.primitive), tostring(rec.outcome),
        rec.summary and rec.summary ~= "" and (": " .. rec.summary) or "", tostring(int(math.floor((rec.duration_ms or 0) + 0.5)))))
      if ok_outcome(rec.outcome) then facts.mitigated = facts.mitigated or rec.t end
    elseif t == "error" or t == "interrupt" then
      add(rec, "error", (t == "error" and "step failed: " or "interrupted: ") .. tostring(rec.message))
    elseif t == "step_end" and (rec.outcome == "skipped" or rec.outcome == "declined") then
      add(rec, "skip", "step " .. (rec.outcome == "skipped" and "skipped by the operator" or "skipped: its action was declined"))
      facts.skipped[#facts.skipped + 1] = rows[#rows]
    elseif t == "escalation" or t == "target_missed" then
      add(rec, "escalation", (t == "escalation" and "escalation due: " or "target missed: ") .. tostring(rec.text))
      facts.escalations[#facts.escalations + 1] = rec
    elseif t == "status_update" then
      updates[sid] = { rec = rec, posts = {} }
    elseif t == "status_update_result" then
      local u = in_update and in_update.rec or rec
      add(u, "update", string.format("status update (%s): %s → %s", tostring(rec.status),
        tostring((u.message or ""):match("^[^\n]*")), tostring(rec.text)))
      facts.updates = facts.updates + 1
      updates[sid] = nil
    elseif t == "lock" and rec.event == "stale" then
      add(rec, "lock", tostring(rec.text))
    elseif t == "session_end" then
      add(rec, "end", string.format("session %s ended: %s (exit %s)", tostring(rec.session), tostring(rec.outcome),
        tostring(int(rec.exit))))
      if tostring(rec.outcome):match("^resolved") then facts.resolved = facts.resolved or rec.t end
      facts.last_end = rec
    end
  end
  return rows
end

------------------------------------------------------------------------------ the document
local function span_from(t0, t)
  if not (t0 and t) then return "—" end
  return incident.span(t - t0)
end

local function time_of(row, multi_day)
  if not row.ts then return "?" end
  local d, hms = row.ts:match("^%d%d%d%d%-(%d%d%-%d%d)T(%d%d:%d%d:%d%d)")
  if not hms then return row.ts end
  return multi_day and (d .. " " .. hms) or hms
end

local function list_of(items, fn)
  local seen, out = {}, {}
  for _, it in ipairs(items) do
    local v = fn(it)
    if v and not seen[v] then seen[v] = true out[#out + 1] = v end
  end
  return out
end

local function document(ts, rows, facts)
  local inc, first = nil, ts[1].header
  for _, t in ipairs(ts) do inc = inc or (type(t.header.incident) == "table" and t.header.incident) end
  local start_t = inc and incident.parse_iso(inc.started)
  local first_session = nil
  for _, t in ipairs(ts) do
    local s = incident.parse_iso(t.header.started)
    if s and (not first_session or s < first_session) then first_session = s end
  end
  start_t = start_t or first_session
  local last_t = rows[#rows] and rows[#rows].t
  local out = {}
  local function w(s) out[#out + 1] = s end
  w(string.format("# Post-mortem draft: %s", inc and (inc.id .. " (" .. tostring(inc.severity) .. ")") or first.name))
  w("")
  w(string.format("_Drafted by runbook %s from %d transcript%s. It states only what they record; the root cause, " ..
                  "the impact on users and the action items are yours to write._", core.version, #ts, #ts == 1 and "" or "s"))
  w("")
  w("## Summary")
  w("")
  if inc then
    w(string.format("- **Incident:** %s · %s%s", inc.id, tostring(inc.severity),
      inc.impact and (" · impact: " .. inc.impact) or ""))
  end
  w("- **Runbooks:** " .. table.concat(list_of(ts, function(t)
    return string.format("%s (sha256 %s)", t.header.name, tostring(t.header.sha256):sub(1, 12)) end), ", "))
  w("- **Operators:** " .. table.concat(list_of(ts, function(t)
    return tostring(t.header.user) .. "@" .. tostring(t.header.host) end), ", "))
  if #facts.takeovers > 0 then
    w("- **Handovers:** " .. table.concat(list_of(facts.takeovers, function(r)
      return string.format("%s took over from %s at %s", tostring(r.who), tostring((r.from or {}).user),
                           tostring(r.ts):match("T(%d%d:%d%d:%d%d)") or "?") end), "; "))
  end
  w(string.format("- **Start:** %s%s", start_t and incident.iso(start_t) or "?",
    inc and "" or " (the first session; no incident start was recorded)"))
  local last = facts.last_end
  w(string.format("- **End:** %s · outcome: %s", last_t and incident.iso(last_t) or "?",
    last and string.format("%s (exit %s)", tostring(last.outcome), tostring(int(last.exit))) or "the last session did not end cleanly"))
  w(string.format("- **Duration:** %s", span_from(start_t, facts.resolved or last_t)))
  local targets = inc and inc.targets or {}
  w(string.format("- **Time to respond** (first session): %s%s", span_from(start_t, first_session),
    targets.response and (" (target " .. incident.span(targets.response) .. ")") or ""))
  w(string.format("- **Time to first finding:** %s", span_from(start_t, facts.first_finding)))
  w(string.format("- **Time to mitigation** (first successful action): %s", span_from(start_t, facts.mitigated)))
  w(string.format("- **Time to resolution:** %s%s", facts.resolved and span_from(start_t, facts.resolved) or "not resolved in these transcripts",
    targets.resolution and (" (target " .. incident.span(targets.resolution) .. ")") or ""))
  w(string.format("- **Escalations:** %s", #facts.escalations == 0 and "none" or table.concat(list_of(facts.escalations,
    function(r) return tostring(r.text) end), "; ")))
  w(string.format("- **Status updates:** %d", facts.updates))
  w("")
  w("## Timeline")
  w("")
  local multi_day = rows[1] and rows[#rows] and rows[1].ts and rows[#rows].ts and rows[1].ts:sub(1, 10) ~= rows[#rows].ts:sub(1, 10)
  w("| time (UTC) | who | step | what |")
  w("|---|---|---|---|")
  for _, r in ipairs(rows) do
    w(string.format("| %s | %s | %s | %s |", time_of(r, multi_day), cell(r.who), cell(r.step), cell(r.what)))
  end
  w("")
  w("## Declined, skipped or not repeated")
  w("")
  local any = false
  for _, group in ipairs({ facts.declined, facts.skipped, facts.not_repeated }) do
    for _, r in ipairs(group) do
      any = true
      w(string.format("- %s %s%s: %s", time_of(r, multi_day), cell(r.who), r.step and (" (" .. r.step .. ")") or "", r.what))
    end
  end
  if not any then w("Nothing: every action asked for was confirmed, and no step was skipped.") end
  w("")
  w("## Transcripts")
  w("")
  for _, t in ipairs(ts) do
    if t.status == "complete" then
      w(string.format("- `%s`: session %s, complete, chain head `%s`", t.path, tostring(t.header.session), tostring(t.head)))
    else
      w(string.format("- `%s`: session %s, **truncated at line %d** (%s): the session ended abruptly; the draft uses what precedes",
        t.path, tostring(t.header.session), t.line, tostring(t.why)))
    end
  end
  w("")
  w("## Root cause")
  w("")
  w("_To be written._")
  w("")
  w("## Action items")
  w("")
  w("- [ ] _To be written._")
  return table.concat(out, "\n") .. "\n"
end

-- Refuses transcripts of different incidents (their timelines are not one story).
local function check_same_incident(ts)
  local seen, first
  for _, t in ipairs(ts) do
    local id = type(t.header.incident) == "table" and t.header.incident.id
    if id then
      if seen and seen ~= id then
        return nil, string.format("these transcripts belong to different incidents (%s in %s, %s in %s): draft one timeline per incident",
                                  seen, first, id, t.path)
      end
      seen, first = id, first or t.path
    end
  end
  return true
end

function M.main(args)
  if #args == 0 then
    core.err("runbook: usage: runbook timeline TRANSCRIPT... (the transcripts of one incident)\n")
    return EXIT_USAGE
  end
  local ts = {}
  for _, path in ipairs(args) do
    if path:sub(1, 1) == "-" then
      core.err("runbook: unknown option " .. path .. " (see 'runbook timeline --help')\n")
      return EXIT_USAGE
    end
    local t, err = load(path)
    if not t then core.err("runbook: cannot draft a timeline: " .. err .. "\n") return EXIT_BAD end
    if t.status ~= "complete" then
      core.err(string.format("runbook: warning: %s is truncated at line %d (%s): using what precedes it\n",
                             path, t.line, tostring(t.why)))
    end
    ts[#ts + 1] = t
  end
  local ok, err = check_same_incident(ts)
  if not ok then core.err("runbook: cannot draft a timeline: " .. err .. "\n") return EXIT_BAD end
  local records = {}
  for _, t in ipairs(ts) do
    for i, rec in ipairs(t.records) do rec.order = #records + i end
    table.move(t.records, 1, #t.records, #records + 1, records)
  end
  table.sort(records, function(a, b)
    if a.ts ~= b.ts then return tostring(a.ts) < tostring(b.ts) end
    return a.order < b.order
  end)
  local facts = { takeovers = {}, declined = {}, skipped = {}, not_repeated = {}, escalations = {}, updates = 0 }
  local rows = rows_of(records, facts)
  core.out(core.redact(document(ts, rows, facts)))
  return EXIT_OK
end

return M
