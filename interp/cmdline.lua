-- cmdline.lua - the words of `runbook exec` and `runbook repl`, read one way: --flags, options with a
-- value (--name VALUE or --name=VALUE), name=value inputs, and the other words, which each
-- subcommand judges itself (a runbook name, an unknown option, a stray word).
local core = require "core"

local M = {}

-- Walks args in order. A word of flags (without =VALUE) sets opts[flags[word]] = true; an option
-- of values takes its =VALUE or the next word (opts[values[word]] = value); name=value sets
-- inputs[name]; any other word goes to other(word, flag), flag being its --name without =VALUE,
-- which returns an error message to stop there, or nothing to go on.
-- Returns opts, inputs, or nil and the first error in the order of the words.
function M.parse(args, flags, values, other, opts)
  opts = opts or {}
  local inputs, i = {}, 1
  while i <= #args do
    local a = args[i]
    local flag, value = a:match("^(%-%-[%w-]+)=(.*)$")
    flag = flag or a
    local err
    if flags[flag] and not value then
      opts[flags[flag]] = true
    elseif values[flag] then
      if not value then
        i = i + 1
        value = args[i]
        if not value then return nil, flag .. " needs a value" end
      end
      opts[values[flag]] = value
    elseif a:match("^[%a_][%w_]*=") then
      local k, v = a:match("^([%a_][%w_]*)=(.*)$")
      inputs[k] = v
    else
      err = other(a, flag)
      if err then return nil, err end
    end
    i = i + 1
  end
  return opts, inputs
end

-- opts.timeout ("30s", "2m") as seconds, in place; nil and the error when it is not a positive duration.
function M.timeout(opts)
  if opts.timeout then
    local sec, err = core.duration(opts.timeout)
    if not sec or sec <= 0 then return nil, "--timeout: " .. (err or "must be positive") end
    opts.timeout = sec
  end
  return true
end

return M
