/* presets: the known providers' defaults (see presets.h, docs/CONFIGURATION.md). */
#include "s3/presets.h"

#include <stdio.h>
#include <strings.h>

static const s3_preset PRESETS[] = {
    { "aws", "https://s3.{region}.amazonaws.com", "us-east-1", 0, NULL },
    { "r2", "https://{account_id}.r2.cloudflarestorage.com", "auto", 1,
      "set account_id to the Cloudflare account id shown on the R2 overview page" },
    { "gcs", "https://storage.googleapis.com", "auto", 1, NULL },
    { "wasabi", "https://s3.{region}.wasabisys.com", "us-east-1", 1, NULL },
    { "backblaze", "https://s3.{region}.backblazeb2.com", NULL, 1,
      "set region to the bucket's region, e.g. us-west-004 (part of its S3 endpoint)" },
    { "minio", "http://127.0.0.1:9000", "us-east-1", 1, NULL },
    /* Hyperstack's S3 endpoint is per account/region and not published as
     * a fixed host; the preset only sets path-style addressing. */
    { "hyperstack", NULL, "us-east-1", 1,
      "set endpoint to the S3 endpoint shown in Hyperstack's Object Storage page" },
};

#define NPRESETS (sizeof PRESETS / sizeof PRESETS[0])

const s3_preset *s3_preset_at(size_t i)
{
    return i < NPRESETS ? &PRESETS[i] : NULL;
}

const s3_preset *s3_preset_find(const char *name)
{
    for (size_t i = 0; name && i < NPRESETS; i++)
        if (strcasecmp(PRESETS[i].name, name) == 0)
            return &PRESETS[i];
    return NULL;
}

void s3_preset_names(const char *sep, char *out, size_t outlen)
{
    size_t used = 0;
    if (outlen == 0)
        return;
    out[0] = '\0';
    for (size_t i = 0; i < NPRESETS && used < outlen; i++) {
        int n = snprintf(out + used, outlen - used, "%s%s", i ? sep : "", PRESETS[i].name);
        if (n < 0)
            break;
        used += (size_t)n;
    }
}
