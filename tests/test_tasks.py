"""parallel() and tcp.connect: tasks run concurrently from one thread, each bounded by its own
deadline; results keep their keys; errors stay per task; Ctrl-C stops them all."""
import os
import subprocess
import time

from run import black_hole, expect_eq, expect_in, fail, free_port, listener, processes
from steps import expect_fast, expect_within, interrupt, run_auto, step, write_runbook


def probe(t, lua, timeout=60, want_rc=0):
    """Runs `lua` as one step (with tcp and emit in scope); returns the emitted values, the
    output and the seconds the run took."""
    path = write_runbook(t, "tasks", 'local tcp = require "tcp"', step(lua), "tasks")
    start = time.monotonic()
    values, out, _ = run_auto(t, path, t.path("tasks.cast"), timeout=timeout, want_rc=want_rc)
    return values, out, time.monotonic() - start


def test_tcp_connect_ok_refused_and_by_name(t):
    port = listener(t).getsockname()[1]
    closed = free_port()
    v, _, _ = probe(t, '''
local r = must(tcp.connect("127.0.0.1", %d))
emit("address", r.address) emit("ms", r.ms)
local byname = must(tcp.connect("localhost", %d))
emit("byname", byname.host)
local no, err, kind = tcp.connect("127.0.0.1", %d)
emit("refused", tostring(no) .. "|" .. err .. "|" .. kind)''' % (port, port, closed))
    expect_eq(v["address"], "127.0.0.1")
    if not 0 <= float(v["ms"]) < 1000:
        fail("ms = %s" % v["ms"])
    expect_eq(v["byname"], "localhost", "a name goes through the bounded resolver")
    expect_eq(v["refused"], "nil|tcp.connect 127.0.0.1:%d: connection refused (nothing listens there: is the "
              "service up?)|refused" % closed)


def test_tcp_connect_times_out_at_its_deadline(t):
    port = black_hole(t)
    v, _, _ = probe(t, '''
local no, err, kind = tcp.connect("127.0.0.1", %d, { timeout = "700ms" })
emit("kind", kind) emit("err", err)''' % port)
    expect_eq(v["kind"], "timeout")
    expect_in("tcp.connect 127.0.0.1:%d: timed out" % port, v["err"])
    _, _, records = t.read_transcript(t.path("tasks.cast"))
    rec = [r for r in records if r["type"] == "probe"][0]
    expect_eq(rec["deadline_ms"], 700)
    expect_within(float(rec["duration_ms"]), 700, "the connect")


def test_parallel_runs_tasks_concurrently(t):
    port = black_hole(t)
    v, _, elapsed = probe(t, '''
local tasks = {}
for i = 1, 40 do tasks[i] = function() return tcp.connect("127.0.0.1", %d, { timeout = "600ms" }) end end
local r = parallel(tasks, { limit = 40 })
local kinds = {}
for i = 1, 40 do kinds[r[i].kind] = (kinds[r[i].kind] or 0) + 1 end
emit("timeouts", kinds.timeout) emit("n", #r)''' % port)
    expect_eq((v["n"], v["timeouts"]), ("40", "40"))
    if elapsed > 6:
        fail("40 tasks of 600 ms each took %.1f s: they did not run concurrently" % elapsed)


def test_parallel_runs_commands_concurrently(t):
    # Ten half-second commands and one that ignores SIGTERM (300 ms deadline, then 1 s of grace
    # before SIGKILL): one after another they would take over 6 s; as tasks, about the slowest.
    path = write_runbook(t, "cmds", 'local sh = require "sh"', step('''
local tasks = {}
for i = 1, 10 do
  tasks[i] = function() return sh.read { "sleep 0.5; echo task-" .. i, shell = true, quiet = true } end
end
tasks.stubborn = function()
  return sh.read { "trap '' TERM; sleep 30", shell = true, timeout = "300ms", grace = "1s", quiet = true }
end
local r = parallel(tasks)
for i = 1, 10 do emit("out" .. i, r[i].value and r[i].value.stdout:gsub("\\n", "")) end
emit("stubborn", r.stubborn.kind) emit("stubborn_ms", math.floor(r.stubborn.ms))'''), "cmds")
    start = time.monotonic()
    v, _, _ = run_auto(t, path, t.path("cmds.cast"))
    elapsed = time.monotonic() - start
    for i in range(1, 11):
        expect_eq(v.get("out%d" % i), "task-%d" % i, "the output of task %d" % i)
    expect_eq(v["stubborn"], "timeout")
    expect_within(int(v["stubborn_ms"]), 1300, "a command that ignores SIGTERM, 300 ms + 1 s of grace")
    print("    10 x 0.5 s and 1.3 s in parallel: %.2f s" % elapsed, flush=True)
    if elapsed > 3:
        fail("commands in parallel took %.1f s: they ran one after another" % elapsed)


def test_parallel_commands_output_names_its_task(t):
    # Lines of commands running side by side mix: inside parallel() each is prefixed with its
    # task's key; outside, as before, with nothing.
    path = write_runbook(t, "named", 'local sh = require "sh"', step('''
parallel { disk = function() return sh.read { "echo", "from disk" } end,
           function() return sh.read { "echo", "from the first" } end }
sh.read { "echo", "from no task" }'''), "named")
    _, out, _ = run_auto(t, path, t.path("named.cast"))
    for line in ("    │ [disk] from disk\n", "    │ [1] from the first\n", "    │ from no task\n"):
        expect_in(line, out)


def test_parallel_goes_on_during_a_process_sample(t):
    # sys.processes waits between its two scans (the sample): inside parallel() that wait yields, so
    # the command beside it, started after it, ends first.
    path = write_runbook(t, "sample", 'local sh, sys = require "sh", require "sys"', step('''
local r = parallel { function() return sys.processes { sample = "1s", limit = 1 } end,
                     function() return sh.read { "sleep", "0.3" } end }
emit("both", tostring(r[1].value ~= nil) .. "|" .. tostring(r[2].value and r[2].value.ok))'''), "sample")
    v, _, _ = run_auto(t, path, t.path("sample.cast"))
    expect_eq(v["both"], "true|true")
    _, _, records = t.read_transcript(t.path("sample.cast"))
    ended = [r["primitive"] for r in records if r.get("type") == "probe"]
    expect_eq(ended, ["sh.read", "sys.processes"], "the order in which the probes ended")


def test_ctrl_c_stops_parallel_commands(t):
    marker = "61.%d" % (os.getpid() % 10000)     # `sleep 61.N`: ours, to look for afterwards
    path = t.write("cmdpar.lua", '''local sh = require "sh"
return runbook {
  name = "cmdpar", summary = "s", severity = "SEV4",
  step "p" { title = "wait on commands", run = function(ctx)
    local tasks = {}
    for i = 1, 5 do tasks[i] = function() return sh.read { "sleep", "%s", quiet = true } end end
    -- these ignore SIGTERM: each is killed after a grace, which they share (one after another, 1.2 s)
    for i = 6, 10 do
      tasks[i] = function() return sh.read { "trap '' TERM; sleep %s", shell = true, quiet = true } end
    end
    tasks.probe = function() return sh.read { "sh", "-c", "echo waiting now; sleep %s" } end
    parallel(tasks)
  end },
}
''' % (marker, marker, marker))
    p = t.pty(["exec", path, "--auto"])
    p.expect("waiting now")
    expect_fast(interrupt(p, r"Enter: retry") * 1000, 500, "Ctrl-C to stop 11 commands in parallel, 5 ignoring SIGTERM")
    left = [pid for pid, _ in processes() if marker in cmdline(pid)]
    if left:
        fail("the commands are still running after Ctrl-C: pids %s" % left)
    p.sendline("q")
    expect_eq(p.wait(), 5)


def test_a_task_that_ends_the_step_stops_the_others_commands(t):
    # Task 2's action is declined (no terminal), which skips the step, while task 1's command still
    # runs: parallel() stops task 1 on the spot, and with it the command (its op is closed), rather
    # than waiting for it or leaving it running.
    marker = "62.%d" % (os.getpid() % 10000)
    path = t.write("esc.lua", '''local sh = require "sh"
return runbook {
  name = "esc", summary = "s", severity = "SEV4",
  step "p" { title = "one task escalates", run = function(ctx)
    parallel {
      function() return sh.read { "sleep", "%s", quiet = true } end,
      function() sh.read { "true" } sh.action { "true" } end,
    }
  end },
}
''' % marker)
    start = time.monotonic()
    rc, out, err = t.run(["exec", path, "--auto", "--transcript", t.path("esc.cast")], timeout=20)
    elapsed = time.monotonic() - start
    expect_eq(rc, 4, "the exit code of a run whose action was declined\n" + out + err)
    expect_in("step skipped: the action was declined", out)
    expect_fast(elapsed * 1000, 3000, "a run whose step was skipped while a task's command ran")
    left = [pid for pid, _ in processes() if marker in cmdline(pid)]
    if left:
        fail("the other task's command is still running: pids %s" % left)
    _, _, records = t.read_transcript(t.path("esc.cast"))
    stopped = [r for r in records if r.get("type") == "probe" and r.get("target") == "sleep " + marker]
    expect_eq([r["outcome"] for r in stopped], ["interrupted"], "the stopped command's record")


NO_PIDFD = r"""
/* Runs argv[1..] where pidfd_open(2) fails with ENOSYS, as on a kernel before 5.3: a seccomp
 * filter, inherited across exec, answers that one system call and lets every other through. */
#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	struct sock_filter code[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_pidfd_open, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = { sizeof code / sizeof *code, code };
	if (argc < 2 || prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
	    prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0) {
		perror("no-pidfd: seccomp");
		return 99;
	}
	if (syscall(SYS_pidfd_open, getpid(), 0) != -1 || errno != ENOSYS) {
		fprintf(stderr, "no-pidfd: pidfd_open still works\n");
		return 99;
	}
	execv(argv[1], argv + 1);
	perror(argv[1]);
	return 127;
}
"""


def without_pidfd(t):
    """From here on, t runs the binary where pidfd_open fails: sh waits for a command's exit by
    asking waitid every 10 ms instead of polling a pidfd (stdlib/sh.c)."""
    src = t.write("no_pidfd.c", NO_PIDFD)
    exe = t.path("no_pidfd")
    cc = subprocess.run(["cc", "-O2", "-o", exe, src], capture_output=True, text=True, timeout=60)
    if cc.returncode != 0:
        fail("cannot build the no-pidfd launcher:\n" + cc.stderr)
    t.launcher = [exe]


def test_commands_without_pidfd(t):
    # The same two tests, on the path of kernels before 5.3 (or a process out of descriptors).
    without_pidfd(t)
    test_parallel_runs_commands_concurrently(t)
    test_ctrl_c_stops_parallel_commands(t)


def cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read().replace(b"\0", b" ").decode("utf-8", "replace")
    except OSError:
        return ""


def test_parallel_keeps_keys_and_per_task_errors(t):
    closed = free_port()
    v, _, _ = probe(t, '''
local r = parallel {
  up = function() return 42 end,
  down = function() return tcp.connect("127.0.0.1", %d) end,
  broken = function() error("boom") end,
  empty = function() end,
}
emit("up", r.up.value) emit("down", r.down.kind) emit("broken", r.broken.err)
emit("broken_kind", r.broken.kind) emit("empty", r.empty.err)
local arr = parallel({ function() return "a" end, function() return "b" end }, { limit = 1 })
emit("arr", arr[1].value .. arr[2].value)
local ok, err = pcall(parallel, { 1 })
emit("notfn", err)
local y = parallel { function() coroutine.yield(1) end }
emit("yield", y[1].err)''' % closed)
    expect_eq(v["up"], "42")
    expect_eq(v["down"], "refused")
    expect_in("boom", v["broken"])
    expect_eq(v["broken_kind"], "error")
    expect_eq(v["empty"], "returned nothing")
    expect_eq(v["arr"], "ab", "results in input order")
    expect_in("parallel: task 1 is a number, not a function", v["notfn"])
    expect_in("parallel: a task called coroutine.yield", v["yield"])


def test_ctrl_c_stops_parallel_tasks(t):
    port = black_hole(t)
    path = t.write("par.lua", '''local tcp = require "tcp"
return runbook {
  name = "par", summary = "s", severity = "SEV4",
  step "p" { title = "wait on many", run = function(ctx)
    local tasks = {}
    for i = 1, 20 do tasks[i] = function() return tcp.connect("127.0.0.1", %d, { timeout = 60 }) end end
    print("waiting now")
    parallel(tasks)
  end },
}
''' % port)
    p = t.pty(["exec", path, "--auto"])
    p.expect("waiting now")
    expect_fast(interrupt(p, r"Enter: retry") * 1000, 500, "Ctrl-C to stop 20 waiting tasks")
    p.sendline("q")
    expect_eq(p.wait(), 5)
