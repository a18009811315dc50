"""The incident around a run: --incident/--severity/--since recorded in the transcript, severity
scales (built in and from config.lua, validated with file and field), the status line between
steps and the escalation notices, driven by an injected clock (RUNBOOK_FAKE_CLOCK: a file holding
the time, which the test -- or the runbook itself -- rewrites; nothing sleeps), status updates
from ctx:update and from the step menu's u."""
import json
import os
import re

from run import expect_eq, expect_in, expect_not_in, expect_rc, fail

T0 = 1736951700          # 2025-01-15T14:35:00Z
MENU_U = r"Enter: run · s: skip · j: jump · u: update( · r: repl)? · q: quit > "
MENU = r"Enter: run · s: skip · j: jump( · r: repl)? · q: quit > "


def clock(t, at):
    """Sets the injected incident clock (RUNBOOK_FAKE_CLOCK) to `at` seconds since the epoch."""
    p = t.path("clock")
    with open(p + ".new", "w") as f:
        f.write("%d\n" % at)
    os.replace(p + ".new", p)
    return p


def fake_env(t, at=T0):
    return {"RUNBOOK_FAKE_CLOCK": clock(t, at)}


def advance(path, at):
    """A step that moves the injected clock: the runbook rewrites the clock file itself, so that
    time passes between two steps of an unattended run without anybody sleeping."""
    return ('sh.read { "sh", "-c", "echo %d > %s.new && mv %s.new %s" }' % (at, path, path, path))


def audit_of(t, tr, kind):
    _, _, records = t.read_transcript(tr)
    return [r for r in records if r["type"] == kind]


def status_lines(out):
    return [l for l in out.splitlines() if l.startswith("incident ") and " elapsed" in l]


def test_clock_and_escalation_with_injected_clock(t):
    env = fake_env(t)
    c = env["RUNBOOK_FAKE_CLOCK"]
    t.runbook("esc", '''
step "a" { title = "First look", run = function(ctx) %s ctx:ok("looked") end },
step "b" { title = "Second look", run = function(ctx) %s ctx:ok("looked again") end },
step "c" { title = "Third look", run = function(ctx) %s ctx:ok("still looking") end },
step "d" { title = "Last look", run = function(ctx) ctx:ok("done") end },''' % (
        advance(c, T0 + 17 * 60 + 5), advance(c, T0 + 3600 + 1), advance(c, T0 + 3600 + 40 * 60)), severity="SEV2")
    rc, out, err = t.run(["exec", "esc", "--auto", "--incident", "INC-42"], env=env)
    expect_rc((rc, out, err), 0)
    lines = status_lines(out)
    expect_eq(lines, [
        "incident INC-42 · SEV2 · 00:00:00 elapsed · next escalation: senior on-call engineer in 1h00m · next update in 30m",
        "incident INC-42 · SEV2 · 00:17:05 elapsed · next escalation: senior on-call engineer in 42m · next update in 12m",
        "incident INC-42 · SEV2 · 01:00:01 elapsed · next escalation: engineering manager in 59m · update overdue by 30m",
        "incident INC-42 · SEV2 · 01:40:00 elapsed · next escalation: engineering manager in 20m · update overdue by 1h10m",
    ], "status lines between steps")
    # The escalation is announced once, clearly, between steps 2 and 3, before the status line.
    notices = [l for l in out.splitlines() if "ESCALATE" in l]
    expect_eq(notices, ["  ⚠ ESCALATE  escalate to L2 senior on-call engineer: INC-42 (SEV2) is unresolved after 1h00m"],
              "escalation notices")
    i_notice, i_third = out.index("⚠ ESCALATE"), out.index("[3/4] Third look")
    if not out.index("[2/4] Second look") < i_notice < i_third:
        fail("the escalation notice is not between steps 2 and 3:\n" + out)
    tr = t.the_transcript()
    esc = audit_of(t, tr, "escalation")
    expect_eq(len(esc), 1, "escalation records")
    e = esc[0]
    expect_eq((e["incident"], e["severity"], e["level"], e["who"], e["after_s"], e["elapsed_s"]),
              ("INC-42", "SEV2", "L2", "senior on-call engineer", 3600, 3601), "escalation record")
    expect_eq(e.get("step"), None, "the escalation is recorded between steps")
    header, _, _ = t.read_transcript(tr)
    inc = header["runbook"]["incident"]
    expect_eq((inc["id"], inc["severity"], inc["started"]), ("INC-42", "SEV2", "2025-01-15T14:35:00Z"), "header incident")
    expect_eq(inc["targets"], {"response": 1800, "resolution": 28800}, "header targets (SEV2)")
    start = audit_of(t, tr, "session_start")[0]
    expect_eq((start["incident"], start["severity"]), ("INC-42", "SEV2"), "session_start")
    rc, shown, _ = t.run(["transcript", "show", tr])
    expect_in("escalate to L2 senior on-call engineer: INC-42 (SEV2) is unresolved after 1h00m", shown)


def test_deadlines_passed_while_away_each_announced_once(t):
    # The clock jumps past two levels and the resolution target at once: three notices, once.
    env = fake_env(t)
    c = env["RUNBOOK_FAKE_CLOCK"]
    t.runbook("jump", '''
step "a" { title = "A", run = function(ctx) %s end },
step "b" { title = "B", run = function(ctx) end },
step "c" { title = "C", run = function(ctx) end },''' % advance(c, T0 + 3 * 3600), severity="SEV1")
    rc, out, err = t.run(["exec", "jump", "--auto", "--incident", "INC-1", "--since", "2025-01-15T14:30Z"], env=env)
    expect_rc((rc, out, err), 0)
    notices = [l.strip() for l in out.splitlines() if "⚠" in l]
    expect_eq(notices, [
        "⚠ ESCALATE  escalate to L2 senior on-call engineer: INC-1 (SEV1) is unresolved after 30m",
        "⚠ ESCALATE  escalate to L3 engineering manager: INC-1 (SEV1) is unresolved after 1h00m",
        "⚠ ESCALATE  escalate to L4 CTO / VP engineering: INC-1 (SEV1) is unresolved after 2h00m",
        "⚠ TARGET MISSED  INC-1 (SEV1) has passed its resolution target of 2h00m",
    ], "notices")
    lines = status_lines(out)
    expect_eq(lines[0], "incident INC-1 · SEV1 · 00:05:00 elapsed · next escalation: senior on-call engineer in 25m"
              " · next update in 10m", "first status line (--since 5 minutes before)")
    expect_eq(lines[1], "incident INC-1 · SEV1 · 03:05:00 elapsed · no further escalation · update overdue by 2h50m",
              "after the chain")
    tr = t.the_transcript()
    expect_eq([r["level"] for r in audit_of(t, tr, "escalation")], ["L2", "L3", "L4"], "escalation records")
    expect_eq(len(audit_of(t, tr, "target_missed")), 1, "target_missed records")


def test_p_scale_and_no_chain(t):
    env = fake_env(t)
    t.runbook("pscale", 'step "a" { title = "A", run = function(ctx) end },', severity="P3")
    rc, out, err = t.run(["exec", "pscale", "--auto", "--incident", "OPS-7"], env=env)
    expect_rc((rc, out, err), 0)
    expect_eq(status_lines(out), ["incident OPS-7 · P3 · 00:00:00 elapsed · no escalation chain"], "P3 status line")
    expect_in("incident OPS-7 · P3 (low: minor impact)", out)
    rc, out, err = t.run(["exec", "pscale", "--auto", "--incident", "OPS-8", "--severity", "P0"], env=env)
    expect_rc((rc, out, err), 0)
    expect_eq(status_lines(out), ["incident OPS-8 · P0 · 00:00:00 elapsed · next escalation: on-call engineer in 15m"
                                  " · next update in 15m"], "P0 status line")


def test_no_incident_no_clock(t):
    t.runbook("plain", 'step "a" { title = "A", run = function(ctx) end },')
    rc, out, err = t.run(["exec", "plain", "--auto"])
    expect_rc((rc, out, err), 0)
    expect_eq(status_lines(out), [], "status lines without --incident")
    header, _, _ = t.read_transcript(t.the_transcript())
    expect_eq("incident" in header["runbook"], False, "no incident in the header")


def test_incident_option_errors(t):
    t.runbook("opts", 'step "a" { title = "A", run = function(ctx) end },', severity="SEV2")
    cases = [
        (["--severity", "SEV1"], "--severity needs --incident ID"),
        (["--since", "5m"], "--since needs --incident ID"),
        (["--incident", "bad id!"], "--incident: 'bad id!' is not an incident id"),
        (["--incident", "INC-1", "--severity", "SEV5"], "--severity: unknown severity 'SEV5' (did you mean 'SEV1'?)"),
        (["--incident", "INC-1", "--since", "yesterday"], "--since: 'yesterday' is neither a UTC time"),
        (["--incident", "INC-1", "--since", "2999-01-01T00:00Z"], "is in the future"),
        (["--incident", "INC-1", "--lock-timeout", "soon"], "--lock-timeout: bad duration 'soon'"),
    ]
    for args, want in cases:
        rc, out, err = t.run(["exec", "opts", "--auto"] + args)
        expect_rc((rc, out, err), 2, " ".join(args))
        expect_in(want, err, " ".join(args))
    expect_eq(t.transcripts(), [], "no transcript for a refused command line")
    rc, out, err = t.run(["exec", "opts", "--auto", "--incident", "INC-1", "--severity", "SEV5"])
    expect_in("known: P0, P1, P2, P3, SEV1, SEV2, SEV3, SEV4", err)


CONFIG = '''
-- an organisation's own scale
local minutes = 60
return {
  severities = {
    SEV2 = { escalation = { { level = "L2", who = "team lead", after = "20m" },
                            { level = "L3", who = "head of platform", after = 45 * minutes } },
             update_every = "20m" },
    CRIT = { title = "customer-facing outage", rank = 1, response = "5m", resolution = "1h",
             update_every = false, escalation = { { who = "incident commander", after = "10m" } } },
  },
}
'''


def test_config_scales(t):
    t.write("config/runbook/config.lua", CONFIG)
    env = fake_env(t)
    t.runbook("cfg", 'step "a" { title = "A", run = function(ctx) end },', severity="SEV2")
    rc, out, err = t.run(["exec", "cfg", "--auto", "--incident", "INC-3"], env=env)
    expect_rc((rc, out, err), 0)
    expect_eq(status_lines(out), ["incident INC-3 · SEV2 · 00:00:00 elapsed · next escalation: team lead in 20m"
                                  " · next update in 20m"], "overridden SEV2")
    expect_in("SEV2 (major degradation of core functionality)", out)   # the title stays built in
    rc, out, err = t.run(["exec", "cfg", "--auto", "--incident", "INC-4", "--severity", "CRIT"], env=env)
    expect_rc((rc, out, err), 0)
    expect_in("incident INC-4 · CRIT (customer-facing outage)", out)
    expect_eq(status_lines(out), ["incident INC-4 · CRIT · 00:00:00 elapsed · next escalation: incident commander in 10m"],
              "a severity of the organisation's own")
    header = [h for h, _, _ in map(t.read_transcript, t.transcripts()) if h["runbook"]["incident"]["id"] == "INC-4"][0]
    expect_eq(header["runbook"]["incident"]["targets"], {"response": 300, "resolution": 3600}, "CRIT targets")


BAD_CONFIGS = [
    ('return { severities = { SEV2 = { escalation = { { who = "x", after = "1 hour" } } } } }',
     r"config\.lua: severities\.SEV2\.escalation\[1\]\.after: bad duration '1 hour' \(use 500ms, 2s, 5m, 1h, 7d\)"),
    ('return { severities = { SEV2 = { escalaton = {} } } }',
     r"config\.lua: severities\.SEV2: unknown field 'escalaton' \(did you mean 'escalation'\?\)"),
    ('return { severites = {} }', r"config\.lua: unknown field 'severites' \(did you mean 'severities'\?\)"),
    ('return { severities = { SEV2 = { escalation = { { after = "1h" } } } } }',
     r"config\.lua: severities\.SEV2\.escalation\[1\]\.who: must name who to escalate to"),
    ('return { severities = { SEV2 = { escalation = { { who = "a", after = "2h" }, { who = "b", after = "1h" } } } } }',
     r"severities\.SEV2\.escalation\[2\]\.after: must come later than the level before it"),
    ('return { severities = { ["two words"] = {} } }', r"a severity name must be a word like SEV2"),
    ('return { status = { sinks = { { type = "teams", url = "http://x" } } } }',
     r"config\.lua: status\.sinks\[1\]\.type: must be one of stdout, slack, pagerduty, webhook, got teams"),
    ('return { status = { sinks = { { type = "slack" } } } }',
     r"config\.lua: status\.sinks\[1\]: needs url = \"\.\.\.\" or url_env = \"VARIABLE\""),
    ('return { status = { sinks = { { type = "webhook", url = "ftp://x/y" } } } }',
     r"status\.sinks\[1\]\.url: must be an http:// or https:// URL"),
    ('return { status = { templates = { identified = "{STATUS} {incidnet}" } } }',
     r"status\.templates\.identified: unknown field \{incidnet\}"),
    ('return { status = { templates = { fixed = "x" } } }', r"status\.templates: templates are per status"),
    ('return { severities = os.getenv("X") }', r"config\.lua:1: undefined name 'os' \(config\.lua holds data"),
    ('x = 1 return {}', r"config\.lua:1: cannot set the global 'x'"),
    ('local n = 0 while true do n = n + 1 end', r"config\.lua:1: runs too long"),
    ('return 42', r"config\.lua: must return a table"),
    ('return {', r"config\.lua:\d+: .*expected"),
]


def test_config_errors_name_file_and_field(t):
    t.runbook("cfgbad", 'step "a" { title = "A", run = function(ctx) end },', severity="SEV2")
    for src, want in BAD_CONFIGS:
        p = t.write("config/runbook/config.lua", src + "\n")
        rc, out, err = t.run(["exec", "cfgbad", "--auto", "--incident", "INC-1"])
        if rc != 2 or not re.search(want, err) or not err.startswith("runbook: " + p):
            fail("config %r: rc=%s, expected exit 2 and /%s/ starting with the file's path; stderr:\n%s" % (src, rc, want, err))
    expect_eq(t.transcripts(), [], "nothing ran")


def test_update_from_runbook_and_templates(t):
    t.write("config/runbook/config.lua", '''return { status = { templates = {
  monitoring = "{STATUS} {incident} ({severity}) at {step}: {text} | findings: {findings} | impact: {impact} | by {operator}",
} } }''')
    env = fake_env(t)
    c = env["RUNBOOK_FAKE_CLOCK"]
    t.runbook("upd", '''
step "look" { title = "Look", run = function(ctx) ctx:finding("disk /var is 97%% full") %s end },
step "tell" { title = "Tell", run = function(ctx)
  ctx:update("identified", "old logs fill /var")
  ctx:update("monitoring", "logs rotated")
end },''' % advance(c, T0 + 25 * 60), severity="SEV2")
    rc, out, err = t.run(["exec", "upd", "--auto", "--incident", "INC-9", "--impact", "uploads fail for all users"], env=env)
    expect_rc((rc, out, err), 0)
    expect_in("  ▸ status update · identified · INC-9\n"
              "    [IDENTIFIED] INC-9 · SEV2 (major degradation of core functionality)\n"
              "    We have identified the cause and are working on a fix. old logs fill /var\n"
              "    Findings: disk /var is 97% full\n"
              "    Impact: uploads fail for all users · started 2025-01-15 14:35 UTC · 25m elapsed\n"
              "    Next update by 15:30 UTC.\n"
              "    → stdout: shown\n", out)
    expect_in("    MONITORING INC-9 (SEV2) at 2. Tell: logs rotated | findings: disk /var is 97% full | impact: uploads "
              "fail for all users | by ", out)
    # After an update, the next one is due a full period later.
    tr = t.the_transcript()
    ups = audit_of(t, tr, "status_update")
    expect_eq([u["status"] for u in ups], ["identified", "monitoring"], "status_update records")
    expect_eq(ups[0]["incident"], "INC-9", "incident of the update")
    expect_in("old logs fill /var", ups[0]["message"])
    expect_eq(ups[0]["step"], "tell", "attributed to the step")
    res = audit_of(t, tr, "status_update_result")
    expect_eq(res[0]["results"], [{"sink": "stdout", "outcome": "shown"}], "results")


def test_update_without_incident_is_shown_not_posted(t):
    t.write("config/runbook/config.lua",
            'return { status = { sinks = { { type = "webhook", url = "http://127.0.0.1:9/hook" } } } }')
    t.runbook("noinc", 'step "a" { title = "A", run = function(ctx) ctx:update("investigating", "looking") end },')
    rc, out, err = t.run(["exec", "noinc", "--auto", "--yes"])
    expect_rc((rc, out, err), 0)
    expect_in("[INVESTIGATING] (no incident)", out)
    expect_in("→ webhook: not posted: no incident (run with --incident ID)", out)
    expect_not_in("ACTION", out)


def test_update_with_a_bad_status_fails_the_step(t):
    t.runbook("badst", 'step "a" { title = "A", run = function(ctx) ctx:update("fixed", "x") end },')
    rc, out, err = t.run(["exec", "badst", "--auto", "--incident", "I-1"])
    expect_rc((rc, out, err), 1)
    expect_in("badst.lua:5: ctx:update: the status must be investigating, identified, monitoring, resolved, got fixed", out)


def test_update_from_the_step_menu(t):
    env = fake_env(t)
    t.runbook("menu", '''
step "a" { title = "First", run = function(ctx) ctx:finding("queue is 40k deep") end },
step "b" { title = "Second", run = function(ctx) ctx:ok("fine") end },''', severity="SEV2")
    p = t.pty(["exec", "menu", "--incident", "INC-5", "--impact", "checkout is slow"], env=env)
    p.expect(r"incident INC-5 · SEV2 · 00:00:00 elapsed")
    p.expect(MENU_U)
    p.sendline("")
    p.expect(r"queue is 40k deep")
    p.expect(MENU_U)
    clock(t, T0 + 600)
    p.sendline("u")
    p.expect(r"status \(investigating, identified, monitoring, resolved\) \[investigating\]: ")
    p.sendline("ide")
    p.expect(r"message: ")
    p.sendline("consumer crashed; restarting it")
    p.expect(r"\[IDENTIFIED\] INC-5 · SEV2")
    p.expect(r"We have identified the cause and are working on a fix. consumer crashed; restarting it")
    p.expect(r"Findings: queue is 40k deep")
    p.expect(r"Impact: checkout is slow · started 2025-01-15 14:35 UTC · 10m elapsed")
    p.expect(r"→ stdout: shown")
    p.expect(MENU_U)                         # back at the same step's menu
    p.sendline("u")
    p.expect(r"\[identified\]: ")
    p.sendline("sideways")
    p.expect(r"no such status: sideways \(nothing posted\)")
    p.expect(MENU_U)
    p.sendline("")
    p.expect(r"✔ fine")
    expect_eq(p.wait(), 0, "exit code")
    tr = t.the_transcript()
    ups = audit_of(t, tr, "status_update")
    expect_eq([(u["status"], u.get("step")) for u in ups], [("identified", None)], "one update, between steps")
    # Without an incident the menu has no u.
    p = t.pty(["exec", "menu"])
    p.expect(MENU)
    p.sendline("u")
    p.expect(r"u\? Enter runs the step")
    p.expect(MENU)
    p.sendline("q")
    expect_eq(p.wait(), 5, "exit code after q")


def test_fake_clock_hook_errors_clearly(t):
    t.runbook("fc", 'step "a" { title = "A", run = function(ctx) end },')
    bad = t.write("badclock", "not a time\n")
    rc, out, err = t.run(["exec", "fc", "--auto", "--incident", "I-1"], env={"RUNBOOK_FAKE_CLOCK": bad})
    expect_in("RUNBOOK_FAKE_CLOCK=" + bad + " (a test hook): the file must hold seconds since the epoch or an ISO 8601 UTC time", err)
    if rc == 0:
        fail("a broken fake clock must not be ignored")
