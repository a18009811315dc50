-- migration-failure: a deploy's schema migration failed or half-applied ("relation ... does not
-- exist", a deploy stuck at migrate). Reads the migration table of the framework in use
-- (Alembic, Django, Rails, Flyway), compares it with the head the code declares (`alembic heads`,
-- Django's `showmigrations --plan`, or expected=), checks that the relations the code needs exist,
-- then runs the project's own migrate command on confirmation. The downgrade is offered only when
-- that upgrade failed: a schema that reached the code's head is never rolled back. Without a
-- target the code declares, the run escalates "target unknown" rather than guessing.
local pg = require "pg"
local sh = require "sh"
local recipe = require "recipe"

-- What the application writes when the schema is not what its code expects.
local LOG_CAUSES = {
  { pattern = "relation .* does not exist|UndefinedTable|no such table", code = "migration.missing_table_logged",
    text = "the code queries tables the schema does not have" },
  { pattern = "column .* does not exist|UndefinedColumn|no such column", code = "migration.missing_column_logged",
    text = "the code queries columns the schema does not have" },
  { pattern = "[Mm]igration.*(failed|error)|alembic.*(Error|error)|django.db.migrations.*Error", code = "migration.failed_logged",
    text = "a migration failed" },
}

-- The commands that print what the code expects, per framework (run in workdir).
local HEADS = { alembic = { "alembic", "heads" }, django = { "python3", "manage.py", "showmigrations", "--plan" } }

-- What the code expects: { head = version } or { head = last, pending = n } (Django), or nil, why.
local function code_target(ctx, framework)
  local argv = ctx.heads or HEADS[framework]
  if not argv then return nil, "no command prints the code's head for " .. tostring(framework) .. " (give expected=)" end
  local cmd = { cwd = ctx.workdir, quiet = true, timeout = 30 }
  for i, a in ipairs(argv) do cmd[i] = a end
  local r, err = sh.read(cmd)
  if not r then return nil, err end
  if not r.ok then
    return nil, string.format("%s exits %s: %s", table.concat(argv, " "), tostring(r.code),
                              ((r.stderr ~= "" and r.stderr or r.stdout):match("[^\n]+") or ""))
  end
  local heads, plan, pending = {}, {}, 0
  for line in r.stdout:gmatch("[^\n]+") do
    local head = line:match("^%s*(%w+)%s+%(head%)")
    if head then heads[#heads + 1] = head end
    local mark, name = line:match("^%s*%[([ Xx])%]%s+(%S+)")
    if name then
      plan[#plan + 1] = name
      if mark == " " then pending = pending + 1 end
    end
  end
  if #plan > 0 then return { head = plan[#plan], pending = pending } end
  if #heads == 1 then return { head = heads[1] } end
  if #heads > 1 then return nil, "the code has " .. #heads .. " heads (" .. table.concat(heads, ", ") .. "): merge them first" end
  return nil, table.concat(argv, " ") .. " printed no head"
end

-- Whether the database is where the code expects it. Returns behind (bool) and a description.
local function compare(m, target)
  if target.pending then return target.pending > 0, string.format("%d migrations pending up to %s", target.pending, target.head) end
  return tostring(m.latest) ~= target.head, string.format("the database is at %s, the code expects %s", tostring(m.latest), target.head)
end

local function read_migrations(ctx)
  local conn = must(pg.connect(ctx.url))
  local m = must(conn:migrations())
  conn:close()
  return m
end

return runbook {
  name     = "migration-failure",
  summary  = "A schema migration failed, is missing or half-applied",
  severity = "SEV2",
  description = "Symptoms: \"relation ... does not exist\" or \"column ... does not exist\" errors right " ..
                "after a deploy, a deploy stuck at its migrate step, a failed row in flyway_schema_history.",

  inputs = {
    url       = input.url { env = "DATABASE_URL", default = "postgresql://postgres@127.0.0.1:5432/postgres",
                            help = "the application's database" },
    expected  = input.string { required = false, help = "the migration version the deployed code expects, when no " ..
                                                        "command can tell (default: asked of the code, see heads)" },
    heads     = input.argv { required = false, help = "a command printing the code's head: default `alembic heads` " ..
                                                    "(Alembic), `python3 manage.py showmigrations --plan` (Django)" },
    relations = input.string { required = false, help = "relations the code needs, comma-separated (e.g. users,orders)" },
    migrate   = input.argv { default = { "alembic", "upgrade", "head" }, help = "the project's migrate command" },
    downgrade = input.argv { required = false, help = "the project's downgrade command, offered only if the upgrade fails" },
    workdir   = input.path { default = ".", help = "the code's directory: where heads and migrate run" },
    on        = input.target { default = "local", env = "APP_ON", help = "where the application runs (its log)" },
    log_unit = input.string { required = false, help = "the application's journald unit, to read its log" },
    log_file = input.path { required = false, help = "the application's log file" },
    log_service = input.string { required = false, help = "the application's Compose service, to read its log" },
    since    = input.duration { default = "30m", help = "how far back to read the log" },
  },

  step "logs" {
    title   = "What does the application's log say?",
    explain = "relation/column does not exist: the code is ahead of the schema. A failed migration names the step that broke.",
    run = function(ctx)
      recipe.logs(ctx, { on = ctx.on, unit = ctx.log_unit, file = ctx.log_file, service = ctx.log_service,
                         since = ctx.since, timeout = 10, what = "the application's log", causes = LOG_CAUSES })
    end,
  },

  step "version" {
    title   = "Which migration is applied, and which does the code expect?",
    explain = "The framework's own table says what ran; the code says what it needs. A failed entry " ..
              "(Flyway) or a version behind the code's explains most \"does not exist\" errors.",
    run = function(ctx)
      local m = read_migrations(ctx)
      if not m.framework then
        ctx.state.unknown = "no migration table"
        return ctx:finding { code = "migration.table_missing", "no migration table found (alembic_version, " ..
                             "django_migrations, schema_migrations, flyway_schema_history)" }
      end
      ctx.state.migrations = m
      ctx:ok("%s: %d migrations applied, latest %s", m.framework, m.count or 0, tostring(m.latest))
      if (m.failed or 0) > 0 then
        ctx.state.behind = true
        ctx:finding { code = "migration.failed", "%d failed migrations recorded", m.failed }
      end
      local target, why = nil, nil
      if ctx.expected then target = { head = ctx.expected } else target, why = code_target(ctx, m.framework) end
      if not target then
        ctx.state.unknown = why
        return ctx:finding { code = "migration.target_unknown", "the version the code expects is unknown: %s", why }
      end
      ctx.state.target = target
      local behind, text = compare(m, target)
      if behind then
        ctx.state.behind = true
        ctx:finding { code = "migration.behind", "%s", text }
      else
        ctx:ok("the database is at the code's head, %s", target.head)
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
      ctx:finding { code = "migration.relations_missing", "missing: %s", table.concat(missing, ", ") }
    end,
  },

  step "migrate" {
    title   = "Run the migrations",
    explain = "The project's own command, in its directory; its output is streamed and recorded.",
    run = function(ctx)
      if not ctx.state.behind then return ctx:ok("nothing shows the schema behind the code: no migration to run") end
      local argv = { check = false }
      for i, a in ipairs(ctx.migrate) do argv[i] = a end
      argv.cwd, argv.summary, argv.target = ctx.workdir, "apply the pending migrations", ctx.url
      local r = must(sh.action(argv))
      if r.dry_run then return end
      if not r.ok then
        ctx.state.upgrade_failed = true
        return ctx:finding { code = "migration.upgrade_failed", "%s failed (exit %s)", table.concat(ctx.migrate, " "),
                             tostring(r.code) }
      end
      ctx:ok("the migrate command succeeded")
    end,
  },

  step "rollback" {
    title   = "Or roll back",
    explain = "Only when the upgrade just failed: downgrading to the last good version and rolling the deploy " ..
              "back is then the way out. A migration that succeeded is never rolled back.",
    run = function(ctx)
      if not ctx.state.upgrade_failed then return ctx:ok("no upgrade failed: no rollback") end
      if not ctx.downgrade then return ctx:note("downgrade= not given: roll back by hand, or fix forward") end
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
      if ctx.state.unknown then
        return ctx:escalate("target unknown: " .. ctx.state.unknown .. "; give expected=VERSION, or heads= a command " ..
                            "that prints the code's head")
      end
      local m = read_migrations(ctx)
      local target = ctx.state.target
      if ctx.state.target.pending and not ctx.expected then target = code_target(ctx, m.framework) or target end
      local behind, text = compare(m, target)
      if behind then return ctx:escalate("still behind: " .. text) end
      if (m.failed or 0) > 0 then return ctx:escalate("failed migrations are still recorded") end
      return ctx:resolved(string.format("%s at %s, the code's head", tostring(m.framework), tostring(m.latest)))
    end,
  },
}
