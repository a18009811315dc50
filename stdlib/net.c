/* net.c - see net.h. */
#include "net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct resolve_job {
	char *host, *port;
	struct net_addrs addrs;
	int gai_err;
};

static void copy_addrs(struct net_addrs *out, const struct addrinfo *ai)
{
	out->n = 0;
	for (; ai && out->n < NET_MAX_ADDRS; ai = ai->ai_next) {
		if (ai->ai_addrlen > sizeof out->addr[0])
			continue;
		memcpy(&out->addr[out->n], ai->ai_addr, ai->ai_addrlen);
		out->len[out->n++] = ai->ai_addrlen;
	}
}

static int resolve_now(struct net_addrs *out, const char *host, const char *port, int flags)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = flags }, *res;
	int rc = getaddrinfo(host, port, &hints, &res);
	if (rc != 0)
		return rc;
	copy_addrs(out, res);
	freeaddrinfo(res);
	return out->n ? 0 : EAI_NONAME;
}

static void resolve_work(void *arg)
{
	struct resolve_job *j = arg;
	j->gai_err = resolve_now(&j->addrs, j->host, j->port, AI_ADDRCONFIG);
}

static void resolve_free(void *arg)
{
	struct resolve_job *j = arg;
	free(j->host);
	free(j->port);
	free(j);
}

bool net_lookup_start(struct net_lookup *l, const char *host, const char *port)
{
	memset(l, 0, sizeof *l);
	int rc = resolve_now(&l->addrs, host, port, AI_NUMERICHOST | AI_NUMERICSERV);
	if (rc == 0)
		return true;
	struct resolve_job *j = calloc(1, sizeof *j);
	if (!j || !(j->host = strdup(host)) || !(j->port = strdup(port))) {
		if (j)
			resolve_free(j);
		return false;
	}
	l->job = tasks_offload(resolve_work, j, resolve_free);
	if (!l->job) {
		resolve_free(j);
		return false;
	}
	return true;
}

void net_lookup_want(struct net_lookup *l, struct sched_waiter *w)
{
	if (l->job)
		tasks_want(w, tasks_offload_fd(l->job), POLLIN);
}

bool net_lookup_poll(struct net_lookup *l)
{
	if (!l->job)
		return true;
	if (!tasks_offload_done(l->job))
		return false;
	struct resolve_job *j = tasks_offload_arg(l->job);
	l->addrs = j->addrs;
	l->gai_err = j->gai_err;
	tasks_offload_release(l->job);
	l->job = NULL;
	return true;
}

void net_lookup_cancel(struct net_lookup *l)
{
	if (l->job)
		tasks_offload_release(l->job);
	l->job = NULL;
}

int net_connect_start(const struct sockaddr_storage *addr, socklen_t len)
{
	int fd = socket(addr->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	if (connect(fd, (const struct sockaddr *)addr, len) != 0 && errno != EINPROGRESS) {
		int e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

int net_connect_result(int fd)
{
	int err = 0;
	socklen_t len = sizeof err;
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
		return errno;
	return err;
}

void net_address_string(const struct sockaddr_storage *a, char *out, size_t n)
{
	out[0] = '\0';
	if (a->ss_family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *)a)->sin_addr, out, (socklen_t)n);
	else if (a->ss_family == AF_INET6)
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)a)->sin6_addr, out, (socklen_t)n);
}

msec_t net_share_end(msec_t now, msec_t until, int left)
{
	msec_t time_left = until > now ? until - now : 0;
	msec_t share = left > 1 ? time_left / left : time_left;
	if (share < NET_MIN_SHARE_MS)
		share = time_left < NET_MIN_SHARE_MS ? time_left : NET_MIN_SHARE_MS;
	return now + share;
}

void net_tried_note(char *out, size_t n, int tried)
{
	snprintf(out, n, tried > 1 ? "; %d addresses tried" : "", tried);
}

void net_silent_note(char *out, size_t n, int silent)
{
	if (silent > 0)
		snprintf(out, n, " (before it, %d address%s did not answer in %s share of the time)", silent,
		         silent > 1 ? "es" : "", silent > 1 ? "their" : "its");
	else
		out[0] = '\0';
}

const char *net_errno_kind(int err)
{
	switch (err) {
	case ECONNREFUSED:                        return "refused";
	case ETIMEDOUT:                           return "timeout";
	case EHOSTUNREACH: case ENETUNREACH:      return "unreachable";
	case ECONNRESET: case EPIPE:              return "reset";
	default:                                  return "error";
	}
}

const char *net_errno_cause(int err)
{
	switch (err) {
	case ECONNREFUSED: return "connection refused (nothing listens there: is the service up?)";
	case ETIMEDOUT:    return "timed out";
	case EHOSTUNREACH: return "host unreachable";
	case ENETUNREACH:  return "network unreachable";
	case ECONNRESET:   return "connection reset by peer";
	case EPIPE:        return "connection closed by peer";
	default:           return strerror(err);
	}
}
