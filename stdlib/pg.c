/*
 * pg.c - PostgreSQL (require "pg"), over libpq's non-blocking interface.
 *
 *   pg.connect(url_or_conninfo, { timeout = 5, application_name = "runbook", password })
 *       -> conn | nil, err, kind
 *   pg.ping(url_or_conninfo, { timeout = 5, application_name, password })
 *       -> { ok = true, version, version_num, connect_ms, in_recovery, ms } | nil, err, kind
 *   conn:query(sql, params, { timeout = 10 })
 *       -> { {col = value, ...}, ..., columns = {names}, rows = n, ms } | nil, err, kind
 *   conn:exec(sql, params, { summary, target, irreversible = false, timeout = 60 })   an action
 *       -> the same plus command ("UPDATE 3") and affected | { dry_run = true, sql } | nil, err, kind
 *   conn:close(), `local conn <close> = ...`, __gc, tostring(conn) ("pg.conn 10.0.0.5:5432/app")
 *   The ready-made probes (conn:connections(), ...) and actions (conn:terminate_idle{}, ...) are
 *   in pg_probes.c.
 *
 * URLs (postgresql://user:password@host:port/db?sslmode=...) and key=value strings are parsed by
 * libpq (PQconninfoParse), a service (service=name, $PGSERVICE) is read by pg_service.c; the
 * host is resolved here, bounded (net_lookup), and handed to libpq
 * as `hostaddr`, so libpq never calls the blocking resolver. One deadline covers the lookup, the
 * TCP connect, TLS, authentication and, for ping, the first query. PQconnectPoll is driven on
 * PQsocket, which may change between polls (libpq retries without TLS on a new socket).
 *
 * Several hosts (postgresql://h1,h2:5433/db, host=h1,h2 port=5432,5433) are tried in turn, each
 * as a connection of its own. As in libpq, a host that cannot be reached, does not answer, or does
 * not match target_session_attrs hands over to the next, and a server that answers with an error
 * (a wrong password, a missing database, too many connections; all but 57P03, "starting up") ends
 * the call: the other hosts would not know the password better. Each host gets an equal share of
 * the time that is left, and each address of a host's name an equal share of the host's
 * (net_share_end), so that one that does not answer cannot use up the others' time.
 * prefer-standby is two rounds: the hosts as standby, then as any.
 *
 * conn:query runs BEGIN READ ONLY; the statement; ROLLBACK as one libpq pipeline (one round
 * trip; the ROLLBACK comes after its own Sync so that it also ends a transaction that the
 * statement's error left aborted). The statement goes through the extended protocol, which
 * refuses several statements in one string: a probe cannot write. Parameters are sent as text
 * ($1, $2, ...); values come back typed by their column's type OID: int2/int4/int8/oid ->
 * integer, float4/float8/numeric -> number, bool -> boolean, NULL -> nil, anything else ->
 * string. conn:exec runs its statement as it is (autocommit) after the gate has confirmed it.
 *
 * At the deadline, or on Ctrl-C, in the middle of a query: a cancel request goes to the server
 * from a worker thread (PQcancel blocks, and a stopped postmaster would hold it for ever), the
 * connection is closed, and the handle is marked broken: later calls return nil, "... connection
 * was closed after a timeout; connect again", "closed".
 *
 * Kinds: timeout, interrupted, refused, unreachable, reset, dns, auth (28P01, 28000, no
 * password), protocol, closed, error, or the SQLSTATE the server sent (42P01, 25006, 53300, ...).
 * Default deadlines: connect and ping 5 s, query and probes 10 s, exec 60 s.
 */
#include "pg.h"
#include "pg_readonly.h"
#include "host.h"
#include "luax.h"
#include "modules.h"
#include "net.h"
#include "redact.h"
#include "users.h"

#include <ctype.h>
#include <errno.h>
#include <lauxlib.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CONN_MT "runbook.pg.conn"

#define DEFAULT_CONNECT_TIMEOUT_MS 5000
#define DEFAULT_EXEC_TIMEOUT_MS    60000
#define CANCEL_GRACE_MS            100     /* after a timeout: let the cancel request leave */
#define MAX_CONNINFO               64
#define MAX_HOSTS                  8

enum phase {
	PH_IDLE,          /* nothing queued */
	PH_LOOKUP,        /* resolving the host name */
	PH_CONNECT_START, /* start a connection attempt to the next address */
	PH_CONNECT,       /* PQconnectPoll */
	PH_START,         /* send the queued pipeline */
	PH_SEND,          /* flushing it */
	PH_READ,          /* reading its results */
	PH_CANCEL,        /* after a timeout: a short grace for the cancel request */
	PH_DONE,
};

/* One server of the connection string. */
struct pg_endpoint {
	char host[256];           /* a name we resolve, a socket directory, or "" (libpq's default) */
	char hostaddr[64];        /* a numeric address given as such, or "" */
	char port[32];            /* a number, or "" (libpq's default), or one out of range: */
	bool bad_port;            /* that server fails, as in libpq, and the next one is tried */
};

struct pg_connect {
	char *keys[MAX_CONNINFO + 1], *vals[MAX_CONNINFO + 1];  /* NULL-terminated, owned */
	int n;
	struct pg_endpoint ep[MAX_HOSTS];
	int nep, cur;             /* the servers, and the one being tried */
	int rounds, round;        /* prefer-standby: a round for standbys, then one for any */
	char db[128];
	msec_t deadline;          /* the call's; the op's waiter may wake earlier, at turn_end */
	msec_t attempt_start, attempt_deadline;   /* this server's share of the time */
	msec_t turn_end;          /* the end of the share of the server's address being tried */
	struct net_lookup lookup;
	int next_addr, silent;     /* silent: the server's addresses left at the end of their share */
	char tried[700];          /* "host:port: cause; ..." of the servers given up on */
	int untold;               /* entries that did not fit in tried */
};

static void finish_conn(void *conn) { PQfinish(conn); }

static const struct handle_type conn_type = { .mt = CONN_MT, .module = "pg", .disconnect = finish_conn };
_Static_assert(offsetof(struct pg_handle, s) == 0, "handle.c finds the handle_state at the start of the userdata");

/* ------------------------------------------------------------------------- small helpers */

double pg_elapsed(const struct pg_op *op) { return sched_now_precise() - op->t0; }

void pg_op_fail(struct pg_op *op, const char *kind, const char *fmt, ...)
{
	if (op->kind)
		return;   /* the first failure is the one that explains */
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(op->cause, sizeof op->cause, fmt, ap);
	va_end(ap);
	op->kind = kind;
}

/* The first line of a libpq message, without its trailing newline. */
static void first_line(char *out, size_t n, const char *msg)
{
	size_t len = strcspn(msg, "\n");
	while (len > 0 && isspace((unsigned char)msg[len - 1]))
		len--;
	snprintf(out, n, "%.*s", (int)len, msg);
}

static void ignore_notice(void *arg, const PGresult *r)
{
	(void)arg;
	(void)r;   /* libpq would print notices on stderr, past redaction and the transcript */
}

/* --------------------------------------------------------------- connection parameters */

static const char *cx_get(const struct pg_connect *cx, const char *key)
{
	for (int i = 0; i < cx->n; i++)
		if (strcmp(cx->keys[i], key) == 0)
			return cx->vals[i];
	return NULL;
}

static int cx_set(struct pg_connect *cx, const char *key, const char *val)
{
	for (int i = 0; i < cx->n; i++)
		if (strcmp(cx->keys[i], key) == 0) {
			char *v = strdup(val);
			if (!v)
				abort();
			free(cx->vals[i]);
			cx->vals[i] = v;
			return i;
		}
	if (cx->n == MAX_CONNINFO)
		return -1;
	cx->keys[cx->n] = strdup(key);
	cx->vals[cx->n] = strdup(val);
	if (!cx->keys[cx->n] || !cx->vals[cx->n])
		abort();
	return cx->n++;
}

/* A parameter that neither the call nor the environment sets. */
/* Whether neither the call nor its environment variable gives the parameter key. */
static bool param_unset(const struct pg_connect *cx, const char *key, const char *env)
{
	const char *v = getenv(env);
	return !cx_get(cx, key) && !(v && *v);
}

/* Whether libpq will look for files in the home directory: ~/.pgpass without a password, the
 * ~/.postgresql/ files unless SSL is off, ~/.pg_service.conf for a service without a service file. */
static bool libpq_needs_home(const struct pg_connect *cx)
{
	const char *sslmode = cx_get(cx, "sslmode") ? cx_get(cx, "sslmode") : getenv("PGSSLMODE");
	const char *service_file = getenv("PGSERVICEFILE");
	bool service = !param_unset(cx, "service", "PGSERVICE");
	return param_unset(cx, "password", "PGPASSWORD") || !(sslmode && strcmp(sslmode, "disable") == 0) ||
	       (service && !(service_file && *service_file));
}

/*
 * Without HOME, libpq looks the home directory up itself (getpwuid, without a bound) for those
 * files: it is given them, under the home directory looked up here within the call's deadline. The
 * same files, so the same behaviour: a file that is not there is not used. (For a service file it
 * looks again itself; by then the system has answered here, so it answers there too.)
 */
static bool set_home_files(struct pg_op *op, struct pg_connect *cx)
{
	const char *env_home = getenv("HOME");
	if ((env_home && *env_home) || !libpq_needs_home(cx))
		return true;
	char home[256], path[300];
	enum user_lookup got = users_home(geteuid(), home, sizeof home, cx->deadline);
	if (got == USER_UNKNOWN)   /* libpq's own lookup will find none either, at once */
		return true;
	if (got == USER_SILENT) {
		pg_op_fail(op, "error", "HOME is not set, and the system did not tell this user's home directory in "
		           "time (is sssd or LDAP down?): set HOME");
		return false;
	}
	static const struct { const char *key, *env, *file, *unless_key, *unless_env; } files[] = {
		{ "passfile", "PGPASSFILE", ".pgpass", NULL, NULL },
		{ "sslcert", "PGSSLCERT", ".postgresql/postgresql.crt", NULL, NULL },
		{ "sslkey", "PGSSLKEY", ".postgresql/postgresql.key", NULL, NULL },
		{ "sslrootcert", "PGSSLROOTCERT", ".postgresql/root.crt", NULL, NULL },
		{ "sslcrl", "PGSSLCRL", ".postgresql/root.crl", "sslcrldir", "PGSSLCRLDIR" },   /* as libpq: one or the other */
	};
	for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
		if (!param_unset(cx, files[i].key, files[i].env) ||
		    (files[i].unless_key && !param_unset(cx, files[i].unless_key, files[i].unless_env)))
			continue;
		snprintf(path, sizeof path, "%s/%s", home, files[i].file);
		cx_set(cx, files[i].key, path);
	}
	return true;
}

/* libpq would ask NSS for the user's name itself, without a bound: it is given the name, looked up
 * within the call's deadline, or $USER or $LOGNAME when the system does not tell it. */
static bool set_os_user(struct pg_op *op, struct pg_connect *cx)
{
	char name[80];
	enum user_lookup got = users_name(geteuid(), name, sizeof name, cx->deadline);
	const char *user = got == USER_FOUND ? name : getenv("USER");
	if (!user || !*user)
		user = getenv("LOGNAME");
	if (user && *user) {
		cx_set(cx, "user", user);
		return true;
	}
	if (got == USER_SILENT)
		pg_op_fail(op, "error", "no user given, and the system did not tell this user's name in time (is sssd "
		           "or LDAP down?): give user= in the URL, or set PGUSER");
	else
		pg_op_fail(op, "error", "no user given, and %s has no name here: give user= in the URL, or set PGUSER", name);
	return false;
}

static void cx_free(struct pg_connect *cx)
{
	if (!cx)
		return;
	net_lookup_cancel(&cx->lookup);
	for (int i = 0; i < cx->n; i++) {
		free(cx->keys[i]);
		free(cx->vals[i]);
	}
	free(cx);
}

/* No port in the string, its service or $PGPORT: libpq's default, which the attempt leaves to it. */
static const char *port_of(const struct pg_endpoint *ep)
{
	return ep->port[0] ? ep->port : "5432";
}

/* "host:port", "[v6]:port" or "/socket/dir:port": how messages name one server. */
static void format_endpoint(char *out, size_t n, const struct pg_endpoint *ep)
{
	const char *shown = ep->host[0] ? ep->host : ep->hostaddr[0] ? ep->hostaddr : "/var/run/postgresql";
	snprintf(out, n, strchr(shown, ':') && shown[0] != '/' ? "[%s]:%s" : "%s:%s", shown, port_of(ep));
}

/* "h1:5432,h2:5432/db": the servers this call may use, or the one it connected to. */
static void format_target(char *out, size_t n, const struct pg_connect *cx, int first, int count)
{
	size_t len = 0;
	out[0] = '\0';
	for (int i = first; i < first + count && len < n; i++) {
		char one[300];
		format_endpoint(one, sizeof one, &cx->ep[i]);
		len += (size_t)snprintf(out + len, n - len, "%s%s", i > first ? "," : "", one);
	}
	if (len < n)
		snprintf(out + len, n - len, "/%s", cx->db);
}

/* Item i of a comma-separated list ("" past its end). */
static void list_item(const char *list, int i, char *out, size_t n)
{
	const char *p = list ? list : "";
	for (; i > 0 && p; i--)
		if ((p = strchr(p, ',')) != NULL)
			p++;
	size_t len = p ? strcspn(p, ",") : 0;
	snprintf(out, n, "%.*s", (int)len, p ? p : "");
}

static int list_count(const char *list)
{
	if (!list || !*list)
		return 0;
	int n = 1;
	for (const char *p = list; (p = strchr(p, ',')) != NULL; p++)
		n++;
	return n;
}

/* A port as libpq reads it: an int, white space around it allowed, written back as a plain
 * number ("+05432 " -> "5432"); false for something else, which fails the whole call. */
static bool read_port(struct pg_endpoint *ep)
{
	char *end;
	errno = 0;
	long n = strtol(ep->port, &end, 10);
	while (isspace((unsigned char)*end))
		end++;
	if (end == ep->port || *end || errno != 0 || n != (int)n)
		return false;
	ep->bad_port = n < 1 || n > 65535;
	if (!ep->bad_port)
		snprintf(ep->port, sizeof ep->port, "%ld", n);
	return true;
}

/* The servers, from the host, hostaddr and port lists, by libpq's rules: host and hostaddr
 * name the same servers; one port serves all, or there is one a server. */
static bool cx_endpoints(struct pg_op *op, const char *host, const char *hostaddr, const char *port)
{
	struct pg_connect *cx = op->cx;
	int nh = list_count(host), na = list_count(hostaddr), np = list_count(port);
	int n = nh > na ? nh : na;
	if (n == 0)
		n = 1;
	if (nh && na && nh != na) {
		pg_op_fail(op, "error", "invalid connection string: %d hosts but %d hostaddrs", nh, na);
		return false;
	}
	if (np > 1 && np != n) {
		pg_op_fail(op, "error", "invalid connection string: %d ports for %d hosts (give one, or one a host)", np, n);
		return false;
	}
	if (n > MAX_HOSTS) {
		pg_op_fail(op, "error", "invalid connection string: more than %d hosts", MAX_HOSTS);
		return false;
	}
	for (int i = 0; i < n; i++) {
		struct pg_endpoint *ep = &cx->ep[i];
		list_item(host, i, ep->host, sizeof ep->host);
		list_item(hostaddr, i, ep->hostaddr, sizeof ep->hostaddr);
		list_item(port, np > 1 ? i : 0, ep->port, sizeof ep->port);
		if (ep->port[0] && !read_port(ep)) {
			pg_op_fail(op, "error", "invalid connection string: invalid integer value \"%s\" for connection "
			           "option \"port\"", ep->port);
			return false;
		}
	}
	cx->nep = n;
	return true;
}

/* Whether we resolve the server's name (a socket directory or a given address needs none). */
static bool needs_lookup(const struct pg_endpoint *ep)
{
	return ep->host[0] && !ep->hostaddr[0] && ep->host[0] != '/' && ep->host[0] != '@';
}

/* The password of a string libpq could not parse, as it is written there (percent-encoded, quoted):
 * libpq's message quotes the token it stumbled on, which may be the password. */
static void register_raw_password(const char *conninfo)
{
	char secret[256] = "";
	const char *p = NULL;
	if (strncmp(conninfo, "postgresql://", 13) == 0)
		p = conninfo + 13;
	else if (strncmp(conninfo, "postgres://", 11) == 0)
		p = conninfo + 11;
	if (p) {   /* scheme://user:password@host...: the last '@' before the path */
		const char *end = p + strcspn(p, "/?#"), *at = NULL, *colon;
		for (const char *q = p; q < end; q++)
			if (*q == '@')
				at = q;
		if (at && (colon = memchr(p, ':', (size_t)(at - p))) != NULL)
			snprintf(secret, sizeof secret, "%.*s", (int)(at - colon - 1), colon + 1);
	} else if ((p = strstr(conninfo, "password")) != NULL) {   /* key=value: password = 'x' or x */
		p += strspn(p + 8, " \t") + 8;
		if (*p == '=') {
			p += 1 + strspn(p + 1, " \t");
			bool quoted = *p == '\'';
			p += quoted;
			snprintf(secret, sizeof secret, "%.*s", (int)(quoted ? strcspn(p, "'") : strcspn(p, " \t")), p);
		}
	}
	if (secret[0])
		redact_add_secret(secret);
}

/* A service's option, unless the string gave it. */
static void fill_unset(void *ud, const char *key, const char *value)
{
	struct pg_connect *cx = ud;
	if (strcmp(key, "password") == 0)
		redact_add_secret(value);   /* at once: a later line's error must not show it */
	if (!cx_get(cx, key))
		cx_set(cx, key, value);
}

/*
 * Parses the connection string into op->cx: libpq's own parser, then our defaults
 * (application_name, no GSSAPI negotiation, UTF8), the password registered as a secret, and
 * the host that we resolve ourselves. Returns false (op failed) on a bad string.
 */
static bool cx_parse(struct pg_op *op, const char *conninfo, const char *app, const char *password)
{
	char *err = NULL;
	PQconninfoOption *opts = PQconninfoParse(conninfo, &err);
	if (!opts) {
		register_raw_password(conninfo);   /* libpq's message may quote it */
		char line[300];
		first_line(line, sizeof line, err ? err : "out of memory");
		pg_op_fail(op, "error", "invalid connection string: %s", line);
		PQfreemem(err);
		return false;
	}
	struct pg_connect *cx = calloc(1, sizeof *cx);
	if (!cx)
		abort();
	op->cx = cx;
	cx->deadline = op->w.deadline;
	cx->rounds = 1;
	for (PQconninfoOption *o = opts; o->keyword; o++)
		if (o->val && o->val[0])
			cx_set(cx, o->keyword, o->val);
	PQconninfoFree(opts);
	if (password)
		cx_set(cx, "password", password);
	const char *service = cx_get(cx, "service");
	char bad[400];
	if (!pg_service_apply(service ? service : getenv("PGSERVICE"), fill_unset, cx, bad, sizeof bad)) {
		pg_op_fail(op, "error", "%s", bad);
		return false;
	}
	redact_add_secret(cx_get(cx, "password"));
	if (app || !cx_get(cx, "application_name"))
		cx_set(cx, "application_name", app ? app : "runbook");
	if (!cx_get(cx, "gssencmode"))
		cx_set(cx, "gssencmode", "disable");   /* Kerberos would look names up, blocking */
	if (!cx_get(cx, "client_encoding"))
		cx_set(cx, "client_encoding", "UTF8");
	const char *pguser = getenv("PGUSER");
	if (!cx_get(cx, "user") && !(pguser && *pguser) && !set_os_user(op, cx))
		return false;
	if (!set_home_files(op, cx))
		return false;

	const char *host = cx_get(cx, "host"), *hostaddr = cx_get(cx, "hostaddr"), *port = cx_get(cx, "port");
	if (!host)
		host = getenv("PGHOST");
	if (!hostaddr)
		hostaddr = getenv("PGHOSTADDR");
	if (!port)
		port = getenv("PGPORT");
	const char *db = cx_get(cx, "dbname");
	if (!db)
		db = getenv("PGDATABASE");
	if (!db)
		db = cx_get(cx, "user");
	if (!db)
		db = getenv("PGUSER");
	snprintf(cx->db, sizeof cx->db, "%s", db ? db : "");
	if (!cx_endpoints(op, host, hostaddr, port))
		return false;
	format_target(op->target, sizeof op->target, cx, 0, cx->nep);
	const char *attrs = cx_get(cx, "target_session_attrs");
	if (attrs && strcmp(attrs, "prefer-standby") == 0)
		cx->rounds = 2;
	/* Each attempt sets these to one server's (empty values are ignored by libpq). */
	cx_set(cx, "host", "");
	cx_set(cx, "hostaddr", "");
	cx_set(cx, "port", "");
	if (cx->n == MAX_CONNINFO) {
		pg_op_fail(op, "error", "invalid connection string: too many parameters");
		return false;
	}
	return true;
}

/* ----------------------------------------------------------------------- the op userdata */

static void stmt_free(struct pg_stmt *s)
{
	free(s->sql);
	for (int i = 0; i < s->nparams; i++)
		free(s->params[i]);
	free(s->params);
	memset(s, 0, sizeof *s);
}

void pg_op_reset(struct pg_op *op)
{
	for (int i = 0; i < PG_MAX_STMTS; i++) {
		stmt_free(&op->stmts[i]);
		if (op->res[i])
			PQclear(op->res[i]);
		op->res[i] = NULL;
	}
	op->nstmts = 0;
}

struct cancel_job { PGcancel *cancel; };

static void cancel_work(void *arg)
{
	struct cancel_job *j = arg;
	char err[256];
	(void)PQcancel(j->cancel, err, sizeof err);
}

static void cancel_free(void *arg)
{
	struct cancel_job *j = arg;
	PQfreeCancel(j->cancel);
	free(j);
}

/* Sends a cancel request for whatever c runs, from a worker thread; NULL if none could start. */
static struct offload *cancel_start(PGconn *c)
{
	PGcancel *pc = PQgetCancel(c);
	if (!pc)
		return NULL;
	struct cancel_job *j = malloc(sizeof *j);
	if (!j)
		abort();
	j->cancel = pc;
	struct offload *o = tasks_offload_awaited(cancel_work, j, cancel_free);
	if (!o)
		cancel_free(j);
	return o;
}

/* Closes the op's connection (cancelling what runs on it first if asked); a handle's connection
 * is marked broken with `why`. Returns the cancel job, if one was started. */
static struct offload *close_conn(struct pg_op *op, bool cancel, const char *why)
{
	PGconn *c = op->conn;
	if (!c)
		return NULL;
	struct offload *job = cancel ? cancel_start(c) : NULL;
	PQfinish(c);
	if (op->own == c)
		op->own = NULL;
	if (op->h)
		handle_mark_broken(&op->h->s, c, why);
	op->conn = NULL;
	return job;
}

/* Releases everything the op holds; idempotent (__close, then __gc). An op abandoned in the
 * middle of a query (its parallel() task was stopped) cancels it and closes the connection. */
static void op_release(void *p)
{
	struct pg_op *op = p;
	if (op->released)
		return;
	op->released = true;
	if (op->phase == PH_SEND || op->phase == PH_READ || op->phase == PH_START) {
		struct offload *job = close_conn(op, op->phase != PH_START, "an interrupted call");
		if (job)
			tasks_offload_release(job);
	}
	if (op->own)
		PQfinish(op->own);
	op->own = op->conn = NULL;
	cx_free(op->cx);
	op->cx = NULL;
	pg_op_reset(op);
	if (op->cancel)
		tasks_offload_release(op->cancel);
	op->cancel = NULL;
	if (op->h)
		handle_call_ended(&op->h->s);
	op->phase = PH_DONE;
}

static bool advance(void *p);
static int run_done(lua_State *L, void *p);
static const struct tasks_machine machine = { advance, run_done, op_release };

struct pg_op *pg_op_push(lua_State *L, const char *fn, struct pg_handle *h, msec_t timeout_ms)
{
	struct pg_op *op = tasks_push_op(L, sizeof *op, &machine);
	op->fn = fn;
	op->timeout_ms = tasks_wait_start(&op->w, timeout_ms);
	op->t0 = sched_now_precise();
	op->phase = PH_IDLE;
	if (h) {
		handle_call_start(L, &h->s);
		op->h = h;
		op->conn = h->s.conn;
		snprintf(op->target, sizeof op->target, "%s", h->s.target);
	}
	return op;
}

static char *xstrdup(const char *s)
{
	char *d = strdup(s);
	if (!d)
		abort();
	return d;
}

static struct pg_stmt *new_stmt(struct pg_op *op, const char *sql)
{
	if (op->nstmts == PG_MAX_STMTS)
		abort();   /* a programming error in this module */
	struct pg_stmt *s = &op->stmts[op->nstmts++];
	s->sql = xstrdup(sql);
	return s;
}

void pg_op_stmtv(struct pg_op *op, const char *sql, int n, const char *const *params)
{
	struct pg_stmt *s = new_stmt(op, sql);
	if (n > 0) {
		s->params = calloc((size_t)n, sizeof *s->params);
		if (!s->params)
			abort();
		s->nparams = n;
		for (int i = 0; i < n; i++)
			s->params[i] = params[i] ? xstrdup(params[i]) : NULL;
	}
}

/* A Lua array of parameters as text; nil is NULL (use params.n when there are trailing nils). */
void pg_op_stmt(lua_State *L, struct pg_op *op, const char *sql, int idx)
{
	struct pg_stmt *s = new_stmt(op, sql);
	if (!idx || lua_isnoneornil(L, idx))
		return;
	if (!lua_istable(L, idx))
		luaL_error(L, "%s: params must be an array of values for $1, $2, ... (got a %s)", op->fn, luaL_typename(L, idx));
	lua_Integer n = (lua_Integer)lua_rawlen(L, idx);
	if (lua_getfield(L, idx, "n") == LUA_TNUMBER && lua_isinteger(L, -1))
		n = lua_tointeger(L, -1);
	lua_pop(L, 1);
	lua_pushnil(L);
	while (lua_next(L, idx)) {
		lua_pop(L, 1);
		bool ok = lua_isinteger(L, -1) && lua_tointeger(L, -1) >= 1 && lua_tointeger(L, -1) <= n;
		if (!ok && !(lua_type(L, -1) == LUA_TSTRING && strcmp(lua_tostring(L, -1), "n") == 0))
			luaL_error(L, "%s: params must be an array ($1, $2, ...); key '%s' does not belong there "
			           "(options go in the third argument: conn:query(sql, nil, { timeout = 5 }))",
			           op->fn, luaL_tolstring(L, -1, NULL));
	}
	if (n < 0 || n > 65535)
		luaL_error(L, "%s: %d parameters is too many", op->fn, (int)n);
	if (n == 0)
		return;
	s->params = calloc((size_t)n, sizeof *s->params);
	if (!s->params)
		abort();
	s->nparams = (int)n;
	for (int i = 1; i <= n; i++) {
		char num[64];
		const char *v = NULL;
		switch (lua_geti(L, idx, i)) {
		case LUA_TNIL:
			break;
		case LUA_TBOOLEAN:
			v = lua_toboolean(L, -1) ? "true" : "false";
			break;
		case LUA_TNUMBER:
			if (lua_isinteger(L, -1))
				snprintf(num, sizeof num, "%lld", (long long)lua_tointeger(L, -1));
			else
				snprintf(num, sizeof num, "%.17g", (double)lua_tonumber(L, -1));
			v = num;
			break;
		case LUA_TSTRING: {
			size_t len;
			v = lua_tolstring(L, -1, &len);
			if (strlen(v) != len)
				luaL_error(L, "%s: parameter $%d contains a NUL byte", op->fn, i);
			break;
		}
		default:
			luaL_error(L, "%s: parameter $%d is a %s (strings, numbers, booleans and nil only)", op->fn, i,
			           luaL_typename(L, -1));
		}
		if (v)
			s->params[i - 1] = xstrdup(v);
		lua_pop(L, 1);
	}
}

void pg_op_pipeline(struct pg_op *op, bool read_only, msec_t timeout_ms)
{
	op->read_only = read_only;
	op->phase = PH_START;
	if (timeout_ms > 0) {
		op->timeout_ms = tasks_wait_start(&op->w, timeout_ms);
		op->t0 = sched_now_precise();
	} else {
		tasks_wait_init(&op->w, op->w.deadline);
	}
}

/* ------------------------------------------------------------------------- connecting */

static int attempts_left(const struct pg_connect *cx)
{
	return (cx->rounds - cx->round - 1) * cx->nep + cx->nep - cx->cur;
}

static void endpoint_start(struct pg_op *op);

/* Why a host is given up: the next one may be tried; or the call ends, because a server answered
 * (with an error that another host would repeat), because libpq refused an option of the string
 * (as it would for every host), or because its time is over. */
enum give_up { NEXT_HOST, SERVER_ANSWERED, BAD_OPTION, TIME_IS_UP };

/* Adds "host:port: cause" to the list of hosts given up, whole or not at all. */
static void note_tried(struct pg_connect *cx, const char *cause)
{
	char name[300], entry[800];
	format_endpoint(name, sizeof name, &cx->ep[cx->cur]);
	snprintf(entry, sizeof entry, "%s%s: %s",
	         cx->rounds == 2 ? (cx->round == 0 ? "as standby, " : "as any, ") : "", name, cause);
	size_t len = strlen(cx->tried), n = strlen(entry);
	if (len + 2 + n >= sizeof cx->tried) {
		cx->untold++;
		return;
	}
	if (len) {
		memcpy(cx->tried + len, "; ", 2);
		len += 2;
	}
	memcpy(cx->tried + len, entry, n + 1);
}

/*
 * The host being tried has failed (kind, cause): the next one gets its turn, or the call fails.
 * With one host the cause is the message; with several, the message lists each one's.
 */
static void endpoint_failed(struct pg_op *op, const char *kind, const char *cause, enum give_up how)
{
	struct pg_connect *cx = op->cx;
	if (op->own) {
		PQfinish(op->own);
		op->own = op->conn = NULL;
	}
	net_lookup_cancel(&cx->lookup);
	op->phase = PH_DONE;
	if ((cx->nep == 1 && cx->rounds == 1) || how == BAD_OPTION) {
		pg_op_fail(op, kind, "%s", cause);
		return;
	}
	note_tried(cx, cause);
	int others = attempts_left(cx) - 1;
	if (how == NEXT_HOST && others > 0 && sched_now() >= cx->deadline)
		how = TIME_IS_UP;
	if (how == NEXT_HOST && others > 0) {
		if (++cx->cur == cx->nep) {
			cx->cur = 0;
			cx->round++;
		}
		endpoint_start(op);
		return;
	}
	char more[32] = "";
	if (cx->untold)
		snprintf(more, sizeof more, " (+%d more)", cx->untold);
	const char *why = others == 0 ? "" : how == SERVER_ANSWERED ? " (the server answered: the other hosts are not tried)"
	                                                            : "; no time was left for the other hosts";
	pg_op_fail(op, kind, "no server could be used: %s%s%s", cx->tried, more, why);
}

/* Kind and cause of a failed connection attempt, from libpq's message. A server's refusal
 * (made verbose, it carries its SQLSTATE: "FATAL:  28P01: password authentication failed")
 * wins over the lines libpq adds around it. */
static const char *attempt_failure(struct pg_op *op, char *line, size_t n, bool *answered)
{
	const char *msg = PQerrorMessage(op->own);
	op->sqlstate[0] = '\0';
	const char *sev = NULL;
	for (const char *p = msg; (p = strstr(p, "FATAL:  ")) != NULL; p++)
		sev = p;
	if (!sev)
		for (const char *p = msg; (p = strstr(p, "ERROR:  ")) != NULL; p++)
			sev = p;
	*answered = sev != NULL;
	if (sev) {
		const char *p = sev + 8;
		char state[6] = "";
		if (strlen(p) > 7 && p[5] == ':' && p[6] == ' ') {
			bool code = true;
			for (int i = 0; i < 5; i++)
				code &= isalnum((unsigned char)p[i]) != 0;
			if (code) {
				memcpy(state, p, 5);
				p += 7;
			}
		}
		first_line(line, n, p);
		memcpy(op->sqlstate, state, sizeof state);
		if (strcmp(state, "28P01") == 0 || strcmp(state, "28000") == 0 || strstr(line, "password authentication failed"))
			return "auth";
		return !state[0] ? "error" : op->sqlstate;
	}
	const char *p = msg, *q;
	while ((q = strstr(p, "failed: ")) != NULL)
		p = q + 8;
	first_line(line, n, p);
	int err = 0;
	const char *kind = "error";
	if (strstr(msg, "Connection refused") || strstr(msg, "No such file or directory"))
		err = ECONNREFUSED;
	else if (strstr(msg, "No route to host"))
		err = EHOSTUNREACH;
	else if (strstr(msg, "Network is unreachable"))
		err = ENETUNREACH;
	else if (strstr(msg, "Connection timed out"))
		err = ETIMEDOUT;
	else if (strstr(msg, "Connection reset"))
		err = ECONNRESET;
	if (err) {
		kind = net_errno_kind(err);
		snprintf(line, n, "%s", net_errno_cause(err));
	} else if (strstr(msg, "password") || strstr(msg, "fe_sendauth") || strstr(msg, "authentication")) {
		kind = "auth";
	} else if (strstr(msg, "server closed the connection unexpectedly")) {
		kind = "reset";
	} else if (strstr(msg, "SSL") || strstr(msg, "protocol")) {
		kind = "protocol";
	}
	return kind;
}

/* libpq's words for an option of the string it rejects before it connects anywhere (invalid
 * sslmode value: "requir", invalid integer value ..., invalid SSL protocol version range, sslmode
 * value "require" invalid when SSL support is not compiled in): every host would fail the same. */
static bool rejected_option(const char *msg)
{
	return strncmp(msg, "invalid ", 8) == 0 || strstr(msg, " invalid when ") != NULL;
}

/* A refused or unreachable address hands over to the server's next address; any other failure
 * to the next server. at_start: libpq gave up before it connected anywhere, which may be an
 * option it rejected. */
static void connect_failed(struct pg_op *op, bool at_start)
{
	struct pg_connect *cx = op->cx;
	char line[400];
	bool answered;
	const char *kind = attempt_failure(op, line, sizeof line, &answered);
	if (at_start && !answered && rejected_option(PQerrorMessage(op->own))) {
		endpoint_failed(op, "error", line, BAD_OPTION);
		return;
	}
	bool next_address = (strcmp(kind, "refused") == 0 || strcmp(kind, "unreachable") == 0)
	                    && needs_lookup(&cx->ep[cx->cur]) && cx->next_addr < cx->lookup.addrs.n;
	if (next_address) {
		PQfinish(op->own);
		op->own = op->conn = NULL;
		op->phase = PH_CONNECT_START;
		return;
	}
	bool starting_up = strcmp(op->sqlstate, "57P03") == 0;   /* the next host may be up already */
	char note[96];
	net_silent_note(note, sizeof note, cx->silent);
	size_t len = strlen(line);
	snprintf(line + len, sizeof line - len, "%s", note);
	endpoint_failed(op, kind, line, answered && !starting_up ? SERVER_ANSWERED : NEXT_HOST);
}

static void lookup_done(struct pg_op *op)
{
	struct pg_connect *cx = op->cx;
	if (cx->lookup.gai_err) {
		char cause[400];
		snprintf(cause, sizeof cause, "cannot resolve %s: %s", cx->ep[cx->cur].host, gai_strerror(cx->lookup.gai_err));
		endpoint_failed(op, "dns", cause, NEXT_HOST);
		return;
	}
	op->phase = PH_CONNECT_START;
}

/* Server cx->cur's turn: its share of the time left, and its name looked up if it has one. */
static void endpoint_start(struct pg_op *op)
{
	struct pg_connect *cx = op->cx;
	bool first = cx->cur == 0 && cx->round == 0;   /* from the call's start: the first share is exact */
	msec_t now = first ? cx->deadline - op->timeout_ms : sched_now();
	cx->attempt_start = now;
	cx->attempt_deadline = cx->turn_end = net_share_end(now, cx->deadline, attempts_left(cx));
	cx->next_addr = cx->silent = 0;
	const struct pg_endpoint *ep = &cx->ep[cx->cur];
	if (ep->bad_port) {
		char cause[80];
		snprintf(cause, sizeof cause, "invalid port number: \"%s\"", ep->port);
		endpoint_failed(op, "error", cause, NEXT_HOST);
		return;
	}
	if (!needs_lookup(ep)) {
		op->phase = PH_CONNECT_START;
		return;
	}
	op->phase = PH_LOOKUP;
	if (!net_lookup_start(&cx->lookup, ep->host, port_of(ep))) {
		pg_op_fail(op, "error", "cannot start the name lookup (out of threads or file descriptors)");
		op->phase = PH_DONE;
	} else if (net_lookup_poll(&cx->lookup)) {   /* a numeric address: no wait */
		lookup_done(op);
	}
}

static void connect_attempt(struct pg_op *op)
{
	struct pg_connect *cx = op->cx;
	const struct pg_endpoint *ep = &cx->ep[cx->cur];
	char ip[INET6_ADDRSTRLEN] = "";
	if (needs_lookup(ep)) {   /* an address of a name: a share of the server's time */
		int i = cx->next_addr++;
		net_address_string(&cx->lookup.addrs.addr[i], ip, sizeof ip);
		cx->turn_end = net_share_end(sched_now(), cx->attempt_deadline, cx->lookup.addrs.n - i);
	}
	cx_set(cx, "host", ep->host);
	cx_set(cx, "hostaddr", ip[0] ? ip : ep->hostaddr);
	cx_set(cx, "port", ep->port);
	if (cx->rounds == 2)
		cx_set(cx, "target_session_attrs", cx->round == 0 ? "standby" : "any");
	op->own = op->conn = PQconnectStartParams((const char *const *)cx->keys, (const char *const *)cx->vals, 0);
	if (!op->own) {
		pg_op_fail(op, "error", "out of memory");
		op->phase = PH_DONE;
		return;
	}
	PQsetNoticeReceiver(op->own, ignore_notice, NULL);
	PQsetErrorVerbosity(op->own, PQERRORS_VERBOSE);
	op->phase = PH_CONNECT;
	op->want = POLLOUT;
	if (PQstatus(op->own) == CONNECTION_BAD || PQsocket(op->own) < 0) {
		connect_failed(op, true);
		if (op->phase == PH_CONNECT_START)
			connect_attempt(op);
	}
}

static void connected(struct pg_op *op)
{
	struct pg_connect *cx = op->cx;
	if (cx->nep > 1)
		format_target(op->target, sizeof op->target, cx, cx->cur, 1);
	op->connect_ms = pg_elapsed(op);
	PQsetErrorVerbosity(op->own, PQERRORS_DEFAULT);
	PQsetnonblocking(op->own, 1);
	redact_add_secret(PQpass(op->own));   /* it may come from ~/.pgpass or PGPASSWORD */
	op->phase = op->nstmts ? PH_START : PH_DONE;
}

static void connect_poll(struct pg_op *op)
{
	PostgresPollingStatusType ps = PQconnectPoll(op->own);
	switch (ps) {
	case PGRES_POLLING_OK:
		connected(op);
		return;
	case PGRES_POLLING_FAILED:
		connect_failed(op, false);
		if (op->phase == PH_CONNECT_START)
			connect_attempt(op);
		return;
	case PGRES_POLLING_READING:
		op->want = POLLIN;
		break;
	default:
		op->want = POLLOUT;
		break;
	}
	if (PQsocket(op->own) < 0) {
		connect_failed(op, false);
		if (op->phase == PH_CONNECT_START)
			connect_attempt(op);
	}
}

/* ------------------------------------------------------------------------- the pipeline */

static void lost(struct pg_op *op, const char *what)
{
	char line[300];
	first_line(line, sizeof line, op->conn ? PQerrorMessage(op->conn) : "");
	pg_op_fail(op, "reset", "%s: %s", what, line[0] ? line : "the connection was lost");
	close_conn(op, false, "a lost connection");
	op->phase = PH_DONE;
}

static void result_error(struct pg_op *op, const PGresult *r, int i)
{
	const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
	const char *primary = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
	char line[400];
	first_line(line, sizeof line, primary ? primary : PQresultErrorMessage(r));
	const char *severity = PQresultErrorField(r, PG_DIAG_SEVERITY_NONLOCALIZED);
	bool fatal = severity && (strcmp(severity, "FATAL") == 0 || strcmp(severity, "PANIC") == 0);
	if (state && strlen(state) == 5) {
		memcpy(op->sqlstate, state, 6);
		pg_op_fail(op, op->sqlstate, i < 0 && !fatal ? "cannot start a read-only transaction: %s" : "%s", line);
	} else {
		pg_op_fail(op, "error", "%s", line);
	}
}

static void pipeline_start(struct pg_op *op)
{
	PGconn *c = op->conn;
	op->results_seen = op->syncs_seen = 0;
	op->syncs_expected = op->read_only ? 2 : 1;
	if (!c) {
		pg_op_fail(op, "closed", "the connection is closed");
		op->phase = PH_DONE;
		return;
	}
	if (op->read_only && PQtransactionStatus(c) != PQTRANS_IDLE) {
		pg_op_fail(op, "error", "the connection is inside a transaction (opened with conn:exec); a probe runs only "
		           "outside one: end it with conn:exec(\"ROLLBACK\") or \"COMMIT\"");
		op->phase = PH_DONE;
		return;
	}
	bool ok = PQenterPipelineMode(c);
	if (ok && op->read_only)
		ok = PQsendQueryParams(c, "BEGIN READ ONLY", 0, NULL, NULL, NULL, NULL, 0);
	for (int i = 0; ok && i < op->nstmts; i++) {
		const struct pg_stmt *s = &op->stmts[i];
		ok = PQsendQueryParams(c, s->sql, s->nparams, NULL, (const char *const *)s->params, NULL, NULL, 0);
	}
	if (ok)
		ok = PQpipelineSync(c);
	if (ok && op->read_only)
		ok = PQsendQueryParams(c, "ROLLBACK", 0, NULL, NULL, NULL, NULL, 0) && PQpipelineSync(c);
	if (!ok) {
		lost(op, "cannot send the query");
		return;
	}
	int r = PQflush(c);
	if (r < 0) {
		lost(op, "cannot send the query");
		return;
	}
	op->phase = r == 0 ? PH_READ : PH_SEND;
	op->want = r == 0 ? POLLIN : POLLIN | POLLOUT;
}

/* The pipeline has ended: back to normal mode, and the connection must be idle again. */
static void pipeline_end(struct pg_op *op)
{
	PGconn *c = op->conn;
	op->phase = PH_DONE;
	if (!PQexitPipelineMode(c)) {
		pg_op_fail(op, "protocol", "the connection is in an unexpected state");
		close_conn(op, false, "an unexpected protocol state");
	} else if (op->read_only && PQtransactionStatus(c) != PQTRANS_IDLE) {
		close_conn(op, false, "a statement that left a transaction open");
	}
}

/* Takes every result that is complete; true once the pipeline's last Sync has come. */
static bool drain(struct pg_op *op)
{
	PGconn *c = op->conn;
	int nulls = 0;
	while (!PQisBusy(c)) {
		PGresult *r = PQgetResult(c);
		if (!r) {
			if (op->syncs_seen >= op->syncs_expected || ++nulls > 1)
				return op->syncs_seen >= op->syncs_expected;
			continue;
		}
		nulls = 0;
		ExecStatusType st = PQresultStatus(r);
		if (st == PGRES_PIPELINE_SYNC) {
			PQclear(r);
			if (++op->syncs_seen >= op->syncs_expected)
				return true;
			continue;
		}
		int i = op->results_seen++ - (op->read_only ? 1 : 0);
		if (st == PGRES_FATAL_ERROR || st == PGRES_BAD_RESPONSE || st == PGRES_NONFATAL_ERROR) {
			if (i < op->nstmts)
				result_error(op, r, i);
		} else if (st == PGRES_COPY_IN || st == PGRES_COPY_OUT || st == PGRES_COPY_BOTH) {
			PQclear(r);
			pg_op_fail(op, "protocol", "COPY is not supported here");
			close_conn(op, false, "a COPY statement");
			op->phase = PH_DONE;
			return false;
		}
		if (i >= 0 && i < op->nstmts && !op->res[i])
			op->res[i] = r;
		else
			PQclear(r);
	}
	return false;
}

static void io(struct pg_op *op)
{
	PGconn *c = op->conn;
	short revents = op->w.nfds ? op->w.fds[0].revents : 0;
	if ((revents & (POLLIN | POLLERR | POLLHUP)) && !PQconsumeInput(c)) {
		lost(op, "the connection was lost");
		return;
	}
	if (op->phase == PH_SEND) {
		int r = PQflush(c);
		if (r < 0) {
			lost(op, "cannot send the query");
			return;
		}
		if (r == 0) {
			op->phase = PH_READ;
			op->want = POLLIN;
		}
	}
	if (drain(op))
		pipeline_end(op);
}

static bool connecting(const struct pg_op *op)
{
	return op->phase == PH_LOOKUP || op->phase == PH_CONNECT_START || op->phase == PH_CONNECT;
}

/* The share of the time the server being tried had. */
static msec_t attempt_ms(const struct pg_op *op)
{
	return op->cx->attempt_deadline - op->cx->attempt_start;
}

static void connect_timeout_cause(const struct pg_op *op, char *out, size_t n, msec_t ms)
{
	char tried[32];
	net_tried_note(tried, sizeof tried, needs_lookup(&op->cx->ep[op->cx->cur]) ? op->cx->next_addr : 1);
	if (op->phase == PH_LOOKUP)
		snprintf(out, n, "timed out after %lld ms resolving %s", (long long)ms, op->cx->ep[op->cx->cur].host);
	else if (op->own && PQstatus(op->own) == CONNECTION_STARTED)
		snprintf(out, n, "timed out after %lld ms connecting (no answer: a firewall dropping packets, "
		         "or a listener that does not accept%s)", (long long)ms, tried);
	else
		snprintf(out, n, "timed out after %lld ms waiting for the server to let us in (connected, but it "
		         "does not answer: hung or overloaded)", (long long)ms);
}

/* The call's deadline. While one of several servers is being tried, the waiter wakes earlier,
 * at the end of that server's share. */
static msec_t call_deadline(const struct pg_op *op)
{
	return op->cx ? op->cx->deadline : op->w.deadline;
}

/* Whether an address of the server's name is in its TCP handshake, with another one waiting. An
 * address's share covers that only: one that has answered keeps the server's time for the rest. */
static bool address_in_turn(const struct pg_op *op)
{
	const struct pg_connect *cx = op->cx;
	return op->phase == PH_CONNECT && needs_lookup(&cx->ep[cx->cur]) && cx->next_addr < cx->lookup.addrs.n
	       && op->own && PQstatus(op->own) == CONNECTION_STARTED;
}

static msec_t wake_at(const struct pg_op *op)
{
	msec_t d = call_deadline(op);
	if (!op->cx || !connecting(op))
		return d;
	msec_t turn = address_in_turn(op) ? op->cx->turn_end : op->cx->attempt_deadline;
	return turn < d ? turn : d;
}

/* The address being tried has had its share of the server's time, and another one is waiting. */
static bool address_share_over(const struct pg_op *op)
{
	msec_t now = sched_now();
	return address_in_turn(op) && now >= op->cx->turn_end && now < op->cx->attempt_deadline;
}

/* The server being tried has had its share of the time, and another one is waiting. */
static void attempt_timed_out(struct pg_op *op)
{
	char cause[400];
	connect_timeout_cause(op, cause, sizeof cause, attempt_ms(op));
	endpoint_failed(op, "timeout", cause, NEXT_HOST);
	if (op->phase == PH_CONNECT_START)
		connect_attempt(op);
}

/* The call ends early: "timeout" (the deadline passed) or "interrupted" (Ctrl-C). */
static void stop(struct pg_op *op, const char *why)
{
	bool intr = strcmp(why, "interrupted") == 0;
	char cause[400];
	switch (op->phase) {
	case PH_LOOKUP:
	case PH_CONNECT:
	case PH_CONNECT_START:
		if (intr) {
			struct pg_connect *cx = op->cx;
			bool several = cx->nep > 1 || cx->rounds > 1;
			char name[300] = "";
			if (several)
				format_endpoint(name, sizeof name, &cx->ep[cx->cur]);
			if (op->phase == PH_LOOKUP)
				snprintf(cause, sizeof cause, "interrupted while resolving %s", cx->ep[cx->cur].host);
			else
				snprintf(cause, sizeof cause, "interrupted while connecting%s%s", several ? " to " : "", name);
			pg_op_fail(op, why, cx->tried[0] ? "%s (before: %s)" : "%s", cause, cx->tried);
			break;
		}
		connect_timeout_cause(op, cause, sizeof cause, op->cx->nep > 1 || op->cx->rounds > 1
		                      ? attempt_ms(op) : op->timeout_ms);
		endpoint_failed(op, why, cause, TIME_IS_UP);
		return;
	case PH_START:
	case PH_SEND:
	case PH_READ:
		if (intr)
			pg_op_fail(op, why, "interrupted (the query was cancelled and the connection closed)");
		else
			pg_op_fail(op, why, "timed out after %lld ms (the query was cancelled and the connection closed)",
			           (long long)op->timeout_ms);
		op->cancel = close_conn(op, op->phase != PH_START, intr ? "an interrupted query" : "a timeout");
		if (op->cancel && !intr) {
			op->phase = PH_CANCEL;
			tasks_wait_init(&op->w, sched_now() + CANCEL_GRACE_MS);
			tasks_want(&op->w, tasks_offload_fd(op->cancel), POLLIN);
			return;
		}
		break;
	default:
		pg_op_fail(op, why, "%s", why);
		break;
	}
	op->phase = PH_DONE;
}

/* One step after a wait; true when the op (or its current pipeline) is over. */
static bool advance(void *p)
{
	struct pg_op *op = p;
	if (op->phase == PH_CANCEL) {
		op->phase = PH_DONE;
		return true;
	}
	if (op->phase == PH_DONE)
		return true;
	if (op->w.result == SCHED_INTERRUPTED) {
		stop(op, "interrupted");
		return op->phase == PH_DONE;
	}
	bool ready = tasks_ready(&op->w);
	if (op->phase == PH_LOOKUP && net_lookup_poll(&op->cx->lookup))
		lookup_done(op);
	if (op->phase == PH_CONNECT_START)
		connect_attempt(op);
	else if (op->phase == PH_CONNECT && ready)
		connect_poll(op);
	if (op->cx && address_share_over(op)) {
		PQfinish(op->own);
		op->own = op->conn = NULL;
		op->cx->silent++;
		connect_attempt(op);
	}
	if (op->cx && connecting(op) && attempts_left(op->cx) > 1 && sched_now() >= op->cx->attempt_deadline)
		attempt_timed_out(op);
	if (op->phase == PH_START)
		pipeline_start(op);
	else if ((op->phase == PH_SEND || op->phase == PH_READ) && ready)
		io(op);
	if (op->phase == PH_DONE)
		return true;
	if (sched_now() >= call_deadline(op)) {
		stop(op, "timeout");
		return op->phase == PH_DONE;
	}
	tasks_wait_init(&op->w, wake_at(op));
	if (op->phase == PH_LOOKUP)
		net_lookup_want(&op->cx->lookup, &op->w);
	else
		tasks_want(&op->w, PQsocket(op->conn), op->want);
	return false;
}

static int run_done(lua_State *L, void *p)
{
	struct pg_op *op = p;
	return op->done(L, op);
}

int pg_op_run(lua_State *L, struct pg_op *op, pg_done_fn done)
{
	op->done = done;
	if (op->kind)
		op->phase = PH_DONE;   /* failed before it started: straight to done */
	op->task = (struct tasks_op){ .machine = &machine, .op = op, .w = &op->w };
	return tasks_run_op(L, &op->task);
}

/* -------------------------------------------------------------------------- results */

void pg_push_value(lua_State *L, const PGresult *r, int row, int col)
{
	if (PQgetisnull(r, row, col)) {
		lua_pushnil(L);
		return;
	}
	const char *v = PQgetvalue(r, row, col);
	char *end;
	switch (PQftype(r, col)) {
	case PG_INT2OID:
	case PG_INT4OID:
	case PG_INT8OID:
	case PG_OIDOID: {
		errno = 0;
		long long x = strtoll(v, &end, 10);
		if (errno == 0 && end != v && *end == 0) {
			lua_pushinteger(L, (lua_Integer)x);
			return;
		}
		break;
	}
	case PG_FLOAT4OID:
	case PG_FLOAT8OID:
	case PG_NUMERICOID: {
		double d = strtod(v, &end);
		if (end != v && *end == 0) {
			lua_pushnumber(L, d);
			return;
		}
		break;
	}
	case PG_BOOLOID:
		lua_pushboolean(L, v[0] == 't');
		return;
	default:
		break;
	}
	lua_pushlstring(L, v, (size_t)PQgetlength(r, row, col));
}

void pg_push_rows(lua_State *L, const PGresult *r, double ms)
{
	int nrows = PQntuples(r), ncols = PQnfields(r);
	lua_createtable(L, nrows, 3);
	for (int i = 0; i < nrows; i++) {
		lua_createtable(L, 0, ncols);
		for (int j = 0; j < ncols; j++) {
			if (PQgetisnull(r, i, j))
				continue;
			pg_push_value(L, r, i, j);
			lua_setfield(L, -2, PQfname(r, j));
		}
		lua_rawseti(L, -2, i + 1);
	}
	lua_createtable(L, ncols, 0);
	for (int j = 0; j < ncols; j++) {
		lua_pushstring(L, PQfname(r, j));
		lua_rawseti(L, -2, j + 1);
	}
	lua_setfield(L, -2, "columns");
	luax_setint(L, "rows", nrows);
	luax_setnum(L, "ms", ms);
}

const char *pg_text(const PGresult *r, int row, const char *col)
{
	int j = PQfnumber(r, col);
	if (j < 0 || row >= PQntuples(r) || PQgetisnull(r, row, j))
		return NULL;
	return PQgetvalue(r, row, j);
}

lua_Integer pg_int(const PGresult *r, int row, const char *col)
{
	const char *v = pg_text(r, row, col);
	return v ? (lua_Integer)strtoll(v, NULL, 10) : 0;
}

bool pg_bool(const PGresult *r, int row, const char *col)
{
	const char *v = pg_text(r, row, col);
	return v && v[0] == 't';
}

void pg_audit(struct pg_op *op, const char *summary)
{
	luax_audit_probe(op->fn, op->target, op->timeout_ms, pg_elapsed(op), op->kind ? op->kind : "ok",
	                 summary ? summary : op->cause);
}

int pg_fail_push(lua_State *L, struct pg_op *op)
{
	if (!op->target[0])
		return luax_fail(L, op->kind ? op->kind : "error", "%s: %s", op->fn, op->cause);
	return luax_fail(L, op->kind ? op->kind : "error", "%s %s: %s", op->fn, op->target, op->cause);
}

int pg_probe_failed(lua_State *L, struct pg_op *op)
{
	if (!op->kind)
		return 0;
	pg_audit(op, NULL);
	return pg_fail_push(L, op);
}

/* ---------------------------------------------------------------------------- the gate */

int pg_gate(lua_State *L, struct pg_op *op, const struct gate_plan *plan, const char *sql)
{
	enum gate_answer a = gate_ask(plan);
	if (a == GATE_DRY_RUN) {
		lua_createtable(L, 0, 3);
		luax_setbool(L, "dry_run", true);
		luax_setstr(L, "sql", sql);
		luax_setstr(L, "target", op->target);
		return 1;
	}
	if (a == GATE_REFUSED)
		return luax_fail(L, "refused", "%s %s: not run: the transcript cannot be written", op->fn, op->target);
	if (a != GATE_RUN) {
		char msg[PG_TARGET_MAX + 100];
		snprintf(msg, sizeof msg, "%s %s: declined by the operator", op->fn, op->target);
		return host_raise_control(L, a == GATE_ABORT ? "abort" : "skip", msg);
	}
	gate_action_start(op->fn, op->target);
	op->action_t0 = sched_now_precise();
	return 0;
}

void pg_action_result(struct pg_op *op, const char *summary)
{
	gate_action_result(op->fn, op->target, op->kind ? op->kind : "ok", sched_now_precise() - op->action_t0,
	                   summary ? summary : op->cause);
}

/* ------------------------------------------------------------------ pg.connect, pg.ping */

static const char *const connect_options[] = { "timeout", "application_name", "password", NULL };

static struct pg_op *start_connect(lua_State *L, const char *fn)
{
	const char *conninfo = luaL_checkstring(L, 1);
	luax_check_options(L, 2, fn, connect_options);
	msec_t timeout = luax_opt_duration(L, 2, "timeout", DEFAULT_CONNECT_TIMEOUT_MS, fn);
	const char *app = luax_opt_string(L, 2, "application_name", NULL, fn);
	const char *password = luax_opt_string(L, 2, "password", NULL, fn);
	lua_settop(L, 2);
	struct pg_op *op = pg_op_push(L, fn, NULL, timeout);
	if (cx_parse(op, conninfo, app, password))
		endpoint_start(op);
	return op;
}

static int connect_done(lua_State *L, struct pg_op *op)
{
	int n = pg_probe_failed(L, op);
	if (n)
		return n;
	handle_push(L, &conn_type, sizeof(struct pg_handle), 1, op->own, op->target);   /* 1: pg_readonly.c's cache */
	const char *v = PQparameterStatus(op->own, "server_version");
	op->own = op->conn = NULL;
	char summary[200];
	snprintf(summary, sizeof summary, "connected in %.1f ms (PostgreSQL %s)", op->connect_ms, v ? v : "?");
	pg_audit(op, summary);
	return 1;
}

static int pg_connect(lua_State *L)
{
	struct pg_op *op = start_connect(L, "pg.connect");
	return pg_op_run(L, op, connect_done);
}

static int ping_done(lua_State *L, struct pg_op *op)
{
	int n = pg_probe_failed(L, op);
	if (n)
		return n;
	char summary[200];
	const char *v = PQparameterStatus(op->own, "server_version");
	bool recovery = pg_bool(op->res[0], 0, "in_recovery");
	snprintf(summary, sizeof summary, "PostgreSQL %s%s, connected in %.1f ms", v ? v : "?",
	         recovery ? " (replica)" : "", op->connect_ms);
	pg_audit(op, summary);
	lua_createtable(L, 0, 6);
	luax_setbool(L, "ok", true);
	luax_setstr(L, "version", v ? v : "");
	luax_setint(L, "version_num", PQserverVersion(op->own));
	luax_setnum(L, "connect_ms", op->connect_ms);
	luax_setbool(L, "in_recovery", recovery);
	luax_setnum(L, "ms", pg_elapsed(op));
	return 1;
}

static int pg_ping(lua_State *L)
{
	struct pg_op *op = start_connect(L, "pg.ping");
	if (!op->kind) {
		pg_op_stmtv(op, "SELECT pg_is_in_recovery() AS in_recovery", 0, NULL);
		op->read_only = false;
	}
	return pg_op_run(L, op, ping_done);
}

/* ---------------------------------------------------------------------- the handle */

struct pg_handle *pg_check_handle(lua_State *L, int idx, const char *fn)
{
	return handle_check_open(L, idx, &conn_type, fn);
}

int pg_handle_unusable(lua_State *L, struct pg_handle *h, const char *fn)
{
	return handle_unusable(L, &h->s, fn);
}

static const char *const query_options[] = { "timeout", NULL };
static const char *const exec_options[] = { "timeout", "summary", "target", "irreversible", NULL };

static int query_done(lua_State *L, struct pg_op *op)
{
	int again = pg_readonly_stage(L, op);   /* the SQL's check by the catalogue comes first */
	if (again)
		return again;
	char summary[800], line[160];
	first_line(line, sizeof line, op->stmts[0].sql ? op->stmts[0].sql : "");
	if (op->kind) {
		snprintf(summary, sizeof summary, "%.600s (%s)", op->cause, line);
		pg_audit(op, summary);
		return pg_fail_push(L, op);
	}
	snprintf(summary, sizeof summary, "%d rows: %s", PQntuples(op->res[0]), line);
	pg_audit(op, summary);
	pg_push_rows(L, op->res[0], pg_elapsed(op));
	return 1;
}

/* The op of conn:query or conn:exec, for sql with the params at index 3 (the options at 4 are read
 * before): NULL after pushing nil, err, "closed" for a broken handle (the caller returns 3). */
static struct pg_op *statement_op(lua_State *L, const char *fn, struct pg_handle *h, const char *sql, msec_t timeout)
{
	lua_settop(L, 4);
	if (pg_handle_unusable(L, h, fn))
		return NULL;
	struct pg_op *op = pg_op_push(L, fn, h, timeout);
	pg_op_stmt(L, op, sql, 3);
	return op;
}

static int conn_query(lua_State *L)
{
	struct pg_handle *h = pg_check_handle(L, 1, "pg.query");
	const char *sql = luaL_checkstring(L, 2);
	luax_check_options(L, 4, "pg.query", query_options);
	msec_t timeout = luax_opt_duration(L, 4, "timeout", PG_DEFAULT_QUERY_TIMEOUT_MS, "pg.query");
	struct pg_op *op = statement_op(L, "pg.query", h, sql, timeout);
	if (!op)
		return 3;
	pg_readonly_start(L, op);   /* refuses it, or queues the look-ups its check needs, then the statement */
	return pg_op_run(L, op, query_done);
}

static int exec_done(lua_State *L, struct pg_op *op)
{
	char summary[300];
	if (op->kind) {
		pg_action_result(op, NULL);
		return pg_fail_push(L, op);
	}
	const PGresult *r = op->res[0];
	const char *affected = PQcmdTuples((PGresult *)r);
	snprintf(summary, sizeof summary, "%s", PQcmdStatus((PGresult *)r));
	pg_action_result(op, summary);
	pg_push_rows(L, r, sched_now_precise() - op->action_t0);
	luax_setstr(L, "command", PQcmdStatus((PGresult *)r));
	if (affected && *affected)
		luax_setint(L, "affected", (lua_Integer)strtoll(affected, NULL, 10));
	return 1;
}

/* The SQL as the gate shows it, with its parameters: "$1 = 'x'" (redacted on the way out). */
static char *describe_sql(const struct pg_stmt *s)
{
	size_t cap = strlen(s->sql) + 64;
	for (int i = 0; i < s->nparams; i++)
		cap += 16 + (s->params[i] ? strlen(s->params[i]) : 4);
	char *out = malloc(cap), *p = out;
	if (!out)
		abort();
	p += sprintf(p, "%s", s->sql);
	for (int i = 0; i < s->nparams; i++)
		p += s->params[i] ? sprintf(p, "%s$%d = '%s'", i ? ", " : "\nwith ", i + 1, s->params[i])
		                  : sprintf(p, "%s$%d = NULL", i ? ", " : "\nwith ", i + 1);
	return out;
}

static int conn_exec(lua_State *L)
{
	struct pg_handle *h = pg_check_handle(L, 1, "pg.exec");
	const char *sql = luaL_checkstring(L, 2);
	luax_check_options(L, 4, "pg.exec", exec_options);
	msec_t timeout = luax_opt_duration(L, 4, "timeout", DEFAULT_EXEC_TIMEOUT_MS, "pg.exec");
	const char *summary = luax_opt_string(L, 4, "summary", NULL, "pg.exec");
	const char *target = luax_opt_string(L, 4, "target", NULL, "pg.exec");
	bool irreversible = luax_opt_bool(L, 4, "irreversible", false, "pg.exec");
	pg_readonly_forget(L, 1);   /* it may change what a function name means */
	struct pg_op *op = statement_op(L, "pg.exec", h, sql, timeout);
	if (!op)
		return 3;
	char *detail = describe_sql(&op->stmts[0]);
	char shown[PG_TARGET_MAX + 40];
	snprintf(shown, sizeof shown, "run SQL on %s", h->s.target);
	struct gate_plan plan = {
		.primitive = "pg.exec",
		.summary = summary ? summary : shown,
		.detail = detail,
		.target = target ? target : h->s.target,
		.irreversible = irreversible,
	};
	lua_pushstring(L, detail);   /* the C copy is freed now; the gate may raise */
	free(detail);
	plan.detail = lua_tostring(L, -1);
	int n = pg_gate(L, op, &plan, sql);
	if (n)
		return n;
	lua_pop(L, 1);
	pg_op_pipeline(op, false, timeout);
	return pg_op_run(L, op, exec_done);
}

static int conn_close(lua_State *L) { return handle_close(L, &conn_type); }
static int conn_gc(lua_State *L) { return handle_gc(L, &conn_type); }
static int conn_tostring(lua_State *L) { return handle_tostring(L, &conn_type); }

int luaopen_pg(lua_State *L)
{
	static const luaL_Reg fns[] = { { "connect", pg_connect }, { "ping", pg_ping }, { NULL, NULL } };
	static const luaL_Reg methods[] = {
		{ "query", conn_query }, { "exec", conn_exec }, { "close", conn_close }, { NULL, NULL },
	};
	static const luaL_Reg conn_meta[] = {
		{ "__gc", conn_gc }, { "__close", conn_close }, { "__tostring", conn_tostring }, { NULL, NULL },
	};
	luax_class(L, CONN_MT, conn_meta, methods, pg_probes_register);
	luaL_newlib(L, fns);
	return 1;
}
