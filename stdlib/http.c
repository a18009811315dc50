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
 */
#include "gate.h"
#include "host.h"
#include "jsonw.h"
#include "luax.h"
#include "modules.h"
#include "net.h"
#include "redact.h"
#include "runbook.h"
#include "tasks.h"

#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define DEFAULT_TIMEOUT_MS    10000
#define DEFAULT_MAX_REDIRECTS 5
#define DEFAULT_MAX_BODY      (10 << 20)
#define MAX_HEADER_BYTES      (256 << 10)
#define MAX_EXPECT            32
#define MAX_SOCKS             8
#define OP_MT                 "runbook.http.op"

enum op_type { OP_PROBE, OP_ACTION, OP_CERT };

struct buf { char *p; size_t len, cap; };

struct sock { curl_socket_t fd; int what; };

struct http_op {
	struct sched_waiter w;
	CURLM *multi;
	CURL *easy;
	struct curl_slist *headers;
	struct sock socks[MAX_SOCKS];
	int nsocks;
	msec_t timer_at;            /* curl's timer (absolute), -1 when none */
	msec_t deadline;            /* the call's one deadline */
	struct buf body, hdrs;      /* hdrs: "name\0value\0" pairs of the last response */
	size_t max_body;
	bool truncated, got_status, done, freed;
	CURLcode rc;
	const char *kind;           /* NULL on success */
	char cause[400];
	char errbuf[CURL_ERROR_SIZE];

	enum op_type type;
	char fn[16];                /* "http.get" */
	char method[12];
	char *url, *shown;          /* the real URL; the redacted one */
	char *post;                 /* request body (actions), post_len bytes */
	size_t post_len;
	char *ca, *contains;
	char noproxy[512];          /* loopback plus $no_proxy */
	bool insecure, follow, https;
	long max_redirects;
	int expect[MAX_EXPECT], nexpect;   /* 100..599 exact, 1..5 a class (2 = 2xx) */
	msec_t timeout_ms;          /* as asked */
	msec_t allowed_ms;          /* what it got: min(timeout, --timeout) */
	double t0;

	/* http.cert: phase 1 verifies, phase 2 (only when that failed) looks without verifying */
	int phase;
	bool verified;
	char verify_error[CURL_ERROR_SIZE];
	char host[256];
	long port;
};

/* ------------------------------------------------------------------------------ small helpers */

/* Appends n bytes (kept NUL-terminated); false when out of memory. */
static bool buf_try_add(struct buf *b, const char *p, size_t n)
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

static void buf_add(struct buf *b, const char *p, size_t n)
{
	if (!buf_try_add(b, p, n))
		abort();
}

static void buf_free(struct buf *b)
{
	free(b->p);
	*b = (struct buf){ 0 };
}

static char *xstrdup(const char *s)
{
	char *d = strdup(s ? s : "");
	if (!d)
		abort();
	return d;
}

/* The redacted form of s (secrets already registered), malloc'd. */
static char *redacted(const char *s)
{
	return redact(s, strlen(s), NULL);
}

static void fail(struct http_op *op, const char *kind, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void fail(struct http_op *op, const char *kind, const char *fmt, ...)
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
static void signals_block(sigset_t *old)
{
	sigset_t s;
	sigemptyset(&s);
	static const int sigs[] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGWINCH, SIGCHLD, SIGALRM, SIGUSR1, SIGUSR2 };
	for (size_t i = 0; i < sizeof sigs / sizeof *sigs; i++)
		sigaddset(&s, sigs[i]);
	pthread_sigmask(SIG_BLOCK, &s, old);
}

static void signals_restore(const sigset_t *old)
{
	pthread_sigmask(SIG_SETMASK, old, NULL);
}

static bool curl_ready(void)
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
static void register_url_secrets(const char *url)
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
static void check_url(lua_State *L, const char *fn, const char *url, bool *https)
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

/* ----------------------------------------------------------------------------- curl callbacks */

static int on_socket(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
	(void)easy;
	(void)socketp;
	struct http_op *op = userp;
	int i = 0;
	while (i < op->nsocks && op->socks[i].fd != s)
		i++;
	if (what == CURL_POLL_REMOVE) {
		if (i < op->nsocks)
			op->socks[i] = op->socks[--op->nsocks];
		return 0;
	}
	if (i == op->nsocks) {
		if (op->nsocks == MAX_SOCKS)
			return -1;       /* cannot happen for one transfer; curl fails the transfer */
		op->nsocks++;
	}
	op->socks[i] = (struct sock){ .fd = s, .what = what };
	return 0;
}

static int on_timer(CURLM *multi, long timeout_ms, void *userp)
{
	(void)multi;
	struct http_op *op = userp;
	op->timer_at = timeout_ms < 0 ? -1 : sched_now() + timeout_ms;
	return 0;
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *userp)
{
	struct http_op *op = userp;
	size_t n = size * nmemb;
	size_t room = op->max_body - op->body.len;
	/* Past max_body (or out of memory for a huge max_body): keep what fits, end the transfer
	 * (CURLE_WRITE_ERROR, expected) and say the body is truncated. */
	if (n > room || !buf_try_add(&op->body, data, n)) {
		if (n > room)
			buf_try_add(&op->body, data, room);
		op->truncated = true;
		return 0;
	}
	return n;
}

/* Keeps the headers of the last response only (a redirect or a 100 Continue starts over). */
static size_t on_header(char *data, size_t size, size_t nmemb, void *userp)
{
	struct http_op *op = userp;
	size_t n = size * nmemb;
	if (n >= 5 && memcmp(data, "HTTP/", 5) == 0) {
		op->hdrs.len = 0;
		op->got_status = true;
		return n;
	}
	const char *colon = memchr(data, ':', n);
	if (!colon || memchr(data, 0, n) || op->hdrs.len + n > MAX_HEADER_BYTES)
		return n;            /* not a header line, a NUL in it, or past the cap: not kept */
	size_t nl = (size_t)(colon - data);
	const char *v = colon + 1, *end = data + n;
	while (v < end && (*v == ' ' || *v == '\t'))
		v++;
	while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' ' || end[-1] == '\t'))
		end--;
	for (size_t i = 0; i < nl; i++) {
		char c = (char)tolower((unsigned char)data[i]);
		buf_add(&op->hdrs, &c, 1);
	}
	buf_add(&op->hdrs, "", 1);
	buf_add(&op->hdrs, v, (size_t)(end - v));
	buf_add(&op->hdrs, "", 1);
	return n;
}

/* -------------------------------------------------------------------------- handles, lifecycle */

/* Removes and frees the curl handles: nothing of this call is left in flight. Idempotent. */
static void op_stop(struct http_op *op)
{
	sigset_t old;
	signals_block(&old);
	if (op->multi && op->easy)
		curl_multi_remove_handle(op->multi, op->easy);
	if (op->easy)
		curl_easy_cleanup(op->easy);
	if (op->multi)
		curl_multi_cleanup(op->multi);
	signals_restore(&old);
	op->easy = NULL;
	op->multi = NULL;
	op->nsocks = 0;
	op->timer_at = -1;
	curl_slist_free_all(op->headers);
	op->headers = NULL;
}

static void op_free(struct http_op *op)
{
	if (op->freed)
		return;
	op_stop(op);
	buf_free(&op->body);
	buf_free(&op->hdrs);
	free(op->url);
	free(op->shown);
	free(op->post);
	free(op->ca);
	free(op->contains);
	op->url = op->shown = op->post = op->ca = op->contains = NULL;
	op->freed = true;
}

static int op_gc(lua_State *L)
{
	op_free(luaL_checkudata(L, 1, OP_MT));
	return 0;
}

static msec_t remaining(const struct http_op *op)
{
	msec_t left = op->deadline - sched_now();
	return left < 1 ? 1 : left;
}

#define SET(opt, val) do { if (curl_easy_setopt(e, opt, val) != CURLE_OK) goto bad; } while (0)

/* Creates the handles for one transfer (phase 2 of http.cert makes a second one). */
static void op_start(struct http_op *op, struct curl_slist *headers)
{
	op->body.len = op->hdrs.len = 0;
	op->got_status = op->truncated = false;
	op->errbuf[0] = 0;
	op->timer_at = -1;
	CURL *e = NULL;
	if (!curl_ready() || !(op->multi = curl_multi_init()) || !(e = op->easy = curl_easy_init())) {
		fail(op, "error", "cannot initialise libcurl (out of memory?)");
		return;
	}
	curl_multi_setopt(op->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
	curl_multi_setopt(op->multi, CURLMOPT_SOCKETDATA, op);
	curl_multi_setopt(op->multi, CURLMOPT_TIMERFUNCTION, on_timer);
	curl_multi_setopt(op->multi, CURLMOPT_TIMERDATA, op);
	msec_t left = remaining(op);
	SET(CURLOPT_URL, op->url);
	SET(CURLOPT_NOSIGNAL, 1L);
	SET(CURLOPT_QUICK_EXIT, 1L);          /* never wait for a stuck resolver thread */
	SET(CURLOPT_CONNECTTIMEOUT_MS, (long)left);
	SET(CURLOPT_TIMEOUT_MS, (long)left);
	SET(CURLOPT_PROTOCOLS_STR, "http,https");
	SET(CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
	SET(CURLOPT_USERAGENT, "runbook/" RUNBOOK_VERSION);
	SET(CURLOPT_ERRORBUFFER, op->errbuf);
	SET(CURLOPT_WRITEFUNCTION, on_body);
	SET(CURLOPT_WRITEDATA, op);
	SET(CURLOPT_HEADERFUNCTION, on_header);
	SET(CURLOPT_HEADERDATA, op);
	SET(CURLOPT_ACCEPT_ENCODING, "");     /* whatever curl can decode; max_body counts decoded bytes */
	SET(CURLOPT_NOPROXY, op->noproxy);     /* a proxy from the environment, never for loopback */
	if (op->ca)
		SET(CURLOPT_CAINFO, op->ca);
	if (op->type == OP_CERT) {
		SET(CURLOPT_CONNECT_ONLY, 1L);
		SET(CURLOPT_CERTINFO, 1L);
		SET(CURLOPT_SSL_VERIFYPEER, op->phase == 1 ? 1L : 0L);
		SET(CURLOPT_SSL_VERIFYHOST, op->phase == 1 ? 2L : 0L);
	} else {
		if (op->https)
			SET(CURLOPT_CERTINFO, 1L);
		if (op->insecure) {
			SET(CURLOPT_SSL_VERIFYPEER, 0L);
			SET(CURLOPT_SSL_VERIFYHOST, 0L);
		}
		SET(CURLOPT_FOLLOWLOCATION, op->follow ? 1L : 0L);
		SET(CURLOPT_MAXREDIRS, op->max_redirects);
		if (strcmp(op->method, "HEAD") == 0) {
			SET(CURLOPT_NOBODY, 1L);
		} else if (strcmp(op->method, "GET") != 0) {
			SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)op->post_len);
			SET(CURLOPT_POSTFIELDS, op->post ? op->post : "");
			if (strcmp(op->method, "POST") != 0)
				SET(CURLOPT_CUSTOMREQUEST, op->method);
		}
		if (headers)
			SET(CURLOPT_HTTPHEADER, headers);
	}
	sigset_t old;
	signals_block(&old);
	CURLMcode mc = curl_multi_add_handle(op->multi, e);
	signals_restore(&old);
	if (mc != CURLM_OK) {
		fail(op, "error", "cannot start the transfer: %s", curl_multi_strerror(mc));
		return;
	}
	return;
bad:
	fail(op, "error", "libcurl refused an option (%s)", curl_version());
}

/* --------------------------------------------------------------------------- the state machine */

static const char *phase_of_timeout(struct http_op *op)
{
	curl_off_t dns = 0, conn = 0, tls = 0;
	if (op->easy) {
		curl_easy_getinfo(op->easy, CURLINFO_NAMELOOKUP_TIME_T, &dns);
		curl_easy_getinfo(op->easy, CURLINFO_CONNECT_TIME_T, &conn);
		curl_easy_getinfo(op->easy, CURLINFO_APPCONNECT_TIME_T, &tls);
	}
	if (op->body.len)
		return "while receiving the body";
	if (op->got_status)
		return "after the response headers, before the body";
	if (conn == 0 && dns == 0)
		return "resolving the host name or connecting";
	if (conn == 0)
		return "connecting (a firewall dropping packets, or an overloaded listener)";
	if (op->https && tls == 0)
		return "in the TLS handshake";
	return "waiting for the response (connected, request sent, no answer)";
}

static void timeout_fail(struct http_op *op)
{
	const char *phase = phase_of_timeout(op);
	if (op->body.len)
		fail(op, "timeout", "timed out after %lld ms %s (%zu bytes in)", (long long)op->allowed_ms, phase, op->body.len);
	else
		fail(op, "timeout", "timed out after %lld ms %s", (long long)op->allowed_ms, phase);
}

/* curl's text for a failed verification without its "SSL certificate problem: " prefix. */
static const char *verify_cause(const char *detail)
{
	if (strncmp(detail, "SSL certificate problem: ", 25) == 0)
		return detail + 25;
	if (strncmp(detail, "SSL: ", 5) == 0)
		return detail + 5;
	return detail;
}

/* The transfer ended with rc: files an error (op->kind) unless it is a success. */
static void classify(struct http_op *op, CURLcode rc)
{
	long oserr = 0;
	const char *detail = op->errbuf[0] ? op->errbuf : curl_easy_strerror(rc);
	if (op->easy)
		curl_easy_getinfo(op->easy, CURLINFO_OS_ERRNO, &oserr);
	switch (rc) {
	case CURLE_OK:
		return;
	case CURLE_WRITE_ERROR:
		if (op->truncated)
			return;
		break;
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_RESOLVE_PROXY:
		fail(op, "dns", "cannot resolve the host name (no such host, or no answer from DNS)");
		return;
	case CURLE_COULDNT_CONNECT:
		if (oserr)
			fail(op, net_errno_kind((int)oserr), "%s", net_errno_cause((int)oserr));
		else
			fail(op, "refused", "cannot connect (%s)", detail);
		return;
	case CURLE_OPERATION_TIMEDOUT:
		timeout_fail(op);
		return;
	case CURLE_PEER_FAILED_VERIFICATION:
		detail = verify_cause(detail);
		fail(op, "tls", "TLS certificate problem: %s (insecure = true skips the check; http.cert shows the certificate)", detail);
		return;
	case CURLE_SSL_CONNECT_ERROR: case CURLE_SSL_CERTPROBLEM: case CURLE_SSL_CIPHER:
	case CURLE_SSL_CACERT_BADFILE: case CURLE_SSL_ENGINE_NOTFOUND: case CURLE_SSL_ENGINE_SETFAILED:
	case CURLE_SSL_ENGINE_INITFAILED: case CURLE_SSL_SHUTDOWN_FAILED: case CURLE_SSL_CRL_BADFILE:
	case CURLE_SSL_ISSUER_ERROR: case CURLE_SSL_PINNEDPUBKEYNOTMATCH: case CURLE_SSL_INVALIDCERTSTATUS:
	case CURLE_SSL_CLIENTCERT: case CURLE_USE_SSL_FAILED:
		fail(op, "tls", "TLS failed: %s", detail);
		return;
	case CURLE_TOO_MANY_REDIRECTS:
		fail(op, "protocol", "more than %ld redirects (a redirect loop?)", op->max_redirects);
		return;
	case CURLE_UNSUPPORTED_PROTOCOL:
		fail(op, "protocol", "redirected to a URL that is not http:// or https:// (%s)", detail);
		return;
	case CURLE_GOT_NOTHING:
		fail(op, "protocol", "the server closed the connection without answering");
		return;
	case CURLE_RECV_ERROR:
	case CURLE_SEND_ERROR:
		if (oserr == ECONNRESET || oserr == EPIPE) {
			fail(op, "reset", "%s", net_errno_cause((int)oserr));
			return;
		}
		break;
	default:
		break;
	}
	fail(op, "protocol", "%s", detail);
}

/* http.cert: after phase 1 (verifying) failed on the certificate, look again without verifying. */
static void transfer_done(struct http_op *op, CURLcode rc)
{
	op->rc = rc;
	if (op->type == OP_CERT && op->phase == 1) {
		if (rc == CURLE_OK) {
			op->verified = true;
		} else if (rc == CURLE_PEER_FAILED_VERIFICATION) {
			snprintf(op->verify_error, sizeof op->verify_error, "%s",
			         verify_cause(op->errbuf[0] ? op->errbuf : curl_easy_strerror(rc)));
			op_stop(op);
			op->phase = 2;
			op_start(op, NULL);
			return;
		}
	}
	classify(op, rc);
	op->done = true;
}

/* Feeds curl what the last wait saw; true when the call is over (result or op->kind). */
static bool advance(struct http_op *op)
{
	if (op->done)
		return true;
	if (op->w.result == SCHED_INTERRUPTED) {
		fail(op, "interrupted", "interrupted");
		return true;
	}
	int running = 0;
	sigset_t old;
	signals_block(&old);
	for (int i = 0; i < op->w.nfds && op->multi; i++) {
		short re = op->w.fds[i].revents;
		if (!re)
			continue;
		int mask = 0;
		if (re & (POLLIN | POLLHUP))
			mask |= CURL_CSELECT_IN;
		if (re & POLLOUT)
			mask |= CURL_CSELECT_OUT;
		if (re & (POLLERR | POLLNVAL))
			mask |= CURL_CSELECT_ERR;
		curl_multi_socket_action(op->multi, op->w.fds[i].fd, mask, &running);
	}
	/* More sockets than a waiter holds (never seen for one transfer): let curl look at them. */
	for (int i = TASKS_WAIT_FDS; i < op->nsocks && op->multi; i++)
		curl_multi_socket_action(op->multi, op->socks[i].fd, 0, &running);
	if (op->multi && op->timer_at >= 0 && sched_now() >= op->timer_at) {
		op->timer_at = -1;
		curl_multi_socket_action(op->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	}
	signals_restore(&old);
	CURLMsg *msg;
	int left;
	while (op->multi && (msg = curl_multi_info_read(op->multi, &left)))
		if (msg->msg == CURLMSG_DONE && msg->easy_handle == op->easy) {
			transfer_done(op, msg->data.result);
			break;
		}
	if (op->done)
		return true;
	msec_t now = sched_now();
	if (now >= op->deadline) {
		timeout_fail(op);
		return true;
	}
	msec_t until = op->deadline;
	if (op->timer_at >= 0 && op->timer_at < until)
		until = op->timer_at;
	if (op->nsocks > TASKS_WAIT_FDS && until > now + 5)
		until = now + 5;
	tasks_wait_init(&op->w, until);
	for (int i = 0; i < op->nsocks && i < TASKS_WAIT_FDS; i++) {
		short ev = 0;
		if (op->socks[i].what & CURL_POLL_IN)
			ev |= POLLIN;
		if (op->socks[i].what & CURL_POLL_OUT)
			ev |= POLLOUT;
		tasks_want(&op->w, op->socks[i].fd, ev);
	}
	return false;
}

/* ------------------------------------------------------------------------------------ results */

static void push_cjson(lua_State *L)
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
static const char *action_target(const struct http_op *op, char *buf, size_t n)
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

static int op_k(lua_State *L, int status, lua_KContext ctx)
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

/* -------------------------------------------------------------------------------------- options */

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
static void read_options(lua_State *L, struct http_op *op, int opts)
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
static struct curl_slist *read_headers(lua_State *L, int opts, const char *fn, bool has_body, bool json,
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
static void read_body(lua_State *L, struct http_op *op, int opts, bool *json)
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
static struct http_op *new_op(lua_State *L, enum op_type type, const char *fn, const char *method)
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

static void begin(struct http_op *op, struct curl_slist *headers)
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

/* ---------------------------------------------------------------------------------- functions */

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
	if (a != GATE_RUN) {
		char msg[800];
		snprintf(msg, sizeof msg, "%s %s %s: %s", fn, op->method, op->shown,
		         a == GATE_REFUSED ? "not run: the transcript cannot be written" : "declined by the operator");
		if (a == GATE_REFUSED)
			return luax_fail(L, "refused", "%s", msg);
		op_free(op);
		return host_raise_control(L, a == GATE_ABORT ? "abort" : "skip", msg);
	}
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
