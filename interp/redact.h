/*
 * redact.h - secrets out of everything that is shown or written.
 *
 * Everything on its way to the terminal, the transcript or an error message passes through
 * redact(). It masks the password of any URL (scheme://user:PASSWORD@host); the value given to a
 * name that says it is a secret (password, passwd, secret, token, apikey anywhere in the name:
 * PGPASSWORD=, ?access_token=, client_secret: "..."; pass, pwd, auth, api_key, access_key,
 * private_key, signature, credentials after _ or -, or alone), as name=value, name = 'quoted',
 * name: "quoted", --name VALUE; SQL's PASSWORD '...'; Redis' requirepass/masterauth VALUE;
 * Bearer TOKEN; and every string
 * registered as secret (inputs of type secret, and what redact_learn recognised where values
 * entered: inputs, the command line, the REPL's lines).
 */
#ifndef REDACT_H
#define REDACT_H

#include <stddef.h>

#define REDACTED "***"

void  redact_add_secret(const char *secret);   /* copies; strings shorter than 3 are ignored */
/* Returns a malloc'd, NUL-terminated redacted copy of in[0..n); *outlen gets its length. */
char *redact(const char *in, size_t n, size_t *outlen);
void  redact_free_all(void);
/* Registers as secret every value of in[0..n) that redact() recognises by its form (see above),
 * so that it is masked afterwards also where it appears alone. */
void  redact_learn(const char *in, size_t n);

struct jbuf;
/* jb_kstr (jsonw.h) with the value redacted; nothing is written when val is NULL. */
void  jb_kstr_redacted(struct jbuf *b, const char *key, const char *val);
/* Opens b (jb_open) as the audit record of a call: "primitive", then "target", "on" and
 * "host" redacted (each left out when NULL). The gate's and the probes' records begin so. */
void  jb_open_call(struct jbuf *b, const char *primitive, const char *target, const char *on, const char *host);

#endif
