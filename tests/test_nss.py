"""A user database that never answers (sssd or LDAP down): /etc/passwd replaced by a FIFO nobody
writes, so that getpwuid_r blocks for ever. The session still starts, its transcript names the user
by number, sys.processes lists processes with numbers for users, and pg.connect without a user
either takes $USER or says what to give, each within the wait for a name (0.5 s), not for ever.

The binary runs in mount and network namespaces of its own (`unshare`, util-linux)."""
import time

from run import expect_eq, expect_in, fail, run_inside

INNER = "set -e\n" + r'''
mkfifo passwd
mount --bind passwd /etc/passwd
printf 'passwd: files\ngroup: files\n' > nsswitch.conf
mount --bind nsswitch.conf /etc/nsswitch.conf
"$@"
'''

RUNBOOK = '''local sys, pg = require "sys", require "pg"
return runbook { name = "nss", summary = "the user database does not answer", severity = "SEV4",
  step "look" { title = "look around", run = function(ctx)
    local ps = must(sys.processes { limit = 3, sample = 0 })
    print("@@ users " .. ps[1].user)
    local _, err, kind = pg.connect("postgresql://127.0.0.1:1/x", { timeout = "2s" })
    print("@@ pg " .. tostring(kind) .. " " .. err)
  end },
}
'''


def test_a_user_database_that_never_answers(t):
    t.write("nss.lua", RUNBOOK)
    cast = t.path("nss.cast")
    start = time.monotonic()
    p = run_inside(t, INNER, "nss.lua", cast, "a user database that never answers", {"USER": None, "LOGNAME": None})
    elapsed = time.monotonic() - start
    said = dict(line[3:].split(" ", 1) for line in p.stdout.splitlines() if line.startswith("@@ "))
    header, _, _ = t.read_transcript(cast)
    expect_eq(header["runbook"]["user"], "uid 0", "the transcript's user")
    expect_eq(said["users"][:4], "uid ", "a process's user")
    expect_in("error pg.connect", said["pg"])
    expect_in("no user given, and the system did not tell this user's name within 500 ms", said["pg"])
    print("    a session with a user database that never answers: %.1f s" % elapsed, flush=True)
    if elapsed > 5:
        fail("the session took %.1f s" % elapsed)


def test_user_from_the_environment_when_the_database_does_not_answer(t):
    t.write("nss.lua", RUNBOOK)
    p = run_inside(t, INNER, "nss.lua", t.path("nss.cast"), "a user database that never answers",
                   {"USER": "alice", "LOGNAME": None})
    said = dict(line[3:].split(" ", 1) for line in p.stdout.splitlines() if line.startswith("@@ "))
    # Port 1 of a network namespace whose loopback is down: it went on to connect, as alice.
    expect_eq(said["pg"].split(" ")[0], "unreachable", "pg.connect as $USER (%s)" % said["pg"])
