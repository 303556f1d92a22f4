/* sync: the sync planner — two listings and options in, actions out (see sync.h). */
#include "s3/sync.h"

#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util/alloc.h"

void s3_sync_listing_init(s3_sync_listing *l, int is_s3)
{
    memset(l, 0, sizeof *l);
    l->is_s3 = is_s3;
}

void s3_sync_listing_add(s3_sync_listing *l, const char *path, uint64_t size, long long mtime,
                         const char *etag)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 64;
        l->entries = sky_xrealloc(l->entries, l->cap * sizeof *l->entries);
    }
    s3_sync_entry *e = &l->entries[l->n++];
    e->path = sky_xstrdup(path);
    e->size = size;
    e->mtime = mtime;
    e->etag = etag ? sky_xstrdup(etag) : NULL;
}

void s3_sync_listing_free(s3_sync_listing *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free(l->entries[i].path);
        free(l->entries[i].etag);
    }
    free(l->entries);
    l->entries = NULL;
    l->n = l->cap = 0;
}

int s3_sync_included(const s3_sync_filter *filters, size_t n, const char *path)
{
    int included = 1;
    /* Python's fnmatch, which aws-cli uses: '*' crosses '/', a leading '.'
     * is an ordinary character, and a backslash is no escape. */
    for (size_t i = 0; i < n; i++)
        if (fnmatch(filters[i].pattern, path, FNM_NOESCAPE) == 0)
            included = filters[i].include;
    return included;
}

const char *s3_sync_reason_name(s3_sync_reason reason)
{
    switch (reason) {
    case S3_SYNC_MISSING: return "missing";
    case S3_SYNC_SIZE: return "size differs";
    case S3_SYNC_NEWER: return "newer";
    case S3_SYNC_CONTENT: return "content differs";
    case S3_SYNC_ALWAYS: return "moved";
    case S3_SYNC_EXTRA: return "not in the source";
    }
    return "?";
}

static int by_path(const void *a, const void *b)
{
    return strcmp(((const s3_sync_entry *)a)->path, ((const s3_sync_entry *)b)->path);
}

static int sort_listing(s3_sync_listing *l, char *why, size_t whylen)
{
    if (l->n > 1)
        qsort(l->entries, l->n, sizeof *l->entries, by_path);
    for (size_t i = 1; i < l->n; i++) {
        if (strcmp(l->entries[i - 1].path, l->entries[i].path) == 0) {
            snprintf(why, whylen, "%s appears twice in the listing", l->entries[i].path);
            return -1;
        }
    }
    return 0;
}

static void add_action(s3_sync_plan *p, s3_sync_action_kind kind, s3_sync_reason reason,
                       const s3_sync_entry *src, const s3_sync_entry *dst)
{
    if (p->n == p->cap) {
        p->cap = p->cap ? p->cap * 2 : 32;
        p->actions = sky_xrealloc(p->actions, p->cap * sizeof *p->actions);
    }
    p->actions[p->n++] = (s3_sync_action){ kind, reason, src, dst };
}

/* A plain MD5 ETag: 32 hex digits, nothing else. */
static int etag_is_plain_md5(const char *etag)
{
    if (!etag || strlen(etag) != 32)
        return 0;
    for (const char *p = etag; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f') || (*p >= 'A' && *p <= 'F')))
            return 0;
    return 1;
}

/* Checksum mode for two entries of equal size: 1 same, 0 different, -1
 * cannot tell, -2 error. */
static int same_content(const s3_sync_listing *srcl, const s3_sync_listing *dstl,
                        const s3_sync_entry *s, const s3_sync_entry *d, const s3_sync_options *o,
                        char *why, size_t whylen)
{
    if (srcl->is_s3 && dstl->is_s3) {
        if (!s->etag || !d->etag || !*s->etag || !*d->etag)
            return -1;
        if (strcasecmp(s->etag, d->etag) == 0)
            return 1;
        return etag_is_plain_md5(s->etag) && etag_is_plain_md5(d->etag) ? 0 : -1;
    }
    const s3_sync_entry *local = srcl->is_s3 ? d : s, *object = srcl->is_s3 ? s : d;
    if (!o->content_same || !object->etag || !*object->etag)
        return -1;
    return o->content_same(o->content_ud, local, object->etag, why, whylen);
}

/* Whether s must be copied over d (both exist): 0 no, 1 yes with *reason, -1 error. */
static int needs_copy(const s3_sync_listing *srcl, const s3_sync_listing *dstl,
                      const s3_sync_entry *s, const s3_sync_entry *d, const s3_sync_options *o,
                      s3_sync_reason *reason, char *why, size_t whylen)
{
    if (o->copy_all) {
        *reason = S3_SYNC_ALWAYS;
        return 1;
    }
    if (s->size != d->size) {
        *reason = S3_SYNC_SIZE;
        return 1;
    }
    if (o->checksum) {
        int same = same_content(srcl, dstl, s, d, o, why, whylen);
        if (same == -2)
            return -1;
        if (same >= 0) {
            *reason = S3_SYNC_CONTENT;
            return !same;
        }
    }
    *reason = S3_SYNC_NEWER;
    return s->mtime > d->mtime;
}

int s3_sync_plan_make(s3_sync_listing *src, s3_sync_listing *dst, const s3_sync_options *o,
                      s3_sync_plan *plan, char *why, size_t whylen)
{
    memset(plan, 0, sizeof *plan);
    if (sort_listing(src, why, whylen) != 0 || sort_listing(dst, why, whylen) != 0)
        return -1;
    /* Copies: one merge walk over both sorted listings. */
    size_t j = 0;
    for (size_t i = 0; i < src->n; i++) {
        const s3_sync_entry *s = &src->entries[i];
        if (!s3_sync_included(o->filters, o->nfilters, s->path)) {
            plan->excluded++;
            continue;
        }
        while (j < dst->n && strcmp(dst->entries[j].path, s->path) < 0)
            j++;
        const s3_sync_entry *d = j < dst->n && strcmp(dst->entries[j].path, s->path) == 0
                                     ? &dst->entries[j] : NULL;
        if (!d) {
            add_action(plan, S3_SYNC_COPY, o->copy_all ? S3_SYNC_ALWAYS : S3_SYNC_MISSING, s, NULL);
            continue;
        }
        s3_sync_reason reason;
        int copy = needs_copy(src, dst, s, d, o, &reason, why, whylen);
        if (copy < 0) {
            s3_sync_plan_free(plan);
            return -1;
        }
        if (copy)
            add_action(plan, S3_SYNC_COPY, reason, s, d);
        else
            plan->unchanged++;
    }
    if (!o->delete_extra)
        return 0;
    /* Deletes: destination entries the source lacks, unless excluded. An
     * entry excluded on the source side is absent from the source too. */
    size_t i = 0;
    for (j = 0; j < dst->n; j++) {
        const s3_sync_entry *d = &dst->entries[j];
        while (i < src->n && strcmp(src->entries[i].path, d->path) < 0)
            i++;
        int in_source = i < src->n && strcmp(src->entries[i].path, d->path) == 0;
        if (!in_source && s3_sync_included(o->filters, o->nfilters, d->path))
            add_action(plan, S3_SYNC_DELETE, S3_SYNC_EXTRA, NULL, d);
    }
    return 0;
}

void s3_sync_plan_free(s3_sync_plan *plan)
{
    free(plan->actions);
    memset(plan, 0, sizeof *plan);
}
