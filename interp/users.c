/*
 * users.c - user names for uids, looked up by a worker; see users.h.
 */
#include "users.h"
#include "sched.h"
#include "tasks.h"

#include <fcntl.h>
#include <poll.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct lookup {
	uid_t uid;
	bool found;
	char name[64];
};

static void look_up(void *arg)
{
	struct lookup *l = arg;
	struct passwd pw, *res = NULL;
	char scratch[2048];
	if (getpwuid_r(l->uid, &pw, scratch, sizeof scratch, &res) == 0 && res)
		l->found = (size_t)snprintf(l->name, sizeof l->name, "%s", pw.pw_name) < sizeof l->name;
}

#define CACHED 64
static struct lookup cache[CACHED];
static int ncached;
static struct offload *unanswered;   /* a lookup NSS has not answered yet */

static const struct lookup *cached(uid_t uid)
{
	for (int i = 0; i < ncached; i++)
		if (cache[i].uid == uid)
			return &cache[i];
	return NULL;
}

/* Whether passwd's first source in nsswitch.conf is "files", as on Debian: NSS then answers a
 * user of /etc/passwd from that file, and so can this process, without a thread. */
static bool files_first(void)
{
	static int first = -1;
	if (first >= 0)
		return first;
	first = 0;
	FILE *f = fopen("/etc/nsswitch.conf", "re");
	char line[512];
	while (f && fgets(line, sizeof line, f)) {
		char *p = line + strspn(line, " \t");
		if (strncmp(p, "passwd:", 7) != 0)
			continue;
		p += 7 + strspn(p + 7, " \t");
		first = strncmp(p, "files", 5) == 0 && (p[5] == ' ' || p[5] == '\t' || p[5] == '\n' || p[5] == '\0');
		break;
	}
	if (f)
		fclose(f);
	return first;
}

/* uid's entry in /etc/passwd, if that is a regular file (opened without blocking: not a FIFO). */
static bool from_etc_passwd(uid_t uid, struct lookup *l)
{
	int fd = open("/etc/passwd", O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	struct stat st;
	FILE *f = fd >= 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode) ? fdopen(fd, "r") : NULL;
	if (!f) {
		if (fd >= 0)
			close(fd);
		return false;
	}
	struct passwd pw, *res = NULL;
	char scratch[2048];
	while (!l->found && fgetpwent_r(f, &pw, scratch, sizeof scratch, &res) == 0)
		if (pw.pw_uid == uid)
			l->found = (size_t)snprintf(l->name, sizeof l->name, "%s", pw.pw_name) < sizeof l->name;
	fclose(f);
	return l->found;
}

static const struct lookup *keep(const struct lookup *answer)
{
	static struct lookup overflow;     /* the cache is full: the latest answer only */
	struct lookup *slot = ncached < CACHED ? &cache[ncached++] : &overflow;
	*slot = *answer;
	return slot;
}

/* Asks NSS in a worker, for at most USERS_WAIT_MS; NULL if it did not answer. */
static const struct lookup *ask(uid_t uid)
{
	struct lookup *l = calloc(1, sizeof *l);
	if (!l)
		abort();
	l->uid = uid;
	struct offload *o = tasks_offload(look_up, l, free);
	if (!o) {   /* no thread to be had: no name either, rather than a wait without an end */
		free(l);
		return NULL;
	}
	struct pollfd p = { .fd = tasks_offload_fd(o), .events = POLLIN };
	msec_t end = sched_now() + USERS_WAIT_MS;
	while (!tasks_offload_done(o) && sched_now() < end)
		poll(&p, 1, (int)(end - sched_now()));
	if (!tasks_offload_done(o)) {
		unanswered = o;
		return NULL;
	}
	struct lookup answer = *l;
	tasks_offload_release(o);          /* l goes with it */
	return keep(&answer);
}

bool users_name(uid_t uid, char *buf, size_t size)
{
	if (unanswered && tasks_offload_done(unanswered)) {
		tasks_offload_release(unanswered);
		unanswered = NULL;
	}
	const struct lookup *l = cached(uid);
	struct lookup local = { .uid = uid };
	if (!l && files_first() && from_etc_passwd(uid, &local))
		l = keep(&local);
	if (!l && !unanswered)
		l = ask(uid);
	if (l && l->found) {
		snprintf(buf, size, "%s", l->name);
		return true;
	}
	snprintf(buf, size, "uid %u", (unsigned)uid);
	return false;
}
