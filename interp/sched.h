/*
 * sched.h - time and waiting: the monotonic clock, deadlines, the one poll loop, Ctrl-C.
 *
 * Every primitive that waits (a child process, a socket, a pause between retries) waits here,
 * so that one place enforces the --timeout cap and notices Ctrl-C. The Lua side never blocks
 * anywhere else. Issue 3 extends sched_poll() to coroutines waiting on sockets; the contract
 * stays: a wait ends when its fds are ready, its deadline passes or the operator interrupts.
 */
#ifndef SCHED_H
#define SCHED_H

#include <poll.h>
#include <stdbool.h>
#include <stdint.h>

typedef int64_t msec_t;

enum sched_wait { SCHED_READY, SCHED_TIMEOUT, SCHED_INTERRUPTED };

void   sched_init(void);                  /* SIGINT/SIGTERM handlers and the self-pipe */
msec_t sched_now(void);                   /* CLOCK_MONOTONIC in milliseconds */
double sched_now_precise(void);           /* CLOCK_MONOTONIC in (fractional) milliseconds */
void   sched_set_cap(msec_t cap_ms);      /* --timeout: no primitive waits longer; 0 = none */
msec_t sched_cap(void);
msec_t sched_deadline(msec_t timeout_ms); /* now + min(timeout, cap) */

/* Waits until one of fds is ready, the deadline passes or Ctrl-C is pressed. */
enum sched_wait sched_poll(struct pollfd *fds, int nfds, msec_t deadline);
enum sched_wait sched_sleep_until(msec_t deadline);

/* Ctrl-C: the handler counts presses; the engine consumes them between steps. */
bool sched_interrupted(void);
int  sched_interrupts(void);             /* presses since the last clear */
void sched_clear_interrupt(void);
void sched_disarm(void);                 /* stops the Lua hook, keeps the count */
bool sched_terminated(void);             /* SIGTERM or SIGHUP: end the run, close the transcript */

/* arm is called from the signal handler (async-signal-safe work only: it arms a Lua hook so that
 * a loop that never returns to C stops too); disarm from sched_clear_interrupt(). */
void sched_on_interrupt(void (*arm)(void), void (*disarm)(void));
/* The signals so far have been noticed (a Lua hook ran, a wait returned INTERRUPTED). */
void sched_honoured(void);
/* fn(sig) runs on a watchdog thread when a second Ctrl-C, a SIGTERM or a SIGHUP is not honoured
 * within a second (the main thread is inside a long C call): it must end the process. */
void sched_on_unresponsive(void (*fn)(int sig));

#endif
