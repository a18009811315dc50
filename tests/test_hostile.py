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
        expect_in(where + visible, p.text, "%s shown visibly after %r" % (kind, where))
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
    p.sendline("n")
    p.expect(r"Declined\. ")
    p.sendline("s")
    p.wait()
    if os.path.exists(t.path("pwned")):
        fail("the action ran without the operator's yes")
    _, _, records = t.read_transcript(tr)
    expect_eq([(r["answer"], r["how"]) for r in records if r["type"] == "confirm"],
              [("declined", "typed no")], "confirm records")


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
