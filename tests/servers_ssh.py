"""Real OpenSSH servers on loopback for the reach tests (python3 standard library only).

    lab = servers_ssh.SshLab(t)                 # a client key, a known_hosts, an ssh_config in t.dir
    s = lab.server("127.0.0.2", known=True)     # /usr/sbin/sshd -D -f CONFIG on a free port, its own
    bad = lab.server(known=False)               #   host key; known: whether known_hosts has that key
    env = lab.env()                             # RUNBOOK_SSH_CONFIG, XDG_RUNTIME_DIR for the binary
    lab.inventory({"web": [s1, s2]})            # an Ansible INI inventory of them (ansible_host/port/user)
    s.stop()  /  s.pause()  /  s.resume()       # SIGKILL, SIGSTOP (a hung host), SIGCONT, by pid
    lab.server(path_prepend=DIR)                # sessions find commands in DIR first (sshd SetEnv PATH)

Each sshd is Debian's openssh-server in the foreground (-D, so the Popen's pid is the listener's
and SIGSTOP reaches it), with its own ed25519 host key, `UsePAM no`, AuthorizedKeysFile in the
temporary directory and only public-key authentication. The servers run as root (the test user
here), which their sshd_config permits for keys. sshd needs its privilege separation directory
/run/sshd; it is made when missing (as Debian's service start does). Servers are stopped at the
test's cleanup. All addresses are 127.0.0.0/8.
"""
import os
import signal
import socket
import subprocess
from run import free_port
from servers import ServerError, kill, wait_until

SSHD = "/usr/sbin/sshd"
USER = "root"


def keygen(path, comment="runbook-test"):
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", path],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=20)
    with open(path + ".pub") as f:
        return f.read().strip()


def free_port_on(addr):
    s = socket.socket()
    s.bind((addr, 0))
    port = s.getsockname()[1]
    s.close()
    return port


class SshServer:
    def __init__(self, lab, addr, name, path_prepend=None):
        self.lab, self.addr, self.name = lab, addr, name
        self.dir = os.path.join(lab.dir, name)
        os.makedirs(self.dir, exist_ok=True)
        self.port = free_port_on(addr)
        self.host_key = keygen(os.path.join(self.dir, "host_key"), name)
        self.log = os.path.join(self.dir, "sshd.log")
        self.config = os.path.join(self.dir, "sshd_config")
        with open(self.config, "w") as f:
            f.write("\n".join([
                "Port %d" % self.port, "ListenAddress %s" % addr,
                "HostKey %s" % os.path.join(self.dir, "host_key"),
                "PidFile none", "UsePAM no", "StrictModes no",
                "AuthorizedKeysFile %s" % lab.authorized_keys,
                "PubkeyAuthentication yes", "PasswordAuthentication no",
                "KbdInteractiveAuthentication no", "PermitRootLogin prohibit-password",
                "MaxStartups 200", "MaxSessions 100", "LogLevel ERROR", "UseDNS no",
                "AcceptEnv LANG LC_*",
                "SetEnv PATH=%s:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin" % path_prepend if path_prepend else "", "",
            ]))
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
        self.proc = subprocess.Popen([SSHD, "-D", "-e", "-f", self.config], stdin=subprocess.DEVNULL,
                                     stdout=open(self.log, "ab"), stderr=subprocess.STDOUT, start_new_session=True)
        wait_until("sshd on %s:%d" % (addr, self.port), self._answers, 15, proc=self.proc, log=self.log)

    def _answers(self):
        try:
            with socket.create_connection((self.addr, self.port), timeout=1) as c:
                c.settimeout(2)
                return c.recv(64).startswith(b"SSH-")
        except OSError:
            return False

    def known_line(self):
        return "[%s]:%d %s" % (self.addr, self.port, " ".join(self.host_key.split()[:2]))

    def target(self):
        return "ssh://%s@%s:%d" % (USER, self.addr, self.port)

    def pause(self):
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)

    def stop(self):
        self.resume()
        kill(self.proc)


class SshLab:
    """The client's side: a key, a known_hosts, an ssh_config; and the servers it knows."""

    def __init__(self, t):
        self.t = t
        self.dir = t.path("ssh")
        os.makedirs(self.dir, exist_ok=True)
        os.chmod(self.dir, 0o700)
        self.key = os.path.join(self.dir, "id")
        self.authorized_keys = os.path.join(self.dir, "authorized_keys")
        with open(self.authorized_keys, "w") as f:
            f.write(keygen(self.key) + "\n")
        self.wrong_key = os.path.join(self.dir, "wrong_id")   # never authorized
        keygen(self.wrong_key)
        self.known_hosts = os.path.join(self.dir, "known_hosts")
        open(self.known_hosts, "w").close()
        self.runtime = t.path("run")
        os.makedirs(self.runtime, mode=0o700, exist_ok=True)
        self.servers = []
        self.write_config(self.key)

    def write_config(self, key):
        self.config = os.path.join(self.dir, "config")
        with open(self.config, "w") as f:
            f.write("\n".join([
                "Host *", "  IdentityFile %s" % key, "  IdentitiesOnly yes", "  User %s" % USER,
                "  UserKnownHostsFile %s" % self.known_hosts, "  GlobalKnownHostsFile /dev/null",
                "  LogLevel ERROR", "  PasswordAuthentication no", "  KbdInteractiveAuthentication no", "",
            ]))

    def server(self, addr="127.0.0.1", known=True, path_prepend=None):
        """path_prepend: a directory the sessions find commands in first (stand-ins: systemctl)."""
        s = SshServer(self, addr, "sshd%d" % (len(self.servers) + 1), path_prepend)
        self.servers.append(s)
        self.t.on_cleanup(s.stop)
        if known:
            with open(self.known_hosts, "a") as f:
                f.write(s.known_line() + "\n")
        return s

    def env(self, extra=None):
        env = {"RUNBOOK_SSH_CONFIG": self.config, "XDG_RUNTIME_DIR": self.runtime}
        env.update(extra or {})
        return env

    def inventory(self, groups, name="inventory.ini"):
        lines = []
        for group, members in groups.items():
            lines.append("[%s]" % group)
            for host, s in members:
                lines.append("%s ansible_host=%s ansible_port=%d ansible_user=%s" % (host, s.addr, s.port, USER))
        return self.t.write(name, "\n".join(lines) + "\n")

    def ssh_processes(self):
        """The ssh clients that use this lab's config still running (masters included)."""
        out = []
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                with open("/proc/%s/cmdline" % pid, "rb") as f:
                    argv = f.read().split(b"\0")
            except OSError:
                continue
            if argv and os.path.basename(argv[0]) in (b"ssh",) or (argv and argv[0].startswith(b"ssh: ")):
                if self.config.encode() in b" ".join(argv) or self.runtime.encode() in b" ".join(argv):
                    out.append((int(pid), b" ".join(argv).decode(errors="replace")))
        return out


def refusing_port(addr="127.0.0.1"):
    """A loopback port nothing listens on (connect: refused)."""
    return free_port_on(addr)


__all__ = ["SshLab", "SshServer", "refusing_port", "ServerError"]
