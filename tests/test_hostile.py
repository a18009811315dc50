"""A careless or hostile runbook, command, terminal or file (issue 17, classes 3, 4, 7 and 8):
commands cannot answer the gate, what is shown is what runs, long work inside C can be stopped,
loading is bounded, and broken inputs get one clear line instead of a traceback."""
import os
import re
import signal
import time

from run import expect_eq, expect_in, expect_not_in, fail

ASK_TARGET = r"Type the target \(.*\) to confirm, or n to skip: "
DECLINED_MENU = r"Declined\. s: skip this step · a: ask again · r: repl · q: abort the run \[s\]: "

# ------------------------------------------------------------------ class 4: shown is what runs
# Each payload (as a Lua string literal) and how it must appear on the terminal.
# In an argv element at the gate (bash's $'...'), characters beyond ASCII are shown by their bytes.
ARGV_SHOWN = {"c1_csi": r"\xc2\x9b2K\xc2\x9d0;t\xc2\x9c", "bidi_del_bel": r"a\xe2\x80\xaeb\x7fc\x07d"}
PAYLOADS = {
    "cr_erase": (r'"rm -rf /srv\r\27[2Kls -l /srv"', r"rm -rf /srv\r\x1b[2Kls -l /srv", b"\x1b[2K"),
    "osc52": (r'"\27]52;c;cm0gLXJmIC8K\7"', r"\x1b]52;c;cm0gLXJmIC8K\x07", b"\x1b]52"),
    "title": (r'"\27]0;all good\7"', r"\x1b]0;all good\x07", b"\x1b]0;"),
    "c1_csi": (r'"\u{9b}2K\u{9d}0;t\u{9c}"', r"\u009b2K\u009d0;t\u009c", "\u009b".encode()),
    "bidi_del_bel": (r'"a\u{202e}b\127c\7d"', r"a\u202eb\x7fc\x07d", "\u202e".encode()),
}


def hostile_runbook(t, payload):
    body = '''
step "s" { title = "Step", run = function(ctx)
  local p = %s
  ctx:note("note " .. p)
  ctx:finding("finding " .. p)
  sh.read { "printf", "%%s\\n", "live " .. p }
  sh.action { "echo", "argv " .. p, summary = "summary " .. p, target = "target " .. p,
              irreversible = true }
end },''' % payload
    t.runbook("hostile", body)


def check_shown(t, kind, colour):
    lua, visible, raw = PAYLOADS[kind]
    hostile_runbook(t, lua)
    tr = t.path("h.cast")
    env = {"NO_COLOR": None} if colour else None
    p = t.pty(["exec", "hostile", "--auto", "--transcript", tr], env=env)
    p.expect(ASK_TARGET)
    p.sendline("n")
    p.expect(DECLINED_MENU)
    p.sendline("s")
    p.wait()
    if raw in p.raw:
        fail("%s reached the terminal raw:\n%r" % (kind, p.raw))
    for where in ("note ", "finding ", "live ", "argv ", "summary ", "target "):
        shown = ARGV_SHOWN.get(kind, visible) if where == "argv " else visible
        expect_in(where + shown, p.text, "%s shown visibly after %r" % (kind, where))
    _, events, _ = t.read_transcript(tr)
    shown = t.shown_text(events)
    if raw.decode("utf-8") in shown:
        fail("%s recorded raw in the transcript" % kind)
    expect_in("target " + visible, shown, "the transcript's output")
    if colour:
        # The program's own colours still work: the ACTION label is yellow-bold or red-bold.
        if not re.search(rb"\x1b\[1;3[13]mACTION\x1b\[0m", p.raw):
            fail("the gate's own colour is gone:\n%r" % p.raw[:2000])


def test_cr_erase_line_cannot_hide_the_command(t):
    check_shown(t, "cr_erase", colour=True)


def test_osc52_clipboard_is_shown_not_obeyed(t):
    check_shown(t, "osc52", colour=False)


def test_osc_title_is_shown_not_obeyed(t):
    check_shown(t, "title", colour=True)


def test_c1_csi_is_shown_not_obeyed(t):
    check_shown(t, "c1_csi", colour=False)


def test_bidi_del_and_bell_are_shown(t):
    check_shown(t, "bidi_del_bel", colour=False)


def test_control_characters_without_a_terminal(t):
    """The same output path when stdout is a pipe: visible there too (a log, a CI job)."""
    hostile_runbook(t, PAYLOADS["cr_erase"][0])
    rc, out, err = t.run(["exec", "hostile", "--auto"])
    expect_not_in("\x1b", out + err, "raw ESC without a terminal")
    expect_in("live " + PAYLOADS["cr_erase"][1], out)
    expect_in("not run: no terminal", out)


# ------------------------------------------------------------------ class 3: only the operator answers
ASK = r"Type yes to run it, or n to skip: "

# Left behind by a probe: waits until told the runbook's pid, then types "yes\n" into the terminal
# (TIOCSTI), the one it controls or, failing that, the runbook's own; says how it went.
INJECTOR = r'''
import fcntl, os, sys, termios
fifo, result = sys.argv[1], sys.argv[2]
with open(fifo) as f:
    pid = int(f.read().strip())
how = []
for path in ("/dev/tty", "/proc/%d/fd/0" % pid):
    try:
        fd = os.open(path, os.O_RDWR | os.O_NOCTTY)
    except OSError as e:
        how.append("%s: %s" % (path, e.strerror))
        continue
    try:
        for c in b"yes\n":
            fcntl.ioctl(fd, termios.TIOCSTI, bytes([c]))
        how.append("injected through " + path)
        break
    except OSError as e:
        how.append("%s: TIOCSTI %s" % (path, e.strerror))
with open(result, "w") as f:
    f.write("; ".join(how))
'''


def alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def kill_later(t, pids):
    def kill():
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
    t.on_cleanup(kill)


def read_fifo(path, timeout=10):
    import select
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        data, deadline = b"", time.monotonic() + timeout
        while True:
            r, _, _ = select.select([fd], [], [], max(0, deadline - time.monotonic()))
            if not r:
                fail("nothing came through %s within %ss" % (path, timeout))
            chunk = os.read(fd, 4096)
            if not chunk and data:
                return data.decode()
            data += chunk
    finally:
        os.close(fd)


def the_operator_declines(t, p, tr):
    """The operator answers no, then skips the step: the action must not have run, and the
    transcript says who declined."""
    p.sendline("n")
    p.expect(r"Declined\. ")
    p.sendline("s")                # the step ends (and another task's command with it)
    p.wait()
    if os.path.exists(t.path("pwned")):
        fail("the action ran without the operator's yes")
    _, _, records = t.read_transcript(tr)
    expect_eq([(r["answer"], r["how"]) for r in records if r["type"] == "confirm"],
              [("declined", "typed no")], "confirm records")


def test_a_probes_leftover_cannot_answer_the_gate(t):
    t.write("inject.py", INJECTOR)
    fifo, result = t.mkfifo("go"), t.mkfifo("result")
    t.runbook("inject", '''
step "s" { title = "Step", run = function(ctx)
  local r = sh.read { "sh", "-c", "python3 inject.py go result </dev/null >/dev/null 2>&1 & echo $!" }
  ctx:note("helper " .. r.stdout)
  sh.action { "touch", "pwned", summary = "create the file pwned" }
end },''')
    tr = t.path("i.cast")
    p = t.pty(["exec", "inject", "--auto", "--transcript", tr])
    pid = int(p.expect(r"helper (\d+)").group(1))
    kill_later(t, [pid])
    p.expect(ASK)
    if alive(pid):
        # Today's build: the probe's background process is still there while the gate asks.
        t.release(fifo, b"%d\n" % p.proc.pid)
        how = read_fifo(result)
        if how.startswith("injected"):
            p.expect(r"create the file pwned|exit|✔|·", timeout=10)
            p.wait()
        fail("a process left behind by sh.read was still running while the gate asked (%s); the "
             "action %s" % (how, "RAN: the runbook answered its own gate" if os.path.exists(t.path("pwned"))
                            else "did not run"))
    the_operator_declines(t, p, tr)


def test_commands_have_no_terminal_and_their_own_session(t):
    t.runbook("tty", '''
step "s" { title = "Step", run = function(ctx)
  local r = sh.read { "python3", "-c", [[
import os
try:
    os.close(os.open("/dev/tty", os.O_RDWR)); tty = "has a terminal"
except OSError as e:
    tty = "no terminal"
print("session", "own" if os.getsid(0) == os.getpid() else "shared", tty, "stdin", os.readlink("/proc/self/fd/0"))
]] }
  ctx:note(r.stdout)
end },''')
    p = t.pty(["exec", "tty", "--auto"])
    p.wait()
    expect_in("session own no terminal stdin /dev/null", p.text)


def test_leftovers_end_with_their_command(t):
    """Background jobs, a double fork and a setsid'd daemon: none survives the command."""
    t.runbook("left", '''
step "s" { title = "Step", run = function(ctx)
  local r = sh.read { "sh", "-c", [[
sleep 300 </dev/null >/dev/null 2>&1 & echo $!
(sleep 301 </dev/null >/dev/null 2>&1 & echo $!) 
setsid sh -c 'sleep 302 </dev/null >/dev/null 2>&1 & echo $!' </dev/null
]] }
  ctx:note("pids " .. r.stdout:gsub("%s+", " "))
  local again = sh.read { "sh", "-c", "for p in " .. r.stdout:gsub("%s+", " ") ..
                          "; do kill -0 $p 2>/dev/null && echo alive $p; done; true" }
  ctx:note("after: " .. again.stdout:gsub("%s+", " "))
end },''')
    rc, out, err = t.run(["exec", "left", "--auto"])
    m = re.search(r"pids ([\d ]+)", out)
    if not m:
        fail("no pids in:\n" + out + err)
    pids = [int(x) for x in m.group(1).split()]
    kill_later(t, pids)
    expect_eq(len(pids), 3, "pids printed")
    expect_in("after:\n", out, "the note of the second command")
    expect_not_in("alive", out, "leftovers alive when the next command ran")
    expect_eq([p for p in pids if alive(p)], [], "leftovers alive after the run")


# ------------------------------------------------------------------ class 7: nothing runs unstoppable
# A string.find that backtracks for hours inside C, where no Lua hook runs.
STUCK_IN_C = '''
step "s" { title = "Step", run = function(ctx)
  ctx:note("start")
  local s = ("a"):rep(100000)
  ctx:note("found %s", tostring(s:find(("a.-"):rep(12) .. "X")))
end },'''


def cpu_ticks(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])      # utime + stime


def wait_inside_c(pid, timeout=20):
    """Returns once pid has burnt 0.3 s of CPU since the call: the few Lua instructions between the
    step's "start" and its string.find take microseconds, so it is then inside the find, where no
    hook runs (a signal sent earlier would be honoured by the hook, which is not what is tested)."""
    import select
    start, deadline = cpu_ticks(pid), time.monotonic() + timeout
    hz = os.sysconf("SC_CLK_TCK")
    while cpu_ticks(pid) - start < 0.3 * hz:
        if time.monotonic() > deadline:
            fail("the step did not get into its string.find within %ss" % timeout)
        select.select([], [], [], 0.05)   # poll interval, not a synchronisation


def wait_delivered(pid, sig, timeout=10):
    """Returns once sig is no longer pending for pid (its handler ran): two signals sent while
    the first is still pending are one (standard signals do not queue), and an operator's second
    Ctrl-C comes after the first was seen."""
    import select
    deadline = time.monotonic() + timeout
    while True:
        with open("/proc/%d/status" % pid) as f:
            st = dict(l.split(":", 1) for l in f.read().splitlines() if ":" in l)
        if not (int(st["ShdPnd"], 16) | int(st["SigPnd"], 16)) & (1 << (sig - 1)):
            return
        if time.monotonic() > deadline:
            fail("signal %d still pending after %ss" % (sig, timeout))
        select.select([], [], [], 0.01)   # poll interval, not a synchronisation


def last_record(t, tr):
    _, _, records = t.read_transcript(tr)
    return records[-1]


def expect_killed_record(t, tr, what):
    rec = last_record(t, tr)
    expect_eq((rec["type"], rec["outcome"], rec["exit"]), ("session_end", "killed", 5), "the last record")
    expect_in(what + " was not honoured within 1 s", rec["message"])
    rc, out, _ = t.run(["transcript", "verify", tr])
    expect_eq(rc, 1, "transcript verify: " + out)
    if not out.startswith("killed: ") or "complete" in out:
        fail("transcript verify of a killed session: " + out)
    expect_in("exit 5: " + what + " was not honoured within 1 s", out)


# table.move over 2^40 slots: no memory, no hook, a loop inside C.
MOVE_IN_C = STUCK_IN_C.replace('ctx:note("found %s", tostring(s:find(("a.-"):rep(12) .. "X")))',
                               'ctx:note("moved %d", #table.move({}, 1, 1 << 40, 1, {}))')


def test_sigterm_ends_a_call_stuck_inside_c(t):
    sigterm_stuck(t, STUCK_IN_C)


def test_sigterm_ends_a_table_move_inside_c(t):
    sigterm_stuck(t, MOVE_IN_C)


def sigterm_stuck(t, body):
    t.runbook("stuck", body)
    tr = t.path("s.cast")
    proc = t.spawn(["exec", "stuck", "--auto", "--transcript", tr])
    line = b""
    while b"start" not in line:
        line = proc.stdout.readline()
        if not line:
            fail("the run ended before its step started: " + proc.stderr.read().decode())
    wait_inside_c(proc.pid)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except Exception:
        fail("SIGTERM did not end a run stuck inside C within 15 s")
    took = time.monotonic() - t0
    if took > 8:
        fail("SIGTERM took %.1f s" % took)
    expect_eq(proc.returncode, 5, "exit code")
    expect_in("SIGTERM was not honoured within 1 s", proc.stderr.read().decode())
    expect_killed_record(t, tr, "SIGTERM")


def test_second_ctrl_c_ends_a_call_stuck_inside_c(t):
    t.runbook("stuck", STUCK_IN_C)
    tr = t.path("c.cast")
    p = t.pty(["exec", "stuck", "--auto", "--transcript", tr])
    p.expect(r"· start")
    wait_inside_c(p.proc.pid)
    p.ctrl_c()
    p.expect(r"\^C")
    wait_delivered(p.proc.pid, signal.SIGINT)
    p.ctrl_c()
    expect_eq(p.wait(timeout=15), 5, "exit code after two Ctrl-C")
    expect_in("a second Ctrl-C was not honoured within 1 s", p.text)
    expect_killed_record(t, tr, "a second Ctrl-C")


def test_loading_a_runbook_is_bounded(t):
    t.write("runbooks/loops.lua", "while true do pcall(function() while true do end end) end\n")
    t.write("runbooks/fine.lua", 'return runbook { name = "fine", summary = "ok", severity = "SEV3" }\n')
    for args in (["check", "runbooks/loops.lua"], ["show", "loops"], ["exec", "loops", "--auto"]):
        rc, out, err = t.run(args, timeout=40)
        expect_in("loops.lua: its top level did not finish", out + err, " ".join(args))
        expect_eq(rc, 1 if args[0] == "check" else 2, "exit code of " + " ".join(args))
    rc, out, err = t.run(["list"], timeout=40)
    expect_eq(rc, 0, "list")
    expect_in("fine", out)
    expect_in("invalid: loops.lua: its top level did not finish", out)


def test_a_step_that_jumps_to_itself_is_bounded(t):
    t.runbook("self", '''
step "a" { title = "A", run = function(ctx) ctx:note("again") return ctx:jump("a") end },''')
    tr = t.path("self.cast")
    rc, out, err = t.run(["exec", "self", "--auto", "--transcript", tr], timeout=40)
    expect_eq(rc, 1, "exit code")
    expect_in("stopped: step 'a' came round 100 times without an operator", out)
    rec = last_record(t, tr)
    expect_eq((rec["type"], rec["outcome"]), ("session_end", "failed"), "the last record")
    if os.path.getsize(tr) > 1 << 20:
        fail("the transcript grew to %d bytes" % os.path.getsize(tr))


def test_only_regular_files_are_loaded(t):
    t.runbook("ok", '')
    os.makedirs(t.path("adir.lua"))
    fifo = t.mkfifo("fifo.lua")
    cases = [(["exec", "/dev/zero"], "cannot read /dev/zero: it is a device"),
             (["exec", fifo], "cannot read %s: it is a FIFO" % fifo),
             (["exec", "./adir.lua"], "cannot read ./adir.lua: it is a directory"),
             (["check", fifo], "cannot read %s: it is a FIFO" % fifo),
             (["show", "./adir.lua"], "cannot read ./adir.lua: it is a directory"),
             (["transcript", "verify", t.dir], "cannot read %s: it is a directory" % t.dir),
             (["transcript", "show", fifo], "cannot read %s: it is a FIFO" % fifo),
             (["timeline", "/dev/zero"], "cannot read /dev/zero: it is a device"),
             (["exec", "--resume", fifo], "cannot read %s: it is a FIFO" % fifo)]
    for args, want in cases:
        rc, out, err = t.run(args, timeout=20)
        expect_in(want, out + err, " ".join(args))
        expect_not_in("traceback", out + err, " ".join(args))
        expect_eq(len((out + err).strip().splitlines()), 1, "one line from " + " ".join(args) + ": " + out + err)
        expect_eq(rc, 1 if args[0] in ("check", "timeline") else 2, "exit code of " + " ".join(args))


def test_memory_limit_ends_the_run_cleanly(t):
    t.runbook("big", '''
step "a" { title = "A", run = function(ctx) ctx:note(string.rep("x", 1 << 30)) end },
step "b" { title = "B", run = function(ctx) ctx:note("b ran") end },''')
    tr = t.path("big.cast")
    rc, out, err = t.run(["exec", "big", "--auto", "--transcript", tr], timeout=60)
    expect_eq(rc, 1, "exit code: " + err)
    expect_in("needed more memory than its limit (1.0 GiB)", out)
    expect_not_in("b ran", out)
    rec = last_record(t, tr)
    expect_eq((rec["type"], rec["outcome"], rec["message"]), ("session_end", "failed", "the memory limit was reached"),
              "the last record")
    # A lower limit, from the environment, against a table that grows: the same clean end.
    t.runbook("grow", '''
step "a" { title = "A", run = function(ctx) local t = {} while true do t[#t + 1] = ("y"):rep(1000) .. #t end end },''')
    rc, out, err = t.run(["exec", "grow", "--auto"], env={"RUNBOOK_MEMORY_LIMIT": "64M"}, timeout=60)
    expect_eq(rc, 1, "exit code: " + err)
    expect_in("needed more memory than its limit (64.0 MiB)", out)
    # At the REPL: the session ends, its transcript closed.
    rc, out, err = t.run(["repl", "--transcript", t.path("r.cast")], env={"RUNBOOK_MEMORY_LIMIT": "64M"}, timeout=60,
                         stdin='local t = {} while true do t[#t + 1] = ("x"):rep(1000) .. #t end\nprint("still here")\n')
    expect_in("the memory limit (64.0 MiB) was reached: the session ends", out)
    expect_not_in("still here", out)
    expect_eq(last_record(t, t.path("r.cast"))["type"], "session_end", "the REPL's last record")
    rc, out, err = t.run(["exec", "grow", "--auto", "--memory-limit", "lots"])
    expect_eq(rc, 2, "a bad --memory-limit")
    expect_in("--memory-limit: 'lots' is not a size", err)


def test_a_huge_note_is_cut_not_fatal(t):
    t.runbook("note", '''
step "a" { title = "A", run = function(ctx) ctx:note(string.rep("x", 1 << 28)) ctx:note("after") end },''')
    tr = t.path("n.cast")
    rc, out, err = t.run(["exec", "note", "--auto", "--transcript", tr], env={"RUNBOOK_MEMORY_LIMIT": "2G"}, timeout=90)
    expect_eq(rc, 0, "exit code: " + err[-2000:])
    expect_in(" MiB more)", out)
    expect_in("after", out)
    if os.path.getsize(tr) > 4 << 20:
        fail("the transcript holds the whole note: %d bytes" % os.path.getsize(tr))
test_a_huge_note_is_cut_not_fatal.timeout = 120


# ------------------------------------------------------------------ class 8: one clear line, not a traceback
BAD_TOSTRING = 'setmetatable({}, { __tostring = function() error("tostring exploded") end })'


def no_traceback(text, what):
    expect_not_in("stack traceback", text, what)
    expect_not_in("engine.lua", text, what)


def test_an_error_whose_tostring_fails(t):
    t.runbook("bad", '''
step "a" { title = "A", run = function(ctx) error(%s) end },''' % BAD_TOSTRING)
    tr = t.path("bad.cast")
    rc, out, err = t.run(["exec", "bad", "--auto", "--transcript", tr])
    no_traceback(out + err, "exec")
    expect_eq(rc, 1, "exit code: " + out + err)
    expect_in("! (a table was raised as an error, and its __tostring failed", out)
    expect_eq(last_record(t, tr)["outcome"], "failed", "the last record")
    # At the top level of the file, and at the REPL.
    t.write("runbooks/top.lua", "error(%s)\n" % BAD_TOSTRING)
    rc, out, err = t.run(["check", "runbooks/top.lua"])
    no_traceback(out + err, "check")
    expect_eq(rc, 1, "check exit code")
    expect_in("FAIL  top.lua: (a table was raised as an error, and its __tostring failed", out)
    rc, out, err = t.run(["repl"], stdin="error(%s)\nctx = 1\n" % BAD_TOSTRING)
    no_traceback(out + err, "repl")
    expect_in("(a table was raised as an error, and its __tostring failed", out + err)


def test_a_deeply_nested_value_at_the_repl(t):
    rc, out, err = t.run(["repl"], stdin="local t = {} for i = 1, 100000 do t = { t } end return t\nreturn 42\n")
    no_traceback(out + err, "repl")
    expect_not_in("internal error", out + err)
    expect_in("42", out)
    expect_in("{ … }", out)


def test_a_format_error_in_a_note_names_the_runbooks_line(t):
    t.runbook("fmt", '''
step "a" { title = "A", run = function(ctx)
  ctx:note("%%d items", "many")
end },
step "b" { title = "B", run = function(ctx) ctx:finding(%s) end },''' % BAD_TOSTRING)
    rc, out, err = t.run(["exec", "fmt", "--auto"])
    no_traceback(out + err, "exec")
    expect_in("fmt.lua:7: ctx:note: bad argument #2 to ctx:note (number expected, got string)", out)
    rc, out, err = t.run(["exec", "fmt", "--auto", "--start-at", "b"])
    no_traceback(out + err, "exec")
    expect_in("fmt.lua:9: ctx:finding: ", out)
    expect_in("tostring exploded", out)


def rechain(lines):
    """Recomputes the hash chain and the seal of transcript lines (lists of text), as the writer
    does (interp/transcript.h): the file then verifies, whatever its records say."""
    import hashlib
    import json
    out = [lines[0]]
    head = hashlib.sha256(lines[0].encode()).hexdigest()
    for line in lines[1:]:
        ev = json.loads(line)
        if ev[1] == "a":
            rec = json.loads(ev[2])
            rec.pop("seal", None)
            rec["prev"] = head
            body = json.dumps(rec, separators=(",", ":"), ensure_ascii=False)
            if rec["type"] == "session_end":
                seal = hashlib.sha256(body.encode()).hexdigest()
                body = body[:-1] + ',"seal":"%s"}' % seal
            ev[2] = body
            line = json.dumps(ev, separators=(",", ":"), ensure_ascii=False)
        out.append(line)
        head = hashlib.sha256((head + line).encode()).hexdigest()
    return out


def test_a_transcript_with_wrongly_typed_fields(t):
    import json
    t.runbook("typed", '''
step "a" { title = "A", run = function(ctx)
  ctx:note("a note")
  sh.read { "true" }
  sh.action { "true", summary = "nothing" }
end },''')
    tr = t.path("typed.cast")
    rc, out, err = t.run(["exec", "typed", "--auto", "--yes", "--transcript", tr])
    expect_eq(rc, 0, "the run: " + out + err)
    with open(tr) as f:
        lines = f.read().rstrip("\n").split("\n")
    header = json.loads(lines[0])
    header["runbook"]["name"] = {"a": 1}
    header["runbook"]["user"] = 42
    lines[0] = json.dumps(header, separators=(",", ":"))
    for i, line in enumerate(lines[1:], 1):
        ev = json.loads(line)
        if ev[1] != "a":
            continue
        rec = json.loads(ev[2])
        for k in ("text", "summary", "target", "title", "outcome", "primitive", "answer", "ts", "input"):
            if k in rec:
                rec[k] = [1, {"x": None}] if k in ("text", "ts", "outcome") else 7
        rec["duration_ms"] = "slow"
        ev[2] = json.dumps(rec, separators=(",", ":"))
        lines[i] = json.dumps(ev, separators=(",", ":"))
    bad = t.write("bad.cast", "\n".join(rechain(lines)) + "\n")
    rc, out, err = t.run(["transcript", "verify", bad])
    expect_eq(rc, 0, "the edited transcript verifies: " + out + err)
    for args in (["transcript", "show", bad], ["timeline", bad]):
        rc, out, err = t.run(args)
        no_traceback(out + err, " ".join(args))
        expect_not_in("internal error", out + err, " ".join(args))
        if rc not in (0, 1):
            fail("%s: exit %d\n%s%s" % (" ".join(args), rc, out, err))


def test_an_action_may_leave_a_daemon_only_when_it_says_so(t):
    """leave_running = true (a restart that starts the daemon itself) is shown at the gate, and what
    the action starts then outlives it; without it, it does not."""
    t.runbook("daemon", '''
step "a" { title = "A", run = function(ctx)
  local kept = must(sh.action { "sh", "-c", "sleep 300 </dev/null >/dev/null 2>&1 & echo $!",
                                summary = "start a daemon", leave_running = true })
  local gone = must(sh.action { "sh", "-c", "sleep 301 </dev/null >/dev/null 2>&1 & echo $!",
                                summary = "start another" })
  ctx:note("pids %s %s", kept.stdout:match("%d+"), gone.stdout:match("%d+"))
end },''')
    rc, out, err = t.run(["exec", "daemon", "--auto", "--yes"])
    expect_eq(rc, 0, "exit code: " + out + err)
    m = re.search(r"pids (\d+) (\d+)", out)
    kept, gone = int(m.group(1)), int(m.group(2))
    kill_later(t, [kept, gone])
    expect_in("it may leave processes running after it ends (leave_running = true)", out)
    expect_eq((alive(kept), alive(gone)), (True, False), "(the kept daemon, the other) alive")


def find_process(t, needle, timeout=10):
    """The pid of the process working in the test's directory whose command line holds needle."""
    import select
    deadline = time.monotonic() + timeout
    while True:
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                cmd = open("/proc/%s/cmdline" % entry, "rb").read().replace(b"\0", b" ").decode()
                cwd = os.readlink("/proc/%s/cwd" % entry)
            except OSError:
                continue
            if needle in cmd and cwd == t.dir and not cmd.startswith("sh "):
                return int(entry)
        if time.monotonic() > deadline:
            fail("no process %r" % needle)
        select.select([], [], [], 0.02)   # poll interval, not a synchronisation


def state_of(pid):
    with open("/proc/%d/stat" % pid) as f:
        return f.read().rsplit(")", 1)[1].split()[0]


def test_a_command_still_running_cannot_answer_the_gate(t):
    """Inside parallel(), another task's command is running while the gate asks: it is stopped
    until the operator has answered (as root, TIOCSTI types into any terminal)."""
    t.write("inject.py", INJECTOR)
    fifo, result = t.mkfifo("go"), t.mkfifo("result")
    t.runbook("inject", '''
step "s" { title = "Step", run = function(ctx)
  parallel {
    function() return sh.read { "python3", "inject.py", "go", "result", timeout = 60 } end,
    function() return must(sh.action { "touch", "pwned", summary = "create the file pwned" }) end,
  }
end },''')
    tr = t.path("i.cast")
    p = t.pty(["exec", "inject", "--auto", "--transcript", tr])
    p.expect(ASK)
    pid = find_process(t, "inject.py")
    if state_of(pid) != "T":
        t.release(fifo, b"%d\n" % p.proc.pid)
        how = read_fifo(result)
        p.expect(r"create the file pwned|✔|·|exit", timeout=10)
        p.wait()
        fail("a command running in another task was not stopped while the gate asked (%s); the action %s"
             % (how, "RAN: a command answered the gate" if os.path.exists(t.path("pwned")) else "did not run"))
    the_operator_declines(t, p, tr)


# ------------------------------------------------------------------ class 7: a regex that backtracks
# glibc's regexec is quadratic on this pattern and a long run of "a" (no back-reference needed):
# 300 000 of them take minutes, inside C, where no hook, signal or deadline reaches.
BACKTRACKS = "(a|aa)*b"
LONG_LINE = "a" * 300000 + "\n"

GREP_DEADLINE = '''
step "s" { title = "Step", run = function(ctx)
  local sys = require "sys"
  for _, f in ipairs { "long.log", "later.log" } do
    local r, err, kind = sys.grep(f, %s, { timeout = "1s" })
    if r then
      ctx:note("%%s: partial=%%s lines=%%d count=%%d", f, tostring(r.partial), r.lines, r.count)
    else
      ctx:note("%%s: %%s|%%s", f, tostring(kind), tostring(err))
    end
  end
  ctx:note("fine: %%d", must(sys.grep("fine.log", "b$")).count)
end },''' % repr(BACKTRACKS).replace("'", '"')


def helpers_of(pid):
    """The children of pid (from /proc/PID/task/*/children)."""
    kids = []
    try:
        for tid in os.listdir("/proc/%d/task" % pid):
            with open("/proc/%d/task/%s/children" % (pid, tid)) as f:
                kids += [int(x) for x in f.read().split()]
    except OSError:
        pass
    return kids


def test_a_backtracking_grep_returns_at_its_deadline(t):
    t.write("long.log", LONG_LINE)
    t.write("later.log", "aab\n" * 5000 + LONG_LINE + "ab\n")
    t.write("fine.log", "ab\nb\nc\n")
    t.runbook("grep", GREP_DEADLINE)
    start = time.monotonic()
    rc, out, err = t.run(["exec", "grep", "--auto"], timeout=40)
    took = time.monotonic() - start
    expect_eq(rc, 0, "exit code: " + out + err)
    # One long line: nothing seen to report, a timeout naming the likely cause.
    expect_in("long.log: timeout|sys.grep long.log: timed out matching its first line (a regex that "
              "backtracks on a long line? try a simpler one)", out)
    # Stuck after 5000 lines: what was seen before, partial.
    m = re.search(r"later\.log: partial=true lines=(\d+) count=(\d+)", out)
    if not m:
        fail("the scan stuck on line 5001 of later.log did not return what it saw:\n" + out)
    expect_eq((m.group(1), m.group(2)), ("5000", "5000"), "lines and matches before the long line")
    expect_in("fine: 2", out, "a grep after the ones stopped")
    # Two deadlines of 1 s, and the start: the stuck matchers were killed at their deadline, not waited for.
    if took > 12:
        fail("two greps with a 1 s deadline took %.1f s" % took)


GREP_FOREVER = '''
step "s" { title = "Step", run = function(ctx)
  local sys = require "sys"
  ctx:note("start")
  local r, err, kind = sys.grep("long.log", %s, { timeout = 0 })
  ctx:note("GREP ENDED %%s", tostring(kind))
end },
step "next" { title = "Next", run = function(ctx) ctx:note("next ran") end },''' % repr(BACKTRACKS).replace("'", '"')


def cpu_ticks_with_children(pid):
    total = cpu_ticks(pid)
    for kid in helpers_of(pid):
        try:
            total += cpu_ticks(kid)
        except OSError:
            pass
    return total


def expect_ctrl_c_stops_the_matcher(t, runbook, what):
    """Runs runbook (its step notes "start" then matches long.log's line): Ctrl-C once the regex
    burns CPU brings the menu back within 500 ms, the matcher process gone."""
    import select
    t.write("long.log", LONG_LINE)
    t.runbook("grep", runbook)
    p = t.pty(["exec", "grep", "--auto"])
    p.expect(r"· start")
    # Inside regexec (in runbook, or in its matcher): 0.3 s of CPU burnt since the note.
    begin, deadline = cpu_ticks_with_children(p.proc.pid), time.monotonic() + 20
    while cpu_ticks_with_children(p.proc.pid) - begin < 0.3 * os.sysconf("SC_CLK_TCK"):
        if time.monotonic() > deadline:
            fail("the %s did not get into its regex within 20 s" % what)
        select.select([], [], [], 0.05)   # poll interval, not a synchronisation
    kids = helpers_of(p.proc.pid)
    t0 = time.monotonic()
    p.ctrl_c()
    p.expect(r"interrupted", timeout=10)
    p.expect(r"Enter: retry · s: skip · r: repl · q: quit > ", timeout=10)
    took = time.monotonic() - t0
    if took > 0.5:
        fail("back at the menu %.2f s after Ctrl-C" % took)
    for kid in kids:
        if os.path.exists("/proc/%d" % kid):
            fail("the matcher (pid %d) is still there after Ctrl-C" % kid)
    p.sendline("s")
    p.expect(r"· next ran")
    expect_eq(p.wait(), 0, "exit code")
    expect_not_in("GREP ENDED", p.text)


def test_ctrl_c_stops_a_backtracking_grep_at_once(t):
    """Without a deadline (timeout = 0), Ctrl-C alone ends the grep: back at the menu at once."""
    expect_ctrl_c_stops_the_matcher(t, GREP_FOREVER, "grep")


# sys.filter matches lines read elsewhere (logs.read's grep = on journalctl/kubectl/compose output).
FILTER_DEADLINE = '''
step "s" { title = "Step", run = function(ctx)
  local sys = require "sys"
  local long = string.rep("a", 300000)
  local r, err, kind = sys.filter({ "ab", long, "b" }, %s, { timeout = "1s" })
  ctx:note("long: %%s|%%s|%%s", tostring(r), tostring(kind), tostring(err))
  ctx:note("fine: %%s", table.concat(must(sys.filter({ "x", "a\\nb", 7, "ab", "" }, "b$")), ","))
  ctx:note("icase: %%s", table.concat(must(sys.filter({ "AB", "c" }, "ab", { icase = true })), ","))
end },''' % repr(BACKTRACKS).replace("'", '"')


def test_a_backtracking_filter_returns_at_its_deadline(t):
    """sys.filter's regex runs in the grep helper: at its deadline it returns nil, err, "timeout";
    the texts reach it one per record (a text's own newline does not shift the indices after it)."""
    t.runbook("filter", FILTER_DEADLINE)
    start = time.monotonic()
    rc, out, err = t.run(["exec", "filter", "--auto"], timeout=40)
    took = time.monotonic() - start
    expect_eq(rc, 0, "exit code: " + out + err)
    expect_in("long: nil|timeout|sys.filter: timed out on text 2 of 3 (a regex that backtracks on a long "
              "line? try a simpler one)", out)
    expect_in("fine: 2,4", out, "indices of the matching strings (a newline inside one, a number skipped)")
    expect_in("icase: 1", out)
    if took > 8:
        fail("a filter with a 1 s deadline took %.1f s" % took)


FILTER_FOREVER = '''
step "s" { title = "Step", run = function(ctx)
  local sys = require "sys"
  ctx:note("start")
  local r, err, kind = sys.filter({ string.rep("a", 300000) }, %s)
  ctx:note("GREP ENDED %%s", tostring(kind))
end },
step "next" { title = "Next", run = function(ctx) ctx:note("next ran") end },''' % repr(BACKTRACKS).replace("'", '"')


def test_ctrl_c_stops_a_backtracking_filter_at_once(t):
    """Within sys.filter's default deadline, Ctrl-C ends its matching: back at the menu at once."""
    expect_ctrl_c_stops_the_matcher(t, FILTER_FOREVER, "filter")


# ------------------------------------------------------------------ class 4: the gate's own lines
LAYOUT = r'''
step "s" { title = "Step", run = function(ctx)
  sh.action { "python3", "-c", "import sys; open('argv.txt', 'w').write(repr(sys.argv[1:]))",
              "a\nb", "tab\there", "v\vf\f 'q' \\ \27[2K", "bidi\u{202e}c1\u{9b}\255",
              summary = "harmless\n  command: echo harmless", target = "prod\n  target  staging",
              blast = "none\n  impact\tnone" }
end },'''


def test_layout_characters_cannot_forge_the_gates_lines(t):
    """A newline (tab, VT, FF) in a summary, target, impact or argv element is shown as \\n (...):
    the gate's block has no line it did not write, and the command shown is one line that, read
    back by bash, is exactly the argv that ran."""
    import subprocess
    t.runbook("layout", LAYOUT)
    p = t.pty(["exec", "layout", "--auto"])
    p.expect(ASK)
    p.sendline("yes")
    expect_eq(p.wait(), 0, "exit code")
    lines = p.text.split("\n")
    for forged in ("  command: echo harmless", "  target  staging", "  impact\tnone", "b", "here"):
        if any(l.rstrip("\r") == forged for l in lines):
            fail("a line of its own was forged: %r\n%s" % (forged, p.text))
    expect_in(r"ACTION  harmless\n  command: echo harmless", p.text)
    expect_in(r"target  prod\n  target  staging", p.text)
    expect_in(r"impact  none\n  impact\tnone", p.text)
    shown = [l for l in lines if l.lstrip().startswith("$ python3 ")]
    expect_eq(len(shown), 1, "the command's line:\n" + p.text)
    command = shown[0].lstrip()[2:].rstrip("\r")
    expect_in(r"$'a\nb' $'tab\there' $'v\x0bf\x0c \'q\' \\ \x1b[2K' $'bidi\xe2\x80\xaec1\xc2\x9b\xff'", command)
    with open(t.path("argv.txt")) as f:
        ran = f.read()
    os.makedirs(t.path("again"))
    subprocess.run(["bash", "-c", command], cwd=t.path("again"), check=True, timeout=20)
    with open(t.path("again", "argv.txt")) as f:
        expect_eq(f.read(), ran, "the argv of the command shown, read back by bash")


def test_sigterm_stops_a_backtracking_grep(t):
    """SIGTERM is honoured like Ctrl-C: the run aborts and closes its transcript itself (not the
    watchdog's "killed" for a call stuck inside C), and the matcher is gone."""
    import select
    t.write("long.log", LONG_LINE)
    t.runbook("grep", GREP_FOREVER)
    tr = t.path("g.cast")
    proc = t.spawn(["exec", "grep", "--auto", "--transcript", tr])
    line = b""
    while b"start" not in line:
        line = proc.stdout.readline()
        if not line:
            fail("the run ended before its step started: " + proc.stderr.read().decode())
    begin, deadline = cpu_ticks_with_children(proc.pid), time.monotonic() + 20
    while cpu_ticks_with_children(proc.pid) - begin < 0.3 * os.sysconf("SC_CLK_TCK"):
        if time.monotonic() > deadline:
            fail("the grep did not get into its regex within 20 s")
        select.select([], [], [], 0.05)   # poll interval, not a synchronisation
    kids = helpers_of(proc.pid)
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except Exception:
        fail("SIGTERM did not end a run in a backtracking grep within 15 s")
    rec = last_record(t, tr)
    expect_eq((rec["type"], rec["outcome"]), ("session_end", "aborted"), "the last record")
    rc, out, _ = t.run(["transcript", "verify", tr])
    expect_eq(rc, 0, "transcript verify: " + out)
    for kid in kids:
        if os.path.exists("/proc/%d" % kid):
            fail("the matcher (pid %d) is still there after SIGTERM" % kid)
