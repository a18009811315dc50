/*
 * term.c - output path and prompts; see term.h.
 *
 * Prompts stay in canonical mode (the kernel's line editing, echo on), so a crash can never
 * leave the terminal raw; the termios saved at start is still restored at exit in case a child
 * process changed it.
 */
#include "term.h"
#include "redact.h"
#include "sched.h"
#include "transcript.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

static bool interactive, color, saved_valid;
static struct termios saved;
static char tty_name[256];

/* The program's own colours: ESC, this process's random nonce, then an SGR sequence. Text that is
 * shown (commands, summaries, targets, live output, notes) cannot know the nonce, so every other
 * ESC in it is made visible; see visible(). */
#define NONCE_LEN 12
static char style_mark[1 + NONCE_LEN + 1];

static void make_style_mark(void)
{
	static const char letters[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
	unsigned char r[NONCE_LEN];
	if (getentropy(r, sizeof r) != 0) {
		unsigned long x = (unsigned long)getpid() * 2654435761u ^ (unsigned long)time(NULL);
		for (size_t i = 0; i < sizeof r; i++, x = x * 6364136223846793005u + 1442695040888963407u)
			r[i] = (unsigned char)(x >> 33);
	}
	style_mark[0] = '\033';
	for (size_t i = 0; i < NONCE_LEN; i++)
		style_mark[1 + i] = letters[r[i] % (sizeof letters - 1)];
	style_mark[1 + NONCE_LEN] = 0;
}

const char *term_style(const char *sgr, char *buf, size_t n)
{
	if (!color || n == 0) {
		if (n)
			buf[0] = 0;
		return n ? buf : "";
	}
	snprintf(buf, n, "%s[%sm", style_mark, sgr);
	return buf;
}

void term_init(void)
{
	make_style_mark();
	interactive = isatty(STDIN_FILENO);
	const char *nc = getenv("NO_COLOR");
	color = isatty(STDOUT_FILENO) && !(nc && *nc) && !(getenv("TERM") && strcmp(getenv("TERM"), "dumb") == 0);
	if (interactive && tcgetattr(STDIN_FILENO, &saved) == 0)
		saved_valid = true;
	if (interactive && ttyname_r(STDIN_FILENO, tty_name, sizeof tty_name) != 0)
		tty_name[0] = 0;
}

void term_restore(void)
{
	if (saved_valid)
		tcsetattr(STDIN_FILENO, TCSANOW, &saved);
}

bool term_interactive(void) { return interactive; }
bool term_color(void) { return color; }
const char *term_tty_name(void) { return tty_name; }

int term_write_all(int fd, const char *s, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, s, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		s += w;
		n -= (size_t)w;
	}
	return 0;
}

/* The length of a valid UTF-8 sequence at s (at most n bytes) and its code point; 0 if invalid. */
static size_t utf8_seq(const unsigned char *s, size_t n, unsigned *cp)
{
	size_t len = s[0] >= 0xf0 && s[0] <= 0xf4 ? 4 : s[0] >= 0xe0 ? 3 : s[0] >= 0xc2 && s[0] < 0xe0 ? 2 : 0;
	if (len == 0 || len > n || s[0] > 0xf4)
		return 0;
	unsigned c = s[0] & (0x7f >> len);
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		c = c << 6 | (s[i] & 0x3f);
	}
	static const unsigned min[] = { 0, 0, 0x80, 0x800, 0x10000 };
	if (c < min[len] || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
		return 0;
	*cp = c;
	return len;
}

/* Characters a terminal acts on instead of showing: C1 controls, and the bidirectional overrides
 * and isolates that reorder what is displayed (a command shown in another order than it runs). */
static bool hidden_char(unsigned cp)
{
	return (cp >= 0x80 && cp <= 0x9f) || cp == 0x061c || cp == 0x200e || cp == 0x200f ||
	       (cp >= 0x202a && cp <= 0x202e) || (cp >= 0x2066 && cp <= 0x2069);
}

size_t term_char(const char *s, size_t n, unsigned *cp, bool *escaped)
{
	unsigned char c = (unsigned char)s[0];
	size_t len = c < 0x80 ? 0 : utf8_seq((const unsigned char *)s, n, cp);
	if (len == 0) {
		*cp = c;
		*escaped = !(c == '\n' || c == '\t' || (c >= 0x20 && c < 0x7f));
		return 1;
	}
	*escaped = hidden_char(*cp);
	return len;
}

/* The length of the program's own colour sequence at s (the style mark, then [digits;...m), or 0. */
static size_t own_style(const char *s, size_t n)
{
	size_t m = 1 + NONCE_LEN;
	if (n < m + 2 || memcmp(s, style_mark, m) != 0 || s[m] != '[')
		return 0;
	for (size_t i = m + 1; i < n; i++) {
		if (s[i] == 'm')
			return i + 1;
		if (!strchr("0123456789;", s[i]))
			return 0;
	}
	return 0;
}

/*
 * What the terminal is given: text exactly as it is, except what a terminal would act on instead
 * of showing, which is shown as an escape: \r, \x1b (ESC, so no CSI/OSC sequence: no erase-line,
 * no title, no clipboard), other C0 controls and DEL as \xNN, C1 controls and bidi overrides as
 * \u009b, a byte that is not UTF-8 as U+FFFD (the transcript's convention). Newline and tab
 * pass; the program's own colours (term_style) are the only escape sequences written.
 */
static char *visible(const char *s, size_t n, size_t *out_len)
{
	char *out = malloc(n * 4 + 1), *p = out;   /* at most 4 bytes shown for 1: "\\x07" */
	if (!out)
		abort();
	for (size_t i = 0; i < n;) {
		unsigned char c = (unsigned char)s[i];
		size_t own;
		if (c == '\033' && (own = own_style(s + i, n - i)) > 0) {
			*p++ = '\033';
			memcpy(p, s + i + 1 + NONCE_LEN, own - 1 - NONCE_LEN);
			p += own - 1 - NONCE_LEN;
			i += own;
		} else if (c == '\n' || c == '\t' || (c >= 0x20 && c < 0x7f)) {
			*p++ = (char)c;
			i++;
		} else if (c == '\r') {
			p = stpcpy(p, "\\r");
			i++;
		} else if (c < 0x80) {
			p += sprintf(p, "\\x%02x", c);
			i++;
		} else {
			unsigned cp = 0;
			size_t len = utf8_seq((const unsigned char *)s + i, n - i, &cp);
			if (len == 0) {   /* what a UTF-8 terminal shows, and never a C1 control in 8-bit form */
				p = stpcpy(p, "\xef\xbf\xbd");
				i++;
			} else if (hidden_char(cp)) {
				p += sprintf(p, "\\u%04x", cp);
				i += len;
			} else {
				memcpy(p, s + i, len);
				p += len;
				i += len;
			}
		}
	}
	*p = 0;
	*out_len = (size_t)(p - out);
	return out;
}

static void emit(int fd, const char *s, size_t n)
{
	size_t len, shown_len;
	char *clean = redact(s, n, &len);
	char *shown = visible(clean, len, &shown_len);
	free(clean);
	transcript_output(shown, shown_len);
	term_write_all(fd, shown, shown_len);
	free(shown);
}

void out_write(const char *s, size_t n) { emit(STDOUT_FILENO, s, n); }

static void vemit(int fd, const char *fmt, va_list ap)
{
	char *s = NULL;
	int n = vasprintf(&s, fmt, ap);
	if (n >= 0) {
		emit(fd, s, (size_t)n);
		free(s);
	}
}

void out_printf(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vemit(STDOUT_FILENO, fmt, ap);
	va_end(ap);
}

void err_printf(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vemit(STDERR_FILENO, fmt, ap);
	va_end(ap);
}

/*
 * Reads one line from the terminal. The poll goes through the scheduler so that Ctrl-C (which
 * the kernel turns into SIGINT and an input flush) ends the question at once.
 */
enum prompt_result term_prompt(const char *prompt, char *buf, size_t n)
{
	if (!interactive)
		return PROMPT_NOTTY;
	tcflush(STDIN_FILENO, TCIFLUSH);
	out_write(prompt, strlen(prompt));
	size_t len = 0;
	for (;;) {
		struct pollfd p = { .fd = STDIN_FILENO, .events = POLLIN };
		enum sched_wait w = sched_poll(&p, 1, sched_now() + 3600 * 1000);
		if (w == SCHED_INTERRUPTED) {
			out_write("\n", 1);
			return PROMPT_INTERRUPTED;
		}
		if (w == SCHED_TIMEOUT)
			continue;
		char c;
		ssize_t r = read(STDIN_FILENO, &c, 1);
		if (r < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (r <= 0)
			return PROMPT_EOF;
		if (c == '\n')
			break;
		if (len + 1 < n)
			buf[len++] = c;
	}
	buf[len] = 0;
	while (len > 0 && (buf[len - 1] == '\r' || buf[len - 1] == ' '))
		buf[--len] = 0;
	/* The echo already showed the answer on screen; the transcript must hold it too. */
	size_t clen;
	char *clean = redact(buf, len, &clen);
	transcript_output(clean, clen);
	transcript_output("\r\n", 2);
	free(clean);
	return PROMPT_LINE;
}
