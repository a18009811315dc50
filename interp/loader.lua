-- loader.lua - finds runbooks on the search path and loads them into a fresh sandbox.
local core    = require "core"
local dsl     = require "dsl"
local sandbox = require "sandbox"

local M = {}

local SHARE = core.share   -- the build's $(PREFIX)/share/runbook

-- ./runbooks, $RUNBOOK_PATH, the user's config dir, the installed share dir (first match wins).
function M.search_path(share)
  local dirs = { "runbooks" }
  for d in (os.getenv("RUNBOOK_PATH") or ""):gmatch("[^:]+") do dirs[#dirs + 1] = d end
  local config = os.getenv("XDG_CONFIG_HOME")
  if not config or config:sub(1, 1) ~= "/" then config = (os.getenv("HOME") or "") .. "/.config" end
  dirs[#dirs + 1] = config .. "/runbook/runbooks"
  dirs[#dirs + 1] = (share or SHARE) .. "/runbooks"
  return dirs
end

local function readable(path)
  local f = io.open(path, "rb")
  if f then f:close() return true end
  return false
end
M.readable = readable

local function list_dir(dir)
  -- Standard Lua cannot list a directory; the sys module can, bounded in time.
  local sys = require "sys"
  local found = sys.files(dir, { pattern = "*.lua", recursive = false, follow = true, limit = 10000 })
  local names = {}
  for _, f in ipairs(found and found.files or {}) do names[#names + 1] = f.path end
  table.sort(names)
  return names
end

-- Every runbook file on the search path, by name (first occurrence wins).
function M.all(share)
  local seen, out = {}, {}
  for _, dir in ipairs(M.search_path(share)) do
    for _, path in ipairs(list_dir(dir)) do
      local name = path:match("([^/]+)%.lua$")
      if name and not seen[name] then
        seen[name] = true
        out[#out + 1] = { name = name, path = path }
      end
    end
  end
  table.sort(out, function(a, b) return a.name < b.name end)
  return out
end

-- NAME or FILE -> path, or nil and a message with suggestions.
function M.resolve(arg, share)
  if arg:find("/", 1, true) or arg:match("%.lua$") then
    if readable(arg) then return arg end
    return nil, "cannot read runbook file " .. arg
  end
  for _, dir in ipairs(M.search_path(share)) do
    local path = dir .. "/" .. arg .. ".lua"
    if readable(path) then return path end
  end
  local close = {}
  for _, rb in ipairs(M.all(share)) do
    local d = core.distance(arg, rb.name)
    if d <= 3 or rb.name:find(arg, 1, true) then close[#close + 1] = rb.name end
  end
  local msg = "no runbook named '" .. arg .. "'"
  if #close > 0 then msg = msg .. ". Did you mean: " .. table.concat(close, ", ") .. "?" end
  return nil, msg .. " (see 'runbook list')"
end

local function basename(path) return path:match("([^/]+)$") or path end

-- Loads and validates a runbook file. Returns the runbook (with .file, .sha256, .source) or nil, err.
function M.load(path)
  local f, err = io.open(path, "rb")
  if not f then return nil, "cannot read " .. path .. ": " .. tostring(err) end
  local src = f:read("a")
  f:close()
  local where = basename(path)
  local env = sandbox.new()
  local chunk, perr = load(src, "@" .. where, "t", env)
  if not chunk then return nil, perr end
  sandbox.set_loading(true)
  local ok, rb = pcall(chunk)
  sandbox.set_loading(false)
  if not ok then
    rb = tostring(rb)
    if not rb:find("^" .. where:gsub("%p", "%%%0")) then rb = where .. ": " .. rb end
    return nil, rb
  end
  if not dsl.is_runbook(rb) then
    return nil, where .. ": does not return runbook { ... }"
  end
  local stem = where:match("^(.*)%.lua$")
  if stem and stem ~= rb.name then
    return nil, string.format("%s: runbook name '%s' does not match the file name '%s'", where, rb.name, stem)
  end
  rb.file, rb.source, rb.sha256 = path, src, core.sha256(src)
  return rb
end

return M
