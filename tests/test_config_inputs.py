"""config.lua's runbooks section: per-runbook input values, below the command line and the
environment, above the runbook's defaults; validated like the rest of config.lua; the transcript
header records where each input's value came from."""
import json
import os
from run import expect_eq, expect_in, expect_rc

INPUTS = '''on = input.target { default = "local", env = "T_ON" },
  restart = input.argv { default = { "systemctl", "restart", "redis-server" } },
  restart_wait = input.duration { default = "30s", env = "T_WAIT" },
  tries = input.int { default = 3, min = 1, max = 9 },'''

BODY = '''
step "a" { title = "A", run = function(ctx)
  print("V", ctx.on, table.concat(ctx.restart, " "), ctx.restart_wait, ctx.tries)
end },'''


def config(t, text):
    t.write(os.path.join(t.dir, "config", "runbook", "config.lua"), text)


def header(t):
    h, _, _ = t.read_transcript(t.path("t.cast"))
    os.unlink(t.path("t.cast"))
    return h["runbook"]


def test_config_inputs_precedence_and_sources(t):
    t.runbook("cache", BODY, inputs=INPUTS)
    config(t, '''return { runbooks = {
  cache = { on = "k8s://prod/statefulset/redis", restart_wait = "5m", tries = 5,
            restart = { "kubectl", "rollout", "restart", "statefulset/redis" } },
  other = { nothing = "x" },
} }''')
    rc, out, err = t.run(["exec", "cache", "--transcript", t.path("t.cast"), "--auto"])
    expect_rc((rc, out, err), 0)
    expect_in("V\tk8s://prod/statefulset/redis\tkubectl rollout restart statefulset/redis\t300\t5", out)
    h = header(t)
    expect_eq(h["input_sources"], {"on": "config", "restart": "config", "restart_wait": "config", "tries": "config"})
    # The environment outranks config.lua, the command line outranks both.
    rc, out, err = t.run(["exec", "cache", "--transcript", t.path("t.cast"), "--auto", "tries=2"], env={"T_ON": "ssh://db1", "T_WAIT": "90s"})
    expect_rc((rc, out, err), 0)
    expect_in("V\tssh://db1\tkubectl rollout restart statefulset/redis\t90\t2", out)
    h = header(t)
    expect_eq(h["input_sources"], {"on": "$T_ON", "restart": "config", "restart_wait": "$T_WAIT", "tries": "command line"})
    rc, out, err = t.run(["exec", "cache", "--auto", "restart_wait=1m"], env={"T_WAIT": "90s"})
    expect_in("\t60\t5", out)


def test_config_inputs_defaults_without_config(t):
    t.runbook("cache", BODY, inputs=INPUTS)
    rc, out, err = t.run(["exec", "cache", "--transcript", t.path("t.cast"), "--auto"])
    expect_rc((rc, out, err), 0)
    expect_in("V\tlocal\tsystemctl restart redis-server\t30\t3", out)
    expect_eq(header(t)["input_sources"], {"on": "default", "restart": "default", "restart_wait": "default", "tries": "default"})


def test_config_inputs_are_validated(t):
    t.runbook("cache", BODY, inputs=INPUTS)
    cases = [
        ('return { runbooks = { cache = { restart_wiat = "5m" } } }',
         "runbooks[\"cache\"].restart_wiat: cache has no input 'restart_wiat'"),
        ('return { runbooks = { cache = { restart_wait = "5 parsecs" } } }', "input 'restart_wait' (from config.lua's runbooks section)"),
        ('return { runbooks = { cache = { on = "ftp://x" } } }', "input 'on' (from config.lua's runbooks section)"),
        ('return { runbooks = { cache = { restart = { "a", 3 } } } }', "runbooks[\"cache\"].restart: a list must hold words"),
        ('return { runbooks = { cache = { tries = true } } }', "runbooks[\"cache\"].tries: must be a string, a number or a list of words"),
        ('return { runbooks = { [1] = {} } }', "runbooks: a runbook name must be a word"),
        ('return { runbooks = "cache" }', "runbooks: must be a table"),
        ('return { runbook = {} }', "unknown field 'runbook'"),
    ]
    config(t, 'return { runbooks = { cache = { tries = 12 } } }')
    rc, out, err = t.run(["exec", "cache", "--auto"])
    expect_eq(rc, 2)
    expect_in("input 'tries': 12 is above 9", err)
    for text, msg in cases:
        config(t, text)
        rc, out, err = t.run(["exec", "cache", "--transcript", t.path("t.cast"), "--auto"])
        expect_eq(rc, 2, "exit code for " + text)
        expect_in(msg, err, text)
        expect_in("config.lua", err, "the error names the file")


def test_config_sets_a_shipped_runbooks_wait(t):
    """redis-failure's wait after a restart is an input (restart_wait, 30 s by default): config.lua
    sets it once for the company. A restart that brings nothing back is given up after it."""
    import socket
    import time
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()   # nothing listens there: Redis is "down"
    config(t, 'return { runbooks = { ["redis-failure"] = { restart_wait = "1s", restart = { "true" } } } }')
    t0 = time.monotonic()
    rc, out, err = t.run(["exec", os.path.join(t.repo, "runbooks", "redis-failure.lua"), "--auto", "--yes",
                          "--transcript", t.path("t.cast"), "url=redis://127.0.0.1:%d/0" % port, "timeout=500ms"])
    took = time.monotonic() - t0
    expect_in("$ true", out, "the restart command from config.lua")
    expect_in("Redis answers PING (up to 1 s)", out)
    expect_eq(header(t)["input_sources"]["restart_wait"], "config")
    if took > 15:
        from run import fail
        fail("the wait was not the configured 1 s: the run took %.1f s" % took)
