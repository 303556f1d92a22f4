/*
 * retry: which failed S3 requests are worth sending again, and how long to
 * wait first. One policy for every request and every part of a transfer, so
 * "where are retries decided" has one answer.
 *
 * Retried: HTTP 500/502/503/504 and 429, the S3 codes SlowDown,
 * RequestTimeout, InternalError, ServiceUnavailable, Throttling(Exception),
 * RequestTimeTooSkewed excepted; curl timeouts, connection failures and
 * resets, truncated bodies. Never retried: other 4xx answers (the request
 * itself is wrong and will stay wrong) and local errors (disk full).
 * Backoff: "full jitter" — a uniform random delay in [0, min(cap, base·2^n)].
 */
#ifndef SKY_S3_RETRY_H
#define SKY_S3_RETRY_H

#include <stdint.h>

#define S3_RETRY_BASE_MS 100
#define S3_RETRY_CAP_MS 5000
/* How many attempts a request gets is the client's `retries` option
 * (client.h: extra attempts after the first, S3_DEFAULT_RETRIES). Cleanup
 * requests after a failure (abort a multipart upload, delete its object)
 * get this many attempts, also while an interrupt is pending. */
#define S3_CLEANUP_ATTEMPTS 3

/* 1 when a request that ended with this curl result (a CURLcode), HTTP status
 * (0 when none arrived) and S3 error code (NULL or "" when none) should be
 * sent again, 0 otherwise. */
int s3_retry_is_retryable(int curl_code, long http_status, const char *s3_code);

/* The delay in milliseconds before attempt number `failed_attempts` + 1,
 * after `failed_attempts` (>= 1) failures. *rng is the caller's random state
 * (any nonzero seed); passing it in keeps the function testable. */
long s3_retry_delay_ms(int failed_attempts, uint64_t *rng);

#endif
