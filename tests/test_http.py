"""The http module against a real HTTP(S) server (tests/servers_http.py, started once for this
module): probes and actions, JSON, expect/contains, redirects, timings, TLS certificates, a fault
matrix with elapsed-time windows, Ctrl-C, parallel(), and secrets kept out of every output."""
import json
import os
import re
import select
import subprocess
import time
from datetime import datetime, timezone

from run import expect_eq, expect_in, expect_not_in, expect_rc, fail, free_port, listener
from servers_http import shared
from steps import (ASK, MENU_AFTER_FAILURE, expect_fast, expect_within, interrupt, lua_str, on_pty, parse, probes,
                   run_auto, run_stamped, step, write_runbook)


def book(t, name, lua, more_steps=""):
    """Writes name.lua in the test's directory: a runbook of one step running lua (with http, URL,
    TLS, SILENT and emit in scope), then more_steps. Returns its path."""
    fx = shared()
    prelude = 'local http = require "http"\nlocal URL, TLS, SILENT = %s, %s, "http://127.0.0.1:%d"' % (
        lua_str(fx.url), lua_str(fx.tls_url), fx.silent_port)
    return write_runbook(t, name, prelude, step(lua) + more_steps, "http probe")


def probe(t, lua, args=(), timeout=60, want_rc=0):
    """Runs `lua` as one step (with http, URL, TLS, SILENT and emit in scope); returns the emitted
    values, stdout and stderr."""
    return run_auto(t, book(t, "httpt", lua), t.path("h.cast"), args, want_rc, timeout)


def records(t, name="h.cast"):
    _, _, recs = t.read_transcript(t.path(name))
    return recs


def timed(t, cases, timeout=60, args=()):
    """Runs each (name, lua expression giving r, err, kind) in turn in one step, printing a marker
    just before and just after each call; times each call between the arrival of its two marker
    lines on time.monotonic(). Returns {name: (elapsed_s, kind, err, r_summary)}."""
    body = []
    for name, expr in cases:
        body.append('print("@@ start=%s")\nlocal r, err, kind = %s\n'
                    'print("@@ end=%s|" .. tostring(kind) .. "|" .. tostring(err) .. "|" .. '
                    '(r and (r.status .. " " .. r.bytes .. " " .. tostring(r.truncated)) or "nil"))'
                    % (name, expr, name))
    path = book(t, "timed", "\n".join("do\n%s\nend" % b for b in body))
    rc, lines, out, err = run_stamped(t, path, t.path("timed.cast"), args, timeout)
    started, results = {}, {}
    for now, line in lines:
        m = re.match(r"^@@ start=(.*)$", line)
        if m:
            started[m.group(1)] = now
        m = re.match(r"^@@ end=([^|]*)\|([^|]*)\|([^|]*)\|(.*)$", line)
        if m:
            results[m.group(1)] = (now - started[m.group(1)], m.group(2), m.group(3), m.group(4))
    expect_rc((rc, out, err), 0, "the timed runbook")
    missing = [n for n, _ in cases if n not in results]
    if missing:
        fail("no result for %s; output:\n%s" % (missing, out))
    return results


# ------------------------------------------------------------------------------------- probes

def test_get_health_json_headers_and_audit(t):
    fx = shared()
    v, _, _ = probe(t, '''
local r = must(http.get(URL .. "/health"))
emit("status", r.status) emit("ok", r.ok) emit("method", r.method) emit("problem", r.problem)
emit("json_status", r.json.status) emit("json_n", r.json.checks.n) emit("json_error", r.json_error)
emit("ct", r.headers["content-type"]) emit("cl", r.headers["content-length"])
emit("bytes", r.bytes) emit("body_len", #r.body) emit("url", r.url) emit("redirects", r.redirects)
emit("truncated", r.truncated) emit("tls", r.tls) emit("ms", r.ms)
local h = must(http.get(URL .. "/headers"))
emit("multi", h.headers["x-multi"]) emit("mixed", h.headers["x-mixed-case"]) emit("upper", h.headers["X-Mixed-Case"])''')
    expect_eq((v["status"], v["ok"], v["method"], v["problem"]), ("200", "true", "GET", "nil"))
    expect_eq((v["json_status"], float(v["json_n"]), v["json_error"]), ("ok", 3, "nil"), "decoded JSON")
    expect_eq(v["ct"], "application/json; charset=utf-8")
    expect_eq(v["bytes"], v["cl"], "bytes = Content-Length")
    expect_eq(v["bytes"], v["body_len"])
    expect_eq(v["url"], fx.url + "/health")
    expect_eq((v["redirects"], v["truncated"], v["tls"]), ("0", "false", "nil"))
    expect_eq((v["multi"], v["mixed"], v["upper"]), ("one, two", "Value", "nil"), "lowercase header names, repeats joined")
    recs = [r for r in records(t) if r["type"] == "probe"]
    expect_eq([r["primitive"] for r in recs], ["http.get", "http.get"])
    expect_eq((recs[0]["target"], recs[0]["outcome"], recs[0]["deadline_ms"]), (fx.url + "/health", "ok", 10000))
    expect_in("200, %s bytes" % v["bytes"], recs[0]["summary"])


def test_head(t):
    v, _, _ = probe(t, '''
local r = must(http.head(URL .. "/health"))
emit("status", r.status) emit("body", "[" .. r.body .. "]") emit("bytes", r.bytes)
emit("cl", r.headers["content-length"]) emit("method", r.method) emit("json", r.json)''')
    expect_eq((v["status"], v["body"], v["bytes"], v["method"], v["json"]), ("200", "[]", "0", "HEAD", "nil"))
    if int(v["cl"]) <= 0:
        fail("HEAD did not get the headers: content-length %s" % v["cl"])


def test_json_decoding(t):
    v, _, _ = probe(t, '''
local bad = must(http.get(URL .. "/json/bad"))
emit("bad_json", bad.json) emit("bad_error", bad.json_error) emit("bad_ok", bad.ok)
local text = must(http.get(URL .. "/text"))
emit("text_json", text.json) emit("text_error", text.json_error)
local echo = must(http.get(URL .. "/echo/json"))
emit("echo_method", echo.json.method) emit("echo_ua", echo.json.headers["User-Agent"])''')
    expect_eq((v["bad_json"], v["bad_ok"]), ("nil", "true"), "undecodable JSON is not a failed probe")
    if v["bad_error"] in ("nil", ""):
        fail("no json_error for a body that is not JSON")
    expect_eq((v["text_json"], v["text_error"]), ("nil", "nil"), "text/plain is not decoded")
    expect_eq(v["echo_method"], "GET")
    expect_eq(v["echo_ua"], "runbook/0.1.0", "User-Agent")


def test_expect_and_contains(t):
    v, _, _ = probe(t, '''
local function show(name, r, err, kind)
  if not r then emit(name, "nil " .. tostring(kind)) return end
  emit(name, r.status .. " " .. tostring(r.ok) .. " " .. tostring(r.problem))
end
show("503", http.get(URL .. "/status/503"))
show("503_expected", http.get(URL .. "/status/503", { expect = 503 }))
show("204_list", http.get(URL .. "/status/204", { expect = { 200, 204 } }))
show("404_class", http.get(URL .. "/status/404", { expect = "2xx" }))
show("404_4xx", http.get(URL .. "/status/404", { expect = { "4xx", 500 } }))
show("302_default", http.get(URL .. "/redirect?n=1", { follow = false }))
show("contains", http.get(URL .. "/text", { contains = "hello from" }))
show("lacks", http.get(URL .. "/text", { contains = "goodbye" }))
show("both", http.get(URL .. "/status/500", { contains = "status" }))
local ok, err = pcall(http.get, URL, { expect = "abc" })
emit("bad_expect", err)
ok, err = pcall(http.get, URL, { timout = 1 })
emit("typo", err)
ok, err = pcall(http.get, "ftp://127.0.0.1/")
emit("scheme", err)
ok, err = pcall(http.get, URL, { headers = { ["X-Bad"] = "a\\r\\nb" } })
emit("crlf", err)''')
    expect_eq(v["503"], "503 false status 503, expected 2xx or 3xx", "a 503 is a result with ok = false")
    expect_eq(v["503_expected"], "503 true nil")
    expect_eq(v["204_list"], "204 true nil")
    expect_eq(v["404_class"], "404 false status 404, expected 2xx")
    expect_eq(v["404_4xx"], "404 true nil")
    expect_eq(v["302_default"], "302 true nil", "3xx is ok by default")
    expect_eq(v["contains"], "200 true nil")
    expect_eq(v["lacks"], '200 false the body does not contain "goodbye"')
    expect_eq(v["both"], "500 false status 500, expected 2xx or 3xx", "status is judged first")
    expect_in("option 'expect'", v["bad_expect"])
    expect_in("unknown option 'timout' (did you mean 'timeout'?)", v["typo"])
    expect_in("'ftp://127.0.0.1/' is not an http:// or https:// URL", v["scheme"])
    expect_in("contains a line break", v["crlf"])


def test_redirects_bounded(t):
    fx = shared()
    v, _, _ = probe(t, '''
local r = must(http.get(URL .. "/redirect?n=3"))
emit("follow", r.status .. " " .. r.redirects .. " " .. r.url .. " " .. r.body)
local n = must(http.get(URL .. "/redirect?n=3", { follow = false }))
emit("nofollow", n.status .. " " .. n.redirects .. " " .. n.headers.location)
local five = must(http.get(URL .. "/redirect?n=5"))
emit("five", five.status .. " " .. five.redirects)
local no, err, kind = http.get(URL .. "/redirect?n=6")
emit("six", tostring(no) .. "|" .. err .. "|" .. kind)
no, err, kind = http.get(URL .. "/redirect?n=3", { max_redirects = 2 })
emit("max2", kind .. "|" .. err)''')
    expect_eq(v["follow"], "200 3 %s/redirect?n=0 arrived" % fx.url)
    expect_eq(v["nofollow"], "302 0 /redirect?n=2")
    expect_eq(v["five"], "200 5", "max_redirects = 5 by default")
    expect_eq(v["six"], "nil|http.get %s/redirect?n=6: more than 5 redirects (a redirect loop?)|protocol" % fx.url)
    expect_eq(v["max2"], "protocol|http.get %s/redirect?n=3: more than 2 redirects (a redirect loop?)" % fx.url)


def test_timings_present_and_ordered(t):
    v, _, _ = probe(t, '''
for _, case in ipairs { { "plain", URL .. "/slow?ms=200", {} }, { "tls", TLS .. "/slow?ms=200", { insecure = true } } } do
  local r = must(http.get(case[2], case[3]))
  local tm = r.timings
  emit(case[1], string.format("%f %f %f %f %f %f", tm.dns_ms, tm.connect_ms, tm.tls_ms, tm.first_byte_ms, tm.total_ms, r.ms))
end''')
    for name in ("plain", "tls"):
        dns, conn, tls, first, total, ms = map(float, v[name].split())
        if min(dns, conn, tls, first, total) < 0:
            fail("%s: a negative phase: %s" % (name, v[name]))
        if dns + conn + tls + first > total + 0.01:
            fail("%s: the phases add up to more than the total: %s" % (name, v[name]))
        if not 190 <= first <= total:
            fail("%s: first byte after %.1f ms for a 200 ms server delay (total %.1f)" % (name, first, total))
        if total > ms + 1:
            fail("%s: curl's total %.1f ms exceeds the call's %.1f ms" % (name, total, ms))
        if name == "tls" and tls <= 0:
            fail("no TLS time over https: %s" % v[name])
        if name == "plain" and tls != 0:
            fail("TLS time over plain http: %s" % v[name])


# ---------------------------------------------------------------------------------------- TLS

def cert_not_after(path):
    out = subprocess.run(["openssl", "x509", "-enddate", "-noout", "-in", path], check=True,
                         capture_output=True, text=True).stdout.strip()
    # notAfter=Jan  4 20:20:34 2027 GMT
    when = datetime.strptime(" ".join(out.split("=", 1)[1].split()), "%b %d %H:%M:%S %Y %Z")
    return int(when.replace(tzinfo=timezone.utc).timestamp())


def test_tls_certificate_on_get(t):
    fx = shared()
    v, _, _ = probe(t, '''
local r = must(http.get(TLS .. "/health", { insecure = true }))
emit("status", r.status) emit("json", r.json.status)
emit("days_left", r.tls.days_left) emit("not_after", r.tls.not_after) emit("not_before", r.tls.not_before)
emit("subject", r.tls.subject) emit("issuer", r.tls.issuer) emit("chain", r.tls.chain_length)
local no, err, kind = http.get(TLS .. "/health")
emit("strict", tostring(no) .. "|" .. kind .. "|" .. err)
local ca = must(http.get(TLS .. "/health", { ca = %s }))
emit("ca", ca.status .. " " .. ca.tls.days_left)''' % lua_str(fx.cert))
    expect_eq((v["status"], v["json"]), ("200", "ok"))
    days = int(v["days_left"])
    if abs(days - fx.cert_days) > 1:
        fail("days_left = %d for a certificate valid %d days" % (days, fx.cert_days))
    expect_eq(int(v["not_after"]), cert_not_after(fx.cert), "not_after against openssl x509 -enddate")
    if not int(v["not_before"]) <= time.time() <= int(v["not_after"]):
        fail("now is outside [not_before, not_after]: %s" % v)
    expect_eq((v["subject"], v["issuer"], v["chain"]), ("CN = localhost", "CN = localhost", "1"))
    expect_eq(v["strict"].split("|")[:2], ["nil", "tls"], "a self-signed certificate without insecure")
    expect_in("self-signed certificate", v["strict"])
    # The same count, or one less: the two requests can fall on either side of a whole day left.
    status, ca_days = v["ca"].split()
    expect_eq((status, int(ca_days) in (days, days - 1)), ("200", True), "trusted through ca = cert: %s" % v["ca"])


def test_cert_probe(t):
    fx = shared()
    v, _, _ = probe(t, '''
local c = must(http.cert(TLS))
emit("valid", c.valid) emit("hostname_ok", c.hostname_ok) emit("error", c.error)
emit("days_left", c.days_left) emit("chain", c.chain_length) emit("subject", c.subject)
emit("host", c.host .. ":" .. c.port)
local byhost = must(http.cert("localhost:%d", { ca = %s }))
emit("trusted", tostring(byhost.valid) .. " " .. tostring(byhost.hostname_ok) .. " " .. tostring(byhost.error))
local no, err, kind = http.cert("127.0.0.1:%d", { timeout = 2 })
emit("refused", kind)
local ok, perr = pcall(http.cert, URL)
emit("plain", perr)''' % (fx.tls_port, lua_str(fx.cert), free_port()))
    expect_eq((v["valid"], v["hostname_ok"]), ("false", "true"), "self-signed: not valid, but the name matches")
    expect_eq(v["error"], "self-signed certificate")
    if abs(int(v["days_left"]) - fx.cert_days) > 1:
        fail("days_left = %s for a certificate valid %d days" % (v["days_left"], fx.cert_days))
    expect_eq((v["chain"], v["subject"], v["host"]), ("1", "CN = localhost", "127.0.0.1:%d" % fx.tls_port))
    expect_eq(v["trusted"], "true true nil", "with ca = the certificate, by host name")
    expect_eq(v["refused"], "refused")
    expect_in("is not https://", v["plain"])
    recs = probes(records(t), "http.cert")
    expect_eq([r["outcome"] for r in recs], ["problem", "ok", "refused"])


# ------------------------------------------------------------------------------------- actions

POST_BOOK = '''
local r = must(http.post(URL .. "/echo?tag=%s", { json = { text = "restart please", n = 2 }, headers = { ["X-Test"] = "one" } }))
ctx:ok("posted: %%d", r.status)
emit("echo_body", r.json.body)'''


def test_post_confirmed_through_the_pty(t):
    fx = shared()
    tag = "pty%d" % os.getpid() + str(time.monotonic_ns())
    path = book(t, "post", POST_BOOK % tag)
    p, tr = on_pty(t, path, "post.cast")
    p.expect(re.escape("ACTION  POST %s/echo?tag=%s" % (fx.url, tag)))
    p.expect(r"headers: X-Test: one")
    p.expect(r'body: 31 bytes of JSON: \{"[a-z]+":')
    p.expect(ASK)
    if fx.log(tag):
        fail("the request was sent before the answer")
    p.sendline("yes")
    p.expect(r"✔ posted: 200")
    expect_eq(p.wait(), 0, "exit code")
    got = fx.log(tag)
    expect_eq(len(got), 1, "requests received")
    expect_eq(got[0]["method"], "POST")
    expect_eq(json.loads(got[0]["body"]), {"text": "restart please", "n": 2})
    expect_eq(got[0]["headers"].get("Content-Type"), "application/json")
    expect_eq(got[0]["headers"].get("X-Test"), "one")
    _, _, recs = t.read_transcript(tr)
    types = [r["type"] for r in recs]
    i = types.index("plan")
    expect_eq(types[i:i + 4], ["plan", "confirm", "action_start", "action_result"])
    expect_eq(recs[i]["primitive"], "http.post")
    expect_eq(recs[i + 2]["target"], "POST %s/echo?tag=%s" % (fx.url, tag))
    expect_eq(recs[i + 3]["outcome"], "status 200")


def test_post_declined_without_terminal(t):
    fx = shared()
    tag = "noterm" + str(time.monotonic_ns())
    path = book(t, "post", POST_BOOK % tag)
    rc, out, err = t.run(["exec", path, "--auto", "--transcript", t.path("n.cast")])
    expect_eq(rc, 4, "exit code: declined for want of a terminal\n" + out + err)
    expect_in("not run: no terminal to confirm on", out)
    expect_eq(fx.log(tag), [], "requests received")
    types = [r["type"] for r in records(t, "n.cast")]
    expect_not_in("action_start", types)


def test_request_methods_dry_run_and_yes(t):
    fx = shared()
    tag = "req" + str(time.monotonic_ns())
    lua = '''
for _, m in ipairs { "PUT", "PATCH", "DELETE" } do
  local r = must(http.request { url = URL .. "/echo/" .. m .. "?tag=%s", method = m, body = "payload " .. m,
                                headers = { ["Content-Type"] = "text/plain" } })
  emit(m, r.dry_run and "dry" or (r.status .. " " .. r.json.method .. " " .. r.json.body))
end
local r = must(http.request { url = URL .. "/echo/plain?tag=%s", method = "delete" })
emit("nobody", r.dry_run and "dry" or (r.json.method .. " [" .. r.json.body .. "]"))
local ok, err = pcall(http.request, { url = URL, method = "GET" })
emit("get", err)
ok, err = pcall(http.request, { url = URL, method = "TRACE" })
emit("trace", err)
ok, err = pcall(http.post, URL, { body = "x", json = {} })
emit("both", err)''' % (tag, tag)
    path = book(t, "req", lua)
    rc, out, err = t.run(["exec", path, "--auto", "--dry-run", "--transcript", t.path("d.cast")])
    expect_rc((rc, out, err), 0, "dry run")
    v = parse(out)
    expect_eq((v["PUT"], v["PATCH"], v["DELETE"], v["nobody"]), ("dry",) * 4)
    expect_eq(fx.log(tag), [], "requests received under --dry-run")
    expect_in("http.request: GET is a probe: use http.get(url, opts)", v["get"])
    expect_in("method 'TRACE' is not one of POST, PUT, PATCH, DELETE", v["trace"])
    expect_in("give body or json, not both", v["both"])

    rc, out, err = t.run(["exec", path, "--auto", "--yes", "--transcript", t.path("y.cast")])
    expect_rc((rc, out, err), 0, "--yes")
    v = parse(out)
    expect_eq((v["PUT"], v["PATCH"], v["DELETE"]), ("200 PUT payload PUT", "200 PATCH payload PATCH", "200 DELETE payload DELETE"))
    expect_eq(v["nobody"], "DELETE []")
    expect_eq(sorted(r["method"] for r in fx.log(tag)), ["DELETE", "DELETE", "PATCH", "PUT"])
    recs = records(t, "y.cast")
    expect_eq([r["outcome"] for r in recs if r["type"] == "action_result"], ["status 200"] * 4)
    expect_eq([r["target"].split(" ")[0] for r in recs if r["type"] == "action_result"], ["PUT", "PATCH", "DELETE", "DELETE"])
    expect_eq([r["target"] for r in recs if r["type"] == "action_result"],
              [r["target"] for r in recs if r["type"] == "action_start"], "the results' targets")


def test_body_preview_stays_valid_utf8(t):
    # The gate shows the first 160 bytes of the body: a character cut there, or bytes that are not
    # UTF-8 at all, are escaped, so the transcript stays valid UTF-8 (and JSON).
    fx = shared()
    tag = "utf8" + str(time.monotonic_ns())
    path = book(t, "utf", '''
must(http.post(URL .. "/echo?tag=%s", { body = string.rep("a", 159) .. "\\u{b7}\\u{20ac} end" }))
must(http.post(URL .. "/echo?tag=%s", { body = "\\xff\\xfe\\x00 binary \\xe2\\x82" }))''' % (tag, tag))
    rc, out, err = t.run(["exec", path, "--auto", "--yes", "--transcript", t.path("u.cast")])
    expect_rc((rc, out, err), 0)
    _, events, recs = t.read_transcript(t.path("u.cast"))    # decodes strictly
    shown = t.shown_text(events)
    expect_in("body: 168 bytes: " + "a" * 159 + "\\xc2...", shown)
    expect_in("body: 13 bytes: \\xff\\xfe\\x00 binary \\xe2\\x82", shown)
    expect_eq(len(fx.log(tag)), 2, "requests received")


# -------------------------------------------------------------------------------- fault matrix

def expect_timed_out(res, name, deadline_ms, what, message=None):
    """The call name of timed() gave up at its deadline: kind timeout, err saying message (if
    given), and it took about deadline_ms."""
    el, kind, err, _ = res[name]
    expect_eq(kind, "timeout")
    if message is not None:
        expect_in(message, err)
    expect_within(el * 1000, deadline_ms, what)


def test_fault_refused_and_silent_listener(t):
    fx = shared()
    closed = free_port()
    res = timed(t, [
        ("refused", 'http.get("http://127.0.0.1:%d/health", { timeout = 2 })' % closed),
        ("silent", 'http.get(SILENT .. "/health", { timeout = 0.8 })'),
        ("silent_post", 'http.get(SILENT .. "/x", { timeout = "600ms" })'),
    ])
    el, kind, err, _ = res["refused"]
    expect_eq(kind, "refused")
    expect_eq(err, "http.get http://127.0.0.1:%d/health: connection refused (nothing listens there: is the service up?)" % closed)
    expect_fast(el * 1000, 250, "refused port")
    expect_timed_out(res, "silent", 800, "GET on a listener that never answers",
                     "timed out after 800 ms waiting for the response")
    expect_timed_out(res, "silent_post", 600, "GET on a listener that never answers (600ms)")
    del fx


def test_fault_drip_and_endless(t):
    res = timed(t, [
        ("drip", 'http.get(URL .. "/drip?n=100", { timeout = 1.5 })'),
        ("endless", 'http.get(URL .. "/endless?chunk=1024&every_ms=10", { timeout = 1 })'),
        ("endless_max", 'http.get(URL .. "/endless", { max_body = 65536, timeout = 5 })'),
        ("big_max", 'http.get(URL .. "/big?bytes=300000", { max_body = 1000 })'),
    ])
    expect_timed_out(res, "drip", 1500, "/drip with timeout 1.5 s", "timed out after 1500 ms while receiving the body")
    expect_timed_out(res, "endless", 1000, "/endless with timeout 1 s", "while receiving the body")
    el, kind, _, summary = res["endless_max"]
    expect_eq((kind, summary), ("nil", "200 65536 true"), "an endless body is cut at max_body")
    expect_fast(el * 1000, 1000, "/endless cut at max_body = 64 KiB")
    expect_eq(res["big_max"][1:], ("nil", "nil", "200 1000 true"))


def test_timeout_capped_by_the_command_line(t):
    res = timed(t, [("capped", 'http.get(SILENT .. "/", { timeout = 60 })')], args=["--timeout", "700ms"])
    expect_timed_out(res, "capped", 700, "GET capped by --timeout 700ms", "timed out after 700 ms")
    _, _, recs = t.read_transcript(t.path("timed.cast"))
    expect_eq([r["deadline_ms"] for r in recs if r["type"] == "probe"], [700])


def test_fault_dns_bounded(t):
    res = timed(t, [("dns", 'http.get("http://no-such-host.invalid/", { timeout = 1 })')])
    el, kind, err, _ = res["dns"]
    # Without a reachable resolver the lookup may hang instead of failing: either way, bounded.
    if kind not in ("dns", "timeout"):
        fail("kind %s (%s)" % (kind, err))
    if el > 1.0 + 0.25:
        fail("the lookup took %.0f ms for a 1 s deadline" % (el * 1000))
    expect_in("http.get http://no-such-host.invalid/: ", err)


class SilentListener:
    """A listener in this process that accepts and never answers. accepted(n) waits (bounded) for n
    connections, so that a test acts only once the GETs really wait on their sockets."""

    def __init__(self, t):
        self.sock = listener(t, 64)
        self.port = self.sock.getsockname()[1]
        self.held = []
        t.on_cleanup(self.close)

    def accepted(self, n, timeout=10):
        deadline = time.monotonic() + timeout
        while len(self.held) < n:
            r, _, _ = select.select([self.sock], [], [], max(0, deadline - time.monotonic()))
            if not r:
                fail("only %d of %d connections arrived within %ss" % (len(self.held), n, timeout))
            self.held.append(self.sock.accept()[0])

    def wait_eof(self, conn, timeout):
        """Seconds until the client closed conn, or None after timeout."""
        start = time.monotonic()
        while True:
            left = start + timeout - time.monotonic()
            r, _, _ = select.select([conn], [], [], max(0, left))
            if r and conn.recv(65536) == b"":
                return time.monotonic() - start
            if left <= 0:
                return None

    def close(self):
        for c in self.held:
            c.close()
        self.sock.close()


def ctrl_c_then_quit(p, what):
    """Ctrl-C brings the step menu back within 0.5 s; q there ends the run (exit code 5)."""
    expect_fast(interrupt(p, MENU_AFTER_FAILURE) * 1000, 500, what)
    p.sendline("q")
    expect_eq(p.wait(), 5, "exit code")


def test_ctrl_c_stops_a_get(t):
    silent = SilentListener(t)
    path = book(t, "intr", '''
must(http.get("http://127.0.0.1:%d/never", { timeout = 60 }))''' % silent.port)
    p, _ = on_pty(t, path, "i.cast")
    silent.accepted(1)
    ctrl_c_then_quit(p, "Ctrl-C to the step menu")
    recs = [r for r in records(t, "i.cast") if r["type"] == "probe"]
    expect_eq([(r["primitive"], r["outcome"]) for r in recs], [("http.get", "interrupted")])


def test_ctrl_c_stops_parallel_gets(t):
    silent = SilentListener(t)
    path = book(t, "pintr", '''
local tasks = {}
for i = 1, 20 do tasks[i] = function() return http.get("http://127.0.0.1:%d/p" .. i, { timeout = 60 }) end end
parallel(tasks)''' % silent.port)
    p = t.pty(["exec", path, "--auto"])
    silent.accepted(20)
    ctrl_c_then_quit(p, "Ctrl-C to the step menu (20 GETs in parallel)")


def test_parallel_200_slow_endpoints(t):
    v, _, _ = probe(t, '''
local tasks = {}
for i = 1, 200 do tasks[i] = function() return http.get(URL .. "/slow?ms=20&i=" .. i) end end
local r = parallel(tasks, { limit = 200 })
local ok, worst = 0, 0
for i = 1, 200 do
  if r[i].value and r[i].value.ok then ok = ok + 1 else emit("failed" .. i, r[i].err) end
  if r[i].ms > worst then worst = r[i].ms end
end
emit("ok", ok) emit("worst", worst)''')
    expect_eq(v["ok"], "200", "GETs that succeeded")
    step = [r for r in records(t) if r["type"] == "step_end"][0]
    limit = 2000 if t.sanitized else 1000
    if step["duration_ms"] >= limit:
        fail("200 GETs of 20 ms each took %d ms (limit %d ms): they did not run concurrently"
             % (step["duration_ms"], limit))
    print("    parallel 200 x 20 ms: %d ms (slowest task %.0f ms)" % (step["duration_ms"], float(v["worst"])))


def test_parallel_mixed_outcomes(t):
    closed = free_port()
    v, _, _ = probe(t, '''
local r = parallel {
  up = function() return http.get(URL .. "/health") end,
  down = function() return http.get("http://127.0.0.1:%d/") end,
  hung = function() return http.get(SILENT .. "/", { timeout = "700ms" }) end,
  bad = function() return http.get(URL .. "/status/500") end,
}
emit("up", r.up.value.status) emit("down", r.down.kind) emit("hung", r.hung.kind)
emit("bad", tostring(r.bad.value.ok) .. " " .. r.bad.value.status) emit("hung_ms", r.hung.ms)''' % closed)
    expect_eq((v["up"], v["down"], v["hung"], v["bad"]), ("200", "refused", "timeout", "false 500"))
    expect_within(float(v["hung_ms"]), 700, "a hung GET inside parallel")


# ------------------------------------------------------------------------------------- secrets

def test_canary_secrets_stay_out_of_every_output(t):
    fx = shared()
    tag = "canary" + str(time.monotonic_ns())
    url = "http://user:CANARYht99@127.0.0.1:%d/echo?tag=%s&token=CANARYtok11" % (fx.port, tag)
    dead = "http://user:CANARYht99@127.0.0.1:%d/x?access_token=CANARYtok11" % free_port()
    path = book(t, "canary", '''
local r = must(http.get(%s))
print(r.url) print(r.body) print(r.json.path) print(r.json.headers.Authorization)
ctx:note("fetched %%s", r.url)
local no, err, kind = http.get(%s)
print(err)
local p = must(http.post(%s, { body = "x" }))
print(p.url)
local ok, perr = pcall(http.get, "ftp://user:CANARYht99@127.0.0.1/?token=CANARYtok11")
print(perr)
emit("done", "yes")''' % (lua_str(url), lua_str(dead), lua_str(url)))
    tr = t.path("c.cast")
    rc, out, err = t.run(["exec", path, "--auto", "--yes", "--transcript", tr])
    expect_rc((rc, out, err), 0)
    expect_in("@@ done=yes", out)
    with open(tr, encoding="utf-8") as f:
        transcript = f.read()
    for canary in ("CANARYht99", "CANARYtok11"):
        expect_not_in(canary, out, "stdout")
        expect_not_in(canary, err, "stderr")
        expect_not_in(canary, transcript, "transcript")
    expect_in("user:***@127.0.0.1", out)
    expect_in("token=***", out)
    # The server did get them.
    got = fx.log(tag)
    expect_eq(len(got), 2, "requests received")
    expect_in("token=CANARYtok11", got[0]["path"])
    import base64
    expect_eq(got[0]["headers"].get("Authorization"), "Basic " + base64.b64encode(b"user:CANARYht99").decode())


def test_parallel_stopped_by_a_declined_action_frees_waiting_gets(t):
    # Task 2's action is declined (no terminal): the skip stops parallel(), which abandons task 1
    # mid-GET. Its connection must be closed right then (the op is a to-be-closed value), not when
    # the garbage collector gets to it: the server sees EOF while the next step still runs.
    silent = SilentListener(t)
    path = book(t, "abandon", '''
parallel({
  function() return http.get("http://127.0.0.1:%d/", { timeout = 60 }) end,
  function() return http.post(URL .. "/echo?tag=abandon") end,
}, { limit = 2 })
print("NOT REACHED")''' % silent.port, step('must(http.get(URL .. "/slow?ms=3000")) print("NEXT DONE")', "q", "next"))
    p = t.spawn(["exec", path, "--auto", "--transcript", t.path("a.cast")])
    silent.accepted(1)
    took = silent.wait_eof(silent.held[0], timeout=2.5)
    if took is None:
        fail("the abandoned GET's connection is still open 2.5 s after parallel() was stopped")
    if p.poll() is not None:
        fail("the run ended before the abandoned connection was seen closed")
    out, err = p.communicate(timeout=30)
    out = out.decode()
    expect_eq(p.returncode, 4, "exit code (an action was declined)\n" + out + err.decode())
    expect_not_in("NOT REACHED", out)
    expect_in("NEXT DONE", out)
