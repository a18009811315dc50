"""conn:query is a probe: its SQL is parsed by PostgreSQL's own parser (libpg_query) and checked
against pg_proc before anything is sent (stdlib/pg_readonly.c). BEGIN READ ONLY alone let through
functions with side effects (pg_terminate_backend, pg_advisory_lock, set_config, nextval) and COPY ...
TO PROGRAM; each case here checks the refusal AND that the server saw no effect of it, through the
fixture's own psql. The reads a runbook needs (statistics views, clocks, sizes, pg_blocking_pids, a
STABLE function of the user's) still pass. A real PostgreSQL 15 (tests/servers_pg.py)."""
import os
import tempfile

import servers_pg
from run import expect_eq, expect_in
from steps import step
from test_pg import background, fresh_db, run_rb, server, wait_state

REFUSED = "refused before sending: "
HINT = "to run it, use conn:exec(...), which asks first at the confirmation gate"

TRY = '''
local c = must(pg.connect(URL))
local function try(label, sql, params)
  local r, err, kind = c:query(sql, params)
  emit(label, r and ("ran|" .. tostring(r.rows)) or (kind .. "|" .. err))
end
'''


def refused(v, label, what):
    got = v[label]
    expect_in("refused|", got[:8], "%s: refused (%s)" % (label, got))
    expect_in(REFUSED, got, label)
    expect_in(what, got, label)
    expect_in(HINT, got, label)


def test_terminate_backend_is_refused_and_the_backend_lives(t):
    pg = server()
    db = fresh_db(pg, "ro_term")
    victim = background(t, pg, "SELECT pg_sleep(60);\n", "ro_victim", database=db)
    wait_state(pg, victim, "state = 'active'", "the victim running")
    v, _, _, records = run_rb(t, step(TRY + '''
try("plain", "SELECT pg_terminate_backend($1)", { %(pid)d })
try("qualified", "SELECT pg_catalog.pg_terminate_backend($1::int)", { %(pid)d })
try("lateral", "SELECT a.pid FROM pg_stat_activity a, LATERAL pg_terminate_backend(a.pid) t WHERE a.pid = $1", { %(pid)d })
try("subquery", "SELECT (SELECT pg_terminate_backend(pid)) FROM pg_stat_activity WHERE pid = $1", { %(pid)d })
try("cancel", "SELECT pg_cancel_backend($1)", { %(pid)d })
try("explain", "EXPLAIN ANALYZE SELECT pg_terminate_backend($1)", { %(pid)d })''' % {"pid": victim}),
        url=pg.url(database=db))
    for label in ("plain", "qualified", "lateral", "subquery"):
        refused(v, label, "pg_catalog.pg_terminate_backend() is VOLATILE in pg_proc")
    refused(v, "cancel", "pg_catalog.pg_cancel_backend() is VOLATILE")
    refused(v, "explain", "EXPLAIN ANALYZE runs the statement")
    expect_eq(pg.psql("SELECT count(*) FROM pg_stat_activity WHERE pid = %d AND state = 'active'" % victim), "1",
              "the backend is still there, still running its query")
    outcomes = [r["outcome"] for r in records if r.get("type") == "probe" and r.get("primitive") == "pg.query"]
    expect_eq(outcomes, ["refused"] * 6, "each refusal is in the transcript")


def test_copy_to_program_is_refused_and_runs_nothing(t):
    pg = server()
    db = fresh_db(pg, "ro_copy")
    # A role that may run programs on the server: the refusal, not a missing privilege, must stop it.
    pg.psql("DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ro_prog') THEN "
            "CREATE ROLE ro_prog LOGIN PASSWORD 'progpw1'; END IF; END $$; "
            "GRANT pg_execute_server_program TO ro_prog")
    marker = os.path.join(tempfile.gettempdir(), "runbook-ro-copy-%d-%s" % (os.getpid(), db))
    t.on_cleanup(lambda: os.path.exists(marker) and os.unlink(marker))
    v, _, _, _ = run_rb(t, step(TRY + '''
try("program", "COPY (SELECT 1) TO PROGRAM 'touch %(m)s'")
try("lower", "copy (select 1) to program 'touch %(m)s'")
try("file", "COPY (SELECT 1) TO '%(m)s'")''' % {"m": marker}),
        url=pg.url(user="ro_prog", password="progpw1", database=db))
    for label in ("program", "lower", "file"):
        refused(v, label, "COPY is not a read")
    expect_eq(os.path.exists(marker), False, "no program ran on the database host")


def test_what_changes_things_is_refused(t):
    pg = server()
    db = fresh_db(pg, "ro_writes")
    pg.psql("CREATE TABLE kept (id int PRIMARY KEY, v text); INSERT INTO kept VALUES (1, 'before'); "
            "CREATE SEQUENCE seq; "
            "CREATE FUNCTION touch_it() RETURNS int VOLATILE LANGUAGE sql AS $$ SELECT pg_advisory_lock(42); SELECT 1 $$; "
            "CREATE FUNCTION vol_plus(int, int) RETURNS int VOLATILE LANGUAGE sql AS $$ SELECT $1 + $2 $$; "
            "CREATE OPERATOR #%# (LEFTARG = int, RIGHTARG = int, FUNCTION = vol_plus); "
            "CREATE VIEW sneaky AS SELECT id, pg_advisory_lock(7)::text AS l FROM kept; "
            "CREATE VIEW sneakier AS SELECT * FROM sneaky; "
            "ALTER TABLE kept OWNER TO runbook; ALTER SEQUENCE seq OWNER TO runbook; "
            "ALTER VIEW sneaky OWNER TO runbook; ALTER VIEW sneakier OWNER TO runbook", db)
    v, _, _, _ = run_rb(t, step(TRY + '''
try("cte", "WITH d AS (DELETE FROM kept RETURNING *) SELECT count(*) FROM d")
try("cte_deep", "SELECT * FROM (WITH u AS (UPDATE kept SET v = 'x' RETURNING 1) SELECT * FROM u) s")
try("into", "SELECT * INTO copied FROM kept")
try("for_update", "SELECT * FROM kept FOR UPDATE")
try("for_share", "SELECT * FROM (SELECT * FROM kept FOR KEY SHARE) s")
try("multi", "SELECT 1; SELECT 2")
try("nextval", "SELECT nextval('seq')")
try("setval", "SELECT setval('seq', 100)")
try("set_config", "SELECT set_config('application_name', 'changed', false)")
try("advisory", "SELECT pg_advisory_lock(42)")
try("advisory_xact", "SELECT pg_try_advisory_xact_lock(42)")
try("user_volatile", "SELECT touch_it()")
try("user_operator", "SELECT 1 #%# 2")
try("view", "SELECT * FROM sneaky")
try("view_of_view", "SELECT count(*) FROM public.sneakier")
try("read_file", "SELECT pg_read_file('/etc/hostname')")
try("xid", "SELECT txid_current()")
try("set", "SET application_name = 'changed'")
try("do", "DO $$ BEGIN PERFORM pg_advisory_lock(42); END $$")
try("call_plain", "CALL nothing()")
try("explain_analyze", "EXPLAIN (ANALYZE, COSTS off) SELECT 1")
emit("app", must(c:query("SELECT current_setting('application_name') AS a"))[1].a)'''), url=pg.url(database=db))
    refused(v, "cte", "the query contains DELETE")
    refused(v, "cte_deep", "the query contains UPDATE")
    refused(v, "into", "SELECT INTO creates a table")
    refused(v, "for_update", "FOR UPDATE/SHARE")
    refused(v, "for_share", "FOR UPDATE/SHARE")
    refused(v, "multi", "2 statements in one string")
    for label, fn in (("nextval", "nextval"), ("setval", "setval"), ("set_config", "set_config"),
                      ("advisory", "pg_advisory_lock"), ("advisory_xact", "pg_try_advisory_xact_lock"),
                      ("read_file", "pg_read_file")):
        refused(v, label, "pg_catalog.%s() is VOLATILE in pg_proc" % fn)
    refused(v, "user_volatile", "public.touch_it() is VOLATILE in pg_proc")
    refused(v, "user_operator", "operator public.#%# runs a VOLATILE function")
    refused(v, "view", "view public.sneaky: pg_catalog.pg_advisory_lock() is VOLATILE")
    refused(v, "view_of_view", "view public.sneakier: view public.sneaky: pg_catalog.pg_advisory_lock()")
    refused(v, "xid", "txid_current() assigns the transaction an ID")
    refused(v, "set", "SET is not a read")
    refused(v, "do", "DO is not a read")
    refused(v, "call_plain", "CALL is not a read")
    refused(v, "explain_analyze", "EXPLAIN ANALYZE runs the statement")
    expect_eq(v["app"], "runbook", "set_config did not run")
    expect_eq(pg.psql("SELECT id || v FROM kept", db), "1before", "the row is untouched")
    expect_eq(pg.psql("SELECT to_regclass('copied') IS NULL", db), "t", "no table was created")
    expect_eq(pg.psql("SELECT is_called FROM seq", db), "f", "the sequence never moved")
    expect_eq(pg.psql("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'", db), "0", "no advisory lock")


def test_reads_still_pass(t):
    pg = server()
    db = fresh_db(pg, "ro_reads")
    pg.psql("CREATE TABLE items (id int); INSERT INTO items SELECT generate_series(1, 3); "
            "CREATE FUNCTION item_count() RETURNS bigint STABLE LANGUAGE sql AS $$ SELECT count(*) FROM items $$; "
            "CREATE VIEW item_view AS SELECT id, item_count() AS n, now() AS at FROM items; "
            "ALTER TABLE items OWNER TO runbook; ALTER VIEW item_view OWNER TO runbook", db)
    v, _, _, _ = run_rb(t, step(TRY + '''
try("activity", "SELECT pid, state, query FROM pg_stat_activity WHERE backend_type = 'client backend'")
try("clocks", "SELECT now(), clock_timestamp(), statement_timestamp(), random() AS r")
try("sizes", "SELECT pg_database_size(current_database()) AS db, pg_relation_size('items') AS rel, pg_size_pretty(1024::bigint)")
try("blocking", "SELECT pid, pg_blocking_pids(pid) FROM pg_stat_activity")
try("wal", "SELECT pg_current_wal_lsn(), pg_is_in_recovery()")
try("stable_fn", "SELECT item_count() AS n")
try("view", "SELECT * FROM item_view")
try("with", "WITH x AS (SELECT id FROM items) SELECT count(*) FROM x WHERE id = ANY($1::int[])", { "{1,2}" })
try("values", "VALUES (1, 'a'), (2, 'b')")
try("table", "TABLE items")
try("show", "SHOW work_mem")
try("explain", "EXPLAIN SELECT * FROM items WHERE id > 1")
try("locks", "SELECT mode, granted FROM pg_locks")
try("operators", "SELECT 1 + 2 * 3 AS x WHERE 'a' LIKE 'a%' AND 2 BETWEEN 1 AND 3 ORDER BY 1")
try("again", "SELECT item_count() AS n")
emit("n", must(c:query("SELECT item_count() AS n"))[1].n)
must(c:exec("SELECT 1", nil, { summary = "nothing" }))
try("after_exec", "SELECT item_count() AS n")'''), url=pg.url(database=db), args=("--yes",))
    for label, rows in (("activity", None), ("clocks", "1"), ("sizes", "1"), ("blocking", None), ("wal", "1"),
                        ("stable_fn", "1"), ("view", "3"), ("with", "1"), ("values", "2"), ("table", "3"),
                        ("show", "1"), ("explain", None), ("locks", None), ("operators", "1"), ("again", "1"),
                        ("after_exec", "1")):
        expect_in("ran|", v[label][:4], "%s passes: %s" % (label, v[label]))
        if rows:
            expect_eq(v[label], "ran|" + rows, label)
    expect_eq(v["n"], "3")
