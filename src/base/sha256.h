/*
 * sha256.h - SHA-256 (FIPS 180-4), for the weights hash that saved
 * sessions carry. Streaming: init, update any number of times, final.
 */
#ifndef FL_SHA256_H
#define FL_SHA256_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
	uint32_t	h[8];
	uint64_t	len;		/* bytes hashed so far */
	uint8_t		buf[64];	/* a partial block */
	size_t		nbuf;
} fl_sha256;

void sha256_init(fl_sha256 *c);
void sha256_update(fl_sha256 *c, const void *data, size_t n);
/* Tests: on, the plain rounds even where the SHA extensions would run. */
void sha256_force_plain(bool on);

/* Writes the digest as 64 lower-case hex digits and a NUL into hex. */
void sha256_final_hex(fl_sha256 *c, char hex[65]);

#endif
