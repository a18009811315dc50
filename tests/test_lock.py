"""Locking per (runbook, target): a second run against the same target refuses at once (exit 6)
or waits --lock-timeout, naming the holder (user, host, pid, since, transcript, incident); another
target runs; a lock left by a killed session is stale and taken over; `runbook unlock ID`; a dry
run neither takes nor waits for the lock. Runs are synchronised on FIFOs and printed markers."""
import json
import os
import re
import time

from run import expect_eq, expect_in, expect_rc, fail
from sessions import Reader, finish, kill_9

HOLD = '''
step "hold" { title = "Hold", run = function(ctx)
  must(sh.read { "sh", "-c", "echo holding; cat %(fifo)s", timeout = 30 })
end },
step "act" { title = "Act", run = function(ctx) must(sh.action { "true", summary = "restart " .. ctx.service }) end },'''

INPUTS = 'service = input.string { default = "api" }, retries = input.int { default = 3 }'


def holder(t, fifo_name="hold", args=()):
    """Starts a session that holds the lock until its FIFO is released; returns (proc, reader, fifo)."""
    fifo = t.mkfifo(fifo_name)
    t.runbook("svc", HOLD % {"fifo": fifo}, inputs=INPUTS)
    tr = t.path("holder.cast")
    proc = t.spawn(["exec", "svc", "--auto", "--yes", "--incident", "INC-31", "--transcript", tr] + list(args))
    rd = Reader(proc.stdout)
    rd.until("holding")
    return proc, rd, fifo, tr


def end_holder(t, proc, rd, fifo, what="the holder"):
    """Releases the holder's FIFO: its session ends, and must exit 0."""
    t.release(fifo)
    expect_rc(finish(proc, rd), 0, what)


def lock_dir(t):
    return t.path("state", "runbook", "locks")


def test_second_run_refuses_and_names_the_holder(t):
    proc, rd, fifo, tr = holder(t)
    rc, out, err = t.run(["exec", "svc", "--auto", "--yes"])
    expect_rc((rc, out, err), 6, "a second run against the same target")
    m = re.search(r"runbook: svc is already running against service=api: locked by (\S+)@(\S+) \(pid (\d+), running\) "
                  r"since (\S+) \(\d+s ago\), incident INC-31\n", err)
    if not m:
        fail("the refusal does not name the holder:\n" + err)
    expect_eq(int(m.group(3)), proc.pid, "the holder's pid")
    expect_in("transcript " + tr, err)
    lock_id = re.search(r"runbook unlock (svc-[0-9a-f]{8})", err).group(1)
    expect_eq(out, "", "stdout of the refused run")
    expect_eq([p for p in t.transcripts()], [], "the refused run wrote no transcript")
    # The lock file: mode 0600 in a 0700 directory, holding the details.
    path = os.path.join(lock_dir(t), lock_id + ".lock")
    expect_eq(oct(os.stat(path).st_mode & 0o777), oct(0o600), "lock file mode")
    expect_eq(oct(os.stat(lock_dir(t)).st_mode & 0o777), oct(0o700), "lock dir mode")
    with open(path) as f:
        details = json.load(f)
    expect_eq((details["id"], details["runbook"], details["target"], details["pid"], details["transcript"], details["incident"]),
              (lock_id, "svc", "service=api", proc.pid, tr, "INC-31"), "lock details")
    # retries is not part of the target; another service is another target and runs at once.
    rc, out, err = t.run(["exec", "svc", "--auto", "--yes", "retries=5"])
    expect_rc((rc, out, err), 6, "same target, other options")
    other = t.runbook("other", 'step "a" { title = "A", run = function(ctx) end },', inputs=INPUTS)
    rc, out, err = t.run(["exec", "other", "--auto"])
    expect_rc((rc, out, err), 0, "another runbook")
    header = t.read_transcript(t.transcripts()[0])[0]
    expect_eq(header["runbook"]["lock"].startswith("other-"), True, "the lock id is in the header")
    end_holder(t, proc, rd, fifo)
    expect_eq(os.listdir(lock_dir(t)), [], "the lock is removed when its session ends")


def test_second_run_waits_for_the_lock(t):
    proc, rd, fifo, _ = holder(t)
    waiter = t.spawn(["exec", "svc", "--auto", "--yes", "--lock-timeout", "30s", "--start-at", "act", "service=api"])
    wr = Reader(waiter.stdout)
    wr.until("waiting up to 30 s for the lock svc-")
    expect_in("held by ", wr.buf.decode())
    expect_in("(pid %d, running)" % proc.pid, wr.buf.decode())
    end_holder(t, proc, rd, fifo)     # the holder finishes and releases: the waiter goes on
    rc, out, err = finish(waiter, wr)
    expect_rc((rc, out, err), 0, "the waiter")
    expect_in("lock svc-", out)
    if not re.search(r"lock svc-[0-9a-f]{8} acquired after waiting [\d.]+ s", out):
        fail("the waiter does not say it waited:\n" + out)
    tr = [p for p in t.transcripts()][0]
    _, _, recs = t.read_transcript(tr)
    waited = [r for r in recs if r["type"] == "lock"]
    expect_eq([r["event"] for r in waited], ["waited"], "lock records of the waiter")


def test_wait_times_out(t):
    proc, rd, fifo, _ = holder(t)
    start = time.monotonic()
    rc, out, err = t.run(["exec", "svc", "--auto", "--lock-timeout", "300ms"])
    elapsed = time.monotonic() - start
    expect_rc((rc, out, err), 6, "after the lock timeout")
    expect_in("waiting up to 0.3 s for the lock", out)
    expect_in("locked by ", err)
    if elapsed > (10 if t.sanitized else 5):
        fail("a 300 ms lock timeout took %.1f s" % elapsed)
    t.release(fifo)
    finish(proc, rd)


def test_stale_lock_of_a_killed_session_is_taken_over(t):
    proc, rd, fifo, tr = holder(t)
    kill_9(proc)
    locks = os.listdir(lock_dir(t))
    expect_eq(len(locks), 1, "the killed session leaves its lock file")
    rc, out, err = t.run(["exec", "svc", "--auto", "--yes", "--start-at", "act"])
    expect_rc((rc, out, err), 0, "a run after the kill")
    m = re.search(r"took over the stale lock (svc-[0-9a-f]{8}): \S+@\S+'s session (\w+) \(pid (\d+), since \S+\) "
                  r"ended without releasing it", out)
    if not m:
        fail("no stale-lock notice:\n" + out)
    expect_eq(int(m.group(3)), proc.pid, "the dead holder's pid")
    new = [p for p in t.transcripts()][0]
    _, _, recs = t.read_transcript(new)
    stale = [r for r in recs if r["type"] == "lock"]
    expect_eq((stale[0]["event"], stale[0]["previous"]["pid"], stale[0]["previous"]["transcript"]), ("stale", proc.pid, tr),
              "lock record")
    expect_eq(os.listdir(lock_dir(t)), [], "released at the end")


def test_unlock(t):
    proc, rd, fifo, _ = holder(t)
    rc, out, err = t.run(["unlock"])
    expect_rc((rc, out, err), 2, "unlock without an id")
    m = re.search(r"  (svc-[0-9a-f]{8})  service=api  \S+@\S+ \(pid %d, running\)" % proc.pid, err)
    if not m:
        fail("unlock without an id does not list the locks:\n" + err)
    lock_id = m.group(1)
    rc, out, err = t.run(["unlock", "svc-00000000"])
    expect_rc((rc, out, err), 1, "unlock of an unknown id")
    expect_in("no lock svc-00000000", err)
    rc, out, err = t.run(["unlock", "../etc/passwd"])
    expect_rc((rc, out, err), 2, "unlock of a path")
    rc, out, err = t.run(["unlock", lock_id])
    expect_rc((rc, out, err), 0, "unlock")
    expect_in("removed the lock %s (service=api), held by " % lock_id, out)
    expect_in("that session is still running: it no longer keeps a second session of svc off the same target", out)
    # The lock is gone: a second session runs now, while the first still holds its (unlinked) file.
    rc, out, err = t.run(["exec", "svc", "--auto", "--yes", "--start-at", "act"])
    expect_rc((rc, out, err), 0, "a run after unlock")
    end_holder(t, proc, rd, fifo, "the first session ends normally")
    expect_eq(os.listdir(lock_dir(t)), [], "no lock left")


def test_dry_run_neither_takes_nor_waits(t):
    proc, rd, fifo, _ = holder(t)
    rc, out, err = t.run(["exec", "svc", "--auto", "--dry-run", "--start-at", "act"])
    expect_rc((rc, out, err), 0, "a dry run while the lock is held")
    expect_in("dry run: not locking; ", out)
    expect_in("(pid %d, running)" % proc.pid, out)
    end_holder(t, proc, rd, fifo)
