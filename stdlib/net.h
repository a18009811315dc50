/*
 * net.h - what the socket modules (tcp, pg, redis) share: bounded name resolution and a
 * non-blocking connect, both driven through a sched_waiter so they work inside parallel().
 *
 * getaddrinfo() blocks for as long as the resolver likes (5 s per attempt by default): a numeric
 * address resolves at once here, a name in a worker thread (tasks_offload) that the caller stops
 * waiting for at its deadline.
 */
#ifndef NET_H
#define NET_H

#include <netdb.h>
#include <stdbool.h>
#include <sys/socket.h>

#include "tasks.h"

#define NET_MAX_ADDRS 4

struct net_addrs {
	struct sockaddr_storage addr[NET_MAX_ADDRS];
	socklen_t len[NET_MAX_ADDRS];
	int n;
};

struct net_lookup {
	struct offload *job;     /* NULL once finished (or for a numeric host) */
	struct net_addrs addrs;
	int gai_err;             /* EAI_* after a failed lookup, else 0 */
};

/* Starts resolving; returns false when no lookup could be started (out of threads or fds). */
bool net_lookup_start(struct net_lookup *l, const char *host, const char *port);
/* While l->job is set: add its fd to the waiter, and after the wait call net_lookup_poll(),
 * which returns true once the addresses (or gai_err) are in. */
void net_lookup_want(struct net_lookup *l, struct sched_waiter *w);
bool net_lookup_poll(struct net_lookup *l);
void net_lookup_cancel(struct net_lookup *l);

/* A non-blocking socket connecting to addr: returns the fd (connect in progress or done) or -1
 * with errno set. After POLLOUT, net_connect_result() gives 0 or the connect errno. */
int net_connect_start(const struct sockaddr_storage *addr, socklen_t len);
int net_connect_result(int fd);

/* The numeric address of a (IPv4 or IPv6), or "" for another family. */
void net_address_string(const struct sockaddr_storage *a, char *out, size_t n);

/*
 * When an attempt starting now on one of `left` candidates (a name's addresses, a list's hosts)
 * should give way to the next: an equal share of the time until `until`, at least
 * NET_MIN_SHARE_MS while there is that much, so that one that does not answer (a dead node of a
 * DNS round robin, an IPv6 route that drops packets) cannot use up the others' time. The last
 * candidate gets all that is left.
 */
#define NET_MIN_SHARE_MS 200
msec_t net_share_end(msec_t now, msec_t until, int left);
/* "; 3 addresses tried" for a timeout's message when more than one was, else "". */
void net_tried_note(char *out, size_t n, int tried);
/* " (before it, 2 addresses did not answer in their share of the time)" for another failure of the
 * last address when earlier ones timed out, else "": the kind is the last address's, not the story. */
void net_silent_note(char *out, size_t n, int silent);

/* The error kind for a connect/IO errno: refused, timeout, unreachable, reset, error. */
const char *net_errno_kind(int err);
/* "connection refused", ... : lowercase causes for messages. */
const char *net_errno_cause(int err);

#endif
