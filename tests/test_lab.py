"""`runbook lab up | status | down`: real servers on loopback, a /health that tells a stopped
dependency from a running one, and nothing left behind."""
import json
import os
import signal
import urllib.error
import urllib.request

from run import expect_eq, expect_in, fail


def health(port):
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d/health" % port, timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


def test_lab_up_status_health_down(t):
    state_file = t.path("state", "runbook", "lab", "lab.json")
    rc, out, err = t.run(["lab", "up"], timeout=120)
    state = json.load(open(state_file)) if os.path.exists(state_file) else None
    if state:
        t.on_cleanup(lambda: t.run(["lab", "down"], timeout=120))
    expect_eq(rc, 0, "lab up; stdout:\n%s\nstderr:\n%s" % (out, err))
    for name in ("pg", "redis", "api"):
        expect_in("\n%-9s  up " % name if name != "pg" else "\npg         up ", "\n" + out)
    pids = [int(state[n]["pid"]) for n in ("pg", "redis", "api")]
    for p in pids:
        if not alive(p):
            fail("pid %d of the lab is not running" % p)
    for n in ("pg", "redis", "api"):
        expect_eq(state[n]["url"].split("//")[1].split("@")[-1].startswith("127.0.0.1:"), True, n + " on loopback")

    status, body = health(int(state["api"]["port"]))
    expect_eq((status, body["status"]), (200, "ok"), "health with everything up")

    os.kill(int(state["redis"]["pid"]), signal.SIGSTOP)
    try:
        status, body = health(int(state["api"]["port"]))
    finally:
        os.kill(int(state["redis"]["pid"]), signal.SIGCONT)
    expect_eq(status, 503, "health with redis stopped")
    expect_eq(body["dependencies"]["redis"]["ok"], False)
    expect_eq(body["dependencies"]["postgres"]["ok"], True)

    rc, out, _ = t.run(["lab", "stop", "redis"], timeout=60)
    expect_eq(rc, 0)
    status, body = health(int(state["api"]["port"]))
    expect_eq((status, body["dependencies"]["redis"]["ok"]), (503, False), "health with redis down")
    rc, out, _ = t.run(["lab", "restart", "redis"], timeout=60)
    expect_eq(rc, 0)
    expect_in("redis running, pid ", out)
    status, body = health(int(state["api"]["port"]))
    expect_eq(status, 200, "health after the restart")
    # The lab is the platform: it counts restarts (a stop alone is none), as systemd's NRestarts.
    rc, out, _ = t.run(["lab", "restarts", "redis"])
    expect_eq((rc, out), (0, "1\n"), "redis restarted once")
    rc, out, _ = t.run(["lab", "restarts", "api"])
    expect_eq((rc, out), (0, "0\n"), "api never restarted")
    # Redis reads a config file of the lab's own, so that CONFIG REWRITE can persist to it.
    expect_eq(os.path.exists(os.path.join(state["redis"]["dir"], "redis.conf")), True, "redis.conf")
    state = json.load(open(state_file))
    pids = [int(state[n]["pid"]) for n in ("pg", "redis", "api")]

    rc, out, _ = t.run(["lab", "up"], timeout=60)
    expect_in("already set up", out)
    rc, out, _ = t.run(["lab", "status"])
    expect_eq(rc, 0)

    rc, out, err = t.run(["lab", "down"], timeout=120)
    expect_eq(rc, 0, err)
    for p in pids:
        if alive(p):
            fail("pid %d still runs after lab down" % p)
    expect_eq(os.path.exists(t.path("state", "runbook", "lab")), False, "lab directory removed")
    pgdata = state["pg"]["data"]
    expect_eq(os.path.exists(pgdata), False, "postgres data removed")
    rc, out, _ = t.run(["lab", "status"])
    expect_eq(rc, 1)
    expect_in("no lab", out)


def test_lab_usage(t):
    rc, _, err = t.run(["lab", "sideways"])
    expect_eq(rc, 2)
    expect_in("usage: runbook lab up | status | down", err)
    rc, _, err = t.run(["lab", "restart", "mysql"])
    expect_eq(rc, 2)
    expect_in("runbook lab start | stop | restart | restarts pg | redis | api", err)
    rc, out, _ = t.run(["lab", "--help"])
    expect_eq(rc, 0)
    expect_in("usage: runbook lab up | status | down", out)
