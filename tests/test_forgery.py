"""Forged transcripts (issue 17, class 5). Whoever can write a transcript can edit it and recompute
its hash chain, so the chain alone proves nothing against them. These tests forge transcripts the
way an attacker would (edit, then re-chain: `transcript verify` still says "complete") and check
what catches it: the SSH signature of the checkpoints (real ssh-keygen keys made here, and a real
ssh-agent), the chain heads written to the system log (a syslog receiver on a socket of the test,
which the binary is pointed at through $RUNBOOK_SYSLOG_SOCKET: this machine runs no syslog daemon
or journald; the journal path is only checked to fail clearly when there is no journal), and
--resume, which shows what a transcript records and runs nothing unsigned without the operator."""
import hashlib
import os
import subprocess

from run import expect_eq, expect_in, expect_rc
from signing import SyslogReceiver, agent, forge, keypair, read_lines, sign_by_config

# Step one's action restarts the host the input names; step two fails, so the session can be resumed.
BOOK = '''
step "one" { title = "Restart", run = function(ctx)
  must(sh.action { "sh", "-c", "echo restart-" .. ctx.inputs.host .. " >> %(log)s", summary = "restart " .. ctx.inputs.host })
  ctx:ok("restarted")
end },
step "two" { title = "Check", run = function(ctx)
  must(sh.read { "sh", "-c", "echo check-" .. ctx.inputs.host .. " >> %(log)s" })
  must(nil, "still broken")
end },'''


def setup(t):
    log = t.path("ran.log")
    t.runbook("svc", BOOK % {"log": log}, inputs='host = input.string { default = "db1" }')
    return log


def ran(log):
    if not os.path.exists(log):
        return []
    with open(log) as f:
        return f.read().split()


def session(t, tr, args=(), env=None):
    rc, out, err = t.run(["exec", "svc", "--auto", "--yes", "--transcript", tr] + list(args), env=env)
    expect_rc((rc, out, err), 1, "the session fails at step two")
    return out, err


def verify(t, tr, *args):
    return t.run(["transcript", "verify", tr] + list(args))


def test_signed_transcript_names_its_signer_and_a_forgery_does_not_verify(t):
    log = setup(t)
    key = keypair(t)
    tr = t.path("a.cast")
    session(t, tr, ["--sign-key", key])
    rc, out, err = verify(t, tr)
    expect_rc((rc, out, err), 0, "verify of the signed transcript")
    expect_in("signed by alice@example.org (ED25519 key SHA256:", out)
    expect_in(": all %d lines" % len(read_lines(tr)), out)
    # The forger edits what was restarted and recomputes the chain: the chain verifies...
    forged = forge(t, tr, b"restart db1", b"restart db9")
    rc, out, err = verify(t, forged)
    expect_in("complete: ", out, "the re-chained forgery passes the chain check")
    # ...the signature does not.
    expect_eq(rc, 1, "verify of the forgery: " + out)
    expect_in("signature INVALID: the file's first ", out)
    # Without the signature file it is merely unsigned, and says so.
    os.remove(forged + ".sig")
    rc, out, err = verify(t, forged)
    expect_in("unsigned: no signature", out)
    # The forger signs it with a key of their own: not an allowed signer.
    mallory = keypair(t, "mallory", "mallory@example.org", allowed=False)
    again = t.path("resigned.cast")
    os.rename(forged, again)
    rc, out, err = t.run(["exec", "svc", "--auto", "--yes", "--sign-key", mallory, "--transcript", t.path("m.cast")])
    with open(t.path("m.cast.sig")) as f:
        msig = f.read()
    # Mallory signs the forged file's own lines with the statement the tool signs.
    lines = read_lines(again)
    h = hashlib.sha256(lines[0]).hexdigest()
    heads = [h]
    for l in lines[1:]:
        h = hashlib.sha256(h.encode() + l).hexdigest()
        heads.append(h)
    statement = "runbook-transcript checkpoint\nid %s\nlines %d\nhead %s\n" % (heads[0], len(lines), heads[-1])
    p = subprocess.run(["ssh-keygen", "-q", "-Y", "sign", "-n", "runbook-transcript", "-f", mallory],
                       input=statement.encode(), capture_output=True, timeout=30, check=True)
    with open(again + ".sig", "wb") as f:
        f.write(statement.encode() + p.stdout)
    rc, out, err = verify(t, again)
    expect_eq(rc, 1, "a forgery signed by a key that is not allowed: " + out)
    expect_in("signature INVALID: signed by a key that is not in ", out)
    expect_in("BEGIN SSH SIGNATURE", msig, "mallory's own session was signed")
    # An explicit allowed-signers file that lists only mallory makes the original fail, naming why.
    only = t.write("only_mallory", "mallory@example.org " + open(mallory + ".pub").read())
    rc, out, err = verify(t, tr, "--allowed-signers", only)
    expect_eq(rc, 1, out)
    expect_in("signed by a key that is not in " + only, out)
    expect_eq(ran(log)[:1], ["restart-db1"], "what the first session ran")


def test_agent_key_signs(t):
    setup(t)
    key = keypair(t)
    env = agent(t, key)
    os.rename(key, key + ".moved")   # only the public half is left on disk: the agent signs
    tr = t.path("a.cast")
    session(t, tr, env=dict(env, RUNBOOK_SIGN_KEY=key + ".pub"))
    rc, out, err = verify(t, tr)
    expect_rc((rc, out, err), 0, "verify of the agent-signed transcript")
    expect_in("signed by alice@example.org (ED25519 key SHA256:", out)
    # Without the agent, the same public key cannot sign: said once, the session still runs.
    tr2 = t.path("b.cast")
    out, err = session(t, tr2, env={"RUNBOOK_SIGN_KEY": key + ".pub", "SSH_AUTH_SOCK": None})
    expect_in("runbook: warning: the transcript is not signed: ssh-keygen -Y sign with %s.pub failed" % key, err)
    expect_eq(err.count("warning: the transcript is not signed"), 1, "one warning: " + err)
    rc, out, err = verify(t, tr2)
    expect_in("unsigned: no signature", out)


def test_unsigned_session_verifies_as_unsigned(t):
    setup(t)
    tr = t.path("a.cast")
    session(t, tr)
    rc, out, err = verify(t, tr)
    expect_rc((rc, out, err), 0)
    expect_in("unsigned: no signature (%s.sig)" % tr, out)
    expect_eq(os.path.exists(tr + ".sig"), False, "no signature file without a key")


def test_resume_of_a_forged_transcript_asks_or_refuses(t):
    log = setup(t)
    tr = t.path("a.cast")
    session(t, tr)
    before = ran(log)
    expect_eq(before, ["restart-db1", "check-db1"], "the first session")
    # The forger retargets the session: the resumed run would check (and restart) db9.
    forged = forge(t, tr, b'"host":"db1"', b'"host":"db9"')
    rc, out, err = t.run(["exec", "--resume", forged, "--auto", "--yes"])
    expect_rc((rc, out, err), 2, "no terminal, unsigned: refused")
    expect_in("runbook: cannot resume: %s: it is not signed, and there is no terminal to confirm what it records on" % forged, err)
    expect_in('input host = "db9"', out, "what it records is shown")
    expect_eq(ran(log), before, "nothing ran")
    # On a terminal it is shown and asked; n stops it.
    p = t.pty(["exec", "--resume", forged, "--auto", "--transcript", t.path("b.cast")])
    p.expect(r'input host = "db9"')
    p.expect(r"not repeated: restart db1 \(step one, confirmed by ")
    p.expect(r"it is not signed\. Anyone who could write the file could have changed what it records\.")
    p.expect(r"Type yes to resume with what it records, or n to stop: ")
    p.sendline("n")
    expect_eq(p.wait(), 5, "declined: aborted")
    expect_eq(ran(log), before, "nothing ran")
    expect_eq(os.path.exists(t.path("b.cast")), False, "no session was started")
    # yes resumes (the operator vouched), and the new header says who vouched.
    p = t.pty(["exec", "--resume", forged, "--auto", "--transcript", t.path("c.cast")])
    p.expect(r"Type yes to resume with what it records, or n to stop: ")
    p.sendline("yes")
    p.expect(r"still broken")
    p.expect(r"Enter: retry · s: skip · r: repl · q: quit > ")
    p.sendline("q")
    expect_eq(p.wait(), 5, "resumed: step two fails again, the operator quits")
    expect_eq(ran(log), before + ["check-db9"], "the resumed session ran what the operator confirmed")
    header, _, _ = t.read_transcript(t.path("c.cast"))
    trusted = header["runbook"]["resumed_from"]["trusted"]
    expect_eq(trusted["because"], "it is not signed", "trusted")


def test_resume_of_a_signed_transcript_runs_and_of_a_forged_signed_one_is_refused(t):
    log = setup(t)
    key = keypair(t)
    sign_by_config(t, key)
    tr = t.path("a.cast")
    session(t, tr)
    forged = forge(t, tr, b'"host":"db1"', b'"host":"db9"')
    rc, out, err = t.run(["exec", "--resume", forged, "--auto", "--yes"])
    expect_rc((rc, out, err), 2, "a signature that does not match")
    expect_in("cannot resume: %s has a signature that does not vouch for it (the signature is of another session" % forged, err)
    expect_in("it was altered after it was signed", err)
    # Edited past line 1 (the confirmation's user): the signed heads differ.
    forged2 = forge(t, tr, b"restart db1", b"restart db7", name="forged2.cast")
    rc, out, err = t.run(["exec", "--resume", forged2, "--auto", "--yes"])
    expect_rc((rc, out, err), 2, "edited after the header")
    expect_in("has a signature that does not vouch for it (the file's first ", err)
    expect_eq(ran(log), ["restart-db1", "check-db1"], "nothing ran")
    # The genuine one resumes without a terminal.
    rc, out, err = t.run(["exec", "--resume", tr, "--auto", "--yes", "--transcript", t.path("b.cast")])
    expect_rc((rc, out, err), 1, "resumed, step two fails again")
    expect_in("signed by alice@example.org (ED25519 key SHA256:", out)
    expect_eq(ran(log), ["restart-db1", "check-db1", "check-db1"], "the restart was not repeated")


def test_witness_in_the_system_log_catches_a_rechained_edit(t):
    setup(t)
    rx = SyslogReceiver(t)
    tr = t.path("a.cast")
    session(t, tr, env=rx.env())
    logfile = rx.write_log(t.path("syslog"))
    with open(logfile) as f:
        text = f.read()
    expect_in(" testhost runbook[", text)
    expect_in("(start) " + tr, text)
    expect_in("(confirm) " + tr, text)
    expect_in("(end) " + tr, text)
    rc, out, err = verify(t, tr, "--witness", logfile)
    expect_rc((rc, out, err), 0, "the genuine transcript against the log")
    expect_in("witness: 3 checkpoint(s) in the system log match (last: line %d, end)" % len(read_lines(tr)), out)
    # Edited after the header and re-chained: the chain verifies, the log does not agree.
    forged = forge(t, tr, b"restart db1", b"restart db9")
    rc, out, err = verify(t, forged, "--witness", logfile)
    expect_in("complete: ", out)
    expect_eq(rc, 1, out)
    expect_in("witness MISMATCH: at line ", out)
    # The header edited: the log holds no checkpoint of such a session.
    forged = forge(t, tr, b'"host":"db1"', b'"host":"db9"', name="f2.cast")
    rc, out, err = verify(t, forged, "--witness", logfile)
    expect_eq(rc, 1, out)
    expect_in("witness: the system log holds no checkpoint of this session", out)
    # The last lines cut off (and the end re-made by the forger is not possible to witness).
    lines = read_lines(tr)
    cut = t.path("cut.cast")
    with open(cut, "wb") as f:
        f.write(b"".join(l + b"\n" for l in lines[:-3]))
    rc, out, err = verify(t, cut, "--witness", logfile)
    expect_eq(rc, 1, out)
    expect_in("witness MISMATCH: the log saw line %d (end), the file ends at line %d" % (len(lines), len(lines) - 3), out)


def test_witness_without_a_journal_says_what_to_do(t):
    setup(t)
    tr = t.path("a.cast")
    session(t, tr)
    if os.path.exists("/run/systemd/journal/socket"):
        return   # a journald runs here: the journal path is exercised for real elsewhere
    rc, out, err = verify(t, tr, "--witness")
    expect_eq(rc, 1, out)
    expect_in("witness: cannot read the system journal (journalctl: ", out)
    expect_in("pass the syslog file: --witness /var/log/syslog", out)
