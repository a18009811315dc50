"""A private Docker daemon and a Compose project for the reach tests (python3 standard library only).

    d = servers_docker.DockerD(t)      # dockerd --bridge=none --iptables=false, data root in t.dir
    d.env()                            # DOCKER_HOST=unix://... for docker, docker-compose and the binary
    d.image()                          # "rbtest/base:1": `docker import` of a tarball of this machine's
                                       #   dash, sleep, cat, echo and the libraries ldd names (no registry)
    proj = d.compose(t, services)      # a docker-compose.yml in t.dir/compose, `up -d`; services use
                                       #   network_mode: host
    d.stop()                           # SIGTERM to dockerd by its pid (it stops its containers and
                                       #   its containerd), SIGKILL if it lingers

No traffic leaves the machine: no bridge, no iptables rules, host networking only, no pull.
DockerD.unavailable() says why a daemon cannot run here (no dockerd, not root, no overlay/cgroups),
for a test's skip reason.
"""
import os
import shutil
import signal
import subprocess
from servers import ServerError, wait_until, log_tail

DOCKERD = "/usr/sbin/dockerd"
IMAGE = "rbtest/base:1"
FILES = ["/bin/dash", "/usr/bin/sleep", "/usr/bin/cat", "/usr/bin/echo"]


def compose_command():
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return ["docker", "compose"]


class DockerD:
    @staticmethod
    def unavailable():
        if not os.path.exists(DOCKERD) or not shutil.which("docker"):
            return "dockerd or docker is not installed (Debian docker.io)"
        if os.geteuid() != 0:
            return "dockerd needs root here"
        if not shutil.which("docker-compose") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode:
            return "neither docker-compose nor the docker compose plugin is installed"
        return None

    def __init__(self, t):
        self.t = t
        self.dir = t.path("docker")
        os.makedirs(self.dir, exist_ok=True)
        self.sock = os.path.join(self.dir, "docker.sock")
        self.pidfile = os.path.join(self.dir, "docker.pid")
        self.log = os.path.join(self.dir, "dockerd.log")
        self.proc = subprocess.Popen(
            [DOCKERD, "--bridge=none", "--iptables=false", "--ip6tables=false", "--ip-masq=false",
             "--data-root", os.path.join(self.dir, "data"), "--exec-root", os.path.join(self.dir, "exec"),
             "-H", "unix://" + self.sock, "--pidfile", self.pidfile],
            stdin=subprocess.DEVNULL, stdout=open(self.log, "ab"), stderr=subprocess.STDOUT, start_new_session=True)
        t.on_cleanup(self.stop)
        wait_until("dockerd", lambda: self.docker("version", check=False).returncode == 0, 30, proc=self.proc, log=self.log)

    def env(self):
        return {"DOCKER_HOST": "unix://" + self.sock}

    def docker(self, *args, check=True, cwd=None, timeout=60):
        env = dict(os.environ, **self.env())
        p = subprocess.run(["docker"] + list(args), env=env, capture_output=True, text=True, cwd=cwd, timeout=timeout)
        if check and p.returncode != 0:
            raise ServerError("docker %s: %s%s" % (" ".join(args), p.stderr, log_tail(self.log)))
        return p

    def image(self):
        root = os.path.join(self.dir, "rootfs")
        for f in FILES:
            libs = subprocess.run(["ldd", f], capture_output=True, text=True).stdout.split()
            for x in [f] + [w for w in libs if w.startswith("/")]:
                dst = root + x
                os.makedirs(os.path.dirname(dst), exist_ok=True)
                shutil.copy(x, dst)
        os.symlink("dash", os.path.join(root, "bin", "sh"))
        tar = os.path.join(self.dir, "rootfs.tar")
        subprocess.run(["tar", "-C", root, "-cf", tar, "."], check=True)
        self.docker("import", tar, IMAGE)
        return IMAGE

    def compose(self, services):
        proj = self.t.path("compose")
        os.makedirs(proj, exist_ok=True)
        lines = ['version: "2.4"', "services:"]
        for name, command in services.items():
            lines += ["  %s:" % name, "    image: %s" % IMAGE, "    network_mode: host", "    stop_signal: SIGKILL",
                      "    command: [%s]" % ", ".join('"%s"' % w for w in command)]
        with open(os.path.join(proj, "docker-compose.yml"), "w") as f:
            f.write("\n".join(lines) + "\n")
        env = dict(os.environ, **self.env())
        p = subprocess.run(compose_command() + ["up", "-d"], cwd=proj, env=env, capture_output=True, text=True, timeout=120)
        if p.returncode != 0:
            raise ServerError("compose up: %s%s" % (p.stderr, log_tail(self.log)))
        return proj

    def stop(self):
        if self.proc.poll() is not None:
            return
        os.kill(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
