/* util.c - see util.h. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "autoconfig.h"

#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>

static void (*fatal_hook)(void);

void
fl_set_fatal_hook(void (*hook)(void))
{
	fatal_hook = hook;
}

void
fl_sigbus_say(void)
{
	static const char msg[] = "factlens: a file it reads in place (the model's "
	    "weights) was truncated or rewritten while it ran (SIGBUS); run again "
	    "once the file is complete\n";
	ssize_t w = write(STDERR_FILENO, msg, sizeof msg - 1);

	(void)w;
}

static void
on_sigbus(int sig)
{
	if (fatal_hook != NULL) {
		void (*hook)(void) = fatal_hook;

		fatal_hook = NULL;
		hook();
	}
	fl_sigbus_say();
	signal(sig, SIG_DFL);
	raise(sig);
}

void
fl_sigbus_catch(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof sa);
	sigemptyset(&sa.sa_mask);
	sa.sa_handler = on_sigbus;
	sa.sa_flags = SA_RESETHAND;
	sigaction(SIGBUS, &sa, NULL);
}

void
fl_fatal(const char *fmt, ...)
{
	va_list ap;

	if (fatal_hook != NULL) {
		void (*hook)(void) = fatal_hook;
		fatal_hook = NULL;
		hook();
	}
	fputs("factlens: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

void *
xmalloc(size_t n)
{
	void *p = malloc(n == 0 ? 1 : n);

	if (p == NULL)
		fl_fatal("out of memory allocating %zu bytes", n);
	return p;
}

#define HUGE_BYTES ((size_t)2 << 20)

void *
xcalloc_huge(size_t n, size_t size)
{
	size_t bytes;
	void *p;

	if (size != 0 && n > SIZE_MAX / size)
		fl_fatal("out of memory allocating %zu x %zu bytes", n, size);
	bytes = n * size;
	if (bytes < HUGE_BYTES)
		return xcalloc(n, size);
	bytes = (bytes + HUGE_BYTES - 1) & ~(HUGE_BYTES - 1);
	p = xaligned_alloc(HUGE_BYTES, bytes);
	madvise(p, bytes, MADV_HUGEPAGE);	/* a refusal is harmless */
	memset(p, 0, bytes);
	return p;
}

void *
xaligned_alloc(size_t align, size_t n)
{
	void *p;

	if (posix_memalign(&p, align, n == 0 ? align : n) != 0)
		fl_fatal("out of memory allocating %zu bytes", n);
	return p;
}

void *
xcalloc(size_t n, size_t size)
{
	void *p = calloc(n == 0 ? 1 : n, size == 0 ? 1 : size);

	if (p == NULL)
		fl_fatal("out of memory allocating %zu x %zu bytes", n, size);
	return p;
}

void *
xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n == 0 ? 1 : n);

	if (q == NULL)
		fl_fatal("out of memory reallocating %zu bytes", n);
	return q;
}

void *
xreallocarray(void *p, size_t n, size_t size)
{
	if (size != 0 && n > SIZE_MAX / size)
		fl_fatal("allocation overflow: %zu x %zu", n, size);
	return xrealloc(p, n * size);
}

char *
xstrdup(const char *s)
{
	return xstrndup(s, strlen(s));
}

char *
xstrndup(const char *s, size_t n)
{
	char *p = xmalloc(n + 1);

	memcpy(p, s, n);
	p[n] = '\0';
	return p;
}

static char *
xvasprintf(const char *fmt, va_list ap)
{
	char *s;

	if (vasprintf(&s, fmt, ap) < 0)
		fl_fatal("out of memory formatting a message");
	return s;
}

char *
xasprintf(const char *fmt, ...)
{
	va_list ap;
	char *s;

	va_start(ap, fmt);
	s = xvasprintf(fmt, ap);
	va_end(ap);
	return s;
}

int
fl_error(char **cause, const char *fmt, ...)
{
	va_list ap;

	if (cause == NULL)
		return -1;
	va_start(ap, fmt);
	*cause = xvasprintf(fmt, ap);
	va_end(ap);
	return -1;
}

char *
fl_read_file(const char *path, size_t *len, size_t limit, char **cause)
{
	FILE *f;
	struct stat st;
	char *buf;
	size_t n;
	int fd;

	/* O_NONBLOCK: opening a FIFO must not wait for a writer; anything
	 * but a regular file is refused before a byte is read. */
	fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0) {
		fl_error(cause, "%s: cannot open: %s", path, strerror(errno));
		return NULL;
	}
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		fl_error(cause, "%s: not a regular file", path);
		return NULL;
	}
	if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK) != 0 ||
	    (f = fdopen(fd, "rb")) == NULL) {
		fl_error(cause, "%s: cannot open: %s", path, strerror(errno));
		close(fd);
		return NULL;
	}
	if (limit != 0 && (uint64_t)st.st_size > limit) {
		fclose(f);
		fl_error(cause, "%s: file is %lld bytes, more than the %zu allowed",
		    path, (long long)st.st_size, limit);
		return NULL;
	}
	buf = xmalloc((size_t)st.st_size + 1);
	n = fread(buf, 1, (size_t)st.st_size, f);
	if (ferror(f)) {
		fl_error(cause, "%s: read error: %s", path, strerror(errno));
		fclose(f);
		free(buf);
		return NULL;
	}
	fclose(f);
	buf[n] = '\0';
	if (len != NULL)
		*len = n;
	return buf;
}

void
fl_text_position(const char *text, size_t off, int *line, int *col)
{
	*line = 1;
	*col = 1;
	for (size_t i = 0; i < off && text[i] != '\0'; i++) {
		if (text[i] == '\n') {
			++*line;
			*col = 1;
		} else if (((unsigned char)text[i] & 0xc0) != 0x80)
			++*col;	/* a character, not a UTF-8 continuation byte */
	}
}

char *
fl_path_join(const char *dir, const char *name)
{
	size_t n = strlen(dir);

	if (n > 0 && dir[n - 1] == '/')
		return xasprintf("%s%s", dir, name);
	return xasprintf("%s/%s", dir, name);
}

int
fl_file_exists(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 && !S_ISDIR(st.st_mode);
}

double
fl_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Length of the valid UTF-8 sequence at s (at most n bytes), or 0 when the
 * byte at s does not start one: overlong forms, surrogates and code points
 * past U+10FFFF are invalid, as in PCRE2 and Python. */
size_t
fl_utf8_seq(const unsigned char *s, size_t n, uint32_t *cp)
{
	uint32_t c;
	size_t k, i;

	if (s[0] < 0x80) {
		*cp = s[0];
		return 1;
	}
	if (s[0] >= 0xc2 && s[0] <= 0xdf) {
		k = 2;
		c = s[0] & 0x1f;
	} else if (s[0] >= 0xe0 && s[0] <= 0xef) {
		k = 3;
		c = s[0] & 0x0f;
	} else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
		k = 4;
		c = s[0] & 0x07;
	} else
		return 0;
	if (n < k)
		return 0;
	for (i = 1; i < k; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		c = c << 6 | (s[i] & 0x3f);
	}
	if ((k == 3 && c < 0x800) || (k == 4 && c < 0x10000) || c > 0x10ffff ||
	    (c >= 0xd800 && c <= 0xdfff))
		return 0;
	*cp = c;
	return k;
}

size_t
fl_utf8_put(char *out, uint32_t cp)
{
	if (cp < 0x80) {
		out[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		out[0] = (char)(0xc0 | cp >> 6);
		out[1] = (char)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp < 0x10000) {
		out[0] = (char)(0xe0 | cp >> 12);
		out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		out[2] = (char)(0x80 | (cp & 0x3f));
		return 3;
	}
	out[0] = (char)(0xf0 | cp >> 18);
	out[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
	out[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
	out[3] = (char)(0x80 | (cp & 0x3f));
	return 4;
}

char *
fl_utf8_text(const char *b, size_t n)
{
	const unsigned char *u = (const unsigned char *)b;
	char *out = xmalloc(3 * n + 1), *o = out;
	size_t i = 0;

	while (i < n) {
		uint32_t cp;
		size_t k = u[i] != 0 ? fl_utf8_seq(u + i, n - i, &cp) : 0;

		if (k == 0) {
			o += fl_utf8_put(o, 0xfffd);	/* 3 bytes for at least 1 */
			i++;
		} else {
			memcpy(o, u + i, k);
			o += k;
			i += k;
		}
	}
	*o = '\0';
	return out;
}

char *
fl_hex(const char *b, size_t n)
{
	static const char digits[] = "0123456789abcdef";
	char *out = xmalloc(2 * n + 1);

	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[(unsigned char)b[i] >> 4];
		out[2 * i + 1] = digits[(unsigned char)b[i] & 15];
	}
	out[2 * n] = '\0';
	return out;
}
