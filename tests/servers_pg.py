"""A real PostgreSQL 15 for the tests (python3 standard library only).

    pg = servers_pg.shared()          # one server per test run, started lazily, stopped at exit
    pg = servers_pg.PgServer(t.dir)   # a private one for a fault case (stop it with pg.stop(),
    t.on_cleanup(pg.stop)             #   or let on_cleanup do it)

The server runs from /usr/lib/postgresql/15/bin: initdb into a temporary directory, then the
postmaster itself (no pg_ctl, so that .pid is the postmaster's and SIGSTOP reaches it), listening
on 127.0.0.1 and a free port, with its unix socket in the same directory. As root, everything runs
as the unprivileged `postgres` user (setpriv: no intermediate process) and the directory is handed
to it. Authentication:
    local  all           all                   trust          (the fixture's own psql)
    host   all           runbook  127.0.0.1/32 scram-sha-256  (PASSWORD: what the tests use)
    host   all           md5user  127.0.0.1/32 md5
    host   replication   all      127.0.0.1/32 trust          (the replica of test_pg)
    host   all           all      127.0.0.1/32 scram-sha-256
Roles: `postgres` (superuser, socket only), `runbook` (LOGIN, member of pg_monitor and
pg_signal_backend, owner of the databases `app` and `other`), `md5user` (an md5 password).
"""
import atexit
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
from run import free_port, processes, sweep_sessions
from servers import ServerError, wait_until

PGBIN = "/usr/lib/postgresql/15/bin"
USER = "runbook"
PASSWORD = "CANARYpg77"
MD5_USER = "md5user"
MD5_PASSWORD = "md5secret9"
DATABASE = "app"
OTHER_DATABASE = "other"


def _as_root():
    return os.geteuid() == 0


def _drop():
    """argv prefix that runs a command as the postgres user when we are root."""
    if not _as_root():
        return []
    return ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--"]


def _chown_pg(path):
    if _as_root():
        pw = pwd.getpwnam("postgres")
        os.chown(path, pw.pw_uid, pw.pw_gid)


class PgServer:
    """A postmaster of our own. `url(...)` builds connection URLs; `psql(sql)` runs SQL as the
    superuser over the unix socket; `backend_pids(...)` looks at pg_stat_activity."""

    def __init__(self, parent=None, setup=True, extra_conf=(), primary=None, ssl=False, hba=None):
        if parent is None:
            self.base = tempfile.mkdtemp(prefix="rbpg-")
            self.own_base = True
        else:
            # The test's directory is private to root: let the postgres user traverse it.
            os.chmod(parent, 0o711)
            self.base = tempfile.mkdtemp(prefix="pg-", dir=parent)
            self.own_base = False
        os.chmod(self.base, 0o711)
        self.data = os.path.join(self.base, "data")
        self.sock = os.path.join(self.base, "sock")
        self.log = os.path.join(self.base, "server.log")
        os.mkdir(self.sock)
        _chown_pg(self.sock)
        open(self.log, "w").close()
        _chown_pg(self.log)
        _chown_pg(self.base)
        self.port = free_port()
        self.proc = None
        self.stopped = False
        if primary is None:
            self._initdb(hba)
        else:
            self._basebackup(primary)
        if ssl:
            self._certificate()
            extra_conf = tuple(extra_conf) + ("ssl=on",)
        self._start(extra_conf)
        if setup and primary is None:
            self._setup()

    # ------------------------------------------------------------------ lifecycle
    def _run(self, argv, timeout=60, input_text=None):
        p = subprocess.run(_drop() + argv, input=input_text, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, timeout=timeout, cwd=self.base)
        if p.returncode != 0:
            raise ServerError("%s failed (%d):\n%s" % (" ".join(argv), p.returncode, p.stdout))
        return p.stdout

    def _certificate(self):
        """A self-signed certificate in the data directory (server.crt/server.key, the defaults)."""
        crt, key = os.path.join(self.data, "server.crt"), os.path.join(self.data, "server.key")
        p = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", crt,
                            "-days", "2", "-subj", "/CN=127.0.0.1"], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, timeout=60)
        if p.returncode != 0:
            raise ServerError("openssl failed: " + p.stdout)
        os.chmod(key, 0o600)
        _chown_pg(key)
        _chown_pg(crt)

    def _initdb(self, hba=None):
        self._run([PGBIN + "/initdb", "-D", self.data, "-U", "postgres", "-E", "UTF8", "--locale=C",
                   "--auth-local=trust", "--auth-host=scram-sha-256", "--no-sync", "--no-instructions"], 120)
        hba = hba or ("local all all trust\n"
               "host all %s 127.0.0.1/32 scram-sha-256\n"
               "host all %s 127.0.0.1/32 md5\n"
               "host replication all 127.0.0.1/32 trust\n"
               "host all all 127.0.0.1/32 scram-sha-256\n") % (USER, MD5_USER)
        path = os.path.join(self.data, "pg_hba.conf")
        with open(path, "w") as f:
            f.write(hba)
        _chown_pg(path)

    def _basebackup(self, primary):
        self._run([PGBIN + "/pg_basebackup", "-D", self.data, "-h", "127.0.0.1", "-p", str(primary.port),
                   "-U", "postgres", "-R", "-X", "stream", "-c", "fast", "--no-sync"], 120)

    def _start(self, extra_conf):
        conf = ["-c", "listen_addresses=127.0.0.1", "-p", str(self.port), "-k", self.sock,
                "-c", "max_connections=100", "-c", "fsync=off", "-c", "synchronous_commit=off",
                "-c", "full_page_writes=off", "-c", "shared_buffers=16MB", "-c", "logging_collector=off",
                "-c", "log_min_messages=warning", "-c", "password_encryption=scram-sha-256",
                "-c", "hot_standby=on"]
        for c in extra_conf:
            conf += ["-c", c]
        logf = open(self.log, "a")
        self.proc = subprocess.Popen(_drop() + [PGBIN + "/postgres", "-D", self.data] + conf,
                                     stdin=subprocess.DEVNULL, stdout=logf, stderr=logf, cwd=self.base,
                                     start_new_session=True)
        logf.close()
        self.pid = self.proc.pid
        wait_until("postgres on port %d accepting connections" % self.port, self._ready, 60, self.proc, self.log)

    def _ready(self):
        try:
            with open(os.path.join(self.data, "postmaster.pid")) as f:
                lines = f.read().split("\n")
        except OSError:
            return False
        if len(lines) < 8 or lines[7].strip() not in ("ready", "standby"):
            return False
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
        except OSError:
            return False
        return True

    def _setup(self):
        self.psql("""
CREATE ROLE %(user)s LOGIN PASSWORD '%(pw)s';
GRANT pg_monitor, pg_signal_backend TO %(user)s;
SET password_encryption = 'md5';
CREATE ROLE %(md5)s LOGIN PASSWORD '%(md5pw)s';
RESET password_encryption;
CREATE DATABASE %(db)s OWNER %(user)s;
CREATE DATABASE %(other)s OWNER %(user)s;
""" % {"user": USER, "pw": PASSWORD, "md5": MD5_USER, "md5pw": MD5_PASSWORD, "db": DATABASE,
       "other": OTHER_DATABASE})

    def stop(self):
        """Stops the postmaster (resuming it first if a test stopped it) and removes its files."""
        if self.stopped:
            return
        self.stopped = True
        if self.proc is not None and self.proc.poll() is None:
            self.cont()
            try:
                os.kill(self.pid, signal.SIGQUIT)    # immediate shutdown: a test server keeps nothing
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.pid, signal.SIGKILL)
                self.proc.wait(5)
        # Backends outlive a postmaster killed with SIGKILL: sweep what is left of its session.
        sweep_sessions({self.pid})
        shutil.rmtree(self.base, ignore_errors=True)

    def cont(self):
        for pid in [self.pid] + self.children():
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass

    def children(self):
        return [pid for pid, fields in processes() if int(fields[1]) == self.pid]

    # ------------------------------------------------------------------ using it
    def url(self, user=USER, password=PASSWORD, database=DATABASE, host="127.0.0.1", port=None, query=""):
        auth = user if password is None else "%s:%s" % (user, password)
        return "postgresql://%s@%s:%d/%s%s" % (auth, host, port or self.port, database, query)

    def target(self, database=DATABASE):
        return "127.0.0.1:%d/%s" % (self.port, database)

    def psql(self, sql, database="postgres", timeout=60):
        """Runs SQL as the superuser over the unix socket; returns the unaligned, tuples-only output."""
        argv = [PGBIN + "/psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", self.sock,
                "-p", str(self.port), "-U", "postgres", "-d", database]
        p = subprocess.run(argv, input=sql, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           timeout=timeout)
        if p.returncode != 0:
            raise ServerError("psql failed (%d): %s\nSQL:\n%s" % (p.returncode, p.stdout, sql))
        return p.stdout.strip()

    def background(self, sql, database=DATABASE, user=None):
        """Starts psql running sql over the socket (as `user`, default the runbook role) and leaves
        it running; returns the Popen. The caller stops it (stop_background)."""
        argv = [PGBIN + "/psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", self.sock,
                "-p", str(self.port), "-U", user or USER, "-d", database]
        p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True, start_new_session=True)
        p.stdin.write(sql)
        p.stdin.flush()
        return p

    @staticmethod
    def stop_background(p):
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except OSError:
                pass
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            pass
        for f in (p.stdin, p.stdout):
            try:
                f.close()
            except OSError:
                pass

    def wait_for(self, what, sql, database="postgres", timeout=15):
        """Polls sql (bounded) until its output is non-empty and not 'f'/'0'; returns the output."""
        def probe():
            out = self.psql(sql, database)
            return out if out not in ("", "f", "0") else None
        return wait_until(what, probe, timeout, self.proc, self.log)


_shared = None


def shared():
    """The server shared by the tests of a run: started on first use, stopped at exit."""
    global _shared
    if _shared is None or _shared.stopped:
        _shared = PgServer()
        atexit.register(_shared.stop)
    return _shared
