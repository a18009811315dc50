-- migration-failure.drill.lua - how `runbook drill migration-failure` rehearses this runbook against
-- the lab's PostgreSQL: the schema is behind the code.
local RESET = "DROP TABLE IF EXISTS orders; DROP TABLE IF EXISTS alembic_version"

return {
  modes = { behind = { what = "the schema is at migration a1b2c3, the code expects d4e5f6 and a table orders", breaks = function(lab)
    lab.psql(RESET .. "; CREATE TABLE alembic_version (version_num varchar(32) PRIMARY KEY); " ..
             "INSERT INTO alembic_version VALUES ('a1b2c3')")
  end, expect = { findings = { "migration.behind", "migration.relations_missing" }, offers = { "migrate" },
                  never = { "rollback" } } } },
  -- The code's head comes from the code (what `alembic heads` prints), not from an input; the
  -- downgrade is given, as a team would, and must not be offered once the upgrade succeeded.
  inputs = function(lab)
    local psql = lab.psql_command()
    return { url = lab.state.pg.url, heads = [[sh -c "echo 'd4e5f6 (head)'"]], relations = "orders",
             downgrade = psql .. [[ -c "DROP TABLE orders"]],
             migrate = psql .. [[ -c "CREATE TABLE orders (id int); UPDATE alembic_version SET version_num = 'd4e5f6'"]] }
  end,
  healthy = function(lab)
    local v = lab.psql("SELECT version_num FROM alembic_version")
    local orders = lab.psql("SELECT to_regclass('orders') IS NOT NULL")
    if v ~= "d4e5f6" or orders ~= "t" then return false, "at " .. v .. (orders ~= "t" and ", orders missing" or "") end
    return true
  end,
  repair = function(lab) lab.psql(RESET) end,
  cleanup = function(lab) pcall(lab.psql, RESET) end,
}
