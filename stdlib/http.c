/*
 * http.c - HTTP probes and actions over libcurl's multi interface (require "http").
 *
 *   http.get(url, opts)    -> result | nil, err, kind                         a probe
 *   http.head(url, opts)   -> result | nil, err, kind                         a probe
 *   http.post(url, opts)   -> result | { dry_run = true, method, url } | nil, err, kind   an action
 *   http.request { url = ..., method = "POST"|"PUT"|"PATCH"|"DELETE", ...opts }          an action
 *   http.cert(url_or_host, { timeout = 10, ca }) -> { host, port, valid, hostname_ok, error,
 *       days_left, not_after, not_before, issuer, subject, chain_length, ms } | nil, err, kind
 *
 * opts: headers = { Name = "value" }, timeout = 10, expect = 200 | { 200, 204 } | "2xx",
 *       contains = "text", follow = true (false for actions), max_redirects = 5, insecure = false,
 *       ca = "/path/ca.pem", max_body = 10 MiB; actions also body = "..." or json = { ... },
 *       summary, target, irreversible = false, blast (as sh.action).
 * result: { status, ok, problem, method, headers (lowercase names), body, bytes, truncated,
 *           json | json_error, url (final, redacted), redirects, ms,
 *           timings = { dns_ms, connect_ms, tls_ms, first_byte_ms, total_ms },
 *           tls = { days_left, not_after, not_before, issuer, subject, chain_length } (https) }
 *
 * A status that `expect` does not accept (by default: anything but 2xx/3xx) or a body without
 * `contains` is not an error: the result comes back with ok = false and `problem` saying why.
 * A body longer than max_body is cut there (truncated = true). Transport failures return
 * nil, "http.get <url>: <cause>", kind with kind one of dns, refused, unreachable, timeout, reset,
 * tls (certificate or handshake problems), protocol (bad replies, too many redirects),
 * interrupted, error.
 *
 * Each call is one easy handle in a multi handle of its own, driven through the socket API: curl
 * says which fds to watch (CURLMOPT_SOCKETFUNCTION) and when to call back
 * (CURLMOPT_TIMERFUNCTION); the call waits through a sched_waiter, so it blocks from a step and
 * yields inside parallel(). One absolute deadline bounds DNS (libcurl's threaded resolver,
 * abandoned at the deadline thanks to CURLOPT_QUICK_EXIT), connect, TLS, redirects and the body.
 * Ctrl-C or the deadline removes and frees the handles at once. URL passwords, `token=`-like
 * query values and credential headers are registered with the redactor before anything is shown.
 * Default timeout: 10 s (http.cert too).
 *
 * This file: the module table, the small helpers and the functions; http_request.c reads a request
 * from Lua, http_transfer.c drives curl, http_result.c makes the result.
 */
#include "http.h"

/* ------------------------------------------------------------------------------ small helpers */

/* Appends n bytes (kept NUL-terminated); false when out of memory. */
bool buf_try_add(struct buf *b, const char *p, size_t n)
{
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 1024;
		while (cap < b->len + n + 1)
			cap *= 2;
		char *grown = realloc(b->p, cap);
		if (!grown)
			return false;
		b->p = grown;
		b->cap = cap;
	}
	memcpy(b->p + b->len, p, n);
	b->len += n;
	b->p[b->len] = 0;
	return true;
}

void buf_add(struct buf *b, const char *p, size_t n)
{
	if (!buf_try_add(b, p, n))
		abort();
}

void buf_free(struct buf *b)
{
	free(b->p);
	*b = (struct buf){ 0 };
}

char *xstrdup(const char *s)
{
	char *d = strdup(s ? s : "");
	if (!d)
		abort();
	return d;
}

/* The redacted form of s (secrets already registered), malloc'd. */
char *redacted(const char *s)
{
	return redact(s, strlen(s), NULL);
}

void fail(struct http_op *op, const char *kind, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(op->cause, sizeof op->cause, fmt, ap);
	va_end(ap);
	op->kind = kind;
	op->done = true;
}

/*
 * curl may start its resolver thread inside any multi call: the asynchronous signals (Ctrl-C
 * above all) must stay with the Lua thread, so they are blocked around those calls and the
 * thread inherits the mask. A signal that arrives meanwhile is delivered right after.
 */
void signals_block(sigset_t *old)
{
	sigset_t s;
	sigemptyset(&s);
	static const int sigs[] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGWINCH, SIGCHLD, SIGALRM, SIGUSR1, SIGUSR2 };
	for (size_t i = 0; i < sizeof sigs / sizeof *sigs; i++)
		sigaddset(&s, sigs[i]);
	pthread_sigmask(SIG_BLOCK, &s, old);
}

void signals_restore(const sigset_t *old)
{
	pthread_sigmask(SIG_SETMASK, old, NULL);
}

bool curl_ready(void)
{
	static int state;   /* 0 not yet, 1 ok, -1 failed */
	if (state == 0) {
		sigset_t old;
		signals_block(&old);
		state = curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? 1 : -1;
		signals_restore(&old);
	}
	return state == 1;
}

/* libcurl's global setup (OpenSSL's, mostly: ~2M instructions), done by the thread that opens
 * this module ahead of its use (stdlib/modules.c) before any other thread touches libcurl. */
void runbook_warm_http(void);
void runbook_warm_http(void)
{
	curl_ready();
}

/* ---------------------------------------------------------------------------------- functions */

/* The options each function takes (luax_check_options). */
static const char *const probe_options[] = {
	"headers", "timeout", "expect", "contains", "follow", "max_redirects", "insecure", "ca", "max_body", NULL,
};
static const char *const action_options[] = {
	"headers", "timeout", "expect", "contains", "follow", "max_redirects", "insecure", "ca", "max_body",
	"body", "json", "summary", "target", "irreversible", "blast", NULL,
};
static const char *const request_options[] = {
	"url", "method", "headers", "timeout", "expect", "contains", "follow", "max_redirects", "insecure", "ca",
	"max_body", "body", "json", "summary", "target", "irreversible", "blast", NULL,
};
static const char *const cert_options[] = { "timeout", "ca", NULL };

static int probe(lua_State *L, const char *fn, const char *method)
{
	const char *url = luaL_checkstring(L, 1);
	luax_check_options(L, 2, fn, probe_options);
	lua_settop(L, 2);
	struct http_op *op = new_op(L, OP_PROBE, fn, method);
	register_url_secrets(url);
	check_url(L, fn, url, &op->https);
	read_options(L, op, 2);
	op->url = xstrdup(url);
	op->shown = redacted(url);
	struct curl_slist *headers = read_headers(L, 2, fn, false, false, NULL);
	begin(op, headers);
	return op_k(L, LUA_OK, (lua_KContext)op);
}

static int http_get(lua_State *L) { return probe(L, "http.get", "GET"); }
static int http_head(lua_State *L) { return probe(L, "http.head", "HEAD"); }

/* The gate's detail: the request line, headers and the start of the body, escaped. */
static char *describe_request(const struct http_op *op, const struct buf *hdrs, bool json)
{
	struct buf b = { 0 };
	char line[600];
	snprintf(line, sizeof line, "%s %s", op->method, op->shown);
	buf_add(&b, line, strlen(line));
	if (hdrs->len) {
		buf_add(&b, "\nheaders: ", 10);
		buf_add(&b, hdrs->p, hdrs->len);
	}
	if (op->post) {
		snprintf(line, sizeof line, "\nbody: %zu bytes%s", op->post_len, json ? " of JSON" : "");
		buf_add(&b, line, strlen(line));
		if (op->post_len) {
			buf_add(&b, ": ", 2);
			size_t show = op->post_len < 160 ? op->post_len : 160;
			for (size_t i = 0; i < show;) {
				unsigned char c = (unsigned char)op->post[i];
				size_t n = utf8_seq(op->post + i, show - i);
				if (n > 1 || (c >= 0x20 && c < 0x7f)) {
					buf_add(&b, op->post + i, n);
					i += n;
					continue;
				}
				char esc[8];   /* controls and bytes that are not UTF-8 (or cut by the limit) */
				snprintf(esc, sizeof esc, c == '\n' ? "\\n" : c == '\t' ? "\\t" : "\\x%02x", c);
				buf_add(&b, esc, strlen(esc));
				i++;
			}
			if (show < op->post_len)
				buf_add(&b, "...", 3);
		}
	}
	return b.p;
}

/* Frees the op of an action the operator declined, before its step is left. */
static void free_op(void *op) { op_free(op); }

static int action(lua_State *L, const char *fn, const char *method, const char *url, int opts)
{
	struct http_op *op = new_op(L, OP_ACTION, fn, method);
	register_url_secrets(url);
	check_url(L, fn, url, &op->https);
	bool irreversible = luax_opt_bool(L, opts, "irreversible", false, fn);
	const char *target = luax_opt_string(L, opts, "target", NULL, fn);
	const char *summary = luax_opt_string(L, opts, "summary", NULL, fn);
	const char *blast = luax_opt_string(L, opts, "blast", NULL, fn);
	if (irreversible && !target)
		luaL_error(L, "%s: irreversible = true needs target = \"...\" (the operator types it back)", fn);
	read_options(L, op, opts);
	bool json;
	read_body(L, op, opts, &json);
	op->url = xstrdup(url);
	op->shown = redacted(url);
	/* op->hdrs holds the request's headers as shown until the transfer starts */
	struct curl_slist *headers = read_headers(L, opts, fn, op->post != NULL, json, &op->hdrs);
	op->headers = headers;     /* freed with op from here on, whatever happens */

	/* Shown: the summary (by default the request line), then the request in full. */
	char first[700];
	action_target(op, first, sizeof first);
	char *detail = describe_request(op, &op->hdrs, json);
	const char *rest = strchr(detail, '\n');
	struct gate_plan plan = {
		.primitive = fn,
		.summary = summary ? summary : first,
		.detail = summary ? detail : rest ? rest + 1 : NULL,
		.target = target,
		.blast = blast,
		.irreversible = irreversible,
	};
	enum gate_answer a = gate_ask(&plan);
	free(detail);
	if (a == GATE_DRY_RUN) {
		lua_createtable(L, 0, 3);
		luax_setbool(L, "dry_run", true);
		luax_setstr(L, "method", op->method);
		luax_setstr(L, "url", op->shown);
		return 1;
	}
	if (a != GATE_RUN)
		return luax_not_run(L, a, 800, free_op, op, "%s %s %s", fn, op->method, op->shown);
	gate_action_start(fn, first);
	op->headers = NULL;
	begin(op, headers);
	return op_k(L, LUA_OK, (lua_KContext)op);
}

static int http_post(lua_State *L)
{
	const char *url = luaL_checkstring(L, 1);
	luax_check_options(L, 2, "http.post", action_options);
	lua_settop(L, 2);
	return action(L, "http.post", "POST", url, 2);
}

static int http_request(lua_State *L)
{
	luaL_checktype(L, 1, LUA_TTABLE);
	luax_check_options(L, 1, "http.request", request_options);
	lua_settop(L, 1);
	const char *url = luax_opt_string(L, 1, "url", NULL, "http.request");
	const char *m = luax_opt_string(L, 1, "method", NULL, "http.request");
	if (!url)
		luaL_error(L, "http.request: url = \"http://...\" is required");
	if (!m)
		luaL_error(L, "http.request: method = \"POST\"|\"PUT\"|\"PATCH\"|\"DELETE\" is required");
	static const char *const methods[] = { "POST", "PUT", "PATCH", "DELETE", NULL };
	const char *method = NULL;
	for (const char *const *x = methods; *x; x++)
		if (strcasecmp(m, *x) == 0)
			method = *x;
	if (!method) {
		if (strcasecmp(m, "GET") == 0 || strcasecmp(m, "HEAD") == 0)
			luaL_error(L, "http.request: %s is a probe: use http.%s(url, opts)", m, strcasecmp(m, "GET") == 0 ? "get" : "head");
		luaL_error(L, "http.request: method '%s' is not one of POST, PUT, PATCH, DELETE", m);
	}
	return action(L, "http.request", method, url, 1);
}

static int http_cert(lua_State *L)
{
	const char *arg = luaL_checkstring(L, 1);
	luax_check_options(L, 2, "http.cert", cert_options);
	lua_settop(L, 2);
	struct http_op *op = new_op(L, OP_CERT, "http.cert", "CONNECT");
	op->timeout_ms = luax_opt_duration(L, 2, "timeout", DEFAULT_TIMEOUT_MS, "http.cert");
	const char *ca = luax_opt_string(L, 2, "ca", NULL, "http.cert");
	op->ca = ca ? xstrdup(ca) : NULL;
	register_url_secrets(arg);
	if (strstr(arg, "://")) {
		op->url = xstrdup(arg);
	} else if (asprintf(&op->url, "https://%s/", arg) < 0) {
		abort();
	}
	check_url(L, "http.cert", op->url, &op->https);
	if (!op->https)
		luaL_error(L, "http.cert: '%s' is not https://", arg);
	CURLU *u = curl_url();
	char *host = NULL, *port = NULL;
	if (u && curl_url_set(u, CURLUPART_URL, op->url, 0) == CURLUE_OK) {
		curl_url_get(u, CURLUPART_HOST, &host, 0);
		curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT);
	}
	size_t hl = host ? strlen(host) : 0;
	/* "[::1]" -> "::1", as the certificate's IP Address entries spell it */
	if (hl >= 2 && host[0] == '[' && host[hl - 1] == ']')
		snprintf(op->host, sizeof op->host, "%.*s", (int)hl - 2, host + 1);
	else
		snprintf(op->host, sizeof op->host, "%s", host ? host : "");
	op->port = port ? atol(port) : 443;
	curl_free(host);
	curl_free(port);
	curl_url_cleanup(u);
	char *shown = NULL;
	if (asprintf(&shown, strchr(op->host, ':') ? "[%s]:%ld" : "%s:%ld", op->host, op->port) < 0)
		abort();
	op->shown = redacted(shown);
	free(shown);
	op->phase = 1;
	begin(op, NULL);
	return op_k(L, LUA_OK, (lua_KContext)op);
}

/* ------------------------------------------------------------------------------------ module */

int luaopen_http(lua_State *L)
{
	static const luaL_Reg fns[] = {
		{ "get", http_get }, { "head", http_head }, { "post", http_post },
		{ "request", http_request }, { "cert", http_cert }, { NULL, NULL },
	};
	static const luaL_Reg op_meta[] = { { "__gc", op_gc }, { "__close", op_gc }, { NULL, NULL } };
	luax_class(L, OP_MT, op_meta, NULL, NULL);
	luaL_newlib(L, fns);
	return 1;
}
