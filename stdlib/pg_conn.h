/*
 * pg_conn.h - what the parts of the pg module's core share (pg.c, pg_conninfo.c, pg_engine.c): the
 * op's phases, the connection parameters and their endpoints, and the functions that cross between
 * them. Private to the pg module (pg.h is what pg_probes.c sees too); nothing here is exported.
 */
#ifndef PG_CONN_H
#define PG_CONN_H

#include "pg.h"
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

#pragma GCC visibility push(hidden)   /* shared by the parts of pg only: not visible to other objects */

/* pg.c */
void first_line(char *out, size_t n, const char *msg);
void ignore_notice(void *arg, const PGresult *r);
struct offload *close_conn(struct pg_op *op, bool cancel, const char *why);
/* Ends the op: its connection closed or handed back, its handle no longer busy (the machine's release). */
void op_release(void *p);

/* pg_conninfo.c */
bool cx_parse(struct pg_op *op, const char *conninfo, const char *app, const char *password);
int cx_set(struct pg_connect *cx, const char *key, const char *val);
void cx_free(struct pg_connect *cx);
const char *port_of(const struct pg_endpoint *ep);
void format_endpoint(char *out, size_t n, const struct pg_endpoint *ep);
void format_target(char *out, size_t n, const struct pg_connect *cx, int first, int count);
bool needs_lookup(const struct pg_endpoint *ep);

/* pg_engine.c: the machine of every op (pg_op_push), and the start of a connection to the host in turn. */
extern const struct tasks_machine pg_op_machine;
void endpoint_start(struct pg_op *op);

#pragma GCC visibility pop

#endif
