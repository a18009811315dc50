/*
 * pg_service.c - the connection service file (service=name, or $PGSERVICE), read the way libpq
 * reads it, so that pg.c knows the server a service names before libpq does: libpq would resolve
 * that host name itself, with the blocking resolver, past our deadline and deaf to Ctrl-C; and
 * messages would name the default socket instead of the server.
 *
 * The files, first match wins: $PGSERVICEFILE or ~/.pg_service.conf, then
 * $PGSYSCONFDIR/pg_service.conf (by default the directory `pg_config --sysconfdir` gave at build
 * time). A file is `[name]` sections of `keyword=value` lines; blank lines and lines starting
 * with # are skipped, leading and trailing white space is dropped, nothing else (`host =x` is an
 * error, `host= x` the name " x", as libpq has them). A service's values fill only the options
 * the connection string left unset. An LDAP line is refused: the lookup would block.
 */
#include "pg.h"

#include <ctype.h>
#include <errno.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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
	if (!is_keyword(known, line)) {
		snprintf(err, errn, "syntax error in service file \"%s\", line %d (no connection option \"%.60s\")", file,
		         lineno, line);
		return false;
	}
	set(ud, line, eq + 1);
	return true;
}

enum scan { NOT_FOUND, FOUND, FAILED };

/* Applies section [service] of file, if it has one. */
static enum scan scan_file(const char *file, const char *service, const PQconninfoOption *known,
                           pg_service_set set, void *ud, char *err, size_t errn)
{
	FILE *f = fopen(file, "re");
	if (!f) {
		snprintf(err, errn, "cannot read service file \"%s\": %s", file, strerror(errno));
		return FAILED;
	}
	enum scan result = NOT_FOUND;
	bool inside = false;
	char buf[1024];
	for (int lineno = 1; fgets(buf, sizeof buf, f); lineno++) {
		if (!strchr(buf, '\n') && !feof(f)) {
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

/* $PGSERVICEFILE, or .pg_service.conf in $HOME (the account's home directory without it). */
static bool user_file(char *file, size_t n)
{
	const char *env = getenv("PGSERVICEFILE"), *home = getenv("HOME");
	if (env)
		return (size_t)snprintf(file, n, "%s", env) < n;
	if (!home || !home[0]) {
		const struct passwd *pw = getpwuid(geteuid());
		home = pw ? pw->pw_dir : NULL;
	}
	return home && (size_t)snprintf(file, n, "%s/.pg_service.conf", home) < n;
}

bool pg_service_apply(const char *service, pg_service_set set, void *ud, char *err, size_t errn)
{
	if (!service || !service[0])
		return true;
	PQconninfoOption *known = PQconninfoParse("", NULL);   /* every keyword, no values */
	char file[4096];
	enum scan r = user_file(file, sizeof file) && exists(file)
	              ? scan_file(file, service, known, set, ud, err, errn) : NOT_FOUND;
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
