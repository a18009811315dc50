-- connection-pool-exhausted.drill.lua - how `runbook drill connection-pool-exhausted` rehearses this
-- runbook against the lab's PostgreSQL: psql sessions the drill keeps open, idle in a transaction.
local function idle_in_transaction(lab)
  return tonumber(lab.psql("SELECT count(*) FROM pg_stat_activity WHERE state = 'idle in transaction'")) or -1
end

return {
  modes = { stuck = { what = "5 sessions of the application's role idle inside a transaction", breaks = function(lab)
    for _ = 1, 5 do lab.session("app", "BEGIN; SELECT 1;") end
    lab.settle(function() return idle_in_transaction(lab) >= 5 end, 10)
    lab.sleep(1.2)   -- older than the drill's txn_age
  end, expect = { findings = { "pg.idle_in_transaction" }, offers = { "terminate" } } } },
  inputs = function(lab) return { url = lab.state.pg.url, txn_age = "1s" } end,
  healthy = function(lab)
    local n = idle_in_transaction(lab)
    if n ~= 0 then return false, n .. " sessions idle in transaction" end
    return true
  end,
  repair = function(lab) lab.end_spawned() end,
  cleanup = function(lab) lab.end_spawned() end,
}
