/*
 * http_result.c - what a finished transfer returns to Lua: status, headers, body (JSON decoded when it
 * says so), timings; for http.cert the certificate's fields and days left; the audit and the action's
 * result record; and the continuation that resumes the caller (op_k).
 */
#include "http.h"

/* ------------------------------------------------------------------------------------ results */

void push_cjson(lua_State *L)
{
	lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
	if (lua_getfield(L, -1, "cjson") != LUA_TTABLE) {
		lua_pop(L, 1);
		lua_getfield(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
		lua_getfield(L, -1, "cjson");
		lua_remove(L, -2);
		lua_pushliteral(L, "cjson");
		lua_call(L, 1, 1);
		lua_pushvalue(L, -1);
		lua_setfield(L, -3, "cjson");
	}
	lua_remove(L, -2);
}

static const char *header_value(const struct http_op *op, const char *name)
{
	for (size_t i = 0; i < op->hdrs.len;) {
		const char *n = op->hdrs.p + i;
		const char *v = n + strlen(n) + 1;
		if (strcmp(n, name) == 0)
			return v;
		i = (size_t)(v + strlen(v) + 1 - op->hdrs.p);
	}
	return NULL;
}

static bool is_json_type(const char *ct)
{
	if (!ct)
		return false;
	size_t n = strcspn(ct, "; \t");
	if (n == 16 && strncasecmp(ct, "application/json", 16) == 0)
		return true;
	if (n == 9 && strncasecmp(ct, "text/json", 9) == 0)
		return true;
	return n > 5 && strncasecmp(ct + n - 5, "+json", 5) == 0;
}

static void push_headers(lua_State *L, const struct http_op *op)
{
	lua_newtable(L);
	for (size_t i = 0; i < op->hdrs.len;) {
		const char *n = op->hdrs.p + i;
		const char *v = n + strlen(n) + 1;
		if (lua_getfield(L, -1, n) == LUA_TSTRING) {
			lua_pushliteral(L, ", ");
			lua_pushstring(L, v);
			lua_concat(L, 3);
		} else {
			lua_pop(L, 1);
			lua_pushstring(L, v);
		}
		lua_setfield(L, -2, n);
		i = (size_t)(v + strlen(v) + 1 - op->hdrs.p);
	}
}

/* Decodes the body into result.json, or sets result.json_error. */
static void push_json(lua_State *L, const struct http_op *op)
{
	if (op->truncated) {
		luax_setstr(L, "json_error", "the body was truncated at max_body");
		return;
	}
	push_cjson(L);
	lua_getfield(L, -1, "decode");
	lua_remove(L, -2);
	lua_pushlstring(L, op->body.p ? op->body.p : "", op->body.len);
	if (lua_pcall(L, 1, 1, 0) == LUA_OK) {
		lua_setfield(L, -2, "json");
	} else {
		const char *m = lua_tostring(L, -1);
		lua_pushstring(L, m ? m : "not JSON");
		lua_setfield(L, -3, "json_error");
		lua_pop(L, 1);
	}
}

static double ms_of(curl_off_t us) { return (double)us / 1000.0; }

static void push_timings(lua_State *L, CURL *e)
{
	curl_off_t dns = 0, conn = 0, tls = 0, first = 0, total = 0;
	curl_easy_getinfo(e, CURLINFO_NAMELOOKUP_TIME_T, &dns);
	curl_easy_getinfo(e, CURLINFO_CONNECT_TIME_T, &conn);
	curl_easy_getinfo(e, CURLINFO_APPCONNECT_TIME_T, &tls);
	curl_easy_getinfo(e, CURLINFO_STARTTRANSFER_TIME_T, &first);
	curl_easy_getinfo(e, CURLINFO_TOTAL_TIME_T, &total);
	/* Cumulative since the start: per phase as differences, never negative. */
	if (conn < dns)
		conn = dns;
	curl_off_t hs = tls > conn ? tls : conn;
	if (first < hs)
		first = hs;
	if (total < first)
		total = first;
	lua_createtable(L, 0, 5);
	luax_setnum(L, "dns_ms", ms_of(dns));
	luax_setnum(L, "connect_ms", ms_of(conn - dns));
	luax_setnum(L, "tls_ms", ms_of(hs - conn));
	luax_setnum(L, "first_byte_ms", ms_of(first - hs));
	luax_setnum(L, "total_ms", ms_of(total));
	lua_setfield(L, -2, "timings");
}

/* "Jan  4 20:20:34 2027 GMT" (OpenSSL's ASN1_TIME_print) -> epoch seconds, or -1. */
static long long parse_cert_date(const char *s)
{
	static const char months[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
	char mon[4] = "";
	int day, h, m, sec, year;
	if (sscanf(s, "%3s %d %d:%d:%d %d", mon, &day, &h, &m, &sec, &year) != 6)
		return -1;
	const char *at = strstr(months, mon);
	if (!at || strlen(mon) != 3 || (at - months) % 3)
		return -1;
	struct tm tm = { .tm_year = year - 1900, .tm_mon = (int)((at - months) / 3), .tm_mday = day,
	                 .tm_hour = h, .tm_min = m, .tm_sec = sec };
	return (long long)timegm(&tm);
}

static const char *cert_field(const struct curl_slist *s, const char *name)
{
	size_t n = strlen(name);
	for (; s; s = s->next)
		if (strncmp(s->data, name, n) == 0 && s->data[n] == ':')
			return s->data + n + 1;
	return NULL;
}

/* Does one certificate name (a DNS SAN, or the CN) cover host? RFC 6125: "*." covers one label. */
static bool name_matches(const char *pattern, size_t n, const char *host)
{
	size_t hl = strlen(host);
	if (n == hl && strncasecmp(pattern, host, n) == 0)
		return true;
	if (n > 2 && pattern[0] == '*' && pattern[1] == '.') {
		const char *dot = strchr(host, '.');
		return dot && dot != host && strlen(dot) == n - 1 && strncasecmp(dot, pattern + 1, n - 1) == 0;
	}
	return false;
}

/* The leaf certificate's names against the host: SANs when present (DNS and IP), else the CN. */
static bool hostname_ok(const struct curl_slist *leaf, const char *host)
{
	const char *san = cert_field(leaf, "X509v3 Subject Alternative Name");
	if (san) {
		for (const char *p = san; *p;) {
			while (*p == ' ' || *p == ',')
				p++;
			size_t len = strcspn(p, ",");
			const char *end = p + len;
			while (end > p && end[-1] == ' ')
				end--;
			if (strncmp(p, "DNS:", 4) == 0 && name_matches(p + 4, (size_t)(end - p - 4), host))
				return true;
			if (strncmp(p, "IP Address:", 11) == 0 && (size_t)(end - p - 11) == strlen(host) &&
			    strncasecmp(p + 11, host, strlen(host)) == 0)
				return true;
			p += len;
		}
		return false;
	}
	const char *subject = cert_field(leaf, "Subject");
	const char *cn = subject ? strstr(subject, "CN = ") : NULL;
	size_t skip = 5;
	if (!cn && subject && (cn = strstr(subject, "CN=")))
		skip = 3;
	if (!cn)
		return false;
	cn += skip;
	return name_matches(cn, strcspn(cn, ",/"), host);
}

/* Sets days_left, not_after, not_before, issuer, subject, chain_length on the table on top. */
static void set_cert_fields(lua_State *L, const struct curl_certinfo *ci)
{
	const struct curl_slist *leaf = ci->certinfo[0];
	const char *v;
	if ((v = cert_field(leaf, "Subject")))
		luax_setstr(L, "subject", v);
	if ((v = cert_field(leaf, "Issuer")))
		luax_setstr(L, "issuer", v);
	long long t;
	if ((v = cert_field(leaf, "Start date")) && (t = parse_cert_date(v)) >= 0)
		luax_setint(L, "not_before", t);
	if ((v = cert_field(leaf, "Expire date")) && (t = parse_cert_date(v)) >= 0) {
		luax_setint(L, "not_after", t);
		luax_setint(L, "days_left", (lua_Integer)floor((double)(t - (long long)time(NULL)) / 86400.0));
	}
	luax_setint(L, "chain_length", ci->num_of_certs);
}

static const struct curl_certinfo *certinfo(CURL *e)
{
	struct curl_certinfo *ci = NULL;
	if (!e || curl_easy_getinfo(e, CURLINFO_CERTINFO, &ci) != CURLE_OK || !ci || ci->num_of_certs < 1)
		return NULL;
	return ci;
}

/* Is status accepted? Without expect: 2xx and 3xx. */
static bool status_expected(const struct http_op *op, long status)
{
	if (op->nexpect == 0)
		return status >= 200 && status < 400;
	for (int i = 0; i < op->nexpect; i++) {
		int x = op->expect[i];
		if (x < 10 ? status / 100 == x : status == x)
			return true;
	}
	return false;
}

static void expected_text(const struct http_op *op, char *out, size_t n)
{
	if (op->nexpect == 0) {
		snprintf(out, n, "2xx or 3xx");
		return;
	}
	size_t len = 0;
	for (int i = 0; i < op->nexpect && len < n; i++) {
		int x = op->expect[i];
		len += (size_t)snprintf(out + len, n - len, x < 10 ? "%s%dxx" : "%s%d", i ? (i == op->nexpect - 1 ? " or " : ", ") : "", x);
	}
}

static int finish_cert(lua_State *L, struct http_op *op, double ms)
{
	const struct curl_certinfo *ci = certinfo(op->easy);
	char summary[400];
	if (!ci) {
		op_stop(op);
		luax_audit_probe(op->fn, op->shown, op->timeout_ms, ms, "protocol", "no certificate");
		return luax_fail(L, "protocol", "%s %s: the server presented no certificate", op->fn, op->shown);
	}
	lua_createtable(L, 0, 12);
	luax_setstr(L, "host", op->host);
	luax_setint(L, "port", op->port);
	luax_setbool(L, "valid", op->verified);
	bool hok = op->verified || hostname_ok(ci->certinfo[0], op->host);
	luax_setbool(L, "hostname_ok", hok);
	if (!op->verified)
		luax_setstr(L, "error", op->verify_error[0] ? op->verify_error : "not verified");
	set_cert_fields(L, ci);
	luax_setnum(L, "ms", ms);
	lua_getfield(L, -1, "days_left");
	lua_Integer days = lua_tointeger(L, -1);
	lua_pop(L, 1);
	snprintf(summary, sizeof summary, "%s, %lld days left%s%s", op->verified ? "valid" : "NOT valid",
	         (long long)days, op->verified ? "" : ": ", op->verified ? "" : op->verify_error);
	op_stop(op);
	luax_audit_probe(op->fn, op->shown, op->timeout_ms, ms, op->verified ? "ok" : "problem", summary);
	return 1;
}

/* "METHOD url" (the URL redacted): what an action's records name. */
const char *action_target(const struct http_op *op, char *buf, size_t n)
{
	snprintf(buf, n, "%s %s", op->method, op->shown);
	return buf;
}

/* The call is over: audit it, push its Lua results, free the handles. */
static int finish(lua_State *L, struct http_op *op)
{
	double ms = sched_now_precise() - op->t0;
	char target[700];
	if (op->kind) {
		op_stop(op);
		if (op->type == OP_ACTION)
			gate_action_result(op->fn, action_target(op, target, sizeof target), op->kind, ms, op->cause);
		else
			luax_audit_probe(op->fn, op->shown, op->timeout_ms, ms, op->kind, op->cause);
		return luax_fail(L, op->kind, "%s %s: %s", op->fn, op->shown, op->cause);
	}
	if (op->type == OP_CERT)
		return finish_cert(L, op, ms);

	CURL *e = op->easy;
	long status = 0, redirects = 0;
	char *eff = NULL;
	curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
	curl_easy_getinfo(e, CURLINFO_REDIRECT_COUNT, &redirects);
	curl_easy_getinfo(e, CURLINFO_EFFECTIVE_URL, &eff);
	lua_createtable(L, 0, 18);
	luax_setint(L, "status", status);
	luax_setstr(L, "method", op->method);
	push_headers(L, op);
	lua_setfield(L, -2, "headers");
	lua_pushlstring(L, op->body.p ? op->body.p : "", op->body.len);
	lua_setfield(L, -2, "body");
	luax_setint(L, "bytes", (lua_Integer)op->body.len);
	luax_setbool(L, "truncated", op->truncated);
	if (strcmp(op->method, "HEAD") != 0 && is_json_type(header_value(op, "content-type")))
		push_json(L, op);
	char *url = redacted(eff ? eff : op->url);
	luax_setstr(L, "url", url);
	free(url);
	luax_setint(L, "redirects", redirects);
	luax_setnum(L, "ms", ms);
	push_timings(L, e);
	char *scheme = NULL;
	const struct curl_certinfo *ci = certinfo(e);
	if (ci && curl_easy_getinfo(e, CURLINFO_SCHEME, &scheme) == CURLE_OK && scheme && strcasecmp(scheme, "https") == 0) {
		lua_createtable(L, 0, 6);
		set_cert_fields(L, ci);
		lua_setfield(L, -2, "tls");
	}
	/* The judgement: expected status, then the expected text. */
	char problem[300] = "", want[200];
	if (!status_expected(op, status)) {
		expected_text(op, want, sizeof want);
		snprintf(problem, sizeof problem, "status %ld, expected %s", status, want);
	} else if (op->contains && (!op->body.p || !memmem(op->body.p, op->body.len, op->contains, strlen(op->contains)))) {
		snprintf(problem, sizeof problem, "the %s does not contain \"%s\"",
		         op->truncated ? "body (truncated at max_body)" : "body", op->contains);
	}
	luax_setbool(L, "ok", !problem[0]);
	if (problem[0])
		luax_setstr(L, "problem", problem);
	char summary[400];
	snprintf(summary, sizeof summary, "%ld, %zu bytes%s in %.1f ms%s%s", status, op->body.len,
	         op->truncated ? " (truncated)" : "", ms, problem[0] ? ": " : "", problem);
	op_stop(op);
	if (op->type == OP_ACTION) {
		char outcome[32];
		snprintf(outcome, sizeof outcome, "status %ld", status);
		gate_action_result(op->fn, action_target(op, target, sizeof target), outcome, ms, summary);
	} else {
		luax_audit_probe(op->fn, op->shown, op->timeout_ms, ms, problem[0] ? "problem" : "ok", summary);
	}
	return 1;
}

int op_k(lua_State *L, int status, lua_KContext ctx)
{
	(void)status;
	struct http_op *op = (struct http_op *)ctx;
	for (;;) {
		if (advance(op)) {
			int n = finish(L, op);
			op_free(op);
			return n;
		}
		if (tasks_must_yield(L))
			return tasks_yield(L, &op->w, ctx, op_k);
		tasks_block(&op->w);
	}
}
