-- audit.lua - reading transcripts back: `runbook transcript verify` and `runbook transcript show`.
-- verify re-computes the hash chain (see interp/transcript.h) and reports the first line at which
-- the file stops being what the writer wrote.
local core  = require "core"
local cjson = require "cjson"

local M = {}

local function decode(s)
  local ok, v = pcall(cjson.decode, s)
  if ok then return v end
  return nil
end

local function split_lines(data)
  local lines, pos = {}, 1
  while pos <= #data do
    local nl = data:find("\n", pos, true)
    if not nl then lines[#lines + 1] = { text = data:sub(pos), torn = true } break end
    lines[#lines + 1] = { text = data:sub(pos, nl - 1) }
    pos = nl + 1
  end
  return lines
end

local SEAL_SUFFIX = ',"seal":"(%x+)"}$'

-- Returns "complete", "truncated" or "invalid", the line number (for the latter two), a reason,
-- and on success a table of facts (lines, records, head).
function M.verify_data(data)
  local lines = split_lines(data)
  if #lines == 0 then return "truncated", 1, "empty file" end
  local function bad(i, why) return (lines[i].torn and "truncated" or "invalid"), i, why end
  local header = decode(lines[1].text)
  if lines[1].torn then return "truncated", 1, "the header line is incomplete" end
  if type(header) ~= "table" or header.version ~= 2 or type(header.runbook) ~= "table" then
    return "invalid", 1, "not an asciicast v2 header with a runbook object"
  end
  local head, seq, ended = core.sha256(lines[1].text), 0, nil
  for i = 2, #lines do
    local line = lines[i]
    if ended then return "invalid", i, "text after session_end" end
    if line.torn then return "truncated", i, "the last line is incomplete" end
    local ev = decode(line.text)
    if type(ev) ~= "table" or type(ev[1]) ~= "number" or type(ev[2]) ~= "string" or type(ev[3]) ~= "string" then
      return bad(i, "not an event [time, code, text]")
    end
    if ev[2] == "a" then
      local rec = decode(ev[3])
      if type(rec) ~= "table" then return bad(i, "audit record is not JSON") end
      seq = seq + 1
      if rec.seq ~= seq then return "invalid", i, string.format("audit seq %s, expected %d (a record is missing)", tostring(rec.seq), seq) end
      if rec.prev ~= head then return "invalid", i, "chain broken: a line before this one was changed, removed or inserted" end
      if rec.type == "session_end" then
        local seal = ev[3]:match(SEAL_SUFFIX)
        if not seal or seal ~= rec.seal then return "invalid", i, "session_end has no seal" end
        local body = ev[3]:sub(1, #ev[3] - #(',"seal":"' .. seal .. '"}')) .. "}"
        if core.sha256(body) ~= seal then return "invalid", i, "session_end was altered" end
        ended = rec
      end
    elseif ev[2] ~= "o" and ev[2] ~= "m" and ev[2] ~= "i" then
      return "invalid", i, "unknown event code '" .. ev[2] .. "'"
    end
    head = core.chain(head, line.text)
  end
  if not ended then return "truncated", #lines + 1, "no session_end record" end
  return "complete", nil, nil, { lines = #lines, records = seq, head = head, header = header, last = ended }
end

local function read_file(path)
  local f, err = io.open(path, "rb")
  if not f then return nil, err end
  local data = f:read("a")
  f:close()
  return data
end

-- The audit records of a transcript that verifies complete (what a drill judges), or nil, why.
function M.records(path)
  local data, err = read_file(path)
  if not data then return nil, "cannot read " .. tostring(err) end
  local status, line, why = M.verify_data(data)
  if status ~= "complete" then return nil, string.format("%s is %s at line %d: %s", path, status, line, why) end
  local out = {}
  for _, l in ipairs(split_lines(data)) do
    local ev = decode(l.text)
    if type(ev) == "table" and ev[2] == "a" then out[#out + 1] = decode(ev[3]) end
  end
  return out
end

function M.verify(path)
  local data, err = read_file(path)
  if not data then core.err("runbook: cannot read " .. tostring(err) .. "\n") return 2 end
  local status, line, why, facts = M.verify_data(data)
  if status == "complete" then
    core.out(string.format("complete: %d lines, %d audit records, exit %s (%s)\nchain head %s\n",
      facts.lines, facts.records, tostring(math.tointeger(facts.last.exit) or facts.last.exit), tostring(facts.last.outcome), facts.head))
    return 0
  end
  core.out(string.format("%s at line %d: %s\n", status, line, why))
  return 1
end

-- Durations as recorded ("12.345") read as "12.3"; a whole number is not "12.0" or "12".
local function millis(v)
  return type(v) == "number" and string.format("%.1f", v) or tostring(v)
end

local function describe(rec)
  local t = rec.type
  if t == "probe" then
    return string.format("%s %s → %s%s (%s ms)", rec.primitive or "?", rec.target or "", rec.outcome or "?",
      rec.summary and rec.summary ~= "" and (": " .. rec.summary) or "", millis(rec.duration_ms))
  elseif t == "plan" then
    return string.format("%s%s: %s", rec.irreversible and "IRREVERSIBLE " or "", rec.primitive or "?", rec.summary or "")
  elseif t == "confirm" then
    return string.format("%s (%s) by %s%s", rec.answer or "?", rec.how or "", rec.user or "?",
      rec.tty and rec.tty ~= "" and (" on " .. rec.tty) or "")
  elseif t == "action_start" then
    return string.format("%s %s", rec.primitive or "?", rec.target or "")
  elseif t == "action_result" then
    return string.format("%s → %s%s (%s ms)", rec.primitive or "?", rec.outcome or "?",
      rec.summary and rec.summary ~= "" and (": " .. rec.summary) or "", millis(rec.duration_ms))
  elseif t == "check" then
    local v = type(rec.value) == "number" and (math.tointeger(rec.value) or rec.value) or "?"
    return string.format("%s: %s → %s%s", rec.label or "?", tostring(v), rec.status or "?",
      (rec.warn or rec.crit) and string.format(" (warn %s, crit %s)", rec.warn or "-", rec.crit or "-") or "")
  elseif t == "note" then
    return string.format("[%s] %s", rec.level or "note", rec.text or "")
  elseif t == "step_start" then
    return rec.title or ""
  elseif t == "step_end" then
    return string.format("%s%s", rec.outcome or "?", rec.duration_ms and (" in " .. millis(rec.duration_ms) .. " ms") or "")
  elseif t == "error" or t == "interrupt" then
    return rec.message or ""
  elseif t == "session_start" then
    return string.format("%s by %s (session %s)", rec.runbook or "?", rec.user or "?", rec.session or "?")
  elseif t == "session_end" then
    return string.format("%s, exit %s", rec.outcome or "?", tostring(math.tointeger(rec.exit) or rec.exit))
  elseif t == "repl" then             -- a chunk evaluated at the REPL (repl.lua), then its outcome
    return "> " .. (rec.input or ""):gsub("\n", " ⏎ ")
  elseif t == "repl_result" then
    return (rec.outcome or "?") .. (rec.result and rec.result ~= "" and (": " .. rec.result) or "")
  end
  return type(rec.text) == "string" and rec.text or ""   -- records that describe themselves (escalation, status_update, resume, lock)
end

function M.show(path)
  local data, err = read_file(path)
  if not data then core.err("runbook: cannot read " .. tostring(err) .. "\n") return 2 end
  local lines = split_lines(data)
  local header = lines[1] and decode(lines[1].text)
  if type(header) ~= "table" or type(header.runbook) ~= "table" then
    core.err("runbook: " .. path .. " is not a runbook transcript\n")
    return 1
  end
  local h = header.runbook
  core.out(string.format("%s · session %s · %s@%s · started %s%s%s\n", tostring(h.name), tostring(h.session),
    tostring(h.user), tostring(h.host), tostring(h.started), h.dry_run and " · dry run" or "",
    h.yes and " · --yes" or ""))
  for i = 2, #lines do
    local ev = decode(lines[i].text)
    if type(ev) == "table" and ev[2] == "a" then
      local rec = decode(ev[3]) or {}
      local ts = type(rec.ts) == "string" and rec.ts:match("T([%d:.]+)") or "?"
      core.out(string.format("%-12s %-14s %-13s %s\n", ts, tostring(rec.step or ""), tostring(rec.type), describe(rec)))
    end
  end
  local status, line, why = M.verify_data(data)
  core.out(status == "complete" and "transcript complete\n" or string.format("transcript %s at line %d: %s\n", status, line, why))
  return 0
end

return M
