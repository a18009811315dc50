/*
 * redis.c - Redis (require "redis"), over hiredis' non-blocking context and its reply reader.
 *
 *   redis.connect(url, { timeout = 2, password }) -> conn | nil, err, kind
 *   redis.ping(url, { timeout = 2, password })    -> { ok = true, ms, connect_ms, version, role } | nil, err, kind
 *   conn:call(cmd, arg..., { timeout })           -> reply | nil, err, kind    (a read: see below)
 *   conn:action(cmd, arg..., { summary, target, irreversible, blast, timeout = 60 })
 *                                                 -> reply | { dry_run = true, command, target } | nil, err, kind
 *   conn:info(section, { timeout })               -> { server = { redis_version = "7.0.15", ... }, ... }
 *   conn:memory()      -> { used_memory, used_memory_rss, used_memory_peak, maxmemory, used_pct (nil when
 *                           maxmemory = 0), fragmentation_ratio, evicted_keys, maxmemory_policy }
 *   conn:clients()     -> { connected, blocked, maxclients, rejected, used_pct }
 *   conn:replication() -> { role, connected_replicas, replicas = { {ip, port, state, offset, lag, lag_bytes} },
 *                           master_host, master_port, master_link_status, master_link_up,
 *                           master_last_io_seconds, master_repl_offset }
 *   conn:slowlog { limit = 10 } -> { {id, time, duration_us, command = {words}, client, client_name}, ..., total }
 *   conn:latency { samples = 20 } -> { samples, min, avg, max, p95 }  (PING round trips, ms)
 *   conn:keyspace()    -> { {db, keys, expires, avg_ttl}, ..., keys, expires }
 *   conn:llen(key)     -> integer
 *   conn:close(), `local conn <close> = ...`, __gc, tostring(conn) ("redis.conn 10.0.0.5:6379/0")
 *   Every method but close takes a trailing options table { timeout = ... }. The probes and the
 *   policy of what conn:call may run are in redis_probes.c; redis.h is the table of contents.
 *
 * URLs: redis://[user:password@]host[:port][/db] (port 6379, db 0 by default), or a unix socket,
 * unix://[[user]:password@]/path/redis.sock[?db=N] (redis-py's form). rediss:// is refused (this
 * hiredis has no TLS). The host is resolved here, bounded (net_lookup), and hiredis gets a
 * numeric address (each of a name's addresses in turn, for an equal share of the time left): redisConnectNonBlock() then starts a non-blocking connect and, hiredis 0.14 being
 * what it is, reports a connect still in progress as success (err = 0, REDIS_CONNECTED set); we finish
 * it ourselves by waiting for POLLOUT and reading SO_ERROR. AUTH, SELECT and a PING (so that a hung
 * server is caught at connect) then go as one pipelined batch. All I/O is ours, on the context's fd:
 * redisAppendFormattedCommand, redisBufferWrite, redisBufferRead and redisGetReplyFromReader under the
 * call's one deadline; the blocking redisCommand/redisGetReply are never used.
 *
 * A probe cannot write: conn:call asks the server (COMMAND INFO, once per command name and
 * connection; `config|get` for a container command's subcommand, as Redis 7 names them) and refuses,
 * by raising, a command flagged write, pubsub or admin (except the read-only admin commands of an
 * allowlist: CONFIG GET, SLOWLOG GET/LEN, CLIENT LIST/INFO, LATENCY LATEST/HISTORY/DOCTOR, MEMORY
 * STATS/USAGE/DOCTOR, INFO), and scripts the server cannot vouch for (EVAL, EVALSHA, FCALL; the _RO
 * forms are fine). conn:action runs anything through the gate; FLUSHDB and FLUSHALL are always
 * irreversible (the target, host:port/db, is typed back) and their blast radius is counted first.
 * Commands that would change what the connection is (SELECT, HELLO, RESET, QUIT, SUBSCRIBE, MONITOR,
 * CLIENT REPLY, ...) are refused by both.
 *
 * Replies: status and string -> string, integer -> integer, nil -> nil, array -> table (with n),
 * error -> nil, "<what> <target>: <message>", <its code word> ("WRONGTYPE", "ERR", "NOAUTH").
 * After a timeout, Ctrl-C, an I/O or a protocol error the context is discarded: later calls return
 * nil, "... connection was closed after a timeout; connect again", "closed".
 *
 * Kinds: timeout, interrupted, refused, unreachable, reset, dns, auth (NOAUTH, WRONGPASS, ERR invalid
 * password), protocol, closed, error, or the server's error code. Default deadlines: connect, ping
 * and probes 2 s (a connection's calls default to its connect timeout), actions 60 s.
 *
 * This file: the module table, URLs, the op userdata, replies, redis.connect/ping and the handle;
 * redis_engine.c drives an op, redis_commands.c is conn:call and conn:action.
 */
#include "redis_conn.h"

#define CONN_MT "runbook.redis.conn"

static void free_context(void *c) { redisFree(c); }

static const struct handle_type conn_type = { .mt = CONN_MT, .module = "redis", .disconnect = free_context };
_Static_assert(offsetof(struct redis_handle, s) == 0, "handle.c finds the handle_state at the start of the userdata");

/* ------------------------------------------------------------------------- small helpers */

double redis_elapsed(const struct redis_op *op) { return sched_now_precise() - op->t0; }

void redis_lower(char *out, size_t n, const char *s, size_t len)
{
	size_t i = 0;
	for (; i + 1 < n && i < len; i++)
		out[i] = (char)tolower((unsigned char)s[i]);
	out[i] = 0;
}

void redis_upper_words(char *out, size_t n, const char *name, const char *sub)
{
	snprintf(out, n, "%s%s%s", name, sub[0] ? " " : "", sub);
	for (char *p = out; *p; p++)
		*p = (char)toupper((unsigned char)*p);
}

/* The errno that hiredis' message names (it keeps only strerror's text), or 0. */
int errno_of(const char *errstr)
{
	static const int known[] = { ECONNREFUSED, ETIMEDOUT, EHOSTUNREACH, ENETUNREACH, ECONNRESET, EPIPE,
	                             ECONNABORTED, EADDRNOTAVAIL, ENOTCONN, ENOENT };
	for (size_t i = 0; i < sizeof known / sizeof *known; i++)
		if (strstr(errstr, strerror(known[i])))
			return known[i];
	return 0;
}


/* ------------------------------------------------------------------------------- URLs */

struct url {
	char host[256], port[8];
	char *user, *password;        /* percent-decoded, malloc'd, or NULL */
	int db;
	bool tls;
	bool unix_socket;             /* host is the socket's path */
};

static void url_free(struct url *u)
{
	if (u->password)
		memset(u->password, 0, strlen(u->password));
	free(u->user);
	free(u->password);
	u->user = u->password = NULL;
}

static int hexval(int c)
{
	return isdigit(c) ? c - '0' : isxdigit(c) ? tolower(c) - 'a' + 10 : -1;
}

static char *decode(const char *s, size_t n)
{
	char *out = malloc(n + 1), *o = out;
	if (!out)
		abort();
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '%' && i + 2 < n && hexval((unsigned char)s[i + 1]) >= 0
		    && hexval((unsigned char)s[i + 2]) >= 0) {
			*o++ = (char)(hexval((unsigned char)s[i + 1]) * 16 + hexval((unsigned char)s[i + 2]));
			i += 2;
		} else {
			*o++ = s[i];
		}
	}
	*o = 0;
	return out;
}

/* The user and password before '@' in [user:password@] (p..end); returns where the rest starts. */
static const char *parse_userinfo(const char *p, const char *end, struct url *u)
{
	const char *at = NULL;
	for (const char *s = p; s < end; s++)
		if (*s == '@')
			at = s;
	if (at) {
		const char *colon = memchr(p, ':', (size_t)(at - p));
		if (colon) {
			if (colon > p)
				u->user = decode(p, (size_t)(colon - p));
			u->password = decode(colon + 1, (size_t)(at - colon - 1));
		} else if (at > p) {
			u->password = decode(p, (size_t)(at - p));   /* redis://password@host, as redis-py reads it */
		}
		p = at + 1;
	}
	return p;
}

/* unix://[[user]:password@]/path[?db=N] after its scheme. */
static const char *parse_unix_url(const char *p, struct url *u)
{
	u->unix_socket = true;
	const char *slash = strchr(p, '/');
	if (!slash)
		return "no socket path (unix:///path/to/redis.sock)";
	p = parse_userinfo(p, slash, u);
	if (p != slash)
		return "bad unix:// URL (unix://[:password@]/path/to/redis.sock[?db=N])";
	size_t n = strcspn(p, "?#");
	if (n >= sizeof ((struct sockaddr_un *)0)->sun_path)
		return "socket path too long";
	memcpy(u->host, p, n);
	u->host[n] = 0;
	p += n;
	if (*p == '?') {
		size_t digits = strncmp(p, "?db=", 4) == 0 ? strspn(p + 4, "0123456789") : 0;
		if (!digits || digits > 9 || p[4 + digits])
			return "the only parameter is db (unix:///path/to/redis.sock?db=2)";
		u->db = (int)strtol(p + 4, NULL, 10);
		p += 4 + digits;
	}
	return *p ? "bad unix:// URL" : NULL;
}

/* Parses redis://[user:password@]host[:port][/db] and unix:// URLs. Returns NULL, or what is wrong. */
static const char *parse_url(const char *url, struct url *u)
{
	memset(u, 0, sizeof *u);
	snprintf(u->port, sizeof u->port, "6379");
	const char *p = url;
	if (strncmp(p, "redis://", 8) == 0) {
		p += 8;
	} else if (strncmp(p, "rediss://", 9) == 0) {
		p += 9;
		u->tls = true;
	} else if (strncmp(p, "unix://", 7) == 0) {
		return parse_unix_url(p + 7, u);
	} else if (strstr(p, "://")) {
		return "not a redis:// URL (redis://[user:password@]host:port[/db], or unix:///path/to/redis.sock)";
	}
	const char *end = p + strcspn(p, "/?#");
	p = parse_userinfo(p, end, u);
	const char *hs = p, *he;
	if (*p == '[') {
		const char *rb = memchr(p, ']', (size_t)(end - p));
		if (!rb)
			return "unterminated [IPv6 address]";
		hs = p + 1;
		he = rb;
		p = rb + 1;
	} else {
		he = p + strcspn(p, ":/?#");
		if (he > end)
			he = end;
		p = he;
	}
	if (he == hs)
		return "no host";
	if ((size_t)(he - hs) >= sizeof u->host)
		return "host name too long";
	memcpy(u->host, hs, (size_t)(he - hs));
	u->host[he - hs] = 0;
	if (*p == ':') {
		p++;
		size_t n = strspn(p, "0123456789");
		long port = n && n < 6 ? strtol(p, NULL, 10) : 0;
		if (port < 1 || port > 65535 || p + n != end)
			return "bad port (1-65535)";
		snprintf(u->port, sizeof u->port, "%ld", port);
		p += n;
	}
	if (p != end)
		return "bad host:port";
	if (*p == '/') {
		p++;
		size_t n = strspn(p, "0123456789");
		if (n) {
			if (n > 9)
				return "bad database number";
			u->db = (int)strtol(p, NULL, 10);
		}
		p += n;
		if (*p == '/')
			p++;
	}
	if (*p == '?' || *p == '#')
		return "query parameters are not supported (put the database in the path: redis://host:port/2)";
	if (*p)
		return "bad database number";
	return NULL;
}

static void format_target(char *out, size_t n, const struct url *u)
{
	if (u->unix_socket)
		snprintf(out, n, "unix:%s/%d", u->host, u->db);
	else
		snprintf(out, n, strchr(u->host, ':') ? "[%s]:%s/%d" : "%s:%s/%d", u->host, u->port, u->db);
}

/* ----------------------------------------------------------------------- the op userdata */

static void free_replies(struct redis_op *op)
{
	for (int i = 0; i < MAX_CMDS; i++) {
		if (op->rep[i])
			freeReplyObject(op->rep[i]);
		op->rep[i] = NULL;
	}
	op->got = op->expected = 0;
}

void free_queue(struct redis_op *op)
{
	for (int i = 0; i < op->nq; i++) {
		/* a queued AUTH holds the password: wipe it before giving the memory back */
		memset(op->q[i], 0, (size_t)op->qlen[i]);
		redisFreeCommand(op->q[i]);
		op->q[i] = NULL;
	}
	op->nq = 0;
}

/* Closes the context the op uses; a handle's is marked broken with `why`. */
void discard(struct redis_op *op, const char *why)
{
	redisContext *c = op->c;
	if (!c)
		return;
	redisFree(c);
	if (op->own == c)
		op->own = NULL;
	if (op->h)
		handle_mark_broken(&op->h->s, c, why);
	op->c = NULL;
}

/* Releases everything the op holds; idempotent (__close, then __gc). An op abandoned in the middle
 * of a batch (its parallel() task was stopped) leaves a context with replies in flight: discarded. */
void op_release(void *p)
{
	struct redis_op *op = p;
	if (op->released)
		return;
	op->released = true;
	/* Only a context that is still the op's own or its handle's: at exit, finalizers may have
	 * closed the handle first. */
	if (op->phase == PH_IO && op->c && (op->c == op->own || (op->h && op->h->s.conn == op->c)))
		discard(op, "an interrupted call");
	if (op->own)
		redisFree(op->own);
	op->own = op->c = NULL;
	if (op->looking)
		net_lookup_cancel(&op->lookup);
	op->looking = false;
	free_queue(op);
	free_replies(op);
	if (op->user) {
		memset(op->user, 0, (size_t)op->user_len);
		redisFreeCommand(op->user);
	}
	op->user = NULL;
	free(op->display);
	op->display = NULL;
	free(op->samples);
	op->samples = NULL;
	if (op->h)
		handle_call_ended(&op->h->s);
	op->phase = PH_DONE;
}

/* Pushes a new op (to-be-closed) for a call on h (NULL for connect/ping; h must be at index 1). */
struct redis_op *redis_op_push(lua_State *L, const char *fn, struct redis_handle *h, msec_t timeout_ms)
{
	struct redis_op *op = tasks_push_op(L, sizeof *op, &redis_op_machine);
	op->fn = fn;
	op->timeout_ms = tasks_wait_start(&op->w, timeout_ms);
	op->deadline = op->w.deadline;
	op->t0 = sched_now_precise();
	op->phase = PH_IDLE;
	if (h) {
		handle_call_start(L, &h->s);
		op->h = h;
		op->c = h->s.conn;
		snprintf(op->target, sizeof op->target, "%s", h->s.target);
	}
	return op;
}

/* Queues a command (argv of C strings, or with lengths) for the next batch. */
void redis_queue_argv(struct redis_op *op, int argc, const char **argv, const size_t *lens)
{
	if (op->nq == MAX_CMDS)
		abort();   /* a programming error in this module */
	char *cmd = NULL;
	int n = redisFormatCommandArgv(&cmd, argc, argv, lens);
	if (n < 0 || !cmd)
		abort();
	op->q[op->nq] = cmd;
	op->qlen[op->nq++] = n;
}

void redis_queue(struct redis_op *op, const char *a0, const char *a1, const char *a2)
{
	const char *argv[3] = { a0, a1, a2 };
	redis_queue_argv(op, a2 ? 3 : a1 ? 2 : 1, argv, NULL);
}

/* Starts the queued batch on the op's context, with a new deadline when timeout_ms > 0. */
void redis_batch(struct redis_op *op, msec_t timeout_ms)
{
	free_replies(op);
	op->phase = PH_START;
	if (timeout_ms > 0) {
		op->timeout_ms = tasks_wait_start(&op->w, timeout_ms);
		op->deadline = op->w.deadline;
		op->t0 = sched_now_precise();
	} else {
		tasks_wait_init(&op->w, op->deadline);
	}
}

/* -------------------------------------------------------------------------- replies */

bool redis_is_error(const redisReply *r) { return r && r->type == REDIS_REPLY_ERROR; }

/* The code word of an error reply ("WRONGTYPE Operation against..." -> WRONGTYPE), else "ERR". */
static void error_code(const redisReply *r, char *out, size_t n)
{
	size_t len = 0;
	while (len < r->len && len + 1 < n && (isupper((unsigned char)r->str[len]) || r->str[len] == '_'
	                                        || (len && isdigit((unsigned char)r->str[len]))))
		len++;
	if (len == 0 || (len < r->len && r->str[len] != ' '))
		snprintf(out, n, "ERR");
	else
		snprintf(out, n, "%.*s", (int)len, r->str);
}

/* The op fails with a server's error reply: kind = its code word (auth for the login errors). */
void redis_fail_reply(struct redis_op *op, const redisReply *r, const char *context)
{
	error_code(r, op->code, sizeof op->code);
	const char *kind = op->code;
	if (strcmp(op->code, "NOAUTH") == 0 || strcmp(op->code, "WRONGPASS") == 0
	    || (r->len && strstr(r->str, "invalid password")) || (context && strncmp(context, "AUTH", 4) == 0))
		kind = "auth";
	redis_op_fail(op, kind, "%s%s%.*s", context ? context : "", context ? ": " : "", (int)(r->len > 400 ? 400 : r->len), r->str);
}

/* Pushes a reply as one Lua value (an error reply nested in an array is its text). */
void push_value(lua_State *L, const redisReply *r, int depth)
{
	luaL_checkstack(L, 4, "reply too deep");
	switch (r->type) {
	case REDIS_REPLY_STRING:
	case REDIS_REPLY_STATUS:
	case REDIS_REPLY_ERROR:
		lua_pushlstring(L, r->str, r->len);
		break;
	case REDIS_REPLY_INTEGER:
		lua_pushinteger(L, (lua_Integer)r->integer);
		break;
	case REDIS_REPLY_ARRAY:
		lua_createtable(L, (int)(r->elements < 100000 ? r->elements : 100000), 1);
		for (size_t i = 0; i < r->elements; i++) {
			if (!r->element[i] || r->element[i]->type == REDIS_REPLY_NIL)
				continue;
			if (depth > 32) {
				lua_pushliteral(L, "...");
			} else {
				push_value(L, r->element[i], depth + 1);
			}
			lua_rawseti(L, -2, (lua_Integer)i + 1);
		}
		luax_setint(L, "n", (lua_Integer)r->elements);
		break;
	default:
		lua_pushnil(L);
		break;
	}
}

/* A short description of a reply for audit records: "OK", "integer 5", "string (12 bytes)", ... */
void describe_reply(const redisReply *r, char *out, size_t n)
{
	switch (r->type) {
	case REDIS_REPLY_STATUS:  snprintf(out, n, "%.*s", (int)(r->len > 60 ? 60 : r->len), r->str); break;
	case REDIS_REPLY_STRING:  snprintf(out, n, "string (%zu bytes)", r->len); break;
	case REDIS_REPLY_INTEGER: snprintf(out, n, "integer %lld", r->integer); break;
	case REDIS_REPLY_ARRAY:   snprintf(out, n, "array of %zu", r->elements); break;
	case REDIS_REPLY_NIL:     snprintf(out, n, "nil"); break;
	case REDIS_REPLY_ERROR:   snprintf(out, n, "%.*s", (int)(r->len > 200 ? 200 : r->len), r->str); break;
	default:                  snprintf(out, n, "?"); break;
	}
}

/* ------------------------------------------------------------------ audit and failures */

void redis_audit(struct redis_op *op, const char *summary)
{
	luax_audit_probe(op->fn, op->target, op->timeout_ms, redis_elapsed(op), op->kind ? op->kind : "ok",
	                 summary ? summary : op->cause);
}

int redis_fail_push(lua_State *L, struct redis_op *op)
{
	return luax_fail(L, op->kind ? op->kind : "error", "%s %s: %s", op->fn, op->target, op->cause);
}

/* For a probe: audits and pushes the failure if the batch failed or a reply is an error. */
int redis_probe_failed(lua_State *L, struct redis_op *op)
{
	for (int i = 0; !op->kind && i < op->got; i++)
		if (redis_is_error(op->rep[i]))
			redis_fail_reply(op, op->rep[i], NULL);
	if (!op->kind)
		return 0;
	redis_audit(op, NULL);
	return redis_fail_push(L, op);
}

/* -------------------------------------------------------------- redis.connect, redis.ping */

static const char *const connect_options[] = { "timeout", "password", NULL };

/* Parses the URL and queues AUTH, SELECT and PING; the op is failed on a bad URL. */
static struct redis_op *start_connect(lua_State *L, const char *fn, msec_t *timeout)
{
	const char *url = luaL_checkstring(L, 1);
	luax_check_options(L, 2, fn, connect_options);
	*timeout = luax_opt_duration(L, 2, "timeout", DEFAULT_TIMEOUT_MS, fn);
	const char *password = luax_opt_string(L, 2, "password", NULL, fn);
	struct redis_op *op = redis_op_push(L, fn, NULL, *timeout);
	op->auth_at = op->select_at = -1;
	op->conn_timeout_ms = *timeout;
	struct url u;
	const char *bad = parse_url(url, &u);
	if (password) {
		free(u.password);
		u.password = strdup(password);
		if (!u.password)
			abort();
	}
	if (u.password)
		redact_add_secret(u.password);
	if (bad) {
		snprintf(op->target, sizeof op->target, "%s", url);   /* luax_fail redacts a URL's password */
		redis_op_fail(op, "error", "invalid URL: %s", bad);
		url_free(&u);
		return op;
	}
	format_target(op->target, sizeof op->target, &u);
	if (u.tls) {
		redis_op_fail(op, "error", "TLS not supported: this build's hiredis (0.14) cannot speak rediss://; "
		        "reach the server with redis:// (on a trusted network, or through a TLS tunnel such as stunnel)");
		url_free(&u);
		return op;
	}
	snprintf(op->host, sizeof op->host, "%s", u.host);
	snprintf(op->port, sizeof op->port, "%s", u.port);
	op->db = u.db;
	op->unix_socket = u.unix_socket;
	if (u.password) {
		op->auth_at = op->nq;
		if (u.user)
			redis_queue(op, "AUTH", u.user, u.password);
		else
			redis_queue(op, "AUTH", u.password, NULL);
	}
	if (u.db) {
		char db[16];
		snprintf(db, sizeof db, "%d", u.db);
		op->select_at = op->nq;
		redis_queue(op, "SELECT", db, NULL);
	}
	redis_queue(op, "PING", NULL, NULL);
	op->nsetup = op->nq;
	url_free(&u);
	if (op->unix_socket) {   /* nothing to look up */
		op->phase = PH_CONNECT_START;
		return op;
	}
	op->phase = PH_LOOKUP;
	op->looking = true;
	if (!net_lookup_start(&op->lookup, op->host, op->port)) {
		op->looking = false;
		redis_op_fail(op, "error", "cannot start the name lookup (out of threads or file descriptors)");
	}
	return op;
}

/* Checks the replies to AUTH, SELECT and PING; fails the op (and drops its context) on an error. */
static bool setup_ok(struct redis_op *op)
{
	if (op->kind)
		return false;
	for (int i = 0; i < op->nsetup && i < op->got; i++) {
		const redisReply *r = op->rep[i];
		if (!redis_is_error(r))
			continue;
		if (i == op->auth_at)
			redis_fail_reply(op, r, "AUTH failed");
		else if (r->len >= 6 && strncmp(r->str, "NOAUTH", 6) == 0)
			redis_op_fail(op, "auth", "the server requires a password (NOAUTH): give it in the URL, "
			        "redis://:PASSWORD@host:port, or as { password = ... }");
		else
			redis_fail_reply(op, r, i == op->select_at ? "SELECT failed" : NULL);
		discard(op, "a failed login");
		return false;
	}
	return true;
}

static int connect_done(lua_State *L, struct redis_op *op)
{
	if (!setup_ok(op)) {
		redis_audit(op, NULL);
		return redis_fail_push(L, op);
	}
	struct redis_handle *h = handle_push(L, &conn_type, sizeof *h, 1, op->own, op->target);
	lua_newtable(L);                     /* what COMMAND INFO said, per command name */
	lua_setiuservalue(L, -2, 1);
	op->own = op->c = NULL;
	h->db = op->db;
	h->timeout_ms = op->conn_timeout_ms;
	char summary[120];
	snprintf(summary, sizeof summary, "connected in %.1f ms", op->connect_ms);
	redis_audit(op, summary);
	return 1;
}

static int redis_connect(lua_State *L)
{
	msec_t timeout;
	struct redis_op *op = start_connect(L, "redis.connect", &timeout);
	return redis_op_run(L, op, connect_done);
}

static int ping_done(lua_State *L, struct redis_op *op)
{
	if (!setup_ok(op)) {
		redis_audit(op, NULL);
		return redis_fail_push(L, op);
	}
	int n = redis_probe_failed(L, op);
	if (n)
		return n;
	const redisReply *server = op->rep[op->nsetup], *repl = op->rep[op->nsetup + 1];
	char version[64] = "", role[32] = "";
	redis_info_str(server, "redis_version", version, sizeof version);
	redis_info_str(repl, "role", role, sizeof role);
	double ms = redis_elapsed(op);
	char summary[200];
	snprintf(summary, sizeof summary, "PONG in %.1f ms (Redis %s, %s)", ms, version[0] ? version : "?",
	         role[0] ? role : "?");
	redis_audit(op, summary);
	discard(op, NULL);
	lua_createtable(L, 0, 5);
	luax_setbool(L, "ok", true);
	luax_setnum(L, "ms", ms);
	luax_setnum(L, "connect_ms", op->connect_ms);
	if (version[0])
		luax_setstr(L, "version", version);
	if (role[0])
		luax_setstr(L, "role", role);
	return 1;
}

static int redis_ping(lua_State *L)
{
	msec_t timeout;
	struct redis_op *op = start_connect(L, "redis.ping", &timeout);
	if (!op->kind) {
		redis_queue(op, "INFO", "server", NULL);
		redis_queue(op, "INFO", "replication", NULL);
	}
	return redis_op_run(L, op, ping_done);
}

/* ---------------------------------------------------------------------- the handle */

struct redis_handle *redis_check_handle(lua_State *L, const char *fn)
{
	return handle_check_open(L, 1, &conn_type, fn);
}

/* Pushes nil, "... closed after ...", "closed" when the handle was discarded (returns 3), raises
 * when another task is using it, else returns 0. */
int redis_handle_unusable(lua_State *L, struct redis_handle *h, const char *fn)
{
	return handle_unusable(L, &h->s, fn);
}

static int conn_close(lua_State *L) { return handle_close(L, &conn_type); }
static int conn_gc(lua_State *L) { return handle_gc(L, &conn_type); }
static int conn_tostring(lua_State *L) { return handle_tostring(L, &conn_type); }

/* ------------------------------------------------------------------------------ module */

int luaopen_redis(lua_State *L)
{
	static const luaL_Reg fns[] = { { "connect", redis_connect }, { "ping", redis_ping }, { NULL, NULL } };
	static const luaL_Reg methods[] = {
		{ "call", conn_call }, { "action", conn_action }, { "close", conn_close }, { NULL, NULL },
	};
	static const luaL_Reg conn_meta[] = {
		{ "__gc", conn_gc }, { "__close", conn_close }, { "__tostring", conn_tostring }, { NULL, NULL },
	};
	luax_class(L, CONN_MT, conn_meta, methods, redis_probes_register);
	luaL_newlib(L, fns);
	return 1;
}
