-- render.lua - the one renderer: numbers for people, step headers, outcome lines, tables.
-- Everything it prints goes through core.out (redacted, recorded, then shown).
local core = require "core"

local M = {}

local color = core.color()
local function paint(code, s) return color and ("\27[" .. code .. "m" .. s .. "\27[0m") or s end
M.bold   = function(s) return paint("1", s) end
M.dim    = function(s) return paint("2", s) end
M.red    = function(s) return paint("31", s) end
M.green  = function(s) return paint("32", s) end
M.yellow = function(s) return paint("33", s) end

function M.print(s) core.out(s .. "\n") end

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

function fmt.pct(n) return string.format(n >= 10 and "%.0f%%" or "%.1f%%", n) end

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

return M
