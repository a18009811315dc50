-- luatokens.lua - a Lua 5.4 source as tokens, for `check`'s static analysis (lint.lua): names,
-- strings (with their value), numbers and symbols, each with its line; comments are kept apart, by
-- line, so that a rule can be silenced on the line it reports. Also the extent of every `function`
-- (its `end`) and, for each token, the function it belongs to. Never runs any of the source.
local M = {}

local KEYWORDS = {}
for w in ([[and break do else elseif end false for function goto if in local nil not or repeat
            return then true until while]]):gmatch("%a+") do KEYWORDS[w] = true end

local SYMBOLS = { "...", "..", "==", "~=", "<=", ">=", "<<", ">>", "//", "::" }

-- The end of a long bracket opened at i ("[[", "[==["), or nil when s:sub(i) does not open one.
local function long_bracket(s, i)
  local eq = s:match("^%[(=*)%[", i)
  if not eq then return nil end
  local close = "]" .. eq .. "]"
  local open_len = #eq + 2
  local j = s:find(close, i + open_len, true)
  local stop = j and (j + #close - 1) or #s
  local body = s:sub(i + open_len, j and (j - 1) or #s):gsub("^\n", "")
  return stop, body
end

local ESCAPES = { n = "\n", t = "\t", r = "\r", a = "\a", b = "\b", f = "\f", v = "\v",
                  ["\\"] = "\\", ['"'] = '"', ["'"] = "'", ["\n"] = "\n" }

-- A quoted string starting at i: its last index and its value (escapes decoded, roughly: enough
-- to compare commands and step ids).
local function quoted(s, i)
  local q, j, out = s:sub(i, i), i + 1, {}
  while j <= #s do
    local c = s:sub(j, j)
    if c == q then return j, table.concat(out) end
    if c == "\n" then break end
    if c == "\\" then
      local n = s:sub(j + 1, j + 1)
      if ESCAPES[n] then out[#out + 1] = ESCAPES[n]; j = j + 2
      elseif n == "z" then j = (s:find("[^%s]", j + 2) or #s + 1)
      else
        local digits = s:match("^%d%d?%d?", j + 1)
        if digits then out[#out + 1] = string.char(tonumber(digits) % 256); j = j + 1 + #digits
        else out[#out + 1] = n; j = j + 2 end
      end
    else
      out[#out + 1] = c
      j = j + 1
    end
  end
  return j - 1, table.concat(out)
end

-- Tokens of src: { {type, value, line}, ... } with type "name", "keyword", "string", "number" or
-- the symbol itself; and comments, line -> text of the comments on that line.
function M.tokens(src)
  local toks, comments = {}, {}
  local i, line, n = 1, 1, #src
  local function add(ty, v) toks[#toks + 1] = { type = ty, value = v, line = line } end
  local function advance(stop)
    local _, nl = src:sub(i, stop):gsub("\n", "")
    line = line + nl
    i = stop + 1
  end
  if src:sub(1, 1) == "#" then i = (src:find("\n", 1, true) or n) end   -- a shebang line
  while i <= n do
    local c = src:sub(i, i)
    if c == "\n" then line = line + 1; i = i + 1
    elseif c:match("%s") then i = i + 1
    elseif src:sub(i, i + 1) == "--" then
      local stop, body = long_bracket(src, i + 2)
      if not stop then
        stop = (src:find("\n", i, true) or n + 1) - 1
        body = src:sub(i + 2, stop)
      end
      comments[line] = (comments[line] and (comments[line] .. " ") or "") .. body
      advance(stop)
    elseif c:match("[%a_]") then
      local w = src:match("^[%w_]+", i)
      add(KEYWORDS[w] and "keyword" or "name", w)
      i = i + #w
    elseif c:match("%d") or (c == "." and src:sub(i + 1, i + 1):match("%d")) then
      local num = src:match("^0[xX][%x%.]+[pP][+-]?%d+", i) or src:match("^0[xX][%x%.]+", i)
               or src:match("^[%d%.]+[eE][+-]?%d+", i) or src:match("^[%d%.]+", i)
      add("number", num)
      i = i + #num
    elseif c == '"' or c == "'" then
      local stop, v = quoted(src, i)
      add("string", v)
      advance(stop)
    elseif c == "[" and src:match("^%[=*%[", i) then
      local stop, body = long_bracket(src, i)
      add("string", body)
      advance(stop)
    else
      local sym = c
      for _, s in ipairs(SYMBOLS) do
        if src:sub(i, i + #s - 1) == s then sym = s break end
      end
      add(sym, sym)
      i = i + #sym
    end
  end
  return toks, comments
end

-- Block structure: for each `function` token index, the index of its `end`; for each token, the
-- index of the `function` token whose body holds it (0: the main chunk); and, for each token,
-- whether it lies directly in that body (in no if, loop or do block of it). Blocks are opened by
-- function, if, while, for, repeat and a lone do (the do of a while or for belongs to it).
function M.blocks(toks)
  local func_end, owner, direct = {}, {}, {}
  local stack = {}            -- { kind, at, awaiting_do }
  local current = 0           -- innermost open function
  for i, tk in ipairs(toks) do
    owner[i] = current
    direct[i] = #stack == 0 or stack[#stack].kind == "function"
    if tk.type == "keyword" then
      local w = tk.value
      if w == "function" then
        stack[#stack + 1] = { kind = "function", at = i, outer = current }
        current = i
      elseif w == "if" or w == "repeat" then
        stack[#stack + 1] = { kind = w, at = i }
      elseif w == "while" or w == "for" then
        stack[#stack + 1] = { kind = w, at = i, awaiting_do = true }
      elseif w == "do" then
        local top = stack[#stack]
        if top and top.awaiting_do then top.awaiting_do = false
        else stack[#stack + 1] = { kind = "do", at = i } end
      elseif w == "end" or w == "until" then
        local top = table.remove(stack)
        if top and top.kind == "function" then
          func_end[top.at] = i
          current = top.outer
        end
      end
    end
  end
  return func_end, owner, direct
end

-- The index of the token closing the bracket opened at i ("(" or "{"), or #toks.
function M.closing(toks, i)
  local open = toks[i].type
  local close = open == "(" and ")" or open == "{" and "}" or "]"
  local depth = 0
  for j = i, #toks do
    local ty = toks[j].type
    if ty == open then depth = depth + 1
    elseif ty == close then
      depth = depth - 1
      if depth == 0 then return j end
    end
  end
  return #toks
end

-- The elements of the table constructor (or argument list) opened at i: { first, last, key } ranges
-- at depth 1, key set for `name = value`; and the index of the closing token.
function M.elements(toks, i)
  local close = M.closing(toks, i)
  local out, depth, start = {}, 0, i + 1
  for j = i + 1, close do
    local ty = toks[j].type
    if ty == "(" or ty == "{" or ty == "[" then depth = depth + 1
    elseif (ty == ")" or ty == "]" or ty == "}") and j < close then depth = depth - 1 end
    if depth == 0 and (ty == "," or ty == ";" or j == close) and j > start then
      local named = toks[start].type == "name" and toks[start + 1] and toks[start + 1].type == "="
      out[#out + 1] = { first = start, last = j - 1, key = named and toks[start].value or nil }
      start = j + 1
    elseif depth == 0 and (ty == "," or ty == ";") then start = j + 1 end
  end
  return out, close
end

return M
