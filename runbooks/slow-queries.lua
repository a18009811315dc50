-- slow-queries: the database is slow (queries taking seconds, requests timing out). Lists the
-- long-running queries, the blocked ones and who blocks them, lock counts, and tables read by
-- sequential scans that may miss an index; cancelling or terminating one pid is the remedy.
local pg = require "pg"
local recipe = require "recipe"

-- What PostgreSQL's log shows of slow queries (log_min_duration_statement) and lock trouble.
local LOG_CAUSES = {
  { pattern = "duration: [0-9.]+ ms", code = "pg.slow_logged", text = "PostgreSQL logs slow statements" },
  { pattern = "deadlock detected", code = "pg.deadlock", text = "transactions deadlock" },
  { pattern = "canceling statement due to (statement|lock) timeout", code = "pg.statement_timeout",
    text = "statements are cancelled by a timeout" },
  { pattern = "still waiting for [A-Za-z]+Lock", code = "pg.lock_waits_logged", text = "sessions wait on locks (log_lock_waits)" },
}

return runbook {
  name     = "slow-queries",
  summary  = "Queries run long or wait on locks",
  severity = "SEV2",
  description = "Symptoms: slow pages, statement timeouts, queries over 5 seconds, lock waits in the logs.",

  inputs = {
    url    = input.url { env = "DATABASE_URL", default = "postgresql://postgres@127.0.0.1:5432/postgres",
                         help = "a role that sees every session" },
    min    = input.duration { default = "5s", help = "queries running longer than this are listed" },
    pid    = input.int { required = false, help = "a backend to cancel (and, if that is not enough, terminate)" },
    on       = input.target { default = "local", env = "DATABASE_ON", help = "where PostgreSQL runs (its log)" },
    log_unit = input.string { required = false, help = "PostgreSQL's journald unit, to read its log" },
    log_file = input.path { required = false, help = "PostgreSQL's log file" },
    log_service = input.string { required = false, help = "PostgreSQL's Compose service, to read its log" },
    since    = input.duration { default = "30m", help = "how far back to read the log" },
  },

  step "logs" {
    title   = "What does PostgreSQL's log say?",
    explain = "With log_min_duration_statement set, slow statements are logged with their duration; deadlocks, " ..
              "statement timeouts and (log_lock_waits) lock waits are logged too.",
    run = function(ctx)
      recipe.logs(ctx, { on = ctx.on, unit = ctx.log_unit, file = ctx.log_file, service = ctx.log_service,
                         since = ctx.since, timeout = 10, what = "PostgreSQL's log", causes = LOG_CAUSES })
    end,
  },

  step "long" {
    title = "Which queries run long?",
    run = function(ctx)
      local conn = must(pg.connect(ctx.url))
      local rows = must(conn:long_running { min = ctx.min })
      conn:close()
      if #rows == 0 then return ctx:ok("no query has run for longer than %s", fmt.duration(ctx.min)) end
      ctx:finding { code = "pg.long_running", "%d queries running for longer than %s", #rows, fmt.duration(ctx.min) }
      ctx:show(fmt.table(rows, { { "pid", right = true }, { "duration_ms", title = "running", format = fmt.ms, right = true },
                                 { "user", title = "role" }, { "query" } }))
      ctx.state.longest = rows[1]
    end,
  },

  step "blocked" {
    title   = "Who waits for whom?",
    explain = "A blocked query waits for a lock another session holds; the blocker is where to act.",
    run = function(ctx)
      local conn = must(pg.connect(ctx.url))
      local rows = must(conn:blocked())
      local locks = must(conn:locks())
      conn:close()
      if #rows == 0 then return ctx:ok("no query waits on a lock") end
      ctx:finding { code = "pg.lock_waits", "%d queries wait on locks", #rows }
      for _, b in ipairs(rows) do
        ctx:show(string.format("pid %s waits for %s: %s", tostring(b.pid),
          table.concat(b.blocked_by or {}, ", "), tostring(b.query):sub(1, 100)))
      end
      ctx.state.blocker = rows[1].blocked_by and rows[1].blocked_by[1]
      if #locks > 0 then ctx:show(fmt.table(locks, { { "mode" }, { "granted" }, { "count", right = true } })) end
    end,
  },

  step "scans" {
    title   = "Tables read by sequential scans",
    explain = "Large tables read mostly by sequential scans often miss an index the queries need.",
    run = function(ctx)
      local conn = must(pg.connect(ctx.url))
      local rows = must(conn:query([[
        SELECT relname AS table, seq_scan, coalesce(idx_scan, 0) AS idx_scan, n_live_tup AS rows
        FROM pg_stat_user_tables WHERE seq_scan > coalesce(idx_scan, 0) AND n_live_tup > 10000
        ORDER BY seq_scan * n_live_tup DESC LIMIT 10]]))
      conn:close()
      if #rows == 0 then return ctx:ok("no large table is read mostly by sequential scans") end
      ctx:finding { code = "pg.seq_scans", "%d large tables read mostly by sequential scans (missing index?)", #rows }
      ctx:show(fmt.table(rows, { { "table" }, { "rows", right = true }, { "seq_scan", right = true },
                                 { "idx_scan", right = true } }))
    end,
  },

  step "cancel" {
    title   = "Cancel the query, or end its session",
    explain = "Cancelling stops the statement and keeps the session; terminating ends the session and rolls " ..
              "its transaction back, releasing its locks.",
    run = function(ctx)
      local pid = ctx.pid or ctx.state.blocker or (ctx.state.longest and ctx.state.longest.pid)
      if not pid then return ctx:ok("nothing to cancel") end
      local conn = must(pg.connect(ctx.url))
      must(conn:cancel(pid))
      -- A cancelled statement leaves its transaction open, and its locks held, until the client
      -- rolls back: if the pid still runs or still blocks others, end its session.
      local still = must(conn:query([[
        SELECT count(*) FILTER (WHERE pid = $1 AND state = 'active') AS active,
               count(*) FILTER (WHERE $1 = ANY(pg_blocking_pids(pid))) AS blocking
        FROM pg_stat_activity]], { pid }))
      if still[1].active > 0 or still[1].blocking > 0 then must(conn:terminate(pid)) end
      conn:close()
    end,
  },

  step "verify" {
    title = "Is it quick again?",
    run = function(ctx)
      local conn = must(pg.connect(ctx.url))
      local rows = must(conn:long_running { min = ctx.min })
      local blocked = must(conn:blocked())
      conn:close()
      if #rows == 0 and #blocked == 0 then return ctx:resolved("no long-running or blocked query left") end
      return ctx:escalate(string.format("%d long-running and %d blocked queries remain", #rows, #blocked))
    end,
  },
}
