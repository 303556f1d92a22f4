/*
 * transfer_download: objects and prefixes from S3 to disk. An object is
 * fetched into "<dest>.skyrun-tmp-XXXXXX" next to the destination — one GET
 * when it is small, parallel ranged GETs (each written with pwrite at its
 * offset) when it is large — then its size and checksum are verified, the
 * file is fsync'ed and renamed over the destination. Any failure, interrupt
 * included, removes the temp file: the destination is complete or untouched.
 *
 * Checksums: a plain-MD5 ETag is compared with the MD5 of the data; a
 * multipart ETag ("md5-of-md5s-N") is compared when the part boundaries are
 * known (uploads by skyrun record them in x-amz-meta-skyrun-part-size), by
 * fetching exactly those parts as the ranges. Every range must be If-Match
 * the ETag seen first, so an object replaced mid-download is an error.
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "s3/multipart.h"
#include "s3/request.h"
#include "s3/target.h"
#include "util/alloc.h"
#include "util/encode.h"

typedef struct range_state {
    char range[64];
} range_state;

/* Per-range arrays are sized by the object (a range per part_size bytes):
 * when they cannot be had, the download fails with an error
 * (s3_transfer_calloc). */

typedef struct download_job {
    s3_client *c;
    const char *bucket, *key;
    int fd;
    uint64_t size, range_size, nranges;
    int ranged;            /* Range headers (1) or one plain GET (0) */
    int md5_per_range;
    /* A plain-MD5 ETag fetched in ranges: the file is hashed in order as the
     * ranges complete (from the page cache, while later ranges still arrive). */
    int md5_whole;
    EVP_MD_CTX *whole;
    uint8_t *finished;     /* per range: complete */
    uint64_t next_to_hash;
    uint8_t *chunk;
    char if_match[96];
    range_state *ranges;
    unsigned char (*md5s)[16];   /* md5_per_range: each range's MD5 */
    s3_progress progress;
} download_job;

/* Hashes every range that is complete and next in file order. */
static int hash_ready_ranges(download_job *j)
{
    while (j->next_to_hash < j->nranges && j->finished[j->next_to_hash]) {
        uint64_t off = j->next_to_hash * j->range_size;
        uint64_t end = off + j->range_size < j->size ? off + j->range_size : j->size;
        while (off < end) {
            size_t want = end - off < S3_HASH_CHUNK ? (size_t)(end - off) : S3_HASH_CHUNK;
            ssize_t got = pread(j->fd, j->chunk, want, (off_t)off);
            if (got < 0 && errno == EINTR)
                continue;
            if (got <= 0)
                return -1;
            EVP_DigestUpdate(j->whole, j->chunk, (size_t)got);
            off += (uint64_t)got;
        }
        j->next_to_hash++;
    }
    return 0;
}

static int range_prepare(void *ud, size_t i, s3_request *req, s3_error *err)
{
    download_job *j = ud;
    range_state *rs = &j->ranges[i];
    uint64_t off = (uint64_t)i * j->range_size;
    uint64_t len = j->size - off < j->range_size ? j->size - off : j->range_size;
    s3_request_init(req, "download", "GET", j->bucket, j->key);
    if (j->ranged) {
        snprintf(rs->range, sizeof rs->range, "bytes=%llu-%llu", (unsigned long long)off,
                 (unsigned long long)(off + len - 1));
        s3_request_add_header(req, "range", rs->range);
    }
    if (j->if_match[0])
        s3_request_add_header(req, "if-match", j->if_match);
    req->sink_fd = j->fd;
    req->sink_offset = off;
    req->sink_limit = len;
    req->want_md5 = j->md5_per_range;
    req->progress = &j->progress;
    return 0;
}

static int range_finish(void *ud, size_t i, s3_request *req, s3_error *err)
{
    download_job *j = ud;
    uint64_t off = (uint64_t)i * j->range_size;
    uint64_t len = j->size - off < j->range_size ? j->size - off : j->range_size;
    if (j->ranged && req->status != 206) {
        s3_error_local(err, "download", j->bucket, j->key,
                       "the server ignored the Range header (status %ld)", req->status);
        return -1;
    }
    if (req->received != len) {
        /* A short body with a clean end: a broken connection or proxy; try again. */
        s3_error_local(err, "download", j->bucket, j->key, "received %llu of %llu bytes at offset %llu",
                       (unsigned long long)req->received, (unsigned long long)len, (unsigned long long)off);
        return 1;
    }
    if (j->md5_per_range)
        memcpy(j->md5s[i], req->md5, 16);
    /* Start writing this range back now, so the fsync before the rename
     * waits for the tail only, not the whole file. Errors surface there. */
    sync_file_range(j->fd, (off_t)off, (off_t)len, SYNC_FILE_RANGE_WRITE);
    if (j->md5_whole) {
        j->finished[i] = 1;
        if (hash_ready_ranges(j) != 0) {
            s3_error_local(err, "download", j->bucket, j->key, "cannot read back the download: %s",
                           strerror(errno));
            return -1;
        }
    }
    return 0;
}

static int verify_checksum(download_job *j, const s3_response_headers *h, s3_error *err)
{
    char hex[33];
    if (j->md5_per_range && j->nranges == 1 && s3_etag_is_md5(h)) {
        sky_hex(j->md5s[0], 16, hex);
    } else if (j->md5_per_range) {
        char expect[64];
        s3_multipart_etag((const unsigned char (*)[16])j->md5s, j->nranges, expect);
        if (strcasecmp(expect, h->etag) != 0) {
            s3_error_local(err, "download", j->bucket, j->key,
                           "the data received does not match the object's ETag %s (got %s)", h->etag, expect);
            return -1;
        }
        return 0;
    } else if (j->md5_whole || (j->size == 0 && s3_etag_is_md5(h))) {
        unsigned char md5[16];
        unsigned n;
        if (!j->md5_whole)
            EVP_Digest("", 0, md5, &n, EVP_md5(), NULL);
        else
            EVP_DigestFinal_ex(j->whole, md5, &n);
        sky_hex(md5, 16, hex);
    } else {
        return 0;   /* an ETag that is no checksum (SSE-KMS, unknown part sizes): size only */
    }
    if (strcasecmp(hex, h->etag) != 0) {
        s3_error_local(err, "download", j->bucket, j->key,
                       "the data received does not match the object's ETag %s (MD5 %s)", h->etag, hex);
        return -1;
    }
    return 0;
}

/* Chooses one GET or ranges, and whether per-range MD5s can check the ETag. */
static void plan_download(download_job *j, const s3_response_headers *h)
{
    uint64_t parts = 0, recorded = strtoull(h->meta_part_size, NULL, 10);
    int multipart = s3_etag_multipart_parts(h->etag, &parts);
    j->range_size = j->c->part_size;
    if (multipart && recorded >= S3_MIN_PART_SIZE && s3_multipart_part_count(j->size, recorded) == parts) {
        j->range_size = recorded;
        j->md5_per_range = 1;
    }
    if (j->size <= j->range_size || j->size == 0) {
        j->ranged = 0;
        j->range_size = j->size ? j->size : 1;
        /* Empty objects are checked by reading back the (empty) file. */
        j->md5_per_range = j->size && (s3_etag_is_md5(h) || (multipart && parts == 1 && j->md5_per_range));
    } else {
        j->ranged = 1;
    }
    j->nranges = j->size ? s3_multipart_part_count(j->size, j->range_size) : 0;
    j->md5_whole = j->ranged && !j->md5_per_range && s3_etag_is_md5(h);
}

static int head_for_download(s3_client *c, const char *bucket, const char *key,
                             s3_response_headers *h, s3_error *err)
{
    s3_request r;
    s3_request_init(&r, "download", "HEAD", bucket, key);
    if (s3_request_perform(c, &r, err) != 0) {
        if (err->status == 404)
            s3_refine_not_found(c, "download", bucket, key, err);
        return -1;
    }
    if (!r.hdr.has_content_length) {
        s3_error_local(err, "download", bucket, key, "the server did not say the object's size");
        return -1;
    }
    *h = r.hdr;
    return 0;
}

static int sync_parent_dir(const char *path)
{
    char *copy = sky_xstrdup(path);
    int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    free(copy);
    if (fd < 0)
        return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

/* "<path>.skyrun-tmp-XXXXXX", or "<folder>/.skyrun-tmp-XXXXXX" when the
 * destination's name is so long that the suffix would pass NAME_MAX (a
 * destination of 240 bytes is valid; its temp name must be too). */
#define TEMP_SUFFIX ".skyrun-tmp-XXXXXX"
static void temp_name(sky_buf *tmp, const char *path)
{
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    if (strlen(base) + strlen(TEMP_SUFFIX) <= NAME_MAX) {
        sky_buf_printf(tmp, "%s" TEMP_SUFFIX, path);
        return;
    }
    sky_buf_append(tmp, path, (size_t)(base - path));
    sky_buf_append_str(tmp, TEMP_SUFFIX);
}

/* mkdir -p for the folders above path. */
static int make_parents(const char *path)
{
    char *copy = sky_xstrdup(path);
    int rc = 0;
    for (char *p = copy + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(copy, 0777) != 0 && errno != EEXIST) {
            rc = -1;
            break;
        }
        *p = '/';
    }
    free(copy);
    return rc;
}

int s3_temp_open(s3_temp_file *t, const char *bucket, const char *key, const char *path,
                 int make_dirs, uint64_t size, s3_error *err)
{
    if (make_dirs && make_parents(path) != 0) {
        s3_error_local(err, "download", bucket, key, "cannot create the folders of %s: %s", path,
                       strerror(errno));
        return -1;
    }
    sky_buf_reset(&t->path);
    temp_name(&t->path, path);
    t->fd = mkostemp((char *)sky_buf_cstr(&t->path), O_CLOEXEC);
    if (t->fd < 0) {
        s3_error_local(err, "download", bucket, key, "cannot create a temporary file next to %s: %s",
                       path, strerror(errno));
        return -1;
    }
    t->created = 1;
    mode_t mask = umask(0);
    umask(mask);
    if (fchmod(t->fd, 0666 & ~mask) != 0 || (size && ftruncate(t->fd, (off_t)size) != 0)) {
        s3_error_local(err, "download", bucket, key, "cannot prepare %s: %s", sky_buf_cstr(&t->path),
                       strerror(errno));
        return -1;
    }
    return 0;
}

int s3_temp_commit(s3_temp_file *t, const char *bucket, const char *key, const char *path,
                   long long mtime, s3_error *err)
{
    if (mtime > 0) {
        struct timespec times[2] = { { (time_t)mtime, 0 }, { (time_t)mtime, 0 } };
        if (futimens(t->fd, times) != 0) {
            s3_error_local(err, "download", bucket, key, "cannot set the time of %s: %s", path,
                           strerror(errno));
            return -1;
        }
    }
    if (fsync(t->fd) != 0) {
        s3_error_local(err, "download", bucket, key, "cannot write %s: %s", path, strerror(errno));
        return -1;
    }
    close(t->fd);
    t->fd = -1;
    if (rename(sky_buf_cstr(&t->path), path) != 0) {
        s3_error_local(err, "download", bucket, key, "cannot rename the download to %s: %s", path,
                       strerror(errno));
        return -1;
    }
    t->created = 0;   /* renamed: the temp name is the destination now */
    sync_parent_dir(path);
    return 0;
}

void s3_temp_discard(s3_temp_file *t)
{
    if (t->fd >= 0)
        close(t->fd);
    if (t->created)
        unlink(sky_buf_cstr(&t->path));
    t->fd = -1;
    t->created = 0;
    sky_buf_free(&t->path);
}

/* s3_download_object, and with make_dirs the folders above path are
 * created first — once the object is known to exist, so a failed download
 * leaves no empty folders behind. mtime > 0 becomes the file's access and
 * modification time before the rename (sync: a file carries its object's
 * LastModified, as aws-cli does). */
static int download_object(s3_client *c, const char *bucket, const char *key, const char *path,
                           int make_dirs, long long mtime, s3_error *err)
{
    download_job j = { .c = c, .bucket = bucket, .key = key, .fd = -1 };
    s3_response_headers h;
    s3_temp_file tmp = S3_TEMP_FILE_INIT;
    int rc = -1;
    if (s3_check_target("download", bucket, key, 1, err) != 0)
        return -1;
    if (head_for_download(c, bucket, key, &h, err) != 0)
        return -1;
    j.size = h.content_length;
    if (h.etag[0])
        snprintf(j.if_match, sizeof j.if_match, "\"%s\"", h.etag);
    plan_download(&j, &h);
    if (s3_temp_open(&tmp, bucket, key, path, make_dirs, j.size, err) != 0)
        goto done;
    j.fd = tmp.fd;
    if (!(j.ranges = s3_transfer_calloc(j.nranges ? j.nranges : 1, sizeof *j.ranges, "download",
                                        bucket, key, err)) ||
        (j.md5_per_range && !(j.md5s = s3_transfer_calloc(j.nranges, sizeof *j.md5s, "download",
                                                          bucket, key, err))))
        goto done;
    if (j.md5_whole) {
        if (!(j.finished = s3_transfer_calloc(j.nranges, 1, "download", bucket, key, err)) ||
            !(j.chunk = s3_transfer_calloc(1, S3_HASH_CHUNK, "download", bucket, key, err)))
            goto done;
        j.whole = EVP_MD_CTX_new();
        if (!j.whole || !EVP_DigestInit_ex(j.whole, EVP_md5(), NULL))
            sky_oom("digest context");
    }
    s3_progress_begin(&j.progress, c->progress && j.size > 0, key, j.size);
    s3_batch b = { c, j.nranges, 0, range_prepare, range_finish, &j, "download", bucket, key, 0, 0 };
    int fetched = s3_batch_run(&b, err);
    s3_progress_end(&j.progress);
    if (fetched != 0 || verify_checksum(&j, &h, err) != 0)
        goto done;
    if (s3_temp_commit(&tmp, bucket, key, path, mtime, err) != 0)
        goto done;
    rc = 0;
done:
    s3_temp_discard(&tmp);   /* closes j.fd; removes the file unless it was renamed */
    free(j.ranges);
    free(j.md5s);
    free(j.finished);
    free(j.chunk);
    EVP_MD_CTX_free(j.whole);
    return rc;
}

/* ---- prefixes ---- */

typedef struct prefix_job {
    s3_client *c;
    const char *bucket, *prefix, *dir;
    size_t count;
    int failed;
    s3_error *err;
} prefix_job;

static int download_one_key(void *ud, const s3_object_info *o)
{
    prefix_job *pj = ud;
    const char *rel = o->key + strlen(pj->prefix);
    size_t klen = strlen(o->key);
    if (klen && o->key[klen - 1] == '/')
        return 0;   /* a "folder" marker object: the folders come from the paths */
    if (!s3_relative_path_safe(rel)) {
        s3_error_local(pj->err, "download", pj->bucket, o->key,
                       "refusing a key that would land outside %s", pj->dir);
        pj->failed = 1;
        return 1;
    }
    sky_buf dest = SKY_BUF_INIT;
    sky_buf_printf(&dest, "%s/%s", pj->dir, rel);
    if (download_object(pj->c, pj->bucket, o->key, sky_buf_cstr(&dest), 1, 0, pj->err) != 0)
        pj->failed = 1;
    else
        pj->count++;
    sky_buf_free(&dest);
    return pj->failed;
}

int s3_download_prefix(s3_client *c, const char *bucket, const char *prefix, const char *dir,
                       size_t *count, s3_error *err)
{
    prefix_job pj = { c, bucket, prefix ? prefix : "", dir, 0, 0, err };
    int rc = -1;
    if (count)
        *count = 0;
    if (s3_check_target("download", bucket, prefix, 0, err) != 0)
        return -1;
    sky_buf folder = SKY_BUF_INIT;
    sky_buf_printf(&folder, "%s/", dir);
    int made = make_parents(sky_buf_cstr(&folder));   /* mkdir -p dir */
    sky_buf_free(&folder);
    if (made != 0) {
        s3_error_local(err, "download", bucket, prefix, "cannot create %s: %s", dir, strerror(errno));
        return -1;
    }
    if (s3_list(c, bucket, pj.prefix, 1, download_one_key, &pj, err) == 0 && !pj.failed)
        rc = 0;
    else if (pj.count > 0)
        /* Each file finished is complete and verified, and stays: a rerun
         * fetches them again, and nothing partial is ever left. */
        s3_error_note(err, "%zu file%s downloaded before the failure %s kept in %s", pj.count,
                      pj.count == 1 ? "" : "s", pj.count == 1 ? "is" : "are", dir);
    if (count)
        *count = pj.count;
    return rc;
}

int s3_download_object(s3_client *c, const char *bucket, const char *key, const char *path,
                       s3_error *err)
{
    return download_object(c, bucket, key, path, 0, 0, err);
}

int s3_download_object_at(s3_client *c, const char *bucket, const char *key, const char *path,
                          long long mtime, s3_error *err)
{
    return download_object(c, bucket, key, path, 1, mtime, err);
}

int s3_download_path(s3_client *c, const char *bucket, const char *key, const char *path,
                     size_t *count, sky_buf *where, s3_error *err)
{
    sky_buf file = SKY_BUF_INIT;
    int rc;
    if (s3_key_is_prefix(key)) {
        sky_buf_append_str(&file, path);
        rc = s3_download_prefix(c, bucket, key ? key : "", path, count, err);
    } else {
        s3_target_file(key, path, &file);
        rc = download_object(c, bucket, key, sky_buf_cstr(&file), 1, 0, err);
        if (count)
            *count = rc == 0;
    }
    if (where) {
        sky_buf_reset(where);
        sky_buf_append(where, file.data, file.len);
    }
    sky_buf_free(&file);
    return rc;
}
