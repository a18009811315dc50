/*
 * leftovers.c - see leftovers.h.
 *
 * Attribution: a process in the command's session is its; so is an orphan re-parented to us
 * (our child, not a command we started) that started after the command did, unless another
 * command still running started before it: then it may be that one's, and goes when that one
 * ends. Descendants go with their ancestors. Killing is done in rounds until a round finds nothing
 * new, since a process forking meanwhile has children the previous round did not see.
 *
 * Once the leader has exited, anything it left alive is below one of our children (its own
 * children were re-parented to us): those trees are read from /proc/PID/task/TID/children, and
 * when we have no child but the commands' leaders (most commands leave nothing) there is nothing
 * to read. Only a leader stuck in the kernel, or a kernel without those files, makes us walk all
 * of /proc.
 */
#include "leftovers.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
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
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	ssize_t n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n <= 0)
		return false;
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

struct pids { pid_t *v; size_t n, cap; };

static bool contains(const pid_t *set, size_t n, pid_t pid)
{
	for (size_t i = 0; i < n; i++)
		if (set[i] == pid)
			return true;
	return false;
}

static void push(struct pids *l, pid_t pid)
{
	if (l->n == l->cap && !(l->v = realloc(l->v, (l->cap = l->cap * 2 + 16) * sizeof *l->v)))
		abort();
	l->v[l->n++] = pid;
}

/* The children of pid ("self": ours), from /proc/PID/task/TID/children: those of every thread
 * (orphans are re-parented to any thread of a subreaper). False when /proc cannot tell (a kernel
 * without CONFIG_PROC_CHILDREN) or there were too many to read here. */
static bool children_of(const char *pid, struct pids *out)
{
	char path[320];
	snprintf(path, sizeof path, "/proc/%s/task", pid);
	DIR *d = opendir(path);
	if (!d)
		return false;
	bool ok = false, whole = true;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (!isdigit((unsigned char)e->d_name[0]))
			continue;
		char buf[4096];
		snprintf(path, sizeof path, "/proc/%s/task/%s/children", pid, e->d_name);
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue;
		ssize_t n = read(fd, buf, sizeof buf - 1);
		close(fd);
		ok = true;
		if (n < 0)
			n = 0;
		whole &= (size_t)n < sizeof buf - 1;
		buf[n] = 0;
		char *p = buf, *end;
		for (long c; (c = strtol(p, &end, 10)) > 0; p = end)
			push(out, (pid_t)c);
	}
	closedir(d);
	return ok && whole;
}

/* Our children that are not running commands' leaders and are alive (the dead are reaped here).
 * False when /proc cannot tell. */
static bool list_strays(struct pids *out)
{
	struct pids kids = { 0 };
	bool ok = children_of("self", &kids);
	for (size_t i = 0; i < kids.n; i++) {
		if (find_running(kids.v[i]))
			continue;
		pid_t r;
		while ((r = waitpid(kids.v[i], NULL, WNOHANG)) < 0 && errno == EINTR)
			;
		if (r == 0)
			push(out, kids.v[i]);
	}
	free(kids.v);
	return ok;
}

static bool has_strays(void)
{
	struct pids strays = { 0 };
	bool ok = list_strays(&strays);
	free(strays.v);
	return !ok || strays.n > 0;
}

/* SIGKILLs root and everything below it (each one's children read before it is killed; one
 * forked meanwhile is re-parented to us, and found by the next round). */
static void kill_tree(pid_t root, struct pids *killed, bool *new_ones)
{
	struct pids todo = { 0 };
	push(&todo, root);
	while (todo.n > 0) {
		pid_t pid = todo.v[--todo.n];
		char name[24];
		snprintf(name, sizeof name, "%d", (int)pid);
		children_of(name, &todo);
		kill(pid, SIGKILL);
		if (!contains(killed->v, killed->n, pid)) {
			push(killed, pid);
			*new_ones = true;
		}
	}
	free(todo.v);
}

/* With the leader gone, all it left alive is below our strays: those of self's (by session, or
 * started since it did and no other running command's) are ended with their trees. False when
 * /proc cannot tell (then the caller walks it all). */
static bool end_below_strays(const struct leader *self, struct pids *killed)
{
	for (int round = 0; round < MAX_ROUNDS; round++) {
		struct pids strays = { 0 };
		if (!list_strays(&strays)) {
			free(strays.v);
			return false;
		}
		bool new_ones = false;
		for (size_t i = 0; i < strays.n; i++) {
			struct proc p;
			if (!read_stat(strays.v[i], &p))
				continue;
			bool its = p.sid == self->pid ||
			           (!find_running(p.sid) && p.start >= self->start && !maybe_another(self, p.start));
			if (its)
				kill_tree(p.pid, killed, &new_ones);
		}
		free(strays.v);
		if (!new_ones)
			break;
	}
	return true;
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
static struct pids frozen;

/* kill(SIGSTOP) returns before the process stops: until the kernel has stopped it, it still runs
 * (and could type into the terminal the question is then asked on). The gate asks only once every
 * process is stopped or gone, for STOP_WAIT_MS at the most (one in uninterruptible sleep stops
 * only when it leaves it: it cannot type meanwhile either). */
#define STOP_WAIT_MS 500

static void wait_until_stopped(const pid_t *v, size_t n)
{
	for (int waited = 0; waited < STOP_WAIT_MS; waited++) {
		bool awake = false;
		for (size_t i = 0; i < n && !awake; i++) {
			struct proc p;
			awake = read_stat(v[i], &p) && (p.state == 'R' || p.state == 'S');
		}
		if (!awake)
			return;
		nanosleep(&(struct timespec){ .tv_nsec = 1000000 }, NULL);
	}
}

void leftovers_freeze(void)
{
	if (nrunning == 0 && !has_strays())
		return;
	pid_t me = getpid();
	for (int round = 0; round < MAX_ROUNDS; round++) {
		size_t n;
		struct proc *ps = scan(&n);
		mark_all(ps, n, me);
		bool new_ones = false;
		for (size_t i = 0; i < n; i++) {
			if (!ps[i].mark || ps[i].state == 'Z' || contains(frozen.v, frozen.n, ps[i].pid))
				continue;
			if (kill(ps[i].pid, SIGSTOP) != 0)
				continue;
			push(&frozen, ps[i].pid);
			new_ones = true;
		}
		free(ps);
		if (!new_ones)
			break;
	}
	wait_until_stopped(frozen.v, frozen.n);
}

void leftovers_thaw(void)
{
	for (size_t i = 0; i < frozen.n; i++)
		kill(frozen.v[i], SIGCONT);
	free(frozen.v);
	frozen = (struct pids){ 0 };
}

/* The leader is stuck in the kernel (or /proc cannot list children): all of /proc is walked. */
static void end_by_walk(const struct leader *self, struct pids *killed)
{
	pid_t me = getpid();
	for (int round = 0; round < MAX_ROUNDS; round++) {
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
				if (!contains(killed->v, killed->n, p->pid)) {
					push(killed, p->pid);
					new_ones = true;
				}
			}
		}
		free(ps);
		if (!new_ones)
			break;
	}
}

bool leftovers_ended(pid_t leader)
{
	struct leader *self = (struct leader *)find_running(leader);
	if (!self)
		return false;
	struct pids killed = { 0 };
	if (!self->keep && (!exited(leader) || !end_below_strays(self, &killed)))
		end_by_walk(self, &killed);
	reap_killed(killed.v, killed.n);
	free(killed.v);
	bool any = killed.n > 0;
	*self = running[--nrunning];
	update_subreaper(false);
	return any;
}
