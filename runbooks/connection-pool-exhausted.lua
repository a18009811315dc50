-- connection-pool-exhausted: the application waits for database connections ("connection pool
-- exhausted", "too many clients", requests timing out while the database is idle). Shows who
-- holds the backends: by state, by application and client, and the sessions idle inside a
-- transaction, which hold locks too; terminating the old idle ones is the confirmed remedy.
local pg = require "pg"
local recipe = require "recipe"

-- What the database and the applications write when connections run out.
local LOG_CAUSES = {
  { pattern = "too many clients|remaining connection slots are reserved", code = "pg.too_many_clients",
    text = "PostgreSQL refuses connections: every slot is taken" },
  { pattern = "QueuePool limit|pool exhausted|[Tt]imeout waiting for (a )?connection|Connection is not available",
    code = "pool.exhausted", text = "the application's pool has no connection to give" },
}

return runbook {
  name     = "connection-pool-exhausted",
  summary  = "Database connections run out: who holds them?",
  severity = "SEV2",
  description = "Symptoms: \"connection pool exhausted\" or \"remaining connection slots are reserved\" in " ..
                "the logs, requests waiting on the database while it is mostly idle.",

  inputs = {
    url      = input.url { env = "DATABASE_URL", default = "postgresql://postgres@127.0.0.1:5432/postgres",
                           help = "a role that sees every session" },
    idle_age = input.duration { default = "10m", help = "idle sessions older than this may be terminated" },
    txn_age  = input.duration { default = "1m", help = "idle-in-transaction sessions older than this are suspects" },
    on       = input.target { default = "local", env = "DATABASE_ON", help = "where PostgreSQL runs (its log)" },
    log_unit = input.string { required = false, help = "PostgreSQL's (or the application's) journald unit, to read its log" },
    log_file = input.path { required = false, help = "PostgreSQL's (or the application's) log file" },
    log_service = input.string { required = false, help = "PostgreSQL's (or the application's) Compose service, to read its log" },
    since    = input.duration { default = "30m", help = "how far back to read the log" },
  },

  step "logs" {
    title   = "What do the logs say?",
    explain = "too many clients already: the database's slots are all taken. QueuePool limit / pool exhausted: the " ..
              "application's own pool is, while the database may have slots left.",
    run = function(ctx)
      recipe.logs(ctx, { on = ctx.on, unit = ctx.log_unit, file = ctx.log_file, service = ctx.log_service,
                         since = ctx.since, timeout = 10, what = "the log", causes = LOG_CAUSES })
    end,
  },

  step "usage" {
    title = "How many backends, in which state?",
    run = function(ctx)
      local conn = must(pg.connect(ctx.url))
      local c = must(conn:connections())
      ctx.state.usage = ctx:check("connections used of max_connections", c.used_pct,
                                  { warn = "~:80", crit = "~:95", format = fmt.pct, code = "pg.connections_high" })
      local rows = {}
      for state, n in pairs(c.by_state or {}) do rows[#rows + 1] = { state = state, n = n } end
      table.sort(rows, function(a, b) return a.n > b.n end)
      ctx:show(fmt.table(rows, { { "state" }, { "n", title = "sessions", right = true } }))
      local holders = must(conn:query([[
        SELECT coalesce(nullif(application_name, ''), '?') AS application, usename AS role,
               coalesce(host(client_addr), 'local') AS client, count(*) AS sessions,
               count(*) FILTER (WHERE state = 'idle') AS idle
        FROM pg_stat_activity WHERE backend_type = 'client backend'
        GROUP BY 1, 2, 3 ORDER BY sessions DESC LIMIT 10]]))
      ctx:show(fmt.table(holders, { { "sessions", right = true }, { "idle", right = true },
                                    { "application" }, { "role" }, { "client" } }))
      conn:close()
    end,
  },

  step "in-transaction" {
    title   = "Sessions idle inside a transaction",
    explain = "A session that opened a transaction and went quiet holds its connection and its locks; " ..
              "usually a request that failed without rolling back.",
    run = function(ctx)
      local conn = must(pg.connect(ctx.url))
      local rows = must(conn:idle_in_transaction { min = ctx.txn_age })
      conn:close()
      if #rows == 0 then return ctx:ok("none idle in transaction for longer than %s", fmt.duration(ctx.txn_age)) end
      ctx:finding { code = "pg.idle_in_transaction", "%d sessions idle in transaction for longer than %s", #rows,
                    fmt.duration(ctx.txn_age) }
      ctx:show(fmt.table(rows, { { "pid", right = true }, { "user", title = "role" },
                                 { "application", title = "application" }, { "query" } }))
      ctx.state.stuck = #rows
    end,
  },

  step "terminate" {
    title   = "Terminate old idle sessions",
    explain = "Only sessions idle (or idle in transaction) for longer than the ages above; pools reconnect.",
    run = function(ctx)
      if ctx.state.usage == "OK" and not ctx.state.stuck then return ctx:ok("nothing to terminate") end
      local conn = must(pg.connect(ctx.url))
      if ctx.state.stuck then must(conn:terminate_idle { older_than = ctx.txn_age, state = "idle in transaction" }) end
      if ctx.state.usage ~= "OK" then must(conn:terminate_idle { older_than = ctx.idle_age, state = "idle" }) end
      conn:close()
    end,
  },

  step "verify" {
    title = "Are there free slots again?",
    run = function(ctx)
      local conn = must(pg.connect(ctx.url))
      local c = must(conn:connections())
      conn:close()
      if ctx:check("connections used", c.used_pct, { warn = "~:80", crit = "~:95", format = fmt.pct,
                                                     code = "pg.connections_high" }) == "CRITICAL" then
        return ctx:escalate("still out of connections: lower the pools' sizes or raise max_connections")
      end
      return ctx:resolved(string.format("%d of %d connections in use", c.total, c.max_connections))
    end,
  },
}
