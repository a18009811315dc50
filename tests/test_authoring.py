"""Authoring runbooks: `runbook new` (the template passes check --strict and runbook test untouched,
--from, never overwrites), `check` as a linter (each rule triggered and not, --strict, --explain, a
comment silencing one rule), `runbook test`'s count line, and `runbook doc --luals` (definitions
that are valid Lua and cover every documented name)."""
import json
import os
import re

from run import expect_eq, expect_in, expect_not_in, expect_rc, fail

RULES = ("unknown-step", "unknown-input", "mutating-probe", "action-without-summary", "action-without-target",
         "unreachable-step", "unused-input", "plain-secret")


# ------------------------------------------------------------------------------------ runbook new
def test_new_passes_check_strict_and_test_untouched(t):
    rc, out, err = t.run(["new", "my-service"])
    expect_rc((rc, out, err), 0, "runbook new")
    path = t.path("runbooks", "my-service.lua")
    expect_in("wrote runbooks/my-service.lua", out)
    with open(path) as f:
        src = f.read()
    for part in ('name     = "my-service"', "inputs = {", 'step "health"', 'step "restart"', "sh.action(argv)",
                 "argv.summary, argv.target", "input.url", "input.argv", "input.duration"):
        expect_in(part, src, "the template")
    expect_not_in("drill = {", src, "the template (its drill is the sibling file)")
    # its drill beside it: the documented form, every part commented, its mode to fill in
    expect_in("wrote runbooks/my-service.drill.lua", out)
    with open(t.path("runbooks", "my-service.drill.lua")) as f:
        drill_src = f.read()
    for part in ("modes = {", "-- down = {", "breaks = function(lab)", "expect = { findings =", "inputs = function(lab, mode)",
                 "healthy = function(lab)", "repair = function(lab)"):
        expect_in(part, drill_src, "the drill template")
    # every part commented in a line: the declarations carry a comment on their own line
    for line in src.splitlines() + drill_src.splitlines():
        if re.match(r"\s*(--\s*)?(name|summary|severity|owner|inputs|modes|what|breaks|expect|healthy|repair)\s*=|"
                    r"\s*step \"|\s*local \w+\s*=\s*require", line):
            if "--" not in line.lstrip().lstrip("-"):
                fail("template line without its comment: %r" % line)
    rc, out, err = t.run(["check", "--strict", "my-service"])
    expect_rc((rc, out, err), 0, "check --strict on the template")
    expect_in("ok    runbooks/my-service.lua (my-service, 2 steps, 3 inputs)\n", out)
    expect_not_in("warning", out)
    rc, out, err = t.run(["test", "my-service"])
    expect_rc((rc, out, err), 0, "runbook test on the template")
    expect_eq(out.splitlines()[-1], "1 passed, 0 failed", "runbook test's last line")
    # it runs, too: the probe finds nothing listening, the action is only shown under --dry-run
    rc, out, err = t.run(["exec", "my-service", "--dry-run", "--auto", "url=http://127.0.0.1:9/health"])
    expect_rc((rc, out, err), 0, "exec --dry-run of the template")
    expect_in("ACTION  restart the service", out)
    expect_in("$ systemctl restart myservice", out)


def test_new_refuses_to_overwrite(t):
    t.write("runbooks/taken.lua", "-- mine\n")
    rc, out, err = t.run(["new", "taken"])
    expect_rc((rc, out, err), 2, "runbook new over an existing file")
    expect_in("runbooks/taken.lua exists; not overwriting it", err)
    with open(t.path("runbooks", "taken.lua")) as f:
        expect_eq(f.read(), "-- mine\n", "the existing file")
    rc, out, err = t.run(["new", "taken", "--from", os.path.join(t.repo, "runbooks", "disk-full.lua")])
    expect_rc((rc, out, err), 2, "runbook new --from over an existing file")


def test_new_from_and_paths(t):
    env = {"RUNBOOK_PATH": os.path.join(t.repo, "runbooks")}
    rc, out, err = t.run(["new", "our-disk", "--from", "disk-full"], env=env)
    expect_rc((rc, out, err), 0, "runbook new --from disk-full")
    with open(t.path("runbooks", "our-disk.lua")) as f:
        src = f.read()
    expect_in('name     = "our-disk"', src)
    expect_not_in('"disk-full"', src)
    rc, out, err = t.run(["check", "--strict", "our-disk"], env=env)
    expect_rc((rc, out, err), 0, "check --strict on the copy")
    expect_in("(our-disk, 8 steps, 13 inputs)", out)
    rc, out, err = t.run(["new", "elsewhere", "team/"])
    expect_rc((rc, out, err), 0, "runbook new NAME DIR/")
    expect_in("wrote team/elsewhere.lua", out)
    rc, out, err = t.run(["new", "x", "team/y.lua"])
    expect_rc((rc, out, err), 2, "a file not named NAME.lua")
    expect_in("must be named x.lua", err)
    rc, out, err = t.run(["new", "bad name"])
    expect_rc((rc, out, err), 2, "a NAME that is not a word")
    rc, out, err = t.run(["new", "y", "--from", "no-such-runbook"], env=env)
    expect_rc((rc, out, err), 2, "--from an unknown runbook")
    expect_in("no runbook named 'no-such-runbook'", err)


# --------------------------------------------------------------------------------------- the linter
def lint(t, body, inputs="", name="lint", strict=True):
    """Writes a runbook with these steps and inputs and checks it; returns (rc, out, rules found)."""
    src = ('local sh = require "sh"\nlocal redis = require "redis"\nlocal http = require "http"\n'
           'return runbook {\n  name = "%s", summary = "lint", severity = "SEV3",\n'
           '  inputs = {\n%s\n  },\n%s\n}\n') % (name, inputs, body)
    path = t.write("lint/%s.lua" % name, src)
    args = ["check", path] if not strict else ["check", "--strict", path]
    rc, out, err = t.run(args)
    if "FAIL  " in out and "[" not in out and rc == 1:
        fail("the runbook did not load:\n" + out + err)
    return rc, out, re.findall(r"^\S+:(\d+): (?:error|warning): .* \[([a-z-]+)\]$", out, re.M)


def rules_of(found):
    return sorted(set(r for _, r in found))


def step(run, sid="one", title="one"):
    return '  step "%s" { title = "%s", run = function(ctx)\n%s\n  end },\n' % (sid, title, run)


def test_rule_unknown_step(t):
    two = step("", "restart", "two")
    rc, out, found = lint(t, step('    if ctx.dry_run then return ctx:jump("restrat") end') + two)
    expect_eq(rules_of(found), ["unknown-step"], "a jump to a misspelt step:\n" + out)
    expect_in("ctx:jump(\"restrat\"): no step 'restrat' (did you mean 'restart'?)", out)
    expect_eq(rc, 1, "exit code (an error)")
    rc, out, _ = lint(t, step('    return ctx:jump("restrat")') + two, strict=False)
    expect_eq(rc, 1, "an error fails without --strict too")
    rc, out, found = lint(t, step('    if ctx.dry_run then return ctx:jump("restart") end') + two)
    expect_eq(rules_of(found), [], "a jump to an existing step:\n" + out)
    expect_eq(rc, 0, "exit code")


def test_rule_unknown_input(t):
    inputs = '    service = input.string { default = "nginx" },'
    rc, out, found = lint(t, step('    ctx:note("%s", ctx.servcie)'), inputs)
    expect_eq(rules_of(found), ["unknown-input", "unused-input"], "a misspelt input:\n" + out)
    expect_in("ctx.servcie: no input 'servcie' (did you mean 'service'?) (inputs: service)", out)
    expect_eq(rc, 1, "exit code")
    rc, out, found = lint(t, step('    ctx.seen = true\n    ctx.state.x = ctx.seen\n'
                                  '    ctx:note("%s %s", ctx.service, tostring(ctx.dry_run))'), inputs)
    expect_eq(rules_of(found), [], "inputs, ctx's own fields and a field a step assigns:\n" + out)


MUTATING = [
    '{ "rm", "-rf", "/var/tmp/cache" }',
    '{ "sudo", "systemctl", "restart", ctx.unit }',
    '{ "systemctl", "--no-block", "stop", "nginx" }',
    '{ "service", "nginx", "reload" }',
    '{ "kubectl", "-n", "prod", "delete", "pod", "web-1" }',
    '{ "kubectl", "rollout", "restart", "deploy/web" }',
    '{ "kubectl", "scale", "--replicas=0", "deploy/web" }',
    '{ "docker", "restart", "web" }',
    '{ "docker", "compose", "down" }',
    '{ "docker-compose", "-f", "x.yml", "stop" }',
    '{ "redis-cli", "-h", "127.0.0.1", "FLUSHALL" }',
    '{ "redis-cli", "config", "set", "maxmemory", "1gb" }',
    '{ "psql", "-c", "DELETE FROM jobs WHERE id = 1" }',
    '{ "psql", "--command=drop table t" }',
    '{ "pkill", "-f", "worker" }',
    '{ "timeout", "5", "kill", "-9", "123" }',
    '{ "sh", "-c", "echo start; systemctl restart nginx" }',
    '{ "truncate", "-s", "0", "/var/log/x.log" }',
    '{ "ip", "route", "del", "default" }',
    '{ "mkfs.ext4", "/dev/sdz1" }',
    '{ "systemctl restart nginx", shell = true }',
    '({ "kill", "1" })',
]
READ_ONLY = [
    '{ "systemctl", "status", "nginx" }',
    '{ "kubectl", "get", "pods" }',
    '{ "kubectl", "-n", "prod", "rollout", "status", "deploy/web" }',
    '{ "docker", "ps" }',
    '{ "redis-cli", "INFO", "memory" }',
    '{ "redis-cli", "GET", "set" }',
    '{ "psql", "-c", "SELECT count(*) FROM pg_stat_activity WHERE state = \'idle\'" }',
    '{ "df", "-h", "/var" }',
    '{ "sh", "-c", "ls /var | wc -l" }',
    '{ "journalctl", "-u", "nginx", "--since", "10 min ago" }',
    '{ "ls", "-l", "/rm" }',
    '{ "echo", "rm -rf /", shell = false }',
]


def test_rule_mutating_probe(t):
    inputs = '    unit = input.string { default = "nginx" },'
    body = "".join(step("    sh.read %s\n    ctx:note(ctx.unit)" % argv, "m%d" % i) for i, argv in enumerate(MUTATING))
    rc, out, found = lint(t, body, inputs)
    lines = sorted(int(l) for l, r in found if r == "mutating-probe")
    expect_eq(len(lines), len(MUTATING), "mutating-probe findings, one per command:\n" + out)
    expect_eq(rules_of(found), ["mutating-probe"], "rules:\n" + out)
    expect_in("sh.read runs 'systemctl restart', which changes state, as a probe (without asking): use sh.action", out)
    expect_in("'kubectl delete'", out)
    expect_in("'redis-cli CONFIG SET'", out)
    expect_in("'psql -c DELETE'", out)
    expect_eq(rc, 1, "--strict fails on the warnings")
    rc, out, _ = lint(t, body, inputs, strict=False)
    expect_eq(rc, 0, "warnings alone do not fail without --strict:\n" + out)
    expect_in("ok    ", out)
    expect_in(": 0 errors, %d warnings" % len(MUTATING), out)
    body = "".join(step("    sh.read %s" % argv, "r%d" % i) for i, argv in enumerate(READ_ONLY))
    rc, out, found = lint(t, body)
    expect_eq(rules_of(found), [], "read-only commands:\n" + out)
    expect_eq(rc, 0, "exit code")


def test_rule_actions_without_summary_or_target(t):
    rc, out, found = lint(t, step('    sh.action { "systemctl", "restart", "nginx" }'))
    expect_eq(rules_of(found), ["action-without-summary", "action-without-target"], "a bare sh.action:\n" + out)
    inputs = '    restart = input.argv { default = { "systemctl", "restart", "x" } },'
    rc, out, found = lint(t, step('    sh.action(ctx.restart)'), inputs)
    expect_eq(rules_of(found), ["action-without-summary", "action-without-target"], "an input's argv:\n" + out)
    rc, out, found = lint(t, step('    local c = redis.connect("redis://127.0.0.1")\n    c:action("FLUSHDB")\n'
                                  '    http.post("http://127.0.0.1/x", { summary = "pause" })'))
    expect_eq(sorted(found, key=lambda f: int(f[0])), [("11", "action-without-summary"), ("12", "action-without-target")],
              "conn:action without a summary (its target defaults), http.post without a target:\n" + out)
    rc, out, found = lint(t, step(
        '    sh.action { "systemctl", "restart", "nginx", summary = "restart nginx", target = "nginx.service" }\n'
        '    local argv = {}\n    for i, w in ipairs(ctx.restart) do argv[i] = w end\n'
        '    argv.summary, argv.target = "restart", "x"\n    sh.action(argv)\n'
        '    local c = redis.connect("redis://127.0.0.1")\n'
        '    c:action("CONFIG", "SET", "maxmemory", "2gb", { summary = "raise maxmemory" })\n'
        '    http.request { url = "http://127.0.0.1/x", method = "DELETE", summary = "drop", target = "x" }'), inputs)
    expect_eq(rules_of(found), [], "actions with a summary and a target:\n" + out)


def test_rule_unreachable_step(t):
    rc, out, found = lint(t, step('    return ctx:resolved("done")') + step("", "two", "two"))
    expect_eq(rules_of(found), ["unreachable-step"], "a step after one that always resolves:\n" + out)
    expect_in("step 2 ('two') is never reached: step 1 ('one') always ends the run or jumps", out)
    rc, out, found = lint(t, step('    if ctx.dry_run then return ctx:escalate("x") end\n'
                                  '    return ctx:jump("three")') + step("", "two", "two") + step("", "three", "three"))
    expect_eq(sorted(found), [("13", "unreachable-step")], "step two skipped by a jump over it:\n" + out)
    for run in ('    if ctx.dry_run then return ctx:resolved("x") end',
                '    if ctx.dry_run then return end\n    return ctx:resolved("x")',
                '    local ok = ctx:wait_until("x", function() return true end)\n    return ctx:resolved("y")'):
        rc, out, found = lint(t, step(run) + step("", "two", "two"))
        if run.endswith('ctx:resolved("y")'):
            # the inner function's return is not the step's: the step still always resolves
            expect_eq(rules_of(found), ["unreachable-step"], "a nested function's return:\n" + out)
        else:
            expect_eq(rules_of(found), [], "a step that may go on (%r):\n%s" % (run, out))
    rc, out, found = lint(t, step('    return ctx:resolved("done")') + step('    return ctx:jump("one")', "two", "two")
                          + step('    return ctx:jump("two")', "three", "three"))
    expect_eq(rules_of(found), ["unreachable-step"], "only three is unreached:\n" + out)
    expect_in("step 3 ('three')", out)


def test_rule_unused_input(t):
    inputs = '    url = input.url { default = "http://127.0.0.1" },\n    forgotten = input.int { default = 3 },'
    rc, out, found = lint(t, step('    ctx:note(ctx.url)'), inputs)
    expect_eq(found, [("8", "unused-input")], "an input nothing reads:\n" + out)
    expect_in("input 'forgotten' is never read (ctx.forgotten)", out)
    rc, out, found = lint(t, step('    ctx:note("%s %d", ctx.url, ctx.forgotten)'), inputs)
    expect_eq(found, [], "both read:\n" + out)


def test_rule_plain_secret(t):
    inputs = ('    api_token = input.string { env = "API_TOKEN" },\n    db_password = input.string { default = "x" },\n'
              '    monkey = input.string { default = "m" },\n    keyspace = input.string { default = "k" },\n'
              '    auth_key = input.secret { env = "AUTH_KEY" },\n    pass_word = input.string { secret = true },')
    rc, out, found = lint(t, step('    ctx:note("%s%s%s%s%s%s", ctx.api_token, ctx.db_password, ctx.monkey, ctx.keyspace, '
                                  'ctx.auth_key, ctx.pass_word)'), inputs)
    expect_eq(sorted(found), [("7", "plain-secret"), ("8", "plain-secret")], "plain-string secrets:\n" + out)
    expect_in("input 'api_token' looks like a secret but is an input.string", out)


def test_a_comment_silences_one_rule(t):
    inputs = '    unit = input.string { default = "x" },'
    rc, out, found = lint(t, step('    sh.read { "systemctl", "restart", ctx.unit } -- runbook: allow mutating-probe (lab only)\n'
                                  '    -- runbook: allow mutating-probe, unused-input (the next line too)\n'
                                  '    sh.read { "rm", "/tmp/x" }\n'
                                  '    sh.read { "kill", "1" } -- runbook: allow unused-input (not this rule)'), inputs)
    expect_eq(found, [("13", "mutating-probe")], "only the line allowing another rule is reported:\n" + out)


def test_check_explain(t):
    for rule in RULES:
        rc, out, err = t.run(["check", "--explain", rule])
        expect_rc((rc, out, err), 0, "--explain " + rule)
        expect_in(rule + " (", out)
        expect_in("Fix:", out)
        expect_in("-- runbook: allow " + rule, out)
    rc, out, err = t.run(["check", "--explain", "mutating-probe"])
    for word in ("systemctl start|stop|restart|reload", "kubectl delete", "docker rm", "redis-cli FLUSHALL",
                 "CONFIG SET", "psql -c", "UPDATE|DELETE|DROP|TRUNCATE"):
        expect_in(word, out, "the documented list")
    rc, out, err = t.run(["check", "--explain", "no-such-rule"])
    expect_rc((rc, out, err), 2, "an unknown rule")
    expect_in("--explain needs a rule: " + ", ".join(RULES), err)


def test_shipped_runbooks_pass_check_strict(t):
    d = os.path.join(t.repo, "runbooks")
    files = sorted(os.path.join(d, f) for f in os.listdir(d) if f.endswith(".lua"))
    rc, out, err = t.run(["check", "--strict"] + files)
    expect_rc((rc, out, err), 0, "check --strict runbooks/*.lua:\n" + out)
    # every exception is named and says why
    for f in files:
        with open(f) as fh:
            for line in fh:
                m = re.search(r"runbook: allow ([a-z-]+)(.*)", line)
                if m:
                    if m.group(1) not in RULES:
                        fail("%s: an exception for no rule: %s" % (f, line))
                    if not re.search(r"\(\w.*\)", m.group(2)):
                        fail("%s: an exception without its reason: %s" % (f, line))


# --------------------------------------------------------------------------------------- runbook test
def test_runbook_test_counts(t):
    rc, out, err = t.run(["new", "good"])
    expect_rc((rc, out, err), 0)
    t.write("runbooks/warned.lua", 'return runbook { name = "warned", summary = "w", severity = "SEV4",\n'
            '  inputs = { unused = input.int { default = 1 } },\n'
            '  step "s" { title = "s", run = function(ctx) end } }\n')
    t.write("runbooks/broken.lua", 'return runbook { name = "broken", summary = "b", severity = "SEV4" }\n')
    rc, out, err = t.run(["test"])
    expect_eq(rc, 1, "runbook test with failures; output:\n" + out + err)
    expect_in("PASS  check --strict runbooks/good.lua", out)
    expect_in("FAIL  check --strict runbooks/warned.lua", out)
    expect_in("FAIL  check --strict runbooks/broken.lua", out)
    expect_eq(out.splitlines()[-1], "1 passed, 2 failed", "the last line")
    rc, out, err = t.run(["test", "good", "warned"])
    expect_eq(out.splitlines()[-1], "1 passed, 1 failed", "the last line, two named")
    rc, out, err = t.run(["test", "--bogus"])
    expect_rc((rc, out, err), 2, "an unknown option")


# ------------------------------------------------------------------------------------------ luals
def lua_literal(text):
    out = []
    for b in text.encode():
        c = chr(b)
        out.append(c if 32 <= b < 127 and c not in '"\\' else "\\%03d" % b)
    return '"' + "".join(out) + '"'


def test_luals_definitions_are_valid_and_complete(t):
    rc, out, err = t.run(["doc", "--luals", "defs"])
    expect_rc((rc, out, err), 0, "doc --luals")
    d = t.path("defs")
    files = sorted(os.listdir(d))
    expect_eq(files, [".luarc.json", "deploy.lua", "http.lua", "logs.lua", "pg.lua", "prometheus.lua", "recipe.lua", "redis.lua",
                      "runbook.lua", "service.lua", "sh.lua", "sys.lua", "tcp.lua"], "files written")
    with open(os.path.join(d, ".luarc.json")) as f:
        rc_json = json.load(f)
    expect_eq(rc_json["workspace.library"], [os.path.realpath(d)], ".luarc.json's library")
    expect_eq(rc_json["runtime.version"], "Lua 5.4", ".luarc.json's runtime")
    texts = {}
    for name in files:
        if name.endswith(".lua"):
            with open(os.path.join(d, name)) as f:
                texts[name] = f.read()
    # valid Lua: each file compiles with the binary's own Lua (load, in the REPL)
    stdin = "".join('do local f, e = load(%s, "=%s") print("@@ %s", f and "ok" or e) end\n'
                    % (lua_literal(text), name, name) for name, text in texts.items())
    rc, out, err = t.run(["repl"], stdin=stdin)
    expect_rc((rc, out, err), 0, "loading the definitions")
    for name in texts:
        expect_in("@@ %s\tok\n" % name, out, "compiling " + name)
    for name, text in texts.items():
        expect_eq(text.splitlines()[0], "---@meta" + ("" if name == "runbook.lua" else " " + name[:-4]), name + " header")
    everything = "\n".join(texts.values())
    # complete: every name `runbook doc` documents has its definition
    rc, out, err = t.run(["doc", "no-such-name"])
    names = err.split("(there is: ")[1].rsplit(")", 1)[0].split(", ")
    for required in ("ctx", "ctx:jump", "input.secret", "runbook", "step", "must", "sh.read", "redis.llen", "fmt.bytes"):
        expect_in(required, names, "runbook doc's names")
    for name in names:
        m = re.fullmatch(r"([\w]+)([.:])(\w+)", name)
        if not m:
            if not re.search(r"^---@class %s$|^function %s\(|^---%s: " % (name, name, name), everything, re.M):
                fail("no definition for %r" % name)
            continue
        mod, _, fn = m.groups()
        if not re.search(r"^function (%s|%s_conn)[.:]%s\(" % (mod, mod, fn), everything, re.M):
            fail("no definition for %r" % name)
    # with types and the one-line docs
    for needle in ("---@field timeout? number|string deadline", "---@param path string", "---@class pg.conn",
                   "---@return pg.conn|nil", "---@field state table a table shared by all steps of the run",
                   "---@field run? fun(ctx: ctx): any", "---@field severity? string", "---@field [integer] step.decl",
                   "---@return string? kind # notfound, permission, timeout, interrupted",
                   "---Continues at step id after this one"):
        expect_in(needle, everything, "the definitions")
    rc, out, err = t.run(["doc", "--luals"])
    expect_rc((rc, out, err), 2, "doc --luals without DIR")


def test_runbook_test_runs_the_drills(t):
    # cert-expiry's drill is standalone (an openssl s_server on 127.0.0.1): no lab to bring up
    env = {"RUNBOOK_PATH": os.path.join(t.repo, "runbooks")}
    rc, out, err = t.run(["test", "cert-expiry"], env=env, timeout=60)
    expect_rc((rc, out, err), 0, "runbook test cert-expiry")
    expect_in("PASS  check --strict cert-expiry\n", out)
    expect_in("drill cert-expiry (expiring)", out)
    expect_in("PASS  drill cert-expiry --mode expiring\n", out)
    expect_eq(out.splitlines()[-1], "2 passed, 0 failed", "the last line")


# ------------------------------------------------------------------- a team's own drill, beside its runbook
FLAG_RUNBOOK = '''local sh = require "sh"
return runbook {
  name = "flag-file", summary = "The service's ready flag is missing", severity = "SEV3", owner = "tests",
  inputs = {
    path   = input.path { default = "/run/myservice/ready", help = "the flag file the service needs" },
    create = input.argv { default = { "touch", "/run/myservice/ready" }, help = "the command that recreates it" },
  },
  step "look" {
    title = "Is the flag there?",
    run = function(ctx)
      local r = must(sh.read { "test", "-e", ctx.path })
      if r.code == 0 then return ctx:resolved("the flag is there") end
      ctx:finding { code = "flag.missing", "no flag file at %s", ctx.path }
    end,
  },
  step "create" {
    title = "Recreate the flag",
    run = function(ctx)
      local argv = {}
      for i, word in ipairs(ctx.create) do argv[i] = word end
      argv.summary, argv.target = "recreate the flag file", ctx.path
      must(sh.action(argv))
      return ctx:resolved("the flag is back")
    end,
  },
}
'''

# Breaks nothing of the lab's servers (standalone): a file under the lab's directory.
FLAG_DRILL = '''local function flag(lab) return lab.dir .. "/flag" end
return {
  standalone = true,
  modes = {
    missing = { what = "the ready flag removed",
                breaks = function(lab) lab.sh("mkdir -p " .. lab.shq(lab.dir) .. " && rm -f " .. lab.shq(flag(lab))) end,
                expect = { findings = { "flag.missing" }, offers = { "create" } } },
  },
  inputs = function(lab) return { path = flag(lab), create = "touch " .. flag(lab) } end,
  healthy = function(lab)
    if lab.read(flag(lab)) then return true end
    return false, "no flag file"
  end,
  repair = function(lab) lab.write(flag(lab), "") end,
}
'''

FLAG_STUB = '''return runbook {
  name = "flag-file", summary = "a stub", severity = "SEV3", owner = "tests",
  inputs = { path = input.path { default = "/x" }, create = input.argv { default = { "true" } } },
  step "at-once" { title = "Done", run = function(ctx)
    local _ = ctx.path, ctx.create
    return ctx:resolved("looks fine to me")
  end },
}
'''


def test_a_new_runbooks_own_drill_runs_and_can_fail(t):
    t.write("mine/flag-file.lua", FLAG_RUNBOOK)
    t.write("mine/flag-file.drill.lua", FLAG_DRILL)
    rb = t.path("mine", "flag-file.lua")
    # runbook drill, by file: the drill beside it breaks, the runbook finds and mends, healthy again
    rc, out, err = t.run(["drill", rb, "--auto", "--yes"], timeout=60)
    expect_rc((rc, out, err), 0, "runbook drill of a team's own runbook")
    expect_in("drill flag-file (missing): the ready flag removed", out)
    expect_in("drill flag-file: the runbook reported flag.missing", out)
    expect_in("drill flag-file: healthy again after", out)
    # by name, through the search path (a drill for a runbook of the user's own directory)
    rc, out, err = t.run(["drill", "flag-file", "--auto", "--yes"], timeout=60, env={"RUNBOOK_PATH": t.path("mine")})
    expect_rc((rc, out, err), 0, "runbook drill flag-file on RUNBOOK_PATH")
    rc, out, err = t.run(["test", rb], timeout=60)
    expect_rc((rc, out, err), 0, "runbook test of a team's own runbook")
    expect_in("PASS  drill flag-file --mode missing\n", out)
    expect_eq(out.splitlines()[-1], "2 passed, 0 failed", "the last line")
    # list, check and show see the runbook only, never its drill as a runbook
    rc, out, err = t.run(["list"], env={"RUNBOOK_PATH": t.path("mine")})
    expect_rc((rc, out, err), 0, "list")
    expect_eq([l.split()[0] for l in out.splitlines()], ["flag-file"], "list's runbooks")
    rc, out, err = t.run(["show", "flag-file.drill"], env={"RUNBOOK_PATH": t.path("mine")})
    expect_eq(rc != 0, True, "show of a drill file fails: " + out + err)
    rc, out, err = t.run(["check", rb, t.path("mine", "flag-file.drill.lua")])
    expect_rc((rc, out, err), 0, "check of a runbook and its drill")
    expect_in("(drill, 1 mode)", out)
    # the same drill against a stub of the same runbook: it reports nothing, the drill fails
    t.write("stub/flag-file.lua", FLAG_STUB)
    env = {"RUNBOOK_PATH": t.path("stub") + ":" + t.path("mine")}
    rc, out, err = t.run(["drill", "flag-file", "--auto", "--yes"], timeout=60, env=env)
    expect_rc((rc, out, err), 1, "the drill against a stub")
    expect_in("drill flag-file (missing): the runbook missed the fault: no finding flag.missing", out)
    rc, out, err = t.run(["test", "flag-file"], timeout=60, env=env)
    expect_rc((rc, out, err), 1, "runbook test against a stub")
    expect_in("FAIL  drill flag-file --mode missing\n", out)
    expect_eq(out.splitlines()[-1], "1 passed, 1 failed", "the last line")


def test_a_drill_file_is_checked(t):
    t.write("mine/flag-file.lua", FLAG_RUNBOOK)
    t.write("mine/flag-file.drill.lua", "return { modes = { gone = { what = 'x', breaks = function() end } }, inputs = function() return {} end }\n")
    rc, out, err = t.run(["drill", t.path("mine", "flag-file.lua"), "--auto", "--yes"])
    expect_rc((rc, out, err), 2, "a drill mode without expect")
    expect_in("mode gone: expect.findings must name the finding codes", err)
    # a drill runs in a sandbox: no io, no os.execute
    t.write("mine/flag-file.drill.lua", "io.open('/tmp/x', 'w')\nreturn {}\n")
    rc, out, err = t.run(["check", t.path("mine", "flag-file.drill.lua")])
    expect_rc((rc, out, err), 1, "a drill file reaching for io")
    expect_in("undefined global 'io'", out)
    # the one documented form is the sibling file: the field form of an earlier template points at it
    t.write("mine/flag-file.lua", FLAG_RUNBOOK.replace('owner = "tests",', 'owner = "tests", drill = {},'))
    rc, out, err = t.run(["check", t.path("mine", "flag-file.lua")])
    expect_rc((rc, out, err), 1, "a runbook with a drill field")
    expect_in("a runbook's drill is the file NAME.drill.lua beside it", out)


def test_no_lab_code_names_a_scenario(t):
    names = sorted(f[:-len(".drill.lua")] for f in os.listdir(os.path.join(t.repo, "runbooks")) if f.endswith(".drill.lua"))
    runbooks = sorted(f[:-4] for f in os.listdir(os.path.join(t.repo, "runbooks"))
                      if f.endswith(".lua") and not f.endswith(".drill.lua"))
    expect_eq(names, runbooks, "every shipped runbook has its drill beside it")
    lab = os.path.join(t.repo, "lab")
    for f in sorted(os.listdir(lab)):
        if f.endswith(".lua"):
            with open(os.path.join(lab, f)) as fh:
                src = fh.read()
            for name in names:
                if re.search(r"(?<![\w-])%s(?![\w-])" % re.escape(name), src):
                    fail("lab/%s names the scenario %r: its drill belongs in runbooks/%s.drill.lua" % (f, name, name))
