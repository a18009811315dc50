"""The shipped runbooks read the logs where their playbook does (issue 15, item 4): a log file with the
tell-tale lines makes the runbook show the most frequent lines and report the coded finding; with no
log source given the step says so and the run goes on. They take `on = target` for the component they
run commands on: disk-full measures a host over real OpenSSH (sshd of tests/servers_ssh.py) and its
transcript's probe records name that host; redis-failure restarts Redis through `service` over SSH,
answered by a stand-in `systemctl` that starts a real redis-server (no systemd runs here)."""
import os
import signal
import time

from run import expect_eq, expect_in, expect_not_in, expect_rc, fail, free_port
from servers_ssh import SshLab, refusing_port


def shipped(t, extra=None):
    env = {"RUNBOOK_PATH": os.path.join(t.repo, "runbooks")}
    env.update(extra or {})
    return env


def records(t, path=None):
    _, _, recs = t.read_transcript(path or t.the_transcript())
    return recs


def codes(recs):
    return {r["code"] for r in recs if r.get("code") and (r["type"] == "check" or r.get("level") == "finding")}


def newest(t, before):
    new = sorted(set(t.transcripts()) - before)
    if len(new) != 1:
        fail("expected one new transcript, got %r" % new)
    return new[0]


# runbook, log lines (the tell-tale one three times, noise twice), the code, extra inputs.
CASES = [
    ("redis-failure", "1234:M 07 Dec 2026 01:00:00.000 # -OOM command not allowed when used memory > 'maxmemory'.",
     "redis.oom", ["url=redis://127.0.0.1:%d/0" % refusing_port(), "timeout=1s"]),
    ("database-unavailable", "FATAL:  sorry, too many clients already",
     "pg.too_many_clients", ["url=postgresql://app@127.0.0.1:%d/app" % refusing_port(), "timeout=1s"]),
    ("disk-full", "ERROR could not write /var/lib/app/upload.tmp: No space left on device",
     "disk.enospc", ["path=/tmp", "threshold=100", "logs=%(dir)s/nologs", "tmp=%(dir)s/notmp"]),
    ("api-down", "ERROR OSError: [Errno 98] Address already in use",
     "api.port_in_use", ["url=http://127.0.0.1:%d/health" % refusing_port(), "timeout=1s"]),
]


def test_logs_show_the_top_lines_and_the_coded_cause(t):
    os.makedirs(t.path("nologs"))
    os.makedirs(t.path("notmp"))
    for name, line, code, inputs in CASES:
        log = t.write("%s.log" % name, "\n".join([line, "INFO request served in 12 ms", line,
                                                  "INFO request served in 15 ms", line]) + "\n")
        before = set(t.transcripts())
        rc, out, err = t.run(["exec", name, "--dry-run", "log_file=" + log] + [i % {"dir": t.dir} for i in inputs],
                             env=shipped(t), timeout=60)
        if rc not in (0, 1, 3):
            fail("%s: exit %d\n%s\n%s" % (name, rc, out, err))
        expect_in("(most frequent, 5 lines)", out, name)
        expect_in("        3  " + line[:60], out, name + ": the tell-tale line, counted")
        expect_in("        2  INFO request served in 12 ms", out, name + ": the noise, grouped")
        got = codes(records(t, newest(t, before)))
        if code not in got:
            fail("%s: no finding %s in the transcript (codes: %r)\n%s" % (name, code, sorted(got), out))


test_logs_show_the_top_lines_and_the_coded_cause.timeout = 180


def test_no_log_source_is_said_and_the_run_goes_on(t):
    port = refusing_port()
    rc, out, err = t.run(["exec", "redis-failure", "--dry-run", "url=redis://127.0.0.1:%d/0" % port, "timeout=1s"],
                         env=shipped(t))
    expect_in("no log source given for Redis's log", out)
    expect_in("Redis is down", out, "the next step ran")
    expect_not_in("redis.oom", str(codes(records(t))))


def test_disk_full_measures_the_host_it_is_pointed_at_over_ssh(t):
    lab = SshLab(t)
    s = lab.server("127.0.0.2")
    log = t.write("app.log", "ERROR write failed: No space left on device\n" * 2 + "INFO ok\n")
    t0 = time.monotonic()
    rc, out, err = t.run(["exec", "disk-full", "--dry-run", "on=" + s.target(), "path=/tmp", "threshold=100",
                          "log_file=" + log], env=shipped(t, lab.env()), timeout=90)
    took = time.monotonic() - t0
    expect_rc((rc, out, err), 0)
    expect_in("on %s this step is not available" % s.target(), out, "the file walks say they run here only")
    recs = records(t)
    there = [r for r in recs if r["type"] == "probe" and r.get("on") == s.target()]
    targets = " | ".join(r["target"] for r in there)
    for what in ("stat -f", "du -x", "tail -n", "/proc/self/mountinfo"):
        expect_in(what, targets, "a probe run on the host")
    expect_eq({r.get("host") for r in there}, {s.target()[len("ssh://"):]}, "the records name the host")
    local = [r for r in recs if r["type"] == "probe" and not r.get("on")]
    expect_eq(local, [], "no probe ran here")
    if "disk.enospc" not in codes(recs):
        fail("the remote log's ENOSPC lines were not found:\n" + out)
    if took > 60:
        fail("took %.1f s" % took)


test_disk_full_measures_the_host_it_is_pointed_at_over_ssh.timeout = 120


SYSTEMCTL = r'''#!/bin/sh
# A stand-in for systemctl (no systemd runs here): records its argv; "restart redis-server" starts a
# real redis-server on the port the test chose, as the unit would.
echo "$*" >> "%(dir)s/systemctl.log"
case "$1 $2" in
  "restart redis-server")
    exec redis-server --port %(port)d --bind 127.0.0.1 --daemonize yes --pidfile "%(dir)s/redis.pid" \
      --dir "%(dir)s" --save '' --appendonly no --logfile "%(dir)s/redis.log" ;;
  show*) printf 'MainPID=4242\nActiveState=active\nSubState=running\n' ;;
esac
'''


def test_redis_restart_goes_through_the_service_on_its_host(t):
    lab = SshLab(t)
    bindir = t.path("rbin")
    port = free_port()
    t.write(os.path.join(bindir, "systemctl"), SYSTEMCTL % {"dir": t.dir, "port": port}, mode=0o755)
    s = lab.server("127.0.0.3", path_prepend=bindir)

    def stop_redis():
        try:
            with open(t.path("redis.pid")) as f:
                os.kill(int(f.read().strip()), signal.SIGKILL)
        except (OSError, ValueError):
            pass
    t.on_cleanup(stop_redis)
    rc, out, err = t.run(["exec", "redis-failure", "--yes", "on=" + s.target(), "url=redis://127.0.0.1:%d/0" % port,
                          "timeout=1s", "restart_wait=20s"], env=shipped(t, lab.env()), timeout=90)
    expect_rc((rc, out, err), 0)
    expect_in("ACTION  restart Redis (refused)\n          $ systemctl restart redis-server", out)
    expect_in("resolved: Redis answers", out)
    with open(t.path("systemctl.log")) as f:
        expect_eq(f.read().splitlines(), ["restart redis-server"], "what systemctl was asked, on the host")
    ran = [(r["step"], r["target"], r.get("on"), r["outcome"]) for r in records(t) if r["type"] == "action_result"]
    expect_eq(ran, [("restart", "systemctl restart redis-server", s.target(), "exit 0")], "the restart, run on the host")


test_redis_restart_goes_through_the_service_on_its_host.timeout = 120
