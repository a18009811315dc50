/*
 * witness.h - checkpoints of the transcript outside the file itself, so that whoever can rewrite
 * the file (and recompute its chain) is still caught. See doc/transcripts.md.
 *
 * At a checkpoint (the header written, every "yes" at the gate, the session's end) the chain head
 *   - goes to the system log: syslog(3), ident "runbook", one line
 *       transcript ID line N head HEAD (WHY) PATH
 *     where ID is the head of line 1 (it names the session: the header holds its id and start);
 *     $RUNBOOK_SYSLOG_SOCKET names another datagram socket than /dev/log (the same bytes glibc
 *     sends), for systems and tests without a syslog daemon;
 *   - is signed, when a key is configured, with `ssh-keygen -Y sign -n runbook-transcript`: the
 *     signed statement (witness_statement) and the armored signature replace PATH.sig.
 * A failed signature is said once on stderr; the session goes on (the log line is still written).
 */
#ifndef WITNESS_H
#define WITNESS_H

#include <stddef.h>

#define WITNESS_NAMESPACE "runbook-transcript"

/* The key to sign with (a private key file, or a public one whose key is in ssh-agent), or NULL. */
void witness_set_key(const char *key_file);
/* Logs and signs the head of the transcript's first `lines` lines. */
void witness_checkpoint(const char *path, const char *id, long lines, const char *head, const char *why);
/* The text that is signed: "runbook-transcript checkpoint\nid ID\nlines N\nhead HEAD\n". */
int witness_statement(char *out, size_t n, const char *id, long lines, const char *head);

#endif
