/*
 * sync_run: `s3_sync` (client.h) — lists both sides, asks the planner
 * (sync.h) what to do, and does it with the client's transfer machinery.
 * Copies that are one request each (a file or object up to the part size:
 * one PUT with Content-MD5, one GET into a temp file verified against the
 * ETag, given the object's LastModified and renamed into place; any
 * CopyObject) run together in one batch (batch.c: `parallel` in flight,
 * retries per request, everything in flight cancelled at the first failure
 * or interrupt); larger ones follow one by one through s3_upload_file /
 * s3_download_object_at, each in parallel parts or ranges. Deletes come
 * last, when every copy succeeded: objects with batched DeleteObjects,
 * files with unlink. What was done before a failure stays. Also the
 * checksum mode's content test: a local file's MD5 against a plain ETag,
 * or its md5-of-md5s against a multipart ETag for the part sizes that give
 * the ETag's part count.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "s3/multipart.h"
#include "s3/request.h"
#include "s3/s3_url.h"
#include "s3/sync.h"
#include "s3/target.h"
#include "util/alloc.h"
#include "util/encode.h"
#include "util/interrupt.h"

#define TEMP_MARK ".skyrun-tmp-"

/* One side of a sync: a local folder or a bucket and prefix. */
typedef struct side {
    int is_s3;
    char *bucket;        /* S3 */
    sky_buf prefix;      /* S3: "" or ending in '/' */
    sky_buf dir;         /* local: the folder, without a trailing '/' (except "/") */
    s3_sync_listing listing;
} side;

static void side_free(side *s)
{
    free(s->bucket);
    sky_buf_free(&s->prefix);
    sky_buf_free(&s->dir);
    s3_sync_listing_free(&s->listing);
}

static int side_parse(const char *where, side *s, s3_error *err)
{
    memset(s, 0, sizeof *s);
    if (s3_url_is_s3(where)) {
        char *key = NULL, why[256];
        if (s3_url_parse(where, &s->bucket, &key, why, sizeof why) != 0) {
            s3_error_local(err, "sync", NULL, NULL, "%s", why);
            return -1;
        }
        s->is_s3 = 1;
        s3_target_prefix(key, &s->prefix);   /* s3://b/pre means the folder pre/ */
        sky_buf_cstr(&s->prefix);
        free(key);
    } else {
        size_t n = strlen(where);
        while (n > 1 && where[n - 1] == '/')
            n--;
        if (n == 0) {
            s3_error_local(err, "sync", NULL, NULL, "an empty path is no folder");
            return -1;
        }
        sky_buf_append(&s->dir, where, n);
        sky_buf_cstr(&s->dir);
    }
    s3_sync_listing_init(&s->listing, s->is_s3);
    return 0;
}

/* How a side names the entry at rel: "dir/rel" or "s3://bucket/prefixrel". */
static void side_name(side *s, const char *rel, sky_buf *out)
{
    sky_buf_reset(out);
    if (s->is_s3) {
        sky_buf_printf(out, "s3://%s/%s%s", s->bucket, sky_buf_cstr(&s->prefix), rel);
    } else {
        const char *dir = sky_buf_cstr(&s->dir);
        sky_buf_printf(out, "%s%s%s", dir, strcmp(dir, "/") == 0 ? "" : "/", rel);
    }
}

static void side_key(side *s, const char *rel, sky_buf *out)
{
    sky_buf_reset(out);
    sky_buf_printf(out, "%s%s", sky_buf_cstr(&s->prefix), rel);
}

/* ---- listing ---- */

static int add_file(void *ud, const char *path, const char *rel, const struct stat *sb)
{
    side *s = ud;
    const char *name = strrchr(rel, '/');
    if (strstr(name ? name + 1 : rel, TEMP_MARK))
        return 0;   /* a download in progress (or one killed outright) is nobody's file */
    s3_sync_listing_add(&s->listing, rel, (uint64_t)sb->st_size, (long long)sb->st_mtim.tv_sec, NULL);
    return 0;
}

typedef struct s3_walk {
    side *s;
    int must_be_path;    /* the keys become local paths: refuse any that would escape */
    int failed;
    s3_error *err;
} s3_walk;

static int add_object(void *ud, const s3_object_info *o)
{
    s3_walk *w = ud;
    const char *rel = o->key + w->s->prefix.len;
    size_t n = strlen(o->key);
    if (o->is_prefix || (n && o->key[n - 1] == '/'))
        return 0;   /* "folder" marker objects are neither copied nor deleted */
    if (w->must_be_path && !s3_relative_path_safe(rel)) {
        s3_error_local(w->err, "sync", w->s->bucket, o->key, "refusing a key that would land outside the folder");
        w->failed = 1;
        return 1;
    }
    s3_sync_listing_add(&w->s->listing, rel, o->size, o->mtime, o->etag);
    return 0;
}

/* A missing local destination is an empty listing; a missing source is an error. */
static int side_list(s3_client *c, side *s, int is_source, int keys_become_paths, s3_error *err)
{
    if (s->is_s3) {
        s3_walk w = { s, keys_become_paths, 0, err };
        if (s3_list(c, s->bucket, sky_buf_cstr(&s->prefix), 1, add_object, &w, err) != 0)
            return -1;
        return w.failed ? -1 : 0;
    }
    struct stat sb;
    const char *dir = sky_buf_cstr(&s->dir);
    if (stat(dir, &sb) != 0) {
        if (errno == ENOENT && !is_source)
            return 0;
        s3_error_local(err, "sync", NULL, NULL, "cannot read %s: %s", dir, strerror(errno));
        return -1;
    }
    if (!S_ISDIR(sb.st_mode)) {
        s3_error_local(err, "sync", NULL, NULL, "%s is not a folder", dir);
        return -1;
    }
    char why[512];
    if (s3_walk_files(dir, add_file, s, why, sizeof why) != 0) {
        s3_error_local(err, "sync", NULL, NULL, "%s", why);
        return -1;
    }
    return 0;
}

/* ---- checksum mode ---- */

typedef struct content_check {
    s3_client *c;
    side *local;
} content_check;

/* MD5 of the whole file (part_size 0) or the md5-of-md5s ETag for parts of
 * part_size, into out (64 bytes). 0, or -1 with why. */
static int file_etag(const char *path, uint64_t size, uint64_t part_size, char *out, char *why, size_t whylen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(why, whylen, "cannot read %s: %s", path, strerror(errno));
        return -1;
    }
    uint64_t nparts = part_size ? s3_multipart_part_count(size, part_size) : 1;
    unsigned char (*md5s)[16] = sky_xcalloc(nparts, sizeof *md5s);
    uint8_t *chunk = sky_xmalloc(S3_HASH_CHUNK);
    char reason[256];
    int rc = 0;
    for (uint64_t p = 0; p < nparts && rc == 0; p++) {
        uint64_t off = p * part_size, len = part_size && size - off > part_size ? part_size : size - off;
        if (s3_hash_range(fd, off, len, chunk, md5s[p], NULL, reason, sizeof reason) != 0) {
            snprintf(why, whylen, "cannot read %s: %s", path, reason);
            rc = -1;
        }
    }
    if (rc == 0 && part_size)
        s3_multipart_etag((const unsigned char (*)[16])md5s, nparts, out);
    else if (rc == 0)
        sky_hex(md5s[0], 16, out);
    free(chunk);
    free(md5s);
    close(fd);
    return rc;
}

int s3_file_matches_etag(const char *path, uint64_t size, const char *etag, uint64_t part_size,
                         char *why, size_t whylen)
{
    char mine[64];
    uint64_t parts = 0;
    if (!s3_etag_multipart_parts(etag, &parts)) {
        if (strlen(etag) != 32 || strspn(etag, "0123456789abcdefABCDEF") != 32)
            return -1;   /* an ETag that is no MD5 (SSE-KMS, SSE-C): cannot tell */
        if (file_etag(path, size, 0, mine, why, whylen) != 0)
            return -2;
        return strcasecmp(mine, etag) == 0;
    }
    /* A multipart ETag: try the part sizes that skyrun (part_size) and
     * aws-cli (8 MiB) would have used, when they give its part count. */
    uint64_t sizes[2] = { s3_multipart_part_size(size, part_size ? part_size : S3_DEFAULT_PART_SIZE),
                          s3_multipart_part_size(size, S3_DEFAULT_PART_SIZE) };
    for (int i = 0; i < 2; i++) {
        if ((i == 1 && sizes[1] == sizes[0]) || s3_multipart_part_count(size, sizes[i]) != parts)
            continue;
        if (file_etag(path, size, sizes[i], mine, why, whylen) != 0)
            return -2;
        if (strcasecmp(mine, etag) == 0)
            return 1;
    }
    return -1;
}

static int content_same(void *ud, const s3_sync_entry *local, const char *etag, char *why, size_t whylen)
{
    content_check *cc = ud;
    sky_buf path = SKY_BUF_INIT;
    side_name(cc->local, local->path, &path);
    int verdict = s3_file_matches_etag(sky_buf_cstr(&path), local->size, etag, cc->c->part_size, why, whylen);
    sky_buf_free(&path);
    return verdict;
}

/* ---- doing it ---- */

static int delete_entry(s3_client *c, side *s, const char *rel, s3_error *err)
{
    sky_buf where = SKY_BUF_INIT;
    int rc = 0;
    if (s->is_s3) {
        side_key(s, rel, &where);
        rc = s3_delete_object(c, s->bucket, sky_buf_cstr(&where), err);
    } else {
        side_name(s, rel, &where);
        if (unlink(sky_buf_cstr(&where)) != 0 && errno != ENOENT) {
            s3_error_local(err, "sync", NULL, NULL, "cannot delete %s: %s", sky_buf_cstr(&where), strerror(errno));
            rc = -1;
        }
    }
    sky_buf_free(&where);
    return rc;
}

static int copy_entry(s3_client *c, side *src, side *dst, const s3_sync_entry *e, s3_error *err)
{
    sky_buf from = SKY_BUF_INIT, to = SKY_BUF_INIT;
    int rc;
    if (!src->is_s3) {
        side_name(src, e->path, &from);
        side_key(dst, e->path, &to);
        rc = s3_upload_file(c, dst->bucket, sky_buf_cstr(&to), sky_buf_cstr(&from), NULL, err);
    } else if (!dst->is_s3) {
        side_key(src, e->path, &from);
        side_name(dst, e->path, &to);
        rc = s3_download_object_at(c, src->bucket, sky_buf_cstr(&from), sky_buf_cstr(&to), e->mtime, err);
    } else {
        side_key(src, e->path, &from);
        side_key(dst, e->path, &to);
        rc = s3_copy_object(c, src->bucket, sky_buf_cstr(&from), dst->bucket, sky_buf_cstr(&to), err);
    }
    sky_buf_free(&from);
    sky_buf_free(&to);
    return rc;
}

static void report(const s3_sync_request *req, const char *op, side *a, const char *rel, side *b)
{
    if (!req->report)
        return;
    sky_buf from = SKY_BUF_INIT, to = SKY_BUF_INIT;
    side_name(a, rel, &from);
    if (b)
        side_name(b, rel, &to);
    req->report(req->report_ud, op, sky_buf_cstr(&from), b ? sky_buf_cstr(&to) : NULL);
    sky_buf_free(&from);
    sky_buf_free(&to);
}

static const char *copy_op(const side *src, const side *dst, int move)
{
    if (move)
        return "move";
    return !src->is_s3 ? "upload" : !dst->is_s3 ? "download" : "copy";
}

/* ---- many small copies at once: one request each, through one batch ---- */

/* A copy that is one request: a file up to the part size (one PUT), an
 * object up to the part size (one GET into a temp file), any CopyObject. */
typedef struct one_copy {
    const s3_sync_entry *e;
    sky_buf from, to;        /* key or path of each side */
    int fd;                  /* upload: the file */
    s3_temp_file tmp;        /* download */
    sky_buf response;        /* copy: the CopyObjectResult */
    sky_buf source;          /* copy: x-amz-copy-source */
    char md5_hex[33], md5_b64[25], sha_hex[65], if_match[96];
    int done;
} one_copy;

typedef struct copy_batch {
    s3_client *c;
    const s3_sync_request *req;
    side *src, *dst;
    one_copy *items;
    size_t n;
    uint8_t *chunk;
} copy_batch;

static int upload_prepare(copy_batch *cb, one_copy *o, s3_request *req, s3_error *err)
{
    const char *bucket = cb->dst->bucket, *key = sky_buf_cstr(&o->to), *path = sky_buf_cstr(&o->from);
    struct stat sb;
    unsigned char md5[16];
    char why[256];
    o->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (o->fd < 0 || fstat(o->fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        s3_error_local(err, "upload", bucket, key, "cannot read %s: %s", path,
                       o->fd < 0 ? strerror(errno) : "not a regular file");
        return -1;
    }
    if (s3_check_target("upload", bucket, key, 1, err) != 0)
        return -1;
    if (s3_hash_range(o->fd, 0, (uint64_t)sb.st_size, cb->chunk, md5, o->sha_hex, why, sizeof why) != 0) {
        s3_error_local(err, "upload", bucket, key, "cannot read %s: %s", path, why);
        return -1;
    }
    s3_base64(md5, 16, o->md5_b64, sizeof o->md5_b64);
    sky_hex(md5, 16, o->md5_hex);
    s3_request_init(req, "upload", "PUT", bucket, key);
    req->body_fd = o->fd;
    req->body_offset = 0;
    req->body_len = (uint64_t)sb.st_size;
    req->payload_hash = o->sha_hex;
    s3_request_add_header(req, "content-md5", o->md5_b64);
    return 0;
}

static int download_prepare(copy_batch *cb, one_copy *o, s3_request *req, s3_error *err)
{
    const char *bucket = cb->src->bucket, *key = sky_buf_cstr(&o->from);
    if (s3_check_target("download", bucket, key, 1, err) != 0 ||
        s3_temp_open(&o->tmp, bucket, key, sky_buf_cstr(&o->to), 1, o->e->size, err) != 0)
        return -1;
    s3_request_init(req, "download", "GET", bucket, key);
    if (o->e->etag && *o->e->etag) {
        /* The object listed, not one that replaced it since. */
        snprintf(o->if_match, sizeof o->if_match, "\"%s\"", o->e->etag);
        s3_request_add_header(req, "if-match", o->if_match);
    }
    req->sink_fd = o->tmp.fd;
    req->sink_offset = 0;
    req->sink_limit = o->e->size;
    req->want_md5 = 1;
    return 0;
}

static int copy_prepare(copy_batch *cb, one_copy *o, s3_request *req, s3_error *err)
{
    const char *sk = sky_buf_cstr(&o->from);
    if (s3_check_target("copy", cb->src->bucket, sk, 1, err) != 0 ||
        s3_check_target("copy", cb->dst->bucket, sky_buf_cstr(&o->to), 1, err) != 0)
        return -1;
    sky_buf_reset(&o->source);
    sky_buf_reset(&o->response);
    s3_copy_request_init(req, cb->src->bucket, sk, cb->dst->bucket, sky_buf_cstr(&o->to), &o->source,
                         &o->response);
    return 0;
}

static int batch_prepare(void *ud, size_t i, s3_request *req, s3_error *err)
{
    copy_batch *cb = ud;
    one_copy *o = &cb->items[i];
    if (!cb->src->is_s3)
        return upload_prepare(cb, o, req, err);
    return !cb->dst->is_s3 ? download_prepare(cb, o, req, err) : copy_prepare(cb, o, req, err);
}

static int batch_finish(void *ud, size_t i, s3_request *req, s3_error *err)
{
    copy_batch *cb = ud;
    one_copy *o = &cb->items[i];
    const char *from = sky_buf_cstr(&o->from), *to = sky_buf_cstr(&o->to);
    if (!cb->src->is_s3) {
        if (s3_etag_is_md5(&req->hdr) && strcasecmp(req->hdr.etag, o->md5_hex) != 0) {
            s3_error_local(err, "upload", cb->dst->bucket, to, "the stored object's ETag %s is not the MD5 %s of %s",
                           req->hdr.etag, o->md5_hex, from);
            return -1;
        }
        close(o->fd);
        o->fd = -1;
    } else if (!cb->dst->is_s3) {
        if (req->received != o->e->size) {
            s3_error_local(err, "download", cb->src->bucket, from, "received %llu of %llu bytes",
                            (unsigned long long)req->received, (unsigned long long)o->e->size);
            return 1;   /* a short body with a clean end: try again */
        }
        char hex[33];
        sky_hex(req->md5, 16, hex);
        if (s3_etag_is_md5(&req->hdr) && strcasecmp(hex, req->hdr.etag) != 0) {
            s3_error_local(err, "download", cb->src->bucket, from,
                           "the data received does not match the object's ETag %s (MD5 %s)", req->hdr.etag, hex);
            return -1;
        }
        if (s3_temp_commit(&o->tmp, cb->src->bucket, from, to, o->e->mtime, err) != 0)
            return -1;
    } else if (s3_copy_result(&o->response, cb->dst->bucket, to, err) != 0) {
        return -1;
    }
    o->done = 1;
    if (!cb->req->move)   /* a move is reported once its source is gone */
        report(cb->req, copy_op(cb->src, cb->dst, 0), cb->src, o->e->path, cb->dst);
    return 0;
}

static void one_copy_free(one_copy *o)
{
    if (o->fd >= 0)
        close(o->fd);
    s3_temp_discard(&o->tmp);
    sky_buf_free(&o->from);
    sky_buf_free(&o->to);
    sky_buf_free(&o->response);
    sky_buf_free(&o->source);
}

/* Deletes the sources of done copies (mv) and reports them; 0 or -1 with err. */
static int finish_moves(s3_client *c, const s3_sync_request *req, side *src, side *dst,
                        one_copy *items, size_t n, s3_error *err)
{
    int rc = 0;
    if (src->is_s3) {
        const char **keys = sky_xcalloc(n ? n : 1, sizeof *keys);
        size_t nkeys = 0;
        for (size_t i = 0; i < n; i++)
            if (items[i].done)
                keys[nkeys++] = sky_buf_cstr(&items[i].from);
        rc = nkeys ? s3_delete_keys(c, src->bucket, keys, nkeys, NULL, err) : 0;
        free(keys);
    } else {
        for (size_t i = 0; i < n && rc == 0; i++) {
            if (items[i].done && unlink(sky_buf_cstr(&items[i].from)) != 0 && errno != ENOENT) {
                s3_error_local(err, "mv", NULL, NULL, "copied, but cannot delete %s: %s",
                               sky_buf_cstr(&items[i].from), strerror(errno));
                rc = -1;
            }
        }
    }
    for (size_t i = 0; i < n && rc == 0; i++)
        if (items[i].done)
            report(req, "move", src, items[i].e->path, dst);
    return rc;
}

/* Every copy of the plan: those that are one request in one parallel batch
 * (with the client's `parallel` in flight), then the large ones one by one
 * (each in parallel parts or ranges). */
static int run_copies(s3_client *c, const s3_sync_request *req, side *src, side *dst,
                      const s3_sync_plan *plan, s3_sync_summary *sum, s3_error *err)
{
    size_t ncopies = 0;
    for (size_t i = 0; i < plan->n; i++)
        ncopies += plan->actions[i].kind == S3_SYNC_COPY;
    one_copy *items = sky_xcalloc(ncopies ? ncopies : 1, sizeof *items);
    const s3_sync_entry **large = sky_xcalloc(ncopies ? ncopies : 1, sizeof *large);
    size_t nsmall = 0, nlarge = 0;
    for (size_t i = 0; i < plan->n; i++) {
        const s3_sync_action *a = &plan->actions[i];
        if (a->kind != S3_SYNC_COPY)
            continue;
        if ((src->is_s3 && dst->is_s3) || a->src->size <= c->part_size) {
            one_copy *o = &items[nsmall++];
            o->e = a->src;
            o->fd = -1;
            o->tmp.fd = -1;
            if (src->is_s3)
                side_key(src, a->src->path, &o->from);
            else
                side_name(src, a->src->path, &o->from);
            if (dst->is_s3)
                side_key(dst, a->src->path, &o->to);
            else
                side_name(dst, a->src->path, &o->to);
        } else {
            large[nlarge++] = a->src;
        }
    }
    copy_batch cb = { c, req, src, dst, items, nsmall, sky_xmalloc(S3_HASH_CHUNK) };
    s3_batch b = { c, nsmall, 0, batch_prepare, batch_finish, &cb, "sync",
                   src->is_s3 ? src->bucket : dst->bucket, "", 0, 0 };
    int rc = nsmall ? s3_batch_run(&b, err) : 0;
    for (size_t i = 0; i < nsmall; i++) {
        if (!items[i].done)
            continue;
        sum->copied++;
        sum->bytes += items[i].e->size;
    }
    if (req->move) {
        s3_error move_err;
        if (finish_moves(c, req, src, dst, items, nsmall, rc == 0 ? err : &move_err) != 0)
            rc = -1;
    }
    for (size_t i = 0; i < nlarge && rc == 0; i++) {
        if (sky_interrupt_pending()) {
            s3_error_local(err, "sync", NULL, NULL, "interrupted");
            rc = -1;
        } else if (copy_entry(c, src, dst, large[i], err) != 0 ||
                   (req->move && delete_entry(c, src, large[i]->path, err) != 0)) {
            rc = -1;
        } else {
            sum->copied++;
            sum->bytes += large[i]->size;
            report(req, copy_op(src, dst, req->move), src, large[i]->path, dst);
        }
    }
    for (size_t i = 0; i < nsmall; i++)
        one_copy_free(&items[i]);
    free(items);
    free(large);
    free(cb.chunk);
    return rc;
}

/* Every delete of the plan: objects with batched DeleteObjects, files one by one. */
static int run_deletes(s3_client *c, const s3_sync_request *req, side *dst, const s3_sync_plan *plan,
                       s3_sync_summary *sum, s3_error *err)
{
    sky_buf *keys = sky_xcalloc(plan->n ? plan->n : 1, sizeof *keys);
    const char **names = sky_xcalloc(plan->n ? plan->n : 1, sizeof *names);
    const s3_sync_entry **gone = sky_xcalloc(plan->n ? plan->n : 1, sizeof *gone);
    size_t n = 0;
    int rc = 0;
    for (size_t i = 0; i < plan->n; i++) {
        if (plan->actions[i].kind != S3_SYNC_DELETE)
            continue;
        gone[n] = plan->actions[i].dst;
        side_key(dst, gone[n]->path, &keys[n]);
        names[n] = sky_buf_cstr(&keys[n]);
        n++;
    }
    size_t deleted = 0;
    if (dst->is_s3) {
        rc = n ? s3_delete_keys(c, dst->bucket, names, n, &deleted, err) : 0;
    } else {
        for (; deleted < n && rc == 0; deleted++)
            rc = delete_entry(c, dst, gone[deleted]->path, err);
        if (rc != 0)
            deleted--;
    }
    for (size_t i = 0; i < deleted; i++) {
        sum->deleted++;
        report(req, "delete", dst, gone[i]->path, NULL);
    }
    for (size_t i = 0; i < n; i++)
        sky_buf_free(&keys[i]);
    free(keys);
    free(names);
    free(gone);
    return rc;
}

static int run_plan(s3_client *c, const s3_sync_request *req, side *src, side *dst,
                    const s3_sync_plan *plan, s3_sync_summary *sum, s3_error *err)
{
    if (req->dryrun) {
        for (size_t i = 0; i < plan->n; i++) {
            const s3_sync_action *a = &plan->actions[i];
            if (a->kind == S3_SYNC_COPY) {
                sum->copied++;
                sum->bytes += a->src->size;
                report(req, copy_op(src, dst, req->move), src, a->src->path, dst);
            } else {
                sum->deleted++;
                report(req, "delete", dst, a->dst->path, NULL);
            }
        }
        return 0;
    }
    /* Deletes come after every copy succeeded, as with aws-cli. */
    if (run_copies(c, req, src, dst, plan, sum, err) != 0)
        return -1;
    return run_deletes(c, req, dst, plan, sum, err);
}

int s3_sync(s3_client *c, const s3_sync_request *req, s3_sync_summary *sum, s3_error *err)
{
    side src, dst;
    s3_sync_summary local_sum;
    s3_sync_plan plan = { 0 };
    int rc = -1;
    if (!sum)
        sum = &local_sum;
    memset(sum, 0, sizeof *sum);
    memset(err, 0, sizeof *err);
    memset(&dst, 0, sizeof dst);
    if (side_parse(req->src, &src, err) != 0 || side_parse(req->dst, &dst, err) != 0)
        goto done;   /* side_parse clears its side first: freeing both is safe */
    if (!src.is_s3 && !dst.is_s3) {
        s3_error_local(err, "sync", NULL, NULL, "one of %s and %s must be an s3:// URL", req->src, req->dst);
        goto done;
    }
    if (req->move && src.is_s3 && dst.is_s3 && strcmp(src.bucket, dst.bucket) == 0) {
        const char *sp = sky_buf_cstr(&src.prefix), *dp = sky_buf_cstr(&dst.prefix);
        if (strncmp(sp, dp, strlen(sp)) == 0 || strncmp(sp, dp, strlen(dp)) == 0) {
            /* Objects would land on themselves (then be deleted as sources) or be moved twice. */
            s3_error_local(err, "mv", NULL, NULL, "cannot move s3://%s/%s to s3://%s/%s: one contains the other",
                           src.bucket, sp, dst.bucket, dp);
            goto done;
        }
    }
    if (side_list(c, &src, 1, !dst.is_s3, err) != 0 || side_list(c, &dst, 0, 0, err) != 0)
        goto done;
    content_check cc = { c, src.is_s3 ? &dst : &src };
    s3_sync_options o = { req->filters, req->nfilters, req->delete_extra && !req->move, req->checksum,
                          req->move, content_same, &cc };
    char why[512];
    if (s3_sync_plan_make(&src.listing, &dst.listing, &o, &plan, why, sizeof why) != 0) {
        s3_error_local(err, "sync", NULL, NULL, "%s", why);
        goto done;
    }
    sum->unchanged = plan.unchanged;
    sum->excluded = plan.excluded;
    if (run_plan(c, req, &src, &dst, &plan, sum, err) != 0) {
        if (sum->copied || sum->deleted)
            s3_error_note(err, "%zu cop%s and %zu delete%s done before the failure %s kept", sum->copied,
                          sum->copied == 1 ? "y" : "ies", sum->deleted, sum->deleted == 1 ? "" : "s",
                          sum->copied + sum->deleted == 1 ? "is" : "are");
        goto done;
    }
    rc = 0;
done:
    s3_sync_plan_free(&plan);
    side_free(&src);
    side_free(&dst);
    return rc;
}
