"""bench/fleet.sh's driver: starts the sshd fleet (tests/servers_ssh.py), runs the three tools in
turn, prints the table. Not a test."""
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tests"))
from servers_ssh import SshLab  # noqa: E402


class Dir:
    """What SshLab needs of a test fixture: a directory, and cleanups."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="rbbench-")
        self.cleanups = []

    def path(self, *p):
        return os.path.join(self.dir, *p)

    def write(self, rel, text, mode=None):
        p = self.path(rel)
        with open(p, "w") as f:
            f.write(text)
        return p

    def on_cleanup(self, fn):
        self.cleanups.append(fn)


def main():
    binary, rounds, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    d = Dir()
    lab = SshLab(d)
    servers = [lab.server("127.0.0.1") for _ in range(n)]
    names = ["h%02d" % (i + 1) for i in range(n)]
    # Host aliases in the ssh config, so that ClusterShell's h[01-50] and the inventory's names agree.
    with open(lab.config) as f:
        common = f.read()
    with open(lab.config, "w") as f:
        for name, s in zip(names, servers):
            f.write("Host %s\n  HostName %s\n  Port %d\n" % (name, s.addr, s.port))
        f.write(common)
    with open(lab.known_hosts, "w") as f:
        for s in servers:
            f.write(s.known_line() + "\n")
    inv = d.write("inventory.ini", "[all:vars]\nansible_python_interpreter=/usr/bin/python3\n[web]\n" + "\n".join(names) + "\n")
    cp = d.path("cp")

    def fresh_cp():
        # Close the masters of the run before (runbook's and Ansible's), then an empty directory.
        if os.path.isdir(cp):
            for sock in os.listdir(os.path.join(cp, "runbook")) if os.path.isdir(os.path.join(cp, "runbook")) else []:
                subprocess.run(["ssh", "-o", "ControlPath=" + os.path.join(cp, "runbook", sock), "-O", "exit", "x"],
                               capture_output=True)
            for sock in os.listdir(cp):
                if sock != "runbook":
                    subprocess.run(["ssh", "-o", "ControlPath=" + os.path.join(cp, sock), "-O", "exit", "x"], capture_output=True)
            shutil.rmtree(cp, ignore_errors=True)   # a master removes its own socket as it exits
        os.makedirs(cp, mode=0o700, exist_ok=True)

    base = dict(os.environ, LC_ALL="C.UTF-8", HOME=d.path())
    tools = {
        "runbook": ([binary, "exec", os.path.join(HERE, "uptime.lua"), "--auto"],
                    dict(base, RUNBOOK_INVENTORY=inv, RUNBOOK_SSH_CONFIG=lab.config, XDG_RUNTIME_DIR=cp,
                         XDG_STATE_HOME=d.path("state"))),
        "ansible -m command -f 50": (["ansible", "all", "-i", inv, "-m", "command", "-a", "uptime", "-f", "50"],
                    dict(base, ANSIBLE_HOST_KEY_CHECKING="True", ANSIBLE_SSH_ARGS="-F %s -o ControlMaster=auto -o ControlPersist=60s" % lab.config,
                         ANSIBLE_SSH_CONTROL_PATH_DIR=cp, ANSIBLE_LOCAL_TEMP=d.path("ansible-tmp"), ANSIBLE_NOCOLOR="1")),
        "clush -f 50": (["clush", "-w", "h[01-%02d]" % n, "-f", "50", "-b", "-o", "-F %s" % lab.config, "uptime"], base),
    }
    times = {k: [] for k in tools}
    rss = {k: 0 for k in tools}
    try:
        for r in range(rounds):
            for name, (argv, env) in tools.items():
                fresh_cp()
                t0 = time.monotonic()
                p = subprocess.Popen(argv, env=env, cwd=d.dir, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                out, err = p.communicate(timeout=300)
                took = time.monotonic() - t0
                if p.returncode != 0:
                    sys.exit("%s failed (exit %d):\n%s\n%s" % (name, p.returncode, out.decode()[-2000:], err.decode()[-2000:]))
                times[name].append(took)
                print("round %d %s %.3f s" % (r + 1, name, took), file=sys.stderr, flush=True)
        # Peak RSS: one more run each, under resource accounting of that child alone.
        for name, (argv, env) in tools.items():
            fresh_cp()
            pid = os.fork()
            if pid == 0:
                os.chdir(d.dir)
                fd = os.open(os.devnull, os.O_WRONLY)
                os.dup2(fd, 1)
                os.dup2(fd, 2)
                os.execvpe(argv[0], argv, env)
            _, _, ru = os.wait4(pid, 0)
            rss[name] = ru.ru_maxrss / 1024.0
    finally:
        fresh_cp()
        for s in servers:
            s.stop()
        shutil.rmtree(d.dir, ignore_errors=True)
    rb = statistics.median(times["runbook"])
    print("| tool | median | min | vs runbook | peak RSS (largest process) |")
    print("|---|---|---|---|---|")
    for name in tools:
        med = statistics.median(times[name])
        print("| %s | %.3f s | %.3f s | %.2fx | %.1f MiB |" % (name, med, min(times[name]), med / rb, rss[name]))
    print("\n%d hosts, %d rounds, %s, %d CPUs" % (n, rounds, time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), os.cpu_count()))


if __name__ == "__main__":
    main()
