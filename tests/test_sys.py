"""The sys module against facts the test sets up or reads independently (os.statvfs, /proc, a
tree of known files, a process holding a deleted file). Each probe runs inside a runbook step
and prints `@@ key=value` lines that the test parses."""
import json
import os
import pwd
import re
import subprocess
import sys
import time

from run import check_sanitizer, expect_eq, expect_in, fail, namespaces, processes
from steps import expect_fast, expect_within, interrupt, lua_str, parse, run_auto, step, write_runbook

MiB = 1 << 20


def probe(t, lua, args=(), timeout=60, want_rc=0):
    """Runs `lua` as the body of one step (with `sys` and an `emit(key, value)` helper in scope);
    returns the emitted values (strings) and the output."""
    path = write_runbook(t, "probe", 'local sys = require "sys"', step(lua), "sys probe")
    return run_auto(t, path, t.path("probe.cast"), args, want_rc, timeout)


def write_bytes(path, n):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(os.urandom(n))   # random: no filesystem can store it sparsely or compressed


def disk_usage(path):
    return os.lstat(path).st_blocks * 512


def du(path):
    """Disk usage of everything below path plus the directory itself, as sys.largest counts it."""
    total = disk_usage(path)
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            total += disk_usage(os.path.join(root, name))
    return total


def mount_point(path):
    path = os.path.realpath(path)
    while not os.path.ismount(path):
        path = os.path.dirname(path)
    return path


# ------------------------------------------------------------------------------------ fs

def test_fs_agrees_with_statvfs(t):
    v, out, _ = probe(t, '''
local fs = must(sys.fs(%s))
for _, k in ipairs { "mount", "fstype", "size", "inodes", "used_pct", "inodes_pct", "readonly" } do
  emit(k, fs[k])
end''' % lua_str(t.dir))
    st = os.statvfs(t.dir)
    expect_eq(int(v["size"]), st.f_blocks * st.f_frsize, "size")
    expect_eq(int(v["inodes"]), st.f_files, "inodes")
    expect_eq(v["mount"], mount_point(t.dir), "mount")
    expect_eq(v["readonly"], "false", "readonly")
    used = (st.f_blocks - st.f_bfree) * 100.0 / ((st.f_blocks - st.f_bfree) + st.f_bavail)
    if abs(float(v["used_pct"]) - used) > 1.0:
        fail("used_pct %s, statvfs says %.1f" % (v["used_pct"], used))


def test_fs_missing_path_is_an_error_value(t):
    v, _, _ = probe(t, '''
local fs, err, kind = sys.fs(%s)
emit("fs", fs) emit("err", err) emit("kind", kind)''' % lua_str(t.path("nope", "deeper")))
    expect_eq(v["fs"], "nil")
    expect_eq(v["err"], "sys.fs %s: no such file or directory" % t.path("nope", "deeper"))
    expect_eq(v["kind"], "notfound")


def test_filesystems_lists_real_ones_only(t):
    v, _, _ = probe(t, '''
local mounts, types = {}, {}
for _, f in ipairs(must(sys.filesystems())) do mounts[#mounts + 1] = f.mount; types[f.fstype] = true end
emit("mounts", table.concat(mounts, "|"))
emit("has_proc", types.proc == true)
local all = {}
for _, f in ipairs(must(sys.filesystems { all = true })) do all[f.fstype] = true end
emit("all_has_proc", all.proc == true)''')
    expect_in(mount_point(t.dir), v["mounts"].split("|"), "the test directory's filesystem")
    expect_eq(v["has_proc"], "false", "proc is left out by default")
    expect_eq(v["all_has_proc"], "true", "all = true lists proc")


# ------------------------------------------------------------------------------- largest

def make_tree(t):
    root = t.path("tree")
    write_bytes(os.path.join(root, "a", "one"), 1 * MiB)
    write_bytes(os.path.join(root, "b", "c", "big"), 3 * MiB)
    write_bytes(os.path.join(root, "b", "small"), 100 * 1024)
    write_bytes(os.path.join(root, "d", "tiny"), 10)
    write_bytes(os.path.join(root, "top"), 2 * MiB)
    return root


def test_largest_sizes_are_du_exact(t):
    root = make_tree(t)
    v, _, _ = probe(t, '''
local r = must(sys.largest(%s, { depth = 2, limit = 10, files = true }))
for i, e in ipairs(r.entries) do emit("entry" .. i, e.path .. " " .. e.bytes .. " " .. e.files) end
for i, f in ipairs(r.files) do emit("file" .. i, f.path .. " " .. f.bytes) end
emit("total", r.total_bytes) emit("partial", r.partial) emit("n", #r.entries)''' % lua_str(root))
    want = [os.path.join(root, d) for d in ("b", "b/c", "a", "d")]   # "top" is a file, not listed
    got = [v["entry%d" % i].split(" ") for i in range(1, int(v["n"]) + 1)]
    expect_eq([g[0] for g in got], want, "directories, largest first")
    for path, nbytes, files in got:
        expect_eq(int(nbytes), du(path), "bytes of " + path)
    expect_eq(dict((g[0], int(g[2])) for g in got),
              {want[0]: 2, want[1]: 1, want[2]: 1, want[3]: 1}, "file counts")
    expect_eq(int(v["total"]), du(root) - disk_usage(root), "total_bytes")
    expect_eq(v["partial"], "false")
    expect_eq(v["file1"], "%s %d" % (os.path.join(root, "b", "c", "big"), disk_usage(os.path.join(root, "b", "c", "big"))))
    expect_eq(v["file2"].split(" ")[0], os.path.join(root, "top"), "second largest file")


def test_largest_stops_at_its_deadline_and_names_what_it_missed(t):
    root = t.path("wide")
    for d in range(40):
        sub = os.path.join(root, "d%02d" % d)
        os.makedirs(sub)
        for f in range(300):
            open(os.path.join(sub, "f%d" % f), "w").close()
    # 5 ms: the walk of 12,000 files takes 30-40 ms here, and its root is opened by a worker
    # thread, which a loaded machine can start a few ms late (1 ms made the test flaky).
    v, _, _ = probe(t, '''
local r = must(sys.largest(%s, { timeout = "5ms" }))
emit("partial", r.partial) emit("unvisited", #r.unvisited)
emit("first_unvisited", r.unvisited[1])''' % lua_str(root))
    expect_eq(v["partial"], "true", "a 12,000-file walk cannot finish in 5 ms")
    if int(v["unvisited"]) < 1:
        fail("no unvisited directory named: %r" % v)
    if not re.match(re.escape(root) + r"/d\d\d$", v["first_unvisited"]):
        fail("unvisited names %r" % v["first_unvisited"])


def test_largest_unknown_option_suggests(t):
    _, out, err = probe(t, 'sys.largest(".", { depht = 2 })', want_rc=1)
    expect_in("sys.largest: unknown option 'depht' (did you mean 'depth'?)", out + err)


# --------------------------------------------------------------------------------- files

def test_files_filters_by_pattern_age_size_and_limit(t):
    root = t.path("logs")
    now = time.time()
    specs = {   # name: (bytes, age in days)
        "app.log": (5000, 0), "app.log.1": (4000, 10), "app.log.2.gz": (3000, 20),
        "sub/worker.log.1": (2000, 30), "notes.txt": (1000, 40), "empty.log.3": (0, 50),
    }
    for name, (n, age) in specs.items():
        p = os.path.join(root, name)
        write_bytes(p, n)
        os.utime(p, (now - age * 86400, now - age * 86400))
    os.symlink(os.path.join(root, "app.log"), os.path.join(root, "link.log.9"))
    v, _, _ = probe(t, '''
local r = must(sys.files(%s, { pattern = "*.log*", older_than = "7d", min_size = 1 }))
local paths = {}
for _, f in ipairs(r.files) do paths[#paths + 1] = f.path .. ":" .. f.bytes .. ":" .. f.age end
emit("paths", table.concat(paths, "|")) emit("count", r.count) emit("total", r.total_bytes)
local flat = must(sys.files(%s, { pattern = "*.log*", older_than = "7d", recursive = false }))
emit("flat", flat.count)
local lim = must(sys.files(%s, { pattern = "*.log*", limit = 2 }))
emit("lim_n", #lim.files) emit("lim_count", lim.count) emit("lim_trunc", lim.truncated)
local fol = must(sys.files(%s, { pattern = "link*", follow = true }))
emit("follow", fol.count .. ":" .. (fol.files[1] and fol.files[1].bytes or "-"))
emit("nofollow", must(sys.files(%s, { pattern = "link*" })).count)''' % tuple(lua_str(root) for _ in range(5)))
    rows = [p.split(":") for p in v["paths"].split("|")]
    expect_eq([r[0] for r in rows], [os.path.join(root, n) for n in ("app.log.1", "app.log.2.gz", "sub/worker.log.1")],
              "matching files, sorted by path")
    expect_eq([int(r[1]) for r in rows], [4000, 3000, 2000], "bytes")
    for r, days in zip(rows, (10, 20, 30)):
        if abs(int(r[2]) - days * 86400) > 120:
            fail("age of %s is %s s, expected about %d days" % (r[0], r[2], days))
    expect_eq(v["count"], "3")
    expect_eq(v["total"], "9000")
    expect_eq(v["flat"], "3", "recursive = false: app.log.1, app.log.2.gz, empty.log.3 (no min_size)")
    expect_eq((v["lim_n"], v["lim_count"], v["lim_trunc"]), ("2", "5", "true"), "limit keeps count and says truncated")
    expect_eq(v["follow"], "1:5000", "follow = true lists a symlink by its target's size")
    expect_eq(v["nofollow"], "0", "symlinks are not files unless follow = true")


def test_files_never_descends_through_a_symlinked_directory(t):
    outside = t.path("outside")
    write_bytes(os.path.join(outside, "secret.log"), 10)
    os.makedirs(t.path("scan"))
    os.symlink(outside, t.path("scan", "escape"))
    v, _, _ = probe(t, 'emit("count", must(sys.files(%s, { pattern = "*.log" })).count)' % lua_str(t.path("scan")))
    expect_eq(v["count"], "0")


# -------------------------------------------------------------------------- deleted_open

HOLDER = r'''
import os, sys
path = sys.argv[1]
f = open(path, "wb")
f.write(b"x" * 300000)
f.flush()
os.unlink(path)
print("ready", flush=True)
sys.stdin.read()
'''


def start_holder(t, path, marker):
    p = subprocess.Popen([sys.executable, "-c", HOLDER, path, marker], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, start_new_session=True)
    t._groups.append(p.pid)
    t.on_cleanup(lambda: (p.stdin.close(), p.wait(10)))
    line = p.stdout.readline()
    if line.strip() != b"ready":
        fail("holder did not start: %r" % line)
    return p


def test_deleted_open_finds_a_deleted_file_held_open(t):
    held = t.path("held.log")
    p = start_holder(t, held, "holder")
    v, _, _ = probe(t, '''
local r = must(sys.deleted_open { path = %s })
for _, h in ipairs(r) do
  if h.pid == %d then emit("hit", h.path .. " " .. h.bytes .. " " .. h.command) end
end
emit("count", r.count)''' % (lua_str(t.dir), p.pid))
    expect_eq(v.get("hit"), "%s 300000 %s" % (held, os.path.basename(sys.executable)[:15]))


# ---------------------------------------------------------------------------- processes

def test_processes_match_finds_the_process(t):
    marker = "rbtest-marker-%d" % os.getpid()
    p = start_holder(t, t.path("h2.log"), marker)
    v, _, _ = probe(t, '''
local r = must(sys.processes { match = %s, sample = "50ms" })
emit("count", r.count)
local p = r[1]
emit("pid", p.pid) emit("user", p.user) emit("cmdline", p.cmdline) emit("rss", p.rss)
emit("cpu", p.cpu_pct) emit("state", p.state)''' % lua_str(marker))
    expect_eq(v["count"], "1")
    expect_eq(int(v["pid"]), p.pid)
    expect_eq(v["user"], pwd.getpwuid(os.getuid()).pw_name)
    expect_in(marker, v["cmdline"])
    if int(v["rss"]) < 1 * MiB:
        fail("rss of a python process is %s bytes?" % v["rss"])
    expect_eq(float(v["cpu"]), 0.0, "an idle process uses no CPU")


def test_processes_sample_is_interrupted_by_ctrl_c(t):
    path = t.write("sample.lua", '''local sys = require "sys"
return runbook {
  name = "sample", summary = "s", severity = "SEV4",
  step "p" { title = "sample", run = function(ctx)
    print("sampling now")
    must(sys.processes { sample = "60s", timeout = "90s" })
  end },
}
''')
    p = t.pty(["exec", path, "--auto"])
    p.expect("sampling now")
    expect_fast(interrupt(p, r"interrupted by Ctrl-C") * 1000, 5000, "Ctrl-C to stop the sample")
    p.expect(r"Enter: retry")
    p.sendline("q")
    expect_eq(p.wait(), 5, "quit after the failure")


# ------------------------------------------------------------------------- memory, load

def test_memory_and_load_agree_with_proc(t):
    v, _, _ = probe(t, '''
local m = must(sys.memory())
emit("total", m.total) emit("swap_total", m.swap_total) emit("used_pct", m.used_pct)
local l = must(sys.load())
emit("cpus", l.cpus) emit("tasks", l.total_tasks) emit("uptime", l.uptime)''')
    info = {}
    with open("/proc/meminfo") as f:
        for line in f:
            k, rest = line.split(":", 1)
            info[k] = int(rest.split()[0]) * 1024
    expect_eq(int(v["total"]), info["MemTotal"], "MemTotal")
    expect_eq(int(v["swap_total"]), info["SwapTotal"], "SwapTotal")
    if not 0 < float(v["used_pct"]) < 100:
        fail("used_pct %s" % v["used_pct"])
    expect_eq(int(v["cpus"]), os.sysconf("SC_NPROCESSORS_ONLN"))
    if int(v["tasks"]) < 2 or float(v["uptime"]) <= 0:
        fail("load: %r" % v)


# ---------------------------------------------------------------------------- tail, grep

def test_tail_returns_the_last_lines_across_chunks(t):
    big = t.write("big.log", "".join("line %06d %s\n" % (i, "x" * 40) for i in range(1, 20001)))
    t.write("short.log", "one\ntwo\nthree")      # no final newline
    t.write("empty.log", "")
    v, _, _ = probe(t, '''
local r = must(sys.tail(%s, { lines = 3000 }))
emit("n", #r.lines) emit("first", r.lines[1]:sub(1, 11)) emit("last", r.lines[#r.lines]:sub(1, 11))
emit("size", r.size)
local s = must(sys.tail(%s, { lines = 2 }))
emit("short", table.concat(s.lines, ","))
emit("all", table.concat(must(sys.tail(%s, { lines = 99 })).lines, ","))
emit("empty", #must(sys.tail(%s)).lines)
local _, err, kind = sys.tail(%s)
emit("dir", err .. " / " .. kind)''' % (lua_str(big), lua_str(t.path("short.log")), lua_str(t.path("short.log")),
                                      lua_str(t.path("empty.log")), lua_str(t.dir)))
    expect_eq(v["n"], "3000")
    expect_eq(v["first"], "line 017001")
    expect_eq(v["last"], "line 020000")
    expect_eq(int(v["size"]), os.path.getsize(big))
    expect_eq(v["short"], "two,three")
    expect_eq(v["all"], "one,two,three")
    expect_eq(v["empty"], "0")
    expect_eq(v["dir"], "sys.tail %s: not a regular file / error" % t.dir)


def test_grep_keeps_the_last_matches_with_line_numbers(t):
    log = t.write("app.log", "".join(
        ("%d ERROR disk full\n" if i % 10 == 0 else "%d info ok\n") % i for i in range(1, 1001)))
    v, _, _ = probe(t, '''
local r = must(sys.grep(%s, "error", { icase = true, limit = 3 }))
local out = {}
for _, m in ipairs(r.matches) do out[#out + 1] = m.line .. ":" .. m.text end
emit("matches", table.concat(out, "|")) emit("count", r.count) emit("lines", r.lines)
emit("none", must(sys.grep(%s, "error")).count)
local ok, err = pcall(sys.grep, %s, "(")
emit("bad", err)''' % (lua_str(log), lua_str(log), lua_str(log)))
    expect_eq(v["matches"], "980:980 ERROR disk full|990:990 ERROR disk full|1000:1000 ERROR disk full")
    expect_eq(v["count"], "100")
    expect_eq(v["lines"], "1000")
    expect_eq(v["none"], "0", "case-sensitive by default")
    expect_in("sys.grep: bad regular expression '('", v["bad"])


# ------------------------------------------------------------------------------- audit

def test_sys_probes_are_recorded(t):
    _, _, _ = probe(t, 'must(sys.fs(%s)) must(sys.memory())' % lua_str(t.dir))
    _, _, records = t.read_transcript(t.path("probe.cast"))
    probes = [r for r in records if r["type"] == "probe"]
    expect_eq([r["primitive"] for r in probes], ["sys.fs", "sys.memory"])
    expect_eq(probes[0]["target"], t.dir)
    expect_eq(probes[0]["outcome"], "ok")
    expect_in("% used", probes[0]["summary"])


# Mounts a FUSE file system whose server never answers (nobody reads /dev/fuse: every request on
# it waits, as on an NFS mount whose server is gone) on each path before "--" (a directory, or a
# file: a file bound over a file, as a container's subPath is), then runs what follows "--" with
# at most 64 file descriptors.
HUNG_MOUNT = r"""
import ctypes, os, resource, signal, subprocess, sys
libc = ctypes.CDLL(None, use_errno=True)
sep = sys.argv.index("--")
for target in sys.argv[1:sep]:
    fd = os.open("/dev/fuse", os.O_RDWR)
    mode = "40000" if os.path.isdir(target) else "100644"
    subtype = "" if target.endswith("plain") else ",subtype=runbooktest"   # type "fuse", or "fuse.runbooktest"
    opts = "fd=%d,rootmode=%s,user_id=0,group_id=0%s" % (fd, mode, subtype)
    if libc.mount(b"runbooktest", target.encode(), b"fuse", 0, opts.encode()) != 0:
        sys.exit("mounting the FUSE file system: " + os.strerror(ctypes.get_errno()))
    # The server takes the kernel's first request (INIT) and never answers: every call there then
    # waits for the server in the kernel, and only SIGKILL ends the wait (as on a hard NFS mount).
    os.read(fd, 1 << 20)
resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
signal.signal(signal.SIGINT, signal.SIG_IGN)   # Ctrl-C on a terminal is for the command, not for us
sys.exit(subprocess.run(sys.argv[sep + 1:], preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)).returncode)
"""


def test_a_hung_mount_hangs_no_probe(t):
    """Mount points whose server never answers, under a walked tree (a directory and a file) and as
    the root of a walk: sys.largest and sys.files know them from /proc/self/mountinfo and never
    stat() them; the probes that must touch a path there give up at their deadline, and polling
    one again and again does not pile up threads and file descriptors."""
    if not os.access("/dev/fuse", os.R_OK | os.W_OK):
        fail("this test needs /dev/fuse (run the suite as root)")
    root = t.path("tree")
    write_bytes(os.path.join(root, "a", "data.bin"), MiB)
    hung, hung_file = os.path.join(root, "a", "hung"), os.path.join(root, "a", "bound.conf")
    os.makedirs(hung)
    t.write(hung_file, "")
    linked = t.path("linked")   # a symlink into the hung mount, which follow = true must stat
    os.makedirs(linked)
    os.symlink(os.path.join(hung, "app.log"), os.path.join(linked, "app.log"))
    path = write_runbook(t, "walks", 'local sys, sh = require "sys", require "sh"', step('''
for _, xdev in ipairs { true, false } do
  local r = must(sys.largest(%(root)s, { depth = 2, xdev = xdev, timeout = "5s" }))
  emit("largest_" .. tostring(xdev), r.total_files .. "|" .. table.concat(r.skipped, ",") .. "|" .. tostring(r.partial))
  local f = must(sys.files(%(root)s, { xdev = xdev, timeout = "5s" }))
  emit("files_" .. tostring(xdev), f.count .. "|" .. table.concat(f.skipped, ",") .. "|" .. tostring(f.partial))
end
local asked = parallel {
  function() return sys.filesystems { network = true, timeout = "800ms" } end,
  function() return sh.read { "echo", "beside-filesystems" } end,
  -- started at the same time: waits for the first one's questions (which never get an answer)
  function() return sys.filesystems { network = true, timeout = "800ms" } end,
}
local everywhere = asked[1].value
emit("filesystems_twice", asked[3].value.unanswered)
local here = must(sys.filesystems { timeout = "800ms" })
emit("filesystems", everywhere.unanswered .. "|" .. here.unanswered .. "|" .. tostring(#here > 0))
local inside = %(hung)s .. "/app.log"
local calls = {
  tail = function() return sys.tail(inside, { timeout = "500ms" }) end,
  grep = function() return sys.grep(inside, "error", { timeout = "500ms" }) end,
  deleted_open = function() return sys.deleted_open { path = inside, timeout = "500ms" } end,
  fs = function() return sys.fs(inside, { timeout = "500ms" }) end,
  largest = function() return sys.largest(%(hung)s, { timeout = "500ms" }) end,
}
for _, name in ipairs { "tail", "grep", "deleted_open", "fs", "largest" } do
  local r, err, kind = calls[name]()
  emit(name, tostring(kind) .. "|" .. tostring(err))
end
local r = parallel {
  function() return sys.fs(%(hung)s .. "/p1.log", { timeout = "1s" }) end,
  function() return sys.tail(%(hung)s .. "/p2.log", { timeout = "1s" }) end,
  function() return sh.read { "true" } end,
}
emit("beside", string.format("%%s|%%s|%%s", r[1].kind, r[2].kind, tostring(r[3].value and r[3].value.ok)))
local stuck = parallel {
  function() return sys.files(%(linked)s, { follow = true, timeout = "1500ms" }) end,
  function() return sh.read { "echo", "beside-the-walk" } end,
}
emit("stuck_walk", string.format("%%s|%%s|%%s", stuck[1].kind, stuck[1].err, tostring(stuck[2].value and stuck[2].value.ok)))
local walks = {}
for _ = 1, 30 do
  local r, err, kind = sys.files(%(linked)s, { follow = true, timeout = "10ms" })
  walks[tostring(kind)] = (walks[tostring(kind)] or 0) + 1
end
for k, n in pairs(walks) do emit("walk_polled_" .. k, n) end
-- a walk that follows no link is not held up by the one stuck on a link's target
emit("not_following", must(sys.files(%(linked)s, { timeout = "2s" })).count)
local many = {}
for i = 1, 40 do many[i] = function() return sys.tail(%(hung)s .. "/many.log", { timeout = "300ms" }) end end
local counts = {}
for _, x in ipairs(parallel(many)) do counts[tostring(x.kind)] = (counts[tostring(x.kind)] or 0) + 1 end
for k, n in pairs(counts) do emit("many_" .. k, n) end
local kinds = {}
for _ = 1, 60 do
  local r, err, kind = sys.tail(inside, { timeout = "5ms" })
  kinds[tostring(kind)] = (kinds[tostring(kind)] or 0) + 1
end
for k, n in pairs(kinds) do emit("polled_" .. k, n) end
emit("no_limit", must(sys.grep(%(data)s, "x", { timeout = 0 })).lines)''' % {
        "root": lua_str(root), "hung": lua_str(hung), "data": lua_str(os.path.join(root, "a", "data.bin")),
        "linked": lua_str(linked)}), "walks")
    cast = t.path("walks.cast")
    plain = t.path("plain")    # outside the walked tree; a FUSE mount without a subtype
    os.makedirs(plain)
    argv = namespaces(t) + [sys.executable, "-c", HUNG_MOUNT, hung, hung_file, plain, "--",
                            t.binary, "exec", path, "--auto", "--transcript", cast]
    start = time.monotonic()
    try:
        p = subprocess.run(argv, cwd=t.dir, env=t.environ(None), capture_output=True, text=True, timeout=30,
                           start_new_session=True)
    except subprocess.TimeoutExpired:
        fail("a probe hung on a mount whose server never answers (30 s)")
    elapsed = time.monotonic() - start
    if p.returncode != 0:
        fail("exit code %d\nstdout:\n%s\nstderr:\n%s" % (p.returncode, p.stdout, p.stderr))
    v = parse(p.stdout)
    for key in ("largest_true", "largest_false", "files_true", "files_false"):
        files, skipped, partial = v[key].split("|")
        expect_eq((files, sorted(skipped.split(",")), partial), ("1", sorted([hung, hung_file]), "false"), key)
    # A path inside it: the open (or stat) is left to a worker that the probe stops waiting for.
    for name in ("tail", "grep", "deleted_open", "fs"):
        expect_eq(v[name], "timeout|sys.%s %s/app.log: timed out (is a network filesystem hanging?)" % (name, hung), name)
    expect_eq(v["largest"], "timeout|sys.largest %s: timed out (is a network filesystem hanging?)" % hung, "its root")
    expect_eq(v["beside"], "timeout|timeout|true", "parallel beside a hung mount")
    # The walk runs in a worker: stuck in the kernel on the symlink's target, it costs its deadline
    # (and a little grace, in which a walk that stopped by itself would report what it saw), and the
    # command beside it in parallel() goes on meanwhile.
    expect_eq(v["stuck_walk"], "timeout|sys.files %s: timed out (is a network filesystem hanging?)|true" % linked,
              "a walk stuck on a symlink's target")
    # Forty tasks on one hung path, with 64 file descriptors: one worker is blocked there, the
    # others wait for it rather than each start their own (which would run out of descriptors).
    expect_eq({k: n for k, n in v.items() if k.startswith("many_")}, {"many_timeout": "40"}, "40 tasks, one path")
    # All three unanswered with network = true, the plain FUSE one without: it is not a network
    # filesystem, but it has a server, so it is asked by a worker too; the local ones are listed.
    expect_eq(v["filesystems"], "3|1|true", "sys.filesystems beside hung mounts")
    expect_eq(v["filesystems_twice"], "3", "sys.filesystems beside the same call")   # and its duration, below
    # 60 polls with 64 file descriptors: each waits for the call still blocked there, none starts another.
    expect_eq({k: n for k, n in v.items() if k.startswith("polled_")}, {"polled_timeout": "60"}, "polling")
    # The same for a walk stuck on a symlink's target: the next walks of that root wait for it.
    expect_eq({k: n for k, n in v.items() if k.startswith("walk_polled_")}, {"walk_polled_timeout": "30"},
              "polling a walk stuck in the kernel")
    expect_eq(v["not_following"], "0", "a walk of the same root that follows no link")
    expect_eq(v["no_limit"], str(sum(1 for _ in open(os.path.join(root, "a", "data.bin"), "rb"))), "timeout = 0")
    _, events, records = t.read_transcript(cast)
    for r in records:
        if r.get("type") == "probe" and r.get("deadline_ms") == 500:
            expect_within(r["duration_ms"], 500, r["primitive"] + " on a hung mount")
        if r.get("type") == "probe" and r.get("deadline_ms") == 1500:
            # A walk is waited for a grace longer (WALK_GRACE_MS, stdlib/sys.c): one that stopped
            # at its deadline by itself reports what it saw; this one is stuck in the kernel.
            expect_within(r["duration_ms"], 1500 + 150, "sys.files stuck on a symlink into a hung mount")
        if r.get("type") == "probe" and r.get("deadline_ms") == 800 and r["target"] == "local+network":
            expect_within(r["duration_ms"], 800, "sys.filesystems beside three hung mounts")
        elif r.get("type") == "probe" and r.get("deadline_ms") == 800:   # the mount still blocked: not asked again
            expect_fast(r["duration_ms"], 250, "sys.filesystems of the local ones beside a hung FUSE mount")
    # In parallel() the two probes on the hung mount wait at once, and the command beside them
    # ends first: one after another, they would end a second apart and the command after them.
    ends = {}
    for e in events:
        r = json.loads(e[2]) if e[1] == "a" else {}
        if r.get("type") == "probe" and (r.get("deadline_ms") == 1000 or r.get("target") == "true"):
            ends[r["primitive"]] = e[0] * 1000
    expect_eq(sorted(ends), ["sh.read", "sys.fs", "sys.tail"], "the probes of parallel()")
    expect_fast(abs(ends["sys.fs"] - ends["sys.tail"]), 300, "between the ends of two 1 s probes in parallel")
    if ends["sh.read"] > min(ends["sys.fs"], ends["sys.tail"]):
        fail("the command in parallel ended after the probes on the hung mount: they held it up")
    # So do a walk stuck in the kernel, and sys.filesystems waiting for servers that do not answer.
    for command, primitive, target in (("echo beside-the-walk", "sys.files", linked),
                                       ("echo beside-filesystems", "sys.filesystems", "local+network")):
        ends = {}
        for e in events:
            r = json.loads(e[2]) if e[1] == "a" else {}
            if r.get("type") == "probe" and r.get("target") in (command, target):
                ends[r["primitive"]] = e[0] * 1000
        expect_eq(sorted(ends), ["sh.read", primitive], "the probes of parallel() beside " + primitive)
        if ends["sh.read"] > ends[primitive]:
            fail("the command in parallel ended after %s: it held the command up" % primitive)
    print("    walks past hung mounts, probes in one, 60 polls: %.1f s" % elapsed)


def test_a_walk_without_a_thread_to_bound_it_is_refused(t):
    """With no thread to be had (a pids cgroup at its limit), a walk is refused, saying why: run in
    the caller's thread, one stat() on a hung mount below would hang the run."""
    pids = "/sys/fs/cgroup/pids"
    if not os.access(pids, os.W_OK):
        fail("this test needs a writable cgroup-v1 pids controller at %s (run the suite as root)" % pids)
    group = os.path.join(pids, "runbook-test-%d" % os.getpid())
    os.mkdir(group)
    t.on_cleanup(lambda: os.rmdir(group))
    with open(os.path.join(group, "pids.max"), "w") as f:
        f.write("1")   # the runbook itself: no thread, no child
    tree = t.path("tree")
    write_bytes(os.path.join(tree, "a", "x.bin"), 4096)
    path = write_runbook(t, "nothread", 'local sys = require "sys"', step('''
local r, err, kind = sys.largest(%s)
emit("largest", tostring(kind) .. "|" .. tostring(err))''' % lua_str(tree)), "walks")
    inner = 'echo $$ > %s/cgroup.procs && exec "$@"' % group
    env = t.environ(None)
    if t.sanitized:   # LeakSanitizer needs a thread of its own at exit, which this cgroup does not allow
        env["ASAN_OPTIONS"] = env.get("ASAN_OPTIONS", "") + ":detect_leaks=0"
    p = subprocess.run(["sh", "-c", inner, "sh", t.binary, "exec", path, "--auto", "--transcript", t.path("n.cast")],
                       cwd=t.dir, env=env, capture_output=True, text=True, timeout=30)
    check_sanitizer(p.stderr, "stderr of a run in a pids cgroup")
    if p.returncode != 0:
        fail("exit code %d\nstdout:\n%s\nstderr:\n%s" % (p.returncode, p.stdout, p.stderr))
    expect_eq(parse(p.stdout)["largest"], "error|sys.largest %s: no thread could be started to run it safely "
              "(the process or user limit on threads reached? see ulimit -u and the pids cgroup)" % tree,
              "a walk with no thread to run it")


def wait_in_fuse(marker, limit_s=10):
    """Returns once a thread of the process whose command line holds marker waits in the kernel
    for a FUSE server (its wchan), looking every 10 ms; fails after limit_s."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        for pid, _ in processes():
            try:
                with open("/proc/%d/cmdline" % pid, "rb") as f:
                    if marker.encode() not in f.read():
                        continue
                for tid in os.listdir("/proc/%d/task" % pid):
                    with open("/proc/%d/task/%s/wchan" % (pid, tid)) as f:
                        if f.read().startswith("fuse"):
                            return
            except OSError:
                continue
        time.sleep(0.01)
    fail("no thread of %s came to wait on the FUSE mount within %d s" % (marker, limit_s))


def test_ctrl_c_stops_a_walk_stuck_in_the_kernel(t):
    """A walk's stat() that never returns is its worker's: Ctrl-C brings the run back at once."""
    if not os.access("/dev/fuse", os.R_OK | os.W_OK):
        fail("this test needs /dev/fuse (run the suite as root)")
    hung, linked = t.path("hung"), t.path("linked")
    os.makedirs(hung)
    os.makedirs(linked)
    os.symlink(os.path.join(hung, "app.log"), os.path.join(linked, "app.log"))
    path = t.write("stuck.lua", '''local sys = require "sys"
return runbook {
  name = "stuck", summary = "s", severity = "SEV4",
  step "w" { title = "walk", run = function(ctx)
    print("walking now")
    must(sys.files(%s, { follow = true, timeout = "60s" }))
  end },
}
''' % lua_str(linked))
    p = t.pty(namespaces(t) + [sys.executable, "-c", HUNG_MOUNT, hung, "--", t.binary, "exec", path, "--auto"],
              binary=False)
    p.expect("walking now")
    wait_in_fuse("stuck.lua")
    expect_fast(interrupt(p, r"interrupted") * 1000, 500, "Ctrl-C to stop a walk stuck in the kernel")
    p.expect(r"Enter: retry")
    p.sendline("q")
    expect_eq(p.wait(), 5, "quit after the failure")
