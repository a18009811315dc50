/*
 * transcript.h - the session's durable record: an asciicast v2 file with audit records.
 *
 * Line 1 is the asciicast header with a "runbook" object. Then:
 *   [t, "o", text]    what the terminal showed (already redacted)
 *   [t, "m", label]   a marker per step
 *   [t, "a", json]    an audit record: {"seq","ts","type",...fields,"prev"}
 * "prev" chains every line: H1 = sha256(line 1), Hn = sha256(hex(Hn-1) || line n), lines without
 * their newline. The last record, session_end, also carries "seal" = sha256 of its own JSON
 * without the seal, so that a flipped byte anywhere is detected. Each line is one write(2),
 * made before the same text reaches the terminal. A failed write is sticky: transcript_ok()
 * turns false and the gate refuses every action from then on.
 */
#ifndef TRANSCRIPT_H
#define TRANSCRIPT_H

#include <stdbool.h>
#include <stddef.h>

/* Creates path (mode 0600, never over an existing file or through a symlink). header_runbook is
 * the JSON object stored as the header's "runbook" member. Returns 0, or -1 with err filled. */
int  transcript_open(const char *path, const char *header_runbook, char *err, size_t errlen);
bool transcript_is_open(void);
bool transcript_ok(void);
const char *transcript_path(void);
const char *transcript_head(void);   /* hex chain head over every line written so far */
long transcript_lines(void);
bool transcript_busy(void);          /* a line is half written (for the watchdog's last record) */

int transcript_output(const char *text, size_t n);
int transcript_marker(const char *label);
/* fields: a JSON object ("{...}") of already-redacted members, or NULL. */
int transcript_audit(const char *type, const char *fields);
int transcript_sync(void);
/* The step that audit records are attributed to ("step" member), or NULL between steps. */
void transcript_set_step(const char *id);          /* fdatasync: before an action runs, after its result */
/* Logs the chain head and signs it (witness.h): done at open, at close, and by the gate at each "yes". */
void transcript_checkpoint(const char *why);
/* Writes session_end with fields, syncs, closes. head (65 bytes) receives the final chain head. */
int transcript_close(const char *fields, char head[65]);

/* The default location: $XDG_STATE_HOME/runbook/transcripts (created 0700). */
/* Where runbook keeps SUB ("transcripts", "locks", "lab"): $XDG_STATE_HOME/runbook/SUB, or
 * ~/.local/state/runbook/SUB. Not created. -1 if it does not fit in n. */
int runbook_state_path(const char *sub, char *out, size_t n);
int transcript_default_dir(char *out, size_t n);

void sha256_hex(const void *data, size_t n, char out[65]);
/* sha256_hex(prev_hex || line): one link of the chain. */
void transcript_chain(const char *prev_hex, const char *line, size_t n, char out[65]);

#endif
