-- memory-pressure: the machine runs out of memory (OOM kills, crashing services, heavy swapping).
-- Measures memory and swap against thresholds, names the processes that hold it, looks for the
-- OOM killer's messages in the kernel log when it is readable, and offers to stop the largest
-- consumer (a service restart, or a signal to one process) as a confirmed action, only on
-- evidence: memory past the warning threshold, and a process that matches `match` (the service
-- the operator names), holds more than hog_pct, and is not one of this run's own ancestors (the
-- shell, the terminal, the CI job that started it). Without match, nothing is offered. On another
-- host (on = ssh://...) it measures and stops there; with service= the restart goes through the
-- service manager. Reads the leaking service's own log (out-of-memory errors) as the playbooks do.
local recipe = require "recipe"
local service = require "service"
local sys = require "sys"
local sh  = require "sh"

local LOG_CAUSES = {
  { pattern = "MemoryError|OutOfMemoryError|[Oo]ut of memory|Cannot allocate memory|heap out of memory|OOMKilled",
    code = "memory.app_out_of_memory", text = "the service runs out of memory" },
}

local function remote(ctx) return ctx.on ~= "local" and ctx.on or nil end

-- This run and the processes it descends from: never a candidate, whatever they hold (on another
-- host, none of them runs there).
local function ancestors(ctx)
  if remote(ctx) then return {} end
  local me = must(sh.read { "sh", "-c", "echo $PPID", quiet = true, timeout = 5 })
  local pid = math.tointeger(tonumber(me.stdout:match("%d+")))
  local parent = {}
  for _, p in ipairs(must(sys.processes { sort = "memory", limit = 100000, sample = 0 })) do parent[p.pid] = p.ppid end
  local set = {}
  while pid and pid > 0 and not set[pid] do
    set[pid] = true
    pid = parent[pid]
  end
  return set
end

return runbook {
  name     = "memory-pressure",
  summary  = "Memory or swap is nearly exhausted; the OOM killer may be at work",
  severity = "SEV2",
  description = "Symptoms: services crash or restart without a trace in their own logs, \"Out of memory: " ..
                "Killed process\" in the kernel log, high swap use, a slow machine.",

  inputs = {
    exit_wait = input.duration { default = "15s", help = "how long to wait for the process to exit after the signal" },
    warn     = input.int { default = 85, min = 1, max = 100, help = "percent of memory used that is a warning" },
    crit     = input.int { default = 95, min = 1, max = 100, help = "percent of memory used that is critical" },
    hog_pct  = input.int { default = 20, min = 1, max = 100, help = "a process above this percent of memory is a suspect" },
    match    = input.string { required = false, help = "a word of the command line of the processes that may be stopped " ..
                                                       "(the leaking service's); without it none is offered" },
    restart  = input.argv { required = false, help = "how to restart the service that leaks, if you know it (e.g. systemctl restart app)" },
    kernel_log = input.path { default = "/var/log/kern.log", help = "where the kernel's messages are kept" },
    on       = input.target { default = "local", env = "HOST_ON", help = "the host short of memory" },
    service  = input.string { required = false, help = "the leaking service's systemd unit (or Compose service): restarted through its manager" },
    log_unit = input.string { required = false, help = "the leaking service's journald unit, to read its log" },
    log_file = input.path { required = false, help = "the leaking service's log file" },
    log_service = input.string { required = false, help = "the leaking service's Compose service, to read its log" },
    since    = input.duration { default = "30m", help = "how far back to read the log" },
    timeout  = input.duration { default = "10s", help = "deadline of the log read" },
  },

  step "logs" {
    title   = "What does the service's log say?",
    explain = "A service that runs out of memory often says so (MemoryError, OutOfMemoryError, Cannot allocate " ..
              "memory) before the kernel kills it.",
    run = function(ctx)
      recipe.logs(ctx, { on = ctx.on, unit = ctx.log_unit, file = ctx.log_file, service = ctx.log_service,
                         since = ctx.since, timeout = ctx.timeout, what = "the service's log", causes = LOG_CAUSES })
    end,
  },

  step "memory" {
    title   = "How much memory and swap is left?",
    explain = "\"Used\" here is what is not available: caches the kernel can drop do not count.",
    run = function(ctx)
      local m = must(sys.memory { on = remote(ctx) })
      ctx.state.memory = m
      ctx.state.pressure = ctx:check("memory used", m.used_pct,
        { warn = "~:" .. ctx.warn, crit = "~:" .. ctx.crit, format = fmt.pct, code = "memory.high" }) ~= "OK"
      ctx:note("%s available of %s", fmt.bytes(m.available), fmt.bytes(m.total))
      if m.swap_total > 0 then
        ctx:check("swap used", m.swap_pct, { warn = "~:50", crit = "~:80", format = fmt.pct, code = "memory.swap" })
      end
    end,
  },

  step "processes" {
    title   = "Which processes hold it?",
    run = function(ctx)
      local top = must(sys.processes { sort = "memory", limit = 8, sample = 0, on = remote(ctx) })
      ctx:show(fmt.table(top, {
        { "rss", title = "memory", format = fmt.bytes, right = true },
        { "mem_pct", title = "%", format = fmt.pct, right = true },
        { "pid", right = true }, { "user" }, { "command" },
      }))
      if not ctx.match then
        return ctx:note("match= not given: no process will be offered to stop (name the service that leaks)")
      end
      local ours = ancestors(ctx)
      local candidates = must(sys.processes { match = ctx.match, sort = "memory", limit = 20, sample = 0, on = remote(ctx) })
      local hog
      for _, p in ipairs(candidates) do
        if not ours[p.pid] and p.mem_pct >= ctx.hog_pct then hog = p break end
      end
      if not hog then
        return ctx:ok("no process matching '%s' holds more than %d%% of memory", ctx.match, ctx.hog_pct)
      end
      ctx.state.hog = hog
      ctx:finding { code = "memory.hog", "%s (pid %d) holds %s, %s of memory", hog.command, hog.pid,
                    fmt.bytes(hog.rss), fmt.pct(hog.mem_pct) }
    end,
  },

  step "oom" {
    title   = "Has the OOM killer been at work?",
    explain = "The kernel logs every process it kills to free memory.",
    run = function(ctx)
      local log = sys.grep(ctx.kernel_log, "Out of memory|oom-kill|Killed process", { icase = true, limit = 5 })
      if not log then
        local r = sh.read { "dmesg", "--ctime", quiet = true, timeout = 5 }
        if not r or not r.ok then return ctx:note("the kernel log is not readable here (%s, dmesg)", ctx.kernel_log) end
        local hits = {}
        for line in r.stdout:gmatch("[^\n]+") do
          local l = line:lower()
          if l:find("out of memory", 1, true) or l:find("oom-kill", 1, true) then hits[#hits + 1] = line end
        end
        log = { count = #hits, matches = {} }
        for i = math.max(1, #hits - 4), #hits do log.matches[#log.matches + 1] = { text = hits[i] } end
      end
      if log.count == 0 then return ctx:ok("no OOM kills in the kernel log") end
      ctx:finding { code = "memory.oom_kills", "%d OOM killer messages; the last ones:", log.count }
      for _, m in ipairs(log.matches) do ctx:show(m.text) end
    end,
  },

  step "relieve" {
    title   = "Stop the largest consumer",
    explain = "Restarting the leaking service gives its memory back; without a restart command, the process " ..
              "is asked to exit (SIGTERM) and its supervisor, if any, starts it again.",
    run = function(ctx)
      local hog = ctx.state.hog
      if not hog then return ctx:ok("no process to stop") end
      if not ctx.state.pressure then
        return ctx:ok("memory is under %d%%: %s is large, but stopping it is not called for", ctx.warn, hog.command)
      end
      local blast = string.format("%s of memory freed; whatever %s was doing stops", fmt.bytes(hog.rss), hog.command)
      local argv, r
      if ctx.service and not ctx.restart then
        r = must(service.restart { on = ctx.on, name = ctx.service, blast = blast,
                                   summary = string.format("restart %s (its process %s holds %s)", ctx.service, hog.command, fmt.bytes(hog.rss)) })
      elseif ctx.restart then
        argv = {}
        for i, a in ipairs(ctx.restart) do argv[i] = a end
        argv.leave_running = true   -- a restart may start the daemon itself (not through systemd)
        argv.summary = string.format("restart the service (its process %s holds %s)", hog.command, fmt.bytes(hog.rss))
      else
        argv = { "kill", "-TERM", tostring(hog.pid) }
        argv.summary = string.format("send SIGTERM to %s (pid %d, %s)", hog.command, hog.pid, fmt.bytes(hog.rss))
      end
      if argv then
        argv.target, argv.blast, argv.on = hog.command, blast, remote(ctx)
        r = must(sh.action(argv))
      end
      if r.dry_run then return ctx:note("dry run: nothing stopped") end
      must(ctx:wait_until(hog.command .. " (pid " .. hog.pid .. ") has exited", function()
        local left = sys.processes { match = hog.cmdline, sample = 0, on = remote(ctx) }
        for _, p in ipairs(left or {}) do if p.pid == hog.pid then return false end end
        return true
      end, { timeout = ctx.exit_wait, every = 0.2 }))
    end,
  },

  step "verify" {
    title = "Is there memory again?",
    run = function(ctx)
      local m = must(sys.memory { on = remote(ctx) })
      local status = ctx:check("memory used", m.used_pct, { warn = "~:" .. ctx.warn, crit = "~:" .. ctx.crit, format = fmt.pct })
      if status == "CRITICAL" then
        return ctx:escalate("memory is still critical: add memory, or find the leak with the service's owners")
      end
      return ctx:resolved(string.format("%s available", fmt.bytes(m.available)))
    end,
  },
}
