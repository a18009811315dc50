-- show_calls.lua - what each step will run, read from the runbook's source without running it, for
-- `runbook show`: commands (sh.read/sh.action argv literals, as `$ cmd arg`), queries and commands
-- sent over a connection (conn:query("SQL"), conn:action("CONFIG", ...)), and the other library
-- calls (logs.read { file = ... }, http.get(url), service.restart { ... }) with their arguments as
-- written. A step's own body is read, and the top-level local functions it calls, one level deep.
local luatokens = require "luatokens"

local M = {}

local MODULES = { sh = true, sys = true, http = true, pg = true, redis = true, tcp = true, logs = true, deploy = true,
                  service = true, prometheus = true, recipe = true, check = true }
local METHODS = { query = true, action = true, exec = true, command = true }
local MAX_WIDTH = 110

-- The tokens i..j as Lua source, roughly (spaces where a reader expects them).
local function text(toks, i, j)
  local out = {}
  for k = i, j do
    local tk = toks[k]
    local v = tk.type == "string" and string.format("%q", tk.value):gsub("\\\n", "\\n") or tk.value
    local prev = toks[k - 1]
    local tight = k == i or tk.type == "," or tk.type == "." or tk.type == ")" or tk.type == ":" or tk.type == "("
                  or (prev and (prev.type == "." or prev.type == "(" or prev.type == ":"))
    out[#out + 1] = (tight and "" or " ") .. v
  end
  local s = table.concat(out)
  return #s > MAX_WIDTH and (s:sub(1, MAX_WIDTH - 1) .. "…") or s
end


-- The top-level `local NAME = { ... }` tables of the source being read (name -> index of "{"), so
-- that `{ table.unpack(NAME), ... }` shows NAME's words; set by by_step.
local constants = {}

-- sh.read { "nginx", "-t", on = ctx.on } -> "$ nginx -t    (on ctx.on)"; a word that is not a
-- literal is shown as <expression>.
local function command_line(toks, i, depth)
  local words, on = {}, nil
  for _, e in ipairs((luatokens.elements(toks, i))) do
    if e.key == "on" then on = text(toks, e.first + 2, e.last)
    elseif e.key == "shell" then -- the one string is the command line itself
    elseif not e.key then
      local tk = toks[e.first]
      if e.first == e.last and tk.type == "string" then
        words[#words + 1] = tk.value:find("[^%w%%+,./:=@_-]") and ("'" .. tk.value:gsub("'", "'\\''") .. "'") or tk.value
      elseif tk.value == "table" and toks[e.first + 2] and toks[e.first + 2].value == "unpack" then
        local name = e.last == e.first + 5 and toks[e.first + 4].value
        local inner = name and constants[name] and (depth or 0) < 3 and command_line(toks, constants[name], (depth or 0) + 1)
        words[#words + 1] = inner and inner:sub(3) or ("<" .. text(toks, e.first + 4, e.last - 1) .. ">")
      else
        words[#words + 1] = "<" .. text(toks, e.first, e.last) .. ">"
      end
    end
  end
  if #words == 0 then return nil end   -- built elsewhere (a loop): the call is shown as written
  local s = "$ " .. table.concat(words, " ")
  return on and (s .. "    (on " .. on .. ")") or s
end

-- The calls in the tokens from..to: a list of display lines; calls of the top-level local functions
-- named in `helpers` (name -> { from, to }) are followed once.
local function calls(toks, from, to, helpers, seen, out)
  local k = from
  while k <= to do
    local tk = toks[k]
    local nxt, third = toks[k + 1], toks[k + 2]
    if tk.type == "name" and MODULES[tk.value] and nxt and nxt.type == "." and third and third.type == "name"
       and toks[k + 3] and (toks[k + 3].type == "(" or toks[k + 3].type == "{") and (k == 1 or toks[k - 1].type ~= ".") then
      local open = k + 3
      local close = luatokens.closing(toks, open)
      local fn = tk.value .. "." .. third.value
      if tk.value == "sh" and (third.value == "read" or third.value == "action") then
        local t0 = toks[open].type == "(" and toks[open + 1] and toks[open + 1].type == "{" and open + 1 or open
        -- sh.read(argv): the table a `local argv = { ... }` before it in the same function built.
        if toks[t0].type == "(" and toks[t0 + 1] and toks[t0 + 1].type == "name" and toks[t0 + 2] and toks[t0 + 2].type == ")" then
          for b = k - 1, math.max(from, 1), -1 do
            if toks[b].value == toks[t0 + 1].value and toks[b + 1].type == "=" and toks[b + 2] and toks[b + 2].type == "{"
               and toks[b - 1] and toks[b - 1].value == "local" then
              t0 = b + 2
              break
            end
          end
        end
        local line = toks[t0].type == "{" and command_line(toks, t0)
        if line then
          out[#out + 1] = (third.value == "action" and "action: " or "") .. line
        else
          out[#out + 1] = fn .. text(toks, open, close)
        end
      else
        out[#out + 1] = fn .. (toks[open].type == "{" and " " or "") .. text(toks, open, close)
      end
      k = close + 1
    elseif tk.type == ":" and nxt and nxt.type == "name" and METHODS[nxt.value] and third and third.type == "("
           and toks[k + 3] and toks[k + 3].type == "string" then
      local close = luatokens.closing(toks, k + 2)
      local args = {}
      for _, e in ipairs((luatokens.elements(toks, k + 2))) do
        if not e.key and e.first == e.last and toks[e.first].type == "string" then args[#args + 1] = toks[e.first].value end
      end
      local label = nxt.value == "query" and "query: " or (nxt.value == "action" and "action: " or (nxt.value .. ": "))
      out[#out + 1] = label .. (table.concat(args, " "):gsub("%s+", " "):gsub("^ ", ""))
      k = close + 1
    else
      if tk.type == "name" and helpers[tk.value] and not seen[tk.value] and nxt and nxt.type == "("
         and (k == 1 or (toks[k - 1].type ~= "." and toks[k - 1].value ~= "function")) then
        seen[tk.value] = true
        calls(toks, helpers[tk.value].from, helpers[tk.value].to, helpers, seen, out)
      end
      k = k + 1
    end
  end
  return out
end

-- step id -> { lines }, from the runbook's source; {} when the file cannot be read.
function M.by_step(rb)
  local f = rb.file and io.open(rb.file, "rb")
  if not f then return {} end
  local src = f:read("a")
  f:close()
  local ok, toks = pcall(luatokens.tokens, src)
  if not ok then return {} end
  local func_end, owner = luatokens.blocks(toks)
  local helpers, result = {}, {}
  constants = {}
  for i, tk in ipairs(toks) do
    if tk.value == "local" and owner[i] == 0 and toks[i + 1] and toks[i + 1].type == "name" and toks[i + 2]
       and toks[i + 2].type == "=" and toks[i + 3] and toks[i + 3].type == "{" then
      constants[toks[i + 1].value] = i + 3
    end
    -- local function NAME (...) at the top level
    if tk.value == "local" and toks[i + 1] and toks[i + 1].value == "function" and owner[i] == 0 and toks[i + 2] then
      helpers[toks[i + 2].value] = { from = i + 3, to = func_end[i + 1] or i + 3 }
    end
  end
  for i, tk in ipairs(toks) do
    if tk.type == "name" and tk.value == "step" and toks[i + 1] and toks[i + 1].type == "string" then
      local id = toks[i + 1].value
      local open = toks[i + 2] and toks[i + 2].type == "{" and i + 2
      if open then
        local close = luatokens.closing(toks, open)
        for k = open, close do
          if toks[k].value == "run" and toks[k + 1] and toks[k + 1].type == "=" and toks[k + 2] and toks[k + 2].value == "function" then
            result[id] = calls(toks, k + 3, func_end[k + 2] or close, helpers, {}, {})
            break
          end
        end
      end
    end
  end
  return result
end

return M
