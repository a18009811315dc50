/* witness.c - see witness.h. */
#include "witness.h"
#include "term.h"
#include "tool.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#define SIGN_TIMEOUT_MS 10000

static char key[4096];
static bool warned;

void witness_set_key(const char *key_file)
{
	snprintf(key, sizeof key, "%s", key_file ? key_file : "");
	warned = false;
}

int witness_statement(char *out, size_t n, const char *id, long lines, const char *head)
{
	int w = snprintf(out, n, "runbook-transcript checkpoint\nid %s\nlines %ld\nhead %s\n", id, lines, head);
	return w < 0 || (size_t)w >= n ? -1 : w;
}

/* What syslog(3) would send to /dev/log, sent to the socket $RUNBOOK_SYSLOG_SOCKET instead. */
static void log_to_socket(const char *sock, const char *msg)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	if (strlen(sock) >= sizeof a.sun_path)
		return;
	strcpy(a.sun_path, sock);
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return;
	char stamp[32], line[1024];
	time_t now = time(NULL);
	struct tm tm;
	localtime_r(&now, &tm);
	strftime(stamp, sizeof stamp, "%b %e %H:%M:%S", &tm);
	int n = snprintf(line, sizeof line, "<%d>%s runbook[%ld]: %s", LOG_USER | LOG_NOTICE, stamp, (long)getpid(), msg);
	if (n > 0)
		(void)sendto(fd, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1, 0, (struct sockaddr *)&a, sizeof a);
	close(fd);
}

static void log_checkpoint(const char *msg)
{
	const char *sock = getenv("RUNBOOK_SYSLOG_SOCKET");
	if (sock && *sock) {
		log_to_socket(sock, msg);
		return;
	}
	openlog("runbook", LOG_PID | LOG_NDELAY, LOG_USER);
	syslog(LOG_NOTICE, "%s", msg);
	closelog();
}

static void warn_once(const char *fmt, const char *a, const char *b)
{
	if (warned)
		return;
	warned = true;
	err_printf(fmt, a, b);
}

/* Writes data to path.sig through a temporary file and a rename: a reader sees one or the other. */
static void replace_sig(const char *path, const char *data, size_t n)
{
	char sig[4200], tmp[4210];
	if (snprintf(sig, sizeof sig, "%s.sig", path) >= (int)sizeof sig ||
	    snprintf(tmp, sizeof tmp, "%s.sig.tmp", path) >= (int)sizeof tmp)
		return;
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0) {
		warn_once("runbook: warning: cannot write the signature %s: %s\n", tmp, strerror(errno));
		return;
	}
	bool ok = write(fd, data, n) == (ssize_t)n && fdatasync(fd) == 0;
	ok = close(fd) == 0 && ok;
	if (!ok || rename(tmp, sig) != 0) {
		warn_once("runbook: warning: cannot write the signature %s: %s\n", sig, strerror(errno));
		unlink(tmp);
	}
}

static void sign(const char *path, const char *statement)
{
	const char *argv[] = { "ssh-keygen", "-q", "-Y", "sign", "-n", WITNESS_NAMESPACE, "-f", key, NULL };
	struct tool_result r;
	tool_run(argv, statement, strlen(statement), SIGN_TIMEOUT_MS, &r);
	if (r.status != 0 || !strstr(r.out, "-----BEGIN SSH SIGNATURE-----")) {
		char *nl = strchr(r.err, '\n');
		if (nl)
			*nl = 0;
		warn_once("runbook: warning: the transcript is not signed: ssh-keygen -Y sign with %s failed: %s\n", key,
		          r.status < 0 ? r.why : (*r.err ? r.err : "no signature"));
		tool_free(&r);
		return;
	}
	size_t sl = strlen(statement);
	char *all = malloc(sl + r.out_len);
	if (!all)
		abort();
	memcpy(all, statement, sl);
	memcpy(all + sl, r.out, r.out_len);
	replace_sig(path, all, sl + r.out_len);
	free(all);
	tool_free(&r);
}

void witness_checkpoint(const char *path, const char *id, long lines, const char *head, const char *why)
{
	char msg[1024];
	snprintf(msg, sizeof msg, "transcript %s line %ld head %s (%s) %s", id, lines, head, why, path);
	for (char *c = msg; *c; c++)   /* one log line, whatever the path holds */
		if ((unsigned char)*c < 0x20 || *c == 0x7f)
			*c = '?';
	log_checkpoint(msg);
	if (!key[0])
		return;
	char statement[256];
	if (witness_statement(statement, sizeof statement, id, lines, head) > 0)
		sign(path, statement);
}
