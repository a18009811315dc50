"""What the server fixtures (servers_pg.py, servers_redis.py, servers_prometheus.py) share: the
error they raise, waiting (bounded) for a server with its log at hand, killing one. Not a test
module."""
import os
import select
import signal
import subprocess
import time


class ServerError(Exception):
    """A fixture's server did not start or answer; the message ends with the tail of its log."""


def log_tail(log):
    """The end of a server's log, as the last part of an error message ("" if there is none)."""
    if not log or not os.path.exists(log):
        return ""
    with open(log, errors="replace") as f:
        return "\n--- server log:\n" + f.read()[-3000:]


def wait_until(what, fn, timeout, proc=None, log=None, interval=0.02):
    """Polls fn() (bounded) until it returns something true, and returns that; raises ServerError
    with the server's log if time runs out or the server (proc) exits first."""
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v:
            return v
        if proc is not None and proc.poll() is not None:
            raise ServerError("%s: the server exited (code %s)%s" % (what, proc.returncode, log_tail(log)))
        if time.monotonic() > deadline:
            raise ServerError("%s: not within %.0f s%s" % (what, timeout, log_tail(log)))
        select.select([], [], [], interval)   # poll interval, not a synchronisation


def kill(proc, timeout=10):
    """SIGKILL to a server by its pid (a test server keeps nothing), then waits (bounded) for it."""
    if proc.poll() is not None:
        return
    try:
        os.kill(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        pass
