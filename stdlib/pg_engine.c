/*
 * pg_engine.c - the state machine that drives a pg op: connecting (each host in turn, its share of
 * the time, the name lookup), sending the pipeline of statements and reading its results, and the
 * deadlines and Ctrl-C (cancel request, connection closed). pg_op_run is its entry.
 */
#include "pg_conn.h"

/* ------------------------------------------------------------------------- connecting */

static int attempts_left(const struct pg_connect *cx)
{
	return (cx->rounds - cx->round - 1) * cx->nep + cx->nep - cx->cur;
}

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
void endpoint_start(struct pg_op *op)
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

const struct tasks_machine pg_op_machine = { advance, run_done, op_release };

int pg_op_run(lua_State *L, struct pg_op *op, pg_done_fn done)
{
	op->done = done;
	if (op->kind)
		op->phase = PH_DONE;   /* failed before it started: straight to done */
	op->task = (struct tasks_op){ .machine = &pg_op_machine, .op = op, .w = &op->w };
	return tasks_run_op(L, &op->task);
}
