"""exec --resume TRANSCRIPT: after a kill -9 (or a handoff), the new session re-runs the probes of
the steps already done but never repeats a confirmed action; it refuses a changed runbook, an
altered transcript and a finished session; it writes a new transcript linked to the old one and
records who took over. Runs are synchronised on FIFOs and on the output they print, never on time."""
import hashlib

from run import expect_eq, expect_in, expect_not_in, expect_rc, fail
from sessions import Reader, altered, finish, kill_9
from signing import keypair, sign_by_config

# Every probe and action appends a word to a log, so that the test can count what really ran.
# Step two's action embeds what a probe just measured (the log's size): its text differs when the
# step runs again, and it must still not be repeated.
KR = '''
step "one" { title = "Look", run = function(ctx)
  must(sh.read { "sh", "-c", "echo probe-one >> %(log)s" })
  ctx:finding("the queue is stuck")
end },
step "two" { title = "Restart, then wait for it", run = function(ctx)
  local seen = #must(sh.read { "cat", "%(log)s" }).stdout
  must(sh.action { "sh", "-c", "echo action-two >> %(log)s", summary = "restart the consumer (log at " .. seen .. " bytes)" })
  must(sh.read { "sh", "-c", "echo probe-two >> %(log)s; echo waiting-two; cat %(f2)s", timeout = 30 })
  ctx:ok("consumer back")
end },
step "three" { title = "Drain, then check", run = function(ctx)
  must(sh.action { "sh", "-c", "echo action-three >> %(log)s", summary = "drain the dead letters" })
  must(sh.read { "sh", "-c", "echo probe-three >> %(log)s; echo waiting-three; cat %(f3)s", timeout = 30 })
  return ctx:resolved("queue moving")
end },'''

ENV = {"Q_TOKEN": "TokenSecret-1234", "Q_DB": "postgres://app:DbSecret-5678@10.0.0.5/jobs"}


def setup(t, name="queue"):
    # Resumed without a terminal: only a signed transcript is trusted (see test_forgery).
    sign_by_config(t, keypair(t))
    names = {"log": t.path("ran.log"), "f2": t.mkfifo(name + "-f2"), "f3": t.mkfifo(name + "-f3")}
    path = t.runbook(name, KR % names, severity="SEV2",
                     inputs='queue = input.string { default = "jobs" }, token = input.secret { env = "Q_TOKEN" }, '
                            'db = input.url { env = "Q_DB" }')
    return names, path


def ran(names):
    with open(names["log"]) as f:
        return f.read().split()


def records(t, tr, kind=None):
    _, _, recs = t.read_transcript(tr)
    return [r for r in recs if kind is None or r["type"] == kind]


def chain_head(path):
    with open(path, "rb") as f:
        data = f.read()
    lines = data.split(b"\n")
    if data.endswith(b"\n"):
        lines.pop()
    h = hashlib.sha256(lines[0]).hexdigest()
    for l in lines[1:]:
        h = hashlib.sha256(h.encode() + l).hexdigest()
    return h


def session(t, names, args, stop_at):
    """Starts `runbook args` and lets it run until it waits in the step of stop_at ("two" or
    "three"); returns (proc, reader)."""
    proc = t.spawn(args, env=ENV)
    rd = Reader(proc.stdout)
    rd.until("waiting-two")
    if stop_at == "three":
        t.release(names["f2"])
        rd.until("waiting-three")
    return proc, rd


def first_session(t, names, tr, stop_at):
    """Runs the runbook until it waits in the step of stop_at ("two" or "three"), then kill -9."""
    proc, _ = session(t, names, ["exec", "queue", "--auto", "--yes", "--incident", "INC-11", "--transcript", tr], stop_at)
    kill_9(proc)


def resumed(t, names, old, new):
    """Resumes the session of transcript old (new: its own) until it waits in step three."""
    return session(t, names, ["exec", "--resume", old, "--auto", "--yes", "--transcript", new], "three")


def test_resume_after_kill_9_never_repeats_an_action_nor_skips_a_probe(t):
    names, _ = setup(t)
    old = t.path("first.cast")
    first_session(t, names, old, "three")
    expect_eq(ran(names), ["probe-one", "action-two", "probe-two", "action-three", "probe-three"], "before the kill")
    rc, out, _ = t.run(["transcript", "verify", old])
    expect_eq(rc, 1, "the killed session's transcript is not complete")
    old_session = records(t, old, "session_start")[0]["session"]
    new = t.path("second.cast")
    proc, rd = resumed(t, names, old, new)
    t.release(names["f3"])
    rc, out, err = finish(proc, rd)
    expect_rc((rc, out, err), 0, "the resumed session")
    # Every probe ran again; no action did.
    expect_eq(ran(names)[5:], ["probe-one", "probe-two", "probe-three"], "what the resumed session ran")
    expect_in("takes over session %s of " % old_session, out)
    expect_in("2 step(s) done before are re-checked (probes only); 2 confirmed action(s) will not be repeated", out)
    expect_in("↻ re-check: completed in session " + old_session, out)
    expect_in("not repeated: step completed in session %s" % old_session, out)
    expect_in("not repeated: confirmed by ", out)
    expect_in("took over the stale lock queue-", out)
    expect_in("resolved: queue moving", out)
    # The new transcript: complete, linked to the old one, saying who took over.
    rc, vout, _ = t.run(["transcript", "verify", new])
    expect_eq(rc, 0, "verify of the new transcript: " + vout)
    header, _, recs = t.read_transcript(new)
    link = header["runbook"]["resumed_from"]
    expect_eq((link["session"], link["transcript"], link["head"]), (old_session, old, chain_head(old)), "resumed_from")
    if not link["ended"].startswith("cut off at line "):
        fail("resumed_from.ended: %r" % link["ended"])
    expect_eq(header["runbook"]["incident"]["id"], "INC-11", "the incident carries over")
    expect_eq(header["runbook"]["inputs"]["token"], "***", "the secret stays out of the header")
    res = [r for r in recs if r["type"] == "resume"]
    expect_eq(len(res), 1, "resume records")
    expect_eq((res[0]["rechecked"], res[0]["not_repeated"]), (["one", "two"], 2), "resume record")
    for k in ("user", "host", "pid"):
        if k not in res[0]["by"]:
            fail("the resume record does not say who took over (%s): %r" % (k, res[0]))
    expect_eq(res[0]["from"]["session"], old_session, "resume record: from")
    withheld = [r for r in recs if r["type"] == "confirm" and r["answer"] == "not repeated"]
    expect_eq([r["step"] for r in withheld], ["two", "three"], "withheld actions")
    expect_eq([r for r in recs if r["type"] == "action_start"], [], "actions started by the resumed session")
    probes = [r["step"] for r in recs if r["type"] == "probe"]
    expect_eq(probes, ["one", "two", "two", "three"], "probes of the resumed session")
    plans = [r["summary"] for r in recs if r["type"] == "plan"]
    old_plans = [r["summary"] for r in records(t, old, "plan")]
    if plans[0] == old_plans[0]:
        fail("the test means the plan's text to differ between the sessions: %r" % plans[0])
    with open(new, encoding="utf-8") as f:
        data = f.read()
    for secret in ("TokenSecret-1234", "DbSecret-5678"):
        expect_not_in(secret, data + out + err, "the new transcript and the output")


def test_resume_of_a_resumed_session(t):
    names, _ = setup(t)
    a, b, c = t.path("a.cast"), t.path("b.cast"), t.path("c.cast")
    first_session(t, names, a, "two")           # killed after step two's action
    proc, _ = resumed(t, names, a, b)           # step three's action ran in b; killed while it waits
    kill_9(proc)
    proc, rd = resumed(t, names, b, c)
    t.release(names["f3"])
    rc, out, err = finish(proc, rd)
    expect_rc((rc, out, err), 0, "the third session")
    expect_eq(ran(names), ["probe-one", "action-two", "probe-two",
                           "probe-one", "probe-two", "action-three", "probe-three",
                           "probe-one", "probe-two", "probe-three"], "each action ran once")
    header, _, _ = t.read_transcript(c)
    expect_eq(header["runbook"]["resumed_from"]["transcript"], b, "c links b")


def test_resume_refuses_a_changed_runbook(t):
    names, path = setup(t)
    old = t.path("first.cast")
    first_session(t, names, old, "two")
    before = ran(names)
    with open(path, "a") as f:
        f.write("-- edited after the session\n")
    rc, out, err = t.run(["exec", "--resume", old, "--auto", "--yes"], env=ENV)
    expect_rc((rc, out, err), 2)
    expect_in("cannot resume: the runbook runbooks/queue.lua changed since that session (sha256 ", err)
    expect_in("Start a new run instead: runbook exec queue --incident INC-11", err)
    expect_eq(ran(names), before, "nothing ran")
    expect_eq([p for p in t.transcripts() if not p.endswith("first.cast")], [], "no new transcript")


def test_resume_refuses_finished_altered_and_foreign_transcripts(t):
    t.runbook("done", 'step "a" { title = "A", run = function(ctx) return ctx:resolved("ok") end },')
    tr = t.path("done.cast")
    rc, out, err = t.run(["exec", "done", "--auto", "--transcript", tr])
    expect_rc((rc, out, err), 0)
    rc, out, err = t.run(["exec", "--resume", tr, "--auto"])
    expect_rc((rc, out, err), 2, "resume of a finished session")
    expect_in("already ended (resolved, exit 0); start a new run: runbook exec done", err)
    bad = altered(t, tr, b"step_start", "S")
    rc, out, err = t.run(["exec", "--resume", bad, "--auto"])
    expect_rc((rc, out, err), 2, "resume of an altered transcript")
    expect_in("cannot resume: %s is invalid at line " % bad, err)
    rc, out, err = t.run(["exec", "--resume", t.write("junk.cast", "hello\n"), "--auto"])
    expect_rc((rc, out, err), 2, "resume of a file that is no transcript")
    rc, out, err = t.run(["exec", "--resume", t.path("missing.cast"), "--auto"])
    expect_rc((rc, out, err), 2, "resume of a missing file")
    expect_in("cannot resume: cannot read", err)
    # A dry run did nothing that could be repeated: start again instead.
    t.runbook("dry", 'step "a" { title = "A", run = function(ctx) must(nil, "stop here") end },')
    drytr = t.path("dry.cast")
    expect_rc(t.run(["exec", "dry", "--auto", "--dry-run", "--transcript", drytr]), 1)
    rc, out, err = t.run(["exec", "--resume", drytr, "--auto"])
    expect_rc((rc, out, err), 2, "resume of a dry run")
    expect_in("was a dry run, so nothing was done that a resumed session must not repeat", err)
    # NAME, when given, must be the transcript's runbook.
    t.runbook("other", 'step "a" { title = "A", run = function(ctx) end },')
    rc, out, err = t.run(["exec", "other", "--resume", tr, "--auto"])
    expect_rc((rc, out, err), 2)


def test_resume_inputs(t):
    names, _ = setup(t)
    old = t.path("first.cast")
    first_session(t, names, old, "two")
    before = ran(names)
    rc, out, err = t.run(["exec", "--resume", old, "--auto", "--yes"], env={"Q_TOKEN": None, "Q_DB": ENV["Q_DB"]})
    expect_rc((rc, out, err), 2, "secret not given again")
    expect_in("input 'token' was set in that session, but the transcript holds it only redacted: pass token=VALUE again "
              "or set $Q_TOKEN", err)
    # A secret given again cannot be compared (the transcript holds neither it nor a hash of it);
    # what is visible of a redacted value can: a URL's host and user.
    rc, out, err = t.run(["exec", "--resume", old, "--auto", "--yes", "db=postgres://app:Pw-000111@10.0.0.9/jobs"], env=ENV)
    expect_rc((rc, out, err), 2, "another database")
    expect_in("input 'db' is not the one the session used (postgres://app:***@10.0.0.5/jobs)", err)
    expect_not_in("Pw-000111", err)
    rc, out, err = t.run(["exec", "--resume", old, "--auto", "--yes", "queue=mail"], env=ENV)
    expect_rc((rc, out, err), 2, "another target")
    expect_in("input 'queue': the session ran with \"jobs\"; a resumed session keeps its inputs", err)
    rc, out, err = t.run(["exec", "--resume", old, "--auto", "--yes", "--incident", "INC-12"], env=ENV)
    expect_rc((rc, out, err), 2, "another incident")
    expect_in("that session belongs to incident INC-11, not INC-12", err)
    expect_eq(ran(names), before, "nothing ran")


HANDOFF = '''
step "look" { title = "Look", run = function(ctx) must(sh.read { "sh", "-c", "echo look >> %(log)s" }) ctx:ok("looked") end },
step "act" { title = "Act", run = function(ctx)
  must(sh.action { "sh", "-c", "echo act >> %(log)s", summary = "restart it" })
  ctx:ok("restarted")
end },
step "end" { title = "End", run = function(ctx) return ctx:resolved("handled") end },'''

MENU = r"Enter: run · s: skip · j: jump · u: update( · r: repl)? · q: quit > "


def test_handoff_after_quit(t):
    log = t.path("ran.log")
    t.runbook("handoff", HANDOFF % {"log": log})
    old = t.path("alice.cast")
    p = t.pty(["exec", "handoff", "--incident", "INC-20", "--transcript", old])
    p.expect(MENU)
    p.sendline("")
    p.expect(r"✔ looked")
    p.expect(r"\[2/3\] Act")
    p.expect(MENU)
    p.sendline("q")
    expect_eq(p.wait(), 5, "alice quits")
    new = t.path("bob.cast")
    p = t.pty(["exec", "--resume", old, "--transcript", new])
    p.expect(r"it is not signed\. .*\n.*Type yes to resume with what it records, or n to stop: ")   # see test_forgery
    p.sendline("yes")
    p.expect(r"takes over session \w+ of \S+ \(aborted, exit 5\)")
    p.expect(r"↻ re-check")
    p.expect(r"\[1/3\] Look")            # re-checked without asking
    p.expect(r"✔ looked")
    p.expect(r"\[2/3\] Act")
    p.expect(MENU)                      # the first step not done before: the menu is back
    p.sendline("")
    p.expect(r"Type yes to run it, or n to skip: ")
    p.sendline("yes")
    p.expect(r"✔ restarted")
    p.expect(MENU)
    p.sendline("")
    expect_eq(p.wait(), 0, "bob finishes")
    with open(log) as f:
        expect_eq(f.read().split(), ["look", "look", "act"], "what ran")
    header, _, recs = t.read_transcript(new)
    expect_eq(header["runbook"]["resumed_from"]["ended"], "aborted, exit 5", "link")
    expect_eq([r for r in recs if r["type"] == "step_start"][0]["step"], "look", "the walk starts where alice's did")
