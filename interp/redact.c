/*
 * redact.c - masks URL passwords, conninfo passwords and registered secrets.
 *
 * The registry is process-wide on purpose: a secret learnt anywhere (an input, a URL handed to a
 * primitive) must be masked everywhere afterwards, including in text produced by other modules.
 */
#include "redact.h"
#include "jsonw.h"

#include <ctype.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

static char **secrets;
static size_t nsecrets;

void redact_add_secret(const char *s)
{
	if (!s || strlen(s) < 3)
		return;
	for (size_t i = 0; i < nsecrets; i++)
		if (strcmp(secrets[i], s) == 0)
			return;
	char **grown = realloc(secrets, sizeof *secrets * (nsecrets + 1));
	if (!grown)
		return;
	secrets = grown;
	secrets[nsecrets] = strdup(s);
	if (secrets[nsecrets])
		nsecrets++;
}

void redact_free_all(void)
{
	for (size_t i = 0; i < nsecrets; i++)
		free(secrets[i]);
	free(secrets);
	secrets = NULL;
	nsecrets = 0;
}

static bool url_stop(char c) { return c == '/' || c == '?' || c == '#' || isspace((unsigned char)c) || c == '"' || c == '\'' || c == 0; }

/* At in[i] == ':' of "://": returns the length of "user:" and of the password, if any. */
static bool url_password(const char *in, size_t n, size_t i, size_t *user_end, size_t *pw_end)
{
	size_t start = i + 3, at = 0, colon = 0;
	for (size_t j = start; j < n && !url_stop(in[j]); j++) {
		if (in[j] == '@')
			at = j;
		else if (in[j] == ':' && !colon && !at)
			colon = j;
	}
	if (!at || !colon || colon > at)
		return false;
	*user_end = colon + 1;
	*pw_end = at;
	return *pw_end > *user_end;
}

static bool keyword_at(const char *in, size_t n, size_t i, const char *kw)
{
	size_t k = strlen(kw);
	if (i + k > n || strncasecmp(in + i, kw, k) != 0)
		return false;
	return i == 0 || !isalnum((unsigned char)in[i - 1]);
}

/* "password=secret" or "password='sec ret'": returns the end of the value. */
static size_t conninfo_value_end(const char *in, size_t n, size_t v)
{
	if (v < n && in[v] == '\'') {
		size_t j = v + 1;
		while (j < n && in[j] != '\'')
			j += (in[j] == '\\' && j + 1 < n) ? 2 : 1;
		return j < n ? j + 1 : n;
	}
	size_t j = v;
	while (j < n && !isspace((unsigned char)in[j]) && in[j] != '"' && in[j] != ',' && in[j] != '&')
		j++;
	return j;
}

static char *mask_patterns(const char *in, size_t n, size_t *outlen)
{
	struct jbuf b = { 0 };
	jb_raw(&b, "", 0);
	size_t i = 0, copied = 0;
	while (i < n) {
		size_t ue, pe;
		if (in[i] == ':' && i + 2 < n && in[i + 1] == '/' && in[i + 2] == '/' && url_password(in, n, i, &ue, &pe)) {
			jb_raw(&b, in + copied, ue - copied);
			jb_raw(&b, REDACTED, strlen(REDACTED));
			i = copied = pe;
			continue;
		}
		static const char *const kws[] = { "password=", "passwd=", "pass=", NULL };
		bool matched = false;
		for (const char *const *kw = kws; *kw && !matched; kw++) {
			if (keyword_at(in, n, i, *kw)) {
				size_t v = i + strlen(*kw), e = conninfo_value_end(in, n, v);
				if (e > v) {
					jb_raw(&b, in + copied, v - copied);
					jb_raw(&b, REDACTED, strlen(REDACTED));
					i = copied = e;
					matched = true;
				}
			}
		}
		if (!matched)
			i++;
	}
	jb_raw(&b, in + copied, n - copied);
	*outlen = b.len;
	return b.p;
}

static char *mask_secret(char *s, size_t *len, const char *secret)
{
	size_t k = strlen(secret);
	char *hit = memmem(s, *len, secret, k);
	if (!hit)
		return s;
	struct jbuf b = { 0 };
	jb_raw(&b, "", 0);
	const char *p = s, *end = s + *len;
	while (hit) {
		jb_raw(&b, p, (size_t)(hit - p));
		jb_raw(&b, REDACTED, strlen(REDACTED));
		p = hit + k;
		hit = memmem(p, (size_t)(end - p), secret, k);
	}
	jb_raw(&b, p, (size_t)(end - p));
	free(s);
	*len = b.len;
	return b.p;
}

char *redact(const char *in, size_t n, size_t *outlen)
{
	size_t len;
	char *s = mask_patterns(in, n, &len);
	for (size_t i = 0; i < nsecrets; i++)
		s = mask_secret(s, &len, secrets[i]);
	if (outlen)
		*outlen = len;
	return s;
}

void jb_kstr_redacted(struct jbuf *b, const char *key, const char *val)
{
	if (!val)
		return;
	size_t len;
	char *clean = redact(val, strlen(val), &len);
	jb_key(b, key);
	jb_string(b, clean, len);
	free(clean);
}
