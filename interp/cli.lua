-- cli.lua - the subcommands behind main.c: list, show, check, exec, transcript.
-- main.c has already answered --help and --version; each function returns an exit code.
local core   = require "core"
local loader = require "loader"
local engine = require "engine"
local render = require "render"

local M = {}
local EXIT = engine.EXIT

local function usage(msg)
  core.err("runbook: " .. msg .. "\n")
  return EXIT.usage
end

local function load_arg(arg)
  local path, err = loader.resolve(arg)
  if not path then return nil, err end
  return loader.load(path)
end

function M.list(args)
  if #args > 0 then return usage("list takes no arguments (see 'runbook list --help')") end
  local all = loader.all()
  if #all == 0 then
    core.out("no runbooks found in: " .. table.concat(loader.search_path(), ", ") .. "\n")
    return EXIT.ok
  end
  local rows = {}
  for _, entry in ipairs(all) do
    local rb, err = loader.load(entry.path)
    rows[#rows + 1] = rb and { name = rb.name, severity = rb.severity, summary = rb.summary }
                      or { name = entry.name, severity = "?", summary = "invalid: " .. err }
  end
  local w, sw = 0, 0
  for _, r in ipairs(rows) do w, sw = math.max(w, #r.name), math.max(sw, utf8.len(r.summary) or #r.summary) end
  local last_run = require("history").last_run_texts()   -- nil until the transcript directory has sessions
  for _, r in ipairs(rows) do
    local last = last_run and (string.rep(" ", sw - (utf8.len(r.summary) or #r.summary)) .. "  · " .. last_run(r.name)) or ""
    core.out(string.format("  %-" .. w .. "s  %-4s  %s%s\n", r.name, r.severity, r.summary, last))
  end
  return EXIT.ok
end

local function markdown(rb)
  local out = { "# " .. rb.name, "", string.format("**%s** · %s", rb.severity, rb.summary), "" }
  if rb.description then out[#out + 1] = rb.description; out[#out + 1] = "" end
  if rb.owner then out[#out + 1] = "Owner: " .. rb.owner; out[#out + 1] = "" end
  if #rb.input_names > 0 then
    out[#out + 1] = "## Inputs"
    out[#out + 1] = ""
    out[#out + 1] = "| name | type | default | environment | description |"
    out[#out + 1] = "|---|---|---|---|---|"
    for _, name in ipairs(rb.input_names) do
      local d = rb.inputs[name]
      local default = d.default
      if type(default) == "table" then default = table.concat(default, " ") end
      if d.secret and default ~= nil then default = "***" end
      out[#out + 1] = string.format("| `%s` | %s | %s | %s | %s |", name, d.type,
        default ~= nil and ("`" .. tostring(default) .. "`") or (d.required == false and "—" or "required"),
        d.env and ("`$" .. d.env .. "`") or "", d.help or "")
    end
    out[#out + 1] = ""
  end
  out[#out + 1] = "## Steps"
  out[#out + 1] = ""
  for _, s in ipairs(rb.steps) do
    out[#out + 1] = string.format("%d. **%s** (`%s`)", s.index, s.title, s.id)
    if s.explain then out[#out + 1] = "   " .. s.explain:gsub("\n", "\n   ") end
  end
  return table.concat(out, "\n") .. "\n"
end

function M.show(args)
  if #args ~= 1 then return usage("show takes one runbook name or file (see 'runbook show --help')") end
  local rb, err = load_arg(args[1])
  if not rb then return usage(err) end
  core.out(core.redact(markdown(rb)))
  return EXIT.ok
end

function M.check(args)
  if #args == 0 then return usage("check needs at least one runbook file (see 'runbook check --help')") end
  local failed = 0
  for _, arg in ipairs(args) do
    local rb, err = load_arg(arg)
    if rb then
      core.out(string.format("ok    %s (%s, %d steps, %d inputs)\n", rb.file, rb.name, #rb.steps, #rb.input_names))
    else
      failed = failed + 1
      core.out("FAIL  " .. err .. "\n")
    end
  end
  return failed == 0 and EXIT.ok or EXIT.failed
end

local EXEC_FLAGS = { ["--dry-run"] = "dry_run", ["--auto"] = "auto", ["--yes"] = "yes", ["--debug"] = "debug" }
local EXEC_VALUES = { ["--start-at"] = "start_at", ["--timeout"] = "timeout", ["--transcript"] = "transcript",
                      ["--incident"] = "incident", ["--severity"] = "severity", ["--since"] = "since",
                      ["--impact"] = "impact", ["--resume"] = "resume", ["--lock-timeout"] = "lock_timeout",
                      ["--inventory"] = "inventory" }

local function suggest_flag(flag)
  local best, bestd = nil, 4
  for f in pairs(EXEC_FLAGS) do local d = core.distance(flag, f) if d < bestd then best, bestd = f, d end end
  for f in pairs(EXEC_VALUES) do local d = core.distance(flag, f) if d < bestd then best, bestd = f, d end end
  return best and (" (did you mean " .. best .. "?)") or ""
end

function M.exec(args)
  local opts, target, inputs = { inputs = {} }, nil, {}
  local i = 1
  while i <= #args do
    local a = args[i]
    local flag, value = a:match("^(%-%-[%w-]+)=(.*)$")
    flag = flag or a
    if EXEC_FLAGS[flag] and not value then
      opts[EXEC_FLAGS[flag]] = true
    elseif EXEC_VALUES[flag] then
      if not value then
        i = i + 1
        value = args[i]
        if not value then return usage(flag .. " needs a value") end
      end
      opts[EXEC_VALUES[flag]] = value
    elseif a:sub(1, 1) == "-" then
      return usage("unknown option " .. a .. suggest_flag(flag) .. " (see 'runbook exec --help')")
    elseif a:match("^[%a_][%w_]*=") then
      local k, v = a:match("^([%a_][%w_]*)=(.*)$")
      inputs[k] = v
    elseif not target then
      target = a
    else
      return usage("unexpected argument '" .. a .. "' (inputs are name=value)")
    end
    i = i + 1
  end
  if not target and not opts.resume then return usage("exec needs a runbook name or file (see 'runbook list')") end
  if opts.lock_timeout then
    local s, err = core.duration(opts.lock_timeout)
    if not s then return usage("--lock-timeout: " .. err) end
    opts.lock_timeout = s
  end
  if opts.timeout then
    local s, err = core.duration(opts.timeout)
    if not s or s <= 0 then return usage("--timeout: " .. (err or "must be positive")) end
    opts.timeout = s
  end
  if opts.inventory then require("reach").inventory = opts.inventory end   -- inventory:GROUP targets
  opts.inputs = inputs
  opts.argv = { "runbook", "exec" }
  for _, a in ipairs(args) do opts.argv[#opts.argv + 1] = a end
  require("sandbox").set_prefetch(true)   -- the runbook will run: open its modules meanwhile
  if opts.resume then return require("resume").exec(target, opts) end
  local rb, err = load_arg(target)
  if not rb then return usage(err) end
  return engine.exec(rb, opts)
end

function M.transcript(args)
  local sub, file = args[1], args[2]
  if (sub ~= "verify" and sub ~= "show") or not file or args[3] then
    return usage("usage: runbook transcript verify|show FILE")
  end
  local audit = require "audit"
  return audit[sub](file)
end

function M.lab(args) return require("lab").main(args) end
function M.repl(args) return require("repl").main(args) end

-- runbook doc: the README's Lua API reference; runbook doc NAME: one entry, as help(NAME) shows it.
function M.doc(args)
  local doc = require "doc"
  if #args == 0 then core.out(doc.markdown()) return EXIT.ok end
  if #args > 1 then return usage("doc takes at most one name (see 'runbook doc --help')") end
  local entry = doc.find(args[1])
  if not entry then
    return usage("no documentation for '" .. args[1] .. "' (there is: " .. table.concat(doc.names(), ", ") .. ")")
  end
  core.out(doc.text(entry) .. "\n")
  return EXIT.ok
end
function M.timeline(args) return require("timeline").main(args) end
function M.history(args) return require("history").main(args) end
function M.unlock(args) return require("lock").unlock(args) end
function M.drill(args) return require("drill").main(args) end

function M.main(argv)
  local cmd = argv[1]
  local rest = table.move(argv, 2, #argv, 1, {})
  local fn = M[cmd]
  if not fn or cmd == "main" then return usage("'" .. tostring(cmd) .. "' is not a command") end
  return fn(rest)
end

return M
