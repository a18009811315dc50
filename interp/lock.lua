-- lock.lua - one session at a time per (runbook, target): two engineers running the same runbook
-- against the same target at once is how a restart gets doubled.
--
-- The target is the runbook's non-secret inputs of type url, path and string (as the transcript
-- header shows them, redacted); numbers, durations and commands are how, not what. The lock is
-- $XDG_STATE_HOME/runbook/locks/<id>.lock, id = <runbook>-<8 hex of the target>, held with flock
-- by the running session (interp/lockfile.c) and holding its details: user, host, pid, tty, since,
-- transcript, session, incident. The kernel drops the flock when the session dies however it dies,
-- so a lock file nobody holds is stale and the next session takes it over, saying whose it was.
--
-- A session that finds the lock held waits up to --lock-timeout (default 0: it refuses at once,
-- exit 6) and names the holder either way. --dry-run changes nothing, so it neither takes nor waits
-- for the lock; it only says who holds it. `runbook unlock ID` removes a lock (a hung session, a
-- lock on a shared state directory): the id must be typed, it is printed with every refusal.
local core     = require "core"
local cjson    = require "cjson"
local lockfile = require "lockfile"
local render   = require "render"

local M = {}

local EXIT = require("engine").EXIT
local POLL = 0.2                     -- seconds between two tries while waiting
local TARGET_TYPES = { url = true, path = true, string = true, target = true }

function M.dir() return core.state_dir("locks") end

-- "name=value" of each target input, sorted; the values redacted as everywhere else.
function M.target(rb, inputs)
  local parts = {}
  for _, name in ipairs(rb.input_names) do
    local decl, v = rb.inputs[name], inputs[name]
    if TARGET_TYPES[decl.type] and not decl.secret and v ~= nil then
      parts[#parts + 1] = name .. "=" .. core.redact(tostring(v))
    end
  end
  table.sort(parts)
  return parts
end

function M.id(name, target)
  return name .. "-" .. core.sha256(name .. "\n" .. table.concat(target, "\n")):sub(1, 8)
end

local function decode(s)
  if type(s) ~= "string" or s == "" then return nil end
  local ok, v = pcall(cjson.decode, s)
  return ok and type(v) == "table" and v or nil
end

local function ago(iso)
  local t = require("incident").parse_iso(iso)
  if not t then return "" end
  return " (" .. require("incident").span(os.time() - t) .. " ago)"
end

-- "alice@web1 (pid 4242, /dev/pts/3, running) since 2025-01-15T14:02:11Z (12m ago), incident INC-42"
function M.describe(h)
  if not h then return "a session whose details are not readable yet" end
  local me = core.identity()
  local state = ""
  if h.host == me.host and math.tointeger(h.pid) then
    state = lockfile.alive(math.tointeger(h.pid)) and ", running" or ", gone"
  elseif h.host then
    state = ", on another host"
  end
  return string.format("%s@%s (pid %s%s%s) since %s%s%s", tostring(h.user), tostring(h.host), tostring(math.tointeger(h.pid) or h.pid),
    (h.tty and h.tty ~= "") and (", " .. h.tty) or "", state, tostring(h.since), ago(h.since),
    h.incident and (", incident " .. h.incident) or "")
end

local function target_text(target) return #target > 0 and table.concat(target, " ") or "(no target inputs)" end

local function refuse(state, holder)
  core.err(string.format(
    "runbook: %s is already running against %s: locked by %s\n" ..
    "         transcript %s\n" ..
    "         wait for it with --lock-timeout DUR (e.g. 10m); if that session is gone, remove the lock with\n" ..
    "         runbook unlock %s\n",
    state.runbook, target_text(state.target), M.describe(holder), holder and tostring(holder.transcript) or "?",
    state.id))
  return nil, EXIT.locked
end

-- Tries until the lock is ours or the deadline passes. Returns state, or nil and an exit code.
local function wait_for(state, details, timeout)
  local t0 = core.now()
  local deadline, unreadable, waiting = t0 + timeout * 1000, 0, false
  while true do
    local handle, got, kind = lockfile.acquire(state.path, details)
    if handle then
      state.handle, state.stale = handle, decode(got)
      if waiting then state.waited = (core.now() - t0) / 1000 end
      return state
    end
    if kind ~= "held" then
      core.err("runbook: " .. tostring(got) .. "\n")
      return nil, EXIT.internal
    end
    local holder = decode(got)
    if not holder and unreadable < 20 then
      unreadable = unreadable + 1      -- its holder is writing its details this very moment
      core.sleep(0.01)
    elseif core.now() >= deadline then
      return refuse(state, holder)
    else
      if not waiting then
        waiting = true
        render.print(string.format("waiting up to %s for the lock %s, held by %s (Ctrl-C gives up)",
          render.fmt.duration(timeout), state.id, M.describe(holder)))
      end
      local ok = core.sleep(math.min(POLL, (deadline - core.now()) / 1000))
      if not ok then
        core.clear_interrupt()
        core.err("runbook: gave up waiting for the lock " .. state.id .. "\n")
        return nil, EXIT.aborted
      end
    end
  end
end

-- The hosts of the target inputs (stdlib/reach.lua): each is locked too, so that a session on
-- inventory:web and one on ssh://web01 of the same runbook do not run at once.
function M.hosts(rb, inputs)
  local out = {}
  for _, name in ipairs(rb.input_names) do
    if rb.inputs[name].type == "target" and inputs[name] ~= nil then
      for _, h in ipairs(require("reach").host_keys(inputs[name])) do out[#out + 1] = h end
    end
  end
  table.sort(out)
  return out
end

-- The session's lock, then one per host of its targets (in order: two sessions cannot deadlock).
local function take_all(state, hosts, details, timeout)
  local got, code = wait_for(state, details, timeout)
  if not got then return nil, code end
  state.host_locks = {}
  for _, h in ipairs(hosts) do
    local id = M.id(state.runbook .. "-host", { h })
    local hs = { id = id, target = { "host " .. h }, runbook = state.runbook, path = M.dir() .. "/" .. id .. ".lock" }
    got, code = wait_for(hs, details, timeout)
    if not got then M.release(state) return nil, code end
    state.host_locks[#state.host_locks + 1] = hs
  end
  return state
end

-- Takes the lock of a run. info: transcript, session, incident, timeout (seconds), dry_run.
-- Returns the lock state (for report and release), or nil and the exit code to stop with.
function M.take(rb, inputs, info)
  local target = M.target(rb, inputs)
  local id = M.id(rb.name, target)
  local state = { id = id, target = target, runbook = rb.name, path = M.dir() .. "/" .. id .. ".lock" }
  if info.dry_run then
    if lockfile.held(state.path) then
      local f = io.open(state.path, "rb")
      state.dry_holder = decode(f and f:read("a"))
      if f then f:close() end
    end
    return state
  end
  local ok, err = lockfile.mkdir(M.dir())
  if not ok then
    core.err("runbook: " .. err .. "\n")
    return nil, EXIT.internal
  end
  local me = core.identity()
  local details = cjson.encode({ id = id, runbook = rb.name, target = target_text(target), user = me.user,
    host = me.host, tty = me.tty, pid = me.pid, since = os.date("!%Y-%m-%dT%H:%M:%SZ"),
    transcript = info.transcript, session = info.session, incident = info.incident })
  local got, code
  ok, got, code = pcall(take_all, state, M.hosts(rb, inputs), details, info.timeout or 0)
  if ok then return got, code end
  if core.is_control(got) == "interrupt" then   -- Ctrl-C reached the Lua code between two tries
    core.clear_interrupt()
    core.err("runbook: gave up waiting for the lock " .. id .. "\n")
    return nil, EXIT.aborted
  end
  error(got, 0)
end

local function audit(fields) core.audit("lock", cjson.encode(fields)) end

-- Once the transcript is open: what happened on the way to the lock, shown and recorded.
function M.report(state)
  if state.dry_holder then
    render.outcome("note", "dry run: not locking; " .. M.describe(state.dry_holder) .. " holds the lock " .. state.id)
  end
  if state.stale then
    local h = state.stale
    local text = string.format("took over the stale lock %s: %s@%s's session %s (pid %s, since %s) ended without releasing it",
      state.id, tostring(h.user), tostring(h.host), tostring(h.session), tostring(math.tointeger(h.pid) or h.pid), tostring(h.since))
    render.outcome("note", text)
    audit({ id = state.id, event = "stale", previous = h, text = text })
  end
  if state.waited then
    local text = string.format("lock %s acquired after waiting %.1f s", state.id, state.waited)
    render.outcome("note", text)
    audit({ id = state.id, event = "waited", waited_s = state.waited, text = text })
  end
end

function M.release(state)
  for _, hs in ipairs(state.host_locks or {}) do M.release(hs) end
  state.host_locks = nil
  if state.handle then state.handle:release() end
  state.handle = nil
end

-------------------------------------------------------------------------------- runbook unlock
local function locks_now()
  local sys = require "sys"
  local found = sys.files(M.dir(), { pattern = "*.lock", recursive = false, limit = 1000 })
  local out = {}
  for _, f in ipairs(found and found.files or {}) do
    local fh = io.open(f.path, "rb")
    local holder = decode(fh and fh:read("a"))
    if fh then fh:close() end
    out[#out + 1] = { id = f.path:match("([^/]+)%.lock$"), path = f.path, holder = holder,
                      held = lockfile.held(f.path) }
  end
  table.sort(out, function(a, b) return a.id < b.id end)
  return out
end

local function list_text(locks)
  if #locks == 0 then return "no locks in " .. M.dir() end
  local lines = { "locks in " .. M.dir() .. ":" }
  for _, l in ipairs(locks) do
    lines[#lines + 1] = string.format("  %s  %s  %s%s", l.id, l.holder and tostring(l.holder.target) or "",
      M.describe(l.holder), l.held and "" or " (stale: nobody holds it)")
  end
  return table.concat(lines, "\n")
end

-- `runbook unlock ID`: removes the lock ID, saying whose it was.
function M.unlock(args)
  local id = args[1]
  if not id or args[2] or id:sub(1, 1) == "-" then
    core.err("runbook: usage: runbook unlock ID\n" .. list_text(locks_now()) .. "\n")
    return EXIT.usage
  end
  if not id:match("^[%w][%w_.-]*$") then
    core.err("runbook: '" .. id .. "' is not a lock id (they look like disk-full-3f9c1a2b)\n")
    return EXIT.usage
  end
  local path = M.dir() .. "/" .. id .. ".lock"
  local f = io.open(path, "rb")
  if not f then
    core.err("runbook: no lock " .. id .. "\n" .. list_text(locks_now()) .. "\n")
    return 1
  end
  local holder = decode(f:read("a"))
  f:close()
  local held = lockfile.held(path)
  local ok, err = os.remove(path)
  if not ok then
    core.err("runbook: cannot remove " .. path .. ": " .. tostring(err) .. "\n")
    return 1
  end
  core.out(string.format("removed the lock %s (%s), held by %s\n", id,
    holder and tostring(holder.target) or "?", M.describe(holder)))
  if held then
    core.out("  that session is still running: it no longer keeps a second session of " ..
             (holder and tostring(holder.runbook) or "this runbook") .. " off the same target\n")
  end
  return 0
end

return M
