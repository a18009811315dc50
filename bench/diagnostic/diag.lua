-- diag: the 10-probe diagnostic of the benchmark (bench/diagnostic.sh), as a runbook would do it:
-- the three servers checked at once with parallel(), then the host. With mode=sequential, the
-- servers are checked one after another, as the C program does, to measure what parallel() buys.
local pg    = require "pg"
local redis = require "redis"
local http  = require "http"
local sys   = require "sys"

local function pg_checks(ctx)
  local conn, err, kind = pg.connect(ctx.pg, { timeout = ctx.timeout })
  if not conn then return nil, err, kind end
  local one = must(conn:query("SELECT 1 AS one"))
  local conns = must(conn:connections())
  local blocked = must(conn:blocked())
  conn:close()
  return { one = one[1].one, connections = conns.total, blocked = #blocked }
end

local function redis_checks(ctx)
  local conn, err, kind = redis.connect(ctx.redis, { timeout = ctx.timeout })
  if not conn then return nil, err, kind end
  local pong = must(conn:call("PING"))
  local mem = must(conn:memory())
  local queued = must(conn:llen(ctx.queue))
  conn:close()
  return { pong = pong, used_memory = mem.used_memory, queued = queued }
end

return runbook {
  name = "diag", summary = "Ten probes at once (benchmark)", severity = "SEV4",
  inputs = {
    pg      = input.url { required = true },
    redis   = input.url { required = true },
    url     = input.url { required = true },
    queue   = input.string { default = "jobs" },
    timeout = input.duration { default = "2s" },
    mode    = input.string { default = "parallel", help = "parallel or sequential" },
  },
  step "all" {
    title = "Database, cache, API, host",
    run = function(ctx)
      local checks = {
        pg = function() return pg_checks(ctx) end,
        redis = function() return redis_checks(ctx) end,
        http = function() return http.get(ctx.url, { timeout = ctx.timeout }) end,
      }
      local r = {}
      if ctx.mode ~= "parallel" and ctx.mode ~= "sequential" then error("mode: parallel or sequential", 0) end
      if ctx.mode == "sequential" then
        for _, name in ipairs { "pg", "redis", "http" } do   -- a raised error counts as parallel() counts it
          local ok, value, err = pcall(checks[name])
          r[name] = ok and { value = value, err = err } or { err = tostring(value) }
        end
      else
        r = parallel(checks)
      end
      for _, name in ipairs { "pg", "redis", "http" } do
        if r[name].err then ctx:finding("%s: %s", name, r[name].err) else ctx:ok("%s answers", name) end
      end
      local fs, mem, load = must(sys.fs("/")), must(sys.memory()), must(sys.load())
      ctx:ok("disk %s, memory %s, load %.2f", fmt.pct(fs.used_pct), fmt.pct(mem.used_pct), load.load1)
    end,
  },
}
