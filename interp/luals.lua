-- luals.lua - `runbook doc --luals DIR`: Lua language server definitions generated from the API
-- reference (doc.lua, doc_lang.lua), so that editors (VS Code, Neovim, Emacs with LuaLS) complete
-- and check runbooks: one `---@meta` file per module (sh.lua, sys.lua, ...: require "sh" resolves
-- to it), runbook.lua for the language's globals (runbook, step, input, must, parallel, ctx, fmt,
-- check), and a .luarc.json that points the server at DIR and at Lua 5.4 without io/package/debug.
local doc = require "doc"

local M = {}

local function plain(md) return (md:gsub("`", "")) end
local function oneline(s) return (plain(s):gsub("%s*\n%s*", " ")) end
local function ident(s) return (s:gsub("[^%w_]", "_")) end

-- The type of an option: its declared type (4th element), else what its default or the type table says.
local function option_type(o)
  if o[4] then return o[4] end
  if o[3]:find("deadline", 1, true) or o[3]:find("seconds, or a duration", 1, true) then return "number|string" end
  local d = o[2]
  if d == "true" or d == "false" then return "boolean" end
  if d:match("^%-?%d+$") then return "integer" end
  if tonumber(d) then return "number" end
  if d:sub(1, 1) == '"' then return "string" end
  if d == "{}" then return doc.types.options[o[1]] or "table" end
  return doc.types.options[o[1]] or "any"
end

-- Call shape: "sys.fs(path, { OPTIONS })" -> params { "path", "opts" }, "sh.read { argv..., OPTIONS }" ->
-- one table parameter (with an array part when it says "word...").
local function shape(fn)
  local head, parens = fn.call:match("^([%w_.:]+)%((.*)%)$")
  if head then
    local params = {}
    for p in (parens .. ","):gmatch("%s*(.-)%s*,") do
      if p:find("OPTIONS", 1, true) then params[#params + 1] = { "opts", "opts" }
      elseif p:match("%.%.%.$") then params[#params + 1] = { "...", "any" }
      elseif p ~= "" then params[#params + 1] = { p, doc.types.params[p] or "any" } end
    end
    return { head = head, params = params }
  end
  local thead, body = fn.call:match("^([%w_.:]+)%s*{(.*)}$")
  if thead then
    local array = body:match("([%w_]+)%.%.%.")
    return { head = thead, table_arg = true, array = array }
  end
  return { head = fn.call:match("^([%w_.:]+)") or fn.name, params = {} }
end

-- The fields of the first `{ a, b, c }` of a returns text (top level only), for a result class.
local function result_fields(returns)
  local t = returns:match("`(%b{})")
  if not t then return nil end
  local fields, depth, seen = {}, 0, {}
  local inner = t:sub(2, -2)
  local i = 1
  while i <= #inner do
    local c = inner:sub(i, i)
    if c == "{" then depth = depth + 1; i = i + 1
    elseif c == "}" then depth = depth - 1; i = i + 1
    elseif depth == 0 and c:match("[%a_]") then
      local w = inner:match("^[%w_]+", i)
      if not seen[w] then fields[#fields + 1] = w end
      seen[w] = true
      i = i + #w
      local value = inner:match("^%s*=%s*[^,{}]*", i)    -- `dry_run = true`, `role = "primary" | ...`
      if value then i = i + #value end
    else i = i + 1 end
  end
  return #fields > 0 and fields or nil
end

-- The name of an entry's result class (what emit_function declares for it), or its rtype.
local function result_class(fn)
  if fn.rtype then return fn.rtype end
  if fn.returns:find("(see below)", 1, true) then return fn.name:match("^[%w_]+") .. ".result" end
  return result_fields(fn.returns) and (fn.name:gsub(":", ".") .. ".result") or "table"
end

-- The class (module.conn, ctx) of a method entry "conn:query" / "ctx:ok", or nil for a function.
local function class_of(mod, fn)
  local obj = shape(fn).head:match("^([%w_]+):")
  if not obj then return nil end
  if obj == "conn" then return mod.name .. ".conn" end
  return obj
end

-- "sys.fs" -> "sys.fs"; a method: "pg.conn:query" -> class name + method.
local function emit_function(out, mod, fn, by_name)
  local sh = shape(fn)
  local base = fn.name:gsub(":", ".")
  local cls = class_of(mod, fn)
  -- options class
  local opts_class
  if #fn.options > 0 then
    opts_class = base .. (sh.table_arg and ".args" or ".opts")
    local parent
    for _, o in ipairs(fn.options) do
      if o[1] == "..." then
        local from = o[3]:match("`([%w_.]+)`")
        if from and by_name[from] and #by_name[from].options > 0 then
          local fsh = shape(by_name[from])
          parent = from .. (fsh.table_arg and ".args" or ".opts")
        end
      end
    end
    out[#out + 1] = "---@class " .. opts_class .. (parent and (": " .. parent) or "")
    if sh.array then out[#out + 1] = "---@field [integer] " .. (sh.array == "step" and "step.decl" or "string") ..
                                      " the " .. sh.array .. (sh.array == "step" and "s, in order" or " words") end
    for _, o in ipairs(fn.options) do
      if o[1] ~= "..." then
        out[#out + 1] = string.format("---@field %s? %s %s%s", o[1], option_type(o), oneline(o[3]),
                                      o[2] ~= "" and (" (default " .. o[2] .. ")") or "")
      end
    end
    out[#out + 1] = ""
  elseif sh.array then
    opts_class = base .. ".args"
    out[#out + 1] = "---@class " .. opts_class
    out[#out + 1] = "---@field [integer] string the command's words"
    out[#out + 1] = ""
  end
  -- result class
  local rtype = fn.rtype
  local same = fn.returns:match("^the result of `([%w_.]+)`") or fn.returns:match("^as `([%w_.]+)`")
  if not rtype and same and by_name[same] then rtype = result_class(by_name[same]) end
  if not rtype and fn.returns:find("(see below)", 1, true) and mod.notes and result_fields(mod.notes) then
    rtype = mod.name .. ".result"
  end
  if not rtype then
    local fields = result_fields(fn.returns)
    if fields then
      rtype = base .. ".result"
      out[#out + 1] = "---@class " .. rtype
      for _, f in ipairs(fields) do out[#out + 1] = "---@field " .. f .. " any" end
      out[#out + 1] = ""
    else rtype = "table" end
  end
  -- the function
  out[#out + 1] = "---" .. oneline(fn.summary)
  out[#out + 1] = "---"
  out[#out + 1] = "---`" .. plain(doc.signature(fn)):gsub("`", "") .. "`"
  if fn.generic then out[#out + 1] = "---@generic " .. fn.generic end
  local names = {}
  local params = fn.params or sh.params or {}
  if sh.table_arg and not fn.params then params = { { "args", opts_class or "table" } } end
  local vararg = false
  for _, p in ipairs(params) do
    local pname, ptype = p[1], p[2]
    if ptype == "opts" and vararg then   -- conn:call(cmd, arg..., { OPTIONS }): Lua has no parameter after ...
      if opts_class then out[#out] = out[#out] .. ", then an optional " .. opts_class .. " table" end
    elseif ptype == "opts" then
      if opts_class then out[#out + 1] = "---@param opts? " .. opts_class .. " options" end
    else
      vararg = vararg or pname == "..."
      local optional = ptype:sub(-1) == "?" and "?" or ""
      out[#out + 1] = string.format("---@param %s%s %s", pname, pname == "..." and "" or optional,
                                    (ptype:gsub("%?$", "")))
    end
    if (ptype ~= "opts" or opts_class) and not (vararg and pname ~= "...") then names[#names + 1] = pname end
  end
  if rtype ~= "nil" then
    local fail = #fn.kinds > 0
    out[#out + 1] = string.format("---@return %s%s %s", rtype, fail and "|nil" or "", "result # " .. oneline(fn.returns))
    if fail then
      out[#out + 1] = "---@return string? err # \"<what> <target>: <cause>\""
      out[#out + 1] = "---@return string? kind # " .. table.concat(fn.kinds, ", ")
    end
  end
  local owner = cls and ident(cls) or (mod.global and "" or ident(mod.name))
  local fname = fn.name:match("[.:]([%w_]+)$") or fn.name
  if cls then
    out[#out + 1] = string.format("function %s:%s(%s) end", owner, fname, table.concat(names, ", "))
  elseif owner == "" then
    out[#out + 1] = string.format("function %s(%s) end", fname, table.concat(names, ", "))
  else
    out[#out + 1] = string.format("function %s.%s(%s) end", owner, fname, table.concat(names, ", "))
  end
  out[#out + 1] = ""
end

local function header(out, mod)
  out[#out + 1] = "-- Generated by `runbook doc --luals` from interp/doc.lua: do not edit, regenerate."
  out[#out + 1] = ""
end

-- A stdlib module's file: `---@meta NAME` so that require "NAME" resolves to what it returns.
local function module_file(mod, by_name)
  local out = { "---@meta " .. mod.name }
  header(out, mod)
  out[#out + 1] = "---" .. mod.name .. ": " .. mod.title .. (mod.intro and (". " .. oneline(mod.intro)) or "")
  out[#out + 1] = "---@class " .. mod.name
  out[#out + 1] = "local " .. ident(mod.name) .. " = {}"
  out[#out + 1] = ""
  local classes = {}
  for _, fn in ipairs(mod.functions) do
    local cls = class_of(mod, fn)
    if cls and not classes[cls] then
      classes[cls] = true
      out[#out + 1] = "---A connection (" .. mod.name .. ".connect); `conn:close()` ends it."
      out[#out + 1] = "---@class " .. cls
      out[#out + 1] = "local " .. ident(cls) .. " = {}"
      out[#out + 1] = "---Closes the connection (also when it is garbage-collected)."
      out[#out + 1] = "function " .. ident(cls) .. ":close() end"
      out[#out + 1] = ""
    end
  end
  local shared = mod.notes and result_fields(mod.notes)
  if shared then   -- "the result (see below)": the module's notes describe it (http)
    out[#out + 1] = "---" .. oneline(mod.notes:match("^[^:]*") or "the result")
    out[#out + 1] = "---@class " .. mod.name .. ".result"
    for _, f in ipairs(shared) do out[#out + 1] = "---@field " .. f .. " any" end
    out[#out + 1] = ""
  end
  for _, fn in ipairs(mod.functions) do emit_function(out, mod, fn, by_name) end
  out[#out + 1] = "return " .. ident(mod.name)
  return table.concat(out, "\n") .. "\n"
end

-- The language's globals: runbook, step, must, parallel; input, fmt, check (tables); ctx (a class).
local function language_file(by_name)
  local out = { "---@meta" }
  header(out)
  out[#out + 1] = "---@class runbook.decl"
  out[#out + 1] = "---@class step.decl"
  out[#out + 1] = "---@class input.decl"
  out[#out + 1] = ""
  for _, mod in ipairs(doc.language) do
    local global = { global = mod.name == "language" }
    setmetatable(global, { __index = mod })
    if mod.name == "language" then
      out[#out + 1] = "---language: " .. mod.title .. ". " .. oneline(mod.intro)
      out[#out + 1] = ""
    else
      out[#out + 1] = "---" .. mod.name .. ": " .. mod.title .. (mod.intro and (". " .. oneline(mod.intro)) or "")
      out[#out + 1] = "---@class " .. mod.name
      for _, f in ipairs(mod.fields or {}) do
        out[#out + 1] = string.format("---@field %s %s %s", f[1], f[2], oneline(f[3]))
      end
      if mod.name == "ctx" then out[#out + 1] = "---@field [string] any an input's value: ctx.NAME" end
      out[#out + 1] = (mod.name == "ctx" and "local " or "") .. mod.name .. " = {}"
      out[#out + 1] = ""
    end
    for _, fn in ipairs(mod.functions) do emit_function(out, global, fn, by_name) end
  end
  return table.concat(out, "\n") .. "\n"
end

local function json_string(s) return '"' .. s:gsub('[%c"\\]', function(c) return string.format("\\u%04x", c:byte()) end) .. '"' end

local function luarc(library)
  return table.concat({
    "{",
    '  "$schema": "https://raw.githubusercontent.com/LuaLS/vscode-lua/master/setting/schema.json",',
    '  "runtime.version": "Lua 5.4",',
    '  "runtime.builtin": { "io": "disable", "package": "disable", "debug": "disable" },',
    '  "workspace.library": [' .. json_string(library) .. '],',
    '  "workspace.checkThirdParty": false,',
    '  "diagnostics.globals": ["runbook", "step", "input", "must", "parallel", "fmt", "check"]',
    "}",
  }, "\n") .. "\n"
end

-- The files: { { name, text }, ... }; library: the directory .luarc.json names.
function M.files(library)
  local by_name = {}
  for _, list in ipairs({ doc.modules, doc.language }) do
    for _, mod in ipairs(list) do for _, fn in ipairs(mod.functions) do by_name[fn.name] = fn end end
  end
  local files = {}
  for _, mod in ipairs(doc.modules) do files[#files + 1] = { mod.name .. ".lua", module_file(mod, by_name) } end
  files[#files + 1] = { "runbook.lua", language_file(by_name) }
  files[#files + 1] = { ".luarc.json", luarc(library) }
  return files
end

-- runbook doc --luals DIR [--as PATH]: writes the files into DIR; .luarc.json names PATH (default
-- DIR made absolute), for a staged install (DESTDIR) whose files will live elsewhere.
function M.write(dir, as)
  local q = require("authoring").shq(dir)
  if not os.execute("mkdir -p -- " .. q) then return nil, "cannot create the directory " .. dir end
  if not as then   -- DIR, absolute: Lua has no getcwd
    local p = io.popen("cd -- " .. q .. " && pwd -P")
    as = p and p:read("l")
    if p then p:close() end
    if not as then return nil, "cannot find the absolute path of " .. dir end
  end
  local written = {}
  for _, f in ipairs(M.files(as)) do
    local path = dir .. "/" .. f[1]
    local fh, err = io.open(path, "wb")
    if not fh then return nil, "cannot write " .. path .. ": " .. tostring(err) end
    fh:write(f[2])
    fh:close()
    written[#written + 1] = path
  end
  return written
end

return M
