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

local MAX_SOURCE = 16 * 1024 * 1024   -- a runbook is source text, not data

-- A runbook file's text, or nil and why; only a regular file (not a directory, a FIFO or
-- /dev/zero), and not a huge one.
local function read_source(path) return core.read_file(path, MAX_SOURCE) end

-- nil when there is no such file; false, why when there is one that cannot be a runbook.
local function readable(path)
  local src, err = read_source(path)
  if src then return true end
  if err:find("No such file or directory", 1, true) then return nil end
  return false, err
end
M.readable = readable

-- A runbook's drill is a sibling file NAME.drill.lua (lab/drill.lua): never a runbook itself.
local DRILL_SUFFIX = ".drill.lua"
local function is_drill_file(path) return path:sub(-#DRILL_SUFFIX) == DRILL_SUFFIX end
M.is_drill_file = is_drill_file

local function list_dir(dir, pattern)
  -- Standard Lua cannot list a directory; the sys module can, bounded in time.
  local sys = require "sys"
  local found = sys.files(dir, { pattern = pattern or "*.lua", recursive = false, follow = true, limit = 10000 })
  local names = {}
  for _, f in ipairs(found and found.files or {}) do names[#names + 1] = f.path end
  table.sort(names)
  return names
end

-- The files on the search path matching pattern, by the name stem_of gives them (nil: skip the
-- file); the first occurrence of a name wins.
local function first_by_name(share, pattern, stem_of)
  local seen, out = {}, {}
  for _, dir in ipairs(M.search_path(share)) do
    for _, path in ipairs(list_dir(dir, pattern)) do
      local name = stem_of(path)
      if name and not seen[name] then
        seen[name] = true
        out[#out + 1] = { name = name, path = path }
      end
    end
  end
  table.sort(out, function(a, b) return a.name < b.name end)
  return out
end

-- Every runbook file on the search path, by name (first occurrence wins).
function M.all(share)
  return first_by_name(share, "*.lua", function(path)
    return not is_drill_file(path) and path:match("([^/]+)%.lua$") or nil
  end)
end

-- Every drill file on the search path: { name = RUNBOOK, path } (first occurrence wins), by name.
function M.all_drills(share)
  return first_by_name(share, "*" .. DRILL_SUFFIX, function(path) return path:match("([^/]+)%.drill%.lua$") end)
end

-- The drill of the runbook NAME found at runbook_path: its sibling NAME.drill.lua first (a runbook
-- of the user's own directory brings its drill along), else the first NAME.drill.lua on the
-- search path (a stand-in runbook of the same name is drilled by the shipped drill). nil if none.
function M.resolve_drill(name, runbook_path, share)
  local dir = runbook_path and runbook_path:match("^(.*)/[^/]+$") or (runbook_path and ".")
  local candidates = {}
  if dir then candidates[1] = dir .. "/" .. name .. DRILL_SUFFIX end
  for _, d in ipairs(M.search_path(share)) do candidates[#candidates + 1] = d .. "/" .. name .. DRILL_SUFFIX end
  for _, path in ipairs(candidates) do
    local ok, err = readable(path)
    if ok then return path end
    if ok == false then return nil, err end
  end
  return nil
end

-- NAME or FILE -> path, or nil and a message with suggestions.
function M.resolve(arg, share)
  if arg:find("/", 1, true) or arg:match("%.lua$") then
    local ok, err = readable(arg)
    if ok then return arg end
    return nil, err or ("cannot read runbook file " .. arg .. ": no such file")
  end
  for _, dir in ipairs(M.search_path(share)) do
    local path = dir .. "/" .. arg .. ".lua"
    local ok, err = readable(path)
    if ok then return path end
    if ok == false then return nil, err end
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

-- A runbook's top level declares; it does not work. Loading it (list, check, show, exec) is bounded:
-- a top level that loops forever is stopped with an error naming the file, not a hang.
local LOAD_MS, LOAD_INSTRUCTIONS, HOOK_EVERY = 5000, 200 * 1000 * 1000, 10000

local function run_bounded(chunk, where)
  local count, t0 = 0, core.now()
  debug.sethook(function()
    count = count + HOOK_EVERY
    if count > LOAD_INSTRUCTIONS or core.now() - t0 > LOAD_MS then
      debug.sethook()
      -- A control value: the runbook's own pcall cannot swallow it (sandbox.lua).
      error(core.control("abort", string.format("%s: its top level did not finish within %d s or %d million " ..
        "instructions (a loop that never ends? work belongs in a step's run function)", where, LOAD_MS // 1000,
        LOAD_INSTRUCTIONS // 1000000)), 0)
    end
  end, "", HOOK_EVERY)
  local ok, rb = pcall(chunk)
  debug.sethook()
  return ok, rb
end

local function basename(path) return path:match("([^/]+)$") or path end

-- Runs a declaration file (a runbook, a drill) in a fresh sandbox, bounded, primitives refused.
-- Returns true, what its top level returned, its source and its base name; or false, err.
local function declaration(path)
  local src, err = read_source(path)
  if not src then return false, err end
  local where = basename(path)
  local env = sandbox.new()
  local chunk, perr = load(src, "@" .. where, "t", env)
  if not chunk then return false, perr end
  sandbox.set_loading(true)
  local ok, rb = run_bounded(chunk, where)
  sandbox.set_loading(false)
  if not ok then
    if core.memory_exceeded() then
      return false, string.format("%s: loading it needed more memory than the limit (%s; --memory-limit, " ..
        "RUNBOOK_MEMORY_LIMIT)", where, require("render").fmt.bytes(core.memory_limit()))
    end
    rb = require("render").error_text(rb)
    if not rb:find("^" .. where:gsub("%p", "%%%0")) then rb = where .. ": " .. rb end
    return false, rb
  end
  return true, rb, src, where
end

-- A drill file's declaration (validated by lab/drill.lua), or nil, err. Loaded as a runbook is:
-- a sandbox of its own, no io or os.execute; what it may do to the lab comes as its functions'
-- argument when the drill runs.
function M.load_drill(path)
  local ok, d = declaration(path)
  if not ok then return nil, d end
  if type(d) ~= "table" then return nil, basename(path) .. ": does not return the drill's table { modes = { ... }, ... }" end
  return d
end

-- Loads and validates a runbook file. Returns the runbook (with .file, .sha256, .source) or nil, err.
function M.load(path)
  if is_drill_file(path) then
    return nil, basename(path) .. ": a drill (runbook drill), not a runbook"
  end
  local ok, rb, src, where = declaration(path)
  if not ok then return nil, rb end
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
