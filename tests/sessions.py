"""Helpers for the incident tests (test_resume, test_timeline, test_lock): reading a process's
output up to a marker, and killing a whole session for real. Not a test module."""
import os
import select
import signal
import time

from run import fail, short, sweep_sessions


class Reader:
    """Reads a pipe until a marker appears (bounded); keeps everything read in .buf."""

    def __init__(self, stream):
        self.stream, self.buf = stream, b""

    def until(self, needle, timeout=15):
        deadline = time.monotonic() + timeout
        fd = self.stream.fileno()
        while needle.encode() not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                fail("timed out waiting for %r:\n%s" % (needle, short(self.buf.decode("utf-8", "replace"))))
            r, _, _ = select.select([fd], [], [], left)
            if r:
                chunk = os.read(fd, 65536)
                if not chunk:
                    fail("stream closed before %r:\n%s" % (needle, self.buf.decode("utf-8", "replace")))
                self.buf += chunk
        return self.buf.decode("utf-8", "replace")

    def rest(self, timeout=15):
        """Reads to the end of the stream (bounded), closes it, returns everything as text."""
        deadline = time.monotonic() + timeout
        fd = self.stream.fileno()
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                fail("the stream is still open:\n" + short(self.buf.decode("utf-8", "replace")))
            r, _, _ = select.select([fd], [], [], left)
            if r:
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                self.buf += chunk
        self.stream.close()
        return self.buf.decode("utf-8", "replace")


def finish(proc, reader, timeout=15):
    """Reads a spawned process's stdout to the end, waits for it; returns (code, stdout, stderr)."""
    out = reader.rest(timeout)
    proc.wait(timeout)
    err = proc.stderr.read().decode("utf-8", "replace")
    proc.stderr.close()
    return proc.returncode, out, err


def _alive_in(session):
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry) as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[3]) == session and fields[0] != "Z":
            return True
    return False


def kill_9(proc, timeout=10):
    """kill -9 of a session started by t.spawn and of every command it started (they have process
    groups of their own), then waits until none of them is left: a killed `cat FIFO` that has not
    yet closed the FIFO would swallow what the test writes for the next session."""
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout)
    deadline = time.monotonic() + timeout
    while True:
        sweep_sessions({proc.pid})
        if not _alive_in(proc.pid):
            break
        if time.monotonic() > deadline:
            fail("processes of session %d survive SIGKILL" % proc.pid)
        select.select([], [], [], 0.01)   # poll interval while the kernel tears them down
    for s in (proc.stdout, proc.stderr):
        if s and not s.closed:
            s.close()
