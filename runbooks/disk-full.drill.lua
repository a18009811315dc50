-- disk-full.drill.lua - how `runbook drill disk-full` rehearses this runbook: a small filesystem
-- (a tmpfs under the lab's directory) nearly full, with an old rotated log and a live one.
local sys = require "sys"

local function disk_dir(lab) return lab.dir .. "/disk" end

local function write_bytes(lab, path, bytes)
  lab.sh(string.format("head -c %d /dev/zero | tr '\\0' x > %s", bytes, lab.shq(path)))
end

local function fill_disk(lab)
  if lab.uid ~= 0 then
    lab.fail("the disk-full drill mounts a small tmpfs, which needs root: run it as root, or inside " ..
             "`unshare --user --map-root-user --mount`")
  end
  local d = disk_dir(lab)
  lab.sh("mkdir -p " .. lab.shq(d) .. " && mount -t tmpfs -o size=8m runbook-drill " .. lab.shq(d))
  lab.sh("mkdir -p " .. lab.shq(d .. "/logs") .. " " .. lab.shq(d .. "/tmp"))
  write_bytes(lab, d .. "/logs/app.log.1", 5 * 1024 * 1024)
  lab.sh("touch -d '30 days ago' " .. lab.shq(d .. "/logs/app.log.1"))
  write_bytes(lab, d .. "/logs/app.log", 2 * 1024 * 1024 + 512 * 1024)
end

local function unmount_disk(lab) lab.sh("umount " .. lab.shq(disk_dir(lab)) .. " 2>/dev/null", { check = false }) end

return {
  standalone = true,   -- needs no lab servers
  modes = { full = { what = "an 8 MiB filesystem 95% full: an old rotated log and a live one", breaks = fill_disk,
                     expect = { findings = { "disk.full", "disk.old_logs" }, offers = { "old-logs" } } } },
  inputs = function(lab)
    local d = disk_dir(lab)
    return { path = d, logs = d .. "/logs", tmp = d .. "/tmp", threshold = 80 }
  end,
  healthy = function(lab)
    -- no logs directory: the drill's filesystem is not mounted
    if not lab.sh("test -d " .. lab.shq(disk_dir(lab) .. "/logs"), { check = false }) then return true end
    local fs, err = sys.fs(disk_dir(lab))
    if not fs then return false, err end
    if fs.used_pct >= 80 then return false, string.format("%s is %.0f%% full", fs.mount, fs.used_pct) end
    return true
  end,
  repair = unmount_disk,
  cleanup = unmount_disk,
}
