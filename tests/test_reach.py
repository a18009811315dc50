"""Reach: sh.read / sh.action with `on = target` over real OpenSSH servers on loopback (sshd started
by tests/servers_ssh.py, an inventory read by the real ansible-inventory), and over a stand-in
`kubectl` that records its argv (no cluster can run here). Each case asserts its elapsed time
against its deadline."""
import json
import os
import re
import signal
import subprocess
import time
from run import expect_eq, expect_in, expect_not_in, expect_rc, fail
from servers import wait_until
from servers_ssh import USER, SshLab, refusing_port

FORMS = "the accepted forms are local, ssh://[user@]host[:port], inventory:GROUP"
INPUT = 'on = input.target { default = "local", env = "X_ON" }'


def records(t, path=None):
    _, _, recs = t.read_transcript(path or t.the_transcript())
    return recs


def fleet_lab(t, n=4, known=None):
    """n sshd on 127.0.0.1..n, an inventory group web of them (web01..)."""
    lab = SshLab(t)
    servers = [lab.server("127.0.0.%d" % (i + 1), known=(known is None or i in known)) for i in range(n)]
    inv = lab.inventory({"web": [("web%02d" % (i + 1), s) for i, s in enumerate(servers)]})
    return lab, servers, inv


def test_reach_bad_target_is_an_input_error(t):
    t.runbook("bad", 'step "a" { title = "A", run = function(ctx) end },', inputs=INPUT)
    for bad in ("ssh//web1", "ssh://", "inventory:", "k8s://prod/api", "compose://", "ftp://x"):
        rc, out, err = t.run(["exec", "bad", "on=" + bad])
        expect_rc((rc, out, err), 2, "on=" + bad)
        expect_in(FORMS, err, "the message for " + bad)
    rc, out, err = t.run(["exec", "bad"], env={"X_ON": "nowhere"})
    expect_rc((rc, out, err), 2, "X_ON=nowhere")
    expect_in("$X_ON", err)


def test_reach_healthy_fleet_from_an_ansible_inventory(t):
    lab, servers, inv = fleet_lab(t, 4)
    t.runbook("fleet", '''
step "a" { title = "A", run = function(ctx)
  local f = must(sh.read { "uname", "-s", on = "inventory:web", quiet = true })
  for _, g in ipairs(f.groups) do print("GROUP", g.nodes, g.count, (g.output:gsub("\\n", ""))) end
  print("OK", #f.ok, "FAILED", #f.failed, "UNREACHABLE", #f.unreachable)
  local one = must(sh.read { "sh", "-c", "echo $SSH_CONNECTION", on = ctx.on, quiet = true })
  print("ONE", one.code, one.stdout)
end },''', inputs=INPUT)
    t0 = time.monotonic()
    rc, out, err = t.run(["exec", "fleet", "on=" + servers[1].target()], env=lab.env({"RUNBOOK_INVENTORY": inv}))
    took = time.monotonic() - t0
    expect_rc((rc, out, err), 0)
    expect_in("GROUP\tweb[01-04]\t4\tLinux\n", out)
    expect_in("OK\t4\tFAILED\t0\tUNREACHABLE\t0\n", out)
    expect_in(" %d\n" % servers[1].port, out.split("ONE")[1], "the single call reached the second server")
    if took > 15:
        fail("four loopback hosts and one more took %.1f s" % took)
    probes = [r for r in records(t) if r["type"] == "probe" and r.get("on")]
    hosts = sorted(r["host"] for r in probes if r["on"] == "inventory:web" and r.get("host"))
    expect_eq(hosts, ["web01", "web02", "web03", "web04"], "probe records name the target and host")
    expect_eq([r["on"] for r in probes if r["on"].startswith("ssh://")], [servers[1].target()], "the single call's record")
    expect_eq([r["target"] for r in probes if r["on"] == "inventory:web" and not r.get("host")],
              ["ansible-inventory -i %s --list" % inv], "the inventory was read by ansible-inventory")


def test_reach_failures_are_told_apart_within_their_deadline(t):
    lab = SshLab(t)
    good = lab.server("127.0.0.1")
    hung = lab.server("127.0.0.2")
    unknown = lab.server("127.0.0.3", known=False)
    hung.pause()
    refused = "ssh://%s@127.0.0.1:%d" % (USER, refusing_port())
    t.runbook("fails", '''
step "a" { title = "A", run = function(ctx)
  local function try(on, argv, timeout)
    argv.on, argv.quiet, argv.timeout = on, true, timeout
    local r, err, kind = sh.read(argv)
    print(string.format("RESULT %%s code=%%s kind=%%s err=%%s", on, r and tostring(r.code) or "-", tostring(kind), tostring(err)))
  end
  try("%s", { "sh", "-c", "exit 255" }, 5)
  try("%s", { "true" }, 5)
  try("%s", { "true" }, 5)
  try("%s", { "true" }, 2)
end },''' % (good.target(), refused, unknown.target(), hung.target()))
    t0 = time.monotonic()
    rc, out, err = t.run(["exec", "fails"], env=lab.env())
    took = time.monotonic() - t0
    expect_rc((rc, out, err), 0)
    lines = {m.group(1): m.group(0) for m in re.finditer(r"RESULT (\S+) .*", out)}
    expect_in("code=255 kind=nil", lines[good.target()], "a remote exit 255 is the command's")
    expect_in("kind=refused", lines[refused])
    u = lines[unknown.target()]
    expect_in("kind=hostkey", u)
    expect_in("ssh-keygen -F '[127.0.0.3]:%d'" % unknown.port, u)
    expect_in("ssh-keyscan -p %d 127.0.0.3" % unknown.port, u)
    h = lines[hung.target()]
    expect_in("kind=timeout", h)
    expect_in("one deadline for connect, auth and the command", h)
    if took > 2 + 8:
        fail("the hung host's 2 s deadline (and three quick calls) took %.1f s" % took)
    hung_rec = [r for r in records(t) if r["type"] == "probe" and r.get("on") == hung.target()]
    expect_eq([r["outcome"] for r in hung_rec], ["timeout"], "the hung host's record")
    if not 1900 <= hung_rec[0]["duration_ms"] <= 2000 + 3000:
        fail("the hung host's call lasted %s ms for a 2 s deadline" % hung_rec[0]["duration_ms"])
    # A wrong key: the same server, an identity it does not know.
    lab.write_config(lab.wrong_key)
    os.makedirs(t.path("run2"), mode=0o700)   # no master of the first run's to reuse
    t0 = time.monotonic()
    rc, out, err = t.run(["exec", "fails"], env=lab.env({"XDG_RUNTIME_DIR": t.path("run2")}))
    took = time.monotonic() - t0
    expect_in("kind=auth", re.search(r"RESULT %s .*" % re.escape(good.target()), out).group(0), "the wrong key")
    if took > 2 + 8:
        fail("the second run took %.1f s" % took)


def test_reach_ctrl_c_during_a_fleet_call(t):
    lab, servers, inv = fleet_lab(t, 4)
    t.runbook("slowfleet", '''
step "slow" { title = "Slow", run = function(ctx)
  must(sh.read { "sh", "-c", "echo started; sleep 30", on = "inventory:web", timeout = 60 })
  ctx:note("FLEET FINISHED")
end },''')
    p = t.pty(["exec", "slowfleet", "--auto", "--transcript", t.path("s.cast")], env=lab.env({"RUNBOOK_INVENTORY": inv}))
    for _ in range(4):
        p.expect(r"\[web0\d\] started\n", timeout=20)
    t0 = time.monotonic()
    p.ctrl_c()
    p.expect(r"Enter: retry · s: skip · r: repl · q: quit > ", timeout=5)
    took = time.monotonic() - t0
    if took > 0.5:
        fail("back at the menu %.3f s after Ctrl-C (at most 0.5 s)" % took)
    left = [c for _, c in lab.ssh_processes() if "[mux]" not in c]
    expect_eq(left, [], "ssh clients left running after Ctrl-C")
    p.sendline("q")
    p.wait()
    expect_not_in("FLEET FINISHED", p.text)
    outcomes = sorted((r["host"], r["outcome"]) for r in records(t, t.path("s.cast")) if r["type"] == "probe" and r.get("host"))
    expect_eq(outcomes, [("web0%d" % i, "interrupted") for i in range(1, 5)], "the fleet's records")


ACTION = '''
step "roll" { title = "Roll", run = function(ctx)
  local r, err, kind, res = sh.action { "p=${SSH_CONNECTION##* }; echo ran >> %s/ran-$p; [ $p != %d ]",
    shell = true, on = "inventory:web", batch = 2, pause = %s, summary = "restart the app" }
  if res then
    print("NOT_RUN", table.concat(res.not_run, ","), "FAILED", table.concat(res.failed, ","), "OK", table.concat(res.ok, ","))
  end
  must(r, err, kind)
end },'''


def ran_on(t, servers):
    out = {}
    for s in servers:
        p = t.path("ran-%d" % s.port)
        out[s.name] = open(p).read().count("ran") if os.path.exists(p) else 0
    return [out[s.name] for s in servers]


def test_reach_fleet_action_batched_stops_at_the_first_failure(t):
    lab, servers, inv = fleet_lab(t, 4)
    t.runbook("roll", ACTION % (t.dir, servers[1].port, 0))
    p = t.pty(["exec", "roll", "--auto", "--transcript", t.path("r.cast")], env=lab.env({"RUNBOOK_INVENTORY": inv}))
    p.expect(r"ACTION  restart the app\n")
    shown = p.expect(r"Type yes to run it, or n to skip: ").group(0)
    block = p.text
    expect_in("$ p=${SSH_CONNECTION##* }; echo ran >> %s/ran-$p; [ $p != %d ]" % (t.dir, servers[1].port), block,
              "the command, once")
    expect_in("on 4 hosts of inventory:web: web[01-04]", block)
    expect_in("in 2 batches of 2; stop after 0 failures", block)
    expect_in("-o BatchMode=yes -o StrictHostKeyChecking=yes -o ControlMaster=auto -o ControlPersist=60", block)
    expect_in("-- HOST 'p=${SSH_CONNECTION##* }; echo ran", block, "the argv, quoted once for the remote shell")
    expect_eq(block.count("ACTION"), 1, "one question for the fleet")
    t0 = time.monotonic()
    p.sendline("yes")
    p.expect(r"Enter: retry · s: skip · r: repl · q: quit > ", timeout=20)
    took = time.monotonic() - t0
    p.sendline("q")
    p.wait()
    expect_in("NOT_RUN\tweb03,web04\tFAILED\tweb02\tOK\tweb01", p.text)
    expect_eq(ran_on(t, servers), [1, 1, 0, 0], "where it ran")
    if took > 10:
        fail("one batch of two loopback hosts took %.1f s" % took)
    recs = records(t, t.path("r.cast"))
    res = sorted((r["host"], r["outcome"]) for r in recs if r["type"] == "action_result")
    expect_eq(res, [("web01", "exit 0"), ("web02", "exit 1"), ("web03", "not run"), ("web04", "not run")])
    expect_eq(len([r for r in recs if r["type"] == "plan"]), 1, "plan records")


def test_reach_resume_after_kill_9_mid_fleet_action(t):
    from signing import keypair, sign_by_config
    sign_by_config(t, keypair(t))   # resumed without a terminal: only a signed transcript is trusted
    lab, servers, inv = fleet_lab(t, 4)
    t.runbook("roll2", ACTION % (t.dir, 1, 60))
    env = lab.env({"RUNBOOK_INVENTORY": inv})
    old = t.path("old.cast")
    proc = t.spawn(["exec", "roll2", "--auto", "--yes", "--transcript", old], env=env)

    def first_batch_recorded():
        if not os.path.exists(old):
            return False
        with open(old) as f:
            return f.read().count('action_result') >= 2
    wait_until("the first batch's results", first_batch_recorded, 30)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(10)
    expect_eq(ran_on(t, servers), [1, 1, 0, 0], "the first batch only, before the kill")
    new = t.path("new.cast")
    t0 = time.monotonic()
    rc, out, err = t.run(["exec", "--resume", old, "--auto", "--yes", "--transcript", new], env=env, timeout=60)
    took = time.monotonic() - t0
    expect_rc((rc, out, err), 0)
    expect_in("on 2 hosts of inventory:web: web[03-04]", out, "only the hosts not done are asked")
    expect_in("already run there in the earlier session (not repeated): web[01-02]", out)
    expect_eq(ran_on(t, servers), [1, 1, 1, 1], "each host once")
    if took > 20:
        fail("the resumed session took %.1f s" % took)
    res = sorted((r["host"], r["outcome"]) for r in records(t, new) if r["type"] == "action_result")
    expect_eq(res, [("web01", "not repeated"), ("web02", "not repeated"), ("web03", "exit 0"), ("web04", "exit 0")])


def test_reach_secrets_never_reach_the_transcript(t):
    lab = SshLab(t)
    s = lab.server("127.0.0.1")
    bindir = kubectl_standin(t)
    canary = "CANARYreach77"
    t.runbook("secret", '''
step "a" { title = "A", run = function(ctx)
  must(sh.read { "echo", ctx.pw, on = ctx.on })
  must(sh.action { "echo", "pw=" .. ctx.pw, on = ctx.on })
  must(sh.read { "echo", ctx.pw, on = "k8s://prod/deployment/api" })
  must(sh.action { "echo", ctx.pw, on = "k8s://prod/pods?l=app=api" })
end },''', inputs=INPUT + ', pw = input.secret { env = "PW" }')
    rc, out, err = t.run(["exec", "secret", "--yes", "on=" + s.target()],
                         env=lab.env({"PW": canary, "PATH": bindir + ":" + os.environ["PATH"],
                                      "KUBECTL_LOG": t.path("kubectl.log")}))
    expect_rc((rc, out, err), 0)
    with open(t.the_transcript()) as f:
        text = f.read()
    expect_not_in(canary, text, "the transcript")
    expect_not_in(canary, out, "the terminal")
    ons = {r.get("on") for r in records(t) if r["type"] in ("probe", "action_start", "action_result")}
    expect_eq(ons, {s.target(), "k8s://prod/deployment/api", "k8s://prod/pods?l=app=api"}, "records name their target")


KUBECTL = r'''#!/bin/sh
# A stand-in for kubectl: records its argv, answers as the real one would for these calls.
for a in "$@"; do printf '%s\037' "$a"; done >> "$KUBECTL_LOG"; echo >> "$KUBECTL_LOG"
case " $* " in
  *" get pods "*) printf 'pod/api-7d9f-a\npod/api-7d9f-b\n' ;;
  *" rollout status "*) echo 'deployment "api" successfully rolled out' ;;
  *" rollout restart "*) echo 'deployment.apps/api restarted' ;;
  *" exec deployment/distroless "*) echo 'error: Internal error occurred: error executing command in container: failed to exec in container: starting container process caused: exec: "/bin/sh": stat /bin/sh: no such file or directory: unknown' >&2; exit 126 ;;
  *" exec "*) while [ "$1" != "--" ]; do shift; done; shift; exec "$@" ;;
esac
'''


def kubectl_standin(t):
    bindir = t.path("bin")
    t.write(os.path.join(bindir, "kubectl"), KUBECTL, mode=0o755)
    return bindir


def kubectl_calls(t):
    with open(t.path("kubectl.log")) as f:
        return [l.split("\037")[:-1] for l in f.read().splitlines()]


def test_reach_kubectl_argv(t):
    bindir = kubectl_standin(t)
    t.runbook("k8s", '''
step "a" { title = "A", run = function(ctx)
  local r = must(sh.read { "echo", "a b", on = "k8s://staging/prod/deployment/api", quiet = true })
  print("ONE", r.stdout)
  local f = must(sh.read { "echo", "hi", on = "k8s://prod/pods?l=app=api,tier!=cache", quiet = true })
  print("PODS", f.groups[1].nodes, f.groups[1].count)
end },''')
    t0 = time.monotonic()
    rc, out, err = t.run(["exec", "k8s"], env={"PATH": bindir + ":" + os.environ["PATH"], "KUBECTL_LOG": t.path("kubectl.log")})
    took = time.monotonic() - t0
    expect_rc((rc, out, err), 0)
    expect_in("ONE\ta b\n", out)
    expect_in("PODS\tapi-7d9f-a,api-7d9f-b\t2", out)
    calls = kubectl_calls(t)
    expect_eq(calls[0], ["--context", "staging", "-n", "prod", "exec", "deployment/api", "--", "echo", "a b"])
    expect_eq(calls[1], ["-n", "prod", "get", "pods", "-l", "app=api,tier!=cache", "-o", "name"])
    expect_eq(sorted(c[3] for c in calls[2:]), ["pod/api-7d9f-a", "pod/api-7d9f-b"])
    if took > 10:
        fail("took %.1f s" % took)


def test_reach_session_lock_covers_the_targets_hosts(t):
    lab, servers, inv = fleet_lab(t, 2)
    t.runbook("held", '''
step "a" { title = "A", run = function(ctx)
  must(sh.read { "sh", "-c", "echo holding; sleep 30", on = ctx.on, timeout = 60 })
end },''', inputs=INPUT)
    env = lab.env({"RUNBOOK_INVENTORY": inv})
    first = t.spawn(["exec", "held", "--auto", "on=" + servers[1].target()], env=env)
    wait_until("the first session holds its lock", lambda: any(
        "holding" in open(p, errors="replace").read() for p in t.transcripts()), 20)
    t0 = time.monotonic()
    rc, out, err = t.run(["exec", "held", "--auto", "on=inventory:web"], env=env)
    took = time.monotonic() - t0
    expect_rc((rc, out, err), 6, "a fleet that includes the first session's host")
    expect_in("host ssh:127.0.0.2:%d" % servers[1].port, err)
    if took > 10:
        fail("the refusal took %.1f s" % took)
    rc, out, err = t.run(["exec", "held", "--auto", "--timeout", "1s", "on=" + servers[0].target()], env=env)
    expect_rc((rc, out, err), 1, "another host of the same runbook is not locked (its step times out)")
    expect_in("holding", out)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait(10)


SYSTEMCTL = r'''#!/bin/sh
# A stand-in for systemctl (no systemd runs here): records its argv, answers as systemd would.
echo "$*" >> "%s/systemctl.${SSH_CONNECTION##* }.log"
case "$1" in
  show) printf 'MainPID=4242\nActiveState=active\nSubState=running\nActiveEnterTimestamp=Mon 2026-12-07 00:00:00 UTC\n' ;;
esac
'''


def test_reach_service_over_ssh_and_kubernetes(t):
    lab = SshLab(t)
    bindir = t.path("rbin")
    t.write(os.path.join(bindir, "systemctl"), SYSTEMCTL % t.dir, mode=0o755)
    servers = [lab.server("127.0.0.%d" % i, path_prepend=bindir) for i in (1, 2)]
    inv = lab.inventory({"cache": [("cache1", servers[0]), ("cache2", servers[1])]})
    kbin = kubectl_standin(t)
    t.runbook("svc", '''
step "a" { title = "A", run = function(ctx)
  local service = require "service"
  local st = must(service.status { on = "inventory:cache", name = "redis-server" })
  print("ACTIVE", table.concat(st.active, ","), st.by_host.cache1.pid, st.manager)
  must(service.restart { on = "%s", name = "redis-server" })
  must(service.restart { on = "k8s://prod/deployment/api", timeout = 30 })
  local w = must(service.wait_ready { on = "%s", name = "redis-server", timeout = 5 })
  print("READY", w.state, w.sub)
end },''' % (servers[1].target(), servers[1].target()))
    t0 = time.monotonic()
    rc, out, err = t.run(["exec", "svc", "--yes"], env=lab.env({"RUNBOOK_INVENTORY": inv, "KUBECTL_LOG": t.path("kubectl.log"),
                                                               "PATH": kbin + ":" + os.environ["PATH"]}))
    took = time.monotonic() - t0
    expect_rc((rc, out, err), 0)
    expect_in("ACTIVE\tcache1,cache2\t4242\tsystemd", out)
    expect_in("ACTION  restart redis-server on %s\n          $ systemctl restart redis-server" % servers[1].target(), out)
    expect_in("READY\tactive\trunning", out)
    with open(t.path("systemctl.%d.log" % servers[1].port)) as f:
        expect_eq(f.read().splitlines()[1], "restart redis-server", "what systemctl was asked on the second host")
    with open(t.path("systemctl.%d.log" % servers[0].port)) as f:
        expect_not_in("restart", f.read(), "the first host was not restarted")
    calls = kubectl_calls(t)
    expect_eq(calls, [["-n", "prod", "rollout", "restart", "deployment/api"],
                      ["-n", "prod", "rollout", "status", "deployment/api", "--timeout=30s"]])
    if took > 15:
        fail("took %.1f s" % took)


def test_reach_docker_compose(t):
    from servers_docker import DockerD
    why = DockerD.unavailable()
    if why:
        print("SKIP: Docker Compose is not tested: " + why)
        return
    d = DockerD(t)
    d.image()
    proj = d.compose({"app": ["/usr/bin/sleep", "1000"]})
    canary = "CANARYcompose31"
    t.runbook("comp", '''
step "a" { title = "A", run = function(ctx)
  local service = require "service"
  local r = must(sh.read { "sh", "-c", "echo in-container; echo $0", ctx.pw, on = ctx.on, quiet = true })
  print("READ", (r.stdout:gsub("\\n", " ")))
  local _, err, kind = sh.read { "true", on = "compose://%s:nosuch", quiet = true }
  print("NOSUCH", kind, err)
  local before = must(service.status { on = ctx.on })
  must(service.restart { on = ctx.on })
  local after = must(service.wait_ready { on = ctx.on, timeout = 20 })
  print("STATUS", before.state, after.state, before.pid ~= after.pid)
end },''' % proj, inputs=INPUT + ', pw = input.secret { env = "PW" }')
    t0 = time.monotonic()
    rc, out, err = t.run(["exec", "comp", "--yes", "on=compose://%s:app" % proj], env=dict(d.env(), PW=canary), timeout=120)
    took = time.monotonic() - t0
    expect_rc((rc, out, err), 0)
    expect_in("READ\tin-container %s " % "***", out.replace(canary, "***"))
    expect_in("NOSUCH\tunreachable", out)
    expect_in("STATUS\trunning\trunning\ttrue", out)
    expect_in("restart app", out, "the gate shows the compose restart")
    with open(t.the_transcript()) as f:
        expect_not_in(canary, f.read(), "the transcript")
    if took > 60:
        fail("took %.1f s" % took)


def test_reach_sys_on_a_target_is_parsed_as_locally(t):
    lab, servers, inv = fleet_lab(t, 3)
    kbin = kubectl_standin(t)
    t.runbook("sysr", '''
step "a" { title = "A", run = function(ctx)
  local sys = require "sys"
  local here, load = sys.memory(), sys.load()
  local one = must(sys.memory { on = ctx.on })
  print("ONE", one.total == here.total, one.host, type(one.used_pct))
  local f = must(sys.load { on = "inventory:web" })
  print("FLEET", table.concat(f.ok, ","), f.by_host.web02.cpus == load.cpus, f.by_host.web03.uptime > 0)
  local m = must(sys.memory { on = "k8s://prod/deployment/api" })
  print("POD", m.total == here.total)
  local lf, rf = sys.fs("/tmp"), must(sys.fs("/tmp", { on = ctx.on }))
  print("FS", lf.mount == rf.mount, lf.device == rf.device, lf.fstype == rf.fstype, lf.size == rf.size,
        lf.inodes == rf.inodes, lf.readonly == rf.readonly, rf.mount)
  local lp, rp = sys.processes { match = "987654" }, must(sys.processes { match = "987654", on = ctx.on, sample = "100ms" })
  print("PROC", lp.count, rp.count, rp[1].pid == lp[1].pid, rp[1].user, rp[1].command, rp[1].cmdline, rp[1].rss == lp[1].rss)
  local function rows(list)
    local out = {}
    for _, f in ipairs(list) do out[#out + 1] = table.concat({ f.mount, f.fstype, f.size, tostring(f.readonly) }, " ") end
    return table.concat(out, ";")
  end
  local lfs, rfs = sys.filesystems(), must(sys.filesystems { on = ctx.on })
  print("FSALL", #rfs > 0, rows(lfs) == rows(rfs), rfs.host)
  local none, err, kind = sys.memory { on = "k8s://prod/deployment/distroless" }
  print("NONE", none, kind, err)
end },''', inputs=INPUT)
    marker = subprocess.Popen(["sleep", "987654"])
    t.on_cleanup(marker.kill)
    t0 = time.monotonic()
    rc, out, err = t.run(["exec", "sysr", "on=" + servers[0].target()],
                         env=lab.env({"RUNBOOK_INVENTORY": inv, "KUBECTL_LOG": t.path("kubectl.log"),
                                      "PATH": kbin + ":" + os.environ["PATH"]}))
    took = time.monotonic() - t0
    expect_rc((rc, out, err), 0)
    expect_in("ONE\ttrue\t%s@127.0.0.1:%d\tnumber" % (USER, servers[0].port), out)
    expect_in("FLEET\tweb01,web02,web03\ttrue\ttrue", out)
    expect_in("POD\ttrue", out)
    expect_in("PROC\t1\t1\ttrue\t%s\tsleep\tsleep 987654\ttrue" % USER, out)
    expect_in("FS\ttrue\ttrue\ttrue\ttrue\ttrue\ttrue\t", out)
    expect_in("FSALL\ttrue\ttrue\t%s@127.0.0.1:%d" % (USER, servers[0].port), out)
    expect_in("NONE\tnil\tunavailable\tsys.memory on k8s://prod/deployment/distroless: the target cannot give it", out)
    recs = [r for r in records(t) if r["type"] == "probe" and r.get("host")]
    expect_in("cat /proc/meminfo", [r["target"] for r in recs if r["on"] == servers[0].target()][0])
    if took > 15:
        fail("took %.1f s" % took)


SAME = '''
local function same(a, b, path)
  if type(a) ~= "table" or type(b) ~= "table" then
    if a ~= b then print("DIFF", path, tostring(a), tostring(b)) end
    return a == b
  end
  local ok = true
  for k, v in pairs(a) do if k ~= "host" and k ~= "age" then ok = same(v, b[k], path .. "." .. tostring(k)) and ok end end
  for k, v in pairs(b) do if k ~= "host" and k ~= "age" and a[k] == nil then ok = same(nil, v, path .. "." .. tostring(k)) and ok end end
  return ok
end
local function compare(name, here, there, err, kind)
  if not there then print(name, "FAILED", kind, err) return end
  print(name, same(here, there, name), there.host)
end
'''


def compare_runbook(t, name, body):
    """A runbook of one step: SAME's compare(), sys, then body."""
    t.runbook(name, 'step "a" { title = "A", run = function(ctx)\n' + SAME + '  local sys = require "sys"\n' + body +
              '\nend },', inputs=INPUT)


def sys_on_path_lab(t):
    """One sshd; a log and a tree under the test's directory, read here and there (the same machine)."""
    lab, servers, _ = fleet_lab(t, 1)
    long = "x" * 5000
    log = "".join("%s line %d %s\n" % ("ERROR" if i % 7 == 0 else "info", i, long if i == 30 else "") for i in range(1, 200))
    t.write("app.log", log + "last without newline")
    t.write("empty.log", "")
    os.makedirs(t.path("tree/a/b"))
    os.makedirs(t.path("tree/c"))
    for rel, size in (("a/one.log", 3000), ("a/b/two.log.1", 70000), ("c/three.gz", 12000), ("top.txt", 10)):
        t.write("tree/" + rel, "z" * size)
    os.utime(t.path("tree/c/three.gz"), (time.time() - 10 * 86400, time.time() - 10 * 86400))
    return lab, servers[0]


def test_reach_sys_tail_and_grep_on_a_target_are_the_local_tables(t):
    lab, server = sys_on_path_lab(t)
    compare_runbook(t, "tg", '''
  local log, on = "%s", ctx.on
  for _, n in ipairs { 1, 5, 500 } do
    compare("TAIL" .. n, sys.tail(log, { lines = n }), sys.tail(log, { lines = n, on = on }))
  end
  compare("TAILEMPTY", sys.tail("%s"), sys.tail("%s", { on = on }))
  compare("GREP", sys.grep(log, "^ERROR", { limit = 5 }), sys.grep(log, "^ERROR", { limit = 5, on = on }))
  compare("GREPI", sys.grep(log, "error line [0-9]+ x", { icase = true }),
          sys.grep(log, "error line [0-9]+ x", { icase = true, on = on }))
  compare("GREPNONE", sys.grep(log, "nothing", {}), sys.grep(log, "nothing", { on = on }))
  local _, err, kind = sys.tail("%s/nosuch", { on = on })
  print("MISSING", kind, err)
  _, err, kind = sys.grep("%s", "x", { on = on })
  print("DIR", kind, err)
  local here = sys.tail(log, { on = "local" })
  print("LOCAL", #here.lines)''' % (t.path("app.log"), t.path("empty.log"), t.path("empty.log"), t.dir, t.dir))
    t0 = time.monotonic()
    rc, out, err = t.run(["exec", "tg", "on=" + server.target()], env=lab.env())
    took = time.monotonic() - t0
    expect_rc((rc, out, err), 0)
    host = "%s@127.0.0.1:%d" % (USER, server.port)
    for name in ("TAIL1", "TAIL5", "TAIL500", "TAILEMPTY", "GREP", "GREPI", "GREPNONE"):
        expect_in("%s\ttrue\t%s\n" % (name, host), out)
    expect_in("MISSING\tnotfound\tsys.tail on %s: %s/nosuch: no such file or directory" % (server.target(), t.dir), out)
    expect_in("DIR\terror\tsys.grep on %s: %s: not a regular file" % (server.target(), t.dir), out)
    expect_in("LOCAL\t50", out)
    if took > 20:
        fail("took %.1f s" % took)


def test_reach_sys_largest_and_files_on_a_target_are_the_local_tables(t):
    """The walks there are find's records replayed through the local walk's own code: equal tables."""
    lab, server = sys_on_path_lab(t)
    compare_runbook(t, "walks", '''
  local tree, on = "%s", ctx.on
  compare("LARGEST", sys.largest(tree), sys.largest(tree, { on = on }))
  compare("LARGEST2", sys.largest(tree .. "/", { depth = 2, files = true, limit = 3 }),
          sys.largest(tree .. "/", { depth = 2, files = true, limit = 3, on = on }))
  compare("FILES", sys.files(tree), sys.files(tree, { on = on }))
  compare("FILESQ", sys.files(tree, { pattern = "*.log*", min_size = 5000, limit = 1 }),
          sys.files(tree, { pattern = "*.log*", min_size = 5000, limit = 1, on = on }))
  compare("FILESOLD", sys.files(tree, { older_than = "7d", recursive = false }),
          sys.files(tree, { older_than = "7d", recursive = false, on = on }))
  local rl, rf = sys.largest(tree, { depth = 2, on = on }), sys.files(tree, { on = on })
  print("SHAPE", #rl.entries, rl.total_files, rf.count, rl.entries[1].path:sub(#tree + 2), rl.entries[1].bytes >= 70000)
  local old = sys.files(tree, { older_than = "7d", on = on })
  print("AGE", #old.files, old.files[1].path:match("[^/]+$"), old.files[1].age >= 10 * 86400)
  local _, err, kind = sys.largest(tree .. "/top.txt", { on = on })
  print("NOTDIR", kind, err)
  _, err, kind = sys.files(tree, { follow = true, on = on })
  print("FOLLOW", kind)''' % t.path("tree"))
    t0 = time.monotonic()
    rc, out, err = t.run(["exec", "walks", "on=" + server.target()], env=lab.env())
    took = time.monotonic() - t0
    expect_rc((rc, out, err), 0)
    host = "%s@127.0.0.1:%d" % (USER, server.port)
    for name in ("LARGEST", "LARGEST2", "FILES", "FILESQ", "FILESOLD"):
        expect_in("%s\ttrue\t%s\n" % (name, host), out)
    expect_in("SHAPE\t3\t4\t4\ta\ttrue\n", out)
    expect_in("AGE\t1\tthree.gz\ttrue", out)
    expect_in("NOTDIR\tnotfound\tsys.largest on %s: %s/top.txt: not a directory" % (server.target(), t.path("tree")), out)
    expect_in("FOLLOW\tunavailable", out)
    if took > 20:
        fail("took %.1f s" % took)


def test_reach_sys_deleted_open_on_a_target_is_the_local_table(t):
    """/proc/*/fd read there by find (links, then the open files followed) and judged by the same C test."""
    lab, servers, _ = fleet_lab(t, 1)
    server = servers[0]
    holder = subprocess.Popen(["python3", "-c", "import os, sys\n"
                               "f = open(sys.argv[1], 'w'); f.write('d' * 54321); f.flush(); os.unlink(sys.argv[1])\n"
                               "print('held', flush=True); sys.stdin.read()", t.path("held.log")],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    t.on_cleanup(holder.kill)
    expect_eq(holder.stdout.readline(), "held\n", "the holder's deleted file")
    compare_runbook(t, "del", '''
  local function mine(r)
    local out = { partial = r.partial, host = r.host }   -- unreadable: what the sshd session may look into
    for _, h in ipairs(r) do if h.pid == %d then out[#out + 1] = h end end
    return out
  end
  local here, there = sys.deleted_open { path = "%s", limit = 1000 }, must(sys.deleted_open { path = "%s", limit = 1000, on = ctx.on })
  compare("DELETED", mine(here), mine(there))
  local m = mine(there)[1]
  print("HELD", #mine(there), m.command, m.bytes, m.path, there.count >= 1, math.type(there.unreadable))
  local _, err, kind = sys.deleted_open { path = "%s/nosuch", on = ctx.on }
  print("MISSING", kind)''' % (holder.pid, t.dir, t.dir, t.dir))
    t0 = time.monotonic()
    rc, out, err = t.run(["exec", "del", "on=" + server.target()], env=lab.env())
    took = time.monotonic() - t0
    expect_rc((rc, out, err), 0)
    expect_in("DELETED\ttrue\t%s@127.0.0.1:%d\n" % (USER, server.port), out)
    expect_in("HELD\t1\tpython3\t54321\t%s\ttrue\tinteger" % t.path("held.log"), out)
    expect_in("MISSING\tnotfound", out)
    if took > 20:
        fail("took %.1f s" % took)


def test_reach_irreversible_fleet_action_asks_for_the_host_count(t):
    lab, servers, inv = fleet_lab(t, 2)
    t.runbook("wipe", '''
step "wipe" { title = "Wipe", run = function(ctx)
  must(sh.action { "p=${SSH_CONNECTION##* }; echo ran >> %s/ran-$p", shell = true, on = "inventory:web",
                   irreversible = true, summary = "wipe the cache" })
end },''' % t.dir)
    p = t.pty(["exec", "wipe", "--auto", "--transcript", t.path("w.cast")], env=lab.env({"RUNBOOK_INVENTORY": inv}))
    p.expect(r"Type the number of hosts \(2\) to confirm, or n to skip: ")
    p.sendline("yes")
    p.expect(r"That is not the target. Type 2 exactly to confirm, or n to skip: ")
    t0 = time.monotonic()
    p.sendline("2")
    expect_eq(p.wait(20), 0, "exit code")
    took = time.monotonic() - t0
    expect_eq(ran_on(t, servers), [1, 1], "it ran once on each host")
    if took > 10:
        fail("took %.1f s" % took)
    confirms = [(r["answer"], r["how"]) for r in records(t, t.path("w.cast")) if r["type"] == "confirm"]
    expect_eq(confirms, [("yes", "typed the target")], "the confirm record")
