/*
 * request: the inside of the S3 layer — the client structure, one signed S3
 * request on a curl easy handle (s3_request), and the batch runner that
 * drives many of them through the client's curl multi handle with bounded
 * parallelism, per-request retries and interrupt polling. Only the files of
 * src/s3 include this; other layers use client.h.
 */
#ifndef SKY_S3_REQUEST_H
#define SKY_S3_REQUEST_H

#include <curl/curl.h>
#include <openssl/evp.h>
#include <stdint.h>

#include "s3/client.h"
#include "s3/progress.h"
#include "s3/s3_url.h"
#include "s3/sigv4.h"

#define S3_REQ_MAX_QUERY 6
#define S3_REQ_MAX_HEADERS 10
#define S3_ERRBODY_MAX (64 * 1024)

struct s3_client {
    s3_settings settings;      /* deep copy; secrets wiped at free */
    s3_endpoint endpoint;
    size_t part_size;
    int parallel;
    int attempts;              /* per request or part: 1 + the `retries` option */
    int progress;              /* resolved: 1 draw bars, 0 never */
    CURLM *multi;
    CURL **idle;               /* easy handles ready for reuse */
    size_t nidle, idle_cap;
    uint64_t rng;
    char head_key[1024];       /* storage behind s3_head_object's info */
    char head_etag[80];
};

/* Response headers the client reads. */
typedef struct s3_response_headers {
    char etag[80];             /* without quotes */
    char request_id[128];
    char sse[32];              /* x-amz-server-side-encryption */
    int sse_customer;          /* SSE-C: the ETag is not an MD5 */
    char meta_part_size[24];   /* x-amz-meta-skyrun-part-size */
    char meta_upload[40];      /* x-amz-meta-skyrun-upload */
    char last_modified[64];
    uint64_t content_length;
    int has_content_length;
} s3_response_headers;

typedef struct s3_request {
    /* What to send (set by the caller; pointers must outlive the request). */
    const char *op;            /* "get", "upload", … for messages */
    const char *method;
    const char *bucket;        /* NULL for service-level requests */
    const char *key;           /* NULL or "" for bucket-level requests */
    s3_kv query[S3_REQ_MAX_QUERY];
    size_t nquery;
    s3_kv headers[S3_REQ_MAX_HEADERS];   /* extra headers, lowercase names */
    size_t nheaders;
    const uint8_t *body;       /* memory body of body_len bytes, or … */
    int body_fd;               /* … a file range at body_offset (-1: none) */
    uint64_t body_offset, body_len;
    const char *payload_hash;  /* hex SHA-256 or "UNSIGNED-PAYLOAD"; NULL: hash the memory body */

    /* Where a 2xx body goes: response (NULL: dropped) or a file at sink_offset. */
    sky_buf *response;
    int sink_fd;               /* -1: none */
    uint64_t sink_offset;
    uint64_t sink_limit;       /* most bytes accepted (0: unlimited) */
    int want_md5;              /* compute the MD5 of the 2xx body into md5 */
    s3_progress *progress;     /* counts body bytes sent or received (NULL: none) */

    /* Results of the last attempt. */
    long status;
    int curl_code;
    uint64_t sent, received;
    unsigned char md5[16];
    s3_response_headers hdr;
    char local_error[256];     /* our own failure (disk write) that stopped the transfer */

    /* Attempt state, owned by the request while it runs. */
    CURL *easy;
    struct curl_slist *slist;
    EVP_MD_CTX *md5_ctx;
    sky_buf errbody;
    char hash_buf[65];
    char curl_errbuf[CURL_ERROR_SIZE];
} s3_request;

/* A request with nothing set: no body, no sink (body_fd = sink_fd = -1). */
void s3_request_init(s3_request *r, const char *op, const char *method,
                     const char *bucket, const char *key);
void s3_request_add_query(s3_request *r, const char *name, const char *value);
void s3_request_add_header(s3_request *r, const char *name, const char *value);

/* Starts an attempt: resets the results, signs (fresh date every attempt)
 * and configures easy. Returns 0, or -1 with err filled (invalid input). */
int s3_request_start(s3_client *c, s3_request *r, CURL *easy, s3_error *err);
/* Ends an attempt: frees the attempt state and records status and MD5. */
void s3_request_end(s3_request *r, CURLcode rc);

/* After s3_request_end: 0 when the attempt succeeded (2xx and no local
 * error), 1 when it failed and may be retried, -1 when it failed for good.
 * err is filled on failure (text included). */
int s3_request_outcome(s3_client *c, s3_request *r, s3_error *err);

/* Fills err->text from its fields: "s3 OP s3://BUCKET/KEY: CODE: MESSAGE
 * (request id ID)", redacted. */
void s3_error_finish(s3_error *err, const char *op, const char *bucket, const char *key);
/* Appends " (NOTE)" to err->text (redacted, truncated to fit). */
void s3_error_note(s3_error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A local (non-HTTP) failure: err->code empty, message from fmt. */
void s3_error_local(s3_error *err, const char *op, const char *bucket, const char *key,
                    const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* Refuses what would silently address something else: an empty bucket (a
 * service-level request), and, when need_key, an empty key (the request
 * would go to the bucket itself: DELETE would delete the bucket, PUT create
 * one) or one longer than S3's 1,024 bytes. 0, or -1 with err filled. */
#define S3_MAX_KEY_LEN 1024
int s3_check_target(const char *op, const char *bucket, const char *key, int need_key, s3_error *err);

/* A batch: n items, each one request, run with up to `parallel` in flight. */
typedef struct s3_batch {
    s3_client *client;
    size_t n;
    int parallel;              /* 0: the client's */
    /* Describes item i into req (already s3_request_init'ed). 0 or -1 with err. */
    int (*prepare)(void *ud, size_t i, s3_request *req, s3_error *err);
    /* Item i got a 2xx answer: 0 done, 1 retry it, -1 fail the batch (err filled). */
    int (*finish)(void *ud, size_t i, s3_request *req, s3_error *err);
    void *ud;
    /* Names the whole batch in messages that concern no single request ("interrupted"). */
    const char *op, *bucket, *key;
    /* Cleanup requests (AbortMultipartUpload) must run after an interrupt too. */
    int uninterruptible;
    int max_attempts;          /* 0: the client's */
} s3_batch;

/* Runs every item; stops at the first item that fails for good, at the
 * attempt limit, or on an interrupt (err: "interrupted"), cancelling the
 * requests in flight. Returns 0 or -1. */
int s3_batch_run(s3_batch *b, s3_error *err);

/* One request through the batch runner (retries included). req's results
 * are filled in place. */
int s3_request_perform(s3_client *c, s3_request *req, s3_error *err);

/* A cleanup request: runs even while an interrupt is pending, at most
 * S3_CLEANUP_ATTEMPTS times (retry.h). */
int s3_request_perform_cleanup(s3_client *c, s3_request *req, s3_error *err);

/* After a 404 on bucket/key: when the bucket itself is missing, rewrites err
 * to NoSuchBucket (S3 answers HEAD without a body, so the status is all). */
void s3_refine_not_found(s3_client *c, const char *op, const char *bucket, const char *key,
                         s3_error *err);

/* base64 of n bytes into out (NUL-terminated; cap >= 4*ceil(n/3)+1). */
void s3_base64(const unsigned char *in, size_t n, char *out, size_t cap);

/* The buffer files are hashed through, chunk by chunk. */
#define S3_HASH_CHUNK (256 * 1024)

/* Zeroed memory for a transfer's buffers and per-part records, whose size
 * the file or object chooses: NULL with err filled ("out of memory for N
 * bytes") when it cannot be had, rather than aborting (util/alloc.h). */
void *s3_transfer_calloc(size_t n, size_t size, const char *op, const char *bucket,
                         const char *key, s3_error *err);

/* Calls fn for every regular file below dir (transfer_upload.c): path is
 * "dir/rel", rel the path below dir ('/'-separated). Links to files are
 * followed, links to folders are not (no loops); entries that vanish are
 * skipped; at most 64 levels. fn returns 0 to go on, anything else to stop
 * (then returned). -1 with why when a folder cannot be read. */
struct stat;
typedef int (*s3_file_fn)(void *ud, const char *path, const char *rel, const struct stat *sb);
int s3_walk_files(const char *dir, s3_file_fn fn, void *ud, char *why, size_t whylen);

/* CopyObject (client.c): the request copying src to dst, with the header
 * value built in source and the answer going to resp (both must outlive
 * r); then, after a 2xx, the answer's verdict (0, or -1 with err: S3 can
 * fail a copy inside a 200). */
void s3_copy_request_init(s3_request *r, const char *src_bucket, const char *src_key,
                          const char *dst_bucket, const char *dst_key, sky_buf *source, sky_buf *resp);
int s3_copy_result(const sky_buf *resp, const char *dst_bucket, const char *dst_key, s3_error *err);

/* A download's temp file, "<dest>.skyrun-tmp-XXXXXX" next to its destination
 * (transfer_download.c): written, then committed (fsync'ed, given mtime > 0,
 * renamed over the destination) or discarded (closed and removed). */
typedef struct s3_temp_file {
    sky_buf path;
    int fd;              /* -1: none */
    int created;         /* exists under path and must be removed unless committed */
} s3_temp_file;
#define S3_TEMP_FILE_INIT { SKY_BUF_INIT, -1, 0 }
/* Creates it, size bytes long, after the folders above dest when make_dirs. */
int s3_temp_open(s3_temp_file *t, const char *bucket, const char *key, const char *dest,
                 int make_dirs, uint64_t size, s3_error *err);
int s3_temp_commit(s3_temp_file *t, const char *bucket, const char *key, const char *dest,
                   long long mtime, s3_error *err);
void s3_temp_discard(s3_temp_file *t);   /* idempotent; frees the path */

/* MD5 (and, when sha_hex is not NULL, hex SHA-256) of len bytes of fd at
 * offset, read in S3_HASH_CHUNK pieces through chunk (transfer_upload.c).
 * 0, or -1 with a reason in why. */
int s3_hash_range(int fd, uint64_t offset, uint64_t len, uint8_t *chunk, unsigned char md5[16],
                  char *sha_hex, char *why, size_t whylen);

/* 1 when the response's ETag is the MD5 of the body: 32 hex digits and no
 * SSE-KMS or SSE-C encryption (whose ETags are something else). */
int s3_etag_is_md5(const s3_response_headers *h);
/* Content-MD5 header value (base64 of the digest) of n bytes in memory. */
void s3_content_md5(const void *data, size_t n, unsigned char digest[16], char b64[25]);

#endif
