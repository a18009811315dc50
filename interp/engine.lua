-- engine.lua - walks a loaded runbook: inputs, transcript, the step menu, outcomes, exit code.
-- The invariants live in C (gate, transcript, redaction, deadlines); this file is the policy:
-- what to ask between steps and what a run's outcome is.
local core   = require "core"
local check  = require "check"
local cjson  = require "cjson"
local dsl    = require "dsl"
local render = require "render"

local M = {}

local EXIT = { ok = 0, failed = 1, usage = 2, escalated = 3, declined = 4, aborted = 5, locked = 6, internal = 70 }
M.EXIT = EXIT

local function json(t) return cjson.encode(t) end
local MAX_NOTE = 64 * 1024          -- a note, finding or ok beyond this is cut where it is shown and recorded
local MAX_REVISITS = 100            -- runs of one step without an operator between them (--auto, no terminal)
local CHECK_LEVEL = { OK = "ok", WARNING = "finding", CRITICAL = "finding", UNKNOWN = "note" }

local function audit(kind, fields) core.audit(kind, json(fields or {})) end

local function iso_now() return os.date("!%Y-%m-%dT%H:%M:%SZ") end

local function session_id()
  local f = io.open("/dev/urandom", "rb")
  local bytes = f and f:read(3) or tostring(os.time())
  if f then f:close() end
  return (bytes:gsub(".", function(c) return string.format("%02x", c:byte()) end)):sub(1, 6)
end

-------------------------------------------------------------------------------------------- ctx
-- A sentinel a step returns (return ctx:jump("x")); the engine also honours it when not returned.
local JUMP = setmetatable({}, { __tostring = function() return "jump" end })

-- Shown and recorded, but not a transcript the size of the disk.
local function cut(text)
  if #text <= MAX_NOTE then return text end
  return text:sub(1, MAX_NOTE) .. string.format(" … (%s more)", render.fmt.bytes(#text - MAX_NOTE))
end

local function new_ctx(run, rb, inputs)
  local methods = {}
  local ctx = { state = {}, inputs = inputs, dry_run = run.dry_run, runbook = rb.name }

  -- A mistake in the arguments is the runbook's, and is reported at its line (level 3: the
  -- runbook, which called the method, which called this; the methods call it, never tail-call it).
  local function say(level, code, fmtstr, ...)
    local ok, text
    if select("#", ...) > 0 then ok, text = pcall(string.format, fmtstr, ...)
    else ok, text = pcall(tostring, fmtstr) end
    if not ok or type(text) ~= "string" then
      error(string.format("ctx:%s: %s", level, ok and "__tostring did not return a string"
        or (render.error_text(text):gsub("to '[%w.]*format'", "to ctx:" .. level))), 3)
    end
    text = text:gsub("%s+$", "")
    text = cut(text)
    render.outcome(level, text)
    audit("note", { level = level, code = code, text = core.redact(text) })
    if level == "finding" then run.step_findings = run.step_findings + 1; run.hooks:finding(text, code) end
    return text
  end
  function methods.ok(_, ...) say("ok", nil, ...) end
  -- ctx:finding("text %s", ...) or ctx:finding { code = "redis.down", "text %s", ... } (or text = "...").
  -- The code is the finding's stable name: drills and tools match it, never the wording.
  function methods.finding(_, first, ...)
    -- A table with a metatable is a value to show (its __tostring), not the { code = ... } form.
    if type(first) ~= "table" or getmetatable(first) ~= nil then say("finding", nil, first, ...) return end
    local code = first.code
    if type(code) ~= "string" or not code:match("^[%w_]+[%w_.-]*$") then
      error("ctx:finding { code = \"area.what\", \"text\", ... }: the code must be a word like redis.down", 2)
    end
    if first.text ~= nil then say("finding", code, "%s", tostring(first.text)) return end
    if first[1] == nil then error("ctx:finding { code = " .. code .. " }: the finding needs a text", 2) end
    say("finding", code, table.unpack(first, 1, math.max(#first, 1)))
  end
  function methods.note(_, ...) say("note", nil, ...) end
  function methods.show(_, text) render.block(cut(render.error_text(text))) end

  -- Judges a measured value (see check.lua), shows it in its status colour and records it; a
  -- value past its threshold is a finding, named by the code when one is given.
  function methods.check(_, label, value, opts)
    if type(label) ~= "string" then error("ctx:check(label, value, { warn = , crit = , format = , code = })", 2) end
    opts = opts or {}
    local format = opts.format or tostring
    local thresholds = { warn = opts.warn, crit = opts.crit }
    for k in pairs(opts) do
      if k ~= "warn" and k ~= "crit" and k ~= "format" and k ~= "code" then
        error("ctx:check: unknown option '" .. tostring(k) .. "' (warn, crit, format, code)", 2)
      end
    end
    local status, why = check.judge(value, thresholds)
    local text = string.format("%s %s: %s", status, label, value ~= nil and format(value) or "?")
    if why then text = text .. " (" .. why .. ")" end
    render.outcome(CHECK_LEVEL[status], text, status)
    audit("check", { label = core.redact(label), value = type(value) == "number" and value or nil,
                     warn = opts.warn and tostring(opts.warn), crit = opts.crit and tostring(opts.crit),
                     status = status, code = status ~= check.OK and opts.code or nil })
    if status ~= check.OK then run.step_findings = run.step_findings + 1; run.hooks:finding(text, opts.code) end
    return status
  end

  function methods.jump(_, id)
    local target = rb.by_id[id] or rb.steps[math.tointeger(id) or 0]
    if not target then error("ctx:jump: no step '" .. tostring(id) .. "'", 2) end
    run.jump = target.index
    return JUMP
  end
  function methods.resolved(_, msg)
    run.outcome, run.outcome_msg = "resolved", msg and tostring(msg) or "resolved"
    return JUMP
  end
  -- A status update (investigating, identified, monitoring, resolved): see status.lua.
  function methods.update(_, status, text) return run.hooks:update(run, status, text) end
  function methods.escalate(_, msg)
    run.outcome, run.outcome_msg = "escalated", msg and tostring(msg) or "escalated"
    return JUMP
  end

  -- Polls fn until it returns a truthy value; bounded by timeout, interruptible by Ctrl-C.
  function methods.wait_until(_, desc, fn, opts)
    if type(desc) ~= "string" or type(fn) ~= "function" then
      error("ctx:wait_until(description, function, { timeout = , every = })", 2)
    end
    opts = opts or {}
    for k in pairs(opts) do
      if k ~= "timeout" and k ~= "every" then error("ctx:wait_until: unknown option '" .. tostring(k) .. "'", 2) end
    end
    local timeout = assert(core.duration(opts.timeout or 60))
    local every = assert(core.duration(opts.every or 1))
    render.outcome("note", string.format("waiting until %s (up to %s)", desc, render.fmt.duration(timeout)))
    local deadline = core.now() + timeout * 1000
    while true do
      local r = fn()
      if r then
        say("ok", "%s", desc)
        return r
      end
      local left = deadline - core.now()
      if left <= 0 then
        return nil, string.format("%s: still not true after %s", desc, render.fmt.duration(timeout)), "timeout"
      end
      local ok, err, kind = core.sleep(math.min(every, left / 1000))
      if not ok then return nil, err, kind end
    end
  end

  -- Methods and inputs sit in an __index table, which the REPL's completion can list without
  -- calling anything; a name in neither raises, unless it is a declared input left unset.
  local fields = {}
  for k, v in pairs(inputs) do fields[k] = v end
  for k, f in pairs(methods) do fields[k] = f end
  return setmetatable(ctx, { __index = setmetatable(fields, {
    __index = function(_, k)
      if rb.inputs[k] then return nil end
      error("ctx has no field '" .. tostring(k) .. "' (inputs: " .. table.concat(rb.input_names, ", ") .. ")", 2)
    end,
  }) })
end
M.new_ctx = new_ctx          -- also the REPL's (runbook repl --runbook NAME)
M.session_id = session_id

-------------------------------------------------------------------------------------- inputs
-- given: name -> raw string from the command line. Returns values, nil, sources (name -> "command
-- line", "$ENV", "config", "default") or nil, err.
function M.resolve_inputs(rb, given)
  for name in pairs(given) do
    if not rb.inputs[name] then
      local best, bestd = nil, 3
      for _, n in ipairs(rb.input_names) do
        local d = core.distance(name, n)
        if d < bestd then best, bestd = n, d end
      end
      return nil, string.format("%s has no input '%s'%s (inputs: %s)", rb.name, name,
        best and (" (did you mean '" .. best .. "'?)") or "", table.concat(rb.input_names, ", "))
    end
  end
  -- config.lua's runbooks section: this runbook's values, below the command line and the environment.
  local configured, cerr = require("incident").runbook_defaults(rb)
  if not configured then return nil, cerr end
  local values, sources = {}, {}
  for _, name in ipairs(rb.input_names) do
    local v, err, from = dsl.resolve_input(name, rb.inputs[name], given[name], configured[name])
    if err then return nil, err end
    values[name], sources[name] = v, from
  end
  return values, nil, sources
end

------------------------------------------------------------------------------------ the walk
-- "r" at a menu: the REPL with ctx in scope (repl.lua). Returns "back" (show the menu again),
-- "retry" (run the step; at an action, ask again), "skip" or "quit".
local function open_repl(run, step, where)
  audit("note", { text = "operator opened the REPL at the " .. where })
  local choice = require("repl").in_run(run.ctx, step, where, run.debug)
  audit("note", { text = "operator left the REPL: " .. choice })
  return choice
end

local REPL_CHOICE = { retry = "run", skip = "skip", quit = "abort" }

local function step_menu(run, step)
  while true do
    local line, why = core.prompt(render.dim("      Enter: run · s: skip · j: jump" .. run.hooks.menu_hint .. " · r: repl · q: quit ") .. "> ")
    if not line then
      if why == "interrupted" then return "abort" end
      return "abort"
    end
    if line == "" then return "run" end
    if line == "s" then return "skip" end
    if line == "q" then return "abort" end
    local hooked = run.hooks:menu(run, line)
    if hooked == "abort" then return "abort" end
    if hooked then
      -- handled by the incident hooks (incident.lua); show the menu again
    elseif line == "r" then
      local choice = open_repl(run, step, "step menu")
      if REPL_CHOICE[choice] then return REPL_CHOICE[choice] end
    elseif line == "j" then
      local ids = {}
      for _, s in ipairs(run.rb.steps) do ids[#ids + 1] = s.index .. " " .. s.id end
      render.print(render.dim("      steps: " .. table.concat(ids, " · ")))
      local target = core.prompt("      jump to (id or number): ")
      local st = target and (run.rb.by_id[target] or run.rb.steps[math.tointeger(tonumber(target)) or 0])
      if st then return "jump", st.index end
      render.print("      no such step: " .. tostring(target))
    else
      render.print("      " .. line .. "? Enter runs the step" .. (step and "" or ""))
    end
  end
end

local function failure_menu(run, step)
  while true do
    local line, why = core.prompt("      Enter: retry · s: skip · r: repl · q: quit > ")
    if not line then return why == "notty" and "stop" or "abort" end
    if line == "r" then
      local choice = open_repl(run, step, "failed step")
      line = choice == "back" and "?" or ({ retry = "", skip = "s", quit = "q" })[choice]
    end
    if line == "" then return "retry" end
    if line == "s" then return "skip" end
    if line == "q" then return "abort" end
  end
end

-- Runs one step function. Returns outcome ("ok", "finding", "failed", "interrupted", "declined",
-- "aborted") and an error message when there is one.
local function run_step(run, step)
  run.step_findings, run.jump = 0, nil
  local ok, err = xpcall(step.run, function(e)
    if core.is_control(e) then return e end
    if run.debug then return debug.traceback(render.error_text(e), 2) end
    return render.error_text(e)
  end, run.ctx)
  if ok then return run.step_findings > 0 and "finding" or "ok" end
  local control = core.is_control(err)
  if control == "interrupt" then
    if core.terminated() or core.interrupts() >= 2 then return "aborted", "interrupted twice" end
    core.clear_interrupt()
    return "interrupted", "interrupted by Ctrl-C"
  elseif control == "skip" then
    return "declined", tostring(err)
  elseif control == "abort" then
    return "aborted", tostring(err)
  end
  -- A primitive noticed the Ctrl-C and its nil, "interrupted" became a step error.
  if core.interrupts() > 0 then
    core.clear_interrupt()
    return "interrupted", tostring(err)
  end
  return "failed", tostring(err)
end

local function count(run, outcome) run.counts[outcome] = (run.counts[outcome] or 0) + 1 end

-- Executes the step at index i, with retries. Returns "next", "abort" or "stop" (failed, no tty).
local function execute(run, step)
  run.current_step = step      -- for the REPL of the action gate's decline menu
  while true do
    core.marker(string.format("%d. %s", step.index, step.title))
    core.transcript_step(step.id)
    audit("step_start", { title = step.title })
    local t0 = core.now()
    local outcome, err = run_step(run, step)
    local ms = core.now() - t0
    if core.memory_exceeded() then   -- whatever the step made of the failed allocation
      outcome, err = "failed", string.format("the runbook needed more memory than its limit (%s): the run ends here " ..
        "(raise it with --memory-limit SIZE or RUNBOOK_MEMORY_LIMIT)", render.fmt.bytes(core.memory_limit()))
    end
    if err and outcome ~= "declined" then
      render.outcome("error", outcome == "interrupted" and ("interrupted: " .. err) or err)
      audit(outcome == "interrupted" and "interrupt" or "error", { message = core.redact(err) })
    elseif outcome == "declined" then
      render.outcome("note", "step skipped: the action was declined")
    end
    audit("step_end", { outcome = outcome, duration_ms = math.floor(ms + 0.5) })
    core.transcript_step(nil)
    count(run, outcome)
    if core.memory_exceeded() then run.stop_why = "the memory limit was reached" return "stop" end
    if outcome == "aborted" then return "abort" end
    if outcome ~= "failed" and outcome ~= "interrupted" then return "next" end
    if not core.interactive() then return "stop" end
    local choice = failure_menu(run, step)
    if choice == "skip" then count(run, "skipped") return "next" end
    if choice == "abort" then return "abort" end
    if choice == "stop" then return "stop" end
  end
end

local function banner(run)
  local rb = run.rb
  render.print(render.bold(rb.name) .. " · " .. rb.severity .. " · session " .. run.session ..
               " · transcript " .. run.transcript)
  local flags = {}
  if run.dry_run then flags[#flags + 1] = "dry run: actions are only shown" end
  if run.yes then flags[#flags + 1] = "--yes: reversible actions run without asking" end
  if run.yes_irreversible then flags[#flags + 1] = "--yes-irreversible: confirms the irreversible action on " .. run.yes_irreversible end
  if not core.interactive() and not run.yes and not run.dry_run then
    flags[#flags + 1] = "no terminal: actions will not run unless --yes"
  end
  if #flags > 0 then render.print(render.yellow(table.concat(flags, " · "))) end
end

local function exit_code(run)
  if run.aborted then return EXIT.aborted, "aborted" end
  if run.stopped then return EXIT.failed, "failed" end
  if run.outcome == "escalated" then return EXIT.escalated, "escalated" end
  -- A declined action outranks "resolved": whoever reads the exit code must learn that a
  -- remediation the runbook wanted did not run.
  if core.declined() > 0 then return EXIT.declined, run.outcome == "resolved" and "resolved, actions declined" or "declined" end
  if run.outcome == "resolved" then return EXIT.ok, "resolved" end
  return EXIT.ok, "completed"
end

local function summary_line(run)
  local parts = {}
  for _, k in ipairs({ "ok", "finding", "failed", "interrupted", "declined", "skipped" }) do
    if run.counts[k] then parts[#parts + 1] = run.counts[k] .. " " .. k end
  end
  return table.concat(parts, " · ")
end

-- opts: dry_run, auto, yes, yes_irreversible (a target), start_at, timeout (seconds), transcript (path), inputs, argv, debug.
function M.exec(rb, opts)
  local inputs, err, sources = opts.input_values, nil, nil   -- input_values: from --resume (resume.lua)
  if not inputs then inputs, err, sources = M.resolve_inputs(rb, opts.inputs or {}) end
  if not inputs then core.err("runbook: " .. err .. "\n") return EXIT.usage end
  local hooks, herr = require("incident").session(rb, opts)   -- incident, clock, lock, resume
  if not hooks then core.err("runbook: " .. herr .. "\n") return EXIT.usage end
  local start = 1
  if opts.start_at then
    local st = rb.by_id[opts.start_at] or rb.steps[math.tointeger(tonumber(opts.start_at)) or 0]
    if not st then
      core.err("runbook: " .. rb.name .. " has no step '" .. opts.start_at .. "'\n")
      return EXIT.usage
    end
    start = st.index
  end

  local run = { rb = rb, counts = {}, session = session_id(), dry_run = opts.dry_run, yes = opts.yes,
                yes_irreversible = opts.yes_irreversible, debug = opts.debug }
  local path = opts.transcript
  if not path then
    local dir, derr = core.transcript_dir()
    if not dir then core.err("runbook: " .. derr .. "\n") return EXIT.internal end
    path = string.format("%s/%s-%s-%s.cast", dir, rb.name, os.date("!%Y%m%dT%H%M%SZ"), run.session)
  end
  run.transcript, run.hooks = path, hooks
  local stop = hooks:lock(run, inputs)
  if stop then return stop end
  local id = core.identity()
  local shown_inputs = {}
  for k, v in pairs(inputs) do
    shown_inputs[k] = (rb.inputs[k].secret and type(v) == "string") and "***" or v
  end
  local fields = {
    name = rb.name, file = rb.file, sha256 = rb.sha256, severity = rb.severity, user = id.user,
    host = id.host, tty = id.tty, pid = id.pid, argv = opts.argv or {}, started = iso_now(),
    yes = opts.yes and true or false, yes_irreversible = opts.yes_irreversible, dry_run = opts.dry_run and true or false,
    auto = opts.auto and true or false, version = core.version, session = run.session,
    inputs = shown_inputs, input_sources = sources,
  }
  for k, v in pairs(hooks:header_fields()) do fields[k] = v end
  local header = core.redact(json(fields))
  core.sign_key(require("witness").sign_key(opts.sign_key, hooks.cfg))
  local ok, terr = core.transcript_open(path, header)
  if not ok then hooks:finish() core.err("runbook: " .. terr .. "\n") return EXIT.usage end

  core.gate_configure(opts.dry_run, opts.yes, opts.yes_irreversible)
  if opts.timeout then core.set_cap(opts.timeout * 1000) end
  audit("session_start", hooks:start_fields({ runbook = rb.name, session = run.session, user = id.user }))
  run.ctx = new_ctx(run, rb, inputs)
  if core.interactive() then
    run.repl_offered = true
    require("repl").offer_at_gate(function() return open_repl(run, run.current_step, "declined action") end)
  end
  banner(run)
  hooks:started(run)

  local i, n = start, #rb.steps
  local unattended = {}   -- step index -> runs since the operator last chose at a menu
  while i <= n do
    local step = rb.steps[i]
    local mode = hooks:before_step(run, step)   -- status line, escalations; "recheck" when resumed
    render.step_header(i, n, step)
    local action, target = "run", nil
    if core.interactive() and not opts.auto and mode ~= "recheck" then
      action, target = step_menu(run, step)
      unattended = {}
    else
      unattended[i] = (unattended[i] or 0) + 1
      if unattended[i] > MAX_REVISITS then   -- a step that jumps back to itself, with nobody to stop it
        run.stopped = true
        run.stop_why = string.format("step '%s' came round %d times without an operator (does it jump to itself? " ..
          "ctx:wait_until polls with a deadline)", step.id, MAX_REVISITS)
        audit("error", { step = step.id, message = run.stop_why })
        break
      end
    end
    if action == "abort" then run.aborted = true break end
    if action == "skip" then
      audit("step_end", { step = step.id, outcome = "skipped" })
      count(run, "skipped")
      i = i + 1
    elseif action == "jump" then
      audit("note", { step = step.id, text = "operator jumped to " .. rb.steps[target].id })
      i = target
    else
      local next_ = execute(run, step)
      if next_ == "abort" then run.aborted = true break end
      if next_ == "stop" then run.stopped = true break end
      if run.outcome then break end
      i = run.jump or (i + 1)
    end
    if core.terminated() then run.aborted = true break end
  end

  if run.outcome then
    render.outcome(run.outcome == "resolved" and "ok" or "finding", run.outcome .. ": " .. run.outcome_msg)
    local ok, err = pcall(hooks.outcome, hooks, run)   -- status sinks under --incident
    if not ok and core.is_control(err) == "abort" then run.aborted = true end
  end
  local code, word = exit_code(run)
  if run.aborted and not run.outcome then
    render.outcome("error", "aborted by the operator")
  elseif run.stopped and not run.outcome then
    render.outcome("error", "stopped: " .. (run.stop_why or "a step failed"))
  end
  local declined = core.declined()
  if declined > 0 then run.counts.actions_declined = declined end
  local summary = summary_line(run)
  render.print(string.format("%s · %s", word, summary ~= "" and summary or "no steps ran"))
  local head, cerr = core.transcript_close(core.redact(json({
    exit = code, outcome = word, counts = run.counts, message = run.outcome_msg or run.stop_why,
  })))
  hooks:finish()
  if run.repl_offered then require("repl").offer_at_gate(nil) end
  if not head then
    core.err("runbook: " .. cerr .. "\n")
    return EXIT.internal
  end
  core.out("transcript " .. path .. "\nchain head " .. head .. "\n")
  return code
end

return M
