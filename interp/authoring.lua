-- authoring.lua - writing runbooks: `runbook new NAME [--from RUNBOOK] [PATH]` starts one (a
-- template that passes `check --strict`, or a copy of a found runbook under a new name), and
-- `runbook test [NAME...]` is a team's CI: check --strict, then each drill mode, ending with
-- exactly "N passed, N failed".
local core   = require "core"
local loader = require "loader"

local M = {}

local function usage(msg)
  core.err("runbook: " .. msg .. "\n")
  return 2
end

-- A word for /bin/sh, single-quoted (also luals.lua's).
local function shq(s) return "'" .. s:gsub("'", "'\\''") .. "'" end
M.shq = shq

-- The template. Every part carries a one-line comment; it passes `check --strict` as written.
local TEMPLATE = [=[
-- %s.lua - what this runbook is for. Started with `runbook new`: `runbook check --strict %s` lints it,
-- `runbook exec %s --dry-run` shows what it would do, `runbook test %s` is the check for CI
-- (with the drill modes of %s.drill.lua, beside this file).
local sh   = require "sh"                      -- commands: sh.read looks (runs freely), sh.action asks first
local http = require "http"                    -- HTTP: http.get is a probe, http.post an action

return runbook {
  name     = "%s",                             -- must match the file name
  summary  = "The service does not answer",    -- one line, shown by `runbook list`
  severity = "SEV3",                           -- SEV1..SEV4 or P0..P3
  owner    = "your-team",                      -- who to ask about this runbook

  inputs = {                                   -- name=value on the command line, else $env, else default
    url     = input.url      { default = "http://127.0.0.1:8080/health", env = "SERVICE_URL",
                               help = "the service's health endpoint" },          -- a probe's target
    restart = input.argv     { default = { "systemctl", "restart", "myservice" },
                               help = "the command that restarts the service" }, -- an action's command
    timeout = input.duration { default = "5s", help = "how long one request may take" },  -- seconds
  },

  step "health" {                              -- a probe: it looks and changes nothing
    title   = "Does the service answer?",      -- shown as the step's heading
    explain = "GET the health endpoint: a 2xx ends the run, anything else leads to the restart.",
    run = function(ctx)                        -- ctx: the inputs (ctx.url), ctx.state, ctx:ok/finding/...
      local r, err = http.get(ctx.url, { timeout = ctx.timeout })          -- nil, err, kind: nothing answered
      if r and r.ok then return ctx:resolved("the service answers " .. r.status) end  -- ends the run
      ctx:finding { code = "service.down", "%%s does not answer: %%s", ctx.url, r and r.problem or err }  -- a coded finding
      ctx.state.down = true                    -- ctx.state is shared by the steps of a run
    end,
  },

  step "restart" {                             -- an action: shown at the gate, run only on `yes`
    title   = "Restart the service",
    explain = "A restart is the quickest way back when the service itself is stuck.",
    run = function(ctx)
      if not ctx.state.down then return ctx:ok("the service answers: no restart") end  -- ✔ and on
      local argv = {}                          -- a copy of the input's command...
      for i, word in ipairs(ctx.restart) do argv[i] = word end
      argv.summary, argv.target = "restart the service", ctx.url  -- ...with what the gate shows
      local done = must(sh.action(argv))       -- asks first; declined, the step is skipped
      if done.dry_run then return end          -- --dry-run only shows the command
      must(ctx:wait_until("the service answers", function()            -- polls, bounded in time
        local r = http.get(ctx.url, { timeout = ctx.timeout })
        return r and r.ok
      end, { timeout = 60, every = 2 }))
      return ctx:resolved("restarted")         -- ends the run (ctx:escalate(msg) hands it over)
    end,
  },

}
]=]

-- The drill beside it (NAME.drill.lua): valid as written, its one mode commented out so that
-- `runbook test` runs no drill until the mode is filled in for the team's own lab or service.
local DRILL_TEMPLATE = [=[
-- %s.drill.lua - how `runbook drill %s` rehearses the runbook %s.lua beside it: break something,
-- run the runbook against it, judge the run by finding codes and offered actions, then repair.
-- Loaded in a sandbox as the runbook is; `lab` (each function's argument) is what it may do: see
-- doc/drills.md. `runbook test %s` runs every mode; `runbook drill %s --mode M` runs one.
return {
  modes = {                                    -- one entry per way the system is broken
    -- down = {                                -- a mode: runbook drill %s --mode down
    --   what   = "the lab's service stopped", -- one line, shown when the drill starts
    --   breaks = function(lab) lab.control("stop", "api") end,  -- breaks it: the lab's pg|redis|api|nginx
    --   expect = { findings = { "service.down" },  -- the finding codes the runbook must report
    --              offers = { "restart" },         -- steps whose action must reach the gate
    --              never = {} },                   -- steps whose action must not
    -- },
  },
  inputs = function(lab, mode)                 -- the runbook's inputs, aimed at what the drill broke
    return { url = lab.state.api.url .. "/health", restart = lab.lab_cmd("restart", "api"), timeout = "2s" }
  end,
  healthy = function(lab) return lab.service_healthy() end,  -- after the run: is it healthy again?
  repair = function(lab) lab.control("restart", "api") end,  -- puts it back when the runbook did not
}
]=]

local readable = loader.readable

-- The file `runbook new NAME [PATH]` writes: PATH, PATH/NAME.lua when PATH is a directory, or
-- runbooks/NAME.lua. The file's stem must be NAME (the loader requires it).
local function target_path(name, path)
  if not path then return "runbooks/" .. name .. ".lua" end
  if path:sub(-1) == "/" or os.execute("test -d " .. shq(path)) then return (path:gsub("/+$", "")) .. "/" .. name .. ".lua" end
  local stem = path:match("([^/]+)%.lua$")
  if stem ~= name then return nil, "the file must be named " .. name .. ".lua (the loader checks the name), got " .. path end
  return path
end

-- A found runbook's source, renamed: its `name = "OLD"` becomes NAME; with its drill's source (as
-- is: a drill does not name its runbook) when it has one.
local function copy_of(from, name)
  local path, err = loader.resolve(from)
  if not path then return nil, err end
  local rb, lerr = loader.load(path)
  if not rb then return nil, "--from " .. from .. ": " .. lerr end
  local quoted = rb.name:gsub("%p", "%%%0")
  local src, n = rb.source:gsub("(name%s*=%s*)([\"'])" .. quoted .. "%2", "%1%2" .. name:gsub("%%", "%%%%") .. "%2", 1)
  if n == 0 then return nil, "--from " .. from .. ": cannot find its name = \"" .. rb.name .. "\" to rename" end
  local drill = loader.resolve_drill(rb.name, path)
  return src, path, drill and core.read_file(drill, 16 * 1024 * 1024)
end

-- runbook new NAME [--from RUNBOOK] [PATH]
function M.new(args)
  local name, from, path
  local i = 1
  while i <= #args do
    local a = args[i]
    if a == "--from" then
      i = i + 1
      from = args[i]
      if not from then return usage("--from needs a runbook name or file (see 'runbook list')") end
    elseif a:match("^%-%-from=") then from = a:match("^%-%-from=(.*)$")
    elseif a:sub(1, 1) == "-" then return usage("unknown option " .. a .. " (see 'runbook new --help')")
    elseif not name then name = a
    elseif not path then path = a
    else return usage("unexpected argument '" .. a .. "' (see 'runbook new --help')") end
    i = i + 1
  end
  if not name then return usage("new needs a NAME (see 'runbook new --help')") end
  if not name:match("^[%w][%w_.-]*$") or name:match("%.lua$") then
    return usage("new: NAME must be a word like disk-full, got '" .. name .. "'")
  end
  local file, err = target_path(name, path)
  if not file then return usage("new: " .. err) end
  if readable(file) then
    return usage("new: " .. file .. " exists; not overwriting it (choose another NAME or PATH, or delete it first)")
  end
  local drill_file = file:gsub("%.lua$", ".drill.lua")
  if readable(drill_file) then
    return usage("new: " .. drill_file .. " exists; not overwriting it (choose another NAME or PATH, or delete it first)")
  end
  local src, origin, drill_src
  if from then
    src, origin, drill_src = copy_of(from, name)
    if not src then return usage("new: " .. origin) end
  else
    src = TEMPLATE:format(name, name, name, name, name, name)
    drill_src = DRILL_TEMPLATE:format(name, name, name, name, name, name)
  end
  local dir = file:match("^(.*)/[^/]+$")
  if dir and dir ~= "" then os.execute("mkdir -p -- " .. shq(dir)) end
  for path, text in pairs { [file] = src, [drill_file] = drill_src or false } do
    if text then
      local f, ferr = io.open(path, "wb")
      if not f then return usage("new: cannot write " .. path .. ": " .. tostring(ferr)) end
      f:write(text)
      f:close()
    end
  end
  core.out(string.format("wrote %s%s\n%s" ..
                         "next: edit it, then `runbook check --strict %s` and `runbook exec %s --dry-run`\n",
                         file, origin and (" (a copy of " .. origin .. ")") or "",
                         drill_src and ("wrote " .. drill_file .. " (its drill: `runbook drill`, `runbook test`)\n") or "",
                         file, file))
  return 0
end

-------------------------------------------------------------------------------------- test
-- The drill modes of the runbook at path (its NAME.drill.lua, see lab/drill.lua), or nil, err
-- when its drill file is there but wrong.
local function drill_modes(path)
  local rb, drill, err = require("drill").find(path)
  if not drill then
    if rb and err then return nil, err end
    return {}
  end
  return require("drill").modes(drill)
end

-- runbook test [NAME...]: check --strict each, then `runbook drill NAME --mode M --auto --yes` for
-- each drill mode (in a process of its own, as a team's CI would run it).
function M.test(args)
  local targets = {}
  for _, a in ipairs(args) do
    if a:sub(1, 1) == "-" then return usage("unknown option " .. a .. " (see 'runbook test --help')") end
    targets[#targets + 1] = a
  end
  if #targets == 0 then
    for _, entry in ipairs(loader.all()) do targets[#targets + 1] = entry.path end
    if #targets == 0 then
      return usage("test: no runbooks found in: " .. table.concat(loader.search_path(), ", "))
    end
  end
  local passed, failed = 0, 0
  local function result(ok, what)
    core.out((ok and "PASS  " or "FAIL  ") .. what .. "\n")
    if ok then passed = passed + 1 else failed = failed + 1 end
  end
  local check_one = require("cli").check_one
  for _, target in ipairs(targets) do
    local ok = check_one(target, true)
    result(ok, "check --strict " .. target)
    local path = loader.resolve(target)
    local rb = ok and path and loader.load(path)
    local modes, err = {}, nil
    if rb then modes, err = drill_modes(path) end
    if not modes then
      core.err("runbook test: " .. err .. "\n")
      result(false, "drill " .. rb.name)
    end
    for _, mode in ipairs(modes or {}) do
      -- The runbook's file, not its name: the drill is the one beside it.
      local cmd = string.format("%s drill %s --mode %s --auto --yes", shq(core.exe()), shq(path), shq(mode))
      local dok = os.execute(cmd .. " </dev/null")
      result(dok == true, string.format("drill %s --mode %s", rb.name, mode))
    end
  end
  core.out(string.format("%d passed, %d failed\n", passed, failed))
  return failed == 0 and 0 or 1
end

return M
