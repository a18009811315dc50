"""Drills: the lab is broken the way a runbook is about, the runbook runs against it unattended
(--auto --yes), and the test checks that the finding names the injected fault, that every
action ran only after its confirmation was recorded, that the system is healthy afterwards and
that the transcript verifies."""
import os
import subprocess

from run import check_sanitizer, expect_eq, expect_in, fail


def drill(t, name, mode=None, timeout=180):
    t.on_cleanup(lambda: t.run(["lab", "down"], timeout=120, check_sanitizer_output=False))
    args = ["drill", name, "--auto", "--yes"] + (["--mode", mode] if mode else [])
    rc, out, err = t.run(args, timeout=timeout, env={"RUNBOOK_PATH": os.path.join(t.repo, "runbooks")})
    ts = t.transcripts()
    if not ts:
        fail("no transcript; stdout:\n%s\nstderr:\n%s" % (out, err))
    return rc, out, err, ts[-1]


def actions_confirmed_first(t, transcript):
    """Every action_start is preceded, in the same step, by a confirm record; returns the actions."""
    _, _, records = t.read_transcript(transcript)
    confirmed, actions = set(), []
    for r in records:
        if r["type"] == "confirm":
            confirmed.add(r.get("step"))
        if r["type"] == "action_start":
            if r.get("step") not in confirmed:
                fail("action in step %r ran without a recorded confirmation: %r" % (r.get("step"), r))
            actions.append(r)
    return actions


def verifies(t, transcript):
    rc, out, _ = t.run(["transcript", "verify", transcript])
    expect_eq(rc, 0, "transcript verify: " + out)
    expect_in("complete", out)


def test_drill_memory_pressure(t):
    rc, out, err, tr = drill(t, "memory-pressure")
    expect_in("drill memory-pressure (hog): a process grabbing 400M of memory", out)
    expect_in("✖ runbook-lab-hog (pid ", out)   # the finding names the process the drill started (match=)
    expect_in("drill memory-pressure: healthy again after", out)
    expect_eq(rc, 0, "exit code; stderr: " + err)
    actions = actions_confirmed_first(t, tr)
    expect_eq(len(actions), 1, "one action: the SIGTERM")
    expect_in("kill -TERM", actions[0].get("command", "") + actions[0].get("summary", "") + str(actions[0]))
    verifies(t, tr)


def test_drill_usage(t):
    rc, _, err = t.run(["drill"])
    expect_eq(rc, 2)
    expect_in("usage: runbook drill NAME", err)
    rc, _, err = t.run(["drill", "memory-pressure", "--mode", "sideways"],
                       env={"RUNBOOK_PATH": os.path.join(t.repo, "runbooks")})
    expect_eq(rc, 2)
    expect_in("no mode 'sideways' (modes: hog)", err)


def test_drill_disk_full(t):
    # Mounting the drill's tmpfs needs root; without it, a user namespace gives a private root.
    wrap = [] if os.geteuid() == 0 else ["unshare", "--user", "--map-root-user", "--mount"]
    env = t.environ({"RUNBOOK_PATH": os.path.join(t.repo, "runbooks")})
    p = subprocess.run(wrap + [t.binary, "drill", "disk-full", "--auto", "--yes"], cwd=t.dir, env=env,
                       stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
    out, err, rc = p.stdout, p.stderr, p.returncode
    check_sanitizer(err, "stderr of the drill")
    tr = t.transcripts()[-1]
    expect_in("is 94% full", out)                 # the finding names the full filesystem
    expect_in("1 logs older than 7d00h, 5.0 MiB in all", out)
    expect_in("drill disk-full: healthy again after", out)
    expect_eq(rc, 0, "exit code; stderr: " + err)
    actions = actions_confirmed_first(t, tr)
    expect_eq(len(actions), 1, "one action: deleting the old log")
    verifies(t, tr)
    with open("/proc/self/mounts") as f:
        expect_eq("runbook-drill" in f.read(), False, "the drill's tmpfs is unmounted afterwards")


# (mode, text of the finding that names the injected fault)
REDIS_MODES = [("down", "✖ Redis is down: redis.ping 127.0.0.1:"),
               ("hung", "✖ Redis is hung: it accepts connections but does not answer"),
               ("oom", "✖ CRITICAL memory used of maxmemory"),
               ("slow", " slow commands in the slow log")]   # 3, or more on a loaded machine
PG_MODES = [("down", "✖ PostgreSQL is down: pg.ping 127.0.0.1:"),
            ("hung", "✖ PostgreSQL does not answer: pg.ping 127.0.0.1:"),
            ("full", "✖ CRITICAL connections used of max_connections")]


def run_modes(t, name, modes, action_words, codes=None):
    for mode, finding in modes:
        before = set(t.transcripts())
        rc, out, err, _ = drill(t, name, mode)
        new = sorted(set(t.transcripts()) - before)
        if len(new) != 1:
            fail("%s --mode %s: expected one new transcript, got %r" % (name, mode, new))
        expect_in(finding, out, "%s --mode %s names the fault" % (name, mode))
        expect_in("drill %s: healthy again after" % name, out)
        expect_eq(rc, (codes or {}).get(mode, 0), "%s --mode %s exit code; stdout:\n%s\nstderr:\n%s" % (name, mode, out, err))
        actions = actions_confirmed_first(t, new[0])
        wanted = action_words[mode] if isinstance(action_words[mode], list) else [action_words[mode]]
        expect_eq(len(actions), len(wanted), "%s --mode %s: remediations %r" % (name, mode, wanted))
        for action, words in zip(actions, wanted):
            expect_in(words, str(action))
        verifies(t, new[0])


def test_drill_redis_failure(t):
    # oom: FLUSHDB is irreversible, so --yes declines it (exit 4); maxmemory is raised, then persisted.
    run_modes(t, "redis-failure", REDIS_MODES, {"down": "lab restart redis", "hung": "lab restart redis",
                                                "oom": ["'step': 'maxmemory'", "'step': 'persist'"], "slow": []},
              codes={"oom": 4})


def test_drill_database_unavailable(t):
    run_modes(t, "database-unavailable", PG_MODES,
              {"down": "lab restart pg", "hung": "lab restart pg", "full": "pg.terminate_idle"})


def test_drill_api_down(t):
    run_modes(t, "api-down", [("down", "✖ http://127.0.0.1:")], {"down": "lab restart api"})
    rc, out, err, tr = drill(t, "api-down", "dependency")
    expect_in("✖ the service reports redis down", out)
    expect_in("✖ cache: redis.ping 127.0.0.1:", out)
    expect_in("drill api-down: healthy again after", out)
    expect_eq(rc, 0, err)
    expect_eq(actions_confirmed_first(t, tr), [], "no restart while a dependency is down")
    verifies(t, tr)


def test_drill_triage(t):
    rc, out, err, tr = drill(t, "triage")
    expect_in("✖ cache: redis.ping 127.0.0.1:", out)
    expect_in("✖ suggested severity: SEV1 (P0)", out)
    expect_in("run next: runbook exec redis-failure", out)
    expect_in("drill triage: healthy again after", out)
    expect_eq(rc, 0, err)
    verifies(t, tr)


def diagnosis(t, name, findings):
    rc, out, err, tr = drill(t, name)
    for f in findings:
        expect_in(f, out, name + " names the fault")
    expect_in("drill %s: healthy again after" % name, out)
    expect_eq(rc, 0, "%s exit code; stderr: %s" % (name, err))
    verifies(t, tr)
    return out, tr


def test_drill_high_error_rate(t):
    diagnosis(t, "high-error-rate", ["✖ CRITICAL errors in the sample: 100%"])


def test_drill_high_latency(t):
    diagnosis(t, "high-latency", ["✖ no request succeeded (10 failed)"])


def test_drill_queue_backlog(t):
    out, tr = diagnosis(t, "queue-backlog", ["WARNING jobs queued in drill:jobs: 50",
                                             "✖ no job left the queue in 1 s: nothing consumes it"])
    actions = actions_confirmed_first(t, tr)
    expect_eq(len(actions), 1, "one action: restarting the workers")


def test_drill_connection_pool_exhausted(t):
    out, tr = diagnosis(t, "connection-pool-exhausted", ["✖ 5 sessions idle in transaction for longer than 1 s"])
    actions = actions_confirmed_first(t, tr)
    expect_eq([a["primitive"] for a in actions], ["pg.terminate_idle"])


def test_drill_slow_queries(t):
    out, tr = diagnosis(t, "slow-queries", ["✖ 1 queries wait on locks", "SELECT count(*) FROM drill_t;"])
    actions = actions_confirmed_first(t, tr)
    expect_eq(len(actions) >= 1, True, "the blocker was cancelled or terminated")


def test_drill_migration_failure(t):
    out, tr = diagnosis(t, "migration-failure", ["✖ the database is at a1b2c3, the code expects d4e5f6",
                                                 "✖ missing: orders"])
    actions = actions_confirmed_first(t, tr)
    expect_eq(len(actions), 1, "one action: the migrate command")


def test_drill_cert_expiry(t):
    diagnosis(t, "cert-expiry", ["✖ CRITICAL days left: ", "✖ the chain does not verify: self-signed certificate"])
