-- deploy.lua - "was there a deploy in the last hour? roll it back" (require "deploy"):
--   deploy.history { on = target, unit = , repo = , since = "24h" }  what changed, when, newest first:
--     k8s://NS/deployment/NAME   kubectl rollout history + the ReplicaSets' creation times and images
--     compose://[DIR:]SERVICE    the container's image and start time (docker compose ps -q, docker inspect)
--     local, ssh://, inventory:  the systemd unit's start times (systemctl show -p ActiveEnterTimestamp,...)
--     repo = DIR (any target)    the checkout's commits (git -C DIR log)
--   deploy.rollback { on = target, argv = { ... } }  an action through the gate: kubectl rollout undo,
--     or the command the team configures (an input of the runbook).
-- history is a probe (reads only); rollback is an sh.action. Timestamps are epoch seconds (UTC).
local cjson  = require "cjson"
local core   = require "core"
local logs   = require "logs"
local reach  = require "reach"
local sh     = require "sh"
local target = require "target"

local M = {}

local HISTORY_OPTIONS = { on = true, unit = true, repo = true, since = true, timeout = true, quiet = true, limit = true }
local ROLLBACK_OPTIONS = { on = true, argv = true, summary = true, timeout = true, to_revision = true }

local function check_options(fn, opts, allowed)
  if type(opts) ~= "table" then error(fn .. " { on = target, ... }", 0) end
  for k in pairs(opts) do
    if not allowed[k] then error(string.format("%s: unknown option '%s'", fn, tostring(k)), 0) end
  end
  local t, err = target.parse(opts.on or "local")
  if not t then error(fn .. ": on = " .. err, 0) end
  return t
end

local function tool_argv(t, words, base)
  local ep = t.hosts[1]
  local argv = t.kind == "compose" and reach.compose_argv(ep) or reach.kubectl_argv(ep)
  for _, w in ipairs(words) do argv[#argv + 1] = w end
  for k, v in pairs(base) do argv[k] = v end
  return argv
end

local function first_line(r) return ((r.stderr ~= "" and r.stderr or r.stdout):match("[^\n]+") or ("exit " .. tostring(r.code))) end

local function read(argv, what)
  local r, err, kind = sh.read(argv)
  if not r then return nil, err, kind end
  if r.by_host then return r end
  if not r.ok then return nil, string.format("deploy.history: %s: %s", what, first_line(r)), "exit" end
  return r
end

-- "Mon 2026-12-07 00:10:00 UTC" (systemd) -> epoch; a zone other than UTC or a numeric one is not guessed.
local function systemd_time(s)
  local day, clock, zone = (s or ""):match("^%a+ (%d%d%d%d%-%d%d%-%d%d) (%d%d:%d%d:%d%d) (%S+)$")
  if not day then return nil end
  zone = zone == "UTC" and "Z" or zone:match("^[+-]%d%d%d%d$")
  return zone and logs.timestamp(day .. "T" .. clock .. zone .. " x") or nil
end

local function k8s_history(t, base, out)
  local ep = t.hosts[1]
  local kind, name = ep.object:match("^([^/]+)/(.+)$")
  local r, err, ekind = read(tool_argv(t, { "rollout", "history", ep.object }, base), "kubectl rollout history " .. ep.object)
  if not r then return nil, err, ekind end
  local revisions = {}
  for rev, cause in r.stdout:gmatch("\n(%d+)%s+([^\n]*)") do revisions[tonumber(rev)] = cause:gsub("%s+$", "") end
  out.sources[#out.sources + 1] = "kubectl rollout history " .. ep.object
  if not kind:match("^deploy") then return out end
  -- A Deployment's revisions are its ReplicaSets: their creation times say when each rolled out.
  r, err, ekind = read(tool_argv(t, { "get", "replicasets", "-o", "json" }, base), "kubectl get replicasets")
  if not r then return nil, err, ekind end
  out.sources[#out.sources + 1] = "kubectl get replicasets -o json"
  local ok, doc = pcall(cjson.decode, r.stdout)
  if not ok or type(doc) ~= "table" then return nil, "deploy.history: kubectl get replicasets: not JSON", "error" end
  for _, rs in ipairs(doc.items or {}) do
    local md = rs.metadata or {}
    local owned = false
    for _, o in ipairs(md.ownerReferences or {}) do if o.name == name then owned = true end end
    if owned then
      local rev = tonumber((md.annotations or {})["deployment.kubernetes.io/revision"])
      local images = {}
      for _, c in ipairs((((rs.spec or {}).template or {}).spec or {}).containers or {}) do images[#images + 1] = c.image end
      local ts = md.creationTimestamp and logs.timestamp(md.creationTimestamp .. " x")
      out.changes[#out.changes + 1] = {
        ts = ts, time = md.creationTimestamp, kind = "rollout", revision = rev, name = md.name,
        image = table.concat(images, ","), replicas = (rs.status or {}).replicas or 0,
        what = string.format("revision %s (%s) %s%s", tostring(rev or "?"), md.name or "?", table.concat(images, ","),
                             rev and revisions[rev] and revisions[rev] ~= "<none>" and (": " .. revisions[rev]) or ""),
      }
    end
  end
  return out
end

local function compose_history(t, base, out)
  local ep = t.hosts[1]
  local r, err, kind = read(tool_argv(t, { "ps", "-q", ep.service }, base), "compose ps -q " .. ep.service)
  if not r then return nil, err, kind end
  out.sources[#out.sources + 1] = "docker compose ps -q " .. ep.service
  for id in r.stdout:gmatch("%x+") do
    local ir, ierr, ikind = read({ "docker", "inspect", "--format", "{{.Name}}\t{{.Config.Image}}\t{{.Image}}\t{{.State.StartedAt}}\t{{.Created}}\t{{.RestartCount}}",
                                   id, quiet = base.quiet, timeout = base.timeout }, "docker inspect " .. id)
    if not ir then return nil, ierr, ikind end
    local cname, image, digest, started, created, restarts = ir.stdout:match("^/?([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)\t(%d*)")
    if cname then
      out.changes[#out.changes + 1] = { ts = logs.timestamp(created .. " x"), time = created, kind = "container created",
        name = cname, image = image, what = string.format("container %s created from %s (%s)", cname, image, digest:sub(1, 19)) }
      out.changes[#out.changes + 1] = { ts = logs.timestamp(started .. " x"), time = started, kind = "container started",
        name = cname, image = image, restarts = tonumber(restarts),
        what = string.format("container %s started (%s restarts)", cname, restarts ~= "" and restarts or "?") }
    end
  end
  out.sources[#out.sources + 1] = "docker inspect"
  return out
end

local function systemd_history(t, unit, base, out)
  local argv = { "systemctl", "show", unit, "-p", "ActiveEnterTimestamp,ExecMainStartTimestamp,NRestarts" }
  for k, v in pairs(base) do argv[k] = v end
  if t.kind ~= "local" then argv.on = t.text end
  local r, err, kind = read(argv, "systemctl show " .. unit)
  if not r then return nil, err, kind end
  out.sources[#out.sources + 1] = "systemctl show " .. unit .. " -p ActiveEnterTimestamp,ExecMainStartTimestamp"
  local function add(host, stdout)
    local v = {}
    for k, val in stdout:gmatch("(%w+)=([^\n]*)") do v[k] = val end
    local ts = systemd_time(v.ExecMainStartTimestamp) or systemd_time(v.ActiveEnterTimestamp)
    if ts then
      out.changes[#out.changes + 1] = { ts = ts, time = v.ExecMainStartTimestamp ~= "" and v.ExecMainStartTimestamp or v.ActiveEnterTimestamp,
        kind = "unit started", name = unit, host = host, restarts = tonumber(v.NRestarts),
        what = string.format("%s started%s", unit, host and (" on " .. host) or "") }
    end
  end
  if r.by_host then for _, h in ipairs(r.ok) do add(h, r.by_host[h].stdout) end else add(nil, r.stdout) end
  return out
end

local function git_history(t, repo, since, base, out)
  local argv = { "git", "-C", repo, "log", "--since=" .. string.format("%d seconds ago", math.ceil(since)),
                 "--format=%H%x1f%ct%x1f%an%x1f%s", "-n", tostring(base.limit) }
  for k, v in pairs(base) do if k ~= "limit" then argv[k] = v end end
  if t.kind ~= "local" and t.kind ~= "k8s" then argv.on = t.text end
  local r, err, kind = read(argv, "git log in " .. repo)
  if not r then return nil, err, kind end
  out.sources[#out.sources + 1] = "git -C " .. repo .. " log"
  local stdout = r.by_host and (r.by_host[r.ok[1] or ""] or {}).stdout or r.stdout or ""
  for line in stdout:gmatch("[^\n]+") do
    local hash, ct, author, subject = line:match("^(%x+)\031(%d+)\031([^\031]*)\031(.*)$")
    if hash then
      out.changes[#out.changes + 1] = { ts = tonumber(ct), time = os.date("!%Y-%m-%dT%H:%M:%SZ", tonumber(ct)), kind = "commit",
        name = hash:sub(1, 12), author = author, what = string.format("commit %s by %s: %s", hash:sub(1, 12), author, subject) }
    end
  end
  return out
end

-- What changed, when: { changes = { { ts, time, kind, what, ... } } newest first, latest, sources }.
function M.history(opts)
  local t = check_options("deploy.history", opts, HISTORY_OPTIONS)
  local since = core.duration(opts.since or 86400) or error("deploy.history: since must be a duration", 0)
  local base = { quiet = opts.quiet ~= false, timeout = opts.timeout or 10, limit = math.tointeger(opts.limit or 20) }
  local out = { target = t.text, changes = {}, sources = {} }
  local r, err, kind
  if opts.repo then
    r, err, kind = git_history(t, opts.repo, since, base, out)
    if not r then return nil, err, kind end
  end
  base.limit = nil
  if t.kind == "k8s" then
    if t.fleet then error("deploy.history: a selector has no history: name the workload (k8s://NS/deployment/NAME)", 0) end
    r, err, kind = k8s_history(t, base, out)
  elseif t.kind == "compose" then
    r, err, kind = compose_history(t, base, out)
  elseif opts.unit then
    r, err, kind = systemd_history(t, opts.unit, base, out)
  elseif not opts.repo then
    error("deploy.history: on " .. t.text .. " name the systemd unit (unit =) or the checkout (repo =)", 0)
  end
  if r == nil and err then return nil, err, kind end
  local from = os.time() - since
  local kept = {}
  for _, c in ipairs(out.changes) do if not c.ts or c.ts >= from or c.kind == "rollout" then kept[#kept + 1] = c end end
  table.sort(kept, function(a, b) return (a.ts or 0) > (b.ts or 0) end)
  out.changes, out.latest = kept, kept[1]
  return out
end

-- The command a rollback runs: the team's argv, or kubectl rollout undo for a Kubernetes workload.
function M.rollback_argv(opts)
  local t = check_options("deploy.rollback", opts, ROLLBACK_OPTIONS)
  if opts.argv then
    if type(opts.argv) ~= "table" or #opts.argv == 0 then error("deploy.rollback: argv must be a list of words", 0) end
    local argv = {}
    for i, w in ipairs(opts.argv) do argv[i] = tostring(w) end
    if t.kind == "ssh" or t.kind == "inventory" then argv.on = t.text end
    return argv, t
  end
  if t.kind ~= "k8s" or t.fleet then
    error("deploy.rollback: on " .. t.text .. " there is no standard rollback: give argv = { ... } (the team's command)", 0)
  end
  local words = { "rollout", "undo", t.hosts[1].object }
  if opts.to_revision then words[#words + 1] = "--to-revision=" .. tostring(math.tointeger(opts.to_revision)) end
  return tool_argv(t, words, {}), t
end

-- Rolls back through the gate (an sh.action): the result of sh.action.
function M.rollback(opts)
  local argv, t = M.rollback_argv(opts)
  argv.summary = opts.summary or ("roll back " .. t.text)
  argv.timeout = opts.timeout or 120
  argv.target = t.text
  -- A team's own rollback may start the service itself (not through systemd): what it starts stays.
  if opts.argv then argv.leave_running = true end
  return sh.action(argv)
end

return M
