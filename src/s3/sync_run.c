/*
 * sync_run: `s3_sync` (client.h) — lists both sides, asks the planner
 * (sync.h) what to do, and does it with the client's transfer functions:
 * s3_upload_file (one PUT or an aborted-on-failure multipart upload),
 * s3_download_object_at (temp file, verified, given the object's
 * LastModified, renamed into place), s3_copy_object, deletes. Each transfer
 * runs its parts or ranges in parallel through batch.c; files go one after
 * another, and the first failure stops the run (what was done stays, as
 * with folder uploads). Also the checksum mode's content test: a local
 * file's MD5 against a plain ETag, or its md5-of-md5s against a multipart
 * ETag for the part sizes that give the ETag's part count.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
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

#define MAX_DIR_DEPTH 64
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

static int walk_local(side *s, const char *dir, sky_buf *rel, int depth, s3_error *err)
{
    if (depth > MAX_DIR_DEPTH) {
        s3_error_local(err, "sync", NULL, NULL, "%s: folders nested too deep", dir);
        return -1;
    }
    DIR *d = opendir(dir);
    if (!d) {
        s3_error_local(err, "sync", NULL, NULL, "cannot read the folder %s: %s", dir, strerror(errno));
        return -1;
    }
    int rc = -1;
    size_t rel_len = rel->len;
    sky_buf child = SKY_BUF_INIT;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0 || strstr(e->d_name, TEMP_MARK))
            continue;   /* a download in progress (or one killed outright) is nobody's file */
        sky_buf_reset(&child);
        sky_buf_printf(&child, "%s/%s", dir, e->d_name);
        rel->len = rel_len;
        sky_buf_append_str(rel, e->d_name);
        struct stat lsb, sb;
        if (lstat(sky_buf_cstr(&child), &lsb) != 0 || stat(sky_buf_cstr(&child), &sb) != 0)
            continue;   /* vanished, or a dangling link */
        if (S_ISDIR(sb.st_mode)) {
            if (S_ISLNK(lsb.st_mode))
                continue;   /* links to folders are not followed (as uploads): no loops */
            sky_buf_append_byte(rel, '/');
            if (walk_local(s, sky_buf_cstr(&child), rel, depth + 1, err) != 0)
                goto done;
        } else if (S_ISREG(sb.st_mode)) {
            s3_sync_listing_add(&s->listing, sky_buf_cstr(rel), (uint64_t)sb.st_size,
                                (long long)sb.st_mtim.tv_sec, NULL);
        }
    }
    rc = 0;
done:
    rel->len = rel_len;
    sky_buf_free(&child);
    closedir(d);
    return rc;
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
    sky_buf rel = SKY_BUF_INIT;
    int rc = walk_local(s, dir, &rel, 0, err);
    sky_buf_free(&rel);
    return rc;
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
    EVP_MD_CTX *m = EVP_MD_CTX_new();
    if (!m)
        sky_oom("digest context");
    int rc = -1;
    uint64_t off = 0;
    for (uint64_t p = 0; p < nparts; p++) {
        uint64_t end = part_size ? off + part_size : size;
        if (end > size)
            end = size;
        EVP_DigestInit_ex(m, EVP_md5(), NULL);
        while (off < end) {
            size_t want = end - off < S3_HASH_CHUNK ? (size_t)(end - off) : S3_HASH_CHUNK;
            ssize_t got = pread(fd, chunk, want, (off_t)off);
            if (got < 0 && errno == EINTR)
                continue;
            if (got <= 0) {
                snprintf(why, whylen, "cannot read %s: %s", path,
                         got < 0 ? strerror(errno) : "the file became shorter while it was read");
                goto done;
            }
            EVP_DigestUpdate(m, chunk, (size_t)got);
            off += (uint64_t)got;
        }
        unsigned n;
        EVP_DigestFinal_ex(m, md5s[p], &n);
    }
    if (part_size)
        s3_multipart_etag((const unsigned char (*)[16])md5s, nparts, out);
    else
        sky_hex(md5s[0], 16, out);
    rc = 0;
done:
    EVP_MD_CTX_free(m);
    free(chunk);
    free(md5s);
    close(fd);
    return rc;
}

static int content_same(void *ud, const s3_sync_entry *local, const char *etag, char *why, size_t whylen)
{
    content_check *cc = ud;
    sky_buf path = SKY_BUF_INIT;
    char mine[64];
    uint64_t parts = 0;
    int verdict = -1;
    side_name(cc->local, local->path, &path);
    if (!s3_etag_multipart_parts(etag, &parts)) {
        if (strlen(etag) == 32 && strspn(etag, "0123456789abcdefABCDEF") == 32) {
            verdict = file_etag(sky_buf_cstr(&path), local->size, 0, mine, why, whylen) != 0
                          ? -2 : strcasecmp(mine, etag) == 0;
        }
        goto done;   /* an ETag that is no MD5 (SSE-KMS, SSE-C): cannot tell */
    }
    /* A multipart ETag: try the part sizes that skyrun (the client's) and
     * aws-cli (8 MiB) would have used, when they give its part count. */
    uint64_t sizes[2] = { s3_multipart_part_size(local->size, cc->c->part_size),
                          s3_multipart_part_size(local->size, S3_DEFAULT_PART_SIZE) };
    for (int i = 0; i < 2 && verdict != 1; i++) {
        if ((i == 1 && sizes[1] == sizes[0]) || s3_multipart_part_count(local->size, sizes[i]) != parts)
            continue;
        if (file_etag(sky_buf_cstr(&path), local->size, sizes[i], mine, why, whylen) != 0) {
            verdict = -2;
            break;
        }
        if (strcasecmp(mine, etag) == 0)
            verdict = 1;
    }
done:
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

static int run_plan(s3_client *c, const s3_sync_request *req, side *src, side *dst,
                    const s3_sync_plan *plan, s3_sync_summary *sum, s3_error *err)
{
    const char *op = copy_op(src, dst, req->move);
    for (size_t i = 0; i < plan->n; i++) {
        const s3_sync_action *a = &plan->actions[i];
        if (!req->dryrun && sky_interrupt_pending()) {
            s3_error_local(err, "sync", NULL, NULL, "interrupted");
            return -1;
        }
        if (a->kind == S3_SYNC_COPY) {
            if (!req->dryrun && copy_entry(c, src, dst, a->src, err) != 0)
                return -1;
            /* mv: the source goes only once its copy is complete. */
            if (!req->dryrun && req->move && delete_entry(c, src, a->src->path, err) != 0)
                return -1;
            sum->copied++;
            sum->bytes += a->src->size;
            report(req, op, src, a->src->path, dst);
        } else {
            if (!req->dryrun && delete_entry(c, dst, a->dst->path, err) != 0)
                return -1;
            sum->deleted++;
            report(req, "delete", dst, a->dst->path, NULL);
        }
    }
    return 0;
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
    if (side_parse(req->src, &src, err) != 0)
        return -1;
    if (side_parse(req->dst, &dst, err) != 0)
        goto done;
    if (!src.is_s3 && !dst.is_s3) {
        s3_error_local(err, "sync", NULL, NULL, "one of %s and %s must be an s3:// URL", req->src, req->dst);
        goto done;
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
