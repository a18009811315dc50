-- lint.lua - `runbook check`'s rules beyond validation: the mistakes that matter at 3 a.m. (a change
-- run as a probe, a jump to no step, an input never read...). Static: the runbook has been loaded
-- (declared only, nothing ran) and its source is read as tokens (luatokens.lua); the step functions
-- are found by the lines debug.getinfo gives. Each rule has a name, a level and an explanation
-- (`check --explain RULE`); a finding is silenced by a comment on its line, or on a comment line
-- just above, naming the rule: `-- runbook: allow mutating-probe (why)`.
local dsl      = require "dsl"
local luatok   = require "luatokens"
local mutating = require "mutating"

local M = {}

M.RULES = {
  { name = "unknown-step", level = "error", summary = "ctx:jump to a step id the runbook does not have",
    explain = [[ctx:jump("id") names a step by its id. A typo is only found when the jump runs, in the
middle of an incident, and the run fails there. The rule reads every ctx:jump with a literal id
(or step number) and checks it against the runbook's steps.
Fix: use one of the ids of `step "id" { ... }` (the message suggests the nearest).]] },
  { name = "unknown-input", level = "error", summary = "ctx.NAME where NAME is no input nor a field of ctx",
    explain = [[ctx.NAME reads the input NAME; any other name raises when the step runs ("ctx has no
field"). The rule reads every ctx.NAME (ctx: the parameter of the step functions) and checks it
against the declared inputs and ctx's own fields (state, dry_run, inputs, runbook) and the names a
step assigns to ctx itself.
Fix: declare the input in `inputs = { NAME = input.<type> { ... } }`, or correct the name.]] },
  { name = "mutating-probe", level = "warning", summary = "sh.read runs a command that changes state",
    explain = [[sh.read is a probe: it runs at once, without asking, under --dry-run too. A command that
changes something belongs in sh.action, which shows it at the gate and waits for the operator's
`yes`. The rule reads the literal words of every sh.read { ... } argv (and the script of
`sh -c "..."` or `shell = true`) and matches them against this list:
%s
Fix: use sh.action { ..., summary = "...", target = "..." }. If the command is in fact read-only
(e.g. a dry-run flag the list does not know), silence the line.]] },
  { name = "action-without-summary", level = "warning", summary = "an action has no summary for the gate",
    explain = [[The gate shows an action's summary above the command: one line saying what it does and why,
which is what the operator answers `yes` to at 3 a.m. Checked for sh.action, http.post,
http.request, conn:action (Redis) and conn:exec (PostgreSQL): a literal `summary = ...` in the call's
options, or `argv.summary = ...` on the table passed, in the same function. An argv taken as is from
an input (sh.action(ctx.restart)) has none.
Fix: copy the argv and set argv.summary (see runbooks/api-down.lua), or pass summary = "...".]] },
  { name = "action-without-target", level = "warning", summary = "an sh.action or HTTP action has no target",
    explain = [[`target` names what an action acts on: it is shown at the gate, recorded, and typed back to
confirm an irreversible action. PostgreSQL and Redis actions default it to host:port/db; sh.action,
http.post and http.request have no default. Found as for action-without-summary.
Fix: pass target = "what it acts on" (a service, a host, a URL).]] },
  { name = "unreachable-step", level = "warning", summary = "no path of the run reaches a step",
    explain = [[Steps run in order; a step ends the sequence when every return of its run function is
ctx:resolved, ctx:escalate or ctx:jump and one of them ends the function's body. A step after such a
step that no ctx:jump names never runs (only --start-at reaches it). Jumps with an id that is not a
literal make every step reachable.
Fix: jump to it, move it, or delete it.]] },
  { name = "unused-input", level = "warning", summary = "an input that nothing reads",
    explain = [[An input that no code reads (ctx.NAME, or its name as a string) is a question the
operator answers for nothing, or a sign that the code reads a misspelt name.
Fix: use it or remove it.]] },
  { name = "plain-secret", level = "warning", summary = "an input.string whose name says it holds a secret",
    explain = [[An input named like a secret (password, passwd, token, key, secret, credential(s), apikey as a
word of the name: db_password, api_key) declared with input.string is shown and recorded in clear.
input.secret values (and input.string { secret = true }) are redacted everywhere: terminal,
transcript, history, error messages.
Fix: declare it input.secret { env = "..." }.]] },
}
local RULE = {}
for _, r in ipairs(M.RULES) do RULE[r.name] = r end

function M.explain(name)
  local r = RULE[name]
  if not r then return nil end
  local text = r.explain:gsub("%%s", (mutating.LIST:gsub("%%", "%%%%")))
  return string.format("%s (%s): %s.\n\n%s\n\nSilence one line: -- runbook: allow %s (and say why)\n",
                       r.name, r.level, r.summary, text, r.name)
end

function M.rule_names()
  local n = {}
  for _, r in ipairs(M.RULES) do n[#n + 1] = r.name end
  return n
end

---------------------------------------------------------------------------------- the source
-- What the rules read: tokens, comments, blocks, and each step's run function.
local function analyse(rb)
  local toks, comments = luatok.tokens(rb.source)
  local func_end, owner, direct = luatok.blocks(toks)
  local a = { rb = rb, toks = toks, comments = comments, func_end = func_end, owner = owner, direct = direct,
              step_fn = {}, ctx_names = { ctx = true }, sh_names = { sh = true }, code_lines = {} }
  for _, tk in ipairs(toks) do a.code_lines[tk.line] = true end
  for i, s in ipairs(rb.steps) do
    local info = debug.getinfo(s.run, "S")
    for f, e in pairs(func_end) do
      if toks[f].line == info.linedefined and toks[e].line == info.lastlinedefined
         and (not a.step_fn[i] or f < a.step_fn[i]) then
        a.step_fn[i] = f
      end
    end
    local f = a.step_fn[i]
    if f and toks[f + 1] and toks[f + 1].type == "(" and toks[f + 2] and toks[f + 2].type == "name" then
      a.ctx_names[toks[f + 2].value] = true
    end
  end
  -- local X = require "sh" / require("sh")
  for i = 1, #toks - 3 do
    if toks[i].type == "name" and toks[i + 1].type == "=" and toks[i + 2].value == "require" then
      local j = toks[i + 3].type == "(" and i + 4 or i + 3
      if toks[j] and toks[j].type == "string" and toks[j].value == "sh" then a.sh_names[toks[i].value] = true end
    end
  end
  return a
end

local function tok(a, i, ty, value)
  local t = a.toks[i]
  return t and t.type == ty and (value == nil or t.value == value)
end

-- The elements of the table constructor opened at i: { {first, last, key}, ... } (key: the name
-- of `name = value`, or nil for a positional element).
local function elements(a, i) return luatok.elements(a.toks, i) end

-- The keys set by a call's literal table arguments: the call's "(" or "{" at i.
local function literal_keys(a, i)
  local keys = {}
  local function from_table(at)
    for _, e in ipairs((elements(a, at))) do if e.key then keys[e.key] = true end end
  end
  if tok(a, i, "{") then from_table(i) return keys, nil end
  if not tok(a, i, "(") then return keys, nil end
  local close = luatok.closing(a.toks, i)
  local depth, first_var = 0, nil
  for j = i + 1, close - 1 do
    local ty = a.toks[j].type
    if depth == 0 and ty == "{" then from_table(j) end
    if depth == 0 and j == i + 1 and ty == "name" and (tok(a, j + 1, ")") or tok(a, j + 1, ",")) then
      first_var = a.toks[j].value
    end
    if ty == "(" or ty == "{" or ty == "[" then depth = depth + 1
    elseif ty == ")" or ty == "}" or ty == "]" then depth = depth - 1 end
  end
  return keys, first_var
end

-- Keys set on the table variable `var` in the function holding token i: var.key = ..., or a
-- literal `var = { key = ... }`.
local function keys_set_on(a, var, i)
  local keys, fn = {}, a.owner[i]
  local last = fn > 0 and a.func_end[fn] or #a.toks
  for j = fn + 1, last do
    if tok(a, j, "name", var) then
      if tok(a, j + 1, ".") and tok(a, j + 2, "name") then keys[a.toks[j + 2].value] = true end
      if tok(a, j + 1, "=") and tok(a, j + 2, "{") then
        for _, e in ipairs((elements(a, j + 2))) do if e.key then keys[e.key] = true end end
      end
    end
  end
  -- argv.summary, argv.target = ...: the second name of a multiple assignment
  for j = fn + 1, last do
    if tok(a, j, ",") and tok(a, j + 1, "name", var) and tok(a, j + 2, ".") and tok(a, j + 3, "name") then
      keys[a.toks[j + 3].value] = true
    end
  end
  return keys
end

------------------------------------------------------------------------------------ the rules
local function finding(out, rule, line, msg) out[#out + 1] = { rule = rule, level = RULE[rule].level, line = line, message = msg } end

local CTX_FIELDS = { state = true, dry_run = true, inputs = true, runbook = true }

-- Every ctx:jump(...): { token = the literal id or number (nil: computed), step = the step it names }.
local function jumps(a)
  local out = {}
  for i = 1, #a.toks - 2 do
    if tok(a, i, ":") and tok(a, i + 1, "name", "jump") then
      local j = tok(a, i + 2, "(") and i + 3 or i + 2
      local t = a.toks[j]
      local literal = t and (t.type == "string" or t.type == "number") and (j == i + 2 or tok(a, j + 1, ")"))
      local st = literal and (t.type == "string" and a.rb.by_id[t.value] or a.rb.steps[math.tointeger(tonumber(t.value)) or 0])
      out[#out + 1] = { token = literal and t or nil, step = st or nil }
    end
  end
  return out
end

local function check_jumps(a, out)
  local ids = {}
  for _, s in ipairs(a.rb.steps) do ids[#ids + 1] = s.id end
  for _, jump in ipairs(a.jumps) do
    local t = jump.token
    if t and not jump.step then
      local msg = t.type == "string"
        and string.format("ctx:jump(%q): no step '%s'%s", t.value, t.value, dsl.suggest(t.value, ids))
        or string.format("ctx:jump(%s): the runbook has %d steps", t.value, #a.rb.steps)
      finding(out, "unknown-step", t.line, msg)
    end
  end
end

local function check_ctx_fields(a, out)
  local assigned = {}
  for i = 1, #a.toks - 3 do
    if tok(a, i, "name") and a.ctx_names[a.toks[i].value] and tok(a, i + 1, ".") and tok(a, i + 2, "name")
       and tok(a, i + 3, "=") and not tok(a, i - 1, ".") then
      assigned[a.toks[i + 2].value] = true
    end
  end
  local known = {}
  for _, n in ipairs(a.rb.input_names) do known[#known + 1] = n end
  for n in pairs(CTX_FIELDS) do known[#known + 1] = n end
  for i = 1, #a.toks - 2 do
    if tok(a, i, "name") and a.ctx_names[a.toks[i].value] and not tok(a, i - 1, ".") and not tok(a, i - 1, ":")
       and tok(a, i + 1, ".") and tok(a, i + 2, "name") then
      local f = a.toks[i + 2].value
      if not (a.rb.inputs[f] or CTX_FIELDS[f] or assigned[f]) then
        finding(out, "unknown-input", a.toks[i].line, string.format("%s.%s: no input '%s'%s (inputs: %s)",
                a.toks[i].value, f, f, dsl.suggest(f, known),
                #a.rb.input_names > 0 and table.concat(a.rb.input_names, ", ") or "none"))
      end
    end
  end
end

-- The line declaring input `name` (name = input.x { ... }), or the line of `inputs`.
local function input_line(a, name)
  local fallback = 1
  for i = 1, #a.toks - 3 do
    if tok(a, i, "name", "inputs") and tok(a, i + 1, "=") then fallback = a.toks[i].line end
    if tok(a, i, "name", name) and tok(a, i + 1, "=") and tok(a, i + 2, "name", "input") then return a.toks[i].line end
  end
  return fallback
end

local SECRET_WORDS = { password = true, passwd = true, pass = true, pw = true, token = true, key = true,
                       secret = true, credential = true, credentials = true, apikey = true }

local function check_inputs(a, out)
  local used, generic = {}, false
  for i, t in ipairs(a.toks) do
    if t.type == "name" and tok(a, i - 1, ".") then used[t.value] = true end
    if t.type == "string" then used[t.value] = true end
    if t.type == "name" and t.value == "inputs" and tok(a, i - 1, ".") and not tok(a, i + 1, ".") then generic = true end
  end
  for _, name in ipairs(a.rb.input_names) do
    local decl = a.rb.inputs[name]
    if not used[name] and not generic then
      finding(out, "unused-input", input_line(a, name), string.format("input '%s' is never read (ctx.%s)", name, name))
    end
    if decl.type == "string" and not decl.secret then
      for word in name:lower():gmatch("[^_]+") do
        if SECRET_WORDS[word] then
          finding(out, "plain-secret", input_line(a, name), string.format(
            "input '%s' looks like a secret but is an input.string: its value would be shown and recorded " ..
            "(declare it input.secret)", name))
          break
        end
      end
    end
  end
end

local function check_probes(a, out)
  for i = 1, #a.toks - 3 do
    if tok(a, i, "name") and a.sh_names[a.toks[i].value] and tok(a, i + 1, ".") and tok(a, i + 2, "name", "read")
       and not tok(a, i - 1, ".") then
      local open = tok(a, i + 3, "{") and i + 3 or (tok(a, i + 3, "(") and tok(a, i + 4, "{") and i + 4)
      if open then
        local argv, shell = {}, false
        for _, e in ipairs((elements(a, open))) do
          if e.key == "shell" then shell = tok(a, e.last, "keyword", "true") and e.first + 2 == e.last
          elseif not e.key then
            argv[#argv + 1] = e.first == e.last and tok(a, e.first, "string") and a.toks[e.first].value or false
          end
        end
        local why
        if shell then why = type(argv[1]) == "string" and mutating.judge_shell(argv[1]) or nil
        else why = mutating.judge(argv) end
        if why then
          finding(out, "mutating-probe", a.toks[i].line, string.format(
            "sh.read runs '%s', which changes state, as a probe (without asking): use sh.action", why))
        end
      end
    end
  end
end

-- sh.action, http.post, http.request: summary and target; conn:action, conn:exec: summary.
local function check_actions(a, out)
  for i = 1, #a.toks - 2 do
    local call, needs_target, at
    if tok(a, i, "name") and tok(a, i + 1, ".") and tok(a, i + 2, "name") and not tok(a, i - 1, ".") then
      local m, f = a.toks[i].value, a.toks[i + 2].value
      if (a.sh_names[m] and f == "action") or (m == "http" and (f == "post" or f == "request")) then
        call, needs_target, at = m .. "." .. f, true, i + 3
      end
    elseif tok(a, i, ":") and tok(a, i + 1, "name") and (a.toks[i + 1].value == "action" or a.toks[i + 1].value == "exec") then
      call, needs_target, at = "conn:" .. a.toks[i + 1].value, false, i + 2
    end
    if call and (tok(a, at, "(") or tok(a, at, "{")) then
      local keys, var = literal_keys(a, at)
      if var then for k in pairs(keys_set_on(a, var, i)) do keys[k] = true end end
      local line = a.toks[i].line
      if not keys.summary then
        finding(out, "action-without-summary", line, call .. " without a summary: the gate shows the command alone")
      end
      if needs_target and not keys.target then
        finding(out, "action-without-target", line, call .. " without a target: say what it acts on")
      end
    end
  end
end

-- A step ends the sequence when every return of its run function is ctx:resolved, :escalate or
-- :jump, and one of them stands in the function's body itself.
local TERMINAL = { resolved = true, escalate = true, jump = true }
local function leaves(a, f)
  if not f then return false end
  local body_return = false
  for j = f + 1, a.func_end[f] - 1 do
    if tok(a, j, "keyword", "return") and a.owner[j] == f then
      local terminal = tok(a, j + 1, "name") and a.ctx_names[a.toks[j + 1].value] and tok(a, j + 2, ":")
                       and tok(a, j + 3, "name") and TERMINAL[a.toks[j + 3].value]
      if not terminal then return false end
      if a.direct[j] then body_return = true end
    end
  end
  return body_return
end

local function check_reachable(a, out)
  local targets = {}
  for _, jump in ipairs(a.jumps) do
    if not jump.token then return end    -- a computed id: any step may be next
    if jump.step then targets[jump.step.index] = true end
  end
  local reach = {}
  for i, s in ipairs(a.rb.steps) do
    reach[i] = i == 1 or targets[i] or (reach[i - 1] and not leaves(a, a.step_fn[i - 1]))
    if not reach[i] then
      local line = a.step_fn[i] and a.toks[a.step_fn[i]].line or 1
      for j = 1, #a.toks - 1 do
        if tok(a, j, "name", "step") and tok(a, j + 1, "string", s.id) then line = a.toks[j].line break end
      end
      finding(out, "unreachable-step", line, string.format("step %d ('%s') is never reached: step %d ('%s') " ..
              "always ends the run or jumps, and no ctx:jump names it", i, s.id, i - 1, a.rb.steps[i - 1].id))
    end
  end
end

----------------------------------------------------------------------------------- exceptions
-- The rules a comment allows: "runbook: allow rule-a, rule-b (why)".
local function allowed(comment)
  local set = {}
  local list = comment and comment:match("runbook:%s*allow%s+([%w%-,%s]+)")
  for name in (list or ""):gmatch("[%w%-]+") do set[name] = true end
  return set
end

local function silenced(a, f)
  if allowed(a.comments[f.line])[f.rule] then return true end
  local above = f.line - 1
  while above > 0 and a.comments[above] and not a.code_lines[above] do
    if allowed(a.comments[above])[f.rule] then return true end
    above = above - 1
  end
  return false
end

-- The findings of a loaded runbook, by line: { {rule, level, line, message}, ... }.
function M.run(rb)
  local a = analyse(rb)
  a.jumps = jumps(a)
  local all, out = {}, {}
  check_jumps(a, all)
  check_ctx_fields(a, all)
  check_probes(a, all)
  check_actions(a, all)
  check_reachable(a, all)
  check_inputs(a, all)
  for _, f in ipairs(all) do if not silenced(a, f) then out[#out + 1] = f end end
  table.sort(out, function(x, y)
    if x.line ~= y.line then return x.line < y.line end
    return x.rule < y.rule
  end)
  return out
end

return M
