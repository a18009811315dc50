"""A user database that never answers (sssd or LDAP down): /etc/passwd replaced by a FIFO nobody
writes, so that getpwuid_r blocks for ever. The session still starts, its transcript names the user
by number, sys.processes lists processes with numbers for users, and pg.connect without a user
either takes $USER or says what to give, each within the wait for a name (0.5 s), not for ever;
without HOME, pg.connect gives libpq the files under the home directory, or says to set HOME.

The binary runs in mount and network namespaces of its own (`unshare`, util-linux)."""
import os
import time

from run import expect_eq, expect_in, fail, namespaces, run_inside
from steps import expect_fast, run_stamped

# $PASSWD: "fifo", or the text of a passwd file; $NSSWITCH: the text of nsswitch.conf.
INNER = "set -e\n" + r'''
rm -f passwd nsswitch.conf   # a FIFO left by an earlier run would block the printf
if [ "$PASSWD" = fifo ]; then mkfifo passwd; else printf '%s\n' "$PASSWD" > passwd; fi
mount --bind passwd /etc/passwd
printf '%s\n' "$NSSWITCH" > nsswitch.conf
mount --bind nsswitch.conf /etc/nsswitch.conf
"$@"
'''

# The environment of a run: no user or service of the developer's for libpq to take instead.
def env(passwd, nsswitch, **more):
    e = {"PASSWD": passwd, "NSSWITCH": nsswitch, "USER": None, "LOGNAME": None, "PGUSER": None,
         "PGSERVICE": None, "PGSERVICEFILE": None, "PGPASSFILE": None}
    e.update(more)
    return e


def said_by(p):
    return dict(line[3:].split(" ", 1) for line in p.stdout.splitlines() if line.startswith("@@ "))


def user_of_the_run(said, header):
    """The user sys.processes gave the runbook's own process (the transcript names its pid)."""
    users = dict(pair.split("=", 1) for pair in said["users"].split(","))
    return users.get(str(header["runbook"]["pid"]))

RUNBOOK = '''local sys, pg = require "sys", require "pg"
return runbook { name = "nss", summary = "the user database does not answer", severity = "SEV4",
  step "look" { title = "look around", run = function(ctx)
    local users = {}
    for _, p in ipairs(must(sys.processes { match = "nss.lua", sample = 0, limit = 20 })) do
      users[#users + 1] = p.pid .. "=" .. p.user
    end
    print("@@ users " .. table.concat(users, ","))
    local _, err, kind = pg.connect("postgresql://127.0.0.1:1/x", { timeout = "2s" })
    print("@@ pg " .. tostring(kind) .. " " .. err)
  end },
}
'''


def test_a_user_database_that_never_answers(t):
    t.write("nss.lua", RUNBOOK)
    cast = t.path("nss.cast")
    start = time.monotonic()
    p = run_inside(t, INNER, "nss.lua", cast, "a user database that never answers", env("fifo", "passwd: files"))
    elapsed = time.monotonic() - start
    said = said_by(p)
    header, _, _ = t.read_transcript(cast)
    expect_eq(header["runbook"]["user"], "uid 0", "the transcript's user")
    expect_eq(user_of_the_run(said, header), "uid 0", "the user of this run's process")
    expect_in("error pg.connect", said["pg"])
    expect_in("no user given, and the system did not tell this user's name in time", said["pg"])
    print("    a session with a user database that never answers: %.1f s" % elapsed, flush=True)
    if elapsed > 5:
        fail("the session took %.1f s" % elapsed)


def test_user_from_the_environment_when_the_database_does_not_answer(t):
    t.write("nss.lua", RUNBOOK)
    # passwd from NSS first (sss, absent here), then files: the worker's lookup, which hangs too
    p = run_inside(t, INNER, "nss.lua", t.path("nss.cast"), "a user database that never answers",
                   env("fifo", "passwd: sss files", USER="alice"))
    said = said_by(p)
    # Port 1 of a network namespace whose loopback is down: with $USER, it went on to connect.
    expect_eq(said["pg"].split(" ")[0], "unreachable", "pg.connect as $USER (%s)" % said["pg"])


def test_a_lookup_stuck_at_the_exit_does_not_delay_it(t):
    # The session's own lookup (NSS first, in a worker) never returns. The exit waits only for
    # the workers that must finish (a cancel request on its way); this one it leaves at once.
    t.write("nss.lua", RUNBOOK)
    t.launcher = namespaces(t) + ["sh", "-c", INNER, "sh"]
    rc, lines, out, err = run_stamped(t, "nss.lua", t.path("nss.cast"), timeout=30,
                                      env=env("fifo", "passwd: sss files", USER="alice"))
    ended = time.monotonic()
    expect_eq(rc, 0, "exit code\n" + out + err)
    expect_fast((ended - lines[-1][0]) * 1000, 350, "from the run's last line to its exit, a lookup stuck")


def test_users_of_etc_passwd_are_read_from_it(t):
    # nsswitch.conf reads passwd's files first: the name comes from /etc/passwd (read here; NSS
    # would give the same, so this test cannot tell which read it).
    t.write("nss.lua", RUNBOOK)
    cast = t.path("nss.cast")
    p = run_inside(t, INNER, "nss.lua", cast, "a passwd file",
                   env("operator0:x:0:0:on call:/root:/bin/sh", "# a comment\npasswd:   files systemd"))
    said = said_by(p)
    header, _, _ = t.read_transcript(cast)
    expect_eq(header["runbook"]["user"], "operator0", "the transcript's user")
    expect_eq(user_of_the_run(said, header), "operator0", "the user of this run's process")
    expect_in("pg.connect 127.0.0.1:1/x", said["pg"])   # it went on to connect


def test_without_home_libpq_is_given_its_files(t):
    # HOME unset: libpq would look the home directory up itself, without a bound, for ~/.pgpass.
    t.write("nss.lua", RUNBOOK)
    p = run_inside(t, INNER, "nss.lua", t.path("nss.cast"), "a user database that never answers, without HOME",
                   env("fifo", "passwd: files", USER="alice", HOME=None))
    expect_in("HOME is not set, and the system did not tell this user's home directory in time", said_by(p)["pg"])
    p = run_inside(t, INNER, "nss.lua", t.path("nss2.cast"), "a passwd file, without HOME",
                   env("operator0:x:0:0:on call:/root:/bin/sh", "passwd: files", HOME=None))
    expect_eq(said_by(p)["pg"].split(" ")[0], "unreachable", "pg.connect without HOME, the home directory known")


def test_without_home_the_state_lives_in_the_account_s_home(t):
    # Neither XDG_STATE_HOME nor HOME (cron): the locks go under the account's home directory.
    t.write("nss.lua", RUNBOOK)
    home = t.path("account")
    run_inside(t, INNER, "nss.lua", t.path("nss.cast"), "a run without HOME",
               env("operator0:x:0:0:on call:%s:/bin/sh" % home, "passwd: files", HOME=None, XDG_STATE_HOME=None))
    expect_eq(os.path.isdir(os.path.join(home, ".local/state/runbook/locks")), True, "the locks under the account's home")
