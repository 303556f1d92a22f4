/*
 * transfer_upload: files and directories to S3. A file up to the part size
 * is one PUT (Content-MD5 and signed SHA-256, both computed in a first pass
 * over the file); a larger one is a multipart upload whose parts stream from
 * the file with pread, at most `parallel` in flight, each with its own
 * Content-MD5. Memory is a small read buffer, whatever the file size. Any
 * failure or interrupt aborts the multipart upload, so no object appears;
 * an object whose returned ETag does not match what was sent is deleted.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "s3/multipart.h"
#include "s3/request.h"
#include "s3/target.h"
#include "util/alloc.h"
#include "util/encode.h"

#define MAX_DIR_DEPTH 64

/* The progress bar's label: the file's name. */
static const char *base_name(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

/* MD5 (and SHA-256 when sha_hex is not NULL) of a file range, read in
 * chunks. Returns 0, or -1 with a reason in why. */
int s3_hash_range(int fd, uint64_t offset, uint64_t len, uint8_t *chunk,
                      unsigned char md5[16], char *sha_hex, char *why, size_t whylen)
{
    int rc = -1;
    EVP_MD_CTX *m = EVP_MD_CTX_new(), *s = sha_hex ? EVP_MD_CTX_new() : NULL;
    if (!m || !EVP_DigestInit_ex(m, EVP_md5(), NULL) ||
        (sha_hex && (!s || !EVP_DigestInit_ex(s, EVP_sha256(), NULL))))
        sky_oom("digest context");
    uint64_t done = 0;
    while (done < len) {
        size_t want = len - done < S3_HASH_CHUNK ? (size_t)(len - done) : S3_HASH_CHUNK;
        ssize_t got = pread(fd, chunk, want, (off_t)(offset + done));
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0) {
            snprintf(why, whylen, "%s", got < 0 ? strerror(errno) : "the file became shorter while it was read");
            goto done;
        }
        EVP_DigestUpdate(m, chunk, (size_t)got);
        if (s)
            EVP_DigestUpdate(s, chunk, (size_t)got);
        done += (uint64_t)got;
    }
    unsigned n = 0;
    EVP_DigestFinal_ex(m, md5, &n);
    if (s) {
        unsigned char sha[32];
        EVP_DigestFinal_ex(s, sha, &n);
        sky_hex(sha, 32, sha_hex);
    }
    rc = 0;
done:
    EVP_MD_CTX_free(m);
    EVP_MD_CTX_free(s);
    return rc;
}

/* ---- one PUT ---- */

static int upload_single(s3_client *c, const char *bucket, const char *key, const char *path,
                         int fd, uint64_t size, const char *content_type, s3_error *err)
{
    unsigned char md5[16];
    char sha_hex[65], md5_b64[25], md5_hex[33], why[256];
    uint8_t *chunk = s3_transfer_calloc(1, S3_HASH_CHUNK, "upload", bucket, key, err);
    s3_progress progress;
    s3_request r;
    int rc = -1;
    if (!chunk)
        return -1;
    if (s3_hash_range(fd, 0, size, chunk, md5, sha_hex, why, sizeof why) != 0) {
        s3_error_local(err, "upload", bucket, key, "cannot read %s: %s", path, why);
        goto done;
    }
    s3_base64(md5, 16, md5_b64, sizeof md5_b64);
    sky_hex(md5, 16, md5_hex);
    s3_request_init(&r, "upload", "PUT", bucket, key);
    r.body_fd = fd;
    r.body_offset = 0;
    r.body_len = size;
    r.payload_hash = sha_hex;
    s3_request_add_header(&r, "content-md5", md5_b64);
    if (content_type)
        s3_request_add_header(&r, "content-type", content_type);
    s3_progress_begin(&progress, c->progress && size > 0, base_name(path), size);
    r.progress = &progress;
    int sent = s3_request_perform(c, &r, err);
    s3_progress_end(&progress);
    if (sent != 0)
        goto done;
    if (s3_etag_is_md5(&r.hdr) && strcasecmp(r.hdr.etag, md5_hex) != 0) {
        s3_error_local(err, "upload", bucket, key,
                       "the stored object's ETag %s is not the MD5 %s of %s", r.hdr.etag, md5_hex, path);
        s3_error cleanup;
        s3_delete_object(c, bucket, key, &cleanup);   /* never leave an object we cannot vouch for */
        goto done;
    }
    rc = 0;
done:
    free(chunk);
    return rc;
}

/* ---- multipart ---- */

typedef struct part_state {
    char md5_b64[25];
    char number[12];
} part_state;

/* Per-part arrays are sized by the file (up to S3_MAX_PARTS entries): when
 * they cannot be had, the upload fails with an error (s3_transfer_calloc). */
typedef struct upload_job {
    s3_client *c;
    const char *bucket, *key, *path;
    int fd;
    uint64_t size, part_size, nparts;
    char upload_id[1024];
    part_state *parts;
    unsigned char (*md5s)[16];   /* each part's MD5, for the object's md5-of-md5s ETag */
    char (*etags)[80];           /* each part's ETag, for CompleteMultipartUpload */
    uint8_t *chunk;              /* one hashing buffer: prepare runs on one thread */
    s3_progress progress;
} upload_job;

static int part_prepare(void *ud, size_t i, s3_request *req, s3_error *err)
{
    upload_job *j = ud;
    part_state *p = &j->parts[i];
    uint64_t off = (uint64_t)i * j->part_size;
    uint64_t len = j->size - off < j->part_size ? j->size - off : j->part_size;
    char why[256];
    if (s3_hash_range(j->fd, off, len, j->chunk, j->md5s[i], NULL, why, sizeof why) != 0) {
        s3_error_local(err, "upload", j->bucket, j->key, "cannot read %s: %s", j->path, why);
        return -1;
    }
    s3_base64(j->md5s[i], 16, p->md5_b64, sizeof p->md5_b64);
    snprintf(p->number, sizeof p->number, "%zu", i + 1);
    s3_request_init(req, "upload", "PUT", j->bucket, j->key);
    s3_request_add_query(req, "partNumber", p->number);
    s3_request_add_query(req, "uploadId", j->upload_id);
    s3_request_add_header(req, "content-md5", p->md5_b64);
    /* The part's integrity is the Content-MD5 the server checks; hashing it
     * a second time with SHA-256 would only cost CPU. */
    req->payload_hash = "UNSIGNED-PAYLOAD";
    req->body_fd = j->fd;
    req->body_offset = off;
    req->body_len = len;
    req->progress = &j->progress;
    return 0;
}

static int part_finish(void *ud, size_t i, s3_request *req, s3_error *err)
{
    upload_job *j = ud;
    char hex[33];
    sky_hex(j->md5s[i], 16, hex);
    if (!req->hdr.etag[0]) {
        s3_error_local(err, "upload", j->bucket, j->key, "part %zu: the server returned no ETag", i + 1);
        return -1;
    }
    if (s3_etag_is_md5(&req->hdr) && strcasecmp(req->hdr.etag, hex) != 0) {
        s3_error_local(err, "upload", j->bucket, j->key,
                       "part %zu: the server stored a different MD5 (%s, sent %s)", i + 1, req->hdr.etag, hex);
        return 1;
    }
    snprintf(j->etags[i], sizeof j->etags[i], "%s", req->hdr.etag);
    return 0;
}

/* The object's ETag must be the md5-of-md5s of what was sent, when the
 * server uses that form (S3 does; some compatible services do not). */
static int verify_multipart_etag(upload_job *j, const char *etag, s3_error *err)
{
    uint64_t n;
    if (!s3_etag_multipart_parts(etag, &n))
        return 0;
    char expect[64];
    s3_multipart_etag((const unsigned char (*)[16])j->md5s, j->nparts, expect);
    if (strcasecmp(expect, etag) == 0)
        return 0;
    s3_error_local(err, "upload", j->bucket, j->key,
                   "the assembled object's ETag %s does not match the parts sent (%s)", etag, expect);
    return -1;
}

/* Some servers (Ceph RGW 16.2) answer CompleteMultipartUpload with an empty
 * <ETag/>: the assembled object's ETag is then read with a HEAD, as long as
 * the object there is still this upload's (its nonce). Leaves etag empty
 * when that cannot be had: there is nothing to check against then. */
static void etag_after_complete(s3_client *c, const char *bucket, const char *key, const char *nonce,
                                char *etag, size_t cap)
{
    s3_request r;
    s3_error err;
    s3_request_init(&r, "upload", "HEAD", bucket, key);
    if (s3_request_perform(c, &r, &err) != 0 || strcmp(r.hdr.meta_upload, nonce) != 0)
        return;
    snprintf(etag, cap, "%s", r.hdr.etag);
}

/* 128 random bits in hex: what marks this upload's object as its own. */
static void make_nonce(s3_client *c, char out[33])
{
    unsigned char bytes[16];
    if (getrandom(bytes, sizeof bytes, 0) != (ssize_t)sizeof bytes) {
        for (size_t i = 0; i < sizeof bytes; i++) {
            c->rng ^= c->rng << 13, c->rng ^= c->rng >> 7, c->rng ^= c->rng << 17;
            bytes[i] = (unsigned char)(c->rng >> 24) ^ (unsigned char)(uintptr_t)&bytes[i];
        }
    }
    sky_hex(bytes, sizeof bytes, out);
}

static int upload_multipart(s3_client *c, const char *bucket, const char *key, const char *path,
                            int fd, uint64_t size, const char *content_type, s3_error *err)
{
    upload_job j = { .c = c, .bucket = bucket, .key = key, .path = path, .fd = fd, .size = size };
    int rc = -1, started = 0, completing = 0;
    char nonce[33];
    make_nonce(c, nonce);
    j.part_size = s3_multipart_part_size(size, c->part_size);
    j.nparts = s3_multipart_part_count(size, j.part_size);
    if (!(j.parts = s3_transfer_calloc(j.nparts, sizeof *j.parts, "upload", bucket, key, err)) ||
        !(j.md5s = s3_transfer_calloc(j.nparts, sizeof *j.md5s, "upload", bucket, key, err)) ||
        !(j.etags = s3_transfer_calloc(j.nparts, sizeof *j.etags, "upload", bucket, key, err)) ||
        !(j.chunk = s3_transfer_calloc(1, S3_HASH_CHUNK, "upload", bucket, key, err)))
        goto done;
    if (s3_multipart_initiate(c, bucket, key, content_type, j.part_size, nonce, j.upload_id,
                              sizeof j.upload_id, err) != 0)
        goto done;
    started = 1;
    s3_progress_begin(&j.progress, c->progress, base_name(path), size);
    s3_batch b = { c, j.nparts, 0, part_prepare, part_finish, &j, "upload", bucket, key, 0, 0 };
    int sent = s3_batch_run(&b, err);
    s3_progress_end(&j.progress);
    if (sent != 0)
        goto done;
    char etag[80];
    /* From here a failure may come after the server assembled the object
     * (an answer lost, then a retry refused; an interrupt mid-request). */
    completing = 1;
    if (s3_multipart_complete(c, bucket, key, j.upload_id, j.etags, j.nparts, etag, err) != 0)
        goto done;
    started = completing = 0;   /* completed: nothing left to abort */
    if (!etag[0])
        etag_after_complete(c, bucket, key, nonce, etag, sizeof etag);
    if (verify_multipart_etag(&j, etag, err) != 0) {
        s3_error cleanup;
        s3_delete_object(c, bucket, key, &cleanup);   /* never leave a corrupt object */
        goto done;
    }
    rc = 0;
done:
    if (started)
        s3_multipart_abort(c, bucket, key, j.upload_id);
    if (completing)
        s3_multipart_remove_if_ours(c, bucket, key, nonce);
    free(j.parts);
    free(j.md5s);
    free(j.etags);
    free(j.chunk);
    return rc;
}

int s3_upload_file(s3_client *c, const char *bucket, const char *key, const char *path,
                   const char *content_type, s3_error *err)
{
    struct stat sb;
    int rc = -1;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        s3_error_local(err, "upload", bucket, key, "cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        s3_error_local(err, "upload", bucket, key, "%s is not a regular file", path);
        goto done;
    }
    if (s3_key_is_prefix(key)) {
        s3_error_local(err, "upload", bucket, key ? key : "", "a file needs a key that does not end in '/' (%s)", path);
        goto done;
    }
    if (s3_check_target("upload", bucket, key, 1, err) != 0)
        goto done;
    uint64_t size = (uint64_t)sb.st_size;
    if (size <= c->part_size)
        rc = upload_single(c, bucket, key, path, fd, size, content_type, err);
    else
        rc = upload_multipart(c, bucket, key, path, fd, size, content_type, err);
done:
    close(fd);
    return rc;
}

/* ---- directories ---- */

typedef struct file_walk {
    s3_file_fn fn;
    void *ud;
    sky_buf rel;
    char *why;
    size_t whylen;
} file_walk;

static int walk_dir(file_walk *w, const char *dir, int depth)
{
    if (depth > MAX_DIR_DEPTH) {
        snprintf(w->why, w->whylen, "%s: directories nested too deep", dir);
        return -1;
    }
    DIR *d = opendir(dir);
    if (!d) {
        snprintf(w->why, w->whylen, "cannot open %s: %s", dir, strerror(errno));
        return -1;
    }
    int rc = 0;
    size_t rel_len = w->rel.len;
    sky_buf child = SKY_BUF_INIT;
    struct dirent *e;
    while (rc == 0 && (e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        sky_buf_reset(&child);
        sky_buf_printf(&child, "%s/%s", dir, e->d_name);
        w->rel.len = rel_len;
        sky_buf_append_str(&w->rel, e->d_name);
        struct stat lsb, sb;
        if (lstat(sky_buf_cstr(&child), &lsb) != 0 || stat(sky_buf_cstr(&child), &sb) != 0)
            continue;   /* vanished, or a dangling link: nothing to copy */
        if (S_ISDIR(sb.st_mode)) {
            if (S_ISLNK(lsb.st_mode))
                continue;   /* links to directories are not followed: no loops */
            sky_buf_append_byte(&w->rel, '/');
            rc = walk_dir(w, sky_buf_cstr(&child), depth + 1);
        } else if (S_ISREG(sb.st_mode)) {
            rc = w->fn(w->ud, sky_buf_cstr(&child), sky_buf_cstr(&w->rel), &sb);
        }
    }
    w->rel.len = rel_len;
    sky_buf_free(&child);
    closedir(d);
    return rc;
}

int s3_walk_files(const char *dir, s3_file_fn fn, void *ud, char *why, size_t whylen)
{
    file_walk w = { fn, ud, SKY_BUF_INIT, why, whylen };
    int rc = walk_dir(&w, dir, 0);
    sky_buf_free(&w.rel);
    return rc;
}

typedef struct dir_upload {
    s3_client *c;
    const char *bucket;
    const char *content_type;
    sky_buf *prefix;
    size_t count;
    s3_error *err;
} dir_upload;

static int upload_walked(void *ud, const char *path, const char *rel, const struct stat *sb)
{
    dir_upload *u = ud;
    size_t prefix_len = u->prefix->len;
    sky_buf_append_str(u->prefix, rel);
    int rc = s3_upload_file(u->c, u->bucket, sky_buf_cstr(u->prefix), path, u->content_type, u->err);
    u->prefix->len = prefix_len;
    if (rc != 0)
        return 1;
    u->count++;
    return 0;
}

int s3_upload_path(s3_client *c, const char *bucket, const char *key, const char *path,
                   const char *content_type, size_t *count, sky_buf *where, s3_error *err)
{
    struct stat sb;
    sky_buf target = SKY_BUF_INIT;
    int rc = -1;
    if (count)
        *count = 0;
    if (s3_check_target("upload", bucket, key, 0, err) != 0)
        return -1;
    if (stat(path, &sb) != 0) {
        s3_error_local(err, "upload", bucket, key ? key : "", "cannot read %s: %s", path, strerror(errno));
        return -1;
    }
    if (!S_ISDIR(sb.st_mode)) {
        s3_target_key(path, key, &target);
        rc = s3_upload_file(c, bucket, sky_buf_cstr(&target), path, content_type, err);
        if (rc == 0 && count)
            *count = 1;
        goto done;
    }
    if (key) {
        s3_target_prefix(key, &target);
    } else {
        /* Nothing named (sky.storage only): the folder's own name. */
        size_t n;
        const char *name = s3_target_name(path, &n);
        sky_buf_append(&target, name, n);
        sky_buf_append_byte(&target, '/');
    }
    dir_upload w = { c, bucket, content_type, &target, 0, err };
    size_t plen = strlen(path);
    while (plen > 1 && path[plen - 1] == '/')
        plen--;
    char *dir = sky_xstrndup(path, plen);
    char why[512];
    rc = s3_walk_files(dir, upload_walked, &w, why, sizeof why);   /* target is the prefix again after */
    if (rc < 0)
        s3_error_local(err, "upload", bucket, sky_buf_cstr(&target), "%s", why);
    if (rc != 0 && w.count > 0)
        /* Uploaded files are complete objects and stay (see docs/STORAGE.md). */
        s3_error_note(err, "%zu file%s uploaded before the failure %s kept", w.count,
                      w.count == 1 ? "" : "s", w.count == 1 ? "is" : "are");
    free(dir);
    if (count)
        *count = w.count;
done:
    if (where) {
        sky_buf_reset(where);
        sky_buf_append(where, target.data, target.len);
    }
    sky_buf_free(&target);
    return rc;
}
