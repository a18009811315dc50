"""What a Redis probe (conn:call) may not run although it writes nothing (stdlib/redis_guard.c), and
conn:scan, the bounded walk that replaces KEYS (stdlib/redis_scan.c). Scripts and functions are
actions: an EVAL_RO loop used to keep the server answering BUSY to everyone after the probe's
deadline. Commands Redis files under @dangerous are refused but for the reads of the allowlist.
Against real redis-server 7 processes (tests/servers_redis.py): a private one where a case could
hurt the server (the loop; 50 000 keys), the shared one otherwise."""
import servers_redis
from run import expect_eq, expect_in
from test_redis import run_rb, server
from steps import step

ACTION_HINT = "use conn:action(...) to run it through the confirmation gate"

PCALLS = '''
local c = must(redis.connect(URL))
local function try(label, ...)
  local ok, r = pcall(c.call, c, ...)
  emit(label, (ok and "ran|" or "raised|") .. tostring(type(r) == "table" and #r or r))
end
'''


def private(t, *args):
    r = servers_redis.RedisServer(t.dir, args=args)
    t.on_cleanup(r.stop)
    return r


def test_scripts_are_actions_and_a_loop_cannot_hold_the_server(t):
    r = private(t)
    r.cmd("SET", "g:key", "original")
    sha = r.cmd("SCRIPT", "LOAD", "while true do end")
    v, _, _, records = run_rb(t, step(PCALLS + '''
try("eval_ro_loop", "EVAL_RO", "while true do end", 0)
try("eval_ro", "EVAL_RO", "return redis.call('get', KEYS[1])", 1, "g:key")
try("eval", "EVAL", "return 1", 0)
try("evalsha", "EVALSHA", %(sha)s, 0)
try("evalsha_ro", "evalsha_ro", %(sha)s, 0)
try("fcall", "FCALL", "f", 0)
try("fcall_ro", "FCALL_RO", "f", 0)
try("function_list", "FUNCTION", "LIST")
try("function_load", "FUNCTION", "LOAD", "#!lua name=lib\\nredis.register_function('f', function() while true do end end)")
try("script_exists", "SCRIPT", "EXISTS", %(sha)s)
try("script_kill", "SCRIPT", "KILL")
emit("ping", c:call("PING"))''' % {"sha": '"%s"' % sha}), url=r.url())
    for label, shown in (("eval_ro_loop", "EVAL_RO"), ("eval_ro", "EVAL_RO"), ("eval", "EVAL"), ("evalsha", "EVALSHA"),
                         ("evalsha_ro", "EVALSHA_RO"), ("fcall", "FCALL"), ("fcall_ro", "FCALL_RO"),
                         ("function_list", "FUNCTION"), ("function_load", "FUNCTION"),
                         ("script_exists", "SCRIPT EXISTS"), ("script_kill", "SCRIPT KILL")):
        got = v[label]
        expect_in("raised|", got[:7], "%s refused: %s" % (label, got))
        expect_in("redis.call %s: %s runs or manages a script, which is an action" % (r.target(), shown), got)
        expect_in(ACTION_HINT, got)
    expect_eq(v["ping"], "PONG", "the connection still answers")
    c = r.client(timeout=1)
    try:
        expect_eq(c.cmd("PING"), "PONG", "the server answers others at once: no script is running")
    finally:
        c.close()
    expect_eq(r.cmd("FUNCTION", "LIST"), [], "no function was loaded")
    expect_eq([x["primitive"] for x in records if x.get("type") == "probe" and x.get("primitive") == "redis.call"],
              ["redis.call"], "nothing but the PING reached the server")


def test_dangerous_commands_are_refused(t):
    r = server()
    r.cmd("SET", "g:dkey", "original")
    r.cmd("RPUSH", "g:list", "3", "1", "2")
    before = r.cmd("CONFIG", "GET", "maxmemory")
    v, _, _, _ = run_rb(t, step(PCALLS + '''
try("keys", "KEYS", "*")
try("keys_lower", "keys", "g:*")
try("sort_ro", "SORT_RO", "g:list")
try("flushall", "FLUSHALL")
try("flushdb", "FLUSHDB", "ASYNC")
try("debug", "DEBUG", "SLEEP", "0")
try("shutdown", "SHUTDOWN", "NOSAVE")
try("config_set", "CONFIG", "SET", "maxmemory", "1mb")
try("config_resetstat", "CONFIG", "RESETSTAT")
try("acl_list", "ACL", "LIST")
try("client_pause", "CLIENT", "PAUSE", "10000")
try("slowlog_reset", "SLOWLOG", "RESET")
try("bgsave", "BGSAVE")
try("replicaof", "REPLICAOF", "127.0.0.1", "1")
try("pfselftest", "PFSELFTEST")'''))
    T = r.target()
    want = {
        "keys": "KEYS walks the whole keyspace in one call that blocks the server (use conn:scan",
        "keys_lower": "KEYS walks the whole keyspace",
        "sort_ro": "SORT_RO is filed under @dangerous",
        "flushall": "FLUSHALL can write", "flushdb": "FLUSHDB can write",
        "debug": "DEBUG SLEEP is an admin command", "shutdown": "SHUTDOWN NOSAVE is an admin command",
        "config_set": "CONFIG SET is an admin command", "config_resetstat": "CONFIG RESETSTAT is an admin command",
        "acl_list": "ACL LIST is an admin command", "client_pause": "CLIENT PAUSE is an admin command",
        "slowlog_reset": "SLOWLOG RESET is an admin command", "bgsave": "BGSAVE is an admin command",
        "replicaof": "REPLICAOF is an admin command", "pfselftest": "PFSELFTEST is an admin command",
    }
    for label, text in want.items():
        got = v[label]
        expect_in("raised|", got[:7], "%s refused: %s" % (label, got))
        expect_in("redis.call %s: %s" % (T, text), got)
        expect_in(ACTION_HINT, got)
    expect_eq(r.cmd("GET", "g:dkey"), "original")
    expect_eq(r.cmd("CONFIG", "GET", "maxmemory"), before)
    expect_eq(r.cmd("PING"), "PONG")


def test_allowlisted_reads_pass(t):
    r = server()
    r.cmd("SET", "g:rkey", "x")
    v, _, _, _ = run_rb(t, step(PCALLS + '''
try("info", "INFO", "server")
try("config_get", "CONFIG", "GET", "maxmemory")
try("slowlog_get", "SLOWLOG", "GET", "5")
try("slowlog_len", "SLOWLOG", "LEN")
try("client_list", "CLIENT", "LIST")
try("client_info", "CLIENT", "INFO")
try("latency_latest", "LATENCY", "LATEST")
try("memory_stats", "MEMORY", "STATS")
try("memory_usage", "MEMORY", "USAGE", "g:rkey")
try("dbsize", "DBSIZE")
try("lastsave", "LASTSAVE")
try("role", "ROLE")
try("module_list", "MODULE", "LIST")
try("get", "GET", "g:rkey")'''))
    for label in ("info", "config_get", "slowlog_get", "slowlog_len", "client_list", "client_info", "latency_latest",
                  "memory_stats", "memory_usage", "dbsize", "lastsave", "role", "module_list", "get"):
        expect_in("ran|", v[label][:4], "%s passes: %s" % (label, v[label]))
    expect_eq(v["config_get"], "ran|2")
    expect_eq(v["get"], "ran|x")


def test_scan_walks_the_keyspace_within_its_limit_and_deadline(t):
    r = private(t)
    r.cmd("EVAL", "for i = 1, 50000 do redis.call('SET', 'k:' .. i, 'v') end "
                  "redis.call('RPUSH', 'l:1', 'x') return 1", 0)
    expect_eq(r.cmd("DBSIZE"), 50001)
    v, _, _, records = run_rb(t, step('''
local c = must(redis.connect(URL))
local full = must(c:scan { match = "k:1*", count = 1000, limit = 20000, timeout = 60 })
local seen, dup = {}, 0
for _, k in ipairs(full) do if seen[k] then dup = dup + 1 end seen[k] = true end
emit("full", full.n .. "|" .. #full .. "|" .. tostring(full.truncated) .. "|" .. tostring(full.stopped) .. "|" .. dup)
local lim = must(c:scan { limit = 100 })
emit("limit", lim.n .. "|" .. #lim .. "|" .. tostring(lim.truncated) .. "|" .. lim.stopped)
local dl = must(c:scan { match = "nothing:*", count = 1, timeout = "300ms" })
emit("deadline", dl.n .. "|" .. tostring(dl.truncated) .. "|" .. dl.stopped .. "|" .. tostring(dl.scans > 1))
emit("deadline_ms", dl.ms)
emit("after", c:call("PING"))
emit("typed", must(c:scan { match = "l:*", type = "list" }).n .. "|" .. must(c:scan { match = "l:*", type = "string" }).n)
emit("one", must(c:scan { match = "k:4242" })[1])
emit("badopt", select(2, pcall(c.scan, c, { limt = 1 })))
emit("badlimit", select(2, pcall(c.scan, c, { limit = 0 })))'''), url=r.url())
    expect_eq(v["full"], "11111|11111|false|nil|0", "every key matching k:1*, once, not truncated")
    expect_eq(v["limit"], "100|100|true|limit")
    expect_in("0|true|deadline|true", v["deadline"])
    ms = float(v["deadline_ms"])
    if ms > 300 + 250:
        raise AssertionError("the walk took %.0f ms past its 300 ms deadline" % ms)
    expect_eq(v["after"], "PONG", "stopped before the deadline, the connection is still usable")
    expect_eq(v["typed"], "1|0")
    expect_eq(v["one"], "k:4242")
    expect_in("unknown option 'limt'", v["badopt"])
    expect_in("limit must be between 1 and", v["badlimit"])
    scans = [x["summary"] for x in records if x.get("type") == "probe" and x.get("primitive") == "redis.scan"]
    expect_in("SCAN: 100 keys in", scans[1])
    expect_in("stopped at the limit", scans[1])
