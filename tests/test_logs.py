"""The logs module (stdlib/logs.lua) against real sources: a real log file read here (sys.tail,
sys.grep) and over a real sshd (`tail`, `grep -E | tail` on the far side); Docker Compose logs of a
real container under the private dockerd of tests/servers_docker.py (skipped, saying why, where
dockerd cannot run); Kubernetes through the stand-in kubectl (no cluster can run here).

journald: this test machine runs no systemd (`systemctl is-system-running` answers "offline" and
`journalctl` finds no journal files), so the journald path is tested as the kubectl one is: the
journalctl argv recorded by a stand-in `journalctl` that prints what the real one prints with
`-o json` (locally, and over SSH where the sshd sessions find the stand-in first on PATH)."""
import os
import time
from run import expect_eq, expect_in, expect_not_in, expect_rc, fail
from servers_ssh import SshLab


def iso(secs_ago):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - secs_ago))


def app_log(t):
    """A log of an hour: few errors in the previous hour, many in the last ten minutes."""
    lines = ["%s INFO started" % iso(7200)]           # outside since = "90m"
    for i in range(4):
        lines.append("%s ERROR upstream timed out after %d ms (request id=%08x)" % (iso(3000 - i * 600), 3000 + i, 0xdeadbeef + i))
    for i in range(30):
        lines.append("%s ERROR upstream timed out after %d ms (request id=%08x)" % (iso(300 - i), 100 + i, 0xabc00000 + i))
        lines.append("%s WARN slow query took %d ms" % (iso(300 - i), 900 + i))
    lines.append("%s ERROR connection refused by 10.0.0.%d:5432" % (iso(10), 7))
    lines.append("%s INFO request served" % iso(5))
    return t.write("app.log", "\n".join(lines) + "\n")


READ = '''
step "a" { title = "A", run = function(ctx)
  local logs = require "logs"
  local r = must(logs.read { %s })
  print("N", #r.lines, r.truncated)
  for _, l in ipairs(r.lines) do print("L", l.ts ~= nil, l.host or l.pod or "-", l.text) end
  for _, g in ipairs(logs.top(r.lines, "ERROR", 3)) do print("TOP", g.count, g.text) end
  local rate = logs.rate(r.lines, "ERROR", { recent = "10m", baseline = "1h" })
  print("RATE", rate.recent_count, rate.baseline_count, rate.text)
end },'''


def test_logs_file_here_window_grep_top_rate(t):
    path = app_log(t)
    t.runbook("lf", READ % 'file = "%s", since = "90m", lines = 1000' % path)
    rc, out, err = t.run(["exec", "lf", "--auto"])
    expect_rc((rc, out, err), 0)
    expect_in("N\t66\tfalse", out, "the line older than since is left out")
    expect_not_in("started", out)
    expect_in("TOP\t34\tERROR upstream timed out after <n> ms (request id=<id>)", out, "ids and numbers normalised")
    expect_in("TOP\t1\tERROR connection refused by <ip>:<n>", out)
    expect_in("RATE\t31\t4\tERROR lines: 0.1/min in the previous 1h00m, 3.1/min in the last 10m00s", out)
    # grep= through sys.grep, lines= keeps the last ones.
    t.runbook("lg", READ % 'file = "%s", grep = "refused|served", lines = 1' % path)
    rc, out, err = t.run(["exec", "lg", "--auto"])
    expect_rc((rc, out, err), 0)
    expect_in("N\t1\ttrue", out)
    expect_in("L\ttrue\tlocal\tINFO request served", out)


def test_logs_nginx_access_log_timestamps(t):
    now = time.time()
    def clf(ago, status):
        return '127.0.0.1 - - [%s] "GET /api HTTP/1.1" %d 12 "-" "curl"' % (
            time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now - ago)), status)
    path = t.write("access.log", "\n".join([clf(4000, 502), clf(100, 200), clf(50, 502), clf(40, 504)]) + "\n")
    t.runbook("ng", READ % 'file = "%s", since = "1h", grep = "\\" 50[24] "' % path)
    rc, out, err = t.run(["exec", "ng", "--auto"])
    expect_rc((rc, out, err), 0)
    expect_in("N\t2\tfalse", out, "the 502 of more than an hour ago is outside the window")


JOURNALCTL = r'''#!/usr/bin/env python3
# A stand-in for journalctl -o json: records its argv, prints two entries (one MESSAGE a string, one
# an array of bytes, as journald writes binary data), and applies --grep to the messages as it does.
import json, re, sys, time
with open("%s/journalctl.log", "a") as f:
    f.write("".join(a + "\037" for a in sys.argv[1:]) + "\n")
pattern = sys.argv[sys.argv.index("--grep") + 1] if "--grep" in sys.argv else None
now = int(time.time())
for ago, msg in ((30, "ERROR worker 1234 exited"), (20, list(b"ERROR bin"))):
    text = msg if isinstance(msg, str) else bytes(msg).decode()
    if pattern is None or re.search(pattern, text):
        print(json.dumps({"__REALTIME_TIMESTAMP": "%%d000000" %% (now - ago), "_HOSTNAME": "web01",
                          "_SYSTEMD_UNIT": "nginx.service", "MESSAGE": msg}))
'''


def journal_calls(t):
    with open(t.path("journalctl.log")) as f:
        return [l.split("\037")[:-1] for l in f.read().splitlines()]


def test_logs_journald_argv_here_and_over_ssh(t):
    bindir = t.path("jbin")
    t.write(os.path.join(bindir, "journalctl"), JOURNALCTL % t.dir, mode=0o755)
    lab = SshLab(t)
    server = lab.server("127.0.0.1", path_prepend=bindir)
    t.runbook("jr", '''
step "a" { title = "A", run = function(ctx)
  local logs = require "logs"
  local r = must(logs.read { unit = "nginx", since = "30m", lines = 100, grep = "ERROR" })
  for _, l in ipairs(r.lines) do print("HERE", l.host, l.text) end
  r = must(logs.read { on = "%s", unit = "nginx", since = "1h" })
  for _, l in ipairs(r.lines) do print("SSH", l.host, l.text) end
end },''' % server.target())
    t0 = time.monotonic()
    rc, out, err = t.run(["exec", "jr", "--auto"], env=lab.env({"PATH": bindir + ":" + os.environ["PATH"]}))
    expect_rc((rc, out, err), 0)
    expect_in("HERE\tweb01\tERROR worker 1234 exited\nHERE\tweb01\tERROR bin", out, "JSON MESSAGE, string and bytes")
    expect_in("SSH\t%s\tERROR worker 1234 exited" % server.target()[len("ssh://"):], out, "a remote line names the host as the target does")
    calls = journal_calls(t)
    expect_eq(calls[0], ["--no-pager", "-o", "json", "-u", "nginx", "--since", "-1800s", "-n", "100",
                         "--grep", "ERROR", "--case-sensitive=true"])
    expect_eq(calls[1], ["--no-pager", "-o", "json", "-u", "nginx", "--since", "-3600s", "-n", "500"])
    if time.monotonic() - t0 > 20:
        fail("took too long")


def test_logs_file_over_ssh(t):
    path = app_log(t)
    lab = SshLab(t)
    server = lab.server("127.0.0.1")
    t.runbook("fs", READ % 'on = "%s", file = "%s", grep = "refused", since = "1h"' % (server.target(), path))
    rc, out, err = t.run(["exec", "fs", "--auto"], env=lab.env())
    expect_rc((rc, out, err), 0)
    expect_in("N\t1\tfalse", out)
    expect_in("L\ttrue\t%s\tERROR connection refused by 10.0.0.7:5432" % server.target()[len("ssh://"):], out)
    with open(t.the_transcript()) as f:
        expect_in("grep -E -e", f.read(), "the remote grep is recorded")


KUBECTL = r'''#!/bin/sh
for a in "$@"; do printf '%%s\037' "$a"; done >> %s/kubectl.log; echo >> %s/kubectl.log
now=$(date -u +%%Y-%%m-%%dT%%H:%%M:%%S)
case " $* " in
  *" logs "*)
    echo "[pod/api-7d9f-a/api] ${now}.123456789Z ERROR token expired for user 42"
    echo "[pod/api-7d9f-b/api] ${now}.223456789Z ERROR token expired for user 43"
    echo "[pod/api-7d9f-b/api] ${now}.323456789Z INFO ok" ;;
esac
'''


def test_logs_kubectl_selector_names_each_pod(t):
    bindir = t.path("kbin")
    t.write(os.path.join(bindir, "kubectl"), KUBECTL % (t.dir, t.dir), mode=0o755)
    t.runbook("kl", READ % 'on = "k8s://prod/pods?l=app=api", since = "15m", lines = 200, grep = "ERROR"')
    rc, out, err = t.run(["exec", "kl", "--auto"], env={"PATH": bindir + ":" + os.environ["PATH"]})
    expect_rc((rc, out, err), 0)
    expect_in("L\ttrue\tapi-7d9f-a\tERROR token expired for user 42\nL\ttrue\tapi-7d9f-b\tERROR token expired for user 43", out)
    expect_in("TOP\t2\tERROR token expired for user <n>", out)
    with open(t.path("kubectl.log")) as f:
        calls = [l.split("\037")[:-1] for l in f.read().splitlines()]
    expect_eq(calls, [["-n", "prod", "logs", "--timestamps", "--prefix", "--since=900s", "--tail=200",
                       "-l", "app=api", "--max-log-requests=20"]])


def test_logs_bad_arguments_are_errors(t):
    t.runbook("bad", '''
step "a" { title = "A", run = function(ctx)
  local logs = require "logs"
  print("E1", pcall(logs.read, { on = "k8s://prod/deployment/api", unit = "x" }))
  print("E2", pcall(logs.read, { file = "/x", unit = "y" }))
  print("E3", select(2, logs.read { file = "/nonexistent/log" }))
end },''')
    rc, out, err = t.run(["exec", "bad", "--auto"])
    expect_in("E1\tfalse\tlogs.read: unit= is journald's", out)
    expect_in("E2\tfalse\tlogs.read: give one of unit=, file= or service=", out)
    expect_in("E3\tsys.tail /nonexistent/log", out)


def test_logs_docker_compose(t):
    from servers_docker import DockerD
    why = DockerD.unavailable()
    if why:
        print("SKIP: Docker Compose logs are not tested: " + why)
        return
    d = DockerD(t)
    d.image()
    proj = d.compose({"web": ["/bin/sh", "-c", "echo ERROR db down; echo ERROR db down; echo INFO up; exec sleep 1000"]})
    t.runbook("cl", READ % 'on = "compose://%s:web", since = "10m", grep = "ERROR"' % proj)
    rc, out, err = t.run(["exec", "cl", "--auto"], env=d.env(), timeout=90)
    expect_rc((rc, out, err), 0)
    expect_in("N\t2\tfalse", out)
    expect_in("TOP\t2\tERROR db down", out)
    if "L\ttrue\t" not in out or "web" not in out.split("L\ttrue\t")[1].split("\t")[0]:
        fail("each line names its container, with a time: " + out)


test_logs_docker_compose.timeout = 150
test_logs_journald_argv_here_and_over_ssh.timeout = 90
test_logs_file_over_ssh.timeout = 90


def test_logs_journald_on_a_fleet_names_each_host(t):
    bindir = t.path("jbin")
    t.write(os.path.join(bindir, "journalctl"), JOURNALCTL % t.dir, mode=0o755)
    lab = SshLab(t)
    servers = [lab.server("127.0.0.%d" % i, path_prepend=bindir) for i in (1, 2)]
    inv = lab.inventory({"web": [("web1", servers[0]), ("web2", servers[1])]})
    t.runbook("fl", READ % 'on = "inventory:web", unit = "nginx", grep = "exited"')
    rc, out, err = t.run(["exec", "fl", "--auto"], env=lab.env({"RUNBOOK_INVENTORY": inv}))
    expect_rc((rc, out, err), 0)
    expect_in("N\t2\tfalse", out, "one line from each host")
    expect_in("L\ttrue\tweb1\tERROR worker 1234 exited", out)
    expect_in("L\ttrue\tweb2\tERROR worker 1234 exited", out)
    expect_in("TOP\t2\tERROR worker <n> exited", out)


test_logs_journald_on_a_fleet_names_each_host.timeout = 90

SLOW = r'''#!/bin/sh
case "$1" in
  --no-pager) exec sleep 30 ;;
esac
'''


def test_logs_read_is_bounded_in_time_and_size(t):
    bindir = t.path("sbin")
    t.write(os.path.join(bindir, "journalctl"), SLOW, mode=0o755)
    t.write(os.path.join(bindir, "kubectl"),
            "#!/bin/sh\ni=0\nwhile [ $i -lt 2000 ]; do echo \"[pod/api-1/api] 2099-01-01T00:00:00Z line $i of a chatty pod\"; i=$((i+1)); done\n",
            mode=0o755)
    t.runbook("bd", '''
step "a" { title = "A", run = function(ctx)
  local logs = require "logs"
  local t0 = os.time()
  local r, err, kind = logs.read { unit = "nginx", timeout = "1s" }
  print("SLOW", r, kind, err)
  r = must(logs.read { on = "k8s://prod/pods?l=app=api", max_bytes = 4096, since = "1h" })
  print("BIG", #r.lines < 2000, r.truncated)
end },''')
    t0 = time.monotonic()
    rc, out, err = t.run(["exec", "bd", "--auto"], env={"PATH": bindir + ":" + os.environ["PATH"]})
    took = time.monotonic() - t0
    expect_rc((rc, out, err), 0)
    expect_in("SLOW\tnil\ttimeout\t", out)
    expect_in("BIG\ttrue\ttrue", out)
    if took > 10:
        fail("logs.read with timeout = 1s took %.1f s in all" % took)
