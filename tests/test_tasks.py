"""parallel() and tcp.connect: tasks run concurrently from one thread, each bounded by its own
deadline; results keep their keys; errors stay per task; Ctrl-C stops them all."""
import time

from run import black_hole, expect_eq, expect_in, fail, free_port, listener
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
