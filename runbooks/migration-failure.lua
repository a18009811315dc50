-- migration-failure: a deploy's schema migration failed or half-applied ("relation ... does not
-- exist", a deploy stuck at migrate). Reads the migration table of the framework in use
-- (Alembic, Django, Rails, Flyway), compares it with the expected head, checks that the relations
-- the code needs exist, then runs the project's own migrate (or downgrade) command on confirmation.
local pg = require "pg"
local sh = require "sh"

return runbook {
  name     = "migration-failure",
  summary  = "A schema migration failed, is missing or half-applied",
  severity = "SEV2",
  description = "Symptoms: \"relation ... does not exist\" or \"column ... does not exist\" errors right " ..
                "after a deploy, a deploy stuck at its migrate step, a failed row in flyway_schema_history.",

  inputs = {
    url       = input.url { env = "DATABASE_URL", default = "postgresql://postgres@127.0.0.1:5432/postgres",
                            help = "the application's database" },
    expected  = input.string { required = false, help = "the migration version the deployed code expects" },
    relations = input.string { required = false, help = "relations the code needs, comma-separated (e.g. users,orders)" },
    migrate   = input.argv { default = { "alembic", "upgrade", "head" }, help = "the project's migrate command" },
    downgrade = input.argv { required = false, help = "the project's downgrade command, to roll back instead" },
    workdir   = input.path { default = ".", help = "where to run the migrate command" },
  },

  step "version" {
    title   = "Which migration is applied?",
    explain = "The framework's own table says what ran; a failed entry (Flyway) or a version behind the " ..
              "code's explains most \"does not exist\" errors.",
    run = function(ctx)
      local conn = must(pg.connect(ctx.url))
      local m = must(conn:migrations())
      conn:close()
      if not m.framework then return ctx:finding("no migration table found (alembic_version, django_migrations, " ..
                                                 "schema_migrations, flyway_schema_history)") end
      ctx.state.migrations = m
      ctx:ok("%s: %d migrations applied, latest %s", m.framework, m.count or 0, tostring(m.latest))
      if (m.failed or 0) > 0 then
        ctx.state.behind = true
        ctx:finding("%d failed migrations recorded", m.failed)
      end
      if ctx.expected and tostring(m.latest) ~= ctx.expected then
        ctx.state.behind = true
        ctx:finding("the database is at %s, the code expects %s", tostring(m.latest), ctx.expected)
      end
    end,
  },

  step "relations" {
    title = "Do the relations the code needs exist?",
    run = function(ctx)
      if not ctx.relations then return ctx:note("relations= not given: not checked") end
      local conn = must(pg.connect(ctx.url))
      local missing = {}
      for name in ctx.relations:gmatch("[^,%s]+") do
        local r = must(conn:query("SELECT to_regclass($1) IS NOT NULL AS present", { name }))
        if not r[1].present then missing[#missing + 1] = name end
      end
      conn:close()
      if #missing == 0 then return ctx:ok("all present") end
      ctx.state.behind = true
      ctx:finding("missing: %s", table.concat(missing, ", "))
    end,
  },

  step "migrate" {
    title   = "Run the migrations",
    explain = "The project's own command, in its directory; its output is streamed and recorded.",
    run = function(ctx)
      if not ctx.state.behind then return ctx:ok("the schema is where the code expects it") end
      local argv = {}
      for i, a in ipairs(ctx.migrate) do argv[i] = a end
      argv.cwd, argv.summary, argv.target = ctx.workdir, "apply the pending migrations", ctx.url
      must(sh.action(argv))
    end,
  },

  step "rollback" {
    title   = "Or roll back",
    explain = "When migrating forward fails again, downgrading to the last good version and rolling the " ..
              "deploy back is the way out. Only offered when a downgrade command is given.",
    run = function(ctx)
      if not ctx.state.behind or not ctx.downgrade then return ctx:ok("no rollback needed or none given") end
      local argv = {}
      for i, a in ipairs(ctx.downgrade) do argv[i] = a end
      argv.cwd, argv.summary, argv.target = ctx.workdir, "roll the schema back", ctx.url
      argv.irreversible = true
      must(sh.action(argv))
    end,
  },

  step "verify" {
    title = "Does the schema match the code now?",
    run = function(ctx)
      local conn = must(pg.connect(ctx.url))
      local m = must(conn:migrations())
      conn:close()
      if ctx.expected and tostring(m.latest) ~= ctx.expected then
        return ctx:escalate(string.format("still at %s, expected %s", tostring(m.latest), ctx.expected))
      end
      if (m.failed or 0) > 0 then return ctx:escalate("failed migrations are still recorded") end
      return ctx:resolved(string.format("%s at %s", tostring(m.framework), tostring(m.latest)))
    end,
  },
}
