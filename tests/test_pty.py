"""Interactive runs through a real pseudo-terminal: the step menu, the action gate, Ctrl-C,
typed-ahead answers; and the same runbooks without a terminal."""
import os
import re
import termios

from run import expect_eq, expect_in, expect_not_in, expect_rc, fail

MENU = r"Enter: run · s: skip · j: jump · r: repl · q: quit > "
ASK = r"Type yes to run it, or n to skip: "
ASK_FULL = r"Type yes in full to confirm, or n to skip: "
DECLINED_MENU = r"Declined\. s: skip this step · a: ask again · r: repl · q: abort the run \[s\]: "


def records_of(t, tr):
    _, _, records = t.read_transcript(tr)
    return records


def confirms(records):
    """(answer, how) of each confirm record."""
    return [(r["answer"], r["how"]) for r in records if r["type"] == "confirm"]


def verify_complete(t, tr):
    rc, out, err = t.run(["transcript", "verify", tr])
    if rc != 0 or not out.startswith("complete: "):
        fail("transcript %s does not verify complete: rc=%s\n%s%s" % (tr, rc, out, err))
    return out


THREE = '''
step "one" { title = "Step one", run = function(ctx) ctx:note("one ran") end },
step "two" { title = "Step two", run = function(ctx) ctx:note("two ran") end },
step "three" { title = "Step three", run = function(ctx) ctx:note("three ran") end },'''


def test_menu_enter_skip_quit(t):
    t.runbook("menu", THREE)
    tr = t.path("menu.cast")
    p = t.pty(["exec", "menu", "--transcript", tr])
    p.expect(r"\[1/3\] Step one\n")
    p.expect(MENU)
    p.sendline("")
    p.expect(r"· one ran\n")
    p.expect(r"\[2/3\] Step two\n")
    p.expect(MENU)
    p.sendline("s")
    p.expect(r"\[3/3\] Step three\n")
    p.expect(MENU)
    p.sendline("q")
    expect_eq(p.wait(), 5, "exit code after q")
    expect_not_in("two ran", p.text)
    expect_not_in("three ran", p.text)
    expect_in("! aborted by the operator", p.text)
    expect_in("aborted · 1 ok · 1 skipped", p.text)
    recs = records_of(t, tr)
    ends = [(r.get("step"), r["outcome"]) for r in recs if r["type"] == "step_end"]
    expect_eq(ends, [("one", "ok"), ("two", "skipped")], "step_end records")
    expect_eq((recs[-1]["exit"], recs[-1]["outcome"]), (5, "aborted"), "session_end")
    verify_complete(t, tr)


def test_menu_unknown_answer_and_jump(t):
    t.runbook("menu2", THREE)
    p = t.pty(["exec", "menu2", "--transcript", t.path("m.cast")])
    p.expect(MENU)
    p.sendline("x")
    p.expect(r"x\? Enter runs the step")
    p.expect(MENU)
    p.sendline("j")
    p.expect(r"steps: 1 one · 2 two · 3 three")
    p.expect(r"jump to \(id or number\): ")
    p.sendline("three")
    p.expect(r"\[3/3\] Step three\n")
    p.expect(MENU)
    p.sendline("")
    p.expect(r"· three ran")
    expect_eq(p.wait(), 0, "exit code")
    expect_not_in("one ran", p.text)
    expect_not_in("two ran", p.text)


def action_runbook(t, name, target_file, irreversible=False):
    extra = ', irreversible = true, target = "%s"' % target_file if irreversible else ""
    return t.runbook(name, '''
step "act" { title = "Create the file", run = function(ctx)
  ctx:note("about to act")
  must(sh.action { "touch", "%s", summary = "create the marker file"%s })
  ctx:ok("created")
end },
step "after" { title = "Afterwards", run = function(ctx) ctx:note("after ran") end },''' % (target_file, extra))


def start_action(t, name, cast, irreversible=False):
    """Runs the action runbook name (its action creates t.path("marker")) with --auto on the pty;
    returns (the pty, the marker's path, the transcript's path)."""
    f = t.path("marker")
    action_runbook(t, name, f, irreversible)
    tr = t.path(cast)
    return t.pty(["exec", name, "--auto", "--transcript", tr]), f, tr


def decline(p, answer="n"):
    """Answers the action's question with answer, a no: the declined menu follows."""
    p.expect(ASK)
    p.sendline(answer)
    p.expect(DECLINED_MENU)


def test_action_y_is_not_yes(t):
    p, f, tr = start_action(t, "act", "a.cast")
    p.expect(r"ACTION  create the marker file\n")
    p.expect(r"\$ touch " + re.escape(f))
    p.expect(ASK)
    p.sendline("y")
    p.expect(ASK_FULL)
    if os.path.exists(f):
        fail("'y' confirmed the action")
    p.sendline("Yes")
    p.expect(ASK_FULL)
    if os.path.exists(f):
        fail("'Yes' confirmed the action")
    p.sendline("yes")
    p.expect(r"✔ created\n")
    p.expect(r"· after ran\n")
    expect_eq(p.wait(), 0, "exit code")
    if not os.path.exists(f):
        fail("the action did not run after 'yes'")
    recs = records_of(t, tr)
    types = [r["type"] for r in recs]
    i_confirm = types.index("confirm")
    expect_eq(recs[i_confirm]["answer"], "yes", "confirm answer")
    expect_eq(recs[i_confirm]["how"], "typed yes", "confirm how")
    if recs[i_confirm]["tty"] in ("", None):
        fail("the confirm record does not name the tty")
    # plan, then confirm, then the action, then its result: in that order.
    expect_eq(types[types.index("plan"):types.index("plan") + 4], ["plan", "confirm", "action_start", "action_result"],
              "record order")
    expect_eq(recs[types.index("action_result")]["outcome"], "exit 0", "action_result outcome")
    expect_eq(recs[types.index("action_result")]["target"], recs[types.index("action_start")]["target"],
              "the result names the action, as its start does")
    verify_complete(t, tr)


def test_irreversible_needs_target(t):
    p, f, tr = start_action(t, "irr", "i.cast", irreversible=True)
    p.expect(r"This cannot be undone\.")
    p.expect(r"Type the target \(" + re.escape(f) + r"\) to confirm, or n to skip: ")
    p.sendline("yes")
    p.expect(r"That is not the target\. Type " + re.escape(f) + r" exactly to confirm, or n to skip: ")
    if os.path.exists(f):
        fail("'yes' confirmed an irreversible action")
    p.sendline(f + "x")
    p.expect(r"That is not the target\.")
    p.sendline(f)
    p.expect(r"✔ created\n")
    expect_eq(p.wait(), 0, "exit code")
    if not os.path.exists(f):
        fail("typing the target back did not run the action")
    recs = records_of(t, tr)
    expect_eq(confirms(recs), [("yes", "typed the target")], "confirm records")
    plan = [r for r in recs if r["type"] == "plan"][0]
    expect_eq((plan["irreversible"], plan["target"]), (True, f), "plan record")


def test_decline_continues(t):
    p, f, tr = start_action(t, "dec", "d.cast")
    decline(p)
    p.sendline("")
    p.expect(r"· step skipped: the action was declined\n")
    p.expect(r"· after ran\n")
    expect_eq(p.wait(), 4, "exit code after a decline")
    expect_not_in("✔ created", p.text)
    if os.path.exists(f):
        fail("a declined action ran")
    expect_in("declined · 1 ok · 1 declined", p.text)
    recs = records_of(t, tr)
    expect_eq(confirms(recs), [("declined", "typed no")], "confirm records")
    expect_not_in("action_start", [r["type"] for r in recs])
    ends = [(r["step"], r["outcome"]) for r in recs if r["type"] == "step_end"]
    expect_eq(ends, [("act", "declined"), ("after", "ok")], "step_end records")
    expect_eq(recs[-1]["counts"].get("actions_declined"), 1, "session_end counts")
    verify_complete(t, tr)


def test_decline_then_ask_again(t):
    p, f, _ = start_action(t, "again", "g.cast")
    decline(p, "no")
    p.sendline("a")
    p.expect(ASK)
    p.sendline("yes")
    p.expect(r"✔ created\n")
    expect_eq(p.wait(), 0, "exit code")
    if not os.path.exists(f):
        fail("the action did not run after ask again + yes")


def test_decline_then_abort(t):
    p, f, tr = start_action(t, "abort", "q.cast")
    decline(p)
    p.sendline("q")
    expect_eq(p.wait(), 5, "exit code after abort at the action")
    expect_not_in("after ran", p.text)
    if os.path.exists(f):
        fail("the action ran")
    verify_complete(t, tr)


def test_ctrl_c_at_action_prompt(t):
    p, f, tr = start_action(t, "intr", "c.cast")
    before = p.termios_now()
    p.expect(ASK)
    p.ctrl_c()
    p.expect(r"· step skipped: the action was declined\n")
    p.expect(r"· after ran\n")
    expect_eq(p.wait(), 4, "exit code after Ctrl-C at the action prompt")
    if os.path.exists(f):
        fail("the action ran after Ctrl-C")
    after = p.termios_now()
    if after != before:
        fail("terminal settings changed: before %r, after %r" % (before, after))
    lflag = after[3]
    if not (lflag & termios.ICANON and lflag & termios.ECHO and lflag & termios.ISIG):
        fail("terminal left without ICANON/ECHO/ISIG: lflag=%#x" % lflag)
    recs = records_of(t, tr)
    expect_eq(confirms(recs), [("declined", "interrupted")], "confirm records")
    verify_complete(t, tr)


def test_ctrl_c_restores_terminal_shell(t):
    # The shell's view: stty -g before and after the run are the same.
    f = t.path("marker")
    action_runbook(t, "intr2", f)
    script = 'trap : INT; stty -g; "%s" exec intr2 --auto --transcript "%s"; echo "rc=$?"; stty -g' % (t.binary, t.path("s.cast"))
    p = t.pty(["sh", "-c", script], binary=False)
    first = p.expect(r"^([0-9a-f:]+)\n").group(1)
    p.expect(ASK)
    p.ctrl_c()
    p.expect(r"rc=4\n")
    last = p.expect(r"([0-9a-f:]+)\n").group(1)
    expect_eq(p.wait(), 0, "shell exit")
    expect_eq(last, first, "stty -g after the run")


def test_ctrl_c_stops_command_then_menu(t):
    t.runbook("slowcmd", '''
step "slow" { title = "Slow", run = function(ctx)
  ctx:note("sleeping")
  must(sh.read { "sleep", "60" })
  ctx:note("SLEEP FINISHED")
end },
step "next" { title = "Next", run = function(ctx) ctx:note("next ran") end },''')
    tr = t.path("s.cast")
    p = t.pty(["exec", "slowcmd", "--auto", "--transcript", tr])
    p.expect(r"· sleeping\n")
    # The command is started right after the note; Ctrl-C stops whatever is in progress.
    p.ctrl_c()
    p.expect(r"interrupted")
    p.expect(r"Enter: retry · s: skip · r: repl · q: quit > ")
    p.sendline("s")
    p.expect(r"· next ran\n")
    expect_eq(p.wait(), 0, "exit code")
    expect_not_in("SLEEP FINISHED", p.text)
    recs = records_of(t, tr)
    ends = [(r["step"], r["outcome"]) for r in recs if r["type"] == "step_end"]
    expect_eq(ends, [("slow", "interrupted"), ("next", "ok")], "step_end records")
    verify_complete(t, tr)


def test_ctrl_c_at_menu_ends_run(t):
    t.runbook("menuint", THREE)
    tr = t.path("mi.cast")
    p = t.pty(["exec", "menuint", "--transcript", tr])
    p.expect(MENU)
    p.ctrl_c()
    expect_eq(p.wait(), 5, "exit code after Ctrl-C at the menu")
    expect_not_in("one ran", p.text)
    out = verify_complete(t, tr)
    expect_in("exit 5", out)


def test_typeahead_yes_does_not_confirm(t):
    f = t.path("marker")
    fifo = t.mkfifo("gate")
    tr = t.path("ta.cast")
    t.runbook("typeahead", '''
step "act" { title = "Act", run = function(ctx)
  ctx:note("blocked on the fifo")
  local r = must(sh.read { "cat", "%s", timeout = 30 })
  ctx:note("released")
  must(sh.action { "touch", "%s", summary = "create the marker file" })
  ctx:ok("created")
end },''' % (fifo, f))
    p = t.pty(["exec", "typeahead", "--auto", "--transcript", tr])
    p.expect(r"· blocked on the fifo\n")
    # Typed while the step is still busy: it must not answer the question asked later.
    p.send("yes\n")
    p.expect(r"yes\n")           # the tty has taken it in (its echo), before the prompt exists
    if os.path.exists(f):
        fail("action ran before its question")
    t.release(fifo, b"go\n")
    p.expect(r"· released\n")
    p.expect(ASK)
    # The typed-ahead "yes" was discarded: the question is waiting and nothing ran.
    if os.path.exists(f):
        fail("the typed-ahead 'yes' confirmed the action")
    p.sendline("n")
    p.expect(DECLINED_MENU)
    p.sendline("s")
    expect_eq(p.wait(), 4, "exit code")
    if os.path.exists(f):
        fail("the typed-ahead 'yes' confirmed the action")
    expect_not_in("✔ created", p.text)
    recs = records_of(t, tr)
    expect_eq(confirms(recs), [("declined", "typed no")], "confirm records")


def test_no_terminal_declines(t):
    f = t.path("marker")
    tr = t.path("nt.cast")
    t.runbook("noterm", '''
step "probe" { title = "Probe", run = function(ctx)
  local r = must(sh.read { "echo", "probe-output-42" })
  ctx:ok("probe said %%s", (r.stdout:gsub("%%s+$", "")))
end },
step "act" { title = "Act", run = function(ctx)
  must(sh.action { "touch", "%s", summary = "create the marker file" })
  ctx:ok("ACTION RAN")
end },
step "after" { title = "After", run = function(ctx) ctx:note("after ran") end },''' % f)
    rc, out, err = t.run(["exec", "noterm", "--transcript", tr])   # stdin is /dev/null, no --auto
    expect_rc((rc, out, err), 4)
    expect_in("no terminal: actions will not run unless --yes", out)
    expect_in("    │ probe-output-42\n", out)
    expect_in("✔ probe said probe-output-42", out)
    expect_in("not run: no terminal to confirm on (run from a terminal, or pass --yes)", out)
    expect_in("· after ran", out)
    expect_not_in("ACTION RAN", out)
    if os.path.exists(f):
        fail("an action ran without a terminal")
    recs = records_of(t, tr)
    expect_eq(confirms(recs), [("declined", "no terminal")], "confirm records")
    expect_not_in("action_start", [r["type"] for r in recs])
    expect_eq((recs[-1]["exit"], recs[-1]["outcome"]), (4, "declined"), "session_end")
    verify_complete(t, tr)
    # --yes runs it, and says so in the header and the confirm record.
    tr2 = t.path("yes.cast")
    rc, out, err = t.run(["exec", "noterm", "--yes", "--transcript", tr2])
    expect_rc((rc, out, err), 0)
    expect_in("confirmed by --yes", out)
    expect_in("--yes: reversible actions run without asking", out)
    expect_not_in("no terminal: actions will not run", out, "banner with --yes")
    if not os.path.exists(f):
        fail("--yes did not run the action")
    header, _, recs = t.read_transcript(tr2)
    expect_eq(header["runbook"]["yes"], True, "header yes")
    expect_eq(confirms(recs), [("yes", "--yes")], "confirm records with --yes")


def test_dry_run_never_acts(t):
    f = t.path("marker")
    action_runbook(t, "dry", f)
    tr = t.path("dry.cast")
    p = t.pty(["exec", "dry", "--auto", "--dry-run", "--yes", "--transcript", tr])
    p.expect(r"dry run: actions are only shown")
    p.expect(r"ACTION  create the marker file")
    p.expect(r"dry run: not executed")
    code = p.wait()
    if os.path.exists(f):
        fail("--dry-run ran the action")
    expect_eq(code, 0, "exit code of a dry run")
    header, _, recs = t.read_transcript(tr)
    expect_eq(header["runbook"]["dry_run"], True, "header dry_run")
    expect_eq(confirms(recs), [("dry-run", "--dry-run")], "confirm records")


def test_colour_only_on_a_terminal(t):
    t.runbook("colour", 'step "a" { title = "A", run = function(ctx) ctx:ok("fine") ctx:finding("odd") end },')
    # A terminal, TERM=xterm, no NO_COLOR: coloured marks.
    p = t.pty(["exec", "colour", "--auto", "--transcript", t.path("c1.cast")], env={"NO_COLOR": None})
    p.expect(r"✔ fine")
    expect_eq(p.wait(), 0, "exit code")
    raw = p.raw.decode("utf-8", "replace")
    expect_in("\x1b[32m✔\x1b[0m fine", raw, "coloured output")
    # NO_COLOR, TERM=dumb, or a pipe: none.
    for i, env in enumerate(({"NO_COLOR": "1"}, {"NO_COLOR": None, "TERM": "dumb"})):
        p = t.pty(["exec", "colour", "--auto", "--transcript", t.path("c%d.cast" % (i + 2))], env=env)
        p.expect(r"✖ odd")
        p.wait()
        expect_not_in("\x1b[", p.raw.decode("utf-8", "replace"), "output with %r" % env)
    rc, out, err = t.run(["exec", "colour", "--auto", "--transcript", t.path("c9.cast")], env={"NO_COLOR": None})
    expect_rc((rc, out, err), 0)
    expect_not_in("\x1b[", out, "piped output")
