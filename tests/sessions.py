"""Helpers for the tests that drive sessions spawned with t.spawn (test_resume, test_timeline,
test_lock, test_history, test_transcript, test_pg): reading a process's output up to a marker,
finishing it, killing a whole session for real, and altering a transcript. Not a test module."""
import os
import re
import select
import signal
import time

from run import fail, processes, short, sweep_sessions


class Reader:
    """Reads a pipe until a marker appears (bounded); keeps everything read in .buf."""

    def __init__(self, stream):
        self.stream, self.buf = stream, b""

    def _read(self, found, what, timeout):
        """Reads (bounded) until found() is true, or with found None to the end of the stream."""
        deadline = time.monotonic() + timeout
        fd = self.stream.fileno()
        while found is None or not found():
            left = deadline - time.monotonic()
            if left <= 0:
                fail("timed out waiting for %s:\n%s" % (what, short(self.buf.decode("utf-8", "replace"))))
            r, _, _ = select.select([fd], [], [], left)
            if r:
                chunk = os.read(fd, 65536)
                if not chunk:
                    if found is None:
                        return
                    fail("stream closed before %s:\n%s" % (what, self.buf.decode("utf-8", "replace")))
                self.buf += chunk

    def until(self, needle, timeout=15):
        """Reads until needle appears; returns everything read so far, as text."""
        self._read(lambda: needle.encode() in self.buf, repr(needle), timeout)
        return self.buf.decode("utf-8", "replace")

    def match(self, pattern, timeout=15):
        """Reads until the regex pattern matches what was read so far (as text); returns the match."""
        rx, m = re.compile(pattern), None

        def found():
            nonlocal m
            m = rx.search(self.buf.decode("utf-8", "replace"))
            return m
        self._read(found, "/%s/" % pattern, timeout)
        return m

    def rest(self, timeout=15):
        """Reads to the end of the stream (bounded), closes it, returns everything as text."""
        self._read(None, "the end of the stream", timeout)
        self.stream.close()
        return self.buf.decode("utf-8", "replace")


def finish(proc, reader, timeout=15):
    """Reads a spawned process's stdout to the end, waits for it; returns (code, stdout, stderr)."""
    out = reader.rest(timeout)
    proc.wait(timeout)
    err = proc.stderr.read().decode("utf-8", "replace")
    proc.stderr.close()
    return proc.returncode, out, err


def _alive_in(sessions):
    return any(int(fields[3]) in sessions and fields[0] != "Z" for _, fields in processes())


def _sessions_below(root):
    """The session of root and those of all its descendants (the commands a runbook starts run in
    sessions of their own)."""
    procs = {pid: fields for pid, fields in processes()}
    sessions, todo = {root}, [root]
    while todo:
        parent = todo.pop()
        for pid, fields in procs.items():
            if int(fields[1]) == parent:
                sessions.add(int(fields[3]))
                todo.append(pid)
    return sessions


def kill_9(proc, timeout=10):
    """kill -9 of a session started by t.spawn and of every command it started (they have sessions
    of their own), then waits until none of them is left: a killed `cat FIFO` that has not yet
    closed the FIFO would swallow what the test writes for the next session."""
    os.kill(proc.pid, signal.SIGSTOP)            # no new command meanwhile
    sessions = _sessions_below(proc.pid)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout)
    deadline = time.monotonic() + timeout
    while True:
        sweep_sessions(sessions)
        if not _alive_in(sessions):
            break
        if time.monotonic() > deadline:
            fail("processes of session %d survive SIGKILL" % proc.pid)
        select.select([], [], [], 0.01)   # poll interval while the kernel tears them down
    for s in (proc.stdout, proc.stderr):
        if s and not s.closed:
            s.close()


def altered(t, path, needle, replacement, name="bad.cast"):
    """A copy of the file at path (in the test's directory, as name) whose first byte of needle is
    replaced: what an edited transcript looks like. Returns the copy's path."""
    with open(path, "rb") as f:
        data = bytearray(f.read())
    data[data.index(needle)] = ord(replacement)
    bad = t.path(name)
    with open(bad, "wb") as f:
        f.write(bytes(data))
    return bad
