/*
 * redis_commands.c - commands from Lua: conn:call (a probe: the command checked against the server's
 * COMMAND INFO flags, refused when it could write) and conn:action (any command, through the gate,
 * FLUSHDB/FLUSHALL's blast radius counted first), and how a command is shown and kept out of sight.
 */
#include "redis_conn.h"

/* ------------------------------------------------------------------- commands from Lua */


/* Reads cmd, arg... [, options] from index 2 on. Numbers become strings; anything else raises, as
 * does an option that is not one of `options`. */
static void read_args(lua_State *L, const char *fn, const char *const options[], struct redis_args *a)
{
	int top = lua_gettop(L);
	memset(a, 0, sizeof *a);
	if (top >= 3 && lua_istable(L, top))
		a->opts = top--;
	a->argc = top - 1;
	if (a->argc < 1 || lua_type(L, 2) != LUA_TSTRING)
		luaL_error(L, "%s: the first argument is the command, a string: conn:%s(\"GET\", key)", fn, strchr(fn, '.') + 1);
	if (a->argc > MAX_ARGS)
		luaL_error(L, "%s: %d arguments is too many", fn, a->argc);
	for (int i = 2; i <= top; i++) {
		int t = lua_type(L, i);
		if (t != LUA_TSTRING && t != LUA_TNUMBER)
			luaL_error(L, "%s: argument %d is a %s (commands take strings and numbers; options go last, in a table)",
			           fn, i - 1, luaL_typename(L, i));
	}
	if (!a->opts) {
		lua_newtable(L);               /* no options: an empty table stands in */
		a->opts = lua_gettop(L);
	}
	/* Lua owns the arrays: nothing leaks if something raises later. */
	void *mem = lua_newuserdatauv(L, (size_t)a->argc * (sizeof *a->argv + sizeof *a->lens), 0);
	a->argv = mem;
	a->lens = (size_t *)((char *)mem + (size_t)a->argc * sizeof *a->argv);
	for (int i = 0; i < a->argc; i++)
		a->argv[i] = lua_tolstring(L, i + 2, &a->lens[i]);
	redis_lower(a->name, sizeof a->name, a->argv[0], a->lens[0]);
	if (a->argc >= 2 && a->lens[1] > 0 && a->lens[1] < 40 && isalpha((unsigned char)a->argv[1][0])) {
		bool word = true;
		for (size_t i = 0; i < a->lens[1]; i++)
			word &= isalnum((unsigned char)a->argv[1][i]) || a->argv[1][i] == '-' || a->argv[1][i] == '_';
		if (word)
			redis_lower(a->sub, sizeof a->sub, a->argv[1], a->lens[1]);
	}
	luax_check_options(L, a->opts, fn, options);
}

/* The command as the gate shows it, quoted as one would type it in redis-cli; passwords (AUTH,
 * HELLO ... AUTH, MIGRATE ... AUTH/AUTH2, CONFIG SET requirepass/masterauth, ACL SETUSER >pw) are
 * shown as *** and registered as secrets. Returns a malloc'd string. */
static char *display_command(const struct redis_args *a)
{
	struct jbuf b = { 0 };
	for (int i = 0; i < a->argc; i++) {
		const char *s = a->argv[i];
		size_t n = a->lens[i];
		bool secret = false;
		if (i > 0) {
			const char *prev = a->argv[i - 1], *prev2 = i > 1 ? a->argv[i - 2] : "";
			if (strcmp(a->name, "auth") == 0)
				secret = i == a->argc - 1;   /* AUTH [username] password */
			else if (strcmp(a->name, "hello") == 0 || strcmp(a->name, "migrate") == 0)
				secret = (strcasecmp(prev, "auth") == 0 && strcmp(a->name, "migrate") == 0)
				         || strcasecmp(prev2, "auth") == 0 || strcasecmp(prev2, "auth2") == 0;
			else if (strcmp(a->name, "config") == 0 && strcmp(a->sub, "set") == 0 && i >= 3 && i % 2 == 1)
				secret = strcasecmp(prev, "requirepass") == 0 || strcasecmp(prev, "masterauth") == 0;
			else if (strcmp(a->name, "acl") == 0 && strcmp(a->sub, "setuser") == 0 && i >= 3)
				secret = n > 1 && (s[0] == '>' || s[0] == '#' || s[0] == '<' || s[0] == '!');
		}
		if (i)
			jb_rawz(&b, " ");
		if (secret) {
			char *copy = malloc(n + 1);
			if (!copy)
				abort();
			memcpy(copy, s, n);
			copy[n] = 0;
			redact_add_secret(copy);
			if (n > 1 && strcmp(a->name, "acl") == 0)
				redact_add_secret(copy + 1);
			memset(copy, 0, n);
			free(copy);
			jb_rawz(&b, strcmp(a->name, "acl") == 0 ? (char[]){ s[0], '*', '*', '*', 0 } : REDACTED);
			continue;
		}
		bool bare = n > 0;
		for (size_t j = 0; j < n && bare; j++)
			bare = s[j] > ' ' && s[j] < 127 && s[j] != '"' && s[j] != '\'' && s[j] != '\\';
		if (bare) {
			jb_raw(&b, s, n);
			continue;
		}
		jb_rawz(&b, "\"");
		for (size_t j = 0; j < n; j++) {
			unsigned char c = (unsigned char)s[j];
			char esc[8];
			if (c == '"' || c == '\\')
				snprintf(esc, sizeof esc, "\\%c", c);
			else if (c == '\n')
				snprintf(esc, sizeof esc, "\\n");
			else if (c == '\r')
				snprintf(esc, sizeof esc, "\\r");
			else if (c == '\t')
				snprintf(esc, sizeof esc, "\\t");
			else if (c < ' ' || c >= 127)
				snprintf(esc, sizeof esc, "\\x%02x", c);
			else
				snprintf(esc, sizeof esc, "%c", c);
			jb_rawz(&b, esc);
		}
		jb_rawz(&b, "\"");
	}
	return b.p;
}

static void keep_user_command(struct redis_op *op, const struct redis_args *a)
{
	int n = redisFormatCommandArgv(&op->user, a->argc, a->argv, a->lens);
	if (n < 0 || !op->user)
		abort();
	op->user_len = n;
	snprintf(op->name, sizeof op->name, "%s", a->name);
	snprintf(op->sub, sizeof op->sub, "%s", a->sub);
}

static void queue_user_command(struct redis_op *op)
{
	op->q[op->nq] = op->user;
	op->qlen[op->nq++] = op->user_len;
	op->user = NULL;
}

/* ------------------------------------------------------------------------- conn:call */

static const char *const call_options[] = { "timeout", NULL };

static int call_done(lua_State *L, struct redis_op *op)
{
	char summary[800], shown[140], what[100];
	redis_upper_words(shown, sizeof shown, op->name, "");
	if (op->kind) {
		redis_audit(op, NULL);
		return redis_fail_push(L, op);
	}
	if (op->stage == 0) {
		const redisReply *r = op->rep[0];
		if (redis_is_error(r) || r->type != REDIS_REPLY_ARRAY) {
			if (redis_is_error(r))
				redis_fail_reply(op, r, "cannot ask the server whether the command can write (COMMAND INFO)");
			else
				redis_op_fail(op, "protocol", "COMMAND INFO answered with something other than an array");
			redis_audit(op, NULL);
			return redis_fail_push(L, op);
		}
		struct redis_args a = { 0 };
		snprintf(a.name, sizeof a.name, "%s", op->name);
		snprintf(a.sub, sizeof a.sub, "%s", op->sub);
		lua_getiuservalue(L, 1, 1);
		bool shown_sub;
		const char *v = redis_learn(L, &a, r, &shown_sub);
		lua_pop(L, 1);
		char msg[TARGET_MAX + 300];
		if (!redis_allowed(msg, sizeof msg, op->fn, op->target, &a, v, shown_sub)) {
			op_release(op);   /* see tasks_run_op */
			return luaL_error(L, "%s", msg);
		}
		op->stage = 1;
		queue_user_command(op);
		redis_batch(op, 0);
		return AGAIN;
	}
	const redisReply *r = op->rep[0];
	if (redis_is_error(r)) {
		redis_fail_reply(op, r, NULL);
		snprintf(summary, sizeof summary, "%s: %s", shown, op->cause);
		redis_audit(op, summary);
		return redis_fail_push(L, op);
	}
	describe_reply(r, what, sizeof what);
	snprintf(summary, sizeof summary, "%s: %s", shown, what);
	redis_audit(op, summary);
	push_value(L, r, 0);   /* nil for a nil reply */
	return 1;
}

int conn_call(lua_State *L)
{
	struct redis_handle *h = redis_check_handle(L, "redis.call");
	struct redis_args a;
	read_args(L, "redis.call", call_options, &a);
	msec_t timeout = luax_opt_duration(L, a.opts, "timeout", h->timeout_ms, "redis.call");
	bool anywhere;
	const char *why = redis_local_refusal(&a, false, &anywhere);
	if (why) {
		char shown[140];
		redis_upper_words(shown, sizeof shown, a.name, strcmp(a.name, "client") == 0 || strcmp(a.name, "script") == 0 ? a.sub : "");
		if (anywhere)
			return luaL_error(L, "redis.call %s: %s is not supported: it %s", h->s.target, shown, why);
		return luaL_error(L, "redis.call %s: %s %s; use conn:action(...) to run it through the confirmation gate",
		                  h->s.target, shown, why);
	}
	int n = redis_handle_unusable(L, h, "redis.call");
	if (n)
		return n;
	lua_getiuservalue(L, 1, 1);
	bool shown_sub;
	const char *v = redis_cached_verdict(L, &a, &shown_sub);
	char msg[TARGET_MAX + 300];
	if (v && !redis_allowed(msg, sizeof msg, "redis.call", h->s.target, &a, v, shown_sub))
		return luaL_error(L, "%s", msg);
	lua_pop(L, 1);
	struct redis_op *op = redis_op_push(L, "redis.call", h, timeout);
	keep_user_command(op, &a);
	if (v) {
		op->stage = 1;
		queue_user_command(op);
	} else {
		char key[130];
		snprintf(key, sizeof key, "%s|%s", a.name, a.sub);
		const char *argv[4] = { "COMMAND", "INFO", a.name, key };
		redis_queue_argv(op, a.sub[0] ? 4 : 3, argv, NULL);
	}
	redis_batch(op, 0);
	return redis_op_run(L, op, call_done);
}

/* ----------------------------------------------------------------------- conn:action */

static const char *const action_options[] = { "timeout", "summary", "target", "irreversible", "blast", NULL };

static void action_result(struct redis_op *op, const char *outcome, const char *summary)
{
	gate_action_result(op->fn, op->target, outcome, sched_now_precise() - op->action_t0, summary);
}

/* FLUSHDB / FLUSHALL: how many keys it will take with it, from the DBSIZE / INFO keyspace just read. */
static void measure_blast(struct redis_op *op, char *out, size_t n)
{
	const redisReply *r = op->rep[0];
	if (strcmp(op->name, "flushdb") == 0 && r->type == REDIS_REPLY_INTEGER) {
		snprintf(out, n, "%lld keys in db %d", r->integer, op->h->db);
		return;
	}
	long long keys = 0;
	int dbs = 0;
	for (int db = 0; db < 1024 && r->type == REDIS_REPLY_STRING; db++) {
		char field[24], buf[128];
		snprintf(field, sizeof field, "db%d", db);
		if (!redis_info_str(r, field, buf, sizeof buf))
			continue;
		dbs++;
		if (strncmp(buf, "keys=", 5) == 0)
			keys += strtoll(buf + 5, NULL, 10);
	}
	snprintf(out, n, "%lld keys in %d database%s", keys, dbs, dbs == 1 ? "" : "s");
}

static int action_done(lua_State *L, struct redis_op *op)
{
	char blast[200] = "", summary[400], what[200];
	if (op->kind) {
		if (op->stage == 2) {
			action_result(op, op->kind, op->cause);
		} else {
			redis_audit(op, NULL);   /* the measurement before the gate was a probe */
		}
		return redis_fail_push(L, op);
	}
	if (op->stage == 0) {
		if (redis_is_error(op->rep[0])) {
			redis_fail_reply(op, op->rep[0], "cannot count the keys first");
			redis_audit(op, NULL);
			return redis_fail_push(L, op);
		}
		measure_blast(op, blast, sizeof blast);
		snprintf(summary, sizeof summary, "before %s: %s", op->display, blast);
		redis_audit(op, summary);
		op->stage = 1;
	}
	if (op->stage == 1) {
		char shown[TARGET_MAX + 400];
		snprintf(shown, sizeof shown, "%s on %s", op->display, op->target);
		struct gate_plan plan = {
			.primitive = "redis.action",
			.summary = op->summary_opt ? op->summary_opt : shown,
			.detail = op->summary_opt ? shown : NULL,
			.target = op->target_opt ? op->target_opt : op->target,
			.blast = op->blast_opt ? op->blast_opt : blast[0] ? blast : NULL,
			.irreversible = op->irreversible,
		};
		enum gate_answer ans = gate_ask(&plan);
		if (ans == GATE_DRY_RUN) {
			lua_createtable(L, 0, 3);
			luax_setbool(L, "dry_run", true);
			luax_setstr(L, "command", op->display);
			luax_setstr(L, "target", op->target);
			return 1;
		}
		if (ans == GATE_REFUSED)
			return luax_fail(L, "refused", "%s %s: not run: the transcript cannot be written", op->fn, op->target);
		if (ans != GATE_RUN) {
			char msg[TARGET_MAX + 300];
			snprintf(msg, sizeof msg, "%s %s: %s declined by the operator", op->fn, op->target, op->display);
			op_release(op);   /* see tasks_run_op */
			return host_raise_control(L, ans == GATE_ABORT ? "abort" : "skip", msg);
		}
		if (!op->c) {   /* cannot happen while the handle is busy with us; belt and braces */
			redis_op_fail(op, "closed", "the connection was closed");
			return redis_fail_push(L, op);
		}
		gate_action_start(op->fn, op->target);
		op->action_t0 = sched_now_precise();
		op->stage = 2;
		queue_user_command(op);
		redis_batch(op, op->action_timeout_ms);
		return AGAIN;
	}
	const redisReply *r = op->rep[0];
	if (redis_is_error(r)) {
		redis_fail_reply(op, r, NULL);
		action_result(op, op->kind, op->cause);
		return redis_fail_push(L, op);
	}
	describe_reply(r, what, sizeof what);
	action_result(op, "ok", what);
	push_value(L, r, 0);   /* nil for a nil reply */
	return 1;
}

int conn_action(lua_State *L)
{
	struct redis_handle *h = redis_check_handle(L, "redis.action");
	struct redis_args a;
	read_args(L, "redis.action", action_options, &a);
	msec_t timeout = luax_opt_duration(L, a.opts, "timeout", DEFAULT_ACTION_TIMEOUT_MS, "redis.action");
	const char *summary = luax_opt_string(L, a.opts, "summary", NULL, "redis.action");
	const char *target = luax_opt_string(L, a.opts, "target", NULL, "redis.action");
	const char *blast = luax_opt_string(L, a.opts, "blast", NULL, "redis.action");
	bool irreversible = luax_opt_bool(L, a.opts, "irreversible", false, "redis.action");
	bool anywhere;
	const char *why = redis_local_refusal(&a, true, &anywhere);
	if (why) {
		char shown[140];
		redis_upper_words(shown, sizeof shown, a.name, strcmp(a.name, "client") == 0 ? a.sub : "");
		return luaL_error(L, "redis.action %s: %s is not supported: it %s", h->s.target, shown, why);
	}
	int n = redis_handle_unusable(L, h, "redis.action");
	if (n)
		return n;
	struct redis_op *op = redis_op_push(L, "redis.action", h, h->timeout_ms);
	keep_user_command(op, &a);
	op->display = display_command(&a);
	op->summary_opt = summary;   /* alive: the options table holds them */
	op->target_opt = target;
	op->blast_opt = blast;
	op->action_timeout_ms = timeout;
	bool flush = strcmp(a.name, "flushdb") == 0 || strcmp(a.name, "flushall") == 0;
	op->irreversible = irreversible || flush;
	if (flush && !blast) {
		if (strcmp(a.name, "flushdb") == 0)
			redis_queue(op, "DBSIZE", NULL, NULL);
		else
			redis_queue(op, "INFO", "keyspace", NULL);
		op->stage = 0;
		redis_batch(op, 0);
	} else {
		op->stage = 1;
		op->phase = PH_DONE;   /* straight to the gate */
	}
	return redis_op_run(L, op, action_done);
}
