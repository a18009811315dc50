/*
 * leftovers.c - see leftovers.h.
 *
 * Attribution: a process in the command's session is its; so is an orphan re-parented to us
 * (our child, not a command we started) that started after the command did, unless another
 * command still running started before it: then it may be that one's, and goes when that one
 * ends. Descendants go with their ancestors. Killing is done in rounds until nothing attributed
 * is alive, since a killed parent's children are re-parented to us and only then visible as ours.
 */
#include "leftovers.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define SWEEP_MS    500     /* a leftover stuck in the kernel (D state) is given up after this */
#define MAX_ROUNDS  200

struct leader { pid_t pid; unsigned long long start; };
static struct leader *running;
static size_t nrunning, caprunning;

struct proc { pid_t pid, ppid, sid; unsigned long long start; char state; bool mark; };

static bool read_stat(pid_t pid, struct proc *p)
{
	char path[64], buf[1024];
	snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
	FILE *f = fopen(path, "re");
	if (!f)
		return false;
	size_t n = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	buf[n] = 0;
	char *s = strrchr(buf, ')');
	if (!s)
		return false;
	/* state ppid pgrp session tty_nr tpgid flags minflt cminflt majflt cmajflt utime stime cutime
	 * cstime priority nice num_threads itrealvalue starttime */
	int ppid, pgrp, sid;
	unsigned long long start;
	char state;
	if (sscanf(s + 2, "%c %d %d %d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d %*d %*d %*d %*d %*d %llu",
	           &state, &ppid, &pgrp, &sid, &start) != 5)
		return false;
	*p = (struct proc){ .pid = pid, .ppid = ppid, .sid = sid, .start = start, .state = state };
	return true;
}

static struct proc *scan(size_t *n)
{
	DIR *d = opendir("/proc");
	size_t cap = 512, k = 0;
	struct proc *ps = malloc(cap * sizeof *ps);
	if (!ps)
		abort();
	struct dirent *e;
	while (d && (e = readdir(d))) {
		if (!isdigit((unsigned char)e->d_name[0]))
			continue;
		if (k == cap && !(ps = realloc(ps, (cap *= 2) * sizeof *ps)))
			abort();
		if (read_stat((pid_t)atoi(e->d_name), &ps[k]))
			k++;
	}
	if (d)
		closedir(d);
	*n = k;
	return ps;
}

static const struct leader *find_running(pid_t pid)
{
	for (size_t i = 0; i < nrunning; i++)
		if (running[i].pid == pid)
			return &running[i];
	return NULL;
}

/* An orphan that another running command, started earlier, may have left: not this one's yet. */
static bool maybe_another(const struct leader *self, unsigned long long start)
{
	for (size_t i = 0; i < nrunning; i++)
		if (&running[i] != self && running[i].start <= start)
			return true;
	return false;
}

static void mark(struct proc *ps, size_t n, const struct leader *self, pid_t me)
{
	for (size_t i = 0; i < n; i++) {
		struct proc *p = &ps[i];
		p->mark = p->pid != self->pid && p->pid != me &&
		          (p->sid == self->pid ||
		           (p->ppid == me && !find_running(p->pid) && p->start >= self->start && !maybe_another(self, p->start)));
	}
	for (bool more = true; more;) {   /* descendants */
		more = false;
		for (size_t i = 0; i < n; i++) {
			if (ps[i].mark || ps[i].pid == me || find_running(ps[i].pid))
				continue;
			for (size_t j = 0; j < n && !ps[i].mark; j++)
				if (ps[j].mark && ps[j].pid == ps[i].ppid)
					ps[i].mark = more = true;
		}
	}
}

static unsigned long long msec_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (unsigned long long)ts.tv_sec * 1000 + (unsigned long long)ts.tv_nsec / 1000000;
}

static void set_subreaper(bool on)
{
	prctl(PR_SET_CHILD_SUBREAPER, on ? 1 : 0, 0, 0, 0);
}

void leftovers_started(pid_t leader)
{
	struct proc p;
	unsigned long long start = read_stat(leader, &p) ? p.start : 0;
	if (nrunning == caprunning) {
		caprunning = caprunning ? caprunning * 2 : 8;
		if (!(running = realloc(running, caprunning * sizeof *running)))
			abort();
	}
	if (nrunning == 0)
		set_subreaper(true);
	running[nrunning++] = (struct leader){ leader, start };
}

bool leftovers_ended(pid_t leader)
{
	struct leader *self = (struct leader *)find_running(leader);
	if (!self)
		return false;
	pid_t me = getpid();
	int killed = 0;
	unsigned long long end = msec_now() + SWEEP_MS;
	for (int round = 0; round < MAX_ROUNDS; round++) {
		size_t n;
		struct proc *ps = scan(&n);
		mark(ps, n, self, me);
		size_t alive = 0;
		for (size_t i = 0; i < n; i++) {
			struct proc *p = &ps[i];
			bool ours = p->ppid == me && !find_running(p->pid);
			if (p->state == 'Z') {
				if (ours)   /* a leftover already dead, or one we killed: reaped */
					while (waitpid(p->pid, NULL, WNOHANG) < 0 && errno == EINTR)
						;
			} else if (p->mark) {
				kill(p->pid, SIGKILL);
				killed++;
				alive++;
			}
		}
		free(ps);
		if (alive == 0 || msec_now() >= end)
			break;
		nanosleep(&(struct timespec){ .tv_nsec = 2 * 1000 * 1000 }, NULL);   /* the killed are on their way out */
	}
	*self = running[--nrunning];
	if (nrunning == 0)
		set_subreaper(false);
	return killed > 0;
}
