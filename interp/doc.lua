-- doc.lua - the Lua API reference of the modules runbooks require (native, or written in Lua like
-- prometheus.lua): one entry per primitive, and the one source of truth for `help(x)` and
-- `:help name` in the REPL, `runbook doc [NAME]`, doc/lua-api.md and the man page runbook-lua(7)
-- (man.lua; `make docs` regenerates both, tests/test_docs.py fails while they are stale). It also
-- holds the guide to writing a runbook (M.guide) that the last two show before the API.
--
-- Format. M.modules is a list, in the order the reference shows them, of
--   { name = "sh",                      -- the require name, also the REPL global
--     title = "commands",               -- a few words: "### `sh`: commands"
--     intro = [[Markdown]],             -- optional: before the functions
--     notes = [[Markdown]],             -- optional: after them (deadlines, Ctrl-C, ...)
--     functions = { entry, ... } }
-- and each entry is
--   { name = "sh.read",                 -- module.function: what help() and :help take
--     call = "sh.read { argv..., OPTIONS }",
--                                       -- how it is called; OPTIONS becomes "timeout = 10, ..."
--     summary = "One or two sentences.",
--     options = { { "timeout", "10", "what it does" }, ... },
--                                       -- name, default as Lua source ("" = none), meaning;
--                                       -- in the order the signature shows them
--     returns = "the result, in Lua terms",
--     kinds = { "timeout", ... },       -- the kinds of its `nil, err, kind` (none: {})
--     example = [[Lua]] }               -- a few lines that run in the REPL as they are
-- Text is plain Markdown: `code`, no HTML. Keep defaults in step with the C source (the option
-- tables at the top of each stdlib/*.c).
local M = {}

local DURATION = "seconds, or a duration such as \"500ms\", \"2s\", \"5m\""

M.modules = {
  {
    name = "sh", title = "commands",
    intro = [[argv is an array, never a shell string, unless `shell = true` (then the one string is run by
`/bin/sh -c`). The command runs in a session of its own, without a controlling terminal (opening
`/dev/tty` fails, so it cannot type into the operator's terminal), with stdin from `/dev/null`; at the
deadline its session gets SIGTERM, then SIGKILL after `grace`; Ctrl-C stops it at once. When it ends,
whatever it left running is ended too: the rest of its session, and the processes it started and
abandoned (a background job, a double fork, a daemon that called `setsid`: runbook is their child
subreaper meanwhile), with their descendants. Only `sh.action { ..., leave_running = true }` keeps what
it starts (a restart that starts a daemon itself), and the gate says so. A process that SIGKILL does
not end within a second is stuck in the kernel (I/O on a dead disk): it is left behind, and the message
gives its pid. Output is streamed live and captured.

`on = target` runs the command where the service lives: `ssh://[user@]host[:port]` (OpenSSH, with
`BatchMode=yes`, `StrictHostKeyChecking=yes` and a master connection kept 60 s), `inventory:GROUP` (the
hosts of an Ansible inventory group: `--inventory FILE` or `$RUNBOOK_INVENTORY`), `compose://[DIR:]SERVICE`
(`docker compose exec -T`), `k8s://[CONTEXT/]NS/KIND/NAME` and `k8s://NS/pods?l=SELECTOR` (`kubectl exec`).
A runbook declares it with `input.target { default = "local", env = "X_ON" }`. The argv is quoted once
for the remote shell, and the gate shows it so. One deadline covers connect, auth and the command. A
fleet (inventory, selector) runs on all its hosts at once (`limit` at a time) and returns
`{ by_host, ok, failed, unreachable, not_run, groups }`, `groups` folding identical outputs with their
hosts as `web[01-04]`. See doc/reach.md.]],
    functions = {
      {
        name = "sh.read",
        call = "sh.read { argv..., OPTIONS }",
        summary = "Runs a read-only command and captures its output. A non-zero exit is a result " ..
                  "(`ok = false`), not an error, unless `check = true`. Inside `parallel` commands run " ..
                  "side by side.",
        options = {
          { "timeout", "10", "deadline (" .. DURATION .. ")" },
          { "grace", "1", "between SIGTERM and SIGKILL at the deadline" },
          { "quiet", "false", "do not stream the output to the terminal (it is still captured)" },
          { "shell", "false", "argv is one string for `/bin/sh -c`" },
          { "cwd", "", "working directory" },
          { "env", "{}", "variables added to the inherited environment: `{ NAME = \"value\" }`" },
          { "check", "false", "a non-zero exit is an error of kind `exit`" },
          { "max_output", "1048576", "bytes captured per stream; the rest is dropped (`truncated = true`)" },
          { "on", "\"local\"", "where it runs: a target (`cwd` and `env` are local only)" },
          { "limit", "50", "a fleet: how many hosts at once" },
        },
        returns = "`{ argv, code, signal, ok, stdout, stderr, ms, truncated }` (with `host` on a target); " ..
                  "on a fleet `{ by_host, ok, failed, unreachable, not_run, groups }`, each group " ..
                  "`{ nodes, count, hosts, output, code, kind, err }`",
        kinds = { "timeout", "interrupted", "notfound", "permission", "exit", "unreachable", "hostkey", "auth", "refused" },
        example = [[local r = sh.read { "df", "-h", "/var", quiet = true }
print(r.ok, r.stdout)]],
      },
      {
        name = "sh.action",
        call = "sh.action { argv..., OPTIONS }",
        summary = "Runs a command that changes something, through the action gate: it is shown, " ..
                  "asked for on the terminal (`yes`, or the target typed back when irreversible) and " ..
                  "recorded before it runs. Declined, it skips the step; under `--dry-run` it is only shown.",
        options = {
          { "summary", "", "one line saying what it does (the gate shows it above the command)" },
          { "target", "", "what it acts on; typed back to confirm when irreversible" },
          { "irreversible", "false", "ask for the target instead of `yes` (needs `target`)" },
          { "blast", "", "the measured impact, shown with the question" },
          { "timeout", "120", "deadline (" .. DURATION .. ")" },
          { "check", "true", "a non-zero exit is an error of kind `exit`" },
          { "leave_running", "false", "keep the processes it leaves running when it ends (a daemon it " ..
                                      "starts); the gate shows it. `sh.read` has no such option" },
          { "batch", "", "a fleet: hosts per batch, a count or a percentage (\"25%\"); default all at once" },
          { "max_fail", "0", "a fleet: failures tolerated before the next batches are not run" },
          { "pause", "0", "a fleet: between two batches (" .. DURATION .. ")" },
          { "...", "", "and the other options of `sh.read` (`on`, `limit`)" },
        },
        returns = "the result of `sh.read`, or `{ dry_run = true, command }` under `--dry-run`; on a fleet, " ..
                  "one question for all its hosts (irreversible: the host count typed back), and the fleet " ..
                  "result, or `nil, err, \"exit\", result` when a host failed (the hosts not run are in `not_run`)",
        kinds = { "timeout", "interrupted", "notfound", "permission", "exit", "refused", "unreachable", "hostkey", "auth" },
        example = [[sh.action { "systemctl", "restart", "nginx", summary = "restart nginx",
            target = "nginx.service" }]],
      },
    },
  },
  {
    name = "sys", title = "the machine",
    functions = {
      {
        name = "sys.filesystems",
        call = "sys.filesystems { OPTIONS }",
        summary = "The mounted filesystems, as `df` shows them. Pseudo filesystems, snap/CD images and " ..
                  "bind-mount duplicates are left out unless `all`; network ones come only with `network`.",
        options = {
          { "all", "false", "every mount, pseudo and duplicates included" },
          { "network", "false", "include NFS, CIFS and other network filesystems" },
          { "timeout", "5", "deadline for the whole list (" .. DURATION .. ")" },
          { "on", "\"local\"", "a target: its `/proc/self/mountinfo`, then `stat -f` of the mounts chosen as here " ..
            "(a hung server there costs the whole deadline)" },
        },
        returns = "`{ fs, ..., unanswered }`, each fs `{ mount, device, fstype, size, used, avail, used_pct, " ..
                  "inodes, inodes_used, inodes_free, inodes_pct, readonly }` (bytes); `unanswered` counts " ..
                  "the filesystems with a server (network, FUSE) that did not answer in time: all are asked " ..
                  "at once, so one that hangs costs the deadline once",
        kinds = { "timeout", "interrupted" },
        example = [[sys.filesystems()]],
      },
      {
        name = "sys.fs",
        call = "sys.fs(path, { OPTIONS })",
        summary = "The filesystem holding `path`. On a target: `stat -f`, `df -P` and `/proc/mounts` read " ..
                  "through the transport, made into the same table by the same code.",
        options = {
          { "timeout", "5", "deadline (" .. DURATION .. "); `statvfs` runs in a worker thread" },
          { "on", "\"local\"", "a target, as for `sys.memory`" },
        },
        returns = "`{ mount, device, fstype, size, used, avail, used_pct, inodes, inodes_used, inodes_free, " ..
                  "inodes_pct, readonly }` (bytes)",
        kinds = { "notfound", "permission", "timeout", "interrupted" },
        example = [[sys.fs("/var").used_pct]],
      },
      {
        name = "sys.largest",
        call = "sys.largest(path, { OPTIONS })",
        summary = "The largest directories below `path`, down to `depth`, by disk usage as `du` counts it.",
        options = {
          { "depth", "1", "how many levels below `path` are listed" },
          { "limit", "10", "entries returned" },
          { "timeout", "10", "deadline of the walk (" .. DURATION .. "); what was found by then is " ..
            "returned, unless the walk is stuck in the kernel (a disk that does not answer): then 150 ms later, " ..
            "a timeout" },
          { "xdev", "true", "stay on the filesystem of `path`" },
          { "files", "false", "also list the largest files anywhere below" },
          { "on", "\"local\"", "a target: `find -printf` there (type, device, blocks, depth, path), its " ..
            "`/proc/self/mountinfo`, replayed through the same walk code: the same table; at the deadline a " ..
            "timeout (no partial result from a target)" },
        },
        returns = "`{ entries = { {path, bytes, files} }, files?, total_bytes, total_files, unreadable, " ..
                  "partial, unvisited, skipped }`",
        kinds = { "notfound", "permission", "timeout", "interrupted", "unavailable", "unreachable" },
        example = [[sys.largest("/var", { depth = 2, limit = 5 }).entries]],
      },
      {
        name = "sys.files",
        call = "sys.files(path, { OPTIONS })",
        summary = "Regular files whose name matches `pattern`, not modified for `older_than`, of at least " ..
                  "`min_size` bytes. `count` and `total_bytes` cover every match, `files` the first `limit`, " ..
                  "sorted by path.",
        options = {
          { "pattern", "", "a glob on the file name (`*.log.[0-9]*`)" },
          { "older_than", "", "minimum age (" .. DURATION .. ", \"7d\")" },
          { "min_size", "0", "minimum size in bytes" },
          { "recursive", "true", "descend into directories" },
          { "xdev", "true", "stay on the filesystem of `path`" },
          { "follow", "false", "follow symbolic links" },
          { "limit", "1000", "files returned (counting goes on)" },
          { "timeout", "10", "deadline of the walk (" .. DURATION .. "), as for `sys.largest`: partial " ..
            "results, or a timeout when a stat is stuck (a link followed onto a hung mount)" },
          { "on", "\"local\"", "a target, as for `sys.largest` (`follow = true` there: `unavailable`); " ..
            "ages count from the target's clock" },
        },
        returns = "`{ files = { {path, bytes, mtime, age} }, count, total_bytes, truncated, unreadable, partial, " ..
                  "skipped }`",
        kinds = { "notfound", "permission", "timeout", "interrupted", "unavailable", "unreachable" },
        example = [[sys.files("/var/log", { pattern = "*.gz", older_than = "7d" }).total_bytes]],
      },
      {
        name = "sys.deleted_open",
        call = "sys.deleted_open { OPTIONS }",
        summary = "Deleted files that processes still hold open (their space is not freed), largest first.",
        options = {
          { "path", "", "only on the filesystem of this path" },
          { "timeout", "5", "deadline (" .. DURATION .. ")" },
          { "limit", "50", "files returned" },
          { "on", "\"local\"", "a target: its `/proc/*/fd` read by `find` (the links, then the open files), " ..
            "judged by the same code" },
        },
        returns = "`{ {pid, command, fd, path, bytes}, ..., count, total_bytes, unreadable, partial }`",
        kinds = { "notfound", "permission", "timeout", "interrupted", "unavailable", "unreachable" },
        example = [[sys.deleted_open { path = "/var" }]],
      },
      {
        name = "sys.memory",
        call = "sys.memory { OPTIONS }",
        summary = "Memory and swap, as `free` counts them (`used` = total − available). On a target, " ..
                  "its `/proc/meminfo` read through the transport and parsed by the same code.",
        options = {
          { "on", "\"local\"", "a target (see `sh`): the same table, with `host`; a fleet gives `{ by_host, ok, unreachable, failed }`" },
          { "timeout", "10", "on a target: deadline (" .. DURATION .. ")" },
        },
        returns = "`{ total, available, used, free, buffers, cached, swap_total, swap_used, swap_free, used_pct, " ..
                  "swap_pct }` (bytes)",
        kinds = { "unavailable", "unreachable", "timeout", "interrupted" },
        example = [[sys.memory().used_pct]],
      },
      {
        name = "sys.load",
        call = "sys.load { OPTIONS }",
        summary = "Load averages, the number of CPUs and the uptime. On a target, its `/proc/loadavg`, " ..
                  "`/proc/uptime` and `getconf _NPROCESSORS_ONLN`, parsed by the same code.",
        options = {
          { "on", "\"local\"", "a target, as for `sys.memory`" },
          { "timeout", "10", "on a target: deadline (" .. DURATION .. ")" },
        },
        returns = "`{ load1, load5, load15, cpus, per_cpu1, running, total_tasks, uptime }`",
        kinds = { "unavailable", "unreachable", "timeout", "interrupted" },
        example = [[sys.load().per_cpu1]],
      },
      {
        name = "sys.processes",
        call = "sys.processes { OPTIONS }",
        summary = "The top processes by memory or CPU. CPU is measured over `sample`.",
        options = {
          { "sort", "\"memory\"", "`\"memory\"` or `\"cpu\"`" },
          { "limit", "10", "processes returned" },
          { "sample", "\"250ms\"", "how long CPU use is measured; 0: the average since each process started" },
          { "match", "", "a plain substring of the command or its command line" },
          { "timeout", "5", "deadline (" .. DURATION .. ")" },
          { "on", "\"local\"", "a target, as for `sys.memory`: its `/proc/PID/stat` (twice, `sample` apart), owners, " ..
            "passwd names and command lines read in one command, parsed by the same code" },
        },
        returns = "`{ {pid, ppid, user, state, command, cmdline, rss, mem_pct, cpu_pct, threads, age}, ..., count }`; " ..
                  "`user` is `uid N` when the system knows no name or does not tell it within 0.5 s",
        kinds = { "interrupted" },
        example = [[sys.processes { sort = "cpu", limit = 5 }]],
      },
      {
        name = "sys.tail",
        call = "sys.tail(path, { OPTIONS })",
        summary = "The end of a log file.",
        options = {
          { "lines", "50", "lines returned" },
          { "timeout", "5", "deadline for opening the file (" .. DURATION .. ")" },
          { "on", "\"local\"", "a target: `stat`, `tail -c 16M | tail -n lines+2` there, cut by the same code" },
        },
        returns = "`{ lines, text, size, mtime, truncated }`",
        kinds = { "notfound", "permission", "timeout", "interrupted", "unavailable", "unreachable" },
        example = [[sys.tail("/var/log/syslog", { lines = 20 }).text]],
      },
      {
        name = "sys.grep",
        call = "sys.grep(path, regex, { OPTIONS })",
        summary = "Lines of a file matching a POSIX extended regex: the last `limit` matches (in a log, " ..
                  "the recent ones).",
        options = {
          { "icase", "false", "ignore case" },
          { "limit", "100", "matches returned (counting goes on)" },
          { "timeout", "10", "deadline of the scan (" .. DURATION .. "): what was seen by then comes " ..
                             "back with `partial = true`; a regex still on the first line gets a timeout" },
          { "on", "\"local\"", "a target: `grep -E -n` there (`-c` for the counts, `tail` for the last " ..
                             "`limit`); the regex is checked here first; no partial result from a target" },
        },
        returns = "`{ matches = { {line, text} }, count, lines, partial }`",
        kinds = { "notfound", "permission", "timeout", "interrupted", "unavailable", "unreachable" },
        example = [[sys.grep("/var/log/syslog", "out of memory", { icase = true }).count]],
      },
      {
        name = "sys.filter",
        call = "sys.filter(texts, regex, { OPTIONS })",
        summary = "The indices of the strings of `texts` that a POSIX extended regex matches: `sys.grep`'s " ..
                  "matching for lines read elsewhere (a journal, `kubectl logs`), in the same helper process, " ..
                  "stopped at the deadline and by Ctrl-C.",
        options = {
          { "icase", "false", "ignore case" },
          { "timeout", "10", "deadline of the matching (" .. DURATION .. "): no partial result, a timeout" },
        },
        returns = "`{ index, ... }`",
        kinds = { "timeout", "interrupted" },
        example = [[sys.filter({ "ERROR a", "INFO b", "error c" }, "^error", { icase = true })   -- { 1, 3 }]],
      },
    },
    notes = [[Walks are bounded in time: at the deadline they return what they found with `partial = true` (and
`sys.largest` names the directories it never reached in `unvisited`). A mount point below `path` of a
network, FUSE (not `fuseblk`) or autofs file system is never walked, nor even looked at, whatever `xdev`
says: it is known from the mount table and named in `skipped` (the first 64), since one whose server is
gone would hang the walk; nor is a walk's root waited for past the deadline. `stat`/`statvfs` of
a path, opening the file of `sys.tail` and `sys.grep`, and the walks themselves run in a worker thread
the probe stops waiting for at its deadline (a walk: 150 ms later), because on a dead NFS server or disk
they block in the kernel where no signal reaches them; inside `parallel()` the task yields meanwhile.
The regex of `sys.grep` runs in a process of its own, killed at the deadline or at Ctrl-C: glibc's
matcher can take minutes on one long line (`(a|aa)*b` on a run of `a`, or a back-reference), inside C
where nothing else stops it. Ctrl-C ends any of them with `nil, err, "interrupted"`.]],
  },
  {
    name = "tcp", title = "reachability",
    functions = {
      {
        name = "tcp.connect",
        call = "tcp.connect(host, port, { OPTIONS })",
        summary = "A TCP handshake, name lookup included, under one deadline; the connection is closed at once. " ..
                  "A name's addresses are tried in turn, each with an equal share of the time left.",
        options = {
          { "timeout", "2", "deadline for lookup, handshake, and the exchange when `send` is given (" .. DURATION .. ")" },
          { "send", "", "bytes to write once connected (up to 4096); the answer is then read until the peer " ..
                         "closes, `max_reply` bytes or a blank line (the end of an HTTP head)" },
          { "max_reply", "4096", "the most of the answer kept (up to 16384)" },
        },
        returns = "`{ host, port, address, ms, reply }` (`reply` with `send`)",
        kinds = { "dns", "refused", "timeout", "unreachable", "interrupted" },
        example = [[tcp.connect("127.0.0.1", 22, { timeout = "500ms" })
-- a WebSocket handshake through a proxy, which HTTP clients will not make
local r = tcp.connect("127.0.0.1", 80, { send = "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n" ..
                                         "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n" })
print(r and r.reply:match("^[^\r]*"))]],
      },
    },
  },
  {
    name = "pg", title = "PostgreSQL",
    intro = [[One libpq connection per handle, driven without blocking: the name lookup (bounded), connect, TLS,
authentication and each query run under one deadline, concurrently inside `parallel`. `conn:query` and every
probe run as `BEGIN READ ONLY; statement; ROLLBACK` in one round trip, one statement per call, so a probe
cannot write (`UPDATE` fails with kind `25006`). Parameters are `$1, $2, ...`, sent as text; values come back
by column type: int2/int4/int8/oid as integers, float4/float8/numeric as numbers, bool as booleans, NULL as
nil, anything else as a string. Targets read `host:port/dbname`; the password is redacted everywhere. The
methods of a connection are documented under `pg.<method>` (`help("pg.query")`).]],
    notes = [[At the deadline or on Ctrl-C in the middle of a query, a cancel request goes to the server from a
worker thread, the connection is closed, and later calls on the handle return `nil, "... connection was closed
after a timeout; connect again", "closed"`. A query error returns `nil, "pg.query host:port/db: <message>",
<SQLSTATE>`. A handle serves one task at a time: inside `parallel`, connect in each task.]],
    functions = {
      {
        name = "pg.connect",
        rtype = "pg.conn",
        call = "pg.connect(url_or_conninfo, { OPTIONS })",
        summary = "Opens a connection from a `postgresql://` URL or a `key=value` string (libpq's syntax). " ..
                  "Several hosts (`postgresql://h1,h2:5433/db`, `host=h1,h2 port=5432,5433`) are tried in turn, " ..
                  "each with an equal share of the time left (at least 200 ms), and `target_session_attrs` " ..
                  "(`read-write`, `standby`, `prefer-standby`, ...) picks among them; as in libpq, a host that " ..
                  "cannot be reached or does not match hands over to the next, and a server's error (a wrong " ..
                  "password, a missing database) ends the call. The message says what each host answered. " ..
                  "`service=name` (or `$PGSERVICE`) takes the options the string leaves out from that section of " ..
                  "`$PGSERVICEFILE` or `~/.pg_service.conf`, else `$PGSYSCONFDIR/pg_service.conf`, as libpq " ..
                  "does; its host is resolved within the deadline too (an LDAP lookup is refused).",
        options = {
          { "timeout", "5", "deadline for lookup, connect, TLS and authentication, all hosts together (" .. DURATION .. ")" },
          { "application_name", "\"runbook\"", "shown in `pg_stat_activity`" },
          { "password", "", "the password, when it is not in the URL (an `input.secret`)" },
        },
        returns = "a connection: `tostring(conn)` is `pg.conn host:port/db` (the host it connected to); `conn:close()`, or " ..
                  "`local conn <close> = ...`",
        kinds = { "dns", "refused", "unreachable", "timeout", "auth", "reset", "protocol", "interrupted", "error",
                  "SQLSTATE" },
        example = [[local conn = pg.connect("postgresql://app@127.0.0.1:5432/app", { timeout = 2 })]],
      },
      {
        name = "pg.ping",
        call = "pg.ping(url_or_conninfo, { OPTIONS })",
        summary = "Connects, runs one query and closes: is the server there, which version, primary or replica?",
        options = {
          { "timeout", "5", "deadline of the whole ping (" .. DURATION .. ")" },
          { "...", "", "the other options of `pg.connect`" },
        },
        returns = "`{ ok = true, version, version_num, connect_ms, in_recovery, ms }`",
        kinds = { "dns", "refused", "unreachable", "timeout", "auth", "reset", "protocol", "interrupted", "error",
                  "SQLSTATE" },
        example = [[pg.ping("postgresql://app@127.0.0.1:5432/app", { timeout = "1s" })]],
      },
      {
        name = "pg.query",
        call = "conn:query(sql, params, { OPTIONS })",
        summary = "Runs one read in a READ ONLY transaction. `params` is an array for `$1, $2, ...` " ..
                  "(`params.n` when it ends with nils). Before anything is sent, PostgreSQL's own parser " ..
                  "(libpg_query) checks the SQL: one `SELECT`/`WITH`/`VALUES`/`TABLE`/`SHOW`, or `EXPLAIN` " ..
                  "without `ANALYZE`; no data-modifying `WITH`, `SELECT INTO` or `FOR UPDATE/SHARE`; every " ..
                  "function and operator it names, and every view it reads (followed to its definition), " ..
                  "non-volatile in `pg_proc` (looked up on the connection within the deadline, kept for its " ..
                  "later calls until a `conn:exec`) or one of the read-only volatile functions: clocks and " ..
                  "`random`, `pg_sleep`, WAL positions (`pg_current_wal_lsn`, ...), `pg_blocking_pids` and " ..
                  "`pg_lock_status`, sizes (`pg_database_size`, `pg_relation_size`, ...), statistics, the " ..
                  "server's own directories (`pg_ls_waldir`, ...). Anything else (`pg_terminate_backend`, " ..
                  "`pg_advisory_lock`, `set_config`, `nextval`, `pg_read_file`, `dblink`, `COPY`, a VOLATILE " ..
                  "function of yours, ...) returns `nil, \"... refused before sending: <what>; to run it, use " ..
                  "conn:exec(...)\", \"refused\"`. doc/probes.md has the list and what is not checked.",
        options = {
          { "timeout", "10", "deadline, the check's catalogue look-up included (" .. DURATION .. ")" },
        },
        returns = "`{ {column = value, ...}, ..., columns = {names}, rows = n, ms }`",
        kinds = { "refused", "timeout", "interrupted", "reset", "closed", "SQLSTATE (42601 syntax, 42883 no such function)" },
        example = [[conn:query("SELECT datname, numbackends FROM pg_stat_database WHERE numbackends > $1", { 0 })]],
      },
      {
        name = "pg.exec",
        call = "conn:exec(sql, params, { OPTIONS })",
        summary = "Runs one statement that changes something, through the action gate: the SQL and its " ..
                  "parameters are shown and confirmed first. Declined, it skips the step.",
        options = {
          { "summary", "", "one line saying what it does" },
          { "target", "", "what it acts on (default `host:port/db`); typed back when irreversible" },
          { "irreversible", "false", "ask for the target instead of `yes`" },
          { "timeout", "60", "deadline, from the confirmation (" .. DURATION .. ")" },
        },
        returns = "as `pg.query`, plus `command` (`\"UPDATE 3\"`) and `affected`; `{ dry_run = true, sql, " ..
                  "target }` under `--dry-run`",
        kinds = { "timeout", "interrupted", "reset", "closed", "refused", "SQLSTATE" },
        example = [[conn:exec("UPDATE jobs SET state = 'queued' WHERE state = $1", { "stuck" },
  { summary = "requeue the stuck jobs" })]],
      },
      {
        name = "pg.connections",
        call = "conn:connections({ OPTIONS })",
        summary = "Client backends by state, per database, against `max_connections`.",
        options = { { "timeout", "10", "deadline" } },
        returns = "`{ total, max_connections, reserved, available, used_pct, active, idle, " ..
                  "idle_in_transaction, by_state = { state = n }, databases = { {database, total, <state> = n} } }`",
        kinds = { "timeout", "interrupted", "reset", "closed", "SQLSTATE" },
        example = [[conn:connections().used_pct]],
      },
      {
        name = "pg.long_running",
        call = "conn:long_running { OPTIONS }",
        summary = "Active queries (not this connection's) running for `min` or more, oldest first.",
        options = {
          { "min", "\"5m\"", "how long a query must have run (" .. DURATION .. ")" },
          { "timeout", "10", "deadline" },
        },
        returns = "`{ {pid, user, database, application, client, state, wait_event_type, wait_event, " ..
                  "duration_ms, xact_ms, query}, ..., count, max_ms }`",
        kinds = { "timeout", "interrupted", "reset", "closed", "SQLSTATE" },
        example = [[conn:long_running { min = "30s" }]],
      },
      {
        name = "pg.idle_in_transaction",
        call = "conn:idle_in_transaction { OPTIONS }",
        summary = "Sessions idle inside an open transaction for `min` or more (they hold locks and a slot).",
        options = {
          { "min", "\"1m\"", "how long they must have been idle (" .. DURATION .. ")" },
          { "timeout", "10", "deadline" },
        },
        returns = "`{ {pid, user, database, application, client, state, idle_ms, xact_ms, query}, ..., " ..
                  "count, max_ms }`",
        kinds = { "timeout", "interrupted", "reset", "closed", "SQLSTATE" },
        example = [[conn:idle_in_transaction { min = "5m" }]],
      },
      {
        name = "pg.blocked",
        call = "conn:blocked({ OPTIONS })",
        summary = "Queries waiting on a lock, each with the backends it waits for (`pg_blocking_pids`) and " ..
                  "their queries; `roots` are the blockers that wait on nobody: where to act.",
        options = { { "timeout", "10", "deadline" } },
        returns = "`{ {pid, user, database, application, wait_event_type, wait_event, wait_ms, query, " ..
                  "blocked_by = {pids}, blockers = { {pid, user, application, state, xact_ms, query} }}, ..., " ..
                  "count, roots, max_wait_ms }`",
        kinds = { "timeout", "interrupted", "reset", "closed", "SQLSTATE" },
        example = [[conn:blocked().roots]],
      },
      {
        name = "pg.locks",
        call = "conn:locks({ OPTIONS })",
        summary = "Locks by mode, granted and waiting (this connection's own left out).",
        options = { { "timeout", "10", "deadline" } },
        returns = "`{ {mode, granted, count}, ..., total, granted, waiting, waiting_backends, " ..
                  "by_mode = { Mode = { granted, waiting } } }`",
        kinds = { "timeout", "interrupted", "reset", "closed", "SQLSTATE" },
        example = [[conn:locks().waiting]],
      },
      {
        name = "pg.replication",
        call = "conn:replication({ OPTIONS })",
        summary = "Primary or replica, and the lag: per replica from `pg_stat_replication` on a primary, the " ..
                  "WAL receiver and replay lag on a replica.",
        options = { { "timeout", "10", "deadline" } },
        returns = "`{ role = \"primary\" | \"replica\", in_recovery, current_lsn, replicas = { {pid, user, " ..
                  "application, client, state, sync_state, sent_lag_bytes, write_lag_bytes, flush_lag_bytes, " ..
                  "replay_lag_bytes, write_lag_ms, flush_lag_ms, replay_lag_ms} }, replica_count, " ..
                  "max_replay_lag_bytes, receive_lsn, replay_lsn, replay_lag_bytes, replay_lag_ms, receiver = " ..
                  "{status, sender_host, sender_port, slot_name, last_msg_ms} }` (the last five on a replica)",
        kinds = { "timeout", "interrupted", "reset", "closed", "SQLSTATE" },
        example = [[conn:replication().max_replay_lag_bytes]],
      },
      {
        name = "pg.database_sizes",
        call = "conn:database_sizes({ OPTIONS })",
        summary = "The size of every database that accepts connections, largest first.",
        options = { { "timeout", "10", "deadline" } },
        returns = "`{ {database, bytes}, ..., total_bytes }` (`bytes` is nil without CONNECT privilege)",
        kinds = { "timeout", "interrupted", "reset", "closed", "SQLSTATE" },
        example = [[conn:database_sizes()[1] ]],
      },
      {
        name = "pg.migrations",
        call = "conn:migrations { OPTIONS }",
        summary = "The migration table of Alembic (`alembic_version`), Django (`django_migrations`), Rails or " ..
                  "golang-migrate (`schema_migrations`) or Flyway (`flyway_schema_history`), found on the " ..
                  "search path.",
        options = {
          { "framework", "", "`\"alembic\"`, `\"django\"`, `\"rails\"`, `\"migrate\"` or `\"flyway\"` " ..
                             "(default: the first found)" },
          { "timeout", "10", "deadline" },
        },
        returns = "`{ framework, table, latest, name, applied, count, failed, success, heads, found }`: " ..
                  "`latest` is the newest migration, `failed` counts Flyway's unsuccessful rows (golang-migrate: " ..
                  "1 when dirty); without a migration table `{ found = {}, count = 0 }`",
        kinds = { "timeout", "interrupted", "reset", "closed", "SQLSTATE" },
        example = [[conn:migrations().latest]],
      },
      {
        name = "pg.terminate_idle",
        call = "conn:terminate_idle { OPTIONS }",
        summary = "An action: counts the backends in `state` for `older_than` or more (not this one), shows " ..
                  "them at the prompt (how many, whose, the oldest), then `pg_terminate_backend` on exactly " ..
                  "those still in that state. With none, nothing is asked.",
        options = {
          { "older_than", "\"10m\"", "since their last state change (" .. DURATION .. ")" },
          { "state", "\"idle\"", "`\"idle\"`, `\"idle in transaction\"` or `\"idle in transaction (aborted)\"`" },
          { "database", "", "only backends of this database" },
          { "timeout", "10", "deadline of the probe, and of the action" },
        },
        returns = "`{ count, terminated, pids = {terminated}, skipped = {no longer in that state} }`; " ..
                  "`{ dry_run = true, sql, target, count, pids }` under `--dry-run`",
        kinds = { "timeout", "interrupted", "reset", "closed", "refused", "SQLSTATE" },
        example = [[conn:terminate_idle { older_than = "30m", state = "idle in transaction" }]],
      },
      {
        name = "pg.cancel",
        call = "conn:cancel(pid, { OPTIONS })",
        summary = "An action: `pg_cancel_backend(pid)`, stops that backend's query and keeps its session. " ..
                  "The prompt shows the backend's user, application, state and query.",
        options = { { "timeout", "10", "deadline" } },
        returns = "`{ pid, cancelled, ms }`; kind `error` when there is no such backend",
        kinds = { "timeout", "interrupted", "reset", "closed", "refused", "error", "SQLSTATE" },
        example = [[conn:cancel(conn:long_running()[1].pid)]],
      },
      {
        name = "pg.terminate",
        call = "conn:terminate(pid, { OPTIONS })",
        summary = "An action: `pg_terminate_backend(pid)`, ends that session (its transaction is rolled " ..
                  "back and its locks released). The prompt shows what it runs.",
        options = { { "timeout", "10", "deadline" } },
        returns = "`{ pid, terminated, ms }`; kind `error` when there is no such backend",
        kinds = { "timeout", "interrupted", "reset", "closed", "refused", "error", "SQLSTATE" },
        example = [[conn:terminate(conn:blocked().roots[1])]],
      },
    },
  },
  {
    name = "redis", title = "Redis",
    intro = [[One hiredis connection per handle, driven without blocking: the name lookup (bounded), connect, `AUTH`,
`SELECT` and a `PING` (a hung server is caught at connect), then each call, run under one deadline per call,
concurrently inside `parallel`. URLs are `redis://[user:password@]host:port[/db]`; `rediss://` is refused
("TLS not supported"). Replies map to Lua: status and string as strings, integer as integers, nil as nil,
arrays as tables (with `n`), an error reply as `nil, "<what> host:port/db: <message>", <its code word>`
(`WRONGTYPE`, `ERR`, ...). Targets read `host:port/db`; the password is redacted everywhere (the gate shows
`AUTH ***`). The methods of a connection are documented under `redis.<method>` (`help("redis.call")`).]],
    notes = [[A probe cannot write nor hold the server: `conn:call` asks the server (`COMMAND INFO`, once per command
and connection; `config|get` for a subcommand) and raises, naming `conn:action(...)`, for a command flagged
`write`, `pubsub` or `admin`, or filed under `@dangerous` (its ACL categories; Redis 7.0's list when the server
reports none), except reads such as `INFO`, `CONFIG GET`, `SLOWLOG GET/LEN`, `CLIENT LIST/INFO`, `LATENCY ...`,
`MEMORY STATS/USAGE`, `LASTSAVE`, `ROLE`, `MODULE LIST`. Scripts and functions (`EVAL`, `EVAL_RO`, `EVALSHA*`,
`FCALL*`, `FUNCTION ...`, `SCRIPT ...`) are actions: a script runs to its end whatever the deadline. `KEYS` is
refused: `conn:scan` is the bounded walk (doc/probes.md). Commands that change
what the connection is (`SELECT`, `SUBSCRIBE`, `MONITOR`, `HELLO`, `QUIT`, ...) are refused by both forms. After
a timeout, Ctrl-C, an I/O or a protocol error the connection is dropped and later calls return `nil, "...
connection was closed after a timeout; connect again", "closed"`. A handle serves one task at a time: inside
`parallel`, connect in each task. Every method takes a trailing `{ timeout = ... }`, by default the
connection's own.]],
    functions = {
      {
        name = "redis.connect",
        rtype = "redis.conn",
        call = "redis.connect(url, { OPTIONS })",
        summary = "Opens a connection from a `redis://` URL (port 6379 and db 0 by default), or to a unix " ..
                  "socket: `unix://[:password@]/path/to/redis.sock[?db=N]`.",
        options = {
          { "timeout", "2", "deadline for lookup, connect and login; also the default of its calls (" .. DURATION .. ")" },
          { "password", "", "the password, when it is not in the URL (an `input.secret`)" },
        },
        returns = "a connection: `tostring(conn)` is `redis.conn host:port/db`; `conn:close()`, or " ..
                  "`local conn <close> = ...`",
        kinds = { "dns", "refused", "unreachable", "timeout", "auth", "reset", "protocol", "interrupted", "error" },
        example = [[local conn = redis.connect("redis://127.0.0.1:6379/0", { timeout = 2 })]],
      },
      {
        name = "redis.ping",
        call = "redis.ping(url, { OPTIONS })",
        summary = "Connects, sends PING and asks the version and role, and closes: is it there, is it stuck?",
        options = {
          { "timeout", "2", "deadline of the whole ping (" .. DURATION .. ")" },
          { "password", "", "as `redis.connect`" },
        },
        returns = "`{ ok = true, ms, connect_ms, version, role }`",
        kinds = { "dns", "refused", "unreachable", "timeout", "auth", "reset", "protocol", "interrupted", "error" },
        example = [[redis.ping("redis://127.0.0.1:6379", { timeout = "500ms" })]],
      },
      {
        name = "redis.call",
        rtype = "any",
        call = "conn:call(cmd, arg..., { OPTIONS })",
        summary = "Runs a command that the server says cannot write and that is not `@dangerous` (but for the " ..
                  "allowlisted reads) nor a script; any other raises an error naming `conn:action(...)` " ..
                  "(`help(redis)` says which commands a probe may run).",
        options = { { "timeout", "", "deadline (default: the connection's)" } },
        returns = "the reply: string, integer, nil or table; an error reply is `nil, err, code`",
        kinds = { "timeout", "interrupted", "reset", "protocol", "closed", "auth", "CODE" },
        example = [[conn:call("LRANGE", "jobs", 0, 9)]],
      },
      {
        name = "redis.action",
        rtype = "any",
        call = "conn:action(cmd, arg..., { OPTIONS })",
        summary = "Runs any command through the action gate: shown (passwords as `***`) and confirmed first. " ..
                  "`FLUSHDB` and `FLUSHALL` are irreversible: their keys are counted and shown, and the target " ..
                  "(`host:port/db`) must be typed back. Declined, it skips the step.",
        options = {
          { "summary", "", "one line saying what it does" },
          { "target", "", "what it acts on (default `host:port/db`); typed back when irreversible" },
          { "irreversible", "false", "ask for the target instead of `yes`" },
          { "blast", "", "the measured impact, shown with the question" },
          { "timeout", "60", "deadline, from the confirmation (" .. DURATION .. ")" },
        },
        returns = "the reply, as `redis.call`; `{ dry_run = true, command, target }` under `--dry-run`",
        kinds = { "timeout", "interrupted", "reset", "protocol", "closed", "refused", "CODE" },
        example = [[conn:action("CONFIG", "SET", "maxmemory", "2gb", { summary = "raise maxmemory" })]],
      },
      {
        name = "redis.info",
        call = "conn:info(section, { OPTIONS })",
        summary = "`INFO` (one section, or the default ones) parsed: numbers as numbers, `a=1,b=2` values " ..
                  "(keyspace, replicas, commandstats) as tables.",
        options = { { "timeout", "", "deadline" } },
        returns = "`{ section = { field = value } }`, e.g. `info.memory.used_memory`",
        kinds = { "timeout", "interrupted", "reset", "closed", "CODE" },
        example = [[conn:info("server").server.redis_version]],
      },
      {
        name = "redis.memory",
        call = "conn:memory({ OPTIONS })",
        summary = "Memory against `maxmemory`, fragmentation and evictions.",
        options = { { "timeout", "", "deadline" } },
        returns = "`{ used_memory, used_memory_rss, used_memory_peak, maxmemory, used_pct, fragmentation_ratio, " ..
                  "evicted_keys, maxmemory_policy }` (bytes; `used_pct` is nil when there is no maxmemory)",
        kinds = { "timeout", "interrupted", "reset", "closed", "CODE" },
        example = [[conn:memory().used_pct]],
      },
      {
        name = "redis.clients",
        call = "conn:clients({ OPTIONS })",
        summary = "Connected and blocked clients against `maxclients`, and connections refused at the limit.",
        options = { { "timeout", "", "deadline" } },
        returns = "`{ connected, blocked, maxclients, rejected, used_pct }`",
        kinds = { "timeout", "interrupted", "reset", "closed", "CODE" },
        example = [[conn:clients().blocked]],
      },
      {
        name = "redis.replication",
        call = "conn:replication({ OPTIONS })",
        summary = "The role, the replicas of a master with their lag, a replica's link to its master.",
        options = { { "timeout", "", "deadline" } },
        returns = "`{ role, connected_replicas, master_repl_offset, replicas = { {ip, port, state, offset, lag, " ..
                  "lag_bytes} } }`; on a replica also `master_host, master_port, master_link_status, " ..
                  "master_link_up, master_last_io_seconds, master_link_down_seconds, master_sync_in_progress, repl_offset`",
        kinds = { "timeout", "interrupted", "reset", "closed", "CODE" },
        example = [[conn:replication().master_link_up]],
      },
      {
        name = "redis.slowlog",
        call = "conn:slowlog { OPTIONS }",
        summary = "The most recent entries of the slow log.",
        options = {
          { "limit", "10", "how many entries" },
          { "timeout", "", "deadline" },
        },
        returns = "`{ {id, time, duration_us, command = {words}, client, client_name}, ..., total }`, newest first",
        kinds = { "timeout", "interrupted", "reset", "closed", "CODE" },
        example = [[for _, e in ipairs(conn:slowlog { limit = 5 }) do print(e.duration_us, e.command[1]) end]],
      },
      {
        name = "redis.latency",
        call = "conn:latency { OPTIONS }",
        summary = "Round trips of `samples` PINGs, one after the other.",
        options = {
          { "samples", "20", "how many PINGs" },
          { "timeout", "", "deadline of them all" },
        },
        returns = "`{ samples, min, avg, max, p95 }` (ms)",
        kinds = { "timeout", "interrupted", "reset", "closed", "CODE" },
        example = [[conn:latency { samples = 50 }.p95]],
      },
      {
        name = "redis.keyspace",
        call = "conn:keyspace({ OPTIONS })",
        summary = "Keys and keys with a TTL, per database.",
        options = { { "timeout", "", "deadline" } },
        returns = "`{ {db, keys, expires, avg_ttl}, ..., keys, expires }` (the totals)",
        kinds = { "timeout", "interrupted", "reset", "closed", "CODE" },
        example = [[conn:keyspace().keys]],
      },
      {
        name = "redis.scan",
        call = "conn:scan({ OPTIONS })",
        summary = "The keys matching a pattern, by a SCAN walk that replaces `KEYS` (refused in a probe): the " ..
                  "server serves others between its calls, and the walk stops at `limit` keys or before a call " ..
                  "would outlast the deadline (the connection stays usable). Each key is listed once.",
        options = {
          { "match", "", "a glob pattern (`session:*`)" },
          { "type", "", "only keys of this type (`string`, `list`, `hash`, ...)" },
          { "count", "1000", "SCAN's COUNT: how much of the keyspace one call visits (1..100000)" },
          { "limit", "10000", "stop after this many keys (1..1000000)" },
          { "timeout", "", "deadline of the whole walk (default: the connection's)" },
        },
        returns = "`{ \"key\", ..., n, truncated, stopped = \"limit\" | \"deadline\" | nil, scans, ms }`",
        kinds = { "timeout", "interrupted", "reset", "closed", "protocol", "CODE" },
        example = [[conn:scan { match = "session:*", limit = 1000, timeout = 5 }]],
      },
      {
        name = "redis.llen",
        rtype = "integer",
        call = "conn:llen(key, { OPTIONS })",
        summary = "The length of a list: how many jobs wait in a queue.",
        options = { { "timeout", "", "deadline" } },
        returns = "an integer (0 when the key does not exist); kind `WRONGTYPE` when it is not a list",
        kinds = { "timeout", "interrupted", "reset", "closed", "CODE" },
        example = [[conn:llen("jobs")]],
      },
    },
  },
  {
    name = "http", title = "HTTP and TLS",
    intro = [[One libcurl transfer per call, bounded as a whole (name lookup, connect, TLS, redirects, body) by
one deadline, concurrent inside `parallel`; only http:// and https://, no signals, at most `max_redirects`
redirects. A status that `expect` does not accept, or a body without `contains`, is a result with
`ok = false` and `problem` saying why, not an error. Passwords in URLs, `token=`-like query values and
credential headers (`Authorization`, `*-Token`, `*-Key`) are redacted everywhere.]],
    notes = [[The result of a request: `{ status, ok, problem, method, headers, body, bytes, truncated, json,
json_error, url, redirects, ms, timings, tls }`. `headers` has lowercase names (repeats joined with ", ");
`json` is the decoded body when the content type is JSON (else `json_error` says why not); `url` is the final
URL, redacted; `timings = { dns_ms, connect_ms, tls_ms, first_byte_ms, total_ms }` are per phase (after
redirects, summed over the requests); `tls = { days_left, not_after, not_before, issuer, subject,
chain_length }` over https. A body longer than `max_body` is cut there (`truncated = true`). Ctrl-C or the
deadline drops the connection at once.]],
    functions = {
      {
        name = "http.get",
        call = "http.get(url, { OPTIONS })",
        summary = "A GET request: a probe (runs without asking, also under `--dry-run`).",
        options = {
          { "timeout", "10", "deadline of the whole request (" .. DURATION .. ")" },
          { "expect", "", "accepted statuses: `200`, `{ 200, 204 }`, `\"2xx\"` (default: 2xx and 3xx)" },
          { "contains", "", "text the body must contain (plain, not a pattern)" },
          { "headers", "{}", "request headers: `{ Authorization = \"Bearer ...\" }`" },
          { "follow", "true", "follow redirects" },
          { "max_redirects", "5", "more is an error of kind `protocol`" },
          { "insecure", "false", "do not verify the server's certificate (`tls` is still filled in)" },
          { "ca", "", "a CA bundle (PEM file) to verify the server against" },
          { "max_body", "10485760", "bytes of body kept; the transfer stops there (`truncated = true`)" },
        },
        returns = "the result (see below)",
        kinds = { "dns", "refused", "unreachable", "timeout", "reset", "tls", "protocol", "interrupted" },
        example = [[local r = http.get("http://127.0.0.1:8080/health", { expect = 200, timeout = 2 })
print(r and r.ok, r and r.json)]],
      },
      {
        name = "http.head",
        call = "http.head(url, { OPTIONS })",
        summary = "A HEAD request: status and headers, no body. A probe.",
        options = {
          { "...", "", "the options of `http.get`" },
        },
        returns = "the result (see below), with an empty body",
        kinds = { "dns", "refused", "unreachable", "timeout", "reset", "tls", "protocol", "interrupted" },
        example = [[http.head("http://127.0.0.1:8080/")]],
      },
      {
        name = "http.post",
        call = "http.post(url, { OPTIONS })",
        summary = "A POST request through the action gate: method, URL (redacted), headers and the start " ..
                  "of the body are shown and confirmed before anything is sent. Declined, it skips the step; " ..
                  "under `--dry-run` it is only shown.",
        options = {
          { "body", "", "the request body (a string)" },
          { "json", "", "a table sent as JSON (`Content-Type: application/json`)" },
          { "summary", "", "one line saying what it does (the gate shows it above the request)" },
          { "target", "", "what it acts on; typed back to confirm when irreversible" },
          { "irreversible", "false", "ask for the target instead of `yes` (needs `target`)" },
          { "blast", "", "the measured impact, shown with the question" },
          { "follow", "false", "follow redirects" },
          { "...", "", "and the other options of `http.get`" },
        },
        returns = "the result (see below), or `{ dry_run = true, method, url }` under `--dry-run`",
        kinds = { "dns", "refused", "unreachable", "timeout", "reset", "tls", "protocol", "interrupted" },
        example = [[http.post("http://127.0.0.1:8080/hooks/deploy", { json = { action = "pause" },
          summary = "pause deployments" })]],
      },
      {
        name = "http.request",
        call = "http.request { url = ..., method = ..., OPTIONS }",
        summary = "A POST, PUT, PATCH or DELETE request through the action gate, as `http.post`.",
        options = {
          { "url", "", "the URL (required)" },
          { "method", "", "`\"POST\"`, `\"PUT\"`, `\"PATCH\"` or `\"DELETE\"` (required)" },
          { "...", "", "the options of `http.post`" },
        },
        returns = "as `http.post`",
        kinds = { "dns", "refused", "unreachable", "timeout", "reset", "tls", "protocol", "interrupted" },
        example = [[http.request { url = "http://127.0.0.1:8080/cache/users", method = "DELETE" }]],
      },
      {
        name = "http.cert",
        call = "http.cert(url_or_host, { OPTIONS })",
        summary = "The TLS certificate a server presents (`host`, `host:port` or an https:// URL), verified " ..
                  "against the system's CAs (or `ca`) but returned even when it does not verify.",
        options = {
          { "timeout", "10", "deadline (" .. DURATION .. ")" },
          { "ca", "", "a CA bundle (PEM file) to verify against" },
        },
        returns = "`{ host, port, valid, hostname_ok, error, days_left, not_after, not_before, issuer, " ..
                  "subject, chain_length, ms }` (`error` says why it is not valid)",
        kinds = { "dns", "refused", "unreachable", "timeout", "tls", "protocol", "interrupted" },
        example = [[local c = http.cert("example.com")
print(c and c.days_left, c and c.valid)]],
      },
    },
  },
  {
    name = "service", title = "services where they live",
    intro = [[The manager follows the target: systemd (`systemctl`) for `local`, `ssh://` and `inventory:`;
Docker Compose for `compose://DIR:SERVICE` (run here, in the project's directory); Kubernetes for
`k8s://NS/KIND/NAME` (`kubectl rollout`). Restarts and reloads are actions: through the gate, recorded.]],
    functions = {
      {
        name = "service.status",
        call = "service.status { on = target, name = \"unit\" }",
        summary = "The service's state. On a fleet, each host's, with the hosts where it is active and not.",
        options = {
          { "on", "\"local\"", "the target" },
          { "name", "", "the unit (systemd); Compose and Kubernetes take it from the target" },
          { "timeout", "10", "deadline (" .. DURATION .. ")" },
        },
        returns = "`{ active, state, sub, pid, since, manager, name }`; on a fleet " ..
                  "`{ by_host, active = hosts, inactive = hosts, unreachable, manager }`",
        kinds = { "timeout", "interrupted", "exit", "unreachable", "hostkey", "auth", "refused" },
        example = [[service.status { name = "nginx" }]],
      },
      {
        name = "service.restart",
        call = "service.restart { on = target, name = \"unit\", OPTIONS }",
        summary = "Restarts it through the gate: `systemctl restart NAME`, `docker compose restart SERVICE`, or " ..
                  "`kubectl rollout restart` then `rollout status` until the rollout is done.",
        options = {
          { "summary", "", "what the gate shows above the command" },
          { "timeout", "120", "deadline (" .. DURATION .. "); for Kubernetes, of the rollout" },
          { "batch", "", "a fleet: as `sh.action` (and `max_fail`, `pause`, `limit`)" },
        },
        returns = "the result of `sh.action` (for Kubernetes, of `rollout status`)",
        kinds = { "timeout", "interrupted", "exit", "unreachable", "hostkey", "auth", "refused" },
        example = [[service.restart { on = "ssh://db1", name = "postgresql" }]],
      },
      {
        name = "service.reload",
        call = "service.reload { on = target, name = \"unit\" }",
        summary = "`systemctl reload NAME` through the gate (systemd targets only).",
        options = { { "timeout", "120", "deadline (" .. DURATION .. ")" } },
        returns = "the result of `sh.action`",
        kinds = { "timeout", "interrupted", "exit", "unreachable" },
        example = [[service.reload { name = "nginx" }]],
      },
      {
        name = "service.wait_ready",
        call = "service.wait_ready { on = target, name = \"unit\", timeout = 60, every = 1 }",
        summary = "Asks `service.status` every `every` seconds until the service is active (on every host of a " ..
                  "fleet), up to `timeout`.",
        options = {
          { "timeout", "60", "how long to wait (" .. DURATION .. ")" },
          { "every", "1", "between two looks" },
        },
        returns = "the last status",
        kinds = { "timeout", "interrupted" },
        example = [[service.wait_ready { name = "nginx", timeout = "30s" }]],
      },
    },
  },
  {
    name = "logs", title = "logs where they are",
    intro = [[What every playbook reads first, wherever the service lives: journald (`journalctl -u UNIT --since
-Ns -o json`, here or over SSH), a log file (`sys.tail`/`sys.grep` here, `tail`/`grep -E | tail` through the
transport), `docker compose logs --timestamps` and `kubectl logs --timestamps --prefix` (every pod of a
selector, each line naming its pod). Each line comes with its time (ISO 8601, nginx's access and error
logs, syslog), its host or pod, and its text; lines older than `since` are left out where the source cannot
filter by time. One deadline and a size bound per read; a probe.]],
    functions = {
      {
        name = "logs.read",
        call = "logs.read { on = target, unit = | file = | service = , OPTIONS }",
        summary = "The recent lines of a log: `unit` (journald), `file`, or `service` (a Compose service; a " ..
                  "`compose://` or `k8s://` target names its own).",
        options = {
          { "since", "\"30m\"", "how far back (" .. DURATION .. ")" },
          { "lines", "500", "the most lines kept (the last ones)" },
          { "grep", "", "a POSIX extended regex the lines must match (journald: its --grep)" },
          { "icase", "false", "ignore case in `grep`" },
          { "timeout", "10", "deadline of the read (" .. DURATION .. ")" },
          { "max_bytes", "4194304", "the most output read" },
        },
        returns = "`{ lines = { { ts, time, host, pod, text } }, truncated, source }`; on a fleet also " ..
                  "`failed`, `unreachable`",
        kinds = { "notfound", "permission", "timeout", "interrupted", "exit", "unreachable", "hostkey", "auth", "refused" },
        example = [[local r = logs.read { file = "/var/log/nginx/error.log", since = "30m", grep = "upstream" }
print(#r.lines, r.lines[1] and r.lines[1].text)]],
      },
      {
        name = "logs.top",
        call = "logs.top(lines, pattern, n)",
        summary = "`grep PATTERN | sort | uniq -c | sort -rn | head -n N`, with numbers, ids, addresses and quoted " ..
                  "values normalised so that similar lines group. `pattern` nil: every line.",
        options = {},
        returns = "`{ { count, text, example } }`, and the number of lines matched",
        kinds = {},
        example = [[for _, g in ipairs(logs.top(r.lines, "ERROR", 5)) do print(g.count, g.text) end]],
      },
      {
        name = "logs.rate",
        call = "logs.rate(lines, pattern, { OPTIONS })",
        summary = "Matching lines per minute in the recent window against the window before it, and a sentence " ..
                  "saying so (\"ERROR lines: 4/min in the previous 1h00m, 310/min in the last 10m00s\").",
        options = {
          { "recent", "\"10m\"", "the recent window" },
          { "baseline", "\"1h\"", "the window before it" },
          { "label", "", "what the sentence calls the lines (default: the pattern)" },
        },
        returns = "`{ recent, baseline, recent_count, baseline_count, untimed, ratio, text }`",
        kinds = {},
        example = [[print(logs.rate(r.lines, "ERROR").text)]],
      },
    },
  },
  {
    name = "deploy", title = "what changed, and rolling it back",
    intro = [[\"Was there a deploy in the last hour? Roll it back.\" `deploy.history` reads the changes of a target:
Kubernetes (`kubectl rollout history` and the ReplicaSets' creation times and images), Compose (the
container's image and start time), systemd (`systemctl show -p ActiveEnterTimestamp,ExecMainStartTimestamp`),
and a git checkout (`git log`, with `repo =` on any target). `deploy.rollback` is an action.]],
    functions = {
      {
        name = "deploy.history",
        call = "deploy.history { on = target, unit = , repo = , since = \"24h\" }",
        summary = "The changes, newest first.",
        options = {
          { "unit", "", "the systemd unit (local, ssh://, inventory: targets)" },
          { "repo", "", "a git checkout whose commits count as changes" },
          { "since", "\"24h\"", "how far back (" .. DURATION .. ")" },
          { "timeout", "10", "deadline of each command" },
        },
        returns = "`{ changes = { { ts, time, kind, what, name, image, revision, restarts } }, latest, sources }`",
        kinds = { "timeout", "interrupted", "exit", "unreachable" },
        example = [[local h = deploy.history { repo = "/srv/app", since = "2h" }
print(h.latest and h.latest.what)]],
      },
      {
        name = "deploy.rollback",
        call = "deploy.rollback { on = target, argv = { ... } }",
        summary = "Rolls back through the gate: `kubectl rollout undo KIND/NAME` for a Kubernetes workload, else " ..
                  "the team's command (`argv`), run on the target for SSH hosts.",
        options = {
          { "argv", "", "the rollback command (required but on Kubernetes)" },
          { "to_revision", "", "Kubernetes: the revision to go back to" },
          { "summary", "", "what the gate shows above the command" },
          { "timeout", "120", "deadline (" .. DURATION .. ")" },
        },
        returns = "the result of `sh.action`",
        kinds = { "timeout", "interrupted", "exit", "unreachable" },
        example = [[deploy.rollback { on = "k8s://prod/deployment/api" }]],
      },
    },
  },
  {
    name = "prometheus", title = "metrics",
    intro = [[Instant queries to Prometheus' HTTP API (`GET /api/v1/query`), written in Lua on top of `http.get`:
one request under one deadline, concurrent inside `parallel`, a probe (it runs under `--dry-run` too). The
base URL may have a path prefix (`https://host/prometheus`) and credentials (`http://user:***@host:9090`):
the password and `token=`-like values are redacted everywhere, and errors name the base URL, not the request's.]],
    notes = [[Errors read `prometheus.query <base url>: <cause>`. Besides the kinds of `http.get` (nothing answered):
`rejected`, Prometheus, or a proxy in front of it, refused the query (its own error text, e.g. a parse error,
else the status); `protocol`, the answer is not Prometheus' JSON; `nodata`, no series (no such metric, or no
labels match); `series`, not one number (several series, or a range vector such as `x[5m]`); `nan`, the
value is NaN: a ratio or quantile over nothing counted, i.e. no traffic in the query's window (say which in
the runbook); `inf`, `+Inf` or `-Inf` (a `histogram_quantile` above the last finite bucket). A base URL that
is not http:// or https://, an empty query or an unknown option raise.]],
    functions = {
      {
        name = "prometheus.query",
        rtype = "number",
        call = "prometheus.query(base_url, promql, { OPTIONS })",
        summary = "Evaluates a PromQL expression now and returns its value, a number. The answer must be a " ..
                  "scalar or an instant vector of exactly one series (aggregate it: `sum(...)`, `max(...)`).",
        options = {
          { "timeout", "10", "deadline of the request (" .. DURATION .. ")" },
          { "headers", "{}", "request headers: `{ Authorization = \"Bearer ...\" }`" },
          { "insecure", "false", "do not verify the server's certificate" },
          { "ca", "", "a CA bundle (PEM file) to verify the server against" },
        },
        returns = "the value, a number",
        kinds = { "rejected", "protocol", "nodata", "series", "nan", "inf", "dns", "refused", "unreachable",
                  "timeout", "reset", "tls", "interrupted" },
        example = [[local rate, err = prometheus.query("http://127.0.0.1:9090",
  'sum(rate(http_requests_total{status=~"5.."}[5m])) / sum(rate(http_requests_total[5m]))', { timeout = "5s" })
print(rate or err)]],
      },
    },
  },
  {
    name = "recipe", title = "the shapes runbooks share",
    intro = [[Steps that many runbooks take, written once in Lua on top of `sh`, `service`, `logs` and `http`:
restart a service through the gate and wait until it answers; check that it is back, with its health
endpoint, and end the run; read a component's log, show its most frequent lines and name the cause.]],
    functions = {
      {
        name = "recipe.restart",
        call = "recipe.restart(ctx, { OPTIONS })",
        summary = "Restarts as an action (shown and confirmed at the gate): `argv` when given (like `sh.action`, " ..
                  "on `on`), else `service.restart { on = on, name = name }` (systemd, Compose or Kubernetes, " ..
                  "as the target implies); then polls `ready()` until it returns a true value, as " ..
                  "`ctx:wait_until` does. A dry run returns the action's result without waiting.",
        options = {
          { "argv", "", "the team's restart command, an array (an optional `input.argv`); overrides the service" },
          { "on", "\"local\"", "where the service runs (a target)" },
          { "name", "", "the service: a systemd unit (Compose and Kubernetes targets name their own)" },
          { "leave_running", "true", "with argv: the daemon the command starts outlives it (false: ended with it)" },
          { "summary", "", "what the gate shows the action does" },
          { "target", "", "what it acts on" },
          { "ready", "", "a function: a true value once the service answers" },
          { "ready_what", "\"it answers\"", "what is awaited, in the wait's messages" },
          { "wait", "60", "how long to wait for `ready` (" .. DURATION .. ")" },
          { "every", "0.5", "seconds between two calls of `ready`" },
          { "timeout", "120", "deadline of the command itself" },
        },
        returns = "what `ready` last returned, or `nil, err, kind`",
        kinds = { "exit", "timeout", "interrupted", "notfound", "permission" },
        example = [[must(recipe.restart(ctx, { argv = ctx.restart, on = ctx.on, name = ctx.service, summary = "restart Redis",
  target = ctx.url, ready = function() return redis.ping(ctx.url) end, ready_what = "Redis answers PING", wait = 30 }))]],
      },
      {
        name = "recipe.logs",
        call = "recipe.logs(ctx, { OPTIONS })",
        summary = "Reads a component's log with `logs.read` (journald `unit`, a `file`, a Compose `service`, or " ..
                  "the target's own when it is a compose:// or k8s:// target), shows its most frequent lines " ..
                  "(`logs.top`: grep | sort | uniq -c | sort -rn | head) and reports a finding with its code for " ..
                  "each cause whose pattern appears. No source given: notes \"no log source given\" and returns.",
        options = {
          { "on", "\"local\"", "where the log is (a target)" },
          { "unit", "", "a journald unit" },
          { "file", "", "a log file" },
          { "service", "", "a Compose service" },
          { "since", "\"30m\"", "how far back (" .. DURATION .. ")" },
          { "timeout", "10", "deadline of the read" },
          { "grep", "", "optional: only the lines matching this regular expression" },
          { "what", "\"the log\"", "what the log is, in the messages" },
          { "causes", "", "`{ { pattern = REGEX, code = \"redis.oom\", text = \"...\" }, ... }`" },
          { "top", "5", "how many groups of lines are shown" },
        },
        returns = "the result of `logs.read` and the list of the codes found, or nothing (no source, or the read failed: noted)",
        kinds = {},
        example = [[recipe.logs(ctx, { on = ctx.on, file = ctx.log_file, since = ctx.since, what = "Redis's log",
  causes = { { pattern = "OOM command not allowed", code = "redis.oom", text = "Redis refuses writes at maxmemory" } } })]],
      },
      {
        name = "recipe.healthy",
        call = "recipe.healthy(url, timeout)",
        summary = "GETs a service's health endpoint: the response when it answers 2xx.",
        options = {},
        returns = "the response of `http.get`, or `nil, reason` (the request failed, or the status)",
        kinds = {},
        example = [[local ok, why = recipe.healthy("http://127.0.0.1:8080/health", 5)]],
      },
      {
        name = "recipe.verify",
        call = "recipe.verify(ctx, { OPTIONS })",
        summary = "Ends the run: escalates with the error when `probe()` returns `nil, err` (prefixed by " ..
                  "`failed`) or the health endpoint fails; otherwise reports both and resolves.",
        options = {
          { "probe", "", "a function returning a value, or `nil, err`" },
          { "failed", "", "the escalation's text before the error" },
          { "ok", "", "optional: a function of the probe's value, the line reported" },
          { "health", "", "optional: the service's health URL" },
          { "timeout", "10", "deadline of the health request" },
          { "resolved", "", "the resolution's text" },
        },
        returns = "what `ctx:resolved` or `ctx:escalate` returns (return it from the step)",
        kinds = {},
        example = [[return recipe.verify(ctx, { probe = function() return redis.ping(ctx.url) end,
  failed = "Redis still does not answer", resolved = "Redis answers", health = ctx.health })]],
      },
    },
  },
}

------------------------------------------------------------------------------------------ types
-- For editors (`runbook doc --luals`, luals.lua): the Lua type of each parameter name used in the
-- `call`s above and of the options whose default does not say it (a default `10` is a number,
-- `false` a boolean, `"memory"` a string, `{}` a table; a deadline is `number|string`). An entry's
-- `rtype` is the type of its first result when that is not the table its `returns` describes.
M.types = {
  params = { path = "string", regex = "string", host = "string", port = "integer", url = "string",
             url_or_conninfo = "string", url_or_host = "string", sql = "string", params = "any[]?",
             pid = "integer", cmd = "string", section = "string?", key = "string", base_url = "string",
             promql = "string" },
  options = { summary = "string", target = "string", blast = "string", cwd = "string", pattern = "string",
              older_than = "number|string", path = "string", match = "string", ca = "string",
              contains = "string", body = "string", url = "string", method = "string", state = "string",
              expect = "integer|integer[]|string", json = "table", env = "table<string, string>",
              headers = "table<string, string>", application_name = "string", connect_timeout = "number|string",
              sslmode = "string", db = "integer", password = "string", user = "string", role = "string",
              columns = "string[]", table = "string", framework = "string", expected = "string",
              min = "number|string", older = "number|string", database = "string", samples = "integer",
              count = "integer", limit = "integer" },
}

-- The runbook language's own entries: runbook, step, input.*, must, parallel, ctx, fmt, check.
M.language = require "doc_lang"

-------------------------------------------------------------------------------------- the guide
-- Writing a runbook, before the API in doc/lua-api.md and runbook-lua(7): sections of Markdown (paragraphs,
-- `code`, ```lua blocks) and, for the step context, rows of a two-column table.
M.guide = {
  {
    title = "Writing a runbook",
    text = [[A runbook is a Lua file that returns `runbook { ... }`. The top level only declares: loading a runbook
(for `list`, `show`, `check`) touches nothing, and primitives refuse to run at load time. Probes look and
run freely, bounded in time; actions change things and run only once the operator has confirmed them at
the gate. Runbooks are found by name on the search path (see `runbook help files`), or given as a file.

```lua
-- runbooks/example.lua
local sh  = require "sh"
local sys = require "sys"

return runbook {
  name     = "example",                       -- must match the file name
  summary  = "What this runbook is for",
  severity = "SEV3",                          -- SEV1..SEV4 or P0..P3
  inputs = {
    path    = input.path     { default = "/", help = "filesystem to look at" },
    limit   = input.int      { default = 90, min = 1, max = 100 },
    restart = input.argv     { default = { "systemctl", "restart", "myapp" } },
    api     = input.url      { env = "API_URL", default = "http://127.0.0.1:8080" },
    token   = input.secret   { env = "API_TOKEN" },
    wait    = input.duration { default = "30s" },       -- the value is seconds
  },

  step "space" {
    title   = "How full is the filesystem?",
    explain = "Shown under the title, before the step runs.",
    run = function(ctx)
      local fs = must(sys.fs(ctx.path))        -- must() turns nil, err into a step failure
      if fs.used_pct >= ctx.limit then
        ctx:finding("%s is %s full", fs.mount, fmt.pct(fs.used_pct))
        return ctx:jump("restart")
      end
      ctx:ok("%s free", fmt.bytes(fs.avail))
    end,
  },

  step "restart" {
    title = "Restart the service",
    run = function(ctx)
      must(sh.action(ctx.restart))             -- asks first; a declined action skips the step
      must(ctx:wait_until("the service answers", function()
        local r = sh.read { "curl", "-fsS", ctx.api, quiet = true }
        return r and r.ok
      end, { timeout = ctx.wait, every = 1 }))
      return ctx:resolved("restarted")
    end,
  },
}
```

Rules: unknown keys are errors (`titel`, `timout`), reading or assigning an undefined global raises,
and validation names the file and the field (`example.lua: step 2 ('restart') has no title`).
Inputs are set as `name=value` on the command line, else from their `env` variable, else the default.
`input.secret` values and passwords inside `input.url` values are redacted everywhere (terminal,
transcript, error messages), as is the password in any URL or after `password=`.

Runbooks run in a sandbox: no `io`, `os.execute`, `package`, `debug`, `loadfile`/`dofile`,
`string.dump`, binary chunks or C modules. `require` gives only the modules of the API below.]],
  },
  {
    title = "The step context `ctx`",
    text = [[Each step's `run` gets the context of the run, and the sandbox has a few helpers besides the modules:]],
    rows = {
      { "`ctx.<input>`", "the input's value" },
      { "`ctx.state`", "a table shared by all steps of the run" },
      { "`ctx.dry_run`", "true under `--dry-run`" },
      { "`ctx:ok(fmt, ...)` / `ctx:finding(fmt, ...)` / `ctx:note(fmt, ...)`",
        "report (✔ / ✖ / ·), recorded in the transcript" },
      { "`ctx:show(text)`", "print a block, e.g. `fmt.table(...)`" },
      { "`ctx:jump(id)`", "continue at step `id` after this one (`return ctx:jump(\"x\")`)" },
      { "`ctx:resolved(msg)` / `ctx:escalate(msg)`", "end the run with that outcome (exit 0 / 3)" },
      { "`ctx:update(status, text)`", "a status update (`investigating`, `identified`, `monitoring`, " ..
        "`resolved`): shown, recorded, posted to the sinks configured in config.lua" },
      { "`ctx:wait_until(desc, fn, { timeout = 60, every = 1 })`", "poll `fn` until truthy; `nil, err, \"timeout\"` otherwise" },
      { "`ctx:check(label, value, { warn, crit, format })`", "judge a measurement against thresholds: shows " ..
        "`OK` / `WARNING` / `CRITICAL` / `UNKNOWN` in colour, records a `check` audit record, returns the status" },
      { "`check.judge(value, { warn, crit })`", "the same judgement without output: status, reason" },
      { "`parallel(tasks, { limit = 50 })`", "run a table of functions at once (see below)" },
      { "`must(v, err)`", "`v`, or a step failure with `err`" },
      { "`fmt.bytes(n)`, `fmt.pct(n)`, `fmt.ms(n)`, `fmt.duration(s)`, `fmt.count(n)`, `fmt.table(rows, cols)`",
        "formatting" },
    },
  },
  {
    title = "Thresholds",
    text = [[Thresholds use the range syntax of the monitoring plugins (Nagios, Icinga, check_postgres), so that a
runbook's numbers read like the alert's: `10` alerts outside 0..10, `10:` below 10, `~:10` above 10,
`10:20` outside 10..20, `@10:20` inside 10..20 (bounds inclusive). Critical wins over warning; a value
that is not a number is `UNKNOWN`.]],
  },
  {
    title = "Parallel tasks",
    text = [[`parallel { name = function() ... end, ... }` runs its tasks from one thread: whenever a primitive
waits on a socket or a command, its task yields and the others run, so checking 200 endpoints costs
about the slowest one. `sys.fs`, `sys.tail`, `sys.grep`, `sys.deleted_open`, the walks
(`sys.largest`, `sys.files`) and `sys.filesystems` yield too while a worker does their file system
calls, so a hung mount costs only its own task the deadline, and `sys.processes` while it waits out
its `sample`. The result has the task's keys, each `{ value = first result }` or `{ err, kind }` (a task
that returned `nil, err, kind` or raised), with `ms`. One task's failure does not stop the others;
Ctrl-C stops them all.]],
  },
  {
    title = "Durations, patterns and errors",
    text = [[Durations everywhere are seconds as a number, or a string with a unit: `500ms`, `2s`, `5m`, `1h`, `7d`.
The regular expressions of `sys.grep` are POSIX extended ones written in Lua strings, where a backslash is
doubled: `"\\[error\\]"` is the regex `\[error\]`, a literal `[error]` as in nginx's error log.
Expected failures return `nil, "<what> <target>: <cause>", kind`; mistakes (wrong types, unknown
options) raise. Every primitive has a deadline (its `timeout`, capped by `--timeout`), and Ctrl-C stops
the call in progress.
The runbook's Lua has a memory limit: 1 GiB unless `--memory-limit SIZE` (exec) or
`RUNBOOK_MEMORY_LIMIT` says otherwise (`512M`, `2G`; at least 32M). Past it the step fails and the run
ends ("the memory limit was reached", exit 1) with its transcript closed.]],
  },
}

----------------------------------------------------------------------------------------- lookup
local by_name = {}
for _, list in ipairs({ M.modules, M.language }) do
  for _, mod in ipairs(list) do
    by_name[mod.name] = mod
    for _, fn in ipairs(mod.functions) do by_name[fn.name] = fn end
  end
end

-- The entry of "sys.fs" (a function) or "sys" (a module), or nil.
function M.find(name) return by_name[name] end

function M.names()
  local names = {}
  for name in pairs(by_name) do names[#names + 1] = name end
  table.sort(names)
  return names
end

-- "sh.read { argv..., timeout = 10, grace = 1, ..., cwd, ... }": the call with its options' defaults.
function M.signature(fn)
  local opts = {}
  for _, o in ipairs(fn.options) do
    opts[#opts + 1] = o[2] ~= "" and (o[1] .. " = " .. o[2]) or o[1]
  end
  local s = fn.call:gsub("OPTIONS", (table.concat(opts, ", "):gsub("%%", "%%%%")))
  return (s:gsub("{ }", "{}"))
end

---------------------------------------------------------------------------------- the terminal
local function plain(md) return (md:gsub("`", "")) end

local function indent(text, by) return by .. text:gsub("\n", "\n" .. by) end

-- help(sh.read) and :help sh.read: signature, summary, options, result, kinds, example.
function M.text(entry)
  if entry.functions then
    local lines = { entry.name .. ": " .. entry.title, "" }
    local w = 0
    for _, fn in ipairs(entry.functions) do w = math.max(w, #fn.name) end
    for _, fn in ipairs(entry.functions) do
      local first = plain(fn.summary):match("^(.-%.)%s") or plain(fn.summary)
      lines[#lines + 1] = string.format("  %-" .. w .. "s  %s", fn.name, first)
    end
    lines[#lines + 1] = ""
    lines[#lines + 1] = "help(" .. entry.functions[1].name .. ") for one of them."
    return table.concat(lines, "\n")
  end
  local lines = { M.signature(entry), indent(plain(entry.summary), "  ") }
  if #entry.options > 0 then
    lines[#lines + 1] = "  options"
    local w, dw = 1, 1   -- "%-0s" is not a format: every column is at least one wide
    for _, o in ipairs(entry.options) do w, dw = math.max(w, #o[1]), math.max(dw, #o[2]) end
    for _, o in ipairs(entry.options) do
      lines[#lines + 1] = (string.format("    %-" .. w .. "s  %-" .. dw .. "s  %s", o[1], o[2], plain(o[3])):gsub("%s+$", ""))
    end
  end
  lines[#lines + 1] = "  returns  " .. plain(entry.returns)
  if #entry.kinds > 0 then lines[#lines + 1] = "  kinds    " .. table.concat(entry.kinds, ", ") end
  lines[#lines + 1] = "  example"
  lines[#lines + 1] = indent(entry.example, "    ")
  return table.concat(lines, "\n")
end

------------------------------------------------------------------------- doc/lua-api.md

local function md_cell(s) return (s:gsub("|", "\\|")) end

local function md_function(fn, out)
  out[#out + 1] = "#### `" .. M.signature(fn) .. "`"
  out[#out + 1] = ""
  out[#out + 1] = fn.summary
  out[#out + 1] = ""
  if #fn.options > 0 then
    out[#out + 1] = "| option | default | |"
    out[#out + 1] = "|---|---|---|"
    for _, o in ipairs(fn.options) do
      out[#out + 1] = string.format("| `%s` | %s | %s |", o[1], o[2] ~= "" and ("`" .. md_cell(o[2]) .. "`") or "",
                                    md_cell(o[3]))
    end
    out[#out + 1] = ""
  end
  local kinds = {}
  for i, k in ipairs(fn.kinds) do kinds[i] = "`" .. k .. "`" end
  out[#out + 1] = "Returns " .. fn.returns .. "." .. (#kinds > 0 and (" Error kinds: " .. table.concat(kinds, ", ") .. ".") or "")
  out[#out + 1] = ""
  out[#out + 1] = "```lua"
  out[#out + 1] = fn.example
  out[#out + 1] = "```"
  out[#out + 1] = ""
end

local function md_modules(out)
  for _, mod in ipairs(M.modules) do
    out[#out + 1] = "### `" .. mod.name .. "`: " .. mod.title
    out[#out + 1] = ""
    if mod.intro then out[#out + 1] = mod.intro; out[#out + 1] = "" end
    for _, fn in ipairs(mod.functions) do md_function(fn, out) end
    if mod.notes then out[#out + 1] = mod.notes; out[#out + 1] = "" end
  end
end

-- doc/lua-api.md (`runbook doc`): the guide, then the reference.
function M.document()
  local out = { "# runbook: writing runbooks, and the Lua API", "",
    "<!-- Generated by `runbook doc` from interp/doc.lua: edit that file, then run `make docs`. -->", "",
    "Also as a man page, `man runbook-lua`, and in the REPL: `help(sh.read)` or `:help sh.read`.", "" }
  for _, section in ipairs(M.guide) do
    out[#out + 1] = "## " .. section.title
    out[#out + 1] = ""
    out[#out + 1] = section.text
    out[#out + 1] = ""
    if section.rows then
      out[#out + 1] = "| | |"
      out[#out + 1] = "|---|---|"
      for _, row in ipairs(section.rows) do
        out[#out + 1] = "| " .. md_cell(row[1]) .. " | " .. md_cell(row[2]) .. " |"
      end
      out[#out + 1] = ""
    end
  end
  out[#out + 1] = "## Lua API reference"
  out[#out + 1] = ""
  md_modules(out)
  return (table.concat(out, "\n"):gsub("\n+$", "")) .. "\n"
end

return M
