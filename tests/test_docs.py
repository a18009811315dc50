"""The generated documentation: doc/lua-api.md, doc/runbook.1 and doc/runbook-lua.7 are what the binary
generates (`runbook doc --markdown | --man 1 | --man 7`, written by `make docs`), and the man pages, as
`make install` installs them, render with man(1) with their sections and every text of their sources:
the help texts of each command and topic, and every line of the reference's code."""
import difflib
import os
import re
import subprocess

from run import expect_eq, expect_in, expect_rc, fail

GENERATED = [(["--markdown"], "doc/lua-api.md"), (["--man", "1"], "doc/runbook.1"),
             (["--man", "7"], "doc/runbook-lua.7")]

SECTIONS_1 = ["NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "COMMANDS", "EXIT STATUS", "FILES",
              "ENVIRONMENT", "SEE ALSO"]
SECTIONS_7 = ["NAME", "DESCRIPTION", "WRITING A RUNBOOK", "THE STEP CONTEXT CTX", "MODULES", "SEE ALSO"]


def generate(t, args):
    rc, out, err = t.run(["doc"] + args)
    expect_rc((rc, out, err), 0, "runbook doc " + " ".join(args))
    return out


def test_generated_docs_are_current(t):
    for args, rel in GENERATED:
        want = generate(t, args)
        path = os.path.join(t.repo, rel)
        if not os.path.exists(path):
            fail("%s is missing: run `make docs` and commit it" % rel)
        with open(path) as f:
            have = f.read()
        if have != want:
            diff = "".join(list(difflib.unified_diff(have.splitlines(True), want.splitlines(True), rel,
                                                     "runbook doc " + " ".join(args)))[:40])
            fail("%s is stale: run `make docs` and commit it\n%s" % (rel, diff))


def test_doc_options_are_checked(t):
    for args in (["--man"], ["--man", "3"], ["--man", "1", "x"], ["--markdown", "x"], ["--frobnicate"]):
        rc, out, err = t.run(["doc"] + args)
        expect_eq(rc, 2, "runbook doc %s: %s%s" % (" ".join(args), out, err))
        expect_in("doc ", err, "runbook doc " + " ".join(args))


def install_man(t):
    dest = t.path("stage")
    p = subprocess.run(["make", "-s", "-C", t.repo, "install-man", "DESTDIR=" + dest, "PREFIX=/usr"],
                       capture_output=True, text=True, timeout=60)
    expect_eq(p.returncode, 0, "make install-man: " + p.stdout + p.stderr)
    return dest


def render(t, page):
    env = dict(os.environ, MANWIDTH="100", MANPAGER="cat", PAGER="cat", LC_ALL="C.UTF-8")
    p = subprocess.run(["man", "--warnings", "-l", page], capture_output=True, text=True, env=env, timeout=60)
    expect_eq(p.returncode, 0, "man -l %s: %s" % (page, p.stderr))
    expect_eq(p.stderr, "", "troff warnings for " + page)
    return p.stdout


def flat(text):
    """The rendered text as one line of single spaces: filling and line breaks do not matter."""
    for fancy, plain in (("\u2010", "-"), ("\u2212", "-"), ("\u2018", "`"), ("\u2019", "'"), ("\u201c", '"'),
                         ("\u201d", '"')):
        text = text.replace(fancy, plain)
    return re.sub(r"\s+", " ", text)


def test_install_puts_the_man_pages_in_place(t):
    p = subprocess.run(["make", "-n", "-C", t.repo, "install", "DESTDIR=/nonexistent", "PREFIX=/usr"],
                       capture_output=True, text=True, timeout=60)
    expect_eq(p.returncode, 0, "make -n install: " + p.stderr)
    expect_in("/nonexistent/usr/share/man/man1/runbook.1", p.stdout, "make install")
    expect_in("/nonexistent/usr/share/man/man7/runbook-lua.7", p.stdout, "make install")
    dest = install_man(t)
    for rel, src in (("usr/share/man/man1/runbook.1", "doc/runbook.1"),
                     ("usr/share/man/man7/runbook-lua.7", "doc/runbook-lua.7")):
        with open(os.path.join(dest, rel)) as f, open(os.path.join(t.repo, src)) as g:
            expect_eq(f.read(), g.read(), rel)


def test_runbook_1_has_its_sections_and_every_help_text(t):
    text = render(t, os.path.join(install_man(t), "usr/share/man/man1/runbook.1"))
    headings = [line for line in text.splitlines() if re.match(r"^[A-Z][A-Z ]+$", line)]
    expect_eq(headings, SECTIONS_1, "the sections of runbook(1)")
    expect_in("runbook - walks incident runbooks step by step", flat(text))
    rendered = flat(text)
    for name in ("list", "show", "exec", "check", "transcript", "repl", "doc", "timeline", "history",
                 "unlock", "lab", "drill", "help", "files", "environment"):
        rc, out, err = t.run(["help", name])
        expect_rc((rc, out, err), 0, "help " + name)
        for line in out.splitlines():
            # A help text's lines are in the page: usage without its "usage: ", list items
            # as their term and meaning, the rest as they are.
            line = re.sub(r"^usage: ", "", line).strip()
            for part in re.split(r"\s{2,}", line):
                if part and not re.match(r"^[a-z ]+:$", part):
                    expect_in(flat(part), rendered, "runbook(1), from 'runbook help %s'" % name)
    for code, meaning in (("0", "completed or resolved"), ("6", "locked by another session"),
                          ("70", "internal error")):
        expect_in(" %s %s " % (code, meaning), rendered, "EXIT STATUS")


def test_runbook_lua_7_has_the_guide_and_every_function(t):
    text = render(t, os.path.join(install_man(t), "usr/share/man/man7/runbook-lua.7"))
    headings = [line for line in text.splitlines() if re.match(r"^[A-Z][A-Z ,]+$", line)]
    for h in SECTIONS_7:
        expect_in(h, headings, "the sections of runbook-lua(7)")
    rendered = flat(text)
    md = generate(t, ["--markdown"])
    # Every line of code (examples, the sample runbook) is in the page as it is: backslashes,
    # quotes and leading dots included.
    for block in re.findall(r"```lua\n(.*?)\n```", md, re.S):
        for line in block.splitlines():
            if line.strip():
                expect_in(flat(line).strip(), rendered, "runbook-lua(7): a line of code")
    # Every function's signature, and the inline code of the prose, without its backticks.
    for sig in re.findall(r"^#### `(.*)`$", md, re.M):
        expect_in(flat(sig), rendered, "runbook-lua(7): a signature")
    expect_in('"\\\\[error\\\\]" is the regex \\[error\\]', rendered, "runbook-lua(7): backslashes")
    for mod in ("sh: commands", "sys: the machine", "pg: PostgreSQL", "prometheus: metrics"):
        expect_in("   " + mod, text, "runbook-lua(7): module " + mod)
