/* embedded.h - the Lua half of the library, compiled to bytecode and built in by tools/embed.c. */
#ifndef EMBEDDED_H
#define EMBEDDED_H

#include <stddef.h>

struct embedded_file { const char *name; const char *code; size_t size; };
extern const struct embedded_file embedded_files[];

#endif
