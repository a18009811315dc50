-- memory-pressure.drill.lua - how `runbook drill memory-pressure` rehearses this runbook: a process
-- that holds a lot of memory (tail keeps a line that never ends), in a session of its own so that
-- the drill removes it and its helpers as one process group, under a name of its own (a link to
-- tail in the lab's directory), which is what the runbook is told to match: nothing else on the
-- machine is ever a candidate.
local sys = require "sys"

local HOG_BYTES = "400M"
local HOG_NAME = "runbook-lab-hog"
local group   -- the hog's process group

-- The hog's processes: those of its group, under its name.
local function hog_processes()
  local found = {}
  if not group then return found end
  for _, p in ipairs(sys.processes { match = HOG_NAME, sample = 0, limit = 1000 } or {}) do
    if p.ppid == group then found[#found + 1] = p end
  end
  return found
end

local function start_hog(lab)
  local exe = lab.dir .. "/" .. HOG_NAME
  lab.sh("mkdir -p " .. lab.shq(lab.dir) .. " && ln -sf \"$(command -v tail)\" " .. lab.shq(exe))
  group = lab.spawn(string.format("(head -c %s /dev/zero; exec sleep 600) | %s >/dev/null", HOG_BYTES, lab.shq(exe)))
  -- The fault is injected once the memory is held, not while it is still being read.
  lab.settle(function()
    for _, p in ipairs(hog_processes()) do if p.rss >= 380 * 1024 * 1024 then return true end end
    return false
  end, 10)
end

local function end_hog(lab)
  lab.end_spawned()
  group = nil
end

return {
  standalone = true,   -- needs no lab servers
  modes = { hog = { what = "a process grabbing " .. HOG_BYTES .. " of memory", breaks = start_hog,
                    expect = { findings = { "memory.high", "memory.hog" }, offers = { "relieve" } } } },
  -- The thresholds are low because the lab's hog is small beside the machine's memory; match, the
  -- hog's path in this lab's directory, keeps every other process (another lab's hog too) out of reach.
  inputs = function(lab) return { warn = 1, hog_pct = 1, match = lab.dir .. "/" .. HOG_NAME } end,
  -- Healthy when the hog (a child of the drill's shell) is gone.
  healthy = function()
    for _, p in ipairs(hog_processes()) do
      if p.command == HOG_NAME then
        return false, string.format("tail (pid %d) still holds %s", p.pid, fmt.bytes(p.rss))
      end
    end
    return true
  end,
  repair = end_hog,
  cleanup = end_hog,
}
