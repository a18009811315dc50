-- database-unavailable: the application cannot reach PostgreSQL ("Connection to database failed",
-- DatabaseDown, health check shows the database disconnected). Tells apart a database that is
-- down, one that hangs, and one that refuses new connections because all slots are taken; offers
-- terminating old idle sessions or, as the last resort, a restart; then checks again.
-- url is what the application uses (DATABASE_URL, usually not a superuser): when its slots are
-- gone, the ones left are reserved for superusers, so seeing and ending sessions needs admin_url.
-- Reads PostgreSQL's log first, as the playbooks do.
local pg     = require "pg"
local recipe = require "recipe"

-- What PostgreSQL writes when it refuses work, and what each line means.
local LOG_CAUSES = {
  { pattern = "too many clients|remaining connection slots are reserved", code = "pg.too_many_clients",
    text = "PostgreSQL refuses connections: every slot is taken" },
  { pattern = "No space left on device|could not extend file|could not write to file", code = "pg.disk_full",
    text = "PostgreSQL cannot write: its disk is full" },
  { pattern = "PANIC|terminated by signal|database system was interrupted|server process .* was terminated",
    code = "pg.crashed", text = "PostgreSQL crashed or a backend was killed" },
  { pattern = "password authentication failed|no pg_hba.conf entry", code = "pg.auth_rejected",
    text = "PostgreSQL rejects the credentials or the client's address" },
}

local TOO_MANY = "53300"   -- SQLSTATE too_many_connections

local function ping(ctx) return pg.ping(ctx.url, { timeout = ctx.timeout }) end

-- Where to look at and end sessions: the superuser when given, else the application's role.
local function admin(ctx) return pg.connect(ctx.admin_url or ctx.url, { timeout = ctx.timeout }) end

return runbook {
  name     = "database-unavailable",
  summary  = "PostgreSQL is down, hung or out of connections",
  severity = "SEV1",
  description = "Symptoms: \"Connection to database failed\" or \"too many clients already\" in the " ..
                "application's logs, a DatabaseDown alert, a health check reporting the database.",

  inputs = {
    restart_wait = input.duration { default = "60s", help = "how long to wait for connections after a restart (an RDS reboot takes 2-5 minutes)" },
    url      = input.url { env = "DATABASE_URL", default = "postgresql://postgres@127.0.0.1:5432/postgres",
                           help = "the database as the application reaches it (its own role)" },
    admin_url = input.url { env = "DATABASE_ADMIN_URL", required = false, secret = true,
                            help = "a superuser, which keeps the reserved slots: to see and end sessions when url's role cannot" },
    on       = input.target { default = "local", env = "DATABASE_ON", help = "where PostgreSQL runs (its log, its restart)" },
    service  = input.string { default = "postgresql", help = "PostgreSQL's systemd unit (Compose and Kubernetes targets name their own)" },
    restart  = input.argv { required = false, help = "how to restart it, when not through its service (e.g. a script)" },
    log_unit = input.string { required = false, help = "PostgreSQL's journald unit, to read its log (e.g. postgresql@15-main)" },
    log_file = input.path { required = false, help = "PostgreSQL's log file (e.g. /var/log/postgresql/postgresql-15-main.log)" },
    log_service = input.string { required = false, help = "PostgreSQL's Compose service, to read its log" },
    since    = input.duration { default = "30m", help = "how far back to read the log" },
    health   = input.url { env = "HEALTH_URL", required = false, help = "the service's health endpoint, checked at the end" },
    idle_age = input.duration { default = "5m", help = "idle sessions older than this may be terminated" },
    timeout  = input.duration { default = "3s", help = "deadline of each probe" },
  },

  step "logs" {
    title   = "What does PostgreSQL's log say?",
    explain = "too many clients: every slot taken. No space left on device: the disk is full. PANIC or a backend " ..
              "terminated by signal: a crash (often the OOM killer). password authentication failed: a rotated secret.",
    run = function(ctx)
      recipe.logs(ctx, { on = ctx.on, unit = ctx.log_unit, file = ctx.log_file, service = ctx.log_service,
                         since = ctx.since, timeout = ctx.timeout, what = "PostgreSQL's log", causes = LOG_CAUSES })
    end,
  },

  step "reach" {
    title   = "Does PostgreSQL accept connections?",
    explain = "Refused: nothing listens. No answer: the postmaster is stuck. \"too many clients\": it runs " ..
              "but every connection slot is taken.",
    run = function(ctx)
      local r, err, kind = ping(ctx)
      if r then
        return ctx:ok("PostgreSQL %s answers in %s%s", r.version, fmt.ms(r.connect_ms),
                      r.in_recovery and " (a replica, in recovery)" or "")
      end
      if kind == TOO_MANY then
        ctx.state.full = true
        return ctx:finding { code = "pg.connections_full", "every connection slot is taken: %s", err }
      end
      if kind == "auth" or kind == "28P01" or kind == "28000" then
        return ctx:escalate(err .. ": the credentials were rejected; check the secret the application uses")
      end
      ctx.state.broken = kind
      ctx:finding { code = kind == "refused" and "pg.down" or kind == "timeout" and "pg.hung" or "pg.unreachable",
                    "%s: %s", kind == "refused" and "PostgreSQL is down" or kind == "timeout" and
                    "PostgreSQL does not answer" or "PostgreSQL is unreachable", err }
      return ctx:jump("restart")
    end,
  },

  step "connections" {
    title   = "Who holds the connections?",
    explain = "Sessions by state against max_connections. Many idle ones usually mean a pool that grew " ..
              "and never shrank; idle in transaction ones also hold locks.",
    run = function(ctx)
      local conn, err, kind = admin(ctx)
      if not conn and kind == TOO_MANY and not ctx.admin_url then
        -- The slots left are superuser_reserved_connections: the application's role cannot have one.
        ctx.state.need_admin = true
        ctx:finding { code = "pg.slots_reserved", "the slots left are reserved for superusers, and the role of url= is " ..
                      "not one: %s", err }
        return ctx:note("to see and end sessions, run again with admin_url=postgresql://SUPERUSER@HOST/DB " ..
                        "(or $DATABASE_ADMIN_URL)")
      end
      conn = must(conn, err, kind)
      local c = must(conn:connections())
      conn:close()
      ctx.state.connections = c
      local status = ctx:check("connections used of max_connections", c.used_pct,
                               { warn = "~:80", crit = "~:90", format = fmt.pct, code = "pg.connections_full" })
      if status ~= "OK" then ctx.state.full = true end
      local rows = {}
      for state, n in pairs(c.by_state or {}) do rows[#rows + 1] = { state = state, n = n } end
      table.sort(rows, function(a, b) return a.n > b.n end)
      ctx:show(fmt.table(rows, { { "state" }, { "n", title = "sessions", right = true } }))
    end,
  },

  step "idle" {
    title   = "Terminate old idle sessions",
    explain = "Frees slots without touching anything that is working: only sessions idle for longer than " ..
              "idle_age. Their clients reconnect through their pools.",
    run = function(ctx)
      if not ctx.state.full then return ctx:ok("connection slots are not scarce: nothing to terminate") end
      if ctx.state.need_admin then return ctx:note("not offered: admin_url= is needed to end other roles' sessions") end
      local conn = must(admin(ctx))
      local r = must(conn:terminate_idle { older_than = ctx.idle_age, state = "idle" })
      conn:close()
      if r.dry_run then return ctx:note("dry run: nothing terminated") end
      ctx:ok("terminated %d idle sessions", r.terminated or 0)
      -- pg_terminate_backend only signals: the slots are free once those backends have exited.
      if not ctx:wait_until("a connection slot is free", function() return ping(ctx) end, { timeout = 10, every = 0.2 }) then
        ctx:note("no slot was free 10 s later: the clients may have reconnected at once (look at their pools)")
      end
    end,
  },

  step "restart" {
    title   = "Restart PostgreSQL",
    explain = "The last resort, and only when it is down or hung: a restart ends every session.",
    run = function(ctx)
      if not ctx.state.broken then return ctx:ok("PostgreSQL answers: no restart") end
      must(recipe.restart(ctx, { argv = ctx.restart, on = ctx.on, name = ctx.service, target = ctx.url,
                                 leave_running = true,   -- a restart may start the daemon itself (not through systemd)
                                 summary = "restart PostgreSQL (" .. ctx.state.broken .. ")",
                                 ready = function() return ping(ctx) end, ready_what = "PostgreSQL accepts connections",
                                 wait = ctx.restart_wait, every = 0.3 }))
      ctx.state.broken = nil
    end,
  },

  step "verify" {
    title = "Is the database back, and the service with it?",
    run = function(ctx)
      local r, err = ping(ctx)
      if not r and ctx.state.need_admin then
        return ctx:escalate("PostgreSQL refuses the application's role, its slots all taken: give admin_url= " ..
                            "(a superuser) to end the idle sessions, or ask the database's owners (" .. err .. ")")
      end
      return recipe.verify(ctx, { probe = function() return r, err end, failed = "PostgreSQL still refuses",
                                  ok = function(v) return "PostgreSQL answers in " .. fmt.ms(v.connect_ms) end,
                                  health = ctx.health, timeout = ctx.timeout, resolved = "PostgreSQL accepts connections" })
    end,
  },
}
