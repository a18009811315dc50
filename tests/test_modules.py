"""pg, redis and http are shared objects that `runbook exec` opens ahead of their first use, in a
worker thread (stdlib/modules.c). These tests hold that work to the rules of the rest: a module's
first use from several parallel() tasks at once, a runbook that requires modules and never uses
them, and one that stops before its first step all behave as if the modules were opened on the spot."""
import os
import re
import shutil
import subprocess

from run import check_sanitizer, expect_eq, expect_in, expect_rc, fail
from servers_http import shared as http_server
from steps import run_auto, step, write_runbook

REQUIRES = 'local pg = require "pg"\nlocal redis = require "redis"\nlocal http = require "http"'


def runbook(t, body, inputs=""):
    return write_runbook(t, "mods", REQUIRES, step(body, "s", "step"), "modules", inputs)


def test_first_use_from_many_parallel_tasks(t):
    # Eight tasks reach http's first use together, while the worker may still be opening it: each
    # waits (yielding) for the module, and every one of them gets an answer.
    url = http_server().url + "/status/200"
    path = runbook(t, '''
    local tasks = {}
    for i = 1, 8 do tasks[i] = function() return http.get("%s", { timeout = "5s" }) end end
    for i, r in ipairs(parallel(tasks)) do
      print("@@ " .. i .. " " .. (r.value and r.value.status or r.err))
    end''' % url)
    rc, out, err = res = t.run(["exec", path, "--auto", "--transcript", t.path("m.cast")])
    expect_rc(res, 0)
    expect_eq(sorted(re.findall(r"^@@ (\d+) (\S+)$", out, re.M)),
              [(str(i), "200") for i in range(1, 9)], "every task's answer")


def test_required_but_unused_modules_leave_cleanly(t):
    # The process ends while the worker may still be inside dlopen or libcurl's setup: it must wait
    # for it, or the libraries' exit handlers run under it (this crashed one run in six once).
    path = runbook(t, '    ctx:ok("nothing to probe")')
    for i in range(12):
        rc, out, err = res = t.run(["exec", path, "--auto", "--transcript", t.path("m%d.cast" % i)])
        expect_rc(res, 0, "run %d" % i)
        expect_in("nothing to probe", out)


def test_stopping_before_the_first_step_leaves_cleanly(t):
    path = runbook(t, '    ctx:ok("unreachable")', inputs='url = input.url { required = true }')
    for _ in range(6):
        rc, out, err = res = t.run(["exec", path, "--auto"])
        expect_rc(res, 2)
        expect_in("url", err)


LIBS_MAPPED = r"""%s
    local r = sh.read { "awk '/lib(edit|pq|curl|hiredis)[.]so/ { sub(/.*[/]/, \"\", $6); print $6 }' /proc/$PPID/maps | sort -u",
                        shell = true, quiet = true, check = true }
    print("@@ mapped=" .. r.stdout:gsub("\n", " "))"""


def mapped_libraries(t, name, prelude, use=""):
    # The step's shell is the runbook's child: /proc/$PPID/maps is the runbook's own map.
    path = write_runbook(t, name, 'local sh = require "sh"\n' + prelude, step(LIBS_MAPPED % use, "s", "step"), "maps")
    values, out, err = run_auto(t, path, t.path(name + ".cast"))
    return sorted(values["mapped"].split())


def test_a_run_maps_only_the_libraries_it_uses(t):
    # libedit is the REPL's (a terminal session's), libpq, libcurl and hiredis their modules': a
    # run without a terminal that requires none of them maps none of them (startup stays small).
    expect_eq(mapped_libraries(t, "bare", ""), [], "libraries mapped by a run that needs none")
    # One that uses pg has libpq, and still no libedit.
    got = mapped_libraries(t, "withpg", 'local pg = require "pg"', "\n    assert(pg.ping)")
    expect_eq([lib for lib in got if not lib.startswith("libpq.")], [], "besides libpq")
    if not any(lib.startswith("libpq.") for lib in got):
        fail("a run that requires pg has no libpq mapped: %r" % got)


FAKE_HTTP = r'''
/* An http module built against a function that does not exist anywhere. */
#include <lua.h>
void missing_function(void);
static int get(lua_State *L) { missing_function(); return 0; }
int luaopen_http(lua_State *L)
{
	lua_newtable(L);
	lua_pushcfunction(L, get);
	lua_setfield(L, -2, "get");
	return 1;
}
'''


def test_a_module_that_cannot_be_linked_fails_the_step_not_the_process(t):
    # A copy of the binary next to a broken obj/modules/http.so: opening it must fail as an error
    # of the step that uses it, with the loader's reason, and the transcript must still be closed.
    name = os.path.basename(t.binary)
    bindir = t.path("bin")
    moddir = os.path.join(bindir, "obj-asan" if name.endswith("-asan") else "obj", "modules")
    os.makedirs(moddir)
    shutil.copy(t.binary, os.path.join(bindir, name))
    src = t.write("fake_http.c", FAKE_HTTP)
    cc = subprocess.run(["cc", "-shared", "-fPIC", "-I/usr/include/lua5.4", "-o",
                         os.path.join(moddir, "http.so"), src], capture_output=True, text=True, timeout=60)
    if cc.returncode != 0:
        fail("cannot build the fake module: " + cc.stderr)
    path = t.write("broken.lua", '''local http = require "http"
return runbook { name = "broken", summary = "broken module", severity = "SEV4",
  step "s" { title = "uses http", run = function(ctx) http.get("http://127.0.0.1:9/") end },
}
''')
    cast = t.path("broken.cast")
    p = subprocess.run([os.path.join(bindir, name), "exec", path, "--auto", "--transcript", cast],
                       cwd=t.dir, env=t.environ(None), capture_output=True, text=True, timeout=60)
    check_sanitizer(p.stderr, "stderr of the copied binary")
    expect_eq(p.returncode, 1, "exit code (a failed step)\nstdout:\n%s\nstderr:\n%s" % (p.stdout, p.stderr))
    expect_in("module 'http' cannot be loaded", p.stdout + p.stderr)
    expect_in("missing_function", p.stdout + p.stderr)
    _, _, records = t.read_transcript(cast)
    expect_eq(records[-1]["type"], "session_end", "the transcript's last record")
