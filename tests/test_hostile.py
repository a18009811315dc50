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
