-- mutating.lua - the documented list of commands that change state, for check's `mutating-probe`
-- rule (lint.lua): a probe (`sh.read`) runs without a question, so one of these there is a change
-- made behind the operator's back. An argv whose words are not all known (a variable) is judged on
-- the words that are. `M.LIST` is what `runbook check --explain mutating-probe` prints.
local M = {}

-- Commands that change something whatever their arguments.
local ALWAYS = {
  rm = true, rmdir = true, unlink = true, shred = true, kill = true, pkill = true, killall = true,
  truncate = true, mv = true, dd = true, mkfs = true, wipefs = true, fdisk = true, parted = true,
  shutdown = true, reboot = true, halt = true, poweroff = true, chmod = true, chown = true,
  umount = true, swapoff = true, fstrim = true,
}

-- Commands whose first verb (the first word not starting with "-") says whether they change state.
local VERBS = {
  systemctl = { start = true, stop = true, restart = true, reload = true, enable = true, disable = true,
                kill = true, mask = true, unmask = true, ["try-restart"] = true, ["reload-or-restart"] = true,
                isolate = true, ["daemon-reload"] = true, poweroff = true, reboot = true },
  kubectl = { delete = true, rollout = true, scale = true, apply = true, patch = true, edit = true,
              drain = true, cordon = true, uncordon = true, taint = true, label = true, annotate = true,
              create = true, replace = true, set = true, autoscale = true },
  docker = { rm = true, rmi = true, restart = true, stop = true, kill = true, start = true, pause = true,
             unpause = true, prune = true, update = true },
  ["docker-compose"] = { restart = true, stop = true, down = true, rm = true, kill = true, up = true,
                         start = true, pause = true },
  ip = {},     -- judged below: `ip link set`, `ip route add|del`...
}

-- Read-only forms of a mutating verb.
local READONLY = { kubectl = { rollout = { status = true, history = true } } }

local REDIS = { FLUSHALL = true, FLUSHDB = true, DEL = true, UNLINK = true, SHUTDOWN = true, SET = true,
                EXPIRE = true, RENAME = true, ["CONFIG SET"] = true, ["CONFIG REWRITE"] = true,
                ["CONFIG RESETSTAT"] = true, ["CLIENT KILL"] = true, ["SCRIPT FLUSH"] = true,
                ["REPLICAOF"] = true, ["SLAVEOF"] = true }

local SQL = { "UPDATE", "DELETE", "DROP", "TRUNCATE", "ALTER", "INSERT", "CREATE", "GRANT", "REVOKE",
              "VACUUM", "REINDEX", "CLUSTER", "pg_terminate_backend", "pg_cancel_backend" }

-- The text of the explanation (check --explain mutating-probe).
M.LIST = [[rm, rmdir, unlink, shred, kill, pkill, killall, truncate, mv, dd, mkfs(.*), wipefs, fdisk, parted,
chmod, chown, umount, swapoff, fstrim, shutdown, reboot, halt, poweroff;
systemctl start|stop|restart|reload|enable|disable|kill|mask|unmask|try-restart|reload-or-restart|
  isolate|daemon-reload; service NAME start|stop|restart|reload|force-reload;
kubectl delete|rollout (not rollout status|history)|scale|apply|patch|edit|drain|cordon|uncordon|taint|
  label|annotate|create|replace|set|autoscale;
docker rm|rmi|restart|stop|kill|start|pause|unpause|update|... prune (also docker container|image|volume|
  network|system rm|prune|...); docker-compose and docker compose restart|stop|down|rm|kill|up|start|pause;
redis-cli FLUSHALL|FLUSHDB|DEL|UNLINK|SHUTDOWN|SET|EXPIRE|RENAME|CONFIG SET|CONFIG REWRITE|
  CONFIG RESETSTAT|CLIENT KILL|SCRIPT FLUSH|REPLICAOF|SLAVEOF (any case);
psql -c|--command with UPDATE|DELETE|DROP|TRUNCATE|ALTER|INSERT|CREATE|GRANT|REVOKE|VACUUM|REINDEX|
  CLUSTER or pg_terminate_backend|pg_cancel_backend;
ip link|addr|route|rule|neigh add|del|delete|set|flush|change|replace;
a wrapper in front is looked through: sudo, doas, env (and NAME=value), timeout DURATION, nice, ionice,
nohup, stdbuf, chroot DIR, nsenter ...; sh|bash|dash|zsh -c "..." is split at ; && || | and newlines and
each command judged.]]

local function base(word) return word and (word:match("([^/]+)$") or word) end

-- Drops the wrappers in front of the command: argv from the command itself on.
local WRAPPERS = { sudo = true, doas = true, nice = true, ionice = true, nohup = true, stdbuf = true,
                   env = true, timeout = true, nsenter = true, chroot = true, setsid = true, exec = true,
                   command = true, time = true }
local function unwrap(argv)
  local i = 1
  while argv[i] and WRAPPERS[base(argv[i])] do
    local w = base(argv[i])
    i = i + 1
    while type(argv[i]) == "string" and (argv[i]:sub(1, 1) == "-" or argv[i]:match("^[%a_][%w_]*=")) do
      i = i + 1
    end
    if (w == "timeout" or w == "chroot") and argv[i] then i = i + 1 end   -- the duration, the directory
  end
  return table.move(argv, i, #argv, 1, {})
end

-- Options whose value is the next word (kubectl -n NS, docker -H HOST, redis-cli -h HOST ...).
local VALUED = { ["-n"] = true, ["--namespace"] = true, ["--context"] = true, ["--kubeconfig"] = true,
                 ["--cluster"] = true, ["-H"] = true, ["--host"] = true, ["-f"] = true, ["--file"] = true,
                 ["-p"] = true, ["--project-name"] = true, ["--project-directory"] = true, ["--env-file"] = true,
                 ["-h"] = true, ["-a"] = true, ["-u"] = true, ["--user"] = true, ["--pass"] = true, ["-s"] = true,
                 ["-M"] = true, ["-r"] = true, ["-i"] = true, ["-c"] = true }

-- The first word after argv[1] that is neither an option nor an option's value, and its index.
local function verb(argv, from)
  local i = from or 2
  while i <= #argv do
    local a = argv[i]
    if a == false then return nil end
    if a:sub(1, 1) ~= "-" then return a, i end
    i = i + (VALUED[a] and 2 or 1)
  end
end

local function judge_redis(argv)
  local one, at = verb(argv)
  if not one then return nil end
  one = one:upper()
  local two = type(argv[at + 1]) == "string" and (one .. " " .. argv[at + 1]:upper())
  if two and REDIS[two] then return "redis-cli " .. two end
  if REDIS[one] then return "redis-cli " .. one end
end

local function judge_sql(argv)
  for i = 2, #argv do
    local a, sql = argv[i], nil
    if a == "-c" or a == "--command" then sql = argv[i + 1]
    elseif type(a) == "string" then sql = a:match("^%-%-command=(.*)") or a:match("^%-c(.+)") end
    if type(sql) == "string" then
      for _, k in ipairs(SQL) do
        if (" " .. sql:lower() .. " "):find("[^%w_]" .. k:lower() .. "[^%w_]") then return "psql -c " .. k end
      end
    end
  end
end

local SHELLS = { sh = true, bash = true, dash = true, zsh = true, ksh = true }

-- Words of a shell command line, roughly (quotes grouped, no expansion).
local function shell_words(line)
  local words, word, i, n, quote = {}, nil, 1, #line, nil
  while i <= n do
    local c = line:sub(i, i)
    if quote then
      if c == quote then quote = nil else word = (word or "") .. c end
    elseif c == "'" or c == '"' then quote, word = c, word or ""
    elseif c:match("%s") then if word then words[#words + 1] = word; word = nil end
    else word = (word or "") .. c end
    i = i + 1
  end
  if word then words[#words + 1] = word end
  return words
end

-- A shell string: each command of it (split at ; && || | & newlines, and inside $( )), judged.
function M.judge_shell(script)
  for part in (script:gsub("[;|&\n()`]", "\0")):gmatch("[^%z]+") do
    local reason = M.judge(shell_words(part))
    if reason then return reason end
  end
end

-- Why argv (an array of words, false for one not known) changes state, or nil.
function M.judge(argv)
  argv = unwrap(argv)
  local cmd = base(argv[1])
  if not cmd then return nil end
  if ALWAYS[cmd] or cmd:match("^mkfs%.") then return cmd end
  if SHELLS[cmd] then
    for i = 2, #argv do
      if argv[i] == "-c" and type(argv[i + 1]) == "string" then return M.judge_shell(argv[i + 1]) end
    end
    return nil
  end
  if cmd == "redis-cli" then return judge_redis(argv) end
  if cmd == "psql" then return judge_sql(argv) end
  if cmd == "service" then
    local action = argv[3]
    if action == "start" or action == "stop" or action == "restart" or action == "reload" or action == "force-reload" then
      return "service " .. action
    end
    return nil
  end
  if cmd == "ip" then
    local obj, at = verb(argv)
    local act = obj and verb(argv, at + 1)
    if act and ({ add = true, del = true, delete = true, set = true, flush = true, change = true, replace = true })[act] then
      return "ip " .. obj .. " " .. act
    end
    return nil
  end
  local v, at = verb(argv)
  if cmd == "docker" and v == "compose" then cmd, v, at = "docker-compose", verb(argv, at + 1) end
  if cmd == "docker" and ({ container = true, image = true, volume = true, network = true, system = true,
                            builder = true })[v or ""] then
    local sub = verb(argv, at + 1)
    if sub == "prune" or sub == "rm" or sub == "remove" or VERBS.docker[sub or ""] then return "docker " .. v .. " " .. sub end
    return nil
  end
  local verbs = VERBS[cmd]
  if not verbs or not v or not verbs[v] then return nil end
  local ro = READONLY[cmd] and READONLY[cmd][v]
  if ro and ro[verb(argv, at + 1) or ""] then return nil end
  return cmd .. " " .. v
end

return M
