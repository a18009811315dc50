"""The pg module against a real PostgreSQL 15 (tests/servers_pg.py): typed results, read-only
probes that cannot write, actions through the gate (pty: yes, declined; no terminal: declined),
every ready-made probe, a fault matrix with elapsed-time bounds, Ctrl-C, parallel(), and the
canary password that must appear nowhere.

Each runbook step prints `@@ key=value` lines that the test parses. The shared server is started
once (lazily) for the whole run; fault cases that break a server start their own."""
import os
import re
import signal

import servers_pg
from run import black_hole, expect_eq, expect_in, expect_not_in, fail, free_port, listener
from sessions import Reader, finish
from steps import (ASK, MENU_AFTER_FAILURE, expect_fast, expect_within, interrupt, lua_str, on_pty, parse, probes,
                   run_auto, shown_before, step, write_runbook)

DECLINED_MENU = r"Declined\. s: skip this step · a: ask again · (?:r: repl · )?q: abort the run \[s\]: "
CANARY = servers_pg.PASSWORD          # "CANARYpg77"
_seq = [0]


# ------------------------------------------------------------------------------------ helpers

def server():
    return servers_pg.shared()


def fresh_db(pg, prefix="t"):
    """A database of its own for a test that counts backends or creates tables."""
    _seq[0] += 1
    name = "%s_%d_%d" % (prefix, os.getpid(), _seq[0])
    pg.psql("CREATE DATABASE %s OWNER %s" % (name, servers_pg.USER))
    return name


def runbook(t, steps, pg, name="pgtest", url=None):
    """Writes a runbook whose steps (Lua source) see pg, sh, URL (a literal URL with the canary
    password, not an input: the module itself must keep it secret) and emit(k, v)."""
    prelude = 'local pg = require "pg"\nlocal sh = require "sh"\nlocal URL = %s' % lua_str(url or pg.url())
    return write_runbook(t, name, prelude, steps, "pg test")


def run_rb(t, steps, pg=None, args=(), want_rc=0, timeout=60, url=None, name="pgtest"):
    """Runs the steps with --auto (stdin /dev/null); returns (values, out, err, records)."""
    pg = pg or server()
    path = runbook(t, steps, pg, name=name, url=url)
    _seq[0] += 1
    tr = t.path("%s-%d.cast" % (name, _seq[0]))
    values, out, err = run_auto(t, path, tr, args, want_rc, timeout)
    _, _, records = t.read_transcript(tr)
    return values, out, err, records


_known_pids = set()


def background(t, pg, sql, app, database=servers_pg.DATABASE, user=None):
    """A psql session (over the socket) left running sql; its backend pid, once visible."""
    env_app = os.environ.get("PGAPPNAME")
    os.environ["PGAPPNAME"] = app
    try:
        p = pg.background(sql, database=database, user=user)
    finally:
        if env_app is None:
            os.environ.pop("PGAPPNAME", None)
        else:
            os.environ["PGAPPNAME"] = env_app
    t.on_cleanup(lambda: pg.stop_background(p))
    known = ",".join(str(p) for p in _known_pids) or "0"
    pid = int(pg.wait_for("the backend of %s" % app, "SELECT pid FROM pg_stat_activity WHERE application_name = '%s' "
                          "AND pid NOT IN (%s) ORDER BY backend_start DESC LIMIT 1" % (app, known)))
    _known_pids.add(pid)
    return pid


def streaming_replica(t, primary, condition=""):
    """A replica of primary (stopped when the test ends), once primary sees it streaming (and
    condition, SQL on pg_stat_replication, holds)."""
    replica = servers_pg.PgServer(t.dir, primary=primary)
    t.on_cleanup(replica.stop)
    primary.wait_for("the replica streaming", "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'"
                     + condition, timeout=30)
    return replica


def wait_state(pg, pid, condition, what, timeout=15):
    return pg.wait_for(what, "SELECT 1 FROM pg_stat_activity WHERE pid = %d AND %s" % (pid, condition),
                       timeout=timeout)


def wait_gone(pg, pid, what, timeout=10):
    pg.wait_for(what, "SELECT CASE WHEN count(*) = 0 THEN 't' END FROM pg_stat_activity WHERE pid = %d" % pid,
                timeout=timeout)


# ------------------------------------------------------------------------ query and results

def test_query_types_columns_and_params(t):
    v, _, _, records = run_rb(t, step('''
local c = must(pg.connect(URL))
local r = must(c:query([[SELECT 1::int2 AS a, 2::int4 AS b, 9007199254740993::int8 AS c, 26::oid AS o,
  1.5::float4 AS f4, 2.25::float8 AS f8, 12.5::numeric AS num, true AS yes, false AS no, NULL::int AS null_int,
  'text' AS s, '2024-01-02'::date AS d, '{1,2}'::int[] AS arr, 'NaN'::float8 AS nan]]))
emit("rows", r.rows) emit("n", #r) emit("columns", table.concat(r.columns, ","))
for _, k in ipairs(r.columns) do
  local x = r[1][k]
  emit("col_" .. k, (math.type(x) or type(x)) .. ":" .. tostring(x))
end
emit("ms_ok", r.ms >= 0 and r.ms < 5000)
local p = must(c:query("SELECT $1::int + $2::int AS sum, $3::text AS s, $4::text IS NULL AS isnull, $5::bool AS b, $6::float8 AS f",
  { 40, 2, "h\\195\\169", nil, true, 0.5, n = 6 }))
emit("sum", p[1].sum) emit("s", p[1].s) emit("isnull", p[1].isnull) emit("b", p[1].b) emit("f", p[1].f)
local e = must(c:query("SELECT 1 AS x WHERE false"))
emit("empty", e.rows .. "|" .. #e .. "|" .. e.columns[1])
local many = must(c:query("SELECT g AS i FROM generate_series(1, 5000) g"))
emit("many", #many .. "|" .. many[5000].i)'''))
    expect_eq(v["rows"], "1")
    expect_eq(v["n"], "1")
    expect_eq(v["columns"], "a,b,c,o,f4,f8,num,yes,no,null_int,s,d,arr,nan")
    want = {"a": "integer:1", "b": "integer:2", "c": "integer:9007199254740993", "o": "integer:26",
            "f4": "float:1.5", "f8": "float:2.25", "num": "float:12.5", "yes": "boolean:true",
            "no": "boolean:false", "null_int": "nil:nil", "s": "string:text", "d": "string:2024-01-02",
            "arr": "string:{1,2}"}
    for k, w in want.items():
        expect_eq(v["col_" + k], w, "column " + k)
    expect_in(v["col_nan"], ("float:nan", "float:-nan"), "NaN")
    expect_eq(v["ms_ok"], "true")
    expect_eq((v["sum"], v["s"], v["isnull"], v["b"], v["f"]), ("42", "hé", "true", "true", "0.5"), "params")
    expect_eq(v["empty"], "0|0|x", "an empty result still names its columns")
    expect_eq(v["many"], "5000|5000")
    recs = probes(records, "pg.query")
    expect_eq(len(recs), 4, "one probe record per query")
    expect_eq(recs[0]["outcome"], "ok")
    expect_eq(recs[0]["deadline_ms"], 10000, "default query deadline")
    expect_in("1 rows: SELECT 1::int2", recs[0]["summary"])
    expect_eq(probes(records, "pg.connect")[0]["target"], server().target())


def test_query_errors_carry_sqlstate_and_leave_the_connection_usable(t):
    pg = server()
    v, _, _, records = run_rb(t, step('''
local c = must(pg.connect(URL))
local r, err, kind = c:query("SELECT * FROM no_such_table")
emit("missing", tostring(r) .. "|" .. err .. "|" .. kind)
r, err, kind = c:query("SELEC 1")
emit("syntax", kind)
r, err, kind = c:query("SELECT 1/0")
emit("div", err .. "|" .. kind)
emit("again", must(c:query("SELECT 7 AS seven"))[1].seven)
emit("tostring", tostring(c))'''))
    expect_eq(v["missing"], 'nil|pg.query %s: relation "no_such_table" does not exist|42P01' % pg.target())
    expect_eq(v["syntax"], "42601")
    expect_eq(v["div"], "pg.query %s: division by zero|22012" % pg.target())
    expect_eq(v["again"], "7", "the connection works after errors (the aborted transaction was rolled back)")
    expect_eq(v["tostring"], "pg.conn " + pg.target())
    outcomes = [r["outcome"] for r in probes(records, "pg.query")]
    expect_eq(outcomes, ["42P01", "42601", "22012", "ok"])


def test_a_probe_cannot_write(t):
    pg = server()
    db = fresh_db(pg, "cw")
    pg.psql("CREATE TABLE cw (id int PRIMARY KEY, v text); INSERT INTO cw VALUES (1, 'before'); "
            "CREATE SEQUENCE cw_seq; ALTER TABLE cw OWNER TO runbook; ALTER SEQUENCE cw_seq OWNER TO runbook;", db)
    v, out, _, records = run_rb(t, step('''
local c = must(pg.connect(URL))
local function try(label, sql)
  local r, err, kind = c:query(sql)
  emit(label, r and "ran" or (kind .. "|" .. err))
end
try("update", "UPDATE cw SET v = 'after'")
try("multi", "SELECT 1; UPDATE cw SET v = 'after'")
try("ddl", "CREATE TABLE cw2 (x int)")
try("cte", "WITH u AS (UPDATE cw SET v = 'after' RETURNING 1) SELECT count(*) FROM u")
try("nextval", "SELECT nextval('cw_seq')")
try("commit", "COMMIT")
try("after_commit", "UPDATE cw SET v = 'after'")
try("set_rw", "SET TRANSACTION READ WRITE")
try("after_set", "UPDATE cw SET v = 'after'")
emit("still", must(c:query("SELECT v FROM cw"))[1].v)
emit("exec", "asking")
c:exec("UPDATE cw SET v = 'after'")
emit("exec", "ran")'''), url=pg.url(database=db), want_rc=4)
    # Refused before sending (tests/test_pg_readonly.py has the whole class); READ ONLY stays behind it.
    expect_eq(v["update"], "refused|pg.query %s: refused before sending: UPDATE is not a read (a probe runs SELECT, "
              "WITH, VALUES, TABLE, SHOW, or EXPLAIN without ANALYZE); to run it, use conn:exec(...), which asks "
              "first at the confirmation gate" % pg.target(db))
    for label in ("multi", "ddl", "cte", "nextval", "commit", "after_commit", "set_rw", "after_set"):
        expect_eq(v[label].split("|")[0], "refused", label)
    expect_eq(v["still"], "before")
    expect_eq(v["exec"], "asking", "a declined exec ends the step")
    expect_in("ACTION  run SQL on %s" % pg.target(db), out)
    expect_in("UPDATE cw SET v = 'after'", out)
    expect_in("not run: no terminal to confirm on", out)
    expect_eq(pg.psql("SELECT v FROM cw", db), "before", "the data is unchanged")
    expect_eq(pg.psql("SELECT to_regclass('cw2') IS NULL", db), "t")
    expect_eq(pg.psql("SELECT last_value || '|' || is_called FROM cw_seq", db), "1|false", "the sequence is untouched")
    plans = [r for r in records if r["type"] == "plan"]
    expect_eq(len(plans), 1)
    expect_eq((plans[0]["primitive"], plans[0]["target"]), ("pg.exec", pg.target(db)))
    expect_in("UPDATE cw SET v = 'after'", plans[0]["detail"])
    expect_eq([(r["answer"], r["how"]) for r in records if r["type"] == "confirm"], [("declined", "no terminal")])
    expect_eq([r for r in records if r["type"] == "action_start"], [], "nothing ran")


def test_exec_through_the_gate_yes_declined_and_typed_target(t):
    pg = server()
    db = fresh_db(pg, "ex")
    pg.psql("CREATE TABLE ex (id int PRIMARY KEY, v text); INSERT INTO ex VALUES (1, 'old'), (2, 'two'), (3, 'three'); "
            "ALTER TABLE ex OWNER TO runbook;", db)
    steps = "\n".join([
        step('''ctx.state.c = must(pg.connect(URL))
local r = must(ctx.state.c:exec("UPDATE ex SET v = $1 WHERE id = $2", { "new", 1 }, { summary = "rename item 1" }))
emit("affected", r.affected) emit("command", r.command) emit("rows", r.rows)''', "rename", "Rename"),
        step('''must(ctx.state.c:exec("DELETE FROM ex"))
emit("deleted_all", "yes")''', "wipe", "Wipe"),
        step('''local r = must(ctx.state.c:exec("DELETE FROM ex WHERE id = 2 RETURNING v", nil, { irreversible = true }))
emit("deleted", r.affected .. "|" .. r[1].v)''', "delete", "Delete"),
        step('emit("after", 1)', "after", "After"),
    ])
    p, tr = on_pty(t, runbook(t, steps, pg, url=pg.url(database=db)), "ex.cast")
    p.expect(r"ACTION  rename item 1\n")
    shown = shown_before(p, ASK)
    expect_in("UPDATE ex SET v = $1 WHERE id = $2\n", shown)
    expect_in("with $1 = 'new', $2 = '1'\n", shown)
    expect_in("target  %s\n" % pg.target(db), shown)
    p.sendline("yes")
    p.expect(r"@@ affected=1\n")
    p.expect(r"@@ command=UPDATE 1\n")
    p.expect(r"ACTION  run SQL on ")
    p.expect(r"DELETE FROM ex\n")
    p.expect(ASK)
    p.sendline("n")
    p.expect(DECLINED_MENU)
    p.sendline("s")
    p.expect(r"This cannot be undone\.")
    p.expect(r"Type the target \(%s\) to confirm, or n to skip: " % re.escape(pg.target(db)))
    p.sendline(pg.target(db))
    p.expect(r"@@ deleted=1\|two\n")
    p.expect(r"@@ after=1\n")
    expect_eq(p.wait(), 4, "exit code (an action was declined)")
    expect_not_in("deleted_all", p.text)
    expect_eq(pg.psql("SELECT string_agg(id || '=' || v, ',' ORDER BY id) FROM ex", db), "1=new,3=three")
    _, _, records = t.read_transcript(tr)
    conf = [(r["answer"], r["how"]) for r in records if r["type"] == "confirm"]
    expect_eq(conf, [("yes", "typed yes"), ("declined", "typed no"), ("yes", "typed the target")])
    results = [(r["primitive"], r["outcome"], r["summary"]) for r in records if r["type"] == "action_result"]
    expect_eq(results, [("pg.exec", "ok", "UPDATE 1"), ("pg.exec", "ok", "DELETE 1")])
    expect_eq([r["target"] for r in records if r["type"] == "action_result"],
              [r["target"] for r in records if r["type"] == "action_start"], "the results' targets")


def test_exec_dry_run_and_failure(t):
    pg = server()
    db = fresh_db(pg, "dr")
    pg.psql("CREATE TABLE dr (id int); INSERT INTO dr VALUES (1); ALTER TABLE dr OWNER TO runbook;", db)
    v, out, _, _ = run_rb(t, step('''
local c = must(pg.connect(URL))
local r = c:exec("DELETE FROM dr")
emit("dry", tostring(r.dry_run) .. "|" .. r.sql .. "|" .. r.target)'''), url=pg.url(database=db), args=["--dry-run"])
    expect_eq(v["dry"], "true|DELETE FROM dr|" + pg.target(db))
    expect_in("dry run: not executed", out)
    expect_eq(pg.psql("SELECT count(*) FROM dr", db), "1")
    v, _, _, records = run_rb(t, step('''
local c = must(pg.connect(URL))
local r, err, kind = c:exec("DELETE FROM nope")
emit("fail", tostring(r) .. "|" .. err .. "|" .. kind)'''), url=pg.url(database=db), args=["--yes"])
    expect_eq(v["fail"], 'nil|pg.exec %s: relation "nope" does not exist|42P01' % pg.target(db))
    res = [r for r in records if r["type"] == "action_result"]
    expect_eq((res[0]["primitive"], res[0]["outcome"]), ("pg.exec", "42P01"))


# ------------------------------------------------------------------------- connect and ping

def test_ping_connect_close_and_misuse(t):
    pg = server()
    v, _, _, records = run_rb(t, step('''
local p = must(pg.ping(URL))
emit("ok", p.ok) emit("version", p.version) emit("version_num", p.version_num) emit("in_recovery", p.in_recovery)
emit("times", p.connect_ms > 0 and p.ms >= p.connect_ms)
local kv = must(pg.connect("host=127.0.0.1 port=%(port)d user=runbook dbname=other password=%(pw)s"))
emit("kv", tostring(kv))
emit("kvdb", must(kv:query("SELECT current_database() AS d"))[1].d)
emit("app", must(kv:query("SELECT current_setting('application_name') AS a"))[1].a)
do
  local scoped <close> = must(pg.connect(URL, { application_name = "scoped" }))
  ctx.state.scoped = scoped
  emit("scoped_app", must(scoped:query("SELECT current_setting('application_name') AS a"))[1].a)
end
emit("after_close", tostring(ctx.state.scoped))
local ok, err = pcall(function() return ctx.state.scoped:query("SELECT 1") end)
emit("use_after_close", err)
ok, err = pcall(function() return kv.query("SELECT 1") end)
emit("no_colon", err)
ok, err = pcall(pg.connect, URL, { timout = 1 })
emit("typo", err)
ok, err = pcall(function() return kv:query("SELECT 1", nil, { timout = 1 }) end)
emit("typo2", err)
ok, err = pcall(function() return kv:query("SELECT 1", { timeout = 1 }) end)
emit("params_not_options", err)
ok, err = pcall(function() return kv:query("SELECT $1", { {} }) end)
emit("bad_param", err)
ok, err = pcall(function() return kv:long_running { min = "soon" } end)
emit("bad_duration", err)
ok, err = pcall(function() return kv:terminate_idle { state = "active" } end)
emit("bad_state", err)
ok, err = pcall(function() return kv:migrations { framework = "liquibase" } end)
emit("bad_framework", err)
ok, err = pcall(function() return getmetatable(kv) end)
emit("metatable", tostring(err))
kv:close() kv:close()
emit("closed", tostring(kv))
local pw = must(pg.ping(URL:gsub("%(pw)s", ""), { password = %(pwlit)s }))
emit("password_option", pw.ok)
local md5 = must(pg.ping("postgresql://%(md5user)s:%(md5pw)s@127.0.0.1:%(port)d/app"))
emit("md5", md5.ok)''' % {"port": pg.port, "pw": CANARY, "pwlit": lua_str(CANARY), "md5user": servers_pg.MD5_USER,
                          "md5pw": servers_pg.MD5_PASSWORD}))
    expect_eq(v["ok"], "true")
    expect_eq(v["version"], pg.psql("SHOW server_version"))
    expect_eq(v["version_num"], pg.psql("SHOW server_version_num"))
    expect_eq(v["in_recovery"], "false")
    expect_eq(v["times"], "true")
    expect_eq(v["kv"], "pg.conn 127.0.0.1:%d/other" % pg.port)
    expect_eq(v["kvdb"], "other")
    expect_eq(v["app"], "runbook", "default application_name")
    expect_eq(v["scoped_app"], "scoped")
    expect_eq(v["after_close"], "pg.conn %s (closed)" % pg.target(), "<close> closed it")
    expect_in("pg.query %s: the connection is closed" % pg.target(), v["use_after_close"])
    expect_in("pg.query: call it on a connection, with a colon: conn:query(...)", v["no_colon"])
    expect_in("pg.connect: unknown option 'timout' (did you mean 'timeout'?)", v["typo"])
    expect_in("pg.query: unknown option 'timout' (did you mean 'timeout'?)", v["typo2"])
    expect_in("options go in the third argument", v["params_not_options"])
    expect_in("parameter $1 is a table", v["bad_param"])
    expect_in("bad duration 'soon'", v["bad_duration"])
    expect_in("pg.terminate_idle: state must be", v["bad_state"])
    expect_in("unknown framework 'liquibase'", v["bad_framework"])
    expect_eq(v["metatable"], "false", "the handle's metatable is protected")
    expect_eq(v["closed"], "pg.conn 127.0.0.1:%d/other (closed)" % pg.port)
    expect_eq(v["password_option"], "true")
    expect_eq(v["md5"], "true", "md5 authentication")
    rec = probes(records, "pg.ping")[0]
    expect_eq((rec["outcome"], rec["deadline_ms"], rec["target"]), ("ok", 5000, pg.target()))


def test_connect_failures_have_kinds_and_are_fast(t):
    pg = server()
    closed = free_port()
    v, out, _, records = run_rb(t, step('''
local function try(label, url, opts)
  local r, err, kind = pg.connect(url, opts)
  emit(label, tostring(r) .. "|" .. tostring(err) .. "|" .. tostring(kind))
end
try("refused", "postgresql://runbook:x@127.0.0.1:%(closed)d/app")
try("badauth", "postgresql://runbook:wrong@127.0.0.1:%(port)d/app")
try("passwordless", "postgresql://runbook@127.0.0.1:%(port)d/app")
try("nodb", "postgresql://runbook:%(pw)s@127.0.0.1:%(port)d/nope")
try("dns", "postgresql://runbook:x@no-such-host.invalid:%(port)d/app", { timeout = 5 })
try("byname", "postgresql://runbook:%(pw)s@localhost:%(port)d/app")
try("badurl", "postgresql://runbook:x@[::1/app")
try("multi", "postgresql://runbook:x@127.0.0.1:%(port)d,127.0.0.2:%(port)d/app")
local c = pg.connect("postgresql://runbook:%(pw)s@localhost:%(port)d/app")
emit("byname_query", must(c:query("SELECT 1 AS one"))[1].one)''' % {"closed": closed, "port": pg.port, "pw": CANARY}))
    expect_eq(v["refused"], "nil|pg.connect 127.0.0.1:%d/app: connection refused (nothing listens there: is the "
              "service up?)|refused" % closed)
    if "badauth" not in v:
        fail("no badauth in:\n" + out)
    expect_eq(v["badauth"], 'nil|pg.connect %s: password authentication failed for user "runbook"|auth' % pg.target())
    expect_eq(v["passwordless"].split("|")[2], "auth")
    expect_eq(v["nodb"], 'nil|pg.connect %s: database "nope" does not exist|3D000' % pg.target("nope"))
    expect_eq(v["dns"].split("|")[2], "dns")
    expect_in("pg.connect no-such-host.invalid:%d/app: cannot resolve no-such-host.invalid" % pg.port, v["dns"])
    expect_eq(v["byname"].split("|")[0], "pg.conn localhost:%d/app" % pg.port)
    expect_eq(v["byname_query"], "1")
    expect_in("pg.connect: invalid connection string", v["badurl"])
    expect_eq(v["badurl"].split("|")[-1], "error")
    expect_eq(v["multi"], 'nil|pg.connect 127.0.0.1:%(p)d,127.0.0.2:%(p)d/app: no server could be used: '
              '127.0.0.1:%(p)d: password authentication failed for user "runbook" (the server answered: the other '
              'hosts are not tried)|auth' % {"p": pg.port}, "a server's answer ends the call, as in libpq")
    took = {r["target"] + "|" + r["outcome"]: float(r["duration_ms"]) for r in probes(records, "pg.connect")}
    print("    connect failures: %s" % ", ".join("%s %.0f ms" % (k.split("|")[1], ms) for k, ms in sorted(took.items())),
          flush=True)
    for key, ms in took.items():
        if ms > 1000:
            fail("a connect that fails at once took %.0f ms: %s" % (ms, key))
    expect_eq(took.get(pg.target() + "|auth", -1) >= 0, True, "wrong password recorded as auth")


# ------------------------------------------------------------------------------ fault matrix

def test_fault_listener_that_never_accepts(t):
    port = black_hole(t)
    v, _, _, records = run_rb(t, step('''
local r, err, kind = pg.connect("postgresql://runbook:x@127.0.0.1:%d/app", { timeout = "700ms" })
emit("kind", kind) emit("err", err)''' % port))
    expect_eq(v["kind"], "timeout")
    expect_in("pg.connect 127.0.0.1:%d/app: timed out after 700 ms connecting (no answer" % port, v["err"])
    rec = probes(records, "pg.connect")[0]
    expect_eq(rec["deadline_ms"], 700)
    expect_within(float(rec["duration_ms"]), 700, "connect to a black hole")


def test_fault_listener_that_never_answers_the_startup_packet(t):
    port = listener(t).getsockname()[1]   # the kernel completes handshakes; nobody ever reads or answers
    v, _, _, records = run_rb(t, step('''
local r, err, kind = pg.ping("postgresql://runbook:x@127.0.0.1:%d/app", { timeout = "800ms" })
emit("kind", kind) emit("err", err)''' % port))
    expect_eq(v["kind"], "timeout")
    expect_in("timed out after 800 ms waiting for the server to let us in", v["err"])
    expect_within(float(probes(records, "pg.ping")[0]["duration_ms"]), 800, "ping of a mute listener")


def test_fault_postmaster_stopped_during_connect(t):
    pg = servers_pg.PgServer(t.dir)
    t.on_cleanup(pg.stop)
    os.kill(pg.pid, signal.SIGSTOP)
    t.on_cleanup(pg.cont)
    v, _, _, records = run_rb(t, step('''
local r, err, kind = pg.connect(URL, { timeout = "700ms" })
emit("kind", kind) emit("err", err)
r, err, kind = pg.ping(URL, { timeout = "600ms" })
emit("ping", kind)'''), pg=pg)
    pg.cont()
    expect_eq(v["kind"], "timeout")
    expect_in("pg.connect %s: timed out after 700 ms" % pg.target(), v["err"])
    expect_eq(v["ping"], "timeout")
    expect_within(float(probes(records, "pg.connect")[0]["duration_ms"]), 700, "connect to a stopped postmaster")
    expect_within(float(probes(records, "pg.ping")[0]["duration_ms"]), 600, "ping of a stopped postmaster")


def test_fault_backend_stopped_mid_query(t):
    pg = server()
    path = runbook(t, step('''
local c = must(pg.connect(URL, { application_name = "stopped_mid_query" }))
emit("pid", must(c:query("SELECT pg_backend_pid() AS pid"))[1].pid)
local r, err, kind = c:query("SELECT pg_sleep(30)", nil, { timeout = "1500ms" })
emit("kind", kind) emit("err", err)
local r2, err2, kind2 = c:query("SELECT 1")
emit("after", err2) emit("after_kind", kind2)
emit("tostring", tostring(c))
emit("done", 1)'''), pg)
    tr = t.path("stop.cast")
    p = t.spawn(["exec", path, "--auto", "--transcript", tr])
    rd = Reader(p.stdout)
    pid = int(rd.match(r"@@ pid=(\d+)\n").group(1))
    wait_state(pg, pid, "state = 'active' AND query LIKE 'SELECT pg_sleep%'", "the query running")
    os.kill(pid, signal.SIGSTOP)
    t.on_cleanup(lambda: os.kill(pid, signal.SIGCONT) if os.path.exists("/proc/%d" % pid) else None)
    rc, out, err = finish(p, rd, 30)
    os.kill(pid, signal.SIGCONT)
    v = parse(out)
    expect_eq(rc, 0, "exit code; stderr:\n" + err)
    expect_eq(v["kind"], "timeout")
    expect_eq(v["err"], "pg.query %s: timed out after 1500 ms (the query was cancelled and the connection closed)"
              % pg.target())
    expect_eq(v["after"], "pg.query %s: connection was closed after a timeout; connect again" % pg.target())
    expect_eq(v["after_kind"], "closed")
    expect_eq(v["tostring"], "pg.conn %s (closed after a timeout)" % pg.target())
    _, _, records = t.read_transcript(tr)
    rec = [r for r in probes(records, "pg.query") if r["outcome"] == "timeout"][0]
    expect_within(float(rec["duration_ms"]), 1500, "a query on a stopped backend")
    # The cancel request reached the backend: resumed, it drops the 30 s sleep and goes.
    wait_gone(pg, pid, "the cancelled backend to end", timeout=10)


def test_query_timeout_cancels_the_server_side_query(t):
    pg = server()
    v, _, _, records = run_rb(t, step('''
local c = must(pg.connect(URL, { application_name = "timeout_cancel" }))
local r, err, kind = c:query("SELECT pg_sleep(30)", nil, { timeout = "700ms" })
emit("kind", kind)'''))
    expect_eq(v["kind"], "timeout")
    expect_within(float([r for r in probes(records, "pg.query")][0]["duration_ms"]), 700, "query timeout")
    pg.wait_for("no sleeping query left", "SELECT CASE WHEN count(*) = 0 THEN 't' END FROM pg_stat_activity "
                "WHERE application_name = 'timeout_cancel'", timeout=5)


def test_timeout_option_is_capped_by_the_command_line(t):
    pg = server()
    v, _, _, records = run_rb(t, step('''
local c = must(pg.connect(URL))
local r, err, kind = c:query("SELECT pg_sleep(30)", nil, { timeout = 20 })
emit("err", err)'''), args=["--timeout", "600ms"])
    expect_in("timed out after 600 ms", v["err"])
    rec = [r for r in probes(records, "pg.query")][0]
    expect_eq(rec["deadline_ms"], 600)
    expect_within(float(rec["duration_ms"]), 600, "a capped query")


def test_ctrl_c_while_a_query_waits_on_a_stopped_backend(t):
    pg = server()
    path = runbook(t, "\n".join([
        step('''ctx.state.c = must(pg.connect(URL, { application_name = "ctrl_c_test" }))
emit("pid", must(ctx.state.c:query("SELECT pg_backend_pid() AS pid"))[1].pid)
local r, err, kind = ctx.state.c:query("SELECT pg_sleep(60)", nil, { timeout = 60 })
emit("NOT_INTERRUPTED", kind)''', "wait", "Wait"),
        step('''local r, err, kind = ctx.state.c:query("SELECT 1")
emit("after", kind)''', "after", "After"),
    ]), pg)
    p, tr = on_pty(t, path, "cc.cast")
    pid = int(p.expect(r"@@ pid=(\d+)\n").group(1))
    wait_state(pg, pid, "state = 'active' AND query LIKE 'SELECT pg_sleep%'", "the query running")
    os.kill(pid, signal.SIGSTOP)
    t.on_cleanup(lambda: os.kill(pid, signal.SIGCONT) if os.path.exists("/proc/%d" % pid) else None)
    took = interrupt(p, MENU_AFTER_FAILURE)
    os.kill(pid, signal.SIGCONT)
    expect_fast(took * 1000, 500, "Ctrl-C to the step menu (query on a stopped backend)")
    p.sendline("s")
    p.expect(r"@@ after=closed\n")
    expect_eq(p.wait(), 0, "exit code")
    expect_not_in("NOT_INTERRUPTED", p.text)
    _, _, records = t.read_transcript(tr)
    outcomes = [r["outcome"] for r in probes(records, "pg.query")]
    expect_in("interrupted", outcomes)
    wait_gone(pg, pid, "the interrupted backend to end", timeout=10)


# ---------------------------------------------------------------------------------- probes

def test_connections_long_running_and_idle_in_transaction(t):
    pg = server()
    db = fresh_db(pg, "conns")
    idle = background(t, pg, "SELECT 1;\n", "p_idle", database=db)
    iit = background(t, pg, "BEGIN;\nSELECT 1;\n", "p_iit", database=db)
    active = background(t, pg, "SELECT pg_sleep(60);\n", "p_active", database=db)
    wait_state(pg, idle, "state = 'idle'", "idle session")
    wait_state(pg, iit, "state = 'idle in transaction'", "idle in transaction session")
    wait_state(pg, active, "state = 'active'", "active session")
    v, _, _, records = run_rb(t, step('''
local c = must(pg.connect(URL))
local k = must(c:connections())
emit("max", k.max_connections) emit("reserved", k.reserved)
emit("total_ok", k.total >= 4 and k.active >= 2 and k.idle >= 1 and k.idle_in_transaction >= 1)
emit("pct_ok", math.abs(k.used_pct - k.total * 100 / k.max_connections) < 1e-9)
emit("available", k.available == k.max_connections - k.reserved - k.total)
emit("by_state_ok", k.by_state.active == k.active and k.by_state.idle == k.idle)
for _, d in ipairs(k.databases) do
  if d.database == %(db)s then
    emit("db", d.total .. "|" .. (d.active or 0) .. "|" .. (d.idle or 0) .. "|" .. (d.idle_in_transaction or 0))
  end
end
local function find(rows, pid) for _, r in ipairs(rows) do if r.pid == pid then return r end end end
local lr = must(c:long_running { min = "0s" })
local a = find(lr, %(active)d)
emit("lr", a.user .. "|" .. a.database .. "|" .. a.application .. "|" .. a.state .. "|" .. a.query)
emit("lr_ms", math.type(a.duration_ms) .. "|" .. tostring(a.duration_ms >= 0 and lr.max_ms >= a.duration_ms))
emit("lr_count", lr.count == #lr)
emit("lr_self", find(lr, must(c:query("SELECT pg_backend_pid() AS p"))[1].p) == nil)
emit("lr_hour", find(must(c:long_running { min = "1h" }), %(active)d) == nil)
local it = must(c:idle_in_transaction { min = "0s" })
local b = find(it, %(iit)d)
emit("iit", b.state .. "|" .. b.application .. "|" .. tostring(b.idle_ms >= 0) .. "|" .. tostring(b.xact_ms >= b.idle_ms))
emit("iit_idle", find(it, %(idle)d) == nil)
emit("iit_hour", find(must(c:idle_in_transaction { min = "1h" }), %(iit)d) == nil)''' % {
        "db": lua_str(db), "active": active, "iit": iit, "idle": idle}), url=pg.url(database=db))
    expect_eq((v["max"], v["reserved"]), ("100", "3"))
    for k in ("total_ok", "pct_ok", "available", "by_state_ok"):
        expect_eq(v[k], "true", k)
    expect_eq(v["db"], "4|2|1|1", "database entry: total|active (pg_sleep + this probe)|idle|idle in transaction")
    expect_eq(v["lr"], "runbook|%s|p_active|active|SELECT pg_sleep(60);" % db)
    expect_eq(v["lr_ms"], "integer|true")
    for k in ("lr_count", "lr_self", "lr_hour", "iit_idle", "iit_hour"):
        expect_eq(v[k], "true", k)
    expect_eq(v["iit"], "idle in transaction|p_iit|true|true")
    rec = probes(records, "pg.connections")[0]
    expect_in("connections (", rec["summary"])
    expect_eq(rec["outcome"], "ok")


def test_blocked_locks_cancel_and_terminate(t):
    pg = server()
    db = fresh_db(pg, "lk")
    pg.psql("CREATE TABLE lk (id int); ALTER TABLE lk OWNER TO runbook;", db)
    holder = background(t, pg, "BEGIN;\nLOCK TABLE lk IN ACCESS EXCLUSIVE MODE;\n", "p_holder", database=db)
    wait_state(pg, holder, "state = 'idle in transaction'", "the lock holder")
    waiter = background(t, pg, "SELECT count(*) FROM lk;\n", "p_waiter", database=db)
    wait_state(pg, waiter, "wait_event_type = 'Lock'", "the waiter blocked")
    steps = "\n".join([
        step('''ctx.state.c = must(pg.connect(URL))
local b = must(ctx.state.c:blocked())
emit("count", b.count .. "|" .. #b)
local w = b[1]
emit("blocked", w.pid .. "|" .. w.application .. "|" .. w.wait_event_type .. "|" .. w.query)
emit("blocked_by", table.concat(w.blocked_by, ","))
emit("blocker", w.blockers[1].pid .. "|" .. w.blockers[1].application .. "|" .. w.blockers[1].state)
emit("roots", table.concat(b.roots, ","))
emit("wait", tostring(w.wait_ms >= 0 and b.max_wait_ms >= w.wait_ms))
local l = must(ctx.state.c:locks())
emit("locks", l.by_mode.AccessExclusiveLock.granted .. "|" .. l.by_mode.AccessShareLock.waiting .. "|" ..
  l.waiting_backends .. "|" .. tostring(l.total == l.granted + l.waiting) .. "|" .. tostring(l.waiting >= 1))''',
             "look", "Look"),
        step('''local r = must(ctx.state.c:cancel(%d))
emit("cancelled", tostring(r.cancelled) .. "|" .. r.pid)''' % waiter, "cancel", "Cancel"),
        step('''local r = must(ctx.state.c:terminate(%d))
emit("declined_ran", r.terminated)''' % holder, "decline", "Declined"),
        step('''local r = must(ctx.state.c:terminate(%d))
emit("terminated", tostring(r.terminated) .. "|" .. r.pid)''' % holder, "terminate", "Terminate"),
        step('''local r, err, kind = ctx.state.c:cancel(999999)
emit("nosuch", err .. "|" .. kind)
r, err, kind = ctx.state.c:terminate(must(ctx.state.c:query("SELECT pg_backend_pid() AS p"))[1].p)
emit("self", err)''', "nosuch", "No such"),
    ])
    p, tr = on_pty(t, runbook(t, steps, pg, url=pg.url(database=db)), "lk.cast")
    p.expect(r"@@ locks=")
    shown = shown_before(p, ASK)
    expect_in("ACTION  cancel the query of backend %d on %s" % (waiter, pg.target(db)), shown)
    expect_in("SELECT pg_cancel_backend(%d)" % waiter, shown)
    expect_in("impact  backend %d: user runbook, application p_waiter, database %s, active for " % (waiter, db), shown)
    expect_in(": SELECT count(*) FROM lk;", shown)
    p.sendline("yes")
    p.expect(r"@@ cancelled=true\|%d\n" % waiter)
    m = p.expect(ASK)
    expect_in("ACTION  terminate backend %d on %s" % (holder, pg.target(db)), p.text)
    p.sendline("n")
    p.expect(DECLINED_MENU)
    p.sendline("s")
    expect_eq(pg.psql("SELECT count(*) FROM pg_stat_activity WHERE pid = %d" % holder), "1", "declined: holder alive")
    p.expect(ASK)
    p.sendline("yes")
    p.expect(r"@@ terminated=true\|%d\n" % holder)
    p.expect(r"@@ self=")
    expect_eq(p.wait(), 4, "exit code (one action declined)")
    v = parse(p.text)
    expect_eq(v["count"], "1|1")
    expect_eq(v["blocked"], "%d|p_waiter|Lock|SELECT count(*) FROM lk;" % waiter)
    expect_eq(v["blocked_by"], str(holder))
    expect_eq(v["blocker"], "%d|p_holder|idle in transaction" % holder)
    expect_eq(v["roots"], str(holder))
    expect_eq(v["wait"], "true")
    expect_eq(v["locks"], "1|1|1|true|true")
    expect_eq(v["nosuch"], "pg.cancel %s: no backend with pid 999999|error" % pg.target(db))
    expect_in("is this connection's own", v["self"])
    expect_not_in("declined_ran", p.text)
    wait_gone(pg, holder, "the terminated holder")
    pg.wait_for("the waiter, cancelled, no longer waiting", "SELECT CASE WHEN count(*) = 0 THEN 't' END FROM "
                "pg_stat_activity WHERE pid = %d AND wait_event_type = 'Lock'" % waiter)
    _, _, records = t.read_transcript(tr)
    res = [(r["primitive"], r["outcome"]) for r in records if r["type"] == "action_result"]
    expect_eq(res, [("pg.cancel", "ok"), ("pg.terminate", "ok")])
    plans = [r for r in records if r["type"] == "plan"]
    expect_in("backend %d: user runbook" % waiter, plans[0]["blast"])


def test_terminate_idle_counts_asks_and_terminates_exactly_those(t):
    pg = server()
    db = fresh_db(pg, "ti")
    victims = [background(t, pg, "SELECT 1;\n", "victim", database=db) for _ in range(2)]
    keeper = background(t, pg, "BEGIN;\nSELECT 1;\n", "keeper", database=db)
    for pid in victims:
        wait_state(pg, pid, "state = 'idle'", "an idle victim")
    wait_state(pg, keeper, "state = 'idle in transaction'", "the keeper")
    other_idle = background(t, pg, "SELECT 1;\n", "elsewhere", database="other")
    wait_state(pg, other_idle, "state = 'idle'", "an idle session in another database")
    steps = "\n".join([
        step('''ctx.state.c = must(pg.connect(URL))
local r = must(ctx.state.c:terminate_idle { older_than = "0s", database = %s })
table.sort(r.pids)
emit("result", r.count .. "|" .. r.terminated .. "|" .. table.concat(r.pids, ",") .. "|" .. #r.skipped)''' % lua_str(db),
             "idle", "Idle"),
        step('''local r = must(ctx.state.c:terminate_idle { older_than = "0s", state = "idle in transaction", database = %s })
emit("declined_ran", r.terminated)''' % lua_str(db), "iit", "In transaction"),
        step('''local r = must(ctx.state.c:terminate_idle { older_than = "1h", database = %s })
emit("none", r.count .. "|" .. r.terminated)''' % lua_str(db), "none", "None"),
    ])
    p, tr = on_pty(t, runbook(t, steps, pg, url=pg.url(database=db)), "ti.cast")
    shown = shown_before(p, ASK)
    expect_in("ACTION  terminate 2 idle backends on %s" % pg.target(db), shown)
    expect_in("impact  2 backends idle for 0 ms or more (the oldest for ", shown)
    expect_in("runbook (victim) x2", shown)
    expect_in("pg_terminate_backend", shown)
    p.sendline("yes")
    p.expect(r"@@ result=2\|2\|%d,%d\|0\n" % tuple(sorted(victims)))
    m = p.expect(ASK)
    expect_in("impact  1 backend idle in transaction for 0 ms or more", p.text)
    expect_in("runbook (keeper) x1", p.text)
    p.sendline("n")
    p.expect(DECLINED_MENU)
    p.sendline("s")
    p.expect(r"@@ none=0\|0\n")
    expect_eq(p.wait(), 4)
    for pid in victims:
        wait_gone(pg, pid, "a terminated victim")
    expect_eq(pg.psql("SELECT count(*) FROM pg_stat_activity WHERE pid IN (%d, %d)" % (keeper, other_idle)), "2",
              "the declined one and the other database's are untouched")
    _, _, records = t.read_transcript(tr)
    plans = [r for r in records if r["type"] == "plan"]
    expect_eq(len(plans), 2)
    expect_in("2 backends idle for 0 ms or more", plans[0]["blast"])
    res = [(r["primitive"], r["outcome"], r["summary"]) for r in records if r["type"] == "action_result"]
    expect_eq(res, [("pg.terminate_idle", "ok", "terminated 2 of 2 backends")])


def test_actions_without_a_terminal_are_declined_and_change_nothing(t):
    pg = server()
    db = fresh_db(pg, "nt")
    victim = background(t, pg, "SELECT 1;\n", "victim_nt", database=db)
    wait_state(pg, victim, "state = 'idle'", "the idle victim")
    v, out, _, records = run_rb(t, "\n".join([
        step('''local c = must(pg.connect(URL))
emit("asking", 1)
c:terminate_idle { older_than = "0s", database = %s }
emit("ran1", 1)''' % lua_str(db), "a", "A"),
        step('''local c = must(pg.connect(URL))
c:terminate(%d)
emit("ran2", 1)''' % victim, "b", "B"),
        step('''local c = must(pg.connect(URL))
c:cancel(%d)
emit("ran3", 1)''' % victim, "c", "C"),
        step('emit("end", 1)', "d", "D"),
    ]), url=pg.url(database=db), want_rc=4)
    expect_eq((v.get("asking"), v.get("end")), ("1", "1"))
    for k in ("ran1", "ran2", "ran3"):
        expect_eq(v.get(k), None, k)
    expect_eq(out.count("not run: no terminal to confirm on"), 3)
    expect_eq(pg.psql("SELECT state FROM pg_stat_activity WHERE pid = %d" % victim), "idle", "nothing changed")
    expect_eq([r for r in records if r["type"] == "action_start"], [])


def test_actions_under_dry_run_are_shown_and_not_run(t):
    pg = server()
    db = fresh_db(pg, "dry")
    victim = background(t, pg, "SELECT 1;\n", "victim_dry", database=db)
    wait_state(pg, victim, "state = 'idle'", "the idle victim")
    v, out, _, records = run_rb(t, step('''local c = must(pg.connect(URL))
local r = c:terminate_idle { older_than = "0s", database = %s }
emit("idle", tostring(r.dry_run) .. "|" .. r.count .. "|" .. r.pids .. "|" .. r.target)
local k = c:cancel(%d)
emit("cancel", tostring(k.dry_run) .. "|" .. k.pid .. "|" .. k.sql)
local x = c:terminate(%d)
emit("terminate", tostring(x.dry_run) .. "|" .. x.sql)''' % (lua_str(db), victim, victim)),
        url=pg.url(database=db), args=["--dry-run"])
    expect_eq(v["idle"], "true|1|{%d}|%s" % (victim, pg.target(db)))
    expect_eq(v["cancel"], "true|%d|SELECT pg_cancel_backend(%d)" % (victim, victim))
    expect_eq(v["terminate"], "true|SELECT pg_terminate_backend(%d)" % victim)
    expect_eq(out.count("dry run: not executed"), 3)
    expect_eq(pg.psql("SELECT state FROM pg_stat_activity WHERE pid = %d" % victim), "idle", "nothing changed")
    expect_eq([r for r in records if r["type"] == "action_start"], [])


def test_several_hosts_are_tried_in_turn(t):
    primary = server()
    replica = streaming_replica(t, primary)
    closed, hole = free_port(), black_hole(t)
    hosts = {"p": primary.port, "r": replica.port, "x": closed, "h": hole}

    def url(*names, query=""):
        return "postgresql://%s:%s@%s/app%s" % (servers_pg.USER, CANARY, ",".join(
            "127.0.0.1:%d" % hosts[n] for n in names), query)

    v, out, err, records = run_rb(t, step('''
local function try(label, url, opts)
  local c, e, kind = pg.connect(url, opts)
  if not c then emit(label, "nil|" .. e .. "|" .. kind) return end
  emit(label, tostring(c) .. "|" .. tostring(must(c:query("SELECT pg_is_in_recovery() AS r"))[1].r))
  c:close()
end
try("refused_first", %(refused_first)s)
try("read_write", %(read_write)s)
try("standby", %(standby)s)
try("prefer_standby", %(prefer_standby)s)
try("prefer_standby_none", %(prefer_standby_none)s)
try("hole_first", %(hole_first)s, { timeout = "1s" })
try("none", %(none)s, { timeout = "800ms" })
try("answered", %(answered)s)
try("no_time", %(no_time)s, { timeout = "300ms" })
try("kv", "host=127.0.0.1,127.0.0.1 port=%(x)d,%(p)d dbname=app user=runbook password=" .. %(pw)s)
try("ports", "host=127.0.0.1,127.0.0.1,127.0.0.1 port=%(x)d,%(p)d dbname=app")
try("bad_option", %(bad_option)s)
try("bad_port", "host=127.0.0.1,127.0.0.1 port=%(p)d,54x2 dbname=app")
try("port_forms", "host=127.0.0.1,127.0.0.1 port='0, +0%(p)d ' dbname=app user=runbook password=" .. %(pw)s)
try("long_socket_dir", "host=/%(long)s,127.0.0.1 port=%(p)d dbname=app user=runbook password=" .. %(pw)s)
local p = must(pg.ping(%(refused_first)s))
emit("ping", tostring(p.in_recovery))''' % {
        "refused_first": lua_str(url("x", "p")),
        "read_write": lua_str(url("r", "p", query="?target_session_attrs=read-write")),
        "standby": lua_str(url("p", "r", query="?target_session_attrs=standby")),
        "prefer_standby": lua_str(url("p", "r", query="?target_session_attrs=prefer-standby")),
        "prefer_standby_none": lua_str(url("x", "p", query="?target_session_attrs=prefer-standby")),
        "hole_first": lua_str(url("h", "p")),
        "none": lua_str(url("h", "x")),
        "answered": lua_str(url("x", "p", "r").replace("/app", "/nope")),
        "no_time": lua_str(url("h", "h", "h")),
        "bad_option": lua_str(url("x", "p", query="?sslmode=requir")),
        "long": "d" * 120,
        "x": closed, "p": primary.port, "pw": lua_str(CANARY)}))
    expect_eq(v["refused_first"], "pg.conn 127.0.0.1:%d/app|false" % primary.port, "the refused host is skipped")
    expect_eq(v["read_write"], "pg.conn 127.0.0.1:%d/app|false" % primary.port, "read-write passes the replica by")
    expect_eq(v["standby"], "pg.conn 127.0.0.1:%d/app|true" % replica.port, "standby passes the primary by")
    expect_eq(v["prefer_standby"], "pg.conn 127.0.0.1:%d/app|true" % replica.port, "prefer-standby finds the replica")
    expect_eq(v["prefer_standby_none"], "pg.conn 127.0.0.1:%d/app|false" % primary.port,
              "prefer-standby without a standby takes the primary")
    expect_eq(v["hole_first"], "pg.conn 127.0.0.1:%d/app|false" % primary.port, "a host that does not answer is left")
    expect_eq(v["none"], "nil|pg.connect 127.0.0.1:%(h)d,127.0.0.1:%(x)d/app: no server could be used: 127.0.0.1:%(h)d: "
              "timed out after 400 ms connecting (no answer: a firewall dropping packets, or a listener that does not "
              "accept); 127.0.0.1:%(x)d: connection refused (nothing listens there: is the service up?)|refused"
              % {"h": hole, "x": closed})
    expect_eq(v["answered"], 'nil|pg.connect 127.0.0.1:%(x)d,127.0.0.1:%(p)d,127.0.0.1:%(r)d/nope: no server could be '
              'used: 127.0.0.1:%(x)d: connection refused (nothing listens there: is the service up?); 127.0.0.1:%(p)d: '
              'database "nope" does not exist (the server answered: the other hosts are not tried)|3D000'
              % {"x": closed, "p": primary.port, "r": replica.port})
    # 300 ms for three hosts: each gets at least 200 ms while there is time: the second what is left
    # (100 ms, less if the first one's end was noticed late), the third none.
    no_answer = "connecting (no answer: a firewall dropping packets, or a listener that does not accept)"
    m = re.match(r"^nil\|pg\.connect (\S+): no server could be used: 127\.0\.0\.1:%(h)d: timed out after 200 ms %(na)s; "
                 r"127\.0\.0\.1:%(h)d: timed out after (\d+) ms %(na)s; no time was left for the other hosts\|timeout$"
                 % {"h": hole, "na": re.escape(no_answer)}, v["no_time"])
    if not m or m.group(1) != "127.0.0.1:%(h)d,127.0.0.1:%(h)d,127.0.0.1:%(h)d/app" % {"h": hole} \
            or not 50 <= int(m.group(2)) <= 100:
        fail("three hosts in 300 ms: %s" % v["no_time"])
    expect_eq(v["kv"], "pg.conn 127.0.0.1:%d/app|false" % primary.port, "key=value lists")
    expect_eq(v["ports"], "nil|pg.connect: invalid connection string: 2 ports for 3 hosts (give one, or one a host)|error")
    # An option libpq rejects would be rejected for each host: said once, no host tried.
    expect_eq(v["bad_option"], 'nil|pg.connect 127.0.0.1:%d,127.0.0.1:%d/app: invalid sslmode value: "requir"|error'
              % (closed, primary.port))
    expect_eq(v["bad_port"], 'nil|pg.connect: invalid connection string: invalid integer value "54x2" for connection '
              'option "port"|error')
    # As libpq reads ports: white space and a sign around an int; one out of range fails its host only.
    expect_eq(v["port_forms"], "pg.conn 127.0.0.1:%d/app|false" % primary.port)
    # A failure of one host before it connects (a socket path too long) is that host's, not the call's.
    expect_eq(v["long_socket_dir"], "pg.conn 127.0.0.1:%d/app|false" % primary.port)
    expect_eq(v["ping"], "false")
    by = {}
    for r in probes(records, "pg.connect"):
        by.setdefault(r["outcome"], []).append(r)
    # Each server has an equal share of the deadline: the black hole gets half of 1 s, then the primary.
    hole_first = [r for r in by["ok"] if r["deadline_ms"] == 1000][0]
    expect_eq(hole_first["target"], "127.0.0.1:%d/app" % primary.port, "the record names the server used")
    expect_within(float(hole_first["duration_ms"]), 500, "a black hole for its 500 ms, then the primary")
    none = [r for r in by["refused"] if r["deadline_ms"] == 800][0]
    expect_within(float(none["duration_ms"]), 400, "a black hole, then a refused port")
    for text in (out, err, open(t.path("pgtest-%d.cast" % _seq[0])).read()):
        expect_not_in(CANARY, text)


def test_a_service_file_names_the_server(t):
    """service=name (or $PGSERVICE) is read as libpq reads it: the user's file first, then the
    system one; the string's own options win; the server named there is the one shown and used.
    (test_dns: the host of a service is looked up within the deadline.)"""
    pg, closed = server(), free_port()
    t.write("home/.pg_service.conf", """# the user's services
[main]
host=127.0.0.1
port=%(p)d
user=%(u)s
password=%(pw)s
dbname=app

  [broken]
host=127.0.0.1
port %(p)d
[nested]
service=main
[directory]
ldap://ldap.runbook.invalid/dc=example?uniqueMember?one?(cn=main)
[leaky]
password: %(pw)s=1
""" % {"p": pg.port, "u": servers_pg.USER, "pw": CANARY})
    t.write("etc/pg_service.conf", """[main]
port=%(x)d
[from_system]
host=127.0.0.1
port=%(p)d
user=%(u)s
password=%(pw)s
dbname=app
""" % {"p": pg.port, "x": closed, "u": servers_pg.USER, "pw": CANARY})
    path = runbook(t, step('''
local function try(label, conninfo)
  local c, e, kind = pg.connect(conninfo, { timeout = "2s" })
  if not c then emit(label, "nil|" .. e .. "|" .. kind) return end
  local r = must(c:query("SELECT current_user AS u, current_database() AS d"))[1]
  emit(label, tostring(c) .. "|" .. r.u .. "|" .. r.d)
  c:close()
end
try("user_file", "service=main")
try("string_wins", "service=main port=%(x)d")
try("url", "postgresql:///postgres?service=main")
try("system_file", "service=from_system")
try("env", "connect_timeout=3")
try("missing", "service=nope")
try("syntax", "service=broken")
try("nested", "service=nested")
try("ldap", "service=directory")
try("leaky", "service=leaky")''' % {"x": closed}), pg, name="pgsvc")
    cast = t.path("pgsvc.cast")
    rc, out, err = t.run(["exec", path, "--auto", "--transcript", cast], timeout=60,
                         env={"PGSYSCONFDIR": t.path("etc"), "PGSERVICE": "from_system"})
    expect_eq(rc, 0, "exit code\n" + out + err)
    v = parse(out)
    expect_eq(v["user_file"], "pg.conn 127.0.0.1:%d/app|runbook|app" % pg.port, "the user's file")
    expect_eq(v["string_wins"], "nil|pg.connect 127.0.0.1:%d/app: connection refused (nothing listens there: is "
              "the service up?)|refused" % closed, "the string's port wins over the service's")
    expect_eq(v["url"], "pg.conn 127.0.0.1:%d/postgres|runbook|postgres" % pg.port, "a URL's service")
    expect_eq(v["system_file"], "pg.conn 127.0.0.1:%d/app|runbook|app" % pg.port, "the system file")
    expect_eq(v["env"], "pg.conn 127.0.0.1:%d/app|runbook|app" % pg.port, "$PGSERVICE")
    expect_eq(v["missing"], 'nil|pg.connect: definition of service "nope" not found|error')
    home = t.path("home/.pg_service.conf")
    expect_eq(v["syntax"], 'nil|pg.connect: syntax error in service file "%s", line 11 (expected keyword=value)|error'
              % home)
    expect_eq(v["nested"], 'nil|pg.connect: service file "%s", line 13: nested service specifications are not '
              'supported|error' % home)
    expect_eq(v["ldap"], 'nil|pg.connect: service file "%s", line 15: LDAP lookups of services are not supported '
              '(they would block); put the connection parameters in the file|error' % home)
    expect_eq(v["leaky"], 'nil|pg.connect: syntax error in service file "%s", line 17 (not a connection option)|error'
              % home, "a line that is no keyword=value is not quoted: it may hold a password")
    for text in (out, err, open(cast).read()):
        expect_not_in(CANARY, text)
    # $PGSERVICEFILE must exist (libpq fails too); an empty $PGSERVICE names the service "".
    rc, out, err = t.run(["exec", path, "--auto"], timeout=60, env={"PGSERVICEFILE": t.path("nope.conf")})
    expect_eq(parse(out)["user_file"], 'nil|pg.connect: service file "%s" not found|error' % t.path("nope.conf"))
    rc, out, err = t.run(["exec", path, "--auto"], timeout=60, env={"PGSERVICE": ""})
    expect_eq(parse(out)["env"], 'nil|pg.connect: definition of service "" not found|error')


def test_replication_primary_and_replica(t):
    primary = server()
    replica = streaming_replica(t, primary, " AND replay_lsn IS NOT NULL")
    primary.psql("CREATE TABLE IF NOT EXISTS repl_probe (x int); INSERT INTO repl_probe VALUES (1);", "app")
    v, _, _, records = run_rb(t, step('''
local p = must(pg.connect(URL))
local r = must(p:replication())
emit("p_role", r.role .. "|" .. tostring(r.in_recovery) .. "|" .. r.replica_count .. "|" .. tostring(r.current_lsn ~= nil))
local s = r.replicas[1]
emit("p_replica", s.state .. "|" .. s.sync_state .. "|" .. s.client .. "|" .. s.user .. "|" ..
  tostring(s.replay_lag_bytes >= 0 and r.max_replay_lag_bytes >= s.replay_lag_bytes))
emit("p_receiver", tostring(r.receiver))
local q = must(pg.connect(%(replica)s))
local rr = must(q:replication())
emit("r_role", rr.role .. "|" .. tostring(rr.in_recovery) .. "|" .. rr.replica_count)
emit("r_receiver", rr.receiver.status .. "|" .. rr.receiver.sender_port)
emit("r_lag", math.type(rr.replay_lag_bytes) .. "|" .. tostring(rr.replay_lag_bytes >= 0) .. "|" ..
  tostring(rr.receive_lsn ~= nil and rr.replay_lsn ~= nil and rr.current_lsn == nil))
emit("r_ping", tostring(must(pg.ping(%(replica)s)).in_recovery))
local r2, err, kind = q:query("CREATE TABLE on_replica (x int)")
emit("r_write", kind)''' % {"replica": lua_str(replica.url())}), pg=primary)
    expect_eq(v["p_role"], "primary|false|1|true")
    expect_eq(v["p_replica"], "streaming|async|127.0.0.1|postgres|true")
    expect_eq(v["p_receiver"], "nil")
    expect_eq(v["r_role"], "replica|true|0")
    expect_eq(v["r_receiver"], "streaming|%d" % primary.port)
    expect_eq(v["r_lag"], "integer|true|true")
    expect_eq(v["r_ping"], "true")
    expect_eq(v["r_write"], "refused")
    summaries = [r["summary"] for r in probes(records, "pg.replication")]
    expect_in("primary with 1 replicas", summaries[0])
    expect_in("replica, receiver streaming", summaries[1])


def test_database_sizes(t):
    pg = server()
    v, _, _, _ = run_rb(t, step('''
local c = must(pg.connect(URL))
local s = must(c:database_sizes())
local sum, names = 0, {}
for _, d in ipairs(s) do sum = sum + (d.bytes or 0) names[#names + 1] = d.database .. "=" .. tostring(d.bytes) end
emit("sum_ok", sum == s.total_bytes and s.rows == #s)
emit("sorted", (function() for i = 2, #s do if (s[i].bytes or -1) > (s[i-1].bytes or -1) then return false end end return true end)())
emit("sizes", table.concat(names, ","))'''))
    expect_eq((v["sum_ok"], v["sorted"]), ("true", "true"))
    got = dict(x.split("=") for x in v["sizes"].split(","))
    want = dict(l.split("|") for l in pg.psql(
        "SELECT datname || '|' || pg_database_size(oid) FROM pg_database WHERE datallowconn").splitlines())
    expect_eq(sorted(got), sorted(want), "databases")
    expect_eq(got["template1"], want["template1"], "an untouched database's size")
    for name, size in got.items():
        if int(size) <= 0 or abs(int(size) - int(want[name])) > int(want[name]) // 10:
            fail("%s: %s bytes, psql says %s" % (name, size, want[name]))


def test_migrations_of_each_framework(t):
    pg = server()
    dbs = {}
    for fw, sql in (
        ("none", ""),
        ("alembic", "CREATE TABLE alembic_version (version_num varchar(32) PRIMARY KEY); "
                    "INSERT INTO alembic_version VALUES ('ae1027a6acf');"),
        ("django", "CREATE TABLE django_migrations (id serial PRIMARY KEY, app varchar(255), name varchar(255), "
                   "applied timestamptz); INSERT INTO django_migrations (app, name, applied) VALUES "
                   "('auth', '0001_initial', '2024-01-01 10:00+00'), ('shop', '0001_initial', '2024-01-02 10:00+00'), "
                   "('shop', '0002_price', '2024-01-03 10:00+00');"),
        ("rails", "CREATE TABLE schema_migrations (version varchar PRIMARY KEY); "
                  "INSERT INTO schema_migrations VALUES ('20240101000000'), ('20240301000000'), ('20231201000000');"),
        ("migrate", "CREATE TABLE schema_migrations (version bigint PRIMARY KEY, dirty boolean NOT NULL); "
                    "INSERT INTO schema_migrations VALUES (7, true);"),
        ("flyway", "CREATE TABLE flyway_schema_history (installed_rank int PRIMARY KEY, version varchar(50), "
                   "description varchar(200), type varchar(20), script varchar(1000), checksum int, "
                   "installed_by varchar(100), installed_on timestamp DEFAULT now(), execution_time int, "
                   "success boolean); INSERT INTO flyway_schema_history VALUES "
                   "(1, '1', 'init', 'SQL', 'V1__init.sql', 1, 'x', '2024-01-01 10:00', 5, true), "
                   "(2, '2', 'add users', 'SQL', 'V2__users.sql', 2, 'x', '2024-01-02 10:00', 5, true), "
                   "(3, '3', 'broken index', 'SQL', 'V3__idx.sql', 3, 'x', '2024-01-03 10:00', 5, false);"),
        ("both", "CREATE TABLE alembic_version (version_num varchar(32)); INSERT INTO alembic_version VALUES ('h1'), ('h2'); "
                 "CREATE TABLE flyway_schema_history (installed_rank int, version varchar(50), description varchar(200), "
                 "installed_on timestamp, success boolean);"),
    ):
        db = fresh_db(pg, "mig")
        if sql:
            pg.psql(sql + " DO $$ DECLARE r record; BEGIN FOR r IN SELECT tablename FROM pg_tables WHERE schemaname = "
                    "'public' LOOP EXECUTE format('ALTER TABLE %I OWNER TO runbook', r.tablename); END LOOP; END $$;", db)
        dbs[fw] = db
    lua = ['local function show(label, url, opts)',
           '  local c = must(pg.connect(url))',
           '  local m = must(c:migrations(opts))',
           '  emit(label, tostring(m.framework) .. "|" .. tostring(m.table) .. "|" .. tostring(m.latest) .. "|" ..',
           '    tostring(m.name) .. "|" .. tostring(m.applied) .. "|" .. m.count .. "|" .. tostring(m.failed) .. "|" ..',
           '    table.concat(m.found, ","))',
           '  return m',
           'end']
    for fw, db in sorted(dbs.items()):
        lua.append('show(%s, %s)' % (lua_str(fw), lua_str(pg.url(database=db))))
    lua.append('local m = show("alembic_heads", %s)' % lua_str(pg.url(database=dbs["both"])))
    lua.append('emit("heads", table.concat(m.heads, ","))')
    lua.append('show("ask_flyway", %s, { framework = "flyway" })' % lua_str(pg.url(database=dbs["both"])))
    lua.append('show("ask_missing", %s, { framework = "django" })' % lua_str(pg.url(database=dbs["alembic"])))
    lua.append('local f = must(must(pg.connect(%s)):migrations())' % lua_str(pg.url(database=dbs["flyway"])))
    lua.append('emit("flyway_success", tostring(f.success))')
    v, _, _, records = run_rb(t, step("\n".join(lua)))
    expect_eq(v["none"], "nil|nil|nil|nil|nil|0|nil|")
    expect_eq(v["alembic"], "alembic|alembic_version|ae1027a6acf|nil|nil|1|0|alembic")
    expect_eq(v["django"], "django|django_migrations|shop.0002_price|0002_price|2024-01-03 10:00:00+00|3|0|django")
    expect_eq(v["rails"], "rails|schema_migrations|20240301000000|nil|nil|3|0|rails")
    expect_eq(v["migrate"], "migrate|schema_migrations|7|nil|nil|1|1|migrate")
    expect_eq(v["flyway"], "flyway|flyway_schema_history|3|broken index|2024-01-03 10:00:00|3|1|flyway")
    expect_eq(v["flyway_success"], "false")
    expect_eq(v["both"], "alembic|alembic_version|h1,h2|nil|nil|2|0|alembic,flyway")
    expect_eq(v["heads"], "h1,h2")
    expect_eq(v["ask_flyway"], "flyway|flyway_schema_history|nil|nil|nil|0|0|alembic,flyway")
    expect_eq(v["ask_missing"], "nil|nil|nil|nil|nil|0|nil|alembic")
    summaries = [r["summary"] for r in probes(records, "pg.migrations")]
    expect_in("flyway: 3 migrations, latest 3 (failed migrations recorded)", summaries)


# -------------------------------------------------------------------------------- parallel

def test_parallel_pings_and_queries_run_concurrently(t):
    pg = server()
    v, _, _, records = run_rb(t, step('''
local tasks = {}
for i = 1, 20 do
  tasks[i] = function()
    local c = must(pg.connect(URL, { application_name = "par" .. i }))
    local r = must(c:query("SELECT pg_sleep(0.3), $1::int AS i", { i }))
    c:close()
    return r[1].i
  end
end
local r = parallel(tasks, { limit = 20 })
local ok, sum, max = 0, 0, 0
for i = 1, 20 do
  if r[i].value == i then ok = ok + 1 end
  sum = sum + r[i].ms
  if r[i].ms > max then max = r[i].ms end
end
emit("ok", ok) emit("sum_ms", sum) emit("max_ms", max)
local pings = {}
for i = 1, 20 do pings[i] = function() return pg.ping(URL) end end
local p = parallel(pings)
local pok = 0
for i = 1, 20 do if p[i].value and p[i].value.ok then pok = pok + 1 end end
emit("pings", pok)
local shared = must(pg.connect(URL))
local b = parallel { function() return shared:query("SELECT pg_sleep(0.2)") end,
                     function() return shared:query("SELECT 1") end }
local busy = 0
for i = 1, 2 do if b[i].err and b[i].err:find("busy with another task", 1, true) then busy = busy + 1 end end
emit("busy", busy)
emit("shared_after", must(shared:query("SELECT 5 AS five"))[1].five)'''), timeout=60)
    expect_eq(v["ok"], "20")
    expect_eq(v["pings"], "20")
    expect_eq(v["busy"], "1", "a handle used by two tasks at once: the second raises")
    expect_eq(v["shared_after"], "5")
    if float(v["sum_ms"]) < 20 * 300:
        fail("the tasks did not each sleep 0.3 s: %s ms in all" % v["sum_ms"])
    print("    20 x (connect + pg_sleep(0.3)) in parallel: slowest task %.0f ms, %.0f ms summed" % (
        float(v["max_ms"]), float(v["sum_ms"])), flush=True)
    if float(v["max_ms"]) > 3000:
        fail("20 queries of 0.3 s each took %s ms: they did not run concurrently" % v["max_ms"])
    queries = [r for r in probes(records, "pg.query") if "pg_sleep(0.3)" in r["summary"]]
    expect_eq(len(queries), 20)


def test_an_abandoned_parallel_task_releases_its_connection(t):
    pg = server()
    v, _, _, records = run_rb(t, "\n".join([
        step('''ctx.state.c = must(pg.connect(URL, { application_name = "abandoned" }))
emit("pid", must(ctx.state.c:query("SELECT pg_backend_pid() AS p"))[1].p)
parallel {
  function() return ctx.state.c:query("SELECT pg_sleep(30)") end,
  function() local c = must(pg.connect(URL)) return c:exec("SELECT 1") end,
}
emit("NOT_SKIPPED", 1)''', "par", "Parallel"),
        step('''local r, err, kind = ctx.state.c:query("SELECT 1")
emit("after", err .. "|" .. kind)''', "after", "After"),
    ]), want_rc=4)
    expect_eq(v.get("NOT_SKIPPED"), None, "the declined action skipped the step")
    expect_eq(v["after"], "pg.query %s: connection was closed after an interrupted call; connect again|closed"
              % pg.target())
    wait_gone(pg, int(v["pid"]), "the abandoned query's backend", timeout=10)


def test_tls_and_a_retry_on_a_new_socket(t):
    hba = ("local all all trust\n"
           "hostnossl all runbook 127.0.0.1/32 scram-sha-256\n"
           "hostssl all md5user 127.0.0.1/32 md5\n")
    pg = servers_pg.PgServer(t.dir, ssl=True, hba=hba)
    t.on_cleanup(pg.stop)
    ssl_sql = "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
    v, _, _, _ = run_rb(t, step('''
local function ssl(url)
  local c, err, kind = pg.connect(url)
  if not c then return kind .. "|" .. err end
  return tostring(must(c:query(%(sql)s))[1].ssl)
end
emit("require", ssl(%(md5)s .. "?sslmode=require"))
emit("prefer_retry", ssl(URL .. "?sslmode=prefer"))
emit("require_refused", ssl(URL .. "?sslmode=require"))
emit("disable", ssl(URL .. "?sslmode=disable"))''' % {
        "sql": lua_str(ssl_sql),
        "md5": lua_str(pg.url(user=servers_pg.MD5_USER, password=servers_pg.MD5_PASSWORD))}), pg=pg)
    expect_eq(v["require"], "true", "TLS with sslmode=require")
    expect_eq(v["prefer_retry"], "false", "refused over TLS, libpq retried without it on a new socket")
    expect_eq(v["require_refused"].split("|")[0], "auth")
    expect_in("no pg_hba.conf entry", v["require_refused"])
    expect_eq(v["disable"], "false")


# ---------------------------------------------------------------------------------- secrets

def test_canary_password_appears_nowhere(t):
    pg = server()
    closed = free_port()
    port = black_hole(t)
    steps = step('''
local c = must(pg.connect(URL))
emit("tostring", tostring(c))
print("the url is " .. URL)
ctx:note("the password is %%s", "CANARY" .. "pg77")
local r, err = c:query("SELECT $1::int", { "CANARY" .. "pg77" })
emit("bad_int", err)
r, err = pg.connect("postgresql://runbook:%(pw)s@127.0.0.1:%(port)d/nope") emit("nodb", err)
r, err = pg.connect("postgresql://runbook:%(pw)s@127.0.0.1:%(closed)d/app") emit("refused", err)
r, err = pg.connect("postgresql://runbook:%(pw)s@127.0.0.1:%(hole)d/app", { timeout = "300ms" }) emit("timeout", err)
r, err = pg.connect("postgresql://runbook:%(pw)s@[bad") emit("badurl", err)
r, err = pg.connect("host=127.0.0.1 port=%(closed)d user=runbook password=%(pw)s dbname=app") emit("kv", err)
r, err = pg.connect("host=127.0.0.1 port=%(port)d user=runbook password='%(pw)s x") emit("kvbad", err)
r, err = pg.ping("postgresql://runbook:%(pw)sX@127.0.0.1:%(port)d/app") emit("wrongpw", err)
local e = must(c:exec("SELECT $1::text AS secret", { "CANARY" .. "pg77" }, { summary = "echo " .. URL }))
emit("exec_rows", #e)
error("failing with " .. URL)''' % {"pw": CANARY, "port": pg.port, "closed": closed, "hole": port})
    path = runbook(t, steps, pg)
    tr = t.path("canary.cast")
    rc, out, err = t.run(["exec", path, "--auto", "--yes", "--transcript", tr])
    expect_eq(rc, 1, "the last step fails on purpose")
    v = parse(out)
    expect_eq(v["tostring"], "pg.conn " + pg.target())
    expect_in("the url is postgresql://runbook:***@127.0.0.1", out)
    expect_in("the password is ***", out)
    for k in ("bad_int", "nodb", "refused", "timeout", "badurl", "kv", "kvbad", "wrongpw"):
        if k not in v:
            fail("no %s in the output:\n%s" % (k, out))
    expect_eq(v["exec_rows"], "1")
    with open(tr, "rb") as f:
        transcript = f.read().decode("utf-8", "replace")
    rc2, shown, _ = t.run(["transcript", "show", tr])
    for name, text in (("stdout", out), ("stderr", err), ("transcript", transcript), ("transcript show", shown)):
        expect_not_in(CANARY, text, name)
    expect_in("***", transcript)


def test_a_url_libpq_cannot_parse_does_not_show_its_password(t):
    # libpq's message quotes the token it stumbled on, here the password: it is a secret all the same.
    fresh = "Fresh" + "Pw93"
    v, out, err, records = run_rb(t, step('''
local r, err = pg.connect("postgresql://runbook:%(pw)s%%zz@127.0.0.1/app") emit("url", err)
r, err = pg.connect("host=127.0.0.1 password='%(pw)s2 dbname=app") emit("kv", err)''' % {"pw": fresh}))
    expect_eq(v["url"], 'pg.connect: invalid connection string: invalid percent-encoded token: "***"')
    expect_in("pg.connect: invalid connection string: unterminated quoted string", v["kv"])
    with open(t.path("pgtest-%d.cast" % _seq[0])) as f:
        transcript = f.read()
    for text in (out, err, transcript):
        expect_not_in(fresh, text)
