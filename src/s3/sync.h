/*
 * sync: the planner behind `skyrun s3 sync` / `st:sync` (and `mv -r`). A pure
 * function from two listings (the source's and the destination's entries,
 * each with a path relative to its root) and the options to a list of
 * actions: copy this entry, delete that one. It does no I/O of its own: the
 * checksum mode asks the caller (a callback) whether a local file's content
 * matches an ETag. Running the plan is sync_run.c's (s3_sync in client.h).
 *
 * The rules are aws-cli's (`aws s3 sync`), in every direction:
 *   - an entry is copied when the destination has no entry at its path, when
 *     the sizes differ, or when the source's modification time is later than
 *     the destination's (whole seconds; an S3 object's time is LastModified,
 *     and a downloaded file gets the object's LastModified as its mtime, so
 *     a second run finds them equal and copies nothing);
 *   - checksum mode: entries of equal size are compared by content (ETag =
 *     MD5 against the local file, ETags against each other for S3 → S3);
 *     when the content cannot be compared (a multipart ETag whose part size
 *     is unknown, an ETag that is no MD5) the time rule decides;
 *   - filters: --exclude/--include globs applied in order, the last match
 *     wins, everything is included by default; a pattern matches the path
 *     relative to the root with fnmatch rules where `*` also matches '/'.
 *     Filters apply to both sides: an excluded source entry is not copied,
 *     an excluded destination entry is never deleted;
 *   - delete: destination entries absent from the source (and not excluded)
 *     are deleted.
 * (aws-cli downloads when the local file is *newer* than the object and not
 * when the object is newer with the same size; skyrun copies when the
 * source is newer, in every direction: see docs/STORAGE.md.)
 */
#ifndef SKY_S3_SYNC_H
#define SKY_S3_SYNC_H

#include <stddef.h>
#include <stdint.h>

typedef struct s3_sync_entry {
    char *path;          /* relative to the root, '/'-separated, no leading '/' */
    uint64_t size;
    long long mtime;     /* whole seconds since the epoch */
    char *etag;          /* an S3 object's ETag (no quotes); NULL for local files */
} s3_sync_entry;

typedef struct s3_sync_listing {
    s3_sync_entry *entries;
    size_t n, cap;
    int is_s3;           /* objects (1) or local files (0) */
} s3_sync_listing;

void s3_sync_listing_init(s3_sync_listing *l, int is_s3);
/* Adds a copy of path (and of etag, which may be NULL). */
void s3_sync_listing_add(s3_sync_listing *l, const char *path, uint64_t size, long long mtime,
                         const char *etag);
void s3_sync_listing_free(s3_sync_listing *l);

typedef struct s3_sync_filter {
    int include;         /* 1: --include, 0: --exclude */
    const char *pattern;
} s3_sync_filter;

/* 1 when path is included by filters (in order, the last match wins). */
int s3_sync_included(const s3_sync_filter *filters, size_t n, const char *path);

/* Checksum mode: does the local file `local` hold the content the ETag
 * stands for? 1 yes, 0 no, -1 cannot tell (the time rule decides), -2 an
 * error (why filled: the plan fails). */
typedef int (*s3_sync_content_fn)(void *ud, const s3_sync_entry *local, const char *etag,
                                  char *why, size_t whylen);

typedef struct s3_sync_options {
    const s3_sync_filter *filters;
    size_t nfilters;
    int delete_extra;    /* --delete */
    int checksum;        /* compare content when sizes are equal */
    int copy_all;        /* mv: every included source entry is copied, nothing compared */
    s3_sync_content_fn content_same;   /* needed for checksum mode with a local side */
    void *content_ud;
} s3_sync_options;

typedef enum s3_sync_action_kind { S3_SYNC_COPY, S3_SYNC_DELETE } s3_sync_action_kind;

typedef enum s3_sync_reason {
    S3_SYNC_MISSING,     /* COPY: the destination has no such entry */
    S3_SYNC_SIZE,        /* COPY: sizes differ */
    S3_SYNC_NEWER,       /* COPY: the source is newer */
    S3_SYNC_CONTENT,     /* COPY: checksum mode found different content */
    S3_SYNC_ALWAYS,      /* COPY: copy_all (mv) */
    S3_SYNC_EXTRA,       /* DELETE: not in the source */
} s3_sync_reason;

typedef struct s3_sync_action {
    s3_sync_action_kind kind;
    s3_sync_reason reason;
    const s3_sync_entry *src;   /* COPY: what is copied; DELETE: NULL */
    const s3_sync_entry *dst;   /* COPY: what it replaces (NULL when missing); DELETE: what goes */
} s3_sync_action;

typedef struct s3_sync_plan {
    s3_sync_action *actions;    /* copies in path order, then deletes in path order */
    size_t n, cap;
    size_t unchanged;           /* included source entries found up to date */
    size_t excluded;            /* source entries left out by the filters */
} s3_sync_plan;

/* Sorts both listings by path (in place: the plan points into them, so they
 * must outlive it) and fills plan. 0, or -1 with why (the checksum callback
 * failed, or a path appears twice in a listing). */
int s3_sync_plan_make(s3_sync_listing *src, s3_sync_listing *dst, const s3_sync_options *opts,
                      s3_sync_plan *plan, char *why, size_t whylen);
void s3_sync_plan_free(s3_sync_plan *plan);

/* "missing", "size differs", … for messages and tests. */
const char *s3_sync_reason_name(s3_sync_reason reason);

#endif
