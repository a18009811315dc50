/* lockfile.c - see lockfile.h. */
#include "lockfile.h"
#include "luax.h"

#include <errno.h>
#include <fcntl.h>
#include <lauxlib.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define LOCK_MT "runbook.lockfile"
#define MAX_DETAILS 65536
#define MAX_TRIES 20

struct lock {
	int fd;
	dev_t dev;
	ino_t ino;
	char *path;
};

/* The whole content of fd (from offset 0, at most MAX_DETAILS bytes), pushed as a string. */
static void push_content(lua_State *L, int fd)
{
	luaL_Buffer b;
	luaL_buffinit(L, &b);
	off_t off = 0;
	while (off < MAX_DETAILS) {
		char *p = luaL_prepbuffer(&b);
		ssize_t n = pread(fd, p, LUAL_BUFFERSIZE, off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		luaL_addsize(&b, (size_t)n);
		off += n;
	}
	luaL_pushresult(&b);
}

static bool same_file(int fd, const char *path, struct stat *mine)
{
	struct stat there;
	return fstat(fd, mine) == 0 && stat(path, &there) == 0 && mine->st_dev == there.st_dev &&
	       mine->st_ino == there.st_ino;
}

/*
 * Replaces the content of the file we now hold with details. Not fsynced: the details only mean
 * something while our flock is held, and a crash that could lose them releases the flock too.
 * (An fsync here cost 5 ms of every session's start on this project's VM.)
 */
static int write_details(int fd, const char *details, size_t n)
{
	if (ftruncate(fd, 0) != 0)
		return -1;
	size_t off = 0;
	while (off < n) {
		ssize_t w = pwrite(fd, details + off, n - off, (off_t)off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		off += (size_t)w;
	}
	return 0;
}

/*
 * Takes the lock at path without waiting (the caller polls, so that Ctrl-C and --lock-timeout stay
 * in its hands). A file removed between our open and our flock (its holder released it, or
 * `runbook unlock` removed it) is not the lock any more: we retry on whatever is at path now.
 */
static int lockfile_acquire(lua_State *L)
{
	const char *path = luaL_checkstring(L, 1);
	size_t n;
	const char *details = luaL_checklstring(L, 2, &n);
	struct lock *lk = lua_newuserdatauv(L, sizeof *lk, 0);
	lk->fd = -1;
	lk->path = NULL;
	luaL_setmetatable(L, LOCK_MT);
	for (int tries = 0; tries < MAX_TRIES; tries++) {
		int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
		if (fd < 0)
			return luax_fail(L, "error", "cannot open the lock file %s: %s", path, strerror(errno));
		if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
			int e = errno;
			if (e == EWOULDBLOCK) {
				lua_pushnil(L);
				push_content(L, fd);
				lua_pushliteral(L, "held");
				close(fd);
				return 3;
			}
			close(fd);
			return luax_fail(L, "error", "cannot lock %s: %s", path, strerror(e));
		}
		struct stat st;
		if (!same_file(fd, path, &st)) {
			close(fd);
			continue;
		}
		push_content(L, fd);   /* what a stale holder left, or "" */
		if (write_details(fd, details, n) != 0) {
			int e = errno;
			unlink(path);
			close(fd);
			return luax_fail(L, "error", "cannot write the lock file %s: %s", path, strerror(e));
		}
		lk->path = strdup(path);
		if (!lk->path)
			abort();
		lk->fd = fd;
		lk->dev = st.st_dev;
		lk->ino = st.st_ino;
		lua_pushvalue(L, -2);   /* handle */
		lua_insert(L, -2);      /* handle, previous */
		return 2;
	}
	return luax_fail(L, "error", "cannot lock %s: the file keeps being replaced", path);
}

static void release(struct lock *lk)
{
	if (lk->fd < 0)
		return;
	struct stat there;
	if (stat(lk->path, &there) == 0 && there.st_dev == lk->dev && there.st_ino == lk->ino)
		unlink(lk->path);   /* still ours: `runbook unlock` did not replace it */
	close(lk->fd);
	lk->fd = -1;
	free(lk->path);
	lk->path = NULL;
}

static int lock_release(lua_State *L)
{
	release(luaL_checkudata(L, 1, LOCK_MT));
	return 0;
}

static int lock_tostring(lua_State *L)
{
	struct lock *lk = luaL_checkudata(L, 1, LOCK_MT);
	if (lk->fd < 0)
		lua_pushliteral(L, "lock (released)");
	else
		lua_pushfstring(L, "lock %s", lk->path);
	return 1;
}

/* Whether a live process holds the lock: a shared lock we cannot get means an exclusive holder. */
static int lockfile_held(lua_State *L)
{
	const char *path = luaL_checkstring(L, 1);
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0) {
		if (errno == ENOENT) {
			lua_pushboolean(L, 0);
			return 1;
		}
		return luax_fail(L, "error", "cannot open the lock file %s: %s", path, strerror(errno));
	}
	int held = flock(fd, LOCK_SH | LOCK_NB) != 0 && errno == EWOULDBLOCK;
	close(fd);   /* also drops the shared lock if we got it */
	lua_pushboolean(L, held);
	return 1;
}

static int lockfile_alive(lua_State *L)
{
	lua_Integer pid = luaL_checkinteger(L, 1);
	luaL_argcheck(L, pid > 0 && pid <= 0x7fffffff, 1, "not a process id");
	lua_pushboolean(L, kill((pid_t)pid, 0) == 0 || errno == EPERM);
	return 1;
}

/* mkdir -p with mode 0700 for the directories that do not exist yet. */
static int lockfile_mkdir(lua_State *L)
{
	size_t n;
	const char *path = luaL_checklstring(L, 1, &n);
	char *dir = strdup(path);
	if (!dir)
		abort();
	int r = 0;
	for (char *p = dir + 1; *p && r == 0; p++) {
		if (*p != '/')
			continue;
		*p = 0;
		if (mkdir(dir, 0700) != 0 && errno != EEXIST)
			r = -1;
		*p = '/';
	}
	if (r == 0 && mkdir(dir, 0700) != 0 && errno != EEXIST)
		r = -1;
	int e = errno;
	free(dir);
	if (r != 0)
		return luax_fail(L, "error", "cannot create the directory %s: %s", path, strerror(e));
	lua_pushboolean(L, 1);
	return 1;
}

int luaopen_lockfile(lua_State *L)
{
	static const luaL_Reg methods[] = {
		{ "release", lock_release }, { "__gc", lock_release }, { "__close", lock_release },
		{ "__tostring", lock_tostring }, { NULL, NULL },
	};
	static const luaL_Reg fns[] = {
		{ "acquire", lockfile_acquire }, { "held", lockfile_held }, { "alive", lockfile_alive },
		{ "mkdir", lockfile_mkdir }, { NULL, NULL },
	};
	if (luaL_newmetatable(L, LOCK_MT)) {
		luaL_setfuncs(L, methods, 0);
		lua_pushvalue(L, -1);
		lua_setfield(L, -2, "__index");
	}
	lua_pop(L, 1);
	luaL_newlib(L, fns);
	return 1;
}
