-- logs.lua - the logs of a service where it lives (require "logs"), as the playbooks read them first:
--   logs.read { on = target, unit = | file = | service = , since = "30m", lines = 500, grep = "regex" }
--     unit=    journald: journalctl -u UNIT --since -Ns -o json (locally, or over SSH / an inventory)
--     file=    a log file: sys.tail / sys.grep here, `tail` / `grep -E | tail` through the transport
--     service= (or a compose:// or k8s:// target) docker compose logs --timestamps --since SERVICE,
--              kubectl logs --timestamps --prefix --since= (every pod of a selector, each line naming it)
--   logs.top(lines, pattern, n)   grep | sort | uniq -c | sort -rn | head, numbers and ids normalised
--   logs.rate(lines, pattern, { recent = "10m", baseline = "1h", label })   matching lines per minute, two windows
-- Every read is a probe bounded by `timeout` (one deadline) and by size (`lines`, `max_bytes`).
local cjson  = require "cjson"
local core   = require "core"
local reach  = require "reach"
local sh     = require "sh"
local sys    = require "sys"
local target = require "target"

local M = {}

local READ_OPTIONS = { on = true, unit = true, file = true, service = true, since = true, lines = true,
                       grep = true, icase = true, timeout = true, max_bytes = true, quiet = true }
local DEFAULT_SINCE, DEFAULT_LINES, DEFAULT_TIMEOUT, DEFAULT_MAX_BYTES = 1800, 500, 10, 4 * 1024 * 1024
local MONTHS = { Jan = 1, Feb = 2, Mar = 3, Apr = 4, May = 5, Jun = 6, Jul = 7, Aug = 8, Sep = 9, Oct = 10, Nov = 11, Dec = 12 }

------------------------------------------------------------------------------------ timestamps
-- Days since 1970-01-01 of a civil date (proleptic Gregorian): UTC without the C library's zone.
local function days_from_civil(y, m, d)
  y = m <= 2 and y - 1 or y
  local era = (y >= 0 and y or y - 399) // 400
  local yoe = y - era * 400
  local doy = (153 * (m + (m > 2 and -3 or 9)) + 2) // 5 + d - 1
  local doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
  return era * 146097 + doe - 719468
end

local function utc(y, mo, d, h, mi, s) return days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s end

-- "+0100", "+01:00", "Z" -> seconds east of UTC.
local function zone_offset(z)
  if z == nil or z == "" then return nil end
  if z == "Z" then return 0 end
  local sign, hh, mm = z:match("^([+-])(%d%d):?(%d%d)$")
  if not sign then return nil end
  local off = tonumber(hh) * 3600 + tonumber(mm) * 60
  return sign == "-" and -off or off
end

local function local_time(y, mo, d, h, mi, s)
  return os.time { year = y, month = mo, day = d, hour = h, min = mi, sec = math.floor(s) } + (s - math.floor(s))
end

-- The time of a log line from its leading timestamp: (epoch seconds, the timestamp's text, the rest)
-- or nil. ISO 8601 (journald short-iso, Docker, kubectl, most apps), nginx's access log
-- ([07/Dec/2026:00:53:56 +0000]) and error log (2026/12/07 00:53:56, local time), syslog (Dec  7 00:53:56).
function M.timestamp(line)
  local y, mo, d, h, mi, s, frac, z, rest =
    line:match("^%[?(%d%d%d%d)[-/](%d%d)[-/](%d%d)[T ](%d%d):(%d%d):(%d%d)([.,]?%d*)(%S-)%]?%s(.*)$")
  if y then
    s = tonumber(s) + (tonumber("0" .. frac:gsub(",", ".")) or 0)
    local off = zone_offset(z)
    if z ~= "" and not off then return nil end
    local ts = off and utc(tonumber(y), tonumber(mo), tonumber(d), tonumber(h), tonumber(mi), s) - off
               or local_time(tonumber(y), tonumber(mo), tonumber(d), tonumber(h), tonumber(mi), s)
    return ts, line:sub(1, #line - #rest):gsub("%s+$", ""), rest
  end
  -- nginx access log: the timestamp is in brackets after the client's address.
  local pre, dd, mon, yy, hh, mm, ss, zz, post = line:match("^(.-)%[(%d%d)/(%a%a%a)/(%d%d%d%d):(%d%d):(%d%d):(%d%d) ([+-]%d%d%d%d)%](.*)$")
  if pre and MONTHS[mon] then
    local ts = utc(tonumber(yy), MONTHS[mon], tonumber(dd), tonumber(hh), tonumber(mm), tonumber(ss)) - zone_offset(zz)
    return ts, string.format("%s/%s/%s:%s:%s:%s %s", dd, mon, yy, hh, mm, ss, zz), line
  end
  local smon, sd, sh_, smi, ss_, srest = line:match("^(%a%a%a) +(%d%d?) (%d%d):(%d%d):(%d%d) (.*)$")
  if smon and MONTHS[smon] then
    local now = os.date("*t")
    local ts = local_time(now.year, MONTHS[smon], tonumber(sd), tonumber(sh_), tonumber(smi), tonumber(ss_))
    if ts > os.time() + 86400 then ts = local_time(now.year - 1, MONTHS[smon], tonumber(sd), tonumber(sh_), tonumber(smi), tonumber(ss_)) end
    return ts, line:sub(1, #line - #srest - 1), srest
  end
  return nil
end

------------------------------------------------------------------------------------ arguments
local function shq(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function seconds(v, default, what)
  if v == nil then return default end
  local d, err = core.duration(v)
  if not d then error("logs.read: " .. what .. ": " .. tostring(err), 0) end
  return d
end

local function args_of(opts)
  if type(opts) ~= "table" then error("logs.read { on = target, unit = | file = | service = , since = \"30m\" }", 0) end
  for k in pairs(opts) do
    if not READ_OPTIONS[k] then error(string.format("logs.read: unknown option '%s'", tostring(k)), 0) end
  end
  local t, err = target.parse(opts.on or "local")
  if not t then error("logs.read: on = " .. err, 0) end
  local sources = (opts.unit and 1 or 0) + (opts.file and 1 or 0) + (opts.service and 1 or 0)
  if sources > 1 then error("logs.read: give one of unit=, file= or service=", 0) end
  if sources == 0 and t.kind ~= "compose" and t.kind ~= "k8s" then
    error("logs.read: name the log: unit = \"nginx\" (journald), file = \"/var/log/...\" or service = (Compose)", 0)
  end
  if opts.service and t.kind ~= "compose" and t.kind ~= "local" then
    error("logs.read: service= names a Compose service; on " .. t.text .. " use unit= or file=", 0)
  end
  local a = {
    t = t, since = seconds(opts.since, DEFAULT_SINCE, "since"), timeout = seconds(opts.timeout, DEFAULT_TIMEOUT, "timeout"),
    lines = math.tointeger(opts.lines or DEFAULT_LINES), grep = opts.grep, icase = opts.icase,
    max_bytes = math.tointeger(opts.max_bytes or DEFAULT_MAX_BYTES), quiet = opts.quiet ~= false,
    unit = opts.unit, file = opts.file, service = opts.service,
  }
  if not a.lines or a.lines < 1 then error("logs.read: lines must be a whole number >= 1", 0) end
  if not a.max_bytes or a.max_bytes < 1024 then error("logs.read: max_bytes must be a whole number >= 1024", 0) end
  if a.grep ~= nil and type(a.grep) ~= "string" then error("logs.read: grep must be a regular expression (a string)", 0) end
  for _, k in ipairs { "unit", "file", "service" } do
    if a[k] ~= nil and (type(a[k]) ~= "string" or a[k] == "" or a[k]:find("\n", 1, true)) then
      error("logs.read: " .. k .. " must be a non-empty string", 0)
    end
  end
  return a
end

------------------------------------------------------------------------------------ the sources
-- Each source gives the argv to run (or a local reader) and a parser of its output into lines.

local function line_of(text, host, pod)
  local ts, time, rest = M.timestamp(text)
  return { ts = ts, time = time, text = ts and rest or text, host = host, pod = pod }
end

-- journalctl -o json: one object per line; MESSAGE may be an array of bytes (binary data). A remote
-- line names its host as the target does (the inventory's name), a local one by its _HOSTNAME.
local function parse_journal(stdout, host)
  local out = {}
  for l in stdout:gmatch("[^\n]+") do
    local ok, e = pcall(cjson.decode, l)
    if ok and type(e) == "table" then
      local msg = e.MESSAGE
      if type(msg) == "table" then
        local bytes = {}
        for i, b in ipairs(msg) do bytes[i] = string.char(math.tointeger(b) or 63) end
        msg = table.concat(bytes)
      end
      local us = tonumber(e.__REALTIME_TIMESTAMP)
      out[#out + 1] = { ts = us and us / 1e6, time = us and os.date("!%Y-%m-%dT%H:%M:%SZ", us // 1e6),
                        host = host ~= "local" and host or e._HOSTNAME or host, unit = e._SYSTEMD_UNIT,
                        text = tostring(msg or "") }
    end
  end
  return out
end

local function parse_plain(stdout, host)
  local out = {}
  for l in stdout:gmatch("[^\n]+") do out[#out + 1] = line_of(l, host) end
  return out
end

-- docker compose logs --no-color --timestamps: "web_1  | 2026-12-07T00:53:56.1Z text" (1.x),
-- "web-1  | ..." (the plugin).
local function parse_compose(stdout)
  local out = {}
  for l in stdout:gmatch("[^\n]+") do
    local who, rest = l:match("^(%S+)%s*|%s?(.*)$")
    if who then out[#out + 1] = line_of(rest, nil, who) end
  end
  return out
end

-- kubectl logs --prefix --timestamps: "[pod/api-7d9f-a/api] 2026-12-07T00:53:56.1Z text".
local function parse_kubectl(stdout, single)
  local out = {}
  for l in stdout:gmatch("[^\n]+") do
    local pod, rest = l:match("^%[pod/([^/%]]+)[^%]]*%]%s(.*)$")
    out[#out + 1] = line_of(rest or l, nil, pod or single)
  end
  return out
end

local function journal_argv(a)
  local argv = { "journalctl", "--no-pager", "-o", "json", "-u", a.unit,
                 "--since", string.format("-%ds", math.ceil(a.since)), "-n", tostring(a.lines) }
  if a.grep then
    argv[#argv + 1] = "--grep"; argv[#argv + 1] = a.grep
    if not a.icase then argv[#argv + 1] = "--case-sensitive=true" end
  end
  return argv, parse_journal
end

-- A file through a transport: tail, or grep -E | tail (the remote's own tools).
local function remote_file_argv(a)
  if not a.grep then return { "tail", "-n", tostring(a.lines), a.file }, parse_plain end
  return { string.format("grep -E%s -e %s -- %s | tail -n %d", a.icase and "i" or "", shq(a.grep), shq(a.file), a.lines),
           shell = true }, parse_plain
end

local function compose_argv(a)
  local ep = a.t.kind == "compose" and a.t.hosts[1] or { dir = nil, service = a.service }
  local argv = reach.compose_argv(ep)
  for _, w in ipairs { "logs", "--no-color", "--timestamps", "--tail", tostring(a.lines) } do argv[#argv + 1] = w end
  -- docker-compose 1.x has no --since; the window is applied to the timestamps here.
  if argv[1] == "docker" then argv[#argv + 1] = "--since"; argv[#argv + 1] = string.format("%ds", math.ceil(a.since)) end
  argv[#argv + 1] = a.service or ep.service
  return argv, parse_compose
end

local function kubectl_argv(a)
  local t = a.t
  local argv = reach.kubectl_argv(t.fleet and { namespace = t.namespace, context = t.context } or t.hosts[1])
  for _, w in ipairs { "logs", "--timestamps", "--prefix", "--since=" .. string.format("%ds", math.ceil(a.since)),
                       "--tail=" .. tostring(a.lines) } do argv[#argv + 1] = w end
  local single
  if t.fleet then
    argv[#argv + 1] = "-l"; argv[#argv + 1] = t.selector
    argv[#argv + 1] = "--max-log-requests=20"
  else
    argv[#argv + 1] = t.hosts[1].object
    single = t.hosts[1].object:match("^pods?/(.+)$")
  end
  return argv, function(stdout) return parse_kubectl(stdout, single) end
end

-- The command (argv, parse, where: "here" | "there") that reads the log a asks for.
local function plan(a)
  local kind = a.t.kind
  if a.unit then
    if kind == "compose" or kind == "k8s" then error("logs.read: unit= is journald's; on " .. a.t.text .. " leave it out", 0) end
    local argv, parse = journal_argv(a)
    return argv, parse, kind == "local" and "here" or "there"
  elseif a.file then
    if kind == "local" then return nil, nil, "file" end
    local argv, parse = remote_file_argv(a)
    return argv, parse, "there"
  elseif kind == "k8s" then
    local argv, parse = kubectl_argv(a)
    return argv, parse, "here"
  end
  local argv, parse = compose_argv(a)
  return argv, parse, "here"
end

-- The command line a read will run, as `runbook show` and the transcript print it.
function M.describe(opts)
  local ok, a = pcall(args_of, opts)
  if not ok then return nil, a end
  local argv, _, where = plan(a)
  if where == "file" then
    return a.grep and string.format("grep -E %s %s | tail -n %d", shq(a.grep), a.file, a.lines)
           or string.format("tail -n %d %s", a.lines, a.file)
  end
  local s = argv.shell and argv[1] or require("sh_transport").quote(argv)
  return where == "there" and (s .. "    (on " .. a.t.text .. ")") or s
end

local function read_local_file(a)
  local r, err, kind
  if a.grep then
    r, err, kind = sys.grep(a.file, a.grep, { limit = a.lines, icase = a.icase, timeout = a.timeout })
    if not r then return nil, err, kind end
    local texts = {}
    for i, m in ipairs(r.matches) do texts[i] = m.text end
    return texts, r.count > #r.matches or r.partial
  end
  r, err, kind = sys.tail(a.file, { lines = a.lines, timeout = a.timeout })
  if not r then return nil, err, kind end
  return r.lines, r.truncated
end

local function run(a, argv)
  argv.quiet, argv.timeout, argv.max_output, argv.on = a.quiet, a.timeout, a.max_bytes, nil
  if a.t.kind ~= "local" and (a.unit or a.file) then argv.on = a.t.text end
  return sh.read(argv)
end

local function failed(a, r)
  local why = ((r.stderr ~= "" and r.stderr or r.stdout):match("[^\n]+") or ("exit " .. tostring(r.code)))
  return string.format("logs.read on %s: %s exited with code %s: %s", a.t.text, r.argv and r.argv[1] or "the command",
                       tostring(r.code), why), "exit"
end

-- What is left of the read's deadline (a.t0: when it began), for the matching of its lines.
local function time_left(a)
  return math.max(0.001, a.timeout - (core.now() - a.t0) / 1000)   -- core.now(): milliseconds
end

-- Keeps the lines of the window (a line without a time stays with the one before it), then
-- the pattern (for the sources that cannot filter), then the last `lines`; nil, err, kind when
-- the matching does not end by the read's deadline (or at Ctrl-C).
local function window(a, lines, filtered)
  local from, keep, out = os.time() - a.since, true, {}
  for _, l in ipairs(lines) do
    if l.ts then keep = l.ts >= from end
    if keep then out[#out + 1] = l end
  end
  local truncated = false
  if a.grep and not filtered then
    local texts = {}
    for i, l in ipairs(out) do texts[i] = l.text end
    local idx, err, kind = sys.filter(texts, a.grep, { icase = a.icase, timeout = time_left(a) })
    if not idx then return nil, "logs.read on " .. a.t.text .. ": " .. err, kind end
    local kept = {}
    for i, n in ipairs(idx) do kept[i] = out[n] end
    out = kept
  end
  if #out > a.lines then
    out = { table.unpack(out, #out - a.lines + 1) }
    truncated = true
  end
  return out, truncated
end

function M.read(opts)
  local a = args_of(opts)
  a.t0 = core.now()
  local argv, parse, where = plan(a)
  local lines, truncated = {}, false
  if where == "file" then
    local texts, cut_or_err, kind = read_local_file(a)
    if not texts then return nil, cut_or_err, kind end
    for i, l in ipairs(texts) do lines[i] = line_of(l, "local") end
    truncated = cut_or_err and true or false
  else
    local source = argv.shell and argv[1] or require("sh_transport").quote(argv)
    local r, err, kind = run(a, argv)
    if not r then return nil, err, kind end
    if r.by_host then   -- a fleet: each host's lines, named by host
      for _, h in ipairs(r.ok) do
        for _, l in ipairs(parse(r.by_host[h].stdout, h)) do lines[#lines + 1] = l end
        truncated = truncated or r.by_host[h].truncated
      end
      table.sort(lines, function(x, y) return (x.ts or 0) < (y.ts or 0) end)
      local res = { source = source, failed = r.failed, unreachable = r.unreachable }
      local cut, kind
      res.lines, cut, kind = window(a, lines, a.unit ~= nil or a.file ~= nil)
      if not res.lines then return nil, cut, kind end
      res.truncated = cut or truncated
      return res
    end
    if not r.ok and not (a.file and a.grep and r.code == 1) then return nil, failed(a, r) end
    lines = parse(r.stdout, a.t.kind == "ssh" and a.t.hosts[1].name or (a.t.kind == "local" and "local" or nil))
    truncated = r.truncated
    local res, cut, kind = { source = source }
    res.lines, cut, kind = window(a, lines, a.unit ~= nil or a.file ~= nil)
    if not res.lines then return nil, cut, kind end
    res.truncated = cut or truncated
    return res
  end
  local res = { source = M.describe(opts) }
  res.lines, res.truncated = window(a, lines, true)
  res.truncated = res.truncated or truncated
  return res
end

------------------------------------------------------------------------------------ counting
local function texts_of(lines)
  local out = {}
  for i, l in ipairs(lines or {}) do out[i] = type(l) == "table" and (l.text or "") or tostring(l) end
  return out
end

-- Similar lines group: ids, addresses, numbers and quoted values become placeholders.
function M.normalise(s)
  s = s:gsub("%x%x%x%x%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%x%x%x%x%x%x%x%x", "<uuid>")
  s = s:gsub("%d+%.%d+%.%d+%.%d+", "<ip>")
  s = s:gsub("0x%x+", "<hex>")
  s = s:gsub("%f[%w]%x+%f[^%w]", function(w) return #w >= 8 and w:lower() == w and "<id>" or nil end)
  s = s:gsub("%d+", "<n>")
  s = s:gsub("\"[^\"]*\"", "\"<s>\"")
  return s
end

-- grep pattern | sort | uniq -c | sort -rn | head -n n: { { count, text, example }... }, matched.
function M.top(lines, pattern, n)
  local texts = texts_of(lines)
  local idx, err, kind
  if pattern and pattern ~= "" then
    idx, err, kind = sys.filter(texts, pattern)
    if not idx then return nil, "logs.top: " .. err, kind end
  else idx = {} for i = 1, #texts do idx[i] = i end end
  local groups, order = {}, {}
  for _, i in ipairs(idx) do
    local key = M.normalise(texts[i])
    local g = groups[key]
    if not g then g = { count = 0, text = key, example = texts[i] }; groups[key] = g; order[#order + 1] = g end
    g.count = g.count + 1
  end
  table.sort(order, function(x, y) if x.count ~= y.count then return x.count > y.count end return x.text < y.text end)
  local out = {}
  for i = 1, math.min(#order, math.tointeger(n) or 10) do out[i] = order[i] end
  return out, #idx
end

local function per_min(count, secs) return secs > 0 and count * 60 / secs or 0 end

local function fmt_rate(r) return r >= 10 and string.format("%.0f/min", r) or (string.format("%.1f/min", r):gsub("%.0/", "/")) end

-- Matching lines per minute in the recent window against the baseline window before it:
-- { recent, baseline, recent_count, baseline_count, ratio, text }. Lines without a time are not counted.
function M.rate(lines, pattern, opts)
  opts = opts or {}
  local recent = seconds(opts.recent, 600, "recent")
  local baseline = seconds(opts.baseline, 3600, "baseline")
  local now = opts.now or os.time()
  local texts = texts_of(lines)
  local idx, err, kind
  if pattern and pattern ~= "" then
    idx, err, kind = sys.filter(texts, pattern)
    if not idx then return nil, "logs.rate: " .. err, kind end
  end
  local rc, bc, untimed = 0, 0, 0
  local function count(l)
    if type(l) ~= "table" or not l.ts then untimed = untimed + 1
    elseif l.ts > now - recent then rc = rc + 1
    elseif l.ts > now - recent - baseline then bc = bc + 1 end
  end
  if idx then for _, i in ipairs(idx) do count(lines[i]) end else for _, l in ipairs(lines or {}) do count(l) end end
  local r, b = per_min(rc, recent), per_min(bc, baseline)
  local fmt = require("render").fmt
  local label = opts.label or ((pattern and pattern ~= "") and (pattern .. " lines") or "lines")
  return {
    recent = r, baseline = b, recent_count = rc, baseline_count = bc, untimed = untimed,
    ratio = b > 0 and r / b or (r > 0 and math.huge or 1),
    text = string.format("%s: %s in the previous %s, %s in the last %s", label, fmt_rate(b), fmt.duration(baseline),
                         fmt_rate(r), fmt.duration(recent)),
  }
end

return M
