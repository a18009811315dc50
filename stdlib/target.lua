-- target.lua - where a probe or an action runs: the one parser of target strings, the hosts a
-- target stands for (an Ansible inventory group, the pods of a selector), and host lists folded
-- the way ClusterShell's `clush -b` shows them (web[01-12]).
--
--   local                                  this machine (the default)
--   ssh://[user@]host[:port]               one host over OpenSSH (~/.ssh/config applies)
--   inventory:GROUP                        the hosts of an Ansible inventory group, each over SSH
--   compose://[PROJECT_DIR:]SERVICE        a Docker Compose service (docker compose / docker-compose exec)
--   k8s://[CONTEXT/]NAMESPACE/KIND/NAME    one Kubernetes object (kubectl exec KIND/NAME)
--   k8s://NAMESPACE/pods?l=SELECTOR        every pod a label selector matches
--
-- The library's own module (stdlib/reach.lua, interp/dsl.lua, interp/lock.lua), not a runbook's.
local M = {}

M.FORMS = "local, ssh://[user@]host[:port], inventory:GROUP, compose://[PROJECT_DIR:]SERVICE, " ..
          "k8s://[CONTEXT/]NAMESPACE/KIND/NAME or k8s://NAMESPACE/pods?l=SELECTOR"

local NAME = "^[%w][%w_.-]*$"            -- a host name, group, service, namespace, object name
local SELECTOR = "^[%w][%w_.,=!/()%- ]*$" -- a label selector: app=api,tier!=cache,env in (a,b)

local function bad(s, why)
  return nil, string.format("'%s' is not a target (%s); the accepted forms are %s", s, why, M.FORMS)
end

local function parse_ssh(s, rest)
  local user, hostport = rest:match("^([^@]+)@(.+)$")
  if not user then hostport = rest end
  if user and not user:match(NAME) then return bad(s, "bad user name") end
  local host, port = hostport:match("^%[([%x:]+)%]:?(%d*)$")   -- [::1]:2222
  if not host then host, port = hostport:match("^([^:]+):?(%d*)$") end
  if not host or not host:match(NAME) and not host:match("^[%x:]+$") then return bad(s, "bad host name") end
  port = port ~= "" and math.tointeger(tonumber(port)) or nil
  if port and (port < 1 or port > 65535) then return bad(s, "port out of range") end
  local name = (user and (user .. "@") or "") .. host .. (port and (":" .. port) or "")
  return { kind = "ssh", text = s, hosts = { { kind = "ssh", name = name, host = host, port = port, user = user } } }
end

local function parse_compose(s, rest)
  local dir, service = rest:match("^(.*):([^:]+)$")
  if not dir then service = rest end
  if dir == "" then return bad(s, "empty project directory") end
  if not service:match(NAME) then return bad(s, "bad service name") end
  return { kind = "compose", text = s, hosts = { { kind = "compose", name = service, service = service, dir = dir } } }
end

local function parse_k8s(s, rest)
  local path, query = rest:match("^([^?]*)%?(.*)$")
  path = path or rest
  local parts = {}
  for p in (path .. "/"):gmatch("([^/]*)/") do parts[#parts + 1] = p end
  for _, p in ipairs(parts) do
    if not p:match(NAME) then return bad(s, "empty or bad path element '" .. p .. "'") end
  end
  if query then
    local sel = query:match("^l=(.+)$")
    if #parts ~= 2 or parts[2] ~= "pods" or not sel or not sel:match(SELECTOR) then
      return bad(s, "a selector is written k8s://NAMESPACE/pods?l=app=api")
    end
    return { kind = "k8s", text = s, fleet = true, namespace = parts[1], selector = sel }
  end
  local context
  if #parts == 4 then context = table.remove(parts, 1) end
  if #parts ~= 3 then return bad(s, "k8s:// takes [CONTEXT/]NAMESPACE/KIND/NAME") end
  local ns, kind, name = parts[1], parts[2], parts[3]
  return { kind = "k8s", text = s, context = context, namespace = ns,
           hosts = { { kind = "k8s", name = kind .. "/" .. name, object = kind .. "/" .. name, namespace = ns,
                       context = context } } }
end

-- Parses a target string: a table { kind, text, fleet, hosts (when known without asking anyone) },
-- or nil, err naming the accepted forms.
function M.parse(s)
  if type(s) ~= "string" then return bad(tostring(s), "not a string") end
  if s == "local" then return { kind = "local", text = s } end
  local rest = s:match("^ssh://(.+)$")
  if rest then return parse_ssh(s, rest) end
  rest = s:match("^inventory:(.+)$")
  if rest then
    if not rest:match(NAME) then return bad(s, "bad group name") end
    return { kind = "inventory", text = s, fleet = true, group = rest }
  end
  rest = s:match("^compose://(.+)$")
  if rest then return parse_compose(s, rest) end
  rest = s:match("^k8s://(.+)$")
  if rest then return parse_k8s(s, rest) end
  return bad(s, "unknown form")
end

------------------------------------------------------------------------------------- inventory
-- The hosts of a group in ansible-inventory's --list JSON: its own and its children's, in order,
-- each once.
function M.group_hosts(inv, group)
  if type(inv[group]) ~= "table" then return nil end
  local out, seen, visiting = {}, {}, {}
  local function walk(g)
    if visiting[g] then return end
    visiting[g] = true
    local node = inv[g] or {}
    for _, h in ipairs(node.hosts or {}) do
      if not seen[h] then seen[h] = true; out[#out + 1] = h end
    end
    for _, c in ipairs(node.children or {}) do walk(c) end
  end
  walk(group)
  return out
end

-- The SSH endpoints of a group, honouring ansible_host, ansible_port and ansible_user.
function M.inventory_hosts(inv, group)
  local names = M.group_hosts(inv, group)
  if not names then return nil end
  local vars = (inv._meta or {}).hostvars or {}
  local out = {}
  for _, name in ipairs(names) do
    local v = vars[name] or {}
    out[#out + 1] = { kind = "ssh", name = name, host = tostring(v.ansible_host or name),
                      port = math.tointeger(tonumber(v.ansible_port)), user = v.ansible_user and tostring(v.ansible_user) }
  end
  return out
end

-------------------------------------------------------------------------------------- folding
-- Splits "web012.dc" into "web", "012", ".dc": the last run of digits is the range's.
local function split_name(h)
  local pre, num, post = h:match("^(.-)(%d+)(%D*)$")
  if not pre then return h, nil, "" end
  return pre, num, post
end

-- Folds host names as clush -b does: "web[01-03,07],db1". Names without digits stay as they are.
function M.fold(hosts)
  local buckets, order = {}, {}
  for _, h in ipairs(hosts) do
    local pre, num, post = split_name(h)
    local key = num and (pre .. "\0" .. post) or ("\1" .. h)
    if not buckets[key] then buckets[key] = { pre = pre, post = post, nums = {} }; order[#order + 1] = key end
    if num then table.insert(buckets[key].nums, num) end
  end
  table.sort(order)
  local out = {}
  for _, key in ipairs(order) do
    local b = buckets[key]
    if #b.nums == 0 then out[#out + 1] = b.pre
    elseif #b.nums == 1 then out[#out + 1] = b.pre .. b.nums[1] .. b.post
    else
      table.sort(b.nums, function(x, y)
        local a, c = tonumber(x), tonumber(y)
        if a ~= c then return a < c end
        return #x < #y
      end)
      local ranges, i = {}, 1
      while i <= #b.nums do
        local j = i
        while j < #b.nums and tonumber(b.nums[j + 1]) == tonumber(b.nums[j]) + 1 and #b.nums[j + 1] == #b.nums[i] do
          j = j + 1
        end
        ranges[#ranges + 1] = i == j and b.nums[i] or (b.nums[i] .. "-" .. b.nums[j])
        i = j + 1
      end
      out[#out + 1] = b.pre .. "[" .. table.concat(ranges, ",") .. "]" .. b.post
    end
  end
  return table.concat(out, ",")
end

return M
