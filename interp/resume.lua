-- resume.lua - `runbook exec --resume TRANSCRIPT`: continue a session that ended before its runbook
-- did (a crash or kill -9, a closed terminal, a handoff to a colleague who quit with q).
--
-- The transcript must verify (complete, or truncated by a crash) and its runbook file must be
-- byte for byte the one it ran (the header's sha256): a changed runbook is a different procedure,
-- and its steps cannot be matched to what was done. The new session walks the runbook again with
-- the recorded inputs (secrets, which the transcript never holds, come again from the command line
-- or the environment): steps completed before are re-checked without a menu (their probes run,
-- their actions are withheld), the step in progress runs again with the actions it had confirmed
-- withheld (interp/replay.c does the withholding inside the gate), the rest runs as usual. It
-- writes a new transcript whose header links the old one (path, session, chain head) and records
-- who took over.
local core   = require "core"
local cjson  = require "cjson"
local dsl    = require "dsl"
local loader = require "loader"
local render = require "render"
local replay = require "replay"

local M = {}

local EXIT_USAGE = require("engine").EXIT.usage
local FINISHED = { resolved = true, completed = true, escalated = true, declined = true,
                   ["resolved, actions declined"] = true }

local function decode(s)
  local ok, v = pcall(cjson.decode, s)
  return ok and v or nil
end

local function read_file(path)
  local f, err = io.open(path, "rb")
  if not f then return nil, err end
  local data = f:read("a")
  f:close()
  return data
end

local function absolute(path)
  if path:sub(1, 1) == "/" then return path end
  local pwd = os.getenv("PWD")
  return pwd and (pwd .. "/" .. path) or path
end

local function clock(ts) return type(ts) == "string" and (ts:match("T(%d%d:%d%d:%d%d)") or ts) .. " UTC" or "?" end

-- The trustworthy lines of a transcript: all of them when complete, those before the cut when a
-- crash truncated it. Returns lines, { status, line, head, last } or nil, err.
function M.read(path)
  local data, err = read_file(path)
  if not data then return nil, "cannot read " .. tostring(err) end
  local audit = require "audit"
  local status, line, why, facts = audit.verify_data(data)
  if status == "invalid" then
    return nil, string.format("%s is invalid at line %d (%s): it was altered after it was written, so it cannot be trusted to say what was done",
                              path, line, why)
  end
  local lines = {}
  for l in data:gmatch("([^\n]*)\n") do lines[#lines + 1] = l end
  local keep = status == "complete" and #lines or math.min(#lines, line - 1)
  if keep < 1 then return nil, path .. " holds no whole header line: nothing to resume" end
  local head = core.sha256(lines[1])
  for i = 2, keep do head = core.chain(head, lines[i]) end
  local info = { status = status, line = line, head = head, last = facts and facts.last, why = why }
  return { table.unpack(lines, 1, keep) }, info
end

-- What the old session did, from its audit records: per step, whether it was completed and which
-- of its questions were confirmed (by number within their attempt, and by plan fingerprint).
local function what_was_done(records, session)
  local plan = { completed = {}, confirmed = {}, escalated = {}, first_step = nil, in_progress = nil, hosts = {} }
  local step, asked, pending
  local by_host = {}
  for _, rec in ipairs(records) do
    local t = rec.type
    -- An action on a host of a target (stdlib/reach.lua): started there, it may have run.
    if (t == "action_start" or t == "action_result") and rec.host and step then
      local fp = replay.fingerprint("sh.action", rec.target or "", "", rec.on or "")
      local k = step .. "\0" .. fp .. "\0" .. rec.host
      if t == "action_result" and rec.outcome == "not run" then
        by_host[k] = nil
      else
        by_host[k] = by_host[k] or { step = step, fp = fp, host = rec.host }
        by_host[k].ts, by_host[k].user = rec.ts, by_host[k].user or (pending and pending.user)
        if t == "action_result" then by_host[k].result = rec.outcome end
        if t == "action_start" then plan.hosts[#plan.hosts + 1] = by_host[k] end
      end
    end
    if t == "step_start" then
      step, asked, pending = rec.step, 0, nil
      plan.first_step = plan.first_step or rec.step
      plan.in_progress = rec.step
    elseif t == "plan" and step then
      asked = asked + 1
      pending = { n = asked, fp = replay.fingerprint(rec.primitive or "", rec.summary or "", rec.detail or "", rec.target or ""),
                  summary = rec.summary, fleet = rec.fleet }
    elseif t == "confirm" and pending then
      if pending.fleet then   -- a fleet's question is asked again, for the hosts it did not run on
        pending.user = rec.user
      elseif rec.answer == "yes" or rec.answer == "not repeated" then
        pending.user, pending.ts = rec.user, rec.ts
        plan.confirmed[#plan.confirmed + 1] = { step = step, n = pending.n, fp = pending.fp, user = rec.user,
                                                ts = rec.ts, summary = pending.summary, earlier = rec.answer ~= "yes" }
      end
      if not pending.fleet then pending = nil end
    elseif t == "action_result" and plan.confirmed[#plan.confirmed] and plan.confirmed[#plan.confirmed].step == step then
      plan.confirmed[#plan.confirmed].result = rec.outcome
    elseif t == "step_end" then
      local id = rec.step or step
      if rec.outcome == "ok" or rec.outcome == "finding" then
        plan.completed[id] = { ts = rec.ts, outcome = rec.outcome }
      end
      if id == plan.in_progress then plan.in_progress = nil end
      step = nil
    elseif t == "escalation" or t == "target_missed" then
      plan.escalated[#plan.escalated + 1] = t == "escalation" and (rec.level .. " " .. rec.who) or "resolution"
    elseif t == "status_update" then
      plan.last_update = rec.ts
    end
  end
  local kept = {}
  for _, h in ipairs(plan.hosts) do
    if by_host[h.step .. "\0" .. h.fp .. "\0" .. h.host] == h then kept[#kept + 1] = h end
  end
  plan.hosts = kept
  plan.session = session
  return plan
end

-- Inputs as the old session had them. A value the transcript only holds redacted (a secret, a URL
-- with a password) comes again from the command line or the environment, and must redact to what
-- was recorded (a URL's scheme, user and host are compared; a secret itself cannot be: the
-- transcript holds neither it nor a hash of it, on purpose). Any other value given on the command
-- line must equal the recorded one: a resumed session does not change its target.
local function inputs_of(rb, recorded, given)
  for name in pairs(given) do
    if not rb.inputs[name] then return nil, string.format("%s has no input '%s'", rb.name, name) end
  end
  local values = {}
  for _, name in ipairs(rb.input_names) do
    local decl, old = rb.inputs[name], recorded[name]
    local hidden = type(old) == "string" and old:find("***", 1, true)
    if hidden or old == nil then
      local v, err = dsl.resolve_input(name, decl, given[name])
      if err then
        return nil, err .. (hidden and " (the transcript holds it only redacted: pass it again)" or "")
      end
      if hidden and v == nil then
        return nil, string.format("input '%s' was set in that session, but the transcript holds it only redacted: pass %s=VALUE again%s",
                                  name, name, decl.env and (" or set $" .. decl.env) or "")
      end
      if hidden and core.redact(tostring(v)) ~= old then
        return nil, string.format("input '%s' is not the one the session used (%s)", name, old)
      end
      values[name] = v
    else
      if given[name] ~= nil then
        local v, err = dsl.resolve_input(name, decl, given[name])
        if err then return nil, err end
        if cjson.encode(v) ~= cjson.encode(old) then
          return nil, string.format("input '%s': the session ran with %s; a resumed session keeps its inputs (start a new run to change them)",
                                    name, cjson.encode(old))
        end
      end
      if decl.type == "int" then old = math.tointeger(old) or old end
      values[name] = old
      dsl.register_secrets(decl, old)
    end
  end
  return values
end

-- The runbook the old session ran: target (a name or file) if given, else the header's file, else
-- its name on the search path. Refuses when the file changed since.
local function runbook_of(header, target, path)
  local file, err = target and loader.resolve(target)
  if target and not file then return nil, err end
  if not file then
    local f = io.open(tostring(header.file), "rb")
    if f then f:close() file = header.file else file, err = loader.resolve(tostring(header.name)) end
    if not file then return nil, err end
  end
  local rb
  rb, err = loader.load(file)
  if not rb then return nil, err end
  if rb.name ~= header.name then
    return nil, string.format("%s is the runbook %s, but %s ran %s", file, rb.name, path, tostring(header.name))
  end
  if rb.sha256 ~= header.sha256 then
    return nil, string.format("cannot resume: the runbook %s changed since that session (sha256 %s then, %s now), " ..
      "so its steps no longer match what was done. Start a new run instead: runbook exec %s%s",
      file, tostring(header.sha256):sub(1, 12), rb.sha256:sub(1, 12), rb.name,
      header.incident and (" --incident " .. tostring(header.incident.id)) or "")
  end
  return rb
end

local function ended_text(info)
  if info.status == "complete" then return tostring(info.last.outcome) .. ", exit " .. tostring(math.tointeger(info.last.exit)) end
  return string.format("cut off at line %d: %s", info.line, info.why)
end

-- The resume object the session hooks use (see incident.lua).
local function resume_object(path, header, info, plan)
  local R = { plan = plan }
  R.link = { transcript = absolute(path), session = header.session, head = info.head, ended = ended_text(info),
             user = header.user, host = header.host, started = header.started }

  function R.carry_over(inc)
    local old = header.incident or {}
    for _, k in ipairs(old.escalated or {}) do inc.announced[k] = true end
    for _, k in ipairs(plan.escalated) do inc.announced[k] = true end
    local incident = require "incident"
    local last = incident.parse_iso(plan.last_update) or incident.parse_iso(old.last_update)
    inc.last_update = last
  end

  -- Registers what must not be repeated, tells the operator, records the takeover.
  function R.begin(run)
    replay.clear()
    local n = 0
    for id, done in pairs(plan.completed) do
      replay.completed(id, string.format("step completed in session %s (%s, %s): re-checked only", header.session,
                                         tostring(header.user), clock(done.ts)))
    end
    for _, c in ipairs(plan.confirmed) do
      n = n + 1
      replay.confirmed(c.step, c.n, c.fp, string.format("confirmed by %s at %s in session %s%s", tostring(c.user),
        clock(c.ts), header.session, c.result and (" (it ran: " .. c.result .. ")") or " (it may have run)"))
    end
    for _, h in ipairs(plan.hosts) do
      replay.host_done(h.step, h.fp, h.host, string.format("ran on %s at %s in session %s%s", h.host, clock(h.ts),
        header.session, h.result and (" (" .. h.result .. ")") or " (it may have run: the session ended during it)"))
    end
    local me = core.identity()
    local done = {}
    for id in pairs(plan.completed) do done[#done + 1] = id end
    table.sort(done)
    local text = string.format("%s@%s takes over session %s of %s@%s (%s)", me.user, me.host, header.session,
                               tostring(header.user), tostring(header.host), R.link.ended)
    render.outcome("note", text)
    render.outcome("note", string.format("%d step(s) done before are re-checked (probes only); %d confirmed action(s) will not be repeated",
                                         #done, n))
    core.audit("resume", cjson.encode({ from = R.link, by = { user = me.user, host = me.host, tty = me.tty, pid = me.pid },
                                         rechecked = done, not_repeated = n, text = text }))
  end

  function R.before_step(_, step)
    local done = plan.completed[step.id]
    if not done then return nil end
    render.print(render.dim(string.format("  ↻ re-check: completed in session %s at %s; probes run again, actions are not repeated",
                                          header.session, clock(done.ts))))
    return "recheck"
  end
  return R
end

-- `runbook exec --resume TRANSCRIPT [NAME] [options] [secret=value]`: checks, then runs.
function M.exec(target, opts)
  local path = opts.resume
  local lines, info = M.read(path)
  if not lines then core.err("runbook: cannot resume: " .. info .. "\n") return EXIT_USAGE end
  local header = decode(lines[1])
  header = type(header) == "table" and header.runbook
  if type(header) ~= "table" or not header.name then
    core.err("runbook: cannot resume: " .. path .. " is not a runbook transcript\n")
    return EXIT_USAGE
  end
  if header.dry_run then
    core.err(string.format("runbook: cannot resume: session %s was a dry run, so nothing was done that a resumed session " ..
      "must not repeat; start a new run: runbook exec %s\n", tostring(header.session), header.name))
    return EXIT_USAGE
  end
  if info.status == "complete" and FINISHED[info.last.outcome] then
    core.err(string.format("runbook: cannot resume: session %s already ended (%s); start a new run: runbook exec %s\n",
      tostring(header.session), ended_text(info), header.name))
    return EXIT_USAGE
  end
  local rb, err = runbook_of(header, target, path)
  if not rb then core.err("runbook: " .. err .. "\n") return EXIT_USAGE end
  local values
  values, err = inputs_of(rb, type(header.inputs) == "table" and header.inputs or {}, opts.inputs or {})
  if not values then core.err("runbook: cannot resume: " .. err .. "\n") return EXIT_USAGE end
  local records = {}
  for i = 2, #lines do
    local ev = decode(lines[i])
    if type(ev) == "table" and ev[2] == "a" then records[#records + 1] = decode(ev[3]) or {} end
  end
  local plan = what_was_done(records, header.session)
  local inc = header.incident
  if inc then
    if opts.incident and opts.incident ~= inc.id then
      core.err(string.format("runbook: cannot resume: that session belongs to incident %s, not %s\n", tostring(inc.id), opts.incident))
      return EXIT_USAGE
    end
    opts.incident, opts.since = inc.id, inc.started
    opts.severity = opts.severity or inc.severity
    opts.impact = opts.impact or inc.impact
  end
  opts.input_values = values
  opts.start_at = opts.start_at or plan.first_step
  opts.resume = resume_object(path, header, info, plan)
  return require("engine").exec(rb, opts)
end

return M
