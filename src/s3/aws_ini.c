/* aws_ini: the AWS shared files' INI dialect (see aws_ini.h). */
#include "s3/aws_ini.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "util/alloc.h"
#include "util/buf.h"

static char *trim(char *s)
{
    char *end;
    while (*s == ' ' || *s == '\t')
        s++;
    end = s + strlen(s);
    while (end > s && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r'))
        *--end = '\0';
    return s;
}

static void add_entry(aws_ini *f, const char *section, const char *sub, const char *key,
                      const char *value)
{
    if (f->n == f->cap) {
        f->cap = f->cap ? f->cap * 2 : 16;
        f->entries = sky_xrealloc(f->entries, f->cap * sizeof *f->entries);
    }
    f->entries[f->n].section = sky_xstrdup(section);
    f->entries[f->n].sub = sky_xstrdup(sub);
    f->entries[f->n].key = sky_xstrdup(key);
    f->entries[f->n].value = sky_xstrdup(value);
    f->n++;
}

/* text is NUL-terminated and is cut up in place; section and sub point into
 * earlier lines of it, which stay intact once read. */
static void parse_lines(aws_ini *f, char *text)
{
    const char *section = "", *sub = "";
    char *save = NULL;

    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        int indented = line[0] == ' ' || line[0] == '\t';
        char *t = trim(line), *eq;
        if (*t == '\0' || *t == '#' || *t == ';')
            continue;
        if (*t == '[') {
            char *close = strchr(t, ']');
            if (close) {
                *close = '\0';
                section = trim(t + 1);
                sub = "";
            }
            continue;
        }
        eq = strchr(t, '=');
        if (!eq)
            continue;
        *eq = '\0';
        if (!indented)
            sub = "";
        char *key = trim(t), *value = trim(eq + 1);
        if (!indented && *value == '\0') {
            sub = key;   /* "s3 =": the indented lines below belong to it */
            continue;
        }
        add_entry(f, section, indented ? sub : "", key, value);
    }
}

void aws_ini_parse(aws_ini *f, const char *text, size_t len)
{
    char *copy = sky_xmalloc(len + 1);
    memset(f, 0, sizeof *f);
    memcpy(copy, text, len);
    copy[len] = '\0';
    parse_lines(f, copy);
    explicit_bzero(copy, len);
    free(copy);
}

void aws_ini_load(aws_ini *f, const char *path)
{
    FILE *fp;
    sky_buf text = SKY_BUF_INIT;
    char chunk[4096];
    size_t n;

    memset(f, 0, sizeof *f);
    fp = fopen(path, "r");
    if (fp) {
        /* The whole file in one allocation: no unwiped copy of a secret is
         * left behind by growing the buffer (a file that grows meanwhile
         * may still cost one). */
        struct stat sb;
        size_t size = fstat(fileno(fp), &sb) == 0 && sb.st_size > 0 ? (size_t)sb.st_size : 0;
        sky_buf_reserve(&text, (size < AWS_INI_MAX_BYTES ? size : AWS_INI_MAX_BYTES) + 1);
        while (text.len < AWS_INI_MAX_BYTES && (n = fread(chunk, 1, sizeof chunk, fp)) > 0) {
            if (n > AWS_INI_MAX_BYTES - text.len)
                n = AWS_INI_MAX_BYTES - text.len;
            sky_buf_append(&text, chunk, n);
        }
        explicit_bzero(chunk, sizeof chunk);
        fclose(fp);
        sky_buf_cstr(&text);
        parse_lines(f, (char *)text.data);
        explicit_bzero(text.data, text.len);
        sky_buf_free(&text);
    }
    f->path = sky_xstrdup(path);
    f->exists = fp != NULL;
}

void aws_ini_free(aws_ini *f)
{
    for (size_t i = 0; i < f->n; i++) {
        aws_ini_entry *e = &f->entries[i];
        free(e->section);
        free(e->sub);
        free(e->key);
        explicit_bzero(e->value, strlen(e->value));
        free(e->value);
    }
    free(f->entries);
    free(f->path);
    memset(f, 0, sizeof *f);
}

const char *aws_ini_get(const aws_ini *f, const char *section, const char *sub, const char *key)
{
    for (size_t i = 0; i < f->n; i++) {
        const aws_ini_entry *e = &f->entries[i];
        if (strcmp(e->section, section) == 0 && strcmp(e->sub, sub) == 0 &&
            strcasecmp(e->key, key) == 0)
            return *e->value ? e->value : NULL;
    }
    return NULL;
}

int aws_ini_has_section(const aws_ini *f, const char *section)
{
    for (size_t i = 0; i < f->n; i++)
        if (strcmp(f->entries[i].section, section) == 0)
            return 1;
    return 0;
}
