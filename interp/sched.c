/*
 * sched.c - the monotonic clock, deadlines, the poll loop and the interrupt flag.
 *
 * SIGINT is caught (never ignored): the handler bumps a counter, writes a byte to a self-pipe
 * so that a poll() in progress wakes at once, and calls the host's hook so that a Lua loop that
 * never returns to C is stopped too. Waiting code checks the counter; nothing longjmps out of a
 * handler.
 *
 * A hook only runs between Lua instructions: a call that runs long inside C (string.find with
 * many .-, a huge string.rep or table.concat) does not notice it. So a second Ctrl-C, or a SIGTERM
 * or SIGHUP, that nothing honours (no hook ran, no wait saw it) within UNHONOURED_MS is handed to
 * a watchdog thread, which calls the host's last resort (main.c: closes the transcript saying so,
 * ends the process).
 */
#include "sched.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t interrupts;
static volatile sig_atomic_t terminated;
static int wake_pipe[2] = { -1, -1 };
static msec_t cap_ms;
static void (*interrupt_hook)(void);
static void (*disarm_hook)(void);

#define UNHONOURED_MS 1000
static volatile sig_atomic_t signals_seen, signals_honoured, last_signal;
static int watch_pipe[2] = { -1, -1 };
static void (*unresponsive)(int sig);

static void on_signal(int sig)
{
	int saved = errno;
	if (sig == SIGINT)
		interrupts++;
	else
		terminated = 1;
	if (wake_pipe[1] >= 0) {
		char c = 0;
		ssize_t w = write(wake_pipe[1], &c, 1);
		(void)w;
	}
	if (interrupt_hook)
		interrupt_hook();
	signals_seen = signals_seen + 1;
	if ((sig != SIGINT || interrupts >= 2) && watch_pipe[1] >= 0) {
		last_signal = sig;
		char c = 0;
		ssize_t w = write(watch_pipe[1], &c, 1);
		(void)w;
	}
	errno = saved;
}

void sched_honoured(void) { signals_honoured = signals_seen; }

static void *watchdog(void *arg)
{
	(void)arg;
	for (;;) {
		char c;
		ssize_t r = read(watch_pipe[0], &c, 1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return NULL;
		int seen = signals_seen;
		msec_t end = sched_now() + UNHONOURED_MS;
		while (signals_honoured < seen && sched_now() < end)
			nanosleep(&(struct timespec){ .tv_nsec = 20 * 1000 * 1000 }, NULL);
		if (signals_honoured < seen && unresponsive)
			unresponsive(last_signal);
	}
}

void sched_on_unresponsive(void (*fn)(int sig))
{
	unresponsive = fn;
	if (watch_pipe[0] >= 0 || pipe2(watch_pipe, O_CLOEXEC) != 0)
		return;
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);   /* the signals stay the main thread's */
	pthread_t t;
	if (pthread_create(&t, NULL, watchdog, NULL) == 0)
		pthread_detach(t);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
}

void sched_init(void)
{
	if (wake_pipe[0] < 0 && pipe2(wake_pipe, O_CLOEXEC | O_NONBLOCK) != 0)
		wake_pipe[0] = wake_pipe[1] = -1;
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
}

void sched_on_interrupt(void (*arm)(void), void (*disarm)(void))
{
	interrupt_hook = arm;
	disarm_hook = disarm;
}

msec_t sched_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (msec_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

double sched_now_precise(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

void   sched_set_cap(msec_t ms) { cap_ms = ms > 0 ? ms : 0; }
msec_t sched_cap(void) { return cap_ms; }

msec_t sched_deadline(msec_t timeout_ms)
{
	if (cap_ms > 0 && (timeout_ms <= 0 || timeout_ms > cap_ms))
		timeout_ms = cap_ms;
	return sched_now() + timeout_ms;
}

bool sched_interrupted(void) { return interrupts > 0 || terminated; }
int  sched_interrupts(void) { return interrupts; }
bool sched_terminated(void) { return terminated; }

static void drain_wake_pipe(void)
{
	char buf[64];
	while (wake_pipe[0] >= 0 && read(wake_pipe[0], buf, sizeof buf) > 0)
		;
}

void sched_disarm(void)
{
	if (disarm_hook)
		disarm_hook();
}

void sched_clear_interrupt(void)
{
	sched_honoured();
	interrupts = 0;
	drain_wake_pipe();
	if (disarm_hook)
		disarm_hook();
}

static enum sched_wait poll_until(struct pollfd *set, struct pollfd *fds, int nfds, msec_t deadline)
{
	for (;;) {
		if (sched_interrupted()) {
			sched_honoured();
			return SCHED_INTERRUPTED;
		}
		msec_t left = deadline - sched_now();
		if (left <= 0)
			return SCHED_TIMEOUT;
		if (nfds > 0)
			memcpy(set, fds, sizeof *fds * (size_t)nfds);
		set[nfds] = (struct pollfd){ .fd = wake_pipe[0], .events = POLLIN };
		int n = poll(set, (nfds_t)nfds + 1, left > 1000000 ? 1000000 : (int)left);
		if (n < 0 && errno != EINTR)
			return SCHED_TIMEOUT;
		if (n <= 0)
			continue;
		if (set[nfds].revents)
			drain_wake_pipe();
		bool ready = false;
		for (int i = 0; i < nfds; i++) {
			fds[i].revents = set[i].revents;
			ready |= set[i].revents != 0;
		}
		if (ready)
			return SCHED_READY;
	}
}

/*
 * Polls fds plus the self-pipe. Returns READY as soon as any of fds has an event, TIMEOUT once
 * the deadline has passed (checked before sleeping, so a past deadline never blocks), and
 * INTERRUPTED while a Ctrl-C is pending.
 */
enum sched_wait sched_poll(struct pollfd *fds, int nfds, msec_t deadline)
{
	enum { SMALL = 16 };
	struct pollfd small[SMALL + 1];
	struct pollfd *set = nfds < SMALL ? small : malloc(((size_t)nfds + 1) * sizeof *set);
	if (!set)
		abort();
	enum sched_wait how = poll_until(set, fds, nfds, deadline);
	if (set != small)
		free(set);
	return how;
}

enum sched_wait sched_sleep_until(msec_t deadline)
{
	enum sched_wait w = sched_poll(NULL, 0, deadline);
	return w == SCHED_TIMEOUT ? SCHED_READY : w;
}
