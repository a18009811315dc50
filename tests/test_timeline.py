"""runbook timeline TRANSCRIPT...: a Markdown post-mortem draft from real transcripts only: one
incident handled in two sessions (the first killed -9, the second resuming it without a terminal),
and a drill run. Invalid transcripts are refused, truncated ones used with a warning, transcripts
of different incidents are not mixed."""
import os
import re

from run import expect_eq, expect_in, expect_rc, fail
from sessions import Reader, altered, finish, kill_9

OUTAGE = '''
step "check" { title = "Does the API answer?", run = function(ctx)
  must(sh.read { "echo", "GET /health: 503" })
  ctx:finding("the API answers 503 on /health")
end },
step "restart" { title = "Restart the API", run = function(ctx)
  must(sh.action { "true", summary = "restart the api service" })
  must(sh.read { "sh", "-c", "echo waiting-for-api; cat %(fifo)s", timeout = 30 })
  ctx:ok("the API answers 200")
end },
step "tell" { title = "Tell, then tidy up", run = function(ctx)
  ctx:update("monitoring", "restarted; watching the error rate")
  must(sh.action { "true", summary = "clear the CDN cache" })
end },
step "close" { title = "Close", run = function(ctx) return ctx:resolved("the API answers again") end },'''


def incident_transcripts(t):
    """Session A (SEV1, the incident began 40 minutes ago) is killed while the restarted API comes
    back; session B resumes it without a terminal: the restart is not repeated, the status update is
    posted, the cache clearing is declined, the runbook resolves. Returns (A, B)."""
    fifo = t.mkfifo("api")
    t.runbook("api-outage", OUTAGE % {"fifo": fifo}, severity="SEV1")
    a, b = t.path("a.cast"), t.path("b.cast")
    proc = t.spawn(["exec", "api-outage", "--auto", "--yes", "--incident", "INC-50", "--since", "40m",
                    "--impact", "all API calls fail", "--transcript", a])
    Reader(proc.stdout).until("waiting-for-api")
    kill_9(proc)
    proc = t.spawn(["exec", "--resume", a, "--auto", "--transcript", b])
    rd = Reader(proc.stdout)
    rd.until("waiting-for-api")
    t.release(fifo)
    rc, out, err = finish(proc, rd)
    expect_rc((rc, out, err), 4, "session B: resolved, one action declined")
    return a, b


def test_timeline_of_an_incident_with_a_handover(t):
    a, b = incident_transcripts(t)
    rc, md, err = t.run(["timeline", a, b])
    expect_rc((rc, md, err), 0)
    expect_in("runbook: warning: %s is truncated at line " % a, err)
    lines = md.splitlines()
    expect_eq(lines[0], "# Post-mortem draft: INC-50 (SEV1)", "title")
    for want in ("- **Incident:** INC-50 · SEV1 · impact: all API calls fail",
                 "- **Runbooks:** api-outage (sha256 ",
                 "- **Time to respond** (first session): 40m (target 15m)",
                 "- **Time to first finding:** 40m",
                 "- **Time to mitigation** (first successful action): 40m",
                 "- **Time to resolution:** 40m (target 2h00m)",
                 "- **Escalations:** escalate to L2 senior on-call engineer: INC-50 (SEV1) is unresolved after 30m",
                 "- **Status updates:** 3",   # the clock's escalation and the resolution are posted too
                 "| time (UTC) | who | step | what |"):
        if not any(l.startswith(want) for l in lines):
            fail("the draft has no line starting %r:\n%s" % (want, md))
    if not re.search(r"^- \*\*Handovers:\*\* \S+ took over from \S+ at \d\d:\d\d:\d\d$", md, re.M):
        fail("no handover in the summary:\n" + md)
    if not re.search(r"^- \*\*End:\*\* \S+ · outcome: resolved, actions declined \(exit 4\)$", md, re.M):
        fail("no end in the summary:\n" + md)
    # The timeline, in order.
    rows = [l for l in lines if re.match(r"^\| \d\d:\d\d:\d\d \|", l)]
    whats = [l.split(" | ")[3].rstrip(" |") for l in rows]
    steps = [l.split(" | ")[2] for l in rows]
    order = [
        ("session_start", r"^session \w+ started: runbook api-outage$"),
        ("escalation", r"^escalation due: escalate to L2 senior on-call engineer"),
        ("finding", r"^finding: the API answers 503 on /health$"),
        ("confirm", r"^confirmed: restart the api service \(--yes by \S+\)$"),
        ("action", r"^action sh\.action → exit 0 \(\d+ ms\)$"),
        ("resumed", r"^session \w+ started: runbook api-outage, resuming session \w+$"),
        ("takeover", r"^took over from \S+ \(session \w+: cut off at line \d+: no session_end record\)$"),
        ("finding again", r"^finding: the API answers 503 on /health$"),
        ("withheld", r"^not repeated \(resumed session\): restart the api service: confirmed by "),
        ("update", r"^status update \(monitoring\): \[MONITORING\] INC-50 · SEV1 → stdout: shown$"),
        ("declined", r"^declined: clear the CDN cache$"),
        ("skipped", r"^step skipped: its action was declined$"),
        ("end", r"^session \w+ ended: resolved, actions declined \(exit 4\)$"),
    ]
    i = 0
    for name, rx in order:
        while i < len(whats) and not re.search(rx, whats[i]):
            i += 1
        if i == len(whats):
            fail("the timeline lacks %s (/%s/) in order:\n%s" % (name, rx, "\n".join(rows)))
        i += 1
    expect_in("restart", steps, "steps of the rows")
    section = md[md.index("## Declined, skipped or not repeated"):md.index("## Transcripts")]
    for want in ("declined: clear the CDN cache", "step skipped: its action was declined",
                 "not repeated (resumed session): restart the api service"):
        expect_in(want, section, "declined/skipped section")
    transcripts = md[md.index("## Transcripts"):]
    expect_in("`%s`: session " % a, transcripts)
    expect_in("**truncated at line ", transcripts)
    if not re.search(r"`%s`: session \w+, complete, chain head `[0-9a-f]{64}`" % re.escape(b), transcripts):
        fail("session B is not listed as complete:\n" + transcripts)
    # Only what the transcripts hold: the author's sections are left to write.
    expect_in("## Root cause\n\n_To be written._", md)
    # The order of the arguments does not matter: records are merged by time.
    rc, md2, _ = t.run(["timeline", b, a])
    expect_eq(md2.split("## Transcripts")[0], md.split("## Transcripts")[0], "timeline of B A")


def test_timeline_refuses_invalid_and_mixed_transcripts(t):
    t.runbook("small", 'step "a" { title = "A", run = function(ctx) ctx:finding("odd") end },')
    one, two = t.path("one.cast"), t.path("two.cast")
    for tr, inc in ((one, "INC-1"), (two, "INC-2")):
        rc, out, err = t.run(["exec", "small", "--auto", "--incident", inc, "--transcript", tr])
        expect_rc((rc, out, err), 0)
    rc, out, err = t.run(["timeline", one, two])
    expect_rc((rc, out, err), 1, "two incidents")
    expect_in("these transcripts belong to different incidents (INC-1 in %s, INC-2 in %s)" % (one, two), err)
    expect_eq(out, "", "nothing drafted")
    bad = altered(t, one, b"odd", "O")
    rc, out, err = t.run(["timeline", bad])
    expect_rc((rc, out, err), 1, "an altered transcript")
    expect_in("cannot draft a timeline: %s is invalid at line " % bad, err)
    expect_in("a post-mortem must not rest on an altered record", err)
    expect_eq(out, "", "nothing drafted from an altered transcript")
    rc, out, err = t.run(["timeline"])
    expect_rc((rc, out, err), 2, "no transcript")
    rc, out, err = t.run(["timeline", t.path("missing.cast")])
    expect_rc((rc, out, err), 1, "a missing transcript")
    rc, out, err = t.run(["timeline", one])
    expect_rc((rc, out, err), 0, "a single session")
    expect_in("# Post-mortem draft: INC-1 (SEV3)", out)
    expect_in("| a | finding: odd |", out)


def test_timeline_of_a_drill_run(t):
    t.on_cleanup(lambda: t.run(["lab", "down"], timeout=120, check_sanitizer_output=False))
    rc, out, err = t.run(["drill", "memory-pressure", "--auto", "--yes"], timeout=180,
                         env={"RUNBOOK_PATH": os.path.join(t.repo, "runbooks")})
    expect_rc((rc, out, err), 0, "the drill")
    tr = t.transcripts()[-1]
    rc, md, err = t.run(["timeline", tr])
    expect_rc((rc, md, err), 0)
    expect_eq(err, "", "stderr (a complete transcript: no warning)")
    expect_in("# Post-mortem draft: memory-pressure\n", md)
    expect_in("- **Runbooks:** memory-pressure (sha256 ", md)
    expect_in("(the first session; no incident start was recorded)", md)
    rows = [l for l in md.splitlines() if re.match(r"^\| \d\d:\d\d:\d\d \|", l)]
    text = "\n".join(rows)
    if not re.search(r"\| finding: .*runbook-lab-hog \(pid \d+", text):
        fail("the drill's finding is not in the timeline:\n" + md)
    if not re.search(r"\| confirmed: .*\(--yes by \S+\) \|", text):
        fail("the confirmation is not in the timeline:\n" + md)
    if not re.search(r"\| action sh\.action → exit 0", text):
        fail("the action's result is not in the timeline:\n" + md)
    if not re.search(r"session \w+ ended: resolved \(exit 0\)", text):
        fail("the end is not in the timeline:\n" + md)
    if re.search(r"Time to mitigation\*\* \(first successful action\): —", md):
        fail("no time to mitigation although an action succeeded:\n" + md)


test_timeline_of_a_drill_run.timeout = 200
