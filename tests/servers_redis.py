"""A real redis-server 7 for the tests (python3 standard library only).

    r = servers_redis.shared()                    # no password; one per test run, started lazily,
    r = servers_redis.shared(password=True)       #   stopped at exit (atexit); with requirepass
    r = servers_redis.RedisServer(t.dir, ...)     # a private one for a fault case or a special
    t.on_cleanup(r.stop)                          #   configuration; stop() resumes it first

The server is /usr/bin/redis-server (Debian's redis-server package) in the foreground
(--daemonize no, so that the Popen's pid is the server's and SIGSTOP reaches it), listening on
127.0.0.1 and a free port, with its directory in a temporary directory (--dir), no persistence
(--save "" --appendonly no). `r.cmd(...)` talks RESP over a plain socket (no redis-cli), so that a
test checks the server's state independently of the module under test.
"""
import atexit
import os
import shutil
import signal
import socket
import subprocess
import tempfile
from run import free_port
from servers import ServerError, kill, wait_until

REDIS = "/usr/bin/redis-server"
PASSWORD = "CANARYrd55"


class ReplyError(Exception):
    pass


class Client:
    """A minimal RESP2 client over a blocking socket with a timeout."""

    def __init__(self, port, password=None, db=0, timeout=5):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""
        if password:
            self.cmd("AUTH", password)
        if db:
            self.cmd("SELECT", db)

    def close(self):
        self.sock.close()

    def send(self, *args):
        out = b"*%d\r\n" % len(args)
        for a in args:
            a = a if isinstance(a, bytes) else str(a).encode()
            out += b"$%d\r\n%s\r\n" % (len(a), a)
        self.sock.sendall(out)

    def _line(self):
        while b"\r\n" not in self.buf:
            data = self.sock.recv(65536)
            if not data:
                raise ServerError("the server closed the connection")
            self.buf += data
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def _exact(self, n):
        while len(self.buf) < n + 2:
            data = self.sock.recv(65536)
            if not data:
                raise ServerError("the server closed the connection")
            self.buf += data
        data, self.buf = self.buf[:n], self.buf[n + 2:]
        return data

    def reply(self):
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise ReplyError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else self._exact(n).decode("utf-8", "replace")
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self.reply() for _ in range(n)]
        raise ServerError("unexpected reply %r" % line)

    def cmd(self, *args):
        self.send(*args)
        return self.reply()


class RedisServer:
    def __init__(self, parent=None, password=None, args=(), replicaof=None):
        self.base = tempfile.mkdtemp(prefix="redis-", dir=parent)
        self.log = os.path.join(self.base, "redis.log")
        self.port = free_port()
        self.password = password
        self.stopped = False
        argv = [REDIS, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                "--dir", self.base, "--daemonize", "no", "--logfile", self.log, "--databases", "16"]
        if password:
            argv += ["--requirepass", password]
            if replicaof is not None:
                argv += ["--masterauth", password]
        if replicaof is not None:
            argv += ["--replicaof", "127.0.0.1", str(replicaof.port)]
        argv += list(args)
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, cwd=self.base, start_new_session=True)
        self.pid = self.proc.pid
        self.wait_until("redis-server on port %d answering PING" % self.port, self._ready, 20)

    def _ready(self):
        try:
            c = self.client(timeout=1)
        except (OSError, ReplyError, ServerError):
            return False
        try:
            return c.cmd("PING") == "PONG"
        except (OSError, ReplyError, ServerError):
            return False
        finally:
            c.close()

    def wait_until(self, what, fn, timeout=15):
        """Polls fn() (bounded) until it returns something true; raises with the server log otherwise."""
        return wait_until(what, fn, timeout, self.proc, self.log)

    # ------------------------------------------------------------------ lifecycle
    def stop(self):
        """Stops the server (resuming it first if a test stopped it) and removes its directory."""
        if self.stopped:
            return
        self.stopped = True
        if self.proc.poll() is None:
            self.cont()
        kill(self.proc)
        shutil.rmtree(self.base, ignore_errors=True)

    def pause(self):
        os.kill(self.pid, signal.SIGSTOP)

    def cont(self):
        try:
            os.kill(self.pid, signal.SIGCONT)
        except ProcessLookupError:
            pass

    # ------------------------------------------------------------------ using it
    def client(self, db=0, timeout=5):
        return Client(self.port, self.password, db, timeout)

    def cmd(self, *args, db=0):
        c = self.client(db)
        try:
            return c.cmd(*args)
        finally:
            c.close()

    def info(self, section):
        out = {}
        for line in self.cmd("INFO", section).splitlines():
            if line and not line.startswith("#") and ":" in line:
                k, _, v = line.partition(":")
                out[k] = v
        return out

    def url(self, password=None, db=None, user=None, host="127.0.0.1"):
        pw = self.password if password is None else password
        auth = ""
        if pw:
            auth = "%s:%s@" % (user or "", pw)
        return "redis://%s%s:%d%s" % (auth, host, self.port, "" if db is None else "/%d" % db)

    def target(self, db=0):
        return "127.0.0.1:%d/%d" % (self.port, db)


_shared = {}


def shared(password=False):
    """The server shared by the tests of a run (one without and one with a password): started on
    first use, stopped at exit. Tests that change its state use their own keys or databases."""
    key = bool(password)
    s = _shared.get(key)
    if s is None or s.stopped:
        s = RedisServer(password=PASSWORD if password else None)
        _shared[key] = s
        atexit.register(s.stop)
    return s
