"""A DNS server that never answers: each probe's deadline covers the name lookup too.

The binary runs in network and mount namespaces of its own (`unshare`, util-linux; with a user
namespace when not root), where /etc/resolv.conf names a server on 127.0.0.1:53 that reads every
query and answers none, and /etc/nsswitch.conf sends host names to files, then DNS. The resolver
would wait 30 s a try; tcp, pg, redis and http must each give up at their own deadline, one after
another, and all five at once inside parallel(). The fifth is pg through a service file
(service=name), whose host libpq would otherwise look up itself, with the blocking resolver."""
from run import expect_eq, expect_in, fail, run_inside
from steps import expect_within, window

DEADLINE_MS = 700

# The loopback interface of a new network namespace is down: bring it up.
LOOPBACK_UP = r'''
python3 -c '
import fcntl, socket, struct
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
flags = struct.unpack("16sH", fcntl.ioctl(s, 0x8913, struct.pack("16sH", b"lo", 0)))[1]  # SIOCGIFFLAGS
fcntl.ioctl(s, 0x8914, struct.pack("16sH", b"lo", flags | 1))                          # IFF_UP'
'''

# Runs as root in the new namespaces: loopback up, the mute server, the resolver pointed at it.
INNER = "set -e\n" + LOOPBACK_UP + r'''
mount --bind resolv.conf /etc/resolv.conf
mount --bind nsswitch.conf /etc/nsswitch.conf
mkfifo ready
python3 -c '
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 53))
open(sys.argv[1], "w").write("bound\n")
while True:
    s.recv(4096)' ready &
mute=$!
read bound < ready
set +e
"$@"
rc=$?
kill $mute
exit $rc
'''

RUNBOOK = '''local tcp, pg, redis, http = require "tcp", require "pg", require "redis", require "http"
local T = "%dms"
local probes = {
  tcp   = function() return tcp.connect("db.runbook.invalid", 5432, { timeout = T }) end,
  pg    = function() return pg.connect("postgresql://u@db.runbook.invalid/x", { timeout = T }) end,
  pg_service = function() return pg.connect("service=main dbname=x", { timeout = T }) end,
  redis = function() return redis.connect("redis://cache.runbook.invalid:6379", { timeout = T }) end,
  http  = function() return http.get("http://api.runbook.invalid/health", { timeout = T }) end,
}
local order = { "tcp", "pg", "pg_service", "redis", "http" }
return runbook { name = "dns", summary = "a mute DNS server", severity = "SEV4",
  step "one_by_one" { title = "one after another", run = function(ctx)
    for _, name in ipairs(order) do
      local ok, err, kind = probes[name]()
      print(string.format("@@ %%s %%s %%s", name, tostring(kind), err))
    end
  end },
  step "at_once" { title = "all at once", run = function(ctx)
    local r = parallel(probes)
    for _, name in ipairs(order) do print(string.format("@@@ %%s %%s %%s", name, r[name].kind, r[name].ms)) end
  end },
}
''' % DEADLINE_MS


def test_deadlines_cover_a_dns_server_that_never_answers(t):
    t.write("resolv.conf", "nameserver 127.0.0.1\noptions timeout:30 attempts:2\n")
    t.write("nsswitch.conf", "hosts: files dns\n")
    t.write("dns.lua", RUNBOOK)
    t.write("pg_service.conf", "[main]\nhost=replica.runbook.invalid\nuser=u\n")
    cast = t.path("dns.cast")
    p = run_inside(t, INNER, "dns.lua", cast, "a DNS server that never answers",
                   {"PGSERVICEFILE": t.path("pg_service.conf")})

    one_by_one = {}
    for line in p.stdout.splitlines():
        if line.startswith("@@ "):
            name, kind, err = line[3:].split(" ", 2)
            one_by_one[name] = (kind, err)
    expect_eq(sorted(one_by_one), ["http", "pg", "pg_service", "redis", "tcp"], "probes reported")
    for name, (kind, err) in one_by_one.items():
        expect_eq(kind, "timeout", "%s: %s" % (name, err))
    expect_in("resolving db.runbook.invalid", one_by_one["pg"][1])
    expect_in("pg.connect replica.runbook.invalid:5432/x: timed out after %d ms resolving replica.runbook.invalid"
              % DEADLINE_MS, one_by_one["pg_service"][1])
    expect_in("resolving cache.runbook.invalid", one_by_one["redis"][1])
    expect_in("name lookup timed out", one_by_one["tcp"][1])
    expect_in("resolving the host name", one_by_one["http"][1])

    # The deadline, measured by the transcript's monotonic durations: each probe alone, and the four at once.
    _, _, records = t.read_transcript(cast)
    probes = [r for r in records if r.get("type") == "probe"]
    expect_eq(len(probes), 10, "probe records")
    low, high = window(DEADLINE_MS)
    for r in probes:
        if not low <= r["duration_ms"] <= high:
            fail("%s took %.0f ms for a %d ms deadline" % (r["primitive"], r["duration_ms"], DEADLINE_MS))
    steps = {r["step"]: r["duration_ms"] for r in records if r.get("type") == "step_end"}
    if not steps["at_once"] <= high:
        fail("five lookups in parallel took %d ms, not one deadline (%d ms)" % (steps["at_once"], DEADLINE_MS))
    print("    one after another: %s ms; at once: %d ms" % (
        ", ".join("%.0f" % r["duration_ms"] for r in probes[:5]), steps["at_once"]))


# A name with two addresses, both a listener whose accept queue is full (SYNs dropped): the
# addresses share the deadline, so the second is tried before it runs out.
INNER_TWICE = "set -e\n" + LOOPBACK_UP + r'''
mount --bind hosts /etc/hosts
mount --bind nsswitch.conf /etc/nsswitch.conf
mkfifo ready
python3 -c '
import socket, sys
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(0)
fillers = []
for _ in range(4):
    c = socket.socket()
    c.setblocking(False)
    c.connect_ex(s.getsockname())
    fillers.append(c)
mute = socket.socket()
mute.bind(("127.0.0.1", 0))
mute.listen(8)
open(sys.argv[1], "w").write("%d %d\n" % (s.getsockname()[1], mute.getsockname()[1]))
kept = []
while True:
    c, _ = mute.accept()
    kept.append(c)
    open("accepted", "a").write("1\n")' ready &
servers=$!
read port mute < ready
set +e
"$@" port=$port mute=$mute
rc=$?
kill $servers
exit $rc
'''

TWICE = '''local tcp, pg, redis = require "tcp", require "pg", require "redis"
local T = "%dms"
return runbook { name = "twice", summary = "a name with two addresses that do not answer", severity = "SEV4",
  inputs = { port = input.string { required = true }, mute = input.string { required = true } },
  step "each" { title = "each module", run = function(ctx)
    local host = "twice.runbook.test"
    local calls = {
      tcp   = function() return tcp.connect(host, tonumber(ctx.port), { timeout = T }) end,
      pg    = function() return pg.connect("postgresql://u@" .. host .. ":" .. ctx.port .. "/x", { timeout = T }) end,
      redis = function() return redis.connect("redis://" .. host .. ":" .. ctx.port, { timeout = T }) end,
      -- a listener that accepts and says nothing: the first address answered, and keeps the time
      pg_mute = function() return pg.connect("postgresql://u@" .. host .. ":" .. ctx.mute .. "/x", { timeout = T }) end,
      -- 127.0.0.1 does not answer, then 127.0.0.2 (nothing bound there) refuses
      tcp_mixed = function() return tcp.connect("mixed.runbook.test", tonumber(ctx.port), { timeout = T }) end,
      pg_mixed = function() return pg.connect("postgresql://u@mixed.runbook.test:" .. ctx.port .. "/x", { timeout = T }) end,
      redis_mixed = function() return redis.connect("redis://mixed.runbook.test:" .. ctx.port, { timeout = T }) end,
    }
    for _, name in ipairs { "tcp", "pg", "redis", "pg_mute", "tcp_mixed", "pg_mixed", "redis_mixed" } do
      local ok, err, kind = calls[name]()
      print(string.format("@@ %%s %%s %%s", name, tostring(kind), err))
    end
  end },
}
''' % DEADLINE_MS


def test_a_name_s_addresses_share_the_deadline(t):
    t.write("hosts", "127.0.0.1 twice.runbook.test\n127.0.0.1 twice.runbook.test\n"
                     "127.0.0.1 mixed.runbook.test\n127.0.0.2 mixed.runbook.test\n")
    t.write("nsswitch.conf", "hosts: files\n")
    t.write("twice.lua", TWICE)
    cast = t.path("twice.cast")
    p = run_inside(t, INNER_TWICE, "twice.lua", cast, "addresses that never answer")
    said = {}
    for line in p.stdout.splitlines():
        if line.startswith("@@ "):
            name, kind, err = line[3:].split(" ", 2)
            said[name] = (kind, err)
    expect_eq(sorted(said), ["pg", "pg_mixed", "pg_mute", "redis", "redis_mixed", "tcp", "tcp_mixed"],
              "calls reported")
    for name, (kind, err) in said.items():
        if name.endswith("_mixed"):   # the refusal is the answer, and the silence before it is told
            expect_eq(kind, "refused", "%s: %s" % (name, err))
            expect_in("(before it, 1 address did not answer in its share of the time)", err)
            continue
        expect_eq(kind, "timeout", "%s: %s" % (name, err))
        if name != "pg_mute":
            expect_in("; 2 addresses tried)", err)
    # An address's share covers its TCP handshake only: one that was let in is not left for the next.
    expect_in("waiting for the server to let us in", said["pg_mute"][1])
    expect_eq(open(t.path("accepted")).read().count("\n"), 1, "connections the mute listener saw")
    _, _, records = t.read_transcript(cast)
    probes = [r for r in records if r.get("type") == "probe"]
    expect_eq(len(probes), 7, "probe records")
    for r in probes:   # the mixed name: its first address's share, half the time, then the refusal
        expect_within(r["duration_ms"], DEADLINE_MS // 2 if "mixed" in r["target"] else DEADLINE_MS,
                      "%s %s" % (r["primitive"], r["target"]))
    print("    two silent addresses: %s ms" % ", ".join("%.0f" % r["duration_ms"] for r in probes))
