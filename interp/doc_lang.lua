-- doc_lang.lua - the part of the API reference (doc.lua) that documents the runbook language
-- itself rather than a module: runbook {}, step, input.*, must, parallel, the step context ctx,
-- fmt and check. Same entry format as doc.lua's, plus the types editors need (`runbook doc
-- --luals`, luals.lua): an option's 4th element is its Lua type; `params` are { name, type };
-- `rtype` is the type of the first result; `fields` of a module are { name, type, doc }.
-- Kept apart from doc.lua for size only: doc.lua serves these entries by name like its own.
local DURATION = "seconds, or a duration such as \"500ms\", \"2s\", \"5m\""
local INPUT_OPTIONS = {
  { "default", "", "the value when neither the command line nor `env` gives one", "any" },
  { "env", "", "an environment variable to read the value from", "string" },
  { "help", "", "one line shown by `runbook show` and when the input is missing", "string" },
  { "required", "true", "false: the input may stay nil (`input.secret` is optional unless `required = true`)", "boolean" },
  { "secret", "false", "redact the value everywhere (terminal, transcript, errors)", "boolean" },
  { "min", "", "the smallest value (`input.int`)", "integer" },
  { "max", "", "the largest value (`input.int`)", "integer" },
}
local function input_entry(kind, what)
  return {
    name = "input." .. kind, call = "input." .. kind .. " { OPTIONS }",
    summary = "Declares an input whose value is " .. what .. ". A step reads it as `ctx.NAME`.",
    options = INPUT_OPTIONS, returns = "the declaration", rtype = "input.decl",
    kinds = {}, example = "input." .. kind .. " { env = \"MY_" .. kind:upper() .. "\", help = \"...\" }",
  }
end

local function ctx_say(name, mark)
  return {
    name = "ctx:" .. name, call = "ctx:" .. name .. "(format, ...)",
    summary = "Reports " .. mark .. ", formatted as `string.format`, on the terminal and in the transcript.",
    options = {}, params = { { "format", "string" }, { "...", "any" } }, rtype = "nil",
    returns = "nothing", kinds = {}, example = "ctx:" .. name .. "(\"%s is %d%% full\", \"/var\", 91)",
  }
end

return {
  {
    name = "language", title = "the runbook language",
    intro = [[A runbook file returns `runbook { ... }`; its top level only declares. These are globals.]],
    functions = {
      {
        name = "runbook", call = "runbook { OPTIONS, step..., }",
        summary = "Declares the runbook: its fields, then its steps in the order they run.",
        options = {
          { "name", "", "a word like `disk-full`; must match the file name", "string" },
          { "summary", "", "one line, shown by `runbook list`", "string" },
          { "severity", "", "`SEV1`..`SEV4` or `P0`..`P3`", "string" },
          { "inputs", "{}", "`{ name = input.<type> { ... } }`", "table<string, input.decl>" },
          { "description", "", "a paragraph for `runbook show`", "string" },
          { "owner", "", "who to ask about it", "string" },
        },
        rtype = "runbook.decl",
        returns = "the runbook", kinds = {},
        example = [[return runbook { name = "x", summary = "...", severity = "SEV3", step "a" { ... } }]],
      },
      {
        name = "step", call = "step \"id\" { OPTIONS }",
        summary = "Declares a step: `id` is what `ctx:jump` and `--start-at` name.",
        options = {
          { "title", "", "the step's heading", "string" },
          { "explain", "", "shown under the title before the step runs", "string" },
          { "run", "", "`function(ctx) ... end`: the step's code", "fun(ctx: ctx): any" },
        },
        params = { { "id", "string" } }, rtype = "fun(spec: step.opts): step.decl",
        returns = "the step, for `runbook { ... }`", kinds = {},
        example = [[step "space" { title = "How full is it?", run = function(ctx) ctx:ok("fine") end }]],
      },
      {
        name = "must", call = "must(v, err, ...)",
        summary = "`v` (and the rest), or a step failure with `err` when `v` is nil or false.",
        options = {}, params = { { "v", "T" }, { "err", "any" }, { "...", "any" } }, rtype = "T", generic = "T",
        returns = "its arguments", kinds = {},
        example = [[local fs = must(sys.fs("/var"))]],
      },
      {
        name = "parallel", call = "parallel(tasks, { OPTIONS })",
        summary = "Runs a table of functions at once; one's failure does not stop the others.",
        options = { { "limit", "50", "tasks running at a time", "integer" } },
        params = { { "tasks", "table<any, fun(): any>" }, { "opts", "opts" } }, rtype = "table<any, { value: any, err: string?, kind: string?, ms: number }>",
        returns = "the tasks' keys, each `{ value }` or `{ err, kind }`, with `ms`", kinds = {},
        example = [[parallel { a = function() return sys.load() end, b = function() return sys.memory() end }]],
      },
    },
  },
  {
    name = "input", title = "input declarations",
    intro = [[Inputs are set as `name=value` on the command line, else from their `env` variable, else the default.]],
    functions = {
      input_entry("string", "a string"),
      input_entry("int", "an integer (`min`, `max`)"),
      input_entry("url", "a URL (its password is redacted)"),
      input_entry("path", "a path (`~/` expanded)"),
      input_entry("argv", "a command, an array of words (`\"systemctl restart x\"` on the command line)"),
      input_entry("duration", "seconds (`\"30s\"`, `\"5m\"` are accepted)"),
      input_entry("secret", "a secret, redacted everywhere"),
      input_entry("target", "where commands run: `local`, `ssh://[user@]host[:port]`, `inventory:GROUP`, " ..
                  "`compose://[DIR:]SERVICE`, `k8s://[CONTEXT/]NS/KIND/NAME` or `k8s://NS/pods?l=SELECTOR` " ..
                  "(`on = ctx.NAME` in sh, sys and service calls; a bad one is an input error)"),
    },
  },
  {
    name = "ctx", title = "the step context",
    intro = [[The argument of a step's `run`: its inputs (`ctx.name`), state shared by the steps, and reports.]],
    fields = {
      { "state", "table", "a table shared by all steps of the run" },
      { "dry_run", "boolean", "true under `--dry-run`" },
      { "inputs", "table<string, any>", "the inputs' values by name" },
      { "runbook", "string", "the runbook's name" },
    },
    functions = {
      ctx_say("ok", "a success (✔)"),
      ctx_say("finding", "a finding (✖): what is wrong"),
      ctx_say("note", "a note (·)"),
      {
        name = "ctx:show", call = "ctx:show(text)", summary = "Prints a block, e.g. `fmt.table(...)`.",
        options = {}, params = { { "text", "string" } }, rtype = "nil", returns = "nothing", kinds = {},
        example = [[ctx:show(fmt.table(rows, { { "path" }, { "bytes", format = fmt.bytes } }))]],
      },
      {
        name = "ctx:check", call = "ctx:check(label, value, { OPTIONS })",
        summary = "Judges a measurement against thresholds (monitoring-plugins ranges), shows and records it.",
        options = {
          { "warn", "", "the warning range: `\"80\"`, `\"10:\"`, `\"@10:20\"`", "string|number" },
          { "crit", "", "the critical range", "string|number" },
          { "format", "tostring", "how the value is shown (`fmt.pct`)", "fun(v: any): string" },
        },
        params = { { "label", "string" }, { "value", "number?" }, { "opts", "opts" } }, rtype = "\"OK\"|\"WARNING\"|\"CRITICAL\"|\"UNKNOWN\"",
        returns = "the status", kinds = {},
        example = [[ctx:check("disk used", 85, { warn = "80", crit = "90", format = fmt.pct })]],
      },
      {
        name = "ctx:jump", call = "ctx:jump(id)", summary = "Continues at step `id` after this one: `return ctx:jump(\"x\")`.",
        options = {}, params = { { "id", "string|integer" } }, rtype = "any", returns = "a value for the step to return",
        kinds = {}, example = [[return ctx:jump("restart")]],
      },
      {
        name = "ctx:resolved", call = "ctx:resolved(message)", summary = "Ends the run as resolved (exit 0).",
        options = {}, params = { { "message", "string?" } }, rtype = "any", returns = "a value for the step to return",
        kinds = {}, example = [[return ctx:resolved("restarted")]],
      },
      {
        name = "ctx:escalate", call = "ctx:escalate(message)", summary = "Ends the run as escalated (exit 3): hand it over.",
        options = {}, params = { { "message", "string?" } }, rtype = "any", returns = "a value for the step to return",
        kinds = {}, example = [[return ctx:escalate("the database is down: page the DBA")]],
      },
      {
        name = "ctx:update", call = "ctx:update(status, text)",
        summary = "A status update (`investigating`, `identified`, `monitoring`, `resolved`): shown, recorded, posted.",
        options = {}, params = { { "status", "string" }, { "text", "string" } }, rtype = "any", returns = "as the sinks answer",
        kinds = {}, example = [[ctx:update("identified", "Redis is out of memory")]],
      },
      {
        name = "ctx:wait_until", call = "ctx:wait_until(description, fn, { OPTIONS })",
        summary = "Polls `fn` until it returns a truthy value, bounded in time.",
        options = {
          { "timeout", "60", "deadline (" .. DURATION .. ")", "number|string" },
          { "every", "1", "between polls (" .. DURATION .. ")", "number|string" },
        },
        params = { { "description", "string" }, { "fn", "fun(): any" }, { "opts", "opts" } }, rtype = "any",
        returns = "`fn`'s value", kinds = { "timeout", "interrupted" },
        example = [[must(ctx:wait_until("the service answers", function() return http.get(url) end, { timeout = 30 }))]],
      },
    },
  },
  {
    name = "fmt", title = "formatting",
    functions = {
      { name = "fmt.bytes", call = "fmt.bytes(n)", summary = "Bytes as `1.9 GiB`.", options = {},
        params = { { "n", "number" } }, rtype = "string", returns = "a string", kinds = {}, example = [[fmt.bytes(2^31)]] },
      { name = "fmt.count", call = "fmt.count(n)", summary = "A count with thousands separators: `12,345`.", options = {},
        params = { { "n", "number" } }, rtype = "string", returns = "a string", kinds = {}, example = [[fmt.count(12345)]] },
      { name = "fmt.pct", call = "fmt.pct(n)", summary = "A percentage: `9.5%`, `91%`.", options = {},
        params = { { "n", "number" } }, rtype = "string", returns = "a string", kinds = {}, example = [[fmt.pct(91.2)]] },
      { name = "fmt.ms", call = "fmt.ms(ms)", summary = "Milliseconds: `12.5 ms`, `1m05s`.", options = {},
        params = { { "ms", "number" } }, rtype = "string", returns = "a string", kinds = {}, example = [[fmt.ms(12.5)]] },
      { name = "fmt.duration", call = "fmt.duration(s)", summary = "Seconds: `45 s`, `3m20s`, `2h05m`, `3d04h`.", options = {},
        params = { { "s", "number" } }, rtype = "string", returns = "a string", kinds = {}, example = [[fmt.duration(200)]] },
      { name = "fmt.table", call = "fmt.table(rows, columns)",
        summary = "Aligned columns: `columns` is a list of `{ key, title =, format =, right = }`.", options = {},
        params = { { "rows", "table[]" }, { "columns", "table[]" } }, rtype = "string", returns = "a string", kinds = {},
        example = [[fmt.table({ { n = 1 } }, { { "n", title = "N", right = true } })]] },
    },
  },
  {
    name = "check", title = "thresholds",
    functions = {
      { name = "check.judge", call = "check.judge(value, { OPTIONS })",
        summary = "Judges a value against warning and critical ranges, without output.",
        options = { { "warn", "", "the warning range", "string|number" }, { "crit", "", "the critical range", "string|number" } },
        params = { { "value", "number?" }, { "opts", "opts" } }, rtype = "\"OK\"|\"WARNING\"|\"CRITICAL\"|\"UNKNOWN\"",
        returns = "the status and why", kinds = {}, example = [[check.judge(85, { warn = "80", crit = "90" })]] },
    },
  },
}
