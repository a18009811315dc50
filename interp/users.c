/*
 * users.c - user names for uids; see users.h.
 */
#include "users.h"
#include "tasks.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pwd.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct lookup {
	uid_t uid;
	bool found;
	char name[64];
	char home[256];
};

static void take_entry(struct lookup *l, const struct passwd *pw)
{
	l->found = (size_t)snprintf(l->name, sizeof l->name, "%s", pw->pw_name) < sizeof l->name &&
	           (size_t)snprintf(l->home, sizeof l->home, "%s", pw->pw_dir) < sizeof l->home;
}

static void ask_nss(void *arg)
{
	struct lookup *l = arg;
	struct passwd pw, *res = NULL;
	for (size_t size = 2048; size <= 65536; size *= 4) {   /* ERANGE: an entry longer than the buffer */
		char *scratch = malloc(size);
		if (!scratch)
			abort();
		int rc = getpwuid_r(l->uid, &pw, scratch, size, &res);
		if (rc == 0 && res)
			take_entry(l, &pw);
		free(scratch);
		if (rc != ERANGE)
			return;
	}
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

static const struct lookup *keep(const struct lookup *answer)
{
	static int evict;                  /* the cache is full: the oldest answer goes */
	struct lookup *slot = ncached < CACHED ? &cache[ncached++] : &cache[evict++ % CACHED];
	*slot = *answer;
	return slot;
}

/* path opened for reading if it is a regular file; opened without blocking, so not a FIFO. */
static FILE *open_regular(const char *path)
{
	int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	struct stat st;
	FILE *f = fd >= 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode) ? fdopen(fd, "r") : NULL;
	if (!f && fd >= 0)
		close(fd);
	return f;
}

/* Whether passwd's first source in nsswitch.conf is "files": NSS then answers a user of /etc/passwd
 * from that file, and so can this process, without a thread. */
static bool files_first(void)
{
	static int first = -1;
	if (first >= 0)
		return first;
	first = 0;
	FILE *f = open_regular("/etc/nsswitch.conf");
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

static bool from_etc_passwd(uid_t uid, struct lookup *l)
{
	FILE *f = open_regular("/etc/passwd");
	if (!f)
		return false;
	struct passwd pw, *res = NULL;
	char scratch[2048];
	while (!l->found && fgetpwent_r(f, &pw, scratch, sizeof scratch, &res) == 0)
		if (pw.pw_uid == uid)
			take_entry(l, &pw);
	fclose(f);
	return l->found;
}

/* Forgets the lookup NSS had not answered once it has ended, keeping its answer. */
static void collect_late_answer(void)
{
	if (!unanswered || !tasks_offload_done(unanswered))
		return;
	const struct lookup *late = tasks_offload_arg(unanswered);
	if (!cached(late->uid))
		keep(late);
	tasks_offload_release(unanswered);
	unanswered = NULL;
}

/* Asks NSS in a worker until the deadline; NULL if it did not answer by then. */
static const struct lookup *ask(uid_t uid, msec_t deadline)
{
	if (deadline <= sched_now())   /* no time left: no thread either */
		return NULL;
	struct lookup *l = calloc(1, sizeof *l);
	if (!l)
		abort();
	l->uid = uid;
	struct offload *o = tasks_offload(ask_nss, l, free);
	if (!o) {   /* no thread to be had: no name either, rather than a wait without an end */
		free(l);
		return NULL;
	}
	struct pollfd p = { .fd = tasks_offload_fd(o), .events = POLLIN };
	sched_poll(&p, 1, deadline);   /* ends early on Ctrl-C: the name is not worth the wait */
	if (!tasks_offload_done(o)) {
		unanswered = o;
		return NULL;
	}
	const struct lookup *answer = keep(l);
	tasks_offload_release(o);      /* l goes with it */
	return answer;
}

/* uid's entry (cached, from /etc/passwd or NSS), or NULL when NSS did not answer by the deadline. */
static const struct lookup *entry(uid_t uid, msec_t deadline)
{
	msec_t latest = sched_now() + USERS_WAIT_MS;
	collect_late_answer();
	const struct lookup *l = cached(uid);
	struct lookup local = { .uid = uid };
	if (!l && files_first() && from_etc_passwd(uid, &local))
		l = keep(&local);
	if (!l && !unanswered)
		l = ask(uid, deadline > 0 && deadline < latest ? deadline : latest);
	return l;
}

enum user_lookup users_name(uid_t uid, char *buf, size_t size, msec_t deadline)
{
	const struct lookup *l = entry(uid, deadline);
	if (l && l->found) {
		snprintf(buf, size, "%s", l->name);
		return USER_FOUND;
	}
	snprintf(buf, size, "uid %u", (unsigned)uid);
	return l ? USER_UNKNOWN : USER_SILENT;
}

enum user_lookup users_home(uid_t uid, char *buf, size_t size, msec_t deadline)
{
	const struct lookup *l = entry(uid, deadline);
	buf[0] = '\0';
	if (l && l->found)
		snprintf(buf, size, "%s", l->home);
	return l && l->found ? USER_FOUND : l ? USER_UNKNOWN : USER_SILENT;
}

const char *users_home_dir(msec_t deadline)
{
	static char account[256];   /* the answers are cached: asking again costs nothing */
	const char *home = getenv("HOME");
	if (home && *home)
		return home;
	return users_home(geteuid(), account, sizeof account, deadline) == USER_FOUND && account[0] == '/' ? account : NULL;
}

const char *users_self(void)
{
	static char name[80];
	if (!name[0])
		users_name(getuid(), name, sizeof name, 0);
	return name;
}
