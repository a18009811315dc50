/*
 * pg_service.c - the connection service file (service=name, or $PGSERVICE), read the way libpq
 * reads it, so that pg.c knows the server a service names before libpq does: libpq would resolve
 * that host name itself, with the blocking resolver, past our deadline and deaf to Ctrl-C; and
 * messages would name the default socket instead of the server.
 *
 * The files, first match wins: $PGSERVICEFILE (which must exist) or ~/.pg_service.conf (if it
 * does), then $PGSYSCONFDIR/pg_service.conf (by default the directory `pg_config --sysconfdir`
 * gave at build time). A FIFO is refused rather than waited on. A file is `[name]` sections of `keyword=value` lines; blank lines and lines starting
 * with # are skipped, leading and trailing white space is dropped, nothing else (`host =x` is an
 * error, `host= x` the name " x", as libpq has them). A service's values fill only the options
 * the connection string left unset. An LDAP line is refused: the lookup would block.
 */
#include "pg.h"
#include "users.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef PG_SYSCONFDIR
#define PG_SYSCONFDIR "/etc/postgresql-common"
#endif

static bool is_keyword(const PQconninfoOption *known, const char *key)
{
	for (const PQconninfoOption *o = known; o && o->keyword; o++)
		if (strcmp(o->keyword, key) == 0)
			return true;
	return false;
}

static char *trimmed(char *line)
{
	size_t n = strlen(line);
	while (n > 0 && isspace((unsigned char)line[n - 1]))
		line[--n] = '\0';
	while (isspace((unsigned char)*line))
		line++;
	return line;
}

/* One line of the wanted section: the option it sets, or false with err set. */
static bool section_line(char *line, const char *file, int lineno, const PQconninfoOption *known,
                         pg_service_set set, void *ud, char *err, size_t errn)
{
	if (strncmp(line, "ldap", 4) == 0) {
		snprintf(err, errn, "service file \"%s\", line %d: LDAP lookups of services are not supported "
		         "(they would block); put the connection parameters in the file", file, lineno);
		return false;
	}
	char *eq = strchr(line, '=');
	if (!eq) {
		snprintf(err, errn, "syntax error in service file \"%s\", line %d (expected keyword=value)", file, lineno);
		return false;
	}
	*eq = '\0';
	if (strcmp(line, "service") == 0) {
		snprintf(err, errn, "service file \"%s\", line %d: nested service specifications are not supported", file,
		         lineno);
		return false;
	}
	if (!is_keyword(known, line)) {   /* quoted only if it looks like a keyword: it may be a password */
		bool word = line[0] && strspn(line, "abcdefghijklmnopqrstuvwxyz_") == strlen(line) && strlen(line) <= 40;
		snprintf(err, errn, "syntax error in service file \"%s\", line %d (%s%s%s)", file, lineno,
		         word ? "no connection option \"" : "not a connection option", word ? line : "", word ? "\"" : "");
		return false;
	}
	set(ud, line, eq + 1);
	return true;
}

enum scan { NOT_FOUND, FOUND, FAILED };

/* The file, opened without waiting on a FIFO; NULL with err set, or NULL and no error for a
 * directory (which libpq reads as a file without the service). */
static FILE *open_file(const char *file, char *err, size_t errn)
{
	err[0] = '\0';
	int fd = open(file, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) != 0) {
		if (errno == ENOENT)
			snprintf(err, errn, "service file \"%s\" not found", file);
		else
			snprintf(err, errn, "cannot read service file \"%s\": %s", file, strerror(errno));
	} else if (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode)) {
		snprintf(err, errn, "service file \"%s\" is not a regular file", file);
	} else if (S_ISREG(st.st_mode)) {
		FILE *f = fdopen(fd, "r");
		if (f)
			return f;
		snprintf(err, errn, "cannot read service file \"%s\": %s", file, strerror(errno));
	}
	if (fd >= 0)
		close(fd);
	return NULL;
}

/* Applies section [service] of file, if it has one. */
static enum scan scan_file(const char *file, const char *service, const PQconninfoOption *known,
                           pg_service_set set, void *ud, char *err, size_t errn)
{
	FILE *f = open_file(file, err, errn);
	if (!f)
		return err[0] ? FAILED : NOT_FOUND;
	enum scan result = NOT_FOUND;
	bool inside = false;
	char buf[1024];
	for (int lineno = 1; fgets(buf, sizeof buf, f); lineno++) {
		if (strlen(buf) >= sizeof buf - 1) {   /* as libpq counts: the newline included */
			snprintf(err, errn, "service file \"%s\", line %d is too long", file, lineno);
			result = FAILED;
			break;
		}
		char *line = trimmed(buf);
		if (line[0] == '\0' || line[0] == '#')
			continue;
		if (line[0] == '[') {
			if (inside)
				break;   /* the next section: ours is over */
			size_t n = strlen(service);
			inside = strncmp(line + 1, service, n) == 0 && line[n + 1] == ']';
			if (inside)
				result = FOUND;
		} else if (inside && !section_line(line, file, lineno, known, set, ud, err, errn)) {
			result = FAILED;
			break;
		}
	}
	fclose(f);
	return result;
}

static bool exists(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0;
}

/* ~/.pg_service.conf, under $HOME or else the account's home directory (looked up in bounded time). */
static bool home_file(char *file, size_t n)
{
	const char *home = users_home_dir(0);
	return home && (size_t)snprintf(file, n, "%s/.pg_service.conf", home) < n;
}

bool pg_service_apply(const char *service, pg_service_set set, void *ud, char *err, size_t errn)
{
	if (!service)
		return true;
	PQconninfoOption *known = PQconninfoParse("", NULL);   /* every keyword, no values */
	char file[4096];
	const char *named = getenv("PGSERVICEFILE");   /* must be there, where ~/.pg_service.conf may not */
	enum scan r = NOT_FOUND;
	if (named)
		r = scan_file(named, service, known, set, ud, err, errn);
	else if (home_file(file, sizeof file) && exists(file))
		r = scan_file(file, service, known, set, ud, err, errn);
	if (r == NOT_FOUND) {
		const char *dir = getenv("PGSYSCONFDIR");
		snprintf(file, sizeof file, "%s/pg_service.conf", dir ? dir : PG_SYSCONFDIR);
		if (exists(file))
			r = scan_file(file, service, known, set, ud, err, errn);
	}
	PQconninfoFree(known);
	if (r == NOT_FOUND)
		snprintf(err, errn, "definition of service \"%s\" not found", service);
	return r == FOUND;
}
