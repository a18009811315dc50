/*
 * sha256.h - SHA-256 (FIPS 180-4) for the transcript's hash chain.
 *
 * Written here rather than linked from libcrypto: the transcript needs one hash, and loading and
 * initialising OpenSSL cost more than a whole `runbook list` otherwise does.
 */
#ifndef SHA256_H
#define SHA256_H

#include <stddef.h>
#include <stdint.h>

struct sha256 {
	uint32_t h[8];
	uint64_t bytes;
	unsigned char block[64];
	size_t fill;
};

void sha256_init(struct sha256 *s);
void sha256_update(struct sha256 *s, const void *data, size_t n);
void sha256_final(struct sha256 *s, unsigned char digest[32]);
/* The digest as 64 lowercase hex digits and a NUL. */
void sha256_final_hex(struct sha256 *s, char hex[65]);

#endif
