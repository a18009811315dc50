"""The shipped runbooks on the inputs a team would give, against the lab (runbook lab up): the
application's own role rather than a superuser, a producer that LPUSHes, a migration that
succeeded, an LRU cache that evicted long ago, a service restarted once, a machine running other
work. Each test asserts what is offered (a plan at the gate, in a step) and what is not."""
import json
import os
import subprocess
import time

from run import expect_eq, expect_in, expect_not_in, fail


def lab(t):
    t.on_cleanup(lambda: t.run(["lab", "down"], timeout=120, check_sanitizer_output=False))
    rc, out, err = t.run(["lab", "up"], timeout=120)
    expect_eq(rc, 0, "lab up: " + out + err)
    with open(t.path("state", "runbook", "lab", "lab.json")) as f:
        return json.load(f)


def execute(t, name, inputs, flags=("--auto", "--yes"), timeout=90):
    before = set(t.transcripts())
    args = ["exec", os.path.join(t.repo, "runbooks", name + ".lua")] + list(flags) + \
           ["%s=%s" % kv for kv in inputs.items()]
    rc, out, err = t.run(args, timeout=timeout)
    new = sorted(set(t.transcripts()) - before)
    if len(new) != 1:
        fail("%s: expected one transcript, got %r\nstdout:\n%s\nstderr:\n%s" % (name, new, out, err))
    return rc, out, err, t.read_transcript(new[0])[2]


def offered(records):
    return [r.get("step") for r in records if r["type"] == "plan"]


def codes(records):
    return {r["code"] for r in records if r.get("code")}


def redis_cli(state, *args):
    return subprocess.run(["redis-cli", "-p", str(state["redis"]["port"])] + list(args), capture_output=True,
                          text=True, timeout=30, check=True).stdout


def psql(state, sql, user="lab"):
    return subprocess.run(["psql", "-X", "-q", "-At", "-h", "127.0.0.1", "-p", str(state["pg"]["port"]), "-U", user,
                           "-d", "postgres", "-c", sql], capture_output=True, text=True, timeout=30, check=True).stdout


# ---------------------------------------------------------------------------------- memory
def hold_memory(t, mib):
    """An unrelated process holding mib MiB (touched), in its own session; returns it once it holds them."""
    code = ("import sys\nb = bytearray(%d * 1024 * 1024)\nfor i in range(0, len(b), 4096): b[i] = 1\n"
            "print('held', flush=True)\nsys.stdin.read()\n") % mib
    p = subprocess.Popen(["python3", "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                         start_new_session=True)
    t.on_cleanup(lambda: (p.kill(), p.wait()))
    expect_eq(p.stdout.readline().strip(), "held", "the unrelated process holds its memory")
    return p


def test_memory_drill_beside_a_larger_unrelated_process(t):
    other = hold_memory(t, 700)       # larger than the drill's 400M hog
    env = {"RUNBOOK_PATH": os.path.join(t.repo, "runbooks")}
    rc, out, err = t.run(["drill", "memory-pressure", "--auto", "--yes"], env=env, timeout=120)
    expect_eq(other.poll(), None, "the unrelated process is untouched; stdout:\n" + out)
    expect_not_in("pid %d" % other.pid, out)
    expect_in("✖ runbook-lab-hog (pid ", out)
    expect_eq(rc, 0, out + err)


def test_memory_nothing_offered_below_the_threshold(t):
    other = hold_memory(t, 300)
    # A team names its service; memory is far below the default 85% warning on this machine.
    rc, out, err, recs = execute(t, "memory-pressure", {"match": "python3", "hog_pct": 1})
    expect_eq(offered(recs), [], "no kill when memory is not under pressure; stdout:\n" + out)
    expect_in("stopping it is not called for", out)
    expect_eq(other.poll(), None, "untouched")
    expect_eq(rc, 0, out + err)
    # Without match=, nothing is a candidate at all, however low the thresholds.
    rc, out, err, recs = execute(t, "memory-pressure", {"warn": 1, "hog_pct": 1})
    expect_eq(offered(recs), [], "no match=, no candidate")
    expect_in("match= not given", out)
    expect_eq(other.poll(), None, "untouched")


# ------------------------------------------------------------------------------- migrations
ALEMBIC_INI = "[alembic]\nscript_location = migrations\n"
ENV_PY = "raise SystemExit('the tests only ask alembic for its heads')\n"
REVISION = '''revision = "%s"
down_revision = %s
branch_labels = None
depends_on = None
def upgrade(): pass
def downgrade(): pass
'''


def alembic_project(t):
    """A real Alembic project (its heads read by the real `alembic heads`): a1b2c3 then d4e5f6."""
    t.write("proj/alembic.ini", ALEMBIC_INI)
    t.write("proj/migrations/env.py", ENV_PY)
    t.write("proj/migrations/script.py.mako", "")
    t.write("proj/migrations/versions/a1b2c3_init.py", REVISION % ("a1b2c3", "None"))
    t.write("proj/migrations/versions/d4e5f6_orders.py", REVISION % ("d4e5f6", '"a1b2c3"'))
    return t.path("proj")


def at_a1b2c3(state):
    psql(state, "DROP TABLE IF EXISTS orders; DROP TABLE IF EXISTS alembic_version; "
                "CREATE TABLE alembic_version (version_num varchar(32) PRIMARY KEY); "
                "INSERT INTO alembic_version VALUES ('a1b2c3')")


def psql_cmd(state, sql):
    return "psql -X -q -h 127.0.0.1 -p %d -U lab -d postgres -c \"%s\"" % (state["pg"]["port"], sql)


def test_migration_that_succeeded_is_never_rolled_back(t):
    state = lab(t)
    proj = alembic_project(t)
    at_a1b2c3(state)
    inputs = {"url": state["pg"]["url"], "workdir": proj, "relations": "orders",
              "migrate": psql_cmd(state, "CREATE TABLE orders (id int); UPDATE alembic_version SET version_num = 'd4e5f6'"),
              "downgrade": psql_cmd(state, "DROP TABLE orders; UPDATE alembic_version SET version_num = 'a1b2c3'")}
    rc, out, err, recs = execute(t, "migration-failure", inputs)
    expect_in("the database is at a1b2c3, the code expects d4e5f6", out)   # from `alembic heads`
    expect_eq(offered(recs), ["migrate"], "the upgrade, and no rollback after it succeeded; stdout:\n" + out)
    expect_eq(psql(state, "SELECT version_num FROM alembic_version").strip(), "d4e5f6")
    expect_eq(rc, 0, out + err)


def test_migration_failed_upgrade_offers_the_rollback(t):
    state = lab(t)
    proj = alembic_project(t)
    at_a1b2c3(state)
    inputs = {"url": state["pg"]["url"], "workdir": proj, "migrate": "false",
              "downgrade": psql_cmd(state, "UPDATE alembic_version SET version_num = 'a1b2c3'")}
    rc, out, err, recs = execute(t, "migration-failure", inputs, flags=("--auto", "--yes", "--dry-run"))
    expect_eq(offered(recs), ["migrate"], "dry run: the upgrade is only shown, so it did not fail")
    rc, out, err, recs = execute(t, "migration-failure", inputs)
    expect_in("migration.upgrade_failed", codes(recs))
    expect_eq(offered(recs), ["migrate", "rollback"], "a failed upgrade offers the rollback")
    expect_in("not run: --yes does not confirm an irreversible action", out)
    expect_eq(rc, 3, "the rollback declined (irreversible), the run escalates: still behind; stdout:\n" + out)


def test_migration_target_unknown_escalates(t):
    state = lab(t)
    at_a1b2c3(state)
    t.write("empty/README", "no alembic.ini here\n")
    rc, out, err, recs = execute(t, "migration-failure", {"url": state["pg"]["url"], "workdir": t.path("empty")})
    expect_in("migration.target_unknown", codes(recs))
    expect_eq(offered(recs), [], "nothing offered on an unknown target")
    expect_in("escalated: target unknown", out)
    expect_eq(rc, 3, out + err)


# --------------------------------------------------------------------- database-unavailable
def fill_with_app_role(t, state):
    """Idle sessions of the application's role until PostgreSQL refuses it (superuser slots left)."""
    procs = []
    for _ in range(45):
        p = subprocess.Popen(["psql", "-X", "-q", "-h", "127.0.0.1", "-p", str(state["pg"]["port"]), "-U", "app",
                              "-d", "postgres"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True)
        procs.append(p)
    t.on_cleanup(lambda: [(p.kill(), p.wait()) for p in procs])
    deadline = time.monotonic() + 30
    while int(psql(state, "SELECT count(*) FROM pg_stat_activity WHERE usename = 'app'") or 0) < 37:
        if time.monotonic() > deadline:
            fail("the application's role did not fill the connection slots")
        time.sleep(0.1)   # poll interval of a bounded wait, not a synchronisation
    time.sleep(1.2)       # older than idle_age=1s
    return procs


def test_database_full_with_the_application_role(t):
    state = lab(t)
    fill_with_app_role(t, state)
    inputs = {"url": state["pg"]["app_url"], "idle_age": "1s", "timeout": "2s"}
    rc, out, err, recs = execute(t, "database-unavailable", inputs)
    expect_in("pg.connections_full", codes(recs))
    expect_in("pg.slots_reserved", codes(recs))
    expect_in("reserved for superusers", out)
    expect_in("admin_url=", out)
    expect_eq(offered(recs), [], "no remediation without a role that may end sessions")
    expect_eq(rc, 3, "escalated, asking for admin_url, rather than failing; stdout:\n" + out + err)
    inputs["admin_url"] = state["pg"]["url"]
    rc, out, err, recs = execute(t, "database-unavailable", inputs)
    expect_eq(offered(recs), ["idle"], "with admin_url: the idle sessions are terminated; stdout:\n" + out)
    expect_eq(rc, 0, out + err)


# -------------------------------------------------------------------------------- redis
def test_redis_old_evictions_are_not_a_finding_and_maxmemory_is_persisted(t):
    state = lab(t)
    # An LRU cache that evicted keys an hour ago, and has room now.
    redis_cli(state, "CONFIG", "SET", "maxmemory-policy", "allkeys-lru")
    redis_cli(state, "CONFIG", "SET", "maxmemory", "2mb")
    redis_cli(state, "EVAL", "for i = 1, 30000 do redis.call('SET', 'k:' .. i, string.rep('x', 200)) end", "0")
    redis_cli(state, "CONFIG", "SET", "maxmemory", "64mb")
    expect_eq(int(redis_cli(state, "INFO", "stats").split("evicted_keys:")[1].split()[0]) > 0, True, "keys were evicted")
    inputs = {"url": state["redis"]["url"], "sample": "1s", "timeout": "2s", "maxmemory": "128mb"}
    rc, out, err, recs = execute(t, "redis-failure", inputs)
    expect_eq("redis.evicting" in codes(recs), False, "no eviction within the sample; stdout:\n" + out)
    expect_not_in("evicted since start", out)
    expect_in("the counter is cumulative", out)
    expect_eq(offered(recs), [], "nothing to fix")
    expect_eq(rc, 0, out + err)
    # Full again: maxmemory is raised (CONFIG SET), then persisted as a separate action (CONFIG REWRITE).
    redis_cli(state, "CONFIG", "SET", "maxmemory", "2mb")
    redis_cli(state, "EVAL", "for i = 1, 30000 do redis.call('SET', 'k:' .. i, string.rep('x', 200)) end", "0")
    rc, out, err, recs = execute(t, "redis-failure", inputs)
    expect_eq(offered(recs), ["flush", "maxmemory", "persist"], "stdout:\n" + out)
    with open(os.path.join(state["redis"]["dir"], "redis.conf")) as f:
        expect_in("maxmemory 128mb", f.read())
    expect_eq(rc, 4, "FLUSHDB declined under --yes")


# -------------------------------------------------------------------------------- queues
def test_queue_oldest_job_from_the_producers_end(t):
    state = lab(t)
    now = int(time.time())
    for producer in ("lpush", "rpush"):
        redis_cli(state, "DEL", "jobs")
        for i in range(1, 21):   # job 1 enqueued 20 minutes ago, job 20 a minute ago
            redis_cli(state, producer.upper(), "jobs", '{"id":%d,"enqueued_at":%d}' % (i, now - (21 - i) * 60))
        inputs = {"url": state["redis"]["url"], "queue": "jobs", "watch": "1s", "producer": producer,
                  "restart": "true"}
        rc, out, err, recs = execute(t, "queue-backlog", inputs, flags=("--auto", "--dry-run"))
        expect_in('oldest job: {"id":1,', out, producer)
        expect_in("WARNING age of the oldest job: 20m", out, producer)
        expect_in("queue.age", codes(recs))
        expect_eq(offered(recs), ["restart"], producer)


# ---------------------------------------------------------------------------------- api
def test_api_one_restart_is_not_a_loop(t):
    state = lab(t)
    rc, out, err = t.run(["lab", "restart", "api"], timeout=60)
    expect_eq(rc, 0, out + err)
    base = {"url": state["api"]["url"] + "/health", "database": state["pg"]["app_url"],
            "cache": state["redis"]["url"], "process": "lab serve", "timeout": "2s"}
    rc, out, err, recs = execute(t, "api-down", base)
    expect_not_in("may be restarting in a loop", out)     # what a young process alone once meant
    expect_not_in("it is restarting in a loop", out)
    expect_eq("api.restart_loop" in codes(recs), False)
    expect_eq(offered(recs), [], "healthy: nothing offered")
    expect_eq(rc, 0, out + err)
    # The lab's own restart counter (the platform's), watched over a window: 1 restart before, none during.
    inputs = dict(base, restarts="%s lab restarts api" % t.binary, window="2s")
    rc, out, err, recs = execute(t, "api-down", inputs)
    expect_in("no restart in 2 s (counter at 1)", out)
    expect_eq("api.restart_loop" in codes(recs), False)
    # A counter that moves within the window is a loop, and a restart by hand is not offered.
    counter = t.write("restarts.sh", 'n=$(cat "$0.n" 2>/dev/null || echo 4); n=$((n+1)); echo $n > "$0.n"; echo $n\n')
    rc, out, err = t.run(["lab", "stop", "api"], timeout=60)
    inputs = dict(base, restarts="sh " + counter, window="1s")
    rc, out, err, recs = execute(t, "api-down", inputs)
    expect_in("api.restart_loop", codes(recs))
    expect_in("it is restarting in a loop", out)
    expect_eq(offered(recs), [], "no restart offered while it loops; stdout:\n" + out)


# A real Django project (Debian's python3-django, python3-psycopg2): the code's plan is what
# `manage.py showmigrations --plan` prints, the migrate command is Django's own.
DJANGO_SETTINGS = '''SECRET_KEY = "test"
INSTALLED_APPS = ["shop"]
USE_TZ = True
DATABASES = {"default": {"ENGINE": "django.db.backends.postgresql", "NAME": "postgres", "USER": "lab",
                         "HOST": "127.0.0.1", "PORT": "%d"}}
'''
MANAGE = '''import os, sys
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "settings")
from django.core.management import execute_from_command_line
execute_from_command_line(sys.argv)
'''
MIGRATION = '''from django.db import migrations, models
class Migration(migrations.Migration):
    initial = %s
    dependencies = [%s]
    operations = [migrations.CreateModel(name="%s", fields=[("id", models.AutoField(primary_key=True))])]
'''
PY = "/usr/bin/python3"   # Debian's, which has django and psycopg2


def django_project(t, state):
    t.write("dj/settings.py", DJANGO_SETTINGS % state["pg"]["port"])
    t.write("dj/manage.py", MANAGE)
    t.write("dj/shop/__init__.py", "")
    t.write("dj/shop/migrations/__init__.py", "")
    t.write("dj/shop/migrations/0001_initial.py", MIGRATION % ("True", "", "Customer"))
    t.write("dj/shop/migrations/0002_orders.py", MIGRATION % ("False", '("shop", "0001_initial")', "Order"))
    return t.path("dj")


def test_django_migration_from_the_plan_and_not_rolled_back(t):
    state = lab(t)
    proj = django_project(t, state)
    # The database at 0001: the deploy's migrate did not run.
    subprocess.run([PY, "manage.py", "migrate", "shop", "0001"], cwd=proj, check=True, capture_output=True, timeout=60)
    inputs = {"url": state["pg"]["url"], "workdir": proj, "heads": PY + " manage.py showmigrations --plan",
              "migrate": PY + " manage.py migrate", "downgrade": PY + " manage.py migrate shop 0001"}
    rc, out, err, recs = execute(t, "migration-failure", inputs)
    expect_in("1 migrations pending up to shop.0002_orders", out)
    expect_in("migration.behind", codes(recs))
    expect_eq(offered(recs), ["migrate"], "migrate, and no rollback once it succeeded; stdout:\n" + out)
    expect_in("resolved: django at shop.0002_orders", out)
    expect_eq(rc, 0, out + err)
    expect_eq(psql(state, "SELECT to_regclass('shop_order') IS NOT NULL").strip(), "t", "Django migrated for real")


def test_memory_never_offers_the_runbooks_own_ancestors(t):
    # The operator's own tooling is large (a Python wrapper holding 300 MiB) and matches: it runs the
    # runbook, so it is never a candidate, even past every threshold.
    code = ("import subprocess, sys\nb = bytearray(300 * 1024 * 1024)\nfor i in range(0, len(b), 4096): b[i] = 1\n"
            "r = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
            "print(r.returncode)\nprint(r.stdout)\nprint(r.stderr)\n")
    argv = ["python3", "-c", code, t.binary, "exec", os.path.join(t.repo, "runbooks", "memory-pressure.lua"),
            "--auto", "--yes", "match=python3", "warn=1", "hog_pct=1"]
    p = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=t.environ(), cwd=t.dir)
    if p.returncode != 0:
        fail("the runbook's own ancestor was stopped (exit %s)" % p.returncode)
    rc, out = p.stdout.split("\n", 1)
    expect_not_in("ACTION", out, "no action offered against an ancestor")
    expect_in("no process matching 'python3' holds more than 1% of memory", out)
    expect_eq(rc, "0", out + p.stderr)
