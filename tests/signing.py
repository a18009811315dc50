"""Helpers for the tests of signed transcripts (test_forgery, test_resume, test_timeline): real
ssh-keygen keys made in the test's directory, the allowed-signers file, config.lua's signing
section, a real ssh-agent, a syslog receiver on a Unix socket, and a transcript forger that edits
and re-chains. Not a test module."""
import hashlib
import json
import os
import signal
import socket
import subprocess

from run import fail


def keypair(t, name="alice", principal="alice@example.org", allowed=True):
    """Makes an ed25519 key t.path(name) (no passphrase); lists it for principal in the default
    allowed-signers file ($XDG_CONFIG_HOME/runbook/allowed_signers) when allowed. Returns the
    private key's path (the public one is path + ".pub")."""
    key = t.path(name)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", principal, "-f", key], check=True,
                   stdin=subprocess.DEVNULL, timeout=30)
    if allowed:
        with open(key + ".pub") as f:
            pub = f.read().strip()
        os.makedirs(t.path("config", "runbook"), exist_ok=True)
        with open(t.path("config", "runbook", "allowed_signers"), "a") as f:
            f.write("%s %s\n" % (principal, pub))
    return key


def sign_by_config(t, key):
    """config.lua names the key that signs every session of this test."""
    t.write(os.path.join("config", "runbook", "config.lua"), 'return { signing = { key = %s } }\n' % json.dumps(key))


def agent(t, key):
    """A real ssh-agent on a socket in the test's directory holding key; returns the environment
    (SSH_AUTH_SOCK) that reaches it. The agent is killed when the test ends."""
    sock = t.path("agent.sock")
    p = subprocess.run(["ssh-agent", "-a", sock, "-s"], capture_output=True, text=True, timeout=30, check=True)
    pid = int(p.stdout.split("SSH_AGENT_PID=")[1].split(";")[0])
    t.on_cleanup(lambda: os.kill(pid, signal.SIGTERM))
    env = dict(os.environ, SSH_AUTH_SOCK=sock)
    subprocess.run(["ssh-add", "-q", key], env=env, check=True, timeout=30, stdin=subprocess.DEVNULL,
                   capture_output=True)
    return {"SSH_AUTH_SOCK": sock}


class SyslogReceiver:
    """Plays the syslog daemon: a datagram socket that the binary is pointed at through
    $RUNBOOK_SYSLOG_SOCKET (the bytes syslog(3) would send to /dev/log), and write_log() stores
    what arrived as a syslog file does ("Dec  7 01:02:03 host runbook[42]: ...")."""

    def __init__(self, t):
        self.path = t.path("syslog.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.setblocking(False)
        t.on_cleanup(self.sock.close)
        self.lines = []

    def env(self):
        return {"RUNBOOK_SYSLOG_SOCKET": self.path}

    def drain(self):
        while True:
            try:
                data = self.sock.recv(65536).decode()
            except BlockingIOError:
                return self.lines
            if not data.startswith("<") or ">" not in data:
                fail("not a syslog datagram: %r" % data)
            rest = data[data.index(">") + 1:]
            self.lines.append(rest[:15] + " testhost " + rest[16:])

    def write_log(self, path):
        self.drain()
        with open(path, "w") as f:
            f.write("".join(l + "\n" for l in self.lines))
        return path


def read_lines(path):
    with open(path, "rb") as f:
        data = f.read()
    lines = data.split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    return lines


def rechain(lines):
    """What a forger does after an edit: recomputes every audit record's prev and the seal, so that
    the chain verifies again. lines: bytes without newlines. Returns the new lines."""
    out, head = [lines[0]], hashlib.sha256(lines[0]).hexdigest()
    for line in lines[1:]:
        ev = json.loads(line)
        if ev[1] == "a":
            rec = json.loads(ev[2])
            rec["prev"] = head
            rec.pop("seal", None)
            body = json.dumps(rec, separators=(",", ":"), ensure_ascii=False)
            if rec["type"] == "session_end":
                seal = hashlib.sha256(body.encode()).hexdigest()
                body = body[:-1] + ',"seal":"%s"}' % seal
            ev[2] = body
            line = json.dumps(ev, separators=(",", ":"), ensure_ascii=False).encode()
        out.append(line)
        head = hashlib.sha256(head.encode() + line).hexdigest()
    return out


def forge(t, path, old, new, name="forged.cast", keep_sig=True):
    """A copy of the transcript at path with old replaced by new (bytes) and the chain recomputed;
    the copy keeps the original's signature file beside it when keep_sig. Returns its path."""
    lines = read_lines(path)
    edited = [l.replace(old, new) for l in lines]
    if edited == lines:
        fail("forge: %r is not in %s" % (old, path))
    dst = t.path(name)
    with open(dst, "wb") as f:
        f.write(b"".join(l + b"\n" for l in rechain(edited)))
    if keep_sig and os.path.exists(path + ".sig"):
        with open(path + ".sig", "rb") as f, open(dst + ".sig", "wb") as g:
            g.write(f.read())
    return dst
