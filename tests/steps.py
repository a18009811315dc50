"""Helpers for the tests that run Lua as the steps of a runbook and read back what the steps print
(test_pg, test_redis, test_http, test_sys, test_tasks, test_modules, test_dns): writing the
runbook, running it with --auto and a transcript, the `@@ key=value` lines its steps emit, the probe
records, and the time a call or a Ctrl-C took against its deadline. Not a test module.

A step's Lua sees emit(k, v), which prints `@@ k=v`; parse() reads those lines back."""
import os
import re
import select
import time

from run import check_sanitizer, expect_rc, fail

ASK = r"Type yes to run it, or n to skip: "
MENU_AFTER_FAILURE = r"Enter: retry · s: skip · (?:r: repl · )?q: quit > "

EMIT = 'local function emit(k, v) print("@@ " .. k .. "=" .. tostring(v)) end'
VALUE = re.compile(r"^@@ ([^=]+)=(.*)$")


def lua_str(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def step(lua, sid="p", title="probe"):
    return 'step "%s" { title = "%s", run = function(ctx)\n%s\n  end },' % (sid, title, lua)


def write_runbook(t, name, prelude, steps, summary, inputs=""):
    """Writes name.lua in the test's directory: prelude (Lua: requires, locals), emit(), then a
    runbook of the given steps and inputs. Returns its path."""
    return t.write(name + ".lua", '''%s
%s
return runbook {
  name = "%s", summary = "%s", severity = "SEV4",
  inputs = { %s },
%s
}
''' % (prelude, EMIT, name, summary, inputs, steps))


def parse(out):
    """The values of the `@@ key=value` lines of out, by key (the last one wins)."""
    values = {}
    for line in out.splitlines():
        m = VALUE.match(line)
        if m:
            values[m.group(1)] = m.group(2)
    return values


def run_auto(t, path, cast, args=(), want_rc=0, timeout=60, stdin=None):
    """Runs the runbook at path with --auto and its transcript at cast; fails unless it exits with
    want_rc (None: any). Returns (emitted values, stdout, stderr)."""
    rc, out, err = t.run(["exec", path, "--auto", "--transcript", cast] + list(args), timeout=timeout, stdin=stdin)
    if want_rc is not None:
        expect_rc((rc, out, err), want_rc)
    return parse(out), out, err


def run_stamped(t, path, cast, args=(), timeout=60, env=None):
    """Like run_auto, reading stdout as it comes: returns (exit code, [(time.monotonic() at which
    the line arrived, line) for each line of stdout], stdout, stderr)."""
    p = t.spawn(["exec", path, "--auto", "--transcript", cast] + list(args), env=env)
    lines, out, err, pending = [], b"", b"", b""
    deadline = time.monotonic() + timeout
    streams = [p.stdout, p.stderr]
    while streams:
        left = deadline - time.monotonic()
        if left <= 0:
            p.kill()
            fail("the run did not end within %ss; output:\n%s" % (timeout, out.decode("utf-8", "replace")))
        ready, _, _ = select.select(streams, [], [], min(left, 0.5))
        now = time.monotonic()
        for s in ready:
            data = os.read(s.fileno(), 65536)
            if not data:
                streams.remove(s)
                continue
            if s is p.stderr:
                err += data
                continue
            out += data
            pending += data
            while b"\n" in pending:
                line, _, pending = pending.partition(b"\n")
                lines.append((now, line.decode("utf-8", "replace")))
    rc = p.wait(10)
    out, err = out.decode("utf-8", "replace"), err.decode("utf-8", "replace")
    check_sanitizer(err, "stderr of the run")
    return rc, lines, out, err


def probes(records, primitive):
    """The transcript's probe records of one primitive (e.g. "pg.query")."""
    return [r for r in records if r["type"] == "probe" and r["primitive"] == primitive]


def on_pty(t, path, cast):
    """Starts the runbook at path with --auto on a pseudo-terminal, its transcript at
    t.path(cast); returns (the pty, the transcript's path)."""
    tr = t.path(cast)
    return t.pty(["exec", path, "--auto", "--transcript", tr]), tr


def shown_before(p, pattern):
    """Waits for pattern on the pty; returns all it showed before the match."""
    m = p.expect(pattern)
    return p.text[:m.start()]


def window(deadline_ms):
    """The (lowest, highest) duration in ms that keeps a deadline of deadline_ms."""
    return deadline_ms - 50, deadline_ms + max(250, deadline_ms * 0.1)


def expect_within(ms, deadline_ms, what):
    """A call that gave up at its deadline took about the deadline: window(deadline_ms)."""
    print("    %s: %.0f ms for a %d ms deadline" % (what, ms, deadline_ms), flush=True)
    lo, hi = window(deadline_ms)
    if not lo <= ms <= hi:
        fail("%s took %.1f ms for a %d ms deadline (allowed %d..%d)" % (what, ms, deadline_ms, lo, hi))


def expect_fast(ms, limit_ms, what):
    print("    %s: %.0f ms" % (what, ms), flush=True)
    if ms > limit_ms:
        fail("%s took %.0f ms (at most %d ms expected)" % (what, ms, limit_ms))


def interrupt(p, pattern):
    """Ctrl-C on the pty, then waits for pattern; returns the seconds in between."""
    start = time.monotonic()
    p.ctrl_c()
    p.expect(pattern)
    return time.monotonic() - start
