/*
 * client: the S3 layer's API for C callers in this tree (the Lua bindings,
 * the CLI). It is internal: the installed public C API is include/skyrun.h
 * alone. One s3_client per storage: it owns the resolved settings, one
 * curl multi handle (kept-alive connections shared by every request) and a
 * pool of reusable easy handles.
 *
 * Every operation returns 0 on success or -1 with *err filled: err->text is
 * the whole message for a user, already naming the operation, bucket and key
 * and passed through sky_redact, e.g.
 *   "s3 get s3://datasets/iris/x.csv: NoSuchKey: The specified key does not exist. (request id 4F2A…)"
 * Transfers stream from and to disk with memory bounded by parallel × a small
 * buffer, retry per request (retry.h), verify integrity, and leave either a
 * complete destination or an untouched one (uploads are aborted, download
 * temp files removed), also when interrupted (util/interrupt.h).
 * Memory a user sizes (an object read by s3_get_object, a transfer's
 * per-part records) that cannot be had is such an error ("out of memory
 * …"); small bookkeeping aborts (util/alloc.h).
 */
#ifndef SKY_S3_CLIENT_H
#define SKY_S3_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "s3/credentials.h"
#include "s3/sigv4.h"
#include "s3/sync.h"
#include "util/buf.h"

typedef struct s3_client s3_client;

#define S3_DEFAULT_PART_SIZE ((size_t)8 << 20)
#define S3_MIN_PART_SIZE ((size_t)5 << 20)
#define S3_MAX_PARTS 10000
#define S3_DEFAULT_PARALLEL 8
#define S3_MAX_PARALLEL 64
/* Retries are extra attempts after the first, as everywhere in skyrun:
 * the default 4 means a request or part is sent at most 5 times. */
#define S3_DEFAULT_RETRIES 4
#define S3_MAX_RETRIES 20
/* A presigned URL is valid for 1 s to 7 days (SigV4's limit). */
#define S3_PRESIGN_MAX_EXPIRES SIGV4_MAX_EXPIRES

typedef struct s3_client_options {
    size_t part_size;   /* multipart part and download range size; 0: 8 MiB (minimum 5 MiB) */
    int parallel;       /* requests in flight per transfer (1 … 64); 0: 8 */
    int retries;        /* extra attempts per request or part after the first (0 … 20);
                         * negative: S3_DEFAULT_RETRIES */
    int progress;       /* -1: a bar on stderr when it is a terminal, 0: never, 1: always */
} s3_client_options;

/* Every option at its default. */
#define S3_CLIENT_OPTIONS_INIT { 0, 0, -1, -1 }

typedef struct s3_error {
    long status;          /* HTTP status, 0 when no answer */
    int curl_code;        /* CURLcode of the last attempt, 0 when none */
    char code[64];        /* S3 error code ("NoSuchKey"), "" for local/network failures */
    char message[512];
    char request_id[128];
    int attempts;         /* attempts made, when retries were exhausted (> 1) */
    char text[1536];      /* the full, redacted message for the user */
} s3_error;

/* The resolved settings are copied (secrets included; wiped at free).
 * opts may be NULL. Returns NULL with err filled on invalid settings. */
s3_client *s3_client_new(const s3_settings *settings, const s3_client_options *opts, s3_error *err);
void s3_client_free(s3_client *c);   /* NULL-safe */

typedef struct s3_object_info {
    const char *key;      /* full key (or common prefix ending in the delimiter) */
    uint64_t size;
    const char *etag;     /* without quotes; "" for prefixes */
    long long mtime;      /* seconds since the epoch, 0 when unknown */
    int is_prefix;        /* a "directory" from a non-recursive listing */
} s3_object_info;

/* Called once per key in order; return nonzero to stop listing early (the
 * listing then still returns 0). */
typedef int (*s3_list_fn)(void *ud, const s3_object_info *obj);

/* Every key under prefix (all pages); recursive = 0 groups deeper keys into
 * common prefixes ending in "/". */
int s3_list(s3_client *c, const char *bucket, const char *prefix, int recursive,
            s3_list_fn fn, void *ud, s3_error *err);

int s3_put_object(s3_client *c, const char *bucket, const char *key, const void *data,
                  size_t len, const char *content_type, s3_error *err);
int s3_get_object(s3_client *c, const char *bucket, const char *key, sky_buf *out, s3_error *err);

/* HEAD: 0 and *info filled (key and etag point into client storage valid
 * until the next call) when the object exists; 1 when it does not (err says
 * NoSuchKey or NoSuchBucket); -1 on any other failure. info may be NULL. */
int s3_head_object(s3_client *c, const char *bucket, const char *key,
                   s3_object_info *info, s3_error *err);

int s3_delete_object(s3_client *c, const char *bucket, const char *key, s3_error *err);
/* Deletes every key under prefix with batched DeleteObjects (1000 per request). */
int s3_delete_prefix(s3_client *c, const char *bucket, const char *prefix,
                     size_t *deleted, s3_error *err);

/* Deletes the n keys with batched DeleteObjects (1000 per request);
 * *deleted (may be NULL) counts those confirmed. */
int s3_delete_keys(s3_client *c, const char *bucket, const char *const *keys, size_t n,
                   size_t *deleted, s3_error *err);

int s3_copy_object(s3_client *c, const char *src_bucket, const char *src_key,
                   const char *dst_bucket, const char *dst_key, s3_error *err);

/* A presigned URL for method ("GET", "PUT", "HEAD", "DELETE") valid for
 * expires seconds (1 … S3_PRESIGN_MAX_EXPIRES). */
int s3_presign(s3_client *c, const char *bucket, const char *key, const char *method,
               unsigned expires, sky_buf *url, s3_error *err);

int s3_create_bucket(s3_client *c, const char *bucket, s3_error *err);
int s3_delete_bucket(s3_client *c, const char *bucket, s3_error *err);

/* Copies every key under src_prefix to the same relative key under
 * dst_prefix, server-side, one CopyObject each; *count (may be NULL)
 * receives the number copied. Prefixes are taken as given (target.h's
 * s3_target_prefix makes them "folders"). */
int s3_copy_prefix(s3_client *c, const char *src_bucket, const char *src_prefix,
                   const char *dst_bucket, const char *dst_prefix, size_t *count, s3_error *err);

/* Uploads a regular file to exactly key: one PUT (Content-MD5, signed
 * SHA-256) up to the part size, else a parallel multipart upload
 * (Content-MD5 per part). */
int s3_upload_file(s3_client *c, const char *bucket, const char *key, const char *path,
                   const char *content_type, s3_error *err);
/* Uploads the file or folder at path as `aws s3 cp [--recursive] PATH
 * s3://bucket/KEY` does (the rules are target.h's, shared by sky.storage
 * and `skyrun s3`): a file to s3_target_key(path, key); a folder's regular
 * files, recursively, under s3_target_prefix(key), or under the folder's
 * own name + "/" when key is NULL (not given). *count (may be NULL)
 * receives the number of files uploaded; where (may be NULL) the key or
 * prefix used. */
int s3_upload_path(s3_client *c, const char *bucket, const char *key, const char *path,
                   const char *content_type, size_t *count, sky_buf *where, s3_error *err);

/* Downloads an object to exactly path, atomically (temp file in the same
 * folder, fsync, rename), with parallel ranged GETs for large objects. */
int s3_download_object(s3_client *c, const char *bucket, const char *key, const char *path,
                       s3_error *err);
/* s3_download_object, creating the folders above path first; mtime > 0
 * becomes the file's modification time (set before the rename). */
int s3_download_object_at(s3_client *c, const char *bucket, const char *key, const char *path,
                          long long mtime, s3_error *err);
/* Downloads every key under prefix into dir (created), keeping the relative
 * paths; keys that would escape dir ("..", absolute) are refused. */
int s3_download_prefix(s3_client *c, const char *bucket, const char *prefix, const char *dir,
                       size_t *count, s3_error *err);
/* Downloads as `aws s3 cp s3://bucket/KEY PATH` does (target.h): a key
 * that names a prefix ("" or ending in '/') downloads every key under it
 * into the folder path (s3_download_prefix); any other key downloads to
 * s3_target_file(key, path), creating the folders above it. *count (may be
 * NULL) receives the number of files; where (may be NULL) the file or
 * folder written. */
int s3_download_path(s3_client *c, const char *bucket, const char *key, const char *path,
                     size_t *count, sky_buf *where, s3_error *err);

/* ---- sync and mv (sync_run.c; the decisions are sync.h's planner) ---- */

/* Called for every action, after it succeeded (before nothing happens, in a
 * dry run): op is "upload", "download", "copy", "delete" or "move"; from
 * and to are what `aws s3 sync` prints ("dir/a", "s3://b/p/a"); to is NULL
 * for a delete. */
typedef void (*s3_sync_report_fn)(void *ud, const char *op, const char *from, const char *to);

typedef struct s3_sync_request {
    const char *src, *dst;           /* a local folder or s3://bucket[/prefix], not both local */
    const s3_sync_filter *filters;   /* --exclude / --include, in order */
    size_t nfilters;
    int delete_extra;                /* --delete: remove destination entries the source lacks */
    int dryrun;                      /* report what would be done, change nothing */
    int checksum;                    /* compare content, not times, when sizes are equal */
    int move;                        /* mv -r: copy every included entry, then delete its source */
    s3_sync_report_fn report;        /* may be NULL */
    void *report_ud;
} s3_sync_request;

typedef struct s3_sync_summary {
    size_t copied, deleted, unchanged, excluded;
    uint64_t bytes;                  /* bytes copied */
} s3_sync_summary;

/* Makes the destination like the source, as `aws s3 sync SRC DST` does
 * (sync.h has the rules): local folder → s3://, s3:// → local folder (created,
 * files get their object's LastModified as mtime), s3:// → s3:// (CopyObject).
 * Each copy is atomic (uploads leave no partial object, downloads go through
 * a temp file); the first failure stops the run, its message names the
 * object, and what was done before it stays. sum may be NULL. */
int s3_sync(s3_client *c, const s3_sync_request *req, s3_sync_summary *sum, s3_error *err);

/* Sync's checksum test: does the file at path (size bytes) hold what etag
 * stands for? A plain ETag is compared with the file's MD5; a multipart one
 * ("md5-of-md5s-N") with the file's md5-of-md5s for parts of part_size
 * (grown as uploads grow it) and of aws-cli's 8 MiB, when they make N parts.
 * 1 yes, 0 no, -1 cannot tell (no MD5 ETag, unknown part size), -2 the file
 * cannot be read (why filled). */
int s3_file_matches_etag(const char *path, uint64_t size, const char *etag, uint64_t part_size,
                         char *why, size_t whylen);

/* The settings in use (endpoint, region, …), for messages and presets. */
const s3_settings *s3_client_settings(const s3_client *c);

#endif
