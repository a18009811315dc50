"""Thresholds in the monitoring-plugins range syntax: check.judge and ctx:check (rendering in the
status colour, the transcript's check records, malformed ranges raising)."""
import re

from run import expect_eq, expect_in, fail

# (value, warn, crit, expected status) — the range semantics of the monitoring plugins.
CASES = [
    (5, "10", "20", "OK"),
    (15, "10", "20", "WARNING"),
    (25, "10", "20", "CRITICAL"),
    (-1, "10", None, "WARNING"),            # "10" means 0..10: a negative value is outside
    (5, "10:", None, "WARNING"),            # below 10
    (10, "10:", None, "OK"),                # inclusive
    (11, "~:10", None, "WARNING"),          # above 10
    (-1000, "~:10", None, "OK"),
    (15, None, "10:20", "OK"),
    (21, None, "10:20", "CRITICAL"),
    (9.5, None, "10:20", "CRITICAL"),
    (15, None, "@10:20", "CRITICAL"),       # inside alerts
    (20, None, "@10:20", "CRITICAL"),       # inclusive
    (21, None, "@10:20", "OK"),
    (95, "80", "90", "CRITICAL"),           # critical wins over warning
    (85, "80", "90", "WARNING"),
    (1, "3:", "2:", "CRITICAL"),
    (0.5, "~:0.25", None, "WARNING"),       # fractions
    (None, "80", "90", "UNKNOWN"),
    (7, None, None, "OK"),
]


def run_book(t, body, env=None):
    path = t.write("chk.lua", '''return runbook {
  name = "chk", summary = "checks", severity = "SEV4",
  step "c" { title = "checks", run = function(ctx)
%s
  end },
}
''' % body)
    tr = t.path("chk.cast")
    return t.run(["exec", path, "--auto", "--transcript", tr], env=env), tr


def lua_val(v):
    return "nil" if v is None else repr(v)


def lua_str(v):
    return "nil" if v is None else '"%s"' % v


def test_range_semantics(t):
    lines = ['print("@@ %d=" .. (check.judge(%s, { warn = %s, crit = %s })))' % (i, lua_val(v), lua_str(w), lua_str(c))
             for i, (v, w, c, _) in enumerate(CASES)]
    (rc, out, err), _ = run_book(t, "\n".join(lines))
    expect_eq(rc, 0, "exit code; stderr: " + err)
    got = dict(re.findall(r"^@@ (\d+)=(\w+)$", out, re.M))
    for i, (v, w, c, want) in enumerate(CASES):
        if got.get(str(i)) != want:
            fail("value %r warn %r crit %r: expected %s, got %s" % (v, w, c, want, got.get(str(i))))


def test_malformed_ranges_raise(t):
    (rc, out, err), _ = run_book(t, '''
for _, spec in ipairs { "abc", "20:10", "", "1:x" } do
  local ok, e = pcall(check.judge, 1, { warn = spec })
  print("@@ " .. spec .. "=" .. tostring(ok) .. " " .. tostring(e))
end
local ok, e = pcall(check.judge, 1, { wran = "1" })
print("@@ typo=" .. tostring(e))''')
    expect_in("@@ abc=false check: bad end 'abc' in range 'abc'", out)
    expect_in("@@ 20:10=false check: range '20:10' starts above its end", out)
    expect_in("@@ =false check: a range is a string", out)
    expect_in("@@ 1:x=false check: bad end 'x' in range '1:x'", out)
    expect_in("@@ typo=check: unknown option 'wran' (warn, crit)", out)


def test_ctx_check_renders_and_records(t):
    (rc, out, err), tr = run_book(t, '''
ctx:check("disk used", 45, { warn = "80", crit = "90", format = fmt.pct })
ctx:check("disk used", 85, { warn = "80", crit = "90", format = fmt.pct })
ctx:check("replicas", 1, { warn = "3:", crit = "2:" })
ctx:check("latency", nil, { warn = 100 })''')
    expect_eq(rc, 0)
    expect_in("  ✔ OK disk used: 45%\n", out)
    expect_in("  ! WARNING disk used: 85% (warning: above 80)\n", out)
    expect_in("  ✖ CRITICAL replicas: 1 (critical: below 2)\n", out)
    expect_in("  ? UNKNOWN latency: ? (no value)\n", out)
    expect_in("completed · 1 finding", out)
    _, _, records = t.read_transcript(tr)
    checks = [(r["label"], r.get("value"), r["status"]) for r in records if r["type"] == "check"]
    expect_eq(checks, [("disk used", 45, "OK"), ("disk used", 85, "WARNING"), ("replicas", 1, "CRITICAL"),
                       ("latency", None, "UNKNOWN")])
    rc, shown, _ = t.run(["transcript", "show", tr])
    expect_in("check         replicas: 1 → CRITICAL (warn 3:, crit 2:)", shown)


def test_fmt_pct_decides_decimals_on_the_rounded_value(t):
    # 0.1 * 100 can come out one bit under 10 (a Prometheus rate does): it must read as 10 does.
    (rc, out, err), _ = run_book(t, '''
for _, v in ipairs { 0, 4.25, 9.94, 9.96, 9.999999999999998, 10, 10.000000000000002, 97.4, 100 } do
  print("@@ " .. fmt.pct(v))
end''')
    expect_eq(rc, 0, "exit code; stderr: " + err)
    expect_eq(re.findall(r"^@@ (.*)$", out, re.M), ["0.0%", "4.2%", "9.9%", "10%", "10%", "10%", "10%", "97%", "100%"])


def test_ctx_check_colours_on_a_terminal(t):
    path = t.write("chk.lua", '''return runbook {
  name = "chk", summary = "checks", severity = "SEV4",
  step "c" { title = "checks", run = function(ctx)
    ctx:check("a", 1, { warn = "~:0" })
    ctx:check("b", 1, { crit = "~:0" })
    ctx:check("c", 0, { crit = "~:0" })
  end },
}
''')
    p = t.pty(["exec", path, "--auto"], env={"NO_COLOR": None})
    p.wait()
    raw = p.raw.decode()
    expect_in("\x1b[33mWARNING\x1b[0m a: 1", raw)
    expect_in("\x1b[31mCRITICAL\x1b[0m b: 1", raw)
    expect_in("\x1b[32mOK\x1b[0m c: 0", raw)
