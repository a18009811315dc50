"""The runbooks of issue 15 (proxy-down, auth-failures, websocket-failures, bad-deploy), each run by
its drill against the lab: a real nginx (Debian's) in front of the lab service, its real access and
error logs, a real git checkout for the deploy. Each mode asserts what the runbook found, what it
offered and ran (after a recorded confirmation), that the lab is healthy afterwards and that the
transcript verifies. That every mode fails against stub runbooks is in test_drill_stubs.py (group
"web"). Limits said plainly: the auth drill's clock skew is a stand-in `date` command printing a time
5 minutes ahead (the lab cannot move this machine's clock)."""
import hashlib
import os

from run import expect_eq, expect_in, expect_not_in, fail
from test_drills import actions_confirmed_first, drill, verifies


def run_mode(t, name, mode, findings, actions=(), rc_expected=0):
    before = set(t.transcripts())
    rc, out, err, _ = drill(t, name, mode)
    new = sorted(set(t.transcripts()) - before)
    if len(new) != 1:
        fail("%s --mode %s: expected one new transcript, got %r\n%s\n%s" % (name, mode, new, out, err))
    for f in findings:
        expect_in(f, out, "%s --mode %s" % (name, mode))
    expect_in("drill %s: healthy again after" % name, out)
    expect_eq(rc, rc_expected, "%s --mode %s exit code; stdout:\n%s\nstderr:\n%s" % (name, mode, out, err))
    ran = actions_confirmed_first(t, new[0])
    expect_eq(len(ran), len(actions), "%s --mode %s: actions %r, ran %r" % (name, mode, actions, ran))
    for a, words in zip(ran, actions):
        expect_in(words, str(a))
    verifies(t, new[0])
    return out, new[0]


def test_proxy_down_drills(t):
    out, _ = run_mode(t, "proxy-down", "down", ["✖ nothing listens behind http://127.0.0.1:",
                                                "nginx -t -c", "the configuration is valid"], ["lab restart nginx"])
    out, _ = run_mode(t, "proxy-down", "upstream", [
        "answers 502: the proxy is up, its upstream is not answering it",
        "connect() failed (111: Connection refused) while connecting to upstream",
        "✖ the upstream refused the proxy's connections",
        "requests answered 502/503/504 in the last 10m00s (502/503/504: ",
        "✖ the upstream itself fails: refused",
        "escalated: the proxy is up but its upstream is not: the application is down (run api-down on it)"])
    run_mode(t, "proxy-down", "stale", ["answers 502: the proxy is up", "the configuration is valid",
                                        "✔ http://127.0.0.1:", "answers 200 directly", "ACTION  reload the proxy (stale upstream)",
                                        "resolved: http://127.0.0.1:"], ["'step': 'reload'"])
    out, _ = run_mode(t, "proxy-down", "config", ["fails: [emerg] unexpected \"}\"",
                                                  "escalated: the proxy is down and its configuration is broken"])
    expect_not_in("ACTION", out, "no restart on a broken config")


test_proxy_down_drills.timeout = 300


def test_auth_failures_drills_never_show_the_secret(t):
    out, tr = run_mode(t, "auth-failures", "secret", [
        "✖ 401/403: 0/min in the previous 1h00m, 6/min in the last 10m00s",
        "GET /login",
        "✖ the replicas hold 2 different signing secrets: version 1 on ", "replica1.key, ", "; version 2 on ",
        "✔ clocks agree within 0 s"])
    with open(tr) as f:
        transcript = f.read()
    for secret in ("signing-key-A", "signing-key-B"):
        for text in (secret, hashlib.sha256((secret + "\n").encode()).hexdigest()[:16]):
            expect_not_in(text, out, "the terminal")
            expect_not_in(text, transcript, "the transcript")
    run_mode(t, "auth-failures", "skew", ["✖ a replica's clock is 30", "s off (more than 5 s)",
                                          "✔ the 3 replicas read hold the same secret"])


test_auth_failures_drills_never_show_the_secret.timeout = 300


def test_websocket_failures_drills(t):
    run_mode(t, "websocket-failures", "stripped", [
        "answers \"HTTP/1.1 426 Upgrade Required\": the Upgrade did not reach the application",
        "✖ the application upgrades directly (HTTP/1.1 101 Switching Protocols) but not through the proxy",
        "✖ the proxy's config never sets the Upgrade header"])
    out, _ = run_mode(t, "websocket-failures", "timeout", [
        "✔ http://127.0.0.1:", "HTTP/1.1 101 Switching Protocols",
        "✖ a proxy_read_timeout of 10 s", "established connections on port",
        "escalated: the handshake succeeds, but the proxy's config cuts WebSockets"])


test_websocket_failures_drills.timeout = 300


def test_bad_deploy_drill_rolls_back(t):
    out, tr = run_mode(t, "bad-deploy", "errors", [
        "commit ", "by lab: release v2",
        "✖ errors went from 0.0% before commit ",
        "to 100.0% after it",
        "ACTION  roll back ", "revert --no-edit HEAD",
        "resolved: rolled back"], ["revert --no-edit HEAD"])
    expect_not_in("release v1", out.split("latest:")[0], "a change older than since is not listed")


test_bad_deploy_drill_rolls_back.timeout = 300


def test_bad_deploy_without_a_deploy_offers_nothing(t):
    """A rise with no change in the window is not blamed on a deploy: no rollback is offered."""
    repo = t.path("repo")
    os.makedirs(repo)
    import subprocess
    env = dict(os.environ, GIT_AUTHOR_NAME="a", GIT_AUTHOR_EMAIL="a@x", GIT_COMMITTER_NAME="a", GIT_COMMITTER_EMAIL="a@x",
               GIT_AUTHOR_DATE="2020-01-01T00:00:00Z", GIT_COMMITTER_DATE="2020-01-01T00:00:00Z")
    subprocess.run(["git", "-C", repo, "init", "-q"], check=True)
    subprocess.run(["git", "-C", repo, "commit", "-q", "--allow-empty", "-m", "old"], check=True, env=env)
    import time
    now = time.time()
    lines = ['127.0.0.1 - - [%s] "GET / HTTP/1.1" 502 0 "-" "x" rt=0.001' % time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now - i))
             for i in range(20)]
    log = t.write("access.log", "\n".join(lines) + "\n")
    rc, out, err = t.run(["exec", os.path.join(t.repo, "runbooks", "bad-deploy.lua"), "--auto", "--yes",
                          "repo=" + repo, "access_log=" + log, "rollback=false"])
    expect_in("no change in the last 2h00m", out)
    expect_in("no rise starts at a deploy: nothing to roll back", out)
    expect_not_in("ACTION", out)
    expect_eq(rc, 0, out + err)


def test_show_lists_what_each_step_runs(t):
    """runbook show prints, under each step, the commands, queries and library calls read from its source."""
    def steps(name):
        rc, out, err = t.run(["show", os.path.join(t.repo, "runbooks", name + ".lua")])
        expect_eq(rc, 0, err)
        return out.split("## Steps", 1)[1]
    out = steps("proxy-down")
    expect_in("2. **Is the proxy's configuration valid (nginx -t)?** (`config`)\n   A restart or reload", out)
    expect_in("   - `$ <ctx.config_test>`", out, "an argv input, from the local table it was built in")
    expect_in("   - `logs.read { on = ctx.on, file = ctx.error_log, since = ctx.since, grep = UPSTREAM_ERRORS,", out)
    out = steps("auth-failures")
    expect_in("   - `$ date +%s`", out, "argv literals as a command line")
    expect_in("   - `$ sh -c 'echo '\\''SHA-256 of the secret", out, "a top-level table unpacked into the argv, shell-quoted")
    out = steps("redis-failure")
    expect_in("6. **Flush the cache database** (`flush`)", out)
    expect_in("   - `action: FLUSHDB`", out)
    expect_in("   - `action: CONFIG REWRITE`", out)
    expect_in("   - `redis.ping(ctx.url, { timeout = ctx.timeout })`", out, "a local helper's calls, one level deep")
    out = steps("slow-queries")
    expect_in("   - `query: SELECT relname AS table, seq_scan", out)
    out = steps("bad-deploy")
    expect_in("   - `deploy.history { on = ctx.on, unit = ctx.unit, repo = ctx.repo", out)


def test_lab_nginx_is_real_and_stopped_by_pid(t):
    import json
    import socket
    t.on_cleanup(lambda: t.run(["lab", "down"], timeout=120, check_sanitizer_output=False))
    rc, out, err = t.run(["lab", "up"], timeout=120)
    expect_eq(rc, 0, out + err)
    expect_in("nginx      up", out)
    with open(os.path.join(t.dir, "state", "runbook", "lab", "lab.json")) as f:
        n = json.load(f)["nginx"]
    pid = int(n["pid"])
    expect_eq(os.path.realpath("/proc/%d/exe" % pid), "/usr/sbin/nginx", "the lab's nginx is Debian's")
    expect_in("127.0.0.1:%d" % int(n["port"]), open(n["conf"]).read(), "it listens on loopback only")
    rc, out, err = t.run(["lab", "stop", "nginx"])
    expect_eq(rc, 0, err)
    if os.path.exists("/proc/%d" % pid):
        fail("nginx (pid %d) still runs after lab stop nginx" % pid)
    try:
        socket.create_connection(("127.0.0.1", int(n["port"])), timeout=1).close()
        fail("something still listens on the lab's nginx port")
    except ConnectionRefusedError:
        pass
    rc, out, err = t.run(["lab", "start", "nginx"])
    expect_eq(rc, 0, err)
    with open(os.path.join(t.dir, "state", "runbook", "lab", "lab.json")) as f:
        pid = int(json.load(f)["nginx"]["pid"])
    rc, out, err = t.run(["lab", "down"], timeout=120)
    expect_eq(rc, 0, err)
    if os.path.exists("/proc/%d" % pid):
        fail("nginx (pid %d) still runs after lab down" % pid)
