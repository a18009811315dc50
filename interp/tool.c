/* tool.c - see tool.h. */
#include "tool.h"
#include "sched.h"

#include <errno.h>
#include <fcntl.h>
#include <lauxlib.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static long long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void append(char **buf, size_t *len, const char *data, size_t n)
{
	if (*len + n > TOOL_OUTPUT_MAX)
		n = TOOL_OUTPUT_MAX - *len;
	char *grown = realloc(*buf, *len + n + 1);
	if (!grown)
		abort();
	memcpy(grown + *len, data, n);
	*len += n;
	grown[*len] = 0;
	*buf = grown;
}

void tool_spawnattr_init(posix_spawnattr_t *attr)
{
	posix_spawnattr_init(attr);
	sigset_t none, defaults;
	sigemptyset(&none);
	sigfillset(&defaults);
	posix_spawnattr_setsigmask(attr, &none);
	posix_spawnattr_setsigdefault(attr, &defaults);
	/* A session of its own: no controlling terminal to prompt on or to type into. */
	posix_spawnattr_setflags(attr, POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
}

static pid_t spawn(const char *const *argv, int in, int out, int err, char *why, size_t whylen)
{
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, in, 0);
	posix_spawn_file_actions_adddup2(&fa, out, 1);
	posix_spawn_file_actions_adddup2(&fa, err, 2);
	tool_spawnattr_init(&attr);
	pid_t pid = -1;
	int r = posix_spawnp(&pid, argv[0], &fa, &attr, (char *const *)argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&attr);
	if (r != 0) {
		snprintf(why, whylen, "cannot run %s: %s", argv[0], strerror(r));
		return -1;
	}
	return pid;
}

void tool_run(const char *const *argv, const char *in, size_t inlen, int timeout_ms, struct tool_result *r)
{
	memset(r, 0, sizeof *r);
	r->status = -1;
	append(&r->out, &r->out_len, "", 0);
	append(&r->err, &r->err_len, "", 0);
	int pin[2], pout[2], perr[2];
	if (pipe2(pin, O_CLOEXEC) != 0) {
		snprintf(r->why, sizeof r->why, "cannot run %s: %s", argv[0], strerror(errno));
		return;
	}
	if (pipe2(pout, O_CLOEXEC) != 0 || pipe2(perr, O_CLOEXEC) != 0) {
		snprintf(r->why, sizeof r->why, "cannot run %s: %s", argv[0], strerror(errno));
		close(pin[0]);
		close(pin[1]);
		return;
	}
	pid_t pid = spawn(argv, pin[0], pout[1], perr[1], r->why, sizeof r->why);
	close(pin[0]);
	close(pout[1]);
	close(perr[1]);
	if (pid < 0) {
		close(pin[1]);
		close(pout[0]);
		close(perr[0]);
		return;
	}
	fcntl(pin[1], F_SETFL, O_NONBLOCK);
	int fds[3] = { inlen ? pin[1] : -1, pout[0], perr[0] };
	if (!inlen)
		close(pin[1]);
	size_t sent = 0;
	long long deadline = now_ms() + timeout_ms;
	bool timed_out = false, interrupted = false;
	int presses = sched_interrupts();
	while (fds[0] >= 0 || fds[1] >= 0 || fds[2] >= 0) {
		long long left = deadline - now_ms();
		if (left <= 0) {
			timed_out = true;
			break;
		}
		struct pollfd p[3] = { { fds[0], POLLOUT, 0 }, { fds[1], POLLIN, 0 }, { fds[2], POLLIN, 0 } };
		int n = poll(p, 3, (int)left);
		if (sched_interrupts() != presses || sched_terminated()) {   /* Ctrl-C, SIGTERM: stop waiting */
			interrupted = true;
			break;
		}
		if (n < 0 && errno != EINTR)
			break;
		if (n <= 0)
			continue;
		if (fds[0] >= 0 && p[0].revents) {
			ssize_t w = write(fds[0], in + sent, inlen - sent);
			if (w > 0)
				sent += (size_t)w;
			if ((w < 0 && errno != EAGAIN && errno != EINTR) || sent == inlen) {
				close(fds[0]);
				fds[0] = -1;
			}
		}
		for (int i = 1; i < 3; i++) {
			if (fds[i] < 0 || !p[i].revents)
				continue;
			char buf[4096];
			ssize_t got = read(fds[i], buf, sizeof buf);
			if (got > 0) {
				if (i == 1)
					append(&r->out, &r->out_len, buf, (size_t)got);
				else
					append(&r->err, &r->err_len, buf, (size_t)got);
			} else if (got == 0 || (errno != EINTR && errno != EAGAIN)) {
				close(fds[i]);
				fds[i] = -1;
			}
		}
	}
	for (int i = 0; i < 3; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	if (timed_out || interrupted)
		kill(-pid, SIGKILL), kill(pid, SIGKILL);
	int st = 0, w;
	while ((w = waitpid(pid, &st, 0)) < 0 && errno == EINTR)
		;
	if (timed_out || interrupted || w < 0) {
		snprintf(r->why, sizeof r->why, timed_out ? "%s did not finish within %d ms" : interrupted ? "%s was interrupted"
		         : "%s could not be waited for", argv[0], timeout_ms);
		return;
	}
	r->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

void tool_free(struct tool_result *r)
{
	free(r->out);
	free(r->err);
	r->out = r->err = NULL;
}

int tool_lua(lua_State *L)
{
	luaL_checktype(L, 1, LUA_TTABLE);
	size_t inlen = 0;
	const char *in = luaL_optlstring(L, 2, "", &inlen);
	lua_Integer timeout = luaL_optinteger(L, 3, 10000);
	lua_Integer n = luaL_len(L, 1);
	luaL_argcheck(L, n >= 1 && n < 64, 1, "argv of 1 to 63 words");
	const char *argv[64];
	for (lua_Integer i = 1; i <= n; i++) {
		lua_rawgeti(L, 1, i);
		argv[i - 1] = luaL_checkstring(L, -1);   /* stays on the stack until we return */
	}
	argv[n] = NULL;
	struct tool_result r;
	tool_run(argv, in, inlen, (int)timeout, &r);
	if (r.status < 0) {
		lua_pushnil(L);
		lua_pushstring(L, r.why);
		lua_pushstring(L, "tool");
		tool_free(&r);
		return 3;
	}
	lua_pushinteger(L, r.status);
	lua_pushlstring(L, r.out, r.out_len);
	lua_pushlstring(L, r.err, r.err_len);
	tool_free(&r);
	return 3;
}
