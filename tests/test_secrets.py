"""Secrets that nothing registered (issue 17, class 6): recognised where they enter (inputs, the
command line, the REPL's lines) and by their form wherever they appear, and kept out of the
terminal, the transcript (header, records, `transcript show`), the lock file, the REPL history,
`runbook show` and /proc/PID/cmdline. The canary tests of test_pg and test_http cover the values
that the modules register; these cover the rest: every canary below must appear nowhere."""
import glob
import os

from run import expect_eq, expect_in, expect_not_in, expect_rc, fail
from sessions import Reader, finish

CANARIES = ("CANARYq1", "CANARYq2", "CANARYq3", "CANARY sp4", "CANARYsp5", "CANARYarg6", "CANARYenv1", "CANARYenv2",
            "CANARYjson3", "CANARYrds1", "CANARYsql1", "CANARYsql2", "CANARYrepl1", "CANARYrepl2", "CANARYdef6",
            "CANARYdef7", "CANARYopt8", "CANARYflag9", "CANARYbear10")


def nowhere(texts):
    """Fails naming every (place, canary) found, not only the first."""
    leaks = ["%s in %s" % (c, name) for name, text in texts for c in CANARIES if c in text]
    if leaks:
        fail("secrets leaked: " + ", ".join(leaks))


def read(path):
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read()


def everything_of(t, tr):
    """The transcript as written and as `transcript show` prints it."""
    rc, shown, err = t.run(["transcript", "show", tr])
    expect_rc((rc, shown, err), 0, "transcript show")
    return [("transcript", read(tr)), ("transcript show", shown + err)]


# The step copies its own lock file (a raw copy: nothing redacts it), shows the inputs, prints
# output that holds secrets, waits (so that the test can read the process's command line), then
# asks for an action that holds one (declined: there is no terminal).
ENTRY = '''
step "a" { title = "Call the API", run = function(ctx)
  must(sh.read { "sh", "-c", "cp %(locks)s/*.lock %(lockcopy)s" })
  ctx:note("calling %%s with %%s", ctx.endpoint, ctx.dsn)
  ctx:note("the token alone: %%s, the key alone: %%s", ctx.endpoint:match("token=([^&]+)"), ctx.endpoint:match("api_key=([^&]+)"))
  ctx:note("the password alone: %%s, the other: %%s", ctx.dsn:match("'(.-)'"), ctx.other:match("= (%%S+)"))
  must(sh.read { "sh", "-c", "echo PGPASSWORD=CANARYenv1; echo 'export MYSQL_PWD=CANARYenv2'; echo '{\\"client_secret\\": \\"CANARYjson3\\"}'" })
  must(sh.read { "sh", "-c", "echo waiting; cat %(fifo)s", timeout = 30 })
  must(sh.read { "echo", "mysqldump", "--password", "CANARYflag9", "-H", "Authorization: Bearer CANARYbear10" })
  sh.action { "redis-cli", "CONFIG", "SET", "requirepass", "CANARYrds1", summary = "set the redis password" }
end },'''


def test_secrets_entering_by_inputs_and_the_command_line_appear_nowhere(t):
    fifo = t.mkfifo("go")
    lockcopy = t.path("lock.copy")
    t.runbook("api", ENTRY % {"locks": t.path("state", "runbook", "locks"), "lockcopy": lockcopy, "fifo": fifo},
              inputs='endpoint = input.url {}, dsn = input.string {}, other = input.string {}, token = input.secret {}')
    tr = t.path("api.cast")
    proc = t.spawn(["exec", "api", "--auto", "--transcript", tr,
                    "endpoint=https://api.example.invalid/v1/items?page=2&token=CANARYq1&api_key=CANARYq2&secret=CANARYq3",
                    "dsn=host=127.0.0.1 password = 'CANARY sp4' user=app",
                    "other=host=127.0.0.1 password = CANARYsp5 user=app",
                    "token=CANARYarg6"])
    rd = Reader(proc.stdout)
    rd.until("waiting")
    with open("/proc/%d/cmdline" % proc.pid, "rb") as f:
        cmdline = f.read().decode("utf-8", "replace").replace("\0", " ")
    t.release(fifo)
    rc, out, err = finish(proc, rd)
    expect_rc((rc, out, err), 4, "the action is declined (no terminal)")
    lock = read(lockcopy)
    nowhere([("command line", cmdline), ("stdout", out), ("stderr", err), ("lock file", lock)] + everything_of(t, tr))
    expect_in("calling https://api.example.invalid/v1/items?page=2&token=***&api_key=***&secret=***", out)
    expect_in("the token alone: ***, the key alone: ***", out)
    expect_in("the password alone: ***, the other: ***", out)
    expect_in("PGPASSWORD=***", out)
    expect_in("requirepass ***", out)
    expect_in("--password *** -H Authorization: Bearer ***", out)
    header, _, _ = t.read_transcript(tr)
    expect_in("token=***", header["runbook"]["inputs"]["endpoint"])
    expect_in("token=***", lock, "the lock file names the target, masked")
    expect_in("endpoint=***", cmdline, "the command line of the running process")
    expect_in("exec api --auto", cmdline, "what is not an input stays")


def test_show_masks_secret_defaults(t):
    t.runbook("defaults", 'step "a" { title = "A", run = function(ctx) end },',
              inputs='endpoint = input.url { default = "https://x.invalid/?access_token=CANARYdef6" }, '
                     'dsn = input.string { default = "host=db password = CANARYdef7" }')
    rc, out, err = t.run(["show", "defaults"])
    expect_rc((rc, out, err), 0)
    expect_in("access_token=***", out)
    expect_in("password = ***", out)
    nowhere([("show", out + err)])


def test_repl_password_option_stays_out_of_the_record_the_output_and_the_history(t):
    tr = t.path("repl.cast")
    p = t.pty(["repl", "--transcript", tr])
    p.expect(r"(?m)^> ")
    for line in ('opts = { host = "db", password = "CANARYrepl1" }',
                 'c = "host=127.0.0.1 password = CANARYrepl2 user=app"',
                 'print("value:" .. opts.password)',
                 'print("alone:" .. c:match("= (%S+)"))'):
        p.sendline(line)
        p.expect(r"(?m)^> ")
    shown = p.text
    p.send(b"\x04")
    expect_eq(p.wait(), 0, "Ctrl-D")
    hist = t.path("state", "runbook", "history")
    history = read(hist) if os.path.exists(hist) else ""
    results = shown[shown.index("value:"):]   # what the REPL printed (the terminal echoes the typing)
    nowhere([("history", history), ("printed", results)] + everything_of(t, tr))
    expect_in("value:***", results)
    expect_in("alone:***", results)
    expect_in('print("value:" .. opts.password)', history, "a line without a secret is kept")
    _, _, recs = t.read_transcript(tr)
    inputs = [r["input"] for r in recs if r["type"] == "repl"]
    expect_in('opts = { host = "db", password = "***" }', inputs)


def test_repl_from_a_pipe(t):
    tr = t.path("piped.cast")
    rc, out, err = t.run(["repl", "--transcript", tr],
                         stdin='o = { password = "CANARYopt8" }\nprint(o.password)\n')
    expect_rc((rc, out, err), 0)
    expect_in("***", out)
    nowhere([("stdout", out), ("stderr", err)] + everything_of(t, tr))


def test_sql_password_at_the_gate(t):
    import servers_pg
    pg = servers_pg.shared()
    t.write("runbooks/role.lua", '''
local pg = require "pg"
return runbook { name = "role", summary = "rotate a password", severity = "SEV3",
  step "a" { title = "Rotate", run = function(ctx)
    local c = must(pg.connect(%s))
    must(c:exec("ALTER ROLE runbook PASSWORD 'CANARYsql1'"))
  end },
  step "b" { title = "Create", run = function(ctx)
    local c = must(pg.connect(%s))
    must(c:exec("CREATE USER canary_user WITH ENCRYPTED PASSWORD E'CANARYsql2'", nil, { summary = "create the user" }))
  end },
}
''' % (('"' + pg.url() + '"',) * 2))
    tr = t.path("role.cast")
    rc, out, err = t.run(["exec", "role", "--auto", "--transcript", tr])
    expect_rc((rc, out, err), 4, "declined: no terminal")
    expect_in("PASSWORD '***'", out, "the gate shows the statement, masked")
    _, _, recs = t.read_transcript(tr)
    plans = [r for r in recs if r["type"] == "plan"]
    if len(plans) != 2:
        fail("expected two plans, got %r" % plans)
    nowhere([("stdout", out), ("stderr", err)] + everything_of(t, tr))
