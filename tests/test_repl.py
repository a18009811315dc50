"""The investigation REPL (runbook repl, and r at the engine's menus), through a real pseudo-terminal:
expressions, continuation lines, completion, Ctrl-C, history without secrets, the transcript, the
in-run REPL; the same REPL fed from a pipe; and the API reference generated from doc.lua."""
import os
import re
import shutil
import stat
import time

from run import expect_eq, expect_in, expect_not_in, expect_rc, fail

PROMPT = r"(?m)^> $"
PROMPT_AT = r"(?m)^> "          # the prompt, whatever follows it on the line (an echo)
CONT = r"(?m)^>> "
MENU = r"Enter: run · s: skip · j: jump · r: repl · q: quit > "
FAILED_MENU = r"Enter: retry · s: skip · r: repl · q: quit > "
ASK = r"Type yes to run it, or n to skip: "
DECLINED_MENU = r"Declined\. s: skip this step · a: ask again · r: repl · q: abort the run \[s\]: "


def repl(t, *args, env=None, prompt=PROMPT_AT):
    p = t.pty(["repl", "--transcript", t.path("repl.cast")] + list(args), env=env)
    p.expect(r"runbook repl")
    p.expect(prompt)
    return p


def leave(p, prompt=PROMPT_AT):
    """Ctrl-D on an empty line: the REPL ends with exit code 0. Sent once the prompt shows (prompt
    None: it already has): typed ahead, the kernel's line discipline would take it as its own EOF."""
    if prompt:
        p.expect(prompt)
    p.send(b"\x04")
    expect_eq(p.wait(), 0, "exit code after Ctrl-D")


def candidates(p, typed, first):
    """Types typed and two Tabs: returns the listed candidates (from the one matching first on) and
    clears the line (Ctrl-U)."""
    p.send(typed + "\t\t")
    m = p.expect(first)
    listed = p.text[m.start():]
    p.send(b"\x15")
    return listed


def verify_complete(t, tr):
    rc, out, err = t.run(["transcript", "verify", tr])
    if rc != 0 or not out.startswith("complete: "):
        fail("transcript %s does not verify complete: rc=%s\n%s%s" % (tr, rc, out, err))


def test_expression(t):
    p = repl(t)
    p.sendline("1 + 2")
    p.expect(r"\n3\n")
    p.expect(PROMPT_AT)
    p.sendline('"abc" .. "def", 7')
    p.expect(r"abcdef\t7\n")
    p.sendline("sys.memory()")
    p.expect(r"\nused_pct +\d+(\.\d)?%\n")          # a probe's result as aligned key/value lines
    p.sendline("_.total > 0")                        # _ is the last result, as a table
    p.expect(r"\ntrue\n")
    p.sendline('sys.fs("/no/such/dir")')
    p.expect(r"✖ sys\.fs /no/such/dir: .* \(notfound\)\n")   # nil, err, kind: one line
    p.sendline("undefined_name + 1")
    p.expect(r"! repl:1: undefined global 'undefined_name'\n")
    expect_not_in("stack traceback", p.text)
    p.sendline("x = 41")                             # a global assigned at the REPL stays
    p.sendline("x + 1")
    p.expect(r"\n42\n")
    leave(p)


def test_rows_render_as_table(t):
    p = repl(t)
    p.sendline('{ { name = "a", bytes = 2048 }, { name = "bb", bytes = 10 }, count = 2 }')
    p.expect(r"name +bytes\n")
    p.expect(r"a +2\.0 KiB\n")
    p.expect(r"bb +10\n")
    p.expect(r"count +2\n")
    p.sendline("(function() local t = {} for i = 1, 500 do t[i] = i end return t end)()")
    p.expect(r"… 441 more lines not shown: the whole value is in _")
    p.sendline("#_")
    p.expect(r"\n500\n")
    leave(p)


def test_multiline_function(t):
    p = repl(t)
    p.sendline("function double(n)")
    p.expect(CONT)
    p.sendline("  local r = n * 2")
    p.expect(CONT)
    p.sendline("  return r")
    p.expect(CONT)
    p.sendline("end")
    p.expect(PROMPT_AT)
    p.sendline("double(21)")
    p.expect(r"\n42\n")
    # A syntax error is one line, and the next line starts a fresh chunk.
    p.sendline("if then")
    p.expect(r"! repl:1: unexpected symbol near 'then'\n")
    p.sendline("double(2)")
    p.expect(r"\n4\n")
    leave(p)


def test_complete_module_fields(t):
    p = repl(t)
    # The one candidate is completed in place (libedit may ring the bell in the middle of the echo:
    # what the line became is checked by evaluating it).
    p.send("sys.mem\t")
    p.sendline("().total > 0")
    p.expect(r"\ntrue\n")
    p.expect(PROMPT_AT)
    listed = candidates(p, "sys.", r"sys\.filesystems.*\n")    # ambiguous: the second Tab lists them
    for name in ("sys.fs", "sys.largest", "sys.processes", "sys.grep"):
        expect_in(name, listed, "the listed candidates")
    p.send("pri\t")
    p.sendline('("completed")')
    p.expect(r"\ncompleted\n")
    leave(p)


def test_complete_methods(t):
    p = repl(t)
    # A handle is a value whose metatable's __index table holds its methods (pg and redis
    # connections are userdata built that way); completion never calls anything to find them.
    p.sendline('conn = setmetatable({}, { __index = { query = function(self, q) return "rows of " .. q end, '
               'close = function() end } })')
    p.expect(PROMPT_AT)
    p.send("conn:q\t")
    p.sendline('("select 1")')
    p.expect(r"\nrows of select 1\n")
    expect_in("conn:query", candidates(p, "conn:", r"conn:close.*\n"), "method candidates")
    # Native handles protect their metatable (__metatable = false): still completed.
    p.sendline('locked = setmetatable({}, { __index = { fetch_rows = function() return "fetched" end }, '
               '__metatable = false })')
    p.send("locked:fe\t")
    p.sendline("()")
    p.expect(r"\nfetched\n")
    # The chain before the dot is looked up, never evaluated: a metamethod is not called.
    p.sendline('trap = setmetatable({}, { __index = function() print("CAL" .. "LED") return {} end })')
    p.send("trap.x.\t\t")
    p.send(b"\x15")
    p.sendline('"after"')
    p.expect(r"\nafter\n")
    expect_not_in("CALLED", p.text)
    leave(p)


def test_complete_redis_and_a_connection(t):
    # The issue's own example: redis. and conn: on a live connection (a userdata whose metatable
    # is protected from runbooks), against the suite's shared redis-server.
    import servers_redis
    url = servers_redis.shared().url()
    p = repl(t)
    p.send("redis.pi\t")                            # -> redis.ping
    p.sendline('("%s").role' % url)
    p.expect(r"\nmaster\n")
    p.sendline('conn = redis.connect("%s")' % url)
    p.expect(PROMPT_AT)
    p.send("conn:ca\t")                             # -> conn:call
    p.sendline('("PING")')
    p.expect(r"\nPONG\n")
    expect_in("conn:close", candidates(p, "conn:", r"conn:call.*\n"), "a connection's methods")
    p.sendline("help(conn)")
    p.expect(r"redis: Redis\n")
    leave(p)


def interrupt_within(p, t, code, marker):
    p.sendline(code)
    p.expect(re.escape(marker) + r"\n")
    t0 = time.monotonic()
    p.ctrl_c()
    p.expect(r"! interrupted\n")
    p.expect(PROMPT_AT)
    return time.monotonic() - t0


def test_ctrl_c_interrupts_infinite_loop(t):
    p = repl(t)
    limit = 0.5
    for code, marker in (
        ('print("spinning") while true do end', "spinning"),
        ('coroutine.wrap(function() print("in a coroutine") while true do end end)()', "in a coroutine"),
        ('pcall(function() print("in a pcall") while true do end end)', "in a pcall"),
        ('pcall(sh.read, { "sh", "-c", "echo sleeping; exec sleep 60" })', "│ sleeping"),
    ):
        took = interrupt_within(p, t, code, marker)
        if took > limit:
            fail("Ctrl-C took %.3f s to get back to the prompt after %r (limit %.1f s)" % (took, code, limit))
    p.sendline("1 + 1")
    p.expect(r"\n2\n")
    p.expect(PROMPT_AT)
    # Ctrl-C at the prompt drops the line typed so far.
    p.send("garbage garbage")
    p.expect("garbage garbage")
    p.ctrl_c()
    p.expect(PROMPT_AT)
    p.sendline("2 + 2")
    p.expect(r"\n4\n")
    # ... and a pending multi-line chunk.
    p.sendline("for i = 1, 3 do")
    p.expect(CONT)
    p.ctrl_c()
    p.expect(PROMPT_AT)
    p.sendline("3 + 3")
    p.expect(r"\n6\n")
    leave(p)


def test_history_without_secrets(t):
    t.runbook("sec", 'step "a" { title = "A", run = function(ctx) ctx:note("ran") end },',
              inputs='token = input.secret { env = "SEC_TOKEN" }, db = input.url { default = "postgres://app:dbpass99@127.0.0.1/app" }')
    p = repl(t, "--runbook", "sec", env={"SEC_TOKEN": "tok-SECRET-4711"}, prompt=r"(?m)^sec> ")
    lines = [
        ("plain_one = 1", True),
        ('u = "redis://admin:hunter2pw@127.0.0.1:6379/0"', False),    # a password in a URL
        ('ctx.token == "tok-SECRET-4711"', False),                    # a registered secret
        ('cmd = { "AUTH", "s3cr3tw0rd" }', False),                    # an AUTH command
        ('password = "pl41nt3xt"', False),                            # a password literal
        ('ctx.db:match("dbpass99")', False),                          # the password of a URL input
        ("plain_two = 2", True),
    ]
    for line, _ in lines:
        p.sendline(line)
        p.expect(r"(?m)^sec> ")
    leave(p, None)
    hist = t.path("state", "runbook", "history")
    if not os.path.exists(hist):
        fail("no history file at %s" % hist)
    mode = stat.S_IMODE(os.stat(hist).st_mode)
    expect_eq(oct(mode), oct(0o600), "history file mode")
    with open(hist) as f:
        saved = f.read()
    for line, kept in lines:
        if kept:
            expect_in(line + "\n", saved, "history")
        else:
            expect_not_in(line, saved, "history")
    for secret in ("hunter2pw", "tok-SECRET-4711", "s3cr3tw0rd", "pl41nt3xt", "dbpass99"):
        expect_not_in(secret, saved, "history")
    # The next session recalls the history (arrow up), but not what was never saved.
    p = repl(t, "--transcript", t.path("second.cast"))
    p.send("\x1b[A")
    p.expect(r"plain_two = 2")
    p.send(b"\x15")
    leave(p, None)


def test_history_never_through_a_symlink(t):
    os.makedirs(t.path("state", "runbook"), exist_ok=True)
    victim = t.write("victim.txt", "untouched\n")
    os.symlink(victim, t.path("state", "runbook", "history"))
    p = repl(t)
    p.sendline("a_line_to_remember = 1")
    leave(p)
    expect_in("history is off for this session", p.text)
    with open(victim) as f:
        expect_eq(f.read(), "untouched\n", "the symlink's target")


def test_transcript_records_the_session(t):
    p = repl(t)
    p.sendline('"marker-" .. "xyz"')
    p.expect(r"\nmarker-xyz\n")
    p.sendline('u = "http://bob:secretpw77@example.invalid/"')
    p.expect(PROMPT_AT)
    p.sendline("u")
    p.expect(r"http://bob:\*\*\*@example\.invalid/")   # redacted on the terminal too
    p.sendline("error('on purpose')")
    p.expect(r"! repl:1: on purpose\n")
    leave(p)
    tr = t.path("repl.cast")
    verify_complete(t, tr)
    header, events, recs = t.read_transcript(tr)
    expect_eq(header["runbook"]["repl"], True, "header repl")
    inputs = [r["input"] for r in recs if r["type"] == "repl"]
    expect_in('"marker-" .. "xyz"', inputs, "repl records")
    expect_in('u = "http://bob:***@example.invalid/"', inputs, "repl records (redacted)")
    results = [(r["outcome"], r.get("result")) for r in recs if r["type"] == "repl_result"]
    expect_in(("ok", "marker-xyz"), results, "repl_result records")
    expect_in(("error", "repl:1: on purpose"), results, "repl_result records")
    shown = t.shown_text(events)
    expect_in('> "marker-" .. "xyz"\n', shown, "typed line in the transcript")
    expect_in("marker-xyz\n", shown, "result in the transcript")
    with open(tr) as f:
        expect_not_in("secretpw77", f.read(), "transcript")
    expect_eq(recs[-1]["type"], "session_end", "last record")
    expect_eq(recs[-1]["counts"], {"evaluations": 4, "errors": 1}, "session_end counts")
    rc, out, err = t.run(["transcript", "show", tr])
    expect_rc((rc, out, err), 0)
    expect_in('repl          > "marker-" .. "xyz"', out, "transcript show")
    expect_in("repl_result   ok: marker-xyz", out, "transcript show")


def test_help(t):
    p = repl(t)
    p.sendline("help(sys.fs)")
    p.expect(r"sys\.fs\(path, \{ timeout = 5, on = \"local\" \}\)\n")
    p.expect(r"  example\n")
    p.sendline(":help sh.read")
    p.expect(r"sh\.read \{ argv\.\.\., timeout = 10, grace = 1, quiet = false")
    p.expect(r"    timeout +10 +deadline")
    p.sendline("help()")
    p.expect(r"Tab +completes globals")
    p.sendline(":nonsense")
    p.expect(r"! :nonsense is not a command here \(:help, :quit\)")
    p.sendline(":quit")
    expect_eq(p.wait(), 0, "exit code after :quit")


def test_piped_without_terminal_or_history(t):
    rc, out, err = t.run(["repl"], stdin="print(1+1)\n")
    expect_rc((rc, out, err), 0)
    expect_eq(out, "2\n", "stdout of a piped REPL")
    rc, out, err = t.run(["repl"], stdin="x = 20\nfunction f(n)\n  return n + x\nend\nf(22)\nsys.load().cpus > 0\n")
    expect_rc((rc, out, err), 0)
    expect_eq(out, "42\ntrue\n", "stdout")
    expect_in("transcript ", err, "where the transcript is, on stderr")
    rc, out, err = t.run(["repl"], stdin="error('boom')\nprint('after')\n")
    expect_rc((rc, out, err), 1, "a failed evaluation from a pipe")
    expect_in("! repl:1: boom", out)
    expect_in("after", out)
    expect_not_in("stack traceback", out)
    rc, out, err = t.run(["repl", "--debug"], stdin="error('boom')\n")
    expect_in("stack traceback", out, "an error under --debug")
    if os.path.exists(t.path("state", "runbook", "history")):
        fail("a REPL without a terminal wrote a history file")
    rc, out, err = t.run(["repl", "--runbook", "nosuch"], stdin="")
    expect_rc((rc, out, err), 2, "unknown runbook")
    rc, out, err = t.run(["repl", "x=1"], stdin="")
    expect_rc((rc, out, err), 2, "inputs without --runbook")
    expect_in("need --runbook", err)


def test_actions_go_through_the_gate(t):
    f = t.path("made-by-repl")
    p = repl(t)
    p.sendline('sh.action { "touch", "%s", summary = "create a file" }' % f)
    p.expect(r"ACTION  create a file")
    p.expect(ASK)
    p.sendline("n")
    p.expect(r"Declined\. s: skip this step · a: ask again · q: abort the run \[s\]: ")   # no REPL in the REPL
    p.sendline("")
    p.expect(r"declined by the operator")
    p.expect(PROMPT_AT)
    if os.path.exists(f):
        fail("a declined action ran")
    p.sendline('sh.action { "touch", "%s", summary = "create a file" }' % f)
    p.expect(ASK)
    p.sendline("yes")
    leave(p)
    if not os.path.exists(f):
        fail("the confirmed action did not run")
    _, _, recs = t.read_transcript(t.path("repl.cast"))
    conf = [(r["answer"], r["how"]) for r in recs if r["type"] == "confirm"]
    expect_eq(conf, [("declined", "typed no"), ("yes", "typed yes")], "confirm records")
    rc, out, err = t.run(["repl"], stdin='sh.action { "touch", "%s-piped" }\n' % f)
    expect_in("not run: no terminal to confirm on", out)
    if os.path.exists(f + "-piped"):
        fail("an action ran without a terminal")


def test_in_run_repl(t):
    marker = t.path("acted")
    t.runbook("inrun", '''
step "look" { title = "Look around", run = function(ctx)
  ctx:note("seen is %%s", tostring(ctx.state.seen))
end },
step "flaky" { title = "Flaky", run = function(ctx)
  ctx.state.tries = (ctx.state.tries or 0) + 1
  if not ctx.state.fixed then error("not fixed yet") end
  ctx:ok("fixed after %%d tries", ctx.state.tries)
end },
step "act" { title = "Act", run = function(ctx)
  must(sh.action { "touch", "%s", summary = "create the marker" })
end },
step "last" { title = "Last", run = function(ctx) ctx:note("last ran") end },''' % marker,
              inputs='greeting = input.string { default = "hello-from-input" }')
    tr = t.path("run.cast")
    p = t.pty(["exec", "inrun", "--transcript", tr])
    # The step menu: r, look at ctx, change the run's state, back to the menu, run the step.
    p.expect(MENU)
    p.sendline("r")
    p.expect(r"REPL at step 1 \(look\)")
    p.expect(r"(?m)^look> ")
    p.sendline("ctx.greeting")
    p.expect(r"\nhello-from-input\n")
    p.sendline("ctx.state.seen = true")
    p.send("ctx:no\t")                              # completes to ctx:note
    p.sendline('("from the repl")')
    p.expect(r"· from the repl\n")
    p.sendline(":continue")
    p.expect(MENU)
    p.sendline("")
    p.expect(r"· seen is true\n")
    # The failed-step menu: r, fix the state, :retry.
    p.expect(MENU)
    p.sendline("")
    p.expect(r"not fixed yet")
    p.expect(FAILED_MENU)
    p.sendline("r")
    p.expect(r"(?m)^flaky> ")
    p.sendline("ctx.state.tries")
    p.expect(r"\n1\n")
    p.sendline("ctx.state.fixed = true")
    p.sendline(":retry")
    p.expect(r"✔ fixed after 2 tries\n")
    # The declined-action menu: r, then :retry asks again.
    p.expect(MENU)
    p.sendline("")
    p.expect(ASK)
    p.sendline("n")
    p.expect(DECLINED_MENU)
    p.sendline("r")
    p.expect(r"(?m)^act> ")
    p.sendline("ctx.state.seen")
    p.expect(r"\ntrue\n")
    p.sendline(":retry")
    p.expect(ASK)
    p.sendline("yes")
    p.expect(MENU)
    p.sendline("")
    p.expect(r"· last ran\n")
    expect_eq(p.wait(), 0, "exit code")
    if not os.path.exists(marker):
        fail("the action confirmed after the REPL did not run")
    verify_complete(t, tr)
    _, _, recs = t.read_transcript(tr)
    inputs = [(r.get("step"), r["input"]) for r in recs if r["type"] == "repl"]
    expect_in(("look", "ctx.greeting"), inputs, "repl records")
    expect_in(("flaky", "ctx.state.fixed = true"), inputs, "repl records")
    notes = [r["text"] for r in recs if r["type"] == "note" and "REPL" in r.get("text", "")]
    expect_in("operator opened the REPL at the declined action", notes, "notes")


def test_without_the_line_editor(t):
    # A copy of the binary whose modules lack lineedit.so (a broken install): a run on a terminal
    # still runs, and its REPL reads plain lines, saying why there is no editing.
    name = os.path.basename(t.binary)
    objdir = "obj-asan" if name.endswith("-asan") else "obj"
    bindir = t.path("bin")
    shutil.copytree(os.path.join(os.path.dirname(t.binary), objdir, "modules"), os.path.join(bindir, objdir, "modules"),
                    ignore=shutil.ignore_patterns("lineedit.so"))
    shutil.copy(t.binary, os.path.join(bindir, name))
    t.runbook("noedit", '''
step "one" { title = "One", run = function(ctx) ctx:note("one ran") end },''')
    argv = [os.path.join(bindir, name), "exec", "noedit", "--transcript", t.path("ne.cast")]
    p = t.pty(argv, binary=False)
    p.expect(MENU)
    p.sendline("r")
    p.expect(r"no line editing, history or completion: module 'lineedit' is not installed")
    p.expect(r"(?m)^one> ")
    p.sendline("1 + 41")
    p.expect(r"\n42\n")
    p.expect(r"(?m)^one> ")
    p.send("2 + ")
    p.ctrl_c()                                      # drops the line, as with the editor
    p.expect(r"(?m)^one> ")
    p.sendline("2 + 40")
    p.expect(r"\n42\n")
    p.expect(r"(?m)^one> ")                        # typed ahead of the prompt, a line can be flushed
    p.sendline(":continue")
    p.expect(MENU)
    p.sendline("")
    p.expect(r"· one ran\n")
    expect_eq(p.wait(), 0, "exit code")
    verify_complete(t, t.path("ne.cast"))
    _, _, recs = t.read_transcript(t.path("ne.cast"))
    expect_eq([r["input"] for r in recs if r["type"] == "repl"], ["1 + 41", "2 + 40"], "the REPL's inputs")


def test_in_run_repl_skip_and_quit(t):
    t.runbook("inrun2", '''
step "one" { title = "One", run = function(ctx) ctx:note("one ran") end },
step "two" { title = "Two", run = function(ctx) ctx:note("two ran") end },''')
    p = t.pty(["exec", "inrun2", "--transcript", t.path("r2.cast")])
    p.expect(MENU)
    p.sendline("r")
    p.expect(r"(?m)^one> ")
    p.sendline(":skip")
    p.expect(r"\[2/2\] Two")
    p.expect(MENU)
    p.sendline("r")
    p.expect(r"(?m)^two> ")
    p.send(b"\x04")                                  # Ctrl-D: back to the menu
    p.expect(MENU)
    p.sendline("r")
    p.expect(r"(?m)^two> ")
    p.sendline(":quit")
    expect_eq(p.wait(), 5, "exit code after :quit in the REPL")
    expect_not_in("one ran", p.text)
    expect_not_in("two ran", p.text)


def test_doc_prints_the_reference_and_one_entry(t):
    rc, out, err = t.run(["doc"])
    expect_rc((rc, out, err), 0)
    expect_in("#### `sh.read { argv..., timeout = 10,", out)
    # that doc/lua-api.md is this output: tests/test_docs.py
    rc, out, err = t.run(["doc", "sys.grep"])
    expect_rc((rc, out, err), 0)
    expect_in('sys.grep(path, regex, { icase = false, limit = 100, timeout = 10, on = "local" })', out)
    rc, out, err = t.run(["doc", "sys.nope"])
    expect_rc((rc, out, err), 2)
    expect_in("no documentation for 'sys.nope'", err)


def test_every_primitive_is_documented(t):
    # help(f) for every function of every native module: a function added without its doc.lua
    # entry fails. One module per run, so that no output is cut.
    total = 0
    for m in ("sh", "sys", "tcp", "pg", "redis", "http"):
        rc, out, err = t.run(["repl"], stdin='local n = 0 for _, f in pairs(%s) do if type(f) == "function" then '
                                             'n = n + 1 end end print("functions=" .. n)\n' % m)
        expect_rc((rc, out, err), 0)
        n = int(out.split("functions=")[1].split()[0])
        rc, out, err = t.run(["repl"], stdin='for _, f in pairs(%s) do if type(f) == "function" then help(f) end end\n' % m)
        expect_rc((rc, out, err), 0)
        expect_not_in("no help", out)
        expect_eq(out.count("\n  example\n"), n, "help entries of " + m)
        total += n
    expect_eq(total >= 22, True, "sh, sys, tcp, pg, redis and http functions: %d" % total)
