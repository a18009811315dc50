/*
 * redis_engine.c - the state machine that drives a redis op: connecting (the name lookup, each address
 * in turn), writing the batch of queued commands and reading its replies on the context's fd, and the
 * deadline and Ctrl-C (the context discarded). redis_op_run is its entry.
 */
#include "redis_conn.h"

/* ------------------------------------------------------------------------- connecting */

static void connect_failed(struct redis_op *op, int err, const char *errstr)
{
	if (!err && errstr)
		err = errno_of(errstr);
	if (err == ENOENT)
		err = ECONNREFUSED;   /* no socket file: nothing listens there */
	if (op->c) {
		redisFree(op->c);
		op->own = op->c = NULL;
	}
	bool retry = err && (err == ECONNREFUSED || err == EHOSTUNREACH || err == ENETUNREACH || err == EADDRNOTAVAIL);
	if (retry && op->next_addr < op->lookup.addrs.n) {
		op->phase = PH_CONNECT_START;
		return;
	}
	char note[96];
	net_silent_note(note, sizeof note, op->silent);
	if (err)
		redis_op_fail(op, net_errno_kind(err), "%s%s", net_errno_cause(err), note);
	else
		redis_op_fail(op, "error", "cannot connect: %s%s", errstr ? errstr : "unknown error", note);
	op->phase = PH_DONE;
}

/* A context whose connect is under way (or failed at once). */
static void connect_started(struct redis_op *op, redisContext *c)
{
	if (!c) {
		redis_op_fail(op, "error", "out of memory");
		op->phase = PH_DONE;
		return;
	}
	op->own = op->c = c;
	if (c->err || c->fd < 0) {
		char errstr[sizeof c->errstr + 1];
		snprintf(errstr, sizeof errstr, "%s", c->errstr);
		connect_failed(op, 0, errstr);
		return;
	}
	op->phase = PH_CONNECT;
}

static void connect_attempt(struct redis_op *op)
{
	if (op->unix_socket) {
		connect_started(op, redisConnectUnixNonBlock(op->host));
		return;
	}
	int i = op->next_addr++;
	char ip[INET6_ADDRSTRLEN];
	net_address_string(&op->lookup.addrs.addr[i], ip, sizeof ip);
	op->turn_end = net_share_end(sched_now(), op->deadline, op->lookup.addrs.n - i);
	/* A numeric address: hiredis' own getaddrinfo() cannot block on it. A connect that is still in
	 * progress comes back as success (err 0, REDIS_CONNECTED); an immediate failure sets err. */
	connect_started(op, redisConnectNonBlock(ip, (int)strtol(op->port, NULL, 10)));
}

static void lookup_done(struct redis_op *op)
{
	op->looking = false;
	if (op->lookup.gai_err) {
		redis_op_fail(op, "dns", "cannot resolve %s: %s", op->host, gai_strerror(op->lookup.gai_err));
		op->phase = PH_DONE;
		return;
	}
	op->phase = PH_CONNECT_START;
}

/* POLLOUT on a connecting socket: SO_ERROR says how the handshake went. */
static void connect_poll(struct redis_op *op)
{
	int err = net_connect_result(op->c->fd);
	if (err) {
		connect_failed(op, err, NULL);
		return;
	}
	op->connect_ms = redis_elapsed(op);
	op->phase = PH_START;
}

/* ---------------------------------------------------------------------------- the batch */

/* The context failed (I/O error, end of file, protocol error): the op fails, the context goes. */
static void lost(struct redis_op *op)
{
	redisContext *c = op->c;
	const char *why = "an I/O error";
	switch (c->err) {
	case REDIS_ERR_EOF:
		redis_op_fail(op, "reset", "the server closed the connection");
		why = "the server closed it";
		break;
	case REDIS_ERR_PROTOCOL:
		redis_op_fail(op, "protocol", "protocol error (is this a Redis server?): %s", c->errstr);
		why = "a protocol error";
		break;
	case REDIS_ERR_OOM:
		redis_op_fail(op, "error", "out of memory");
		break;
	default: {
		int err = errno_of(c->errstr);
		if (err)
			redis_op_fail(op, net_errno_kind(err), "%s", net_errno_cause(err));
		else
			redis_op_fail(op, "error", "%s", c->errstr[0] ? c->errstr : "I/O error");
		break;
	}
	}
	discard(op, why);
	op->phase = PH_DONE;
}

static void batch_start(struct redis_op *op)
{
	if (!op->c) {
		redis_op_fail(op, "closed", "the connection is closed");
		op->phase = PH_DONE;
		return;
	}
	for (int i = 0; i < op->nq; i++) {
		if (redisAppendFormattedCommand(op->c, op->q[i], (size_t)op->qlen[i]) != REDIS_OK) {
			free_queue(op);
			lost(op);
			return;
		}
	}
	op->expected = op->nq;
	op->got = 0;
	free_queue(op);
	op->written = false;
	op->sent_at = sched_now_precise();
	op->phase = PH_IO;
}

/* Writes what is left, reads what came, takes every complete reply. */
static void io(struct redis_op *op)
{
	redisContext *c = op->c;
	short revents = op->w.nfds ? op->w.fds[0].revents : 0;
	if (!op->written) {
		int done = 0;
		if (redisBufferWrite(c, &done) != REDIS_OK) {
			lost(op);
			return;
		}
		op->written = done != 0;
	}
	if (revents & (POLLIN | POLLERR | POLLHUP)) {
		if (redisBufferRead(c) != REDIS_OK) {
			lost(op);
			return;
		}
	}
	while (op->got < op->expected) {
		void *r = NULL;
		if (redisGetReplyFromReader(c, &r) != REDIS_OK) {
			lost(op);
			return;
		}
		if (!r)
			break;
		op->rep[op->got++] = r;
	}
	if (op->got == op->expected)
		op->phase = PH_DONE;
}

/* The call ends early: "timeout" (its deadline passed) or "interrupted" (Ctrl-C). */
static void stop(struct redis_op *op, const char *why)
{
	bool intr = strcmp(why, "interrupted") == 0;
	long long ms = (long long)op->timeout_ms;
	char tried[32];
	net_tried_note(tried, sizeof tried, op->unix_socket ? 1 : op->next_addr);
	switch (op->phase) {
	case PH_LOOKUP:
		if (intr)
			redis_op_fail(op, why, "interrupted while resolving %s", op->host);
		else
			redis_op_fail(op, why, "timed out after %lld ms resolving %s", ms, op->host);
		break;
	case PH_CONNECT_START:
	case PH_CONNECT:
		if (intr)
			redis_op_fail(op, why, "interrupted while connecting");
		else
			redis_op_fail(op, why, "timed out after %lld ms connecting (no answer: a firewall dropping packets, "
			        "or a listener that does not accept%s)", ms, tried);
		discard(op, intr ? "an interrupted call" : "a timeout");
		break;
	case PH_START:
	case PH_IO:
		if (intr)
			redis_op_fail(op, why, "interrupted (the connection was closed)");
		else if (op->own)
			redis_op_fail(op, why, "timed out after %lld ms waiting for the server to answer (connected, but it "
			        "does not answer: stopped, hung or overloaded)", ms);
		else
			redis_op_fail(op, why, "timed out after %lld ms waiting for the reply (the connection was closed)", ms);
		discard(op, intr ? "an interrupted call" : "a timeout");
		break;
	default:
		redis_op_fail(op, why, "%s", why);
		break;
	}
	op->phase = PH_DONE;
}

/* The address being connected to has had its share of the time, and another one is waiting. */
static bool share_over(const struct redis_op *op)
{
	msec_t now = sched_now();
	return !op->unix_socket && op->next_addr < op->lookup.addrs.n && now >= op->turn_end && now < op->deadline;
}

/* One step after a wait; true when the op (or its current batch) is over. */
static bool advance(void *p)
{
	struct redis_op *op = p;
	if (op->phase == PH_DONE)
		return true;
	if (op->w.result == SCHED_INTERRUPTED) {
		stop(op, "interrupted");
		return true;
	}
	bool ready = tasks_ready(&op->w);
	if (op->phase == PH_LOOKUP && net_lookup_poll(&op->lookup))
		lookup_done(op);
	if (op->phase == PH_CONNECT && ready)
		connect_poll(op);
	if (op->phase == PH_CONNECT && share_over(op)) {
		redisFree(op->c);
		op->own = op->c = NULL;
		op->silent++;
		op->phase = PH_CONNECT_START;
	}
	while (op->phase == PH_CONNECT_START)
		connect_attempt(op);
	if (op->phase == PH_START)
		batch_start(op);
	if (op->phase == PH_IO)
		io(op);
	if (op->phase == PH_DONE)
		return true;
	if (sched_now() >= op->deadline) {
		stop(op, "timeout");
		return true;
	}
	bool turns = op->phase == PH_CONNECT && op->next_addr < op->lookup.addrs.n && op->turn_end < op->deadline;
	tasks_wait_init(&op->w, turns ? op->turn_end : op->deadline);
	if (op->phase == PH_LOOKUP)
		net_lookup_want(&op->lookup, &op->w);
	else if (op->phase == PH_CONNECT)
		tasks_want(&op->w, op->c->fd, POLLOUT);
	else
		tasks_want(&op->w, op->c->fd, (short)(POLLIN | (op->written ? 0 : POLLOUT)));
	return false;
}

static int run_done(lua_State *L, void *p)
{
	struct redis_op *op = p;
	return op->done(L, op);
}

const struct tasks_machine redis_op_machine = { advance, run_done, op_release };

int redis_op_run(lua_State *L, struct redis_op *op, redis_done_fn done)
{
	op->done = done;
	if (op->kind)
		op->phase = PH_DONE;   /* failed before it started: straight to done */
	op->task = (struct tasks_op){ .machine = &redis_op_machine, .op = op, .w = &op->w };
	return tasks_run_op(L, &op->task);
}
