"""The runbook language: ctx reporting, jumps, outcomes, wait_until, must, inputs, --start-at,
--timeout. Each runbook runs with `exec FILE --auto` and stdin from /dev/null."""
import os
import re
import time

from run import expect_eq, expect_in, expect_not_in, expect_rc, fail
from servers import wait_until


def exec_auto(t, name, body, want_rc=0, inputs="", args=(), env=None, timeout=30):
    """Writes the runbook name and runs it with --auto; it must exit with want_rc. Returns (stdout,
    stderr, the transcript's path)."""
    path = t.runbook(name, body, inputs=inputs)
    tr = t.path(name + ".cast")
    rc, out, err = t.run(["exec", path, "--auto", "--transcript", tr] + list(args), env=env, timeout=timeout)
    expect_rc((rc, out, err), want_rc)
    return out, err, tr


def test_report_lines(t):
    out, err, tr = exec_auto(t, "report", '''
step "a" { title = "Report", run = function(ctx)
  ctx:ok("all %d replicas answer", 3)
  ctx:finding("%s is %s full", "/var", fmt.pct(97.4))
  ctx:note("plain note, no format args: 100%")
  ctx:show(fmt.table({ { name = "x", size = 2048 } }, { { "name", title = "file" }, { "size", format = fmt.bytes, right = true } }))
end },''')
    expect_in("[1/1] Report\n", out)
    expect_in("\n  ✔ all 3 replicas answer\n", out)
    expect_in("\n  ✖ /var is 97% full\n", out)
    expect_in("\n  · plain note, no format args: 100%\n", out)
    expect_in("    file     size\n    x     2.0 KiB\n", out)
    expect_in("completed · 1 finding", out)
    _, events, records = t.read_transcript(tr)
    notes = [(r["level"], r["text"]) for r in records if r["type"] == "note"]
    expect_eq(notes, [("ok", "all 3 replicas answer"), ("finding", "/var is 97% full"),
                      ("note", "plain note, no format args: 100%")], "note records")
    ends = [r for r in records if r["type"] == "step_end"]
    expect_eq([e["outcome"] for e in ends], ["finding"], "step outcomes")
    markers = [e[2] for e in events if e[1] == "m"]
    expect_eq(markers, ["1. Report"], "markers")


def test_jump(t):
    out, err, tr = exec_auto(t, "jumps", '''
step "a" { title = "A", run = function(ctx) ctx:note("A ran"); return ctx:jump("c") end },
step "b" { title = "B", run = function(ctx) ctx:note("B MUST NOT RUN") end },
step "c" { title = "C", run = function(ctx)
  ctx.state.visits = (ctx.state.visits or 0) + 1
  ctx:note("C ran %d", ctx.state.visits)
  if ctx.state.visits < 2 then return ctx:jump(1) end
end },
step "d" { title = "D", run = function(ctx) ctx:note("D ran") end },''')
    expect_not_in("B MUST NOT RUN", out)
    order = re.findall(r"· ([A-D] ran(?: \d)?)", out)
    # a -> c (1) -> jump(1) = a -> c (2) -> d
    expect_eq(order, ["A ran", "C ran 1", "A ran", "C ran 2", "D ran"], "step order")


def test_jump_to_unknown_step_fails(t):
    out, err, _ = exec_auto(t, "badjump", '''
step "a" { title = "A", run = function(ctx) return ctx:jump("nowhere") end },
step "b" { title = "B", run = function(ctx) ctx:note("B MUST NOT RUN") end },''', want_rc=1)
    expect_in("ctx:jump: no step 'nowhere'", out)
    expect_not_in("B MUST NOT RUN", out)


def test_resolved_and_escalate(t):
    out, err, tr = exec_auto(t, "res", '''
step "a" { title = "A", run = function(ctx) return ctx:resolved("the queue drained") end },
step "b" { title = "B", run = function(ctx) ctx:note("B MUST NOT RUN") end },''')
    expect_in("  ✔ resolved: the queue drained\n", out)
    expect_in("resolved · 1 ok", out)
    expect_not_in("B MUST NOT RUN", out)
    _, _, records = t.read_transcript(tr)
    expect_eq((records[-1]["outcome"], records[-1]["message"], records[-1]["exit"]),
              ("resolved", "the queue drained", 0), "session_end")
    out, err, tr = exec_auto(t, "esc", '''
step "a" { title = "A", run = function(ctx) ctx:escalate("page the DBA") ctx:note("after escalate") end },
step "b" { title = "B", run = function(ctx) ctx:note("B MUST NOT RUN") end },''', want_rc=3)
    # Not returned: the outcome is still honoured, and the step itself finishes.
    expect_in("after escalate", out)
    expect_in("  ✖ escalated: page the DBA\n", out)
    expect_not_in("B MUST NOT RUN", out)
    _, _, records = t.read_transcript(tr)
    expect_eq((records[-1]["outcome"], records[-1]["exit"]), ("escalated", 3), "session_end")


def test_wait_until_counter(t):
    out, err, _ = exec_auto(t, "waits", '''
step "a" { title = "A", run = function(ctx)
  local n = 0
  local r, e, k = ctx:wait_until("the counter reaches 4", function()
    n = n + 1
    if n >= 4 then return "done at " .. n end
  end, { timeout = 20, every = "10ms" })
  ctx:note("result=%s tries=%d err=%s", tostring(r), n, tostring(e))
end },''')
    expect_in("· waiting until the counter reaches 4 (up to 20 s)", out)
    expect_in("✔ the counter reaches 4", out)
    expect_in("result=done at 4 tries=4 err=nil", out)


def test_wait_until_timeout(t):
    out, err, tr = exec_auto(t, "waitto", '''
step "a" { title = "A", run = function(ctx)
  local n = 0
  local r, e, k = ctx:wait_until("pigs fly", function() n = n + 1; return false end, { timeout = "300ms", every = "50ms" })
  ctx:note("r=%s kind=%s tries>1=%s", tostring(r), tostring(k), tostring(n > 1))
  ctx:note("err=%s", e)
  must(ctx:wait_until("pigs fly again", function() return nil end, { timeout = "100ms", every = "20ms" }))
end },
step "b" { title = "B", run = function(ctx) ctx:note("B MUST NOT RUN") end },''', want_rc=1)
    expect_in("r=nil kind=timeout tries>1=true", out)
    expect_in("err=pigs fly: still not true after 0.3 s", out)
    expect_in("! pigs fly again: still not true after 0.1 s", out)
    expect_not_in("B MUST NOT RUN", out)
    _, _, records = t.read_transcript(tr)
    errors = [r["message"] for r in records if r["type"] == "error"]
    expect_eq(errors, ["pigs fly again: still not true after 0.1 s"], "error records")


def test_wait_until_bad_options(t):
    out, err, _ = exec_auto(t, "waitopt", '''
step "a" { title = "A", run = function(ctx) ctx:wait_until("x", function() return true end, { timout = 1 }) end },''', want_rc=1)
    expect_in("ctx:wait_until: unknown option 'timout'", out)


def test_must(t):
    out, err, tr = exec_auto(t, "musts", '''
step "a" { title = "A", run = function(ctx)
  local v, extra = must(42, "unused")
  ctx:note("must passed %d %s", v, tostring(extra))
  must(nil, "sys.fs /nonexistent: no such file or directory")
  ctx:note("AFTER MUST MUST NOT RUN")
end },
step "b" { title = "B", run = function(ctx) ctx:note("B MUST NOT RUN") end },''', want_rc=1)
    expect_in("must passed 42 unused", out)
    expect_in("  ! sys.fs /nonexistent: no such file or directory\n", out)
    expect_in("  ! stopped: a step failed\n", out)
    expect_not_in("MUST NOT RUN", out)
    _, _, records = t.read_transcript(tr)
    err_recs = [r for r in records if r["type"] == "error"]
    expect_eq([r["message"] for r in err_recs], ["sys.fs /nonexistent: no such file or directory"], "errors")
    expect_eq(err_recs[0]["step"], "a", "error record step")
    ends = [(r["step"], r["outcome"]) for r in records if r["type"] == "step_end"]
    expect_eq(ends, [("a", "failed")], "step_end records")
    expect_eq(records[-1]["counts"], {"failed": 1}, "counts")


def test_undefined_ctx_field_and_global(t):
    out, err, _ = exec_auto(t, "strict", '''
step "a" { title = "A", run = function(ctx) return ctx.treshold end },''',
                            inputs='threshold = input.int { default = 5 }', want_rc=1)
    expect_in("ctx has no field 'treshold' (inputs: threshold)", out)
    out, err, _ = exec_auto(t, "strict2", '''
step "a" { title = "A", run = function(ctx) return undefined_thing + 1 end },''', want_rc=1)
    expect_in("undefined global 'undefined_thing'", out)


PRECEDENCE = '''
step "a" { title = "A", run = function(ctx)
  ctx:note("level=%s count=%d wait=%s cmd=%s", ctx.level, ctx.count, tostring(ctx.wait), table.concat(ctx.cmd, "|"))
end },'''
PRECEDENCE_INPUTS = ('level = input.string { env = "RB_LEVEL", default = "from-default" }, '
                     'count = input.int { env = "RB_COUNT", default = 1 }, '
                     'wait = input.duration { default = "2m" }, '
                     'cmd = input.argv { default = { "systemctl", "restart", "x" } }')


def test_input_precedence(t):
    out, err, tr = exec_auto(t, "prec", PRECEDENCE, inputs=PRECEDENCE_INPUTS)
    expect_in("level=from-default count=1 wait=120 cmd=systemctl|restart|x", out)
    _, out, _ = t.run(["exec", t.path("runbooks/prec.lua"), "--auto", "--transcript", t.path("2.cast")],
                      env={"RB_LEVEL": "from-env", "RB_COUNT": "7"})
    expect_in("level=from-env count=7 wait=120", out)
    _, out, _ = t.run(["exec", t.path("runbooks/prec.lua"), "--auto", "--transcript", t.path("3.cast"),
                       "level=from-cli", "wait=1500ms", "cmd=echo 'two words' x"],
                      env={"RB_LEVEL": "from-env", "RB_COUNT": "7"})
    expect_in("level=from-cli count=7 wait=1.5 cmd=echo|two words|x", out)
    # A bad value from the environment is a usage error naming the variable.
    rc, out, err = t.run(["exec", t.path("runbooks/prec.lua"), "--auto"], env={"RB_COUNT": "many"})
    expect_rc((rc, out, err), 2)
    expect_in("input 'count' (from $RB_COUNT): not an integer: 'many'", err)
    header, _, _ = t.read_transcript(t.path("3.cast"))
    expect_eq(header["runbook"]["inputs"]["level"], "from-cli", "header inputs")


def test_secret_input(t):
    secret = "s3cr3t-Tok3n-xyz"
    body = '''
step "a" { title = "A", run = function(ctx)
  ctx:note("token is %s", ctx.token)
  ctx:note("len=%d", #ctx.token)
  sh.read { "echo", "Authorization: Bearer " .. ctx.token }
end },
step "b" { title = "B", run = function(ctx) must(nil, "auth failed with " .. ctx.token) end },'''
    inputs = 'token = input.secret { env = "RB_TOKEN" }'
    for how in ("env", "cli"):
        tr = t.path("secret-%s.cast" % how)
        path = t.runbook("secret", body, inputs=inputs)
        args = ["exec", path, "--auto", "--transcript", tr]
        env = None
        if how == "env":
            env = {"RB_TOKEN": secret}
        else:
            args.append("token=" + secret)
        rc, out, err = t.run(args, env=env)
        expect_rc((rc, out, err), 1, how)
        expect_in("len=%d" % len(secret), out, how)   # the value reached the runbook
        expect_in("token is ***", out, how)
        expect_in("Bearer ***", out, how)
        expect_in("auth failed with ***", out, how)
        for where, text in (("stdout", out), ("stderr", err)):
            expect_not_in(secret, text, how + " " + where)
        with open(tr, "rb") as f:
            data = f.read()
        if secret.encode() in data:
            fail("%s: the secret is in the transcript" % how)
        header, _, _ = t.read_transcript(tr)
        expect_eq(header["runbook"]["inputs"]["token"], "***", "header inputs")
    # Optional when not given: the runbook sees nil.
    path = t.runbook("optsecret", 'step "a" { title = "A", run = function(ctx) ctx:note("token is %s", tostring(ctx.token)) end },',
                     inputs=inputs)
    rc, out, err = t.run(["exec", path, "--auto", "--transcript", t.path("o.cast")])
    expect_rc((rc, out, err), 0)
    expect_in("token is nil", out)   # (token=... would be masked: a token's value)


START_AT = '''
step "first" { title = "First", run = function(ctx) ctx:note("first ran") end },
step "second" { title = "Second", run = function(ctx) ctx:note("second ran") end },
step "third" { title = "Third", run = function(ctx) ctx:note("third ran") end },'''


def test_start_at(t):
    out, err, _ = exec_auto(t, "starts", START_AT, args=["--start-at", "second"])
    expect_eq(re.findall(r"(\w+) ran", out), ["second", "third"], "steps run with --start-at second")
    expect_in("[2/3] Second", out)
    expect_not_in("[1/3]", out)
    rc, out, err = t.run(["exec", t.path("runbooks/starts.lua"), "--auto", "--start-at=3",
                          "--transcript", t.path("b.cast")])
    expect_rc((rc, out, err), 0)
    expect_eq(re.findall(r"(\w+) ran", out), ["third"], "steps run with --start-at=3")
    rc, out, err = t.run(["exec", t.path("runbooks/starts.lua"), "--auto", "--start-at", "fourth"])
    expect_rc((rc, out, err), 2)
    expect_in("starts has no step 'fourth'", err)
    expect_not_in("ran", out)


def test_timeout_caps_sh_read(t):
    start = time.monotonic()
    out, err, tr = exec_auto(t, "slow", '''
step "a" { title = "A", run = function(ctx)
  local r, e, kind = sh.read { "sleep", "5" }
  ctx:note("r=%s kind=%s", tostring(r), tostring(kind))
  ctx:note("err=%s", tostring(e))
  must(sh.read { "sleep", "5", timeout = "30s" })
end },
step "b" { title = "B", run = function(ctx) ctx:note("B MUST NOT RUN") end },''',
                             args=["--timeout", "300ms"], timeout=4.5, want_rc=1)
    elapsed = time.monotonic() - start
    expect_in("r=nil kind=timeout", out)
    if not re.search(r"err=sh\.read sleep 5: timed out after \d+ ms \(stopped\)", out):
        fail("no timeout message in:\n" + out)
    # Both calls (10 s default, 30 s asked) were capped, so the run ends long before one sleep 5.
    expect_in("! sh.read sleep 5: timed out after", out)
    if elapsed > 4.5:
        fail("the run took %.1f s: --timeout did not cap sh.read" % elapsed)
    _, _, records = t.read_transcript(tr)
    probes = [r for r in records if r["type"] == "probe"]
    expect_eq([p["outcome"] for p in probes], ["timeout", "timeout"], "probe outcomes")
    expect_eq(probes[0]["target"], "sleep 5", "probe target")


def test_sh_read_results(t):
    out, err, tr = exec_auto(t, "shread", '''
step "a" { title = "A", run = function(ctx)
  local r = sh.read { "sh", "-c", "echo out-line; echo err-line >&2; exit 3" }
  ctx:note("code=%s ok=%s stdout=[%s] stderr=[%s]", r.code, tostring(r.ok), r.stdout:gsub("\\n", "|"), (r.stderr:gsub("\\n", "|")))
  local q = sh.read { "echo", "quiet-output", quiet = true }
  ctx:note("quiet stdout=[%s]", (q.stdout:gsub("\\n", "|")))
  local n, e, k = sh.read { "/nonexistent/command" }
  ctx:note("notfound: %s %s", tostring(e), tostring(k))
  local c, ce, ck = sh.read { "false", check = true }
  ctx:note("check: %s %s", tostring(ce), tostring(ck))
  local ok, raised = pcall(sh.read, { "true", timout = 3 })
  ctx:note("typo raises: %s", tostring(raised))
end },''')
    expect_in("    │ out-line\n", out)
    expect_in('code=3 ok=false stdout=[out-line|] stderr=[err-line|]', out)
    expect_not_in("│ quiet-output", out)
    expect_in('quiet stdout=[quiet-output|]', out)
    expect_in("notfound: sh.read /nonexistent/command: command not found notfound", out)
    expect_in("check: sh.read false: exited with code 1 exit", out)
    expect_in("typo raises:", out)
    expect_in("timout", out.split("typo raises:")[1])


def test_primitives_refuse_at_load_time(t):
    marker = t.path("loaded")
    t.write("runbooks/eager.lua", '''
local sh = require "sh"
sh.action { "touch", "%s" }
return runbook { name = "eager", summary = "s", severity = "SEV3", step "a" { title = "A", run = function() end } }
''' % marker)
    rc, out, err = t.run(["exec", "eager", "--auto", "--yes"])
    expect_rc((rc, out, err), 2)
    expect_in("sh.action: cannot run while the runbook is loading", err)
    if os.path.exists(marker):
        fail("sh.action ran at load time")


def test_a_command_that_survives_sigkill_is_left_behind(t):
    """A command stuck in the kernel (I/O on a dead disk: here a cgroup-v1 freezer, whose frozen
    tasks ignore SIGKILL until thawed) must not hang the run: sh.read gives up a second after
    SIGKILL, says so, and leaves the process behind."""
    freezer = "/sys/fs/cgroup/freezer"
    if not os.access(freezer, os.W_OK):
        fail("this test needs a writable cgroup-v1 freezer at %s (run the suite as root)" % freezer)
    group = os.path.join(freezer, "runbook-test-%d" % os.getpid())
    os.mkdir(group)

    def thaw_and_remove():
        with open(os.path.join(group, "freezer.state"), "w") as f:
            f.write("THAWED")
        wait_until("the stuck command gone", lambda: not open(os.path.join(group, "cgroup.procs")).read().strip(), 10)
        os.rmdir(group)
    t.on_cleanup(thaw_and_remove)
    start = time.monotonic()
    out, err, tr = exec_auto(t, "stuck", '''
step "a" { title = "A", run = function(ctx)
  local r, e, kind = sh.read { "sh", "-c", "echo $$ > %(g)s/cgroup.procs && echo FROZEN > %(g)s/freezer.state; sleep 60",
                               timeout = "300ms", grace = "100ms" }
  ctx:note("kind=%%s", tostring(kind))
  ctx:note("err=%%s", tostring(e))
end },''' % {"g": group}, timeout=20)
    elapsed = time.monotonic() - start
    expect_in("kind=timeout", out)
    m = re.search(r"err=sh\.read sh -c .*: timed out after (\d+) ms \(stopped; it did not exit after SIGKILL \(stuck "
                  r"in the kernel: a hung disk or NFS mount\?\) and is left behind as pid (\d+)\)", out)
    if not m:
        fail("no 'left behind' message in:\n" + out)
    if not 300 + 100 + 1000 - 50 <= int(m.group(1)) <= 300 + 100 + 1000 + 500:
        fail("gave up after %s ms: expected the deadline, the grace and a second after SIGKILL" % m.group(1))
    expect_in(m.group(2), open(os.path.join(group, "cgroup.procs")).read().split(), "the process left behind")
    print("    a command that survives SIGKILL: given up after %s ms, run %.1f s" % (m.group(1), elapsed))
