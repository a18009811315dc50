-- sandbox.lua - the environment a runbook runs in.
-- Only what is listed here exists; reading or assigning any other global raises. Nothing here can
-- reach the world except through the native modules, whose primitives are bounded, confirmed where
-- they act, and recorded. No io, os.execute, package, debug, string.dump, binary chunks or C loaders.
local core   = require "core"
local dsl    = require "dsl"
local render = require "render"

local M = {}

-- ("").dump would reach it through the string metatable otherwise.
string.dump = nil
-- getmetatable("") would hand a runbook the host's own string table (and the metatable itself):
-- replacing string.format or the metatable's __index there changes, or crashes, the engine.
getmetatable("").__metatable = false

-- While a runbook's top level runs, primitives refuse: loading only declares.
local loading = false
function M.set_loading(v) loading = v end

-- Set by `exec`, which will run what it loads: a runbook's require then starts opening the
-- module's libraries in the background (core.prefetch, see stdlib/modules.c).
local prefetch = false
function M.set_prefetch(v) prefetch = v end

local function copy(t, except)
  local c = {}
  for k, v in pairs(t) do if not (except and except[k]) then c[k] = v end end
  return c
end

-- proxy -> the table behind it, for the REPL's completion (which must list fields without calling
-- any metamethod); weak, so that it keeps nothing alive.
local behind = setmetatable({}, { __mode = "k" })
local prepares = setmetatable({}, { __mode = "k" })
function M.fields_of(proxy)
  if prepares[proxy] then prepares[proxy]() end
  return behind[proxy]
end

-- An empty proxy, so that assigning an existing field (sh.read = ...) raises too; its metatable is
-- protected so that setmetatable cannot lift the checks. prepare (optional) fills t on first use.
local function strict(name, t, prepare)
  local proxy = setmetatable({}, {
    __index = function(_, k)
      if prepare then prepare() end
      local v = t[k]
      if v == nil then error(string.format("%s has no field '%s'", name, tostring(k)), 2) end
      return v
    end,
    __newindex = function(_, k) error(string.format("%s is read-only (assigning '%s')", name, tostring(k)), 2) end,
    __pairs = function()
      if prepare then prepare() end
      return next, t, nil
    end,
    __metatable = false,
  })
  behind[proxy], prepares[proxy] = t, prepare
  return proxy
end

-- A primitive's argument error names the runbook's line, not this file's: called in tail position
-- from the wrapper below, level 2 is the runbook code that called the primitive.
local function blame_caller(ok, ...)
  if ok then return ... end
  local e = ...
  if type(e) == "string" then error(e, 2) end
  error(e, 0)   -- control signals (Ctrl-C, a declined action) travel unchanged
end

-- Wraps a module: read-only, strict, and its functions refuse to run at load time.
local guarded_cache = {}

-- The modules written in Lua on top of the native ones (stdlib/NAME.lua, embedded with the
-- rest of the library), with the native modules they use: a runbook requires them as it does the
-- native ones, and gets them wrapped the same way. They run with the host's own modules, not in
-- the sandbox: like C, they are the library, which the sandbox trusts.
local LUA_MODULES = { prometheus = { "http" }, recipe = { "http", "sh", "sys" }, service = { "sh" },
                      logs = { "sh", "sys" }, deploy = { "sh" } }

-- The native modules that module `name` is, or uses.
local function natives(name) return LUA_MODULES[name] or { name } end

-- The real module is required on the first use of one of its fields, not by `require`: loading a
-- runbook (for list, show, check) then never maps libpq or libcurl (see stdlib/modules.c).
local function guarded(modname)
  if guarded_cache[modname] then return guarded_cache[modname] end
  local fields, loaded = {}, false
  local function load_module()
    if loaded then return end
    -- A task of parallel() yields here while a prefetch finishes (a Lua module's require opens
    -- its native ones, which would otherwise wait without yielding).
    for _, native in ipairs(natives(modname)) do core.module_wait(native) end
    if loaded then return end
    local mod = require(modname)   -- a failure raises here, and the next use tries again
    loaded = true
    for k, f in pairs(mod) do
      if type(f) == "function" then
        local qualified = modname .. "." .. k
        fields[k] = function(...)
          if loading then
            error(qualified .. ": cannot run while the runbook is loading; call it inside a step's run function", 2)
          end
          return blame_caller(pcall(f, ...))
        end
      else
        fields[k] = f
      end
    end
  end
  guarded_cache[modname] = strict("module '" .. modname .. "'", fields, load_module)
  return guarded_cache[modname]
end

-- What runbooks may require: the native modules (stdlib/modules.c), then the Lua ones.
local module_names, lua_names = core.modules(), {}
for name in pairs(LUA_MODULES) do lua_names[#lua_names + 1] = name end
table.sort(lua_names)
table.move(lua_names, 1, #lua_names, #module_names + 1, module_names)
local allowed_modules = {}
for _, name in ipairs(module_names) do allowed_modules[name] = true end

-- Their names, for the REPL (globals, help, the banner).
function M.modules() return table.move(module_names, 1, #module_names, 1, {}) end

local function sandbox_require(name)
  if type(name) ~= "string" then error("require expects a module name", 2) end
  if not allowed_modules[name] then
    local names = {}
    for n in pairs(allowed_modules) do names[#names + 1] = n end
    table.sort(names)
    error(string.format("module '%s' is not available to runbooks (available: %s)", name,
                        table.concat(names, ", ")), 2)
  end
  if prefetch then
    for _, native in ipairs(natives(name)) do core.prefetch(native) end
  end
  return guarded(name)
end

-- Control signals (Ctrl-C, a declined action, abort) pass through a runbook's pcall untouched.
local function pass_control(ok, ...)
  if not ok and core.is_control((...)) then error((...), 0) end
  return ok, ...
end

local function sandbox_pcall(f, ...) return pass_control(pcall(f, ...)) end

local function sandbox_xpcall(f, handler, ...)
  return pass_control(xpcall(f, function(e)
    if core.is_control(e) then return e end
    return handler(e)
  end, ...))
end

-- Resuming a coroutine registers it with the host so that Ctrl-C reaches a loop inside it.
local function track(co, ok, ...)
  core.thread_pop()
  if not ok and core.is_control((...)) then error((...), 0) end
  return ok, ...
end

local function sandbox_resume(co, ...)
  core.thread_push(co)
  return track(co, coroutine.resume(co, ...))
end

local function sandbox_wrap(f)
  local co = coroutine.create(f)
  return function(...)
    local function unwrap(ok, ...)
      if not ok then error((...), 0) end
      return ...
    end
    return unwrap(sandbox_resume(co, ...))
  end
end

local function sandbox_print(...)
  local parts = table.pack(...)
  for i = 1, parts.n do parts[i] = tostring(parts[i]) end
  core.out(table.concat(parts, "\t", 1, parts.n) .. "\n")
end

-- opts.repl: the REPL's environment, where assigning a new global defines it (a line's locals do
-- not outlive the line); reading an undefined global still raises.
function M.new(opts)
  local repl = opts and opts.repl
  local env = {
    assert = assert, error = error, ipairs = ipairs, next = next, pairs = pairs,
    rawequal = rawequal, rawget = rawget, rawlen = rawlen, rawset = rawset, select = select,
    tonumber = tonumber, tostring = tostring, type = type, setmetatable = setmetatable,
    getmetatable = getmetatable, _VERSION = _VERSION,
    pcall = sandbox_pcall, xpcall = sandbox_xpcall, print = sandbox_print, parallel = core.parallel,
    check = strict("check", copy(require "check")),
    require = sandbox_require,
    string = strict("string", copy(string, { dump = true })),
    table = strict("table", copy(table)),
    math = strict("math", copy(math)),
    utf8 = strict("utf8", copy(utf8)),
    os = strict("os", { time = os.time, clock = os.clock, date = os.date, difftime = os.difftime, getenv = os.getenv }),
    runbook = dsl.runbook, step = dsl.step, input = strict("input", copy(dsl.input)), must = dsl.must,
    fmt = strict("fmt", copy(render.fmt)),
  }
  local co = copy(coroutine)
  co.resume, co.wrap = sandbox_resume, sandbox_wrap
  env.coroutine = strict("coroutine", co)
  env.load = function(chunk, name, mode, e)
    if mode ~= nil and mode ~= "t" then error("load: only text chunks are allowed", 2) end
    return load(chunk, name, "t", e == nil and env or e)
  end
  env._G = env
  return setmetatable(env, {
    __metatable = false,   -- setmetatable(_G, nil) would lift the strict globals
    __index = function(_, k) error("undefined global '" .. tostring(k) .. "'", 2) end,
    __newindex = function(t, k, v)
      if repl then rawset(t, k, v) return end
      error("assignment to undefined global '" .. tostring(k) .. "' (declare it local)", 2)
    end,
  })
end

return M
