/* tar: a minimal ustar writer (see tar.h). */
#include "compute/tar.h"

#include <stdio.h>
#include <string.h>

#define BLOCK 512

/* width - 1 octal digits and a NUL, as ustar wants (values that do not
 * fit are refused by the callers' limits: sizes under 8 GiB). */
static void octal(char *field, size_t width, uint64_t v)
{
    field[width - 1] = 0;
    for (size_t i = width - 1; i-- > 0; v >>= 3)
        field[i] = (char)('0' + (v & 7));
}

static int header(sky_buf *out, const char *name, char type, mode_t mode, int64_t mtime, size_t size)
{
    char h[BLOCK];
    memset(h, 0, sizeof h);
    size_t len = strlen(name);
    if (len == 0)
        return -1;
    if (len <= 100) {
        memcpy(h, name, len);
    } else {
        /* Split at a slash: prefix (155) + name (100). */
        const char *cut = NULL;
        for (const char *s = name; *s; s++)
            if (*s == '/' && (size_t)(s - name) <= 155 && len - (size_t)(s - name) - 1 <= 100)
                cut = s;
        if (!cut || cut == name)
            return -1;
        memcpy(h + 345, name, (size_t)(cut - name));
        memcpy(h, cut + 1, len - (size_t)(cut - name) - 1);
    }
    octal(h + 100, 8, (uint64_t)(mode & 07777));
    octal(h + 108, 8, 0);
    octal(h + 116, 8, 0);
    octal(h + 124, 12, (uint64_t)size);
    octal(h + 136, 12, (uint64_t)(mtime > 0 ? mtime : 0));
    memset(h + 148, ' ', 8);
    h[156] = type;
    memcpy(h + 257, "ustar", 6);
    memcpy(h + 263, "00", 2);
    unsigned sum = 0;
    for (size_t i = 0; i < BLOCK; i++)
        sum += (unsigned char)h[i];
    snprintf(h + 148, 8, "%06o", sum);
    h[155] = ' ';
    sky_buf_append(out, h, BLOCK);
    return 0;
}

int tar_add_dir(sky_buf *out, const char *name, mode_t mode, int64_t mtime)
{
    return header(out, name, '5', mode, mtime, 0);
}

int tar_add_file(sky_buf *out, const char *name, mode_t mode, int64_t mtime, const void *data, size_t len)
{
    if (header(out, name, '0', mode, mtime, len) != 0)
        return -1;
    sky_buf_append(out, data, len);
    static const char zeros[BLOCK];
    if (len % BLOCK)
        sky_buf_append(out, zeros, BLOCK - len % BLOCK);
    return 0;
}

void tar_finish(sky_buf *out)
{
    static const char zeros[2 * BLOCK];
    sky_buf_append(out, zeros, sizeof zeros);
}
