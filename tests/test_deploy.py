"""The deploy module (stdlib/deploy.lua): "what changed, when" from a real git checkout, from a real
container under the private dockerd of tests/servers_docker.py (skipped, saying why, where dockerd
cannot run), from systemd over a real sshd (a stand-in `systemctl` the sshd sessions find first: this
machine runs no systemd), and from Kubernetes through the stand-in kubectl (no cluster can run here);
deploy.rollback as an action through the gate."""
import json
import os
import subprocess
import time
from run import expect_eq, expect_in, expect_not_in, expect_rc
from servers_ssh import SshLab

HISTORY = '''
step "a" { title = "A", run = function(ctx)
  local deploy = require "deploy"
  local h = must(deploy.history { %s })
  for _, c in ipairs(h.changes) do print("C", c.kind, c.what, os.time() - c.ts < 7200) end
  print("LATEST", h.latest and h.latest.kind)
end },'''


def git_repo(t):
    repo = t.path("repo")
    os.makedirs(repo)
    env = dict(os.environ, GIT_AUTHOR_NAME="Ann", GIT_AUTHOR_EMAIL="a@x", GIT_COMMITTER_NAME="Ann", GIT_COMMITTER_EMAIL="a@x")
    def git(*a, date=None):
        e = dict(env)
        if date:
            e["GIT_AUTHOR_DATE"] = e["GIT_COMMITTER_DATE"] = date
        subprocess.run(["git", "-C", repo] + list(a), check=True, capture_output=True, env=e)
    git("init", "-q")
    git("commit", "-q", "--allow-empty", "-m", "old change", date="2020-01-01T00:00:00Z")
    git("commit", "-q", "--allow-empty", "-m", "raise the pool size")
    return repo


def test_deploy_history_git_checkout(t):
    repo = git_repo(t)
    t.runbook("g", HISTORY % 'repo = "%s", since = "1h"' % repo)
    rc, out, err = t.run(["exec", "g", "--auto"])
    expect_rc((rc, out, err), 0)
    expect_in("by Ann: raise the pool size\ttrue", out)
    expect_not_in("old change", out, "a commit older than since")
    expect_in("LATEST\tcommit", out)


SYSTEMCTL = r'''#!/bin/sh
echo "$*" >> %s/systemctl.log
echo "ActiveEnterTimestamp=Mon 2026-12-07 00:10:00 UTC"
echo "ExecMainStartTimestamp=$(date -u -d '-5 min' '+%%a %%Y-%%m-%%d %%H:%%M:%%S UTC')"
echo "NRestarts=2"
'''


def test_deploy_history_systemd_over_ssh(t):
    lab = SshLab(t)
    bindir = t.path("rbin")
    t.write(os.path.join(bindir, "systemctl"), SYSTEMCTL % t.dir, mode=0o755)
    server = lab.server("127.0.0.1", path_prepend=bindir)
    t.runbook("s", HISTORY % 'on = "%s", unit = "api", since = "1h"' % server.target())
    rc, out, err = t.run(["exec", "s", "--auto"], env=lab.env())
    expect_rc((rc, out, err), 0)
    expect_in("C\tunit started\tapi started\ttrue", out)
    with open(t.path("systemctl.log")) as f:
        expect_eq(f.read().strip(), "show api -p ActiveEnterTimestamp,ExecMainStartTimestamp,NRestarts")


KUBECTL = r'''#!/bin/sh
for a in "$@"; do printf '%%s\037' "$a"; done >> %s/kubectl.log; echo >> %s/kubectl.log
case " $* " in
  *" rollout history "*) printf 'deployment.apps/api\nREVISION  CHANGE-CAUSE\n4         <none>\n5         image api:1.8\n' ;;
  *" get replicasets "*) cat %s/rs.json ;;
  *" rollout undo "*) echo 'deployment.apps/api rolled back' ;;
esac
'''


def replicasets(t):
    def rs(name, rev, image, ago, owner="api"):
        return {"metadata": {"name": name, "creationTimestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - ago)),
                             "annotations": {"deployment.kubernetes.io/revision": str(rev)},
                             "ownerReferences": [{"kind": "Deployment", "name": owner}]},
                "spec": {"template": {"spec": {"containers": [{"name": "api", "image": image}]}}}, "status": {"replicas": 3}}
    t.write("rs.json", json.dumps({"items": [rs("api-old", 4, "api:1.7", 86400 * 3), rs("api-new", 5, "api:1.8", 600),
                                             rs("worker-1", 9, "worker:2", 60, owner="worker")]}))


def test_deploy_history_and_rollback_kubernetes(t):
    bindir = t.path("kbin")
    t.write(os.path.join(bindir, "kubectl"), KUBECTL % (t.dir, t.dir, t.dir), mode=0o755)
    replicasets(t)
    t.runbook("k", HISTORY % 'on = "k8s://prod/deployment/api"' + '''
step "b" { title = "B", run = function(ctx)
  local deploy = require "deploy"
  must(deploy.rollback { on = "k8s://prod/deployment/api" })
end },''')
    rc, out, err = t.run(["exec", "k", "--yes"], env={"PATH": bindir + ":" + os.environ["PATH"]})
    expect_rc((rc, out, err), 0)
    expect_in("C\trollout\trevision 5 (api-new) api:1.8: image api:1.8\ttrue\nC\trollout\trevision 4 (api-old) api:1.7\tfalse", out)
    expect_not_in("worker", out, "another Deployment's ReplicaSet")
    expect_in("roll back k8s://prod/deployment/api", out, "the gate")
    with open(t.path("kubectl.log")) as f:
        calls = [l.split("\037")[:-1] for l in f.read().splitlines()]
    expect_eq(calls, [["-n", "prod", "rollout", "history", "deployment/api"],
                      ["-n", "prod", "get", "replicasets", "-o", "json"],
                      ["-n", "prod", "rollout", "undo", "deployment/api"]])


def test_deploy_rollback_is_an_action_and_needs_a_command(t):
    t.runbook("r", '''
step "a" { title = "A", run = function(ctx)
  local deploy = require "deploy"
  print("E", pcall(deploy.rollback, { on = "local" }))
  deploy.rollback { argv = { "sh", "-c", "echo rolled > %s" } }
end },''' % t.path("rolled"))
    rc, out, err = t.run(["exec", "r", "--auto"])
    expect_in("E\tfalse\tdeploy.rollback: on local there is no standard rollback: give argv", out)
    expect_in("ACTION  roll back local\n          $ sh -c 'echo rolled > %s'" % t.path("rolled"), out, "the gate shows the team's command")
    expect_in("the action was declined", out, "without a terminal and without --yes no action runs")
    assert not os.path.exists(t.path("rolled"))


def test_deploy_history_docker_compose(t):
    from servers_docker import DockerD
    why = DockerD.unavailable()
    if why:
        print("SKIP: Docker Compose history is not tested: " + why)
        return
    d = DockerD(t)
    d.image()
    proj = d.compose({"web": ["/usr/bin/sleep", "1000"]})
    t.runbook("c", HISTORY % 'on = "compose://%s:web", since = "1h"' % proj)
    rc, out, err = t.run(["exec", "c", "--auto"], env=d.env(), timeout=90)
    expect_rc((rc, out, err), 0)
    expect_in("C\tcontainer started\tcontainer ", out)
    expect_in("started (0 restarts)\ttrue", out)
    expect_in("created from rbtest/base:1", out)


test_deploy_history_docker_compose.timeout = 150
test_deploy_history_systemd_over_ssh.timeout = 90
