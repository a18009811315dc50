-- cli.lua - the subcommands behind main.c: list, show, check, exec, transcript.
-- main.c has already answered --help and --version; each function returns an exit code.
local cmdline = require "cmdline"
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
  local runs = require("show_calls").by_step(rb)   -- what each step runs, read from its source
  for _, s in ipairs(rb.steps) do
    out[#out + 1] = string.format("%d. **%s** (`%s`)", s.index, s.title, s.id)
    if s.explain then out[#out + 1] = "   " .. s.explain:gsub("\n", "\n   ") end
    for _, line in ipairs(runs[s.id] or {}) do out[#out + 1] = "   - `" .. line:gsub("`", "'") .. "`" end
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

-- check [--strict] FILE|NAME...: validation (loader.lua), then the linter's rules (lint.lua);
-- check --explain RULE: what a rule looks for and how to silence it.
local function check_usage(msg) return usage(msg .. " (see 'runbook check --help')") end

local function plural(n, word) return n .. " " .. word .. (n == 1 and "" or "s") end

-- One runbook (or a drill file beside one: loaded and its declaration checked, nothing runs); its
-- findings printed; returns true when it passes.
local function check_one(arg, strict)
  if loader.is_drill_file(arg) then
    local drill, derr = require("drill").load(arg)
    core.out(drill and string.format("ok    %s (drill, %s)\n", arg, plural(#require("drill").modes(drill), "mode"))
             or ("FAIL  " .. derr .. "\n"))
    return drill ~= nil
  end
  local rb, err = load_arg(arg)
  if not rb then
    core.out("FAIL  " .. err .. "\n")
    return false
  end
  local lok, findings = pcall(require("lint").run, rb)
  if not lok then   -- a bug of the linter's, not the runbook's: say so, without a traceback
    core.out("FAIL  " .. rb.file .. ": the linter could not read it (" .. tostring(findings) .. "); please report this\n")
    return false
  end
  local errors, warnings = 0, 0
  for _, f in ipairs(findings) do
    if f.level == "error" then errors = errors + 1 else warnings = warnings + 1 end
    core.out(core.redact(string.format("%s:%d: %s: %s [%s]\n", rb.file, f.line, f.level, f.message, f.rule)))
  end
  local what = string.format("%s (%s, %d steps, %d inputs)", rb.file, rb.name, #rb.steps, #rb.input_names)
  local counts = #findings > 0 and (": " .. plural(errors, "error") .. ", " .. plural(warnings, "warning")) or ""
  local ok = errors == 0 and (warnings == 0 or not strict)
  core.out((ok and "ok    " or "FAIL  ") .. what .. counts .. "\n")
  return ok
end
M.check_one = check_one

function M.check(args)
  local strict, files = false, {}
  local i = 1
  while i <= #args do
    local a = args[i]
    if a == "--strict" then strict = true
    elseif a == "--explain" or a:match("^%-%-explain=") then
      local rule = a:match("^%-%-explain=(.*)$") or args[i + 1]
      local lint = require "lint"
      local text = rule and lint.explain(rule)
      if not text then
        return check_usage("--explain needs a rule: " .. table.concat(lint.rule_names(), ", "))
      end
      core.out(text)
      return EXIT.ok
    elseif a:sub(1, 1) == "-" then return check_usage("unknown option " .. a)
    else files[#files + 1] = a end
    i = i + 1
  end
  if #files == 0 then return check_usage("check needs at least one runbook file") end
  local failed = 0
  for _, arg in ipairs(files) do
    if not check_one(arg, strict) then failed = failed + 1 end
  end
  return failed == 0 and EXIT.ok or EXIT.failed
end

local EXEC_FLAGS = { ["--dry-run"] = "dry_run", ["--auto"] = "auto", ["--yes"] = "yes", ["--debug"] = "debug" }
local EXEC_VALUES = { ["--start-at"] = "start_at", ["--timeout"] = "timeout", ["--transcript"] = "transcript",
                      ["--incident"] = "incident", ["--severity"] = "severity", ["--since"] = "since",
                      ["--impact"] = "impact", ["--resume"] = "resume", ["--lock-timeout"] = "lock_timeout",
                      ["--sign-key"] = "sign_key", ["--allowed-signers"] = "allowed_signers",
                      ["--memory-limit"] = "memory_limit", ["--yes-irreversible"] = "yes_irreversible",
                      ["--inventory"] = "inventory" }

local function suggest_flag(flag)
  local best, bestd = nil, 4
  for f in pairs(EXEC_FLAGS) do local d = core.distance(flag, f) if d < bestd then best, bestd = f, d end end
  for f in pairs(EXEC_VALUES) do local d = core.distance(flag, f) if d < bestd then best, bestd = f, d end end
  return best and (" (did you mean " .. best .. "?)") or ""
end

function M.exec(args)
  local target
  local opts, inputs = cmdline.parse(args, EXEC_FLAGS, EXEC_VALUES, function(a, flag)
    if a:sub(1, 1) == "-" then return "unknown option " .. a .. suggest_flag(flag) .. " (see 'runbook exec --help')" end
    if target then return "unexpected argument '" .. a .. "' (inputs are name=value)" end
    target = a
  end)
  if not opts then return usage(inputs) end
  if not target and not opts.resume then return usage("exec needs a runbook name or file (see 'runbook list')") end
  if opts.memory_limit then
    local ok, err = core.set_memory_limit(opts.memory_limit)
    if not ok then return usage("--memory-limit: " .. err) end
  end
  if opts.lock_timeout then
    local s, err = core.duration(opts.lock_timeout)
    if not s then return usage("--lock-timeout: " .. err) end
    opts.lock_timeout = s
  end
  local tok, terr = cmdline.timeout(opts)
  if not tok then return usage(terr) end
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

-- transcript verify FILE [--allowed-signers FILE] [--witness [LOGFILE]] | transcript show FILE
local function verify_args(args)
  local opts, files, i = {}, {}, 2
  while i <= #args do
    local a = args[i]
    local flag, value = a:match("^(%-%-[%w-]+)=(.*)$")
    flag = flag or a
    if flag == "--allowed-signers" then
      if not value then i = i + 1 value = args[i] end
      if not value then return nil, "--allowed-signers needs a file" end
      opts.allowed_signers = value
    elseif flag == "--witness" then
      if not value and args[i + 1] and args[i + 1]:sub(1, 1) ~= "-" then i = i + 1 value = args[i] end
      opts.witness = value or true
    elseif a:sub(1, 1) == "-" then
      return nil, "unknown option " .. a .. " (see 'runbook transcript --help')"
    else
      files[#files + 1] = a
    end
    i = i + 1
  end
  -- `verify --witness FILE`: the only file named is the transcript (the witness is the journal).
  if #files == 0 and type(opts.witness) == "string" then files[1], opts.witness = opts.witness, true end
  if #files ~= 1 then return nil, "usage: runbook transcript verify FILE [--allowed-signers FILE] [--witness [LOGFILE]]" end
  return files[1], opts
end

function M.transcript(args)
  local sub, file = args[1], args[2]
  local audit = require "audit"
  if sub == "verify" then
    local path, opts = verify_args(args)
    if not path then return usage(opts) end
    return audit.verify(path, opts)
  end
  if sub ~= "show" or not file or args[3] then
    return usage("usage: runbook transcript verify|show FILE")
  end
  return audit.show(file)
end

function M.lab(args) return require("lab").main(args) end
function M.repl(args) return require("repl").main(args) end

-- runbook doc: the whole reference (doc/lua-api.md); runbook doc NAME: one entry, as help(NAME) shows it;
-- --man 1|7: the man pages (man.lua); --luals DIR: editor definitions (luals.lua).
local MAN_PAGES = { ["1"] = "runbook1", ["7"] = "runbook_lua7" }

function M.doc(args)
  local doc = require "doc"
  if #args == 0 or (args[1] == "--markdown" and #args == 1) then core.out(doc.document()) return EXIT.ok end
  if args[1] == "--man" then
    local page = #args == 2 and MAN_PAGES[args[2]]
    if not page then return usage("doc --man takes 1 (runbook(1)) or 7 (runbook-lua(7))") end
    core.out(require("man")[page]())
    return EXIT.ok
  end
  if args[1] == "--luals" then
    local dir, as = args[2], nil
    if args[3] == "--as" and args[4] and not args[5] then as = args[4]
    elseif args[3] then dir = nil end
    if not dir then return usage("usage: runbook doc --luals DIR [--as PATH]") end
    local written, err = require("luals").write(dir, as)
    if not written then core.err("runbook doc: " .. err .. "\n") return EXIT.failed end
    core.out(string.format("wrote %d files to %s: point your editor's Lua language server at %s/.luarc.json " ..
                           "(copy it to your runbooks' directory)\n", #written, dir, dir))
    return EXIT.ok
  end
  if args[1]:find("^%-") then return usage("unknown option " .. args[1] .. " (see 'runbook doc --help')") end
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
function M.new(args) return require("authoring").new(args) end
function M.test(args) return require("authoring").test(args) end

function M.main(argv)
  -- A secret on the command line (token=..., a URL with a password) is masked from the start;
  -- main.c has already blanked it out of /proc/PID/cmdline.
  for _, a in ipairs(argv) do core.learn_secrets(a) end
  local cmd = argv[1]
  local rest = table.move(argv, 2, #argv, 1, {})
  local fn = M[cmd]
  if not fn or cmd == "main" then return usage("'" .. tostring(cmd) .. "' is not a command") end
  return fn(rest)
end

return M
