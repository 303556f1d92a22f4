/*
 * multipart: the S3 multipart-upload protocol — part planning, initiate,
 * complete (whose 200 answer may still carry an error), abort, and the
 * "md5-of-md5s-N" ETag that lets a multipart object be verified end to end.
 */
#ifndef SKY_S3_MULTIPART_H
#define SKY_S3_MULTIPART_H

#include <stddef.h>
#include <stdint.h>

#include "s3/client.h"

#define S3_MAX_PART_SIZE ((uint64_t)5 << 30)

/* The part size for a file of `size` bytes: `wanted` (at least 5 MiB), grown
 * in whole MiB until the file fits in S3_MAX_PARTS parts. */
uint64_t s3_multipart_part_size(uint64_t size, uint64_t wanted);
/* Number of parts of part_size for size bytes (at least 1). */
uint64_t s3_multipart_part_count(uint64_t size, uint64_t part_size);

/* "<hex md5 of the concatenated part digests>-<n>", the ETag S3 gives a
 * multipart object. out needs 64 bytes. */
void s3_multipart_etag(const unsigned char (*part_md5)[16], size_t n, char *out);

/* 1 when etag has the multipart form "<32 hex>-<n>"; *parts receives n. */
int s3_etag_multipart_parts(const char *etag, uint64_t *parts);

/* Starts an upload; upload_id receives its id. part_size is recorded in the
 * object's metadata (x-amz-meta-skyrun-part-size) so a download can verify
 * the multipart ETag; nonce (NULL: none) in x-amz-meta-skyrun-upload, so a
 * Complete whose answer was lost can be recognised (s3_multipart_remove_if_ours). */
int s3_multipart_initiate(s3_client *c, const char *bucket, const char *key,
                          const char *content_type, uint64_t part_size, const char *nonce,
                          char *upload_id, size_t cap, s3_error *err);

/* After a Complete that failed (or was interrupted) once it had been sent:
 * the server may have assembled the object anyway (the answer was lost, a
 * retry then failed). Deletes the key when its x-amz-meta-skyrun-upload is
 * nonce, i.e. it is this upload's object and nobody else's; best effort,
 * also while interrupted; a failure to delete is logged. */
void s3_multipart_remove_if_ours(s3_client *c, const char *bucket, const char *key, const char *nonce);

/* Completes with the parts' ETags (in part order); etag_out (80 bytes)
 * receives the object's ETag. */
int s3_multipart_complete(s3_client *c, const char *bucket, const char *key,
                          const char *upload_id, char (*part_etags)[80], size_t n,
                          char *etag_out, s3_error *err);

/* Aborts (best effort, also while interrupted); failures are logged. */
void s3_multipart_abort(s3_client *c, const char *bucket, const char *key, const char *upload_id);

#endif
