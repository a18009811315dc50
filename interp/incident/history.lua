-- history.lua - past sessions, from the transcript directory: `runbook history [NAME]` and the
-- "last run N days ago" of `runbook list`, so that a runbook nobody has run for months shows.
--
-- Reads each transcript's header line and its last line (session_end), not the whole file, and
-- does not verify the chain (`runbook transcript verify` does). A successful run is one that ended
-- with exit 0 (completed or resolved) and was not a dry run. "Now" is the incident clock, so that
-- RUNBOOK_FAKE_CLOCK (a test hook, see incident.lua) also moves "N days ago".
local core     = require "core"
local cjson    = require "cjson"
local incident = require "incident"
local render   = require "render"

local M = {}

local TAIL, MAX_TAIL = 4096, 65536   -- bytes read from the end of a transcript to find session_end
local DEFAULT_LIMIT = 50

-- The transcript directory, without creating it (list must not write anything).
function M.dir() return core.state_dir("transcripts") end

local function decode(s)
  local ok, v = pcall(cjson.decode, s)
  return ok and v or nil
end

-- The last whole line of data (which ends with a newline), and whether a newline precedes it (so
-- that it is whole even when data is only the end of a file). Linear: no pattern anchored at "$".
local function last_line(data)
  if data:sub(-1) ~= "\n" then return nil, false end
  local body = data:sub(1, -2)
  local start = body:match(".*\n()")
  return body:sub(start or 1), start ~= nil
end

-- The session_end record in the last whole line of data, or nil.
local function last_record(data)
  local last = last_line(data)
  local ev = last and last ~= "" and decode(last)
  if type(ev) ~= "table" or ev[2] ~= "a" or type(ev[3]) ~= "string" then return nil end
  local rec = decode(ev[3])
  return type(rec) == "table" and rec.type == "session_end" and rec or nil
end

-- One session: { path, name, started, duration, outcome, exit, user, host, incident, session,
-- resumed_from, dry_run, ok }, or nil when the file is not a transcript.
function M.read_session(path, mtime)
  local f = io.open(path, "rb")
  if not f then return nil end
  local first = f:read("l")
  local size = f:seek("end")
  local tail = ""
  for _, n in ipairs({ TAIL, MAX_TAIL }) do   -- session_end is short; a long last line gets a second read
    f:seek("set", math.max(0, size - n))
    tail = f:read("a") or ""
    local _, whole = last_line(tail)
    if size <= n or whole then break end
  end
  f:close()
  local header = first and decode(first)
  local h = type(header) == "table" and header.runbook
  if type(h) ~= "table" or type(h.name) ~= "string" then return nil end
  local started = incident.parse_iso(h.started)
  local last = last_record(tail)
  local s = { path = path, name = h.name, started = started, user = h.user, host = h.host, session = h.session,
              incident = type(h.incident) == "table" and h.incident.id or nil, dry_run = h.dry_run == true,
              resumed_from = type(h.resumed_from) == "table" and h.resumed_from.session or nil }
  if last then
    s.exit, s.outcome = math.tointeger(last.exit), tostring(last.outcome)
    local ended = incident.parse_iso(last.ts)
    s.duration = ended and started and ended - started
  else
    s.outcome = "ended abruptly"
    s.duration = mtime and started and mtime - started
    s.at_least = true
  end
  s.ok = s.exit == 0 and not s.dry_run
  return s
end

-- The transcript files of dir: { {path, mtime}, ... }.
local function transcript_files(dir)
  local f = io.open(dir, "rb")
  if not f then return {} end
  f:close()
  local sys = require "sys"
  local found = sys.files(dir, { pattern = "*.cast", recursive = false, limit = 100000 })
  return found and found.files or {}
end

-- Every session in the transcript directory, newest first.
function M.sessions(dir)
  local out = {}
  for _, file in ipairs(transcript_files(dir or M.dir())) do
    out[#out + 1] = M.read_session(file.path, file.mtime)
  end
  table.sort(out, function(a, b) return (a.started or 0) > (b.started or 0) end)
  return out
end

-- name -> { ok = epoch of the last successful run, last = epoch of the last run, runs = n }
function M.by_runbook(sessions)
  local out = {}
  for _, s in ipairs(sessions) do
    local r = out[s.name] or { runs = 0 }
    out[s.name] = r
    r.runs = r.runs + 1
    if s.started then
      r.last = math.max(r.last or s.started, s.started)
      if s.ok then r.ok = math.max(r.ok or s.started, s.started) end
    end
  end
  return out
end

-- "94 days ago", "3 hours ago", "just now".
function M.ago(seconds)
  seconds = math.max(0, seconds)
  local function n(v, unit) return string.format("%d %s%s ago", v, unit, v == 1 and "" or "s") end
  if seconds < 60 then return "just now" end
  if seconds < 3600 then return n(seconds // 60, "minute") end
  if seconds < 86400 then return n(seconds // 3600, "hour") end
  return n(seconds // 86400, "day")
end

-- A transcript's runbook and start, from the name exec gives it: NAME-YYYYmmddTHHMMSSZ-ID.cast.
local function name_and_stamp(path)
  return path:match("([^/]+)%-(%d%d%d%d%d%d%d%dT%d%d%d%d%d%dZ)%-%x+%.cast$")
end

-- For `runbook list`: a function name -> "last run 94 days ago", or nil when the transcript
-- directory holds no session at all (nothing to say yet). The file names say whose sessions they
-- are and when they started, so a runbook's transcripts are read newest first and only until its
-- last successful one: a directory of thousands of sessions costs `list` a few reads a runbook.
-- A file named otherwise is read to learn its runbook.
function M.last_run_texts()
  local by = {}   -- name -> { {path, mtime, stamp}, ... }
  for _, f in ipairs(transcript_files(M.dir())) do
    local name, stamp = name_and_stamp(f.path)
    if not name then
      local s = M.read_session(f.path, f.mtime)
      if s then name, stamp = s.name, os.date("!%Y%m%dT%H%M%SZ", math.floor(s.started or f.mtime or 0)) end
    end
    if name then
      by[name] = by[name] or {}
      table.insert(by[name], { path = f.path, mtime = f.mtime, stamp = stamp })
    end
  end
  if next(by) == nil then return nil end
  local now = incident.now()
  return function(name)
    local files, last = by[name] or {}, nil
    table.sort(files, function(a, b) return a.stamp > b.stamp end)
    for _, f in ipairs(files) do
      local s = M.read_session(f.path, f.mtime)
      if s and s.name == name and s.started then
        if s.ok then return "last run " .. M.ago(now - s.started) end
        last = last or s.started
      end
    end
    if not last then return "never run" end
    return string.format("no successful run (last attempt %s)", M.ago(now - last))
  end
end

local function when(t) return t and os.date("!%Y-%m-%d %H:%M", math.floor(t)) or "?" end

local function usage(msg)
  core.err("runbook: " .. msg .. "\n")
  return 2
end

-- `runbook history [NAME] [--limit N]`
function M.main(args)
  local name, limit = nil, DEFAULT_LIMIT
  local i = 1
  while i <= #args do
    local a = args[i]
    local v = a:match("^%-%-limit=(.*)$")
    if a == "--limit" then i = i + 1 v = args[i] or "" end
    if v then
      limit = math.tointeger(tonumber(v))
      if not limit or limit < 0 then return usage("--limit needs a whole number (0: all)") end
    elseif a:sub(1, 1) == "-" then
      return usage("unknown option " .. a .. " (see 'runbook history --help')")
    elseif name then
      return usage("history takes at most one runbook name")
    else
      name = a
    end
    i = i + 1
  end
  local all = M.sessions()
  local rows = {}
  for _, s in ipairs(all) do
    if not name or s.name == name then rows[#rows + 1] = s end
  end
  if #rows == 0 then
    core.out(name and ("no sessions of " .. name .. " in " .. M.dir() .. "\n") or ("no sessions in " .. M.dir() .. "\n"))
    return 0
  end
  local shown = {}
  for k = 1, (limit == 0 and #rows or math.min(limit, #rows)) do
    local s = rows[k]
    shown[k] = { started = when(s.started), runbook = s.name,
                 duration = s.duration and ((s.at_least and "≥" or "") .. incident.span(s.duration)) or "?",
                 outcome = s.outcome .. (s.dry_run and " (dry run)" or ""),
                 operator = tostring(s.user) .. "@" .. tostring(s.host), incident = s.incident or "",
                 session = tostring(s.session) .. (s.resumed_from and (" ← " .. s.resumed_from) or "") }
  end
  core.out(render.fmt.table(shown, {
    { "started", title = "started (UTC)" }, { "runbook" }, { "duration", right = true }, { "outcome" },
    { "operator" }, { "incident" }, { "session" },
  }) .. "\n")
  if #shown < #rows then
    core.out(string.format("(%d older sessions not shown: --limit 0 shows all)\n", #rows - #shown))
  end
  local by, now, names = M.by_runbook(rows), incident.now(), {}
  for n in pairs(by) do names[#names + 1] = n end
  table.sort(names)
  core.out("\nlast successful run:\n")
  for _, n in ipairs(names) do
    local r = by[n]
    core.out(string.format("  %s  %s\n", n, r.ok and (when(r.ok) .. " (" .. M.ago(now - r.ok) .. ")")
      or string.format("none in %d session%s (last %s)", r.runs, r.runs == 1 and "" or "s", M.ago(now - (r.last or now)))))
  end
  return 0
end

return M
