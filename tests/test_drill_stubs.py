"""A drill must be able to fail. Each shipped runbook is replaced by a stub of the same name and
inputs that resolves at once without looking at anything (and by one that escalates at once): every
mode of its drill must then fail, because the stub reports none of the findings the mode requires,
whatever the lab's health afterwards (the drill repairs diagnosis-only faults itself)."""
import os
import re
import subprocess

from run import check_sanitizer, expect_eq, expect_in, fail

STUB = '''return runbook {
  name = "%s", summary = "a stub that %s at once", severity = "SEV3",
  inputs = { %s },
  step "at-once" { title = "Done", run = function(ctx) return ctx:%s end },
}
'''
OUTCOMES = {"resolves": 'resolved("looks fine to me")', "escalates": 'escalate("not mine to fix")'}


def input_names(t, name):
    rc, out, err = t.run(["show", os.path.join(t.repo, "runbooks", name + ".lua")])
    expect_eq(rc, 0, err)
    return re.findall(r"^\| `([a-z_]+)` \|", out, re.M)


def shipped_path(t):
    return {"RUNBOOK_PATH": os.path.join(t.repo, "runbooks")}


def drill_names(t):
    rc, _, err = t.run(["drill", "no-such-drill"], env=shipped_path(t))
    expect_eq(rc, 2)
    return re.search(r"\(drills: ([^)]*)\)", err).group(1).split(", ")


def mode_names(t, name):
    rc, _, err = t.run(["drill", name, "--mode", "no-such-mode"], env=shipped_path(t))
    expect_eq(rc, 2)
    return re.search(r"\(modes: ([^)]*)\)", err).group(1).split(", ")


def write_stub(t, name, outcome):
    inputs = ", ".join("%s = input.string { required = false }" % n for n in input_names(t, name))
    d = os.path.join("stubs-" + outcome)
    t.write(os.path.join(d, name + ".lua"), STUB % (name, outcome, inputs, OUTCOMES[outcome]))
    return t.path(d)


def run_drill(t, name, mode, stubs):
    # The stub comes first on the search path; the shipped drill (runbooks/NAME.drill.lua) after it.
    env = t.environ({"RUNBOOK_PATH": stubs + ":" + os.path.join(t.repo, "runbooks")})
    # The disk-full drill mounts a tmpfs: as root, or in a user namespace of its own.
    wrap = ["unshare", "--user", "--map-root-user", "--mount"] if name == "disk-full" and os.geteuid() != 0 else []
    p = subprocess.run(wrap + t.launcher + [t.binary, "drill", name, "--mode", mode, "--auto", "--yes"], cwd=t.dir,
                       env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=150,
                       start_new_session=True)
    check_sanitizer(p.stderr, "stderr of the drill")
    return p.returncode, p.stdout, p.stderr


def stubs_fail(t, names):
    t.on_cleanup(lambda: t.run(["lab", "down"], timeout=120, check_sanitizer_output=False))
    for name in names:
        for outcome in OUTCOMES:
            stubs = write_stub(t, name, outcome)
            for mode in mode_names(t, name):
                rc, out, err = run_drill(t, name, mode, stubs)
                what = "%s --mode %s against a stub that %s" % (name, mode, outcome)
                if rc == 0:
                    fail("%s: exit 0, the drill cannot fail\nstdout:\n%s\nstderr:\n%s" % (what, out, err))
                expect_in("drill %s (%s): the runbook missed the fault: no finding " % (name, mode), out,
                          "%s; stderr:\n%s" % (what, err))


def test_every_drill_knows_its_runbooks(t):
    names = drill_names(t)
    shipped = sorted(f[:-4] for f in os.listdir(os.path.join(t.repo, "runbooks"))
                     if f.endswith(".lua") and not f.endswith(".drill.lua"))
    expect_eq(sorted(names), shipped, "one drill per shipped runbook")


# Split so that each test stays within its own deadline.
GROUPS = {
    "redis": ["redis-failure", "queue-backlog"],
    "pg": ["database-unavailable", "connection-pool-exhausted", "slow-queries", "migration-failure"],
    "service": ["api-down", "triage", "high-error-rate", "high-latency"],
    "standalone": ["memory-pressure", "disk-full", "cert-expiry"],
    "web": ["proxy-down", "auth-failures", "websocket-failures", "bad-deploy"],
}


def test_stubs_fail_redis(t):
    stubs_fail(t, GROUPS["redis"])


def test_stubs_fail_pg(t):
    stubs_fail(t, GROUPS["pg"])


def test_stubs_fail_service(t):
    stubs_fail(t, GROUPS["service"])


def test_stubs_fail_standalone(t):
    stubs_fail(t, GROUPS["standalone"])


def test_stubs_fail_web(t):
    stubs_fail(t, GROUPS["web"])


def test_groups_cover_every_drill(t):
    covered = sorted(n for g in GROUPS.values() for n in g)
    expect_eq(covered, sorted(drill_names(t)))


for _fn in (test_stubs_fail_redis, test_stubs_fail_pg, test_stubs_fail_service, test_stubs_fail_standalone, test_stubs_fail_web):
    _fn.timeout = 600
