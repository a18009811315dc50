/*
 * redis.h - what redis.c (URLs, connections, the command engine, conn:call and conn:action) and
 * redis_probes.c (INFO parsing and the ready-made probes) share. Internal to the redis module.
 *
 * Every call is one `struct redis_op`, a userdata on the caller's stack (marked to-be-closed, so that an
 * abandoned parallel() task releases it), driven by one state machine: [name lookup, connect,] hand
 * a batch of queued commands to the hiredis context, write them, read their replies. The op's `done`
 * callback runs when the batch has ended (op->kind set on failure, op->rep[] filled otherwise); it
 * pushes the Lua results and returns their number, or queues another batch (redis_batch) and returns
 * REDIS_AGAIN (COMMAND INFO before a call, the gate between counting keys and FLUSHDB, the next PING
 * of conn:latency).
 */
#ifndef REDIS_H
#define REDIS_H

#include <hiredis.h>
#include <lua.h>
#include <stdbool.h>

#include "handle.h"
#include "net.h"
#include "tasks.h"

#define REDIS_DEFAULT_TIMEOUT_MS 2000
#define REDIS_TARGET_MAX         HANDLE_TARGET_MAX
#define REDIS_MAX_CMDS           6
#define REDIS_AGAIN              TASKS_AGAIN

struct redis_handle {
	struct handle_state s;        /* first: its redisContext (s.conn), target, closed, broken, busy (handle.h) */
	int db;
	msec_t timeout_ms;            /* the default deadline of its calls */
};

enum redis_phase {
	PH_IDLE,
	PH_LOOKUP,          /* resolving the host name */
	PH_CONNECT_START,   /* start connecting to the next address */
	PH_CONNECT,         /* waiting for the TCP handshake */
	PH_START,           /* hand the queued commands to the context */
	PH_IO,              /* writing them, reading their replies */
	PH_DONE,
};

struct redis_op;
typedef int (*redis_done_fn)(lua_State *L, struct redis_op *op);

struct redis_op {
	struct sched_waiter w;
	msec_t deadline;              /* the call's (the waiter may wake earlier, at turn_end) */
	enum redis_phase phase;
	const char *fn;               /* "redis.call": messages and audit records */
	char target[REDIS_TARGET_MAX];
	msec_t timeout_ms;
	double t0, connect_ms, sent_at;
	/* connecting (redis.connect, redis.ping) */
	struct net_lookup lookup;
	bool looking;
	char host[256], port[8];      /* or the socket path, and "" */
	bool unix_socket;
	int next_addr, db;
	int silent;                   /* addresses left at the end of their share */
	msec_t turn_end;              /* the end of this address's share of the time (net_share_end) */
	redisContext *own;            /* a context the op owns (being made; ping's) */
	/* running on a handle */
	struct redis_handle *h;
	redisContext *c;              /* the context in use: own or h->c */
	/* the batch */
	char *q[REDIS_MAX_CMDS];      /* formatted commands waiting to be appended */
	int qlen[REDIS_MAX_CMDS], nq;
	redisReply *rep[REDIS_MAX_CMDS];
	int expected, got, nsetup, auth_at, select_at;
	msec_t conn_timeout_ms;
	bool written;
	bool released;
	/* the outcome */
	const char *kind;             /* NULL while all is well */
	char code[32];                /* a server error's code word, kind points here */
	char cause[600];
	redis_done_fn done;
	struct tasks_op task;         /* how redis_op_run drives it (tasks.h) */
	/* for the callbacks */
	int stage;
	char *user;                   /* the user's command, formatted, until it is queued */
	int user_len;
	char *display;                /* the command as shown (secrets hidden) */
	char name[64], sub[64];       /* lowercase command word and subcommand word */
	const char *summary_opt, *target_opt, *blast_opt;
	bool irreversible;
	msec_t action_timeout_ms;
	double action_t0;
	double *samples;              /* conn:latency's round trips */
	int nsamples, wanted;
};

/* A command from Lua: conn:call(cmd, arg..., { options }), conn:action(...). */
struct redis_args {
	int argc;
	const char **argv;            /* Lua strings on the stack */
	size_t *lens;
	int opts;                     /* stack index of the options table (an empty one stands in) */
	char name[64], sub[64];       /* lowercase command word; the next word if it looks like a subcommand */
};

/* --- redis.c, for redis_probes.c --- */

/* The open handle at index 1 (raises when it is not one, or was closed by the runbook). */
struct redis_handle *redis_check_handle(lua_State *L, const char *fn);
/* Pushes nil, "<fn> <target>: connection was closed after ...; connect again", "closed" when the
 * handle was discarded (returns 3), raises when another task is using it, else returns 0. */
int redis_handle_unusable(lua_State *L, struct redis_handle *h, const char *fn);
/* Pushes a new op (to-be-closed) for a call on h, which must be at index 1 (NULL: connect, ping). */
struct redis_op *redis_op_push(lua_State *L, const char *fn, struct redis_handle *h, msec_t timeout_ms);
/* Queues a command for the next batch: argv with lengths (NULL: C strings), or up to 3 words. */
void redis_queue_argv(struct redis_op *op, int argc, const char **argv, const size_t *lens);
void redis_queue(struct redis_op *op, const char *a0, const char *a1, const char *a2);
/* Makes the queued commands the next batch, with a new deadline when timeout_ms > 0. */
void redis_batch(struct redis_op *op, msec_t timeout_ms);
/* Drives the op until op->done has pushed its results; returns their number. */
int redis_op_run(lua_State *L, struct redis_op *op, redis_done_fn done);
/* Fails op with kind and a printf-style cause (the first failure wins). */
#define redis_op_fail(op, what, ...) handle_op_fail(&(op)->kind, (op)->cause, sizeof (op)->cause, (what), __VA_ARGS__)
/* Fails op with a server's error reply: kind = its code word ("WRONGTYPE"; auth for login errors). */
void redis_fail_reply(struct redis_op *op, const redisReply *r, const char *context);
bool redis_is_error(const redisReply *r);
/* The probe audit record for op (outcome "ok" or op->kind); summary NULL: the cause. */
void redis_audit(struct redis_op *op, const char *summary);
/* Pushes nil, "<fn> <target>: <cause>", kind; returns 3. */
int redis_fail_push(lua_State *L, struct redis_op *op);
/* For a probe: 0, or (the batch failed or a reply is an error) audits, pushes nil, err, kind, returns 3. */
int redis_probe_failed(lua_State *L, struct redis_op *op);
double redis_elapsed(const struct redis_op *op);
void redis_lower(char *out, size_t n, const char *s, size_t len);
/* "config", "set" -> "CONFIG SET" (sub may be ""). */
void redis_upper_words(char *out, size_t n, const char *name, const char *sub);

/* --- redis_probes.c --- */

/* The value of `key` in the text of an INFO reply, copied to out; NULL when absent. */
const char *redis_info_str(const redisReply *r, const char *key, char *out, size_t n);
/* What conn:call may run. Refusals that need no server (what the command would do to the connection,
 * for both forms; for a probe, writes the server does not flag): the reason, or NULL. *anywhere
 * tells whether conn:action refuses it too. */
const char *redis_local_refusal(const struct redis_args *a, bool action, bool *anywhere);
/* The verdict ("ok" or a reason) cached for the command in the table on top, NULL when COMMAND INFO
 * must be asked; redis_learn files COMMAND INFO's answer there and returns the verdict. *shown_sub:
 * the subcommand is part of the command's name in messages ("CONFIG SET"). */
const char *redis_cached_verdict(lua_State *L, const struct redis_args *a, bool *shown_sub);
const char *redis_learn(lua_State *L, const struct redis_args *a, const redisReply *arr, bool *shown_sub);
/* Applies the allowlist of read-only admin commands: false, with the message to raise, when the
 * command may not run as a probe. */
bool redis_allowed(char *msg, size_t n, const char *fn, const char *target, const struct redis_args *a, const char *verdict,
                   bool shown_sub);
/* Adds conn:info, memory, clients, replication, slowlog, latency, keyspace, llen to the table on top. */
void redis_probes_register(lua_State *L);

#endif
