/*
 * check.h - the tests' few assertions. Each prints one TAP-like line,
 * "ok - NAME" or "FAIL - NAME: what differs", and check_done() turns the
 * count of failures into the exit status.
 */
#ifndef FL_CHECK_H
#define FL_CHECK_H

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

static int check_failed, check_run;

static void __attribute__((format(printf, 2, 3)))
check(int ok, const char *fmt, ...)
{
	va_list ap;

	check_run++;
	if (!ok)
		check_failed++;
	fputs(ok ? "ok - " : "FAIL - ", stdout);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
}

/* Compares n floats; passes when max |got - want| <= tol. Prints maxdiff.
 * Unused in the tests that compare no floats (test_tok). */
static double __attribute__((unused))
check_close(const char *name, const float *got, const float *want, size_t n,
    double tol)
{
	double maxd = 0;
	size_t at = 0;

	for (size_t i = 0; i < n; i++) {
		double d = fabs((double)got[i] - (double)want[i]);

		if (isnan(d) || d > maxd) {
			maxd = isnan(d) ? INFINITY : d;
			at = i;
		}
	}
	check(maxd <= tol, "%s: maxdiff %.3g (tolerance %.0e)%s", name, maxd, tol,
	    maxd <= tol ? "" : " at index");
	if (maxd > tol)
		printf("    index %zu: got %.7g, want %.7g\n", at, got[at], want[at]);
	return maxd;
}

static int
check_done(void)
{
	printf("%d checks, %d failed\n", check_run, check_failed);
	return check_failed ? 1 : 0;
}

#endif
