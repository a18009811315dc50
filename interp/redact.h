/*
 * redact.h - secrets out of everything that is shown or written.
 *
 * Everything on its way to the terminal, the transcript or an error message passes through
 * redact(). It masks the password of any URL (scheme://user:PASSWORD@host), the value of a
 * conninfo "password=" pair, and every string registered as secret (inputs of type secret, the
 * passwords found in URL inputs).
 */
#ifndef REDACT_H
#define REDACT_H

#include <stddef.h>

#define REDACTED "***"

void  redact_add_secret(const char *secret);   /* copies; strings shorter than 3 are ignored */
/* Returns a malloc'd, NUL-terminated redacted copy of in[0..n); *outlen gets its length. */
char *redact(const char *in, size_t n, size_t *outlen);
void  redact_free_all(void);

struct jbuf;
/* jb_kstr (jsonw.h) with the value redacted; nothing is written when val is NULL. */
void  jb_kstr_redacted(struct jbuf *b, const char *key, const char *val);

#endif
