"""runbooks/disk-full.lua against a real, small, full filesystem: a 4 MiB tmpfs.

As root the tmpfs is mounted directly (and unmounted at the end); otherwise inside a user and
mount namespace (`unshare --user --map-root-user --mount`, util-linux), where the filling, the
run and the checks all happen because the mount exists only there. If neither works the test
fails and says why: it is a required test, not an optional one."""
import json
import os
import re
import subprocess
import sys

from run import expect_eq, expect_in, expect_not_in, fail

RUNBOOK = "runbooks/disk-full.lua"

# Fills DIR: logs/old.log (3 MiB, last written 30 days ago), small recent logs and temp files,
# then a filler until the filesystem is at least 95% used. Prints the usage as JSON.
FILL = r'''
import json, os, sys, time
d = sys.argv[1]
os.makedirs(os.path.join(d, "logs"))
os.makedirs(os.path.join(d, "tmp"))
os.makedirs(os.path.join(d, "data"))
def write(rel, size):
    with open(os.path.join(d, rel), "wb") as f:
        f.write(b"x" * size)
write("logs/old.log", 3 * 1024 * 1024)
month = time.time() - 30 * 86400
os.utime(os.path.join(d, "logs/old.log"), (month, month))
write("logs/app.log", 8192)
write("logs/app.log.1", 4096)
write("tmp/session.tmp", 4096)
def used_pct():
    s = os.statvfs(d)
    used = (s.f_blocks - s.f_bfree) * s.f_frsize
    return 100.0 * used / (used + s.f_bavail * s.f_frsize)
with open(os.path.join(d, "data/filler.bin"), "wb") as f:
    try:
        while used_pct() < 96.5:
            f.write(b"y" * 16384)
            f.flush()
    except OSError:
        pass
print(json.dumps({"used_pct": used_pct()}))
'''

CHECK = r'''
import json, os, sys
d = sys.argv[1]
s = os.statvfs(d)
used = (s.f_blocks - s.f_bfree) * s.f_frsize
print(json.dumps({
    "used_pct": 100.0 * used / (used + s.f_bavail * s.f_frsize),
    "files": sorted(os.path.relpath(os.path.join(r, f), d) for r, _, fs in os.walk(d) for f in fs),
}))
'''


class FullDisk:
    """A 4 MiB tmpfs at t.path("fs"), filled; .command(args) gives the argv that runs the
    binary where the tmpfs is visible; .fill_result and .check() report from inside."""

    def __init__(self, t):
        self.t = t
        self.dir = t.path("fs")
        os.makedirs(self.dir)
        t.write("fill.py", FILL)
        t.write("check.py", CHECK)
        self.mode = None
        errors = []
        if os.geteuid() == 0:
            r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", self.dir],
                               capture_output=True, text=True, timeout=20)
            if r.returncode == 0:
                self.mode = "direct"
                t.on_cleanup(lambda: subprocess.run(["umount", self.dir], capture_output=True, timeout=20))
                self.fill_result = self._py("fill.py")
            else:
                errors.append("mount as root: " + r.stderr.strip())
        if self.mode is None:
            r = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c",
                                'mount -t tmpfs -o size=4m tmpfs "$1"', "sh", self.dir],
                               capture_output=True, text=True, timeout=20)
            if r.returncode == 0:
                self.mode = "userns"
            else:
                errors.append("unshare --user --map-root-user --mount: " + (r.stderr.strip() or "exit %d" % r.returncode))
        if self.mode is None:
            fail("cannot mount a 4 MiB tmpfs for the disk-full test (%s). Run the suite as root, or allow "
                 "unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1, "
                 "user.max_user_namespaces > 0)." % "; ".join(errors))

    def _py(self, script):
        r = subprocess.run([sys.executable, self.t.path(script), self.dir], capture_output=True, text=True, timeout=30)
        if r.returncode != 0:
            fail("%s failed: %s" % (script, r.stderr))
        return json.loads(r.stdout)

    def command(self, args):
        """argv for the pty (binary=False) running `runbook ARGS` on the full tmpfs."""
        if self.mode == "direct":
            return [self.t.binary] + args
        script = ('mount -t tmpfs -o size=4m tmpfs "$1" || exit 99\n'
                  '"$2" "$3" "$1" > "$4" || exit 98\n'
                  'shift 6; "$RB_BINARY" "$@"; rc=$?\n'
                  '"$PY" "$CHECK" "$FSDIR" > "$CHECK_OUT"\n'
                  'exit $rc\n')
        self.check_out = self.t.path("check.json")
        self.fill_out = self.t.path("fill.json")
        return (["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script, "sh",
                 self.dir, sys.executable, self.t.path("fill.py"), self.fill_out, "x", "x"] + args)

    def env(self):
        if self.mode == "direct":
            return None
        return {"RB_BINARY": self.t.binary, "PY": sys.executable, "CHECK": self.t.path("check.py"),
                "FSDIR": self.dir, "CHECK_OUT": self.t.path("check.json")}

    def after(self):
        """(fill result, check result) once the run is over."""
        if self.mode == "direct":
            return self.fill_result, self._py("check.py")
        for p in (self.fill_out, self.check_out):
            if not os.path.exists(p):
                fail("the namespace script did not write %s (mount or fill failed inside it)" % p)
        with open(self.fill_out) as f:
            fill_res = json.load(f)
        with open(self.check_out) as f:
            return fill_res, json.load(f)


def exec_args(t, fs, extra):
    return ["exec", os.path.join(t.repo, RUNBOOK), "path=" + fs.dir, "logs=" + fs.dir + "/logs",
            "tmp=" + fs.dir + "/tmp", "threshold=80", "--transcript", t.path("disk.cast")] + extra


MENU = r"Enter: run · s: skip · j: jump · r: repl · q: quit > "


def test_disk_full_interactive(t):
    fs = FullDisk(t)
    if fs.mode == "direct":
        expect_eq(fs.fill_result["used_pct"] >= 95, True, "filesystem filled to >= 95%% (%r)" % fs.fill_result)
    p = t.pty(fs.command(exec_args(t, fs, [])), env=fs.env(), binary=False)
    p.expect(r"disk-full · SEV2 · session [0-9a-f]{6}")
    p.expect(r"\[1/8\] What does the log of the service say\?")
    p.expect(MENU)
    p.sendline("")
    p.expect(r"no log source given for the service's log")
    p.expect(r"\[2/8\] Which filesystem is full\?")
    p.expect(MENU)
    p.sendline("")
    m = p.expect(r"✖ (\S+) \(tmpfs\) is (\d+)% full: ([^\n]+)\n")
    expect_eq(m.group(1), fs.dir, "mount point in the finding")
    if int(m.group(2)) < 95:
        fail("usage finding says %s%%, expected >= 95%%" % m.group(2))
    p.expect(r"\[3/8\] What is taking the space\?")
    p.expect(MENU)
    p.sendline("")
    p.expect(r"size +directory\n")
    p.expect(re.escape(fs.dir) + r"/logs\n")
    p.expect(r"\[4/8\] Deleted files still held open")
    p.expect(MENU)
    p.sendline("")
    p.expect(r"✔ no deleted files held open on " + re.escape(fs.dir) + r"\n")
    p.expect(r"\[5/8\] Delete old rotated logs")
    p.expect(MENU)
    p.sendline("")
    p.expect(r"✖ 1 logs older than 7d00h, 3\.0 MiB in all\n")
    p.expect(r"3\.0 MiB +30d00h +" + re.escape(fs.dir) + r"/logs/old\.log\n")
    p.expect(r"ACTION  delete 1 logs older than 7d00h \(frees 3\.0 MiB\)\n")
    p.expect(r"\$ rm -f -- " + re.escape(fs.dir) + r"/logs/old\.log\n")
    p.expect(r"impact  1 files, 3\.0 MiB\n")
    p.expect(r"Type yes to run it, or n to skip: ")
    p.sendline("yes")
    p.expect(r"✔ deleted 1 files, 3\.0 MiB freed\n")
    p.expect(r"\[6/8\] Truncate oversized active logs")
    p.expect(MENU)
    p.sendline("")
    p.expect(r"✔ no active log larger than 1\.0 GiB\n")
    p.expect(r"\[7/8\] Clean old temporary files")
    p.expect(MENU)
    p.sendline("")
    p.expect(r"✔ no temporary files older than 2d00h\n")
    p.expect(r"\[8/8\] Is there room again\?")
    p.expect(MENU)
    p.sendline("")
    m = p.expect(r"✔ resolved: (\S+) \(tmpfs\) is (\d+(?:\.\d)?)% full")
    if float(m.group(2)) >= 80:
        fail("resolved although %s%% >= 80%%" % m.group(2))
    code = p.wait(20)
    fill_res, after = fs.after()
    expect_eq(fill_res["used_pct"] >= 95, True, "filesystem filled to >= 95%% (%r)" % fill_res)
    expect_eq(code, 0, "exit code (resolved)")
    expect_not_in("logs/old.log", after["files"], "files left")
    for keep in ("logs/app.log", "logs/app.log.1", "tmp/session.tmp", "data/filler.bin"):
        expect_in(keep, after["files"], "files left (only old.log may go)")
    if after["used_pct"] >= 80:
        fail("usage after the run is %.1f%%, not below the threshold" % after["used_pct"])
    rc, out, err = t.run(["transcript", "verify", t.path("disk.cast")])
    if rc != 0 or not out.startswith("complete: ") or "exit 0 (resolved)" not in out:
        fail("transcript verify: rc=%s %s%s" % (rc, out, err))
    _, _, recs = t.read_transcript(t.path("disk.cast"))
    conf = [(r["step"], r["answer"], r["how"]) for r in recs if r["type"] == "confirm"]
    expect_eq(conf, [("old-logs", "yes", "typed yes")], "confirm records")
    results = [(r["step"], r["outcome"]) for r in recs if r["type"] == "action_result"]
    expect_eq(results, [("old-logs", "exit 0")], "action results")


test_disk_full_interactive.timeout = 90


def test_disk_full_dry_run(t):
    fs = FullDisk(t)
    p = t.pty(fs.command(exec_args(t, fs, ["--dry-run", "--auto"])), env=fs.env(), binary=False)
    p.expect(r"dry run: actions are only shown")
    p.expect(r"ACTION  delete 1 logs older than 7d00h \(frees 3\.0 MiB\)\n")
    p.expect(r"dry run: not executed\n")
    p.expect(r"· dry run: 1 files left in place\n")
    p.expect(r"✖ escalated: (\S+) \(tmpfs\) is \d+% full")
    code = p.wait(20)
    fill_res, after = fs.after()
    expect_eq(fill_res["used_pct"] >= 95, True, "filesystem filled to >= 95%% (%r)" % fill_res)
    expect_eq(code, 3, "exit code of the dry run (still full: escalated)")
    expect_in("logs/old.log", after["files"], "files after a dry run")
    if after["used_pct"] < 95:
        fail("usage dropped to %.1f%% during a dry run" % after["used_pct"])
    expect_not_in("Type yes", p.text, "dry run asks nothing")
    _, _, recs = t.read_transcript(t.path("disk.cast"))
    expect_eq([r for r in recs if r["type"] == "action_start"], [], "action_start records in a dry run")
    conf = [(r["answer"], r["how"]) for r in recs if r["type"] == "confirm"]
    expect_eq(conf, [("dry-run", "--dry-run")], "confirm records")


test_disk_full_dry_run.timeout = 90


def test_unwritable_transcript_blocks_actions(t):
    # The transcript lives on the (nearly) full tmpfs; a step fills the rest, including the
    # transcript's own last page, so the next transcript write fails with ENOSPC. The action
    # that follows must not run, and the run ends with 70 (the transcript could not be written).
    fs = FullDisk(t)
    marker = t.path("acted")
    tr = fs.dir + "/t.cast"
    t.runbook("nospace", '''
step "fill" { title = "Fill", run = function(ctx)
  ctx:note("filling")
  sh.read { "sh", "-c", [[cat /dev/zero > "$1/data/more" 2>/dev/null; cat /dev/zero >> "$2" 2>/dev/null; true]], "sh", "%s", "%s" }
  local r, err, kind = sh.action { "touch", "%s", summary = "create the marker" }
  ctx:note("action: %%s %%s", tostring(err), tostring(kind))
end },''' % (fs.dir, tr, marker))
    p = t.pty(fs.command(["exec", t.path("runbooks", "nospace.lua"), "--auto", "--yes", "--transcript", tr]),
              env=fs.env(), binary=False)
    p.expect(r"· filling\n")
    p.expect(r"not run: the transcript cannot be written")
    code = p.wait(20)
    if os.path.exists(marker):
        fail("an action ran although the transcript could not be written")
    expect_in("action: sh.action touch %s: not run: the transcript cannot be written refused" % marker, p.text)
    expect_in("cannot finish transcript " + tr, p.text)
    expect_eq(code, 70, "exit code when the transcript cannot be written")


test_unwritable_transcript_blocks_actions.timeout = 60
