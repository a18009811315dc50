"""--yes is for unattended runs of reversible remediations: it never confirms an irreversible action.
That needs the target typed back on a terminal, or --yes-irreversible naming that exact target on
the command line (recorded); with neither the action is declined and the run goes on (exit 4)."""
import os

from run import expect_eq, expect_in, expect_not_in, fail

from test_pty import action_runbook


def records(t, tr):
    return t.read_transcript(tr)[2]


def confirms(t, tr):
    return [(r["answer"], r["how"]) for r in records(t, tr) if r["type"] == "confirm"]


def test_yes_declines_an_irreversible_action_without_a_terminal(t):
    f = t.path("marker")
    action_runbook(t, "wipe", f, irreversible=True)
    tr = t.path("a.cast")
    rc, out, err = t.run(["exec", "wipe", "--auto", "--yes", "--transcript", tr])
    expect_eq(rc, 4, "exit code: declined; stdout:\n%s\nstderr:\n%s" % (out, err))
    expect_in("not run: --yes does not confirm an irreversible action (type the target on a terminal, "
              "or pass --yes-irreversible " + f + ")", out)
    expect_in("· after ran", out)            # the run goes on
    if os.path.exists(f):
        fail("--yes confirmed an irreversible action")
    expect_eq(confirms(t, tr), [("declined", "--yes does not confirm an irreversible action")])


def test_yes_still_confirms_a_reversible_action(t):
    f = t.path("marker")
    action_runbook(t, "touchit", f)
    rc, out, err = t.run(["exec", "touchit", "--auto", "--yes"])
    expect_eq(rc, 0, out + err)
    expect_in("confirmed by --yes", out)
    expect_eq(os.path.exists(f), True, "the reversible action ran")


def test_yes_irreversible_names_the_exact_target(t):
    f = t.path("marker")
    action_runbook(t, "wipe", f, irreversible=True)
    tr = t.path("other.cast")
    rc, out, _ = t.run(["exec", "wipe", "--auto", "--yes", "--yes-irreversible", f + ".other", "--transcript", tr])
    expect_eq(rc, 4, "another target does not confirm this one")
    expect_eq(os.path.exists(f), False, "not run for another target")
    tr = t.path("same.cast")
    rc, out, err = t.run(["exec", "wipe", "--auto", "--yes", "--yes-irreversible", f, "--transcript", tr])
    expect_eq(rc, 0, out + err)
    expect_in("confirmed by --yes-irreversible " + f, out)
    expect_eq(os.path.exists(f), True, "run when its exact target is named")
    expect_eq(confirms(t, tr), [("yes", "--yes-irreversible")])
    header = t.read_transcript(tr)[0]
    expect_eq(header["runbook"]["yes_irreversible"], f, "the named target is in the transcript's header")
    expect_in("--yes-irreversible", header["runbook"]["argv"])


def test_yes_on_a_terminal_asks_for_the_target(t):
    f = t.path("marker")
    action_runbook(t, "wipe", f, irreversible=True)
    tr = t.path("pty.cast")
    p = t.pty(["exec", "wipe", "--auto", "--yes", "--transcript", tr])
    p.expect(r"Type the target \(" + __import__("re").escape(f) + r"\) to confirm, or n to skip: ")
    expect_eq(os.path.exists(f), False, "not run before the target is typed")
    p.sendline(f)
    p.expect(r"· after ran")
    expect_eq(p.wait(), 0, "exit code")
    expect_eq(os.path.exists(f), True, "run once the target was typed back")
    expect_eq(confirms(t, tr), [("yes", "typed the target")])
    expect_not_in("confirmed by --yes", p.text)
