"""Sandbox escapes: every way out of the runbook environment fails with a clear error, and
nothing it tried to do happened."""
import os
import re

from run import expect_eq, expect_in, expect_not_in, expect_rc, fail

# Each attempt runs under pcall inside a step; the step prints "NAME -> ok=... err=...".
ATTEMPTS = [
    # name, Lua expression (a function body), text the error must contain
    ("os.execute", 'return os.execute("touch %(x)s")', "os has no field 'execute'"),
    ("io.popen", 'return io.popen("touch %(x)s")', "undefined global 'io'"),
    ("io.open", 'return io.open("%(x)s", "w")', "undefined global 'io'"),
    ("os.exit", 'return os.exit(0)', "os has no field 'exit'"),
    ("os.remove", 'return os.remove("%(victim)s")', "os has no field 'remove'"),
    ("loadfile", 'return loadfile("%(lua)s")', "undefined global 'loadfile'"),
    ("dofile", 'return dofile("%(lua)s")', "undefined global 'dofile'"),
    ("string.dump", 'return string.dump(function() end)', "string has no field 'dump'"),
    ("method dump", 'return ("").dump(print)', "dump"),
    ("load mode b", 'local f, e = load("\\27Lua", "x", "b"); if not f then error(e) end; return f',
     "load: only text chunks are allowed"),
    ("load mode bt", 'local f, e = load("\\27LuaT\\0", "x", "bt"); if not f then error(e) end; return f',
     "load: only text chunks are allowed"),
    ("load binary", 'local f, e = load("\\27LuaT\\0\\25\\147\\r\\n\\26\\n"); if not f then error(e) end; return f',
     "attempt to load a binary chunk"),
    ("load reader", 'local p = { "\\27Lua" }; local f, e = load(function() return table.remove(p) end); '
                    'if not f then error(e) end; return f', "attempt to load a binary chunk"),
    ("require socket", 'return require "socket"', "module 'socket' is not available to runbooks (available: "),
    ("require io", 'return require "io"', "module 'io' is not available to runbooks"),
    ("require core", 'return require "core"', "module 'core' is not available to runbooks"),
    ("require os", 'return require "os"', "module 'os' is not available to runbooks"),
    ("package.loadlib", 'return package.loadlib("/lib/x86_64-linux-gnu/libc.so.6", "system")', "undefined global 'package'"),
    ("debug", 'return debug.getregistry()', "undefined global 'debug'"),
    ("collectgarbage", 'return collectgarbage("count")', "undefined global 'collectgarbage'"),
    ("global write", 'leaked = 1', "assignment to undefined global 'leaked' (declare it local)"),
    ("global read", 'return leaked_too', "undefined global 'leaked_too'"),
    ("module write", 'sh.read = function() end', "module 'sh' is read-only"),
    ("module unknown", 'return sh.spawn', "module 'sh' has no field 'spawn'"),
    ("os.date ok", 'error("os.date works: " .. type(os.date("!%%Y")))', "os.date works: string"),
    ("load env", 'return load("return io")()', "undefined global 'io'"),
    ("unprotect _G", 'setmetatable(_G, nil); leaked3 = 1; return leaked3', "protected metatable"),
    ("string metatable", 'getmetatable("").__index.format = function() return "PWNED" end',
     "attempt to index a boolean value"),
]


def build(t):
    x = t.path("escaped")
    victim = t.write("victim", "keep me\n")
    lua = t.write("payload.lua", 'return "payload ran"\n')
    steps = []
    for i, (name, code, _) in enumerate(ATTEMPTS):
        code = code % {"x": x, "victim": victim, "lua": lua}
        steps.append('  do local ok, e = pcall(function() %s end) ctx:note("%s -> ok=%%s err=%%s", tostring(ok), tostring(e)) end'
                     % (code, name))
    body = 'step "escape" { title = "Escape", run = function(ctx)\n%s\n  ctx:note("%%s", ("%%d"):format(7) .. " still formats")\nend },' % "\n".join(steps)
    return t.runbook("escape", body), x, victim


def test_sandbox_escapes(t):
    path, x, victim = build(t)
    rc, out, err = t.run(["exec", path, "--auto", "--transcript", t.path("t.cast")])
    expect_rc((rc, out, err), 0)
    lines = {l.strip()[2:].split(" -> ")[0]: l for l in out.splitlines() if " -> ok=" in l}
    problems = []
    for name, _, want in ATTEMPTS:
        line = lines.get(name)
        if line is None:
            problems.append("%s: no result line" % name)
        elif "ok=false" not in line or want not in line:
            problems.append("%s: expected a failure containing %r, got %r" % (name, want, line.strip()))
    if problems:
        fail("sandbox:\n  " + "\n  ".join(problems) + "\n--- output:\n" + out)
    expect_in("7 still formats", out)
    if os.path.exists(x):
        fail("a sandboxed command created %s" % x)
    with open(victim) as f:
        expect_eq(f.read(), "keep me\n", "victim file")
    expect_not_in("payload ran", out)


def test_host_string_library_untouched(t):
    # Even if a runbook could reach the shared string metatable, the engine's own formatting
    # afterwards must be intact: the summary line and the transcript close normally.
    t.runbook("meta", '''
step "a" { title = "A", run = function(ctx)
  pcall(function() getmetatable("").__index.format = function() return "PWNED" end end)
  pcall(function() getmetatable("").__index = { format = function() return "PWNED" end } end)
  ctx:note("x=%d", 5)
end },''')
    rc, out, err = t.run(["exec", "meta", "--auto", "--transcript", t.path("m.cast")])
    expect_rc((rc, out, err), 0)
    expect_not_in("PWNED", out + err)
    expect_in("· x=5", out)
    expect_in("completed · 1 ok", out)
    rc, out, err = t.run(["transcript", "verify", t.path("m.cast")])
    expect_rc((rc, out, err), 0)


def test_unprotected_escape_fails_step(t):
    x = t.path("escaped")
    t.runbook("direct", '''
step "a" { title = "A", run = function(ctx) os.execute("touch %s") end },
step "b" { title = "B", run = function(ctx) ctx:note("B MUST NOT RUN") end },''' % x)
    rc, out, err = t.run(["exec", "direct", "--auto", "--transcript", t.path("d.cast")])
    expect_rc((rc, out, err), 1)
    if not re.search(r"! direct\.lua:\d+: os has no field 'execute'", out):
        fail("no step failure naming os.execute:\n" + out)
    expect_not_in("B MUST NOT RUN", out)
    if os.path.exists(x):
        fail("os.execute ran")


def test_top_level_escape_is_load_error(t):
    x = t.path("escaped")
    t.write("runbooks/toplevel.lua", '''
local ok = pcall(function() os.execute("touch %s") end)
local f = io.open("%s", "w")
return runbook { name = "toplevel", summary = "s", severity = "SEV3", step "a" { title = "A", run = function() end } }
''' % (x, x))
    rc, out, err = t.run(["check", "runbooks/toplevel.lua"])
    expect_rc((rc, out, err), 1)
    expect_in("toplevel.lua:3: undefined global 'io'", out)
    rc, out, err = t.run(["exec", "toplevel", "--auto"])
    expect_rc((rc, out, err), 2)
    expect_in("toplevel.lua:3: undefined global 'io'", err)
    if os.path.exists(x):
        fail("top-level code escaped")
