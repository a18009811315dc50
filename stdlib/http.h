/*
 * http.h - what the parts of the http module (http.c, http_request.c, http_transfer.c,
 * http_result.c) share: the op of one call and the functions that cross between them. Private to
 * the http module; nothing here is exported.
 */
#ifndef RUNBOOK_HTTP_H
#define RUNBOOK_HTTP_H

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

#pragma GCC visibility push(hidden)   /* shared by the parts of http only: not visible to other objects */

/* http.c */
bool buf_try_add(struct buf *b, const char *p, size_t n);
void buf_add(struct buf *b, const char *p, size_t n);
void buf_free(struct buf *b);
char *xstrdup(const char *s);
char *redacted(const char *s);
void fail(struct http_op *op, const char *kind, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void signals_block(sigset_t *old);
void signals_restore(const sigset_t *old);
bool curl_ready(void);

/* http_request.c */
void check_url(lua_State *L, const char *fn, const char *url, bool *https);
void register_url_secrets(const char *url);
void read_options(lua_State *L, struct http_op *op, int opts);
struct curl_slist *read_headers(lua_State *L, int opts, const char *fn, bool has_body, bool json, struct buf *shown);
void read_body(lua_State *L, struct http_op *op, int opts, bool *json);
struct http_op *new_op(lua_State *L, enum op_type type, const char *fn, const char *method);
void begin(struct http_op *op, struct curl_slist *headers);

/* http_transfer.c */
void op_stop(struct http_op *op);
void op_free(struct http_op *op);
int op_gc(lua_State *L);
void op_start(struct http_op *op, struct curl_slist *headers);
bool advance(struct http_op *op);

/* http_result.c */
void push_cjson(lua_State *L);
const char *action_target(const struct http_op *op, char *buf, size_t n);
int op_k(lua_State *L, int status, lua_KContext ctx);

#pragma GCC visibility pop

#endif
