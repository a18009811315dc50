/*
 * redact.c - masks secrets: registered ones, and those recognised by their form wherever they
 * appear (URL passwords, the value of a name=value, name: "value" or SQL PASSWORD '...' whose
 * name says it is a secret). redact_learn registers what it recognises, where values enter.
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

/* ------------------------------------------------------------------ secrets recognised by form */

static bool ident_char(char c) { return isalnum((unsigned char)c) || c == '_' || c == '-'; }

/* Names whose value is a secret: a name ending in one of these (PGPASSWORD, client_secret,
 * access_token, X-Api-Key, MYSQL_PWD, REDISCLI_AUTH). The short ones only after _ or - or alone,
 * so that bypass=, OLDPWD= and oauth= stay readable. */
static const struct { const char *word; bool anywhere; } secret_words[] = {
	{ "password", true }, { "passwd", true }, { "secret", true }, { "token", true }, { "apikey", true },
	{ "api_key", false }, { "api-key", false }, { "access_key", false }, { "private_key", false },
	{ "signature", false }, { "pass", false }, { "pwd", false }, { "auth", false }, { "credentials", false },
};

static bool secret_name(const char *s, size_t n)
{
	for (size_t i = 0; i < sizeof secret_words / sizeof *secret_words; i++) {
		size_t k = strlen(secret_words[i].word);
		if (n < k || strncasecmp(s + n - k, secret_words[i].word, k) != 0)
			continue;
		if (n == k || secret_words[i].anywhere || s[n - k - 1] == '_' || s[n - k - 1] == '-')
			return true;
	}
	return false;
}

static bool name_is(const char *s, size_t n, const char *word)
{
	return strlen(word) == n && strncasecmp(s, word, n) == 0;
}

static bool ends_with(const char *s, size_t n, const char *word)
{
	size_t k = strlen(word);
	return n >= k && strncasecmp(s + n - k, word, k) == 0;
}

static size_t skip_blanks(const char *in, size_t n, size_t j)
{
	while (j < n && (in[j] == ' ' || in[j] == '\t'))
		j++;
	return j;
}

/* The value at in[v]: quoted ('..', "..", \"..\" as inside JSON, [[..]]) or a bare word. Sets the
 * span of what is secret (inside the quotes) and returns false when there is no value. */
static bool value_span(const char *in, size_t n, size_t v, bool quoted_only, size_t *vs, size_t *ve)
{
	if (v >= n)
		return false;
	const char *close = NULL;
	size_t open = 0;
	if (in[v] == '\'' || in[v] == '"')
		close = in[v] == '\'' ? "'" : "\"", open = 1;
	else if (in[v] == '\\' && v + 1 < n && in[v + 1] == '"')
		close = "\\\"", open = 2;
	else if (in[v] == '[' && v + 1 < n && in[v + 1] == '[')
		close = "]]", open = 2;
	if (close) {
		size_t k = strlen(close), j = v + open;
		while (j < n && !(j + k <= n && memcmp(in + j, close, k) == 0))
			j += (in[j] == '\\' && k == 1 && j + 1 < n) ? 2 : 1;
		*vs = v + open;
		*ve = j < n ? j : n;
	} else {
		if (quoted_only)
			return false;
		size_t j = v;
		while (j < n && !isspace((unsigned char)in[j]) && !strchr("\"'`,&;#)}]\\", in[j]))
			j++;
		*vs = v;
		*ve = j;
	}
	size_t len = *ve - *vs;
	/* Placeholders ("pass token=VALUE", "Bearer ...") and what is already masked. */
	if (len == 0 || (len == 5 && memcmp(in + *vs, "VALUE", 5) == 0) || (len == 3 && memcmp(in + *vs, "...", 3) == 0) ||
	    (len == strlen(REDACTED) && memcmp(in + *vs, REDACTED, len) == 0))
		return false;
	return true;
}

/* Lua code rather than a value (`token = input.secret { env = "TOKEN" }`, `password = nil`, `key =
 * ctx.key`): the bare word at in[v] is a keyword or a name chain that is called or indexed. A secret
 * is a value written out, which the source of a runbook or of this reference does not hold. */
static bool lua_expression(const char *in, size_t n, size_t v)
{
	static const char *const keywords[] = { "nil", "true", "false", "function", "not", NULL };
	size_t j = v;
	bool dotted = false;
	while (j < n && (isalnum((unsigned char)in[j]) || in[j] == '_' || in[j] == '.' || in[j] == ':'))
		dotted = dotted || in[j] == '.' || in[j] == ':', j++;
	if (j == v || isdigit((unsigned char)in[v]))
		return false;
	for (int i = 0; keywords[i]; i++)
		if (name_is(in + v, j - v, keywords[i]) && (j == n || !ident_char(in[j])))
			return true;
	size_t k = skip_blanks(in, n, j);
	return dotted && k > j && k < n && (in[k] == '{' || in[k] == '(');
}

/* At in[i], the start of a name: the span of its secret value, if the name is one and has one.
 *   name=value, name = 'va lue', name: "value" (JSON, YAML, Lua), ?token=..&, PGPASSWORD=...
 *   PASSWORD 'value' (SQL: ALTER ROLE, CREATE USER), requirepass value, masterauth value (Redis),
 *   --password value, --token value (an option and its argument), Bearer token */
static bool named_value(const char *in, size_t n, size_t i, size_t *name_end, size_t *vs, size_t *ve)
{
	size_t j = i;
	while (j < n && ident_char(in[j]))
		j++;
	*name_end = j;
	const char *name = in + i;
	size_t len = j - i;
	bool redis = name_is(name, len, "requirepass") || name_is(name, len, "masterauth");
	bool bearer = name_is(name, len, "bearer");
	if (!secret_name(name, len) && !redis && !bearer)
		return false;
	size_t k = j;
	if (k < n && (in[k] == '"' || in[k] == '\''))   /* the closing quote of a quoted key */
		k++;
	else if (k + 1 < n && in[k] == '\\' && in[k + 1] == '"')
		k += 2;
	k = skip_blanks(in, n, k);
	if (k < n && in[k] == '=' && !(k + 1 < n && in[k + 1] == '='))
		return !lua_expression(in, n, skip_blanks(in, n, k + 1)) &&
		       value_span(in, n, skip_blanks(in, n, k + 1), false, vs, ve);
	if (k < n && in[k] == ':' && !(k + 1 < n && (in[k + 1] == ':' || in[k + 1] == '/')))
		return value_span(in, n, skip_blanks(in, n, k + 1), true, vs, ve);
	if (k == j || k >= n)
		return false;
	if (ends_with(name, len, "password") && (in[k] == '\'' || (in[k] == 'E' && k + 1 < n && in[k + 1] == '\'')))
		return value_span(in, n, in[k] == 'E' ? k + 1 : k, true, vs, ve);
	/* requirepass VALUE, Bearer TOKEN, and an option's separate argument: --password VALUE */
	if (redis || bearer || (name[0] == '-' && in[k] != '-'))
		return value_span(in, n, k, false, vs, ve);
	return false;
}

/* The next secret recognised by its form at or after *pos: [*vs, *ve). Advances *pos past it. */
static bool next_secret(const char *in, size_t n, size_t *pos, size_t *vs, size_t *ve)
{
	size_t i = *pos;
	while (i < n) {
		size_t ue, pe;
		if (in[i] == ':' && i + 2 < n && in[i + 1] == '/' && in[i + 2] == '/' && url_password(in, n, i, &ue, &pe)) {
			*vs = ue;
			*ve = pe;
			*pos = pe;
			return true;
		}
		if (ident_char(in[i]) && (i == 0 || !ident_char(in[i - 1]))) {
			size_t name_end;
			if (named_value(in, n, i, &name_end, vs, ve)) {
				*pos = *ve;
				return true;
			}
			i = name_end;
			continue;
		}
		i++;
	}
	*pos = n;
	return false;
}

static char *mask_patterns(const char *in, size_t n, size_t *outlen)
{
	struct jbuf b = { 0 };
	jb_raw(&b, "", 0);
	size_t pos = 0, copied = 0, vs, ve;
	while (next_secret(in, n, &pos, &vs, &ve)) {
		jb_raw(&b, in + copied, vs - copied);
		jb_raw(&b, REDACTED, strlen(REDACTED));
		copied = ve;
	}
	jb_raw(&b, in + copied, n - copied);
	*outlen = b.len;
	return b.p;
}

void redact_learn(const char *in, size_t n)
{
	size_t pos = 0, vs, ve;
	while (next_secret(in, n, &pos, &vs, &ve)) {
		char *v = strndup(in + vs, ve - vs);
		if (!v)
			abort();
		redact_add_secret(v);
		free(v);
	}
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

void jb_open_call(struct jbuf *b, const char *primitive, const char *target, const char *on, const char *host)
{
	jb_open(b);
	jb_kstr(b, "primitive", primitive);
	jb_kstr_redacted(b, "target", target);
	jb_kstr_redacted(b, "on", on);
	jb_kstr_redacted(b, "host", host);
}
