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
#include <unistd.h>

static bool interactive, color, saved_valid;
static struct termios saved;
static char tty_name[256];

void term_init(void)
{
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

static void write_all(int fd, const char *s, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, s, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return;
		s += w;
		n -= (size_t)w;
	}
}

static void emit(int fd, const char *s, size_t n)
{
	size_t len;
	char *clean = redact(s, n, &len);
	transcript_output(clean, len);
	write_all(fd, clean, len);
	free(clean);
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
