-- slow-queries.drill.lua - how `runbook drill slow-queries` rehearses this runbook against the lab's
-- PostgreSQL: a transaction holds an exclusive lock and sleeps, a query waits for it.
local function count_where(lab, cond)
  return tonumber(lab.psql("SELECT count(*) FROM pg_stat_activity WHERE " .. cond)) or -1
end

-- A backend inside pg_sleep does not notice that its client was killed: it is terminated too.
local function end_lock_backends(lab)
  lab.psql("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity " ..
           "WHERE pid <> pg_backend_pid() AND (query LIKE '%drill_t%' OR query LIKE '%pg_sleep(600)%')")
end

return {
  modes = { locked = { what = "a transaction holds an exclusive lock and sleeps; a query waits for it", breaks = function(lab)
    local user = lab.state.pg.user
    lab.psql("DROP TABLE IF EXISTS drill_t; CREATE TABLE drill_t (id int)")
    lab.session(user, "BEGIN; LOCK TABLE drill_t IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(600);")
    lab.settle(function()
      return count_where(lab, "query LIKE 'BEGIN; LOCK TABLE drill_t%' OR query LIKE '%pg_sleep(600)%'") >= 1
    end, 10)
    lab.session(user, "SELECT count(*) FROM drill_t;")
    lab.settle(function() return count_where(lab, "wait_event_type = 'Lock'") >= 1 end, 10)
    lab.sleep(1.2)   -- longer than the drill's min
  end, expect = { findings = { "pg.lock_waits" }, offers = { "cancel" } } } },
  inputs = function(lab) return { url = lab.state.pg.url, min = "1s" } end,
  healthy = function(lab)
    local n = count_where(lab, "wait_event_type = 'Lock'")
    if n ~= 0 then return false, n .. " sessions wait on a lock" end
    return true
  end,
  repair = function(lab) lab.end_spawned() pcall(end_lock_backends, lab) end,
  cleanup = function(lab)
    lab.end_spawned()
    pcall(end_lock_backends, lab)
    pcall(lab.psql, "DROP TABLE IF EXISTS drill_t")
  end,
}
