-- disk-full: a filesystem is full or nearly full ("No space left on device").
-- Finds which filesystem (space or inodes), what grows on it (largest directories, files that
-- were deleted but are still held open, old logs), offers the usual clean-ups as confirmed
-- actions, then measures again. On another host (on = ssh://..., inventory:, a container) it
-- measures there (sys.fs, sys.filesystems, du); the walks that choose files to delete run here only.
-- Reads the log of the service whose writes fail first, as the playbooks do.
local recipe = require "recipe"
local sys    = require "sys"
local sh     = require "sh"

local LOG_CAUSES = {
  { pattern = "No space left on device|ENOSPC", code = "disk.enospc", text = "writes fail: no space left on device" },
  { pattern = "Disk quota exceeded|EDQUOT", code = "disk.quota", text = "writes fail: a disk quota is exceeded" },
  { pattern = "Read-only file system|EROFS", code = "disk.readonly", text = "writes fail: the filesystem went read-only" },
}

local function remote(ctx) return ctx.on ~= "local" and ctx.on or nil end

-- The file walks (sys.largest, sys.files, sys.deleted_open) run on this host only: on a target,
-- says so and what to run there instead.
local function here_only(ctx, instead)
  if not remote(ctx) then return false end
  ctx:note("on %s this step is not available (it walks files on this host); there, run: %s", ctx.on, instead)
  return true
end

-- The largest directories of mount on the target, measured by du there (one filesystem, two levels).
local function largest_there(ctx, mount)
  local r = must(sh.read { "du", "-x", "-B1", "-d", "2", mount, on = ctx.on, quiet = true, timeout = 30 })
  local entries = {}
  for bytes, path in r.stdout:gmatch("(%d+)\t([^\n]+)") do entries[#entries + 1] = { bytes = tonumber(bytes), path = path } end
  table.sort(entries, function(a, b) return a.bytes > b.bytes end)
  return { entries = { table.unpack(entries, 1, math.min(12, #entries)) }, partial = not r.ok, unvisited = {} }
end

local function percent_line(fs)
  return string.format("%s (%s) is %s full: %s used of %s, %s free; inodes %s used",
    fs.mount, fs.device, fmt.pct(fs.used_pct), fmt.bytes(fs.used), fmt.bytes(fs.size),
    fmt.bytes(fs.avail), fmt.pct(fs.inodes_pct))
end

-- Files of a listing that live on the filesystem under examination.
local function paths_of(listing)
  local paths, bytes = {}, 0
  for _, f in ipairs(listing.files) do
    paths[#paths + 1] = f.path
    bytes = bytes + f.bytes
  end
  return paths, bytes
end

local function file_table(files, limit)
  local rows = {}
  for i = 1, math.min(#files, limit or 10) do rows[i] = files[i] end
  return fmt.table(rows, {
    { "bytes", title = "size", format = fmt.bytes, right = true },
    { "age", title = "age", format = fmt.duration, right = true },
    { "path", title = "file" },
  })
end

-- Offers to delete the files of a listing, showing exactly which ones and how much they free.
local function offer_delete(ctx, listing, what, code)
  if listing.count == 0 then
    ctx:ok("no %s", what)
    return
  end
  ctx:finding { code = code, "%d %s, %s in all", listing.count, what, fmt.bytes(listing.total_bytes) }
  ctx:show(file_table(listing.files))
  local paths, bytes = paths_of(listing)
  local argv = { "rm", "-f", "--" }
  for _, p in ipairs(paths) do argv[#argv + 1] = p end
  argv.summary = string.format("delete %d %s (frees %s)", #paths, what, fmt.bytes(bytes))
  argv.blast = string.format("%d files, %s", #paths, fmt.bytes(bytes))
  -- runbook: allow action-without-target (the gate lists every file deleted; there is no one target)
  local done = must(sh.action(argv))
  if done.dry_run then return ctx:note("dry run: %d files left in place", #paths) end
  ctx:ok("deleted %d files, %s freed", #paths, fmt.bytes(bytes))
end

return runbook {
  name     = "disk-full",
  summary  = "A filesystem is full or nearly full",
  severity = "SEV2",
  description = "Symptoms: \"No space left on device\" in logs, failing writes, a DiskSpaceLow alert.",

  inputs = {
    path      = input.path { default = "/", help = "a path on the filesystem to examine" },
    threshold = input.int { default = 90, min = 1, max = 100, help = "percent used (space or inodes) that counts as full" },
    logs      = input.path { default = "/var/log", help = "where the logs live" },
    log_age   = input.duration { default = "7d", help = "rotated logs older than this may be deleted" },
    log_max   = input.int { default = 1024 * 1024 * 1024, min = 0, help = "active logs larger than this (bytes) may be truncated" },
    tmp       = input.path { default = "/tmp", help = "temporary files directory" },
    tmp_age   = input.duration { default = "2d", help = "temporary files older than this may be deleted" },
    on        = input.target { default = "local", env = "DISK_ON", help = "the host whose filesystem is full" },
    log_unit  = input.string { required = false, help = "the journald unit of the service whose writes fail, to read its log" },
    log_file  = input.path { required = false, help = "the log file of the service whose writes fail" },
    log_service = input.string { required = false, help = "the Compose service whose writes fail, to read its log" },
    since     = input.duration { default = "30m", help = "how far back to read the log" },
    timeout   = input.duration { default = "10s", help = "deadline of the log read" },
  },

  step "logs" {
    title   = "What does the log of the service say?",
    explain = "No space left on device (ENOSPC) is the disk; a quota exceeded or a read-only filesystem look the " ..
              "same to the application and are not fixed by deleting files.",
    run = function(ctx)
      recipe.logs(ctx, { on = ctx.on, unit = ctx.log_unit, file = ctx.log_file, service = ctx.log_service,
                         since = ctx.since, timeout = ctx.timeout, what = "the service's log", causes = LOG_CAUSES })
    end,
  },

  step "usage" {
    title   = "Which filesystem is full?",
    explain = "Space and inodes both count: a filesystem with free bytes but no free inodes is just as full.",
    run = function(ctx)
      local fs = must(sys.fs(ctx.path, { on = remote(ctx) }))
      ctx.state.fs = fs
      local full = fs.used_pct >= ctx.threshold or fs.inodes_pct >= ctx.threshold
      if full then ctx:finding { code = "disk.full", "%s", percent_line(fs) } else ctx:ok("%s", percent_line(fs)) end
      if fs.inodes_pct >= ctx.threshold then
        ctx:finding { code = "disk.inodes", "out of inodes: many small files (sessions, caches, mail queues) rather than big ones" }
      end
      for _, other in ipairs(must(sys.filesystems { on = remote(ctx) })) do
        if other.mount ~= fs.mount and (other.used_pct >= ctx.threshold or other.inodes_pct >= ctx.threshold) then
          ctx:finding { code = "disk.other_full", "also full: %s", percent_line(other) }
        end
      end
    end,
  },

  step "largest" {
    title   = "What is taking the space?",
    explain = "The largest directories on this filesystem (it does not cross into other mounts).",
    run = function(ctx)
      local mount = ctx.state.fs and ctx.state.fs.mount or ctx.path
      local big = remote(ctx) and largest_there(ctx, mount) or must(sys.largest(mount, { depth = 2, limit = 12, timeout = "15s" }))
      ctx:show(fmt.table(big.entries, {
        { "bytes", title = "size", format = fmt.bytes, right = true },
        { "path", title = "directory" },
      }))
      if big.partial then
        ctx:note("partial: the walk stopped at its deadline; sizes are lower bounds")
        if #big.unvisited > 0 then ctx:note("not measured: %s", table.concat(big.unvisited, ", ")) end
      end
    end,
  },

  step "deleted" {
    title   = "Deleted files still held open",
    explain = "A deleted log that a process still writes keeps its space until the process closes it or restarts.",
    run = function(ctx)
      local mount = ctx.state.fs and ctx.state.fs.mount or ctx.path
      if here_only(ctx, "lsof +L1 " .. mount) then return end
      local held = must(sys.deleted_open { path = mount })
      if #held == 0 then return ctx:ok("no deleted files held open on %s", mount) end
      local total = 0
      for _, f in ipairs(held) do total = total + f.bytes end
      ctx:finding { code = "disk.deleted_open", "%d deleted files still hold %s", #held, fmt.bytes(total) }
      ctx:show(fmt.table(held, {
        { "bytes", title = "size", format = fmt.bytes, right = true },
        { "pid", title = "pid", right = true },
        { "command", title = "process" },
        { "path", title = "file" },
      }))
      ctx:note("restart or signal (logrotate: HUP) the processes above to release the space")
    end,
  },

  step "old-logs" {
    title   = "Delete old rotated logs",
    explain = "Logs nobody has written to for log_age (rotated, archived or abandoned) are the safest space to reclaim.",
    run = function(ctx)
      if here_only(ctx, "find " .. ctx.logs .. " -name '*.log*' -mtime +N -size +0") then return end
      local old = must(sys.files(ctx.logs, { pattern = "*.log*", older_than = ctx.log_age, min_size = 1, limit = 500 }))
      offer_delete(ctx, old, "logs older than " .. fmt.duration(ctx.log_age), "disk.old_logs")
    end,
  },

  step "big-logs" {
    title   = "Truncate oversized active logs",
    explain = "Truncating keeps the file (and the writer's handle) but drops its content. It cannot be undone.",
    run = function(ctx)
      if here_only(ctx, "find " .. ctx.logs .. " -name '*.log' -size +" .. ctx.log_max .. "c") then return end
      local big = must(sys.files(ctx.logs, { pattern = "*.log", min_size = ctx.log_max + 1, limit = 50 }))
      if big.count == 0 then return ctx:ok("no active log larger than %s", fmt.bytes(ctx.log_max)) end
      ctx:finding { code = "disk.big_logs", "%d logs larger than %s", big.count, fmt.bytes(ctx.log_max) }
      ctx:show(file_table(big.files))
      local paths, bytes = paths_of(big)
      local argv = { "truncate", "-s", "0", "--" }
      for _, p in ipairs(paths) do argv[#argv + 1] = p end
      argv.summary = string.format("truncate %d logs to zero bytes (frees %s)", #paths, fmt.bytes(bytes))
      argv.irreversible, argv.target = true, ctx.logs
      local done = must(sh.action(argv))
      if done.dry_run then return ctx:note("dry run: %d logs left as they are", #paths) end
      ctx:ok("truncated %d logs", #paths)
    end,
  },

  step "tmp" {
    title   = "Clean old temporary files",
    explain = "Files under the temp directory that nobody touched for tmp_age.",
    run = function(ctx)
      if here_only(ctx, "find " .. ctx.tmp .. " -type f -mtime +N") then return end
      local old = must(sys.files(ctx.tmp, { older_than = ctx.tmp_age, min_size = 1, limit = 1000 }))
      offer_delete(ctx, old, "temporary files older than " .. fmt.duration(ctx.tmp_age), "disk.old_tmp")
    end,
  },

  step "recheck" {
    title   = "Is there room again?",
    run = function(ctx)
      local fs = must(sys.fs(ctx.path, { on = remote(ctx) }))
      if fs.used_pct < ctx.threshold and fs.inodes_pct < ctx.threshold then
        return ctx:resolved(percent_line(fs))
      end
      return ctx:escalate(percent_line(fs) ..
        ": still above " .. ctx.threshold .. "%; grow the volume or move data off it")
    end,
  },
}
