/*
 * pg_conninfo.c - the connection parameters of pg.connect and pg.ping: the URL or key=value string
 * parsed by libpq, a service applied, the password kept out of sight, the hosts and ports as a list
 * of endpoints to try in turn, and the files and user libpq would look for in $HOME.
 */
#include "pg_conn.h"

/* --------------------------------------------------------------- connection parameters */

static const char *cx_get(const struct pg_connect *cx, const char *key)
{
	for (int i = 0; i < cx->n; i++)
		if (strcmp(cx->keys[i], key) == 0)
			return cx->vals[i];
	return NULL;
}

int cx_set(struct pg_connect *cx, const char *key, const char *val)
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

void cx_free(struct pg_connect *cx)
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
const char *port_of(const struct pg_endpoint *ep)
{
	return ep->port[0] ? ep->port : "5432";
}

/* "host:port", "[v6]:port" or "/socket/dir:port": how messages name one server. */
void format_endpoint(char *out, size_t n, const struct pg_endpoint *ep)
{
	const char *shown = ep->host[0] ? ep->host : ep->hostaddr[0] ? ep->hostaddr : "/var/run/postgresql";
	snprintf(out, n, strchr(shown, ':') && shown[0] != '/' ? "[%s]:%s" : "%s:%s", shown, port_of(ep));
}

/* "h1:5432,h2:5432/db": the servers this call may use, or the one it connected to. */
void format_target(char *out, size_t n, const struct pg_connect *cx, int first, int count)
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
bool needs_lookup(const struct pg_endpoint *ep)
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
bool cx_parse(struct pg_op *op, const char *conninfo, const char *app, const char *password)
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
