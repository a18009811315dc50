-- render.lua - the one renderer: numbers for people, step headers, outcome lines, tables.
-- Everything it prints goes through core.out (redacted, recorded, then shown).
local core = require "core"

local M = {}

local color = core.color()
-- The program's own colours (core.style): the only escape sequences the output path lets through.
local function paint(code, s) return color and (core.style(code) .. s .. core.style("0")) or s end
M.bold   = function(s) return paint("1", s) end
M.dim    = function(s) return paint("2", s) end
M.red    = function(s) return paint("31", s) end
M.green  = function(s) return paint("32", s) end
M.yellow = function(s) return paint("33", s) end

function M.print(s) core.out(s .. "\n") end

-- An error value as text, whatever was raised: a string, a number, an object whose __tostring
-- works, or one whose __tostring fails or returns something else.
function M.error_text(e)
  if type(e) == "string" then return e end
  local ok, s = pcall(tostring, e)
  if ok and type(s) == "string" then return s end
  return string.format("(a %s was raised as an error, and its __tostring failed%s)", type(e),
    not ok and type(s) == "string" and (": " .. s) or "")
end

-- fmt: formatting helpers that runbooks use too (fmt.bytes(1.9 * 2^30) == "1.9 GiB").
local fmt = {}
M.fmt = fmt

function fmt.bytes(n)
  if type(n) ~= "number" then return tostring(n) end
  local units = { "B", "KiB", "MiB", "GiB", "TiB", "PiB" }
  local i, v = 1, n
  while math.abs(v) >= 1024 and i < #units do v = v / 1024; i = i + 1 end
  if i == 1 then return string.format("%d B", n) end
  return string.format(v >= 100 and "%.0f %s" or "%.1f %s", v, units[i])
end

function fmt.count(n)
  local s = string.format("%d", math.floor(n))
  local sign, digits = s:match("^(-?)(%d+)$")
  digits = digits:reverse():gsub("(%d%d%d)", "%1,"):reverse():gsub("^,", "")
  return sign .. digits
end

-- One decimal below 10%, none from 10% on; decided on the rounded value, so that
-- 9.999999999999998 (a rate of 0.1 one bit short, times 100) reads "10%" like 10 does.
function fmt.pct(n)
  local s = string.format("%.1f", n)
  if (tonumber(s) or 0) >= 10 then s = string.format("%.0f", n) end   -- tonumber("nan") is nil
  return s .. "%"
end

function fmt.ms(ms)
  if ms < 1 then return string.format("%.2f ms", ms) end
  if ms < 1000 then return string.format("%.1f ms", ms) end
  return fmt.duration(ms / 1000)
end

function fmt.duration(s)
  if s < 60 then return string.format(s == math.floor(s) and "%d s" or "%.1f s", s) end
  if s < 3600 then return string.format("%dm%02ds", s // 60, math.floor(s % 60)) end
  if s < 86400 then return string.format("%dh%02dm", s // 3600, math.floor(s % 3600) // 60) end
  return string.format("%dd%02dh", s // 86400, math.floor(s % 86400) // 3600)
end

-- Aligned columns: rows are tables, columns a list of { key, title, format = fn, right = bool }.
function fmt.table(rows, columns)
  local cells, widths = {}, {}
  for c, col in ipairs(columns) do widths[c] = utf8.len(col.title or col[1]) or #col[1] end
  for r, row in ipairs(rows) do
    cells[r] = {}
    for c, col in ipairs(columns) do
      local v = row[col[1]]
      local s = v == nil and "" or (col.format and col.format(v, row) or tostring(v))
      cells[r][c] = s
      widths[c] = math.max(widths[c], utf8.len(s) or #s)
    end
  end
  local function line(values)
    local out = {}
    for c, s in ipairs(values) do
      local pad = string.rep(" ", widths[c] - (utf8.len(s) or #s))
      out[c] = columns[c].right and (pad .. s) or (c < #values and s .. pad or s)
    end
    return table.concat(out, "  ")
  end
  local titles = {}
  for c, col in ipairs(columns) do titles[c] = col.title or col[1] end
  local lines = { line(titles) }
  for r = 1, #cells do lines[#lines + 1] = line(cells[r]) end
  return table.concat(lines, "\n")
end

local marks = {
  ok = function() return M.green("✔") end,
  finding = function() return M.red("✖") end,
  note = function() return M.dim("·") end,
  error = function() return M.red("!") end,
}

-- A check's status: its mark and the colour of its leading status word.
local status_style = {
  OK = { "✔", M.green }, WARNING = { "!", M.yellow }, CRITICAL = { "✖", M.red },
  UNKNOWN = { "?", function(s) return paint("35", s) end },
}

-- "  ✔ text", continuation lines indented under the text. With a check status, the mark and
-- the status word at the start of text take its colour.
function M.outcome(level, text, status)
  local mark = marks[level] and marks[level]() or "·"
  text = tostring(text):gsub("\n", "\n    ")
  local style = status and status_style[status]
  if style then
    mark = style[2](style[1])
    if text:sub(1, #status) == status then text = style[2](status) .. text:sub(#status + 1) end
  end
  M.print("  " .. mark .. " " .. text)
end

function M.block(text)
  M.print("    " .. tostring(text):gsub("\n", "\n    "))
end

function M.step_header(i, n, step)
  M.print(M.bold(string.format("[%d/%d] %s", i, n, step.title)))
  if step.explain then
    M.print("      " .. M.dim((step.explain:gsub("\n", "\n      "))))
  end
end

------------------------------------------------------------------------- values, for the REPL
-- M.value(v) renders a result for people: a record as aligned key/value lines, an array of rows
-- as a table with column headers, nested values indented. Fields named like sizes, percentages,
-- durations or times are shown in those units; indexing the field gives the raw number.
local BYTE_KEYS = { bytes = true, size = true, used = true, avail = true, available = true, free = true,
  total = true, buffers = true, cached = true, rss = true, swap_total = true, swap_used = true,
  swap_free = true }
local FIRST_COLUMNS = { "pid", "name", "path", "mount", "line", "host", "key", "id" }
local MAX_CELL = 60
local MAX_DEPTH = 4

local function human(k, v)
  if type(v) ~= "number" or type(k) ~= "string" then return nil end
  if (BYTE_KEYS[k] or k:match("_bytes$")) and math.abs(v) >= 1024 then return fmt.bytes(v) end
  if k:match("_pct$") then return fmt.pct(v) end
  if k == "ms" or k:match("_ms$") then return fmt.ms(v) end
  if (k == "age" or k == "uptime") and v >= 0 then return fmt.duration(v) end
  if k == "mtime" and math.type(v) == "integer" then return os.date("%Y-%m-%d %H:%M:%S", v) end
  return nil
end

local function scalar(v, k)
  local h = human(k, v)
  if h then return h end
  if math.type(v) == "float" and v == math.floor(v) and math.abs(v) < 2^53 then return string.format("%.1f", v) end
  return tostring(v)
end

local function cell(s)
  s = s:gsub("\n", " ")
  if (utf8.len(s) or #s) > MAX_CELL then s = s:sub(1, (utf8.offset(s, MAX_CELL) or MAX_CELL + 1) - 1) .. "…" end
  return s
end

local function key_order(a, b)
  local ta, tb = type(a), type(b)
  if ta ~= tb then return ta == "number" end
  if ta == "number" or ta == "string" then return a < b end
  return tostring(a) < tostring(b)
end

-- An array of tables whose fields are mostly scalars: shown as a table.
local function is_rows(t)
  local n = #t
  if n == 0 then return false end
  for i = 1, n do
    if type(t[i]) ~= "table" or next(t[i]) == nil or #t[i] > 0 then return false end
  end
  return true
end

local function columns_of(t)
  local seen, cols = {}, {}
  if type(t.columns) == "table" then
    for _, c in ipairs(t.columns) do
      local name = type(c) == "table" and c.name or c
      if type(name) == "string" and not seen[name] then seen[name] = true; cols[#cols + 1] = name end
    end
    if #cols > 0 then return cols end
  end
  local keys = {}
  for i = 1, #t do
    for k, v in pairs(t[i]) do
      if type(k) == "string" and type(v) ~= "table" and not seen[k] then seen[k] = true; keys[#keys + 1] = k end
    end
  end
  -- Long text (a command line) goes last, so that it does not push the numbers off the screen.
  local wide = {}
  for _, k in ipairs(keys) do
    for i = 1, #t do
      local v = t[i][k]
      if type(v) == "string" and #v > 30 then wide[k] = true break end
    end
  end
  table.sort(keys, function(a, b)
    if (wide[a] or false) ~= (wide[b] or false) then return not wide[a] end
    return a < b
  end)
  for _, k in ipairs(FIRST_COLUMNS) do if seen[k] then cols[#cols + 1] = k end end
  for _, k in ipairs(keys) do
    local first = false
    for _, f in ipairs(FIRST_COLUMNS) do if f == k then first = true end end
    if not first then cols[#cols + 1] = k end
  end
  return cols
end

local render_into

local function rows_into(t, out, pad)
  local cols = columns_of(t)
  local spec = {}
  for i, c in ipairs(cols) do
    spec[i] = { c, format = function(v) return cell(scalar(v, c)) end, right = type(t[1][c]) == "number" }
  end
  for line in (fmt.table(t, spec) .. "\n"):gmatch("(.-)\n") do out[#out + 1] = pad .. line end
end

local function record_into(t, out, pad, depth, seen, skip_array)
  local keys = {}
  for k in pairs(t) do
    if not (skip_array and math.type(k) == "integer" and k >= 1 and k <= #t) then keys[#keys + 1] = k end
  end
  table.sort(keys, key_order)
  local w = 0
  for _, k in ipairs(keys) do w = math.max(w, utf8.len(tostring(k)) or #tostring(k)) end
  for _, k in ipairs(keys) do
    local v, name = t[k], tostring(k)
    local label = pad .. name .. string.rep(" ", w - (utf8.len(name) or #name)) .. "  "
    if type(v) == "table" and next(v) ~= nil and not seen[v] and depth < MAX_DEPTH then
      out[#out + 1] = pad .. name
      render_into(v, out, pad .. "  ", depth + 1, seen)
    elseif type(v) == "string" and v:find("\n") then
      out[#out + 1] = pad .. name
      for line in (v:gsub("\n$", "") .. "\n"):gmatch("(.-)\n") do out[#out + 1] = pad .. "  " .. line end
    elseif type(v) == "table" then
      out[#out + 1] = label .. (next(v) == nil and "{}" or "{ … }")
    else
      out[#out + 1] = label .. scalar(v, k)
    end
  end
end

function render_into(v, out, pad, depth, seen)
  if type(v) ~= "table" then
    for line in (tostring(v) .. "\n"):gmatch("(.-)\n") do out[#out + 1] = pad .. line end
    return
  end
  if depth > MAX_DEPTH then out[#out + 1] = pad .. "{ … }" return end   -- arrays of arrays of ...
  seen[v] = true
  if next(v) == nil then out[#out + 1] = pad .. "{}" return end
  if is_rows(v) then
    rows_into(v, out, pad)
    record_into(v, out, pad, depth, seen, true)
  elseif #v > 0 then
    for i = 1, #v do
      if type(v[i]) == "table" then render_into(v[i], out, pad, depth + 1, seen)
      else out[#out + 1] = pad .. scalar(v[i]) end
    end
    record_into(v, out, pad, depth, seen, true)
  else
    record_into(v, out, pad, depth, seen, false)
  end
end

-- Returns the lines of v's rendering (strings as they are, tables laid out).
function M.value(v)
  local out = {}
  if type(v) == "string" then
    for line in (v:gsub("\n$", "") .. "\n"):gmatch("(.-)\n") do out[#out + 1] = line end
  elseif type(v) == "table" then
    render_into(v, out, "", 1, {})
  else
    out[1] = scalar(v)
  end
  return out
end

return M
