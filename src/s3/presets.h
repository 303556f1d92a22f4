/*
 * presets: the providers skyrun knows by name (aws, r2, gcs, wasabi,
 * backblaze, minio, hyperstack) and the endpoint, region and addressing
 * style each implies. The one list of preset names: credentials.c resolves
 * with it, `skyrun s3 --help` prints it, and `sky.storage` makes a
 * constructor per name from it (core.storage_presets).
 */
#ifndef SKY_S3_PRESETS_H
#define SKY_S3_PRESETS_H

#include <stddef.h>

typedef struct s3_preset {
    const char *name;
    const char *endpoint;     /* "{region}" and "{account_id}" are substituted; NULL: the user must give one */
    const char *region;       /* NULL: the user must give one */
    int path_style;
    const char *hint;         /* what to do when something it needs is missing */
} s3_preset;

/* The preset called name (case-insensitive), or NULL. */
const s3_preset *s3_preset_find(const char *name);
/* The i-th preset (0-based), or NULL past the last: for listing them. */
const s3_preset *s3_preset_at(size_t i);
/* "aws, r2, gcs, …" (joined by sep) into out, truncated to outlen. */
void s3_preset_names(const char *sep, char *out, size_t outlen);

#endif
