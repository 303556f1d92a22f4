/*
 * target: where a copy lands — the key a local file or folder is uploaded
 * to, and the file an object is downloaded to — from what the user named.
 * The rules are aws-cli's (`aws s3 cp`), written once for `sky.storage`
 * (st:upload, st:download) and `skyrun s3 cp`:
 *
 *   upload   f     to "dir/" or ""   → "dir/f", "f"   (a prefix: the name is kept)
 *            f     to "key"          → "key"
 *            f     to NULL           → "f"            (nothing named: sky.storage)
 *            a folder's files go under s3_target_prefix(key): "pre" and "pre/"
 *            are both the folder "pre/", "" is the bucket's root
 *   download "k/x" to an existing folder or a path ending in '/'
 *                                    → "folder/x"
 *            "k/x" to anything else  → that path
 *            a key naming a prefix ("" or ending in '/') is a folder download
 *   copy     s3:// to s3:// follows the upload rules with the source key's name
 */
#ifndef SKY_S3_TARGET_H
#define SKY_S3_TARGET_H

#include "util/buf.h"

/* 1 when key names a prefix (a "folder"): "" or ending in '/'. */
int s3_key_is_prefix(const char *key);

/* The last component of a path or key ("a/b/c" → "c", "a/b/" → "b");
 * *len receives its length (it is not NUL-terminated there). */
const char *s3_target_name(const char *path, size_t *len);

/* The prefix a recursive transfer uses for key: "" stays "" (the bucket's
 * root), anything else ends in exactly one added '/' when it has none
 * ("logs" → "logs/", "logs/" → "logs/"), as aws s3 cp --recursive does. */
void s3_target_prefix(const char *key, sky_buf *out);

/* The key a file called src (a local path or another key: only its last
 * component counts) is copied to when the user names key: src's name
 * under key when key names a prefix or is NULL (not given), else key. */
void s3_target_key(const char *src, const char *key, sky_buf *out);

/* The file the object key is downloaded to when the user names dest:
 * dest/<key's name> when dest is an existing folder or ends in '/', else
 * dest. */
void s3_target_file(const char *key, const char *dest, sky_buf *out);

/* 1 when rel (a key's path below a prefix) can be used as a path below a
 * folder: not empty, not absolute, no "", "." or ".." component. */
int s3_relative_path_safe(const char *rel);

#endif
