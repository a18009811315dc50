"""Every shipped runbook passes `runbook check` and renders with `runbook show` (nothing runs)."""
import glob
import os

from run import expect_eq, expect_in, fail


def shipped(t):
    files = sorted(f for f in glob.glob(os.path.join(t.repo, "runbooks", "*.lua")) if not f.endswith(".drill.lua"))
    if len(files) < 13:
        fail("expected the 13 runbooks of the playbooks, found %d" % len(files))
    return files


def test_every_runbook_checks(t):
    files = shipped(t)
    rc, out, err = t.run(["check"] + files)
    expect_eq(rc, 0, "check:\n" + out + err)
    for f in files:
        expect_in("ok    " + f, out)


def test_every_runbook_shows(t):
    for f in shipped(t):
        name = os.path.basename(f)[:-4]
        rc, out, err = t.run(["show", f])
        expect_eq(rc, 0, "show %s: %s" % (name, err))
        expect_in("# " + name + "\n", out)
        expect_in("## Steps", out)


def test_list_shows_them_all(t):
    rc, out, _ = t.run(["list"], env={"RUNBOOK_PATH": os.path.join(t.repo, "runbooks")})
    expect_eq(rc, 0)
    for f in shipped(t):
        expect_in(os.path.basename(f)[:-4], out)
