/*
 * jsonw.h - a tiny append-only JSON writer for the records the host writes itself.
 * (Lua code encodes with lua-cjson; this is for C callers that must not depend on Lua.)
 */
#ifndef JSONW_H
#define JSONW_H

#include <stddef.h>
#include <stdint.h>

struct jbuf { char *p; size_t len, cap; int fields; };

void jb_raw(struct jbuf *b, const char *s, size_t n);
void jb_rawz(struct jbuf *b, const char *s);
void jb_string(struct jbuf *b, const char *s, size_t n);   /* a quoted, escaped JSON string */
/* The length of the valid UTF-8 sequence at s (at most n bytes), or 1 for a byte that is not one:
 * jb_string writes such a byte as U+FFFD, so that what it writes is always valid JSON. */
size_t utf8_seq(const char *s, size_t n);
void jb_open(struct jbuf *b);                               /* "{" */
void jb_close(struct jbuf *b);                              /* "}" */
void jb_key(struct jbuf *b, const char *key);               /* ,"key": with commas managed */
void jb_kstr(struct jbuf *b, const char *key, const char *val);
void jb_kint(struct jbuf *b, const char *key, int64_t val);
void jb_kbool(struct jbuf *b, const char *key, int val);
void jb_free(struct jbuf *b);

#endif
