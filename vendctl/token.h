/*
 * token.h - where vendctl gets vendd's bearer token: the environment (VENDD_TOKEN) or a file
 * (--token-file) that only its owner can read. Never the command line, which every user of
 * the machine sees (ps, /proc/PID/cmdline) and shells keep in their history.
 */
#ifndef VENDCTL_TOKEN_H
#define VENDCTL_TOKEN_H

#include <stddef.h>

/*
 * Into buf (size bytes): the token read from path if path is not NULL, else from the
 * environment variable VENDD_TOKEN if set and not empty. Returns 1 with a token, 0 when there
 * is none (development mode: vendd answers loopback clients without one), or -1 after a
 * message naming the file or the variable: a file that is not a regular file, is readable or
 * writable by its group or others, belongs to another user, is empty or over size - 1 bytes,
 * or a token holding a space or a control character. One trailing newline (LF or CRLF) of a
 * file is not part of the token.
 */
int token_load(const char *path, char *buf, size_t size);

#endif
