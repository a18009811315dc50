/*
 * term.h - the operator's terminal: the one output path, colours and prompts.
 *
 * Everything shown goes through out_write(): redacted, made visible (control characters escaped,
 * see term_style), recorded in the transcript, then written to stdout, in that order. Prompts read from the terminal only: stdin must be a tty, typed-ahead
 * input is discarded before each question, and Ctrl-C at a prompt is an answer (PROMPT_INTERRUPTED).
 */
#ifndef TERM_H
#define TERM_H

#include <stdbool.h>
#include <stddef.h>

enum prompt_result { PROMPT_LINE, PROMPT_EOF, PROMPT_INTERRUPTED, PROMPT_NOTTY };

void term_init(void);
void term_restore(void);            /* puts back the termios saved at start (idempotent) */
bool term_interactive(void);        /* stdin is a terminal we may ask questions on */
bool term_color(void);              /* stdout is a tty and NO_COLOR is unset */
const char *term_tty_name(void);    /* ttyname(0) or "" */

/* The program's own colour (an SGR code such as "1;31", "0") written into buf: "" without colour.
 * Only these reach the terminal as escape sequences; every other control character shown is made
 * visible (\r, \x1b, \u009b) by the output path. */
const char *term_style(const char *sgr, char *buf, size_t n);

void out_write(const char *s, size_t n);
/* Writes all of s to fd, again after EINTR: 0, or -1 on an error (the history file uses it too). */
int term_write_all(int fd, const char *s, size_t n);
/* The character at s (n > 0 bytes): its length (1 for a byte that is not UTF-8; *cp is then that
 * byte) and whether out_write shows it as an escape rather than as itself (newline and tab: not). */
size_t term_char(const char *s, size_t n, unsigned *cp, bool *escaped);
void out_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* stderr, redacted, and also recorded in the transcript when one is open. */
void err_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Discards type-ahead, shows prompt, reads one line (without its newline) into buf. */
enum prompt_result term_prompt(const char *prompt, char *buf, size_t n);

#endif
