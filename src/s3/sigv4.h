/*
 * sigv4: AWS Signature Version 4, as S3 uses it — header signing and presigned
 * URLs. Pure functions of their inputs (the time is passed in), so the AWS
 * test vectors in tests/data/aws-sigv4-test-suite pin them exactly.
 *
 * S3 rules: the path is signed as sent (no normalisation, no double
 * encoding) unless `normalize_path` is set (other services; the vectors use
 * it); `x-amz-content-sha256` carries the payload hash or UNSIGNED-PAYLOAD.
 */
#ifndef SKY_S3_SIGV4_H
#define SKY_S3_SIGV4_H

#include <stddef.h>
#include "util/buf.h"
#include "util/encode.h"   /* sky_buf_append_percent: the encoding SigV4 signs */

/* The longest a presigned URL may be valid: 7 days. */
#define SIGV4_MAX_EXPIRES 604800

typedef struct s3_kv {
    const char *name;
    const char *value;
} s3_kv;

typedef struct sigv4_request {
    const char *method;          /* "GET", "PUT", … */
    const char *path;            /* path as sent on the wire, already percent-encoded */
    const s3_kv *query;          /* decoded query parameters; the signer encodes and sorts */
    size_t nquery;
    const s3_kv *headers;        /* headers to sign; must include "host" */
    size_t nheaders;
    const char *payload_hash;    /* lowercase hex SHA-256 of the body, or "UNSIGNED-PAYLOAD" */
    int normalize_path;          /* 0 for S3 */
} sigv4_request;

typedef struct sigv4_key {
    const char *access_key;
    const char *secret_key;
    const char *session_token;   /* NULL when none */
    const char *region;          /* "us-east-1" */
    const char *service;         /* "s3" */
} sigv4_key;

/* The value of the Authorization header for req, signed at amz_date
 * ("20150830T123600Z"). The caller must also send x-amz-date (and
 * x-amz-security-token when there is one) and have listed them in req's
 * headers. canonical and string_to_sign, when not NULL, receive the
 * intermediate texts (tests, debugging). Returns 0, or -1 on invalid input. */
int sigv4_authorization(const sigv4_request *req, const sigv4_key *key, const char *amz_date,
                        sky_buf *authorization, sky_buf *canonical, sky_buf *string_to_sign);

/* The query string (without '?') of a presigned URL for req, valid for 1 to
 * SIGV4_MAX_EXPIRES seconds: req's own query
 * plus X-Amz-Algorithm, -Credential, -Date, -Expires, -SignedHeaders,
 * -Security-Token (when there is one) and -Signature, encoded and sorted.
 * req->payload_hash is normally "UNSIGNED-PAYLOAD". Returns 0 or -1. */
int sigv4_presign_query(const sigv4_request *req, const sigv4_key *key, const char *amz_date,
                        unsigned expires_seconds, sky_buf *query,
                        sky_buf *canonical, sky_buf *string_to_sign);

/* Lowercase hex SHA-256 of n bytes. */
void sigv4_sha256_hex(const void *data, size_t n, char hex[65]);

/* Formats t (seconds since the epoch, UTC) as "YYYYMMDDTHHMMSSZ". */
void sigv4_amz_date(long long t, char out[17]);

#endif
