-- auth-failures: users are logged out or refused ("401 Unauthorized", "invalid token") after a
-- deploy or on some requests only. Reads the 401/403 rate from the access log against the hour
-- before, then the two causes the playbooks name: replicas signing and checking tokens with
-- different secrets (compared by hash: the secret and its hash are never printed or recorded), and
-- clocks that disagree (a token issued by one replica is "not yet valid" or "expired" on another).
-- It changes nothing: the fix (one secret everywhere, NTP) is the team's, with this evidence.
local logs = require "logs"
local sh   = require "sh"

local REJECTED = "\" (401|403) "

local function words(s)
  local out = {}
  for w in (s or ""):gmatch("[^,%s]+") do out[#out + 1] = w end
  return out
end

-- sha256sum behind a first line of its own: a probe's record keeps its first line of output, and
-- a hash of a secret is not to be recorded (a weak secret can be found from it).
local HASHES = { "sh", "-c", "echo 'SHA-256 of the secret (compared, never shown)'; exec sha256sum -- \"$@\"", "sh" }

local function hashes_of(files, on, timeout)
  local argv = { table.unpack(HASHES) }
  for _, f in ipairs(files) do argv[#argv + 1] = f end
  argv.quiet, argv.timeout, argv.on = true, timeout, on
  return must(sh.read(argv))
end

-- The SHA-256 of each replica's copy of the secret, by replica name (quiet: never echoed).
local function secret_hashes(ctx)
  local by = {}
  if ctx.secret_file then
    local r = hashes_of({ ctx.secret_file }, ctx.replicas ~= "local" and ctx.replicas or nil, ctx.timeout)
    if r.by_host then
      for _, host in ipairs(r.ok) do by[host] = r.by_host[host].stdout:match("\n(%x+)") end
      for _, host in ipairs(r.failed) do by[host] = false end
      for _, host in ipairs(r.unreachable) do by[host] = false end
    else
      by[ctx.replicas] = r.ok and r.stdout:match("\n(%x+)") or false
    end
  end
  local files = words(ctx.secret_files)
  if #files > 0 then
    local r = hashes_of(files, nil, ctx.timeout)
    for _, f in ipairs(files) do by[f] = false end
    for hash, file in r.stdout:gmatch("(%x+)  ([^\n]+)") do by[file] = hash end
  end
  return by
end

return runbook {
  name     = "auth-failures",
  summary  = "Logins or API calls are refused (401/403): a secret that differs between replicas, or clock skew",
  severity = "SEV2",
  description = "Symptoms: a rise of 401/403 responses, users logged out at random, \"invalid signature\" or " ..
                "\"token expired\" / \"not yet valid\" in the application's logs, often right after a deploy.",

  inputs = {
    access_log   = input.path { default = "/var/log/nginx/access.log", help = "the access log of the proxy or the application" },
    on           = input.target { default = "local", env = "AUTH_LOG_ON", help = "where the access log is" },
    since        = input.duration { default = "1h", help = "the baseline window before the recent one" },
    recent       = input.duration { default = "10m", help = "the recent window" },
    min_rate     = input.int { default = 5, min = 1, help = "401/403 per minute in the recent window that is a problem" },
    replicas     = input.target { default = "local", env = "AUTH_REPLICAS", help = "the replicas (inventory:GROUP, k8s://NS/pods?l=...)" },
    secret_file  = input.path { required = false, help = "the signing secret's file on each replica (compared by hash)" },
    -- runbook: allow plain-secret (paths of the secret's copies, not the secret)
    secret_files = input.string { required = false, help = "or: the replicas' copies here, comma-separated paths" },
    clock        = input.argv { default = { "date", "+%s" }, help = "prints a replica's clock in seconds since the epoch (run on replicas)" },
    max_skew     = input.duration { default = "5s", help = "clock difference that breaks token validation" },
    timeout      = input.duration { default = "5s", help = "deadline of each probe" },
  },

  step "rate" {
    title   = "How many requests are refused, now and before?",
    explain = "A rise of 401/403 in the last minutes against the hour before: something changed for every user " ..
              "(a secret, a clock, a deploy), not one user's typo.",
    run = function(ctx)
      local r = must(logs.read { on = ctx.on, file = ctx.access_log, since = ctx.since + ctx.recent, lines = 50000,
                                 timeout = ctx.timeout })
      local rate = logs.rate(r.lines, REJECTED, { recent = ctx.recent, baseline = ctx.since, label = "401/403" })
      local top = logs.top(r.lines, REJECTED, 5)
      if #top > 0 then
        local rows = {}
        for i, g in ipairs(top) do rows[i] = { count = g.count, request = (g.example:match('"([A-Z]+ [^ "]+)') or g.text):sub(1, 80) } end
        ctx:show(fmt.table(rows, { { "count", right = true }, { "request", title = "refused requests (grouped)" } }))
      end
      if rate.recent >= ctx.min_rate and rate.recent >= 3 * rate.baseline then
        ctx.state.rising = true
        return ctx:finding { code = "auth.rejections", "%s", rate.text }
      end
      ctx:ok("%s", rate.text)
    end,
  },

  step "secret" {
    title   = "Do all replicas sign with the same secret?",
    explain = "Compared by SHA-256, which is never shown: replicas with different secrets reject each other's " ..
              "tokens, so a user's requests fail whenever the balancer picks another replica.",
    run = function(ctx)
      if not ctx.secret_file and not ctx.secret_files then
        return ctx:note("set secret_file=PATH (with replicas=TARGET) or secret_files=A,B to compare the replicas' secrets")
      end
      local by = secret_hashes(ctx)
      local groups, order, unread = {}, {}, {}
      for name, hash in pairs(by) do
        if hash then
          if not groups[hash] then groups[hash] = {}; order[#order + 1] = hash end
          table.insert(groups[hash], name)
        else unread[#unread + 1] = name end
      end
      if #unread > 0 then table.sort(unread) ctx:note("could not read the secret on %s", table.concat(unread, ", ")) end
      if #order <= 1 then return ctx:ok("the %d replicas read hold the same secret", #order == 1 and #groups[order[1]] or 0) end
      table.sort(order, function(a, b) return #groups[a] > #groups[b] end)
      local parts = {}
      for i, hash in ipairs(order) do
        table.sort(groups[hash])
        parts[i] = string.format("version %d on %s", i, table.concat(groups[hash], ", "))
      end
      ctx.state.cause = true
      ctx:finding { code = "auth.secret_mismatch", "the replicas hold %d different signing secrets: %s", #order,
                    table.concat(parts, "; ") }
    end,
  },

  step "clock" {
    title   = "Do the replicas' clocks agree?",
    explain = "Tokens carry issued-at and expiry times: a replica whose clock is ahead or behind by more than the " ..
              "validation's leeway rejects fresh tokens as \"not yet valid\" or \"expired\".",
    run = function(ctx)
      -- This machine's clock, then each replica's (the command the team gives, run there).
      local here = must(sh.read { "date", "+%s", quiet = true, timeout = ctx.timeout })
      local base = tonumber(here.stdout:match("%d+"))
      local argv = { table.unpack(ctx.clock) }
      argv.quiet, argv.timeout, argv.on = true, ctx.timeout, ctx.replicas ~= "local" and ctx.replicas or nil
      local r = must(sh.read(argv))
      local rows, worst = {}, 0
      local function add(name, res)
        local t = res and res.stdout and tonumber(res.stdout:match("%d+"))
        if not t or not base then return end
        local skew = t - base
        worst = math.max(worst, math.abs(skew))
        rows[#rows + 1] = { replica = name, skew = skew }
      end
      if r.by_host then for _, host in ipairs(r.ok) do add(host, r.by_host[host]) end else add(ctx.replicas, r) end
      if #rows == 0 then return ctx:note("no replica's clock could be read") end
      ctx:show(fmt.table(rows, { { "replica" }, { "skew", title = "seconds from here", right = true } }))
      if worst > ctx.max_skew then
        ctx.state.cause = true
        return ctx:finding { code = "auth.clock_skew", "a replica's clock is %d s off (more than %s): check NTP (timedatectl, chronyc tracking)",
                             worst, fmt.duration(ctx.max_skew) }
      end
      ctx:ok("clocks agree within %d s", worst)
    end,
  },

  step "verdict" {
    title = "What explains the refusals?",
    run = function(ctx)
      if ctx.state.rising or ctx.state.cause then
        return ctx:escalate("tokens are or will be refused: one signing secret on every replica and synchronised clocks are the fixes " ..
                            "(see the findings); then restart the replicas that differ")
      end
      return ctx:resolved("no rise of refused requests")
    end,
  },
}
