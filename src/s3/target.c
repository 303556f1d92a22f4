/* target: aws-cli's rules for where a copy lands (see target.h). */
#include "s3/target.h"

#include <string.h>
#include <sys/stat.h>

static int ends_with_slash(const char *s)
{
    size_t n = strlen(s);
    return n > 0 && s[n - 1] == '/';
}

int s3_key_is_prefix(const char *key)
{
    return !key || !*key || ends_with_slash(key);
}

const char *s3_target_name(const char *path, size_t *len)
{
    size_t n = strlen(path);
    while (n > 1 && path[n - 1] == '/')
        n--;
    const char *start = path + n;
    while (start > path && start[-1] != '/')
        start--;
    *len = (size_t)(path + n - start);
    return start;
}

void s3_target_prefix(const char *key, sky_buf *out)
{
    sky_buf_append_str(out, key ? key : "");
    if (out->len && out->data[out->len - 1] != '/')
        sky_buf_append_byte(out, '/');
}

void s3_target_key(const char *src, const char *key, sky_buf *out)
{
    size_t n;
    const char *name = s3_target_name(src, &n);
    if (key && !s3_key_is_prefix(key)) {
        sky_buf_append_str(out, key);
        return;
    }
    sky_buf_append_str(out, key ? key : "");
    sky_buf_append(out, name, n);
}

void s3_target_file(const char *key, const char *dest, sky_buf *out)
{
    struct stat sb;
    size_t n;
    const char *name = s3_target_name(key, &n);
    sky_buf_append_str(out, dest);
    if (ends_with_slash(dest) || (stat(dest, &sb) == 0 && S_ISDIR(sb.st_mode))) {
        if (!ends_with_slash(dest))
            sky_buf_append_byte(out, '/');
        sky_buf_append(out, name, n);
    }
}

int s3_relative_path_safe(const char *rel)
{
    if (!*rel || rel[0] == '/')
        return 0;
    for (const char *p = rel; *p;) {
        const char *slash = strchr(p, '/');
        size_t n = slash ? (size_t)(slash - p) : strlen(p);
        if ((n == 2 && p[0] == '.' && p[1] == '.') || (n == 1 && p[0] == '.') || n == 0)
            return 0;
        p += n + (slash ? 1 : 0);
    }
    return 1;
}
