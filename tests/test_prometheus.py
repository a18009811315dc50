"""The Prometheus steps of high-error-rate and high-latency against a real Prometheus
(tests/servers_prometheus.py, shared by this module) scraping the HTTP fixture's /metrics
(tests/servers_http.py), whose counters make the answers exact: a 10% error rate, a p95 of 0.175 s.
Also what an operator sees when Prometheus has nothing to say: no such metric, no traffic, a query
it rejects, nothing listening."""
import itertools
import os

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


def notes(records):
    return [r["text"] for r in records if r["type"] == "note" and r["level"] == "note"]


def test_error_rate_is_exactly_ten_percent_and_critical(t):
    p = prometheus()
    out, records = exec_runbook(t, "high-error-rate", "prometheus=" + p.url)
    expect_in("✖ CRITICAL error rate over 5 minutes: 10% (critical: above 5)\n", out)
    rec = check_record(records, "error rate over 5 minutes")
    expect_eq(rec["status"], "CRITICAL", "recorded status")
    if abs(rec["value"] - 10) > 1e-9:
        fail("recorded error rate %r, expected 10 (90k answers 200, 10k answers 500)" % rec["value"])


test_error_rate_is_exactly_ten_percent_and_critical.timeout = TIMEOUT


def test_p95_is_exactly_175_ms(t):
    p = prometheus()
    out, records = exec_runbook(t, "high-latency", "prometheus=" + p.url)
    expect_in("✔ OK p95 over 5 minutes: 175.0 ms\n", out)
    rec = check_record(records, "p95 over 5 minutes")
    expect_eq(rec["status"], "OK", "recorded status")
    if abs(rec["value"] - 175) > 1e-9:
        fail("recorded p95 %r ms, expected 175 (rank 95 of 100 in the (0.1, 0.25] bucket)" % rec["value"])
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
    note = ('Prometheus: no data for (sum(rate(name_that_does_not_exist{status=~"5.."}[5m])) or vector(0))'
            ' / sum(rate(name_that_does_not_exist[5m]))')
    expect_in("· " + note + "\n", out)
    expect_in(note, notes(records), "transcript")
    out, _ = exec_runbook(t, "high-latency", "prometheus=" + p.url, "histogram=name_that_does_not_exist")
    expect_in("· Prometheus: no data for histogram_quantile(0.95, sum(rate(name_that_does_not_exist[5m])) by (le))\n",
              out)


test_unknown_metric_is_a_note_naming_the_query.timeout = TIMEOUT


def test_query_prometheus_rejects_is_a_note_with_its_error(t):
    # A metric input that breaks the expression: Prometheus answers 400 and says why.
    p = prometheus()
    out, _ = exec_runbook(t, "high-error-rate", "prometheus=" + p.url, "metric=x)")
    expect_in('· Prometheus: invalid parameter "query": 1:13: parse error: ', out)


test_query_prometheus_rejects_is_a_note_with_its_error.timeout = TIMEOUT


def test_refused_port_is_a_note_naming_the_failure(t):
    port = servers_prometheus.free_port()   # nothing listens there: the connect is refused at once
    for name in ("high-error-rate", "high-latency"):
        out, records = exec_runbook(t, name, "prometheus=http://127.0.0.1:%d" % port)
        prefix = "Prometheus: http.get http://127.0.0.1:%d/api/v1/query?query=" % port
        expect_in("· " + prefix, out, name)
        expect_in(": connection refused", out, name)
        if not any(n.startswith(prefix) and "connection refused" in n for n in notes(records)):
            fail("%s: no note %r... naming the refusal in the transcript: %r" % (name, prefix, notes(records)))


test_refused_port_is_a_note_naming_the_failure.timeout = TIMEOUT
