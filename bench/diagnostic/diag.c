/*
 * diag.c - the 10-probe diagnostic written by hand in C, as the yardstick for `runbook exec`:
 * one process, the same libraries (libpq, hiredis, libcurl), checks run one after another with
 * blocking calls and the same deadlines. No error handling beyond printing what failed.
 *   diag PG_URL REDIS_HOST REDIS_PORT HTTP_URL QUEUE_KEY
 *   diag --no-checks      starts, sets libcurl up and exits: the floor under the checks
 */
#include <curl/curl.h>
#include <hiredis.h>
#include <libpq-fe.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <sys/sysinfo.h>

static void pg_checks(const char *url)
{
	char conninfo[512];
	snprintf(conninfo, sizeof conninfo, "%s%sconnect_timeout=2", url, strchr(url, '?') ? "&" : "?");
	PGconn *c = PQconnectdb(conninfo);
	if (PQstatus(c) != CONNECTION_OK) {
		printf("pg: %s", PQerrorMessage(c));
		PQfinish(c);
		return;
	}
	/* The statements of conn:connections() and conn:blocked() (stdlib/pg_probes.c): all three
	 * contenders ask the server the same questions. */
	static const char *const sql[] = {
		"SELECT 1",
		"SELECT current_setting('max_connections')::int AS max_connections, "
		"current_setting('superuser_reserved_connections')::int AS reserved",
		"SELECT coalesce(datname, '') AS database, coalesce(state, 'unknown') AS state, "
		"count(*)::int AS n FROM pg_stat_activity WHERE backend_type = 'client backend' GROUP BY "
		"1, 2 ORDER BY 1, 2",
		"SELECT w.pid, w.usename AS user, w.datname AS database, w.application_name AS "
		"application, w.wait_event_type, w.wait_event, (extract(epoch FROM clock_timestamp() - "
		"w.query_start) * 1000)::bigint AS wait_ms, left(w.query, 2000) AS query, bp.pid AS "
		"blocker_pid, b.usename AS blocker_user, b.application_name AS blocker_application, "
		"b.state AS blocker_state, (extract(epoch FROM clock_timestamp() - b.xact_start) * "
		"1000)::bigint AS blocker_xact_ms, left(b.query, 2000) AS blocker_query, "
		"cardinality(pg_blocking_pids(bp.pid)) = 0 AS blocker_is_root FROM pg_stat_activity w "
		"CROSS JOIN LATERAL unnest(pg_blocking_pids(w.pid)) AS bp(pid) LEFT JOIN pg_stat_activity "
		"b ON b.pid = bp.pid WHERE w.pid <> pg_backend_pid() ORDER BY w.query_start, w.pid, "
		"bp.pid",
	};
	for (size_t i = 0; i < sizeof sql / sizeof *sql; i++) {
		PGresult *r = PQexec(c, sql[i]);
		printf("pg %zu: %d rows\n", i, PQntuples(r));
		PQclear(r);
	}
	PQfinish(c);
}

static void redis_checks(const char *host, int port, const char *queue)
{
	struct timeval tv = { 2, 0 };
	redisContext *c = redisConnectWithTimeout(host, port, tv);
	if (!c || c->err) {
		printf("redis: %s\n", c ? c->errstr : "out of memory");
		if (c)
			redisFree(c);
		return;
	}
	redisSetTimeout(c, tv);
	redisReply *r = redisCommand(c, "PING");
	printf("redis ping: %s\n", r ? r->str : c->errstr);
	freeReplyObject(r);
	r = redisCommand(c, "INFO memory");
	printf("redis info: %zu bytes\n", r ? r->len : 0);
	freeReplyObject(r);
	r = redisCommand(c, "LLEN %s", queue);
	printf("redis llen: %lld\n", r ? r->integer : -1);
	freeReplyObject(r);
	redisFree(c);
}

static size_t discard(char *p, size_t size, size_t n, void *ud)
{
	(void)p;
	*(size_t *)ud += size * n;
	return size * n;
}

static void http_check(const char *url)
{
	CURL *h = curl_easy_init();
	size_t bytes = 0;
	long status = 0;
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 2000L);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, discard);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, &bytes);
	CURLcode rc = curl_easy_perform(h);
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
	printf("http: %s %ld, %zu bytes\n", rc == CURLE_OK ? "ok" : curl_easy_strerror(rc), status, bytes);
	curl_easy_cleanup(h);
}

static void host_checks(void)
{
	struct statvfs v;
	if (statvfs("/", &v) == 0)
		printf("disk: %.1f%% used\n", 100.0 * (double)(v.f_blocks - v.f_bfree) / (double)(v.f_blocks - v.f_bfree + v.f_bavail));
	struct sysinfo si;
	if (sysinfo(&si) == 0)
		printf("memory: %lu free; load %.2f\n", si.freeram * si.mem_unit, si.loads[0] / 65536.0);
}

int main(int argc, char **argv)
{
	bool no_checks = argc == 2 && strcmp(argv[1], "--no-checks") == 0;
	if (argc != 6 && !no_checks) {
		fprintf(stderr, "usage: diag PG_URL REDIS_HOST REDIS_PORT HTTP_URL QUEUE_KEY | --no-checks\n");
		return 2;
	}
	curl_global_init(CURL_GLOBAL_DEFAULT);
	if (no_checks) {
		curl_global_cleanup();
		return 0;
	}
	pg_checks(argv[1]);
	redis_checks(argv[2], atoi(argv[3]), argv[5]);
	http_check(argv[4]);
	host_checks();
	curl_global_cleanup();
	return 0;
}
