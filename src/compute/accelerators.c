/* accelerators: GPU requests, matching and slicing (see accelerators.h). */
#include "compute/accelerators.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int sky_accel_parse(const char *spec, sky_accel_request *r, char *err, size_t errlen)
{
    memset(r, 0, sizeof *r);
    const char *colon = spec ? strchr(spec, ':') : NULL;
    size_t tlen = colon ? (size_t)(colon - spec) : (spec ? strlen(spec) : 0);
    if (!spec || tlen == 0 || tlen >= sizeof r->type) {
        snprintf(err, errlen, "accelerator '%s' must be a GPU type like \"L4\" or \"H100:8\"", spec ? spec : "");
        return -1;
    }
    for (size_t i = 0; i < tlen; i++)
        if (!isalnum((unsigned char)spec[i]) && spec[i] != '-' && spec[i] != '_') {
            snprintf(err, errlen, "accelerator '%s': the type must be letters, digits and dashes", spec);
            return -1;
        }
    memcpy(r->type, spec, tlen);
    if (colon) {
        char *end;
        long n = strtol(colon + 1, &end, 10);
        if (*end || end == colon + 1 || n < 1 || n > SKY_MAX_NODE_GPUS) {
            snprintf(err, errlen, "accelerator '%s': the count after ':' must be 1 to %d", spec,
                     SKY_MAX_NODE_GPUS);
            return -1;
        }
        r->count = (int)n;
    }
    return 0;
}

int sky_accel_parse_gpus(const char *text, sky_gpu *out, int max)
{
    int n = 0;
    for (const char *line = text; *line && n < max;) {
        size_t len = strcspn(line, "\n");
        const char *tab = memchr(line, '\t', len);
        if (tab && tab > line && (size_t)(tab - line) < sizeof out[n].bus) {
            snprintf(out[n].bus, sizeof out[n].bus, "%.*s", (int)(tab - line), line);
            snprintf(out[n].model, sizeof out[n].model, "%.*s", (int)(len - (size_t)(tab - line) - 1), tab + 1);
            n++;
        }
        line += len + (line[len] == '\n');
    }
    return n;
}

static int model_matches(const char *model, const char *type)
{
    size_t t = strlen(type);
    for (const char *w = model; *w;) {
        while (*w == ' ')
            w++;
        size_t len = strcspn(w, " ");
        if (len >= t && strncasecmp(w, type, t) == 0 && (len == t || w[t] == '-'))
            return 1;
        w += len;
    }
    return 0;
}

int sky_accel_choose(const sky_accel_request *r, const sky_gpu *gpus, int n, int *chosen)
{
    int m = 0;
    for (int i = 0; i < n; i++)
        if (model_matches(gpus[i].model, r->type))
            chosen[m++] = i;
    if (m == 0 || (r->count && m < r->count))
        return 0;
    return r->count ? r->count : m;
}

int sky_accel_slice(const int *chosen, int nchosen, int w, int workers, int *out)
{
    if (nchosen <= 0 || workers <= 0)
        return 0;
    if (nchosen < workers) {
        out[0] = chosen[w % nchosen];
        return 1;
    }
    int first = (int)((long)nchosen * w / workers), last = (int)((long)nchosen * (w + 1) / workers);
    for (int i = first; i < last; i++)
        out[i - first] = chosen[i];
    return last - first;
}

void sky_accel_describe(const sky_gpu *gpus, int n, char *out, size_t len)
{
    if (n == 0) {
        snprintf(out, len, "no GPU");
        return;
    }
    size_t o = 0;
    out[0] = 0;
    for (int i = 0; i < n && o < len; i++) {
        int same = 1;
        while (i + same < n && strcmp(gpus[i + same].model, gpus[i].model) == 0)
            same++;
        int k = same > 1 ? snprintf(out + o, len - o, "%s%d x %s", o ? ", " : "", same, gpus[i].model)
                         : snprintf(out + o, len - o, "%s%s", o ? ", " : "", gpus[i].model);
        if (k < 0)
            break;
        o += (size_t)k;
        i += same - 1;
    }
}
