/* labd.c - see labd.h. Single-threaded on purpose: a lab service, not a web server. */
#include "labd.h"
#include "runbook.h"
#include "sched.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define CHECK_TIMEOUT_MS 500
#define REQUEST_TIMEOUT_MS 2000

static volatile sig_atomic_t stopping;

static void on_term(int sig)
{
	(void)sig;
	stopping = 1;
}

struct options {
	int port, pg_port, redis_port;
	const char *pidfile, *log;
	bool daemon;
};

/* Waits for fd to be ready for events until deadline; false on timeout or error. */
static bool wait_fd(int fd, short events, msec_t deadline)
{
	for (;;) {
		msec_t left = deadline - sched_now();
		if (left <= 0)
			return false;
		struct pollfd p = { .fd = fd, .events = events };
		int n = poll(&p, 1, (int)left);
		if (n > 0)
			return true;
		if (n < 0 && errno != EINTR)
			return false;
	}
}

/*
 * Connects to 127.0.0.1:port, sends req and reads the first bytes of the answer; true when they
 * start with one of the expected prefixes. A stopped (SIGSTOP) server accepts through the kernel
 * but never answers, so a connect alone would call it healthy.
 */
static bool ask(int port, const void *req, size_t len, const char *const expect[], char *why, size_t whylen)
{
	msec_t deadline = sched_now() + CHECK_TIMEOUT_MS;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	bool ok = false;
	char buf[64] = "";
	if (fd < 0) {
		snprintf(why, whylen, "%s", strerror(errno));
		return false;
	}
	if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0 && errno != EINPROGRESS) {
		snprintf(why, whylen, "%s", strerror(errno));
	} else if (!wait_fd(fd, POLLOUT, deadline)) {
		snprintf(why, whylen, "connect timed out");
	} else {
		int err = 0;
		socklen_t el = sizeof err;
		getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el);
		if (err) {
			snprintf(why, whylen, "%s", strerror(err));
		} else if (write(fd, req, len) != (ssize_t)len) {
			snprintf(why, whylen, "write failed: %s", strerror(errno));
		} else if (!wait_fd(fd, POLLIN, deadline)) {
			snprintf(why, whylen, "no answer within %d ms", CHECK_TIMEOUT_MS);
		} else {
			ssize_t n = read(fd, buf, sizeof buf - 1);
			buf[n > 0 ? n : 0] = '\0';
			for (const char *const *e = expect; *e && !ok; e++)
				ok = strncmp(buf, *e, strlen(*e)) == 0;
			if (!ok)
				snprintf(why, whylen, n > 0 ? "unexpected answer" : "connection closed");
		}
	}
	close(fd);
	return ok;
}

static bool check_redis(int port, char *why, size_t n)
{
	static const char *const expect[] = { "+PONG", "-NOAUTH", NULL };
	return ask(port, "PING\r\n", 6, expect, why, n);
}

static bool check_postgres(int port, char *why, size_t n)
{
	/* SSLRequest: length 8, code 80877103; the postmaster answers 'S' or 'N' before any auth. */
	static const unsigned char ssl_request[8] = { 0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f };
	static const char *const expect[] = { "S", "N", NULL };
	return ask(port, ssl_request, sizeof ssl_request, expect, why, n);
}

static void append_check(char *out, size_t n, const char *name, bool ok, const char *why, bool comma)
{
	size_t len = strlen(out);
	if (ok)
		snprintf(out + len, n - len, "%s\"%s\":{\"ok\":true}", comma ? "," : "", name);
	else
		snprintf(out + len, n - len, "%s\"%s\":{\"ok\":false,\"error\":\"%s\"}", comma ? "," : "", name, why);
}

static const char *reason(int status)
{
	switch (status) {
	case 200: return "OK";
	case 401: return "Unauthorized";
	case 426: return "Upgrade Required";
	case 503: return "Service Unavailable";
	default: return "Not Found";
	}
}

static void respond(int fd, int status, const char *type, const char *body)
{
	char head[256];
	int n = snprintf(head, sizeof head,
	                 "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n",
	                 status, reason(status),
	                 type, strlen(body));
	if (write(fd, head, (size_t)n) == n)
		(void)!write(fd, body, strlen(body));
}

static void health(int fd, const struct options *o)
{
	char why_pg[96] = "", why_redis[96] = "", body[512];
	bool pg = check_postgres(o->pg_port, why_pg, sizeof why_pg);
	bool redis = check_redis(o->redis_port, why_redis, sizeof why_redis);
	snprintf(body, sizeof body, "{\"status\":\"%s\",\"dependencies\":{", pg && redis ? "ok" : "degraded");
	append_check(body, sizeof body, "postgres", pg, why_pg, false);
	append_check(body, sizeof body, "redis", redis, why_redis, true);
	strncat(body, "}}\n", sizeof body - strlen(body) - 1);
	respond(fd, pg && redis ? 200 : 503, "application/json", body);
}

/* Whether the request has the header `name` (lower case) with a value starting with `value`
 * (case-insensitively: Upgrade and Connection values are tokens). */
static bool header_is(const char *req, const char *name, const char *value)
{
	size_t n = strlen(name), v = strlen(value);
	for (const char *line = strstr(req, "\r\n"); line && line[2] != '\r'; line = strstr(line + 2, "\r\n")) {
		const char *h = line + 2;
		if (strncasecmp(h, name, n) != 0 || h[n] != ':')
			continue;
		h += n + 1;
		while (*h == ' ')
			h++;
		if (strncasecmp(h, value, v) == 0)
			return true;
	}
	return false;
}

/* GET /ws: the WebSocket handshake's first half, as a backend answers it when the proxy passed the
 * Upgrade on (101), or 426 when it reached the service as a plain request (a proxy that drops the
 * hop-by-hop Upgrade and Connection headers). The lab checks the handshake, not the frames, so
 * Sec-WebSocket-Accept is not computed. */
static void upgrade(int fd, const char *req)
{
	if (!header_is(req, "upgrade", "websocket") || !header_is(req, "connection", "upgrade")) {
		respond(fd, 426, "text/plain", "this endpoint speaks WebSocket: the Upgrade header did not arrive\n");
		return;
	}
	static const char head[] = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n";
	(void)!write(fd, head, sizeof head - 1);
}

static void serve_one(int fd, const struct options *o)
{
	char req[4096] = "";   /* empty before the first read: the loop below looks for the header's end in it */
	size_t len = 0;
	msec_t deadline = sched_now() + REQUEST_TIMEOUT_MS;
	while (len < sizeof req - 1 && !strstr(req, "\r\n\r\n")) {
		if (!wait_fd(fd, POLLIN, deadline))
			return;
		ssize_t n = read(fd, req + len, sizeof req - 1 - len);
		if (n <= 0)
			return;
		len += (size_t)n;
		req[len] = '\0';
	}
	if (strncmp(req, "GET /health ", 12) == 0 || strncmp(req, "HEAD /health ", 13) == 0)
		health(fd, o);
	else if (strncmp(req, "GET /ws", 7) == 0)
		upgrade(fd, req);
	else if (strncmp(req, "GET /login ", 11) == 0) {
		/* The lab's one credential: what the auth drill's clients get wrong. */
		bool ok = header_is(req, "authorization", "Bearer lab-token");
		respond(fd, ok ? 200 : 401, "text/plain", ok ? "welcome\n" : "invalid token\n");
	} else if (strncmp(req, "GET / ", 6) == 0)
		respond(fd, 200, "text/plain", "runbook lab service: GET /health\n");
	else
		respond(fd, 404, "text/plain", "not found\n");
}

static int listen_on(int port)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(fd, 64) != 0) {
		fprintf(stderr, "runbook lab serve: cannot listen on 127.0.0.1:%d: %s\n", port, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	return fd;
}

static bool parse(int argc, char **argv, struct options *o)
{
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (strcmp(a, "--daemon") == 0) { o->daemon = true; continue; }
		if (!v)
			return false;
		if (strcmp(a, "--port") == 0) o->port = atoi(v);
		else if (strcmp(a, "--pg-port") == 0) o->pg_port = atoi(v);
		else if (strcmp(a, "--redis-port") == 0) o->redis_port = atoi(v);
		else if (strcmp(a, "--pidfile") == 0) o->pidfile = v;
		else if (strcmp(a, "--log") == 0) o->log = v;
		else return false;
		i++;
	}
	return o->port > 0 && o->pg_port > 0 && o->redis_port > 0;
}

/* Detaches from the terminal. Returns the fd to write one byte to once ready (the pidfile is
 * written); the parent waits for that byte, so whoever started us can read the pidfile at once. */
static int daemonize(const char *log)
{
	int ready[2];
	if (pipe2(ready, O_CLOEXEC) != 0) {
		perror("runbook lab serve: pipe");
		exit(EXIT_INTERNAL);
	}
	pid_t pid = fork();
	if (pid < 0) {
		perror("runbook lab serve: fork");
		exit(EXIT_INTERNAL);
	}
	if (pid > 0) {
		char c;
		close(ready[1]);
		_exit(read(ready[0], &c, 1) == 1 ? EXIT_OK : EXIT_FAILED);
	}
	close(ready[0]);
	setsid();
	int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
	int out = log ? open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600) : -1;
	dup2(null, 0);
	dup2(out >= 0 ? out : null, 1);
	dup2(out >= 0 ? out : null, 2);
	return ready[1];
}

int labd_main(int argc, char **argv)
{
	struct options o = { 0 };
	if (!parse(argc, argv, &o)) {
		fprintf(stderr, "usage: runbook lab serve --port N --pg-port N --redis-port N [--daemon] [--pidfile F] [--log F]\n");
		return EXIT_USAGE;
	}
	int lfd = listen_on(o.port);
	if (lfd < 0)
		return EXIT_FAILED;
	int ready = o.daemon ? daemonize(o.log) : -1;
	if (o.pidfile) {
		FILE *f = fopen(o.pidfile, "w");
		if (f) {
			fprintf(f, "%d\n", (int)getpid());
			fclose(f);
		}
	}
	if (ready >= 0) {
		(void)!write(ready, "", 1);
		close(ready);
	}
	struct sigaction sa = { .sa_handler = on_term };
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	while (!stopping) {
		int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0)
			continue;
		serve_one(fd, &o);
		close(fd);
	}
	close(lfd);
	if (o.pidfile)
		unlink(o.pidfile);
	return EXIT_OK;
}
