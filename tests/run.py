#!/usr/bin/env python3
"""The runbook test harness (python3 standard library only).

    python3 tests/run.py --binary ./runbook [-k SUBSTR] [-v]

Discovers tests/test_*.py and runs every function named test_*. A test takes no argument or one,
the fixture `t` (class T below): a fresh temporary directory (also the working directory of every
process it starts) with HOME, XDG_STATE_HOME and XDG_CONFIG_HOME inside it, and helpers to run the
binary (t.run), drive it through a pseudo-terminal (t.pty), write runbooks, read transcripts.

Test modules import their helpers with `from run import ...` (this module, shared). Helpers that
only some test modules share live beside it, not in the harness: steps.py (runbooks of Lua steps
that emit `@@ key=value`, timing a call or a Ctrl-C), sessions.py (sessions started with t.spawn),
and servers.py (what the servers_*.py fixtures have in common).

Each test is bounded (default 60 s, a test may set `test_x.timeout = N`; doubled for a sanitizer
build): at the deadline a SIGALRM raises inside the test, which fails, and every process the test
started is killed: each runs as a session leader, and whatever is left in those sessions is swept
too, and so is any process still working in the test's directory (the commands a runbook starts
run in sessions of their own). Under a sanitizer build
(ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 unless set) the stderr or pty output of every run is
checked for sanitizer reports, which fail the test. Prints one line per test (a failure's details
follow, indented) and, last, exactly "N passed, N failed"; exits 1 if any failed.
"""
import argparse
import errno
import fcntl
import importlib.util
import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import termios
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)

DEFAULT_TIMEOUT = 60.0
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "runtime error:", "LeakSanitizer",
                     "ERROR: UndefinedBehaviorSanitizer")
ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[()][0-9A-Za-z]|\x1b[=>]")

# Set in main().
BINARY = None
SANITIZED = False


class TestFailure(AssertionError):
    pass


class TestTimeout(BaseException):
    """Raised by SIGALRM in the running test; BaseException so that tests cannot swallow it."""


def strip_ansi(s):
    return ANSI.sub("", s)


def check_sanitizer(text, what):
    for m in SANITIZER_MARKERS:
        if m in text:
            i = text.index(m)
            raise TestFailure("sanitizer report in %s: %s" % (what, text[max(0, i - 200):i + 1500]))


def fail(msg):
    raise TestFailure(msg)


def short(s, n=3000):
    s = s if isinstance(s, str) else repr(s)
    return s if len(s) <= n else s[:n // 2] + "\n[...]\n" + s[-n // 2:]


class Pty:
    """A process on a real pseudo-terminal that is its controlling tty (it is the session leader).

    expect(regex) reads with select() until the regex matches the ANSI-stripped, \\r-free output
    after the previous match; everything read is kept in .text for failure messages."""

    def __init__(self, t, args, env=None, cwd=None, binary=True):
        self.t = t
        self.master, self.slave = os.openpty()
        # A roomy window, so that nothing wraps.
        fcntl.ioctl(self.slave, termios.TIOCSWINSZ, bytes([40, 0, 200, 0, 0, 0, 0, 0]))
        argv = t.launcher + [BINARY] + list(args) if binary else list(args)
        slave = self.slave

        def child_setup():
            # start_new_session has already made us a session leader: take the tty.
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)

        self.proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave,
                                     env=t.environ(env, tty=True), cwd=cwd or t.dir,
                                     start_new_session=True, preexec_fn=child_setup, close_fds=True)
        t._groups.append(self.proc.pid)
        t._ptys.append(self)
        self.raw = b""
        self.pos = 0          # index in .text after the last match
        self.code = None
        self.termios_before = termios.tcgetattr(self.slave)

    @property
    def text(self):
        return strip_ansi(self.raw.decode("utf-8", "replace")).replace("\r", "")

    def _read_some(self, timeout):
        r, _, _ = select.select([self.master], [], [], max(0.0, timeout))
        if not r:
            return False
        try:
            data = os.read(self.master, 65536)
        except OSError as e:
            if e.errno == errno.EIO:
                return False
            raise
        self.raw += data
        return bool(data)

    def expect(self, pattern, timeout=15):
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            m = rx.search(self.text, self.pos)
            if m:
                self.pos = m.end()
                check_sanitizer(self.text, "pty output")
                return m
            left = deadline - time.monotonic()
            if left <= 0:
                fail("pty: timed out after %ss waiting for %r; output after the last match:\n%s\n"
                     "--- whole output:\n%s" % (timeout, pattern, short(self.text[self.pos:]), short(self.text)))
            if not self._read_some(min(left, 0.5)) and self.proc.poll() is not None:
                # Exited: drain what is left, then one last look.
                while self._read_some(0.05):
                    pass
                m = rx.search(self.text, self.pos)
                if m:
                    self.pos = m.end()
                    return m
                fail("pty: process exited (code %s) while waiting for %r; output after the last match:\n%s\n"
                     "--- whole output:\n%s" % (self.proc.returncode, pattern, short(self.text[self.pos:]),
                                                short(self.text)))

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        os.write(self.master, data)

    def sendline(self, line=""):
        self.send(line + "\n")

    def ctrl_c(self):
        self.send(b"\x03")

    def wait(self, timeout=15):
        """Waits for the exit, reading the output meanwhile; returns the exit code."""
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None:
            left = deadline - time.monotonic()
            if left <= 0:
                fail("pty: process still running after %ss; output:\n%s" % (timeout, short(self.text)))
            self._read_some(min(left, 0.05))
        while self._read_some(0.02):
            pass
        self.code = self.proc.returncode
        check_sanitizer(self.text, "pty output")
        return self.code

    def termios_now(self):
        return termios.tcgetattr(self.slave)

    def close(self):
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except OSError:
                pass
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
        for fd in (self.master, self.slave):
            try:
                os.close(fd)
            except OSError:
                pass
        self.master = self.slave = -1


class T:
    """The per-test fixture."""

    def __init__(self, name):
        self.name = name
        self.dir = tempfile.mkdtemp(prefix="rbtest-")
        self.binary = BINARY
        self.launcher = []     # a command that runs the binary: argv prefix of run, spawn and pty
        self.repo = REPO
        self.sanitized = SANITIZED
        self._groups = []
        self._ptys = []
        self._cleanups = []
        for d in ("home", "state", "config"):
            os.makedirs(os.path.join(self.dir, d))

    # ------------------------------------------------------------------ environment and files
    def path(self, *parts):
        return os.path.join(self.dir, *parts)

    def environ(self, extra=None, tty=False):
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("RUNBOOK_", "XDG_")) and k not in ("NO_COLOR", "TERM", "COLUMNS")}
        env.update({
            "HOME": self.path("home"),
            "XDG_STATE_HOME": self.path("state"),
            "XDG_CONFIG_HOME": self.path("config"),
            "NO_COLOR": "1",
            "TERM": "xterm" if tty else "dumb",
            "LC_ALL": "C.UTF-8",
        })
        if self.sanitized:
            env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
            env.setdefault("LSAN_OPTIONS", "use_tls=0")   # see the Makefile's asan target
            env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
        for k, v in (extra or {}).items():
            if v is None:
                env.pop(k, None)
            else:
                env[k] = v
        return env

    def write(self, rel, text, mode=None):
        p = rel if os.path.isabs(rel) else self.path(rel)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "w") as f:
            f.write(text)
        if mode is not None:
            os.chmod(p, mode)
        return p

    def runbook(self, name, body, inputs="", dirname="runbooks", severity="SEV3", summary=None):
        """Writes DIR/dirname/name.lua: a runbook with the given steps (Lua text) and inputs."""
        src = ('local sh = require "sh"\n'
               'return runbook {\n'
               '  name = "%s", summary = "%s", severity = "%s",\n'
               '  inputs = { %s },\n%s\n}\n') % (name, summary or ("test runbook " + name), severity, inputs, body)
        return self.write(os.path.join(dirname, name + ".lua"), src)

    def mkfifo(self, name):
        p = self.path(name)
        os.mkfifo(p)
        return p

    def release(self, fifo, data=b"go\n", timeout=10):
        """Opens a FIFO for writing (waiting, bounded, for its reader), writes and closes it."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
                break
            except OSError as e:
                if e.errno != errno.ENXIO:
                    raise
                if time.monotonic() > deadline:
                    fail("nobody opened the FIFO %s for reading within %ss" % (fifo, timeout))
                select.select([], [], [], 0.01)   # poll interval, not a synchronisation
        try:
            os.set_blocking(fd, True)
            os.write(fd, data)
        finally:
            os.close(fd)

    # ------------------------------------------------------------------ processes
    def run(self, args, stdin=None, env=None, timeout=30, cwd=None, check_sanitizer_output=True):
        """Runs the binary; returns (rc, stdout, stderr) as text. stdin: None (= /dev/null),
        bytes/str (fed), or a file object."""
        argv = self.launcher + [BINARY] + [str(a) for a in args]
        if stdin is None:
            stdin_arg, data = subprocess.DEVNULL, None
        elif isinstance(stdin, (bytes, str)):
            stdin_arg, data = subprocess.PIPE, stdin.encode() if isinstance(stdin, str) else stdin
        else:
            stdin_arg, data = stdin, None
        p = subprocess.Popen(argv, stdin=stdin_arg, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             env=self.environ(env), cwd=cwd or self.dir, start_new_session=True)
        self._groups.append(p.pid)
        try:
            out, err = p.communicate(data, timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            out, err = p.communicate()
            fail("%s timed out after %ss\nstdout:\n%s\nstderr:\n%s" % (
                " ".join(argv), timeout, short(out.decode("utf-8", "replace")), short(err.decode("utf-8", "replace"))))
        out = out.decode("utf-8", "replace")
        err = err.decode("utf-8", "replace")
        if check_sanitizer_output:
            check_sanitizer(err, "stderr of " + " ".join(argv))
        return p.returncode, out, err

    def spawn(self, args, env=None, stdin=None, cwd=None):
        """Starts the binary with stdout/stderr as pipes, in its own process group; for tests
        that read output while it runs (kill -9)."""
        p = subprocess.Popen(self.launcher + [BINARY] + [str(a) for a in args],
                             stdin=stdin if stdin is not None else subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=self.environ(env),
                             cwd=cwd or self.dir, start_new_session=True)
        self._groups.append(p.pid)
        return p

    def pty(self, args, env=None, cwd=None, binary=True):
        return Pty(self, args, env=env, cwd=cwd, binary=binary)

    def on_cleanup(self, fn):
        self._cleanups.append(fn)

    # ------------------------------------------------------------------ transcripts
    def transcripts(self):
        d = self.path("state", "runbook", "transcripts")
        if not os.path.isdir(d):
            return []
        return sorted(os.path.join(d, f) for f in os.listdir(d))

    def the_transcript(self):
        ts = self.transcripts()
        if len(ts) != 1:
            fail("expected exactly one transcript in $XDG_STATE_HOME/runbook/transcripts, found %r" % ts)
        return ts[0]

    @staticmethod
    def read_transcript(path):
        """Returns (header, events, audit records) of a transcript whose lines are all whole."""
        with open(path, "rb") as f:
            data = f.read()
        lines = data.decode("utf-8").split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        header = json.loads(lines[0])
        events = [json.loads(l) for l in lines[1:]]
        records = [json.loads(e[2]) for e in events if e[1] == "a"]
        return header, events, records

    @staticmethod
    def shown_text(events):
        return "".join(e[2] for e in events if e[1] == "o").replace("\r", "")

    # ------------------------------------------------------------------ teardown
    def cleanup(self):
        for fn in reversed(self._cleanups):
            try:
                fn()
            except Exception:
                traceback.print_exc()
        for p in self._ptys:
            p.close()
        for pgid in self._groups:
            try:
                os.killpg(pgid, signal.SIGKILL)
            except OSError:
                pass
        # The commands a runbook starts get process groups of their own (sh.read, sh.action) but
        # stay in the session we started: kill whatever is left in our sessions.
        sweep_sessions(set(self._groups))
        # Commands run in sessions of their own: those a killed runbook left are found by their
        # working directory, the test's.
        sweep_cwd(self.dir)
        for pgid in self._groups:
            try:
                os.waitpid(pgid, os.WNOHANG)
            except OSError:
                pass
        shutil.rmtree(self.dir, ignore_errors=True)


def processes():
    """(pid, fields) of every process now: fields are those of /proc/PID/stat after the command
    name (state, ppid, pgrp, session, ...); a process that ends meanwhile is passed over."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry) as f:
                stat = f.read()
            fields = stat[stat.rindex(")") + 2:].split()
        except (OSError, ValueError):
            continue
        yield int(entry), fields


def sweep_sessions(sessions):
    """SIGKILLs every process whose session id is in `sessions` (each test process we start is a
    session leader, so its session id is its pid)."""
    if not sessions:
        return
    me = os.getpid()
    for pid, fields in processes():
        if pid != me and int(fields[3]) in sessions:       # state ppid pgrp session ...
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


def sweep_cwd(directory):
    """SIGKILLs every process (but us) whose working directory is directory or below it."""
    me = os.getpid()
    for pid, _ in processes():
        try:
            cwd = os.readlink("/proc/%d/cwd" % pid)
        except OSError:
            continue
        if pid != me and (cwd == directory or cwd.startswith(directory + "/")):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


def free_port():
    """A TCP port on 127.0.0.1 that nobody listened on a moment ago."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def listener(t, backlog=16):
    """A socket listening on a free port of 127.0.0.1, closed when the test ends. Until the test
    accepts, the kernel completes up to backlog handshakes and nobody answers. Returns the socket."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(backlog)
    t.on_cleanup(s.close)
    return s


def namespaces(t):
    """The unshare prefix that works here, or a failed test saying what to allow."""
    for prefix in (["unshare", "--net", "--mount"],
                   ["unshare", "--user", "--map-root-user", "--net", "--mount"]):
        if prefix[1] != "--user" and os.geteuid() != 0:
            continue
        r = subprocess.run(prefix + ["true"], capture_output=True, text=True, timeout=20)
        if r.returncode == 0:
            return prefix
    fail("cannot create network and mount namespaces (%s). Run the suite as root, or allow unprivileged "
         "user namespaces (sysctl kernel.unprivileged_userns_clone=1)." % r.stderr.strip())


def run_inside(t, inner, script, cast, what, env=None):
    """Runs `runbook exec script` under the inner shell script, in namespaces of its own; fails
    unless it exits 0 within 30 s. Returns the CompletedProcess."""
    argv = namespaces(t) + ["sh", "-c", inner, "sh", t.binary, "exec", script, "--auto", "--transcript", cast]
    child = subprocess.Popen(argv, cwd=t.dir, env=t.environ(env), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, start_new_session=True)
    try:
        out, err = child.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)   # the servers inside too
        child.communicate()
        fail("the runbook hung on %s (30 s)" % what)
    check_sanitizer(err, "stderr of runbook exec " + script)
    if child.returncode != 0:
        fail("exit code %d\nstdout:\n%s\nstderr:\n%s" % (child.returncode, out, err))
    return subprocess.CompletedProcess(argv, child.returncode, out, err)


def black_hole(t):
    """A listener whose accept queue is full: the kernel drops further SYNs, so a connect hangs
    until its own deadline (what a firewall that drops packets looks like). Returns its port."""
    port = listener(t, 0).getsockname()[1]
    fillers = []
    for _ in range(3):
        c = socket.socket()
        c.setblocking(False)
        err = c.connect_ex(("127.0.0.1", port))
        if err not in (0, errno.EINPROGRESS):
            fail("filling the backlog: %s" % os.strerror(err))
        fillers.append(c)
    # Wait (bounded) until the queue is full: a probe connect no longer completes.
    deadline = time.monotonic() + 5
    while True:
        c = socket.socket()
        c.setblocking(False)
        c.connect_ex(("127.0.0.1", port))
        _, w, _ = select.select([], [c], [], 0.2)
        fillers.append(c)
        if not w:
            break
        if time.monotonic() > deadline:
            fail("could not fill the listen backlog")

    def close():
        for c in fillers:
            c.close()
    t.on_cleanup(close)       # runs before the listener is closed: cleanups run in reverse order
    return port


def expect_eq(got, want, what=""):
    if got != want:
        fail("%s: expected %r, got %r" % (what or "value", want, got))


def expect_in(needle, hay, what=""):
    if needle not in hay:
        fail("%s: %r not found in:\n%s" % (what or "text", needle, short(hay)))


def expect_not_in(needle, hay, what=""):
    if needle in hay:
        fail("%s: %r must not appear, but it does in:\n%s" % (what or "text", needle, short(hay)))


def expect_rc(res, want, what=""):
    rc, out, err = res
    if rc != want:
        fail("%sexit code %s, expected %s\nstdout:\n%s\nstderr:\n%s" % (
            (what + ": ") if what else "", rc, want, short(out), short(err)))


def _on_alarm(signum, frame):
    raise TestTimeout()


def discover(pattern):
    tests = []
    for fn in sorted(os.listdir(HERE)):
        if not (fn.startswith("test_") and fn.endswith(".py")):
            continue
        modname = fn[:-3]
        spec = importlib.util.spec_from_file_location(modname, os.path.join(HERE, fn))
        mod = importlib.util.module_from_spec(spec)
        sys.modules[modname] = mod
        try:
            spec.loader.exec_module(mod)
        except Exception:
            tests.append((modname + ".<import>", None, traceback.format_exc()))
            continue
        funcs = [(getattr(mod, n).__code__.co_firstlineno, n) for n in dir(mod)
                 if n.startswith("test_") and callable(getattr(mod, n))]
        for _, n in sorted(funcs):
            full = "%s.%s" % (modname, n)
            if pattern and pattern not in full:
                continue
            tests.append((full, getattr(mod, n), None))
    return tests


def run_one(name, fn):
    t = T(name)
    timeout = getattr(fn, "timeout", DEFAULT_TIMEOUT)
    if SANITIZED:
        timeout *= getattr(fn, "asan_factor", 2)
    start = time.monotonic()
    signal.signal(signal.SIGALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_REAL, timeout)
    err = None
    try:
        if fn.__code__.co_argcount >= 1:
            fn(t)
        else:
            fn()
    except TestTimeout:
        err = "timed out after %.0f s (per-test limit)" % timeout
        for p in t._ptys:
            err += "\n--- pty %s, output so far:\n%s" % (" ".join(map(str, p.proc.args)), short(p.text))
    except TestFailure as e:
        err = str(e)
    except AssertionError as e:
        err = "assertion failed: %s\n%s" % (e, traceback.format_exc(limit=-3))
    except Exception:
        err = traceback.format_exc()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        try:
            t.cleanup()
        except TestTimeout:
            pass
    return err, (time.monotonic() - start) * 1000


def main():
    global BINARY, SANITIZED
    ap = argparse.ArgumentParser(description="runbook test suite")
    ap.add_argument("--binary", default="./runbook")
    ap.add_argument("-k", dest="pattern", default=None, help="only tests whose name contains this")
    ap.add_argument("-v", dest="verbose", action="store_true", help="print the whole failure reason")
    a = ap.parse_args()
    BINARY = os.path.abspath(a.binary)
    passed = failed = 0
    if not os.access(BINARY, os.X_OK):
        print("FAIL harness: binary %s does not exist or is not executable" % BINARY, flush=True)
        print("0 passed, 1 failed", flush=True)
        return 1
    with open(BINARY, "rb") as f:
        image = f.read()
    # Dynamically linked, the sanitizer's own strings live in libasan.so: look for its hooks.
    SANITIZED = any(m in image for m in (b"__asan_init", b"libasan.so", b"__ubsan_handle", b"AddressSanitizer"))
    os.chdir(REPO)
    sys.modules["run"] = sys.modules[__name__]   # tests do `from run import ...`: share this module
    for name, fn, import_err in discover(a.pattern):
        if fn is None:
            failed += 1
            print("FAIL %s: cannot import:%s" % (name, "".join("\n    " + l for l in import_err.splitlines())), flush=True)
            continue
        err, ms = run_one(name, fn)
        if err is None:
            passed += 1
            print("ok   %s (%d ms)" % (name, ms), flush=True)
        else:
            failed += 1
            reason = err.rstrip()
            if not a.verbose and len(reason) > 6000:
                reason = short(reason, 6000)
            first, _, rest = reason.partition("\n")
            details = "".join("\n    " + l for l in rest.splitlines())
            print("FAIL %s: %s%s" % (name, first, details), flush=True)
    print("%d passed, %d failed" % (passed, failed), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
