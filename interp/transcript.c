/*
 * transcript.c - writes the session's transcript; see transcript.h for the format.
 *
 * One session per process, so the writer's state is file-static. Writes are whole lines with
 * one write(2) each (O_APPEND), so a kill -9 at any point leaves a prefix of whole lines plus at
 * most one torn line, which `runbook transcript verify` reports as truncation.
 */
#include "transcript.h"
#include "users.h"
#include "sha256.h"
#include "jsonw.h"
#include "sched.h"
#include "witness.h"

#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static int fd = -1;
static bool failed;
static char path_buf[4096];
static char head[65];
static char first_head[65];   /* names the session in the system log: see witness.h */
static long seq, lines;
static double t0;
static char step_id[128];
static volatile int writing;   /* a line is being written: the watchdog's last record waits its turn */

bool transcript_busy(void) { return writing; }

void transcript_set_step(const char *id) { snprintf(step_id, sizeof step_id, "%s", id ? id : ""); }

void sha256_hex(const void *data, size_t n, char out[65])
{
	struct sha256 s;
	sha256_init(&s);
	sha256_update(&s, data, n);
	sha256_final_hex(&s, out);
}

void transcript_chain(const char *prev, const char *line, size_t n, char out[65])
{
	struct sha256 s;
	sha256_init(&s);
	sha256_update(&s, prev, strlen(prev));
	sha256_update(&s, line, n);
	sha256_final_hex(&s, out);
}

bool transcript_is_open(void) { return fd >= 0; }
bool transcript_ok(void) { return fd >= 0 && !failed; }
const char *transcript_path(void) { return path_buf; }
const char *transcript_head(void) { return head; }
long transcript_lines(void) { return lines; }

static int mkdir_p(char *dir, mode_t mode)
{
	for (char *p = dir + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = 0;
		int r = mkdir(dir, mode);
		*p = '/';
		if (r != 0 && errno != EEXIST)
			return -1;
	}
	return (mkdir(dir, mode) == 0 || errno == EEXIST) ? 0 : -1;
}

int runbook_state_path(const char *sub, char *out, size_t n)
{
	/* Decided once: the transcript, the locks and the history must not part ways in mid-run. */
	static char base[PATH_MAX];
	if (!base[0]) {
		const char *state = getenv("XDG_STATE_HOME"), *home;
		if (state && *state == '/')   /* a relative XDG_STATE_HOME is invalid: ignored, as the spec says */
			snprintf(base, sizeof base, "%s", state);
		else if ((home = users_home_dir(0)))   /* without HOME (cron), the account's home */
			snprintf(base, sizeof base, "%s/.local/state", home);
		else
			snprintf(base, sizeof base, "/tmp/.local/state");
	}
	int w = snprintf(out, n, "%s/runbook/%s", base, sub);
	return w < 0 || (size_t)w >= n ? -1 : 0;
}

int transcript_default_dir(char *out, size_t n)
{
	if (runbook_state_path("transcripts", out, n) != 0)
		return -1;
	return mkdir_p(out, 0700);
}

/* Appends line + "\n" in one write and extends the chain. */
static int write_line(const char *line, size_t n)
{
	if (fd < 0 || failed)
		return -1;
	char *buf = malloc(n + 1);
	if (!buf)
		abort();
	memcpy(buf, line, n);
	buf[n] = '\n';
	writing = 1;
	size_t off = 0;
	while (off < n + 1) {
		ssize_t w = write(fd, buf + off, n + 1 - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			failed = true;
			free(buf);
			writing = 0;
			return -1;
		}
		off += (size_t)w;
	}
	free(buf);
	if (lines == 0) {
		sha256_hex(line, n, head);
		memcpy(first_head, head, sizeof head);
	}
	else
		transcript_chain(head, line, n, head);
	lines++;
	writing = 0;
	return 0;
}

static double elapsed_s(void) { return (sched_now_precise() - t0) / 1000.0; }

static void iso_utc(char *out, size_t n)
{
	struct timespec ts;
	struct tm tm;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	size_t w = strftime(out, n, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(out + w, n - w, ".%03ldZ", ts.tv_nsec / 1000000);
}

int transcript_open(const char *path, const char *runbook, char *err, size_t errlen)
{
	if (snprintf(path_buf, sizeof path_buf, "%s", path) >= (int)sizeof path_buf) {
		snprintf(err, errlen, "transcript path too long");
		return -1;
	}
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_APPEND | O_CLOEXEC, 0600);
	if (fd < 0) {
		snprintf(err, errlen, "cannot create transcript %s: %s%s", path, strerror(errno),
		         errno == EEXIST ? " (transcripts are never overwritten or followed through a symlink)" : "");
		return -1;
	}
	fchmod(fd, 0600);
	t0 = sched_now_precise();
	seq = lines = 0;
	failed = false;

	struct jbuf b = { 0 };
	jb_open(&b);
	jb_kint(&b, "version", 2);
	jb_kint(&b, "width", 100);
	jb_kint(&b, "height", 30);
	jb_kint(&b, "timestamp", (long long)time(NULL));
	jb_key(&b, "env");
	jb_open(&b);
	jb_kstr(&b, "TERM", getenv("TERM") ? getenv("TERM") : "");
	jb_kstr(&b, "SHELL", getenv("SHELL") ? getenv("SHELL") : "");
	jb_close(&b);
	b.fields = 1;
	jb_key(&b, "runbook");
	jb_rawz(&b, runbook && *runbook ? runbook : "{}");
	jb_close(&b);
	int r = write_line(b.p, b.len);
	jb_free(&b);
	if (r != 0)
		snprintf(err, errlen, "cannot write transcript %s: %s", path, strerror(errno));
	else
		transcript_checkpoint("start");
	return r;
}

void transcript_checkpoint(const char *why)
{
	if (lines > 0)
		witness_checkpoint(path_buf, first_head, lines, head, why);
}

static int event(const char *code, const char *text, size_t n)
{
	if (fd < 0)
		return 0;
	struct jbuf b = { 0 };
	char t[32];
	snprintf(t, sizeof t, "[%.6f,", elapsed_s());
	jb_rawz(&b, t);
	jb_string(&b, code, strlen(code));
	jb_raw(&b, ",", 1);
	jb_string(&b, text, n);
	jb_raw(&b, "]", 1);
	int r = write_line(b.p, b.len);
	jb_free(&b);
	return r;
}

int transcript_output(const char *text, size_t n) { return event("o", text, n); }
int transcript_marker(const char *label) { return event("m", label, strlen(label)); }

/* The record's JSON up to (not including) its closing brace: seq, ts, type, fields, prev. */
static void audit_body(struct jbuf *b, const char *type, const char *fields)
{
	char ts[40];
	iso_utc(ts, sizeof ts);
	jb_open(b);
	jb_kint(b, "seq", ++seq);
	jb_kstr(b, "ts", ts);
	jb_kstr(b, "type", type);
	if (step_id[0] && !(fields && strstr(fields, "\"step\":")))
		jb_kstr(b, "step", step_id);
	if (fields) {
		const char *open = strchr(fields, '{'), *close = strrchr(fields, '}');
		if (open && close && close > open + 1) {
			jb_raw(b, ",", 1);
			jb_raw(b, open + 1, (size_t)(close - open - 1));
		}
	}
	jb_kstr(b, "prev", head);
}

int transcript_audit(const char *type, const char *fields)
{
	if (fd < 0)
		return 0;
	if (failed)
		return -1;
	struct jbuf b = { 0 };
	audit_body(&b, type, fields);
	jb_close(&b);
	int r = event("a", b.p, b.len);
	jb_free(&b);
	return r;
}

int transcript_sync(void)
{
	if (fd < 0)
		return 0;
	if (failed || fdatasync(fd) != 0) {
		failed = true;
		return -1;
	}
	return 0;
}

int transcript_close(const char *fields, char out_head[65])
{
	if (fd < 0)
		return 0;
	struct jbuf b = { 0 };
	audit_body(&b, "session_end", fields);
	char seal[65];
	jb_close(&b);
	sha256_hex(b.p, b.len, seal);
	b.len--; /* reopen the object to append the seal */
	jb_kstr(&b, "seal", seal);
	jb_close(&b);
	int r = event("a", b.p, b.len);
	jb_free(&b);
	if (transcript_sync() != 0)
		r = -1;
	if (close(fd) != 0)
		r = -1;
	fd = -1;
	if (r == 0)
		transcript_checkpoint("end");
	if (out_head)
		memcpy(out_head, head, 65);
	return r;
}
