/*
 * util.h - memory wrappers, error messages and small file helpers shared by
 * every layer of factlens.
 *
 * Errors: a function that can fail on input returns -1 (or NULL) and, when
 * `cause` is not NULL, stores in *cause a heap string naming the file, field
 * and what was expected (tmux's `char **cause` convention). The caller frees
 * it. Out-of-memory is not recoverable: x*alloc run the registered fatal
 * hook (the UI restores the terminal there) and exit(1).
 */
#ifndef FL_UTIL_H
#define FL_UTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#if defined(__GNUC__)
#define FL_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define FL_PRINTF(a, b)
#endif

void *xmalloc(size_t n);
/* n bytes at a multiple of align (a power of two, at least sizeof(void *));
 * release with free(). */
void *xaligned_alloc(size_t align, size_t n);
void *xcalloc(size_t n, size_t size);
/* Zeroed like xcalloc, but n * size bytes of 2 MB or more come in 2 MB
 * pages where the kernel allows: a page fault per 2 MB on first use rather
 * than per 4 KB, which costs about 17 us each on our VMs (a 26 MB buffer:
 * 6,300 faults, 0.1 s). For the big buffers of a pass; release with
 * free(). */
void *xcalloc_huge(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
void *xreallocarray(void *p, size_t n, size_t size);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
char *xasprintf(const char *fmt, ...) FL_PRINTF(1, 2);

/* Called once before exiting on a fatal error; the UI uses it to end curses. */
void fl_set_fatal_hook(void (*hook)(void));
void fl_fatal(const char *fmt, ...) FL_PRINTF(1, 2) __attribute__((noreturn));

/* SIGBUS: a mapped file (the weights) was truncated or rewritten while in
 * use. fl_sigbus_catch installs a handler that runs the fatal hook (the
 * terminal is restored), says so on stderr and ends the process with the
 * signal; fl_sigbus_say writes that message alone, for a handler of the
 * caller's own. Both are async-signal-safe but for the hook. */
void fl_sigbus_catch(void);
void fl_sigbus_say(void);

/* Stores a formatted message in *cause (if cause != NULL). Always returns -1. */
int fl_error(char **cause, const char *fmt, ...) FL_PRINTF(2, 3);

/* Reads a whole file. Returns a NUL-terminated heap buffer (len excludes the
 * NUL) or NULL with *cause set. `limit` caps the size (0: no cap). */
char *fl_read_file(const char *path, size_t *len, size_t limit, char **cause);

/* Line and column (both from 1) of byte off of text, for messages about
 * where a parser stopped. */
void fl_text_position(const char *text, size_t off, int *line, int *col);

/* Joins dir and name with one '/'. Heap string. */
char *fl_path_join(const char *dir, const char *name);
/* Whether path names something other than a directory: a FIFO or a device
 * counts, so that reading it fails with "not a regular file" rather than
 * being taken for absent. */
int fl_file_exists(const char *path);

/* Length of the valid UTF-8 sequence at s (at most n bytes), its code
 * point in *cp; 0 when the byte at s does not start one (overlong forms,
 * surrogates and code points past U+10FFFF are invalid, as in PCRE2 and
 * Python). */
size_t fl_utf8_seq(const unsigned char *s, size_t n, uint32_t *cp);

/* Writes cp as UTF-8 into out (room for 4 bytes); returns the bytes
 * written. */
size_t fl_utf8_put(char *out, uint32_t cp);

/* The n bytes at b as valid UTF-8 text for JSON and terminals: each byte
 * that does not start a valid sequence (a character split across tokens,
 * invalid UTF-8) and each NUL becomes U+FFFD. Heap string. */
char *fl_utf8_text(const char *b, size_t n);

/* The n bytes at b as lowercase hex, two digits a byte. Heap string. */
char *fl_hex(const char *b, size_t n);

/* Monotonic clock in seconds. */
double fl_now(void);

#endif
