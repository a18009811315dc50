-- dsl.lua - the runbook language: runbook{}, step "id" {}, input.*, must.
-- Declarations are plain tables tagged with a kind; validation names the field at fault and
-- rejects unknown keys, so that a typo (`titel`, `timout`) is an error, not a silent default.
local core = require "core"

local M = {}

local DECL = setmetatable({}, { __mode = "k" })   -- declaration -> kind ("step", "input", "runbook")

-- " (did you mean 'x'?)" for the allowed word nearest a typo, or "": for every "unknown ..." message.
local function suggest(word, allowed)
  local best, bestd = nil, 3
  for _, a in ipairs(allowed) do
    local d = core.distance(tostring(word), a)
    if d < bestd then best, bestd = a, d end
  end
  return best and (" (did you mean '" .. best .. "'?)") or ""
end
M.suggest = suggest

local function check_keys(t, allowed, what)
  local set = {}
  for _, k in ipairs(allowed) do set[k] = true end
  for k in pairs(t) do
    if type(k) == "string" and not set[k] then
      error(string.format("%s: unknown key '%s'%s", what, k, suggest(k, allowed)), 0)
    end
  end
end

---------------------------------------------------------------------------------------- inputs
-- Each type parses a string (command line, environment) into its Lua value.
local parse = {}
function parse.string(s) return s end
function parse.secret(s) return s end
function parse.path(s)
  if s == "" then return nil, "empty path" end
  return (s:gsub("^~/", (os.getenv("HOME") or "~") .. "/"))
end
function parse.int(s)
  local n = math.tointeger(tonumber(s))
  if not n then return nil, "not an integer: '" .. s .. "'" end
  return n
end
function parse.url(s)
  if not s:match("^[%a][%w+.-]*://") then return nil, "not a URL (scheme://...): '" .. s .. "'" end
  return s
end
-- A target (stdlib/target.lua): kept as its string, checked here so that a bad one is an input error.
function parse.target(s)
  local t, err = require("target").parse(s)
  if not t then return nil, err end
  return s
end
function parse.duration(s)
  local v, err = core.duration(s)
  if not v then return nil, err end
  return v
end
function parse.argv(s)
  local argv, i, n = {}, 1, #s
  while i <= n do
    local c = s:sub(i, i)
    if c:match("%s") then i = i + 1
    else
      local word = {}
      while i <= n and not s:sub(i, i):match("%s") do
        c = s:sub(i, i)
        if c == "'" or c == '"' then
          local close = s:find(c, i + 1, true)
          if not close then return nil, "unbalanced quote in '" .. s .. "'" end
          word[#word + 1] = s:sub(i + 1, close - 1)
          i = close + 1
        else
          word[#word + 1] = c
          i = i + 1
        end
      end
      argv[#argv + 1] = table.concat(word)
    end
  end
  if #argv == 0 then return nil, "empty command" end
  return argv
end

local INPUT_KEYS = { "default", "env", "help", "required", "secret", "min", "max" }

local function check_default(kind, spec)
  local d = spec.default
  if d == nil then return end
  local ok
  if kind == "int" then ok = math.type(d) == "integer"
  elseif kind == "argv" then ok = type(d) == "table" and #d > 0
  elseif kind == "duration" then ok = type(d) == "number" or (type(d) == "string" and core.duration(d) ~= nil)
  elseif kind == "target" then ok = require("target").parse(d) ~= nil
  else ok = type(d) == "string" end
  if not ok then error(string.format("input.%s: bad default %s", kind, tostring(d)), 0) end
end

M.input = {}
for _, kind in ipairs({ "string", "int", "url", "path", "argv", "duration", "secret", "target" }) do
  M.input[kind] = function(spec)
    spec = spec or {}
    if type(spec) ~= "table" then error("input." .. kind .. " expects a table: input." .. kind .. " { ... }", 2) end
    check_keys(spec, INPUT_KEYS, "input." .. kind)
    check_default(kind, spec)
    local decl = { type = kind, default = spec.default, env = spec.env, help = spec.help,
                   required = spec.required, secret = spec.secret or kind == "secret",
                   min = spec.min, max = spec.max }
    DECL[decl] = "input"
    return decl
  end
end

-- A value of config.lua's runbooks section, as the raw text (or list, for argv) an input parses.
local function configured_raw(decl, v)
  if decl.type == "argv" and type(v) == "table" then
    local words = {}
    for i, w in ipairs(v) do words[i] = tostring(w) end
    return #words > 0 and words or nil
  end
  if type(v) == "number" then return math.type(v) == "integer" and string.format("%d", v) or tostring(v) end
  return v
end

-- Resolves one input: command line, then environment, then config.lua (configured: the value of
-- its runbooks section for this runbook), then default. Returns value, nil, source (the command
-- line, $ENV, config or default) or nil, err.
function M.resolve_input(name, decl, given, configured)
  local raw, from = given, "command line"
  if raw == nil and decl.env then raw, from = os.getenv(decl.env), "$" .. decl.env end
  if raw == nil and configured ~= nil then raw, from = configured_raw(decl, configured), "config" end
  local value
  if raw ~= nil then
    local err
    if type(raw) == "table" then value = raw else value, err = parse[decl.type](raw) end
    if value == nil then
      return nil, string.format("input '%s' (from %s): %s", name, from == "config" and "config.lua's runbooks section" or from, err)
    end
  elseif decl.default ~= nil then
    value, from = decl.default, "default"
    if decl.type == "duration" and type(value) == "string" then value = core.duration(value) end
  elseif decl.required ~= false and decl.type ~= "secret" or decl.required then
    return nil, string.format("input '%s' is required: pass %s=VALUE%s", name, name,
                              decl.env and (" or set $" .. decl.env) or "")
  else
    from = "unset"
  end
  if decl.type == "int" and value then
    if decl.min and value < decl.min then return nil, string.format("input '%s': %d is below %d", name, value, decl.min) end
    if decl.max and value > decl.max then return nil, string.format("input '%s': %d is above %d", name, value, decl.max) end
  end
  M.register_secrets(decl, value)
  return value, nil, from
end

-- Secrets are masked everywhere from the moment they are known: a secret input's value, and in
-- any other what has the form of one (a URL's password or ?token=, a conninfo's password = '...').
function M.register_secrets(decl, value)
  if type(value) == "table" then
    for _, v in ipairs(value) do M.register_secrets(decl, v) end
    return
  end
  if type(value) ~= "string" then return end
  if decl.secret then core.secret(value) end
  core.learn_secrets(value)
end

------------------------------------------------------------------------------------------ steps
local STEP_KEYS = { "title", "explain", "run" }

function M.step(id)
  if type(id) ~= "string" or not id:match("^[%w][%w_.-]*$") then
    error("step: the id must be a word like \"check-memory\", got " .. tostring(id), 2)
  end
  return function(spec)
    if type(spec) ~= "table" then error("step '" .. id .. "' expects a table: step \"" .. id .. "\" { ... }", 2) end
    local decl = { id = id, spec = spec }
    DECL[decl] = "step"
    return decl
  end
end

----------------------------------------------------------------------------------------- runbook
local RUNBOOK_KEYS = { "name", "summary", "severity", "inputs", "description", "owner" }
local SEVERITIES = { SEV1 = 1, SEV2 = 2, SEV3 = 3, SEV4 = 4, P0 = 1, P1 = 2, P2 = 3, P3 = 4 }

local function validate_step(i, decl)
  local s, where = decl.spec, string.format("step %d ('%s')", i, decl.id)
  check_keys(s, STEP_KEYS, where)
  if type(s.title) ~= "string" or s.title == "" then error(where .. " has no title", 0) end
  if s.explain ~= nil and type(s.explain) ~= "string" then error(where .. ": explain must be a string", 0) end
  if type(s.run) ~= "function" then error(where .. " has no run function", 0) end
  return { id = decl.id, index = i, title = s.title, explain = s.explain, run = s.run }
end

function M.runbook(spec)
  if type(spec) ~= "table" then error("runbook expects a table: runbook { ... }", 2) end
  local rb = { steps = {}, by_id = {}, inputs = {}, input_names = {} }
  if spec.drill ~= nil then   -- the field form of an earlier template: say where a drill lives now
    error("runbook: drill = { ... } is not a runbook field: a runbook's drill is the file NAME.drill.lua " ..
          "beside it (see doc/drills.md; `runbook new` writes one)", 0)
  end
  for k in pairs(spec) do
    if type(k) ~= "number" then
      check_keys({ [k] = true }, RUNBOOK_KEYS, "runbook")
    end
  end
  for i = 1, #spec do
    if DECL[spec[i]] ~= "step" then
      error(string.format("runbook: item %d is not a step (write step \"id\" { ... })", i), 0)
    end
    local st = validate_step(i, spec[i])
    if rb.by_id[st.id] then error(string.format("step %d: duplicate id '%s'", i, st.id), 0) end
    rb.steps[i], rb.by_id[st.id] = st, st
  end
  for _, f in ipairs({ "name", "summary" }) do
    if type(spec[f]) ~= "string" or spec[f] == "" then error("runbook has no " .. f, 0) end
  end
  if not spec.name:match("^[%w][%w_.-]*$") then error("runbook: name must be a word like disk-full", 0) end
  if not SEVERITIES[spec.severity or ""] then
    error("runbook: severity must be one of SEV1..SEV4 or P0..P3, got " .. tostring(spec.severity), 0)
  end
  if #rb.steps == 0 then error("runbook has no steps", 0) end
  for k, decl in pairs(spec.inputs or {}) do
    if type(k) ~= "string" or not k:match("^[%a_][%w_]*$") then error("inputs: bad input name " .. tostring(k), 0) end
    if DECL[decl] ~= "input" then error("inputs." .. k .. " must be declared with input.<type> { ... }", 0) end
    rb.inputs[k] = decl
    rb.input_names[#rb.input_names + 1] = k
  end
  table.sort(rb.input_names)
  rb.name, rb.summary, rb.severity = spec.name, spec.summary, spec.severity
  rb.description, rb.owner = spec.description, spec.owner
  DECL[rb] = "runbook"
  return rb
end

function M.is_runbook(v) return DECL[v] == "runbook" end

-- must(v, err, kind): v, or a step failure with err (the message already names target and cause).
function M.must(v, err, ...)
  if v == nil or v == false then
    error(err ~= nil and tostring(err) or "must: the check failed", 0)
  end
  return v, err, ...
end

return M
