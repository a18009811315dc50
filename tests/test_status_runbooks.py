"""Under --incident, a shipped runbook posts to the status sinks by itself: `identified` with its
first (coded) finding, `resolved` at the end, and an escalation (ctx:escalate, or the incident
clock's chain) with its reason. PagerDuty gets the Events API v2 actions: trigger (at the incident's
severity) for an escalation, acknowledge for identified, resolve at the end. The sinks are a real
local HTTP server, which also serves the endpoint the runbook samples (GET /ok 200, /broken 500)."""
import http.server
import json
import os
import threading

from run import expect_eq, expect_in, fail

from test_incident import T0, advance, fake_env

CONFIG = '''return { status = { sinks = {
  { type = "slack", url = "%(base)s/slack", name = "#incidents" },
  { type = "pagerduty", routing_key = "PdKey-0123", url = "%(base)s/pd" },
} } }'''


class Server:
    def __init__(self, t):
        self.posts = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                code = 200 if self.path == "/ok" else 500
                self.send_response(code)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                server.posts.append((self.path, json.loads(body)))
                self.send_response(202)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = "http://127.0.0.1:%d" % self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        t.on_cleanup(lambda: (self.httpd.shutdown(), self.httpd.server_close()))

    def at(self, path):
        return [body for p, body in self.posts if p == path]


def setup(t):
    srv = Server(t)
    t.write("config/runbook/config.lua", CONFIG % {"base": srv.base})
    return srv


def shipped(t):
    return {"RUNBOOK_PATH": os.path.join(t.repo, "runbooks")}


def test_shipped_runbook_posts_identified_then_escalation(t):
    srv = setup(t)
    rc, out, err = t.run(["exec", "high-error-rate", "url=" + srv.base + "/broken", "requests=5", "--auto", "--yes",
                          "--incident", "INC-9", "--severity", "SEV1"], env=shipped(t))
    expect_eq(rc, 3, "escalated; stdout:\n%s\nstderr:\n%s" % (out, err))
    slack = [b["text"] for b in srv.at("/slack")]
    expect_eq(len(slack), 2, "identified, then the escalation: %r" % slack)
    expect_in("[IDENTIFIED] INC-9 · SEV1", slack[0])
    expect_in("errors in the sample: 100%", slack[0])       # the finding
    expect_in("[ESCALATED] INC-9 · SEV1", slack[1])
    expect_in("errors persist: check the service's logs", slack[1])   # the reason
    pd = srv.at("/pd")
    expect_eq([p["event_action"] for p in pd], ["acknowledge", "trigger"], "PagerDuty actions")
    expect_eq(pd[1]["payload"]["severity"], "critical", "an escalation of a SEV1 pages as critical")
    expect_in("errors persist", pd[1]["payload"]["summary"])
    expect_eq({p["dedup_key"] for p in pd}, {"INC-9"}, "deduplicated on the incident")


def test_shipped_runbook_posts_resolved_at_the_end(t):
    srv = setup(t)
    rc, out, err = t.run(["exec", "high-error-rate", "url=" + srv.base + "/ok", "requests=5", "--auto", "--yes",
                          "--incident", "INC-10", "--severity", "SEV3"], env=shipped(t))
    expect_eq(rc, 0, out + err)
    slack = [b["text"] for b in srv.at("/slack")]
    expect_eq(len(slack), 1, "nothing found: only resolved: %r" % slack)
    expect_in("[RESOLVED] INC-10 · SEV3", slack[0])
    expect_eq([p["event_action"] for p in srv.at("/pd")], ["resolve"])


def test_no_incident_no_post(t):
    srv = setup(t)
    rc, out, err = t.run(["exec", "high-error-rate", "url=" + srv.base + "/broken", "requests=5", "--auto", "--yes"],
                         env=shipped(t))
    expect_eq(rc, 3, out + err)
    expect_eq(srv.posts, [], "without --incident nothing leaves")


def test_clock_escalation_is_posted(t):
    srv = setup(t)
    env = fake_env(t)
    t.runbook("slow", '''
step "a" { title = "A", run = function(ctx) %s end },
step "b" { title = "B", run = function(ctx) end },''' % advance(env["RUNBOOK_FAKE_CLOCK"], T0 + 40 * 60), severity="SEV1")
    rc, out, err = t.run(["exec", "slow", "--auto", "--yes", "--incident", "INC-11", "--since", "2025-01-15T14:30Z"],
                         env=env)
    expect_eq(rc, 0, out + err)
    slack = [b["text"] for b in srv.at("/slack")]
    if not any("[ESCALATED] INC-11" in s and "escalate to L2" in s for s in slack):
        fail("the clock's escalation was not posted: %r" % slack)
    pd = srv.at("/pd")
    expect_eq([p["event_action"] for p in pd], ["trigger"], "PagerDuty: the escalation triggers")
    expect_eq(pd[0]["payload"]["severity"], "critical")
