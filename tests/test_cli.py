"""The command line: help, version, usage errors, list/show/check, name resolution, inputs,
exit codes of exec."""
import os
import re

from run import expect_eq, expect_in, expect_not_in, expect_rc, fail

COMMANDS = ("list", "show", "check", "exec", "transcript")

# A runbook whose top level and whose step would each create a file: used to prove that show,
# check and list execute nothing.
SIDE_EFFECTS = '''
step "touch" {
  title = "Touch a file",
  run = function(ctx) sh.read { "touch", "%(step)s" } end,
},
'''


def test_version(t):
    rc, out, err = t.run(["--version"])
    expect_rc((rc, out, err), 0)
    if not re.fullmatch(r"runbook \d+\.\d+\.\d+\n", out):
        fail("--version printed %r" % out)
    rc2, out2, _ = t.run(["version"])
    expect_eq((rc2, out2), (0, out), "runbook version")


def test_help(t):
    for args in (["--help"], ["-h"], ["help"]):
        rc, out, err = t.run(args)
        expect_rc((rc, out, err), 0, " ".join(args))
        expect_in("usage: runbook <command> [options]", out, " ".join(args))
        for c in COMMANDS:
            expect_in("  " + c, out, " ".join(args))
        expect_in("exit codes: 0 completed or resolved, 1 a step failed, 2 usage error, 3 escalated", out)
    rc, out, err = t.run([])
    expect_rc((rc, out, err), 2, "no arguments")
    expect_in("usage: runbook <command>", err, "no arguments")


def test_help_per_command(t):
    for c in COMMANDS:
        rc, out, err = t.run(["help", c])
        expect_rc((rc, out, err), 0, "help " + c)
        expect_in("usage: runbook " + c, out, "help " + c)
        rc2, out2, err2 = t.run([c, "--help"])
        expect_rc((rc2, out2, err2), 0, c + " --help")
        expect_eq(out2, out, c + " --help vs help " + c)
    _, out, _ = t.run(["help", "exec"])
    for opt in ("--dry-run", "--auto", "--yes", "--start-at", "--timeout", "--transcript"):
        expect_in(opt, out, "help exec")
    _, out, _ = t.run(["help", "transcript"])
    expect_in("verify", out)
    expect_in("show", out)
    rc, out, err = t.run(["help", "frobnicate"])
    expect_rc((rc, out, err), 2, "help frobnicate")
    expect_in("frobnicate", err)


def test_unknown_command(t):
    rc, out, err = t.run(["frobnicate"])
    expect_rc((rc, out, err), 2)
    expect_in("'frobnicate' is not a command", err)
    expect_in("runbook --help", err)
    expect_eq(out, "", "stdout")


def test_unknown_option(t):
    t.runbook("one", 'step "a" { title = "A", run = function(ctx) ctx:ok("ran") end },')
    rc, out, err = t.run(["exec", "one", "--bogus"])
    expect_rc((rc, out, err), 2, "exec --bogus")
    expect_in("unknown option --bogus", err)
    expect_not_in("ran", out)
    rc, out, err = t.run(["exec", "one", "--dry-rn"])
    expect_rc((rc, out, err), 2, "exec --dry-rn")
    expect_in("did you mean --dry-run?", err)
    rc, out, err = t.run(["exec", "one", "--timeout"])
    expect_rc((rc, out, err), 2, "--timeout without a value")
    expect_in("--timeout needs a value", err)
    rc, out, err = t.run(["exec", "one", "--timeout", "soon"])
    expect_rc((rc, out, err), 2, "--timeout soon")
    expect_in("--timeout", err)
    rc, out, err = t.run(["list", "extra"])
    expect_rc((rc, out, err), 2, "list extra")
    rc, out, err = t.run(["transcript", "frob", "x"])
    expect_rc((rc, out, err), 2, "transcript frob")
    expect_in("usage: runbook transcript verify|show FILE", err)
    rc, out, err = t.run(["exec"])
    expect_rc((rc, out, err), 2, "exec without a runbook")
    expect_in("exec needs a runbook", err)
    # No transcript was started for any of these.
    expect_eq(t.transcripts(), [], "transcripts after usage errors")


def test_list_search_path(t):
    t.runbook("local-one", 'step "a" { title = "A", run = function() end },', summary="from the cwd",
              severity="SEV1")
    t.runbook("env-one", 'step "a" { title = "A", run = function() end },', dirname="p1", summary="from RUNBOOK_PATH")
    t.runbook("env-two", 'step "a" { title = "A", run = function() end },', dirname="p2", summary="second path entry")
    t.runbook("cfg-one", 'step "a" { title = "A", run = function() end },',
              dirname="config/runbook/runbooks", summary="from the config dir", severity="P2")
    # The same name in ./runbooks and later on the path: the first wins.
    t.runbook("local-one", 'step "a" { title = "A", run = function() end },', dirname="p1", summary="shadowed")
    env = {"RUNBOOK_PATH": t.path("p1") + ":" + t.path("p2")}
    rc, out, err = t.run(["list"], env=env)
    expect_rc((rc, out, err), 0)
    lines = {l.split()[0]: l for l in out.splitlines() if l.strip()}
    for name, sev, summary in (("local-one", "SEV1", "from the cwd"), ("env-one", "SEV3", "from RUNBOOK_PATH"),
                               ("env-two", "SEV3", "second path entry"), ("cfg-one", "P2", "from the config dir")):
        if name not in lines:
            fail("list does not show %s:\n%s" % (name, out))
        if not re.search(r"^\s*%s\s+%s\s+%s$" % (re.escape(name), sev, re.escape(summary)), lines[name]):
            fail("list line for %s is %r" % (name, lines[name]))
    expect_not_in("shadowed", out, "list (first of a name wins)")
    # Without RUNBOOK_PATH the two runbooks there disappear; the config dir still counts.
    rc, out, err = t.run(["list"])
    expect_rc((rc, out, err), 0)
    expect_not_in("env-one", out)
    expect_in("cfg-one", out)
    expect_in("local-one", out)
    # Names resolve through the same path.
    rc, out, err = t.run(["show", "env-two"], env=env)
    expect_rc((rc, out, err), 0, "show env-two")
    expect_in("# env-two", out)
    rc, out, err = t.run(["show", "cfg-one"])
    expect_rc((rc, out, err), 0, "show cfg-one")


def test_list_marks_invalid(t):
    t.runbook("good", 'step "a" { title = "A", run = function() end },')
    t.write("runbooks/broken.lua", "return runbook { name = 'broken' ")
    rc, out, err = t.run(["list"])
    expect_rc((rc, out, err), 0)
    expect_in("good", out)
    line = [l for l in out.splitlines() if "broken" in l]
    if not line or "invalid" not in line[0]:
        fail("list should mark broken.lua as invalid:\n" + out)


def test_show_disk_full(t):
    rc, out, err = t.run(["show", os.path.join(t.repo, "runbooks", "disk-full.lua")])
    expect_rc((rc, out, err), 0)
    expect_in("# disk-full", out)
    expect_in("**SEV2** · A filesystem is full or nearly full", out)
    expect_in("## Inputs", out)
    expect_in("| `threshold` | int | `90` |", out)
    expect_in("## Steps", out)
    expect_in("2. **Which filesystem is full?** (`usage`)", out)
    expect_in("(`old-logs`)", out)
    expect_eq(t.transcripts(), [], "show writes no transcript")
    # And by name, from the repository's ./runbooks.
    rc2, out2, _ = t.run(["show", "disk-full"], cwd=t.repo)
    expect_eq((rc2, out2), (0, out), "show disk-full by name")


def test_show_check_list_execute_nothing(t):
    top = t.path("top-level-ran")
    step = t.path("step-ran")
    # Top-level code tries to act: the primitive refuses at load time, so loading fails cleanly.
    t.write("runbooks/loud.lua", '''
local sh = require "sh"
local r = sh.read { "touch", "%s" }
return runbook { name = "loud", summary = "acts at load time", severity = "SEV3",
  step "a" { title = "A", run = function(ctx) sh.read { "touch", "%s" } end } }
''' % (top, step))
    t.runbook("quiet", SIDE_EFFECTS % {"step": step})
    for args in (["show", "quiet"], ["check", "runbooks/quiet.lua"], ["list"],
                 ["show", "loud"], ["check", "runbooks/loud.lua"]):
        t.run(args)
        if os.path.exists(top) or os.path.exists(step):
            fail("'runbook %s' executed runbook code (a file was created)" % " ".join(args))
    rc, out, err = t.run(["check", "runbooks/loud.lua"])
    expect_rc((rc, out, err), 1, "check loud.lua")
    expect_in("loud.lua", out + err)
    expect_in("sh.read: cannot run while the runbook is loading", out + err)
    rc, out, err = t.run(["show", "quiet"])
    expect_rc((rc, out, err), 0)
    expect_in("1. **Touch a file** (`touch`)", out)


def test_check_good(t):
    a = t.runbook("alpha", 'step "a" { title = "A", explain = "why", run = function() end },',
                  inputs='n = input.int { default = 3, min = 1 }, u = input.url { env = "U" }, '
                         's = input.secret { env = "S" }, d = input.duration { default = "2s" }, '
                         'c = input.argv { default = { "true" } }, p = input.path { default = "/" }')
    b = t.runbook("beta", 'step "a" { title = "A", run = function() end },\n'
                          'step "b" { title = "B", run = function() end },')
    rc, out, err = t.run(["check", a, b, os.path.join(t.repo, "runbooks", "disk-full.lua")])
    expect_rc((rc, out, err), 0)
    expect_in("ok    %s (alpha, 1 steps, 6 inputs)" % a, out)
    expect_in("ok    %s (beta, 2 steps, 0 inputs)" % b, out)
    expect_in("(disk-full, 8 steps, 13 inputs)", out)


BAD = [
    # file stem, source, strings the message must contain
    ("unknown-key", 'return runbook { name = "unknown-key", summary = "s", severity = "SEV3", titel = "x",\n'
                    '  step "a" { title = "A", run = function() end } }', ["unknown-key.lua", "titel"]),
    ("step-typo", 'return runbook { name = "step-typo", summary = "s", severity = "SEV3",\n'
                  '  step "a" { title = "A", timout = 5, run = function() end } }',
     ["step-typo.lua", "step 1 ('a')", "unknown key 'timout'"]),
    ("no-title", 'return runbook { name = "no-title", summary = "s", severity = "SEV3",\n'
                 '  step "a" { title = "A", run = function() end },\n'
                 '  step "restart" { run = function() end } }',
     ["no-title.lua", "step 2 ('restart') has no title"]),
    ("no-summary", 'return runbook { name = "no-summary", severity = "SEV3",\n'
                   '  step "a" { title = "A", run = function() end } }', ["no-summary.lua", "summary"]),
    ("wrong-type", 'return runbook { name = "wrong-type", summary = "s", severity = "SEV3",\n'
                   '  step "a" { title = "A", explain = 42, run = function() end } }',
     ["wrong-type.lua", "explain must be a string"]),
    ("bad-run", 'return runbook { name = "bad-run", summary = "s", severity = "SEV3",\n'
                '  step "a" { title = "A", run = "rm -rf /" } }', ["bad-run.lua", "run function"]),
    ("bad-severity", 'return runbook { name = "bad-severity", summary = "s", severity = "urgent",\n'
                     '  step "a" { title = "A", run = function() end } }', ["bad-severity.lua", "severity"]),
    ("syntax", 'return runbook { name = "syntax", summary = "s", severity = "SEV3",\n'
               '  step "a" { title = "A", run = function() end }\n', ["syntax.lua:", "'}' expected"]),
    ("mismatch", 'return runbook { name = "other-name", summary = "s", severity = "SEV3",\n'
                 '  step "a" { title = "A", run = function() end } }',
     ["mismatch.lua", "runbook name 'other-name' does not match the file name 'mismatch'"]),
    ("global", 'x = 1\nreturn runbook { name = "global", summary = "s", severity = "SEV3",\n'
               '  step "a" { title = "A", run = function() end } }', ["global.lua", "global 'x'"]),
    ("not-runbook", 'return { name = "not-runbook" }', ["not-runbook.lua", "does not return runbook"]),
]


def test_check_bad(t):
    good = t.runbook("fine", 'step "a" { title = "A", run = function() end },')
    for stem, src, needles in BAD:
        p = t.write("bad/%s.lua" % stem, src + "\n")
        rc, out, err = t.run(["check", p])
        if rc == 0:
            fail("check %s.lua exited 0:\n%s%s" % (stem, out, err))
        expect_eq(rc, 1, "exit code of check %s.lua" % stem)
        for n in needles:
            expect_in(n, out + err, "check %s.lua" % stem)
        # exec refuses it as a usage error, and runs nothing
        rc, out2, err2 = t.run(["exec", p, "--auto"])
        expect_eq(rc, 2, "exit code of exec %s.lua" % stem)
    # One bad file among good ones: 1, and the good one is still reported ok.
    rc, out, err = t.run(["check", good, t.path("bad/no-title.lua")])
    expect_rc((rc, out, err), 1)
    expect_in("ok    " + good, out)
    expect_in("FAIL  ", out)
    rc, out, err = t.run(["check"])
    expect_rc((rc, out, err), 2, "check without files")


def test_unknown_runbook_suggests(t):
    with open(os.path.join(t.repo, "runbooks", "disk-full.lua")) as f:
        t.write("runbooks/disk-full.lua", f.read())
    t.runbook("memory-high", 'step "a" { title = "A", run = function() end },')
    rc, out, err = t.run(["exec", "disk-ful"])
    expect_rc((rc, out, err), 2)
    expect_in("no runbook named 'disk-ful'", err)
    expect_in("Did you mean: disk-full?", err)
    expect_not_in("memory-high", err, "suggestions")
    rc, out, err = t.run(["show", "memroy-high"])
    expect_rc((rc, out, err), 2)
    expect_in("Did you mean: memory-high?", err)
    rc, out, err = t.run(["exec", "zzzzzzzzzz"])
    expect_rc((rc, out, err), 2)
    expect_in("no runbook named 'zzzzzzzzzz'", err)
    expect_not_in("Did you mean", err)
    expect_eq(t.transcripts(), [], "no transcript for an unknown runbook")


INPUTS = 'threshold = input.int { default = 90, min = 1, max = 100 }, wait = input.duration { default = "1s" }'
ECHO_INPUTS = 'step "a" { title = "A", run = function(ctx) ctx:note("threshold=%d", ctx.threshold) end },'


def test_input_validation(t):
    t.runbook("inp", ECHO_INPUTS, inputs=INPUTS)
    rc, out, err = t.run(["exec", "inp", "--auto", "threshold=abc"])
    expect_rc((rc, out, err), 2, "threshold=abc")
    expect_in("input 'threshold'", err)
    expect_in("not an integer: 'abc'", err)
    expect_not_in("threshold=", out)
    rc, out, err = t.run(["exec", "inp", "--auto", "threshold=101"])
    expect_rc((rc, out, err), 2, "threshold=101")
    expect_in("input 'threshold': 101 is above 100", err)
    rc, out, err = t.run(["exec", "inp", "--auto", "wait=forever"])
    expect_rc((rc, out, err), 2, "wait=forever")
    expect_in("input 'wait'", err)
    rc, out, err = t.run(["exec", "inp", "--auto", "thresold=5"])
    expect_rc((rc, out, err), 2, "unknown input")
    expect_in("inp has no input 'thresold'", err)
    expect_in("did you mean 'threshold'?", err)
    rc, out, err = t.run(["exec", "inp", "--auto", "colour=red"])
    expect_rc((rc, out, err), 2, "unknown input")
    expect_in("no input 'colour'", err)
    expect_eq(t.transcripts(), [], "no transcript for bad inputs")
    rc, out, err = t.run(["exec", "inp", "--auto", "threshold=42"])
    expect_rc((rc, out, err), 0, "threshold=42")
    expect_in("· threshold=42", out)


def test_required_input(t):
    t.runbook("req", 'step "a" { title = "A", run = function(ctx) ctx:note("%s", ctx.api) end },',
              inputs='api = input.url { env = "REQ_API_URL" }')
    rc, out, err = t.run(["exec", "req", "--auto"])
    expect_rc((rc, out, err), 2)
    expect_in("input 'api' is required: pass api=VALUE or set $REQ_API_URL", err)
    rc, out, err = t.run(["exec", "req", "--auto", "api=not-a-url"])
    expect_rc((rc, out, err), 2)
    expect_in("not a URL", err)
    rc, out, err = t.run(["exec", "req", "--auto"], env={"REQ_API_URL": "http://127.0.0.1:9/x"})
    expect_rc((rc, out, err), 0)
    expect_in("http://127.0.0.1:9/x", out)


OUTCOMES = {
    "completed": ('step "a" { title = "A", run = function(ctx) ctx:ok("fine") end },\n'
                  'step "b" { title = "B", run = function(ctx) ctx:finding("odd") end },', 0, "completed"),
    "resolved": ('step "a" { title = "A", run = function(ctx) return ctx:resolved("all good") end },\n'
                 'step "b" { title = "B", run = function(ctx) ctx:note("MUST-NOT-RUN") end },', 0, "resolved"),
    "escalated": ('step "a" { title = "A", run = function(ctx) return ctx:escalate("call the DBA") end },\n'
                  'step "b" { title = "B", run = function(ctx) ctx:note("MUST-NOT-RUN") end },', 3, "escalated"),
    "failed": ('step "a" { title = "A", run = function(ctx) must(nil, "disk exploded") end },\n'
               'step "b" { title = "B", run = function(ctx) ctx:note("MUST-NOT-RUN") end },', 1, "failed"),
    "raised": ('step "a" { title = "A", run = function(ctx) local t = nil; return t.x end },\n'
               'step "b" { title = "B", run = function(ctx) ctx:note("MUST-NOT-RUN") end },', 1, "failed"),
    "declined": ('step "a" { title = "A", run = function(ctx) sh.action { "touch", "%(f)s" } end },\n'
                 'step "b" { title = "B", run = function(ctx) ctx:note("step b ran") end },', 4, "declined"),
}


def test_exit_codes(t):
    for name, (body, code, word) in OUTCOMES.items():
        f = t.path("acted-" + name)
        t.runbook("rb-" + name, body % {"f": f})
        tr = t.path("t-%s.cast" % name)
        rc, out, err = t.run(["exec", "rb-" + name, "--auto", "--transcript", tr])
        expect_rc((rc, out, err), code, name)
        expect_not_in("MUST-NOT-RUN", out, name)
        if not re.search(r"^%s · " % word, out, re.M):
            fail("%s: no summary line starting %r:\n%s" % (name, word, out))
        expect_in("chain head ", out, name)
        _, _, records = t.read_transcript(tr)
        end = records[-1]
        expect_eq(end["type"], "session_end", name)
        expect_eq(end["exit"], code, name + " session_end.exit")
        expect_eq(end["outcome"], word, name + " session_end.outcome")
        if name == "declined":
            expect_in("step b ran", out, name)
            if os.path.exists(f):
                fail("the declined action ran")
        if name == "escalated":
            expect_in("escalated: call the DBA", out)
        if name == "resolved":
            expect_in("resolved: all good", out)
        if name in ("failed",):
            expect_in("disk exploded", out + err)
            expect_in("stopped: a step failed", out)


def test_exit_code_aborted(t):
    # Aborted by the operator: q at the step menu (needs a terminal).
    t.runbook("ab", 'step "a" { title = "First", run = function(ctx) ctx:note("MUST-NOT-RUN") end },')
    p = t.pty(["exec", "ab"])
    p.expect(r"Enter: run · s: skip · j: jump · r: repl · q: quit > ")
    p.sendline("q")
    expect_eq(p.wait(), 5, "exit code after q")
    expect_in("aborted by the operator", p.text)
    expect_not_in("MUST-NOT-RUN", p.text)


def test_transcript_default_location(t):
    t.runbook("loc", 'step "a" { title = "A", run = function(ctx) ctx:ok("fine") end },')
    rc, out, err = t.run(["exec", "loc", "--auto"])
    expect_rc((rc, out, err), 0)
    tr = t.the_transcript()
    if not re.fullmatch(r"loc-\d{8}T\d{6}Z-[0-9a-f]{6}\.cast", os.path.basename(tr)):
        fail("unexpected transcript name %s" % tr)
    expect_in("transcript " + tr, out)
    expect_eq(os.stat(os.path.dirname(tr)).st_mode & 0o777, 0o700, "transcript directory mode")
