"""An installed tree: the binary finds the runbooks shipped next to it (PREFIX/share/runbook),
wherever PREFIX is, so that a DESTDIR-staged or relocated install works."""
import os
import shutil
import subprocess

from run import check_sanitizer, expect_eq, expect_in, expect_rc


def run_binary(t, binary, args, cwd):
    p = subprocess.run([binary] + args, cwd=cwd, env=t.environ(), stdin=subprocess.DEVNULL,
                       capture_output=True, timeout=30, text=True)
    check_sanitizer(p.stderr, "stderr of the installed binary")
    return p.returncode, p.stdout, p.stderr


def test_installed_binary_finds_its_share_dir(t):
    prefix = t.path("opt", "rb")
    os.makedirs(os.path.join(prefix, "bin"))
    os.makedirs(os.path.join(prefix, "share", "runbook", "runbooks"))
    binary = os.path.join(prefix, "bin", "runbook")
    shutil.copy2(t.binary, binary)
    for f in ("disk-full.lua", "disk-full.drill.lua"):   # as make install puts them: the drill beside it
        shutil.copy2(os.path.join(t.repo, "runbooks", f), os.path.join(prefix, "share", "runbook", "runbooks"))
    os.makedirs(t.path("elsewhere"))
    rc, out, err = run_binary(t, binary, ["list"], cwd=t.path("elsewhere"))
    expect_rc((rc, out, err), 0)
    expect_in("disk-full", out)
    rc, out, err = run_binary(t, binary, ["show", "disk-full"], cwd=t.path("elsewhere"))
    expect_rc((rc, out, err), 0)
    expect_in("# disk-full", out)
    rc, out, err = run_binary(t, binary, ["drill", "disk-full", "--mode", "none"], cwd=t.path("elsewhere"))
    expect_rc((rc, out, err), 2)
    expect_in("no mode 'none' (modes: full)", err)


def test_list_without_runbooks_names_the_search_path(t):
    os.makedirs(t.path("empty"))
    rc, out, err = t.run(["list"], cwd=t.path("empty"), env={"RUNBOOK_PATH": t.path("nowhere")})
    expect_eq(rc, 0)
    expect_in("no runbooks found in: runbooks, %s, %s" % (t.path("nowhere"), t.path("config", "runbook", "runbooks")), out)
