-- repl.lua - the investigation REPL: `runbook repl`, and `r` at the engine's menus.
--
-- Lines are evaluated in a runbook's sandbox (sandbox.lua) where every native module is a global,
-- with help, _ (the last result) and, inside a run, ctx. As the standalone lua does, "return <line>"
-- is tried first so that an expression shows its value, and a chunk that ends early ('<eof>') asks
-- for a continuation line. Results are rendered for people (render.value), long ones cut with a
-- note; an error is one line (with a traceback under --debug).
--
-- Everything evaluated is in the transcript: an audit record "repl" with the input (redacted)
-- before it runs, the rendered result as terminal output, and "repl_result" with the outcome.
-- Actions typed here go through the same gate as a runbook's (it is in C). Ctrl-C stops an
-- evaluation (the host's hook stops even `while true do end`, in a coroutine or a pcall too) and
-- at the prompt drops the line; Ctrl-D on an empty line leaves.
local cmdline  = require "cmdline"
local core     = require "core"
local cjson    = require "cjson"
local engine   = require "engine"
local loader   = require "loader"
local render   = require "render"
local sandbox  = require "sandbox"

local M = {}

local EXIT = engine.EXIT
local MAX_LINES = 60            -- a result longer than this is cut, with a note
local CONTINUE_PROMPT = ">> "
local KEYWORDS = { "and", "break", "do", "else", "elseif", "end", "false", "for", "function", "goto",
  "if", "in", "local", "nil", "not", "or", "repeat", "return", "then", "true", "until", "while" }

local function audit(kind, fields) core.audit(kind, cjson.encode(fields)) end

------------------------------------------------------------------------------------------- help
local GENERAL_HELP = [[
Lua in a runbook's sandbox. An expression shows its value; _ holds the last one.
  modules    %s (help(sys) lists a module's functions)
  help(x)    a primitive's signature, options with defaults and an example: help(sys.fs), :help sh.read
  Tab        completes globals, module fields (sys.) and methods (conn:)
  Ctrl-C     stops an evaluation, or clears the line
  :quit      leaves (so does Ctrl-D on an empty line)]]

local RUN_HELP = [[

Inside a run:
  ctx        the step's context: ctx.<input>, ctx.state, ctx:note(...), ctx:check(...)
  :continue  back to the menu (Ctrl-D too) · :retry  run the step (ask again at an action)
  :skip      skip the step · :quit  abort the run]]

-- The module a handle belongs to, from its metatable's name ("runbook.redis.conn" -> "redis").
local function handle_module(x)
  local mt = debug.getmetatable(x)
  local name = type(mt) == "table" and rawget(mt, "__name")
  return type(name) == "string" and name:match("^runbook%.([%w_]+)%.") or nil
end

local function suggestions(word)
  local close = {}
  for _, name in ipairs(require("doc").names()) do
    if core.distance(word, name) <= 2 or name:sub(1, #word + 1) == word .. "." then close[#close + 1] = name end
  end
  if #close == 0 then return " (help() lists the modules; help(sys) a module's functions)" end
  return " (did you mean " .. table.concat(close, ", ", 1, math.min(#close, 8)) .. "?)"
end

local function help_text(x, names, in_run)
  if x == nil then
    return string.format(GENERAL_HELP, table.concat(sandbox.modules(), ", ")) .. (in_run and RUN_HELP or "")
  end
  local doc = require "doc"   -- 45 KB of reference text: loaded when help is asked for
  local name = type(x) == "string" and x:gsub("%(%)$", "") or names[x] or handle_module(x)
  local entry = name and doc.find(name)
  if entry then return doc.text(entry) end
  if type(x) == "string" then return "no help for '" .. x .. "'" .. suggestions(x) end
  return "no help for this " .. type(x) .. " (help() says what there is)"
end

------------------------------------------------------------------------------------ environment
-- The sandbox of a runbook, every native module as a global, help, and extra (ctx in a run).
function M.env(extra, in_run)
  local env = sandbox.new({ repl = true })
  local names = {}             -- module or function -> "sys" / "sys.fs", for help(sys.fs)
  for _, name in ipairs(sandbox.modules()) do
    local mod = env.require(name)
    rawset(env, name, mod)
    names[mod] = name
    for k, f in pairs(mod) do
      if type(f) == "function" then names[f] = name .. "." .. k end
    end
  end
  rawset(env, "help", function(x) core.out(help_text(x, names, in_run) .. "\n") end)
  for k, v in pairs(extra or {}) do rawset(env, k, v) end
  return env
end

------------------------------------------------------------------------------------- completion
-- What a value shows without running anything: its own keys, the table behind a sandbox proxy,
-- and the __index tables of its metatables (a userdata's methods); a string shows its library.
-- No metamethod is ever called: completing must not touch a server. debug.getmetatable, because
-- handles protect their metatables (__metatable = false) from runbooks, not from the REPL.
local function lookup(v, k)
  for _ = 1, 8 do
    if type(v) == "string" then return string[k] end
    if type(v) == "table" then
      local r = rawget(sandbox.fields_of(v) or v, k)
      if r ~= nil then return r end
    end
    local mt = debug.getmetatable(v)
    local idx = type(mt) == "table" and rawget(mt, "__index")
    if type(idx) ~= "table" then return nil end
    v = idx
  end
end

local function fields(v)
  local keys = {}
  for _ = 1, 8 do
    if type(v) == "string" then v = string end
    if type(v) == "table" then
      for k in next, sandbox.fields_of(v) or v do
        if type(k) == "string" and k:match("^[%a_][%w_]*$") then keys[k] = true end
      end
    end
    local mt = debug.getmetatable(v)
    local idx = type(mt) == "table" and rawget(mt, "__index")
    if type(idx) ~= "table" then break end
    v = idx
  end
  return keys
end

-- "sys.fi" -> sys.filesystems, sys.files; "conn:qu" -> conn:query; "pri" -> print. The part
-- before the last . or : must be a plain name chain (a.b.c): nothing else is evaluated.
function M.complete(env, word)
  local chain, sep, partial = word:match("^([%a_][%w_.]*)([.:])([%w_]*)$")
  local out, v, keys = {}, nil, nil
  if chain then
    if chain:find("..", 1, true) or chain:sub(-1) == "." then return out end
    v = env
    for name in chain:gmatch("[^.]+") do
      v = lookup(v, name)
      if v == nil then return out end
    end
    keys = fields(v)
  elseif word:match("^[%a_]?[%w_]*$") then
    chain, sep, partial, keys = "", "", word, fields(env)
    for _, k in ipairs(KEYWORDS) do keys[k] = true end
  else
    return out
  end
  for k in pairs(keys) do
    if k:sub(1, #partial) == partial and (sep ~= ":" or type(lookup(v, k)) == "function") then
      out[#out + 1] = chain .. sep .. k
    end
  end
  table.sort(out)
  return out
end

------------------------------------------------------------------------------------ the terminal
-- One line editor for the process (libedit's state is global): opened at the first REPL on a
-- terminal, its completion following whichever environment is in use. The module is a shared
-- object (interp/lineedit.h) loaded then: a run that never opens the REPL does not map libedit,
-- and one that cannot load it reads plain lines rather than failing.
local editor, editor_env, no_editor

local function open_editor()
  if editor or no_editor or not core.interactive() then return editor end
  local ok, lineedit = pcall(require, "lineedit")
  if not ok then
    no_editor = true   -- said once
    render.outcome("note", "no line editing, history or completion: " .. tostring(lineedit))
    return nil
  end
  local path, err = lineedit.history_path()
  if not path then render.outcome("note", "no history this session: " .. err) end
  local ed, warning = lineedit.open { history = path, complete = function(_, word)
    return editor_env and M.complete(editor_env, word) or {}
  end }
  if warning then render.outcome("note", warning) end
  editor = ed
  return editor
end

-- A reader: prompt -> line | nil, "eof" | nil, "interrupted". The typed line is also put in the
-- transcript (the terminal echoed it, not core.out) and, with the editor, unless it holds a
-- secret, in the history. Without a terminal, lines are read plainly: no prompt, no history.
local function reader(ed)
  if ed then
    return function(prompt)
      local line, why = ed:read(prompt)
      if line then
        core.learn_secrets(line)   -- a password typed here is masked from now on, this line first
        core.transcribe(prompt .. line .. "\r\n")
        ed:remember(line)
      end
      return line, why
    end
  end
  if core.interactive() then   -- the editor could not be loaded: the gate's own prompt
    return function(prompt)
      local line, why = core.prompt(prompt)
      if why == "interrupted" then core.clear_interrupt() end   -- the press dropped the line
      return line, why
    end
  end
  return function()
    local line = io.stdin:read("l")
    if line == nil then return nil, "eof" end
    return line
  end
end

------------------------------------------------------------------------------------- evaluation
-- Reads a chunk: a line, then continuation lines while it is incomplete. Returns the compiled
-- function and its source; or nil, what ("eof", "interrupted", "empty", "command", "syntax"), text.
local function read_chunk(s)
  local line, why = s.read(s.prompt)
  if not line then return nil, why end
  core.learn_secrets(line)
  if line:match("^%s*$") then return nil, "empty" end
  if line:match("^%s*:") then return nil, "command", line end
  local f = load("return " .. line, "=repl", "t", s.env)
  if f then return f, line end
  local src = line
  while true do
    local err
    f, err = load(src, "=repl", "t", s.env)
    if f then return f, src end
    if not err:match("<eof>$") then return nil, "syntax", err, src end
    local more, mwhy = s.read(CONTINUE_PROMPT)
    if more then core.learn_secrets(more) end
    if not more then
      if mwhy == "interrupted" then return nil, "interrupted" end
      return nil, "syntax", err, src
    end
    src = src .. "\n" .. more
  end
end

local function first_line(s) return (tostring(s):match("^[^\n]*")) end

-- Shows what an evaluation returned; `nil, err, kind` (an expected failure) reads as one line.
local function show_results(s, res)
  local n = res.n - 1
  if n < 1 then return "" end
  local vals = table.move(res, 2, res.n, 1, {})
  rawset(s.env, "_", vals[1])
  if n >= 2 and vals[1] == nil and type(vals[2]) == "string" then
    local text = vals[2] .. (vals[3] ~= nil and (" (" .. tostring(vals[3]) .. ")") or "")
    render.outcome("finding", text)
    return text
  end
  local lines, scalars = {}, true
  for i = 1, n do scalars = scalars and type(vals[i]) ~= "table" end
  if scalars and n > 1 then
    local parts = {}
    for i = 1, n do parts[i] = render.value(vals[i])[1] or "" end
    lines[1] = table.concat(parts, "\t")
  else
    for i = 1, n do
      for _, l in ipairs(render.value(vals[i])) do lines[#lines + 1] = l end
    end
  end
  if #lines > MAX_LINES then
    local more = #lines - MAX_LINES + 1
    lines[MAX_LINES] = render.dim(string.format("… %d more lines not shown: the whole value is in _ (index it, e.g. _[%d])",
                                                more, MAX_LINES))
    for i = #lines, MAX_LINES + 1, -1 do lines[i] = nil end
  end
  local text = table.concat(lines, "\n")
  core.out(text .. "\n")
  return text
end

local function error_handler(debug_on)
  return function(e)
    if core.is_control(e) then return e end
    if debug_on then return debug.traceback(render.error_text(e), 2) end
    return first_line(render.error_text(e))
  end
end

-- Runs one chunk; records it and its outcome. Returns an ending when the chunk ended the session
-- (an action's "abort the run" answer).
local function evaluate(s, f, src)
  audit("repl", { input = core.redact(src), step = s.step })
  s.counts.evaluations = s.counts.evaluations + 1
  local t0 = core.now()
  core.thread_push(coroutine.running())        -- so that Ctrl-C reaches this thread too
  local res = table.pack(xpcall(f, error_handler(s.debug)))
  core.thread_pop()
  local outcome, summary, ending = "ok", "", nil
  if res[1] then
    summary = show_results(s, res)
  else
    local e = res[2]
    local control = core.is_control(e)
    if control == "interrupt" then
      outcome, summary = "interrupted", "interrupted"
      render.outcome("error", "interrupted")
    elseif control == "skip" then
      outcome, summary = "declined", tostring(e)
      render.outcome("note", summary)
    elseif control == "abort" then
      outcome, summary, ending = "aborted", tostring(e), "quit"
    else
      outcome, summary = "error", tostring(e)
      render.outcome("error", summary)
    end
  end
  if outcome == "ok" and core.interrupts() > 0 then outcome = "interrupted" end
  if outcome == "error" or outcome == "interrupted" then s.counts.errors = s.counts.errors + 1 end
  core.clear_interrupt()
  audit("repl_result", { outcome = outcome, duration_ms = math.floor(core.now() - t0 + 0.5),
                         result = core.redact(first_line(summary):sub(1, 200)), step = s.step })
  if core.memory_exceeded() then   -- what is left is the reserve for closing the session
    render.outcome("error", string.format("the memory limit (%s) was reached: the session ends " ..
      "(RUNBOOK_MEMORY_LIMIT raises it)", render.fmt.bytes(core.memory_limit())))
    return "quit"
  end
  return ending
end

local RUN_COMMANDS = { continue = "continue", c = "continue", retry = "retry", skip = "skip", quit = "quit", q = "quit" }

-- A ":word" line. Returns an ending, or nil to read on.
local function command(s, line)
  local word, arg = line:match("^%s*:(%a*)%s*(.-)%s*$")
  if word == "help" or word == "h" then
    core.out(help_text(arg ~= "" and arg or nil, {}, s.in_run) .. "\n")
    return nil
  end
  if word == "quit" or word == "q" then return "quit" end
  if s.in_run and RUN_COMMANDS[word] then return RUN_COMMANDS[word] end
  render.outcome("error", string.format(":%s is not a command here (%s)", word,
    s.in_run and ":help, :continue, :retry, :skip, :quit" or ":help, :quit"))
  return nil
end

-- One prompt: read, evaluate, show. Returns an ending or nil.
local function round(s)
  if core.terminated() then return "terminated" end
  local f, what, text, src = read_chunk(s)
  if f then return evaluate(s, f, what) end
  if what == "eof" then return "eof" end
  if what == "command" then return command(s, text) end
  if what == "syntax" then
    audit("repl", { input = core.redact(src), step = s.step })
    s.counts.errors = s.counts.errors + 1
    render.outcome("error", first_line(text))
    audit("repl_result", { outcome = "error", result = core.redact(first_line(text)), step = s.step })
  end
  return nil   -- empty line, or Ctrl-C at the prompt: read again
end

-- Runs a session until :quit, Ctrl-D (or the end of the input), a run command or SIGTERM.
-- opts: env, prompt, in_run, step (its id: the records' step), debug. Returns the ending and
-- counts { evaluations, errors }.
function M.session(opts)
  local ed = open_editor()
  local s = { env = opts.env, prompt = opts.prompt or "> ", in_run = opts.in_run, step = opts.step,
              debug = opts.debug, read = reader(ed), counts = { evaluations = 0, errors = 0 } }
  local outer_env = editor_env
  editor_env = s.env
  local gate_opener = M.gate_opener
  M.offer_at_gate(nil)          -- no REPL inside the REPL
  local ending
  repeat
    local ok, e = xpcall(round, function(err)
      if core.is_control(err) then return err end
      return s.debug and debug.traceback(render.error_text(err), 2) or render.error_text(err)
    end, s)
    if ok then
      ending = e
    elseif core.is_control(e) == "interrupt" then
      core.clear_interrupt()    -- a Ctrl-C between two evaluations: read again
    else
      core.err("runbook: internal error in the REPL: " .. tostring(e) .. "\n")
      ending = "error"
    end
  until ending
  M.offer_at_gate(gate_opener)
  editor_env = outer_env
  return ending, s.counts
end

------------------------------------------------------------------------------------ inside a run
-- What the action gate's decline menu calls for "r" (see interp/gate.h); nil: not offered.
function M.offer_at_gate(fn)
  M.gate_opener = fn
  core.set_gate_repl(fn)
end

-- The REPL at one of the engine's menus, with ctx in scope. Returns "back", "retry", "skip" or "quit".
function M.in_run(ctx, step, where, debug_on)
  render.print(render.dim(string.format(
    "      REPL at step %d (%s), from the %s · ctx is in scope · :continue back to the menu · :help",
    step.index, step.id, where)))
  local ending = M.session { env = M.env({ ctx = ctx }, true), prompt = step.id .. "> ", in_run = true,
                             step = step.id, debug = debug_on }
  if ending == "retry" or ending == "skip" or ending == "quit" then return ending end
  if ending == "terminated" then return "quit" end
  return "back"
end

------------------------------------------------------------------------------- runbook repl ...
local FLAGS = { ["--dry-run"] = "dry_run", ["--debug"] = "debug" }
local VALUES = { ["--runbook"] = "runbook", ["--timeout"] = "timeout", ["--transcript"] = "transcript" }

local function usage(msg)
  core.err("runbook: " .. msg .. " (see 'runbook repl --help')\n")
  return EXIT.usage
end

local function parse_args(args)
  local opts, inputs = cmdline.parse(args, FLAGS, VALUES, function(a) return "unexpected argument '" .. a .. "'" end)
  if not opts then return nil, inputs end
  if next(inputs) and not opts.runbook then return nil, "inputs (name=value) need --runbook NAME" end
  local ok, err = cmdline.timeout(opts)
  if not ok then return nil, err end
  return opts, inputs
end

-- The runbook named by --runbook, its inputs resolved and a ctx over them (no step runs).
local function runbook_scope(opts, given, run)
  local path, err = loader.resolve(opts.runbook)
  if not path then return nil, err end
  local rb, lerr = loader.load(path)
  if not rb then return nil, lerr end
  local inputs, ierr = engine.resolve_inputs(rb, given)
  if not inputs then return nil, ierr end
  return rb, engine.new_ctx(run, rb, inputs), inputs
end

local function open_transcript(run, opts, rb, inputs)
  local name = rb and rb.name or "repl"
  local path = opts.transcript
  if not path then
    local dir, err = core.transcript_dir()
    if not dir then return nil, err end
    path = string.format("%s/%s-%s-%s.cast", dir, rb and (name .. "-repl") or name, os.date("!%Y%m%dT%H%M%SZ"),
                         run.session)
  end
  local id = core.identity()
  local shown = {}
  for k, v in pairs(inputs or {}) do shown[k] = (rb.inputs[k].secret and type(v) == "string") and "***" or v end
  local argv = { "runbook", "repl" }
  for _, a in ipairs(opts.argv) do argv[#argv + 1] = a end
  local header = core.redact(cjson.encode({
    name = name, repl = true, file = rb and rb.file, sha256 = rb and rb.sha256, user = id.user, host = id.host,
    tty = id.tty, pid = id.pid, argv = argv, started = os.date("!%Y-%m-%dT%H:%M:%SZ"), yes = false,
    dry_run = opts.dry_run and true or false, auto = false, version = core.version, session = run.session,
    inputs = shown,
  }))
  core.sign_key(require("witness").sign_key(nil, (require("incident").load_config())))   -- env, config.lua
  local ok, err = core.transcript_open(path, header)
  if not ok then return nil, err end
  audit("session_start", { runbook = name, session = run.session, user = id.user, repl = true })
  return path
end

-- `runbook repl [--runbook NAME] [--dry-run] [--timeout DUR] [--transcript FILE] [--debug] [name=value ...]`
function M.main(args)
  local opts, given = parse_args(args)
  if not opts then return usage(given) end
  opts.argv = args
  -- ctx:finding and ctx:update call the run's incident hooks (incident.lua): none here.
  local no_hooks = setmetatable({ menu_hint = "" }, { __index = function() return function() end end })
  local run = { session = engine.session_id(), step_findings = 0, dry_run = opts.dry_run, debug = opts.debug,
                hooks = no_hooks }
  local rb, ctx, inputs
  if opts.runbook then
    rb, ctx, inputs = runbook_scope(opts, given, run)
    if not rb then return usage(ctx) end
  end
  local path, terr = open_transcript(run, opts, rb, inputs)
  if not path then core.err("runbook: " .. terr .. "\n") return EXIT.usage end
  core.gate_configure(opts.dry_run, false)
  if opts.timeout then core.set_cap(opts.timeout * 1000) end
  local tty = core.interactive()
  if tty then
    render.print(render.bold("runbook repl") .. (rb and (" · " .. rb.name) or "") .. " · session " .. run.session ..
                 " · transcript " .. path)
    render.print(render.dim("modules: " .. table.concat(sandbox.modules(), ", ") ..
      (ctx and " · ctx holds the runbook's inputs" or "") .. " · help() · Tab completes · Ctrl-D leaves"))
  end
  local ending, counts = M.session { env = M.env(ctx and { ctx = ctx } or nil), debug = opts.debug,
                                      prompt = (rb and (rb.name .. "> ") or "> ") }
  if editor then editor:close() editor = nil end      -- the history file is complete from here
  local code = (not tty and counts.errors > 0) and EXIT.failed or EXIT.ok
  local head, cerr = core.transcript_close(core.redact(cjson.encode({
    exit = code, outcome = "repl", counts = counts, message = ending,
  })))
  if not head then core.err("runbook: " .. cerr .. "\n") return EXIT.internal end
  -- Without a terminal stdout holds only results: where the record is goes to stderr.
  local where = "transcript " .. path .. "\nchain head " .. head .. "\n"
  if tty then core.out(where) else core.err(where) end
  return code
end

return M
