"""runbook history: past sessions from the transcript directory (runbook, start, duration,
outcome, operator, incident), each runbook's last successful run, and "last run N days ago" in
runbook list, with "now" moved by the injected incident clock (RUNBOOK_FAKE_CLOCK)."""
import json
import os
import re
import time

from run import expect_eq, expect_in, expect_not_in, expect_rc, fail
from sessions import Reader, kill_9

DAY = 86400


def fake_now(t, at):
    p = t.path("clock")
    with open(p, "w") as f:
        f.write("%d\n" % at)
    return {"RUNBOOK_FAKE_CLOCK": p}


def sessions(t):
    """Runs: good resolved, bad failed, good as a dry run, good for an incident, hang killed -9."""
    t.runbook("good", 'step "a" { title = "A", run = function(ctx) return ctx:resolved("fine") end },', severity="SEV2")
    t.runbook("bad", 'step "a" { title = "A", run = function(ctx) must(nil, "it broke") end },')
    fifo = t.mkfifo("hang")
    t.runbook("hang", 'step "a" { title = "A", run = function(ctx) must(sh.read { "sh", "-c", "echo hanging; cat %s" }) end },' % fifo)
    t.runbook("idle", 'step "a" { title = "A", run = function(ctx) end },')
    expect_rc(t.run(["exec", "good", "--auto"]), 0)
    expect_rc(t.run(["exec", "bad", "--auto"]), 1)
    expect_rc(t.run(["exec", "good", "--auto", "--dry-run"]), 0)
    expect_rc(t.run(["exec", "good", "--auto", "--incident", "INC-8"]), 0)
    proc = t.spawn(["exec", "hang", "--auto"])
    Reader(proc.stdout).until("hanging")
    kill_9(proc)


def test_history_lists_sessions(t):
    rc, out, err = t.run(["history"])
    expect_rc((rc, out, err), 0, "history with no sessions")
    expect_in("no sessions in " + t.path("state", "runbook", "transcripts"), out)
    sessions(t)
    rc, out, err = t.run(["history"])
    expect_rc((rc, out, err), 0)
    lines = out.splitlines()
    if not re.match(r"^started \(UTC\) +runbook +duration +outcome +operator +incident +session$", lines[0]):
        fail("history header: %r" % lines[0])
    rows = lines[1:6]
    by = {}
    for l in rows:
        m = re.match(r"^(\d{4}-\d\d-\d\d \d\d:\d\d) +(\S+) +(≥?\d+s) +(.+?) +(\S+@\S+) +(\S*) +([0-9a-f]{6})$", l)
        if not m:
            fail("history row: %r\n%s" % (l, out))
        by.setdefault(m.group(2), []).append((m.group(4), m.group(6)))
    expect_eq(sorted(by["good"]), [("resolved", ""), ("resolved", "INC-8"), ("resolved (dry run)", "")], "good")
    expect_eq(by["bad"], [("failed", "")], "bad")
    expect_eq(by["hang"], [("ended abruptly", "")], "hang")
    expect_in("\nlast successful run:\n", out)
    if not re.search(r"^  good  \d{4}-\d\d-\d\d \d\d:\d\d \(just now\)$", out, re.M):
        fail("last successful run of good:\n" + out)
    expect_in("  bad  none in 1 session (last just now)", out)
    expect_in("  hang  none in 1 session (last just now)", out)
    # One runbook, and the newest N.
    rc, out, err = t.run(["history", "good", "--limit", "2"])
    expect_rc((rc, out, err), 0)
    expect_eq(len([l for l in out.splitlines() if re.match(r"^\d{4}-\d\d-\d\d \d\d:\d\d +good ", l)]), 2,
              "rows of good with --limit 2")
    expect_in("(1 older sessions not shown: --limit 0 shows all)", out)
    expect_not_in(" bad ", out)
    rc, out, err = t.run(["history", "--limit", "x"])
    expect_rc((rc, out, err), 2, "bad --limit")
    rc, out, err = t.run(["history", "--lmit"])
    expect_rc((rc, out, err), 2, "unknown option")
    rc, out, err = t.run(["history", "nothing-by-that-name"])
    expect_rc((rc, out, err), 0)
    expect_in("no sessions of nothing-by-that-name", out)


def test_list_shows_when_each_runbook_last_ran(t):
    t.runbook("good", 'step "a" { title = "A", run = function(ctx) end },', summary="works")
    t.runbook("bad", 'step "a" { title = "A", run = function(ctx) must(nil, "no") end },', summary="breaks")
    t.runbook("idle", 'step "a" { title = "A", run = function(ctx) end },', summary="never used")
    rc, out, err = t.run(["list"])
    expect_rc((rc, out, err), 0)
    expect_not_in("·", out, "list before any session: no last-run column")
    expect_rc(t.run(["exec", "good", "--auto"]), 0)
    expect_rc(t.run(["exec", "bad", "--auto"]), 1)
    rc, out, err = t.run(["list"])
    expect_rc((rc, out, err), 0)
    lines = {l.split()[0]: l for l in out.splitlines()}
    expect_eq(lines["good"], "  good  SEV3  works       · last run just now", "good")
    expect_eq(lines["bad"], "  bad   SEV3  breaks      · no successful run (last attempt just now)", "bad")
    expect_eq(lines["idle"], "  idle  SEV3  never used  · never run", "idle")
    # 94 days later (the injected clock): the stale runbook shows.
    env = fake_now(t, int(time.time()) + 94 * DAY + 3600)
    rc, out, err = t.run(["list"], env=env)
    expect_rc((rc, out, err), 0)
    expect_in("  good  SEV3  works       · last run 94 days ago", out)
    expect_in("· no successful run (last attempt 94 days ago)", out)
    rc, out, err = t.run(["history", "good"], env=env)
    expect_in("(94 days ago)", out)
    # A newer session that is not a success (a dry run) does not hide the older success behind it,
    # and a transcript named otherwise than exec names them is still read.
    expect_rc(t.run(["exec", "good", "--auto", "--dry-run"]), 0)
    tdir = t.path("state/runbook/transcripts")
    good = sorted(f for f in os.listdir(tdir) if f.startswith("good-"))
    expect_eq(len(good), 2, "two sessions of good")
    os.rename(os.path.join(tdir, good[0]), os.path.join(tdir, "renamed.cast"))   # the older: the success
    rc, out, err = t.run(["list"])
    expect_rc((rc, out, err), 0)
    lines = {l.split()[0]: l for l in out.splitlines()}
    expect_eq(lines["good"], "  good  SEV3  works       · last run just now", "good, past its dry run")
