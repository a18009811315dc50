"""The redis module against a real redis-server 7 (tests/servers_redis.py): connect and ping, reply
mapping, read-only calls that the server vouches for (COMMAND INFO), actions through the gate (pty:
yes, FLUSHDB typed back; no terminal: declined), every ready-made probe, a fault matrix with
elapsed-time bounds measured on time.monotonic(), Ctrl-C, parallel(), and the canary password that
must appear nowhere.

Each runbook step prints `@@ key=value` lines that the test parses; run_live() also notes the
time.monotonic() at which each line arrived, which brackets a call between two markers. The shared
servers are started once (lazily) for the whole run; fault cases that break a server start their own.
"""
import os
import re
import select
import shutil
import tempfile
import threading
import time

import servers_redis
from run import black_hole, expect_eq, expect_in, expect_not_in, expect_rc, fail, free_port, listener
from steps import (ASK, MENU_AFTER_FAILURE, VALUE, expect_fast, expect_within, interrupt, lua_str, on_pty, parse,
                   probes, run_auto, run_stamped, step, write_runbook)

CANARY = servers_redis.PASSWORD          # "CANARYrd55"


# ------------------------------------------------------------------------------------ helpers

def server(password=False):
    return servers_redis.shared(password)


def runbook(t, steps, url=None, name="redistest", prelude=""):
    """Writes a runbook whose steps (Lua source) see redis, sh, URL (a literal URL, not an input:
    the module itself must keep a password in it secret) and emit(k, v)."""
    return write_runbook(t, name, 'local redis = require "redis"\nlocal sh = require "sh"\nlocal URL = %s\n%s'
                         % (lua_str(url or server().url()), prelude), steps, "redis test")


def run_rb(t, steps, url=None, args=(), want_rc=0, timeout=60, name="redistest", stdin=None):
    """Runs the steps with --auto (stdin /dev/null); returns (values, out, err, records)."""
    tr = t.path(name + ".cast")
    values, out, err = run_auto(t, runbook(t, steps, url=url, name=name), tr, args, want_rc, timeout, stdin)
    _, _, records = t.read_transcript(tr)
    return values, out, err, records


def run_live(t, steps, url=None, args=(), want_rc=0, timeout=60, name="redislive"):
    """Like run_rb, reading the output as it comes: also returns, for each @@ key, the
    time.monotonic() at which its line arrived."""
    tr = t.path(name + ".cast")
    rc, lines, out, err = run_stamped(t, runbook(t, steps, url=url, name=name), tr, args, timeout)
    if want_rc is not None:
        expect_rc((rc, out, err), want_rc)
    values, times = {}, {}
    for now, line in lines:
        m = VALUE.match(line)
        if m:
            values[m.group(1)] = m.group(2)
            times[m.group(1)] = now
    _, _, records = t.read_transcript(tr)
    return values, times, out, records


def between(times, a, b):
    return (times[b] - times[a]) * 1000


def timed_connect(t, target, timeout, url=None):
    """Runs redis.connect(target, { timeout = timeout }) (both Lua expressions; URL is url) between
    two markers; returns the emitted kind and err, the ms between the markers, and the records."""
    v, times, _, records = run_live(t, step('''
emit("start", 1)
local c, err, kind = redis.connect(%s, { timeout = %s })
emit("kind", kind) emit("err", err)''' % (target, timeout)), url=url)
    return v, between(times, "start", "kind"), records


def mute_listener(t):
    """A listener that never accepts: the kernel completes the handshakes, nobody ever answers."""
    return listener(t, 128).getsockname()[1]


def private_server(t, **kw):
    r = servers_redis.RedisServer(t.dir, **kw)
    t.on_cleanup(r.stop)
    return r


def wait_until(what, fn, timeout=15):
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v:
            return v
        if time.monotonic() > deadline:
            fail("%s: not within %ss" % (what, timeout))
        select.select([], [], [], 0.02)   # poll interval, not a synchronisation


# ------------------------------------------------------------------------- connect and ping

def test_ping_connect_close_and_db(t):
    r = server()
    r.cmd("SET", "rt:db3", "three", db=3)
    v, _, _, records = run_rb(t, step('''
local p = must(redis.ping(URL))
emit("ping", tostring(p.ok) .. "|" .. p.version .. "|" .. p.role)
emit("ms", p.ms) emit("connect_ms", p.connect_ms)
local c = must(redis.connect(%(url3)s))
emit("tostring", tostring(c))
emit("get", c:call("GET", "rt:db3"))
emit("get_db0", tostring(must(redis.connect(URL)):call("GET", "rt:db3")))
c:close()
c:close()
emit("closed", tostring(c))
emit("after_close", select(2, pcall(c.call, c, "PING")))
do
  local d <close> = must(redis.connect(URL))
  ctx.state.d = d
end
emit("tbc", tostring(ctx.state.d))
local byname = must(redis.connect("redis://localhost:%(port)d"))
emit("byname", byname:call("PING") .. "|" .. tostring(byname))
emit("misuse", select(2, pcall(c.call)))''' % {"url3": lua_str(r.url(db=3)), "port": r.port}))
    expect_eq(v["ping"], "true|%s|master" % r.info("server")["redis_version"])
    if not 0 < float(v["ms"]) < 1000 or not 0 < float(v["connect_ms"]) <= float(v["ms"]):
        fail("ping ms %s, connect_ms %s" % (v["ms"], v["connect_ms"]))
    expect_eq(v["tostring"], "redis.conn %s" % r.target(3))
    expect_eq(v["get"], "three", "the URL's database is selected")
    expect_eq(v["get_db0"], "nil")
    expect_eq(v["closed"], "redis.conn %s (closed)" % r.target(3))
    expect_in("redis.call %s: the connection is closed" % r.target(3), v["after_close"])
    expect_eq(v["tbc"], "redis.conn %s (closed)" % r.target(0), "<close> closes the handle")
    expect_eq(v["byname"], "PONG|redis.conn localhost:%d/0" % r.port)
    expect_in("call it on a connection, with a colon", v["misuse"])
    rec = probes(records, "redis.ping")[0]
    expect_eq((rec["outcome"], rec["deadline_ms"], rec["target"]), ("ok", 2000, r.target()))
    expect_eq(probes(records, "redis.connect")[0]["outcome"], "ok")


def test_url_errors_and_connect_failures(t):
    r = server()
    closed = free_port()
    v, _, _, records = run_rb(t, step('''
local function try(label, url, opts)
  local c, err, kind = redis.connect(url, opts)
  emit(label, tostring(c) .. "|" .. tostring(err) .. "|" .. tostring(kind))
end
try("tls", "rediss://127.0.0.1:%(port)d/0")
try("badport", "redis://127.0.0.1:99999")
try("scheme", "http://127.0.0.1:%(port)d")
try("baddb", "redis://127.0.0.1:%(port)d/x")
try("query", "redis://127.0.0.1:%(port)d/0?timeout=1")
try("dbrange", "redis://127.0.0.1:%(port)d/99")
try("refused", "redis://127.0.0.1:%(closed)d/2")
try("dns", "redis://no-such-host.invalid:%(port)d", { timeout = 5 })
emit("badopt", select(2, pcall(redis.connect, "redis://127.0.0.1:%(port)d", { timout = 1 })))
emit("badarg", select(2, pcall(redis.connect, {})))''' % {"port": r.port, "closed": closed}))
    expect_eq(v["tls"].split("|")[0], "nil")
    expect_in("redis.connect 127.0.0.1:%d/0: TLS not supported" % r.port, v["tls"])
    expect_eq(v["tls"].split("|")[2], "error")
    expect_in("invalid URL: bad port", v["badport"])
    expect_in("invalid URL: not a redis:// URL", v["scheme"])
    expect_in("invalid URL: bad database number", v["baddb"])
    expect_in("query parameters are not supported", v["query"])
    expect_eq(v["dbrange"], "nil|redis.connect 127.0.0.1:%d/99: SELECT failed: ERR DB index is out of range|ERR" % r.port)
    expect_eq(v["refused"], "nil|redis.connect 127.0.0.1:%d/2: connection refused (nothing listens there: is the "
              "service up?)|refused" % closed)
    expect_eq(v["dns"].split("|")[2], "dns")
    expect_in("redis.connect no-such-host.invalid:%d/0: cannot resolve no-such-host.invalid" % r.port, v["dns"])
    expect_in("unknown option 'timout' (did you mean 'timeout'?)", v["badopt"])
    expect_in("bad argument #1", v["badarg"])
    outcomes = [rec["outcome"] for rec in probes(records, "redis.connect")]
    expect_in("refused", outcomes)


# ------------------------------------------------------------------------ calls and replies

def test_call_maps_replies_to_lua(t):
    r = server()
    r.cmd("DEL", "rt:list", "rt:str", "rt:missing")
    r.cmd("RPUSH", "rt:list", "a", "b", "c")
    r.cmd("SET", "rt:str", "hello")
    v, _, _, records = run_rb(t, step('''
local c = must(redis.connect(URL))
emit("status", c:call("PING"))
emit("string", c:call("GET", "rt:str"))
local n = c:call("STRLEN", "rt:str")
emit("integer", math.type(n) .. ":" .. n)
emit("nil", select("#", c:call("GET", "rt:missing")) .. ":" .. tostring(c:call("GET", "rt:missing")))
local arr = c:call("LRANGE", "rt:list", 0, -1)
emit("array", table.concat(arr, ",") .. ":" .. arr.n)
local m = c:call("MGET", "rt:str", "rt:missing", "rt:str")
emit("holes", tostring(m[1]) .. "," .. tostring(m[2]) .. "," .. tostring(m[3]) .. ":" .. m.n)
local x, err, code = c:call("LLEN", "rt:str")
emit("error", tostring(x) .. "|" .. err .. "|" .. code)
emit("after_error", c:call("PING", "again"))
local cfg = c:call("CONFIG", "GET", "maxmemory-policy")
emit("config_get", cfg[1] .. "=" .. cfg[2])
emit("client_list", c:call("CLIENT", "LIST"):find("cmd=", 1, true) ~= nil)
emit("client_info", c:call("client", "info"):find("id=", 1, true) ~= nil)
emit("slowlog_len", math.type(c:call("SLOWLOG", "LEN")))
emit("memory_usage", math.type(c:call("MEMORY", "USAGE", "rt:str")))
emit("info", c:call("INFO", "server"):find("redis_version", 1, true) ~= nil)
emit("eval_ro", select(2, pcall(c.call, c, "EVAL_RO", "return 7", 0)))
emit("unknown", select(3, c:call("NOSUCHCMD", "x")))
emit("timeout_opt", c:call("GET", "rt:str", { timeout = "1s" }))
emit("badtype", select(2, pcall(c.call, c, "GET", true)))
emit("noname", select(2, pcall(c.call, c)))''' ))
    expect_eq(v["status"], "PONG")
    expect_eq(v["string"], "hello")
    expect_eq(v["integer"], "integer:5")
    expect_eq(v["nil"], "1:nil")
    expect_eq(v["array"], "a,b,c:3")
    expect_eq(v["holes"], "hello,nil,hello:3")
    expect_eq(v["error"], "nil|redis.call %s: WRONGTYPE Operation against a key holding the wrong kind of value"
              "|WRONGTYPE" % r.target())
    expect_eq(v["after_error"], "again", "a server error leaves the connection usable")
    expect_eq(v["config_get"], "maxmemory-policy=noeviction")
    expect_eq((v["client_list"], v["client_info"], v["slowlog_len"], v["memory_usage"], v["info"]),
              ("true", "true", "integer", "integer", "true"), "read-only admin commands of the allowlist")
    expect_in("EVAL_RO runs or manages a script, which is an action", v["eval_ro"])
    expect_eq(v["unknown"], "ERR")
    expect_eq(v["timeout_opt"], "hello")
    expect_in("argument 2 is a boolean", v["badtype"])
    expect_in("the first argument is the command", v["noname"])
    calls = probes(records, "redis.call")
    expect_in("WRONGTYPE", [c["outcome"] for c in calls])
    expect_in("GET: string (5 bytes)", [c["summary"] for c in calls])


def test_a_probe_cannot_write(t):
    r = server()
    r.cmd("SET", "rt:guard", "original")
    v, _, _, _ = run_rb(t, step('''
local c = must(redis.connect(URL))
local cmds = {
  { "SET", "rt:guard", "changed" }, { "set", "rt:guard", "changed" }, { "DEL", "rt:guard" },
  { "EXPIRE", "rt:guard", "1" }, { "FLUSHDB" }, { "FLUSHALL" }, { "CONFIG", "SET", "maxmemory", "1mb" },
  { "PUBLISH", "ch", "x" }, { "EVAL", "return redis.call('set', 'rt:guard', 'x')", 0 },
  { "CLIENT", "KILL", "ID", "999999" }, { "DEBUG", "SLEEP", "0" }, { "SCRIPT", "FLUSH" }, { "MULTI" },
  { "AUTH", "x" }, { "SWAPDB", "0", "1" }, { "XGROUP", "CREATE", "s", "g", "$", "MKSTREAM" },
}
for i, cmd in ipairs(cmds) do
  local ok, err = pcall(c.call, c, table.unpack(cmd))
  emit("c" .. i, tostring(ok) .. "|" .. tostring(err))
end
for _, cmd in ipairs { "SELECT", "SUBSCRIBE", "MONITOR", "HELLO", "QUIT" } do
  emit("n_" .. cmd, select(2, pcall(c.call, c, cmd, "1")))
end
emit("get", c:call("GET", "rt:guard"))'''))
    T = r.target()
    want = {
        1: "SET can write", 2: "SET can write", 3: "DEL can write", 4: "EXPIRE can write",
        5: "FLUSHDB can write", 6: "FLUSHALL can write", 7: "CONFIG SET is an admin command",
        8: "PUBLISH is a publish/subscribe command", 9: "EVAL runs or manages a script, which is an action",
        10: "CLIENT KILL is an admin command", 11: "DEBUG SLEEP is an admin command", 12: "SCRIPT FLUSH runs or manages a script, which is an action",
        13: "MULTI is a transaction command", 14: "AUTH changes the connection's login", 15: "SWAPDB can write",
        16: "XGROUP CREATE can write",
    }
    for i, text in want.items():
        got = v["c%d" % i]
        expect_in("false|", got, "call %d raised" % i)
        expect_in("redis.call %s: %s" % (T, text), got)
        expect_in("use conn:action(...) to run it through the confirmation gate", got)
    for cmd in ("SELECT", "SUBSCRIBE", "MONITOR", "HELLO", "QUIT"):
        expect_in("redis.call %s: %s is not supported" % (T, cmd), v["n_" + cmd])
    expect_eq(v["get"], "original")
    expect_eq(r.cmd("GET", "rt:guard"), "original", "the key, read by the fixture")
    expect_eq(r.cmd("TTL", "rt:guard"), -1, "no expiry was set")
    expect_eq(r.cmd("EXISTS", "s"), 0, "no stream was created")


def test_command_info_is_asked_once_per_command(t):
    r = private_server(t)
    v, _, _, _ = run_rb(t, step('''
local c = must(redis.connect(URL))
for i = 1, 5 do c:call("GET", "k" .. i) end
for i = 1, 3 do c:call("CONFIG", "GET", "maxmemory") end
for i = 1, 2 do c:call("config", "get", "maxclients") end
pcall(c.call, c, "CONFIG", "SET", "maxmemory", "1")
pcall(c.call, c, "CONFIG", "SET", "maxmemory", "1")
local other = must(redis.connect(URL))
other:call("GET", "x")
emit("done", 1)'''), url=r.url())
    stats = r.info("commandstats")
    calls = int(re.search(r"calls=(\d+)", stats["cmdstat_command|info"]).group(1))
    expect_eq(calls, 4, "COMMAND INFO calls: GET, CONFIG GET, CONFIG SET, and GET on the second connection")
    expect_eq(int(re.search(r"calls=(\d+)", stats["cmdstat_get"]).group(1)), 6)
    expect_not_in("cmdstat_config|set", stats, "CONFIG SET never reached the server")


# --------------------------------------------------------------------------------- actions

def test_action_asks_first_yes_on_a_terminal(t):
    r = server()
    r.cmd("SET", "rt:act", "original")
    path = runbook(t, step('''
local c = must(redis.connect(URL))
emit("result", must(c:action("SET", "rt:act", "changed by the action")))
emit("n", must(c:action("INCR", "rt:counter", { summary = "bump the counter" })))'''), name="act")
    p, tr = on_pty(t, path, "act.cast")
    p.expect(r'ACTION  SET rt:act "changed by the action" on %s\n' % re.escape(r.target()))
    p.expect(ASK)
    p.sendline("yes")
    p.expect(r"@@ result=OK\n")
    p.expect(r"ACTION  bump the counter\n")
    p.expect(r"INCR rt:counter on %s" % re.escape(r.target()))
    p.expect(ASK)
    p.sendline("yes")
    n = int(p.expect(r"@@ n=(\d+)\n").group(1))
    expect_eq(p.wait(), 0, "exit code")
    expect_eq(r.cmd("GET", "rt:act"), "changed by the action")
    expect_eq(int(r.cmd("GET", "rt:counter")), n)
    _, _, records = t.read_transcript(tr)
    kinds = [x["type"] for x in records if x["type"] in ("plan", "confirm", "action_start", "action_result")]
    expect_eq(kinds[:4], ["plan", "confirm", "action_start", "action_result"])
    plan = [x for x in records if x["type"] == "plan"][0]
    expect_eq((plan["primitive"], plan["target"], plan["irreversible"]), ("redis.action", r.target(), False))
    result = [x for x in records if x["type"] == "action_result"][0]
    expect_eq((result["primitive"], result["outcome"], result["summary"]), ("redis.action", "ok", "OK"))
    expect_eq(result["target"], [x for x in records if x["type"] == "action_start"][0]["target"], "result's target")


def test_action_without_a_terminal_is_declined_and_changes_nothing(t):
    r = server()
    r.cmd("SET", "rt:act2", "original")
    v, out, _, records = run_rb(t, step('''
local c = must(redis.connect(URL))
emit("before", 1)
c:action("SET", "rt:act2", "changed")
emit("NOT_REACHED", 1)''') + step('emit("next", 1)', "next", "Next"), want_rc=4)
    expect_in("not run: no terminal to confirm on", out)
    expect_eq(v.get("NOT_REACHED"), None)
    expect_eq(v["next"], "1", "the run goes on with the next step")
    expect_eq(r.cmd("GET", "rt:act2"), "original")
    confirm = [x for x in records if x["type"] == "confirm"][0]
    expect_eq((confirm["answer"], confirm["how"]), ("declined", "no terminal"))
    expect_eq([x for x in records if x["type"] == "action_start"], [])


def test_flushdb_needs_the_target_typed_back(t):
    r = server()
    r.cmd("FLUSHDB", db=7)
    for i in range(3):
        r.cmd("SET", "rt:flush%d" % i, "x", db=7)
    r.cmd("SET", "rt:keep", "kept")
    path = runbook(t, step('''
local c = must(redis.connect(%s))
emit("flushed", must(c:action("FLUSHDB")))''' % lua_str(r.url(db=7))), name="flush")
    p, tr = on_pty(t, path, "flush.cast")
    target = r.target(7)
    p.expect(r"ACTION  FLUSHDB on %s\n" % re.escape(target))
    p.expect(r"impact  3 keys in db 7\n")
    p.expect(r"This cannot be undone\.")
    p.expect(r"Type the target \(%s\) to confirm, or n to skip: " % re.escape(target))
    p.sendline("yes")
    p.expect(r"That is not the target\. Type %s exactly to confirm, or n to skip: " % re.escape(target))
    expect_eq(r.cmd("DBSIZE", db=7), 3, "nothing flushed after 'yes'")
    p.sendline(target)
    p.expect(r"@@ flushed=OK\n")
    expect_eq(p.wait(), 0, "exit code")
    expect_eq(r.cmd("DBSIZE", db=7), 0)
    expect_eq(r.cmd("GET", "rt:keep"), "kept", "the other database is untouched")
    _, _, records = t.read_transcript(tr)
    plan = [x for x in records if x["type"] == "plan"][0]
    expect_eq((plan["irreversible"], plan["target"], plan["blast"]), (True, target, "3 keys in db 7"))
    confirm = [x for x in records if x["type"] == "confirm"][-1]
    expect_eq((confirm["answer"], confirm["how"]), ("yes", "typed the target"))


def test_action_dry_run_yes_and_server_errors(t):
    r = server()
    r.cmd("SET", "rt:dry", "original")
    r.cmd("DEL", "rt:incr")
    v, out, _, records = run_rb(t, step('''
local c = must(redis.connect(URL))
local d = must(c:action("SET", "rt:dry", "changed"))
emit("dry", tostring(d.dry_run) .. "|" .. d.command .. "|" .. d.target)
local f = must(c:action("FLUSHALL"))
emit("dry_flush", tostring(f.dry_run))'''), args=["--dry-run"])
    expect_eq(v["dry"], "true|SET rt:dry changed|%s" % r.target())
    expect_eq(v["dry_flush"], "true")
    expect_in("impact  ", out)
    expect_in("dry run: not executed", out)
    expect_eq(r.cmd("GET", "rt:dry"), "original")
    expect_eq([x for x in records if x["type"] == "action_start"], [])
    v, _, _, records = run_rb(t, step('''
local c = must(redis.connect(URL))
emit("incr", c:action("INCR", "rt:incr"))
local x, err, code = c:action("LPUSH", "rt:dry", "v")
emit("wrongtype", tostring(x) .. "|" .. err .. "|" .. code)
emit("unsupported", select(2, pcall(c.action, c, "SUBSCRIBE", "ch")))
emit("badopt", select(2, pcall(c.action, c, "PING", { sumary = "x" })))'''), args=["--yes"], name="yes")
    expect_eq(v["incr"], "1")
    expect_eq(v["wrongtype"], "nil|redis.action %s: WRONGTYPE Operation against a key holding the wrong kind of "
              "value|WRONGTYPE" % r.target())
    expect_in("redis.action %s: SUBSCRIBE is not supported" % r.target(), v["unsupported"])
    expect_in("unknown option 'sumary' (did you mean 'summary'?)", v["badopt"])
    outcomes = [x["outcome"] for x in records if x["type"] == "action_result"]
    expect_eq(outcomes, ["ok", "WRONGTYPE"])


# ------------------------------------------------------------------------------ the probes

def test_info_is_parsed_into_typed_fields(t):
    r = server()
    r.cmd("SET", "rt:info", "1")
    v, _, _, _ = run_rb(t, step('''
local c = must(redis.connect(URL))
local all = must(c:info())
emit("version", all.server.redis_version)
emit("uptime", math.type(all.server.uptime_in_seconds))
emit("frag", math.type(all.memory.mem_fragmentation_ratio))
emit("db0", math.type(all.keyspace.db0.keys) .. ":" .. math.type(all.keyspace.db0.avg_ttl))
emit("role", all.replication.role)
local mem = must(c:info("memory"))
emit("only", tostring(mem.server == nil and mem.memory ~= nil))
emit("used", mem.memory.used_memory)
emit("policy", mem.memory.maxmemory_policy)
local stats = must(c:info("commandstats", { timeout = 1 }))
emit("cmdstat", math.type(stats.commandstats.cmdstat_info.calls))
local bad, err, kind = c:info("nosuchsection")
emit("empty", tostring(next(bad or {})))'''))
    expect_eq(v["version"], r.info("server")["redis_version"])
    expect_eq((v["uptime"], v["frag"], v["db0"], v["role"]), ("integer", "float", "integer:integer", "master"))
    expect_eq(v["only"], "true")
    used = int(r.info("memory")["used_memory"])
    if abs(int(v["used"]) - used) > used * 0.2:
        fail("used_memory %s, the server says %d" % (v["used"], used))
    expect_eq((v["policy"], v["cmdstat"], v["empty"]), ("noeviction", "integer", "nil"))


def test_memory_with_maxmemory_and_evictions(t):
    r = private_server(t, args=["--maxmemory", "3mb", "--maxmemory-policy", "allkeys-lru"])
    c = r.client()
    value = "x" * 20000
    for i in range(300):
        c.cmd("SET", "fill:%d" % i, value)
    c.close()
    evicted = int(r.info("stats")["evicted_keys"])
    if evicted == 0:
        fail("the fixture did not cause evictions")
    v, _, _, records = run_rb(t, step('''
local m = must(must(redis.connect(URL)):memory())
for _, k in ipairs { "used_memory", "used_memory_rss", "used_memory_peak", "maxmemory", "used_pct",
                     "fragmentation_ratio", "evicted_keys", "maxmemory_policy" } do
  emit(k, m[k]) emit(k .. "_type", math.type(m[k]) or type(m[k]))
end
local shared = must(must(redis.connect(%s)):memory())
emit("shared_pct", tostring(shared.used_pct))
emit("shared_max", shared.maxmemory)''' % lua_str(server().url())), url=r.url())
    expect_eq(int(v["maxmemory"]), 3 * 1024 * 1024)
    expect_eq(v["maxmemory_policy"], "allkeys-lru")
    expect_eq(int(v["evicted_keys"]), int(r.info("stats")["evicted_keys"]))
    pct = float(v["used_pct"])
    expect_eq(abs(pct - int(v["used_memory"]) * 100.0 / (3 * 1024 * 1024)) < 0.01, True, "used_pct")
    if not 10 < pct < 150:
        fail("used_pct %s" % v["used_pct"])
    for k in ("used_memory", "used_memory_rss", "used_memory_peak", "maxmemory", "evicted_keys"):
        expect_eq(v[k + "_type"], "integer", k)
    expect_eq((v["used_pct_type"], v["fragmentation_ratio_type"]), ("float", "float"))
    expect_eq((v["shared_pct"], v["shared_max"]), ("nil", "0"), "no maxmemory: no used_pct")
    rec = probes(records, "redis.memory")[0]
    expect_in("of maxmemory 3145728 bytes", rec["summary"])


def test_clients_probe(t):
    r = private_server(t, args=["--maxclients", "50"])
    idle = [r.client() for _ in range(2)]
    blocker = r.client()
    blocker.send("BLPOP", "rt:nothing", "0")
    t.on_cleanup(lambda: [c.close() for c in idle + [blocker]])
    r.wait_until("a blocked client", lambda: r.info("clients")["blocked_clients"] == "1")
    v, _, _, _ = run_rb(t, step('''
local cl = must(must(redis.connect(URL)):clients())
for _, k in ipairs { "connected", "blocked", "maxclients", "rejected", "used_pct" } do emit(k, cl[k]) end'''),
                        url=r.url())
    if not 4 <= int(v["connected"]) <= 6:
        fail("connected = %s (3 fixture clients and the probe's own)" % v["connected"])
    expect_eq((v["blocked"], v["maxclients"], v["rejected"]), ("1", "50", r.info("stats")["rejected_connections"]))
    expect_eq(abs(float(v["used_pct"]) - int(v["connected"]) * 2.0) < 0.01, True, "used_pct of 50")


def test_replication_primary_and_replica(t):
    master = private_server(t, args=["--repl-diskless-sync-delay", "0"])
    replica = private_server(t, replicaof=master)
    master.wait_until("the replica online", lambda: "state=online" in master.info("replication").get("slave0", ""))
    replica.wait_until("the link up", lambda: replica.info("replication").get("master_link_status") == "up")
    steps = step('''
local m = must(must(redis.connect(URL)):replication())
emit("m_role", m.role) emit("m_count", m.connected_replicas) emit("m_n", #m.replicas)
local r1 = m.replicas[1]
emit("r1", r1.ip .. ":" .. r1.port .. "|" .. r1.state .. "|" .. math.type(r1.lag) .. "|" .. math.type(r1.lag_bytes))
emit("m_offset", math.type(m.master_repl_offset))
local s = must(must(redis.connect(%s)):replication())
emit("s_role", s.role) emit("s_master", s.master_host .. ":" .. s.master_port)
emit("s_link", s.master_link_status .. "|" .. tostring(s.master_link_up))
emit("s_io", math.type(s.master_last_io_seconds)) emit("s_replicas", #s.replicas)''' % lua_str(replica.url()))
    v, _, _, _ = run_rb(t, steps, url=master.url())
    expect_eq((v["m_role"], v["m_count"], v["m_n"]), ("master", "1", "1"))
    expect_eq(v["r1"], "127.0.0.1:%d|online|integer|integer" % replica.port)
    expect_eq(v["m_offset"], "integer")
    expect_eq((v["s_role"], v["s_master"], v["s_link"]), ("slave", "127.0.0.1:%d" % master.port, "up|true"))
    expect_eq((v["s_io"], v["s_replicas"]), ("integer", "0"))
    master.stop()
    replica.wait_until("the link down", lambda: replica.info("replication").get("master_link_status") == "down")
    v, _, _, _ = run_rb(t, step('''
local s = must(must(redis.connect(URL)):replication())
emit("s_link", s.master_link_status .. "|" .. tostring(s.master_link_up))'''), url=replica.url(), name="down")
    expect_eq(v["s_link"], "down|false")


def test_slowlog_probe(t):
    r = private_server(t, args=["--slowlog-log-slower-than", "0", "--slowlog-max-len", "100"])
    r.cmd("SET", "rt:slow", "some value")
    v, _, _, _ = run_rb(t, step('''
local c = must(redis.connect(URL))
local two = must(c:slowlog { limit = 2 })
emit("two", #two)
local all = must(c:slowlog())
emit("total", all.total) emit("n", #all)
for _, e in ipairs(all) do
  if e.command[1] == "SET" then
    emit("set", table.concat(e.command, " ") .. "|" .. math.type(e.id) .. "|" .. math.type(e.duration_us))
    emit("time", e.time) emit("client", e.client)
  end
end
emit("badlimit", select(2, pcall(c.slowlog, c, { limit = -1 })))'''), url=r.url())
    expect_eq(v["two"], "2")
    if not int(v["n"]) <= 10 or int(v["total"]) < int(v["n"]):
        fail("n %s, total %s" % (v["n"], v["total"]))
    expect_eq(v["set"], "SET rt:slow some value|integer|integer")
    if abs(int(v["time"]) - time.time()) > 120:
        fail("slowlog time %s is not now" % v["time"])
    expect_eq(v["client"].startswith("127.0.0.1:"), True, "client address")
    expect_in("option 'limit' must be 0-100000", v["badlimit"])


def test_latency_probe(t):
    v, _, _, records = run_rb(t, step('''
local c = must(redis.connect(URL))
local l = must(c:latency { samples = 20 })
for _, k in ipairs { "samples", "min", "avg", "max", "p95" } do emit(k, l[k]) end
emit("one", must(c:latency { samples = 1 }).samples)
emit("default", must(c:latency()).samples)'''))
    mn, avg, mx, p95 = (float(v[k]) for k in ("min", "avg", "max", "p95"))
    expect_eq(v["samples"], "20")
    if not (0 < mn <= avg <= mx and mn <= p95 <= mx and mx < 500):
        fail("latency min %s avg %s p95 %s max %s" % (mn, avg, p95, mx))
    expect_eq((v["one"], v["default"]), ("1", "20"))
    expect_in("20 PINGs: min", probes(records, "redis.latency")[0]["summary"])


def test_keyspace_and_llen(t):
    r = private_server(t)
    r.cmd("SET", "a", "1")
    r.cmd("SET", "b", "2", "EX", "1000")
    r.cmd("RPUSH", "queue", *["job%d" % i for i in range(7)])
    r.cmd("SET", "c", "3", db=5)
    r.cmd("SET", "d", "4", db=5)
    v, _, _, records = run_rb(t, step('''
local c = must(redis.connect(URL))
local ks = must(c:keyspace())
emit("n", #ks) emit("keys", ks.keys) emit("expires", ks.expires)
for i, d in ipairs(ks) do emit("db" .. i, d.db .. ":" .. d.keys .. ":" .. d.expires .. ":" .. math.type(d.avg_ttl)) end
emit("llen", c:llen("queue"))
emit("llen_type", math.type(c:llen("queue")))
emit("missing", c:llen("nope"))
local x, err, code = c:llen("a")
emit("wrongtype", tostring(x) .. "|" .. err .. "|" .. code)'''), url=r.url())
    expect_eq((v["n"], v["keys"], v["expires"]), ("2", "5", "1"))
    expect_eq((v["db1"], v["db2"]), ("0:3:1:integer", "5:2:0:integer"))
    expect_eq((v["llen"], v["llen_type"], v["missing"]), ("7", "integer", "0"))
    expect_eq(v["wrongtype"], "nil|redis.llen %s: WRONGTYPE Operation against a key holding the wrong kind of "
              "value|WRONGTYPE" % r.target())
    expect_eq([x["outcome"] for x in probes(records, "redis.llen")], ["ok", "ok", "ok", "WRONGTYPE"])


# ------------------------------------------------------------------------------ passwords

def test_auth_right_wrong_missing_and_user(t):
    r = server(password=True)
    v, times, _, records = run_live(t, step('''
emit("good", must(redis.connect(URL)):call("PING"))
emit("user", must(redis.connect(%(user)s)):call("PING"))
emit("option", must(redis.connect(%(bare)s, { password = %(pw)s })):call("PING"))
emit("start", 1)
local c, err, kind = redis.connect(%(wrong)s, { timeout = 5 })
emit("wrong", tostring(c) .. "|" .. err .. "|" .. kind)
c, err, kind = redis.connect(%(bare)s)
emit("none", tostring(c) .. "|" .. err .. "|" .. kind)
local p, perr, pkind = redis.ping(%(wrong)s)
emit("ping", pkind)''' % {"user": lua_str(r.url(user="default")), "bare": lua_str("redis://127.0.0.1:%d" % r.port),
                          "pw": lua_str(CANARY), "wrong": lua_str(r.url(password="wrong-pass"))}), url=r.url())
    expect_eq((v["good"], v["user"], v["option"]), ("PONG", "PONG", "PONG"))
    expect_eq(v["wrong"], "nil|redis.connect %s: AUTH failed: WRONGPASS invalid username-password pair or user is "
              "disabled.|auth" % r.target())
    expect_in("nil|redis.connect %s: the server requires a password (NOAUTH)" % r.target(), v["none"])
    expect_eq(v["none"].split("|")[2], "auth")
    expect_eq(v["ping"], "auth")
    expect_fast(between(times, "start", "wrong"), 250, "wrong password (5 s deadline)")
    expect_in("auth", [x["outcome"] for x in probes(records, "redis.connect")])


def test_canary_password_appears_nowhere(t):
    r = server(password=True)
    closed = free_port()
    path = runbook(t, step('''
local c = must(redis.connect(%(bare)s, { password = PW }))
emit("pw", PW)
emit("url", URL)
local c2 = must(redis.connect(URL))
emit("tostring", tostring(c2))
emit("ping", must(redis.ping(URL)).ok)
emit("config", table.concat(c2:call("CONFIG", "GET", "requirepass"), "="))
emit("auth_action", must(c2:action("AUTH", PW)))
emit("auth_user", must(c2:action("AUTH", "default", PW)))
emit("config_set", must(c2:action("CONFIG", "SET", "requirepass", PW)))
emit("refused", select(2, redis.connect(%(refused)s)))
emit("invalid", select(2, redis.connect(%(invalid)s)))
emit("raised", select(2, pcall(c2.call, c2, "SET", "k", PW)))
c2:close()
emit("closed", select(2, pcall(c2.call, c2, "GET", "k")))
local p, err = redis.ping(URL, { timeout = 0 })
emit("timeout", err)
error("step fails with " .. URL)''' % {
        "bare": lua_str("redis://127.0.0.1:%d/1" % r.port),
        "refused": lua_str("redis://:%s@127.0.0.1:%d/0" % (CANARY, closed)),
        "invalid": lua_str("redis://:%s@127.0.0.1:99999/0" % CANARY)}),
        url=r.url(), name="canary", prelude="local PW = %s" % lua_str(CANARY))
    tr = t.path("canary.cast")
    rc, out, err = t.run(["exec", path, "--auto", "--yes", "--transcript", tr])
    v = parse(out)
    expect_eq(v["pw"], "***", "a password given as an option is registered as a secret")
    expect_eq(v["tostring"], "redis.conn %s" % r.target())
    expect_eq((v["ping"], v["config"]), ("true", "requirepass=***"))
    expect_eq((v["auth_action"], v["auth_user"], v["config_set"]), ("OK", "OK", "OK"))
    expect_in("AUTH ***", out)
    expect_in("AUTH default ***", out)
    expect_in("CONFIG SET requirepass ***", out)
    expect_in("redis.connect 127.0.0.1:%d/0: connection refused" % closed, v["refused"])
    expect_in("invalid URL", v["invalid"])
    expect_in("SET can write", v["raised"])
    expect_eq(rc, 1, "the last step fails")
    with open(tr, "rb") as f:
        raw = f.read().decode("utf-8", "replace")
    for what, text in (("stdout", out), ("stderr", err), ("transcript", raw)):
        expect_not_in(CANARY, text, what)


# ---------------------------------------------------------------------------- fault matrix

def test_fault_refused_port(t):
    closed = free_port()
    v, ms, _ = timed_connect(t, lua_str("redis://127.0.0.1:%d" % closed), 5)
    expect_eq(v["kind"], "refused")
    expect_fast(ms, 250, "refused port (5 s deadline)")


def test_fault_listener_that_never_accepts(t):
    port = black_hole(t)
    v, ms, records = timed_connect(t, lua_str("redis://127.0.0.1:%d" % port), '"700ms"')
    expect_eq(v["kind"], "timeout")
    expect_in("redis.connect 127.0.0.1:%d/0: timed out after 700 ms connecting (no answer" % port, v["err"])
    expect_within(ms, 700, "connect to a black hole (time.monotonic)")
    rec = probes(records, "redis.connect")[0]
    expect_eq((rec["deadline_ms"], rec["outcome"]), (700, "timeout"))
    expect_within(float(rec["duration_ms"]), 700, "connect to a black hole (transcript)")


def test_fault_listener_that_never_answers(t):
    port = mute_listener(t)
    v, ms, _ = timed_connect(t, lua_str("redis://127.0.0.1:%d" % port), '"800ms"')
    expect_eq(v["kind"], "timeout")
    expect_in("timed out after 800 ms waiting for the server to answer (connected, but it does not answer", v["err"])
    expect_within(ms, 800, "connect to a mute listener")


def test_fault_server_stopped_at_connect(t):
    r = private_server(t)
    r.pause()
    t.on_cleanup(r.cont)
    v, times, _, records = run_live(t, step('''
emit("start", 1)
local c, err, kind = redis.connect(URL, { timeout = "700ms" })
emit("kind", kind) emit("err", err)
emit("start_ping", 1)
local p, perr, pkind = redis.ping(URL, { timeout = "600ms" })
emit("ping", pkind)'''), url=r.url())
    r.cont()
    expect_eq((v["kind"], v["ping"]), ("timeout", "timeout"))
    expect_in("redis.connect %s: timed out after 700 ms waiting for the server to answer" % r.target(), v["err"])
    expect_within(between(times, "start", "kind"), 700, "connect to a stopped server")
    expect_within(between(times, "start_ping", "ping"), 600, "ping of a stopped server")


def test_fault_server_stopped_mid_command(t):
    r = private_server(t)
    t.on_cleanup(r.cont)
    v, times, _, records = run_live(t, step('''
local c = must(redis.connect(URL))
emit("before", c:call("PING"))
must(sh.read { "kill", "-STOP", "%d", quiet = true, check = true })
emit("start", 1)
local x, err, kind = c:call("GET", "k", { timeout = "700ms" })
emit("kind", kind) emit("err", err)
local y, err2, kind2 = c:call("GET", "k")
emit("after", err2) emit("after_kind", kind2)
emit("tostring", tostring(c))
local z, err3, kind3 = c:memory()
emit("probe_after", kind3)''' % r.pid), url=r.url())
    r.cont()
    expect_eq((v["before"], v["kind"]), ("PONG", "timeout"))
    expect_eq(v["err"], "redis.call %s: timed out after 700 ms waiting for the reply (the connection was closed)"
              % r.target())
    expect_within(between(times, "start", "kind"), 700, "a call on a stopped server")
    expect_eq(v["after"], "redis.call %s: connection was closed after a timeout; connect again" % r.target())
    expect_eq((v["after_kind"], v["probe_after"]), ("closed", "closed"))
    expect_eq(v["tostring"], "redis.conn %s (closed after a timeout)" % r.target())
    rec = [x for x in probes(records, "redis.call") if x["outcome"] == "timeout"][0]
    expect_within(float(rec["duration_ms"]), 700, "a call on a stopped server (transcript)")


def test_fault_server_killed_mid_connection(t):
    r = private_server(t)
    v, _, _, _ = run_rb(t, step('''
local c = must(redis.connect(URL))
emit("before", c:call("PING"))
must(sh.read { "kill", "-KILL", "%d", quiet = true, check = true })
local x, err, kind
for i = 1, 50 do   -- the kernel closes the socket as the process dies
  x, err, kind = c:call("PING")
  if not x then break end
end
emit("kind", kind) emit("err", err)
emit("after", select(3, c:call("PING")))''' % r.pid), url=r.url())
    expect_eq(v["kind"], "reset")
    expect_in(v["err"], ["redis.call %s: the server closed the connection" % r.target(),
                         "redis.call %s: connection reset by peer" % r.target()])
    expect_eq(v["after"], "closed")


def test_fault_garbage_is_a_protocol_error(t):
    s = listener(t, 8)
    port = s.getsockname()[1]

    def serve():
        try:
            conn, _ = s.accept()
            conn.recv(4096)
            conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            conn.recv(4096)
            conn.close()
        except OSError:
            pass
    th = threading.Thread(target=serve, daemon=True)
    th.start()
    v, _, _, _ = run_rb(t, step('''
local c, err, kind = redis.connect("redis://127.0.0.1:%d", { timeout = 5 })
emit("kind", kind) emit("err", err)''' % port))
    expect_eq(v["kind"], "protocol")
    expect_in("redis.connect 127.0.0.1:%d/0: protocol error (is this a Redis server?)" % port, v["err"])


def test_fault_wrong_password_is_auth_and_fast(t):
    r = private_server(t, password="right-password")
    v, ms, _ = timed_connect(t, "URL", 5, url=r.url(password="wrong-password"))
    expect_eq(v["kind"], "auth")
    expect_fast(ms, 250, "wrong password, private server (5 s deadline)")


def test_timeout_is_capped_by_the_command_line(t):
    port = mute_listener(t)
    v, times, _, records = run_live(t, step('''
emit("start", 1)
local p, err, kind = redis.ping("redis://127.0.0.1:%d", { timeout = 20 })
emit("kind", kind) emit("err", err)''' % port), args=["--timeout", "600ms"])
    expect_eq(v["kind"], "timeout")
    expect_in("timed out after 600 ms", v["err"])
    expect_within(between(times, "start", "kind"), 600, "a capped ping")
    expect_eq(probes(records, "redis.ping")[0]["deadline_ms"], 600)


def _waiting_in_poll(pid):
    try:
        with open("/proc/%d/syscall" % pid) as f:
            return f.read().split()[0] in ("7", "271")     # poll, ppoll
    except (OSError, IndexError):
        return False


def test_ctrl_c_while_a_call_waits_on_a_stopped_server(t):
    r = private_server(t)
    t.on_cleanup(r.cont)
    path = runbook(t, "\n".join([
        step('''ctx.state.c = must(redis.connect(URL))
emit("pong", ctx.state.c:call("PING"))
must(sh.read { "kill", "-STOP", "%d", quiet = true, check = true })
emit("waiting", 1)
local x, err, kind = ctx.state.c:call("GET", "k", { timeout = 60 })
emit("NOT_INTERRUPTED", kind)''' % r.pid, "wait", "Wait"),
        step('''local x, err, kind = ctx.state.c:call("PING")
emit("after", kind)''', "after", "After"),
    ]), url=r.url(), name="ctrlc")
    p, tr = on_pty(t, path, "cc.cast")
    p.expect(r"@@ waiting=1\n")
    wait_until("the call waiting in poll()", lambda: _waiting_in_poll(p.proc.pid))
    took = interrupt(p, MENU_AFTER_FAILURE)
    r.cont()
    expect_fast(took * 1000, 500, "Ctrl-C to the step menu")
    p.sendline("s")
    p.expect(r"@@ after=closed\n")
    expect_eq(p.wait(), 0, "exit code")
    expect_not_in("NOT_INTERRUPTED", p.text)
    _, _, records = t.read_transcript(tr)
    expect_in("interrupted", [x["outcome"] for x in probes(records, "redis.call")])


# -------------------------------------------------------------------------------- parallel

def test_parallel_pings_run_concurrently(t):
    r = server()
    port = mute_listener(t)
    r.cmd("RPUSH", "rt:pq", "a", "b")
    v, times, _, _ = run_live(t, step('''
local tasks = {}
for i = 1, 50 do tasks[i] = function() return redis.ping("redis://127.0.0.1:%d", { timeout = "600ms" }) end end
emit("start", 1)
local res = parallel(tasks, { limit = 50 })
emit("end", 1)
local kinds = {}
for i = 1, 50 do kinds[res[i].kind or "ok"] = (kinds[res[i].kind or "ok"] or 0) + 1 end
emit("timeouts", kinds.timeout)
local ok = {}
for i = 1, 50 do ok[i] = function() return redis.ping(URL) end end
local okres = parallel(ok)
local n = 0
for i = 1, 50 do if okres[i].value and okres[i].value.ok then n = n + 1 end end
emit("oks", n)
local work = {}
for i = 1, 10 do work[i] = function()
  local c = must(redis.connect(URL))
  local len = must(c:llen("rt:pq"))
  local mem = must(c:memory())
  local got = c:call("LINDEX", "rt:pq", 0)
  c:close()
  return len .. ":" .. got .. ":" .. math.type(mem.used_memory)
end end
local wres = parallel(work)
local same = 0
for i = 1, 10 do if wres[i].value == "2:a:integer" then same = same + 1 end end
emit("work", same)
local shared = must(redis.connect(URL))
local busy = parallel { function() return shared:latency { samples = 50 } end, function() return shared:call("PING") end }
emit("busy", tostring(busy[2].err))''' % port), timeout=90)
    expect_eq(v["timeouts"], "50")
    took = between(times, "start", "end")
    print("    50 pings of a mute listener in parallel (600 ms each): %.0f ms" % took)
    if not 550 <= took <= 600 * 3:
        fail("50 pings of 600 ms each took %.0f ms: they did not run concurrently" % took)
    expect_eq((v["oks"], v["work"]), ("50", "10"))
    expect_in("the connection is busy with another task's call", v["busy"])


def test_a_unix_socket(t):
    sock_dir = tempfile.mkdtemp(prefix="rs-")   # short: a socket path has at most 107 bytes
    t.on_cleanup(lambda: shutil.rmtree(sock_dir, ignore_errors=True))
    sock, password = os.path.join(sock_dir, "redis.sock"), "Sock" + "Pw51"
    r = private_server(t, password=password, args=["--unixsocket", sock, "--unixsocketperm", "700"])
    r.cmd("RPUSH", "jobs", "a", "b", "c", db=3)
    v, out, err, records = run_rb(t, step('''
local c = must(redis.connect(%(url)s))
emit("conn", tostring(c))
emit("llen", must(c:llen("jobs")))
emit("ping", must(redis.ping(%(url)s)).ok)
local _, e, kind = redis.connect("unix://%(missing)s")
emit("missing", e .. "|" .. kind)
_, e, kind = redis.connect("unix://%(sock)s?timeout=1")
emit("param", e .. "|" .. kind)
_, e, kind = redis.connect("unix://%(sock)s")
emit("noauth", kind)''' % {"url": lua_str("unix://:%s@%s?db=3" % (password, sock)), "sock": sock,
                           "missing": os.path.join(sock_dir, "nope.sock")}))
    expect_eq(v["conn"], "redis.conn unix:%s/3" % sock, "the target names the socket and the db")
    expect_eq(v["llen"], "3", "SELECT 3 happened over the socket")
    expect_eq(v["ping"], "true")
    expect_eq(v["missing"], "redis.connect unix:%s/0: connection refused (nothing listens there: is the service up?)"
              "|refused" % os.path.join(sock_dir, "nope.sock"))
    expect_in("invalid URL: the only parameter is db", v["param"])
    expect_eq(v["noauth"], "auth")
    targets = {rec["target"] for rec in probes(records, "redis.connect")}
    expect_in("unix:%s/3" % sock, targets)
    for text in (out, err, open(t.path("redistest.cast")).read()):
        expect_not_in(password, text)
