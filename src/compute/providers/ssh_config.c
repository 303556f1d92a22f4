/*
 * ssh_config: the part of OpenSSH's client configuration a pool needs
 * (see ssh_config.h).
 */
#include "compute/providers/ssh_config.h"

#include <errno.h>
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util/alloc.h"
#include "util/buf.h"

#define MAX_WORDS 64
#define MAX_WORD 1024

/* Splits one line into words: blanks separate, "double quotes" group, the
 * first '=' (after the keyword) separates too, '#' starts a comment. */
static size_t split_words(const char *line, size_t len, char words[][MAX_WORD], size_t max)
{
    size_t n = 0, i = 0;
    while (i < len && n < max) {
        while (i < len && (line[i] == ' ' || line[i] == '\t' || (n == 1 && line[i] == '=') || line[i] == '\r'))
            i++;
        if (i >= len || line[i] == '#')
            break;
        size_t k = 0;
        if (line[i] == '"') {
            i++;
            while (i < len && line[i] != '"') {
                if (k + 1 < MAX_WORD)
                    words[n][k++] = line[i];
                i++;
            }
            if (i < len)
                i++;
        } else {
            while (i < len && line[i] != ' ' && line[i] != '\t' && line[i] != '\r' && !(n == 0 && line[i] == '=')) {
                if (k + 1 < MAX_WORD)
                    words[n][k++] = line[i];
                i++;
            }
        }
        words[n][k] = 0;
        /* A NUL inside a word ends it: such a value is not a host or a path. */
        n++;
    }
    return n;
}

/* `Host p1 p2 !p3`: some positive pattern matches and no negated one does. */
static int host_matches(char words[][MAX_WORD], size_t n, const char *alias)
{
    int any = 0;
    for (size_t i = 1; i < n; i++) {
        const char *p = words[i];
        if (p[0] == '!') {
            if (fnmatch(p + 1, alias, 0) == 0)
                return 0;
        } else if (fnmatch(p, alias, 0) == 0) {
            any = 1;
        }
    }
    return any;
}

void ssh_config_parse(const char *text, size_t len, const char *alias, ssh_host_config *out)
{
    memset(out, 0, sizeof *out);
    char (*words)[MAX_WORD] = sky_xmalloc(MAX_WORDS * sizeof *words);
    int active = 1;   /* lines before any Host apply to every host */
    size_t pos = 0;
    while (pos < len) {
        const char *line = text + pos;
        const char *nl = memchr(line, '\n', len - pos);
        size_t linelen = nl ? (size_t)(nl - line) : len - pos;
        pos += linelen + (nl ? 1 : 0);
        size_t n = split_words(line, linelen, words, MAX_WORDS);
        if (n == 0)
            continue;
        const char *key = words[0];
        if (strcasecmp(key, "Host") == 0) {
            active = host_matches(words, n, alias);
            continue;
        }
        if (strcasecmp(key, "Match") == 0) {
            active = 0;   /* not followed: see the header */
            continue;
        }
        if (!active || n < 2 || !words[1][0])
            continue;
        const char *value = words[1];
        if (strcasecmp(key, "HostName") == 0 && !out->hostname) {
            out->hostname = sky_xstrdup(value);
        } else if (strcasecmp(key, "User") == 0 && !out->user) {
            out->user = sky_xstrdup(value);
        } else if (strcasecmp(key, "Port") == 0 && !out->port) {
            char *end;
            long port = strtol(value, &end, 10);
            if (*end == 0 && port > 0 && port < 65536)
                out->port = (int)port;
        } else if (strcasecmp(key, "IdentityFile") == 0 && out->nidentities < SSH_CONFIG_MAX_IDENTITIES) {
            out->identities[out->nidentities++] = sky_xstrdup(value);
        }
    }
    free(words);
}

int ssh_config_load(const char *path, const char *alias, ssh_host_config *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    FILE *f = fopen(path, "re");
    if (!f) {
        if (errno == ENOENT || errno == ENOTDIR)
            return 0;
        snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
        return -1;
    }
    sky_buf text = SKY_BUF_INIT;
    char chunk[8192];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0 && text.len < (4u << 20))
        sky_buf_append(&text, chunk, n);
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        snprintf(err, errlen, "cannot read %s", path);
        sky_buf_free(&text);
        return -1;
    }
    ssh_config_parse((const char *)text.data, text.len, alias, out);
    sky_buf_free(&text);
    return 0;
}

void ssh_host_config_free(ssh_host_config *c)
{
    free(c->hostname);
    free(c->user);
    for (size_t i = 0; i < c->nidentities; i++)
        free(c->identities[i]);
    memset(c, 0, sizeof *c);
}
