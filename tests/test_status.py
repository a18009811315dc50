"""Status update sinks: a Slack-compatible incoming webhook, PagerDuty Events API v2 and a generic
JSON webhook, received by a real local HTTP server (127.0.0.1, a free port) that records every
request. Posting is an action (confirmed, recorded; only shown under --dry-run; declined without a
terminal); webhook URLs, routing keys and header values are secrets that reach neither the
terminal nor the transcript."""
import http.server
import json
import threading

from run import expect_eq, expect_in, expect_not_in, expect_rc, fail

SLACK_SECRET = "T0SLACK/B0SLACK/SlackSecret42"
PD_KEY = "PdRoutingKey0123456789abcdef"
HOOK_SECRET = "HookPathSecret77"
HEADER_SECRET = "Bearer HeaderSecret99"
SECRETS = (SLACK_SECRET, PD_KEY, HOOK_SECRET, HEADER_SECRET, "HeaderSecret99", "SlackSecret42", "InputToken-31337",
           "RedisPw-4242")


class Receiver:
    """A local HTTP server that records (method, path, headers, body) of every request and answers
    with `status` (200 unless a path says otherwise)."""

    def __init__(self, t, fail_paths=()):
        self.requests = []
        self.fail_paths = set(fail_paths)
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n)
                receiver.requests.append({"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()},
                                          "body": body.decode("utf-8", "replace")})
                code = 500 if self.path in receiver.fail_paths else 200
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        t.on_cleanup(self.stop)

    def url(self, path):
        return "http://127.0.0.1:%d%s" % (self.port, path)

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    def json_at(self, path):
        return [json.loads(r["body"]) for r in self.requests if r["path"] == path]


CONFIG = '''return { status = { sinks = {
  { type = "slack", url_env = "TEST_SLACK_URL", name = "#incidents" },
  { type = "pagerduty", routing_key_env = "TEST_PD_KEY", url = "%(pd)s" },
  { type = "webhook", url_env = "TEST_HOOK_URL", name = "statuspage", headers = { Authorization = "%(auth)s" } },
} } }'''

RUNBOOK = '''
step "find" { title = "Find", run = function(ctx)
  ctx:finding("redis is out of memory")
  ctx:note("seen in %s", "redis://default:RedisPw-4242@127.0.0.1:6379")
  ctx:finding("auth failures for token %s", ctx.token)
end },
step "tell" { title = "Tell", run = function(ctx)
  ctx:update("identified", "maxmemory reached; evicting the cache db")
  ctx:update("resolved", "memory back to 40%%")
end },'''


def setup(t, fail_paths=()):
    rx = Receiver(t, fail_paths)
    t.write("config/runbook/config.lua", CONFIG % {"pd": rx.url("/v2/enqueue"), "auth": HEADER_SECRET})
    env = {"TEST_SLACK_URL": rx.url("/services/" + SLACK_SECRET), "TEST_PD_KEY": PD_KEY,
           "TEST_HOOK_URL": rx.url("/hook/" + HOOK_SECRET), "TEST_TOKEN": "InputToken-31337"}
    t.runbook("notify", RUNBOOK, severity="SEV2", inputs='token = input.secret { env = "TEST_TOKEN" }')
    return rx, env


def no_secrets(t, texts):
    for what, text in texts:
        for s in SECRETS:
            if s in text:
                i = text.index(s)
                fail("%s leaks %r: ...%s..." % (what, s, text[max(0, i - 120):i + 60]))


def test_webhook_payloads_received_and_no_secret_recorded(t):
    rx, env = setup(t)
    rc, out, err = t.run(["exec", "notify", "--auto", "--yes", "--incident", "INC-77", "--impact", "sessions lost"], env=env)
    expect_rc((rc, out, err), 0)
    paths = [r["path"] for r in rx.requests]
    expect_eq(paths, ["/services/" + SLACK_SECRET, "/v2/enqueue", "/hook/" + HOOK_SECRET] * 2, "requests, in order")
    # Slack: an incoming webhook takes {"text": ...}.
    slack = rx.json_at("/services/" + SLACK_SECRET)
    expect_eq(list(slack[0].keys()), ["text"], "slack payload keys")
    expect_in("[IDENTIFIED] INC-77 · SEV2", slack[0]["text"])
    expect_in("maxmemory reached; evicting the cache db", slack[0]["text"])
    expect_in("Findings: redis is out of memory", slack[0]["text"])
    expect_in("[RESOLVED] INC-77 · SEV2", slack[1]["text"])
    # PagerDuty Events API v2: identified acknowledges (someone is on it), resolved resolves, both
    # deduplicated on the incident id (the trigger and its payload: test_status_runbooks.py).
    pd = rx.json_at("/v2/enqueue")
    expect_eq((pd[0]["routing_key"], pd[0]["event_action"], pd[0]["dedup_key"], "payload" in pd[0]),
              (PD_KEY, "acknowledge", "INC-77", False), "pd acknowledge")
    expect_eq((pd[1]["event_action"], pd[1]["dedup_key"], "payload" in pd[1]), ("resolve", "INC-77", False), "pd resolve")
    # The generic webhook: the facts as JSON, with the configured header.
    hook = [r for r in rx.requests if r["path"].startswith("/hook/")]
    expect_eq(hook[0]["headers"].get("authorization"), HEADER_SECRET, "webhook header")
    expect_in("application/json", hook[0]["headers"].get("content-type", ""))
    body = json.loads(hook[0]["body"])
    expect_eq((body["incident"], body["severity"], body["status"], body["text"], body["runbook"], body["step"]),
              ("INC-77", "SEV2", "identified", "maxmemory reached; evicting the cache db", "notify", "2. Tell"), "webhook body")
    expect_eq(body["findings"], ["redis is out of memory", "auth failures for token ***"], "webhook findings (redacted)")
    # What leaves for the webhooks is redacted like what is shown: no input secret in any payload.
    for r in rx.requests:
        for s in ("InputToken-31337", "RedisPw-4242"):
            expect_not_in(s, r["body"], "payload sent to " + r["path"].split("/")[1])
    # Shown and recorded as actions, each confirmed (here by --yes).
    expect_in("→ #incidents: posted (HTTP 200) · pagerduty: posted (HTTP 200) · statuspage: posted (HTTP 200)", out)
    tr = t.the_transcript()
    _, _, records = t.read_transcript(tr)
    plans = [r for r in records if r["type"] == "plan"]
    expect_eq([p["summary"] for p in plans][:3], ["post the identified update of INC-77 to #incidents",
                                                  "post the identified update of INC-77 to pagerduty",
                                                  "post the identified update of INC-77 to statuspage"], "plans")
    expect_eq(len([r for r in records if r["type"] == "confirm" and r["answer"] == "yes"]), 6, "confirmations")
    results = [r for r in records if r["type"] == "status_update_result"]
    expect_eq([x["outcome"] for x in results[0]["results"]], ["posted (HTTP 200)"] * 3, "recorded results")
    with open(tr, encoding="utf-8") as f:
        data = f.read()
    _, shown, _ = t.run(["transcript", "show", tr])
    _, timeline, _ = t.run(["timeline", tr])
    no_secrets(t, (("stdout", out), ("stderr", err), ("transcript", data), ("transcript show", shown),
                   ("timeline", timeline)))
    expect_in("status update (identified)", timeline)


def test_posting_is_an_action(t):
    rx, env = setup(t)
    # --dry-run: shown, never sent.
    rc, out, err = t.run(["exec", "notify", "--auto", "--dry-run", "--incident", "INC-1"], env=env)
    expect_rc((rc, out, err), 0)
    expect_eq(rx.requests, [], "requests under --dry-run")
    expect_in("→ #incidents: dry run: not sent · pagerduty: dry run: not sent · statuspage: dry run: not sent", out)
    # No terminal and no --yes: declined (exit 4), the step still completes, nothing sent.
    rc, out, err = t.run(["exec", "notify", "--auto", "--incident", "INC-1"], env=env)
    expect_rc((rc, out, err), 4)
    expect_eq(rx.requests, [], "requests without a confirmation")
    expect_in("→ #incidents: declined · pagerduty: declined · statuspage: declined", out)
    expect_not_in("step skipped", out)
    no_secrets(t, (("stdout", out), ("stderr", err)))


def test_interactive_confirmation_and_decline(t):
    rx, env = setup(t)
    p = t.pty(["exec", "notify", "--auto", "--incident", "INC-2"], env=env)
    p.expect(r"ACTION  post the identified update of INC-2 to #incidents")
    p.expect(r"Type yes to run it, or n to skip: ")
    p.sendline("yes")
    p.expect(r"ACTION  post the identified update of INC-2 to pagerduty")
    p.expect(r"Type yes to run it, or n to skip: ")
    p.sendline("n")
    p.expect(r"Declined\. s: skip this step")
    p.sendline("s")
    p.expect(r"ACTION  post the identified update of INC-2 to statuspage")
    p.expect(r"Type yes to run it, or n to skip: ")
    p.sendline("yes")
    p.expect(r"→ #incidents: posted \(HTTP 200\) · pagerduty: declined · statuspage: posted \(HTTP 200\)")
    for _ in range(3):
        p.expect(r"Type yes to run it, or n to skip: ")
        p.sendline("yes")
    expect_eq(p.wait(), 4, "exit code (one post declined)")
    expect_eq(len(rx.requests), 5, "requests")
    no_secrets(t, (("pty", p.text),))


def test_failures_are_reported_not_fatal(t):
    rx, env = setup(t, fail_paths=("/v2/enqueue",))
    del env["TEST_SLACK_URL"]
    rc, out, err = t.run(["exec", "notify", "--auto", "--yes", "--incident", "INC-3"], env=env)
    expect_rc((rc, out, err), 0)
    expect_in("→ #incidents: failed: $TEST_SLACK_URL is not set · pagerduty: failed: HTTP 500 · statuspage: posted (HTTP 200)", out)
    # A sink that does not answer at all (nothing listens on the port).
    rx.stop()
    rc, out, err = t.run(["exec", "notify", "--auto", "--yes", "--incident", "INC-3"], env=env)
    expect_rc((rc, out, err), 0)
    expect_in("statuspage: failed: http.post", out)
    no_secrets(t, (("stdout", out), ("stderr", err)))
