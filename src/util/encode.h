/*
 * encode: the two text encodings of bytes the host uses, each written once —
 * lowercase hex (digests, ETags, nonces, prototype hashes) and RFC 3986
 * percent-encoding (S3 keys and query strings as SigV4 signs them, and the
 * form a secret takes in a presigned URL, which log redaction must know).
 * Depends on libc and buf only (linked into the worker too).
 */
#ifndef SKY_UTIL_ENCODE_H
#define SKY_UTIL_ENCODE_H

#include <stddef.h>

#include "util/buf.h"

/* Lowercase hex of n bytes into out (2n characters and a NUL). */
void sky_hex(const void *in, size_t n, char *out);

/* Appends s[0..n) with every byte outside A-Z a-z 0-9 - _ . ~ (and '/'
 * when keep_slash) written as %XX, uppercase hex. */
void sky_buf_append_percent(sky_buf *out, const char *s, size_t n, int keep_slash);

#endif
