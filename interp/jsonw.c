/* jsonw.c - see jsonw.h. Aborts on out-of-memory: a half-written audit record is worse. */
#include "jsonw.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void jb_raw(struct jbuf *b, const char *s, size_t n)
{
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 128;
		while (cap < b->len + n + 1)
			cap *= 2;
		char *p = realloc(b->p, cap);
		if (!p)
			abort();
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = 0;
}

void jb_rawz(struct jbuf *b, const char *s) { jb_raw(b, s, strlen(s)); }

size_t utf8_seq(const char *s, size_t n)
{
	unsigned char c = (unsigned char)s[0];
	size_t len = c >= 0xc2 && c <= 0xdf ? 2 : c >= 0xe0 && c <= 0xef ? 3 : c >= 0xf0 && c <= 0xf4 ? 4 : 1;
	if (len > n)
		return 1;
	for (size_t i = 1; i < len; i++)
		if (((unsigned char)s[i] & 0xc0) != 0x80)
			return 1;
	unsigned char d = len > 1 ? (unsigned char)s[1] : 0;   /* no overlong forms, surrogates, > U+10FFFF */
	if ((c == 0xe0 && d < 0xa0) || (c == 0xed && d > 0x9f) || (c == 0xf0 && d < 0x90) || (c == 0xf4 && d > 0x8f))
		return 1;
	return len;
}

void jb_string(struct jbuf *b, const char *s, size_t n)
{
	jb_raw(b, "\"", 1);
	size_t run = 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		const char *esc = NULL;
		char hex[8];
		switch (c) {
		case '"': esc = "\\\""; break;
		case '\\': esc = "\\\\"; break;
		case '\n': esc = "\\n"; break;
		case '\r': esc = "\\r"; break;
		case '\t': esc = "\\t"; break;
		case '\b': esc = "\\b"; break;
		case '\f': esc = "\\f"; break;
		default:
			if (c < 0x20 || c == 0x7f) {
				snprintf(hex, sizeof hex, "\\u%04x", c);
				esc = hex;
			} else if (c >= 0x80) {
				size_t len = utf8_seq(s + i, n - i);
				if (len > 1) {
					i += len - 1;
					continue;
				}
				esc = "\\ufffd";   /* not UTF-8 (a message cut short, a server's other charset) */
			}
		}
		if (esc) {
			jb_raw(b, s + run, i - run);
			jb_rawz(b, esc);
			run = i + 1;
		}
	}
	jb_raw(b, s + run, n - run);
	jb_raw(b, "\"", 1);
}

void jb_open(struct jbuf *b) { jb_raw(b, "{", 1); b->fields = 0; }
void jb_close(struct jbuf *b) { jb_raw(b, "}", 1); }

void jb_key(struct jbuf *b, const char *key)
{
	if (b->fields++)
		jb_raw(b, ",", 1);
	jb_string(b, key, strlen(key));
	jb_raw(b, ":", 1);
}

void jb_kstr(struct jbuf *b, const char *key, const char *val)
{
	jb_key(b, key);
	if (val)
		jb_string(b, val, strlen(val));
	else
		jb_rawz(b, "null");
}

void jb_kint(struct jbuf *b, const char *key, int64_t val)
{
	char num[32];
	snprintf(num, sizeof num, "%" PRId64, val);
	jb_key(b, key);
	jb_rawz(b, num);
}

void jb_kbool(struct jbuf *b, const char *key, int val)
{
	jb_key(b, key);
	jb_rawz(b, val ? "true" : "false");
}

void jb_free(struct jbuf *b)
{
	free(b->p);
	*b = (struct jbuf){ 0 };
}
