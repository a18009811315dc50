/*
 * http_transfer.c - a transfer driven by curl's multi interface on our own poll: curl's socket, timer,
 * body and header callbacks, starting and stopping an op's easy handle, and the state machine that
 * classifies how a transfer ended (timeouts by phase, TLS verification, refused, dns, ...).
 */
#include "http.h"

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
void op_stop(struct http_op *op)
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

void op_free(struct http_op *op)
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

int op_gc(lua_State *L)
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
void op_start(struct http_op *op, struct curl_slist *headers)
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
bool advance(struct http_op *op)
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
