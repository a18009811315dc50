"""The transcript: format, hash chain, verify (complete / truncated / invalid at line N), show,
file mode, symlink refusal, kill -9 durability, secrets kept out."""
import hashlib
import json
import os
import re
import signal
import subprocess

from run import expect_eq, expect_in, expect_not_in, expect_rc, fail
import run as harness
from sessions import Reader

SMALL = 'step "a" { title = "A", run = function(ctx) ctx:ok("fine ✔") end },'

RICH = '''
step "look" { title = "Look", explain = "A probe and some notes.", run = function(ctx)
  local r = must(sh.read { "echo", "probe says hi" })
  ctx:ok("probe ok")
  ctx:finding("something odd")
end },
step "act" { title = "Act", run = function(ctx)
  must(sh.action { "true", summary = "do nothing, carefully" })
  ctx:note("acted")
end },
step "end" { title = "End", run = function(ctx) return ctx:resolved("all good") end },'''


def make_transcript(t, body=RICH, name="rich", args=("--yes",)):
    path = t.runbook(name, body)
    tr = t.path(name + ".cast")
    rc, out, err = t.run(["exec", path, "--auto", "--transcript", tr] + list(args))
    if rc != 0:
        fail("exec %s: exit %s\n%s%s" % (name, rc, out, err))
    m = re.search(r"^chain head ([0-9a-f]{64})$", out, re.M)
    if not m:
        fail("no chain head printed:\n" + out)
    return path, tr, out, m.group(1)


def chain_verdict(out):
    """verify's answer about the chain: without the signature line that follows (test_forgery)."""
    return "\n".join(l for l in out.strip().split("\n") if not l.startswith("unsigned: "))


def verify(t, path):
    rc, out, err = t.run(["transcript", "verify", path])
    return rc, chain_verdict(out), err


def whole_lines(tr, torn="the transcript does not end with a newline"):
    """The lines of the transcript tr (bytes, without their newlines); fails with torn if its last
    line has no newline."""
    with open(tr, "rb") as f:
        data = f.read()
    if not data.endswith(b"\n"):
        fail(torn)
    return data[:-1].split(b"\n")


def verify_lines(t, lines, name):
    """Writes lines (bytes) as the transcript name and verifies that; returns verify's answer."""
    p = t.path(name)
    with open(p, "wb") as f:
        f.write(b"\n".join(lines) + b"\n")
    return verify(t, p)


def chain(lines):
    h = hashlib.sha256(lines[0]).hexdigest()
    heads = [h]
    for l in lines[1:]:
        h = hashlib.sha256(h.encode() + l).hexdigest()
        heads.append(h)
    return heads


def test_format_and_chain(t):
    path, tr, out, head = make_transcript(t)
    lines = whole_lines(tr)
    objs = []
    for i, l in enumerate(lines, 1):
        try:
            objs.append(json.loads(l))
        except ValueError as e:
            fail("line %d is not JSON (%s): %r" % (i, e, l[:200]))
    header = objs[0]
    expect_eq(header["version"], 2, "asciicast version")
    for k in ("width", "height", "timestamp"):
        if not isinstance(header.get(k), int):
            fail("header has no integer %s: %r" % (k, header))
    rb = header["runbook"]
    for k in ("name", "file", "sha256", "user", "host", "tty", "pid", "argv", "started", "yes", "dry_run",
              "auto", "version", "session", "inputs"):
        if k not in rb:
            fail("header.runbook has no %r: %r" % (k, rb))
    expect_eq(rb["name"], "rich", "header name")
    with open(path, "rb") as f:
        expect_eq(rb["sha256"], hashlib.sha256(f.read()).hexdigest(), "header sha256 of the runbook file")
    expect_eq((rb["yes"], rb["dry_run"], rb["auto"]), (True, False, True), "header flags")
    expect_eq(rb["argv"][:2], ["runbook", "exec"], "header argv")
    expect_eq(rb["pid"] > 0, True, "header pid")
    _, vout, _ = t.run(["--version"])
    expect_eq("runbook " + rb["version"] + "\n", vout, "header version")
    # Events: [time, code, text]; times never go backwards.
    last_t = 0.0
    seq = 0
    heads = chain(lines)
    for i, ev in enumerate(objs[1:], 2):
        if not (isinstance(ev, list) and len(ev) == 3 and isinstance(ev[0], (int, float))
                and ev[1] in ("o", "m", "a") and isinstance(ev[2], str)):
            fail("line %d is not an event [t, code, text]: %r" % (i, ev))
        if ev[0] < last_t:
            fail("line %d: time goes backwards" % i)
        last_t = ev[0]
        if ev[1] == "a":
            rec = json.loads(ev[2])
            seq += 1
            expect_eq(rec["seq"], seq, "seq at line %d" % i)
            expect_eq(rec["prev"], heads[i - 2], "prev (chain head of the line before) at line %d" % i)
            if not re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", rec["ts"]):
                fail("line %d: ts %r is not UTC ISO 8601" % (i, rec["ts"]))
    types = [json.loads(e[2])["type"] for e in objs[1:] if e[1] == "a"]
    for want in ("session_start", "step_start", "probe", "note", "plan", "confirm", "action_start",
                 "action_result", "step_end", "session_end"):
        expect_in(want, types, "record types")
    expect_eq(types[0], "session_start", "first record")
    expect_eq(types[-1], "session_end", "last record")
    end = json.loads(objs[-1][2])
    body = objs[-1][2]
    sealed = body[:body.rindex(',"seal":')] + "}"
    expect_eq(end["seal"], hashlib.sha256(sealed.encode()).hexdigest(), "seal")
    expect_eq((end["exit"], end["outcome"]), (0, "resolved"), "session_end")
    expect_eq(heads[-1], head, "chain head printed at the end of the run")
    markers = [e[2] for e in objs[1:] if e[1] == "m"]
    expect_eq(markers, ["1. Look", "2. Act", "3. End"], "markers")
    # verify agrees
    rc, vout, err = verify(t, tr)
    expect_eq(rc, 0, "verify exit code")
    expect_eq(vout, "complete: %d lines, %d audit records, exit 0 (resolved)\nchain head %s" % (len(lines), seq, head),
              "verify output")


def test_mode_0600(t):
    _, tr, _, _ = make_transcript(t)
    expect_eq(oct(os.stat(tr).st_mode & 0o777), oct(0o600), "mode of --transcript file")
    os.umask(0)
    try:
        t.runbook("dflt", SMALL)
        rc, out, err = t.run(["exec", "dflt", "--auto"])
    finally:
        os.umask(0o022)
    expect_rc((rc, out, err), 0)
    tr2 = t.the_transcript()
    expect_eq(oct(os.stat(tr2).st_mode & 0o777), oct(0o600), "mode of the default transcript (umask 0)")


def test_refuses_symlink_and_existing(t):
    t.runbook("sym", SMALL)
    target = t.write("precious", "do not touch\n")
    link = t.path("link.cast")
    os.symlink(target, link)
    rc, out, err = t.run(["exec", "sym", "--auto", "--transcript", link])
    if rc == 0:
        fail("a transcript was written through a symlink:\n" + out)
    expect_eq(rc, 2, "exit code")
    expect_in("cannot create transcript " + link, err)
    expect_in("never overwritten or followed through a symlink", err)
    with open(target) as f:
        expect_eq(f.read(), "do not touch\n", "symlink target")
    expect_eq(os.readlink(link), target, "the symlink itself")
    # A dangling symlink: its target must not be created.
    ghost = t.path("ghost")
    link2 = t.path("link2.cast")
    os.symlink(ghost, link2)
    rc, out, err = t.run(["exec", "sym", "--auto", "--transcript", link2])
    expect_eq(rc, 2, "exit code (dangling symlink)")
    if os.path.exists(ghost):
        fail("the dangling symlink's target was created")
    # An existing file is never overwritten.
    rc, out, err = t.run(["exec", "sym", "--auto", "--transcript", target])
    expect_eq(rc, 2, "exit code (existing file)")
    with open(target) as f:
        expect_eq(f.read(), "do not touch\n", "existing file")
    expect_not_in("fine", out, "nothing ran")


def audit_lines(lines):
    """1-based numbers of the audit lines."""
    out = []
    for i, l in enumerate(lines, 1):
        if i > 1 and json.loads(l)[1] == "a":
            out.append(i)
    return out


def test_flip_one_byte(t):
    _, tr, _, _ = make_transcript(t)
    lines = whole_lines(tr)
    audits = audit_lines(lines)
    problems = []
    for n, line in enumerate(lines, 1):
        # Two edits per line: one that keeps the JSON valid (a letter's case in an event's text,
        # a digit of an audit record's timestamp, a letter of the header's runbook name), one that
        # breaks it (the closing bracket).
        pos = None
        if n == 1:
            pos = line.index(b'"name":"rich"') + len(b'"name":"')
        elif json.loads(line)[1] == "a":
            pos = re.search(rb'\\"ts\\":\\"\d{4}-\d\d-\d\dT\d\d:\d\d:(\d)', line).start(1)
        else:
            text = line.index(b',"', line.index(b",") + 1) + 2
            for j in range(text + 1, len(line)):
                if 97 <= line[j] <= 122 and line[j - 1] != 92:
                    pos = j
                    break
        variants = []
        if pos is not None:
            flipped = bytearray(line)
            flipped[pos] = flipped[pos] ^ (0x20 if flipped[pos] >= 97 else 0x01)
            variants.append(("valid JSON", bytes(flipped)))
        broken = bytearray(line)
        broken[-1] = ord("x")
        variants.append(("broken JSON", bytes(broken)))
        for kind, new in variants:
            rc, out, err = verify_lines(t, lines[:n - 1] + [new] + lines[n:], "flip.cast")
            m = re.fullmatch(r"invalid at line (\d+): .*", out)
            if rc != 1 or not m:
                problems.append("line %d (%s): rc=%s %r" % (n, kind, rc, out))
                continue
            got = int(m.group(1))
            if kind == "broken JSON" or n == len(lines):
                want = (n,)            # the line itself is not an event, or the seal breaks
            else:
                # The chain is checked at audit records: the first one after the edit notices.
                want = (min(a for a in audits if a > n),)
            if got not in want:
                problems.append("line %d (%s): reported line %d, expected %s (%s)" % (n, kind, got, want[0], out))
    if problems:
        fail("flipped bytes:\n  " + "\n  ".join(problems))


def test_delete_line(t):
    _, tr, _, _ = make_transcript(t)
    lines = whole_lines(tr)
    audits = audit_lines(lines)
    problems = []
    for n in range(1, len(lines) + 1):
        rc, out, err = verify_lines(t, lines[:n - 1] + lines[n:], "del.cast")
        if n == len(lines):
            # Dropping the last line (session_end) is a truncation at a line boundary.
            want = "truncated at line %d: no session_end record" % len(lines)
            if rc != 1 or out != want:
                problems.append("deleting the last line: rc=%s %r, expected %r" % (rc, out, want))
            continue
        m = re.fullmatch(r"invalid at line (\d+): .*", out)
        if rc != 1 or not m:
            problems.append("deleting line %d: rc=%s %r" % (n, rc, out))
            continue
        got = int(m.group(1))
        # In the edited file, line n is what followed the deleted one; the first audit record
        # from there on notices (line 1 gone: the new first line is no header).
        want = 1 if n == 1 else min(a for a in audits if a > n) - 1
        if got != want:
            problems.append("deleting line %d: reported line %d, expected %d (%s)" % (n, got, want, out))
    # Inserting a copy of a line, and swapping two lines, are caught too.
    for n in (3, len(lines) // 2):
        dup = lines[:n] + [lines[n - 1]] + lines[n:]
        p = t.path("dup.cast")
        with open(p, "wb") as f:
            f.write(b"\n".join(dup) + b"\n")
        rc, out, _ = verify(t, p)
        if rc != 1 or not out.startswith("invalid at line "):
            problems.append("duplicating line %d: rc=%s %r" % (n, rc, out))
    if problems:
        fail("deleted lines:\n  " + "\n  ".join(problems))


def verify_many(t, paths, workers=6):
    """Runs `transcript verify` on many files, a few at a time; returns {path: (rc, stdout)}."""
    results, running, queue = {}, {}, list(paths)
    env = t.environ()
    while queue or running:
        while queue and len(running) < workers:
            p = queue.pop()
            proc = subprocess.Popen([t.binary, "transcript", "verify", p], stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, env=env, start_new_session=True)
            t._groups.append(proc.pid)
            running[proc.pid] = (p, proc)
        pid, status = os.wait()
        if pid not in running:
            continue
        p, proc = running.pop(pid)
        proc.returncode = os.waitstatus_to_exitcode(status)
        out = proc.stdout.read().decode("utf-8", "replace")
        err = proc.stderr.read().decode("utf-8", "replace")
        proc.stdout.close()
        proc.stderr.close()
        harness.check_sanitizer(err, "stderr of transcript verify " + p)
        results[p] = (proc.returncode, chain_verdict(out))
    return results


def test_truncation_at_every_offset(t):
    # Every byte offset of a real transcript: only the whole file is complete, every prefix is
    # "truncated at line N" with N the line the cut falls in (or the line after the last whole
    # one). Every offset is tried (about 2,000 runs of `transcript verify`, six at a time, ~6 s);
    # a sanitizer build starts ~10x slower, so there: every offset of the first 256 bytes (inside
    # the header line), the offsets around every line boundary (the cut just before, at and after
    # each newline, where whole-line logic can go wrong), and every 11th offset elsewhere (~550).
    _, tr, _, _ = make_transcript(t, SMALL, "small", ())
    with open(tr, "rb") as f:
        data = f.read()
    offsets = set(range(len(data)))
    if t.sanitized:
        keep = set(range(min(256, len(data))))
        for i, b in enumerate(data):
            if b == 10:
                keep.update((i - 1, i, i + 1, i + 2))
        keep.update(range(0, len(data), 11))
        offsets = {o for o in keep if 0 <= o < len(data)}
    os.makedirs(t.path("cuts"))
    paths = {}
    for k in sorted(offsets):
        p = t.path("cuts", "%05d.cast" % k)
        with open(p, "wb") as f:
            f.write(data[:k])
        paths[p] = k
    results = verify_many(t, list(paths))
    problems = []
    for p, k in sorted(paths.items(), key=lambda x: x[1]):
        rc, out = results[p]
        want_line = data[:k].count(b"\n") + 1
        if rc != 1 or not re.fullmatch(r"truncated at line %d: .*" % want_line, out):
            problems.append("cut at byte %d: rc=%s %r (expected truncated at line %d)" % (k, rc, out, want_line))
    rc, out = verify_many(t, [tr])[tr]
    if rc != 0 or not out.startswith("complete: "):
        problems.append("the whole file: rc=%s %r" % (rc, out))
    if problems:
        fail("%d of %d cuts wrong:\n  %s" % (len(problems), len(offsets), "\n  ".join(problems[:40])))


test_truncation_at_every_offset.timeout = 90


def test_show(t):
    _, tr, _, _ = make_transcript(t)
    rc, out, err = t.run(["transcript", "show", tr])
    expect_rc((rc, out, err), 0)
    lines = out.splitlines()
    if not re.match(r"rich · session [0-9a-f]{6} · \S+@\S+ · started \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ · --yes$", lines[0]):
        fail("first line of show: %r" % lines[0])
    body = "\n".join(lines[1:])
    for pat in (r"\d\d:\d\d:\d\d\.\d{3} +session_start +rich by \S+ \(session [0-9a-f]{6}\)",
                r"look +step_start +Look",
                r"look +probe +sh\.read echo 'probe says hi' → exit 0: probe says hi \([\d.]+ ms\)",
                r"look +note +\[ok\] probe ok",
                r"look +note +\[finding\] something odd",
                r"act +plan +sh\.action: do nothing, carefully",
                r"act +confirm +yes \(--yes\) by \S+",
                r"act +action_start +sh\.action true",
                r"act +action_result +sh\.action → exit 0",
                r"end +step_end +ok",
                r"session_end +resolved, exit 0"):
        if not re.search(pat, body):
            fail("transcript show lacks /%s/:\n%s" % (pat, out))
    expect_eq(lines[-1], "transcript complete", "last line of show")
    # On a cut transcript, show still prints what there is and says where it stops.
    with open(tr, "rb") as f:
        data = f.read()
    cut = t.path("cut.cast")
    with open(cut, "wb") as f:
        f.write(data[:len(data) // 2])
    rc, out, err = t.run(["transcript", "show", cut])
    expect_rc((rc, out, err), 0)
    if not re.search(r"^transcript truncated at line \d+: ", out.splitlines()[-1]):
        fail("show of a cut transcript:\n" + out)
    rc, out, err = t.run(["transcript", "show", t.write("junk.cast", "hello\n")])
    expect_rc((rc, out, err), 1)
    expect_in("is not a runbook transcript", err)
    rc, out, err = t.run(["transcript", "verify", t.path("missing.cast")])
    expect_rc((rc, out, err), 2, "verify of a missing file")


# ------------------------------------------------------------------------------------ kill -9
KILL = '''
step "one" { title = "One", run = function(ctx)
  ctx:note("waiting for fifo 1")
  must(sh.read { "cat", "%(f1)s", timeout = 30 })
  ctx:ok("fifo 1 released")
end },
step "two" { title = "Two", run = function(ctx)
  must(sh.action { "touch", "%(marker)s", summary = "create the marker" })
  ctx:note("waiting for fifo 2")
  must(sh.read { "cat", "%(f2)s", timeout = 30 })
  ctx:ok("fifo 2 released")
end },
step "three" { title = "Three", run = function(ctx)
  ctx:note("waiting for fifo 3")
  must(sh.read { "cat", "%(f3)s", timeout = 30 })
  ctx:ok("fifo 3 released")
end },'''


def test_kill_9_loses_nothing_shown(t):
    for point in (1, 2, 3):
        fifos = [t.mkfifo("k%d-f%d" % (point, i)) for i in (1, 2, 3)]
        marker = t.path("k%d-marker" % point)
        name = "kill%d" % point
        t.runbook(name, KILL % {"f1": fifos[0], "f2": fifos[1], "f3": fifos[2], "marker": marker})
        tr = t.path(name + ".cast")
        proc = t.spawn(["exec", name, "--auto", "--yes", "--transcript", tr])
        reader = Reader(proc.stdout)
        for i in range(1, point):
            reader.until("waiting for fifo %d\n" % i)
            t.release(fifos[i - 1])
            reader.until("fifo %d released\n" % i)
        reader.until("waiting for fifo %d\n" % point)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
        # Whatever was still in the pipe was also shown: read it all.
        rest = proc.stdout.read()
        proc.stdout.close()
        err = proc.stderr.read().decode("utf-8", "replace")
        proc.stderr.close()
        shown = (reader.buf + rest).decode("utf-8")
        expect_eq(err, "", "stderr")
        lines = whole_lines(tr, "kill at point %d: torn last line although every write is one line" % point)
        events = [json.loads(l) for l in lines[1:]]
        recorded = "".join(e[2] for e in events if e[1] == "o")
        if not recorded.startswith(shown):
            fail("kill at point %d: what the terminal showed is not all in the transcript\nshown:\n%s\nrecorded:\n%s"
                 % (point, shown, recorded))
        for l in shown.splitlines():
            expect_in(l, recorded, "kill at point %d, line shown" % point)
        if point >= 2:
            expect_in("fifo %d released" % (point - 1), recorded)
            types = [json.loads(e[2])["type"] for e in events if e[1] == "a"]
            expect_in("action_result", types, "records before the kill at point %d" % point)
        rc, out, _ = verify(t, tr)
        expect_eq((rc, out), (1, "truncated at line %d: no session_end record" % (len(lines) + 1)),
                  "verify after kill at point %d" % point)


def test_canary_secret_never_written(t):
    canary = "CANARYpw123"
    secret = "Sekr1t-Value-77"
    url = "postgres://u:%s@127.0.0.1/db" % canary
    path = t.runbook("canary", '''
step "leak" { title = "Leak", run = function(ctx)
  ctx:note("connecting to %s with %s", ctx.db, ctx.token)
  ctx:show("db=" .. ctx.db .. "\\ntoken=" .. ctx.token)
  sh.read { "echo", ctx.db, ctx.token }
  sh.read { "sh", "-c", "echo \\"$DB\\" >&2; echo password=" .. ctx.token, env = { DB = ctx.db } }
  print("print: " .. ctx.db)
  ctx:note("conninfo host=db password=PlainPw999 user=x")
  ctx:note("another url https://admin:HttpPw555@127.0.0.1:9/x")
  -- The command writes each secret in two pieces, a moment apart: the live output must still
  -- never show it (redaction has to see whole lines, not whatever one read() returned).
  sh.read { "sh", "-c", [[printf %s "$T" | head -c 7; sleep 0.3; printf %s "$T" | tail -c +8; echo]], env = { T = ctx.token } }
  sh.read { "sh", "-c", [[printf %s "$DB" | head -c 18; sleep 0.3; printf %s "$DB" | tail -c +19; echo]], env = { DB = ctx.db } }
  must(sh.action { "echo", ctx.db, summary = "talk to " .. ctx.db, target = ctx.db })
  must(nil, "failed for " .. ctx.db .. " as " .. ctx.token)
end },''', inputs='db = input.url { env = "CANARY_DB" }, token = input.secret { env = "CANARY_TOKEN" }')
    tr = t.path("canary.cast")
    rc, out, err = t.run(["exec", path, "--auto", "--yes", "--transcript", tr, "db=" + url],
                         env={"CANARY_TOKEN": secret})
    expect_rc((rc, out, err), 1)
    expect_in("failed for postgres://u:***@127.0.0.1/db as ***", out)   # the step did run
    expect_in("connecting to postgres://u:***@127.0.0.1/db with ***", out)
    expect_in("conninfo host=db password=*** user=x", out)
    expect_in("another url https://admin:***@127.0.0.1:9/x", out)
    with open(tr, "rb") as f:
        data = f.read()
    rc2, shown, err2 = t.run(["transcript", "show", tr])
    for what, text in (("stdout", out), ("stderr", err), ("transcript", data.decode("utf-8", "replace")),
                       ("transcript show", shown + err2)):
        for s in (canary, secret, "PlainPw999", "HttpPw555"):
            if s in text:
                i = text.index(s)
                fail("%s leaks %r: ...%s..." % (what, s, text[max(0, i - 100):i + 50]))
    header, _, _ = t.read_transcript(tr)
    expect_in("db=postgres://u:***@127.0.0.1/db", header["runbook"]["argv"], "header argv")
    expect_eq(header["runbook"]["inputs"]["token"], "***", "header inputs")
    rc, out, _ = verify(t, tr)
    expect_eq(rc, 0, "verify")


def test_bytes_that_are_not_utf8_stay_valid_json(t):
    # A command's output in another charset, and a note cut in the middle of a character: the
    # transcript stays UTF-8 JSON (U+FFFD for each stray byte) and its chain verifies.
    body = r'''
step "a" { title = "A", run = function(ctx)
  local r = must(sh.read { "printf", "latin1 caf\\351 | cut \\342\\234 | ok \\342\\234\\224" })
  ctx:note("%s", r.stdout)
  ctx:note("%s", ("é"):sub(1, 1) .. " half")
end },'''
    path, tr, out, head = make_transcript(t, body=body, name="bytes")
    with open(tr, "rb") as f:
        data = f.read()
    text = data.decode("utf-8")          # raises on a byte that is not UTF-8
    for line in text.split("\n")[:-1]:
        json.loads(line)
    header, events, records = t.read_transcript(tr)
    shown = t.shown_text(events)
    expect_in("latin1 caf\ufffd | cut \ufffd\ufffd | ok \u2714", shown)
    expect_in("\ufffd half", shown)
    expect_eq(verify(t, tr)[0], 0, "transcript verify")
