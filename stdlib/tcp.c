/*
 * tcp.c - is anything listening? (require "tcp")
 *
 *   tcp.connect(host, port, { timeout = 2, send = "...", max_reply = 4096 })
 *     -> { host, port, address, ms, reply } | nil, err, kind
 *
 * A TCP handshake and nothing else, bounded as a whole (name lookup included) by one deadline.
 * With `send`, the bytes are written once connected and the answer read, under the same deadline,
 * until the peer closes, max_reply bytes or the end of an HTTP head (a blank line): enough for a
 * handshake that HTTP clients will not make, such as a WebSocket Upgrade through a proxy.
 * A name's addresses are tried in turn, each for an equal share of the time left (net_share_end);
 * a refused one hands over at once.
 * Kinds: dns, refused, timeout, unreachable, interrupted, error. It is also the smallest example
 * of a primitive written as a state machine over a sched_waiter (see interp/tasks.h), so it runs
 * concurrently inside parallel().
 */
#include "luax.h"
#include "modules.h"
#include "net.h"
#include "tasks.h"

#include <errno.h>
#include <lauxlib.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define DEFAULT_TIMEOUT_MS 2000
#define CONNECT_MT "runbook.tcp.connect"

#define MAX_SEND 4096
#define MAX_REPLY 16384
enum state { LOOKING_UP, CONNECTING, SENDING, RECEIVING, DONE };

struct connect_op {
	struct sched_waiter w;
	struct net_lookup lookup;
	enum state state;
	int fd, next_addr, silent;   /* silent: addresses left at the end of their share */
	msec_t until, turn_end;    /* the call's deadline; the end of this address's share */
	char target[300], address[INET6_ADDRSTRLEN + 8];
	const char *kind;          /* NULL on success */
	char cause[160];
	msec_t timeout_ms;
	double t0;
	size_t send_len, sent, reply_len, max_reply;
	char payload[MAX_SEND], reply[MAX_REPLY];
};

static void fail(struct connect_op *op, const char *kind, const char *cause)
{
	op->kind = kind;
	snprintf(op->cause, sizeof op->cause, "%s", cause);
	op->state = DONE;
}

/* Starts connecting to the next address, for its share of the time; false when there is none left. */
static bool try_next_address(struct connect_op *op, int last_err)
{
	while (op->next_addr < op->lookup.addrs.n) {
		int i = op->next_addr++;
		op->fd = net_connect_start(&op->lookup.addrs.addr[i], op->lookup.addrs.len[i]);
		if (op->fd >= 0) {
			net_address_string(&op->lookup.addrs.addr[i], op->address, sizeof op->address);
			op->turn_end = net_share_end(sched_now(), op->until, op->lookup.addrs.n - i);
			return true;
		}
		last_err = errno;
	}
	char cause[160], note[96];
	net_silent_note(note, sizeof note, op->silent);
	snprintf(cause, sizeof cause, "%s%s", net_errno_cause(last_err), note);
	fail(op, net_errno_kind(last_err), cause);
	return false;
}

/* Writes what is left of the payload, or reads the answer; true when the exchange is over. */
static bool exchange(struct connect_op *op)
{
	if (op->state == SENDING) {
		ssize_t n = write(op->fd, op->payload + op->sent, op->send_len - op->sent);
		if (n < 0 && errno != EAGAIN && errno != EINTR) {
			fail(op, net_errno_kind(errno), net_errno_cause(errno));
			return true;
		}
		if (n > 0 && (op->sent += (size_t)n) == op->send_len)
			op->state = RECEIVING;
		return false;
	}
	ssize_t n = read(op->fd, op->reply + op->reply_len, op->max_reply - op->reply_len);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return false;
	if (n < 0 && op->reply_len == 0) {
		fail(op, net_errno_kind(errno), net_errno_cause(errno));
		return true;
	}
	if (n > 0)
		op->reply_len += (size_t)n;
	if (n <= 0 || op->reply_len == op->max_reply || memmem(op->reply, op->reply_len, "\r\n\r\n", 4)) {
		op->state = DONE;
		return true;
	}
	return false;
}

/* One step of the state machine after a wait; true when the call is over. */
static bool advance(struct connect_op *op)
{
	if (op->w.result == SCHED_INTERRUPTED) {
		fail(op, "interrupted", "interrupted");
		return true;
	}
	msec_t now = sched_now();
	bool late = now >= op->until;
	if (op->state == LOOKING_UP) {
		if (!net_lookup_poll(&op->lookup)) {
			if (late) {
				fail(op, "timeout", "name lookup timed out");
				return true;
			}
			tasks_wait_init(&op->w, op->until);
			net_lookup_want(&op->lookup, &op->w);
			return false;
		}
		if (op->lookup.gai_err) {
			fail(op, "dns", gai_strerror(op->lookup.gai_err));
			return true;
		}
		op->state = CONNECTING;
		if (!try_next_address(op, ECONNREFUSED))
			return true;
	} else if (op->state == CONNECTING && op->w.nfds && op->w.fds[0].revents) {
		int err = net_connect_result(op->fd);
		if (err == 0) {
			op->state = op->send_len ? SENDING : DONE;
			if (op->state == DONE)
				return true;
			tasks_wait_init(&op->w, op->until);
			tasks_want(&op->w, op->fd, POLLOUT);
			return false;
		}
		close(op->fd);
		op->fd = -1;
		if (!try_next_address(op, err))
			return true;
	} else if (op->state == CONNECTING && !late && now >= op->turn_end) {   /* its share is over */
		close(op->fd);
		op->fd = -1;
		op->silent++;
		if (!try_next_address(op, ETIMEDOUT))
			return true;
	} else if ((op->state == SENDING || op->state == RECEIVING) && op->w.nfds && op->w.fds[0].revents) {
		if (exchange(op))
			return true;
	}
	if (late && (op->state == SENDING || op->state == RECEIVING)) {
		fail(op, "timeout", op->state == SENDING ? "connected, but the request could not be sent in time"
		                                         : "connected and sent, but no complete answer in time");
		return true;
	}
	if (op->state == SENDING || op->state == RECEIVING) {
		tasks_wait_init(&op->w, op->until);
		tasks_want(&op->w, op->fd, op->state == SENDING ? POLLOUT : POLLIN);
		return false;
	}
	if (late) {
		char cause[160], tried[32];
		net_tried_note(tried, sizeof tried, op->next_addr);
		snprintf(cause, sizeof cause, "timed out (a firewall dropping packets, or an overloaded listener%s)", tried);
		fail(op, "timeout", cause);
		return true;
	}
	tasks_wait_init(&op->w, op->turn_end < op->until ? op->turn_end : op->until);
	tasks_want(&op->w, op->fd, POLLOUT);
	return false;
}

static int finish(lua_State *L, struct connect_op *op)
{
	double ms = sched_now_precise() - op->t0;
	if (op->fd >= 0)
		close(op->fd);
	op->fd = -1;
	char summary[200];
	if (op->kind) {
		snprintf(summary, sizeof summary, "%s", op->cause);
		luax_audit_probe("tcp.connect", op->target, op->timeout_ms, ms, op->kind, summary);
		return luax_fail(L, op->kind, "tcp.connect %s: %s", op->target, op->cause);
	}
	snprintf(summary, sizeof summary, "connected to %s in %.1f ms%s", op->address, ms, op->send_len ? ", request sent, answer read" : "");
	luax_audit_probe("tcp.connect", op->target, op->timeout_ms, ms, "ok", summary);
	lua_createtable(L, 0, 4);
	lua_pushvalue(L, 1);
	lua_setfield(L, -2, "host");
	lua_pushvalue(L, 2);
	lua_setfield(L, -2, "port");
	luax_setstr(L, "address", op->address);
	luax_setnum(L, "ms", ms);
	if (op->send_len) {
		lua_pushlstring(L, op->reply, op->reply_len);
		lua_setfield(L, -2, "reply");
	}
	return 1;
}

static int connect_k(lua_State *L, int status, lua_KContext ctx)
{
	(void)status;
	struct connect_op *op = (struct connect_op *)ctx;
	for (;;) {
		if (op->state == DONE || advance(op))
			return finish(L, op);
		if (tasks_must_yield(L))
			return tasks_yield(L, &op->w, ctx, connect_k);
		tasks_block(&op->w);
	}
}

static int connect_gc(lua_State *L)
{
	struct connect_op *op = luaL_checkudata(L, 1, CONNECT_MT);
	if (op->fd >= 0)
		close(op->fd);
	op->fd = -1;
	net_lookup_cancel(&op->lookup);
	return 0;
}

static const char *const connect_options[] = { "timeout", "send", "max_reply", NULL };

static int tcp_connect(lua_State *L)
{
	const char *host = luaL_checkstring(L, 1);
	lua_Integer port = luaL_checkinteger(L, 2);
	luaL_argcheck(L, port > 0 && port < 65536, 2, "port must be 1-65535");
	luax_check_options(L, 3, "tcp.connect", connect_options);
	msec_t timeout = luax_opt_duration(L, 3, "timeout", DEFAULT_TIMEOUT_MS, "tcp.connect");
	size_t send_len = 0;
	const char *payload = NULL;
	if (lua_istable(L, 3) && lua_getfield(L, 3, "send") != LUA_TNIL) {
		payload = luaL_checklstring(L, -1, &send_len);
		if (send_len == 0 || send_len > MAX_SEND)
			return luaL_error(L, "tcp.connect: send must hold 1 to %d bytes", MAX_SEND);
	}
	lua_Integer max_reply = luax_opt_integer(L, 3, "max_reply", 4096, "tcp.connect");
	if (max_reply < 1 || max_reply > MAX_REPLY)
		return luaL_error(L, "tcp.connect: max_reply must be 1 to %d", MAX_REPLY);
	char copy[MAX_SEND];
	if (payload)
		memcpy(copy, payload, send_len);
	lua_settop(L, 2);

	struct connect_op *op = lua_newuserdatauv(L, sizeof *op, 0);
	memset(op, 0, sizeof *op);
	op->fd = -1;
	luaL_setmetatable(L, CONNECT_MT);
	snprintf(op->target, sizeof op->target, strchr(host, ':') ? "[%s]:%lld" : "%s:%lld", host, (long long)port);
	op->timeout_ms = timeout;
	op->send_len = send_len;
	op->max_reply = (size_t)max_reply;
	memcpy(op->payload, copy, send_len);
	op->t0 = sched_now_precise();
	op->until = sched_deadline(timeout);
	tasks_wait_init(&op->w, op->until);
	char portstr[8];
	snprintf(portstr, sizeof portstr, "%lld", (long long)port);
	if (!net_lookup_start(&op->lookup, host, portstr))
		fail(op, "error", "cannot start the name lookup (out of threads or file descriptors)");
	return connect_k(L, LUA_OK, (lua_KContext)op);
}

int luaopen_tcp(lua_State *L)
{
	static const luaL_Reg fns[] = { { "connect", tcp_connect }, { NULL, NULL } };
	static const luaL_Reg meta[] = { { "__gc", connect_gc }, { NULL, NULL } };
	luax_class(L, CONNECT_MT, meta, NULL, NULL);
	luaL_newlib(L, fns);
	return 1;
}
