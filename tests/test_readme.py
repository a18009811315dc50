"""The README's promises about its own text: the example runbook it shows is valid and runs, and the
"Layout" section names files that exist, so that a newcomer who follows it lands where it says."""
import os
import re

from run import expect_in, expect_rc, fail


def readme(t):
    with open(os.path.join(t.repo, "README.md")) as f:
        return f.read()


def test_the_readme_example_runs(t):
    text = readme(t)
    m = re.search(r"```lua\n(.*?)```", text, re.S)
    if not m:
        fail("README.md has no ```lua example")
    path = t.write("example.lua", m.group(1))
    expect_rc(t.run(["check", path]), 0)
    # limit=1: any filesystem is fuller than 1%, so the finding and the action are reached;
    # --dry-run shows the action and runs nothing.
    rc, out, err = t.run(["exec", path, "path=" + t.dir, "limit=1", "--auto", "--dry-run",
                          "--transcript", t.path("ex.cast")])
    expect_in("full", out)
    expect_in("journalctl --vacuum-size=500M", out)
    if rc not in (0, 4):
        fail("the README example exited %d:\n%s\n%s" % (rc, out, err))


def test_the_readme_layout_names_real_files(t):
    text = readme(t)
    m = re.search(r"## Layout\n\n```\n(.*?)```", text, re.S)
    if not m:
        fail("README.md has no Layout block")
    folder, missing = None, []
    for line in m.group(1).splitlines():
        top = re.match(r"([a-z/]+/)\s", line)
        if top and not line.startswith(" "):
            folder = top.group(1).split()[0]
            continue
        for name in re.findall(r"\b([a-z_]+\.(?:c|lua))\b", line):
            if not any(os.path.exists(os.path.join(t.repo, d, name))
                       for d in (folder or "", "interp", "interp/incident", "stdlib", "lab", "tools")):
                missing.append(name)
        sub = re.match(r"\s+([a-z]+/)\s", line)
        if sub and not os.path.isdir(os.path.join(t.repo, folder or "", sub.group(1))):
            missing.append(sub.group(1))
    if missing:
        fail("README's Layout names files that do not exist: %s" % ", ".join(missing))
