"""The primitive prometheus.query (stdlib/prometheus.lua) and the Prometheus steps of
high-error-rate and high-latency that use it, against a real Prometheus (tests/servers_prometheus.py,
shared by this module) scraping the HTTP fixture's /metrics (tests/servers_http.py), whose counters
make the answers exact: a 10% error rate, a p95 of 0.175 s. Also what an operator sees when
Prometheus has nothing to say: no such metric, no traffic, a query it rejects, nothing listening;
and that a password in the base URL is never shown or recorded."""
import itertools
import json
import os
import re
import secrets

import servers_prometheus
from run import expect_eq, expect_in, expect_not_in, fail
from servers_http import shared as http_fixture

# A shared Prometheus needs about 7 s to start (its scrape manager applies targets every 5 s), once.
TIMEOUT = 30
RUNS = itertools.count(1)


def prometheus():
    try:
        return servers_prometheus.shared()
    except servers_prometheus.ServerError as e:
        fail(str(e))


def exec_runbook(t, name, *inputs):
    """Runs a shipped runbook unattended, its url= at the fixture's /health; returns stdout and the
    transcript's records."""
    cast = t.path("%s-%d.cast" % (name, next(RUNS)))
    args = ["exec", name, "--auto", "--transcript", cast, "url=%s/health" % http_fixture().url] + list(inputs)
    rc, out, err = t.run(args, env={"RUNBOOK_PATH": os.path.join(t.repo, "runbooks")})
    # Both resolve: the sampled requests all succeed, whatever Prometheus says.
    expect_eq(rc, 0, "exit code of %s; stdout:\n%s\nstderr:\n%s" % (" ".join(args), out, err))
    _, _, records = t.read_transcript(cast)
    return out, records


def check_record(records, label):
    found = [r for r in records if r["type"] == "check" and r["label"] == label]
    if len(found) != 1:
        fail("expected one check record %r in the transcript, found %r" % (label, found))
    return found[0]


def expect_check(records, label, status, value, why):
    """The one check record of label has this status and, to within 1e-9, this value (why: where
    the exact value comes from)."""
    rec = check_record(records, label)
    expect_eq(rec["status"], status, "recorded status")
    if abs(rec["value"] - value) > 1e-9:
        fail("recorded %s %r, expected %r (%s)" % (label, rec["value"], value, why))


def notes(records):
    return [r["text"] for r in records if r["type"] == "note" and r["level"] == "note"]


def test_error_rate_is_exactly_ten_percent_and_critical(t):
    p = prometheus()
    out, records = exec_runbook(t, "high-error-rate", "prometheus=" + p.url)
    expect_in("✖ CRITICAL error rate over 5 minutes: 10% (critical: above 5)\n", out)
    expect_check(records, "error rate over 5 minutes", "CRITICAL", 10, "90k answers 200, 10k answers 500")


test_error_rate_is_exactly_ten_percent_and_critical.timeout = TIMEOUT


def test_p95_is_exactly_175_ms(t):
    p = prometheus()
    out, records = exec_runbook(t, "high-latency", "prometheus=" + p.url)
    expect_in("✔ OK p95 over 5 minutes: 175.0 ms\n", out)
    expect_check(records, "p95 over 5 minutes", "OK", 175, "rank 95 of 100 in the (0.1, 0.25] bucket")
    # The thresholds apply to it: 175 ms is above a critical limit of 150 ms.
    out, _ = exec_runbook(t, "high-latency", "prometheus=" + p.url, "warn_ms=100", "crit_ms=150")
    expect_in("✖ CRITICAL p95 over 5 minutes: 175.0 ms (critical: above 150)\n", out)


test_p95_is_exactly_175_ms.timeout = TIMEOUT


def test_no_error_at_all_is_zero_percent_not_no_data(t):
    # clean_requests_total has no 5xx series: the numerator of the ratio is empty, not 0.
    p = prometheus()
    out, records = exec_runbook(t, "high-error-rate", "prometheus=" + p.url, "metric=clean_requests_total")
    expect_in("✔ OK error rate over 5 minutes: 0.0%\n", out)
    expect_eq(check_record(records, "error rate over 5 minutes")["value"], 0, "recorded error rate")


test_no_error_at_all_is_zero_percent_not_no_data.timeout = TIMEOUT


def test_no_traffic_is_a_note_not_a_check(t):
    # The idle_* counters never move: every rate is 0, the ratio and the quantile are NaN.
    p = prometheus()
    for name, inp, label in (("high-error-rate", "metric=idle_requests_total", "error rate over 5 minutes"),
                             ("high-latency", "histogram=idle_request_duration_seconds_bucket",
                              "p95 over 5 minutes")):
        out, records = exec_runbook(t, name, "prometheus=" + p.url, inp)
        expect_in("· Prometheus: no traffic in the last 5 minutes\n", out, name)
        expect_in("Prometheus: no traffic in the last 5 minutes", notes(records), name + " transcript")
        expect_not_in(label, out, name)
        expect_not_in("nan", out.lower(), name)


test_no_traffic_is_a_note_not_a_check.timeout = TIMEOUT


def test_unknown_metric_is_a_note_naming_the_query(t):
    p = prometheus()
    out, records = exec_runbook(t, "high-error-rate", "prometheus=" + p.url, "metric=name_that_does_not_exist")
    note = ('prometheus.query %s: no data for (sum(rate(name_that_does_not_exist{status=~"5.."}[5m])) or vector(0))'
            ' / sum(rate(name_that_does_not_exist[5m]))' % p.url)
    expect_in("· " + note + "\n", out)
    expect_in(note, notes(records), "transcript")
    out, _ = exec_runbook(t, "high-latency", "prometheus=" + p.url, "histogram=name_that_does_not_exist")
    expect_in("· prometheus.query %s: no data for histogram_quantile(0.95, sum(rate(name_that_does_not_exist[5m]))"
              " by (le))\n" % p.url, out)


test_unknown_metric_is_a_note_naming_the_query.timeout = TIMEOUT


def test_query_prometheus_rejects_is_a_note_with_its_error(t):
    # A metric input that breaks the expression: Prometheus answers 400 and says why.
    p = prometheus()
    out, _ = exec_runbook(t, "high-error-rate", "prometheus=" + p.url, "metric=x)")
    expect_in('· prometheus.query %s: invalid parameter "query": 1:13: parse error: ' % p.url, out)


test_query_prometheus_rejects_is_a_note_with_its_error.timeout = TIMEOUT


def test_refused_port_is_a_note_naming_the_failure(t):
    port = servers_prometheus.free_port()   # nothing listens there: the connect is refused at once
    for name in ("high-error-rate", "high-latency"):
        out, records = exec_runbook(t, name, "prometheus=http://127.0.0.1:%d" % port)
        # The base URL, not the request's (its query is the runbook's business, and long).
        note = "prometheus.query http://127.0.0.1:%d: connection refused" % port
        expect_in("· " + note, out, name)
        expect_not_in("/api/v1/query", out, name)
        if not any(n.startswith(note) for n in notes(records)):
            fail("%s: no note %r... naming the refusal in the transcript: %r" % (name, note, notes(records)))


test_refused_port_is_a_note_naming_the_failure.timeout = TIMEOUT


# ------------------------------------------------------------------------------ prometheus.query
ERROR_RATE = 'sum(rate(http_requests_total{status=~"5.."}[5m])) / sum(rate(http_requests_total[5m]))'
P95 = "histogram_quantile(0.95, sum(rate(http_request_duration_seconds_bucket[5m])) by (le))"
IDLE_RATE = 'sum(rate(idle_requests_total{status=~"5.."}[5m])) / sum(rate(idle_requests_total[5m]))'

# Runs each call at once inside parallel() (so that the primitive also yields) and notes
# "i = value" or "i: kind: err". Base URLs are Lua expressions: os.getenv("...") keeps a secret
# out of the runbook's source and inputs, so that only prometheus.query could show it.
QUERIES = """local prometheus = require "prometheus"
return runbook {
  name = "promq", summary = "prometheus.query, each call at once", severity = "SEV4",
  step "q" { title = "Queries", run = function(ctx)
    local calls, tasks = { %s }, {}
    for i, c in ipairs(calls) do tasks[i] = function() return prometheus.query(c[1], c[2], c[3]) end end
    for i, r in ipairs(parallel(tasks)) do
      if r.err then ctx:note("%%d: %%s: %%s", i, r.kind, r.err) else ctx:note("%%d = %%.17g", i, r.value) end
    end
  end },
}
"""


def lua_str(s):
    return json.dumps(s)   # ASCII: a JSON string is a Lua string


def query_all(t, calls, env=None):
    """calls: (base as a Lua expression, promql[, options as Lua]). Returns the results by call,
    each ("=", number) or (kind, err), with stdout, stderr and the transcript's bytes and records."""
    src = QUERIES % ", ".join("{ %s, %s, %s }" % (c[0], lua_str(c[1]), c[2] if len(c) > 2 else '{ timeout = "5s" }')
                              for c in calls)
    n = next(RUNS)
    path = t.write("q%d/promq.lua" % n, src)
    cast = t.path("promq-%d.cast" % n)
    rc, out, err = t.run(["exec", path, "--auto", "--transcript", cast], env=env)
    expect_eq(rc, 0, "exit code; stdout:\n%s\nstderr:\n%s" % (out, err))
    with open(cast, "rb") as f:
        raw = f.read()
    _, _, records = t.read_transcript(cast)
    results = {}
    for n in notes(records):
        m = re.match(r"(\d+) = (\S+)$", n) or re.match(r"(\d+): (\w+): (.*)$", n, re.S)
        if not m:
            fail("unexpected note %r" % n)
        results[int(m.group(1))] = ("=", float(m.group(2))) if m.lastindex == 2 else (m.group(2), m.group(3))
    expect_eq(sorted(results), list(range(1, len(calls) + 1)), "one note per call; stdout:\n" + out)
    return results, out, err, raw, records


def expect_value(result, want, what):
    if result[0] != "=" or abs(result[1] - want) > 1e-9:
        fail("%s: expected the value %r, got %r" % (what, want, result))


def test_query_returns_the_number(t):
    p = prometheus()
    res, _, _, _, records = query_all(t, [(lua_str(p.url), ERROR_RATE), (lua_str(p.url + "/"), P95),
                                          (lua_str(p.url), "2 * 21")])
    expect_value(res[1], 0.1, "the error rate (an instant vector of one series)")
    expect_value(res[2], 0.175, "the p95 (a base URL ending in /)")
    expect_value(res[3], 42, "a scalar")
    # Each is one http.get, audited as a probe like any other, then its own record: what it meant.
    probes = [r for r in records if r["type"] == "probe"]
    expect_eq(sorted(r["primitive"] for r in probes), ["http.get"] * 3 + ["prometheus.query"] * 3, "probe records")
    own = sorted((r["outcome"], r["summary"], r["deadline_ms"]) for r in probes if r["primitive"] == "prometheus.query")
    expect_eq(own[0], ("ok", "2 * 21 = 42", 5000), "the scalar's record (timeout = \"5s\")")
    expect_eq([o[0] for o in own], ["ok"] * 3, "outcomes")
    for r in (r for r in probes if r["primitive"] == "http.get"):
        expect_eq(r["outcome"], "ok", "probe outcome")
        if not r["target"].startswith(p.url + "/api/v1/query?query="):
            fail("probe target %r is not the query API of %s" % (r["target"], p.url))


test_query_returns_the_number.timeout = TIMEOUT


def test_query_prometheus_rejects_shows_its_error(t):
    p = prometheus()
    res, _, _, _, _ = query_all(t, [(lua_str(p.url), "sum(rate(http_requests_total[5m])"),
                                    (lua_str(p.url), "rate(http_requests_total)")])
    for i in (1, 2):
        kind, err = res[i]
        expect_eq(kind, "rejected", "kind of call %d" % i)
        # Prometheus' own words, after the base URL: no status code or JSON in between.
        prefix = 'prometheus.query %s: invalid parameter "query": ' % p.url
        if not err.startswith(prefix):
            fail("call %d: %r does not start with %r" % (i, err, prefix))
    expect_in("parse error", res[1][1])
    expect_in("expected type range vector", res[2][1])


test_query_prometheus_rejects_shows_its_error.timeout = TIMEOUT


def test_query_no_series_or_several_is_not_a_number(t):
    p = prometheus()
    res, _, _, _, _ = query_all(t, [(lua_str(p.url), "name_that_does_not_exist"),
                                    (lua_str(p.url), 'http_requests_total{status="404"}'),
                                    (lua_str(p.url), "http_requests_total"),
                                    (lua_str(p.url), "http_requests_total[1m]")])
    expect_eq(res[1], ("nodata", "prometheus.query %s: no data for name_that_does_not_exist" % p.url), "no such metric")
    expect_eq(res[2], ("nodata", 'prometheus.query %s: no data for http_requests_total{status="404"}' % p.url),
              "no series with that label")
    # Two series (status 200 and 500): the first one would be an arbitrary answer.
    expect_eq(res[3], ("series", "prometheus.query %s: 2 series for http_requests_total, expected one "
                                 "(aggregate it: sum(...), max(...))" % p.url), "two series")
    expect_eq(res[4][0], "series", "a range vector")
    expect_in("a matrix for http_requests_total[1m], expected one number", res[4][1])


test_query_no_series_or_several_is_not_a_number.timeout = TIMEOUT


def test_query_nan_is_no_traffic(t):
    # The idle counters never move: 0/0 over 5 minutes. The runbooks add the window (see
    # test_no_traffic_is_a_note_not_a_check); the primitive says what NaN means.
    p = prometheus()
    res, out, _, _, _ = query_all(t, [(lua_str(p.url), IDLE_RATE), (lua_str(p.url), "1 / 0")])
    expect_eq(res[1], ("nan", "prometheus.query %s: no traffic: %s is NaN (0/0, nothing was counted)" % (p.url, IDLE_RATE)),
              "NaN")
    expect_eq(res[2], ("inf", "prometheus.query %s: 1 / 0 is +Inf" % p.url), "+Inf")


test_query_nan_is_no_traffic.timeout = TIMEOUT


def test_query_refused_port_names_the_base_url(t):
    port = servers_prometheus.free_port()   # nothing listens there: the connect is refused at once
    base = "http://127.0.0.1:%d" % port
    res, out, _, _, records = query_all(t, [(lua_str(base), ERROR_RATE)])
    kind, err = res[1]
    expect_eq(kind, "refused", "kind")
    expect_eq(err.split(" (")[0], "prometheus.query %s: connection refused" % base, "error")
    expect_not_in("/api/v1/query", err)   # the request's URL, with the query, is the probe record's
    probes = [r for r in records if r["type"] == "probe"]
    expect_eq([(r["primitive"], r["outcome"]) for r in probes], [("http.get", "refused"), ("prometheus.query", "refused")],
              "probe records")
    expect_eq(probes[1]["target"], base, "its target is the base URL")


test_query_refused_port_names_the_base_url.timeout = TIMEOUT


def test_query_password_in_the_url_is_never_shown(t):
    p = prometheus()   # without authentication: it ignores the credentials
    password, token = "pw" + secrets.token_hex(8), "tk" + secrets.token_hex(8)
    env = {"PROM_URL": "http://alice:%s@127.0.0.1:%d" % (password, p.port),
           "PROM_DOWN": "http://alice:%s@127.0.0.1:%d" % (password, servers_prometheus.free_port()),
           "PROM_TOKEN": "http://127.0.0.1:%d/?token=%s" % (p.port, token)}
    res, out, err, raw, records = query_all(t, [
        ('os.getenv("PROM_URL")', ERROR_RATE),               # an answer
        ('os.getenv("PROM_URL")', "sum("),                   # Prometheus' error
        ('os.getenv("PROM_URL")', "name_that_does_not_exist"),
        ('os.getenv("PROM_DOWN")', ERROR_RATE),              # a transport error
        ('os.getenv("PROM_TOKEN")', "name_that_does_not_exist"),
    ], env=env)
    expect_value(res[1], 0.1, "the error rate through a URL with credentials")
    shown = "http://alice:***@127.0.0.1:%d" % p.port
    expect_eq(res[2][0], "rejected", "kind")
    expect_in("prometheus.query %s: invalid parameter" % shown, res[2][1])
    expect_eq(res[3], ("nodata", "prometheus.query %s: no data for name_that_does_not_exist" % shown), "no data")
    expect_eq(res[4][0], "refused", "kind")
    expect_in("prometheus.query http://alice:***@127.0.0.1:", res[4][1])
    expect_eq(res[5], ("nodata", "prometheus.query http://127.0.0.1:%d/?...: no data for "
                                 "name_that_does_not_exist" % p.port), "a token= in the base URL")
    for secret in (password, token):
        expect_not_in(secret, out, "stdout")
        expect_not_in(secret, err, "stderr")
        if secret.encode() in raw:
            fail("%s is in the transcript" % secret)
    # A mistake's message is redacted too.
    path = t.write("promq-bad.lua", """local prometheus = require "prometheus"
return runbook { name = "promq-bad", summary = "s", severity = "SEV4",
  step "a" { title = "A", run = function(ctx)
    prometheus.query((os.getenv(os.getenv("WHICH")):gsub("^http", "ftp")), "up")
  end } }
""")
    for which, shown, secret in (("PROM_URL", "ftp://alice:***@127.0.0.1:%d" % p.port, password),
                                 ("PROM_TOKEN", "ftp://127.0.0.1:%d/?..." % p.port, token)):
        cast = t.path("bad-%s.cast" % which)
        rc, out, err = t.run(["exec", path, "--auto", "--transcript", cast], env=dict(env, WHICH=which))
        expect_in("prometheus.query: '%s' is not an http:// or https:// URL" % shown, out + err)
        expect_not_in(secret, out + err)
        with open(cast, "rb") as f:
            if secret.encode() in f.read():
                fail("%s is in the transcript of a failed step" % which)


test_query_password_in_the_url_is_never_shown.timeout = TIMEOUT


def test_shipped_runbook_never_shows_the_password(t):
    p = prometheus()
    password = "pw" + secrets.token_hex(8)
    out, records = exec_runbook(t, "high-error-rate", "prometheus=http://bob:%s@127.0.0.1:%d" % (password, p.port),
                                "metric=name_that_does_not_exist")
    expect_in("· prometheus.query http://bob:***@127.0.0.1:%d: no data for " % p.port, out)
    expect_not_in(password, out)
    expect_not_in(password, json.dumps(records))


test_shipped_runbook_never_shows_the_password.timeout = TIMEOUT


def test_query_mistakes_raise_at_the_runbook_line(t):
    for call, message in (
            ('prometheus.query(42, "up")', "bad argument #1 to 'prometheus.query' (string expected, got number)"),
            ('prometheus.query("http://127.0.0.1:9", nil)', "bad argument #2 to 'prometheus.query' (string expected, got nil)"),
            ('prometheus.query("http://127.0.0.1:9", "up", { timout = 1 })',
             "prometheus.query: unknown option 'timout' (did you mean 'timeout'?)"),
            ('prometheus.query("http://127.0.0.1:9", "up", { timeout = "soon" })', "prometheus.query: option 'timeout': "),
            ('prometheus.query("127.0.0.1:9090", "up")', "prometheus.query: '127.0.0.1:9090' is not an http:// or https:// URL"),
            ('prometheus.query("http://127.0.0.1:9", "  ")', "prometheus.query: the query is empty")):
        n = next(RUNS)
        path = t.write("bad%d.lua" % n, """local prometheus = require "prometheus"
return runbook { name = "bad%d", summary = "s", severity = "SEV4",
  step "a" { title = "A", run = function(ctx)
    %s
  end } }
""" % (n, call))
        rc, out, err = t.run(["exec", path, "--auto", "--transcript", t.path("bad%d.cast" % n)])
        if rc == 0:
            fail("%s: exit code 0\nstdout:\n%s" % (call, out))
        expect_in("bad%d.lua:4: %s" % (n, message), out + err, call)
    # And nothing runs while a runbook loads.
    path = t.write("eager.lua", """local prometheus = require "prometheus"
prometheus.query("http://127.0.0.1:9", "up")
return runbook { name = "eager", summary = "s", severity = "SEV4", step "a" { title = "A", run = function() end } }
""")
    rc, out, err = t.run(["exec", path, "--auto"])
    expect_eq(rc, 2, "exit code of a load-time query")
    expect_in("prometheus.query: cannot run while the runbook is loading", err)


def test_repl_has_prometheus_with_help(t):
    rc, out, err = t.run(["repl"], stdin='help()\nhelp(prometheus.query)\n'
                                         'print(require("prometheus") == prometheus)\n')
    expect_eq(rc, 0, "exit code; stderr:\n" + err)
    modules = re.search(r"modules    (.*?) \(help", out)
    if not modules or "prometheus" not in modules.group(1).split(", "):
        fail("help() does not list prometheus among the modules:\n" + out[:600])
    expect_in("prometheus.query(base_url, promql, { timeout = 10, headers = {}, insecure = false, ca })", out)
    expect_in("  kinds    rejected, protocol, nodata, series, nan, inf,", out)
    expect_in("\ntrue\n", out)
    rc, out, err = t.run(["doc", "prometheus"])
    expect_eq(rc, 0, "exit code of doc prometheus")
    expect_in("prometheus.query  Evaluates a PromQL expression now and returns its value, a number.", out)
