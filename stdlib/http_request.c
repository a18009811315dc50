/*
 * http_request.c - what a request is made of, read from Lua and checked: the URL (schemes, secrets in
 * its userinfo and query registered for redaction), the options, the expected statuses, the headers
 * (secret ones registered) and the body; and the op it becomes (new_op, begin).
 */
#include "http.h"

/* ----------------------------------------------------------------------------- secrets, URLs */

/* Is name (n bytes, any case) one of exact[] or does it contain one of part[]? */
static bool name_like(const char *name, size_t n, const char *const exact[], const char *const part[])
{
	char low[64];
	if (n == 0 || n >= sizeof low)
		return false;
	for (size_t i = 0; i < n; i++)
		low[i] = (char)tolower((unsigned char)name[i]);
	low[n] = 0;
	for (const char *const *e = exact; *e; e++)
		if (strcmp(low, *e) == 0)
			return true;
	for (const char *const *p = part; *p; p++)
		if (strstr(low, *p))
			return true;
	return false;
}

/* Query parameters and headers whose values are credentials. */
static bool secret_param(const char *name, size_t n)
{
	static const char *const exact[] = { "key", "sig", "pass", "pwd", "code", "auth", NULL };
	static const char *const part[] = { "token", "secret", "passw", "apikey", "api_key", "api-key",
	                                    "access_key", "signature", "credential", "session", NULL };
	return name_like(name, n, exact, part);
}

static bool secret_header(const char *name, size_t n)
{
	static const char *const exact[] = { "cookie", NULL };
	static const char *const part[] = { "auth", "token", "key", "secret", "passw", NULL };
	return name_like(name, n, exact, part);
}

static void add_secret_both(const char *raw, size_t n)
{
	char *s = strndup(raw, n);
	if (!s)
		abort();
	redact_add_secret(s);
	int len = 0;
	char *dec = curl_easy_unescape(NULL, s, (int)n, &len);
	if (dec) {
		redact_add_secret(dec);
		curl_free(dec);
	}
	free(s);
}

/* Registers the password and the credential-like query values of url with the redactor. */
void register_url_secrets(const char *url)
{
	CURLU *u = curl_url();
	if (!u)
		return;
	if (curl_url_set(u, CURLUPART_URL, url, CURLU_NON_SUPPORT_SCHEME) == CURLUE_OK) {
		char *pw = NULL, *q = NULL;
		if (curl_url_get(u, CURLUPART_PASSWORD, &pw, 0) == CURLUE_OK && pw) {
			add_secret_both(pw, strlen(pw));
			curl_free(pw);
		}
		if (curl_url_get(u, CURLUPART_QUERY, &q, 0) == CURLUE_OK && q) {
			for (const char *p = q; *p;) {
				size_t len = strcspn(p, "&;");
				const char *eq = memchr(p, '=', len);
				if (eq && secret_param(p, (size_t)(eq - p)) && (size_t)(eq - p) + 1 < len)
					add_secret_both(eq + 1, len - (size_t)(eq - p) - 1);
				p += len;
				if (*p)
					p++;
			}
			curl_free(q);
		}
	}
	curl_url_cleanup(u);
}

/* Registers a credential header's value and, for "Bearer xyz"-like values, its last word. */
static void register_header_secret(const char *value)
{
	redact_add_secret(value);
	const char *sp = strrchr(value, ' ');
	if (sp && sp[1])
		redact_add_secret(sp + 1);
}

/* Checks url (raises on a mistake): an http:// or https:// URL that libcurl can parse. */
void check_url(lua_State *L, const char *fn, const char *url, bool *https)
{
	CURLU *u = curl_url();
	if (!u)
		luaL_error(L, "%s: out of memory", fn);
	CURLUcode uc = curl_url_set(u, CURLUPART_URL, url, CURLU_NON_SUPPORT_SCHEME);
	char *scheme = NULL;
	if (uc == CURLUE_OK)
		uc = curl_url_get(u, CURLUPART_SCHEME, &scheme, 0);
	bool ok = uc == CURLUE_OK && scheme && (strcasecmp(scheme, "http") == 0 || strcasecmp(scheme, "https") == 0);
	*https = ok && strcasecmp(scheme, "https") == 0;
	if (scheme)
		curl_free(scheme);
	curl_url_cleanup(u);
	if (!ok) {
		register_url_secrets(url);
		char *shown = redacted(url);
		lua_pushfstring(L, "%s: '%s' is not an http:// or https:// URL", fn, shown);
		free(shown);
		lua_error(L);
	}
}

/* -------------------------------------------------------------------------------------- options */

static void add_expect(lua_State *L, struct http_op *op, int idx, const char *fn)
{
	int t = lua_type(L, idx);
	int v = -1;
	if (t == LUA_TNUMBER && lua_isinteger(L, idx)) {
		lua_Integer n = lua_tointeger(L, idx);
		if (n >= 100 && n <= 599)
			v = (int)n;
	} else if (t == LUA_TSTRING) {
		const char *s = lua_tostring(L, idx);
		if (strlen(s) == 3 && s[0] >= '1' && s[0] <= '5' && tolower((unsigned char)s[1]) == 'x' && tolower((unsigned char)s[2]) == 'x')
			v = s[0] - '0';
		else if (strlen(s) == 3 && isdigit((unsigned char)s[0]) && isdigit((unsigned char)s[1]) && isdigit((unsigned char)s[2]) && atoi(s) >= 100 && atoi(s) <= 599)
			v = atoi(s);
	}
	if (v < 0)
		luaL_error(L, "%s: option 'expect': %s is not a status (100-599) or a class (\"2xx\")", fn, luaL_tolstring(L, idx, NULL));
	if (op->nexpect == MAX_EXPECT)
		luaL_error(L, "%s: option 'expect': more than %d statuses", fn, MAX_EXPECT);
	op->expect[op->nexpect++] = v;
}

/* Reads the options common to every request at opts (absolute index) into op; may raise. */
void read_options(lua_State *L, struct http_op *op, int opts)
{
	const char *fn = op->fn;
	op->timeout_ms = luax_opt_duration(L, opts, "timeout", DEFAULT_TIMEOUT_MS, fn);
	op->follow = luax_opt_bool(L, opts, "follow", op->type == OP_PROBE, fn);
	op->insecure = luax_opt_bool(L, opts, "insecure", false, fn);
	lua_Integer mr = luax_opt_integer(L, opts, "max_redirects", DEFAULT_MAX_REDIRECTS, fn);
	if (mr < 0 || mr > 50)
		luaL_error(L, "%s: option 'max_redirects' must be 0 to 50", fn);
	op->max_redirects = (long)mr;
	lua_Integer mb = luax_opt_integer(L, opts, "max_body", DEFAULT_MAX_BODY, fn);
	if (mb < 0 || mb > (lua_Integer)1 << 40)
		luaL_error(L, "%s: option 'max_body' must be a byte count", fn);
	op->max_body = (size_t)mb;
	const char *s = luax_opt_string(L, opts, "contains", NULL, fn);
	op->contains = s ? xstrdup(s) : NULL;
	s = luax_opt_string(L, opts, "ca", NULL, fn);
	op->ca = s ? xstrdup(s) : NULL;
	if (!lua_isnoneornil(L, opts)) {
		int t = lua_getfield(L, opts, "expect");
		int top = lua_gettop(L);
		if (t == LUA_TTABLE) {
			lua_Integer n = (lua_Integer)lua_rawlen(L, top);
			if (n == 0)
				luaL_error(L, "%s: option 'expect' is an empty list", fn);
			for (lua_Integer i = 1; i <= n; i++) {
				lua_rawgeti(L, top, i);
				add_expect(L, op, lua_gettop(L), fn);
				lua_pop(L, 1);
			}
		} else if (t != LUA_TNIL) {
			add_expect(L, op, top, fn);
		}
		lua_pop(L, 1);
	}
}

static bool header_token(const char *s, size_t n)
{
	if (n == 0)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!isgraph((unsigned char)s[i]) || s[i] == ':')
			return false;
	return true;
}

static struct curl_slist *slist_add(struct curl_slist *list, const char *line)
{
	struct curl_slist *grown = curl_slist_append(list, line);
	if (!grown)
		abort();
	return grown;
}

/* headers = { Name = "value" } -> a curl list ("Name: value"); registers credential values. */
struct curl_slist *read_headers(lua_State *L, int opts, const char *fn, bool has_body, bool json,
                                       struct buf *shown)
{
	struct curl_slist *list = NULL;
	bool has_ct = false;
	if (!lua_isnoneornil(L, opts)) {
		int t = lua_getfield(L, opts, "headers");
		if (t == LUA_TTABLE) {
			int h = lua_gettop(L);
			lua_pushnil(L);
			while (lua_next(L, h)) {
				size_t nl = 0, vl;
				const char *name = lua_type(L, -2) == LUA_TSTRING ? lua_tolstring(L, -2, &nl) : NULL;
				if (!name || !header_token(name, nl)) {
					curl_slist_free_all(list);
					luaL_error(L, "%s: option 'headers': header names are strings without spaces or ':'", fn);
				}
				if (lua_type(L, -1) != LUA_TSTRING && lua_type(L, -1) != LUA_TNUMBER) {
					curl_slist_free_all(list);
					luaL_error(L, "%s: header '%s' must be a string", fn, lua_tostring(L, -2));
				}
				const char *value = lua_tolstring(L, -1, &vl);
				if (strpbrk(value, "\r\n") || strlen(value) != vl) {
					curl_slist_free_all(list);
					luaL_error(L, "%s: header '%s' contains a line break", fn, name);
				}
				if (secret_header(name, nl))
					register_header_secret(value);
				if (strcasecmp(name, "content-type") == 0)
					has_ct = true;
				char *line = NULL;
				if (asprintf(&line, vl ? "%s: %s" : "%s;", name, value) < 0)
					abort();
				list = slist_add(list, line);
				free(line);
				if (shown) {
					if (shown->len)
						buf_add(shown, ", ", 2);
					buf_add(shown, name, nl);
					buf_add(shown, ": ", 2);
					buf_add(shown, value, vl);
				}
				lua_pop(L, 1);
			}
		} else if (t != LUA_TNIL) {
			luaL_error(L, "%s: option 'headers' must be a table of name = value", fn);
		}
		lua_pop(L, 1);
	}
	if (json && !has_ct)
		list = slist_add(list, "Content-Type: application/json");
	if (has_body)
		list = slist_add(list, "Expect:");   /* no 1 s wait for a 100 Continue */
	return list;
}

/* body = "..." or json = { ... } (encoded with lua-cjson) into op->post. */
void read_body(lua_State *L, struct http_op *op, int opts, bool *json)
{
	*json = false;
	if (lua_isnoneornil(L, opts))
		return;
	int tb = lua_getfield(L, opts, "body");
	int tj = lua_getfield(L, opts, "json");
	if (tb != LUA_TNIL && tj != LUA_TNIL)
		luaL_error(L, "%s: give body or json, not both", op->fn);
	if (tb != LUA_TNIL && tb != LUA_TSTRING)
		luaL_error(L, "%s: option 'body' must be a string", op->fn);
	if (tj != LUA_TNIL) {
		if (tj != LUA_TTABLE)
			luaL_error(L, "%s: option 'json' must be a table", op->fn);
		push_cjson(L);
		lua_getfield(L, -1, "encode");
		lua_remove(L, -2);
		lua_pushvalue(L, -2);
		if (lua_pcall(L, 1, 1, 0) != LUA_OK)
			luaL_error(L, "%s: option 'json': %s", op->fn, lua_tostring(L, -1));
		*json = true;
	} else {
		lua_pushvalue(L, -2);
	}
	if (lua_isstring(L, -1)) {
		size_t n;
		const char *s = lua_tolstring(L, -1, &n);
		op->post = malloc(n + 1);
		if (!op->post)
			abort();
		memcpy(op->post, s, n);
		op->post[n] = 0;
		op->post_len = n;
	}
	lua_pop(L, 3);
}

/* A new op userdata at the top of the stack, marked to be closed when the call returns (or its
 * coroutine is reset: parallel() stopped by Ctrl-C or an abort). */
struct http_op *new_op(lua_State *L, enum op_type type, const char *fn, const char *method)
{
	struct http_op *op = lua_newuserdatauv(L, sizeof *op, 0);
	memset(op, 0, sizeof *op);
	op->timer_at = -1;
	op->type = type;
	snprintf(op->fn, sizeof op->fn, "%s", fn);
	snprintf(op->method, sizeof op->method, "%s", method);
	luaL_setmetatable(L, OP_MT);
	lua_toclose(L, -1);
	return op;
}

void begin(struct http_op *op, struct curl_slist *headers)
{
	const char *env = getenv("no_proxy");
	if (!env || !*env)
		env = getenv("NO_PROXY");
	if (env && strcmp(env, "*") == 0)
		snprintf(op->noproxy, sizeof op->noproxy, "*");
	else
		snprintf(op->noproxy, sizeof op->noproxy, "localhost,127.0.0.1,::1%s%s", env && *env ? "," : "", env ? env : "");
	op->t0 = sched_now_precise();
	op->deadline = sched_deadline(op->timeout_ms);
	op->allowed_ms = op->deadline - sched_now();
	op->headers = headers;
	tasks_wait_init(&op->w, op->deadline);
	op_start(op, headers);
}
