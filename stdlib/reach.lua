-- reach.lua - sh.read and sh.action with `on = target` (stdlib/target.lua): the transports and
-- the fleets. stdlib/sh.c hands a call here when its `on` is not "local"; this file resolves the
-- target to its hosts, rewrites the argv for the transport (OpenSSH, docker compose, kubectl),
-- runs it with sh's own machinery (sh_transport.run: the same spawn, deadline, process-group kill
-- and Ctrl-C), and tells a connection failure from the remote command's own exit.
--
-- A fleet (inventory:GROUP, k8s://NS/pods?l=SEL) runs on all its hosts at once with parallel(),
-- `limit` at a time, and returns { by_host, ok, failed, unreachable, groups }. An action on a
-- fleet is one gate question (the command once, the folded host list, the count, the batching);
-- its batches stop at the first failure unless max_fail says otherwise, and the hosts it did not
-- reach are recorded as not run. A resumed session leaves out the hosts it ran on (replay.h).
local core   = require "core"
local replay = require "replay"
local shx    = require "sh_transport"
local target = require "target"

local M = {}

local CONTROL_PERSIST = 60      -- seconds an idle ssh master stays, for the next call to the host
local CHECK_TIMEOUT = 2         -- `ssh -O check` after an exit of 255: a local socket
local INVENTORY_TIMEOUT = 30
local DEFAULT_LIMIT = 50
-- What a call with `on` accepts beyond argv: sh's options, minus those a remote cannot honour.
local READ_OPTIONS = { timeout = true, grace = true, quiet = true, shell = true, check = true,
                       max_output = true, on = true, limit = true }
local ACTION_OPTIONS = { irreversible = true, target = true, summary = true, blast = true,
                         batch = true, max_fail = true, pause = true }
for k in pairs(READ_OPTIONS) do ACTION_OPTIONS[k] = true end
-- Kinds that say the host was not reached: the command did not run there.
local UNREACHED = { unreachable = true, hostkey = true, auth = true, refused = true, timeout = true, notfound = true }

------------------------------------------------------------------------------------ arguments
local function split_args(fn, args, allowed)
  local cmd, opts = {}, {}
  for k, v in pairs(args) do
    if math.type(k) == "integer" then cmd[k] = tostring(v)
    elseif not allowed[k] then
      local extra = (k == "env" or k == "cwd") and " (it is not passed to a remote target: write it into the command)" or ""
      error(string.format("%s: option '%s' is not available with on = target%s", fn, tostring(k), extra), 0)
    else opts[k] = v end
  end
  if #cmd == 0 then error(fn .. ": no command given (write " .. fn .. " { \"cmd\", \"arg\", ..., on = target })", 0) end
  if opts.shell and #cmd ~= 1 then error(fn .. ": shell = true takes exactly one string, the shell command", 0) end
  local t, err = target.parse(opts.on)
  if not t then error(fn .. ": on = " .. err, 0) end
  return cmd, opts, t
end

local function duration(v, default, what)
  if v == nil then return default end
  local d, err = core.duration(v)
  if not d then error(what .. ": " .. tostring(err), 0) end
  return d
end

------------------------------------------------------------------------------------ transports
local control_path
-- $XDG_RUNTIME_DIR/runbook/%C (else a private directory under /tmp): ssh's master sockets.
local function ssh_control_path()
  if control_path then return control_path end
  local base = os.getenv("XDG_RUNTIME_DIR")
  local dir = (base and base ~= "") and (base .. "/runbook")
              or string.format("%s/runbook-%d", os.getenv("TMPDIR") or "/tmp", core.identity().uid)
  local ok, err = shx.private_dir(dir)
  if not ok then return nil, err end
  control_path = dir .. "/%C"
  return control_path
end

local function ssh_base(ep)
  local path, err = ssh_control_path()
  if not path then return nil, err end
  local argv = { "ssh" }
  local config = os.getenv("RUNBOOK_SSH_CONFIG")
  if config and config ~= "" then argv[#argv + 1] = "-F"; argv[#argv + 1] = config end
  for _, o in ipairs({ "BatchMode=yes", "StrictHostKeyChecking=yes", "ControlMaster=auto",
                       "ControlPersist=" .. CONTROL_PERSIST, "ControlPath=" .. path }) do
    argv[#argv + 1] = "-o"; argv[#argv + 1] = o
  end
  if ep.port then argv[#argv + 1] = "-p"; argv[#argv + 1] = tostring(ep.port) end
  if ep.user then argv[#argv + 1] = "-l"; argv[#argv + 1] = ep.user end
  argv[#argv + 1] = "-T"
  return argv
end

local compose_cmd
-- docker compose (the plugin) or docker-compose, whichever this machine has: the plugin if it answers.
local function compose_base(ep)
  if not compose_cmd then
    local r = shx.run({ "docker", "compose", "version", quiet = true, timeout = 5 }, {})
    compose_cmd = (r.ok) and { "docker", "compose" } or { "docker-compose" }
  end
  -- Run in the project's directory, where both find its docker-compose.yml (docker-compose 1.x
  -- looks for the file in the working directory even with --project-directory).
  local argv = { table.unpack(compose_cmd) }
  argv.cwd = ep.dir
  return argv
end

local function kubectl_base(ep)
  local argv = { "kubectl" }
  if ep.context then argv[#argv + 1] = "--context"; argv[#argv + 1] = ep.context end
  argv[#argv + 1] = "-n"; argv[#argv + 1] = ep.namespace
  return argv
end

-- Appends list's words to argv, and sets its options (quiet = true...) there too.
local function append(argv, list)
  for _, w in ipairs(list) do argv[#argv + 1] = w end
  for k, v in pairs(list) do if math.type(k) ~= "integer" then argv[k] = v end end
  return argv
end

M.compose_argv, M.kubectl_argv = compose_base, kubectl_base   -- for stdlib/service.lua

-- The local argv that runs cmd on ep, and the remote command line as the gate shows it.
function M.argv(ep, cmd, shell)
  local remote = shell and cmd[1] or shx.quote(cmd)
  local words = shell and { "/bin/sh", "-c", cmd[1] } or cmd
  if ep.kind == "ssh" then
    local argv, err = ssh_base(ep)
    if not argv then return nil, err end
    return append(argv, { "--", ep.host, remote }), remote
  elseif ep.kind == "compose" then
    return append(append(compose_base(ep), { "exec", "-T", ep.service }), words), remote
  end
  return append(append(kubectl_base(ep), { "exec", ep.object, "--" }), words), remote
end

--------------------------------------------------------------------------------- the hosts
local inventories = {}

local function inventory_file()
  local f = M.inventory or os.getenv("RUNBOOK_INVENTORY")
  if not f or f == "" then return nil end
  return f
end

-- The hosts of a target: { ep, ... } or nil, err, kind.
local function endpoints(t, fn)
  if t.hosts then return t.hosts end
  if t.kind == "inventory" then
    local file = inventory_file()
    if not file then
      return nil, fn .. " on " .. t.text .. ": no inventory (pass --inventory FILE or set $RUNBOOK_INVENTORY)", "error"
    end
    local inv = inventories[file]
    if not inv then
      local r = shx.run({ "ansible-inventory", "-i", file, "--list", quiet = true, timeout = INVENTORY_TIMEOUT }, { on = t.text })
      if not r.ok then
        local why = r.spawn_error or (r.timed_out and "timed out") or (r.interrupted and "interrupted")
                    or ((r.stderr:match("[^\n]+") or "") .. " (exit " .. tostring(r.code) .. ")")
        return nil, string.format("%s on %s: ansible-inventory -i %s --list: %s", fn, t.text, file, why),
               r.interrupted and "interrupted" or "error"
      end
      local ok, v = pcall(require("cjson").decode, r.stdout)
      if not ok or type(v) ~= "table" then return nil, fn .. ": ansible-inventory printed no JSON", "error" end
      inv, inventories[file] = v, v
    end
    local hosts = target.inventory_hosts(inv, t.group)
    if not hosts then return nil, string.format("%s on %s: the inventory %s has no group '%s'", fn, t.text, file, t.group), "error" end
    return hosts
  end
  -- k8s://NS/pods?l=SELECTOR: the pods the selector matches now.
  local base = kubectl_base(t)
  local r = shx.run(append(base, { "get", "pods", "-l", t.selector, "-o", "name", quiet = true, timeout = 20 }), { on = t.text })
  if not r.ok then
    return nil, string.format("%s on %s: kubectl get pods: %s", fn, t.text, r.spawn_error or r.stderr:match("[^\n]+") or "failed"),
           r.spawn_error and "notfound" or "unreachable"
  end
  local hosts = {}
  for obj in r.stdout:gmatch("[^\n]+") do
    local pod = obj:match("^pod/(.+)$") or obj
    hosts[#hosts + 1] = { kind = "k8s", name = pod, object = "pod/" .. pod, namespace = t.namespace, context = t.context }
  end
  return hosts
end

-- What identifies each host of a target for the session lock (interp/lock.lua): an SSH host by
-- address and port (web01 of an inventory and ssh://10.0.0.5 are the same host), a Compose
-- service by project and name, a Kubernetes object or selector by its path. An inventory that
-- cannot be read leaves the target's own text.
function M.host_keys(text)
  local t = target.parse(text)
  if not t or t.kind == "local" then return {} end
  if t.kind == "k8s" and t.fleet then return { "k8s:" .. text:sub(7) } end
  local eps = endpoints(t, "lock")
  if not eps then return { text } end
  local out = {}
  for _, ep in ipairs(eps) do
    if ep.kind == "ssh" then out[#out + 1] = string.format("ssh:%s:%d", ep.host, ep.port or 22)
    elseif ep.kind == "compose" then out[#out + 1] = "compose:" .. (ep.dir or ".") .. ":" .. ep.service
    else out[#out + 1] = string.format("k8s:%s/%s/%s", ep.context or "", ep.namespace, ep.object) end
  end
  return out
end

------------------------------------------------------------------------------- one host, one call
local function first_line(s) return (s or ""):match("([^\n]*[^\n%s][^\n]*)") or "" end

local function hostkey_advice(ep)
  local name = ep.port and string.format("[%s]:%d", ep.host, ep.port) or ep.host
  return string.format("the host key of %s is not known or has changed, and StrictHostKeyChecking=yes never " ..
    "accepts one. Check it out of band before trusting it: `ssh-keygen -F '%s'` shows what known_hosts holds, " ..
    "`ssh-keyscan%s %s | ssh-keygen -lf -` what the host presents; compare that fingerprint with the one its " ..
    "administrator reads on the host (`ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub`), then add the line to known_hosts",
    name, name, ep.port and (" -p " .. ep.port) or "", ep.host)
end

-- Why ssh exited 255 without running the command, from its stderr.
local function ssh_failure(ep, stderr)
  local line = first_line(stderr)
  if stderr:find("Host key verification failed", 1, true) or stderr:find("host key is known", 1, true)
     or stderr:find("IDENTIFICATION HAS CHANGED", 1, true) then
    return "hostkey", hostkey_advice(ep)
  elseif stderr:find("Permission denied", 1, true) or stderr:find("Too many authentication failures", 1, true) then
    return "auth", "authentication failed (" .. line .. "): check the key ssh offers (ssh-add -l, IdentityFile) and the user"
  elseif stderr:find("Connection refused", 1, true) then
    return "refused", "connection refused: is sshd running, on that port?"
  end
  return "unreachable", (line ~= "" and line or "ssh could not connect") .. ": the host was not reached"
end

-- ssh exits 255 for its own failures and passes on the remote command's exit code, 255 included:
-- a master connection still up means the connection was made, so the 255 is the command's.
local function ssh_connected(ep)
  local argv = ssh_base(ep)
  if not argv then return false end
  local r = shx.run(append(argv, { "-O", "check", "--", ep.host, quiet = true, timeout = CHECK_TIMEOUT }), {})
  return r.ok
end

local function tool_failure(ep, r)
  local e = r.stderr
  if ep.kind == "k8s" then
    if e:find("Unable to connect to the server", 1, true) then return "unreachable", first_line(e) end
    if e:find("Forbidden", 1, true) or e:find("Unauthorized", 1, true) or e:find("must be logged in", 1, true) then
      return "auth", first_line(e)
    end
    if e:find("error executing command in container", 1, true) or e:find("executable file not found", 1, true) then
      return "notfound", "the command cannot run there: " .. first_line(e)
    end
    if e:find("Error from server (NotFound)", 1, true) or e:find("error: ", 1, true) == 1 then return "unreachable", first_line(e) end
  else
    if e:find("connect to the Docker daemon", 1, true) or e:find("Couldn't connect to Docker", 1, true) then
      return "unreachable", first_line(e)
    end
    if e:find("No such service", 1, true) or e:find("is not running", 1, true) or e:find("No container found", 1, true) then
      return "unreachable", first_line(e)
    end
    -- docker-compose 1.x exits 1 without a word for a service that does not exist: ask it.
    local ps = shx.run(append(compose_base(ep), { "ps", "-q", ep.service, quiet = true, timeout = 10 }), {})
    if not (ps.ok and ps.stdout:match("%x")) then
      return "unreachable", string.format("the service %s has no running container (%s ps -q %s: %s)", ep.service,
        table.concat(compose_cmd, " "), ep.service, first_line(ps.stderr) ~= "" and first_line(ps.stderr) or "none")
    end
  end
  return nil
end

-- Judges a transport's run: the result (the command ran, whatever its exit), or nil, err, kind.
local function judge(fn, t, ep, r, argv, timeout)
  local where = string.format("%s on %s%s", fn, t.text, t.fleet and (" (" .. ep.name .. ")") or "")
  if r.spawn_error then
    return nil, string.format("%s: %s: %s", where, argv[1], r.spawn_error), "notfound"
  elseif r.timed_out then
    return nil, string.format("%s: no answer within %s (one deadline for connect, auth and the command); stopped",
                              where, require("render").fmt.duration(timeout)), "timeout"
  elseif r.interrupted then
    return nil, where .. ": interrupted", "interrupted"
  end
  local kind, why
  if ep.kind == "ssh" and r.code == 255 and not ssh_connected(ep) then
    kind, why = ssh_failure(ep, r.stderr)
  elseif ep.kind ~= "ssh" and r.code ~= 0 then
    kind, why = tool_failure(ep, r)
  end
  if kind then return nil, where .. ": " .. why, kind end
  r.host = ep.name
  return r
end

local function run_one(fn, t, ep, cmd, opts, action)
  local argv, remote = M.argv(ep, cmd, opts.shell)
  if not argv then return nil, string.format("%s on %s: %s", fn, t.text, remote), "error" end
  local timeout = duration(opts.timeout, action and 120 or 10, fn)
  argv.timeout, argv.grace, argv.quiet, argv.max_output = timeout, opts.grace, opts.quiet, opts.max_output   -- cwd: compose's
  -- keep: the ssh that made the master connection leaves it running (ControlPersist), for the next
  -- call and for telling a remote 255 from ssh's own (ssh_connected).
  local r = shx.run(argv, { display = remote, on = t.text, host = ep.name, action = action, keep = ep.kind == "ssh" })
  r.argv = cmd
  return judge(fn, t, ep, r, argv, timeout)
end

-- check: a remote non-zero exit is an error of kind "exit" (sh.read's check, sh.action's default).
local function checked(fn, t, r, err, kind, check)
  if not r then return nil, err, kind end
  if check and not r.ok then
    local why = first_line(r.stderr ~= "" and r.stderr or r.stdout)
    return nil, string.format("%s on %s: %s exited with code %s%s", fn, t.text, shx.quote(r.argv),
                              tostring(r.code or ("signal " .. tostring(r.signal))), why ~= "" and (": " .. why) or ""), "exit"
  end
  return r
end

------------------------------------------------------------------------------------- fleets
local function sorted_keys(set)
  local out = {}
  for k in pairs(set) do out[#out + 1] = k end
  table.sort(out)
  return out
end

-- The fleet result of per-host outcomes: by_host[h] = result, or { err, kind } when not reached.
local function fleet_result(t, by_host)
  local res = { target = t.text, by_host = by_host, ok = {}, failed = {}, unreachable = {}, not_run = {}, groups = {} }
  local groups = {}
  for _, h in ipairs(sorted_keys(by_host)) do
    local r = by_host[h]
    local list, key
    if r.not_run then list, key = res.not_run, "not run: " .. r.why
    elseif r.kind and UNREACHED[r.kind] then list, key = res.unreachable, r.kind .. ": " .. r.err
    elseif r.kind then list, key = res.failed, r.kind .. ": " .. r.err
    elseif r.ok then list, key = res.ok, r.stdout
    else list, key = res.failed, r.stdout .. r.stderr .. "\0exit " .. tostring(r.code) end
    list[#list + 1] = h
    key = key:gsub(" %(" .. h:gsub("%p", "%%%0") .. "%)", "")   -- a message naming its host folds too
    if not groups[key] then
      groups[key] = { hosts = {}, output = r.stdout, code = r.code, kind = r.kind, err = r.err }
      res.groups[#res.groups + 1] = groups[key]
    end
    table.insert(groups[key].hosts, h)
  end
  for _, g in ipairs(res.groups) do g.nodes, g.count = target.fold(g.hosts), #g.hosts end
  table.sort(res.groups, function(a, b) if a.count ~= b.count then return a.count > b.count end return a.nodes < b.nodes end)
  return res
end

-- Runs cmd on the hosts eps at once, limit at a time; returns by_host. Ctrl-C raises through.
-- Calls one(ep) for every host at once, limit at a time (parallel()); fills by_host with each
-- result, or { err, kind }. Ctrl-C raises through.
local function on_each(fn, eps, limit, one, by_host)
  local tasks = {}
  for _, ep in ipairs(eps) do tasks[ep.name] = function() return one(ep) end end
  limit = math.tointeger(limit or DEFAULT_LIMIT)
  if not limit or limit < 1 then error(fn .. ": limit must be a whole number >= 1", 0) end
  for name, o in pairs(core.parallel(tasks, { limit = limit })) do
    by_host[name] = o.value or { err = o.err, kind = o.kind }
  end
  return by_host
end

-- Runs cmd on the hosts eps at once; returns by_host.
local function run_hosts(fn, t, eps, cmd, opts, action, by_host)
  return on_each(fn, eps, opts.limit, function(ep) return run_one(fn, t, ep, cmd, opts, action) end, by_host)
end

function M.read(args)
  local fn = "sh.read"
  local cmd, opts, t = split_args(fn, args, READ_OPTIONS)
  local eps, err, kind = endpoints(t, fn)
  if not eps then return nil, err, kind end
  if not t.fleet then
    local r, e, k = run_one(fn, t, eps[1], cmd, opts, false)
    return checked(fn, t, r, e, k, opts.check)
  end
  return fleet_result(t, run_hosts(fn, t, eps, cmd, opts, false, {}))
end

-- batch = N | "25%" of n hosts; nil: all at once.
local function batch_size(batch, n, fn)
  if batch == nil then return math.max(n, 1) end
  local pct = type(batch) == "string" and tonumber(batch:match("^(%d+)%%$"))
  local size = pct and math.ceil(n * pct / 100) or math.tointeger(batch)
  if not size or size < 1 then error(fn .. ": batch must be a count >= 1 or a percentage like \"25%\"", 0) end
  return math.min(size, math.max(n, 1))
end

-- The local command line of a transport, as the gate shows it.
local function via(argv) return shx.quote(argv) .. (argv.cwd and ("    (in " .. argv.cwd .. ")") or "") end

local function fleet_plan(t, eps, done, cmd, opts, size, max_fail, pause)
  local argv, remote = M.argv(eps[1], cmd, opts.shell)
  if argv then
    for i, w in ipairs(argv) do if w == eps[1].host or w == eps[1].object or w == eps[1].service then argv[i] = "HOST" end end
  end
  local names = {}
  for _, ep in ipairs(eps) do names[#names + 1] = ep.name end
  local nb = math.ceil(#eps / size)
  local lines = {}
  if opts.summary then lines[#lines + 1] = "$ " .. remote end
  lines[#lines + 1] = string.format("on %d host%s of %s: %s", #eps, #eps == 1 and "" or "s", t.text, target.fold(names))
  lines[#lines + 1] = nb == 1 and "all at once (one batch)" or
    string.format("in %d batches of %d; stop after %d failure%s; pause %s between batches", nb, size, max_fail,
                  max_fail == 1 and "" or "s", require("render").fmt.duration(pause))
  if #done > 0 then lines[#lines + 1] = "already run there in the earlier session (not repeated): " .. target.fold(done) end
  if argv then lines[#lines + 1] = "via: " .. via(argv) end
  return {
    summary = opts.summary or ("$ " .. remote), detail = table.concat(lines, "\n"), command = remote,
    target = opts.target or t.text, blast = opts.blast, irreversible = opts.irreversible,
    typeback = opts.irreversible and tostring(#eps) or nil, fleet = true,
  }, remote
end

local function fleet_action(fn, t, eps, cmd, opts)
  local _, remote = M.argv(eps[1], cmd, opts.shell)
  local key = replay.fingerprint("sh.action", remote, "", t.text)
  local todo, done, by_host = {}, {}, {}
  for _, ep in ipairs(eps) do
    local why = replay.host_ran(key, ep.name)
    if why then
      done[#done + 1] = ep.name
      by_host[ep.name] = { not_run = true, why = "not repeated: " .. why }
    else todo[#todo + 1] = ep end
  end
  if #todo == 0 then
    for _, h in ipairs(done) do shx.record(remote, t.text, h, "not repeated", by_host[h].why) end
    return fleet_result(t, by_host)
  end
  local size = batch_size(opts.batch, #todo, fn)
  local max_fail = math.tointeger(opts.max_fail or 0)
  if not max_fail or max_fail < 0 then error(fn .. ": max_fail must be a whole number >= 0", 0) end
  local pause = duration(opts.pause, 0, fn)
  local plan = fleet_plan(t, todo, done, cmd, opts, size, max_fail, pause)
  local answer, err, kind = shx.gate(plan)
  if answer ~= "run" then return answer, err, kind end
  for _, h in ipairs(done) do shx.record(remote, t.text, h, "not repeated", by_host[h].why) end
  local failures, stopped = 0, nil
  local function not_run(from, why)
    for i = from, #todo do
      local h = todo[i].name
      by_host[h] = { not_run = true, why = why }
      shx.record(remote, t.text, h, "not run", why)
    end
  end
  for first = 1, #todo, size do
    if first > 1 and pause > 0 then
      local ok, e, k = core.sleep(pause)
      if not ok then not_run(first, "interrupted during the pause"); return nil, e, k end
    end
    local batch = { table.unpack(todo, first, math.min(first + size - 1, #todo)) }
    local ok, e = pcall(run_hosts, fn, t, batch, cmd, opts, true, by_host)
    if not ok then not_run(first + #batch, "interrupted"); error(e, 0) end
    for _, ep in ipairs(batch) do
      local r = by_host[ep.name]
      if r.kind or not r.ok then failures = failures + 1 end
    end
    if failures > max_fail and first + size <= #todo then
      stopped = string.format("stopped after %d failure%s", failures, failures == 1 and "" or "s")
      not_run(first + size, stopped .. " (max_fail " .. max_fail .. ")")
      break
    end
  end
  local res = fleet_result(t, by_host)
  if failures > 0 and opts.check ~= false then
    local parts = {}
    if #res.failed > 0 then parts[#parts + 1] = "failed on " .. target.fold(res.failed) end
    if #res.unreachable > 0 then parts[#parts + 1] = "not reached on " .. target.fold(res.unreachable) end
    if #res.not_run > 0 then parts[#parts + 1] = "not run on " .. target.fold(res.not_run) end
    return nil, string.format("%s on %s: %s: %s", fn, t.text, remote, table.concat(parts, "; ")), "exit", res
  end
  return res
end

function M.action(args)
  local fn = "sh.action"
  local cmd, opts, t = split_args(fn, args, ACTION_OPTIONS)
  if opts.irreversible and not opts.target and not t.fleet then opts.target = t.text end
  local eps, err, kind = endpoints(t, fn)
  if not eps then return nil, err, kind end
  if t.fleet then return fleet_action(fn, t, eps, cmd, opts) end
  local argv, remote = M.argv(eps[1], cmd, opts.shell)
  if not argv then return nil, string.format("%s on %s: %s", fn, t.text, remote), "error" end
  local lines = {}
  if opts.summary then lines[#lines + 1] = "$ " .. remote end
  lines[#lines + 1] = "on " .. t.text .. " via: " .. via(argv)
  local answer, e, k = shx.gate({ summary = opts.summary or ("$ " .. remote), detail = table.concat(lines, "\n"),
                                  target = opts.target or t.text, blast = opts.blast, irreversible = opts.irreversible,
                                  command = remote })
  if answer ~= "run" then return answer, e, k end
  local r
  r, e, k = run_one(fn, t, eps[1], cmd, opts, true)
  return checked(fn, t, r, e, k, opts.check ~= false)
end

------------------------------------------------------------------------------ sys.* on a target
-- What sys.memory, sys.load, sys.fs and sys.processes read on a target, each in one command, and
-- the same C parsers as here (sys_transport): the result is the table a local call returns; what
-- the target cannot give (no shell or /proc in a distroless container) is nil with the reason.
local sysx = require "sys_transport"

-- sys.processes' script: the clock, two scans of /proc/PID/stat `sample` apart (the shell's own
-- read: no process per pid), the owners, the passwd names, the command lines (see sysx_processes).
local PROCESSES = [[
read -r up _ < /proc/uptime
while read -r k v _; do [ "$k" = MemTotal: ] && mt=$v; done < /proc/meminfo
echo "H $up $(getconf CLK_TCK) $(getconf PAGESIZE) $mt"
snap() { for p in /proc/[0-9]*; do read -r l < "$p/stat" && printf '%s\n' "$l"; done 2>/dev/null; }
if [ "$1" != 0 ]; then echo S1; snap; sleep "$1"; fi
echo S2; snap
echo U; ls -dn /proc/[0-9]* 2>/dev/null
echo N; cut -d: -f1,3 /etc/passwd 2>/dev/null
echo C; for p in /proc/[0-9]*; do printf '%s\t' "${p#/proc/}"; tr '\0\n' '  ' < "$p/cmdline" 2>/dev/null; echo; done
]]

-- A file sys.tail / sys.grep read there: what the local open would have refused, as "E kind".
local FILE_CHECK = [[
[ -e "$1" ] || { echo "E notfound"; exit 0; }
[ -f "$1" ] || { echo "E notregular"; exit 0; }
[ -r "$1" ] || { echo "E permission"; exit 0; }
echo F
]]
local FILE_ERRORS = { notfound = "no such file or directory", permission = "permission denied",
                      notregular = "not a regular file" }
local TAIL_MAX_SCAN, MAX_TEXT_LINE = 16 << 20, 4096   -- as in sys_internal.h

-- The rest of a FILE_CHECK'ed output, or nil, the local error's cause, its kind.
local function file_checked(out, path)
  local bad = out:match("^E (%a+)\n")
  if bad then return nil, path .. ": " .. FILE_ERRORS[bad], bad == "notregular" and "error" or bad end
  if out:sub(1, 2) ~= "F\n" then return nil, "its shell did not answer as expected" end
  return out:sub(3)
end

-- A walk's root there, as the local walk opens it; then its canonical path, the mounts, find's
-- records (sysx_walk replays them) and the count of what find could not read.
local WALK = [[
find / -maxdepth 0 -printf '' 2>/dev/null || { echo "E nofind"; exit 0; }
[ -e "$1" ] || { echo "E notfound"; exit 0; }
[ -d "$1" ] || { echo "E notdir"; exit 0; }
{ [ -r "$1" ] && [ -x "$1" ]; } || { echo "E permission"; exit 0; }
echo F; date +%s; readlink -f -- "$1"; cat /proc/self/mountinfo; printf '\0'
root=$1; shift
{ find "$root" "$@" -printf '%y %D %b %s %T@ %d %P\0' 2>&1 >&3 | grep -c .; } 3>&1
exit 0
]]
FILE_ERRORS.notdir, FILE_ERRORS.nofind = "not a directory", "its find cannot print what the walk needs (not GNU find)"

-- sys.largest / sys.files there: the records of WALK, replayed by the local walk's own code.
local function walk_spec(name, options, find_args)
  return {
    options = options,
    argv = function(args, path)
      local argv = { "/bin/sh", "-c", WALK, "sh", path }
      for _, a in ipairs(find_args(args)) do argv[#argv + 1] = a end
      return argv
    end,
    parse = function(out, args, _, path)
      local bad = out:match("^E (%a+)\n")
      if bad == "nofind" then return nil, FILE_ERRORS.nofind end
      if bad then return nil, path .. ": " .. FILE_ERRORS[bad], (bad == "notdir" and "notfound") or bad end
      local now, real, info, records, unreadable = out:match("^F\n(%d+)\n([^\n]*)\n([^%z]*)%z(.*%z)(%d+)\n$")
      if not now then
        now, real, info, unreadable = out:match("^F\n(%d+)\n([^\n]*)\n([^%z]*)%z(%d+)\n$")
        records = ""
      end
      if not now then return nil, "its find did not answer as expected" end
      return sysx[name](path, real, info, records, math.tointeger(tonumber(unreadable)), args.given,
                        math.tointeger(tonumber(now)))
    end,
  }
end

-- sys.deleted_open there: every fd's link (not followed) and, followed, the open file's type, links,
-- device and size, then the commands: the same C test as here makes the table (sysx_deleted_open).
local DELETED = [[
find / -maxdepth 0 -printf '' 2>/dev/null || { echo "E nofind"; exit 0; }
if [ -n "$1" ]; then d=$(stat -L -c %d -- "$1" 2>/dev/null) || { echo "E notfound"; exit 0; }; fi
echo "F ${d:--}"
{ find -P /proc/[0-9]*/fd -mindepth 1 -maxdepth 1 -lname '*(deleted)' -printf 'L %h %f %l\0' 2>&1 >&3 |
  { c=$(grep -c 'Permission denied'); printf 'U%s\0' "$c"; }; } 3>&1
find -L /proc/[0-9]*/fd -mindepth 1 -maxdepth 1 -links 0 -type f -printf 'S %h %f %y %n %D %s\0' 2>/dev/null
printf 'C\0'; grep -H '' /proc/[0-9]*/comm 2>/dev/null
exit 0
]]

local SYS = {
  deleted_open = { options = { path = true, limit = true },
                   argv = function(args) return { "/bin/sh", "-c", DELETED, "sh", args.path or "" } end,
                   parse = function(out, args)
                     local bad = out:match("^E (%a+)\n")
                     if bad == "nofind" then return nil, FILE_ERRORS.nofind end
                     if bad then return nil, args.path .. ": " .. FILE_ERRORS[bad], bad end
                     local dev, rest = out:match("^F ([%d-]+)\n(.*)$")
                     if not dev then return nil, "its find did not answer as expected" end
                     return sysx.deleted_open(rest, math.tointeger(tonumber(dev)), args.limit)
                   end },
  largest = walk_spec("largest", { depth = true, limit = true, xdev = true, files = true }, function(args)
    local a = args.given.xdev == false and {} or { "-xdev" }
    a[#a + 1] = "-maxdepth"
    a[#a + 1] = "256"   -- WALK_MAX_DEPTH: the local walk goes no deeper
    return a
  end),
  files = walk_spec("files", { pattern = true, older_than = true, min_size = true, recursive = true, xdev = true,
                               follow = true, limit = true }, function(args)
    local a = args.given.xdev == false and {} or { "-xdev" }
    a[#a + 1] = "-maxdepth"
    a[#a + 1] = args.given.recursive == false and "1" or "256"
    return a
  end),
  -- The file's size and mtime, its last 16 MiB and their last lines + 2 (a last line without its
  -- newline, and one more newline than asked tells "more lines before"): the same C code cuts them.
  tail = { options = { lines = true },
           argv = function(args, path)
             return { "/bin/sh", "-c", FILE_CHECK .. 'stat -L -c "%s %Y" -- "$1" && tail -c ' .. TAIL_MAX_SCAN ..
                      ' -- "$1" | tail -n "$2"', "sh", path, tostring(args.lines + 2) }
           end,
           parse = function(out, args, _, path)
             local rest, why, kind = file_checked(out, path)
             if not rest then return nil, why, kind end
             local size, mtime, text = rest:match("^(%d+) (%d+)\n(.*)$")
             if not size then return nil, "its stat and tail did not answer as expected" end
             return sysx.tail(text, args.lines, math.tointeger(tonumber(size)), math.tointeger(tonumber(mtime)))
           end },
  -- grep -E there (GNU grep's regex is glibc's syntax): the lines, the count, the last `limit` matches.
  grep = { options = { icase = true, limit = true },
           argv = function(args, path)
             return { "/bin/sh", "-c", FILE_CHECK .. [[
n=$(grep -a -c '' -- "$1"); c=$(grep -a -c -E $4 -e "$2" -- "$1")
echo "$n $c"; grep -a -n -E $4 -e "$2" -- "$1" | tail -n "$3"]], "sh", path, args.pattern, tostring(args.limit),
                      args.icase and "-i" or "" }
           end,
           parse = function(out, args, _, path)
             local rest, why, kind = file_checked(out, path)
             if not rest then return nil, why, kind end
             local lines, count, matches = rest:match("^(%d+) (%d+)\n(.*)$")
             if not lines then return nil, "its grep did not answer as expected" end
             local res = { matches = {}, count = math.tointeger(tonumber(count)), lines = math.tointeger(tonumber(lines)),
                           partial = false }
             for n, text in matches:gmatch("(%d+):([^\n]*)\n") do
               res.matches[#res.matches + 1] = { line = math.tointeger(tonumber(n)), text = text:sub(1, MAX_TEXT_LINE) }
             end
             return res
           end },
  memory = { argv = function() return { "cat", "/proc/meminfo" } end,
             parse = function(out) return sysx.memory(out) end },
  load = { argv = function() return { "/bin/sh", "-c", "cat /proc/loadavg; cat /proc/uptime; getconf _NPROCESSORS_ONLN" } end,
           parse = function(out)
             local loadavg, uptime, cpus = out:match("^([^\n]*)\n([%d.]+)[^\n]*\n(%d+)")
             if not loadavg then return nil, "its /proc/loadavg, /proc/uptime and getconf did not answer as expected" end
             return sysx.load(loadavg, math.tointeger(tonumber(cpus)), tonumber(uptime))
           end },
  fs = { argv = function(_, path)
           return { "/bin/sh", "-c", "stat -f -c '%S %b %f %a %c %d' -- \"$1\" && df -P -- \"$1\" | tail -n 1 && cat /proc/mounts",
                    "sh", path }
         end,
         parse = function(out) return sysx.fs(out) end },
  -- Two calls: the mounts (chosen by the C code, as here), then stat -f of each.
  filesystems = { options = { all = true, network = true },
                  argv = function() return { "cat", "/proc/self/mountinfo" } end,
                  second = function(out, args)
                    local dirs = sysx.filesystems(out, nil, args.all, args.network)
                    local argv = { "/bin/sh", "-c", "for d; do stat -f -c '%S %b %f %a %c %d' -- \"$d\" 2>/dev/null || echo -; done", "sh" }
                    for _, d in ipairs(dirs) do argv[#argv + 1] = d end
                    return argv
                  end,
                  parse = function(out, args, first) return sysx.filesystems(first, out, args.all, args.network) end },
  processes = { options = { sort = true, limit = true, sample = true, match = true },
                argv = function(args) return { "/bin/sh", "-c", PROCESSES, "sh", string.format("%g", args.sample_s) } end,
                parse = function(out, args) return sysx.processes(out, args.sort, args.limit, args.match, args.sample_s) end },
}

-- Validates the options of sys.NAME with on; sys.processes' as its local call does.
local function sys_args(name, args)
  local fn = "sys." .. name
  local own = SYS[name].options or {}
  for k in pairs(args) do
    if not (k == "on" or k == "timeout" or (k == "limit" and not own.limit) or own[k]) then
      error(string.format("%s: unknown option '%s'", fn, tostring(k)), 0)
    end
  end
  if name == "filesystems" then return { all = args.all == true, network = args.network == true } end
  if name == "deleted_open" then
    local limit = math.tointeger(args.limit or 50)
    if not limit or limit < 1 then error(fn .. ": option 'limit' must be a whole number >= 1", 0) end
    if args.path ~= nil and type(args.path) ~= "string" then error(fn .. ": option 'path' must be a string", 0) end
    return { path = args.path, limit = limit }
  end
  if name == "largest" or name == "files" then
    return { given = args }   -- checked by the C code that replays the walk (sysx_largest, sysx_files)
  end
  if name == "tail" or name == "grep" then
    local n = math.tointeger(args[name == "tail" and "lines" or "limit"] or (name == "tail" and 50 or 100))
    if not n or n < 1 then
      error(string.format("%s: option '%s' must be a whole number >= 1", fn, name == "tail" and "lines" or "limit"), 0)
    end
    return { lines = n, limit = n, icase = args.icase == true }
  end
  if name ~= "processes" then return {} end
  local sort = args.sort or "memory"
  if sort ~= "memory" and sort ~= "cpu" then error(fn .. ": option 'sort' must be \"memory\" or \"cpu\"", 0) end
  local limit = math.tointeger(args.limit or 10)
  if not limit or limit < 1 then error(fn .. ": option 'limit' must be a whole number >= 1", 0) end
  return { sort = sort, limit = limit, match = args.match, sample_s = duration(args.sample, 0.25, fn) }
end

-- path: sys.fs's (tail's, grep's), given to the remote shell as $1; pattern: sys.grep's.
local function sys_on(name, args, path, pattern)
  local fn = "sys." .. name
  local own = sys_args(name, args)
  own.pattern = pattern
  local t, perr = target.parse(args.on)
  if not t then error(fn .. ": on = " .. perr, 0) end
  local eps, err, kind = endpoints(t, fn)
  if not eps then return nil, err, kind end
  local spec = SYS[name]
  local timeout = duration(args.timeout, 10, fn) + (own.sample_s or 0)
  local function one(ep)
    local cmd = spec.argv(own, path)
    local r, e, k = run_one(fn, t, ep, cmd, { quiet = true, timeout = timeout }, false)
    local where = string.format("%s on %s%s", fn, t.text, t.fleet and (" (" .. ep.name .. ")") or "")
    if k == "notfound" and ep.kind ~= "ssh" then
      return nil, where .. ": the target cannot give it: " .. e:sub(#where + 3), "unavailable"
    end
    if not r then return nil, e, k end
    local first
    if r and r.ok and spec.second then   -- a second call, from what the first brought back
      first, cmd = r.stdout, spec.second(r.stdout, own)
      r, e, k = run_one(fn, t, ep, cmd, { quiet = true, timeout = timeout }, false)
      if not r then return nil, e, k end
    end
    if not r.ok then
      return nil, string.format("%s: the target cannot give it: %s exited %s%s", where, cmd[1], tostring(r.code),
                                first_line(r.stderr) ~= "" and (": " .. first_line(r.stderr)) or ""), "unavailable"
    end
    local v, why, vkind = spec.parse(r.stdout, own, first, path)
    if not v then return nil, where .. ": " .. tostring(why), vkind or "unavailable" end
    v.host = ep.name
    return v
  end
  if not t.fleet then return one(eps[1]) end
  local limit = (name == "processes" or (spec.options or {}).limit) and DEFAULT_LIMIT or args.limit
  local res = { target = t.text, by_host = on_each(fn, eps, limit, one, {}), ok = {}, unreachable = {}, failed = {} }
  for h, v in pairs(res.by_host) do
    table.insert(not v.kind and res.ok or (UNREACHED[v.kind] and res.unreachable or res.failed), h)
  end
  for _, l in ipairs({ res.ok, res.unreachable, res.failed }) do table.sort(l) end
  return res
end

function M.sys_memory(args) return sys_on("memory", args) end
function M.sys_load(args) return sys_on("load", args) end
function M.sys_processes(args) return sys_on("processes", args) end
function M.sys_filesystems(args) return sys_on("filesystems", args) end
-- The calls on a path: sys.fs(path, opts), sys.tail(path, opts), sys.grep(path, regex, opts).
local function sys_on_path(name, path, args, pattern)
  if type(path) ~= "string" then error(string.format("sys.%s(path, { on = target }): path must be a string", name), 0) end
  return sys_on(name, args, path, pattern)
end
function M.sys_fs(path, args) return sys_on_path("fs", path, args) end
function M.sys_tail(path, args) return sys_on_path("tail", path, args) end
function M.sys_deleted_open(args) return sys_on("deleted_open", args) end
function M.sys_largest(path, args) return sys_on_path("largest", path, args) end
function M.sys_files(path, args)
  if type(args) == "table" and args.follow then   -- find gives a link's target size only by following them all
    return nil, string.format("sys.files on %s: follow = true is not available on a target (find there would "
                              .. "follow every link, not only the files')", tostring(args.on)), "unavailable"
  end
  return sys_on_path("files", path, args)
end
function M.sys_grep(path, pattern, args) return sys_on_path("grep", path, args, pattern) end

return M
