/*
 * leftovers.c - see leftovers.h.
 *
 * Attribution: a process in the command's session is its; so is an orphan re-parented to us
 * (our child, not a command we started) that started after the command did, unless another
 * command still running started before it: then it may be that one's, and goes when that one
 * ends. Descendants go with their ancestors. Killing is done in rounds until a round finds nothing
 * new, since a process forking meanwhile has children the previous round did not see.
 *
 * Most commands leave nothing: once the leader has exited, anything it left alive is below one of
 * our children (its own children were re-parented to us), so when we have no child but the
 * commands' leaders, there is nothing to look for, and /proc is not walked.
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

#define MAX_ROUNDS  50

struct leader { pid_t pid; unsigned long long start; bool keep; };
static struct leader *running;
static size_t nrunning, caprunning;
static bool keep_all;   /* the lab's own setup commands: the daemons they start are the point */

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

static void mark_descendants(struct proc *ps, size_t n, pid_t me, bool leaders_too)
{
	for (bool more = true; more;) {
		more = false;
		for (size_t i = 0; i < n; i++) {
			if (ps[i].mark || ps[i].pid == me || (!leaders_too && find_running(ps[i].pid)))
				continue;
			for (size_t j = 0; j < n && !ps[i].mark; j++)
				if (ps[j].mark && ps[j].pid == ps[i].ppid)
					ps[i].mark = more = true;
		}
	}
}

/* What self left behind (see the top of this file). */
static void mark(struct proc *ps, size_t n, const struct leader *self, pid_t me)
{
	for (size_t i = 0; i < n; i++) {
		struct proc *p = &ps[i];
		p->mark = p->pid != self->pid && p->pid != me &&
		          (p->sid == self->pid ||
		           (p->ppid == me && !find_running(p->pid) && p->start >= self->start && !maybe_another(self, p->start)));
	}
	mark_descendants(ps, n, me, false);
}

/* Every process of every running command, and whatever was left to us. */
static void mark_all(struct proc *ps, size_t n, pid_t me)
{
	for (size_t i = 0; i < n; i++) {
		struct proc *p = &ps[i];
		p->mark = p->pid != me && (p->ppid == me || find_running(p->sid));
	}
	mark_descendants(ps, n, me, true);
}

/* Whether we have a child that is not a running command's leader; true when /proc cannot tell
 * (a kernel without /proc/PID/task/TID/children). Orphans are re-parented to any of our threads. */
static bool has_strays(void)
{
	DIR *d = opendir("/proc/self/task");
	if (!d)
		return true;
	bool found = false, readable = false;
	struct dirent *e;
	while (!found && (e = readdir(d))) {
		if (!isdigit((unsigned char)e->d_name[0]))
			continue;
		char path[320], buf[4096];
		snprintf(path, sizeof path, "/proc/self/task/%s/children", e->d_name);
		FILE *f = fopen(path, "re");
		if (!f)
			continue;
		readable = true;
		size_t n = fread(buf, 1, sizeof buf - 1, f);
		bool full = n == sizeof buf - 1;
		fclose(f);
		buf[n] = 0;
		char *p = buf, *end;
		for (long pid; (pid = strtol(p, &end, 10)) > 0; p = end)
			if (!find_running((pid_t)pid))
				found = true;
		found |= full;   /* too many to read here: look */
	}
	closedir(d);
	return found || !readable;
}

static bool exited(pid_t pid)
{
	siginfo_t si = { 0 };
	return waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT) == 0 && si.si_pid == pid;
}

/* Reaps the killed that are our children, waiting up to REAP_MS for them to die (a zombie still
 * answers kill -0); what is left (stuck in the kernel, or a grandchild whose parent was killed) is
 * reaped at the next command's end. */
#define REAP_MS 200
static void reap_killed(pid_t *killed, size_t n)
{
	struct timespec t0, now;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		size_t left = 0;
		for (size_t i = 0; i < n; i++) {
			if (killed[i] <= 0)
				continue;
			pid_t r;
			while ((r = waitpid(killed[i], NULL, WNOHANG)) < 0 && errno == EINTR)
				;
			if (r == 0)
				left++;
			else
				killed[i] = 0;   /* reaped, or not our child */
		}
		clock_gettime(CLOCK_MONOTONIC, &now);
		if (left == 0 || (now.tv_sec - t0.tv_sec) * 1000 + (now.tv_nsec - t0.tv_nsec) / 1000000 >= REAP_MS)
			return;
		nanosleep(&(struct timespec){ .tv_nsec = 1000 * 1000 }, NULL);
	}
}

static bool contains(const pid_t *set, size_t n, pid_t pid)
{
	for (size_t i = 0; i < n; i++)
		if (set[i] == pid)
			return true;
	return false;
}

/* A subreaper while a command whose leftovers are ended runs: a kept command's daemons go to
 * init, as they would without runbook. */
static void update_subreaper(bool spawning_watched)
{
	bool on = spawning_watched;
	for (size_t i = 0; i < nrunning && !on; i++)
		on = !running[i].keep;
	prctl(PR_SET_CHILD_SUBREAPER, on ? 1 : 0, 0, 0, 0);
}

void leftovers_keep_all(bool on) { keep_all = on; }

bool leftovers_spawning(bool keep)
{
	keep |= keep_all;
	update_subreaper(!keep);
	return keep;
}

void leftovers_started(pid_t leader, bool keep)
{
	struct proc p;
	unsigned long long start = read_stat(leader, &p) ? p.start : 0;
	if (nrunning == caprunning) {
		caprunning = caprunning ? caprunning * 2 : 8;
		if (!(running = realloc(running, caprunning * sizeof *running)))
			abort();
	}
	if (leader > 0)   /* else it could not be started */
		running[nrunning++] = (struct leader){ leader, start, keep };
	update_subreaper(false);
}

/*
 * While the operator is asked, nothing a command started may run: inside parallel() another task's
 * command can still be running, and as root (CAP_SYS_ADMIN) TIOCSTI types into any terminal, a
 * controlling one or not. Everything is stopped (SIGSTOP, in rounds until nothing new is found: a
 * process forking meanwhile), then continued after the answer.
 */
static pid_t *frozen;
static size_t nfrozen;

void leftovers_freeze(void)
{
	if (nrunning == 0 && !has_strays())
		return;
	pid_t me = getpid();
	size_t cap = nfrozen;
	for (int round = 0; round < MAX_ROUNDS; round++) {
		size_t n;
		struct proc *ps = scan(&n);
		mark_all(ps, n, me);
		bool new_ones = false;
		for (size_t i = 0; i < n; i++) {
			if (!ps[i].mark || ps[i].state == 'Z' || contains(frozen, nfrozen, ps[i].pid))
				continue;
			if (kill(ps[i].pid, SIGSTOP) != 0)
				continue;
			if (nfrozen == cap && !(frozen = realloc(frozen, (cap = cap * 2 + 16) * sizeof *frozen)))
				abort();
			frozen[nfrozen++] = ps[i].pid;
			new_ones = true;
		}
		free(ps);
		if (!new_ones)
			break;
	}
}

void leftovers_thaw(void)
{
	for (size_t i = 0; i < nfrozen; i++)
		kill(frozen[i], SIGCONT);
	free(frozen);
	frozen = NULL;
	nfrozen = 0;
}

bool leftovers_ended(pid_t leader)
{
	struct leader *self = (struct leader *)find_running(leader);
	if (!self)
		return false;
	pid_t me = getpid();
	pid_t *killed = NULL;
	size_t nkilled = 0, capkilled = 0;
	bool look = !self->keep && (!exited(leader) || has_strays());
	for (int round = 0; look && round < MAX_ROUNDS; round++) {
		size_t n;
		struct proc *ps = scan(&n);
		mark(ps, n, self, me);
		bool new_ones = false;
		for (size_t i = 0; i < n; i++) {
			struct proc *p = &ps[i];
			if (p->state == 'Z') {
				if (p->ppid == me && !find_running(p->pid))   /* a leftover already dead, or one killed before */
					while (waitpid(p->pid, NULL, WNOHANG) < 0 && errno == EINTR)
						;
			} else if (p->mark) {
				kill(p->pid, SIGKILL);
				if (!contains(killed, nkilled, p->pid)) {
					if (nkilled == capkilled && !(killed = realloc(killed, (capkilled = capkilled * 2 + 16) * sizeof *killed)))
						abort();
					killed[nkilled++] = p->pid;
					new_ones = true;
				}
			}
		}
		free(ps);
		look = new_ones;
	}
	reap_killed(killed, nkilled);
	free(killed);
	*self = running[--nrunning];
	update_subreaper(false);
	return nkilled > 0;
}
